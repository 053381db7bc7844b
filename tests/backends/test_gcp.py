"""gcp backend: the real google-cloud-secret-manager clients (sync and asyncio) over real gRPC to a local server.

Nothing in the client library is patched: the backend is pointed at ``tests/servers/gcp_secretmanager.py``
through its ``endpoint`` + ``plaintext`` options, or over TLS (a local CA) with a service-account key file whose
self-signed JWT the server verifies.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
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
from tests.servers import wait_until
from tests.servers.gcp_secretmanager import SecretManagerServer
from tokenstore import CachePolicy, CachingProvider
from tokenstore.backends.gcp import GcpBackend

pytestmark = pytest.mark.backend("gcp")

PROJECT = "tokenstore-test"


@pytest.fixture(scope="module")
def sm_server() -> Iterator[SecretManagerServer]:
    with SecretManagerServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sm_server" in request.fixturenames:
        server: SecretManagerServer = request.getfixturevalue("sm_server")
        server.reset_faults()
        server.start()  # a test that stopped it must not leave it down


def new_secret() -> str:
    return "wa-" + uuid.uuid4().hex[:12]


def backend(server: SecretManagerServer, secret: str, **options: Any) -> GcpBackend:
    options.setdefault("timeout", 2.0)
    return GcpBackend(PROJECT, secret, endpoint=server.endpoint, plaintext=True, **options)


def leaked(caplog: pytest.LogCaptureFixture, *values: str) -> bool:
    """Whether any value (or its base64, as the client library's JSON payloads carry bytes) is in a log record."""
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    forms = [v for value in values for v in (value, base64.b64encode(value.encode()).decode())]
    return any(form in text for form in forms)


# -- the shared contract, sync and async ----------------------------------------------------------------------
class TestGcpContract(ProviderContract):
    @pytest.fixture
    def target(self, sm_server: SecretManagerServer) -> ContractTarget:
        secret = new_secret()
        value = canary()
        sm_server.add_version(PROJECT, secret, value)

        def write(v: str) -> None:
            sm_server.add_version(PROJECT, secret, v)

        return ContractTarget(
            make=lambda: backend(sm_server, secret),
            initial=value,
            write_out_of_band=write,
            make_missing=lambda: backend(sm_server, new_secret()),
            writable=True,
        )


class TestGcpJsonKeyContract(ProviderContract):
    @pytest.fixture
    def target(self, sm_server: SecretManagerServer) -> ContractTarget:
        secret = new_secret()
        value = canary()

        def write(v: str) -> None:
            sm_server.add_version(PROJECT, secret, json.dumps({"access_token": v, "phone_number_id": "123"}))

        write(value)
        return ContractTarget(
            make=lambda: backend(sm_server, secret, key="access_token"),
            initial=value,
            write_out_of_band=write,
            make_missing=lambda: backend(sm_server, new_secret(), key="access_token"),
            writable=True,
        )


# -- reading -------------------------------------------------------------------------------------------------
async def test_read_latest_and_pinned_versions(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    values = [canary() for _ in range(3)]
    for v in values:
        sm_server.add_version(PROJECT, secret, v + "\n")  # a trailing newline (echo ... | gcloud) is stripped
    with backend(sm_server, secret) as latest:
        token = latest.get_token()
        assert (token.reveal(), token.version) == (values[2], "3")
        assert token.source == f"gcp:projects/{PROJECT}/secrets/{secret}/versions/latest"
        assert (await latest.aget_token()).version == "3"
        await latest.aclose()
    pinned = backend(sm_server, secret, version=2)
    try:
        token = pinned.get_token()
        assert (token.reveal(), token.version) == (values[1], "2")
        assert (await pinned.aget_token()).reveal() == values[1]
        sm_server.add_version(PROJECT, secret, canary())
        assert pinned.get_token().reveal() == values[1]  # a pin does not follow rotation
        # a pinned reader cannot rotate: a new version would never be read
        assert not pinned.supports_write
        with pytest.raises(tokenstore.WriteNotSupported, match="pinned to version 2"):
            pinned.put_token(canary())
        with pytest.raises(tokenstore.WriteNotSupported):
            await pinned.aput_token(canary())
        with pytest.raises(tokenstore.SecretNotFound, match="NOT_FOUND"):
            backend(sm_server, secret, version=99).get_token()
    finally:
        await pinned.aclose()


async def test_write_then_read_back_sync_and_async(
    sm_server: SecretManagerServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = new_secret()
    sm_server.add_version(PROJECT, secret, canary())
    first, second = canary(), canary()
    provider = backend(sm_server, secret)
    try:
        assert provider.put_token(first) == "2"
        assert provider.get_token().reveal() == first
        assert await provider.aput_token(second) == "3"
        token = await provider.aget_token()
        assert (token.reveal(), token.version) == (second, "3")
    finally:
        await provider.aclose()
    assert sm_server.versions(PROJECT, secret)[1:] == [first.encode(), second.encode()]
    assert not leaked(caplog, first, second)


async def test_write_json_key_keeps_other_fields(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    sm_server.add_version(PROJECT, secret, json.dumps({"access_token": canary(), "app_id": "42"}))
    new = canary()
    provider = backend(sm_server, secret, key="access_token")
    try:
        await provider.aput_token(new)
        assert json.loads(sm_server.versions(PROJECT, secret)[-1]) == {"access_token": new, "app_id": "42"}
        # a secret that exists but has no version yet starts a new JSON object
        empty = new_secret()
        sm_server.create_secret(PROJECT, empty)
        assert backend(sm_server, empty, key="access_token").put_token(new) == "1"
        assert json.loads(sm_server.versions(PROJECT, empty)[0]) == {"access_token": new}
    finally:
        await provider.aclose()


async def test_rotation_async_after_ttl_and_at_once_after_invalidate(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    first, second, third = canary(), canary(), canary()
    sm_server.add_version(PROJECT, secret, first)
    clock = FakeClock()
    cached = CachingProvider(backend(sm_server, secret), CachePolicy(ttl=10, refresh_ahead=0, jitter=0), clock=clock)
    try:
        assert (await cached.aget_token()).reveal() == first
        sm_server.add_version(PROJECT, secret, second)
        clock.advance(9)
        assert (await cached.aget_token()).reveal() == first
        clock.advance(1.01)
        token = await cached.aget_token()
        assert (token.reveal(), token.version) == (second, "2")
        sm_server.add_version(PROJECT, secret, third)
        cached.invalidate()
        assert (await cached.aget_token()).reveal() == third
        assert cached.stats.fetches == 3
    finally:
        await cached.aclose()


# -- errors -------------------------------------------------------------------------------------------------
async def test_permission_denied(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    value = canary()
    sm_server.add_version(PROJECT, secret, value)
    sm_server.deny.add(f"projects/{PROJECT}/secrets/{secret}")
    provider = backend(sm_server, secret)
    try:
        with pytest.raises(tokenstore.AccessDenied) as info:
            provider.get_token()
        message = str(info.value)
        assert f"projects/{PROJECT}/secrets/{secret}" in message and "PERMISSION_DENIED" in message
        assert "secretAccessor" in message
        assert_clean(message, value)
        assert isinstance(info.value.__cause__, Exception)  # the SDK's error is kept as the cause
        with pytest.raises(tokenstore.AccessDenied, match="secretVersionAdder"):
            await provider.aput_token(canary())
        with pytest.raises(tokenstore.AccessDenied):
            await provider.aget_token()
    finally:
        await provider.aclose()


async def test_unauthenticated_is_access_denied(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    sm_server.add_version(PROJECT, secret, canary())
    sm_server.authorize = lambda metadata: False
    provider = backend(sm_server, secret)
    try:
        with pytest.raises(tokenstore.AccessDenied, match="UNAUTHENTICATED"):
            provider.get_token()
        with pytest.raises(tokenstore.AccessDenied, match="UNAUTHENTICATED"):
            await provider.aget_token()
    finally:
        await provider.aclose()


def test_throttled_then_success_honours_retry_delay(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    value = canary()
    sm_server.add_version(PROJECT, secret, value)
    raw = backend(sm_server, secret)
    sm_server.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=7.5)
    with pytest.raises(tokenstore.BackendUnavailable) as info:
        raw.get_token()
    assert info.value.retry_after == 7.5 and "RESOURCE_EXHAUSTED" in str(info.value)

    clock = FakeClock()
    policy = CachePolicy(ttl=60, refresh_ahead=0, jitter=0, backoff_initial=0.5, backoff_max=30)
    cached = CachingProvider(raw, policy, clock=clock, rand=lambda: 0.0)
    with cached:
        sm_server.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=7.5)
        with pytest.raises(tokenstore.BackendUnavailable):
            cached.get_token()
        calls = sm_server.count("AccessSecretVersion")
        clock.advance(7)  # within the store's retry delay: no new call
        with pytest.raises(tokenstore.BackendUnavailable):
            cached.get_token()
        assert sm_server.count("AccessSecretVersion") == calls
        clock.advance(0.6)
        assert cached.get_token().reveal() == value
        assert sm_server.count("AccessSecretVersion") == calls + 1


async def test_throttled_then_success_async(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    value = canary()
    sm_server.add_version(PROJECT, secret, value)
    clock = FakeClock()
    policy = CachePolicy(ttl=60, refresh_ahead=0, jitter=0, backoff_initial=0.5, backoff_max=30)
    cached = CachingProvider(backend(sm_server, secret), policy, clock=clock, rand=lambda: 0.0)
    try:
        sm_server.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=3)
        with pytest.raises(tokenstore.BackendUnavailable) as info:
            await cached.aget_token()
        assert info.value.retry_after == 3
        clock.advance(3.01)
        assert (await cached.aget_token()).reveal() == value
    finally:
        await cached.aclose()


async def test_crc_mismatch_is_refused(sm_server: SecretManagerServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = new_secret()
    value = canary()
    sm_server.add_version(PROJECT, secret, value)
    sm_server.corrupt_crc = True
    provider = backend(sm_server, secret)
    try:
        for attempt in (provider.get_token, provider.aget_token):
            with pytest.raises(tokenstore.SecretMalformed) as info:
                result = attempt()
                if asyncio.iscoroutine(result):
                    await result
            message = str(info.value)
            assert "CRC32C" in message and f"projects/{PROJECT}/secrets/{secret}" in message
            assert_clean(message, value)
        sm_server.corrupt_crc = False
        sm_server.omit_crc = True  # an emulator that sends no checksum: nothing to verify
        assert provider.get_token().reveal() == value
    finally:
        await provider.aclose()
    assert not leaked(caplog, value)


async def test_disabled_or_destroyed_version_is_refused(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    sm_server.add_version(PROJECT, secret, canary())
    sm_server.add_version(PROJECT, secret, canary())
    sm_server.set_state(PROJECT, secret, 2, "DISABLED")
    sm_server.set_state(PROJECT, secret, 1, "DESTROYED")
    provider = backend(sm_server, secret)
    try:
        with pytest.raises(tokenstore.SecretMalformed, match="disabled or destroyed"):
            provider.get_token()
        with pytest.raises(tokenstore.SecretMalformed, match="FAILED_PRECONDITION"):
            await backend(sm_server, secret, version=1).aget_token()
    finally:
        await provider.aclose()


def test_malformed_payloads(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    value = canary()
    cases: list[tuple[bytes | str, str | None, type[Exception], str]] = [
        (f"{value} {value}", None, tokenstore.SecretMalformed, "whitespace"),
        ("   ", None, tokenstore.SecretMalformed, "empty"),
        (b"\xff\xfe", None, tokenstore.SecretMalformed, "not UTF-8"),
        (value, "access_token", tokenstore.SecretMalformed, "not a JSON object"),
        (json.dumps({"other": value}), "access_token", tokenstore.SecretNotFound, "no key 'access_token'"),
        (json.dumps({"access_token": 5}), "access_token", tokenstore.SecretMalformed, "not a string"),
    ]
    for data, key, error, words in cases:
        sm_server.add_version(PROJECT, secret, data)
        with backend(sm_server, secret, key=key) as provider, pytest.raises(error, match=words) as info:
            provider.get_token()
        assert_clean(str(info.value), value)
    with backend(sm_server, secret) as provider:
        with pytest.raises(tokenstore.SecretMalformed):
            provider.put_token("two words")
        with pytest.raises(tokenstore.SecretMalformed):
            provider.put_token("  ")


def test_timeout_is_unavailable(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    sm_server.add_version(PROJECT, secret, canary())
    sm_server.delay = 0.6
    with backend(sm_server, secret, timeout=0.15) as provider:
        with pytest.raises(tokenstore.BackendUnavailable, match=r"no answer within the timeout \(0.15s\)"):
            provider.get_token()


def _outage_policy() -> CachePolicy:
    return CachePolicy(ttl=10, refresh_ahead=0, jitter=0, max_stale=60, backoff_initial=1, backoff_max=4)


def test_server_down_then_recovery_without_restarting_the_provider(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    first, second = canary(), canary()
    sm_server.add_version(PROJECT, secret, first)
    clock = FakeClock()
    raw = backend(sm_server, secret)
    cached = CachingProvider(raw, _outage_policy(), clock=clock)
    with cached:
        assert cached.get_token().reveal() == first
        sm_server.stop()
        with pytest.raises(tokenstore.BackendUnavailable, match="UNAVAILABLE"):
            raw.get_token()
        clock.advance(11)  # TTL over, store down: the last token is served stale
        assert cached.get_token().reveal() == first
        assert cached.stats.stale_served == 1
        clock.advance(100)  # past max_stale: the outage surfaces
        with pytest.raises(tokenstore.BackendUnavailable, match="max_stale"):
            cached.get_token()
        sm_server.add_version(PROJECT, secret, second)  # rotated during the outage
        sm_server.start()

        def recovered() -> bool:
            clock.advance(5)  # past the cache's backoff; gRPC reconnects on its own (short) backoff
            return cached.get_token().reveal() == second

        wait_until(recovered, timeout=10, interval=0.05, what="the same provider to recover")


async def test_server_down_then_recovery_async(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    first, second = canary(), canary()
    sm_server.add_version(PROJECT, secret, first)
    clock = FakeClock()
    cached = CachingProvider(backend(sm_server, secret), _outage_policy(), clock=clock)
    try:
        assert (await cached.aget_token()).reveal() == first
        sm_server.stop()
        clock.advance(11)
        assert (await cached.aget_token()).reveal() == first
        clock.advance(100)
        with pytest.raises(tokenstore.BackendUnavailable):
            await cached.aget_token()
        sm_server.add_version(PROJECT, secret, second)
        sm_server.start()
        for _ in range(200):
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


# -- clients ------------------------------------------------------------------------------------------------
async def test_clients_are_built_once_and_per_event_loop(sm_server: SecretManagerServer) -> None:
    secret = new_secret()
    value = canary()
    sm_server.add_version(PROJECT, secret, value)
    provider = backend(sm_server, secret)
    provider.get_token()
    sync_client = provider._client
    provider.get_token()
    assert provider._client is sync_client
    await provider.aget_token()
    async_client = provider._aclient
    await provider.aget_token()
    assert provider._aclient is async_client

    def in_another_loop() -> str:
        return asyncio.run(provider.aget_token()).reveal()  # a new loop gets its own channel

    assert await asyncio.to_thread(in_another_loop) == value
    await provider.aclose()
    assert provider._client is None and provider._aclient is None
    await provider.aclose()  # idempotent


async def test_no_payload_or_metadata_in_sdk_debug_logs(
    sm_server: SecretManagerServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The client library logs whole payloads at DEBUG; the backend blanks them on its transport loggers."""
    google_logger = logging.getLogger("google")
    saved = (google_logger.level, google_logger.propagate)
    google_logger.setLevel(logging.DEBUG)
    google_logger.propagate = True
    caplog.set_level(logging.DEBUG)
    try:
        secret = new_secret()
        value, new = canary(), canary()
        sm_server.add_version(PROJECT, secret, value)
        provider = backend(sm_server, secret)
        try:
            assert provider.get_token().reveal() == value
            assert (await provider.aget_token()).reveal() == value
            provider.put_token(new)
            await provider.aput_token(canary())
        finally:
            await provider.aclose()
    finally:
        google_logger.setLevel(saved[0])
        google_logger.propagate = saved[1]
    sdk_records = [r for r in caplog.records if r.name.startswith("google.cloud.secretmanager")]
    assert sdk_records, "the client library's debug logging did not run: this test proves nothing"
    assert any(getattr(r, "response", None) == "<redacted by tokenstore>" for r in sdk_records)
    assert not leaked(caplog, value, new)


# -- credentials over TLS -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretManagerServer]:
    with SecretManagerServer(tls=True, folder=tmp_path_factory.mktemp("gcp-tls")) as server:
        yield server


@pytest.fixture(scope="module")
def service_account(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, str]:
    """A service-account key file (a fresh RSA key), its public key, and its client_email."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    email = f"whatsapp-reader@{PROJECT}.iam.gserviceaccount.com"
    path = tmp_path_factory.mktemp("gcp-sa") / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "k1",
                "private_key": private_pem,
                "client_email": email,
                "client_id": "1234567890",
                # never used (the library signs its own JWT); loopback so nothing could leave the machine
                "token_uri": "https://127.0.0.1:9/token",
            }
        )
    )
    path.chmod(0o600)
    return path, public_pem, email


def _verify_jwt(public_pem: bytes, email: str) -> Any:
    from google.auth import jwt

    def check(metadata: Any) -> bool:
        scheme, _, token = metadata.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return False
        try:
            claims = jwt.decode(token, certs=public_pem.decode(), verify=True)  # type: ignore[no-untyped-call]
        except Exception:
            return False
        return bool(claims.get("iss") == email)

    return check


async def test_service_account_file_over_tls(
    tls_server: SecretManagerServer, service_account: tuple[Path, bytes, str], tmp_path: Path
) -> None:
    sa_path, public_pem, email = service_account
    tls_server.authorize = _verify_jwt(public_pem, email)
    secret = new_secret()
    value = canary()
    tls_server.add_version(PROJECT, secret, value)
    config = tmp_path / "tokenstore.yaml"
    config.write_text(
        f"""
token:
  backend: gcp
  cache: false
  gcp:
    project: {PROJECT}
    secret: {secret}
    endpoint: "{tls_server.endpoint}"
    credentials_file: {sa_path}
    ca_bundle: {tls_server.ca_pem}
    timeout: 5
"""
    )
    provider = tokenstore.load_provider(config)
    try:
        assert provider.get_token().reveal() == value
        assert (await provider.aget_token()).reveal() == value
        new = canary()
        await provider.aput_token(new)
        assert provider.get_token().reveal() == new
    finally:
        await provider.aclose()
    assert tls_server.calls and all(c.code == "OK" for c in tls_server.calls[-4:])
    assert all(c.metadata["authorization"].startswith("Bearer ") for c in tls_server.calls[-4:])
    # a wrong key is refused by the server and reported as such
    tls_server.authorize = lambda metadata: False
    with GcpBackend(
        PROJECT, secret, endpoint=tls_server.endpoint, credentials_file=sa_path, ca_bundle=tls_server.ca_pem
    ) as bad:
        with pytest.raises(tokenstore.AccessDenied, match="UNAUTHENTICATED"):
            bad.get_token()
    tls_server.reset_faults()


def test_application_default_credentials(
    tls_server: SecretManagerServer, service_account: tuple[Path, bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sa_path, public_pem, email = service_account
    tls_server.authorize = _verify_jwt(public_pem, email)
    secret = new_secret()
    value = canary()
    tls_server.add_version(PROJECT, secret, value)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(sa_path))
    try:
        with GcpBackend(PROJECT, secret, endpoint=tls_server.endpoint, ca_bundle=tls_server.ca_pem) as provider:
            assert provider.get_token().reveal() == value
    finally:
        tls_server.reset_faults()


def test_no_credentials_is_a_clear_error(
    tls_server: SecretManagerServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NO_GCE_CHECK=true (conftest) keeps google-auth off the metadata server; no ADC file, no gcloud config
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    with GcpBackend(PROJECT, "s", endpoint=tls_server.endpoint, ca_bundle=tls_server.ca_pem) as provider:
        with pytest.raises(tokenstore.AccessDenied, match="GOOGLE_APPLICATION_CREDENTIALS") as info:
            provider.get_token()
    assert "token.gcp" in str(info.value)
    bad = tmp_path / "bad.json"
    secret_text = canary()
    bad.write_text(json.dumps({"type": "service_account", "private_key": secret_text}))
    with GcpBackend(PROJECT, "s", endpoint=tls_server.endpoint, credentials_file=bad) as provider:
        with pytest.raises(tokenstore.ConfigError, match="credentials_file") as info:
            provider.get_token()
    assert_clean(str(info.value), secret_text)


# -- configuration, imports -----------------------------------------------------------------------------------
def test_config_validation(tmp_path: Path) -> None:
    def build(options: dict[str, Any]) -> Any:
        return tokenstore.provider_from_config({"token": {"backend": "gcp", "gcp": options}}, source="cfg.yaml")

    ok = build(
        {"project": "p-1", "secret": "s", "version": 3, "key": "k", "endpoint": "127.0.0.1:1", "plaintext": True}
    )
    assert ok.source == "gcp:projects/p-1/secrets/s/versions/3#k"
    full = build({"secret": "projects/123/secrets/wa_token"})
    assert full.source == "gcp:projects/123/secrets/wa_token/versions/latest"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"secret": "s"}, "token.gcp.project: required string is missing"),
        ({"project": "p", "secret": "a/b"}, "token.gcp.secret: must be a secret id"),
        ({"project": "p", "secret": "s", "version": "newest"}, "token.gcp.version: must be 'latest' or a version"),
        ({"project": "p", "secret": "s", "version": 0}, "token.gcp.version"),
        ({"project": "p", "secret": "s", "plaintext": True}, "token.gcp.plaintext: needs endpoint"),
        ({"project": "p", "secret": "s", "endpoint": "http://x:1"}, "token.gcp.endpoint: must be host or host:port"),
        (
            {"project": "p", "secret": "s", "endpoint": "h:1", "plaintext": True, "credentials_file": "/etc/hosts"},
            "token.gcp.credentials_file: cannot be used with plaintext",
        ),
        ({"project": "p", "secret": "s", "credentials_file": str(tmp_path / "no.json")}, "does not exist"),
        ({"project": "q", "secret": "projects/p/secrets/s"}, "token.gcp.project: does not match"),
        ({"project": "p", "secret": "s", "versoin": 1}, "unknown option (did you mean 'version'?)"),
        ({"project": "p", "secret": "s", "timeout": 0}, "token.gcp.timeout: must be at least"),
    ]
    for options, message in cases:
        with pytest.raises(tokenstore.ConfigError) as info:
            build(options)
        assert message in str(info.value) and str(info.value).startswith("cfg.yaml: ")


def test_importing_and_configuring_imports_no_sdk() -> None:
    code = (
        "import sys, tokenstore\n"
        "from tokenstore.backends.gcp import GcpBackend\n"
        "p = tokenstore.provider_from_config({'backend': 'gcp', 'gcp': {'project': 'p', 'secret': 's'}})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('google', 'grpc', 'google_crc32c'))\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_missing_extra_names_it(sm_server: SecretManagerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google_crc32c", None)  # as if the package were not installed
    with backend(sm_server, new_secret()) as provider:
        with pytest.raises(tokenstore.BackendNotInstalled) as info:
            provider.get_token()
    assert "whatsapp-tokenstore[gcp]" in str(info.value) and "google_crc32c" in str(info.value)


# -- many tenants ---------------------------------------------------------------------------------------------
class TestGcpTenants(TenantContract):
    """One secret per tenant (``wa-t<id>-{tenant}``), one client; ListSecrets with a name filter, paged by 250."""

    @pytest.fixture
    def tenant_target(self, sm_server: SecretManagerServer) -> TenantTarget:
        prefix = f"wa-t{uuid.uuid4().hex[:10]}-"
        built: list[bool] = []

        def make() -> GcpBackend:
            b = backend(sm_server, "unused")
            real = b._build_client

            def counted(*, aio: bool) -> Any:
                if not aio:
                    built.append(aio)
                return real(aio=aio)

            b._build_client = counted  # type: ignore[method-assign]
            return b

        return TenantTarget(
            make=make,
            template=tokenstore.TenantTemplate("secret", prefix + "{tenant}"),
            write=lambda tenant, value: sm_server.add_version(PROJECT, prefix + tenant, value) and None,
            write_name=lambda name, value: sm_server.add_version(PROJECT, name, value) and None,
            decoys=[prefix[:-1] + "x-t1", "x" + prefix + "t2"],
            writable=True,
            clients=lambda b: len(built),
            config=lambda: {
                "token": {
                    "backend": "gcp",
                    "gcp": {
                        "project": PROJECT,
                        "endpoint": sm_server.endpoint,
                        "plaintext": True,
                        "secret": prefix + "{tenant}",
                    },
                }
            },
        )


def test_gcp_list_pages_and_filters(sm_server: SecretManagerServer) -> None:
    prefix = f"wa-p{uuid.uuid4().hex[:8]}-"
    for i in range(600):
        sm_server.add_version(PROJECT, f"{prefix}{i:03d}", canary())
    sm_server.add_version(PROJECT, f"other-{prefix}1", canary())  # contains the prefix: filtered out by us
    before = sm_server.count("ListSecrets")
    with tokenstore.TenantProviders(
        backend(sm_server, "unused"), template=tokenstore.TenantTemplate("secret", prefix + "{tenant}")
    ) as tenants:
        assert tenants.tenants() == [f"{i:03d}" for i in range(600)]
    assert sm_server.count("ListSecrets") - before == 3  # 250 + 250 + 100
    listed = [c for c in sm_server.calls if c.method == "ListSecrets"][-1]
    assert listed.name == f"projects/{PROJECT}"

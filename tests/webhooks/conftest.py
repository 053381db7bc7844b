"""Fixtures for the webhook tests: app secrets and a verify token in file-backed stores (canary values, so the
session-wide log scan catches any leak), counting wrappers to prove store reads, and a clock tests move."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.util
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import sender
from tests.conftest import need
from tests.contract import Counting, canary

# the sender suite's fixtures, imported so that pytest provides them to this folder's tests too
from tests.sender.conftest import sandbox as sandbox
from tests.sender.conftest import store as store
from tokenstore import CachePolicy, CachingProvider
from tokenstore.backends.file import FileBackend


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def status_body(status: str = "delivered", *, ref: str | None = "ref-1", message_id: str = "wamid.ABC") -> bytes:
    item: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": "1764547200",
        "recipient_id": "15551234567",
    }
    if ref is not None:
        item["biz_opaque_callback_data"] = ref
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
                            "statuses": [item],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SecretFile:
    """A secret in a file-backed store; ``reads`` counts the store reads behind the caching layer."""

    path: Path
    value: str
    counting: Counting

    def write(self, value: str) -> None:
        FileBackend(self.path).put_token(value)
        self.value = value

    @property
    def reads(self) -> int:
        return self.counting.calls

    def provider(self) -> CachingProvider:
        return CachingProvider(self.counting, CachePolicy(ttl=300, refresh_ahead=0, jitter=0))


def _secret_file(path: Path, prefix: str) -> SecretFile:
    value = canary(prefix)
    FileBackend(path).put_token(value)
    return SecretFile(path=path, value=value, counting=Counting(FileBackend(path)))


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sender", "sender.webhooks", "sender.sandbox", "tokenstore"):
        caplog.set_level(logging.DEBUG, logger=name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app_secret(tmp_path: Path) -> SecretFile:
    return _secret_file(tmp_path / "app_secret", "appsecret")


@pytest.fixture
def verify_token(tmp_path: Path) -> SecretFile:
    return _secret_file(tmp_path / "verify_token", "verify")


@pytest.fixture
def verifier(app_secret: SecretFile, verify_token: SecretFile, clock: Clock) -> Iterator[sender.WebhookVerifier]:
    with sender.WebhookVerifier([app_secret.provider()], verify_token=verify_token.provider(), clock=clock) as v:
        yield v


# -- real HTTP servers on loopback ----------------------------------------------------------------------------
class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the request line holds hub.verify_token
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextlib.contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    """Serve a WSGI app with the standard library's wsgiref server on 127.0.0.1; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def uvicorn_server(app: Any, *, lifespan: str = "on") -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1; yields its base URL."""
    need(importlib.util.find_spec("uvicorn") is not None, "uvicorn (pip install uvicorn)")
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()

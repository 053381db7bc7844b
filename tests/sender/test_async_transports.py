"""AsyncSender over every async transport (its native client, aiohttp's pool and httpx's own): the same
results, the same failure classes. What matters most: 'nothing was sent' (retried) versus 'the request went out' (not retried)."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

import sender
from sender import ConnectFailed, OutcomeUnknown, RecipientError
from sender._aiohttp import AiohttpTransport
from sender.sandbox import Sandbox
from tests.sender.conftest import TO, Sleeps, Store, make_async_sender
from tests.servers import LocalTLS, free_port

TRANSPORTS = ["native", "aiohttp", "httpx"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_send_and_rotation(sandbox: Sandbox, store: Store, sleeps: Sleeps, transport: str) -> None:
    async with make_async_sender(sandbox, store.cached(), sleeps, async_transport=transport) as client:
        assert client.transport_name == transport
        first = await client.send_text(TO, "one")
        store.rotate()  # new token in the store, the old one revoked at Graph: 401, refetch, resend
        client.provider.invalidate()
        second = await client.send_text(TO, "two")
    assert first.message_id.startswith("wamid.") and second.message_id.startswith("wamid.")
    assert sandbox.received_counts() == {"one": 1, "two": 1}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_failure_classes(sandbox: Sandbox, store: Store, sleeps: Sleeps, transport: str) -> None:
    timeout = httpx.Timeout(5.0, read=0.2)
    async with make_async_sender(sandbox, store.cached(), sleeps, async_transport=transport, timeout=timeout) as client:
        sandbox.fail_next(130429, count=2)  # rate limited twice, then accepted
        assert (await client.send_text(TO, "limited")).attempts == 3
        sandbox.hang_next(2.0, deliver=True)  # accepted, but the answer is too late: not retried
        with pytest.raises(OutcomeUnknown) as info:
            await client.send_text(TO, "late")
        assert isinstance(info.value.__cause__, httpx.ReadTimeout)
        sandbox.drop_next(deliver=True)  # accepted, then the connection drops: not retried
        with pytest.raises(OutcomeUnknown):
            await client.send_text(TO, "dropped")
        sandbox.fail_next(131026)
        with pytest.raises(RecipientError):
            await client.send_text(TO, "never")
    assert sandbox.received_counts() == {"limited": 1, "late": 1, "dropped": 1}
    assert sleeps.waits == [0.5, 1.0]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connection_refused_is_nothing_sent(store: Store, sleeps: Sleeps, transport: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with sender.AsyncSender(
        store.cached(),
        phone_number_id="1",
        base_url=closed,
        sleep=sleeps.asleep,
        rand=lambda: 0.0,
        async_transport=transport,
    ) as client:
        with pytest.raises(ConnectFailed) as info:
            await client.send_text(TO, "nowhere")
    assert info.value.retryable and info.value.attempts == 3 and "nothing was sent" in str(info.value)


async def test_aiohttp_transport_verifies_tls(tmp_path: Path) -> None:
    """TLS is verified against the given CA; an unknown CA is a connect failure (nothing sent)."""
    tls = LocalTLS.create(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls.server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{server.server_address[1]}/"
    try:
        good = httpx.AsyncClient(transport=AiohttpTransport(verify=ssl.create_default_context(cafile=str(tls.ca_pem))))
        assert (await good.get(url)).text == "ok"
        await good.aclose()
        bad = httpx.AsyncClient(transport=AiohttpTransport(verify=True))  # the system store does not know our CA
        with pytest.raises(httpx.ConnectError):
            await bad.get(url)
        await bad.aclose()
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_transport_name_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="async_transport must be"):
        sender.AsyncSender(store.cached(), phone_number_id="1", async_transport="curl")

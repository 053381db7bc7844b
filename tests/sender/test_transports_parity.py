"""Every transport of both senders keeps every semantic: Sender on urllib3's pool (its default) and on
httpx's; AsyncSender on its native HTTP/1.1 client (default), aiohttp's pool and httpx's. The direct paths
(urllib3, native, aiohttp) skip httpx's Request/Response and run TokenAuth's flow through ``TokenAuth.run``/``arun``; these tests pin that they
decide exactly as the httpx auth flow does: the provider asked per request, 190 -> invalidate -> refetch ->
resend once (no loop), typed errors, code-aware retries, no retry after the request left, metrics, redaction.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

import sender
import tokenstore
from sender import AuthenticationError, ConnectFailed, OutcomeUnknown, RecipientError
from sender.sandbox import Sandbox
from tests.contract import canary
from tests.sender.conftest import TO, Sleeps, Store, log_text, make_async_sender, make_sender
from tests.servers import LocalTLS, free_port

SYNC = ["urllib3", "httpx"]
ASYNC = ["native", "aiohttp", "httpx"]


def counters(provider: tokenstore.TokenProvider) -> dict[str, int]:
    snap = tokenstore.provider_metrics(provider)
    return {k: snap[k] for k in ("rejections", "resends", "auth_failures")}


# -- 190: invalidate, refetch, resend once ----------------------------------------------------------------------
@pytest.mark.parametrize("transport", SYNC)
def test_sync_rotation_resends_once_and_counts(sandbox: Sandbox, store: Store, sleeps: Sleeps, transport: str) -> None:
    raw = store.counting()
    provider = store.cached(raw)
    with make_sender(sandbox, provider, sleeps, sync_transport=transport) as client:
        assert client.transport_name == transport
        first = client.send_text(TO, "one")
        store.rotate()  # a new token in the store; the cached one revoked at Graph
        second = client.send_text(TO, "two")  # 401 -> invalidate -> refetch -> resend once
    assert first.token_fingerprint != second.token_fingerprint and second.attempts == 1
    assert [r.status for r in sandbox.requests] == [200, 401, 200]
    assert raw.calls == 2 and client.auth.resends == 1
    assert counters(provider) == {"rejections": 1, "resends": 1, "auth_failures": 0}
    assert sandbox.received_counts() == {"one": 1, "two": 1} and sleeps.waits == []


@pytest.mark.parametrize("transport", ASYNC)
async def test_async_rotation_resends_once_and_counts(
    sandbox: Sandbox, store: Store, sleeps: Sleeps, transport: str
) -> None:
    raw = store.counting()
    provider = store.cached(raw)
    async with make_async_sender(sandbox, provider, sleeps, async_transport=transport) as client:
        await client.send_text(TO, "one")
        store.rotate()
        second = await client.send_text(TO, "two")
    assert second.attempts == 1 and [r.status for r in sandbox.requests] == [200, 401, 200]
    assert raw.calls == 2
    assert counters(provider) == {"rejections": 1, "resends": 1, "auth_failures": 0}
    assert sandbox.received_counts() == {"one": 1, "two": 1}


@pytest.mark.parametrize("transport", SYNC)
def test_sync_rejected_token_the_store_still_holds(
    sandbox: Sandbox, store: Store, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    provider = store.cached()
    with make_sender(sandbox, provider, sync_transport=transport) as client:
        sandbox.revoke_token(store.initial)
        with pytest.raises(AuthenticationError, match="still holds it") as info:
            client.send_text(TO, "x")
        store.write(canary())  # a value Graph never issued: the refetched token is rejected too
        with pytest.raises(AuthenticationError, match="and so was the one refetched"):
            client.send_text(TO, "y")
    assert info.value.code == 190 and info.value.http_status == 401 and not info.value.retryable
    # no resend of an unchanged token; one resend of a changed one; no loop
    assert [r.status for r in sandbox.requests] == [401, 401, 401]
    assert counters(provider) == {"rejections": 3, "resends": 1, "auth_failures": 2}
    assert store.initial not in log_text(caplog) and store.initial not in repr(info.value)


@pytest.mark.parametrize("transport", ASYNC)
async def test_async_rejected_token_the_store_still_holds(sandbox: Sandbox, store: Store, transport: str) -> None:
    provider = store.cached()
    async with make_async_sender(sandbox, provider, async_transport=transport) as client:
        sandbox.revoke_token(store.initial)
        with pytest.raises(AuthenticationError, match="still holds it"):
            await client.send_text(TO, "x")
    assert [r.status for r in sandbox.requests] == [401]
    assert counters(provider) == {"rejections": 1, "resends": 0, "auth_failures": 1}


def test_the_provider_is_asked_on_every_request(sandbox: Sandbox, store: Store) -> None:
    provider = store.cached()
    with make_sender(sandbox, provider) as client:
        before = provider.stats.hits + provider.stats.misses
        for i in range(5):
            client.send_text(TO, f"m{i}")
    assert provider.stats.hits + provider.stats.misses - before == 5


# -- failure classes: nothing sent (retried) versus the request went out (not retried) -------------------------
@pytest.mark.parametrize("transport", SYNC)
def test_sync_failure_classes(sandbox: Sandbox, store: Store, sleeps: Sleeps, transport: str) -> None:
    timeout = httpx.Timeout(5.0, read=0.2)
    with make_sender(sandbox, store.cached(), sleeps, sync_transport=transport, timeout=timeout) as client:
        sandbox.fail_next(130429, count=2)  # rate limited twice, then accepted
        assert client.send_text(TO, "limited").attempts == 3
        sandbox.hang_next(1.0, deliver=True)  # accepted, but the answer comes too late: not retried
        with pytest.raises(OutcomeUnknown) as info:
            client.send_text(TO, "late")
        assert isinstance(info.value.__cause__, httpx.ReadTimeout)
        sandbox.drop_next(deliver=True)  # accepted, then the connection drops: not retried
        with pytest.raises(OutcomeUnknown):
            client.send_text(TO, "dropped")
        sandbox.fail_next(131026)
        with pytest.raises(RecipientError):
            client.send_text(TO, "never")
    assert sandbox.received_counts() == {"limited": 1, "late": 1, "dropped": 1}
    assert sleeps.waits == [0.5, 1.0]


@pytest.mark.parametrize("transport", SYNC)
def test_sync_connection_refused_is_nothing_sent(store: Store, sleeps: Sleeps, transport: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with sender.Sender(
        store.cached(), phone_number_id="1", base_url=closed, sleep=sleeps, rand=lambda: 0.0, sync_transport=transport
    ) as client:
        with pytest.raises(ConnectFailed) as info:
            client.send_text(TO, "nowhere")
    assert info.value.retryable and info.value.attempts == 3 and "nothing was sent" in str(info.value)


@pytest.mark.parametrize("sync", [True, False])
async def test_direct_paths_verify_tls(tmp_path: Path, store: Store, sleeps: Sleeps, sync: bool) -> None:
    """TLS is verified against ca_bundle; an unknown CA is a connect failure (nothing sent)."""
    tls = LocalTLS.create(tmp_path)
    body = b'{"messaging_product":"whatsapp","messages":[{"id":"wamid.tls"}]}'

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls.server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    options = {"phone_number_id": "1", "base_url": url, "rand": lambda: 0.0, "retry": sender.RetryPolicy.disabled()}
    try:
        if sync:
            with sender.Sender(store.cached(), ca_bundle=str(tls.ca_pem), **options) as good:
                assert good.transport_name == "urllib3" and good.send_text(TO, "x").message_id == "wamid.tls"
            with sender.Sender(store.cached(), **options) as bad, pytest.raises(ConnectFailed):
                bad.send_text(TO, "x")
        else:
            async with sender.AsyncSender(store.cached(), ca_bundle=str(tls.ca_pem), **options) as agood:
                assert agood.transport_name == "native"
                assert (await agood.send_text(TO, "x")).message_id == "wamid.tls"
            async with sender.AsyncSender(store.cached(), **options) as abad:
                with pytest.raises(ConnectFailed):
                    await abad.send_text(TO, "x")
    finally:
        server.shutdown()
        server.server_close()


def test_custom_headers_reach_graph_on_every_transport(sandbox: Sandbox, store: Store) -> None:
    for transport in SYNC:
        with make_sender(sandbox, store.cached(), sync_transport=transport, headers={"X-Trace": "t1"}) as client:
            client.send_text(TO, transport)
    assert sandbox.received_counts() == {"urllib3": 1, "httpx": 1}


def test_a_proxy_in_the_environment_keeps_httpx(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    """httpx honours HTTPS_PROXY and NO_PROXY; the urllib3 path would not, so a proxy keeps httpx."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with sender.Sender(store.cached(), phone_number_id="1") as client:
        assert client.transport_name == "httpx"
    monkeypatch.delenv("HTTPS_PROXY")
    with sender.Sender(store.cached(), phone_number_id="1") as client:
        assert client.transport_name == "urllib3"


async def test_a_proxy_in_the_environment_keeps_httpx_for_async_too(
    monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    """The native client has no proxy support: with a proxy named, ``auto`` picks httpx, which honours it."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    async with sender.AsyncSender(store.cached(), phone_number_id="1") as client:
        assert client.transport_name == "httpx"
    monkeypatch.delenv("HTTPS_PROXY")
    async with sender.AsyncSender(store.cached(), phone_number_id="1") as client:
        assert client.transport_name == "native"


# -- a TokenAuth subclass that customizes the httpx flows keeps its customization on the direct paths ----------
class CheckingAuth(sender.TokenAuth):
    """Like a tenant's flow: a check before every request (here: counted, and refusing once told to)."""

    def __init__(self, provider: tokenstore.TokenProvider) -> None:
        super().__init__(provider)
        self.checks = 0
        self.refuse = False

    def _check(self) -> None:
        self.checks += 1
        if self.refuse:
            raise AuthenticationError("refused by the subclass before anything was sent")

    def sync_auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        self._check()
        yield from super().sync_auth_flow(request)

    async def async_auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        self._check()
        flow = super().async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return


@pytest.mark.parametrize("transport", SYNC)
def test_sync_subclassed_flow_is_driven_on_every_transport(sandbox: Sandbox, store: Store, transport: str) -> None:
    provider = store.cached()
    auth = CheckingAuth(provider)
    with make_sender(sandbox, provider, auth=auth, sync_transport=transport) as client:
        assert client.transport_name == transport and client.auth is auth
        client.send_text(TO, "one")
        store.rotate()
        assert client.send_text(TO, "two").attempts == 1  # 401 -> refetch -> resend, inside the subclass's flow
        auth.refuse = True
        with pytest.raises(AuthenticationError, match="refused by the subclass"):
            client.send_text(TO, "three")
    assert auth.checks == 3 and auth.resends == 1
    assert [r.status for r in sandbox.requests] == [200, 401, 200]
    assert sandbox.received_counts() == {"one": 1, "two": 1}


@pytest.mark.parametrize("transport", ASYNC)
async def test_async_subclassed_flow_is_driven_on_every_transport(
    sandbox: Sandbox, store: Store, transport: str
) -> None:
    provider = store.cached()
    auth = CheckingAuth(provider)
    async with make_async_sender(sandbox, provider, auth=auth, async_transport=transport) as client:
        await client.send_text(TO, "one")
        store.rotate()
        assert (await client.send_text(TO, "two")).attempts == 1
        auth.refuse = True
        with pytest.raises(AuthenticationError, match="refused by the subclass"):
            await client.send_text(TO, "three")
    assert auth.checks == 3 and auth.resends == 1
    assert [r.status for r in sandbox.requests] == [200, 401, 200]


def test_auth_must_ask_the_senders_provider(store: Store) -> None:
    with pytest.raises(ValueError, match="own provider"):
        sender.Sender(store.cached(), phone_number_id="1", auth=sender.TokenAuth(store.cached()))

"""``sender.TokenAuth`` under plain ``httpx.Client`` / ``httpx.AsyncClient`` (no Sender), against the sandbox:
asked on every request, 190 -> invalidate -> resend once only if the token changed; and ``RedirectTransport``."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import sender
import tokenstore
from sender.sandbox import Sandbox
from tests.contract import Counting, canary
from tests.ecosystem.conftest import TO
from tests.sender.conftest import Store, log_text


def text(body: str) -> dict[str, object]:
    return {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": body}}


def messages_path(sandbox: Sandbox) -> str:
    return f"/v26.0/{sandbox.phone_number_id}/messages"


def test_sync_client_asks_the_provider_on_every_request(sandbox: Sandbox, store: Store) -> None:
    asked = Counting(store.cached())
    auth = sender.TokenAuth(asked)
    with httpx.Client(auth=auth, base_url=sandbox.url) as client:
        for i in range(5):
            response = client.post(messages_path(sandbox), json=text(f"m{i}"))
            assert response.status_code == 200, response.text
    assert asked.calls == 5
    assert auth.rejections == auth.resends == auth.failures == 0
    assert all(r.token_fingerprint == tokenstore.fingerprint_of(store.initial) for r in sandbox.requests)


def test_sync_client_rotation_with_revocation_resends_once(sandbox: Sandbox, store: Store) -> None:
    inner = store.counting()
    provider = store.cached(inner)
    auth = sender.TokenAuth(provider)
    with httpx.Client(auth=auth, base_url=sandbox.url) as client:
        assert client.post(messages_path(sandbox), json=text("before")).status_code == 200
        new = store.rotate()  # new token in the store, the old one revoked at Graph; the cache still has the old
        response = client.post(messages_path(sandbox), json=text("during"))
        assert response.status_code == 200, response.text
        assert client.post(messages_path(sandbox), json=text("after")).status_code == 200
    assert sandbox.received_counts() == {"before": 1, "during": 1, "after": 1}
    statuses = [r.status for r in sandbox.requests]
    assert statuses == [200, 401, 200, 200]
    assert inner.calls == 2  # the first fetch and the one refetch
    assert (auth.rejections, auth.resends, auth.failures) == (1, 1, 0)
    assert sandbox.requests[-1].token_fingerprint == tokenstore.fingerprint_of(new)
    # the response the client saw is the resent request's
    assert response.request.headers["Authorization"] == f"Bearer {new}"


def test_sync_client_unchanged_token_raises_without_looping(
    sandbox: Sandbox, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    inner = store.counting()
    auth = sender.TokenAuth(store.cached(inner))
    with httpx.Client(auth=auth, base_url=sandbox.url) as client:
        assert client.post(messages_path(sandbox), json=text("ok")).status_code == 200
        sandbox.revoke_token(store.initial)  # revoked, and the store still holds it
        with pytest.raises(sender.AuthenticationError) as info:
            client.post(messages_path(sandbox), json=text("lost"))
    assert info.value.code == 190
    assert store.initial not in str(info.value) and store.initial not in repr(info.value)
    assert [r.status for r in sandbox.requests] == [200, 401]  # one attempt, no resend of the same token
    assert inner.calls == 2
    assert (auth.rejections, auth.resends, auth.failures) == (1, 0, 1)
    warnings = [r for r in caplog.records if r.name == "sender" and r.levelname == "WARNING"]
    assert any(tokenstore.fingerprint_of(store.initial) in r.getMessage() for r in warnings)
    assert store.initial not in log_text(caplog)


async def test_async_client_rotation_and_concurrent_rejections_share_one_refetch(
    sandbox: Sandbox, store: Store
) -> None:
    inner = store.counting()
    provider = store.cached(inner)
    auth = sender.TokenAuth(provider)
    async with httpx.AsyncClient(auth=auth, base_url=sandbox.url) as client:
        first = await client.post(messages_path(sandbox), json=text("warm"))
        assert first.status_code == 200
        store.rotate()
        responses = await asyncio.gather(*(client.post(messages_path(sandbox), json=text(f"c{i}")) for i in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    counts = sandbox.received_counts()
    assert counts == {"warm": 1, **{f"c{i}": 1 for i in range(20)}}
    # every in-flight request saw its 401 and was resent once, but the store was read only once more
    assert inner.calls == 2
    assert auth.resends == auth.rejections and 1 <= auth.resends <= 20
    assert auth.failures == 0
    assert sum(r.status == 401 for r in sandbox.requests) == auth.rejections


async def test_async_client_unchanged_token_raises(sandbox: Sandbox, store: Store) -> None:
    auth = sender.TokenAuth(store.cached())
    async with httpx.AsyncClient(auth=auth, base_url=sandbox.url) as client:
        sandbox.revoke_token(store.initial)
        with pytest.raises(sender.AuthenticationError):
            await client.post(messages_path(sandbox), json=text("lost"))
    assert [r.status for r in sandbox.requests] == [401]
    assert auth.failures == 1


def test_the_auth_header_replaces_a_static_one(sandbox: Sandbox, store: Store) -> None:
    """A library that sets ``Authorization`` on its client (pywa does) still sends our token."""
    placeholder = "static-" + canary()
    auth = sender.TokenAuth(store.cached())
    with httpx.Client(auth=auth, base_url=sandbox.url, headers={"Authorization": f"Bearer {placeholder}"}) as client:
        assert client.post(messages_path(sandbox), json=text("x")).status_code == 200
    assert sandbox.requests[0].token_fingerprint == tokenstore.fingerprint_of(store.initial)


def test_the_same_auth_serves_many_clients_and_the_provider_counts_once(sandbox: Sandbox, store: Store) -> None:
    provider = store.cached()
    a, b = sender.TokenAuth(provider), sender.TokenAuth(provider)
    assert a.stats is b.stats is tokenstore.auth_stats(provider)
    with httpx.Client(auth=a, base_url=sandbox.url) as one, httpx.Client(auth=b, base_url=sandbox.url) as two:
        assert one.post(messages_path(sandbox), json=text("1")).status_code == 200
        store.rotate()
        assert two.post(messages_path(sandbox), json=text("2")).status_code == 200
        assert one.post(messages_path(sandbox), json=text("3")).status_code == 200
    assert (a.resends, b.resends) == (0, 1)
    metrics = tokenstore.provider_metrics(provider)
    assert (metrics["rejections"], metrics["resends"], metrics["auth_failures"]) == (1, 1, 0)


# -- RedirectTransport --------------------------------------------------------------------------------------
def test_redirect_transport_points_a_pinned_client_at_the_sandbox(sandbox: Sandbox, store: Store) -> None:
    auth = sender.TokenAuth(store.cached())
    transport = sender.RedirectTransport(sandbox.url)
    with httpx.Client(auth=auth, transport=transport, base_url="https://graph.facebook.com/v26.0") as client:
        response = client.post(f"/{sandbox.phone_number_id}/messages", json=text("redirected"), params={"a": "b c"})
    assert response.status_code == 200, response.text
    assert response.request.url.host == "127.0.0.1"
    assert response.request.url.params["a"] == "b c"
    assert response.request.headers["Host"] == f"127.0.0.1:{sandbox.port}"
    assert sandbox.received_counts() == {"redirected": 1}
    assert "graph.facebook.com" in repr(transport) and sandbox.url in repr(transport)


async def test_redirect_transport_async_with_a_path_prefix(sandbox: Sandbox, store: Store) -> None:
    # a gateway that mounts Graph under a prefix: the sandbox accepts the version segment as the prefix here
    transport = sender.RedirectTransport(f"{sandbox.url}/v26.0", origin="https://graph.example.test")
    async with httpx.AsyncClient(
        auth=sender.TokenAuth(store.cached()), transport=transport, base_url="https://graph.example.test"
    ) as client:
        response = await client.post(f"/{sandbox.phone_number_id}/messages", json=text("prefixed"))
    assert response.status_code == 200, response.text
    assert response.request.url.path == f"/v26.0/{sandbox.phone_number_id}/messages"
    assert sandbox.received_counts() == {"prefixed": 1}


def test_redirect_transport_leaves_other_origins_alone() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={})

    transport = sender.RedirectTransport("http://127.0.0.1:9", transport=httpx.MockTransport(handler))
    with httpx.Client(transport=transport) as client:
        client.get("https://graph.facebook.com/v26.0/me?x=1")
        client.get("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1")
        client.get("http://graph.facebook.com/v26.0/me")  # another origin (scheme): not rewritten
        client.get("https://graph.facebook.com:443/v26.0/x")  # the default port is the same origin
    assert [str(u) for u in seen] == [
        "http://127.0.0.1:9/v26.0/me?x=1",
        "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
        "http://graph.facebook.com/v26.0/me",
        "http://127.0.0.1:9/v26.0/x",
    ]


def test_redirect_transport_refuses_to_send_the_token_in_clear() -> None:
    with pytest.raises(ValueError, match="plain http"):
        sender.RedirectTransport("http://gateway.example.com")
    with pytest.raises(ValueError, match="https"):
        sender.RedirectTransport("ftp://127.0.0.1")
    with pytest.raises(ValueError, match="origin"):
        sender.RedirectTransport("https://gateway.example.com", origin="graph.facebook.com")
    with pytest.raises(TypeError):
        sender.RedirectTransport("https://gateway.example.com", transport=object())  # type: ignore[arg-type]
    sender.RedirectTransport("https://gateway.example.com")  # https anywhere is fine


async def test_redirect_transport_refuses_the_wrong_mode() -> None:
    sync_only = sender.RedirectTransport("http://127.0.0.1:9", transport=httpx.HTTPTransport())
    with pytest.raises(RuntimeError, match="sync transport"):
        await sync_only.handle_async_request(httpx.Request("GET", "https://graph.facebook.com/"))
    sync_only.close()
    async_only = sender.RedirectTransport("http://127.0.0.1:9", transport=httpx.AsyncHTTPTransport())
    with pytest.raises(RuntimeError, match="async transport"):
        async_only.handle_request(httpx.Request("GET", "https://graph.facebook.com/"))
    await async_only.aclose()

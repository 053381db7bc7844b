"""Token injection: asked on every request, refetched once on 190, resent only when it changed, no loops, one
refetch for many concurrent 401s; rotation with revocation mid-stream loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import sender
from sender import AuthenticationError, InvalidRequest, TokenAuth
from sender.sandbox import Sandbox
from tests.contract import assert_clean, canary
from tests.sender.conftest import TO, Store, log_text, make_async_sender, make_sender
from tokenstore import CachingProvider, Token, TokenProvider
from tokenstore.backends.file import FileBackend

N = 200


def test_provider_is_asked_on_every_request(sandbox: Sandbox, store: Store) -> None:
    raw = store.counting()  # no cache: every call reaches the store
    with make_sender(sandbox, raw) as client:
        for i in range(5):
            client.send_text(TO, f"m{i}")
    assert raw.calls == 5


def test_cached_provider_is_asked_every_request_but_the_store_once(sandbox: Sandbox, store: Store) -> None:
    raw = store.counting()
    cached = store.cached(raw)
    with make_sender(sandbox, cached) as client:
        for i in range(20):
            client.send_text(TO, f"m{i}")
    assert raw.calls == 1 and cached.stats.hits >= 19


def _rotation_run(sandbox: Sandbox, store: Store, client: sender.Sender) -> list[sender.SendResult]:
    done = 0
    lock = threading.Lock()
    rotated = threading.Event()

    def one(i: int) -> sender.SendResult:
        nonlocal done
        if i >= N // 2 + 16:  # the tail is sent after the revoke, however slow the rotation is on a busy machine
            assert rotated.wait(30)
        result = client.send_text(TO, f"m{i}")
        with lock:
            done += 1
            rotate_now = done == N // 2
        if rotate_now:  # mid-stream, while the other workers keep sending
            store.rotate(revoke_old=True)
            rotated.set()
        return result

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(N)))
    assert rotated.is_set()
    return results


def test_rotation_with_revocation_mid_stream_sync(sandbox: Sandbox, store: Store) -> None:
    raw = store.counting()
    with make_sender(sandbox, store.cached(raw)) as client:
        results = _rotation_run(sandbox, store, client)
        new_fp = FileBackend(store.path).get_token().fingerprint
        assert client.auth.resends >= 1
    counts = sandbox.received_counts()
    assert counts == {f"m{i}": 1 for i in range(N)}, "every message delivered exactly once"
    assert len({r.message_id for r in results}) == N
    assert results[-1].token_fingerprint == new_fp
    rejected = [r for r in sandbox.requests if r.status == 401]
    assert rejected and all(r.code == 190 for r in rejected)
    assert len(sandbox.requests) == N + len(rejected)  # each rejection resent once, nothing else
    assert raw.calls == 2, "the concurrent 401s shared one refetch"


async def test_rotation_with_revocation_mid_stream_async(sandbox: Sandbox, store: Store) -> None:
    raw = store.counting()
    gate = asyncio.Semaphore(16)
    done = 0
    rotated = asyncio.Event()

    async with make_async_sender(sandbox, store.cached(raw)) as client:

        async def one(i: int) -> sender.SendResult:
            nonlocal done
            if i >= N // 2 + 32:  # the tail goes out after the revoke, however slow the rotation is
                await asyncio.wait_for(rotated.wait(), 30)
            async with gate:
                result = await client.send_text(TO, f"a{i}")
            done += 1
            if done == N // 2:
                await asyncio.to_thread(store.rotate, revoke_old=True)
                rotated.set()
            return result

        results = await asyncio.gather(*(one(i) for i in range(N)))
    assert sandbox.received_counts() == {f"a{i}": 1 for i in range(N)}
    assert len({r.message_id for r in results}) == N
    assert any(r.status == 401 for r in sandbox.requests)
    assert raw.calls == 2


def test_rejected_unchanged_token_raises_after_one_refetch(
    sandbox: Sandbox, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    raw = store.counting()
    with make_sender(sandbox, store.cached(raw)) as client:
        client.send_text(TO, "before")
        sandbox.revoke_token(store.initial)  # revoked at Meta, but nobody rotated the store
        with pytest.raises(AuthenticationError) as info:
            client.send_text(TO, "after")
    error = info.value
    assert error.code == 190 and error.subcode == 460 and error.http_status == 401 and not error.retryable
    assert "still holds it" in str(error) and error.fbtrace_id
    assert raw.calls == 2  # the first fetch, and exactly one refetch
    assert [r.status for r in sandbox.requests] == [200, 401]  # no resend, no loop
    assert sandbox.received_counts() == {"before": 1}
    for text in (str(error), repr(error), log_text(caplog)):
        assert_clean(text, store.initial)


async def test_rejected_unchanged_token_raises_after_one_refetch_async(sandbox: Sandbox, store: Store) -> None:
    raw = store.counting()
    sandbox.revoke_token(store.initial)
    async with make_async_sender(sandbox, store.cached(raw)) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.send_text(TO, "after")
    assert info.value.code == 190
    assert raw.calls == 2
    assert [r.status for r in sandbox.requests] == [401]


def test_refetched_token_rejected_too_raises_without_loop(sandbox: Sandbox, store: Store) -> None:
    raw = store.counting()
    with make_sender(sandbox, store.cached(raw)) as client:
        client.send_text(TO, "ok")
        sandbox.revoke_token(store.initial)
        store.write(canary())  # a new value Graph has never seen
        with pytest.raises(AuthenticationError, match="and so was the one refetched"):
            client.send_text(TO, "x")
    assert [r.status for r in sandbox.requests] == [200, 401, 401]
    assert raw.calls == 2


def test_many_concurrent_401s_share_one_refetch(sandbox: Sandbox, store: Store) -> None:
    raw = store.counting()
    with make_sender(sandbox, store.cached(raw)) as client:
        client.send_text(TO, "warm")  # the cache now holds the old token
        store.rotate(revoke_old=True)
        barrier = threading.Barrier(24)

        def burst(i: int) -> str:
            barrier.wait()
            return client.send_text(TO, f"b{i}").message_id

        with ThreadPoolExecutor(max_workers=24) as pool:
            ids = list(pool.map(burst, range(24)))
    assert len(set(ids)) == 24
    assert raw.calls == 2
    assert sandbox.received_counts() == {"warm": 1, **{f"b{i}": 1 for i in range(24)}}


def test_rotation_picked_up_within_ttl_without_a_401(sandbox: Sandbox, store: Store) -> None:
    from tests.contract import FakeClock

    clock = FakeClock()
    cached = CachingProvider(FileBackend(store.path), store.cached().policy, clock=clock)
    with make_sender(sandbox, cached) as client:
        client.send_text(TO, "one")
        new = store.rotate(revoke_old=False)  # Meta's refresh: the old token stays valid
        clock.advance(301)
        result = client.send_text(TO, "two")
    assert result.token_fingerprint == sender._auth.Token(new, source="x").fingerprint
    assert all(r.status == 200 for r in sandbox.requests)


@pytest.mark.parametrize(("timed", "transport"), [(False, "urllib3"), (True, "urllib3"), (False, "httpx")])
def test_appsecret_proof(tmp_path, caplog: pytest.LogCaptureFixture, timed: bool, transport: str) -> None:  # type: ignore[no-untyped-def]
    with Sandbox(require_appsecret_proof=True) as sandbox:
        token = sandbox.issue_token(value=canary())
        (tmp_path / "t").write_text(token)
        secret_path = tmp_path / "secret"
        secret_path.write_text(sandbox.app_secret)
        provider = FileBackend(tmp_path / "t")
        with make_sender(sandbox, provider) as plain:
            with pytest.raises(InvalidRequest, match="appsecret_proof"):
                plain.send_text(TO, "no proof")
        mode = "timed" if timed else True
        with make_sender(
            sandbox, provider, app_secret=FileBackend(secret_path), appsecret_proof=mode, sync_transport=transport
        ) as client:
            assert client.transport_name == transport
            assert client.send_text(TO, "with proof").message_id
        secret_path.write_text("0" * 32)
        with make_sender(sandbox, provider, app_secret=FileBackend(secret_path)) as wrong:
            with pytest.raises(InvalidRequest, match="Invalid appsecret_proof"):
                wrong.send_text(TO, "wrong proof")
        paths = [r.path for r in sandbox.requests]
    assert sandbox.received_counts() == {"with proof": 1}
    assert "appsecret_proof=[redacted]" in paths[1]
    # httpx logs each request line at INFO, urllib3 at DEBUG: both redacted
    logger = "httpx" if transport == "httpx" else "urllib3.connectionpool"
    logged = [r.getMessage() for r in caplog.records if r.name == logger]
    assert any("appsecret_proof=[redacted]" in line for line in logged)
    assert not any(re.search(r"appsecret_proof=[0-9a-f]{64}", line) for line in logged)
    assert ("appsecret_time=" in paths[1]) is timed


def test_token_auth_works_on_a_plain_httpx_client(sandbox: Sandbox, store: Store) -> None:
    auth = TokenAuth(store.cached())
    with httpx.Client(auth=auth, base_url=sandbox.url) as http:
        response = http.post(
            f"/v26.0/{sandbox.phone_number_id}/messages",
            json=sender.text_message(TO, "raw httpx"),
        )
    assert response.status_code == 200
    assert response.json()["messages"][0]["id"].startswith("wamid.")


def test_a_token_a_header_cannot_carry_is_refused_without_echo(sandbox: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Odd(TokenProvider):
        source = "test:odd"

        def get_token(self) -> Token:
            return Token(canary() + "\x00tail", source=self.source)

    provider = Odd()
    value = provider.get_token().reveal()
    with make_sender(sandbox, provider) as client, pytest.raises(AuthenticationError) as info:
        client.send_text(TO, "x")
    assert "characters an HTTP header cannot carry" in str(info.value)
    assert_clean(str(info.value) + repr(info.value), value, value.split("\x00")[0])
    assert sandbox.requests == []

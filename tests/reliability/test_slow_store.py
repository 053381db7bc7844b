"""A slow or hanging store does not block the sends that hit the cache.

The fault proxy holds every connection to OpenBao without answering (the store hangs; the backend gives up
after its timeout). In the refresh-ahead window the cache starts one refresh in the background (a thread for
Sender, a task for AsyncSender) and every send keeps getting the cached token at once; when the refresh fails
the token is kept (it is still within its TTL) and the store is not asked again before the backoff. Once the
store answers again the next refresh picks up a rotated token, still without blocking a send. Past the TTL
with the store still hanging, a send waits at most the backend's timeout (one fetch shared by all the
senders), then gets the stale token.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from sender import SendResult
from tests.contract import FakeClock
from tests.reliability.conftest import (
    TO,
    VaultStore,
    arun_stream,
    assert_delivered_once,
    cache_policy,
    make_async_sender,
    make_sender,
    run_stream,
)
from tests.servers import wait_until
from tokenstore import CachePolicy, CachingProvider, fingerprint_of

pytestmark = pytest.mark.backend("vault")

TIMEOUT = 1.0  # the backend's timeout: how long a refresh hangs before it gives up
FAST = TIMEOUT / 2  # a send that hit the cache must take far less than a hung store call


def _policy() -> CachePolicy:
    return cache_policy(ttl=10, refresh_ahead=5, max_stale=60, backoff_initial=1, backoff_max=4)


def test_hanging_store_does_not_block_sends_that_hit_the_cache(store: VaultStore) -> None:
    clock = FakeClock()
    raw = store.counted(timeout=TIMEOUT)
    provider = CachingProvider(raw, _policy(), clock=clock, rand=lambda: 0.0)
    initial = fingerprint_of(store.initial)
    with make_sender(store.sandbox, provider) as client:

        def send(text: str) -> SendResult:
            return client.send_text(TO, text)

        send("warm")
        store.proxy.hang()
        clock.advance(6)  # in the refresh-ahead window (the last 5 s of the 10 s TTL)
        during = run_stream(send, [f"h{i}" for i in range(60)])
        assert all(o.ok for o in during)
        assert max(o.seconds for o in during) < FAST, "a send waited for the hanging store"
        assert {o.result.token_fingerprint for o in during if o.result} == {initial}
        assert raw.calls == 2, "one refresh, in the background, for all those sends"
        assert provider.stats.refreshes == 0

        wait_until(lambda: provider.stats.backend_errors == 1, timeout=TIMEOUT + 5, what="the refresh to give up")
        after = run_stream(send, [f"k{i}" for i in range(20)])
        assert all(o.ok for o in after) and max(o.seconds for o in after) < FAST
        assert raw.calls == 2  # backing off: no new refresh yet

        # past the TTL with the store still hanging: one fetch (shared), bounded by the backend's timeout
        clock.advance(5)
        started = time.monotonic()
        beyond = run_stream(send, [f"s{i}" for i in range(8)])
        took = time.monotonic() - started
        assert all(o.ok for o in beyond)
        assert {o.result.token_fingerprint for o in beyond if o.result} == {initial}  # the stale token
        assert TIMEOUT * 0.8 <= took < TIMEOUT + 2.0
        assert raw.calls == 3 and provider.stats.stale_served >= 1

        # the store answers again, with a rotated token (Meta's refresh: the old one stays valid for now)
        store.proxy.heal()
        new = store.rotate(revoke_old=False)
        provider.invalidate()  # an operator's nudge (or wait for the TTL): the next send fetches at once
        assert client.send_text(TO, "n0").token_fingerprint == fingerprint_of(new)
    assert_delivered_once(
        store.sandbox,
        ["warm", *(o.text for o in during), *(o.text for o in after), *(o.text for o in beyond), "n0"],
    )


def test_refresh_ahead_picks_up_a_rotation_in_the_background(store: VaultStore) -> None:
    """After a slow store recovers, the refresh-ahead window rotates the token without any send waiting."""
    clock = FakeClock()
    raw = store.counted(timeout=TIMEOUT)
    provider = CachingProvider(raw, _policy(), clock=clock, rand=lambda: 0.0)
    with make_sender(store.sandbox, provider) as client:
        client.send_text(TO, "warm")
        new = store.rotate(revoke_old=False)
        raw.hold()  # the store is slow: the refresh waits until released
        clock.advance(6)
        outcomes = run_stream(lambda text: client.send_text(TO, text), [f"r{i}" for i in range(40)])
        assert all(o.ok for o in outcomes) and max(o.seconds for o in outcomes) < FAST
        assert raw.calls == 2 and raw.waiting == 1  # the refresh is still held
        raw.release()
        wait_until(lambda: provider.stats.refreshes == 1, timeout=5, what="the background refresh")
        assert client.send_text(TO, "after").token_fingerprint == fingerprint_of(new)
    assert raw.calls == 2
    assert_delivered_once(store.sandbox, ["warm", *(o.text for o in outcomes), "after"])


async def test_hanging_store_does_not_block_async_sends_that_hit_the_cache(store: VaultStore) -> None:
    clock = FakeClock()
    raw = store.counted(timeout=TIMEOUT)
    provider = CachingProvider(raw, _policy(), clock=clock, rand=lambda: 0.0)
    initial = fingerprint_of(store.initial)
    async with make_async_sender(store.sandbox, provider) as client:

        async def send(text: str) -> SendResult:
            return await client.send_text(TO, text)

        await send("warm")
        store.proxy.hang()
        clock.advance(6)
        during = await arun_stream(send, [f"h{i}" for i in range(100)], concurrency=16)
        assert all(o.ok for o in during)
        assert max(o.seconds for o in during) < FAST, "a send waited for the hanging store"
        assert {o.result.token_fingerprint for o in during if o.result} == {initial}
        assert raw.calls == 2, "one refresh, in a background task, for all those sends"

        deadline = time.monotonic() + TIMEOUT + 5
        while provider.stats.backend_errors < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert provider.stats.backend_errors == 1
        store.proxy.heal()
        new = store.rotate(revoke_old=False)
        clock.advance(1)  # past the backoff: the next send starts a refresh, and is not kept waiting for it
        started = time.monotonic()
        first = await send("n0")
        assert time.monotonic() - started < FAST
        assert first.token_fingerprint == initial
        deadline = time.monotonic() + 5
        while provider.stats.refreshes < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert (await send("n1")).token_fingerprint == fingerprint_of(new)
        assert raw.calls == 3
    assert_delivered_once(store.sandbox, ["warm", *(o.text for o in during), "n0", "n1"])

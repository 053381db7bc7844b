"""Concurrent sends at a cold cache make exactly one call to the store.

The store call is held (a counting wrapper around the real vault backend) until every send is waiting on the
cache, so all of them really are concurrent misses; then it is released, and one read reaches OpenBao, which
counts it itself (the backend's Vault token has a use limit: OpenBao counts down the requests made with it).

* asyncio: 1,000 tasks through one AsyncSender;
* threads: 300 threads through one Sender - three times its connection pool (100 connections), so the sends
  queue for connections once the token is there, as in a real burst. (1,000 threads work too, but take 5-8 s
  of this 2-core machine's CPU, most of it thread start-up and DEBUG logging.)
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.reliability.conftest import (
    TO,
    VaultStore,
    assert_delivered_once,
    cache_policy,
    make_async_sender,
    make_sender,
)
from tokenstore import CachingProvider, fingerprint_of

pytestmark = pytest.mark.backend("vault")

TASKS = 1000
THREADS = 300
GATHER_TIMEOUT = 20.0  # seconds for all sends to reach the cache


def _check(store: VaultStore, calls: int, misses: int, results: list[object], count: int) -> None:
    # first what this test is about: one store call for all the concurrent misses
    assert misses == count, "every send must have been waiting on the cache before the store answered"
    assert calls == 1
    assert store.store_requests() == 1  # counted by OpenBao
    assert store.proxy.connections == 1
    # then that every send went out, once, with that token
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of {count} sends failed, e.g. {[repr(e) for e in errors[:2]]}"
    fingerprints = {getattr(r, "token_fingerprint", None) for r in results}
    assert fingerprints == {fingerprint_of(store.initial)}
    assert_delivered_once(store.sandbox, [f"t{i}" for i in range(count)])


async def test_thousand_concurrent_async_sends_at_a_cold_cache_make_one_store_call(store: VaultStore) -> None:
    raw = store.counted()
    raw.hold()
    provider = CachingProvider(raw, cache_policy(ttl=300))
    async with make_async_sender(store.sandbox, provider, timeout=30.0) as client:
        tasks = [asyncio.create_task(client.send_text(TO, f"t{i}")) for i in range(TASKS)]
        deadline = time.monotonic() + GATHER_TIMEOUT
        while provider.stats.misses < TASKS and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        misses = provider.stats.misses
        raw.release()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    _check(store, raw.calls, misses, list(results), TASKS)


def test_concurrent_threaded_sends_at_a_cold_cache_make_one_store_call(store: VaultStore) -> None:
    raw = store.counted()
    raw.hold()
    provider = CachingProvider(raw, cache_policy(ttl=300))
    results: list[object] = [None] * THREADS
    start = threading.Barrier(THREADS + 1)

    with make_sender(store.sandbox, provider, timeout=30.0) as client:

        def one(i: int) -> None:
            start.wait(GATHER_TIMEOUT)
            try:
                results[i] = client.send_text(TO, f"t{i}")
            except BaseException as exc:
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(THREADS)]
        for t in threads:
            t.start()
        start.wait(GATHER_TIMEOUT)
        deadline = time.monotonic() + GATHER_TIMEOUT
        while provider.stats.misses < THREADS and time.monotonic() < deadline:
            time.sleep(0.01)
        misses = provider.stats.misses
        raw.release()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "sends still running after 60 s"
    _check(store, raw.calls, misses, results, THREADS)

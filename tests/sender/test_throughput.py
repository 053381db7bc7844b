"""Backpressure in our own code: a fair bound on requests in flight, a queue timeout that says nothing was
sent, and no time in the queue reported as a connection failure or taken from the request's timeouts.

Load lives in bench/ (``bash bench/run --latency 200``); these tests are small and deterministic: the
sandbox holds a request for a fixed time and the queue is observed through the pool's counters.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import sender
from sender import ConnectFailed, QueueTimeout, SendError
from sender._pool import AsyncSlots, Slots, check_pool_sizes
from sender.sandbox import Sandbox
from tests.sender.conftest import TO, Sleeps, Store, make_async_sender, make_sender

ASYNC = ["native", "aiohttp", "httpx"]
SYNC = ["urllib3", "httpx"]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


async def await_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# -- the bound itself -----------------------------------------------------------------------------------------
def test_slots_are_first_come_first_served_without_barging() -> None:
    slots = Slots(1)
    assert slots.acquire(None)
    order: list[int] = []

    def waiter(i: int) -> None:
        assert slots.acquire(10)
        order.append(i)

    threads = []
    for i in range(5):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        wait_until(lambda i=i: slots.waiting == i + 1)  # queued in this order
    for i in range(5):
        slots.release()  # hands the slot to the longest waiter...
        assert not slots.acquire(0)  # ...so a newcomer cannot jump the queue
        wait_until(lambda i=i: len(order) == i + 1)
    slots.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert slots.busy == 0 and slots.waiting == 0


def test_slots_time_out_and_leave_the_queue() -> None:
    slots = Slots(1)
    assert slots.acquire(None)
    started = time.monotonic()
    assert not slots.acquire(0.05)
    assert time.monotonic() - started >= 0.04
    assert slots.waiting == 0 and slots.busy == 1
    slots.release()
    assert slots.acquire(0) and slots.busy == 1


async def test_async_slots_are_fair_time_out_and_survive_cancellation() -> None:
    slots = AsyncSlots(1)
    assert slots.try_acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        assert await slots.acquire(10)
        order.append(i)

    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(waiter(i)))
        await await_until(lambda i=i: slots.waiting == i + 1)
    # a waiter cancelled while queued leaves the queue; one handed a slot and then cancelled passes it on
    doomed = asyncio.create_task(slots.acquire(10))
    await await_until(lambda: slots.waiting == 4)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert slots.waiting == 3
    assert not await slots.acquire(0.01)  # times out, and leaves the queue
    assert slots.waiting == 3
    slots.release()  # handed to waiter 0, which has not run yet...
    tasks[0].cancel()  # ...and is cancelled: the slot must pass on to waiter 1
    await asyncio.sleep(0.01)
    assert order == [1] and tasks[0].cancelled()
    assert not slots.try_acquire()  # waiter 1 holds it; waiter 2 is queued
    slots.release()
    await asyncio.sleep(0.01)
    assert order == [1, 2] and slots.busy == 1 and slots.waiting == 0
    await asyncio.gather(*tasks, return_exceptions=True)


def test_pool_sizes_are_checked() -> None:
    assert check_pool_sizes(400, None, 60) == (400, 400, 60.0)
    assert check_pool_sizes(10, 5, None) == (10, 5, None)
    with pytest.raises(ValueError, match="must not exceed max_connections"):
        check_pool_sizes(10, 11, 1)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="max_connections"):
            check_pool_sizes(bad, None, 1)
    with pytest.raises(ValueError, match="queue_timeout"):
        check_pool_sizes(10, None, -1)


def test_default_pool_sustains_a_thousand_a_second_at_300_ms(store: Store) -> None:
    with sender.Sender(store.cached(), phone_number_id="1") as s:
        assert s.pool.max_connections >= 300 and s.pool.max_in_flight == s.pool.max_connections
        assert s.pool.queue_timeout == sender.DEFAULT_QUEUE_TIMEOUT


# -- queue timeout: nothing sent, never retried ---------------------------------------------------------------
@pytest.mark.parametrize("transport", ASYNC)
async def test_async_queue_timeout_sends_nothing(
    sandbox: Sandbox, store: Store, sleeps: Sleeps, transport: str
) -> None:
    async with make_async_sender(
        sandbox, store.cached(), sleeps, async_transport=transport, max_connections=1, queue_timeout=0.2
    ) as client:
        sandbox.hang_next(0.8)  # the first send holds the only slot for 0.8 s
        first = asyncio.create_task(client.send_text(TO, "first"))
        await await_until(lambda: client.pool.slots.busy == 1)
        with pytest.raises(QueueTimeout) as info:
            await client.send_text(TO, "queued")
        assert (await first).message_id
    error = info.value
    assert "nothing was sent" in str(error) and "max_in_flight" in str(error)
    assert error.attempts == 1 and error.retryable and not isinstance(error, ConnectFailed)
    assert sleeps.waits == []  # not retried
    assert sandbox.received_counts() == {"first": 1}


@pytest.mark.parametrize("transport", SYNC)
def test_sync_queue_timeout_sends_nothing(sandbox: Sandbox, store: Store, sleeps: Sleeps, transport: str) -> None:
    with (
        make_sender(
            sandbox, store.cached(), sleeps, sync_transport=transport, max_connections=1, queue_timeout=0.2
        ) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        assert client.transport_name == transport
        sandbox.hang_next(0.8)
        first = pool.submit(client.send_text, TO, "first")
        wait_until(lambda: client.pool.slots.busy == 1)
        with pytest.raises(QueueTimeout) as info:
            client.send_text(TO, "queued")
        assert first.result(10).message_id
    assert "nothing was sent" in str(info.value) and info.value.attempts == 1
    assert sleeps.waits == []
    assert sandbox.received_counts() == {"first": 1}


# -- waiting for a slot is not a connection failure and takes nothing from the timeouts -----------------------
#: every request is held 0.3 s; with one slot the fifth waits ~1.2 s in our queue: longer than the connect,
#: read and pool timeouts, none of which may fire
SLOW_TIMEOUT = httpx.Timeout(1.0, pool=0.1)


@pytest.mark.parametrize("transport", ASYNC)
async def test_async_queue_wait_is_not_a_connect_failure(
    sandbox: Sandbox, store: Store, sleeps: Sleeps, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    async with make_async_sender(
        sandbox, store.cached(), sleeps, async_transport=transport, max_connections=1, timeout=SLOW_TIMEOUT
    ) as client:
        sandbox.hang_next(0.3, count=5)
        results = await asyncio.gather(*(client.send_text(TO, f"m{i}") for i in range(5)), return_exceptions=True)
    assert [type(r).__name__ for r in results if isinstance(r, BaseException)] == []
    assert all(r.attempts == 1 for r in results if isinstance(r, sender.SendResult))
    assert sleeps.waits == [] and "retrying" not in caplog.text and "ConnectFailed" not in caplog.text
    assert sandbox.received_counts() == {f"m{i}": 1 for i in range(5)}


@pytest.mark.parametrize("transport", SYNC)
def test_sync_queue_wait_is_not_a_connect_failure(
    sandbox: Sandbox, store: Store, sleeps: Sleeps, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    with (
        make_sender(
            sandbox, store.cached(), sleeps, sync_transport=transport, max_connections=1, timeout=SLOW_TIMEOUT
        ) as client,
        ThreadPoolExecutor(5) as pool,
    ):
        sandbox.hang_next(0.3, count=5)
        futures = [pool.submit(client.send_text, TO, f"m{i}") for i in range(5)]
        results: list[object] = []
        for f in futures:
            try:
                results.append(f.result(30))
            except SendError as exc:
                results.append(exc)
    assert [r for r in results if isinstance(r, SendError)] == []
    assert sleeps.waits == [] and "retrying" not in caplog.text and "ConnectFailed" not in caplog.text
    assert sandbox.received_counts() == {f"m{i}": 1 for i in range(5)}


# -- one pool shared by several senders (the seam for tenants and several numbers) -----------------------------
async def test_senders_share_one_async_pool_and_its_bound(sandbox: Sandbox, store: Store) -> None:
    async with sender.AsyncConnectionPool(max_connections=2) as pool:
        a = make_async_sender(sandbox, store.cached(), pool=pool)
        b = make_async_sender(sandbox, store.cached(), pool=pool)
        assert a.pool is b.pool is pool and a.transport_name == pool.transport_name
        await asyncio.gather(a.send_text(TO, "from a"), b.send_text(TO, "from b"))
        await a.aclose()  # a sender does not close a pool it was given
        assert not pool.closed
        assert (await b.send_text(TO, "still open")).message_id
        await b.aclose()
    assert pool.closed
    assert sandbox.received_counts() == {"from a": 1, "from b": 1, "still open": 1}


def test_senders_share_one_sync_pool(sandbox: Sandbox, store: Store) -> None:
    with sender.ConnectionPool(max_connections=4) as pool:
        with make_sender(sandbox, store.cached(), pool=pool) as a:
            assert a.send_text(TO, "one").message_id
        assert not pool.closed
        with make_sender(sandbox, store.cached(), pool=pool) as b:
            assert b.send_text(TO, "two").message_id
    assert pool.closed
    with pytest.raises(ValueError, match="pool= replaces max_connections"):
        sender.Sender(store.cached(), phone_number_id="1", pool=pool, max_connections=5)


def test_pool_options_from_config(store: Store, tmp_path: object) -> None:
    from tokenstore import ConfigError

    config = {
        "whatsapp": {"phone_number_id": "1", "max_connections": 600, "max_in_flight": 500, "queue_timeout": 5},
        "token": {"backend": "file", "file": {"path": str(store.path)}},
    }
    settings = sender.settings_from_config(config)
    assert (settings.max_connections, settings.max_in_flight, settings.queue_timeout) == (600, 500, 5.0)
    with sender.Sender.from_config(config) as s:
        assert (s.pool.max_connections, s.pool.max_in_flight, s.pool.queue_timeout) == (600, 500, 5.0)
    assert (
        sender.settings_from_config({"whatsapp": {"phone_number_id": "1", "queue_timeout": False}}).queue_timeout
        is None
    )
    with pytest.raises(ConfigError, match=r"whatsapp\.max_in_flight.*must not exceed max_connections"):
        sender.settings_from_config({"whatsapp": {"phone_number_id": "1", "max_in_flight": 401}})
    with pytest.raises(ConfigError, match=r"whatsapp\.max_connections"):
        sender.settings_from_config({"whatsapp": {"phone_number_id": "1", "max_connections": 0}})

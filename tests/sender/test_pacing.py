"""Optional client-side pacing per phone number and per recipient; off by default. A fake clock, no sleeps."""

from __future__ import annotations

import threading

import pytest

from sender import Pacer, PacingPolicy, RateLimited
from sender.sandbox import Sandbox
from tests.contract import FakeClock
from tests.sender.conftest import TO, Sleeps, Store, make_async_sender, make_sender


def test_off_by_default(sandbox: Sandbox, store: Store) -> None:
    with make_sender(sandbox, store.cached()) as client:
        assert client.pacer is None
    assert not PacingPolicy().enabled


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="messages_per_second"):
        PacingPolicy(messages_per_second=0)
    with pytest.raises(ValueError, match="per_recipient_interval"):
        PacingPolicy(per_recipient_interval=-1)
    with pytest.raises(ValueError, match="max_wait"):
        PacingPolicy(max_wait=float("nan"))


def test_per_number_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(PacingPolicy(messages_per_second=10), clock=clock)
    assert [round(pacer.reserve(f"r{i}"), 3) for i in range(4)] == [0.0, 0.1, 0.2, 0.3]
    clock.advance(1.0)
    assert pacer.reserve("later") == 0.0


def test_per_recipient_interval() -> None:
    clock = FakeClock()
    pacer = Pacer(PacingPolicy(per_recipient_interval=6), clock=clock)
    assert pacer.reserve("a") == 0.0
    assert pacer.reserve("b") == 0.0  # another user: no wait
    assert pacer.reserve("a") == 6.0
    assert pacer.reserve("a") == 12.0
    clock.advance(20)
    assert pacer.reserve("a") == 0.0
    assert pacer.reserve(None) == 0.0  # not a message to a user (a read receipt)


def test_too_long_a_wait_fails_fast_and_reserves_nothing() -> None:
    clock = FakeClock()
    pacer = Pacer(PacingPolicy(per_recipient_interval=6, max_wait=10), clock=clock)
    pacer.reserve("a")
    pacer.reserve("a")  # slot at +6
    with pytest.raises(RateLimited) as info:
        pacer.reserve("a")  # slot at +12 > max_wait
    assert info.value.retry_after == pytest.approx(12) and info.value.retryable and info.value.code is None
    clock.advance(6)
    assert pacer.reserve("a") == 6.0  # the refused attempt took no slot


def test_threads_get_distinct_slots() -> None:
    clock = FakeClock()
    pacer = Pacer(PacingPolicy(messages_per_second=100), clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        wait = pacer.reserve("x")
        with lock:
            waits.append(round(wait, 4))

    threads = [threading.Thread(target=take) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == [round(i * 0.01, 4) for i in range(50)]


def test_sender_waits_for_its_slot(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    clock = FakeClock()
    pacer = Pacer(PacingPolicy(per_recipient_interval=6, messages_per_second=80), clock=clock)
    with make_sender(sandbox, store.cached(), sleeps, pacing=pacer) as client:
        client.send_text(TO, "one")
        client.send_text("15550000000", "other user")
        client.send_text(TO, "two")
        client.mark_read("wamid.x")
    assert sleeps.waits == [pytest.approx(0.0125), pytest.approx(6.0), pytest.approx(6.0125)]
    assert sandbox.received_counts() == {"one": 1, "other user": 1, "two": 1}


async def test_async_sender_paces_too(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    clock = FakeClock()
    async with make_async_sender(
        sandbox, store.cached(), sleeps, pacing=Pacer(PacingPolicy(per_recipient_interval=6), clock=clock)
    ) as client:
        await client.send_text(TO, "a")
        await client.send_text(TO, "b")
    assert sleeps.waits == [6.0]


def test_policy_object_builds_a_pacer(sandbox: Sandbox, store: Store) -> None:
    with make_sender(sandbox, store.cached(), pacing=PacingPolicy(messages_per_second=1000)) as client:
        assert isinstance(client.pacer, Pacer)
        client.send_text(TO, "paced")

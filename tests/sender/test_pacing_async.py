"""asyncio pacing: wake-ups coalesced on a grid of ``granularity`` seconds, one loop timer per window.

The window logic runs on a fake loop (an injected clock, timers recorded, nothing sleeps); the rest on a real
event loop with small waits, a coarse grid and generous bounds, asserting order and counts, never durations.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sender
from sender import Pacer, PacingPolicy
from sender._pacing import DEFAULT_GRANULARITY, AsyncSlotWaiter, slot_waiter
from sender.sandbox import Sandbox
from tests.contract import FakeClock
from tests.sender.conftest import TO, Sleeps, Store, make_async_sender
from tokenstore import CachePolicy, ConfigError, TenantProviders
from tokenstore.backends.file import FileBackend


# -- the window logic, on a fake loop ---------------------------------------------------------------------------
class _Handle:
    def __init__(self, when: float, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """Just what AsyncSlotWaiter uses of a loop: time(), call_at() (recorded, never run by itself) and
    create_future() (futures of a real, idle loop)."""

    def __init__(self, real: asyncio.AbstractEventLoop, now: float = 100.0) -> None:
        self.real, self.now = real, now
        self.timers: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> _Handle:
        handle = _Handle(when, callback, args)
        self.timers.append(handle)
        return handle

    def create_future(self) -> asyncio.Future[None]:
        return self.real.create_future()

    def run_timers(self, until: float) -> None:
        """Advance the clock to ``until``, running due timers in order (as the loop would)."""
        while True:
            due = sorted((h for h in self.timers if not h.cancelled and h.when <= until), key=lambda h: h.when)
            if not due:
                break
            handle = due[0]
            self.timers.remove(handle)
            self.now = max(self.now, handle.when)
            handle.callback(*handle.args)
        self.now = until


@pytest.fixture
def fake() -> Iterator[FakeLoop]:
    real = asyncio.new_event_loop()
    try:
        yield FakeLoop(real)
    finally:
        real.close()


def add(waiter: AsyncSlotWaiter, loop: FakeLoop, delay: float, granularity: float) -> tuple[Any, float]:
    return waiter.add(loop, delay, granularity)  # type: ignore[arg-type]


def test_slots_in_one_window_share_one_timer_at_its_end(fake: FakeLoop) -> None:
    waiter = AsyncSlotWaiter()
    g = 0.005
    near = [add(waiter, fake, delay, g) for delay in (0.001, 0.002, 0.0049)]  # slots 100.001 .. 100.0049
    assert len(fake.timers) == 1 and fake.timers[0].when == pytest.approx(100.005)
    later = add(waiter, fake, 0.0051, g)  # the next window
    assert len(fake.timers) == 2 and fake.timers[1].when == pytest.approx(100.01)
    assert {end for _, end in near} == {fake.timers[0].when} and waiter.pending == 2

    fake.run_timers(100.0049)  # the latest slot of the window, but not its end: nobody wakes yet
    assert not any(f.done() for f, _ in near)
    fake.run_timers(100.005)
    assert all(f.done() for f, _ in near) and not later[0].done()
    fake.run_timers(100.01)
    assert later[0].done() and waiter.pending == 0


def test_a_wake_up_is_never_before_its_slot_and_less_than_a_window_after(fake: FakeLoop) -> None:
    waiter = AsyncSlotWaiter()
    rand = random.Random(17)
    for g in (0.005, 0.01, 0.003):
        for _ in range(500):
            fake.now = rand.uniform(0, 1e6)
            delay = rand.uniform(0, 0.05)
            slot = fake.now + delay
            _, end = add(waiter, fake, delay, g)
            assert slot <= end < slot + g


def test_float_rounding_of_the_grid_never_wakes_early(fake: FakeLoop) -> None:
    waiter = AsyncSlotWaiter()
    slot = 63488.100000000006  # ceil(slot / 0.005) * 0.005 rounds to just below it
    assert math.ceil(slot / 0.005) * 0.005 < slot
    fake.now = slot
    _, end = add(waiter, fake, 0.0, 0.005)
    assert end >= slot and end - slot < 0.005


def test_a_timer_run_early_by_the_clock_resolution_rearms(fake: FakeLoop) -> None:
    waiter = AsyncSlotWaiter()
    future, end = add(waiter, fake, 0.004, 0.005)
    (handle,) = fake.timers
    fake.timers.clear()
    fake.now = end - 1e-9  # asyncio runs a timer when its time is within the clock resolution
    handle.callback(*handle.args)
    assert not future.done()
    assert len(fake.timers) == 1 and fake.timers[0].when == end
    fake.run_timers(end)
    assert future.done()


def test_a_discarded_waiter_leaves_the_others_and_an_empty_window_disarms(fake: FakeLoop) -> None:
    waiter = AsyncSlotWaiter()
    (a, end), (b, _), (c, _) = (add(waiter, fake, d, 0.005) for d in (0.001, 0.002, 0.003))
    b.cancel()
    waiter.discard(end, b)
    fake.run_timers(end)
    assert a.result() is None and c.result() is None and b.cancelled()

    lone, lone_end = add(waiter, fake, 0.001, 0.005)
    (handle,) = fake.timers
    lone.cancel()
    waiter.discard(lone_end, lone)
    assert handle.cancelled and waiter.pending == 0
    waiter.discard(lone_end, lone)  # twice, or after the window fired: nothing happens


def test_far_windows_do_not_hold_up_near_ones(fake: FakeLoop) -> None:
    waiter = AsyncSlotWaiter()
    far, _ = add(waiter, fake, 6.0, 0.005)  # the same recipient again: Meta's ~6 s
    near, near_end = add(waiter, fake, 0.002, 0.005)
    assert len(fake.timers) == 2
    fake.run_timers(near_end)
    assert near.done() and not far.done()
    fake.run_timers(106.0)
    assert far.done()


# -- on a real event loop -------------------------------------------------------------------------------------
#: the tests' own guard against a hang (asyncio.wait_for), a timer that Timers leaves out
GUARD = 30.0


class Timers:
    """Counts the timers armed on a loop (asyncio.sleep arms one through call_later -> call_at), but for the
    tests' GUARD."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.whens: list[float] = []
        real = loop.call_at

        def call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            if when < loop.time() + GUARD - 1:
                self.whens.append(when)
            return real(when, callback, *args, **kwargs)

        loop.call_at = call_at  # type: ignore[method-assign]


class Ends:
    """Records the grid points the running loop's waiter hands out (its own view of the windows)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ends: list[float] = []
        waiter = slot_waiter(loop)
        real = waiter.add

        def add(*args: Any) -> tuple[asyncio.Future[None], float]:
            future, end = real(*args)
            self.ends.append(end)
            return future, end

        waiter.add = add  # type: ignore[method-assign]
        self._undo = lambda: delattr(waiter, "add")

    def __enter__(self) -> Ends:
        return self

    def __exit__(self, *exc: object) -> None:
        self._undo()


async def paced_tasks(pacer: Pacer, count: int, recipient: str | None = None) -> list[tuple[float, float, float]]:
    """``count`` tasks each reserve a slot and wait for it: (wait, slot, woken), times in loop time."""
    loop = asyncio.get_running_loop()

    async def one() -> tuple[float, float, float]:
        wait = pacer.reserve(recipient)
        slot = loop.time() + wait
        if wait > 0:
            await pacer.await_slot(wait)
        return wait, slot, loop.time()

    return list(await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), GUARD))


# a pacer on a clock that stands still hands out exact waits (0, 1/rate, 2/rate...) however slow the machine
async def test_a_burst_arms_one_timer_per_window_and_nobody_wakes_early() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(PacingPolicy(messages_per_second=1000, granularity=0.05), clock=FakeClock())
    timers = Timers(loop)
    with Ends(loop) as ends:
        woken = await paced_tasks(pacer, 40)  # 39 waits 1 ms apart on a 50 ms grid
    assert sum(1 for wait, _, _ in woken if wait > 0) == len(ends.ends) == 39
    assert len(timers.whens) == len(set(ends.ends)) <= 2  # one per window, not 39
    assert all(at >= slot for _, slot, at in woken)
    assert slot_waiter(loop).pending == 0


async def test_granularity_zero_is_one_exact_timer_per_send() -> None:
    pacer = Pacer(PacingPolicy(messages_per_second=1000, granularity=0), clock=FakeClock())
    timers = Timers(asyncio.get_running_loop())
    woken = await paced_tasks(pacer, 20)
    assert len(timers.whens) == 19  # asyncio.sleep per waiting send, as before
    assert all(at >= slot for _, slot, at in woken)


async def test_an_injected_sleep_gets_the_exact_wait() -> None:
    sleeps = Sleeps()
    pacer = Pacer(PacingPolicy(messages_per_second=10), clock=FakeClock())
    waits = [pacer.reserve("x") for _ in range(3)]
    for wait in waits[1:]:
        await pacer.await_slot(wait, sleeps.asleep)
    assert sleeps.waits == [pytest.approx(0.1), pytest.approx(0.2)]


async def test_cancelling_one_waiter_leaves_the_others_woken() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(PacingPolicy(messages_per_second=100, granularity=0.2), clock=FakeClock())
    pacer.reserve(None)  # the first slot is now: the next ones wait 10, 20, 30 ms
    timers = Timers(loop)

    async def one(wait: float) -> float:
        await pacer.await_slot(wait)
        return loop.time()

    with Ends(loop) as ends:
        waits = [pacer.reserve(None) for _ in range(3)]
        slots = [loop.time() + w for w in waits]
        tasks = [asyncio.create_task(one(w)) for w in waits]
        await asyncio.sleep(0)  # all three are waiting
        assert not any(t.done() for t in tasks)
        tasks[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        woken = await asyncio.wait_for(asyncio.gather(tasks[0], tasks[2]), GUARD)
    assert woken[0] >= slots[0] and woken[1] >= slots[2]
    assert len(timers.whens) == len(set(ends.ends)) <= 2
    assert slot_waiter(loop).pending == 0


async def test_far_slots_do_not_hold_up_near_ones_and_cancel_cleanly() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(PacingPolicy(per_recipient_interval=6, granularity=0.01), clock=FakeClock())
    assert pacer.reserve("a") == 0.0
    far_wait = pacer.reserve("a")
    assert far_wait == 6.0
    far = asyncio.create_task(pacer.await_slot(far_wait))
    await asyncio.sleep(0)
    near = await paced_tasks(Pacer(PacingPolicy(messages_per_second=200, granularity=0.01), clock=FakeClock()), 5)
    assert all(at >= slot for _, slot, at in near)
    assert not far.done()  # the near ones went first, long before the 6 s slot
    assert slot_waiter(loop).pending == 1
    far.cancel()
    with pytest.raises(asyncio.CancelledError):
        await far
    assert slot_waiter(loop).pending == 0


def test_each_event_loop_has_its_own_waiter() -> None:
    pacer = Pacer(PacingPolicy(messages_per_second=1000, granularity=0.01))  # shared by the loops below
    waiters: list[AsyncSlotWaiter] = []
    results: list[list[tuple[float, float, float]]] = []

    async def run() -> None:
        waiters.append(slot_waiter(asyncio.get_running_loop()))
        results.append(await paced_tasks(pacer, 10))

    asyncio.run(run())
    asyncio.run(run())
    thread = threading.Thread(target=lambda: asyncio.run(run()))
    thread.start()
    thread.join(30)
    assert len(results) == 3 and all(at >= slot for result in results for _, slot, at in result)
    assert len({id(w) for w in waiters}) == 3


# -- the senders ---------------------------------------------------------------------------------------------
@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays given to the coalescing waiter (any loop)."""
    delays: list[float] = []
    real = AsyncSlotWaiter.add

    def add(self: AsyncSlotWaiter, loop: Any, delay: float, granularity: float) -> Any:
        delays.append(delay)
        return real(self, loop, delay, granularity)

    monkeypatch.setattr(AsyncSlotWaiter, "add", add)
    return delays


async def test_async_sender_coalesces_by_default(sandbox: Sandbox, store: Store, spy: list[float]) -> None:
    pacer = Pacer(PacingPolicy(messages_per_second=200, granularity=0.01), clock=FakeClock())
    async with make_async_sender(sandbox, store.cached(), pacing=pacer) as client:
        await asyncio.gather(*(client.send_text(TO, f"m{i}") for i in range(5)))
    # every send but the first waited, on the coalescing waiter, for its exact reservation
    assert spy == [pytest.approx(0.005 * i) for i in range(1, 5)]
    assert sandbox.received_counts() == {f"m{i}": 1 for i in range(5)}


async def test_async_sender_with_an_injected_sleep_waits_exactly(
    sandbox: Sandbox, store: Store, sleeps: Sleeps, spy: list[float]
) -> None:
    pacer = Pacer(PacingPolicy(messages_per_second=10), clock=FakeClock())
    async with make_async_sender(sandbox, store.cached(), sleeps, pacing=pacer) as client:
        for i in range(3):
            await client.send_text(TO, f"m{i}")
    assert sleeps.waits == [pytest.approx(0.1), pytest.approx(0.2)] and spy == []


async def test_a_cancelled_paced_send_sends_nothing(sandbox: Sandbox, store: Store) -> None:
    policy = PacingPolicy(per_recipient_interval=6)
    async with make_async_sender(sandbox, store.cached(), pacing=policy) as client:
        await client.send_text(TO, "first")
        second = asyncio.create_task(client.send_text(TO, "second"))  # 6 s away
        other = await client.send_text("15550000000", "another user")  # not held up
        assert other.message_id and not second.done()
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
    assert sandbox.received_counts() == {"first": 1, "another user": 1}


async def test_async_tenant_sender_paces_the_same_way(sandbox: Sandbox, store: Store, spy: list[float]) -> None:
    tenants = TenantProviders(
        lambda tenant: FileBackend(store.path),
        numbers={sandbox.phone_number_id: "acme"},
        policy=CachePolicy(ttl=300, refresh_ahead=0, jitter=0),
    )
    policy = PacingPolicy(messages_per_second=10, granularity=0.02)  # a policy: each number its own pacer
    async with sender.AsyncTenantSender(tenants, base_url=sandbox.url, pacing=policy, owns_tenants=True) as router:
        bound = router.for_number(sandbox.phone_number_id)
        assert bound.pacer is not None and bound.pacer.policy.granularity == 0.02
        await asyncio.gather(*(bound.send_text(TO, f"t{i}") for i in range(3)))
    assert len(spy) == 2
    assert sandbox.received_counts() == {f"t{i}": 1 for i in range(3)}


# -- the policy and the config ---------------------------------------------------------------------------------
def test_policy_granularity_default_and_validation() -> None:
    assert PacingPolicy().granularity == DEFAULT_GRANULARITY == 0.01
    assert PacingPolicy(messages_per_second=80, granularity=0).granularity == 0
    for bad in (-0.001, float("inf"), float("nan"), True, "5ms"):
        with pytest.raises(ValueError, match=r"PacingPolicy\.granularity"):
            PacingPolicy(granularity=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"granularity must be at most 1 second .*0\.005 is 5 ms"):
        PacingPolicy(granularity=5)


def _config(store: Store, pacing: dict[str, Any]) -> dict[str, Any]:
    return {
        "whatsapp": {"phone_number_id": "1234567", "pacing": pacing},
        "token": {"backend": "file", "file": {"path": str(store.path)}},
    }


def test_config_granularity(store: Store) -> None:
    with sender.Sender.from_config(_config(store, {"messages_per_second": 1000, "granularity": 0.01})) as client:
        assert client.pacer is not None
        assert client.pacer.policy == PacingPolicy(messages_per_second=1000, granularity=0.01)
    with sender.Sender.from_config(_config(store, {"messages_per_second": 1000, "granularity": "0"})) as client:
        assert client.pacer is not None and client.pacer.policy.granularity == 0
    with sender.Sender.from_config(_config(store, {"messages_per_second": 1000})) as client:
        assert client.pacer is not None and client.pacer.policy.granularity == DEFAULT_GRANULARITY


@pytest.mark.parametrize(
    ("value", "message"),
    [("soon", "must be a number"), (-1, "must be at least 0"), (5, "must be at most 1"), (True, "number")],
)
def test_config_granularity_errors(tmp_path: Path, store: Store, value: object, message: str) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(store, {"messages_per_second": 80, "granularity": value})))
    with pytest.raises(ConfigError) as info:
        sender.Sender.from_config(path)
    assert str(info.value).startswith(f"{path}: whatsapp.pacing.granularity: ")
    assert message in str(info.value)

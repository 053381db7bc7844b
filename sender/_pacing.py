"""Optional client-side pacing, off by default: stay under Meta's limits instead of collecting 130429/131056.

* per phone number: at most ``messages_per_second`` sends (Meta's default throughput is 80 messages per
  second per business number, up to 1,000 when upgraded; beyond it the API answers 130429);
* per recipient: at least ``per_recipient_interval`` seconds between two messages to the same user (Meta
  allows about one message every 6 seconds to one user; beyond it the API answers 131056).

A :class:`Pacer` hands out send slots (a reservation, computed under a short lock, with no I/O) and the caller
sleeps until its slot - a thread sleeps, a task awaits - so one pacer can serve threads and tasks alike, and
one pacer can be shared by several senders of the same number. A slot further away than ``max_wait`` is not
reserved: :class:`~sender.RateLimited` is raised at once with ``retry_after`` set, and nothing is sent.

Threads sleep exactly until their slot. Tasks (:meth:`Pacer.await_slot`) are woken on a grid of
``granularity`` seconds: every send whose slot falls in the same window wakes together at the window's end
(never before its own slot, less than ``granularity`` later), with one event-loop timer per window rather
than one per message, so at 1,000 messages a second the loop wakes 100 times a second (10 ms) instead of
1,000 and the sends - and later their answers - come in small batches. The reservations are unchanged, so
the rate holds; ``granularity=0`` gives every send its own exact timer.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._exceptions import RateLimited

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncSlotWaiter", "Pacer", "PacingPolicy", "slot_waiter"]

#: the default grid of asyncio wake-ups, seconds (chosen in bench/latency.py against 0.005 and 0)
DEFAULT_GRANULARITY = 0.01
#: the coarsest grid accepted: a wake-up may come up to this much after its slot
MAX_GRANULARITY = 1.0


@dataclass(frozen=True, kw_only=True)
class PacingPolicy:
    """Client-side pacing limits. Immutable; ``None`` turns a limit off. Durations in seconds."""

    #: the most messages per second sent from the phone number (None: unpaced)
    messages_per_second: float | None = None
    #: the least time between two messages to the same recipient (None: unpaced; Meta's limit is ~6 s)
    per_recipient_interval: float | None = None
    #: the longest a send waits for its slot; beyond that it fails fast with RateLimited
    max_wait: float = 30.0
    #: asyncio senders wake on a grid of this many seconds: the sends whose slots fall in one window are woken
    #: together at its end, by one loop timer (never before their slot, < granularity after it); 0: one exact
    #: timer per send. Threads always sleep exactly.
    granularity: float = DEFAULT_GRANULARITY

    def __post_init__(self) -> None:
        for name in ("messages_per_second", "per_recipient_interval", "max_wait", "granularity"):
            value = getattr(self, name)
            if value is None and name not in ("max_wait", "granularity"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"PacingPolicy.{name} must be a finite number")
            if value < 0 or (name == "messages_per_second" and value == 0):
                raise ValueError(f"PacingPolicy.{name} must be positive")
        if self.granularity > MAX_GRANULARITY:
            raise ValueError(
                f"PacingPolicy.granularity must be at most {MAX_GRANULARITY:g} second (it is in seconds: "
                f"0.005 is 5 ms), got {self.granularity:g}"
            )

    @property
    def enabled(self) -> bool:
        return self.messages_per_second is not None or bool(self.per_recipient_interval)


class Pacer:
    """Hands out send slots under a :class:`PacingPolicy` (thread-safe; shared by sync and async senders).

    ``clock`` is monotonic seconds and injectable for tests.
    """

    #: recipients remembered before old entries are pruned
    PRUNE_AT = 10_000

    def __init__(self, policy: PacingPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._interval = 1.0 / policy.messages_per_second if policy.messages_per_second else 0.0
        self._next_number = -math.inf  # the earliest time the number may send next
        self._next_recipient: dict[str, float] = {}
        self.waited = 0.0  # total seconds of waits handed out (for metrics and tests)

    def reserve(self, recipient: str | None = None) -> float:
        """Reserve the next slot for a send to ``recipient``; return the seconds to wait for it (0: go now).

        Raises :class:`~sender.RateLimited` (nothing reserved) when the slot is more than ``max_wait`` away.
        """
        policy = self.policy
        per_recipient = policy.per_recipient_interval if recipient else None
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_number)
            if per_recipient:
                assert recipient is not None
                slot = max(slot, self._next_recipient.get(recipient, -math.inf))
            wait = slot - now
            if wait > policy.max_wait:
                what = "the number's send rate" if slot == self._next_number else "one recipient"
                raise RateLimited(
                    f"client-side pacing: the next slot for {what} is {wait:.1f}s away, more than "
                    f"pacing.max_wait ({policy.max_wait:g}s); nothing was sent",
                    retryable=True,
                    retry_after=wait,
                )
            if self._interval:
                self._next_number = slot + self._interval
            if per_recipient:
                assert recipient is not None
                self._next_recipient[recipient] = slot + per_recipient
                if len(self._next_recipient) > self.PRUNE_AT:
                    self._prune(now)
            self.waited += wait
            return wait

    async def await_slot(self, wait: float, sleep: Callable[[float], Awaitable[Any]] | None = None) -> None:
        """Wait (asyncio) for the slot :meth:`reserve` handed out ``wait`` seconds from now.

        With ``sleep`` left out (or ``asyncio.sleep``) and a ``granularity``, the wake-up is coalesced with
        every other send on this event loop whose slot falls in the same window (:class:`AsyncSlotWaiter`);
        an injected ``sleep`` (tests), or ``granularity=0``, waits exactly ``wait`` seconds with it. Cancelling
        the task raises :class:`asyncio.CancelledError` here and wakes or cancels no other waiter.
        """
        import asyncio  # lazily: importing sender never imports asyncio

        granularity = self.policy.granularity
        if not granularity or (sleep is not None and sleep is not asyncio.sleep):
            await (asyncio.sleep if sleep is None else sleep)(wait)
            return
        loop = asyncio.get_running_loop()
        waiter = slot_waiter(loop)
        future, end = waiter.add(loop, wait, granularity)
        try:
            await future
        except asyncio.CancelledError:
            waiter.discard(end, future)
            raise

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._next_recipient.items() if t <= now]:
            del self._next_recipient[key]


class _Window:
    """The sends woken together at one grid point: their futures and the one loop timer that wakes them."""

    __slots__ = ("futures", "handle")

    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self.handle = handle
        self.futures: list[asyncio.Future[None]] = []


class AsyncSlotWaiter:
    """Wakes the tasks of ONE event loop at their pacing slots, coalesced on a grid (see :meth:`add`).

    Shared by every pacer and sender on that loop (:func:`slot_waiter`), so senders of several numbers share
    the timers too. Not thread-safe, and need not be: only its loop's thread uses it.
    """

    def __init__(self) -> None:
        # grid point (loop time) -> its window; the waiter keeps no reference to its loop
        self._windows: dict[float, _Window] = {}

    def add(
        self, loop: asyncio.AbstractEventLoop, delay: float, granularity: float
    ) -> tuple[asyncio.Future[None], float]:
        """A future resolved at the first multiple of ``granularity`` (loop time) at or after ``delay`` seconds
        from now, and that grid point (to :meth:`discard` the future if its task is cancelled). The first
        future of a window arms the window's one timer; the others join it."""
        deadline = loop.time() + delay
        end = math.ceil(deadline / granularity) * granularity
        if end < deadline:  # float rounding of the product: never wake before the slot
            end += granularity
        window = self._windows.get(end)
        if window is None:
            window = self._windows[end] = _Window(loop.call_at(end, self._fire, loop, end))
        future: asyncio.Future[None] = loop.create_future()
        window.futures.append(future)
        return future, end

    def discard(self, end: float, future: asyncio.Future[None]) -> None:
        """Forget a cancelled waiter; a window left empty disarms its timer. The others are untouched."""
        window = self._windows.get(end)
        if window is None:  # the window already fired
            return
        try:
            window.futures.remove(future)
        except ValueError:
            return
        if not window.futures:
            window.handle.cancel()
            del self._windows[end]

    @property
    def pending(self) -> int:
        """Windows with a timer armed (for tests and the bench)."""
        return len(self._windows)

    def _fire(self, loop: asyncio.AbstractEventLoop, end: float) -> None:
        window = self._windows.get(end)
        if window is None:
            return
        if loop.time() < end:
            # asyncio runs a timer up to its clock resolution early: never wake a send before its slot
            window.handle = loop.call_at(end, self._fire, loop, end)
            return
        del self._windows[end]
        for future in window.futures:
            if not future.done():  # a cancelled waiter's future is done (cancelled): skip it
                future.set_result(None)


_waiters: weakref.WeakKeyDictionary[Any, AsyncSlotWaiter] = weakref.WeakKeyDictionary()
_waiters_lock = threading.Lock()
#: the loop looked up last and its waiter (one loop per process is the common case: no lock, no dict)
_last: tuple[weakref.ref[Any], AsyncSlotWaiter] | None = None


def slot_waiter(loop: asyncio.AbstractEventLoop) -> AsyncSlotWaiter:
    """The :class:`AsyncSlotWaiter` of ``loop`` (made on first use; forgotten with the loop)."""
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    with _waiters_lock:
        waiter = _waiters.get(loop)
        if waiter is None:
            waiter = _waiters[loop] = AsyncSlotWaiter()
        _last = (weakref.ref(loop), waiter)
    return waiter

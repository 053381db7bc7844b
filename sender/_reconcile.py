"""Settle a send whose outcome is unknown from the status webhooks, instead of resending blind.

The Cloud API has no idempotency key: a send that timed out after the request went out
(:class:`sender.OutcomeUnknown`) may or may not have been accepted. Give every send a
``biz_opaque_callback_data`` reference; Meta echoes it in each status webhook of that message. A
:class:`Reconciler` fed with the webhook events (``WebhookApp(reconciler=...)`` does it) matches them back::

    ref = reconciler.new_reference()
    try:
        s.send_text(to, "hi", biz_opaque_callback_data=ref)
    except sender.OutcomeUnknown:
        status = reconciler.wait(ref, timeout=120)      # or: await reconciler.await_status(ref, timeout=120)
        if status is None:   ...   # still unknown: no webhook yet (alert, or ask later)
        elif status.failed:  ...   # Meta took it but could not deliver it (status.error_code, error_title)
        else:                ...   # sent / delivered / read: it went out, do not resend

It keeps the most advanced status per reference (sent < delivered < read; failed is final), in memory,
bounded (``max_entries``, oldest first) and for ``ttl`` seconds. Several replicas: the status may reach
another process; feed your own store from the webhook glue's ``on_event`` hook with the same matching.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import threading
import time
from collections.abc import Callable, Iterable

from ._events import StatusEvent, WebhookEvent
from ._messages import CALLBACK_DATA_MAX

__all__ = ["STATUS_RANK", "Reconciler"]

#: how far along a status is; a lower-ranked status arriving late never replaces a higher one
STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


class Reconciler:
    """Matches status webhooks to sends by their ``biz_opaque_callback_data`` reference. Thread-safe."""

    def __init__(
        self, *, max_entries: int = 100_000, ttl: float = 7 * 24 * 3600, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._latest: collections.OrderedDict[str, tuple[float, StatusEvent]] = collections.OrderedDict()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[StatusEvent]]]] = {}

    @staticmethod
    def new_reference(prefix: str = "ref") -> str:
        """A fresh unique reference for ``biz_opaque_callback_data`` (``prefix-`` and 32 hex digits)."""
        reference = f"{prefix}-{secrets.token_hex(16)}"
        if len(reference) > CALLBACK_DATA_MAX:
            raise ValueError(f"the reference must fit biz_opaque_callback_data ({CALLBACK_DATA_MAX} characters)")
        return reference

    def observe(self, events: WebhookEvent | Iterable[WebhookEvent]) -> list[StatusEvent]:
        """Record the status events that carry a reference; returns those that advanced their reference."""
        items = [events] if isinstance(events, WebhookEvent) else list(events)
        advanced: list[StatusEvent] = []
        wake: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[StatusEvent], StatusEvent]] = []
        with self._lock:
            now = self._clock()
            for event in items:
                ref = event.biz_opaque_callback_data if isinstance(event, StatusEvent) else None
                if not ref:
                    continue
                assert isinstance(event, StatusEvent)
                current = self._latest.get(ref)
                if current is not None and STATUS_RANK.get(current[1].status or "", 0) >= STATUS_RANK.get(
                    event.status or "", 0
                ):
                    continue
                self._latest[ref] = (now, event)
                self._latest.move_to_end(ref)
                advanced.append(event)
                wake.extend((loop, fut, event) for loop, fut in self._waiters.pop(ref, []))
            self._prune(now)
            if advanced:
                self._changed.notify_all()
        for loop, fut, event in wake:
            loop.call_soon_threadsafe(_resolve, fut, event)
        return advanced

    def _prune(self, now: float) -> None:
        while len(self._latest) > self.max_entries:
            self._latest.popitem(last=False)
        while self._latest:
            ref, (at, _) = next(iter(self._latest.items()))
            if now - at <= self.ttl:
                break
            del self._latest[ref]

    def status(self, reference: str) -> StatusEvent | None:
        """The most advanced status seen for ``reference`` (None: none yet)."""
        with self._lock:
            entry = self._latest.get(reference)
            return None if entry is None else entry[1]

    def wait(self, reference: str, timeout: float) -> StatusEvent | None:
        """Block until a status for ``reference`` arrives (or ``timeout`` seconds pass: None)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while reference not in self._latest:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return self._latest[reference][1]

    async def await_status(self, reference: str, timeout: float) -> StatusEvent | None:
        """The awaitable :meth:`wait`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StatusEvent] = loop.create_future()
        with self._lock:
            entry = self._latest.get(reference)
            if entry is not None:
                return entry[1]
            self._waiters.setdefault(reference, []).append((loop, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            with self._lock:
                waiters = self._waiters.get(reference)
                if waiters is not None:
                    waiters[:] = [w for w in waiters if w[1] is not future]
                    if not waiters:
                        del self._waiters[reference]

    def __len__(self) -> int:
        with self._lock:
            return len(self._latest)


def _resolve(future: asyncio.Future[StatusEvent], event: StatusEvent) -> None:
    if not future.done():
        future.set_result(event)

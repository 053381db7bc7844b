"""Optional client-side pacing, off by default: stay under Meta's limits instead of collecting 130429/131056.

* per phone number: at most ``messages_per_second`` sends (Meta's default throughput is 80 messages per
  second per business number, up to 1,000 when upgraded; beyond it the API answers 130429);
* per recipient: at least ``per_recipient_interval`` seconds between two messages to the same user (Meta
  allows about one message every 6 seconds to one user; beyond it the API answers 131056).

A :class:`Pacer` hands out send slots (a reservation, computed under a short lock, with no I/O) and the caller
sleeps until its slot - a thread sleeps, a task awaits - so one pacer can serve threads and tasks alike, and
one pacer can be shared by several senders of the same number. A slot further away than ``max_wait`` is not
reserved: :class:`~sender.RateLimited` is raised at once with ``retry_after`` set, and nothing is sent.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._exceptions import RateLimited

__all__ = ["Pacer", "PacingPolicy"]


@dataclass(frozen=True, kw_only=True)
class PacingPolicy:
    """Client-side pacing limits. Immutable; ``None`` turns a limit off. Durations in seconds."""

    #: the most messages per second sent from the phone number (None: unpaced)
    messages_per_second: float | None = None
    #: the least time between two messages to the same recipient (None: unpaced; Meta's limit is ~6 s)
    per_recipient_interval: float | None = None
    #: the longest a send waits for its slot; beyond that it fails fast with RateLimited
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        for name in ("messages_per_second", "per_recipient_interval", "max_wait"):
            value = getattr(self, name)
            if value is None and name != "max_wait":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"PacingPolicy.{name} must be a finite number")
            if value < 0 or (name == "messages_per_second" and value == 0):
                raise ValueError(f"PacingPolicy.{name} must be positive")

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

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._next_recipient.items() if t <= now]:
            del self._next_recipient[key]

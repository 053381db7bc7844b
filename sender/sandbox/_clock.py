"""The sandbox's clock: wall-clock unix seconds (token ``issued_at``/``expires_at``), injectable for tests."""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Anything that returns the current unix time in seconds."""

    def __call__(self) -> float: ...


class SystemClock:
    """The real time."""

    def __call__(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to (``advance``/``set``): expire tokens without waiting."""

    def __init__(self, start: float | None = None) -> None:
        self._now = float(int(time.time()) if start is None else start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        with self._lock:
            self._now = float(when)

    def __repr__(self) -> str:
        return f"ManualClock({self._now:.0f})"

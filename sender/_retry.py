"""Which failed sends are tried again, and when: :class:`RetryPolicy`, an immutable value object.

Nothing is retried unless named. The defaults retry only what Meta documents as transient and known not to
have been processed (rate limits 4, 80007, 130429, the pair limit 131056, and the server codes 1, 2, 131000,
131016, 131057, 133004), an HTTP 503 without a Graph error object, and connection failures (the request never
left). A send whose request went out without an answer (read timeout, dropped connection) is not retried by
default: the Cloud API has no idempotency key, so a blind retry can deliver the message twice. The codes Meta
says never to retry (0, 3, 10, 190, 200-299, 100, 131008, 131009, 131026, 131031, 131042, 131047, 131048,
131049, 131050, 130497, 132xxx, 368) cannot be named at all. A rejected token (190) is not this policy's
business: the auth flow refetches and resends once when the store has a new token.

Waits are capped exponential backoff with equal jitter; a server hint (``Retry-After``) or the pair-limit
rule (131056: wait 4^n seconds before the n-th retry) raises the wait, and a wait longer than ``max_wait``
is not taken: the error is raised instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._exceptions import ConnectFailed, OutcomeUnknown, SendError

__all__ = ["DEFAULT_RETRY_CODES", "NEVER_RETRY_CODES", "RetryPolicy"]

#: Meta's "retry with backoff" codes
DEFAULT_RETRY_CODES: frozenset[int] = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004})

#: codes Meta says never to retry (plus 200-299 and 132000-132999, checked by range)
NEVER_RETRY_CODES: frozenset[int] = frozenset(
    {0, 3, 10, 190, 100, 368, 130497, 131008, 131009, 131026, 131031, 131042, 131047, 131048, 131049, 131050}
)

PAIR_RATE_LIMIT = 131056


def _never(code: int) -> bool:
    return code in NEVER_RETRY_CODES or 200 <= code <= 299 or 132000 <= code <= 132999


def _seconds(name: str, value: object, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"RetryPolicy.{name} must be a finite number of seconds")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"RetryPolicy.{name} must be {'positive' if positive else 'at least 0'}")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How a sender retries. Immutable; durations in seconds. ``RetryPolicy.disabled()`` never retries."""

    #: attempts in all, the first included (1 = no retry)
    max_attempts: int = 3
    #: Graph error codes that are retried
    codes: frozenset[int] = DEFAULT_RETRY_CODES
    #: HTTP statuses retried when the response carries no Graph error object (a proxy or load balancer page)
    statuses: frozenset[int] = frozenset({503})
    #: retry when the connection could not be made (the request never left: it cannot have been delivered)
    connect_errors: bool = True
    #: retry when the request went out but no answer came back (may send twice: off by default)
    unknown_outcome: bool = False
    #: the first wait; it doubles (``multiplier``) per retry up to ``backoff_max``
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    multiplier: float = 2.0
    #: fraction of each wait taken off at random (0: none; 0.5: between half and the full wait)
    jitter: float = 0.5
    #: for 131056 (pair rate limit) wait at least ``pair_limit_base ** n`` seconds before the n-th retry
    pair_limit_base: float = 4.0
    #: a single wait longer than this (from a hint) is not taken: the error is raised instead
    max_wait: float = 60.0
    #: give up when the next wait would take the time spent past this (None: no such limit)
    deadline: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be a whole number of at least 1")
        codes = frozenset(self.codes)
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int):
                raise ValueError(f"RetryPolicy.codes must be whole numbers, got {code!r}")
            if _never(code):
                raise ValueError(
                    f"RetryPolicy.codes: {code} must never be retried (Meta: the request was processed or will "
                    "fail the same way); 190 is handled by the token refetch, not by retries"
                )
        object.__setattr__(self, "codes", codes)
        statuses = frozenset(self.statuses)
        for status in statuses:
            if isinstance(status, bool) or not isinstance(status, int) or not (status == 429 or 500 <= status <= 599):
                raise ValueError(f"RetryPolicy.statuses: only 429 and 5xx can be retried, got {status!r}")
        object.__setattr__(self, "statuses", statuses)
        for name in ("backoff_initial", "backoff_max", "max_wait"):
            _seconds(name, getattr(self, name))
        _seconds("pair_limit_base", self.pair_limit_base)
        if self.deadline is not None:
            _seconds("deadline", self.deadline, positive=True)
        if self.backoff_max < self.backoff_initial:
            raise ValueError("RetryPolicy.backoff_max must be at least backoff_initial")
        if isinstance(self.multiplier, bool) or not isinstance(self.multiplier, (int, float)) or self.multiplier < 1:
            raise ValueError("RetryPolicy.multiplier must be a number of at least 1")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)) or not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def is_retryable(self, error: SendError) -> bool:
        """Whether this policy retries ``error`` at all (ignoring attempts and waits)."""
        if isinstance(error, ConnectFailed):
            return self.connect_errors
        if isinstance(error, OutcomeUnknown):
            return self.unknown_outcome
        if error.code is not None:
            return error.code in self.codes
        return error.http_status is not None and error.http_status in self.statuses

    def backoff(self, retry: int, rand: float) -> float:
        """The jittered exponential wait before retry number ``retry`` (1-based), ``rand`` uniform in [0, 1)."""
        base = min(self.backoff_max, self.backoff_initial * self.multiplier ** min(retry - 1, 64))
        return base * (1.0 - self.jitter * rand)

    def hint(self, error: SendError, retry: int) -> float:
        """The least wait the server asks for before retry number ``retry`` (0 when none)."""
        wait = 0.0
        if error.code == PAIR_RATE_LIMIT and self.pair_limit_base > 0:
            wait = self.pair_limit_base ** min(retry, 16)
        if error.retry_after is not None and error.retry_after > wait:
            wait = float(error.retry_after)
        return wait

    def next_wait(self, error: SendError, attempt: int, rand: float, elapsed: float = 0.0) -> float | None:
        """After ``attempt`` attempts failed with ``error``: seconds to wait before the next, or None to give up."""
        if attempt >= self.max_attempts or not self.is_retryable(error):
            return None
        wait = max(self.backoff(attempt, rand), self.hint(error, attempt))
        if wait > self.max_wait:
            return None
        if self.deadline is not None and elapsed + wait > self.deadline:
            return None
        return wait

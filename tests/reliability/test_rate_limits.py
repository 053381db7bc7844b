"""Bursts of rate limits (4, 80007, 130429, the 131056 pair limit) and of transient server errors (1, 2, 131000,
131016, 133004, a bare 503) in the middle of a stream of sends, and codes that must never be retried.

The sender's :class:`~sender.RetryPolicy` uses short waits here (milliseconds, really slept) so the bursts run
at full speed; the waits it asks for are recorded and checked against the policy. What must hold: every
message of a burst arrives exactly once (a refused request was not processed, so its retry cannot duplicate
it); a never-retry code is sent once and raised as its own error class; a send whose answer is lost after
the request went out is not retried (the Cloud API has no idempotency key).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

import sender
from sender import (
    InvalidRequest,
    OutcomeUnknown,
    PermissionDenied,
    PolicyBlocked,
    RateLimited,
    RecipientError,
    RetryPolicy,
    SendError,
    SendResult,
    ServerError,
    TemplateError,
)
from sender.sandbox import Sandbox
from tests.reliability.conftest import (
    TO,
    Outcome,
    VaultStore,
    arun_stream,
    assert_clean_errors,
    assert_delivered_once,
    cache_policy,
    make_async_sender,
    make_sender,
    run_stream,
)
from tokenstore import CachingProvider

pytestmark = pytest.mark.backend("vault")

N = 120
BURST_AT = 30


class Waits:
    """The sender's sleep: records each wait (and really sleeps it: they are milliseconds here)."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        import asyncio

        with self._lock:
            self.waits.append(seconds)
        await asyncio.sleep(seconds)


def policy(faults: int) -> RetryPolicy:
    """Enough attempts that a message hit by every fault of the burst still gets through; short waits."""
    return RetryPolicy(
        max_attempts=faults + 1, backoff_initial=0.002, backoff_max=0.016, jitter=0.5, pair_limit_base=0.05
    )


# (name, faults queued at once: (code, status, count) with code None for a bare HTTP status)
BURSTS: dict[str, list[tuple[int | None, int | None, int]]] = {
    "throughput 130429": [(130429, None, 12)],
    "pair limit 131056": [(131056, None, 6)],
    "app limits 4 and 80007": [(4, None, 4), (80007, None, 4)],
    "server 1, 2, 131000, 131016, 133004": [
        (1, None, 2),
        (2, None, 2),
        (131000, None, 3),
        (131016, None, 2),
        (133004, None, 2),
    ],
    "bare 503 pages": [(None, 503, 5)],
    "429 with Retry-After": [(130429, 429, 4)],
}


def _queue(sandbox: Sandbox, burst: list[tuple[int | None, int | None, int]]) -> Callable[[], None]:
    def queue() -> None:
        for code, status, count in burst:
            retry_after = 0.01 if status == 429 else None
            sandbox.fail_next(code, status=status, count=count, retry_after=retry_after)

    return queue


def _check_burst(
    sandbox: Sandbox,
    outcomes: list[Outcome],
    burst: list[tuple[int | None, int | None, int]],
    waits: Waits,
    retry: RetryPolicy,
) -> None:
    faults = sum(count for _, _, count in burst)
    assert all(o.ok for o in outcomes), [repr(o.error) for o in outcomes if not o.ok][:3]
    assert_delivered_once(sandbox, [o.text for o in outcomes])
    refused = [r for r in sandbox.requests if r.status != 200]
    assert len(refused) == faults, "every fault of the burst was met once"
    assert len(sandbox.requests) == len(outcomes) + faults  # each refusal retried once, nothing else
    assert sum(o.result.attempts - 1 for o in outcomes if o.result) == faults
    assert len(waits.waits) == faults
    codes = {code for code, _, _ in burst}
    for attempt_wait in waits.waits:
        assert attempt_wait <= max(
            retry.backoff_max, 0.05, 0.01
        )  # the policy's cap, the pair-limit or Retry-After hint
    if 131056 in codes:
        assert min(waits.waits) >= retry.pair_limit_base**2  # 4^n in production; pair_limit_base^n here
    if any(status == 429 for _, status, _ in burst):
        assert min(waits.waits) >= 0.01  # Retry-After honoured


@pytest.mark.parametrize("name", list(BURSTS))
def test_burst_mid_stream_is_retried_and_nothing_is_sent_twice(store: VaultStore, name: str) -> None:
    burst = BURSTS[name]
    retry = policy(sum(count for _, _, count in burst))
    waits = Waits()
    provider = CachingProvider(store.backend(), cache_policy(ttl=300))
    with make_sender(store.sandbox, provider, retry=retry, sleep=waits) as client:
        outcomes = run_stream(
            lambda text: client.send_text(TO, text),
            [f"m{i}" for i in range(N)],
            workers=4,
            after={BURST_AT: _queue(store.sandbox, burst)},
        )
    _check_burst(store.sandbox, outcomes, burst, waits, retry)


@pytest.mark.parametrize("name", ["throughput 130429", "server 1, 2, 131000, 131016, 133004"])
async def test_burst_mid_stream_async(store: VaultStore, name: str) -> None:
    burst = BURSTS[name]
    retry = policy(sum(count for _, _, count in burst))
    waits = Waits()
    provider = CachingProvider(store.backend(), cache_policy(ttl=300))
    async with make_async_sender(store.sandbox, provider, retry=retry, sleep=waits.asleep) as client:

        async def send(text: str) -> SendResult:
            return await client.send_text(TO, text)

        outcomes = await arun_stream(
            send, [f"m{i}" for i in range(N)], concurrency=16, after={BURST_AT: _queue(store.sandbox, burst)}
        )
    _check_burst(store.sandbox, outcomes, burst, waits, retry)


def test_exhausted_retries_raise_rate_limited_with_a_hint_and_nothing_was_delivered(store: VaultStore) -> None:
    retry = RetryPolicy(max_attempts=3, backoff_initial=0.002, backoff_max=0.016)
    waits = Waits()
    provider = CachingProvider(store.backend(), cache_policy(ttl=300))
    store.sandbox.fail_next(130429, count=3)
    with make_sender(store.sandbox, provider, retry=retry, sleep=waits) as client:
        with pytest.raises(RateLimited) as info:
            client.send_text(TO, "limited")
        client.send_text(TO, "later")
    assert info.value.attempts == 3 and info.value.retry_after is not None and info.value.retryable
    assert len(waits.waits) == 2
    assert_delivered_once(store.sandbox, ["later"])


# never retried: (code, the error class, a sandbox status override or None)
NEVER: list[tuple[int | None, type[SendError], int | None]] = [
    (100, InvalidRequest, None),
    (131008, InvalidRequest, None),
    (10, PermissionDenied, None),
    (200, PermissionDenied, None),
    (131026, RecipientError, None),
    (131047, RecipientError, None),
    (131048, PolicyBlocked, None),
    (368, PolicyBlocked, None),
    (132000, TemplateError, None),
    (132001, TemplateError, None),
    (None, ServerError, 500),  # a bare 500 page is not one of the statuses the policy retries
]


def test_never_retry_codes_mid_stream_are_sent_once(store: VaultStore) -> None:
    waits = Waits()
    retry = policy(len(NEVER))
    provider = CachingProvider(store.backend(), cache_policy(ttl=300))

    def queue() -> None:
        for code, _, status in NEVER:
            store.sandbox.fail_next(code, status=status)

    with make_sender(store.sandbox, provider, retry=retry, sleep=waits) as client:
        outcomes = run_stream(
            lambda text: client.send_text(TO, text), [f"n{i}" for i in range(60)], workers=1, after={20: queue}
        )
    failed = [o for o in outcomes if not o.ok]
    assert [type(o.error) for o in failed] == [cls for _, cls, _ in NEVER]  # one worker: in queue order
    for outcome, (code, _, status) in zip(failed, NEVER, strict=True):
        error = outcome.error
        assert isinstance(error, SendError)
        assert error.attempts == 1 and not error.retryable
        assert error.code == code and (status is None or error.http_status == status)
    assert waits.waits == []
    assert len(store.sandbox.requests) == 60  # one request per send: nothing retried
    assert_delivered_once(store.sandbox, [o.text for o in outcomes if o.ok])
    assert_clean_errors(outcomes, store.secrets)


@pytest.mark.parametrize("how", ["dropped", "timed out"])
def test_lost_answer_after_delivery_is_not_retried(store: VaultStore, how: str) -> None:
    """The request went out and Graph accepted the message, but the answer never came back: sending again could
    deliver it twice, so the sender raises OutcomeUnknown (the caller reconciles, e.g. by status webhooks)."""
    waits = Waits()
    provider = CachingProvider(store.backend(), cache_policy(ttl=300))
    timeout = httpx.Timeout(connect=2.0, read=0.3, write=2.0, pool=2.0)

    def queue() -> None:
        if how == "dropped":
            store.sandbox.drop_next(deliver=True)
        else:
            store.sandbox.hang_next(1.0, deliver=True)

    with make_sender(store.sandbox, provider, retry=policy(5), sleep=waits, timeout=timeout) as client:
        outcomes = run_stream(
            lambda text: client.send_text(TO, text), [f"u{i}" for i in range(30)], workers=1, after={10: queue}
        )
    failed = [o for o in outcomes if not o.ok]
    assert len(failed) == 1 and isinstance(failed[0].error, OutcomeUnknown), [repr(o.error) for o in failed]
    assert failed[0].error.attempts == 1
    assert waits.waits == []
    # the lost one was delivered, once; so was every other
    assert_delivered_once(store.sandbox, [o.text for o in outcomes])
    assert_clean_errors(outcomes, store.secrets)


def test_results_report_attempts(store: VaultStore) -> None:
    waits = Waits()
    provider = CachingProvider(store.backend(), cache_policy(ttl=300))
    store.sandbox.fail_next(131000, count=2)
    with make_sender(store.sandbox, provider, retry=policy(2), sleep=waits) as client:
        result: sender.SendResult = client.send_text(TO, "third time lucky")
    assert result.attempts == 3 and len(waits.waits) == 2
    assert waits.waits[1] >= waits.waits[0] * 0.5  # backoff grows (equal jitter takes off at most half)

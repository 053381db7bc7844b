"""RetryPolicy as a value object, and retries over real HTTP: only what was not delivered, with capped
exponential backoff and jitter, the pair-limit hint and Retry-After honoured; no blind retry after a request
may have been delivered. Sleeps are injected: nothing here waits for a backoff."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

import sender
from sender import ConnectFailed, OutcomeUnknown, RateLimited, RecipientError, RetryPolicy, ServerError
from sender.sandbox import Sandbox
from tests.sender.conftest import TO, Sleeps, Store, make_async_sender, make_sender
from tests.servers import free_port


# -- the value object -----------------------------------------------------------------------------------------
def test_frozen_and_keyword_only() -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[misc]
    assert RetryPolicy(max_attempts=2) == RetryPolicy(max_attempts=2)
    assert hash(RetryPolicy()) == hash(RetryPolicy())


def test_defaults_follow_the_design() -> None:
    policy = RetryPolicy()
    assert policy.codes == {1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004}
    assert policy.statuses == {503}
    assert policy.connect_errors is True and policy.unknown_outcome is False
    assert policy.max_attempts == 3
    assert RetryPolicy.disabled().max_attempts == 1


@pytest.mark.parametrize(
    "code", [0, 3, 10, 100, 190, 200, 250, 299, 368, 131026, 131047, 131048, 131049, 132000, 132016]
)
def test_never_retry_codes_are_refused(code: int) -> None:
    with pytest.raises(ValueError, match=f"{code} must never be retried"):
        RetryPolicy(codes=frozenset({130429, code}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": True},
        {"statuses": frozenset({400})},
        {"backoff_initial": -1},
        {"backoff_initial": 5, "backoff_max": 1},
        {"jitter": 1.5},
        {"multiplier": 0.5},
        {"max_wait": float("inf")},
        {"deadline": 0},
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_backoff_is_capped_exponential_with_jitter() -> None:
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=4, jitter=0.5, max_attempts=10)
    assert [policy.backoff(n, 0.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.backoff(3, 0.999) == pytest.approx(1.0, abs=0.01)  # at most half taken off
    error = RateLimited("x", code=130429)
    assert policy.next_wait(error, 1, 0.0) == 0.5
    assert policy.next_wait(error, 10, 0.0) is None  # out of attempts
    assert policy.next_wait(RecipientError("x", code=131026), 1, 0.0) is None  # not named
    assert RetryPolicy(deadline=1.0).next_wait(error, 1, 0.0, elapsed=0.8) is None


def test_hints() -> None:
    policy = RetryPolicy(max_attempts=5, max_wait=100)
    pair = RateLimited("x", code=131056)
    assert [policy.next_wait(pair, n, 0.0) for n in (1, 2, 3)] == [4.0, 16.0, 64.0]
    assert policy.next_wait(pair, 4, 0.0) is None  # 256 s is past max_wait: raise instead
    hinted = RateLimited("x", code=4, retry_after=7.5)
    assert policy.next_wait(hinted, 1, 0.0) == 7.5
    assert policy.next_wait(RateLimited("x", code=4, retry_after=500), 1, 0.0) is None


# -- over HTTP ------------------------------------------------------------------------------------------------
def test_rate_limit_retry_honours_backoff(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    sandbox.fail_next(130429, count=2)
    with make_sender(sandbox, store.cached(), sleeps, retry=RetryPolicy(backoff_initial=0.25, jitter=0.5)) as client:
        result = client.send_text(TO, "eventually")
    assert sleeps.waits == [0.25, 0.5]  # rand() = 0: the full exponential wait
    assert result.attempts == 3
    assert sandbox.received_counts() == {"eventually": 1}
    assert [r.code for r in sandbox.requests] == [130429, 130429, None]


def test_jitter_takes_off_at_most_the_fraction(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    sandbox.fail_next(130429, count=2)
    with make_sender(sandbox, store.cached(), sleeps, rand=lambda: 0.5, retry=RetryPolicy(jitter=0.5)) as client:
        client.send_text(TO, "x")
    assert sleeps.waits == [0.375, 0.75]


def test_pair_rate_limit_waits_4_to_the_n(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    sandbox.fail_next(131056, count=2)
    with make_sender(sandbox, store.cached(), sleeps) as client:
        assert client.send_text(TO, "pair").attempts == 3
        assert sleeps.waits == [4.0, 16.0]
        sandbox.fail_next(131056, count=3)
        with pytest.raises(RateLimited) as info:
            client.send_text(TO, "pair again")
    assert info.value.retry_after == 64.0  # 4^3: when to try this recipient again


def test_retry_after_header_is_honoured(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    sandbox.fail_next(4, retry_after=3)
    with make_sender(sandbox, store.cached(), sleeps) as client:
        client.send_text(TO, "x")
    assert sleeps.waits == [3.0]


def test_exhausted_retries_raise_with_the_attempts(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    sandbox.fail_next(130429, count=10)
    with make_sender(sandbox, store.cached(), sleeps) as client:
        with pytest.raises(RateLimited) as info:
            client.send_text(TO, "never")
    assert info.value.attempts == 3 and "after 3 attempts" in str(info.value)
    assert info.value.retry_after == 2.0  # the next backoff: a hint for the caller
    assert len(sleeps.waits) == 2 and len(sandbox.requests) == 3 and sandbox.received == []


def test_transient_server_codes_and_503_are_retried(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    with make_sender(sandbox, store.cached(), sleeps) as client:
        for code in (131000, 133004, 1, 2):
            sandbox.fail_next(code)
            assert client.send_text(TO, f"c{code}").attempts == 2
        sandbox.fail_next(status=503)
        assert client.send_text(TO, "s503").attempts == 2
        sandbox.fail_next(status=502)  # a bare 502 may come after the API acted: not retried
        with pytest.raises(ServerError):
            client.send_text(TO, "s502")


@pytest.mark.parametrize("code", [100, 131026, 131047, 131048, 132001, 368, 10])
def test_never_retried_codes_are_sent_once(sandbox: Sandbox, store: Store, sleeps: Sleeps, code: int) -> None:
    sandbox.fail_next(code, count=3)
    with make_sender(sandbox, store.cached(), sleeps) as client:
        with pytest.raises(sender.SendError) as info:
            client.send_text(TO, "once")
    assert info.value.code == code and info.value.attempts == 1
    assert len(sandbox.requests) == 1 and sleeps.waits == []


def test_timeout_after_the_request_went_out_is_not_retried(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    sandbox.hang_next(2.0, deliver=True)  # the API accepted it, the answer never comes in time
    with make_sender(sandbox, store.cached(), sleeps, timeout=httpx.Timeout(5.0, read=0.2)) as client:
        with pytest.raises(OutcomeUnknown) as info:
            client.send_text(TO, "maybe")
        assert "may have been processed" in str(info.value) and not info.value.retryable
        assert isinstance(info.value.__cause__, httpx.ReadTimeout)
        assert sandbox.received_counts() == {"maybe": 1} and sleeps.waits == []
        sandbox.clear_faults()
        assert client.send_text(TO, "next").message_id  # the sender is fine afterwards


def test_opting_into_unknown_outcome_retries_can_send_twice(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    """Why it is off by default: the first request was delivered, the retry delivers again."""
    sandbox.drop_next(deliver=True)
    with make_sender(sandbox, store.cached(), sleeps, retry=RetryPolicy(unknown_outcome=True)) as client:
        client.send_text(TO, "twice")
    assert sandbox.received_counts() == {"twice": 2}


def test_dropped_connection_after_delivery_is_outcome_unknown(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    sandbox.drop_next(deliver=True)
    with make_sender(sandbox, store.cached(), sleeps) as client:
        with pytest.raises(OutcomeUnknown):
            client.send_text(TO, "lost answer")
    assert sandbox.received_counts() == {"lost answer": 1}


def test_connect_errors_are_retried_then_raised(store: Store, sleeps: Sleeps) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    provider = store.cached()
    client = sender.Sender(provider, phone_number_id="1", base_url=closed, sleep=sleeps, rand=lambda: 0.0)
    with client, pytest.raises(ConnectFailed) as info:
        client.send_text(TO, "nowhere")
    assert info.value.attempts == 3 and info.value.retryable and len(sleeps.waits) == 2
    assert "nothing was sent" in str(info.value)


def test_connect_error_then_recovery(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    late = Sandbox(port=port)
    late.state.tokens.add(store.initial, app_id=late.app_id)

    def sleep_then_start(seconds: float) -> None:
        sleeps(seconds)
        late.start()  # the API comes back while we back off

    with sender.Sender(
        store.cached(), phone_number_id=late.phone_number_id, base_url=url, sleep=sleep_then_start, rand=lambda: 0.0
    ) as client:
        try:
            assert client.send_text(TO, "back").attempts == 2
        finally:
            late.stop()
    assert late.received_counts() == {"back": 1}


async def test_async_rate_limit_and_timeout(sandbox: Sandbox, store: Store, sleeps: Sleeps) -> None:
    sandbox.fail_next(130429, count=2)
    async with make_async_sender(sandbox, store.cached(), sleeps, timeout=httpx.Timeout(5.0, read=0.2)) as client:
        result = await client.send_text(TO, "async")
        assert result.attempts == 3 and sleeps.waits == [0.5, 1.0]
        sandbox.hang_next(2.0, deliver=True)
        with pytest.raises(OutcomeUnknown):
            await client.send_text(TO, "async maybe")
        sandbox.fail_next(131026)
        with pytest.raises(RecipientError):
            await client.send_text(TO, "async never")
    assert sandbox.received_counts() == {"async": 1, "async maybe": 1}
    assert sleeps.waits == [0.5, 1.0]

"""Unit tests of the caching layer's own logic (in-process scripted backend, injected clock: no sleeps)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import pytest

import tokenstore
from tests.contract import FakeClock, canary
from tokenstore import (
    BackendUnavailable,
    CachePolicy,
    CachingProvider,
    SecretNotFound,
    Token,
    TokenProvider,
)


class Scripted(TokenProvider):
    """A backend whose answers the test sets: a value, or an exception to raise. Counts calls."""

    source = "scripted:test"

    def __init__(self, value: str) -> None:
        self.value = value
        self.error: Exception | None = None
        self.calls = 0
        self.gate: threading.Event | None = None  # when set, get_token waits for it
        self.agate: asyncio.Event | None = None
        self.invalidated: list[Token | None] = []
        self.lock = threading.Lock()

    def _answer(self) -> Token:
        if self.error is not None:
            raise self.error
        return Token(self.value, source=self.source, version=str(self.calls))

    def get_token(self) -> Token:
        with self.lock:
            self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(10)
        return self._answer()

    async def aget_token(self) -> Token:
        with self.lock:
            self.calls += 1
        if self.agate is not None:
            await self.agate.wait()
        await asyncio.sleep(0)
        return self._answer()

    def invalidate(self, token: Token | None = None) -> None:
        self.invalidated.append(token)

    @property
    def supports_write(self) -> bool:
        return True

    def put_token(self, value: str) -> str | None:
        self.value = value
        return "v-new"


def make(
    value: str | None = None, *, rand: Callable[[], float] = lambda: 0.0, **policy: float | bool
) -> tuple[CachingProvider, Scripted, FakeClock]:
    backend = Scripted(value or canary())
    clock = FakeClock()
    settings: dict[str, float | bool] = {"ttl": 100, "refresh_ahead": 10, "max_stale": 50, "background_refresh": False}
    settings.update(policy)
    return CachingProvider(backend, CachePolicy(**settings), clock=clock, rand=rand), backend, clock  # type: ignore[arg-type]


def test_hit_is_the_same_object_and_one_backend_call() -> None:
    cache, backend, clock = make()
    first = cache.get_token()
    for _ in range(100):
        assert cache.get_token() is first
    assert backend.calls == 1
    assert cache.stats.hits == 100 and cache.stats.misses == 1 and cache.stats.fetches == 1


def test_rotation_visible_after_ttl_not_before() -> None:
    cache, backend, clock = make(refresh_ahead=0)
    old = cache.get_token()
    backend.value = new = canary()
    clock.advance(99.9)
    assert cache.get_token() is old
    clock.advance(0.1)
    assert cache.get_token().reveal() == new
    assert cache.stats.rotations == 1


def test_ttl_jitter_shortens_by_at_most_the_fraction() -> None:
    cache, backend, clock = make(refresh_ahead=0, jitter=0.2, rand=lambda: 1.0)
    cache.get_token()
    clock.advance(79.9)  # 100 * (1 - 0.2 * 1.0) = 80
    cache.get_token()
    assert backend.calls == 1
    clock.advance(0.2)
    cache.get_token()
    assert backend.calls == 2


def test_refresh_ahead_serves_current_token_while_refreshing_inline() -> None:
    cache, backend, clock = make(ttl=100, refresh_ahead=10)
    old = cache.get_token()
    backend.value = new = canary()
    clock.advance(91)  # inside the refresh-ahead window
    # the caller that runs the refresh gets the still-valid token; the next one sees the new token
    assert cache.get_token() is old
    assert backend.calls == 2
    assert cache.get_token().reveal() == new
    assert cache.stats.refreshes == 1


def test_refresh_ahead_in_background_thread_does_not_block_callers() -> None:
    cache, backend, clock = make(ttl=100, refresh_ahead=10, background_refresh=True)
    old = cache.get_token()
    backend.gate = threading.Event()  # the store becomes slow
    backend.value = new = canary()
    clock.advance(95)
    for _ in range(50):  # none of these waits for the slow store
        assert cache.get_token() is old
    assert backend.calls == 2  # one refresh in flight, not fifty
    backend.gate.set()
    for _ in range(500):
        if cache.peek() is not old:
            break
        threading.Event().wait(0.01)
    assert cache.get_token().reveal() == new


async def test_refresh_ahead_async_in_background_task() -> None:
    cache, backend, clock = make(ttl=100, refresh_ahead=10, background_refresh=True)
    old = await cache.aget_token()
    backend.agate = asyncio.Event()
    backend.value = new = canary()
    clock.advance(95)
    got = await asyncio.gather(*(cache.aget_token() for _ in range(20)))
    assert all(t is old for t in got)
    assert backend.calls == 2
    backend.agate.set()
    for _ in range(100):
        await asyncio.sleep(0)
        if cache.peek() is not old:
            break
    assert (await cache.aget_token()).reveal() == new


def test_a_fetch_settling_between_a_miss_and_joining_the_flight_is_not_repeated() -> None:
    """The interleaving behind a rare 101st store read for 100 tenants: caller B sees the cache empty, caller A's
    fetch then completes (entry stored, flight cleared), and only then does B look for a flight to join. B must
    take A's token, not lead a second fetch."""
    cache, backend, clock = make()
    real = cache._serve_without_fetch
    fetched_by_a: list[str] = []
    interleaved: list[bool] = []

    def serve_then_let_a_finish(now: float) -> Token | None:
        served = real(now)
        if served is None and not interleaved:  # B has decided to fetch; A's whole fetch happens now
            interleaved.append(True)
            worker = threading.Thread(target=lambda: fetched_by_a.append(cache.get_token().reveal()))
            worker.start()
            worker.join(10)
        return served

    cache._serve_without_fetch = serve_then_let_a_finish  # type: ignore[method-assign]
    assert cache.get_token().reveal() == backend.value
    assert fetched_by_a == [backend.value]
    assert backend.calls == 1


def test_a_failure_settling_between_a_miss_and_joining_the_flight_is_not_retried_at_once() -> None:
    cache, backend, clock = make()
    backend.error = tokenstore.BackendUnavailable("down", source="scripted:test")
    real = cache._serve_without_fetch
    raised_for_a: list[BaseException] = []
    interleaved: list[bool] = []

    def serve_then_let_a_fail(now: float) -> Token | None:
        served = real(now)
        if served is None and not interleaved:
            interleaved.append(True)

            def a() -> None:
                try:
                    cache.get_token()
                except tokenstore.BackendUnavailable as exc:
                    raised_for_a.append(exc)

            worker = threading.Thread(target=a)
            worker.start()
            worker.join(10)
        return served

    cache._serve_without_fetch = serve_then_let_a_fail  # type: ignore[method-assign]
    with pytest.raises(tokenstore.BackendUnavailable):
        cache.get_token()
    assert len(raised_for_a) == 1
    assert backend.calls == 1  # backing off: B fails fast instead of asking the store again


def test_thousand_threads_cold_cache_one_backend_call() -> None:
    cache, backend, clock = make()
    backend.gate = threading.Event()
    results: list[str] = []
    started = threading.Barrier(1001)

    def worker() -> None:
        started.wait()
        results.append(cache.get_token().reveal())

    threads = [threading.Thread(target=worker) for _ in range(1000)]
    for t in threads:
        t.start()
    started.wait()
    # let every thread reach the cache before the store answers
    for _ in range(200):
        if cache.stats.misses >= 1000:
            break
        threading.Event().wait(0.005)
    backend.gate.set()
    for t in threads:
        t.join()
    assert len(results) == 1000 and set(results) == {backend.value}
    assert backend.calls == 1


async def test_thousand_tasks_cold_cache_one_backend_call() -> None:
    cache, backend, clock = make()
    backend.agate = asyncio.Event()
    tasks = [asyncio.create_task(cache.aget_token()) for _ in range(1000)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    backend.agate.set()
    tokens = await asyncio.gather(*tasks)
    assert {t.reveal() for t in tokens} == {backend.value}
    assert backend.calls == 1
    assert cache.stats.misses == 1000


async def test_cancelling_the_leader_does_not_fail_the_others() -> None:
    cache, backend, clock = make()
    backend.agate = asyncio.Event()
    leader = asyncio.create_task(cache.aget_token())
    await asyncio.sleep(0)
    follower = asyncio.create_task(cache.aget_token())
    await asyncio.sleep(0)
    leader.cancel()
    backend.agate.set()
    assert (await follower).reveal() == backend.value
    assert backend.calls == 1


async def test_sync_and_async_callers_share_one_flight() -> None:
    cache, backend, clock = make()
    backend.gate = threading.Event()
    thread_result: list[Token] = []
    t = threading.Thread(target=lambda: thread_result.append(cache.get_token()))
    t.start()
    for _ in range(200):
        if backend.calls:
            break
        await asyncio.sleep(0.005)
    waiter = asyncio.create_task(cache.aget_token())
    await asyncio.sleep(0.01)
    backend.gate.set()
    token = await waiter
    t.join()
    assert token is thread_result[0]
    assert backend.calls == 1


def test_stale_on_error_up_to_max_stale_then_backend_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    cache, backend, clock = make(refresh_ahead=0, max_stale=50, backoff_initial=1, backoff_max=8)
    old = cache.get_token()
    backend.error = BackendUnavailable("connection refused", source=backend.source)
    clock.advance(100)  # TTL over, store down
    with caplog.at_level(logging.WARNING, logger="tokenstore"):
        assert cache.get_token() is old
    assert cache.stats.stale_served == 1 and cache.stats.backend_errors == 1
    assert any("serving the cached token" in r.getMessage() for r in caplog.records)
    clock.advance(49)  # 49 s past TTL: still within max_stale
    assert cache.get_token() is old
    clock.advance(1.5)  # 50.5 s past TTL: beyond
    with pytest.raises(BackendUnavailable, match="max_stale") as info:
        cache.get_token()
    assert isinstance(info.value.__cause__, BackendUnavailable)
    assert old.reveal() not in str(info.value)
    backend.error = None  # the store is back
    clock.advance(10)
    assert cache.get_token().reveal() == backend.value
    assert cache.stats.backend_errors >= 2


def test_backoff_doubles_and_is_capped_and_skips_the_store_meanwhile() -> None:
    cache, backend, clock = make(refresh_ahead=0, max_stale=10_000, backoff_initial=1, backoff_max=4, rand=lambda: 1.0)
    cache.get_token()
    backend.error = BackendUnavailable("down", source=backend.source)
    clock.advance(100)
    cache.get_token()  # first failed attempt; the stale token is served
    assert backend.calls == 2
    for delay in (1, 2, 4, 4, 4):  # rand=1.0: the full base delay, doubling, capped at backoff_max
        calls = backend.calls
        clock.advance(delay - 0.01)
        assert cache.get_token().reveal() == backend.value  # stale, without asking the store
        assert backend.calls == calls
        clock.advance(0.02)
        cache.get_token()
        assert backend.calls == calls + 1


def test_policy_backoff_values_in_seconds() -> None:
    policy = CachePolicy(backoff_initial=0.5, backoff_max=30)
    assert [policy.backoff(n, 1.0) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.backoff(3, 0.0) == 1.0  # equal jitter: at least half the base
    assert policy.backoff(0, 0.5) == 0.0


def test_retry_after_hint_is_honoured_within_backoff_max() -> None:
    cache, backend, clock = make(refresh_ahead=0, backoff_initial=0.5, backoff_max=20, rand=lambda: 1.0)
    cache.get_token()
    backend.error = BackendUnavailable("throttled", source=backend.source, retry_after=7)
    clock.advance(100)
    cache.get_token()
    calls = backend.calls
    clock.advance(6.9)
    cache.get_token()
    assert backend.calls == calls
    clock.advance(0.2)
    cache.get_token()
    assert backend.calls == calls + 1


def test_error_without_cached_token_raises_and_fails_fast_during_backoff() -> None:
    cache, backend, clock = make(backoff_initial=2)
    backend.error = SecretNotFound("no such secret", source=backend.source)
    with pytest.raises(SecretNotFound):
        cache.get_token()
    with pytest.raises(SecretNotFound):
        cache.get_token()  # within backoff: the store is not asked again
    assert backend.calls == 1
    clock.advance(2.1)
    backend.error = None
    assert cache.get_token().reveal() == backend.value


def test_invalidate_goes_to_store_at_once_and_keeps_stale_fallback() -> None:
    cache, backend, clock = make(max_stale=30)
    old = cache.get_token()
    cache.invalidate()
    backend.error = BackendUnavailable("down", source=backend.source)
    assert cache.get_token() is old  # the store is down: the invalidated token is the stale fallback
    assert backend.calls == 2
    assert backend.invalidated == [None]
    backend.error = None
    cache.invalidate()
    assert cache.get_token().reveal() == backend.value
    assert backend.calls == 3
    assert cache.stats.invalidations == 2


def test_invalidate_with_token_only_forgets_that_token() -> None:
    cache, backend, clock = make()
    rejected = cache.get_token()
    backend.value = canary()
    cache.invalidate(rejected)  # first caller whose request was refused
    fresh = cache.get_token()
    assert fresh != rejected and backend.calls == 2
    cache.invalidate(rejected)  # a second caller that saw the same rejection: already refetched
    assert cache.get_token() is fresh
    assert backend.calls == 2


def test_put_token_writes_through_and_invalidates() -> None:
    cache, backend, clock = make()
    cache.get_token()
    new = canary()
    assert cache.supports_write
    assert cache.put_token(new) == "v-new"
    assert cache.get_token().reveal() == new


def test_follower_times_out_when_the_store_hangs() -> None:
    cache, backend, clock = make(fetch_timeout=0.2)
    backend.gate = threading.Event()
    leader = threading.Thread(target=lambda: cache.get_token())
    leader.start()
    for _ in range(200):
        if backend.calls:
            break
        threading.Event().wait(0.005)
    with pytest.raises(BackendUnavailable, match="fetch_timeout"):
        cache.get_token()
    backend.gate.set()
    leader.join()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": 0}, "ttl must be positive"),
        ({"ttl": 10, "refresh_ahead": 10}, "refresh_ahead must be shorter than ttl"),
        ({"jitter": 1.0}, "jitter"),
        ({"backoff_initial": 5, "backoff_max": 1}, "backoff_max"),
        ({"max_stale": -1}, "must not be negative"),
        ({"ttl": float("nan")}, "finite"),
    ],
)
def test_policy_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CachePolicy(**kwargs)


def test_policy_is_immutable_and_keyword_only() -> None:
    policy = CachePolicy()
    with pytest.raises(AttributeError):
        policy.ttl = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        CachePolicy(10)  # type: ignore[misc]


def test_stats_snapshot_is_a_copy() -> None:
    cache, backend, clock = make()
    cache.get_token()
    snap = cache.stats.snapshot()
    cache.get_token()
    assert snap["hits"] == 0 and cache.stats.snapshot()["hits"] == 1


def test_provider_errors_keep_their_type_through_the_cache() -> None:
    cache, backend, clock = make()
    backend.error = tokenstore.AccessDenied("permission denied on secret/x", source=backend.source)
    with pytest.raises(tokenstore.AccessDenied, match="permission denied"):
        cache.get_token()


# -- invalidate() and a secret the store no longer has ------------------------------------------------------------
async def _get(cache: CachingProvider, mode: str) -> Token:
    return cache.get_token() if mode == "sync" else await cache.aget_token()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_invalidate_then_not_found_raises_and_forgets_the_token(mode: str) -> None:
    """A secret deleted in the store (a tenant offboarded) is not a store outage: once the cache was told to
    forget, the store's "not found" is the answer, and the old token is never handed out again."""
    cache, backend, clock = make(max_stale=1000, backoff_initial=2, backoff_max=2, rand=lambda: 1.0)
    old = await _get(cache, mode)
    backend.error = SecretNotFound("no such secret", source=backend.source)
    cache.invalidate()
    with pytest.raises(SecretNotFound, match="no such secret"):
        await _get(cache, mode)
    assert backend.calls == 2
    assert cache.stats.stale_served == 0 and cache.stats.backend_errors == 1
    assert cache.peek() is None  # forgotten, as after delete_secret()
    with pytest.raises(SecretNotFound):  # within the backoff: the same answer, without asking the store
        await _get(cache, mode)
    assert backend.calls == 2
    clock.advance(2.1)
    backend.error = BackendUnavailable("connection refused", source=backend.source)
    with pytest.raises(BackendUnavailable):  # the store then fails: still no token of the deleted secret
        await _get(cache, mode)
    assert cache.stats.stale_served == 0
    clock.advance(2.1)
    backend.error = None  # the secret is created again (the tenant onboarded again)
    fresh = await _get(cache, mode)
    assert fresh.reveal() == backend.value and fresh is not old


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "error",
    [
        tokenstore.AccessDenied("permission denied on secret/x", source="scripted:test"),
        tokenstore.SecretMalformed("the secret is empty", source="scripted:test"),
        tokenstore.UnknownTenant("no secret for tenant 'acme'", tenant="acme"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_invalidate_then_a_non_transient_answer_serves_no_stale(mode: str, error: Exception) -> None:
    """Only a store that cannot answer (a transient error) earns the stale fallback after invalidate(); a
    refusal or unusable contents are the store's answer and surface as they are."""
    cache, backend, clock = make(max_stale=1000)
    await _get(cache, mode)
    cache.invalidate()
    backend.error = error
    with pytest.raises(type(error)):
        await _get(cache, mode)
    assert cache.stats.stale_served == 0 and cache.peek() is None


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_invalidate_then_store_down_serves_stale_within_max_stale_then_unavailable(mode: str) -> None:
    cache, backend, clock = make(max_stale=30, backoff_initial=1, backoff_max=1, rand=lambda: 1.0)
    old = await _get(cache, mode)
    clock.advance(20)  # well inside the TTL
    cache.invalidate()  # the max_stale window starts now
    backend.error = BackendUnavailable("timed out", source=backend.source)
    assert await _get(cache, mode) is old
    clock.advance(29)
    assert await _get(cache, mode) is old
    assert cache.stats.stale_served == 2
    clock.advance(1.5)  # 30.5 s after the invalidation
    with pytest.raises(BackendUnavailable, match="max_stale"):
        await _get(cache, mode)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_invalidate_while_already_serving_stale_then_not_found_raises(mode: str) -> None:
    """The store was down past the TTL (the token served stale); a 190 then invalidates; the store comes back
    saying the secret is gone: that answer wins over the stale token."""
    cache, backend, clock = make(refresh_ahead=0, max_stale=1000, backoff_initial=1, backoff_max=1, rand=lambda: 1.0)
    old = await _get(cache, mode)
    backend.error = BackendUnavailable("down", source=backend.source)
    clock.advance(150)  # 50 s past the TTL
    assert await _get(cache, mode) is old
    cache.invalidate(old)
    backend.error = SecretNotFound("no such secret", source=backend.source)
    with pytest.raises(SecretNotFound):
        await _get(cache, mode)
    assert cache.peek() is None and cache.stats.stale_served == 1


def test_not_found_after_the_ttl_without_invalidate_keeps_the_bounded_stale_fallback() -> None:
    """Without invalidate() the cache has no reason to distrust its token: a not-found on the TTL's refetch
    (a file being replaced by a tool that deletes first) is bridged like an outage, within max_stale."""
    cache, backend, clock = make(refresh_ahead=0, max_stale=50)
    old = cache.get_token()
    backend.error = SecretNotFound("no such file", source=backend.source)
    clock.advance(100)
    assert cache.get_token() is old
    assert cache.stats.stale_served == 1


def test_invalidate_of_a_token_no_longer_cached_keeps_the_stale_fallback() -> None:
    """``invalidate(token)`` for a token already replaced leaves the current entry as it is."""
    cache, backend, clock = make(refresh_ahead=0, max_stale=50)
    rejected = cache.get_token()
    backend.value = canary()
    cache.invalidate()
    current = cache.get_token()
    cache.invalidate(rejected)  # a late 190 for the old token: nothing to forget
    backend.error = SecretNotFound("no such file", source=backend.source)
    clock.advance(100)
    assert cache.get_token() is current  # the TTL path: bounded stale as before


def test_a_store_answer_is_not_logged_as_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    """ "Not found" (a numbers map before the first onboarding, a tenant that does not exist) is raised to the
    caller and logged at INFO; only a transient failure (the store down) is a WARNING."""
    cache, backend, clock = make()
    backend.error = SecretNotFound("no such secret", source=backend.source)
    with caplog.at_level(logging.INFO, logger="tokenstore"), pytest.raises(SecretNotFound):
        cache.get_token()
    failed = [r for r in caplog.records if "failed (SecretNotFound" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.INFO]
    caplog.clear()
    clock.advance(100)  # past the backoff
    backend.error = BackendUnavailable("connection refused", source=backend.source)
    with caplog.at_level(logging.INFO, logger="tokenstore"), pytest.raises(BackendUnavailable):
        cache.get_token()
    failed = [r for r in caplog.records if "failed (BackendUnavailable" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING]

"""The caching layer: wraps any provider so asking for the token on every request costs next to nothing.

Semantics (all durations in seconds, on an injectable monotonic clock):

* **TTL with jitter** - a fetched token is fresh for ``ttl * (1 - U(0, jitter))`` so replicas do not all go
  to the store at the same instant.
* **Refresh ahead** - in the last ``refresh_ahead`` seconds of that life, callers keep getting the cached
  token while one refresh runs (in the background by default).
* **Single-flight** - any number of concurrent misses, threads or asyncio tasks, make one backend call;
  the others wait for its outcome.
* **Stale-on-error** - when the store fails, the last token keeps being served for up to ``max_stale``
  seconds past its expiry; after that the error surfaces (:class:`~tokenstore.BackendUnavailable` for an
  unreachable store).
* **Backoff** - after a failure the store is not asked again before an exponentially growing, jittered
  delay (``backoff_initial`` doubling up to ``backoff_max``; a store's ``retry_after`` hint is honoured).
* **invalidate()** - the next call goes to the store. The old token stays the stale fallback for a store that
  cannot answer (a *transient* error: :class:`~tokenstore.BackendUnavailable` - down, sealed, throttling,
  timing out); when the store does answer, with :class:`~tokenstore.SecretNotFound` (the secret was deleted:
  a tenant offboarded), :class:`~tokenstore.AccessDenied` or :class:`~tokenstore.SecretMalformed`, that
  answer is raised and the old token is forgotten, as after :meth:`~CachingProvider.delete_secret`. (Without
  an invalidate, the TTL's refetch bridges any failure within ``max_stale``: the cache has no reason yet to
  distrust its token, and a file replaced by a tool that deletes it first must not stop the senders.)

A cache hit is one clock read and one comparison: no lock, no copy.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import BackendUnavailable, ProviderError
from ._masking import masked_logger
from ._provider import TokenProvider
from ._token import Token

__all__ = ["CachePolicy", "CacheStats", "CachingProvider"]

logger = masked_logger("tokenstore.cache")

_NEVER = -math.inf


@dataclass(frozen=True, kw_only=True)
class CachePolicy:
    """How a :class:`CachingProvider` caches. Immutable; every duration is in seconds."""

    #: how long a fetched token is served without asking the store
    ttl: float = 300.0
    #: start refreshing this long before the TTL runs out (0 disables refresh-ahead)
    refresh_ahead: float = 30.0
    #: how long past its TTL a token may still be served while the store fails
    max_stale: float = 3600.0
    #: fraction of the TTL taken off at random per fetch (0.1 = up to 10% shorter)
    jitter: float = 0.1
    #: first wait after a failed fetch; doubles per consecutive failure
    backoff_initial: float = 0.5
    #: the longest wait between attempts after failures
    backoff_max: float = 30.0
    #: how long a caller waits for another caller's in-flight fetch before giving up
    fetch_timeout: float = 30.0
    #: refresh-ahead runs in a background thread/task (True) or in the one caller that starts it (False)
    background_refresh: bool = True

    def __post_init__(self) -> None:
        for name in ("ttl", "refresh_ahead", "max_stale", "backoff_initial", "backoff_max", "fetch_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"CachePolicy.{name} must be a finite number of seconds")
            if value < 0:
                raise ValueError(f"CachePolicy.{name} must not be negative")
        if self.ttl <= 0:
            raise ValueError("CachePolicy.ttl must be positive")
        if self.refresh_ahead >= self.ttl:
            raise ValueError("CachePolicy.refresh_ahead must be shorter than ttl")
        if not 0 <= self.jitter < 1:
            raise ValueError("CachePolicy.jitter must be in [0, 1)")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("CachePolicy.backoff_max must be at least backoff_initial")
        if self.fetch_timeout <= 0:
            raise ValueError("CachePolicy.fetch_timeout must be positive")

    def backoff(self, failures: int, rand: float) -> float:
        """Delay before the next attempt after ``failures`` consecutive failures (equal jitter)."""
        if failures <= 0 or self.backoff_initial == 0:
            return 0.0
        base = min(self.backoff_max, self.backoff_initial * (2.0 ** min(failures - 1, 60)))
        return base / 2 + rand * base / 2


@dataclass(slots=True)
class CacheStats:
    """Counters of what the cache did. Plain ints; ``snapshot()`` gives a dict copy.

    Slotted: a process with 10,000 tenants holds 10,000 of these (see :class:`~tokenstore.TenantProviders`).
    """

    hits: int = 0
    misses: int = 0
    fetches: int = 0
    refreshes: int = 0
    rotations: int = 0
    stale_served: int = 0
    backend_errors: int = 0
    invalidations: int = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "fetches": self.fetches,
            "refreshes": self.refreshes,
            "rotations": self.rotations,
            "stale_served": self.stale_served,
            "backend_errors": self.backend_errors,
            "invalidations": self.invalidations,
        }


class _Entry:
    __slots__ = ("expires_at", "invalidated", "refresh_at", "token")

    def __init__(self, token: Token, refresh_at: float, expires_at: float, *, invalidated: bool = False) -> None:
        self.token = token
        self.refresh_at = refresh_at
        self.expires_at = expires_at
        #: invalidate() was called for this token: only a transient error may still serve it (stale)
        self.invalidated = invalidated


if TYPE_CHECKING:  # asyncio and concurrent.futures are imported on the slow path only (import cost)
    import asyncio
    import concurrent.futures

    #: an in-flight fetch: resolves to a Token or raises the fetch's error
    _Outcome = concurrent.futures.Future[Token]


class CachingProvider(TokenProvider):
    """Caches any :class:`TokenProvider` (see the module docstring for the semantics).

    ``clock`` (monotonic seconds) and ``rand`` (uniform in [0, 1)) are injectable so tests need no sleeps.
    """

    def __init__(
        self,
        inner: TokenProvider,
        policy: CachePolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.inner = inner
        self.policy = policy if policy is not None else CachePolicy()
        self.source = inner.source
        self.stats = CacheStats()
        self._clock = clock
        self._rand = rand
        self._entry: _Entry | None = None
        self._lock = threading.Lock()
        self._flight: _Outcome | None = None  # the in-flight fetch, shared by every waiter
        self._refreshing = False  # a refresh-ahead is running
        self._failures = 0
        self._retry_at = _NEVER
        self._last_error: ProviderError | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None  # made on the first async refresh (memory per tenant)
        self._closed = False

    # -- the hot path -------------------------------------------------------------------------------------
    def get_token(self) -> Token:
        entry = self._entry
        if entry is not None and self._clock() < entry.refresh_at:
            self.stats.hits += 1
            return entry.token
        return self._get_slow()

    async def aget_token(self) -> Token:
        entry = self._entry
        if entry is not None and self._clock() < entry.refresh_at:
            self.stats.hits += 1
            return entry.token
        return await self._aget_slow()

    # -- misses ---------------------------------------------------------------------------------------------
    def _serve_without_fetch(self, now: float) -> Token | None:
        """What to return without going to the store now: a still-valid or stale token, or None to fetch."""
        entry = self._entry
        if entry is not None and now < entry.expires_at:
            self.stats.hits += 1
            return entry.token
        if now < self._retry_at and self._last_error is not None:
            # backing off after a failure: serve stale within bounds, else fail fast
            return self._fallback(self._last_error, now, fresh_failure=False)
        return None

    def _get_slow(self) -> Token:
        now = self._clock()
        entry = self._entry
        if entry is not None and now < entry.expires_at:
            # refresh-ahead window: the current token is still good
            if now >= self._retry_at:
                self._start_refresh_sync()
            self.stats.hits += 1
            return entry.token
        served = self._serve_without_fetch(now)
        if served is not None:
            return served
        self.stats.misses += 1
        fut, leader = self._join_flight()
        if leader:
            self._run_fetch_sync(fut)
        return self._wait_sync(fut)

    async def _aget_slow(self) -> Token:
        import asyncio

        now = self._clock()
        entry = self._entry
        if entry is not None and now < entry.expires_at:
            if now >= self._retry_at:
                self._start_refresh_async()
            self.stats.hits += 1
            return entry.token
        served = self._serve_without_fetch(now)
        if served is not None:
            return served
        self.stats.misses += 1
        fut, leader = self._join_flight()
        if leader:
            # the fetch runs in its own task: cancelling this caller does not fail the other waiters
            self._spawn(self._run_fetch_async(fut))
        try:
            # shield: a cancelled caller must not cancel the shared fetch that other callers wait for
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), self.policy.fetch_timeout)
        except asyncio.TimeoutError:
            raise BackendUnavailable(
                f"no answer from the store within fetch_timeout ({self.policy.fetch_timeout:g}s)",
                source=self.source,
            ) from None

    def _join_flight(self) -> tuple[_Outcome, bool]:
        import concurrent.futures

        fut: _Outcome = concurrent.futures.Future()
        with self._lock:
            if self._flight is not None:
                return self._flight, False
            now = self._clock()
            entry = self._entry
            if (entry is None or now >= entry.expires_at) and not (
                now < self._retry_at and self._last_error is not None
            ):
                self._flight = fut
                return fut, True
        # a fetch settled between this caller's miss and here: take its outcome instead of asking the store again
        try:
            served = self._serve_without_fetch(self._clock())
        except BaseException as exc:
            fut.set_exception(exc)
            return fut, False
        if served is None:  # changed once more (invalidated, backoff over): join or lead as usual
            return self._join_flight()
        fut.set_result(served)
        return fut, False

    def _wait_sync(self, fut: _Outcome) -> Token:
        import concurrent.futures

        try:
            token: Token = fut.result(timeout=self.policy.fetch_timeout)
        except concurrent.futures.TimeoutError:
            raise BackendUnavailable(
                f"no answer from the store within fetch_timeout ({self.policy.fetch_timeout:g}s)",
                source=self.source,
            ) from None
        return token

    def _run_fetch_sync(self, fut: _Outcome) -> None:
        try:
            token = self.inner.get_token()
        except ProviderError as exc:
            self._settle(fut, error=exc)
        except BaseException as exc:  # a bug or a ConfigError: hand it to every waiter as is
            self._settle(fut, error=exc)
        else:
            self._settle(fut, token=token)

    async def _run_fetch_async(self, fut: _Outcome) -> None:
        try:
            token = await self.inner.aget_token()
        except BaseException as exc:
            self._settle(fut, error=exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._settle(fut, token=token)

    def _settle(self, fut: _Outcome | None, *, token: Token | None = None, error: BaseException | None = None) -> None:
        """Record a fetch's outcome and hand it to the waiters."""
        now = self._clock()
        result: Token | None = None
        failure: BaseException | None = None
        if token is not None:
            self._store(token, now)
            result = token
        elif isinstance(error, ProviderError):
            try:
                result = self._on_error(error, now)
            except BaseException as exc:
                failure = exc
        else:
            failure = error
        with self._lock:
            if fut is not None and self._flight is fut:
                self._flight = None
        if fut is not None and not fut.done():
            if failure is not None:
                fut.set_exception(failure)
            else:
                assert result is not None
                fut.set_result(result)

    def _store(self, token: Token, now: float) -> None:
        policy = self.policy
        ttl = policy.ttl * (1.0 - policy.jitter * self._rand())
        expires_at = now + ttl
        old = self._entry
        self._entry = _Entry(token, max(now, expires_at - policy.refresh_ahead), expires_at)
        self._failures = 0
        self._retry_at = _NEVER
        self._last_error = None
        self.stats.fetches += 1
        if old is not None and old.token != token:
            self.stats.rotations += 1
            logger.info(
                "token rotated at %s: %s -> %s (version %s)",
                self.source,
                old.token.fingerprint,
                token.fingerprint,
                token.version,
            )
        else:
            logger.debug("token fetched from %s: %s", self.source, token.fingerprint)

    def _on_error(self, error: ProviderError, now: float) -> Token:
        """A fetch failed: back off, then serve the stale token within max_stale or raise."""
        self.stats.backend_errors += 1
        self._failures += 1
        delay = self.policy.backoff(self._failures, self._rand())
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after > delay:
            delay = min(float(retry_after), self.policy.backoff_max)
        self._retry_at = now + delay
        self._last_error = error
        # an outage is worth a warning; "not found", "denied" or "malformed" is the store's answer, raised to the
        # caller (or bridged, with its own warning): a missing numbers map before the first onboarding, or a
        # caller asking for a tenant that does not exist, must not read like a store failure
        logger.log(
            logging.WARNING if error.transient else logging.INFO,
            "fetching the token from %s failed (%s; attempt %d); next attempt in %.2fs",
            self.source,
            type(error).__name__,
            self._failures,
            delay,
        )
        return self._fallback(error, now, fresh_failure=True)

    def _fallback(self, error: ProviderError, now: float, *, fresh_failure: bool) -> Token:
        entry = self._entry
        if entry is not None and entry.invalidated and not error.transient:
            # the store answered (the secret is gone, we may not read it, its contents are unusable) after the
            # caller stopped trusting this token: that answer stands, and the token is not handed out again
            self._forget(entry)
            logger.info(
                "%s answered %s after the cached token %s was invalidated: forgotten, not served stale",
                self.source,
                type(error).__name__,
                entry.token.fingerprint,
            )
            raise error
        if entry is not None and now - entry.expires_at <= self.policy.max_stale:
            self.stats.stale_served += 1
            if fresh_failure:
                logger.warning(
                    "serving the cached token %s from %s, %.1fs past its TTL (max_stale %gs)",
                    entry.token.fingerprint,
                    self.source,
                    max(0.0, now - entry.expires_at),
                    self.policy.max_stale,
                )
            return entry.token
        if entry is not None and error.transient:
            raise BackendUnavailable(
                f"the store has been failing and the cached token is more than max_stale "
                f"({self.policy.max_stale:g}s) past its TTL; last error: {error}",
                source=None,
            ) from error
        raise error

    # -- refresh ahead --------------------------------------------------------------------------------------
    def _claim_refresh(self) -> bool:
        with self._lock:
            if self._refreshing or self._flight is not None or self._closed:
                return False
            self._refreshing = True
            return True

    def _refresh_done(self, token: Token | None, error: BaseException | None) -> None:
        try:
            if token is not None:
                self.stats.refreshes += 1
                self._settle(None, token=token)
            elif isinstance(error, ProviderError):
                try:
                    self._on_error(error, self._clock())
                except ProviderError:
                    pass  # the current token is still within its TTL: callers keep getting it
            elif error is not None:
                logger.error("refreshing the token from %s failed unexpectedly: %r", self.source, error)
                self._retry_at = self._clock() + self.policy.backoff(1, self._rand())
        finally:
            with self._lock:
                self._refreshing = False

    def _refresh_sync(self) -> None:
        try:
            token = self.inner.get_token()
        except Exception as exc:
            self._refresh_done(None, exc)
        else:
            self._refresh_done(token, None)

    def _start_refresh_sync(self) -> None:
        if not self._claim_refresh():
            return
        if self.policy.background_refresh:
            threading.Thread(target=self._refresh_sync, name="tokenstore-refresh", daemon=True).start()
        else:
            self._refresh_sync()

    async def _refresh_async(self) -> None:
        try:
            token = await self.inner.aget_token()
        except Exception as exc:
            self._refresh_done(None, exc)
        else:
            self._refresh_done(token, None)

    def _start_refresh_async(self) -> None:
        if not self._claim_refresh():
            return
        self._spawn(self._refresh_async())

    def _spawn(self, coro: Any) -> None:
        import asyncio

        task = asyncio.get_running_loop().create_task(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- control --------------------------------------------------------------------------------------------
    def invalidate(self, token: Token | None = None) -> None:
        """Make the next call go to the store. With ``token``: only if that is still the cached token.

        The forgotten token stays available as the stale fallback while the store fails with a transient
        error (its ``max_stale`` window starts now, or earlier if it is already past its TTL); a non-transient
        answer (:class:`~tokenstore.SecretNotFound`, ...) is raised instead and the token dropped. Any backoff
        is cleared so the store is asked at once.
        """
        now = self._clock()
        with self._lock:
            entry = self._entry
            if token is not None and entry is not None and entry.token is not token:
                # somebody already refetched since this token was handed out: even if the store gave the
                # same value back, that answer is newer than the rejection; asking again would not help
                return
            if entry is not None:  # past its TTL already (served stale), its max_stale window keeps its start
                self._entry = _Entry(
                    entry.token, min(entry.refresh_at, now), min(entry.expires_at, now), invalidated=True
                )
            self._retry_at = _NEVER
            self._failures = 0
        self.stats.invalidations += 1
        self.inner.invalidate(token)
        logger.debug("cache invalidated for %s", self.source)

    @property
    def supports_write(self) -> bool:
        return self.inner.supports_write

    @property
    def supports_compare_and_set(self) -> bool:
        return self.inner.supports_compare_and_set

    def put_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        try:
            if expected is None:  # a plugin's put_token may predate ``expected``
                return self.inner.put_token(value)
            return self.inner.put_token(value, expected=expected)
        finally:
            self.invalidate()

    @property
    def supports_delete(self) -> bool:
        return self.inner.supports_delete

    def delete_secret(self) -> None:
        """Delete the secret in the store and forget the cached token entirely (no stale fallback)."""
        try:
            self.inner.delete_secret()
        finally:
            self._forget()
            self.inner.invalidate()

    async def adelete_secret(self) -> None:
        try:
            await self.inner.adelete_secret()
        finally:
            self._forget()
            self.inner.invalidate()

    def _forget(self, entry: _Entry | None = None) -> None:
        """Drop the cached token (no stale fallback left); with ``entry``, only while that is still the cached one
        (a fetch that settled meanwhile keeps its newer token)."""
        with self._lock:
            if entry is None or self._entry is entry:
                self._entry = None

    async def aput_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        try:
            if expected is None:
                return await self.inner.aput_token(value)
            return await self.inner.aput_token(value, expected=expected)
        finally:
            self.invalidate()

    def peek(self) -> Token | None:
        """The cached token, if any, without touching the store or the counters."""
        entry = self._entry
        return entry.token if entry is not None else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
        for task in list(self._tasks or ()):
            task.cancel()
        self.inner.close()

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
        for task in list(self._tasks or ()):
            task.cancel()
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"<CachingProvider source={self.source!r} ttl={self.policy.ttl:g}s>"

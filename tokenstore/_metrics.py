"""Observability: what the token layer did, per provider, as a plain snapshot and as OpenTelemetry metrics.

Counters, cumulative since the process started:

========================  =================================  ================================================
counter                   OpenTelemetry instrument           counts
========================  =================================  ================================================
``hits``                  ``tokenstore.cache.hits``          tokens served from the cache
``misses``                ``tokenstore.cache.misses``        requests that had to wait for the store
``fetches``               ``tokenstore.store.fetches``       successful reads from the store
``refreshes``             ``tokenstore.cache.refreshes``     refresh-ahead reads (before the TTL ran out)
``rotations``             ``tokenstore.token.rotations``     a read returned a different token than before
``stale_served``          ``tokenstore.cache.stale_served``  the store failed and the last token was served
``backend_errors``        ``tokenstore.store.errors``        failed reads from the store
``invalidations``         ``tokenstore.cache.invalidations`` ``invalidate()`` calls (e.g. after a 190)
``rejections``            ``tokenstore.token.rejections``    Graph rejected the token (HTTP 401, code 190/0)
``resends``               ``tokenstore.token.resends``       ... and the request was resent with a new token
``auth_failures``         ``tokenstore.token.auth_failures`` ... and the store had no better token
========================  =================================  ================================================

The first eight come from the caching layer (:class:`~tokenstore.CacheStats`), the last three from the
sender's auth flow (:class:`AuthStats`, kept per provider by ``sender.TokenAuth``). A provider is *tracked*
(listed by :func:`metrics_snapshot`, exported to OpenTelemetry) once an auth flow is built over it - every
``Sender`` does that - or when :func:`track_provider` is called. Counting costs nothing on the hot path: the
cache's counters are plain int increments, and the auth flow counts only when Graph rejects a token.

OpenTelemetry: when ``opentelemetry-api`` is importable (``pip install 'whatsapp-tokenstore[otel]'``), the
first tracked provider registers observable counters on the global ``MeterProvider`` (a no-op until the
application installs the SDK); :func:`enable_opentelemetry` registers them on a given one. Each observation
carries the attribute ``tokenstore.provider`` (the provider's name: its ``source`` unless named). Nothing
here imports ``opentelemetry`` at import time; nothing here ever sees a token value.

Counters of a provider that is garbage-collected are kept under its name, so every series stays monotonic.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._cache import CacheStats
from ._provider import TokenProvider

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

__all__ = [
    "AUTH_COUNTERS",
    "CACHE_COUNTERS",
    "COUNTERS",
    "OTEL_INSTRUMENTS",
    "PROVIDER_ATTRIBUTE",
    "AuthStats",
    "auth_stats",
    "enable_opentelemetry",
    "metrics_snapshot",
    "provider_metrics",
    "track_provider",
]

#: the caching layer's counters (the fields of :class:`~tokenstore.CacheStats`)
CACHE_COUNTERS = (
    "hits",
    "misses",
    "fetches",
    "refreshes",
    "rotations",
    "stale_served",
    "backend_errors",
    "invalidations",
)
#: the auth flow's counters (the fields of :class:`AuthStats`)
AUTH_COUNTERS = ("rejections", "resends", "auth_failures")
#: every counter, in snapshot order
COUNTERS = CACHE_COUNTERS + AUTH_COUNTERS

#: counter -> (OpenTelemetry instrument name, unit, description)
OTEL_INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    "hits": ("tokenstore.cache.hits", "{request}", "tokens served from the cache"),
    "misses": ("tokenstore.cache.misses", "{request}", "requests that had to wait for the secret store"),
    "fetches": ("tokenstore.store.fetches", "{read}", "successful reads of the token from the secret store"),
    "refreshes": ("tokenstore.cache.refreshes", "{read}", "refresh-ahead reads before the TTL ran out"),
    "rotations": ("tokenstore.token.rotations", "{rotation}", "reads that returned a different token"),
    "stale_served": (
        "tokenstore.cache.stale_served",
        "{request}",
        "tokens served past their TTL because the secret store failed",
    ),
    "backend_errors": ("tokenstore.store.errors", "{error}", "failed reads from the secret store"),
    "invalidations": ("tokenstore.cache.invalidations", "{invalidation}", "cache invalidations"),
    "rejections": (
        "tokenstore.token.rejections",
        "{response}",
        "responses where Graph rejected the access token (HTTP 401, code 190 or 0)",
    ),
    "resends": ("tokenstore.token.resends", "{request}", "requests resent once with a refetched, changed token"),
    "auth_failures": (
        "tokenstore.token.auth_failures",
        "{request}",
        "rejected requests the store had no better token for (AuthenticationError)",
    ),
}

#: the attribute naming the provider on every OpenTelemetry observation
PROVIDER_ATTRIBUTE = "tokenstore.provider"

#: how deep to look through wrappers (``.inner``) for the caching layer
_MAX_WRAP_DEPTH = 8


class AuthStats:
    """What the auth flow saw for one provider: Graph's rejections of its token, resends, failures.

    Shared by every auth flow over the same provider (:func:`auth_stats`); thread-safe. Counting happens only
    on the rejection path, never per request.
    """

    __slots__ = ("_lock", "auth_failures", "rejections", "resends")

    def __init__(self) -> None:
        self.rejections = 0
        self.resends = 0
        self.auth_failures = 0
        self._lock = threading.Lock()

    def count(self, *, rejections: int = 0, resends: int = 0, auth_failures: int = 0) -> None:
        with self._lock:
            self.rejections += rejections
            self.resends += resends
            self.auth_failures += auth_failures

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"rejections": self.rejections, "resends": self.resends, "auth_failures": self.auth_failures}

    def __repr__(self) -> str:
        return f"<AuthStats {self.snapshot()}>"


def _find_cache_stats(provider: object) -> CacheStats | None:
    """The :class:`CacheStats` of the caching layer in ``provider`` or under its wrappers (``.inner``)."""
    seen = 0
    current: object | None = provider
    while current is not None and seen < _MAX_WRAP_DEPTH:
        stats = getattr(current, "stats", None)
        if isinstance(stats, CacheStats):
            return stats
        current = getattr(current, "inner", None)
        seen += 1
    return None


class _Entry:
    """One tracked provider: a weak reference to it, its name and strong references to its counters."""

    __slots__ = ("auth", "cache", "name", "ref")

    def __init__(self, ref: Any, name: str, cache: CacheStats | None, auth: AuthStats) -> None:
        self.ref = ref  # a weakref.ref, or the provider itself when it cannot be weakly referenced
        self.name = name
        self.cache = cache
        self.auth = auth

    def values(self) -> dict[str, int]:
        values = dict.fromkeys(COUNTERS, 0)
        if self.cache is not None:
            snap = self.cache.snapshot()
            for key in CACHE_COUNTERS:
                values[key] = int(snap.get(key, 0))
        values.update(self.auth.snapshot())
        return values


class _Registry:
    """Tracked providers by identity (a provider may be unhashable), and the totals of the ones gone.

    A garbage-collected provider's weakref callback only queues its key (it may run inside any allocation,
    even one made while this registry's lock is held); the next registry call folds its counters into the
    retired totals of its name.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.entries: dict[int, _Entry] = {}
        self.retired: dict[str, dict[str, int]] = {}
        self.dead: list[tuple[int, Any]] = []  # (key, ref) of collected providers, appended by weakref callbacks
        self.otel_global = False
        self.otel_providers: list[Any] = []  # meter providers instrumented (weak references where possible)

    @staticmethod
    def _target(entry: _Entry) -> object | None:
        ref = entry.ref
        return ref() if isinstance(ref, weakref.ref) else ref

    def _retire(self, key: int, entry: _Entry) -> None:
        if self.entries.get(key) is entry:
            del self.entries[key]
        totals = self.retired.setdefault(entry.name, dict.fromkeys(COUNTERS, 0))
        for counter, value in entry.values().items():
            totals[counter] += value

    def _drain(self) -> None:
        """Fold the providers collected since the last call (the lock is held)."""
        while self.dead:
            key, ref = self.dead.pop()
            entry = self.entries.get(key)
            if entry is not None and entry.ref is ref:
                self._retire(key, entry)

    def entry(self, provider: TokenProvider, name: str | None) -> tuple[_Entry, bool]:
        """The entry for ``provider`` (created if needed) and whether it was created."""
        key = id(provider)
        dead = self.dead
        with self.lock:
            self._drain()
            entry = self.entries.get(key)
            if entry is not None:
                if self._target(entry) is provider:
                    if name is not None:
                        entry.name = name
                    return entry, False
                self._retire(key, entry)  # an id reused before the collected one was drained
            try:
                ref: Any = weakref.ref(provider, lambda r: dead.append((key, r)))
            except TypeError:  # no __weakref__ slot: keep it alive (providers are long-lived by design)
                ref = provider
            entry = _Entry(ref, name or provider.source, _find_cache_stats(provider), AuthStats())
            self.entries[key] = entry
            return entry, True

    def find(self, provider: TokenProvider) -> _Entry | None:
        with self.lock:
            self._drain()
            entry = self.entries.get(id(provider))
            return entry if entry is not None and self._target(entry) is provider else None

    def totals(self) -> dict[str, dict[str, int]]:
        with self.lock:
            self._drain()
            entries = list(self.entries.values())
            result = {name: dict(values) for name, values in self.retired.items()}
        for entry in entries:
            totals = result.setdefault(entry.name, dict.fromkeys(COUNTERS, 0))
            for counter, value in entry.values().items():
                totals[counter] += value
        return result


_registry = _Registry()


def track_provider(provider: TokenProvider, name: str | None = None) -> None:
    """List ``provider`` in :func:`metrics_snapshot` (and OpenTelemetry) under ``name`` (default: its source).

    Idempotent; calling it again with a name renames it. ``sender.TokenAuth`` (hence every ``Sender``) tracks
    its providers itself. Providers with the same name are summed.
    """
    if not isinstance(provider, TokenProvider):
        raise TypeError("track_provider() takes a tokenstore.TokenProvider")
    _, created = _registry.entry(provider, name)
    if created:
        _auto_opentelemetry()


def auth_stats(provider: TokenProvider) -> AuthStats:
    """The :class:`AuthStats` of ``provider`` (tracking it): what the auth flows over it count into."""
    entry, created = _registry.entry(provider, None)
    if created:
        _auto_opentelemetry()
    return entry.auth


def provider_metrics(provider: TokenProvider) -> dict[str, int]:
    """Every counter of one provider, as a plain dict (zero where a layer is absent: e.g. no cache)."""
    entry = _registry.find(provider)
    if entry is not None:
        return entry.values()
    values = dict.fromkeys(COUNTERS, 0)
    cache = _find_cache_stats(provider)
    if cache is not None:
        snap = cache.snapshot()
        for key in CACHE_COUNTERS:
            values[key] = int(snap.get(key, 0))
    return values


def metrics_snapshot() -> dict[str, dict[str, int]]:
    """Every tracked provider's counters, by name: ``{"vault:secret/whatsapp/prod#access_token": {"hits":
    1234, "misses": 1, ..., "resends": 0}}``. A plain, JSON-ready copy; never a token."""
    return _registry.totals()


# -- OpenTelemetry ------------------------------------------------------------------------------------------
def _deref(ref: Any) -> Any:
    return ref() if isinstance(ref, weakref.ref) else ref


def _otel_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("opentelemetry.metrics") is not None
    except (ImportError, ValueError):
        return False


def _observe(counter: str) -> Any:
    def callback(options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for name, values in metrics_snapshot().items():
            yield Observation(values[counter], {PROVIDER_ATTRIBUTE: name})

    callback.__name__ = f"observe_{counter}"
    return callback


def _instrument(meter_provider: MeterProvider | None) -> None:
    from opentelemetry import metrics

    from ._version import __version__

    source = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    meter = source.get_meter("tokenstore", __version__)
    for counter in COUNTERS:
        name, unit, description = OTEL_INSTRUMENTS[counter]
        meter.create_observable_counter(name, callbacks=[_observe(counter)], unit=unit, description=description)


def enable_opentelemetry(meter_provider: MeterProvider | None = None) -> None:
    """Export every counter as an OpenTelemetry observable counter on ``meter_provider`` (default: the
    global one, which is also what happens automatically when ``opentelemetry-api`` is installed).

    Idempotent per meter provider. Raises :class:`ImportError` naming the ``otel`` extra when
    ``opentelemetry-api`` is not installed.
    """
    if not _otel_installed():
        raise ImportError(
            "exporting tokenstore metrics to OpenTelemetry needs opentelemetry-api: "
            "pip install 'whatsapp-tokenstore[otel]'"
        )
    with _registry.lock:
        if meter_provider is None:
            if _registry.otel_global:
                return
            _registry.otel_global = True
        else:
            known = [p for p in (_deref(r) for r in _registry.otel_providers) if p is not None]
            if any(p is meter_provider for p in known):
                return
            try:
                ref: Any = weakref.ref(meter_provider)
            except TypeError:
                ref = meter_provider
            _registry.otel_providers = [r for r in _registry.otel_providers if _deref(r) is not None] + [ref]
    _instrument(meter_provider)


def _auto_opentelemetry() -> None:
    """On the first tracked provider: instrument the global meter provider if the API is installed."""
    if _registry.otel_global or not _otel_installed():
        return
    try:
        enable_opentelemetry()
    except Exception:  # observability must never break sending
        import logging

        logging.getLogger("tokenstore").warning("could not register OpenTelemetry metrics", exc_info=True)

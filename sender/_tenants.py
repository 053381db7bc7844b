"""``TenantSender`` and ``AsyncTenantSender``: many customer businesses (tenants), one token each, routed by the
phone number a message is sent from, all over one connection pool.

A Tech Provider (or a SaaS on the Cloud API) holds one business token per onboarded customer, in the store
under a name made from a template (see :class:`tokenstore.TenantProviders`). Each phone number belongs to one
tenant; :meth:`TenantSender.for_number` gives a :class:`~sender.Sender` bound to that number and to its
tenant's token provider::

    with sender.TenantSender.from_config("config.yaml") as senders:     # whatsapp: + tenants:
        senders.for_number("106540352242922").send_text("15551234567", "hi")

What holds:

* isolation: a number's sender asks its own tenant's provider, and only it, on every request; a number with
  no tenant raises :class:`tokenstore.UnknownTenant` before any request (no default, no fallback);
* one pool: every per-number sender gets the TenantSender's one :class:`~sender.ConnectionPool` (or
  :class:`~sender.AsyncConnectionPool` for the async twin) as ``pool=``: the same connections and the same
  in-flight bound (``max_connections``, ``max_in_flight``, ``queue_timeout``) for every tenant; closing a
  per-number sender leaves the pool alone, closing the TenantSender
  closes it (and the senders it handed out);
* a 190 for one tenant invalidates and refetches that tenant's token only; when the store holds no newer
  (working) token, the send raises :class:`~sender.TenantDisconnected` (an ``AuthenticationError`` with
  ``tenant``): ask that customer to reconnect.

The per-number senders are cached (bounded, least recently used leave first), so calling ``for_number`` for
every message is cheap: a map lookup, the tenant's provider lookup and a cache hit.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from tokenstore import Token, TokenProvider, UnknownTenant, disconnected_marker

from ._auth import TokenAuth
from ._client import AsyncSender, Sender
from ._config import SenderSettings, read_config, settings_from_config
from ._exceptions import SendError, TenantDisconnected
from ._pool import DEFAULT_QUEUE_TIMEOUT, AsyncConnectionPool, ConnectionPool

if TYPE_CHECKING:
    from tokenstore import TenantProviders

__all__ = [
    "DEFAULT_RECHECK_INTERVAL",
    "AsyncTenantBoundSender",
    "AsyncTenantSender",
    "Disconnected",
    "TenantAuth",
    "TenantBoundSender",
    "TenantSender",
]

_R = TypeVar("_R")

#: per-number senders kept by default (the tenants' own cache is bounded by ``tenants.max_cached``)
DEFAULT_MAX_SENDERS = 10_000


#: while a tenant is known disconnected, its store is asked again at most this often (seconds)
DEFAULT_RECHECK_INTERVAL = 30.0


class Disconnected:
    """What a TenantSender remembers of a tenant Graph rejected: the dead token's fingerprint and when the
    store was last asked for a newer one (monotonic seconds)."""

    __slots__ = ("checked_at", "fingerprint", "since")

    def __init__(self, fingerprint: str, now: float) -> None:
        self.fingerprint = fingerprint
        self.since = now
        self.checked_at = now


class TenantAuth(TokenAuth):
    """:class:`~sender.TokenAuth` for one tenant: a rejection the store has no newer token for is
    :class:`~sender.TenantDisconnected` naming the tenant.

    ``disconnected`` (shared by every flow of one TenantSender) remembers dead tokens by tenant: while the
    store still holds the token Graph rejected, a send fails at once with TenantDisconnected, without a
    request to Graph, and the store is asked again at most every ``recheck_interval`` seconds (so a dead
    tenant costs neither Graph calls nor store reads per message, and a token the customer's reconnect
    wrote is picked up within that interval, or at once through ``TenantProviders.put_token``/``invalidate``).
    """

    def __init__(
        self,
        provider: TokenProvider,
        *,
        tenant: str,
        disconnected: dict[str, Disconnected] | None = None,
        recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        super().__init__(provider, **options)
        self.tenant = tenant
        self.disconnected: dict[str, Disconnected] = disconnected if disconnected is not None else {}
        self.recheck_interval = recheck_interval
        self._monotonic = monotonic

    # -- logic without I/O ---------------------------------------------------------------------------------
    def _still_dead(self, token: Token, dead: Disconnected) -> bool:
        if token.fingerprint != dead.fingerprint:
            self.disconnected.pop(self.tenant, None)  # the store holds another token now: try it
            return False
        return True

    def _recheck_due(self, dead: Disconnected) -> bool:
        now = self._monotonic()
        if now - dead.checked_at < self.recheck_interval:
            return False
        dead.checked_at = now
        return True

    def _known_dead(self, token: Token) -> TenantDisconnected:
        return TenantDisconnected(
            f"tenant {self.tenant!r} is disconnected: Graph rejected its access token {token.fingerprint} and "
            f"the store ({token.source}) still holds it; ask the customer to reconnect (Embedded Signup) or "
            "write a new token for this tenant (nothing was sent)",
            tenant=self.tenant,
            code=190,
            retryable=False,
        )

    def _marked(self, token: Token) -> None:
        """A store entry holding the disconnected marker (``sender.mark_disconnected``): fail before any request."""
        marker = disconnected_marker(token)
        if marker is None:
            return
        raise TenantDisconnected(
            f"tenant {self.tenant!r} is disconnected ({marker.reason} since "
            f"{marker.since.isoformat(timespec='seconds')}, recorded in {token.source}): ask the customer to "
            "reconnect (Embedded Signup); nothing was sent",
            tenant=self.tenant,
            code=190,
            retryable=False,
        )

    def _changed(self, response: Any, old: Token, new: Token) -> None:
        """Before the one resend after a rejection: a refetched disconnected marker (written while this
        tenant's old token was still cached) ends the flow, it is never sent to Graph as a token."""
        self._marked(new)
        super()._changed(response, old, new)

    def _failure(self, response: httpx.Response, token: Token, *, refetched: Token | None) -> SendError:
        error = super()._failure(response, token, refetched=refetched)
        dead = refetched if refetched is not None else token
        self.disconnected[self.tenant] = Disconnected(dead.fingerprint, self._monotonic())
        what = "still holds it" if refetched is None else "holds no working newer one"
        return TenantDisconnected(
            f"tenant {self.tenant!r} is disconnected: Graph rejected its access token {token.fingerprint} and "
            f"the store ({token.source}) {what}; ask the customer to reconnect (Embedded Signup) or write a new "
            f"token for this tenant. Graph said: {error.message}",
            tenant=self.tenant,
            code=error.code,
            subcode=error.subcode,
            fbtrace_id=error.fbtrace_id,
            details=error.details,
            http_status=error.http_status,
            retryable=False,
            error_type=error.error_type,
        )

    # -- the sync and async I/O paths ----------------------------------------------------------------------
    def _check_sync(self) -> None:
        dead = self.disconnected.get(self.tenant)
        if dead is None:
            self._marked(self.provider.get_token())
            return
        token = self.provider.get_token()
        if not self._still_dead(token, dead):
            return self._marked(token)
        if self._recheck_due(dead):
            self.provider.invalidate(token)
            token = self.provider.get_token()
            if not self._still_dead(token, dead):
                return self._marked(token)
        raise self._known_dead(token)

    async def _check_async(self) -> None:
        dead = self.disconnected.get(self.tenant)
        if dead is None:
            self._marked(await self.provider.aget_token())
            return
        token = await self.provider.aget_token()
        if not self._still_dead(token, dead):
            return self._marked(token)
        if self._recheck_due(dead):
            self.provider.invalidate(token)
            token = await self.provider.aget_token()
            if not self._still_dead(token, dead):
                return self._marked(token)
        raise self._known_dead(token)

    def run(self, send: Callable[[Token, Token | None], _R]) -> _R:
        self._check_sync()
        return super().run(send)

    async def arun(self, send: Callable[[Token, Token | None], Awaitable[_R]]) -> _R:
        await self._check_async()
        return await super().arun(send)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._check_sync()
        yield from super().sync_auth_flow(request)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await self._check_async()
        flow = super().async_auth_flow(request)
        try:
            outgoing = await flow.__anext__()
            while True:
                response = yield outgoing
                try:
                    outgoing = await flow.asend(response)
                except StopAsyncIteration:
                    return
        finally:
            await flow.aclose()


class TenantBoundSender(Sender):
    """A :class:`~sender.Sender` bound to one number and its tenant, on the TenantSender's shared pool
    (from :meth:`TenantSender.for_number`)."""

    def __init__(self, provider: TokenProvider, *, tenant: str, auth: TenantAuth, **options: Any) -> None:
        #: the tenant whose token this sender asks for (and only it)
        self.tenant = tenant
        super().__init__(provider, auth=auth, **options)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} tenant={self.tenant!r}>"


class AsyncTenantBoundSender(AsyncSender):
    """An :class:`~sender.AsyncSender` bound to one number and its tenant, on the AsyncTenantSender's shared
    pool (from :meth:`AsyncTenantSender.for_number`)."""

    def __init__(self, provider: TokenProvider, *, tenant: str, auth: TenantAuth, **options: Any) -> None:
        #: the tenant whose token this sender asks for (and only it)
        self.tenant = tenant
        super().__init__(provider, auth=auth, **options)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} tenant={self.tenant!r}>"


_S = TypeVar("_S", TenantBoundSender, AsyncTenantBoundSender)


def _proof_mode(appsecret_proof: Any, app_secret: TokenProvider | None) -> str:
    """``appsecret_proof`` as Sender resolves it: "off", "on" or "timed"."""
    if appsecret_proof is None:
        return "on" if app_secret is not None else "off"
    if isinstance(appsecret_proof, bool):
        return "on" if appsecret_proof else "off"
    return str(appsecret_proof)


class _NoToken(TokenProvider):
    """The provider of the construction-time probe sender, which never sends."""

    source = "probe"

    def get_token(self) -> Token:  # pragma: no cover - the probe sender is never used
        raise RuntimeError("the probe sender never sends")


# -- the routers --------------------------------------------------------------------------------------------------
class _BaseTenantSender(Generic[_S]):
    """What both twins share: the tenants, the settings every per-number sender gets, the sender cache."""

    def __init__(
        self,
        tenants: TenantProviders,
        *,
        base_url: str | None = None,
        api_version: str | None = None,
        app_secret: TokenProvider | None = None,
        appsecret_proof: Any = None,
        retry: Any = None,
        pacing: Any = None,
        timeout: httpx.Timeout | float | None = None,
        ca_bundle: str | None = None,
        transport: Any = None,
        max_connections: int | None = None,
        max_in_flight: int | None = None,
        queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        sleep: Any = None,
        max_senders: int = DEFAULT_MAX_SENDERS,
        recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
        owns_tenants: bool = False,
        owns_app_secret: bool = False,
    ) -> None:
        from tokenstore import TenantProviders

        if not isinstance(tenants, TenantProviders):
            raise TypeError("tenants must be a tokenstore.TenantProviders (e.g. tokenstore.load_tenants(...))")
        if max_senders < 1:
            raise ValueError("max_senders must be at least 1")
        if not recheck_interval >= 0:
            raise ValueError("recheck_interval must be zero or more seconds")
        self.tenants = tenants
        self.app_secret = app_secret
        proof = _proof_mode(appsecret_proof, app_secret)
        options: dict[str, Any] = {
            # resolved once: the tenant's auth flow and the sender must agree on the proof
            "app_secret": app_secret if proof != "off" else None,
            "appsecret_proof": proof,
            "retry": retry,
            "pacing": pacing,
            "timeout": timeout,
            "headers": headers,
            "rand": rand,
            "clock": clock,
        }
        if base_url is not None:
            options["base_url"] = base_url
        if api_version is not None:
            options["api_version"] = api_version
        if sleep is not None:
            options["sleep"] = sleep
        self._options = options
        pool_options: dict[str, Any] = {
            "ca_bundle": ca_bundle,
            "max_in_flight": max_in_flight,
            "queue_timeout": queue_timeout,
        }
        if max_connections is not None:
            pool_options["max_connections"] = max_connections
        #: the config file this object was built from (named in errors), if any
        self._source: str | None = None
        self._clock = clock
        self._recheck_interval = recheck_interval
        #: tenant -> what is known of its dead token (shared by every per-number sender's auth flow)
        self._disconnected: dict[str, Disconnected] = {}
        self._max_senders = max_senders
        self._owns_tenants = owns_tenants
        self._owns_app_secret = owns_app_secret
        self._senders: collections.OrderedDict[str, _S] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        self._pool = self._make_pool(transport, pool_options)
        # fail now, not on the first for_number, when an option is wrong (a bad base_url, api_version...)
        self._probe()

    # -- construction -------------------------------------------------------------------------------------
    def _make_pool(self, transport: Any, options: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _probe(self) -> None:
        """Build (and drop) one sender with the settings, so a bad option fails at construction."""
        self._build(_NoToken(), tenant="-", phone_number_id="0")

    def _build(self, provider: TokenProvider, *, tenant: str, phone_number_id: str) -> _S:
        raise NotImplementedError

    @classmethod
    def _settings_kwargs(cls, settings: SenderSettings) -> dict[str, Any]:
        return {
            "base_url": settings.base_url,
            "api_version": settings.api_version,
            "appsecret_proof": settings.appsecret_proof,
            "retry": settings.retry,
            "pacing": settings.pacing,
            "timeout": settings.timeout,
            "ca_bundle": settings.ca_bundle,
            "max_connections": settings.max_connections,
            "max_in_flight": settings.max_in_flight,
            "queue_timeout": settings.queue_timeout,
        }

    @classmethod
    def _parts_from_config(
        cls, config: str | os.PathLike[str] | Mapping[str, Any] | None
    ) -> tuple[SenderSettings, TenantProviders, TokenProvider | None]:
        from tokenstore import ConfigError, provider_from_config, tenants_from_config

        data, source = read_config(config)
        settings = settings_from_config(data, source=source, require_phone_number_id=False)
        if data.get("tenants") is None:
            raise ConfigError(
                "required section is missing: tenants: {token: {backend: ..., <backend>: {... {tenant} ...}}, "
                "numbers: {phone_number_id: tenant}} (a TenantSender routes by number to each tenant's token)",
                source=source,
                field="tenants",
            )
        if settings.appsecret_proof != "off" and data.get("app_secret") is None:
            raise ConfigError(
                "appsecret_proof is on, so the app_secret: section is required (it names the store of the "
                "Meta app secret, one for the app, shared by every tenant)",
                source=source,
                field="whatsapp.appsecret_proof",
            )
        tenants = tenants_from_config(data, source=source)
        try:
            app_secret = (
                provider_from_config(data, section="app_secret", source=source)
                if settings.appsecret_proof != "off"
                else None
            )
        except BaseException:
            tenants.close()
            raise
        return settings, tenants, app_secret

    # -- routing ------------------------------------------------------------------------------------------
    def tenant_for_number(self, phone_number_id: str) -> str:
        """The tenant that owns this phone number id; :class:`tokenstore.UnknownTenant` when none does."""
        return self.tenants.tenant_for_number(str(phone_number_id).strip())

    def for_number(self, phone_number_id: str) -> _S:
        """A sender bound to ``phone_number_id`` and its tenant's token provider (cached; cheap to call for
        every message). :class:`tokenstore.UnknownTenant` when no tenant owns the number: nothing is sent.

        Closing the returned sender is allowed and leaves the shared pool open; the next call gives a new one.
        """
        self._check_open()
        number = str(phone_number_id).strip()
        try:
            tenant = self.tenants.tenant_for_number(number)
        except UnknownTenant as exc:
            raise self._unknown(exc) from exc
        return self._bound(number, tenant)

    def _unknown(self, exc: UnknownTenant) -> UnknownTenant:
        if self._source is None:
            return exc
        return UnknownTenant(f"{self._source}: {exc}", phone_number_id=exc.phone_number_id, tenant=exc.tenant)

    def _bound(self, number: str, tenant: str) -> _S:
        """The cached sender of ``number`` if it is still bound to ``tenant``'s current provider, else a new one."""
        provider = self.tenants.provider(tenant)
        with self._lock:
            self._check_open()
            cached = self._senders.get(number)
            if cached is not None and cached.provider is provider and cached.tenant == tenant and not cached._closed:
                self._senders.move_to_end(number)
                return cached
            fresh = self._build(provider, tenant=tenant, phone_number_id=number)
            self._senders[number] = fresh
            self._senders.move_to_end(number)  # a replaced stale entry keeps its old place otherwise
            while len(self._senders) > self._max_senders:
                # not closed: a caller may still hold it; it shares the pool, so nothing leaks
                self._senders.popitem(last=False)
            return fresh

    def _auth(self, provider: TokenProvider, tenant: str) -> TenantAuth:
        return TenantAuth(
            provider,
            tenant=tenant,
            app_secret=self._options["app_secret"],
            timed=self._options["appsecret_proof"] == "timed",
            disconnected=self._disconnected,
            recheck_interval=self._recheck_interval,
            monotonic=self._clock,
        )

    def disconnected(self) -> list[str]:
        """The tenants this object has seen disconnected (Graph rejected the token the store still holds),
        sorted; a tenant leaves the list once the store holds another token."""
        return sorted(self._disconnected)

    def cached_senders(self) -> int:
        """How many per-number senders are cached right now."""
        with self._lock:
            return len(self._senders)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")

    def _take_for_close(self) -> list[_S] | None:
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            senders = list(self._senders.values())
            self._senders.clear()
        return senders

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} tenants={self.tenants!r} senders={len(self._senders)}"
            f"{' closed' if self._closed else ''}>"
        )


class TenantSender(_BaseTenantSender[TenantBoundSender]):
    """Send for many tenants, routed by phone number, over one connection pool (thread-safe).

    >>> with TenantSender.from_config("config.yaml") as senders:              # doctest: +SKIP
    ...     senders.for_number("106540352242922").send_text("15551234567", "hi")

    ``tenants``: a :class:`tokenstore.TenantProviders` (its ``tenant_for_number`` routes, its ``provider``
    gives each tenant's token). The keyword options are :class:`~sender.Sender`'s, applied to every
    per-number sender; the pool's (``max_connections``, ``max_in_flight``, ``queue_timeout``, ``ca_bundle``,
    ``transport``, ``sync_transport``) shape the one shared :class:`~sender.ConnectionPool`. ``max_senders``
    bounds the cache of per-number senders; ``recheck_interval`` is how often a disconnected tenant's store is
    asked again (seconds). ``owns_tenants``: :meth:`close` closes ``tenants`` too (``from_config`` sets it).
    """

    def __init__(self, tenants: TenantProviders, *, sync_transport: str = "auto", **options: Any) -> None:
        self._sync_transport = sync_transport
        super().__init__(tenants, **options)

    def _make_pool(self, transport: Any, options: dict[str, Any]) -> ConnectionPool:
        pool = ConnectionPool(transport=transport if transport is not None else self._sync_transport, **options)
        #: the shared pool's transport: "urllib3", "httpx" or the name of a transport passed in
        self.transport_name = pool.transport_name
        return pool

    def _build(self, provider: TokenProvider, *, tenant: str, phone_number_id: str) -> TenantBoundSender:
        return TenantBoundSender(
            provider,
            tenant=tenant,
            auth=self._auth(provider, tenant),
            phone_number_id=phone_number_id,
            pool=self._pool,
            **self._options,
        )

    @classmethod
    def from_config(
        cls, config: str | os.PathLike[str] | Mapping[str, Any] | None = None, **overrides: Any
    ) -> TenantSender:
        """Build from a config file (or mapping): the ``whatsapp:`` section (no ``phone_number_id`` needed),
        the ``tenants:`` section (see :func:`tokenstore.tenants_from_config`) and ``app_secret:`` when
        ``whatsapp.appsecret_proof`` is on. ``overrides`` go to the constructor. No network I/O here."""
        settings, tenants, app_secret = cls._parts_from_config(config)
        try:
            kwargs = {**cls._settings_kwargs(settings), "app_secret": app_secret, **overrides}
            built = cls(tenants, owns_tenants=True, owns_app_secret=app_secret is not None, **kwargs)
            built._source = settings.source
            return built
        except BaseException:
            tenants.close()
            if app_secret is not None:
                app_secret.close()
            raise

    def close(self) -> None:
        """Close the shared pool and every sender handed out (and the tenants' providers when this object
        built them). Idempotent."""
        senders = self._take_for_close()
        if senders is None:
            return
        for s in senders:
            s.close()
        self._pool.close()
        if self._owns_tenants:
            self.tenants.close()
        if self._owns_app_secret and self.app_secret is not None:
            self.app_secret.close()

    def __enter__(self) -> TenantSender:
        self._check_open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTenantSender(_BaseTenantSender[AsyncTenantBoundSender]):
    """The asyncio twin of :class:`TenantSender`: ``for_number`` gives :class:`~sender.AsyncSender` objects
    sharing one :class:`~sender.AsyncConnectionPool` (aiohttp's when installed, as for ``AsyncSender``;
    ``async_transport`` chooses), on one event loop; ``async with`` / :meth:`aclose` closes it."""

    def __init__(self, tenants: TenantProviders, *, async_transport: str = "auto", **options: Any) -> None:
        self._async_transport = async_transport
        super().__init__(tenants, **options)

    def _make_pool(self, transport: Any, options: dict[str, Any]) -> AsyncConnectionPool:
        pool = AsyncConnectionPool(transport=transport if transport is not None else self._async_transport, **options)
        #: the shared pool's transport: "native", "aiohttp", "httpx" or the name of a transport passed in
        self.transport_name = pool.transport_name
        return pool

    def _build(self, provider: TokenProvider, *, tenant: str, phone_number_id: str) -> AsyncTenantBoundSender:
        return AsyncTenantBoundSender(
            provider,
            tenant=tenant,
            auth=self._auth(provider, tenant),
            phone_number_id=phone_number_id,
            pool=self._pool,
            **self._options,
        )

    async def afor_number(self, phone_number_id: str) -> AsyncTenantBoundSender:
        """:meth:`for_number` that reads a numbers map kept in the store (``tenants.numbers_from``) without
        blocking the event loop; the same sender, cache and errors."""
        self._check_open()
        number = str(phone_number_id).strip()
        try:
            tenant = await self.tenants.atenant_for_number(number)
        except UnknownTenant as exc:
            raise self._unknown(exc) from exc
        return self._bound(number, tenant)

    @classmethod
    def from_config(
        cls, config: str | os.PathLike[str] | Mapping[str, Any] | None = None, **overrides: Any
    ) -> AsyncTenantSender:
        """:meth:`TenantSender.from_config` for asyncio (``whatsapp.async_transport`` picks the pool)."""
        settings, tenants, app_secret = cls._parts_from_config(config)
        try:
            kwargs = {
                **cls._settings_kwargs(settings),
                "app_secret": app_secret,
                "async_transport": settings.async_transport,
                **overrides,
            }
            built = cls(tenants, owns_tenants=True, owns_app_secret=app_secret is not None, **kwargs)
            built._source = settings.source
            return built
        except BaseException:
            tenants.close()
            if app_secret is not None:
                app_secret.close()
            raise

    async def aclose(self) -> None:
        """Close the shared pool and every sender handed out (and the tenants' providers when this object
        built them). Idempotent."""
        senders = self._take_for_close()
        if senders is None:
            return
        for s in senders:
            await s.aclose()
        await self._pool.aclose()
        if self._owns_tenants:
            await self.tenants.aclose()
        if self._owns_app_secret and self.app_secret is not None:
            await self.app_secret.aclose()

    async def __aenter__(self) -> AsyncTenantSender:
        self._check_open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

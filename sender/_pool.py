"""Connection pools with backpressure in our own code: a fair bound on requests in flight, then the pool.

At Meta's latency (100-300 ms a send) a sender must hold rate x latency requests in flight: 1,000 msg/s at
300 ms is 300 requests on the wire. A pool sized below that caps the rate whatever the caller does, and a pool
that makes callers queue inside it reports the wait as a *pool timeout* - a connection failure - which a
sender then retries. So the bound lives here, in front of the pool:

* ``max_in_flight`` slots (default: ``max_connections``), handed out first come, first served: a caller that
  arrives while others wait queues behind them (no barging), so no sender starves;
* the pool holds ``max_connections`` connections, at least as many as slots, so a request that has a slot
  never waits for a connection, and the connect/read timeouts start when the request does;
* a caller that waits longer than ``queue_timeout`` for a slot gets :class:`~sender.QueueTimeout`: nothing
  was sent, and it is never retried (the wait is ours, not the network's).

One pool may serve several senders (``Sender(..., pool=pool)``): the numbers of a business, or the tenants
of a Tech Provider, then share its connections and its bound. A pool passed in is not closed by the sender.
:class:`ConnectionPool` is for :class:`~sender.Sender` (threads), :class:`AsyncConnectionPool` for
:class:`~sender.AsyncSender` (one event loop): on aiohttp's pool by default, with httpx's own as the
alternative.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from ._exceptions import QueueTimeout
from ._http import default_headers, ssl_context

if TYPE_CHECKING:
    from ._aiohttp import AiohttpSession
    from ._urllib3 import Urllib3Session
    from ._wire import WireSession

__all__ = [
    "ASYNC_TRANSPORTS",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_QUEUE_TIMEOUT",
    "AsyncConnectionPool",
    "AsyncSlotTransport",
    "AsyncSlots",
    "ConnectionPool",
    "Reply",
    "SlotTransport",
    "Slots",
    "check_pool_sizes",
    "encode_json",
]

#: connections per pool: 1,000 msg/s at 300 ms needs 300 in flight; 400 leaves room for slower answers
DEFAULT_MAX_CONNECTIONS = 400
#: seconds a send may wait for an in-flight slot before QueueTimeout (nothing sent)
DEFAULT_QUEUE_TIMEOUT = 60.0
KEEPALIVE_EXPIRY = 5.0
#: AsyncSender's transports by name (``whatsapp.async_transport``)
ASYNC_TRANSPORTS = ("auto", "native", "aiohttp", "httpx")


def check_pool_sizes(
    max_connections: object, max_in_flight: object, queue_timeout: object
) -> tuple[int, int, float | None]:
    """Validated ``(max_connections, max_in_flight, queue_timeout)``; ``max_in_flight`` None: the pool size."""
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
        raise ValueError("max_connections must be a whole number of at least 1")
    if max_in_flight is None:
        max_in_flight = max_connections
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ValueError("max_in_flight must be a whole number of at least 1")
    if max_in_flight > max_connections:
        raise ValueError(
            f"max_in_flight ({max_in_flight}) must not exceed max_connections ({max_connections}): a request "
            "with a slot must never wait for a connection"
        )
    if queue_timeout is not None:
        if (
            isinstance(queue_timeout, bool)
            or not isinstance(queue_timeout, (int, float))
            or not math.isfinite(queue_timeout)
            or queue_timeout < 0
        ):
            raise ValueError(
                "queue_timeout must be a number of seconds (0 or more), or None to wait as long as it takes"
            )
        queue_timeout = float(queue_timeout)
    return max_connections, max_in_flight, queue_timeout


def queue_timeout_error(waited: float | None, limit: int, what: str) -> QueueTimeout:
    return QueueTimeout(
        f"{what}: waited {waited:g}s for one of {limit} in-flight slots (max_in_flight) and gave up "
        "(queue_timeout); nothing was sent",
        retryable=True,
    )


def _transport_name(transport: object) -> str:
    from ._aiohttp import AiohttpTransport

    return "aiohttp" if isinstance(transport, AiohttpTransport) else type(transport).__name__


class Slots:
    """A fair bound on requests in flight for threads: FIFO, no barging; ``acquire`` gives up after a timeout."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0  # slots held (a slot handed to a waiter stays counted)
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout: float | None) -> bool:
        """Take a slot: True, or False when none came within ``timeout`` seconds (None: wait forever)."""
        with self._lock:
            if self.busy < self.limit and not self._waiters:
                self.busy += 1
                return True
            if timeout is not None and timeout <= 0:
                return False
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=-1 if timeout is None else timeout):
            return True  # the slot was handed over by release()
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:  # handed over between the timeout and taking the lock: it is ours
                return True
        return False

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()  # hand the slot straight to the longest waiter
            else:
                self.busy -= 1

    @property
    def waiting(self) -> int:
        return len(self._waiters)


class AsyncSlots:
    """The asyncio twin of :class:`Slots` (one event loop): FIFO, no barging, cancellation-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self._waiters: deque[asyncio.Future[bool]] = deque()

    def try_acquire(self) -> bool:
        """Take a free slot without waiting (the hot path: no future, no await)."""
        if self.busy < self.limit and not self._waiters:
            self.busy += 1
            return True
        return False

    async def acquire(self, timeout: float | None) -> bool:
        """Take a slot: True, or False when none came within ``timeout`` seconds (None: wait forever)."""
        if self.try_acquire():
            return True
        if timeout is not None and timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout, self._expire, waiter) if timeout is not None else None
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # handed a slot, then cancelled before it could run: pass it on
            else:
                self._forget(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            self._forget(waiter)
            waiter.set_result(False)

    def _forget(self, waiter: asyncio.Future[bool]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot passes to the longest waiter; busy is unchanged
                return
        self.busy -= 1

    @property
    def waiting(self) -> int:
        return len(self._waiters)


class _Releasing:
    """Calls ``release`` once, when the response body is closed (the connection is free again)."""

    def __init__(self, stream: Any, release: Any) -> None:
        self._stream = stream
        self._release = release

    def _done(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class _SlotStream(_Releasing, httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._done()


class _AsyncSlotStream(_Releasing, httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._done()


def _what(request: httpx.Request) -> str:
    return f"{request.method} {request.url.path}"


class SlotTransport(httpx.BaseTransport):
    """An httpx transport that takes an in-flight slot per request, below the auth flow (the token is fetched
    before the wait) and holds it until the response body is closed."""

    def __init__(self, inner: httpx.BaseTransport, slots: Slots, queue_timeout: float | None) -> None:
        self.inner = inner
        self.slots = slots
        self.queue_timeout = queue_timeout

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        slots = self.slots
        if not slots.acquire(self.queue_timeout):
            raise queue_timeout_error(self.queue_timeout, slots.limit, _what(request))
        try:
            response = self.inner.handle_request(request)
        except BaseException:
            slots.release()
            raise
        response.stream = _SlotStream(response.stream, slots.release)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncSlotTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`SlotTransport`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, slots: AsyncSlots, queue_timeout: float | None) -> None:
        self.inner = inner
        self.slots = slots
        self.queue_timeout = queue_timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        slots = self.slots
        if not slots.try_acquire() and not await slots.acquire(self.queue_timeout):
            raise queue_timeout_error(self.queue_timeout, slots.limit, _what(request))
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            slots.release()
            raise
        response.stream = _AsyncSlotStream(response.stream, slots.release)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Reply:
    """A Graph answer read whole, without httpx's Response machinery (the aiohttp hot path).

    Duck-types what the sender's parsers read from an ``httpx.Response``: ``status_code``, ``headers``
    (case-insensitive ``get``), ``content``; ``token`` is the :class:`tokenstore.Token` the request carried.
    """

    __slots__ = ("content", "headers", "status_code", "token")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes, token: Any = None) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.token = token

    def __repr__(self) -> str:
        return f"<Reply [{self.status_code}]>"


#: httpx's ``json=`` encoding, built once (``json.dumps`` with these options builds an encoder per call)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_json(body: Any) -> bytes:
    """A JSON request body exactly as httpx encodes ``json=``."""
    return _JSON.encode(body).encode("utf-8")


class ConnectionPool:
    """A connection pool and its in-flight bound for :class:`~sender.Sender`; share it across senders.

    ``max_connections`` (default 400) connections; ``max_in_flight`` slots (default: ``max_connections``,
    never more); ``queue_timeout`` seconds waiting for a slot (None: no limit) before QueueTimeout.
    ``transport``: ``"auto"`` (urllib3's pool when urllib3 is installed and no proxy is configured in the
    environment, else httpx's), ``"urllib3"``, ``"httpx"``, or an ``httpx.BaseTransport`` instance (then
    httpx's client runs over it). On urllib3 the senders skip httpx's Request/Response machinery (httpcore's
    sync pool costs milliseconds of CPU per request with hundreds of threads in flight); the rest goes
    through an ``httpx.Client``. ``ca_bundle``/``verify`` set TLS trust. No HTTP/2: measured through httpx
    it costs several times the CPU per message of HTTP/1.1 here (README, "Throughput").
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_in_flight: int | None = None,
        queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
        ca_bundle: str | None = None,
        verify: ssl.SSLContext | bool | None = None,
        transport: str | httpx.BaseTransport | None = "auto",
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        self.max_connections, self.max_in_flight, self.queue_timeout = check_pool_sizes(
            max_connections, max_in_flight, queue_timeout
        )
        self.slots = Slots(self.max_in_flight)
        verify = verify if verify is not None else ssl_context(ca_bundle)
        if transport is None:
            transport = "auto"
        if isinstance(transport, str):
            if transport not in ("auto", "urllib3", "httpx"):
                raise ValueError("transport must be 'auto', 'urllib3', 'httpx' or an httpx transport")
            if transport == "auto":
                from ._urllib3 import proxied_environment, urllib3_available

                transport = "urllib3" if urllib3_available() and not proxied_environment() else "httpx"
        #: "urllib3" (the direct path), "httpx", or the class name of the httpx transport given
        self.transport_name = transport if isinstance(transport, str) else type(transport).__name__
        self.session: Urllib3Session | None = None
        self.client: httpx.Client | None = None
        if transport == "urllib3":
            from ._urllib3 import Urllib3Session

            self.session = Urllib3Session(
                verify=verify, max_connections=self.max_connections, keepalive_expiry=keepalive_expiry
            )
        else:
            # keep every pooled connection alive: with fewer keep-alive than total connections, httpcore 1.0
            # closes "surplus" idle connections one of which may already be assigned to a queued request
            # (encode/httpcore#1110), and reconnects cost CPU anyway
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
                keepalive_expiry=keepalive_expiry,
            )
            inner = httpx.HTTPTransport(verify=verify, limits=limits) if isinstance(transport, str) else transport
            self.client = httpx.Client(
                transport=SlotTransport(inner, self.slots, self.queue_timeout),
                headers=default_headers(),
                follow_redirects=False,
            )
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.session is not None:
                self.session.close()
            if self.client is not None:
                self.client.close()

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<ConnectionPool {self.transport_name} max_connections={self.max_connections} "
            f"max_in_flight={self.max_in_flight} in_flight={self.slots.busy} waiting={self.slots.waiting}>"
        )


class AsyncConnectionPool:
    """The pool and in-flight bound for :class:`~sender.AsyncSender`; share it across senders on one loop.

    ``transport``: ``"auto"`` (the sender's own HTTP/1.1 client, ``"native"``, unless the environment names a
    proxy: then httpx's, which honours it), ``"native"``, ``"aiohttp"`` (aiohttp's pool; the ``[aiohttp]``
    extra), ``"httpx"``, or an ``httpx.AsyncBaseTransport`` instance (then httpx's client runs over it). On
    native and aiohttp the senders skip httpx's Request/Response machinery altogether; native also skips
    aiohttp's (:mod:`sender._wire`: the least CPU per message, measured in bench/). Every other choice goes
    through an ``httpx.AsyncClient``. The other options are :class:`ConnectionPool`'s.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_in_flight: int | None = None,
        queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
        ca_bundle: str | None = None,
        verify: ssl.SSLContext | bool | None = None,
        transport: str | httpx.AsyncBaseTransport = "auto",
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        self.max_connections, self.max_in_flight, self.queue_timeout = check_pool_sizes(
            max_connections, max_in_flight, queue_timeout
        )
        self.slots = AsyncSlots(self.max_in_flight)
        self._verify = verify if verify is not None else ssl_context(ca_bundle)
        self._keepalive = keepalive_expiry
        if isinstance(transport, str):
            if transport not in ASYNC_TRANSPORTS:
                raise ValueError("async_transport must be 'auto', 'native', 'aiohttp' or 'httpx'")
            if transport == "auto":
                from ._urllib3 import proxied_environment

                transport = "httpx" if proxied_environment() else "native"
        #: "native" or "aiohttp" (the direct paths), "httpx", or the class name of the httpx transport given
        self.transport_name = transport if isinstance(transport, str) else _transport_name(transport)
        self.session: WireSession | AiohttpSession | None = None
        self.client: httpx.AsyncClient | None = None
        if transport == "native":
            from ._wire import WireSession

            self.session = WireSession(
                verify=self._verify, max_connections=self.max_connections, keepalive_expiry=keepalive_expiry
            )
        elif transport == "aiohttp":
            from ._aiohttp import AiohttpSession

            self.session = AiohttpSession(
                verify=self._verify, max_connections=self.max_connections, keepalive_expiry=keepalive_expiry
            )
        else:
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
                keepalive_expiry=keepalive_expiry,
            )
            inner = (
                httpx.AsyncHTTPTransport(verify=self._verify, limits=limits)
                if isinstance(transport, str)
                else transport
            )
            self.client = httpx.AsyncClient(
                transport=AsyncSlotTransport(inner, self.slots, self.queue_timeout),
                headers=default_headers(),
                follow_redirects=False,
            )
        self.closed = False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.session is not None:
            await self.session.aclose()
        if self.client is not None:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncConnectionPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<AsyncConnectionPool {self.transport_name} max_connections={self.max_connections} "
            f"max_in_flight={self.max_in_flight} in_flight={self.slots.busy} waiting={self.slots.waiting}>"
        )

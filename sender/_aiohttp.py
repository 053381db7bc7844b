"""An httpx async transport on aiohttp's connection pool, with failures mapped by *whether the request left*.

Why: httpx's default async transport (httpcore 1.0) spends its time in two places, measured in bench/:
``httpcore._synchronization.current_async_library`` tries ``import sniffio`` on every lock set-up, and when
sniffio is not installed (anyio 4.x no longer requires it) every request pays several failed imports that
scan ``sys.path``; and ``AsyncConnectionPool._assign_requests_to_connections`` walks every connection for
every queued request, so at 50 concurrent requests each one costs O(50^2) ``is_idle``/``has_expired``
checks. aiohttp's pool does neither. ``httpx-aiohttp`` exists, but maps ``ServerDisconnectedError`` (the
request may have been processed) to ``ConnectTimeout`` (nothing was sent), which would make a sender retry
a message Meta may already have delivered. This transport maps:

* could not connect (refused, DNS, TLS handshake, connect timeout) -> ``httpx.ConnectError`` /
  ``httpx.ConnectTimeout``: nothing was sent, safe to retry;
* anything after the connection was made (disconnect, reset, read timeout, bad payload) ->
  ``httpx.RemoteProtocolError`` / ``httpx.ReadError`` / ``httpx.ReadTimeout``: the outcome is unknown.

Bodies are read whole (Cloud API responses are small JSON); compression is left to httpx.

:class:`AiohttpSession` is AsyncSender's direct path on the same pool: no httpx Request/Response per message
(their construction was most of the sender's CPU per message beyond aiohttp's own), the same failure mapping
(:func:`translate_error`), aiohttp decompressing.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpSession", "AiohttpTransport", "aiohttp_available", "translate_error"]


def aiohttp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("aiohttp") is not None


def translate_error(exc: BaseException, where: str, request: httpx.Request | None = None) -> BaseException:
    """The httpx exception for an aiohttp failure, by whether the request left; other exceptions unchanged."""
    import aiohttp

    # -- nothing left this machine ---------------------------------------------------------------------------
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(f"connect timeout to {where}", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS handshake, ...
        return httpx.ConnectError(f"cannot connect to {where}: {type(exc).__name__}", request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(f"invalid URL {where}", request=request)
    # -- the request went out: the outcome is unknown --------------------------------------------------------
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(f"read timeout from {where}", request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(f"timeout from {where}", request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(f"{where} closed the connection", request=request)
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(f"bad response from {where}: {type(exc).__name__}", request=request)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return httpx.ReadError(f"connection to {where} failed: {type(exc).__name__}", request=request)
    if isinstance(exc, asyncio.TimeoutError):
        return httpx.ReadTimeout(f"timeout from {where}", request=request)
    return exc


def _ssl(verify: ssl.SSLContext | bool) -> ssl.SSLContext | bool:
    if verify is True:
        return ssl.create_default_context()
    return verify


def _import_aiohttp() -> None:
    try:
        import aiohttp  # noqa: F401 - fail here, at construction, when the extra is missing
    except ImportError as exc:
        raise ImportError(
            "the aiohttp transport needs aiohttp: pip install 'whatsapp-tokenstore[aiohttp]' "
            "(or set whatsapp.async_transport: httpx)"
        ) from exc


def _new_session(
    limit: int, keepalive: float, ssl_: ssl.SSLContext | bool, *, decompress: bool
) -> aiohttp.ClientSession:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=keepalive, ssl=ssl_)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=decompress,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
    )


class AiohttpSession:
    """The sender's direct path on aiohttp: one ``ClientSession`` per event loop, no httpx objects per request.

    :meth:`post` sends prepared bytes with prepared headers and returns a :class:`~sender._pool.Reply` read
    whole; failures are raised as the httpx exceptions :func:`translate_error` picks (so the sender maps
    them exactly as on httpx: nothing sent versus the outcome unknown).
    """

    def __init__(
        self, *, verify: ssl.SSLContext | bool = True, max_connections: int = 100, keepalive_expiry: float = 5.0
    ) -> None:
        _import_aiohttp()
        self._ssl = _ssl(verify)
        self._limit = max_connections
        self._keepalive = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or self._loop is not loop or session.closed:
            session = self._session = _new_session(self._limit, self._keepalive, self._ssl, decompress=True)
            self._loop = loop
        return session

    @staticmethod
    def timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for httpx's: connect and read per socket; no total (a slot never waits here)."""
        import aiohttp

        return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=timeout.connect, sock_read=timeout.read)

    async def post(
        self, url: str, data: bytes, headers: dict[str, str], timeout: aiohttp.ClientTimeout, where: str
    ) -> tuple[int, Any, bytes]:
        """``(status, headers, body)`` of one POST."""
        session = self._session
        if session is None or session.closed or self._loop is not asyncio.get_running_loop():
            session = self.session()
        try:
            async with session.post(url, data=data, headers=headers, allow_redirects=False, timeout=timeout) as resp:
                return resp.status, resp.headers, await resp.read()
        except Exception as exc:
            mapped = translate_error(exc, where)
            if mapped is exc:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AiohttpTransport())``: same requests and responses, a faster pool."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
    ) -> None:
        _import_aiohttp()
        self._ssl = _ssl(verify)
        self._limit = max_connections
        self._keepalive = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # httpx decodes by Content-Encoding: aiohttp must not
            self._session = _new_session(self._limit, self._keepalive, self._ssl, decompress=False)
            self._loop = loop
        return self._session

    @staticmethod
    def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
        import aiohttp

        t: dict[str, Any] = request.extensions.get("timeout") or {}
        return aiohttp.ClientTimeout(
            total=None, connect=t.get("pool"), sock_connect=t.get("connect"), sock_read=t.get("read")
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._get_session()
        body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        where = f"{request.url.scheme}://{request.url.netloc.decode('ascii', 'replace')}{request.url.path}"
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(request),
                compress=None,
            ) as resp:
                content = await resp.read()
                raw_headers = list(resp.raw_headers)
                status = resp.status
                reason = (resp.reason or "").encode("latin-1", "replace")
        except Exception as exc:
            mapped = translate_error(exc, where, request)
            if mapped is exc:
                raise
            raise mapped from exc
        return httpx.Response(
            status_code=status,
            headers=raw_headers,
            content=content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

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
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport", "aiohttp_available"]


def aiohttp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("aiohttp") is not None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AiohttpTransport())``: same requests and responses, a faster pool."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
    ) -> None:
        try:
            import aiohttp  # noqa: F401 - fail here, at construction, when the extra is missing
        except ImportError as exc:
            raise ImportError(
                "the aiohttp transport needs aiohttp: pip install 'whatsapp-tokenstore[aiohttp]' "
                "(or set whatsapp.async_transport: httpx)"
            ) from exc

        if verify is True:
            self._ssl: ssl.SSLContext | bool = ssl.create_default_context()
        elif verify is False:
            self._ssl = False
        else:
            self._ssl = verify
        self._limit = max_connections
        self._keepalive = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes by Content-Encoding
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
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
        import aiohttp

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
        # -- nothing left this machine -------------------------------------------------------------------
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect timeout to {where}", request=request) from exc
        except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS handshake, ...
            raise httpx.ConnectError(f"cannot connect to {where}: {type(exc).__name__}", request=request) from exc
        except aiohttp.InvalidURL as exc:
            raise httpx.UnsupportedProtocol(f"invalid URL {where}", request=request) from exc
        # -- the request went out: the outcome is unknown --------------------------------------------------
        except aiohttp.SocketTimeoutError as exc:
            raise httpx.ReadTimeout(f"read timeout from {where}", request=request) from exc
        except aiohttp.ServerTimeoutError as exc:
            raise httpx.ReadTimeout(f"timeout from {where}", request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(f"{where} closed the connection", request=request) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise httpx.RemoteProtocolError(
                f"bad response from {where}: {type(exc).__name__}", request=request
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(f"connection to {where} failed: {type(exc).__name__}", request=request) from exc
        except asyncio.TimeoutError as exc:
            raise httpx.ReadTimeout(f"timeout from {where}", request=request) from exc
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

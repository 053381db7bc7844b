"""``RedirectTransport``: send a client's Graph requests to another base URL, below the client.

Some Cloud API clients pin ``https://graph.facebook.com`` (pywa sets its ``httpx.Client``'s ``base_url``
at construction, for one). To point such a client at the local sandbox, a staging Graph stand-in or an
egress gateway without touching its private attributes, give its httpx client this transport: requests to
the Graph origin are rewritten to ``base_url`` (path prefix kept, query and body untouched); requests to
any other origin pass through unchanged.

    >>> session = httpx.Client(auth=sender.TokenAuth(provider),                    # doctest: +SKIP
    ...                        transport=sender.RedirectTransport("http://127.0.0.1:8080"))

The rewritten requests carry the access token, so ``base_url`` must be ``https://`` (plain ``http://`` is
allowed to loopback only), like ``whatsapp.base_url``. One instance works under ``httpx.Client`` and
``httpx.AsyncClient``; it builds the matching httpx transport on first use unless ``transport`` is given
(then give it the client's TLS, proxy and pool settings, which httpx does not apply to a custom transport).
"""

from __future__ import annotations

from types import TracebackType

import httpx

from ._config import DEFAULT_BASE_URL, check_base_url

__all__ = ["RedirectTransport"]


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host, url.port if url.port is not None else default


class RedirectTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Rewrite requests for ``origin`` (default ``https://graph.facebook.com``) to ``base_url``.

    ``transport``: the httpx transport that sends (sync or async); default: a plain
    ``httpx.HTTPTransport()`` / ``httpx.AsyncHTTPTransport()`` made on first use.
    """

    def __init__(
        self,
        base_url: str,
        *,
        origin: str = DEFAULT_BASE_URL,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        problem = check_base_url(base_url)
        if problem:
            raise ValueError(f"base_url {problem}")
        target = httpx.URL(base_url)
        source = httpx.URL(origin)
        if source.scheme not in ("https", "http") or not source.host:
            raise ValueError("origin must be an http(s) URL such as https://graph.facebook.com")
        self.base_url = str(target).rstrip("/")
        self.origin = str(source.copy_with(path="/")).rstrip("/")
        self._from = _origin(source)
        self._scheme = target.scheme
        self._host = target.host
        self._port = target.port
        self._prefix = target.raw_path.rstrip(b"/")
        self._host_header = target.netloc
        self._sync: httpx.BaseTransport | None = None
        self._async: httpx.AsyncBaseTransport | None = None
        self._mode: str | None = None  # "sync" / "async" when the caller gave the transport
        if isinstance(transport, httpx.BaseTransport):
            self._sync, self._mode = transport, "sync"
        elif isinstance(transport, httpx.AsyncBaseTransport):
            self._async, self._mode = transport, "async"
        elif transport is not None:
            raise TypeError("transport must be an httpx transport (httpx.BaseTransport or httpx.AsyncBaseTransport)")

    def rewrite(self, request: httpx.Request) -> httpx.Request:
        """Point ``request`` at ``base_url`` when it is for ``origin`` (in place; returned for convenience)."""
        if _origin(request.url) != self._from:
            return request
        request.url = request.url.copy_with(
            scheme=self._scheme,
            host=self._host,
            port=self._port,
            raw_path=self._prefix + request.url.raw_path,
        )
        request.headers["Host"] = self._host_header.decode("ascii")
        return request

    # -- sync ---------------------------------------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._sync is None:
            if self._mode == "async":
                raise RuntimeError("this RedirectTransport wraps an async transport: use it with httpx.AsyncClient")
            self._sync = httpx.HTTPTransport()
        return self._sync.handle_request(self.rewrite(request))

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()

    def __enter__(self) -> RedirectTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()

    # -- async --------------------------------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._async is None:
            if self._mode == "sync":
                raise RuntimeError("this RedirectTransport wraps a sync transport: use it with httpx.Client")
            self._async = httpx.AsyncHTTPTransport()
        return await self._async.handle_async_request(self.rewrite(request))

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()

    async def __aenter__(self) -> RedirectTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<RedirectTransport {self.origin} -> {self.base_url}>"

"""Sender's direct path on urllib3's connection pool: for threads, what aiohttp's is for tasks.

Why: httpcore's sync pool (under ``httpx.Client``) walks every connection for every request while holding
its lock, so with 200 threads in flight a send costs milliseconds of CPU (bench/latency.py: raw httpx.Client
at 200 threads and 200 ms did ~45 msg/s); urllib3's pool is a queue of idle connections. Failures are
raised as the httpx exceptions that say whether the request left, so the sender maps them exactly as on
httpx:

* could not connect (refused, DNS, TLS handshake, connect timeout) -> ``httpx.ConnectError`` /
  ``httpx.ConnectTimeout``: nothing was sent;
* anything after the connection was made (reset, disconnect, read timeout) -> ``httpx.ReadTimeout`` /
  ``httpx.RemoteProtocolError`` / ``httpx.ReadError``: the outcome is unknown.

urllib3 never retries here (``retries=False``) and never follows redirects: the sender decides.
"""

from __future__ import annotations

import ssl
import threading
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    import urllib3

__all__ = ["Urllib3Session", "proxied_environment", "translate_error", "urllib3_available"]


def urllib3_available() -> bool:
    """urllib3 2.x is installed (1.x lacks the exceptions this module maps). Imports it: it is used next."""
    try:
        import urllib3
    except ImportError:
        return False
    try:
        return int(str(getattr(urllib3, "__version__", "0")).split(".")[0]) >= 2
    except ValueError:
        return False


def proxied_environment() -> bool:
    """Whether the environment names an HTTP(S) proxy (then httpx, which honours it and NO_PROXY, is used)."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def translate_error(exc: BaseException, where: str) -> BaseException:
    """The httpx exception for a urllib3 failure, by whether the request left; other exceptions unchanged."""
    from urllib3 import exceptions as u3

    # -- nothing left this machine ---------------------------------------------------------------------------
    if isinstance(exc, u3.ConnectTimeoutError) and not isinstance(exc, u3.NewConnectionError):
        return httpx.ConnectTimeout(f"connect timeout to {where}")
    if isinstance(exc, (u3.NewConnectionError, u3.NameResolutionError)):
        return httpx.ConnectError(f"cannot connect to {where}: {type(exc).__name__}")
    if isinstance(exc, u3.SSLError):  # the handshake: nothing was sent
        return httpx.ConnectError(f"TLS handshake with {where} failed: {type(exc).__name__}")
    if isinstance(exc, (u3.LocationValueError, u3.LocationParseError)):
        return httpx.UnsupportedProtocol(f"invalid URL {where}")
    # -- the request went out: the outcome is unknown --------------------------------------------------------
    if isinstance(exc, u3.ReadTimeoutError):
        return httpx.ReadTimeout(f"read timeout from {where}")
    if isinstance(exc, u3.ProtocolError):
        return httpx.RemoteProtocolError(f"{where} closed the connection or answered badly")
    if isinstance(exc, (u3.HTTPError, OSError)):
        return httpx.ReadError(f"connection to {where} failed: {type(exc).__name__}")
    return exc


class Urllib3Session:
    """urllib3 pools (one per scheme/host/port) of ``max_connections`` connections each; thread-safe."""

    def __init__(
        self, *, verify: ssl.SSLContext | bool = True, max_connections: int = 100, keepalive_expiry: float = 5.0
    ) -> None:
        try:
            import urllib3
        except ImportError as exc:  # pragma: no cover - urllib3 is there whenever this class is chosen
            raise ImportError("the urllib3 transport needs urllib3: pip install urllib3") from exc
        if verify is True:
            context: ssl.SSLContext | None = ssl.create_default_context()
        elif verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = verify
        self._manager = urllib3.PoolManager(
            num_pools=16, maxsize=max_connections, block=True, retries=False, ssl_context=context
        )
        self._lock = threading.Lock()
        self._pools: dict[str, Any] = {}

    def pool_for(self, url: str) -> urllib3.HTTPConnectionPool:
        with self._lock:
            parts = urlsplit(url)
            key = f"{parts.scheme}://{parts.netloc}"
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = self._manager.connection_from_url(key)
            return pool

    @staticmethod
    def timeout(timeout: httpx.Timeout) -> urllib3.Timeout:
        import urllib3

        return urllib3.Timeout(connect=timeout.connect, read=timeout.read)

    @staticmethod
    def post(
        pool: urllib3.HTTPConnectionPool,
        target: str,
        data: bytes,
        headers: dict[str, str],
        timeout: urllib3.Timeout,
        where: str,
    ) -> tuple[int, Any, bytes]:
        """``(status, headers, body)`` of one POST of ``target`` (path and query) on ``pool``."""
        try:
            response = pool.urlopen(
                "POST",
                target,
                body=data,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=timeout,
                preload_content=True,
                decode_content=True,
                assert_same_host=False,
            )
        except Exception as exc:
            mapped = translate_error(exc, where)
            if mapped is exc:
                raise
            raise mapped from exc
        return response.status, response.headers, response.data

    def close(self) -> None:
        self._manager.clear()

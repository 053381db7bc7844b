"""AsyncSender's own HTTP/1.1 client: keep-alive connections on asyncio protocols, and nothing else.

Why: at Meta's latency a sender holds hundreds of requests in flight and the client core saturates, so CPU per
message *is* the rate. Measured in bench/ (1,000 in flight, 200 ms, one core): aiohttp's ``ClientSession``
spends ~350 µs of CPU per request here (request/response objects, header multidicts, tracing, cookies,
redirect handling, timers), a protocol that writes one prepared request and parses one small response ~90 µs.
A Cloud API send needs only that: one POST with a JSON body to one origin, a small JSON answer.

What it speaks (RFC 9112, client side): ``POST`` with ``Content-Length``; responses delimited by
``Content-Length``, ``Transfer-Encoding: chunked`` or the connection's close; interim ``1xx`` answers skipped;
``Connection: close`` and HTTP/1.0 honoured; ``gzip``/``deflate`` bodies decoded should a server send them
(we ask for identity). Connections are kept alive and reused most recent first; an idle one older than
``keepalive_expiry`` seconds, or one the server closed, is never reused (expired ones are closed). TLS through
:mod:`ssl` (certificates and host names verified unless ``verify`` says otherwise). Bounds: at most 64 KiB of
response head (interim 1xx heads and trailers included), a body of at most 16 MiB once decoded (Graph's
answers are a few hundred bytes); a truncated gzip/deflate body is refused, never returned short. No proxies
(``async_transport: auto`` picks httpx, which honours them, when the environment names one), no HTTP/2
(measured: it loses here, README "Throughput"), no redirects (a send is never redirected; the sender would not
follow one), no cookies.

Failures are raised as httpx exceptions by *whether the request left*, exactly as on the aiohttp path:

* could not connect (refused, DNS, TLS handshake, connect timeout) -> ``httpx.ConnectError`` /
  ``httpx.ConnectTimeout``: nothing was sent, safe to retry;
* anything after the request was written (closed, reset, read timeout, a malformed answer) ->
  ``httpx.RemoteProtocolError`` / ``httpx.ReadError`` / ``httpx.ReadTimeout``: the outcome is unknown.

A connection whose request was cancelled, timed out or failed is closed, never reused. One
:class:`WireSession` serves one event loop at a time (it starts afresh on another, closing the old loop's
connections there, or at the socket once that loop is closed).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["MAX_BODY", "MAX_HEAD", "Headers", "WireSession"]

#: the largest response head (status line and headers) accepted, in bytes
MAX_HEAD = 64 * 1024
#: the largest response body accepted (after decoding), in bytes
MAX_BODY = 16 * 1024 * 1024
#: the characters of a header name (RFC 9110 token): ``name.translate(None, _TOKEN_CHARS)`` is empty for a valid one
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class Headers(dict[str, str]):
    """Response headers: names lower-cased; ``get`` and ``[]`` take any case (repeated headers joined by ``, ``)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key.lower() if isinstance(key, str) else key)


class _BadResponse(Exception):
    """The server's bytes are not an HTTP/1.1 response we can read (the message says what)."""


# -- the response parser (no I/O) -----------------------------------------------------------------------------
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class _Parser:
    """Incremental parser of the one response on a connection: :meth:`feed` bytes; ``done`` when complete."""

    __slots__ = ("body", "buf", "headers", "keep_alive", "left", "seen", "state", "status", "version_11")

    def __init__(self) -> None:
        self.buf: bytes | bytearray = b""
        self.state = _HEAD
        self.status = 0
        self.headers = Headers()
        self.body = bytearray()  # one buffer: a body in many small reads or chunks costs neither memory nor time
        self.left = 0  # bytes of the body (or of the current chunk) still to come
        self.seen = 0  # bytes of heads (interim ones too) and trailers so far: MAX_HEAD bounds them all
        self.keep_alive = True
        self.version_11 = True

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes) -> None:
        buf: bytes | bytearray = data
        scanned = 0  # bytes of buf already searched for the end of a line or head (less the 3 a marker spans)
        pending = self.buf
        if pending:
            # an unfinished head or line waits in a bytearray grown in place, and only the new bytes are searched:
            # a 64 KiB head in one-byte reads stays linear (bytes + bytes and a search from 0 made it quadratic)
            scanned = max(0, len(pending) - 3)
            pending += data
            buf = pending
            self.buf = b""
        while buf and self.state != _DONE:
            state = self.state
            if state in (_LENGTH, _CHUNK_DATA):  # counted bytes: the whole body, or one chunk of it
                take = buf[: self.left]
                self.body += take
                self.left -= len(take)
                buf = buf[len(take) :]
                if self.left == 0:
                    self.state = _DONE if state == _LENGTH else _CHUNK_END
                continue
            if state == _UNTIL_CLOSE:
                self.body += buf
                if len(self.body) > MAX_BODY:
                    raise _BadResponse(f"a body of more than {MAX_BODY} bytes")
                return
            # the line-based states: head, chunk size, the CRLF after a chunk, trailers
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n", scanned)
                scanned = 0
                if end < 0:
                    if self.seen + len(buf) > MAX_HEAD:
                        raise _BadResponse(f"a response head of more than {MAX_HEAD} bytes")
                    self.buf = buf if isinstance(buf, bytearray) else bytearray(buf)
                    return
                self.seen += end + 4
                if self.seen > MAX_HEAD:  # one head, or endless interim (1xx) ones
                    raise _BadResponse(f"a response head of more than {MAX_HEAD} bytes")
                head, buf = buf[:end], buf[end + 4 :]
                self._head(head)
                continue
            end = buf.find(b"\r\n", scanned)
            scanned = 0
            if end < 0:
                if len(buf) > 4096:
                    raise _BadResponse("a chunk-size or trailer line of more than 4096 bytes")
                self.buf = buf if isinstance(buf, bytearray) else bytearray(buf)
                return
            line, buf = buf[:end], buf[end + 2 :]
            if state == _CHUNK_SIZE:
                size = line.split(b";", 1)[0].strip()
                if not size or len(size) > 8 or any(c not in b"0123456789abcdefABCDEF" for c in size):
                    raise _BadResponse("a malformed chunk size")
                self.left = int(size, 16)
                if len(self.body) + self.left > MAX_BODY:
                    raise _BadResponse(f"a body of more than {MAX_BODY} bytes")
                self.state = _CHUNK_DATA if self.left else _TRAILERS
            elif state == _CHUNK_END:
                if line:
                    raise _BadResponse("a chunk not followed by CRLF")
                self.state = _CHUNK_SIZE
            elif state == _TRAILERS:
                if not line:
                    self.state = _DONE
                else:
                    self.seen += end + 2
                    if self.seen > MAX_HEAD:
                        raise _BadResponse(f"a head and trailers of more than {MAX_HEAD} bytes")
        if buf:
            # bytes beyond the one response we asked for: the connection is not in a state to reuse
            self.keep_alive = False

    def _head(self, head: bytes | bytearray) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        if not status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) or len(status_line) < 12:
            raise _BadResponse("not an HTTP/1.x status line")
        code = status_line[9:12]
        if not code.isdigit() or (len(status_line) > 12 and status_line[12:13] != b" "):
            raise _BadResponse("a malformed status code")
        status = int(code)
        if status < 100:  # RFC 9110 15: three digits, the first 1-5 (6xx-9xx are read as their class below)
            raise _BadResponse(f"a status code below 100 ({status:03d})")
        if 100 <= status < 200:
            if status == 101:
                raise _BadResponse("an unrequested protocol switch (101)")
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        headers = Headers()
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name.translate(None, _TOKEN_CHARS):  # in C: a generator here cost ~1 µs a name
                raise _BadResponse("a malformed header line")
            key = name.decode("ascii").lower()
            text = value.strip(b" \t").decode("latin-1")
            previous = dict.get(headers, key)
            dict.__setitem__(headers, key, text if previous is None else f"{previous}, {text}")
        self.status = status
        self.headers = headers
        self.version_11 = status_line.startswith(b"HTTP/1.1")
        connection = dict.get(headers, "connection", "").lower()
        self.keep_alive = ("close" not in connection) if self.version_11 else ("keep-alive" in connection)
        coding = dict.get(headers, "transfer-encoding")
        length = dict.get(headers, "content-length")
        if status in (204, 304):
            self.state = _DONE
        elif coding is not None:
            # we send no TE header, so chunked is the only transfer coding a server may use (RFC 9112 7.4):
            # "gzip, chunked" would hand back a body nobody decoded
            if coding.strip().lower() != "chunked":
                raise _BadResponse(f"an unsupported transfer-encoding ({coding[:40]})")
            if length is not None:
                self.keep_alive = False  # framed both ways: chunked wins, the connection is not reused (6.3)
            self.state = _CHUNK_SIZE
        elif length is not None:
            if "," in length:  # repeated equal values are allowed (RFC 9112 6.3)
                lengths = {v.strip() for v in length.split(",")}
                only = lengths.pop() if len(lengths) == 1 else ""
            else:
                only = length  # already stripped (a set built for the one usual value cost ~1 µs)
            if not only.isascii() or not only.isdigit() or len(only) > 10:
                raise _BadResponse("a malformed content-length")
            self.left = int(only)
            if self.left > MAX_BODY:
                raise _BadResponse(f"a body of more than {MAX_BODY} bytes")
            self.state = _LENGTH if self.left else _DONE
        else:
            self.state = _UNTIL_CLOSE
            self.keep_alive = False

    def content(self) -> bytes:
        body = bytes(self.body)
        coding = dict.get(self.headers, "content-encoding", "").strip().lower()
        if not coding or coding == "identity":
            return body
        if coding in ("gzip", "x-gzip", "deflate"):
            return _decode(coding, body) if body else body
        raise _BadResponse(f"an unsupported content-encoding ({coding[:40]})")


def _decode(coding: str, body: bytes) -> bytes:
    """A gzip (every member) or deflate (zlib-wrapped, any window, or raw) body, whole and at most MAX_BODY."""
    if coding == "deflate":
        cmf = body[0]
        wrapped = len(body) > 1 and cmf & 0x0F == 8 and cmf >> 4 <= 7 and ((cmf << 8) | body[1]) % 31 == 0
        wbits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS  # RFC 9110 says zlib; some servers send raw
    else:
        wbits = 16 + zlib.MAX_WBITS
    out: list[bytes] = []
    size = 0
    while True:
        decoder = zlib.decompressobj(wbits)
        try:
            piece = decoder.decompress(body, MAX_BODY + 1 - size)  # never inflates more than the bound
        except zlib.error as exc:
            raise _BadResponse(f"a {coding} body that does not decode") from exc
        size += len(piece)
        out.append(piece)
        if size > MAX_BODY:
            raise _BadResponse(f"a body of more than {MAX_BODY} bytes once decoded")
        if not decoder.eof:  # a truncated stream must not pass for a short body
            raise _BadResponse(f"a truncated {coding} body")
        body = decoder.unused_data
        if not body:
            return b"".join(out) if len(out) != 1 else out[0]
        if coding == "deflate":
            raise _BadResponse("bytes after the end of a deflate body")
        # another gzip member follows (RFC 1952 allows several)


# -- one connection ---------------------------------------------------------------------------------------------
class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request at a time (no pipelining)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser: _Parser | None = None
        self.waiter: asyncio.Future[tuple[int, Headers, bytes]] | None = None
        self.lost = False
        self.idle_since = 0.0
        self.last_data = 0.0
        self.read_timeout: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio's callbacks --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        parser, waiter = self.parser, self.waiter
        if parser is None or waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: this connection cannot be trusted with the next request
            return
        if self.read_timeout is not None:
            self.last_data = self.loop.time()
        try:
            parser.feed(data)
        except _BadResponse as exc:
            self._fail(httpx.RemoteProtocolError(f"bad response: {exc}"))
            return
        if parser.done:
            self._finish()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._cancel_timer()
        parser, waiter = self.parser, self.waiter
        if waiter is None or waiter.done():
            return
        if exc is None and parser is not None and parser.state == _UNTIL_CLOSE:
            parser.state = _DONE  # a body delimited by the close: complete
            self._finish()
            return
        if exc is None:
            self._fail(httpx.RemoteProtocolError("the server closed the connection before it answered"))
        else:
            error = httpx.ReadError(f"the connection failed: {type(exc).__name__}")
            error.__cause__ = exc
            self._fail(error)

    # -- our side ---------------------------------------------------------------------------------------------
    def reusable(self, now: float, expiry: float) -> bool:
        transport = self.transport
        return not self.lost and transport is not None and not transport.is_closing() and now - self.idle_since < expiry

    def send(self, request: bytes, read_timeout: float | None) -> asyncio.Future[tuple[int, Headers, bytes]]:
        assert self.transport is not None
        self.parser = _Parser()
        waiter = self.waiter = self.loop.create_future()
        if self.lost or self.transport.is_closing():
            # closed between the connect and this write (the server accepted and closed at once): nothing left,
            # and with no read timeout nothing else would ever resolve the waiter
            waiter.set_exception(httpx.ConnectError("the server closed the connection before the request was sent"))
            return waiter
        self.read_timeout = read_timeout
        self.transport.write(request)
        if read_timeout is not None:
            self.last_data = now = self.loop.time()
            self.timer = self.loop.call_at(now + read_timeout, self._check_read)
        return waiter

    def _check_read(self) -> None:
        self.timer = None
        waiter, timeout = self.waiter, self.read_timeout
        if waiter is None or waiter.done() or timeout is None:
            return
        due = self.last_data + timeout
        if self.loop.time() >= due:
            self._fail(httpx.ReadTimeout(f"no answer within the read timeout ({timeout:g}s)"))
        else:
            self.timer = self.loop.call_at(due, self._check_read)  # data came since: wait the rest

    def _finish(self) -> None:
        parser, waiter = self.parser, self.waiter
        assert parser is not None and waiter is not None
        self._cancel_timer()
        try:
            content = parser.content()
        except _BadResponse as exc:
            self._fail(httpx.RemoteProtocolError(f"bad response: {exc}"))
            return
        if not parser.keep_alive:
            self.close()
        self.parser = None
        waiter.set_result((parser.status, parser.headers, content))

    def _fail(self, error: BaseException) -> None:
        waiter = self.waiter
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        self.lost = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def close_elsewhere(self) -> None:
        """Close from outside this connection's loop, which may be closed or running in another thread."""
        self.lost = True
        loop, transport = self.loop, self.transport
        if transport is None:
            return
        if loop.is_running():
            try:
                loop.call_soon_threadsafe(self.close)  # its transport is that loop's, and that thread's, to touch
                return
            except RuntimeError:  # that loop closed in the meantime
                pass
        if not loop.is_closed():
            self.close()  # an idle loop: nothing runs there now; the transport finishes closing if it runs again
        # a loop that is not running (or closed: asyncio.run has returned) would never complete the close: end
        # the TCP connection here so the server sees it go; the socket itself is freed with its transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- the pool ---------------------------------------------------------------------------------------------------
class _Origin:
    __slots__ = ("host", "host_header", "idle", "open", "port", "server_hostname", "tls")

    def __init__(self, scheme: str, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        default = 443 if scheme == "https" else 80
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if port == default else f"{shown}:{port}"
        self.server_hostname = host if tls is not None else None
        self.idle: list[_Connection] = []
        self.open = True  # False once the session dropped it (aclose, another loop): its connections are closed


class WireSession:
    """The direct path's session (the same interface as :class:`~sender._aiohttp.AiohttpSession`):
    :meth:`post` sends prepared bytes with prepared headers and returns ``(status, headers, body)`` read whole.

    At most ``max_connections`` idle connections are kept per origin; how many are open at once is bounded
    by the pool's in-flight slots (a request holds one connection while it is on the wire).
    """

    def __init__(
        self, *, verify: ssl.SSLContext | bool = True, max_connections: int = 100, keepalive_expiry: float = 5.0
    ) -> None:
        self._verify = verify
        self._tls: ssl.SSLContext | None = None
        self._limit = max_connections
        self._expiry = keepalive_expiry
        self._by_origin: dict[str, _Origin] = {}  # "scheme://host:port" -> its idle connections
        self._targets: dict[str, tuple[_Origin, str]] = {}  # url -> (origin, request target)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    @staticmethod
    def timeout(timeout: httpx.Timeout) -> tuple[float | None, float | None]:
        """``(connect, read)`` seconds from httpx's timeout (a slot never waits here: no pool timeout)."""
        return timeout.connect, timeout.read

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            verify = self._verify
            if isinstance(verify, ssl.SSLContext):
                self._tls = verify
            else:
                context = ssl.create_default_context()
                if verify is False:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._tls = context
        return self._tls

    def _target(self, url: str) -> tuple[_Origin, str]:
        found = self._targets.get(url)
        if found is not None:
            return found
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # "http://[::1/": a broken IPv6 literal
            raise httpx.UnsupportedProtocol(f"invalid URL {url.split('?', 1)[0]}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"invalid URL {url.split('?', 1)[0]}: http or https with a host")
        try:
            port = parts.port
        except ValueError as exc:
            raise httpx.UnsupportedProtocol(f"invalid port in {url.split('?', 1)[0]}") from exc
        if port is None:  # not "or": an explicit :0 is not the default port
            port = 443 if scheme == "https" else 80
        key = f"{scheme}://{parts.hostname}:{port}"
        origin = self._by_origin.get(key)
        if origin is None:
            tls = self._tls_context() if scheme == "https" else None
            origin = self._by_origin[key] = _Origin(scheme, parts.hostname, port, tls)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if len(self._targets) >= 256:  # query strings vary (appsecret_proof per token): keep the map small
            self._targets.clear()
        found = self._targets[url] = (origin, target)
        return found

    def _check_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                self._drop_all()  # connections belong to the loop they were made on
            self._loop = loop
            self.closed = False
        return loop

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: _Origin, timeout: float | None, where: str
    ) -> _Connection:
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)  # Python 3.11+
        cancels = cancelling() if cancelling is not None else 0
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    origin.host,
                    origin.port,
                    ssl=origin.tls,
                    server_hostname=origin.server_hostname,
                ),
                timeout,
            )
        except asyncio.TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect timeout to {where}") from exc
        except (OSError, ssl.SSLError) as exc:  # refused, DNS, unreachable, the TLS handshake
            raise httpx.ConnectError(f"cannot connect to {where}: {type(exc).__name__}") from exc
        except ValueError as exc:  # a host name that cannot be looked up at all (a NUL, an IDNA label too long)
            raise httpx.UnsupportedProtocol(f"cannot connect to {where}: an invalid host name") from exc
        if cancelling is not None and cancelling() > cancels:
            # cancelled in the step the connection was made: 3.11's wait_for returns the connection and drops
            # the cancel, and the request would go out after the caller gave up on it
            conn.close()
            raise asyncio.CancelledError
        return conn

    async def post(
        self, url: str, data: bytes, headers: dict[str, str], timeout: tuple[float | None, float | None], where: str
    ) -> tuple[int, Headers, bytes]:
        """``(status, headers, body)`` of one POST (see the module docstring for what is raised)."""
        loop = self._loop if self._loop is asyncio.get_running_loop() else self._check_loop()
        if self.closed:
            raise RuntimeError("this connection pool is closed")
        origin, target = self._target(url)
        connect_timeout, read_timeout = timeout
        conn: _Connection | None = None
        idle = origin.idle
        if idle:
            now = loop.time()
            while idle:
                candidate = idle.pop()
                if candidate.reusable(now, self._expiry):
                    conn = candidate
                    break
                candidate.close()
        if conn is None:
            conn = await self._connect(loop, origin, connect_timeout, where)
        lines = [f"POST {target} HTTP/1.1\r\nHost: {origin.host_header}\r\nContent-Length: {len(data)}\r\n"]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                _return(conn, origin, loop, self._limit, self._expiry)
                raise httpx.LocalProtocolError(f"the {name[:40]!r} header holds a line break: not sent") from None
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        try:
            request: bytes | None = "".join(lines).encode("latin-1") + data
        except UnicodeEncodeError:
            request = None  # raised outside this block: the UnicodeEncodeError (as __context__) holds the headers
        if request is None:
            _return(conn, origin, loop, self._limit, self._expiry)
            raise httpx.LocalProtocolError("a header holds characters HTTP/1.1 cannot carry: not sent")
        try:
            answer = await conn.send(request, read_timeout)
        except BaseException:
            conn.close()  # cancelled, timed out or failed mid-request: its state is unknown
            raise
        _return(conn, origin, loop, self._limit, self._expiry)
        return answer

    def _drop_all(self) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for origin in self._by_origin.values():
            origin.open = False  # a request still in flight closes its connection when done (see _return)
            while origin.idle:
                conn = origin.idle.pop()
                if conn.loop is loop:
                    conn.close()
                else:
                    conn.close_elsewhere()  # made on another loop: transport.close() there may raise or race
        self._by_origin.clear()
        self._targets.clear()

    async def aclose(self) -> None:
        self._drop_all()
        self.closed = True
        await asyncio.sleep(0)  # let the transports run their close callbacks


def _return(conn: _Connection, origin: _Origin, loop: asyncio.AbstractEventLoop, limit: int, expiry: float) -> None:
    """Put a connection whose exchange is complete back among the idle ones (or close it)."""
    if conn.lost:
        return
    if not origin.open:  # the session was closed (or moved to another loop) while this request was out
        conn.close()
        return
    idle = origin.idle
    now = loop.time()
    # reuse is most recent first, so after a burst the oldest idle ones would sit at the bottom for ever, open
    # past keepalive_expiry and counted against the limit: close those that expired (the oldest come first)
    while idle and (idle[0].lost or now - idle[0].idle_since >= expiry):
        idle.pop(0).close()
    if len(idle) < limit:
        conn.idle_since = now
        idle.append(conn)
    else:
        conn.close()

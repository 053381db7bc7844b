"""A loopback TCP proxy in front of any local server, which can fail on command.

Put it between a client and a real server (OpenBao, moto, a fake) to produce the failures the server itself
cannot: the clients see exactly what they would see in production, through their real transport stack.

* :meth:`FaultProxy.go_down` - close the listener (new connections are refused) AND drop every established
  connection (pooled keep-alive clients notice at once, instead of talking to a server that is "down" over a
  connection it accepted before); :meth:`FaultProxy.heal` listens again on the same port.
* :meth:`FaultProxy.hang` - accept and hold every connection without forwarding a byte (read timeouts);
  established connections stop forwarding too.
* :meth:`FaultProxy.reset` - answer every connection, new or established, with a TCP reset.
* :meth:`FaultProxy.respond` - answer every new HTTP request with a canned response (throttling, 5xx, a
  modelled AWS error) and close the connection; established connections are dropped when it is set.

``FaultProxy(port_of_server).start()``; ``proxy.url`` is ``http://127.0.0.1:<proxy port>``. Counters:
``connections`` (accepted), ``canned`` (canned answers given). ``stop()`` ends everything.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from tests.servers import free_port

__all__ = ["CannedResponse", "FaultProxy"]

_PASS, _DOWN, _HANG, _RESET, _RESPOND = "pass", "down", "hang", "reset", "respond"
_POLL = 0.02  # how often a pump checks for a mode change (bounds how long go_down() and friends wait)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class CannedResponse:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Status')}"]
        headers = {"Content-Length": str(len(self.body)), "Connection": "close", **self.headers}
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _rst_close(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER on, timeout 0), not a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Conn:
    """One accepted client connection (and its upstream), handled by its own thread."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.generation = -1  # the proxy's mode generation this connection last acted on
        self.holding = False  # held by hang(): ends when the mode changes again
        self.thread: threading.Thread | None = None


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``127.0.0.1:upstream_port`` until told to fail."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.connections = 0
        self.canned = 0
        self._mode = _PASS
        self._generation = 0  # bumped on every mode change: pumps compare it to notice
        self._canned: CannedResponse | None = None
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: set[_Conn] = set()
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._close_listener()
        self._set_mode(_DOWN)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------------------------
    def go_down(self) -> None:
        """Refuse new connections and drop established ones (returns once they are closed)."""
        self._close_listener()
        self._set_mode(_DOWN)

    def hang(self) -> None:
        """Accept connections but forward nothing, on new and established connections alike."""
        self._set_mode(_HANG)
        self._listen()

    def reset(self) -> None:
        """Reset (TCP RST) every connection, established ones at once and new ones on accept."""
        self._set_mode(_RESET)
        self._listen()

    def respond(self, status: int, body: bytes | str = b"", headers: Mapping[str, str] | None = None) -> None:
        """Answer each new HTTP request with this response (then close); established connections are dropped."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        with self._lock:
            self._canned = CannedResponse(status, body, dict(headers or {}))
        self._set_mode(_RESPOND)
        self._listen()

    def heal(self) -> None:
        """Forward again, on the same port. Connections held by hang() are dropped (their clients gave up)."""
        self._set_mode(_PASS)
        self._listen()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        self.go_down()
        try:
            yield
        finally:
            self.heal()

    # -- internals ------------------------------------------------------------------------------------------
    def _set_mode(self, mode: str) -> None:
        with self._lock:
            self._mode = mode
            self._generation += 1
            conns = list(self._conns)
        # wait (bounded) until every connection thread has acted on the change, so a caller that goes on to
        # make a request sees the new behaviour, not a race
        for conn in conns:
            thread = conn.thread
            if thread is None or thread is threading.current_thread():
                continue
            if mode in (_DOWN, _RESET, _RESPOND) or (mode == _PASS and conn.holding):
                thread.join(timeout=2)  # these connections end
            else:
                deadline = time.monotonic() + 2
                while thread.is_alive() and conn.generation != self._generation and time.monotonic() < deadline:
                    time.sleep(_POLL / 4)

    def _listen(self) -> None:
        with self._lock:
            if self._listener is not None or self._stopped:
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(64)
            sock.settimeout(_POLL * 5)
            self._listener = sock
            thread = threading.Thread(target=self._accept_loop, args=(sock,), name="faultproxy-accept", daemon=True)
            self._accept_thread = thread
        thread.start()

    def _close_listener(self) -> None:
        with self._lock:
            sock, self._listener = self._listener, None
            thread, self._accept_thread = self._accept_thread, None
        if sock is not None:
            _close(sock)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            with self._lock:
                if self._listener is not listener:
                    return
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client)
            with self._lock:
                self.connections += 1
                self._conns.add(conn)
            conn.thread = threading.Thread(target=self._handle, args=(conn,), name="faultproxy-conn", daemon=True)
            conn.thread.start()

    def _handle(self, conn: _Conn) -> None:
        try:
            with self._lock:
                mode, conn.generation = self._mode, self._generation
                canned = self._canned
            if mode == _RESET:
                _rst_close(conn.client)
                return
            if mode == _RESPOND and canned is not None:
                self._answer(conn, canned)
                return
            if mode == _HANG:
                self._hold(conn)
                return
            if mode != _PASS:
                return
            try:
                conn.upstream = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                _rst_close(conn.client)
                return
            conn.upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pump(conn)
        finally:
            _close(conn.client)
            _close(conn.upstream)
            with self._lock:
                self._conns.discard(conn)

    def _changed(self, conn: _Conn) -> str | None:
        """The new mode if it changed since this connection last looked (acknowledging it), else None."""
        with self._lock:
            if self._generation == conn.generation:
                return None
            conn.generation = self._generation
            return self._mode

    def _hold(self, conn: _Conn) -> None:
        conn.holding = True
        while self._changed(conn) is None:
            readable, _, _ = select.select([conn.client], [], [], _POLL)
            if readable:
                try:
                    if not conn.client.recv(65536):
                        return  # the client gave up
                except OSError:
                    return

    def _answer(self, conn: _Conn, canned: CannedResponse) -> None:
        conn.client.settimeout(2)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.client.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            while len(body) < length:
                chunk = conn.client.recv(65536)
                if not chunk:
                    break
                body += chunk
            with self._lock:
                self.canned += 1
            conn.client.sendall(canned.encode())
        except OSError:
            return

    def _pump(self, conn: _Conn) -> None:
        assert conn.upstream is not None
        pairs = {conn.client: conn.upstream, conn.upstream: conn.client}
        while True:
            mode = self._changed(conn)
            if mode is not None:
                if mode == _RESET:
                    _rst_close(conn.client)
                    return
                if mode == _HANG:
                    self._hold(conn)
                    return  # after a hang the connection is dropped, whatever comes next
                if mode != _PASS:
                    return  # down or respond: drop the established connection
            readable, _, _ = select.select(list(pairs), [], [], _POLL)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    pairs[sock].sendall(data)
                except OSError:
                    return

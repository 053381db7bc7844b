"""The sender's own HTTP/1.1 client (:mod:`sender._wire`), adversarially: its parser fed byte by byte and at
every split point, and the client against real loopback servers that write scripted raw bytes (plain TCP and
TLS): bodies and framing, refusals, failures mapped by whether the request left, keep-alive and the pool, the
exact bytes on the wire, and no token in any exception.

Every server here is a socket server in a thread on 127.0.0.1 whose script is a plain function per connection;
timing is driven by events (the client waits on the server's events in a thread, never on a race of sleeps).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sender._wire import MAX_BODY, MAX_HEAD, Headers, WireSession, _BadResponse, _Connection, _Origin, _Parser
from tests.servers import LocalTLS, free_port

CANARY = "CANARY-wire-7f3a9c-secret-token"
AUTH = {"Authorization": f"Bearer {CANARY}", "Content-Type": "application/json"}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
T = (10.0, 10.0)  # generous connect and read timeouts for the tests that do not time out on purpose


# -- a scripted raw-bytes server --------------------------------------------------------------------------------
class Peer:
    """The server's side of one accepted connection, handed to a script."""

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.buf = b""

    def read_request(self) -> bytes | None:
        """One whole request (head and Content-Length body), or None at EOF (recorded on the server)."""
        try:
            while b"\r\n\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    self.server.saw_eof()
                    return None
                self.buf += data
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(rest) < length:
                data = self.sock.recv(65536)
                if not data:
                    self.server.saw_eof()
                    return None
                rest += data
        except OSError:
            self.server.saw_eof()
            return None
        self.buf = rest[length:]
        request = head + b"\r\n\r\n" + rest[:length]
        self.server.record(request)
        return request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def trickle(self, data: bytes, gap: float) -> None:
        for i in range(len(data)):
            self.sock.sendall(data[i : i + 1])
            time.sleep(gap)

    def reset(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def wait_eof(self) -> None:
        """Hold the connection open until the client closes it."""
        while self.read_request() is not None:
            pass


Script = Callable[[Peer], None]


def replies(*answers: bytes) -> Script:
    """Answer each request on a connection with the next of ``answers`` (the last one repeated)."""

    def script(peer: Peer) -> None:
        i = 0
        while peer.read_request() is not None:
            peer.send(answers[min(i, len(answers) - 1)])
            i += 1

    return script


class Server:
    def __init__(self, script: Script, *, tls: ssl.SSLContext | None = None, accept: bool = True) -> None:
        self.script = script
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.accepted = 0
        self.eofs = 0
        self.requests: list[bytes] = []
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        if accept:
            self._start(self._accept_loop)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sockets.append(sock)
            with self.changed:
                self.accepted += 1
                self.changed.notify_all()
            self._start(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
                self.sockets.append(sock)
            self.script(Peer(self, sock))
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def record(self, request: bytes) -> None:
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()

    def saw_eof(self) -> None:
        with self.changed:
            self.eofs += 1
            self.changed.notify_all()

    def wait(self, condition: Callable[[Server], bool], timeout: float = 20.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: condition(self), timeout), "the server never saw that"

    async def await_(self, condition: Callable[[Server], bool]) -> None:
        await asyncio.to_thread(self.wait, condition)

    def stop(self) -> None:
        self.stopping.set()
        for sock in [self.listener, *self.sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a script blocked in recv
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(script: Script, **kwargs: object) -> Server:
        server = Server(script, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def session() -> Iterator[WireSession]:  # type: ignore[misc]
    s = WireSession()
    yield s
    await s.aclose()


async def post(
    session: WireSession,
    server: Server,
    path: str = "/v20.0/1/messages",
    data: bytes = b'{"to":"1"}',
    headers: dict[str, str] | None = None,
    timeout: tuple[float | None, float | None] = T,
) -> tuple[int, Headers, bytes]:
    return await session.post(server.url + path, data, AUTH if headers is None else headers, timeout, server.url)


def idle(session: WireSession) -> list[_Connection]:
    return [conn for origin in session._by_origin.values() for conn in origin.idle]


async def await_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def no_canary(exc: BaseException) -> None:
    """The token is nowhere in the exception, its cause or its context chain (str and repr)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        assert CANARY not in str(e) and CANARY not in repr(e), f"the token leaked into {type(e).__name__}"
        for arg in e.args:
            assert CANARY not in repr(arg)
        todo += [e.__cause__, e.__context__]


# -- the parser, fed in every way -------------------------------------------------------------------------------
def parse(*pieces: bytes) -> _Parser:
    parser = _Parser()
    for piece in pieces:
        parser.feed(piece)
    return parser


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    b'4;name=value;q="x"\r\n{"a"\r\n'
    b'6\r\n:1,"b"\r\n'
    b"A   \r\n:[1,2,3,4]\r\n"
    b"1\r\n}\r\n"
    b"0;last\r\nX-Trailer: yes\r\nOther: 2\r\n\r\n"
)
CHUNKED_BODY = b'{"a":1,"b":[1,2,3,4]}'
RESPONSES = {
    "length": (b"HTTP/1.1 201 Created\r\nContent-Length: 11\r\nX-A: 1\r\n\r\nhello world", 201, b"hello world"),
    "chunked": (CHUNKED, 200, CHUNKED_BODY),
    "interim": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        200,
        b"abc",
    ),
    "gzip": (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gzip.compress(b"x" * 500))
        + gzip.compress(b"x" * 500),
        200,
        b"x" * 500,
    ),
    "no content": (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b""),
    "empty length": (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, b""),
}


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_parser_every_split_point(name: str) -> None:
    raw, status, body = RESPONSES[name]
    for cut in range(len(raw) + 1):
        for pieces in ([raw[:cut], raw[cut:]], [raw[:cut], b"", raw[cut:]]):
            parser = parse(*pieces)
            assert parser.done, (name, cut)
            assert (parser.status, parser.content(), parser.keep_alive) == (status, body, True), (name, cut)


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_parser_byte_by_byte_and_in_three_odd_pieces(name: str) -> None:
    raw, status, body = RESPONSES[name]
    parser = parse(*bytewise(raw))
    assert parser.done and parser.status == status and parser.content() == body and parser.keep_alive
    for a in range(0, len(raw), 7):
        for b in range(a, len(raw), 11):
            parser = parse(raw[:a], raw[a:b], raw[b:])
            assert parser.done and parser.content() == body, (a, b)


def test_parser_is_not_done_before_the_last_byte() -> None:
    for raw, _, _ in RESPONSES.values():
        parser = _Parser()
        for piece in bytewise(raw)[:-1]:
            parser.feed(piece)
            assert not parser.done
        parser.feed(raw[-1:])
        assert parser.done


def test_parser_headers_lower_cased_any_case_lookup_repeated_joined() -> None:
    parser = parse(b"HTTP/1.1 200 OK\r\nX-Thing:  a \r\nx-thing:\tb\r\nContent-Length: 0\r\nEmpty:\r\n\r\n")
    headers = parser.headers
    assert headers["X-THING"] == "a, b" and headers.get("x-Thing") == "a, b" and "X-Thing" in headers
    assert headers.get("missing") is None and headers.get("missing", "d") == "d" and "missing" not in headers
    assert headers["empty"] == "" and dict(headers) == {"x-thing": "a, b", "content-length": "0", "empty": ""}
    assert isinstance(headers, Headers)


def test_parser_status_line_variants() -> None:
    assert parse(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").status == 200  # no reason phrase
    assert parse(b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n").status == 404
    assert parse(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n").status == 500
    for odd in (b"000", b"099"):
        with pytest.raises(_BadResponse, match="below 100"):
            parse(b"HTTP/1.1 " + odd + b" Odd\r\nContent-Length: 0\r\n\r\n")


def test_parser_trailers_and_chunk_extensions_are_ignored() -> None:
    parser = parse(CHUNKED)
    assert parser.content() == CHUNKED_BODY and "x-trailer" not in parser.headers


def test_parser_close_delimited_body() -> None:
    parser = parse(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"part one, ", b"part two")
    assert not parser.done and not parser.keep_alive  # complete only at EOF, never reused


def test_parser_204_and_304_have_no_body_whatever_they_say() -> None:
    for status in (b"204 No Content", b"304 Not Modified"):
        parser = parse(b"HTTP/1.1 " + status + b"\r\nContent-Length: 10\r\n\r\n")
        assert parser.done and parser.content() == b"" and parser.keep_alive
        extra = parse(b"HTTP/1.1 " + status + b"\r\nContent-Length: 10\r\n\r\n0123456789")
        assert extra.done and extra.content() == b"" and not extra.keep_alive  # those bytes are no body of ours


def test_parser_http10_closes_unless_keep_alive() -> None:
    plain = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert plain.done and not plain.keep_alive and not plain.version_11
    kept = parse(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok")
    assert kept.done and kept.keep_alive
    until_close = parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nok")
    assert not until_close.done and not until_close.keep_alive  # no length: the close ends it


def test_parser_connection_close() -> None:
    for value in (b"close", b"Close", b"keep-alive, close", b"CLOSE "):
        parser = parse(b"HTTP/1.1 200 OK\r\nConnection: " + value + b"\r\nContent-Length: 2\r\n\r\nok")
        assert parser.done and not parser.keep_alive, value


def test_parser_repeated_content_length() -> None:
    assert parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok").content() == b"ok"
    assert parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok").content() == b"ok"
    for bad in (
        b"Content-Length: 2\r\nContent-Length: 3",
        b"Content-Length: 2, 3",
        b"Content-Length: -1",
        b"Content-Length: +2",
        b"Content-Length: 0x2",
        b"Content-Length:",
        b"Content-Length: 2 2",
        b"Content-Length: \xd9\xa3",
        b"Content-Length: 99999999999999999999",
    ):
        with pytest.raises(_BadResponse):
            parse(b"HTTP/1.1 200 OK\r\n" + bad + b"\r\n\r\nok")


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 abc OK",
        b"HTTP/1.1 200OK",
        b"HTTP/2 200 OK",
        b"HTTP/1.2 200 OK",
        b"http/1.1 200 OK",
        b"ICY 200 OK",
        b"<html>",
        b"",
        b"HTTP/1.1 200 OK\r\nno colon here",
        b"HTTP/1.1 200 OK\r\nBad Name: x",
        b"HTTP/1.1 200 OK\r\n: empty name",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded: continuation",
        b"HTTP/1.1 200 OK\r\nX(A): 1",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c",
    ],
)
def test_parser_refuses_a_malformed_head(head: bytes) -> None:
    with pytest.raises(_BadResponse):
        parse(head + b"\r\nContent-Length: 0\r\n\r\n" if b"\r\n" in head else head + b"\r\n\r\n")


@pytest.mark.parametrize("size", [b"zz", b"", b" ", b"-1", b"0x5", b"+5", b"123456789", b"5 5", b";ext", b"\xff"])
def test_parser_refuses_a_malformed_chunk_size(size: bytes) -> None:
    with pytest.raises(_BadResponse, match="chunk size"):
        parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nhello\r\n0\r\n\r\n")


def test_parser_refuses_a_chunk_without_its_crlf() -> None:
    with pytest.raises(_BadResponse, match="CRLF"):
        parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n")


def test_parser_refuses_a_transfer_coding_it_does_not_decode() -> None:
    for coding in (b"gzip", b"identity", b"chunked, gzip", b"gzip, chunked", b"chunked, chunked"):
        with pytest.raises(_BadResponse, match="transfer-encoding"):
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")


def test_parser_chunked_wins_over_content_length_and_the_connection_is_not_reused() -> None:
    parser = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert parser.done and parser.content() == b"ok"
    assert not parser.keep_alive  # RFC 9112 6.3: a message framed both ways may be an attack; do not reuse


def test_parser_bytes_after_the_response_spoil_the_connection() -> None:
    for raw, _, body in RESPONSES.values():
        parser = parse(raw + b"HTTP/1.1 200 OK\r\n")
        assert parser.done and parser.content() == body and not parser.keep_alive


def test_parser_oversize_head_refused_without_growing() -> None:
    parser = _Parser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(_BadResponse, match="head"):
        for _ in range(MAX_HEAD // 1000 + 2):
            parser.feed(b"X-Pad: " + b"a" * 991 + b"\r\n")
    assert len(parser.buf) <= MAX_HEAD + 1000
    with pytest.raises(_BadResponse, match="head"):
        parse(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n")  # in one piece


def test_parser_head_in_one_byte_reads_stays_linear() -> None:
    """A 60 kB head fed a byte at a time parses in well under a second (it took ~1.5 s of CPU when every read
    copied and searched the whole pending head again)."""
    head = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 60_000 + b"\r\nContent-Length: 2\r\n\r\nok"
    parser = parse(*bytewise(head))
    assert parser.done and parser.headers["x-pad"] == "a" * 60_000 and parser.content() == b"ok"
    line = parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        *bytewise(b"2;" + b"e" * 4000 + b"\r\nok\r\n0\r\n\r\n"),
    )
    assert line.done and line.content() == b"ok"


def test_parser_endless_interim_answers_are_bounded() -> None:
    parser = _Parser()
    with pytest.raises(_BadResponse):
        for _ in range(MAX_HEAD // 20 + 10):
            parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n")


def test_parser_endless_trailers_are_bounded() -> None:
    parser = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n")
    with pytest.raises(_BadResponse):
        for _ in range(MAX_HEAD // 9 + 10):
            parser.feed(b"X-T: 12\r\n")  # 9 bytes a line


def test_parser_many_tiny_chunks_and_reads_stay_linear() -> None:
    """100,000 one-byte chunks (600 kB on the wire) parse in well under a second: the body is one buffer, its
    size a counter (summing a list of pieces per chunk made this take minutes, the event loop blocked)."""
    parser = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(100):
        parser.feed(b"1\r\nx\r\n" * 1000)
    parser.feed(b"0\r\n\r\n")
    assert parser.done and parser.content() == b"x" * 100_000
    parser = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n", *bytewise(b"y" * 200_000))
    assert parser.done and parser.content() == b"y" * 200_000 and len(parser.body) == 200_000


def test_parser_overlong_chunk_line_refused() -> None:
    with pytest.raises(_BadResponse, match="4096"):
        parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;" + b"e" * 5000)


def test_parser_oversize_bodies_refused_early() -> None:
    with pytest.raises(_BadResponse, match="body"):
        parse(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
    with pytest.raises(_BadResponse, match="body"):
        parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (MAX_BODY + 1))
    chunked = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * (1024 * 1024)
    with pytest.raises(_BadResponse, match="body"):
        for _ in range(17):
            chunked.feed(b"100000\r\n" + piece + b"\r\n")
    close = parse(b"HTTP/1.1 200 OK\r\n\r\n")
    with pytest.raises(_BadResponse, match="body"):
        for _ in range(17):
            close.feed(piece)


def encoded(coding: bytes, body: bytes) -> _Parser:
    return parse(b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (coding, len(body), body))


def test_parser_decodes_gzip_and_both_deflates() -> None:
    text = b'{"messages":[{"id":"wamid.1"}]}' * 20
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw_deflate = raw.compress(text) + raw.flush()
    assert encoded(b"gzip", gzip.compress(text)).content() == text
    assert encoded(b"x-gzip", gzip.compress(text)).content() == text
    assert encoded(b"GZIP", gzip.compress(text)).content() == text
    assert encoded(b"deflate", zlib.compress(text)).content() == text  # zlib-wrapped (RFC 9110)
    assert encoded(b"deflate", raw_deflate).content() == text  # raw deflate, as some servers send
    assert encoded(b"identity", text).content() == text
    small = zlib.compressobj(9, zlib.DEFLATED, 9)  # a zlib stream with a small window: header byte 0x18
    assert encoded(b"deflate", small.compress(text) + small.flush()).content() == text
    assert encoded(b"gzip", gzip.compress(text[:100]) + gzip.compress(text[100:])).content() == text  # two members


def test_parser_empty_encoded_body_is_empty() -> None:
    assert encoded(b"gzip", b"").content() == b""
    assert parse(b"HTTP/1.1 204 No Content\r\nContent-Encoding: gzip\r\n\r\n").content() == b""


def test_parser_refuses_bad_and_truncated_encoded_bodies() -> None:
    text = b"hello world " * 100
    for coding, body in [
        (b"gzip", b"not gzip at all"),
        (b"deflate", b"\x78not zlib"),
        (b"gzip", gzip.compress(text)[:-12]),  # truncated: the body must not come back short
        (b"deflate", zlib.compress(text)[:-6]),
        (b"gzip", gzip.compress(text) + b"junk"),
        (b"deflate", zlib.compress(text) + b"junk"),
        (b"br", b"anything"),
        (b"gzip, br", gzip.compress(text)),
    ]:
        with pytest.raises(_BadResponse):
            encoded(coding, body).content()


def test_parser_gzip_bomb_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (MAX_BODY + 4096), 9)
    assert len(bomb) < 100_000
    with pytest.raises(_BadResponse, match="decoded"):
        encoded(b"gzip", bomb).content()
    deflate_bomb = zlib.compress(b"\0" * (MAX_BODY * 6), 9)
    parser = encoded(b"deflate", deflate_bomb)
    tracemalloc.start()
    try:
        with pytest.raises(_BadResponse, match="decoded"):
            parser.content()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_BODY  # inflated to the bound (zlib grows its buffer: ~2x) and no further: the bomb is 6x


def test_origin_host_header() -> None:
    assert _Origin("http", "example.com", 80, None).host_header == "example.com"
    assert _Origin("https", "example.com", 443, None).host_header == "example.com"
    assert _Origin("https", "example.com", 80, None).host_header == "example.com:80"
    assert _Origin("http", "127.0.0.1", 8080, None).host_header == "127.0.0.1:8080"
    assert _Origin("http", "::1", 80, None).host_header == "[::1]"
    assert _Origin("https", "2001:db8::7", 8443, None).host_header == "[2001:db8::7]:8443"
    assert _Origin("https", "graph.facebook.com", 443, ssl.create_default_context()).server_hostname == (
        "graph.facebook.com"
    )
    assert _Origin("http", "h", 80, None).server_hostname is None


def test_session_targets_and_bad_urls() -> None:
    s = WireSession()
    origin, target = s._target("http://[::1]:8080/v1/x?a=1&b=%20#frag")
    assert (origin.host, origin.port, origin.host_header, target) == ("::1", 8080, "[::1]:8080", "/v1/x?a=1&b=%20")
    assert s._target("https://Graph.Example.COM")[1] == "/"
    assert s._target("https://graph.example.com/p")[0] is s._target("https://GRAPH.example.com:443/q")[0]
    assert s._target("http://127.0.0.1:0/x")[0].port == 0  # explicit, not the default port
    for bad in ("ftp://h/x", "http:///nohost", "http://h:99999/x", "http://h:port/x", "http://[::1/x"):
        with pytest.raises(httpx.UnsupportedProtocol) as info:
            s._target(bad + "?access_token=" + CANARY)
        no_canary(info.value)


# -- against real servers: bodies and framing -------------------------------------------------------------------
async def test_content_length_body_and_keep_alive(serve: Callable[..., Server], session: WireSession) -> None:
    server = serve(replies(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Id: a\r\n\r\nhello"))
    for _ in range(5):
        status, headers, body = await post(session, server)
        assert (status, headers["x-id"], body) == (200, "a", b"hello")
    assert server.accepted == 1 and len(server.requests) == 5 and len(idle(session)) == 1


async def test_chunked_body_split_across_reads(serve: Callable[..., Server], session: WireSession) -> None:
    def script(peer: Peer) -> None:
        while peer.read_request() is not None:
            for i in range(0, len(CHUNKED), 5):
                peer.send(CHUNKED[i : i + 5])
                time.sleep(0.002)

    server = serve(script)
    assert (await post(session, server))[2] == CHUNKED_BODY
    assert (await post(session, server))[2] == CHUNKED_BODY
    assert server.accepted == 1


async def test_every_response_byte_by_byte_over_tcp(serve: Callable[..., Server], session: WireSession) -> None:
    answers = [raw for raw, _, _ in RESPONSES.values()]

    def script(peer: Peer) -> None:
        for raw in answers:
            if peer.read_request() is None:
                return
            for byte in bytewise(raw):
                peer.send(byte)
        peer.wait_eof()

    server = serve(script)
    for raw, status, body in RESPONSES.values():
        assert (await post(session, server))[0::2] == (status, body), raw[:20]
    assert server.accepted == 1


async def test_close_delimited_body_complete_at_eof_and_not_reused(
    serve: Callable[..., Server], session: WireSession
) -> None:
    def script(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
            peer.send(b"the close")

    server = serve(script)
    assert (await post(session, server))[2] == b"until the close"
    assert (await post(session, server))[2] == b"until the close"
    assert server.accepted == 2 and idle(session) == []


async def test_no_body_answers_keep_the_connection(serve: Callable[..., Server], session: WireSession) -> None:
    server = serve(replies(b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", OK))
    assert await post(session, server) == (204, {}, b"")
    assert (await post(session, server))[0::2] == (304, b"")
    assert (await post(session, server))[2] == b"ok"
    assert server.accepted == 1


async def test_interim_answers_skipped(serve: Callable[..., Server], session: WireSession) -> None:
    def script(peer: Peer) -> None:
        while peer.read_request() is not None:
            peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
            peer.send(b"HTTP/1.1 202 Accepted\r\nContent-Length: 4\r\n\r\ndone")

    server = serve(script)
    assert (await post(session, server))[0::2] == (202, b"done")
    assert (await post(session, server))[0::2] == (202, b"done")
    assert server.accepted == 1


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", False),  # bytes after the response
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", True),
    ],
    ids=["http10", "http10-keep-alive", "connection-close", "bytes-after", "te-and-cl", "equal-lengths"],
)
async def test_when_a_connection_is_reused(
    serve: Callable[..., Server], session: WireSession, answer: bytes, reused: bool
) -> None:
    server = serve(replies(answer))
    assert (await post(session, server))[0::2] == (200, b"ok")
    assert (await post(session, server))[0::2] == (200, b"ok")
    assert server.accepted == (1 if reused else 2)
    if not reused:
        await server.await_(lambda s: s.eofs >= 1)  # the client closed the spent connection


async def test_gzip_and_deflate_over_the_wire(serve: Callable[..., Server], session: WireSession) -> None:
    text = b'{"messages":[{"id":"wamid.HBg"}]}'
    g, d = gzip.compress(text), zlib.compress(text)
    server = serve(
        replies(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(g), g),
            b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (len(d), d),
        )
    )
    assert (await post(session, server))[2] == text
    assert (await post(session, server))[2] == text
    assert server.requests[0].count(b"\r\nAccept-Encoding: ") == 0 or b"identity" in server.requests[0]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
        % (len(gzip.compress(b"\0" * (MAX_BODY + 1))), gzip.compress(b"\0" * (MAX_BODY + 1))),
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),
        b"HTTP/1.1 200 OK\r\nX-Pad: " + b"p" * (MAX_HEAD + 10) + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Pad: p\r\n" * (MAX_HEAD // 10 + 1),
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok",
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    ],
    ids=[
        "gzip-bomb",
        "oversize-length",
        "oversize-header",
        "too-many-headers",
        "status",
        "header-line",
        "chunk-size",
        "differing-lengths",
        "not-http",
    ],
)
async def test_bad_answers_are_remote_protocol_errors(
    serve: Callable[..., Server], session: WireSession, answer: bytes
) -> None:
    def script(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(answer)
            peer.wait_eof()  # the client must give up on its own, not wait for our close
        peer.wait_eof()

    server = serve(script)
    with pytest.raises(httpx.RemoteProtocolError, match="bad response") as info:
        await post(session, server)
    no_canary(info.value)
    await server.await_(lambda s: s.eofs >= 1)  # the client closed that connection
    assert idle(session) == []


async def test_endless_body_refused(serve: Callable[..., Server], session: WireSession) -> None:
    def script(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")  # no length: until the close
            piece = b"z" * 65536
            while True:  # ends when the client gives up and closes (OSError)
                peer.send(piece)

    server = serve(script)
    with pytest.raises(httpx.RemoteProtocolError, match="body of more than"):
        await post(session, server)
    assert idle(session) == []


async def test_unrequested_data_on_an_idle_connection(serve: Callable[..., Server], session: WireSession) -> None:
    go = threading.Event()

    def script(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        peer.send(OK)
        go.wait(20)
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")  # nobody asked
        peer.wait_eof()

    server = serve(script)
    assert (await post(session, server))[2] == b"ok"
    [conn] = idle(session)
    go.set()
    await await_until(lambda: conn.lost)  # dropped as soon as those bytes arrive
    await server.await_(lambda s: s.eofs >= 1)
    server.script = replies(OK)
    assert (await post(session, server))[2] == b"ok"  # on a fresh connection, never the stale answer
    assert server.accepted == 2


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a\x00b"], ids=["idna-label-too-long", "nul"])
async def test_a_host_name_that_cannot_be_looked_up_is_unsupported_not_a_raw_error(
    session: WireSession, host: str
) -> None:
    url = f"http://{host}"
    with pytest.raises(httpx.UnsupportedProtocol) as info:
        await session.post(url + "/x", b"{}", AUTH, T, "the messages URL")
    no_canary(info.value)


# -- failures, by whether the request left ----------------------------------------------------------------------
async def test_refused_port_is_connect_error(session: WireSession) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(httpx.ConnectError) as info:
        await session.post(url + "/x", b"{}", AUTH, T, url)
    assert not isinstance(info.value, httpx.ConnectTimeout)
    no_canary(info.value)


async def test_tls_handshake_that_never_completes_is_connect_timeout(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    tls = LocalTLS.create(tmp_path)
    silent = serve(lambda peer: peer.wait_eof())  # accepts TCP, never speaks TLS
    session = WireSession(verify=ssl.create_default_context(cafile=str(tls.ca_pem)))
    url = f"https://127.0.0.1:{silent.port}"
    try:
        with pytest.raises(httpx.ConnectTimeout) as info:
            await session.post(url + "/x", b"{}", AUTH, (0.3, 10.0), url)
        no_canary(info.value)
        assert silent.requests == []
    finally:
        await session.aclose()


async def test_listener_that_never_accepts_tls_is_connect_timeout(serve: Callable[..., Server], tmp_path: Path) -> None:
    tls = LocalTLS.create(tmp_path)
    backlog = serve(replies(OK), accept=False)  # the kernel completes TCP, nobody ever reads
    session = WireSession(verify=ssl.create_default_context(cafile=str(tls.ca_pem)))
    url = f"https://127.0.0.1:{backlog.port}"
    try:
        with pytest.raises(httpx.ConnectTimeout):
            await session.post(url + "/x", b"{}", AUTH, (0.3, 10.0), url)
    finally:
        await session.aclose()


async def test_tls_verified_and_unknown_ca_refused(serve: Callable[..., Server], tmp_path: Path) -> None:
    tls = LocalTLS.create(tmp_path)
    server = serve(replies(OK), tls=tls.server_context)
    good = WireSession(verify=ssl.create_default_context(cafile=str(tls.ca_pem)))
    bad = WireSession()  # the system store does not know our CA
    lax = WireSession(verify=False)
    try:
        assert (await post(good, server))[2] == b"ok"
        assert (await post(good, server))[2] == b"ok"
        assert server.accepted == 1
        with pytest.raises(httpx.ConnectError) as info:
            await post(bad, server)
        assert isinstance(info.value.__cause__, ssl.SSLError)
        no_canary(info.value)
        assert (await post(lax, server))[2] == b"ok"
        localhost = f"https://localhost:{server.port}"
        assert (await good.post(localhost + "/x", b"{}", AUTH, T, localhost))[2] == b"ok"  # name in the cert
    finally:
        for s in (good, bad, lax):
            await s.aclose()
    assert len(server.requests) == 4  # the refused client sent nothing


async def test_tls_wrong_host_name_refused(serve: Callable[..., Server], tmp_path: Path) -> None:
    tls = LocalTLS.create(tmp_path)
    server = serve(replies(OK), tls=tls.server_context)
    context = ssl.create_default_context(cafile=str(tls.ca_pem))
    session = WireSession(verify=context)
    origin = session._target(server.url + "/x")[0]
    origin.server_hostname = "graph.facebook.com"  # the certificate names only 127.0.0.1 and localhost
    try:
        with pytest.raises(httpx.ConnectError):
            await post(session, server)
    finally:
        await session.aclose()
    assert server.requests == []


@pytest.mark.parametrize("tls_on", [False, True], ids=["tcp", "tls"])
async def test_server_closes_after_reading_the_request(
    serve: Callable[..., Server], tmp_path: Path, tls_on: bool
) -> None:
    tls = LocalTLS.create(tmp_path)

    def script(peer: Peer) -> None:
        peer.read_request()  # and close without a word

    server = serve(script, tls=tls.server_context if tls_on else None)
    session = WireSession(verify=ssl.create_default_context(cafile=str(tls.ca_pem)))
    try:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)) as info:
            await post(session, server)
        if not tls_on:
            assert isinstance(info.value, httpx.RemoteProtocolError)
        no_canary(info.value)
        assert len(server.requests) == 1 and idle(session) == []
    finally:
        await session.aclose()


async def test_server_closes_mid_body(serve: Callable[..., Server], session: WireSession) -> None:
    def script(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")

    server = serve(script)
    with pytest.raises(httpx.RemoteProtocolError) as info:
        await post(session, server)
    no_canary(info.value)


async def test_reset_after_the_request(serve: Callable[..., Server], session: WireSession) -> None:
    def script(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.reset()

    server = serve(script)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as info:
        await post(session, server)
    no_canary(info.value)
    assert idle(session) == []


async def test_reset_mid_answer(serve: Callable[..., Server], session: WireSession) -> None:
    def script(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal")
            peer.reset()

    server = serve(script)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as info:
        await post(session, server)
    no_canary(info.value)


async def test_read_timeout(serve: Callable[..., Server], session: WireSession) -> None:
    server = serve(lambda peer: peer.wait_eof())  # reads every request, never answers
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout) as info:
        await post(session, server, timeout=(10.0, 0.3))
    assert time.monotonic() - started >= 0.29
    no_canary(info.value)
    await server.await_(lambda s: s.eofs >= 1)  # the timed-out connection was closed
    assert idle(session) == [] and len(server.requests) == 1


async def test_read_timeout_restarts_when_bytes_arrive(serve: Callable[..., Server], session: WireSession) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b"t" * 20

    def script(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.trickle(answer, 0.05)  # ~3 s in all, never 2 s without a byte
            peer.wait_eof()

    server = serve(script)
    started = time.monotonic()
    assert (await post(session, server, timeout=(10.0, 2.0)))[2] == b"t" * 20
    assert time.monotonic() - started > 2.0  # longer than the read timeout in total (59 bytes, 50 ms apart)


async def test_cancelled_post_closes_its_connection(serve: Callable[..., Server], session: WireSession) -> None:
    arrived = threading.Event()
    first = True

    def script(peer: Peer) -> None:
        nonlocal first
        if first:
            first = False
            peer.read_request()
            arrived.set()
            peer.wait_eof()  # never answers this one
            return
        replies(OK)(peer)

    server = serve(script)
    task = asyncio.ensure_future(post(session, server))
    await asyncio.to_thread(arrived.wait, 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await server.await_(lambda s: s.eofs >= 1)  # closed, never left to be reused
    assert idle(session) == []
    assert (await post(session, server))[2] == b"ok"
    assert server.accepted == 2


async def test_cancelled_just_as_the_connection_is_made_sends_nothing(
    serve: Callable[..., Server], session: WireSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel that lands as the connect completes is not swallowed (Python 3.11's wait_for returns the
    connection instead): the post is cancelled and the request never written."""
    server = serve(replies(OK))
    loop = asyncio.get_running_loop()
    real = loop.create_connection
    task: asyncio.Task[object] | None = None

    async def connect_then_cancel(*args: object, **kwargs: object) -> object:
        made = await real(*args, **kwargs)  # type: ignore[arg-type]
        assert task is not None
        task.cancel()  # the caller gives up in the very step the connection is made
        return made

    monkeypatch.setattr(loop, "create_connection", connect_then_cancel)
    task = asyncio.ensure_future(post(session, server, timeout=(10.0, 10.0)))
    with pytest.raises(asyncio.CancelledError):
        await task
    await server.await_(lambda s: s.eofs >= 1)  # that connection was closed...
    assert server.requests == []  # ...before a byte of the request was written
    monkeypatch.undo()
    assert (await post(session, server))[2] == b"ok"


async def test_send_on_a_connection_lost_before_the_write_fails_at_once() -> None:
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _, conn = await loop.create_connection(lambda: _Connection(loop), "127.0.0.1", port)
        await await_until(lambda: conn.lost)  # the server closed it before we wrote a byte
        waiter = conn.send(b"POST / HTTP/1.1\r\n\r\n", None)  # no read timeout: nothing else would end it
        with pytest.raises(httpx.ConnectError):  # nothing left: safe to retry
            await asyncio.wait_for(waiter, 10)
    finally:
        server.close()
        await server.wait_closed()


# -- keep-alive and the pool ------------------------------------------------------------------------------------
async def test_idle_connection_past_keepalive_expiry_not_reused(serve: Callable[..., Server]) -> None:
    server = serve(replies(OK))
    session = WireSession(keepalive_expiry=0.05)
    try:
        assert (await post(session, server))[2] == b"ok"
        [conn] = idle(session)
        conn.idle_since -= 1.0  # idle for a second, as far as the pool can tell
        assert (await post(session, server))[2] == b"ok"
        assert server.accepted == 2 and conn.lost
        await server.await_(lambda s: s.eofs >= 1)  # the expired one was closed, not just forgotten
    finally:
        await session.aclose()


async def test_expired_idle_connections_are_closed_not_left_at_the_bottom(serve: Callable[..., Server]) -> None:
    n = 3
    barrier = threading.Barrier(n, timeout=20)
    burst = True

    def script(peer: Peer) -> None:
        while peer.read_request() is not None:
            if burst:
                barrier.wait()
            peer.send(OK)

    server = serve(script)
    session = WireSession(keepalive_expiry=5.0)
    try:
        await asyncio.gather(*(post(session, server) for _ in range(n)))  # a burst: three idle connections
        burst = False
        oldest = idle(session)[:2]
        for conn in oldest:
            conn.idle_since -= 10.0  # idle past the expiry, while the newest one keeps being reused
        assert (await post(session, server))[2] == b"ok"
        assert all(conn.lost for conn in oldest) and len(idle(session)) == 1
        await server.await_(lambda s: s.eofs >= 2)  # closed, not merely never picked
        assert server.accepted == n
    finally:
        await session.aclose()


async def test_connection_the_server_closed_while_idle(serve: Callable[..., Server], session: WireSession) -> None:
    def script(peer: Peer) -> None:  # answers once without saying so, then closes
        if peer.read_request() is not None:
            peer.send(OK)

    server = serve(script)
    assert (await post(session, server))[2] == b"ok"
    [conn] = idle(session)
    await await_until(lambda: conn.lost)
    assert (await post(session, server))[2] == b"ok"  # a new connection, no error
    assert server.accepted == 2


async def test_concurrency_n_opens_at_most_n_connections(serve: Callable[..., Server], session: WireSession) -> None:
    n = 6
    barrier = threading.Barrier(n, timeout=20)

    def script(peer: Peer) -> None:
        while peer.read_request() is not None:
            barrier.wait()  # every answer waits for all n requests: n connections at once
            peer.send(OK)

    server = serve(script)
    for _ in range(3):
        results = await asyncio.gather(*(post(session, server) for _ in range(n)))
        assert [r[2] for r in results] == [b"ok"] * n
    assert server.accepted == n and len(server.requests) == 3 * n and len(idle(session)) == n


def answering_together(serve: Callable[..., Server], n: int) -> Server:
    """A server that answers once ``n`` requests are in (so ``n`` connections are open at once)."""
    barrier = threading.Barrier(n, timeout=20)

    def script(peer: Peer) -> None:
        while peer.read_request() is not None:
            barrier.wait()
            peer.send(OK)

    return serve(script)


async def test_max_connections_bounds_the_idle_ones(serve: Callable[..., Server]) -> None:
    n = 5
    server = answering_together(serve, n)
    session = WireSession(max_connections=2)
    try:
        await asyncio.gather(*(post(session, server) for _ in range(n)))
        assert len(idle(session)) == 2
        await server.await_(lambda s: s.eofs >= n - 2)  # the others were closed
    finally:
        await session.aclose()


async def test_aclose_closes_everything(serve: Callable[..., Server]) -> None:
    n = 3
    server = answering_together(serve, n)
    session = WireSession()
    await asyncio.gather(*(post(session, server) for _ in range(n)))
    conns = idle(session)
    await session.aclose()
    assert all(c.lost for c in conns) and idle(session) == []
    await server.await_(lambda s: s.eofs >= n)
    with pytest.raises(RuntimeError, match="closed"):
        await post(session, server)


async def test_aclose_while_a_post_is_in_flight(serve: Callable[..., Server]) -> None:
    """The answer still arrives, and that connection is closed after it, not parked in a pool nobody reads."""
    arrived, release = threading.Event(), threading.Event()

    def script(peer: Peer) -> None:
        if peer.read_request() is not None:
            arrived.set()
            release.wait(20)
            peer.send(OK)
            peer.wait_eof()

    server = serve(script)
    session = WireSession()
    task = asyncio.ensure_future(post(session, server))
    await asyncio.to_thread(arrived.wait, 20)
    await session.aclose()
    release.set()
    assert (await task)[2] == b"ok"
    await server.await_(lambda s: s.eofs >= 1)
    assert idle(session) == []


def test_use_from_a_second_event_loop(serve: Callable[..., Server]) -> None:
    server = serve(replies(OK))
    session = WireSession()
    assert asyncio.run(post(session, server))[2] == b"ok"  # this loop is closed afterwards
    assert asyncio.run(post(session, server))[2] == b"ok"
    server.wait(lambda s: s.eofs >= 1)  # the first loop's connection was let go
    loop = asyncio.new_event_loop()  # a loop that is not closed, just not running
    try:
        assert loop.run_until_complete(post(session, server))[2] == b"ok"
        assert asyncio.run(post(session, server))[2] == b"ok"
        server.wait(lambda s: s.eofs >= 3)
    finally:
        loop.close()
    asyncio.run(session.aclose())
    assert server.accepted == 4


def test_use_from_another_thread_running_its_own_loop(serve: Callable[..., Server]) -> None:
    server = serve(replies(OK))
    session = WireSession()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        assert asyncio.run_coroutine_threadsafe(post(session, server), loop).result(20)[2] == b"ok"
        assert asyncio.run(post(session, server))[2] == b"ok"  # the other loop's connection is closed there
        server.wait(lambda s: s.eofs >= 1)
        asyncio.run(session.aclose())
        server.wait(lambda s: s.eofs >= 2)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- the request bytes ------------------------------------------------------------------------------------------
async def test_request_bytes_exactly(serve: Callable[..., Server], session: WireSession) -> None:
    server = serve(replies(OK))
    body = b'{"messaging_product":"whatsapp","to":"15551234567"}'
    headers = {"Authorization": f"Bearer {CANARY}", "Content-Type": "application/json", "X-Empty": ""}
    await post(session, server, "/v20.0/123/messages?appsecret_proof=ab%2Fc&x=1", body, headers)
    assert server.requests == [
        b"POST /v20.0/123/messages?appsecret_proof=ab%2Fc&x=1 HTTP/1.1\r\n"
        + b"Host: 127.0.0.1:%d\r\n" % server.port
        + b"Content-Length: %d\r\n" % len(body)
        + b"Authorization: Bearer "
        + CANARY.encode()
        + b"\r\n"
        + b"Content-Type: application/json\r\n"
        + b"X-Empty: \r\n"
        + b"\r\n"
        + body
    ]
    await session.post(server.url, b"", {}, T, server.url)  # no path, no body
    assert server.requests[1] == b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n\r\n" % server.port


async def test_large_request_body(serve: Callable[..., Server], session: WireSession) -> None:
    server = serve(replies(OK))
    body = bytes(range(256)) * 8192  # 2 MiB: more than one socket buffer
    assert (await post(session, server, data=body))[2] == b"ok"
    assert server.requests[0].endswith(b"\r\n\r\n" + body)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {CANARY}\r\nX-Injected: 1"},
        {"Authorization": f"Bearer {CANARY}\n"},
        {"Authorization": f"Bearer {CANARY}", "X-Bad\r\nInjected": "1"},
        {"Authorization": f"Bearer {CANARY}", "X-Note": "caf\u00e9 \u2603"},
        {"Authorization": f"Bearer {CANARY}\u2028"},
    ],
    ids=["crlf-value", "lf-value", "crlf-name", "non-latin1", "non-latin1-token"],
)
async def test_bad_header_refused_before_anything_is_sent(
    serve: Callable[..., Server], session: WireSession, headers: dict[str, str]
) -> None:
    server = serve(replies(OK))
    assert (await post(session, server))[2] == b"ok"
    with pytest.raises(httpx.LocalProtocolError) as info:
        await post(session, server, headers=headers)
    no_canary(info.value)
    assert (await post(session, server))[2] == b"ok"  # the same connection, still in step
    assert server.accepted == 1 and len(server.requests) == 2
    assert all(b"Injected" not in r and "\u2603".encode() not in r for r in server.requests)


async def test_bad_header_on_a_fresh_connection_keeps_it(serve: Callable[..., Server], session: WireSession) -> None:
    server = serve(replies(OK))
    with pytest.raises(httpx.LocalProtocolError):
        await post(session, server, headers={"X": "a\rb"})
    assert len(idle(session)) == 1
    assert (await post(session, server))[2] == b"ok"
    assert server.accepted == 1 and len(server.requests) == 1


# -- no token in anything raised --------------------------------------------------------------------------------
async def test_no_failure_carries_the_token(serve: Callable[..., Server], tmp_path: Path) -> None:
    """Every failure above once more, with the token in the URL's query and the header: none of the
    exceptions (str, repr, args, cause, context) holds it."""
    tls = LocalTLS.create(tmp_path)
    silent = serve(lambda peer: peer.wait_eof())
    tls_server = serve(replies(OK), tls=tls.server_context)
    reset = serve(lambda peer: peer.reset() if peer.read_request() is not None else None)
    garbage = serve(replies(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"))
    cases: list[tuple[WireSession, str, tuple[float | None, float | None]]] = [
        (WireSession(), f"http://127.0.0.1:{free_port()}", T),
        (WireSession(), silent.url, (10.0, 0.2)),
        (
            WireSession(verify=ssl.create_default_context(cafile=str(tls.ca_pem))),
            silent.url.replace("http", "https"),
            (0.2, 10.0),
        ),
        (WireSession(), tls_server.url, T),
        (WireSession(), reset.url, T),
        (WireSession(), garbage.url, T),
    ]
    for session, url, timeout in cases:
        try:
            with pytest.raises(httpx.TransportError) as info:
                await session.post(f"{url}/x?access_token={CANARY}", b"{}", AUTH, timeout, url)
            no_canary(info.value)
        finally:
            await session.aclose()

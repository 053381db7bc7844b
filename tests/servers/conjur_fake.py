"""A local HTTPS fake of exactly the Conjur REST routes the ``conjur`` backend uses, as documented.

Routes (under an optional prefix: ``/api`` for Conjur Cloud, whose account is always ``conjur``):

* ``POST /authn/{account}/{login}/authenticate`` - body: the API key. 200: the access token as JSON
  (``{"protected", "payload", "signature"}``, payload ``{"sub", "iat", "exp"}``), or its base64 with
  ``Content-Encoding: base64`` when the request says ``Accept-Encoding: base64``. 401 (empty body) otherwise.
* ``POST /authn-jwt/{service-id}/{account}[/{host-id}]/authenticate`` - form ``jwt=...``; 400 without it.
* ``GET /secrets/{account}/variable/{id}[?version=N]`` - the value (``application/octet-stream``); 401 for a
  missing, unknown or expired access token, 404 when the variable does not exist, is not visible to the
  caller or has no such version, 403 when it is visible but the caller lacks ``execute``, 422 for a bad
  version parameter.
* ``POST /secrets/{account}/variable/{id}`` - body: the new value; 201, 403 without ``update``, 422 when empty.
  The last 20 versions are kept.
* ``GET /resources/{account}/variable/{id}`` - the resource with its ``secrets: [{"version", "expires_at"}]``;
  403 without ``read``.
* ``GET /resources/{account}?kind=variable&search=TEXT&limit=N&offset=M`` - the resources the caller has any
  privilege on, sorted by id, of that ``kind``, whose id contains ``search`` (case-insensitive: a stand-in for
  Conjur's text search, which the client filters after anyway); ``limit`` default 10, at most 1000; 422 for a
  bad number.

Error bodies have Conjur's shape, ``{"error": {"code", "message"}}``. Logins and ids arrive URL-encoded as
single path segments (``host%2Fapps%2Fwhatsapp``); the fake records raw paths so tests can check that.

For tests: a clock to move (``advance``) so access tokens expire, request counters, a queue of injected
failures (``fail_next``), a delay, ``reject_tokens`` (every access token refused), and ``go_down`` /
``come_up`` (the listener closed and established connections dropped; state is kept).
"""

from __future__ import annotations

import base64
import collections
import json
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import LocalTLS, free_port

MAX_VERSIONS = 20


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


@dataclass
class _Variable:
    versions: list[tuple[int, bytes]] = field(default_factory=list)  # (version, value), oldest first
    next_version: int = 1
    created_at: str = "2026-01-01T00:00:00.000+00:00"


@dataclass
class _Fault:
    route: str  # "authn", "authn-jwt", "secrets.get", "secrets.post", "resources", or "*"
    status: int
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up a shutdown
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 drops concurrent connects (1 s SYN retransmits)

    def __init__(self, fake: ConjurFake, address: tuple[str, int]) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # the TLS handshake happens in the connection's own thread, so a client that aborts it (a wrong CA)
        # never blocks the listener
        try:
            conn = self.fake.tls.server_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.fake._track(conn, add=True)
        try:
            super().finish_request(conn, client_address)
        finally:
            self.fake._track(conn, add=False)
            conn.close()  # wrap_socket detached the raw socket: socketserver's own close misses this one

    def handle_error(self, request: Any, client_address: Any) -> None:  # connections dropped on purpose
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        self.server.fake._dispatch(self, "GET", self._body())

    def do_POST(self) -> None:
        self.server.fake._dispatch(self, "POST", self._body())

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ConjurFake:
    """One fake Conjur server on 127.0.0.1 over HTTPS (a ``trustme`` CA). Use as a context manager."""

    def __init__(
        self,
        tls: LocalTLS,
        *,
        account: str = "myorg",
        prefix: str = "",
        token_ttl: float = 480.0,
        force_base64: bool = False,
    ) -> None:
        self.tls = tls
        self.account = account
        self.prefix = prefix.rstrip("/")
        self.token_ttl = token_ttl
        self.force_base64 = force_base64
        self.port = free_port()
        self.counts: collections.Counter[str] = collections.Counter()
        self.paths: list[str] = []  # raw request paths (with query), in order
        self.issued: list[str] = []  # every access token issued, base64 as sent back in headers
        self.reject_tokens = False
        self.delay = 0.0
        self._offset = 0.0
        self._lock = threading.Lock()
        self._hosts: dict[str, str] = {}  # login -> API key
        self._jwts: dict[tuple[str, str], str] = {}  # (service id, jwt) -> login
        self._jwt_needs_host: dict[str, bool] = {}  # service id -> whether the host id is in the URL
        self._vars: dict[str, _Variable] = {}
        self._grants: dict[tuple[str, str], set[str]] = collections.defaultdict(set)  # (login, var) -> privileges
        self._tokens: dict[str, tuple[str, float]] = {}  # signature -> (login, exp)
        self._faults: list[_Fault] = []
        self._conns: set[Any] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL clients are configured with (including the Conjur Cloud prefix, if any)."""
        return f"https://127.0.0.1:{self.port}{self.prefix}"

    def start(self) -> ConjurFake:
        server = _Server(self, ("127.0.0.1", self.port))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:  # pooled keep-alive connections must notice the outage too
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass

    go_down = stop

    def come_up(self) -> None:
        """Listen again on the same port, with all state (hosts, variables, issued tokens) intact."""
        self.start()

    def __enter__(self) -> ConjurFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: Any, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # -- the test's controls ----------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the server's clock (access tokens expire by it)."""
        self._offset += seconds

    def add_host(self, login: str, api_key: str) -> None:
        self._hosts[login] = api_key

    def add_jwt(self, service_id: str, jwt: str, login: str, *, host_in_url: bool = False) -> None:
        """Accept ``jwt`` at authn-jwt/``service_id`` as ``login`` (with the host id in the URL, or not)."""
        self._jwts[(service_id, jwt)] = login
        self._jwt_needs_host[service_id] = host_in_url

    def revoke_jwt(self, service_id: str, jwt: str) -> None:
        self._jwts.pop((service_id, jwt), None)

    def grant(self, login: str, variable: str, *privileges: str) -> None:
        self._grants[(login, variable)].update(privileges or ("read", "execute", "update"))

    def revoke(self, login: str, variable: str, *privileges: str) -> None:
        grants = self._grants[(login, variable)]
        if privileges:
            grants.difference_update(privileges)
        else:
            grants.clear()

    def create_variable(self, variable: str) -> None:
        self._vars.setdefault(variable, _Variable())

    def set_secret(self, variable: str, value: str | bytes) -> int:
        """Add a version out of band (another party rotating the secret); returns its number."""
        with self._lock:
            return self._add_version(variable, value.encode() if isinstance(value, str) else value)

    def value(self, variable: str, version: int | None = None) -> bytes | None:
        var = self._vars.get(variable)
        if var is None or not var.versions:
            return None
        if version is None:
            return var.versions[-1][1]
        return dict(var.versions).get(version)

    def versions(self, variable: str) -> list[int]:
        var = self._vars.get(variable)
        return [v for v, _ in var.versions] if var else []

    def fail_next(
        self,
        route: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: bytes | dict[str, Any] = b"",
    ) -> None:
        """Answer the next ``times`` requests to ``route`` (or ``"*"``) with ``status`` instead."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        for _ in range(times):
            self._faults.append(_Fault(route, status, dict(headers or {}), raw))

    # -- request handling -------------------------------------------------------------------------------------
    def _add_version(self, variable: str, value: bytes) -> int:
        var = self._vars.setdefault(variable, _Variable())
        version = var.next_version
        var.next_version += 1
        var.versions.append((version, value))
        del var.versions[:-MAX_VERSIONS]
        return version

    def _fault_for(self, route: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.route in (route, "*"):
                    return self._faults.pop(i)
        return None

    @staticmethod
    def _error(code: str, message: str) -> bytes:
        return json.dumps({"error": {"code": code, "message": message}}).encode()

    def _dispatch(self, handler: _Handler, method: str, body: bytes) -> None:
        raw = handler.path
        with self._lock:
            self.paths.append(raw)
        if self.delay:
            time.sleep(self.delay)
        split = urlsplit(raw)
        path = split.path
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                handler.send(404, self._error("not_found", "no such route"))
                return
            path = path[len(self.prefix) :]
        segments = path.split("/")[1:]  # still URL-encoded: an encoded "/" stays inside its segment
        query = parse_qs(split.query, keep_blank_values=True)
        route = self._route(method, segments)
        if route is None:
            self.counts["unrouted"] += 1
            handler.send(404, self._error("not_found", "no such route"))
            return
        name, args = route
        self.counts[name] += 1
        fault = self._fault_for(name)
        if fault is not None:
            self.counts[f"{name}.fault"] += 1
            handler.send(fault.status, fault.body, fault.headers)
            return
        status, payload, headers = getattr(self, "_h_" + name.replace(".", "_").replace("-", "_"))(
            handler, args, query, body
        )
        self.counts[f"{name}.{status}"] += 1
        handler.send(status, payload, headers)

    def _route(self, method: str, seg: list[str]) -> tuple[str, list[str]] | None:
        if method == "GET" and len(seg) == 2 and seg[0] == "resources" and seg[1]:
            return "resources.search", [unquote(seg[1])]
        if method == "POST" and len(seg) == 4 and seg[0] == "authn" and seg[3] == "authenticate":
            return "authn", [unquote(seg[1]), unquote(seg[2])]
        if method == "POST" and len(seg) in (4, 5) and seg[0] == "authn-jwt" and seg[-1] == "authenticate":
            host = unquote(seg[3]) if len(seg) == 5 else None
            return "authn-jwt", [unquote(seg[1]), unquote(seg[2]), host or ""]
        if len(seg) >= 4 and seg[0] in ("secrets", "resources") and seg[2] == "variable":
            # Conjur's routes glob the identifier; an encoded id is one segment, which is what clients send
            ident = unquote("/".join(seg[3:]))
            if seg[0] == "secrets" and method in ("GET", "POST"):
                return f"secrets.{method.lower()}", [unquote(seg[1]), ident]
            if seg[0] == "resources" and method == "GET":
                return "resources", [unquote(seg[1]), ident]
        return None

    def _issue(self, login: str, handler: _Handler) -> tuple[int, bytes, dict[str, str]]:
        now = self.now()
        exp = now + self.token_ttl
        protected = _b64url(json.dumps({"alg": "conjur.org/slosilo/v2", "kid": "fake", "typ": "JWT"}).encode())
        claims = _b64url(json.dumps({"sub": login, "iat": int(now), "exp": int(exp)}).encode())
        signature = _b64url(secrets.token_bytes(32))
        token = json.dumps({"protected": protected, "payload": claims, "signature": signature}).encode()
        with self._lock:
            self._tokens[signature] = (login, exp)
            self.issued.append(base64.b64encode(token).decode())
        if self.force_base64 or "base64" in (handler.headers.get("Accept-Encoding") or ""):
            return 200, base64.b64encode(token), {"Content-Type": "text/plain", "Content-Encoding": "base64"}
        return 200, token, {"Content-Type": "application/json"}

    def _h_authn(self, handler: _Handler, args: list[str], query: Any, body: bytes) -> Any:
        account, login = args
        key = self._hosts.get(login)
        if account != self.account or key is None or not secrets.compare_digest(body, key.encode()):
            return 401, b"", {}
        return self._issue(login, handler)

    def _h_authn_jwt(self, handler: _Handler, args: list[str], query: Any, body: bytes) -> Any:
        service_id, account, host = args
        form = parse_qs(body.decode("utf-8", "replace"))
        jwt = (form.get("jwt") or [""])[0]
        if not jwt:
            return 400, self._error("bad_request", "the request body must include jwt"), {}
        login = self._jwts.get((service_id, jwt))
        if account != self.account or service_id not in self._jwt_needs_host or login is None:
            return 401, b"", {}
        needs_host = self._jwt_needs_host[service_id]
        if host != (login if needs_host else ""):  # the host id in the URL iff the authenticator wants it
            return 401, b"", {}
        return self._issue(login, handler)

    def _caller(self, handler: _Handler) -> str | None:
        """The login behind a valid ``Authorization: Token token="..."`` header, else None (-> 401)."""
        header = handler.headers.get("Authorization") or ""
        prefix, suffix = 'Token token="', '"'
        if self.reject_tokens or not header.startswith(prefix) or not header.endswith(suffix):
            return None
        try:
            token = json.loads(base64.b64decode(header[len(prefix) : -len(suffix)], validate=True))
            signature = token["signature"]
        except (ValueError, KeyError, TypeError):
            return None
        issued = self._tokens.get(signature)
        if issued is None or self.now() >= issued[1]:
            return None
        return issued[0]

    def _visible(self, account: str, login: str, variable: str) -> _Variable | None:
        if account != self.account or not self._grants.get((login, variable)):
            return None
        return self._vars.get(variable)

    def _not_found(self, variable: str) -> tuple[int, bytes, dict[str, str]]:
        message = f"CONJ00076E Variable {self.account}:variable:{variable} is empty or not found."
        return 404, self._error("not_found", message), {"Content-Type": "application/json"}

    def _h_secrets_get(self, handler: _Handler, args: list[str], query: Any, body: bytes) -> Any:
        login = self._caller(handler)
        if login is None:
            return 401, b"", {}
        account, variable = args
        var = self._visible(account, login, variable)
        if var is None:
            return self._not_found(variable)
        if "execute" not in self._grants[(login, variable)]:
            return 403, b"", {}
        version: int | None = None
        if "version" in query:
            raw = query["version"][0]
            if not raw.isdigit() or int(raw) < 1:
                return 422, self._error("argument_error", "version must be a positive integer"), {}
            version = int(raw)
        with self._lock:
            value = self.value(variable, version)
        if value is None:
            return self._not_found(variable)
        return 200, value, {"Content-Type": "application/octet-stream"}

    def _h_secrets_post(self, handler: _Handler, args: list[str], query: Any, body: bytes) -> Any:
        login = self._caller(handler)
        if login is None:
            return 401, b"", {}
        account, variable = args
        if self._visible(account, login, variable) is None:
            return self._not_found(variable)
        if "update" not in self._grants[(login, variable)]:
            return 403, b"", {}
        if not body.strip():
            return 422, self._error("argument_error", "'value' may not be empty"), {}
        with self._lock:
            self._add_version(variable, body)
        return 201, b"", {"Content-Type": "text/html"}

    def _h_resources_search(self, handler: _Handler, args: list[str], query: Any, body: bytes) -> Any:
        login = self._caller(handler)
        if login is None:
            return 401, b"", {}
        (account,) = args
        kind = (query.get("kind") or [None])[0]
        search = ((query.get("search") or [""])[0]).lower()
        numbers = {}
        for name, default in (("limit", 10), ("offset", 0)):
            raw = (query.get(name) or [str(default)])[0]
            if not raw.isdigit():
                return 422, self._error("argument_error", f"{name} must be a non-negative integer"), {}
            numbers[name] = int(raw)
        limit = numbers["limit"]
        if not 1 <= limit <= 1000:
            return 422, self._error("argument_error", "limit must be between 1 and 1000"), {}
        if account != self.account:
            return 200, b"[]", {"Content-Type": "application/json"}
        with self._lock:
            visible = sorted(
                variable
                for (who, variable), privileges in self._grants.items()
                if who == login and privileges and variable in self._vars
            )
        ids = [f"{self.account}:variable:{v}" for v in visible if kind in (None, "variable")]
        ids = [i for i in ids if search in i.lower()]
        page = ids[numbers["offset"] : numbers["offset"] + limit]
        resources = [
            {"created_at": "2026-01-01T00:00:00.000+00:00", "id": i, "owner": f"{self.account}:policy:root"}
            for i in page
        ]
        return 200, json.dumps(resources).encode(), {"Content-Type": "application/json"}

    def _h_resources(self, handler: _Handler, args: list[str], query: Any, body: bytes) -> Any:
        login = self._caller(handler)
        if login is None:
            return 401, b"", {}
        account, variable = args
        var = self._visible(account, login, variable)
        if var is None:
            return 404, self._error("not_found", f"Variable '{variable}' not found in account '{account}'"), {}
        if "read" not in self._grants[(login, variable)]:
            return 403, b"", {}
        resource = {
            "created_at": var.created_at,
            "id": f"{self.account}:variable:{variable}",
            "owner": f"{self.account}:policy:root",
            "policy": f"{self.account}:policy:root",
            "permissions": [],
            "annotations": [],
            "secrets": [{"version": v, "expires_at": None} for v, _ in var.versions],
        }
        return 200, json.dumps(resource).encode(), {"Content-Type": "application/json"}

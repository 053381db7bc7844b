"""The sandbox server: a real HTTP/1.1 server on 127.0.0.1 (stdlib, one thread per connection) and the
Python API tests and the demo drive it with."""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tokenstore import is_loopback_host

from ._business import BUSINESS_SCOPES, Business, PhoneNumber
from ._clock import Clock, ManualClock, SystemClock
from ._events import uninstall as uninstall_waba
from ._graph import Call, Reply, graph_error
from ._state import Fault, ReceivedMessage, RequestRecord, SandboxState
from ._tokens import DEFAULT_SCOPES, SIXTY_DAYS, TokenRecord
from ._webhooks import WebhookDelivery
from .routes import ROUTE_MODULES, Route, Router, load_routes

__all__ = ["DEFAULT_PHONE_NUMBER_ID", "DEFAULT_TEMPLATES", "Sandbox"]

logger = logging.getLogger("sender.sandbox")

DEFAULT_PHONE_NUMBER_ID = "106540352242922"
DEFAULT_TEMPLATES: Mapping[str, tuple[str, ...]] = {"hello_world": ("en_US",)}
MAX_BODY = 1 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that went away mid-request (timeouts, drops, stop()) is normal here: no traceback on stderr
        logger.debug("sandbox connection from %s ended abruptly", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GraphSandbox/1.0"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection is closed after this
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # the request line may hold secrets: not logged
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        sandbox = self.server.sandbox
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._write(graph_error(100, message="(#100) request body too large"))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        call = Call(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        reply, _ = sandbox._handle(call)
        if reply.delay > 0:
            sandbox.state.stopping.wait(reply.delay)
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        payload, content_type = reply.encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in reply.headers.items():
                if key.lower() != "content-type":
                    self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class Sandbox:
    """A local stand-in for the Graph API: ``/messages``, ``debug_token``, ``/{waba-id}/phone_numbers`` and
    ``/_sandbox`` control routes, for one business (the default) or many (:meth:`add_business`).

    >>> with Sandbox() as sb:                                       # doctest: +SKIP
    ...     token = sb.issue_token()
    ...     sb.url, sb.phone_number_id

    It checks bearer tokens against its registry (issue, rotate, revoke, expire on ``clock``), returns
    Graph error objects on command (:meth:`fail_next`, :meth:`hang_next`, :meth:`drop_next`), validates
    message bodies against Meta's schema and records what it accepted (:attr:`received`) and every request
    (:attr:`requests`, fingerprints only). ``routes`` names the route modules (see ``sender.sandbox.routes``);
    ``extra_routes`` adds more.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        phone_number_ids: Iterable[str] | None = (DEFAULT_PHONE_NUMBER_ID,),
        templates: Mapping[str, Iterable[str]] | None = DEFAULT_TEMPLATES,
        require_appsecret_proof: bool = False,
        routes: Iterable[str] = ROUTE_MODULES,
        extra_routes: Iterable[Route] = (),
    ) -> None:
        if not is_loopback_host(host):
            raise ValueError("the sandbox only listens on loopback (127.0.0.1)")
        self.host = host
        self.port = port
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.state = SandboxState(
            self.clock,
            phone_number_ids=phone_number_ids,
            templates=templates,
            require_appsecret_proof=require_appsecret_proof,
        )
        self.router = Router([*load_routes(routes), *extra_routes])
        self.state.dispatch = self._handle_batch_item
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Bind and serve in a background thread. Returns self."""
        if self._server is not None:
            return self
        self.state.stopping.clear()
        server = _Server((self.host, self.port), self)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="graph-sandbox", daemon=True
        )
        self._thread.start()
        logger.debug("Graph sandbox listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed answers and close every connection (keep-alive ones included)."""
        server = self._server
        if server is None:
            return
        self.state.stopping.set()
        self.state.webhooks.stop()
        server.shutdown()
        with server.connections_lock:
            connections = list(server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` is called from another (or KeyboardInterrupt)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to configure as ``whatsapp.base_url``."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- dispatch (called from the server's threads) --------------------------------------------------------
    def _handle(self, call: Call) -> tuple[Reply, str]:
        route, params, known = self.router.resolve(call.method, call.path)
        fingerprint = self.state.fingerprint_of_call(call)
        if route is None:
            if known:
                reply = graph_error(100, message=f"Unsupported {call.method.lower()} request.")
            else:
                reply = graph_error(2500, message=f"Unknown path components: {call.path}")
            self.state.record_request(call, "-", reply, fingerprint)
            return reply, "-"
        call.params = params
        try:
            reply = route.handler(call, self.state)
        except Exception:
            logger.exception("sandbox route %s failed", route.name)
            reply = graph_error(1, message="An unknown error occurred (the sandbox route failed)", status=500)
        self.state.record_request(call, route.name, reply, fingerprint)
        return reply, route.name

    def _handle_batch_item(self, call: Call) -> tuple[Reply, str]:
        """One item of a batch request: answered by its route, not logged as a request of its own."""
        route, params, known = self.router.resolve(call.method, call.path)
        if route is None:
            if known:
                return graph_error(100, message=f"Unsupported {call.method.lower()} request."), "-"
            return graph_error(2500, message=f"Unknown path components: {call.path}"), "-"
        if route.name == "batch":
            return graph_error(100, message="(#100) a batch item cannot be a batch request"), "-"
        call.params = params
        try:
            return route.handler(call, self.state), route.name
        except Exception:
            logger.exception("sandbox route %s failed (in a batch)", route.name)
            failed = graph_error(1, message="An unknown error occurred (the sandbox route failed)", status=500)
            return failed, route.name

    # -- apps and tokens ------------------------------------------------------------------------------------
    @property
    def app_id(self) -> str:
        return self.state.app.app_id

    @property
    def app_secret(self) -> str:
        """The default app's secret (for appsecret_proof and app-token calls)."""
        return self.state.app.secret

    @property
    def app_token(self) -> str:
        return self.state.app.app_token

    @property
    def phone_number_id(self) -> str:
        ids = self.state.phone_number_ids
        return sorted(ids)[0] if ids else DEFAULT_PHONE_NUMBER_ID

    @property
    def waba_id(self) -> str:
        return self.state.waba_id

    def issue_token(
        self,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        expires_in: float | None = None,
        type: str = "SYSTEM_USER",
        label: str | None = None,
        value: str | None = None,
    ) -> str:
        """Create a token of the default app and return its value (``expires_in`` seconds; None: never).

        ``value``: register this exact value (e.g. a test's canary) instead of a random one.
        """
        options: dict[str, Any] = {"scopes": scopes, "expires_in": expires_in, "type": type, "label": label}
        if value is not None:
            self.state.tokens.add(value, app_id=self.app_id, **options)
            return value
        return self.state.tokens.issue(app_id=self.app_id, **options)

    def issue_sixty_day_token(self, **options: Any) -> str:
        """A system-user token that expires in 60 days (Meta's recommended kind)."""
        return self.issue_token(expires_in=SIXTY_DAYS, **options)

    def rotate_token(self, old: str, *, revoke_old: bool = False, value: str | None = None) -> str:
        """A new token like ``old`` (app, type, scopes, lifetime); the old one stays valid unless ``revoke_old``."""
        return self.state.tokens.exchange(old, revoke_old=revoke_old, value=value)

    def revoke_token(self, value_or_fingerprint: str) -> bool:
        """Revoke a token (by value or fingerprint) at once; False if unknown or already revoked."""
        return self.state.tokens.revoke(value_or_fingerprint)

    def token_record(self, value_or_fingerprint: str) -> TokenRecord | None:
        record = self.state.tokens.find(value_or_fingerprint)
        return None if record is None else record.copy()

    def tokens(self) -> list[TokenRecord]:
        return self.state.tokens.records()

    # -- businesses -----------------------------------------------------------------------------------------
    def add_business(
        self,
        *,
        waba_id: str | None = None,
        name: str | None = None,
        numbers: int | Iterable[str] = 1,
        token: str | bool = True,
        expires_in: float | None = None,
        business_id: str | None = None,
    ) -> Business:
        """A new customer business (a WABA of its own) with ``numbers`` phone numbers (a count or the ids) and
        a token scoped to it (``token``: True a random one, a string that value, False none).

        >>> biz = sb.add_business(numbers=2)                          # doctest: +SKIP
        >>> biz.waba_id, biz.phone_number_ids, biz.token               # doctest: +SKIP

        Its token sends from its own numbers only: on another business's number Graph answers code 200 and
        nothing is delivered.
        """
        return self.state.add_business(
            waba_id=waba_id, name=name, numbers=numbers, token=token, expires_in=expires_in, business_id=business_id
        )

    def business(self, waba_id: str) -> Business:
        """The business with this WABA id (KeyError when unknown). The default one is :attr:`default_business`."""
        return self.state.businesses.get(waba_id)

    @property
    def businesses(self) -> list[Business]:
        """Every business, the default one first."""
        return self.state.businesses.all()

    @property
    def default_business(self) -> Business:
        """The sandbox's classic business: :attr:`waba_id`, :attr:`phone_number_id`, tokens of
        :meth:`issue_token`."""
        return self.state.default_business

    def business_for_number(self, phone_number_id: str) -> Business | None:
        return self.state.businesses.for_number(str(phone_number_id))

    def add_phone_number(
        self,
        waba_id: str,
        phone_number_id: str | None = None,
        *,
        display_phone_number: str | None = None,
        verified_name: str | None = None,
    ) -> PhoneNumber:
        """Give a business one more phone number."""
        return self.state.businesses.add_number(
            waba_id, phone_number_id, display_phone_number=display_phone_number, verified_name=verified_name
        )

    def issue_business_token(self, waba_id: str, *, value: str | None = None, expires_in: float | None = None) -> str:
        """A new token scoped to this business (it becomes ``business.token``; older ones stay valid)."""
        return self.state.issue_business_token(waba_id, value=value, expires_in=expires_in)

    def rotate_business_token(self, waba_id: str, *, revoke_old: bool = False, value: str | None = None) -> str:
        """A new token like the business's current one; the old stays valid unless ``revoke_old``."""
        return self.state.rotate_business_token(waba_id, revoke_old=revoke_old, value=value)

    def revoke_business_token(self, waba_id: str, *, all: bool = False) -> int:
        """Revoke the business's current token (``all``: every token acting for it); how many were revoked."""
        return self.state.revoke_business_tokens(waba_id, all=all)

    def business_tokens(self, waba_id: str) -> list[TokenRecord]:
        """Every token that acts for this business, oldest first (copies; values are not shown in reprs)."""
        return self.state.business_tokens(waba_id)

    def signup_code(
        self,
        waba_ids: str | Iterable[str] | None = None,
        *,
        numbers: int = 1,
        name: str | None = None,
        scopes: Iterable[str] | None = None,
        token_expires_in: float | None = SIXTY_DAYS,
        app_id: str | None = None,
        value: str | None = None,
    ) -> str:
        """An Embedded Signup code (single use, 30 s on the sandbox clock) for these WABAs, or for a new business
        with ``numbers`` phone numbers; the exchange issues a token scoped to them (``token_expires_in``
        seconds, None: never; ``scopes``: default the business scopes). Find the new business with
        :meth:`signup_wabas`."""
        from .routes.signup import new_signup_code

        ids = [waba_ids] if isinstance(waba_ids, str) else (list(waba_ids) if waba_ids is not None else None)
        code, _ = new_signup_code(
            self.state,
            waba_ids=ids,
            numbers=numbers,
            name=name,
            scopes=tuple(scopes) if scopes is not None else BUSINESS_SCOPES,
            token_expires_in=token_expires_in,
            app_id=app_id,
            value=value,
        )
        return code

    def signup_wabas(self, code: str) -> tuple[str, ...]:
        """The WABA ids an Embedded Signup code stands for."""
        record = self.state.signup_codes.get(code)
        if record is None:
            raise KeyError("no such signup code")
        return record.waba_ids

    def add_template(self, name: str, languages: Iterable[str] = ("en_US",)) -> None:
        with self.state.lock:
            if self.state.templates is None:
                self.state.templates = {}
            self.state.templates.setdefault(name, set()).update(languages)

    def advance_clock(self, seconds: float) -> float:
        """Move a :class:`ManualClock` forward (tokens expire, timed proofs age)."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("this sandbox runs on the real clock: pass clock=ManualClock()")
        return self.clock.advance(seconds)

    # -- faults ---------------------------------------------------------------------------------------------
    def fail_next(
        self,
        code: int | None = None,
        *,
        count: int = 1,
        subcode: int | None = None,
        status: int | None = None,
        message: str | None = None,
        details: str | None = None,
        retry_after: float | None = None,
        route: str = "messages",
        deliver: bool = False,
    ) -> None:
        """The next ``count`` requests to ``route`` answer Graph error ``code`` (or, with ``status`` alone,
        that HTTP status without a Graph error object). ``deliver``: accept the message first."""
        if code is None and status is None:
            raise ValueError("give a Graph error code, an HTTP status, or both")
        self.state.queue(
            Fault(
                code=code,
                status=status,
                subcode=subcode,
                message=message,
                details=details,
                retry_after=retry_after,
                count=count,
                route=route,
                deliver=deliver,
            )
        )

    def hang_next(self, seconds: float, *, count: int = 1, deliver: bool = True, route: str = "messages") -> None:
        """The next ``count`` requests wait ``seconds`` before answering (the message is accepted first)."""
        self.state.queue(Fault(delay=seconds, count=count, deliver=deliver, route=route))

    def drop_next(self, *, count: int = 1, deliver: bool = True, route: str = "messages") -> None:
        """The next ``count`` requests get no answer: the connection is closed (after accepting the message,
        unless ``deliver=False``)."""
        self.state.queue(Fault(drop=True, count=count, deliver=deliver, route=route))

    def queue_fault(self, fault: Fault) -> None:
        self.state.queue(fault)

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    # -- what happened --------------------------------------------------------------------------------------
    @property
    def received(self) -> list[ReceivedMessage]:
        """Messages accepted, in order."""
        with self.state.lock:
            return list(self.state.received)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered (or dropped), in order."""
        with self.state.lock:
            return list(self.state.requests)

    def received_counts(self, key: Callable[[ReceivedMessage], Any] | None = None) -> collections.Counter[Any]:
        """How many times each message was accepted, keyed by ``key`` (default: the text body)."""
        return self.state.received_counts(key)

    def route_counts(self) -> collections.Counter[str]:
        """How many requests each route answered (``messages``, ``debug_token``, ``oauth.access_token``,
        ``oauth.revoke``, ``system_users.access_tokens``, ``businesses.phone_numbers``, ``control``; ``-`` for
        unknown paths)."""
        with self.state.lock:
            return collections.Counter(r.route for r in self.state.requests)

    # -- customers leaving ------------------------------------------------------------------------------------
    def uninstall(self, waba_id: str | None = None) -> dict[str, Any]:
        """The customer of ``waba_id`` (default: the sandbox's WABA) removes the app: its tokens die now
        (190/458) and an ``account_update`` ``PARTNER_APP_UNINSTALLED`` payload is produced and returned."""
        _, event = uninstall_waba(self.state, waba_id or self.waba_id)
        return event

    def add_event_hook(self, hook: Callable[[dict[str, Any]], object]) -> None:
        """Call ``hook(payload)`` with every webhook payload the sandbox produces (e.g. to deliver it)."""
        with self.state.lock:
            self.state.event_hooks.append(hook)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Webhook payloads produced so far, in order."""
        with self.state.lock:
            return list(self.state.events)

    def batch_item_counts(self) -> collections.Counter[str]:
        """How many items of batch requests each route answered (``debug_token``...); the batch calls
        themselves are ``route_counts()["batch"]``."""
        with self.state.lock:
            return collections.Counter(self.state.batch_items)

    def reset(self) -> None:
        """Forget faults, accepted messages and the request log (tokens stay)."""
        self.state.reset()

    # -- webhooks -------------------------------------------------------------------------------------------------
    def subscribe_webhook(self, url: str, verify_token: str | None = None) -> None:
        """Register the callback URL for signed webhooks (loopback only). With ``verify_token``, Meta's GET
        handshake runs first: the endpoint must echo the challenge, else ``ValueError``."""
        self.state.webhooks.subscribe(url, verify_token)

    def rotate_app_secret(self, value: str | None = None) -> str:
        """Reset the default app's secret (Meta's dashboard "Reset"): webhooks are signed with the new one
        from now on (and appsecret_proof / app tokens need it). Returns the new secret."""
        return self.state.tokens.rotate_app_secret(self.app_id, value)

    def fail_delivery_next(self, code: int = 131026, *, title: str = "Message undeliverable", count: int = 1) -> None:
        """The next ``count`` accepted messages get a ``failed`` status webhook (after ``sent``) with this
        error code and title, instead of delivered and read."""
        self.state.webhooks.fail_next(code, title=title, count=count)

    def emit_webhook(self, payload: Mapping[str, Any] | bytes) -> WebhookDelivery:
        """Deliver any webhook (e.g. ``account_update_payload("PARTNER_APP_UNINSTALLED", waba_id=...)``),
        signed with the current app secret, to the registered URL. Returns its delivery record."""
        return self.state.webhooks.emit(payload)

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook was delivered (or given up after the retries); False on timeout."""
        return self.state.webhooks.wait_idle(timeout)

    def pause_webhooks(self) -> None:
        """Hold deliveries in the queue (they keep their order) until :meth:`resume_webhooks`."""
        self.state.webhooks.pause()

    def resume_webhooks(self) -> None:
        self.state.webhooks.resume()

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every webhook queued, in order, with its attempts and the answers it got."""
        return self.state.webhooks.snapshot()

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"<Sandbox {state} app_id={self.app_id} phone_number_id={self.phone_number_id}>"

"""A local HTTPS fake of Azure Key Vault's secret API and of the Microsoft Entra token endpoints.

Serves, over TLS from a ``trustme`` CA (:class:`tests.servers.LocalTLS`), what the real ``SecretClient`` (sync and
aio) and ``ClientSecretCredential`` send:

* Key Vault: ``GET /secrets/{name}/`` (latest), ``GET /secrets/{name}/{version}``, ``PUT /secrets/{name}``
  (stores ``attributes.exp``/``nbf`` as sent, unix seconds, and returns them), ``GET /secrets`` (list:
  ``maxresults`` 1-25, default 25, pages chained by an absolute ``nextLink`` carrying ``$skiptoken``, as Key Vault
  sends it), ``DELETE /secrets/{name}`` (soft-delete: answers the ``DeletedSecretBundle`` with ``recoveryId``,
  ``deletedDate``, ``scheduledPurgeDate`` and no value; the secret leaves reads and the list, and a PUT of its name
  is 409 ``Conflict``/``ObjectIsDeletedButRecoverable`` while it awaits purge), each with a required, known ``api-version``; bodies in Key Vault's JSON shape (``value``, ``id``,
  ``attributes`` with ``enabled``/``exp``/``nbf``/...); errors as Key Vault sends them (``SecretNotFound`` 404,
  403 ``Forbidden``/``SecretDisabled`` for a disabled secret, 429 ``Throttled`` with ``Retry-After``, ...).
* Authentication as Key Vault does it: a request without a bearer token gets the 401 challenge
  (``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/{tenant}",
  resource="https://vault.azure.net"``); a bearer the fake did not issue or accept is refused with 401.
* Microsoft Entra: ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``POST
  /{tenant}/oauth2/v2.0/token`` (client credentials) for registered apps; issued tokens are accepted by the vault.

Hooks: ``accept_token``, ``register_app``, ``fail_next`` (status, error code, ``Retry-After``), ``delay``,
``deny`` (names answered 403), ``enforce_disabled`` (False: serve a disabled secret with ``enabled: false`` as a
proxy or an older API might), ``stop``/``start`` on the same port with the data kept, and a request log.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import LocalTLS, free_port

DEFAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
API_VERSIONS = ("2026-04-01", "2025-07-01", "7.6", "7.5", "7.4", "7.3", "7.2", "7.1", "7.0", "2016-10-01")
VAULT_SCOPE = "https://vault.azure.net/.default"


@dataclass
class SecretVersion:
    version: str
    value: str
    enabled: bool = True
    exp: int | None = None
    nbf: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    auth: str  # "none" | "accepted" | "rejected" | "-" (token endpoint)
    status: int = 0


@dataclass
class _Fault:
    status: int
    code: str
    retry_after: str | None
    inner: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, owner: KeyVaultServer, context: ssl.SSLContext) -> None:
        self.owner = owner
        self.context = context
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # the TLS handshake runs here, in the connection's own thread, not in the accept loop
        request.settimeout(10)
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self.conn_lock:
            self.connections.add(conn)
        try:
            _Handler(conn, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.conn_lock:
                self.connections.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def drop_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.owner._dispatch(self, "GET")

    def do_PUT(self) -> None:
        self.server.owner._dispatch(self, "PUT")

    def do_POST(self) -> None:
        self.server.owner._dispatch(self, "POST")

    def do_PATCH(self) -> None:
        self.server.owner._dispatch(self, "PATCH")

    def do_DELETE(self) -> None:
        self.server.owner._dispatch(self, "DELETE")


class KeyVaultServer:
    """The fake. ``url`` is both the vault URL and the credential's ``authority``."""

    def __init__(self, tls: LocalTLS, *, tenant_id: str = DEFAULT_TENANT, port: int | None = None) -> None:
        self.tls = tls
        self.tenant_id = tenant_id
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._secrets: dict[str, list[SecretVersion]] = {}
        self._deleted: dict[str, list[SecretVersion]] = {}  # soft-deleted, awaiting purge or recovery
        self._tokens: set[str] = set()
        self._apps: dict[str, str] = {}
        self._faults: list[_Fault] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: seconds to wait before answering a vault request
        self.delay = 0.0
        #: secret names answered with 403 ForbiddenByRbac
        self.deny: set[str] = set()
        #: True: a disabled secret is refused with 403 SecretDisabled, as Key Vault does; False: served with
        #: attributes.enabled false
        self.enforce_disabled = True
        self.requests: list[Request] = []
        self.token_requests = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_pem(self) -> str:
        return str(self.tls.ca_pem)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> KeyVaultServer:
        if self._server is not None:
            return self
        server = _Server(self.port, self, self.tls.server_context)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Close the listener and every open (keep-alive) connection; the data is kept for ``start()``."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if thread is not None:
            thread.join(5)

    def __enter__(self) -> KeyVaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state, out of band -------------------------------------------------------------------------------
    def accept_token(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)

    def register_app(self, client_id: str, client_secret: str) -> None:
        with self._lock:
            self._apps[client_id] = client_secret

    def set_secret(
        self, name: str, value: str, *, enabled: bool = True, exp: float | None = None, nbf: float | None = None
    ) -> str:
        """A new version (another party rotating the secret). Returns its version id."""
        version = SecretVersion(
            uuid.uuid4().hex,
            value,
            enabled=enabled,
            exp=int(exp) if exp is not None else None,
            nbf=int(nbf) if nbf is not None else None,
        )
        with self._lock:
            self._secrets.setdefault(name, []).append(version)
        return version.version

    def update(self, name: str, version: str | None = None, **attributes: Any) -> None:
        """Change attributes (enabled, exp, nbf) of a version (default: the latest)."""
        with self._lock:
            versions = self._secrets[name]
            target = versions[-1] if version is None else next(v for v in versions if v.version == version)
            for key, value in attributes.items():
                setattr(target, key, value)

    def values(self, name: str) -> list[str]:
        with self._lock:
            return [v.value for v in self._secrets.get(name, [])]

    def versions(self, name: str) -> list[SecretVersion]:
        """Copies of every version of ``name``, oldest first (version id, value, enabled, exp, nbf)."""
        import dataclasses

        with self._lock:
            return [dataclasses.replace(v) for v in self._secrets.get(name, [])]

    def fail_next(
        self, status: int, count: int = 1, *, code: str = "", retry_after: str | None = None, inner: str | None = None
    ) -> None:
        """Answer the next ``count`` authenticated vault requests with ``status`` (and ``Retry-After``)."""
        default = {429: "Throttled", 503: "ServiceUnavailable", 500: "InternalServerError", 403: "Forbidden"}
        with self._lock:
            self._faults.extend(
                _Fault(status, code or default.get(status, "Error"), retry_after, inner) for _ in range(count)
            )

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
        self.delay = 0.0
        self.deny.clear()
        self.enforce_disabled = True

    def vault_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == "/secrets" or r.path.startswith("/secrets/")]

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _dispatch(self, handler: _Handler, method: str) -> None:
        url = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = url.path
        tenant_prefix = f"/{self.tenant_id}/"
        if path.startswith(tenant_prefix) or path.startswith("/common/") or path.startswith("/organizations/"):
            record = Request(method, path, query, "-")
            status, headers, payload = self._entra(handler, method, path, body)
        elif path == "/secrets" or path.startswith("/secrets/"):
            auth = self._auth_state(handler.headers.get("Authorization"))
            record = Request(method, path, query, auth)
            status, headers, payload = self._vault(method, path, query, body, auth)
        else:
            record = Request(method, path, query, "-")
            status, headers, payload = 404, {}, {"error": {"code": "NotFound", "message": "No such route."}}
        record.status = status
        with self._lock:
            self.requests.append(record)
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _auth_state(self, header: str | None) -> str:
        if not header:
            return "none"
        scheme, _, token = header.partition(" ")
        with self._lock:
            ok = scheme.lower() == "bearer" and token in self._tokens
        return "accepted" if ok else "rejected"

    def _challenge(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
            'resource="https://vault.azure.net"'
        }

    def _vault(
        self, method: str, path: str, query: dict[str, str], body: bytes, auth: str
    ) -> tuple[int, dict[str, str], Any]:
        api_version = query.get("api-version")
        if api_version not in API_VERSIONS:
            return 400, {}, _error("BadParameter", f"The specified version ({api_version}) is not recognized.")
        if auth == "none":
            return 401, self._challenge(), _error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
        if auth == "rejected":
            return 401, self._challenge(), _error("Unauthorized", "AKV10032: Invalid issuer.")
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return fault.status, headers, _error(fault.code, "Injected by the test.", fault.inner)
        parts = [unquote(p) for p in path.split("/")[2:]]
        name = parts[0] if parts else ""
        version = parts[1] if len(parts) > 1 and parts[1] else None
        if name in self.deny:
            return (
                403,
                {},
                _error("Forbidden", "Caller is not authorized to perform action on resource.", "ForbiddenByRbac"),
            )
        if method == "GET" and not name:
            return self._list(query)
        if method == "GET":
            return self._get(name, version)
        if method == "PUT" and version is None:
            return self._put(name, body)
        if method == "DELETE" and version is None:
            return self._delete(name)
        return 405, {}, _error("BadParameter", "Method not allowed.")

    def _get(self, name: str, version: str | None) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            versions = self._secrets.get(name)
            chosen = None
            if versions:
                chosen = versions[-1] if version is None else next((v for v in versions if v.version == version), None)
        if chosen is None:
            return (
                404,
                {},
                _error(
                    "SecretNotFound",
                    f"A secret with (name/id) {name}{'/' + version if version else ''} was not found in this key vault.",
                ),
            )
        if not chosen.enabled and self.enforce_disabled:
            return 403, {}, _error("Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
        return 200, {}, self._bundle(name, chosen)

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        raw = query.get("maxresults", "25")
        if not raw.isdigit() or not 1 <= int(raw) <= 25:
            return 400, {}, _error("BadParameter", "maxresults must be between 1 and 25.")
        size = int(raw)
        skip = query.get("$skiptoken", "0")
        offset = int(skip) if skip.isdigit() else 0
        with self._lock:
            names = sorted(self._secrets)
            page = [(n, self._secrets[n][-1]) for n in names[offset : offset + size]]
        items = []
        for name, latest in page:
            attributes = {"enabled": latest.enabled, "created": latest.created, "updated": latest.created}
            items.append({"id": f"{self.url}/secrets/{name}", "attributes": attributes, "tags": {}})
        following = offset + size
        next_link = None
        if following < len(names):
            next_link = (
                f"{self.url}/secrets?api-version={query['api-version']}&$skiptoken={following}&maxresults={size}"
            )
        return 200, {}, {"value": items, "nextLink": next_link}

    def _put(self, name: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            reserved = name in self._deleted
        if reserved:
            return (
                409,
                {},
                _error(
                    "Conflict",
                    f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
                    "in this state, the secret can only be recovered or purged.",
                    "ObjectIsDeletedButRecoverable",
                ),
            )
        try:
            data = json.loads(body)
        except ValueError:
            return 400, {}, _error("BadParameter", "The request body is not JSON.")
        if not isinstance(data, dict) or not isinstance(data.get("value"), str):
            return 400, {}, _error("BadParameter", "Property value is required.")
        attributes = data.get("attributes") or {}
        times: dict[str, int | None] = {}
        for key in ("exp", "nbf"):
            value = attributes.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                return 400, {}, _error("BadParameter", f"Property attributes.{key} must be a unix time (integer).")
            times[key] = value
        version = SecretVersion(
            uuid.uuid4().hex, data["value"], enabled=attributes.get("enabled", True), exp=times["exp"], nbf=times["nbf"]
        )
        with self._lock:
            self._secrets.setdefault(name, []).append(version)
        return 200, {}, self._bundle(name, version)

    def _delete(self, name: str) -> tuple[int, dict[str, str], Any]:
        """Soft-delete: the secret leaves ``/secrets`` and its name stays reserved (a PUT is 409) until purged."""
        with self._lock:
            versions = self._secrets.pop(name, None)
            if versions:
                self._deleted[name] = versions
        if not versions:
            return 404, {}, _error("SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault.")
        now = int(time.time())
        bundle = self._bundle(name, versions[-1])
        bundle.pop("value", None)  # Key Vault's DeletedSecretBundle for DELETE carries no value
        bundle.update(
            recoveryId=f"{self.url}/deletedsecrets/{name}", deletedDate=now, scheduledPurgeDate=now + 90 * 86400
        )
        return 200, {}, bundle

    def deleted(self, name: str) -> bool:
        """Whether ``name`` is soft-deleted (awaiting purge or recovery)."""
        with self._lock:
            return name in self._deleted

    def _bundle(self, name: str, version: SecretVersion) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": version.enabled,
            "created": version.created,
            "updated": version.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }
        if version.exp is not None:
            attributes["exp"] = version.exp
        if version.nbf is not None:
            attributes["nbf"] = version.nbf
        bundle = {"id": f"{self.url}/secrets/{name}/{version.version}", "attributes": attributes, "tags": {}}
        if version.enabled or not self.enforce_disabled:
            bundle["value"] = version.value
        return bundle

    # -- Microsoft Entra ---------------------------------------------------------------------------------------
    def _entra(self, handler: _Handler, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        base = f"{self.url}/{self.tenant_id}"
        if method == "GET" and path == f"/{self.tenant_id}/v2.0/.well-known/openid-configuration":
            return (
                200,
                {},
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "issuer": f"{base}/v2.0",
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                },
            )
        if method == "POST" and path == f"/{self.tenant_id}/oauth2/v2.0/token":
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            with self._lock:
                self.token_requests += 1
                expected = self._apps.get(form.get("client_id", ""))
            if form.get("grant_type") != "client_credentials":
                return 400, {}, {"error": "unsupported_grant_type", "error_description": "AADSTS70003"}
            if expected is None or not secrets.compare_digest(expected, form.get("client_secret", "")):
                return (
                    401,
                    {},
                    {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
                )
            if VAULT_SCOPE not in form.get("scope", "").split():
                return 400, {}, {"error": "invalid_scope", "error_description": "AADSTS70011: invalid scope."}
            token = "fake-entra-" + secrets.token_urlsafe(24)
            self.accept_token(token)
            return 200, {}, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        return 404, {}, {"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."}


def _error(code: str, message: str, inner: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return {"error": error}

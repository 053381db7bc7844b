"""The token layer's counters: a scripted sequence against the sandbox and a file store, every counter checked in
the plain snapshot and in the OpenTelemetry export; log records at their levels, fingerprints only."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import sender
import tokenstore
from sender.sandbox import Sandbox
from tests.conftest import need
from tests.contract import FakeClock, canary
from tests.ecosystem.conftest import TO
from tests.sender.conftest import Store, log_text
from tokenstore import CachePolicy, CachingProvider
from tokenstore._metrics import COUNTERS, OTEL_INSTRUMENTS, PROVIDER_ATTRIBUTE
from tokenstore.backends.file import FileBackend

try:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
except ImportError:
    MeterProvider = InMemoryMetricReader = None


@pytest.fixture
def otel() -> Iterator[Any]:
    need(MeterProvider is not None, "opentelemetry-sdk (pip install opentelemetry-sdk)")
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tokenstore.enable_opentelemetry(provider)
    yield reader
    provider.shutdown()


def exported(reader: Any, name: str) -> dict[str, int]:
    """The values the OpenTelemetry reader collected for provider ``name``, by our counter names."""
    by_instrument = {instrument: counter for counter, (instrument, _, _) in OTEL_INSTRUMENTS.items()}
    values: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != "tokenstore":
                continue
            for metric in scope.metrics:
                assert metric.data.is_monotonic, metric.name
                for point in metric.data.data_points:
                    if point.attributes.get(PROVIDER_ATTRIBUTE) == name:
                        values[by_instrument[metric.name]] = int(point.value)
    return values


def test_a_scripted_sequence_moves_every_counter(
    sandbox: Sandbox, store: Store, otel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(0)
    policy = CachePolicy(
        ttl=100, refresh_ahead=10, max_stale=1000, jitter=0, backoff_initial=1, backoff_max=1, background_refresh=False
    )
    provider = CachingProvider(FileBackend(store.path), policy, clock=clock)
    name = f"scripted-{uuid.uuid4().hex[:8]}"
    tokenstore.track_provider(provider, name=name)
    auth = sender.TokenAuth(provider)
    url = f"{sandbox.url}/v26.0/{sandbox.phone_number_id}/messages"
    sent: list[str] = []

    def send(body: str) -> httpx.Response:
        response = client.post(
            url, json={"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": body}}
        )
        if response.status_code == 200:
            sent.append(body)
        return response

    first = store.initial
    with httpx.Client(auth=auth) as client:
        # t=0: a cold cache (miss, fetch), then two hits
        send("1")
        send("2")
        send("3")
        # t=95: inside refresh-ahead (90..100): served from the cache while it refreshes (same token)
        clock.now = 95
        send("4")
        # t=200, past the TTL: the store was rotated meanwhile (old token still valid): miss, fetch, rotation
        second = sandbox.rotate_token(first, value=canary())
        store.write(second)
        clock.now = 200
        send("5")
        # rotated again and the previous token revoked at Graph: a hit on the revoked token, 401, invalidate,
        # refetch (miss, fetch, rotation), resend once
        third = sandbox.rotate_token(second, value=canary())
        store.write(third)
        sandbox.revoke_token(second)
        send("6")
        # the store goes away (file deleted) past the TTL: the fetch fails, the cached token is served stale
        store.path.unlink()
        clock.now = 400
        send("7")
        # within the backoff: stale again, without asking the store
        clock.now = 400.5
        send("8")
        # the store comes back, but with a token Graph has revoked: 401, refetch gives the same -> failure
        store.write(third)
        sandbox.revoke_token(third)
        clock.now = 402
        with pytest.raises(sender.AuthenticationError):
            send("9")
    provider.invalidate()

    expected = {
        "hits": 4,  # sends 2, 3, 4 (refresh window) and 6 (before its 401)
        "misses": 6,  # sends 1, 5, 6's refetch, 7, 9 and 9's refetch
        "fetches": 6,  # the same minus 7 (failed), plus the refresh-ahead read
        "refreshes": 1,
        "rotations": 2,  # first -> second at 5, second -> third at 6
        "stale_served": 2,  # sends 7 and 8
        "backend_errors": 1,  # send 7's fetch
        "invalidations": 3,  # after the 401s of 6 and 9, and the explicit one
        "rejections": 2,  # the 401s of 6 and 9
        "resends": 1,  # 6, with the third token
        "auth_failures": 1,  # 9: the store held the rejected token
    }
    assert set(expected) == set(COUNTERS)
    assert tokenstore.provider_metrics(provider) == expected
    assert tokenstore.metrics_snapshot()[name] == expected
    assert exported(otel, name) == expected

    # Graph's view agrees: every successful send arrived once, 9 never did
    assert sandbox.received_counts() == {str(i): 1 for i in range(1, 9)}
    assert sent == [str(i) for i in range(1, 9)]
    assert [r.status for r in sandbox.requests].count(401) == 2

    # log records: what happened, at sensible levels, with fingerprints and never a token
    records = [r for r in caplog.records if r.name in ("tokenstore.cache", "sender")]
    levels = {(r.name, r.levelname) for r in records}
    assert ("tokenstore.cache", "INFO") in levels  # rotations
    assert ("tokenstore.cache", "WARNING") in levels  # fetch failed, serving stale
    assert ("sender", "INFO") in levels  # the resend
    assert ("sender", "WARNING") in levels  # the failure
    assert not any(r.levelno >= logging.ERROR for r in records)
    rotated = [r.getMessage() for r in records if "rotated" in r.getMessage()]
    assert len(rotated) == 2
    assert tokenstore.fingerprint_of(second) in rotated[0] and tokenstore.fingerprint_of(third) in rotated[1]
    resent = [r.getMessage() for r in records if "resending once" in r.getMessage()]
    assert resent and tokenstore.fingerprint_of(third) in resent[0]
    stale = [r.getMessage() for r in records if "serving the cached token" in r.getMessage()]
    assert stale and tokenstore.fingerprint_of(third) in stale[0]
    log = log_text(caplog)
    for value in (first, second, third):
        assert value not in log
    provider.close()


async def test_async_flow_counts_the_same(sandbox: Sandbox, store: Store) -> None:
    provider = store.cached()
    name = f"async-{uuid.uuid4().hex[:8]}"
    tokenstore.track_provider(provider, name=name)
    url = f"{sandbox.url}/v26.0/{sandbox.phone_number_id}/messages"
    body = {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": "a"}}
    async with httpx.AsyncClient(auth=sender.TokenAuth(provider)) as client:
        assert (await client.post(url, json=body)).status_code == 200
        store.rotate()
        assert (await client.post(url, json=body)).status_code == 200
        sandbox.revoke_token(store.read())
        with pytest.raises(sender.AuthenticationError):
            await client.post(url, json=body)
    snap = tokenstore.metrics_snapshot()[name]
    assert (snap["rejections"], snap["resends"], snap["auth_failures"]) == (2, 1, 1)
    assert (snap["misses"], snap["fetches"], snap["rotations"], snap["invalidations"]) == (3, 3, 1, 2)
    await provider.aclose()


def test_a_sender_tracks_its_provider(sandbox: Sandbox, store: Store) -> None:
    provider = store.cached()
    with sender.Sender(provider, phone_number_id=sandbox.phone_number_id, base_url=sandbox.url) as s:
        s.send_text(TO, "tracked")
    snap = tokenstore.metrics_snapshot()
    assert provider.source in snap
    assert tokenstore.provider_metrics(provider)["misses"] == 1
    provider.close()


def test_counters_survive_the_provider_and_stay_monotonic() -> None:
    name = f"gone-{uuid.uuid4().hex[:8]}"

    def use_once() -> None:
        provider = CachingProvider(_Const(), CachePolicy(ttl=100, jitter=0))
        tokenstore.track_provider(provider, name=name)
        provider.get_token()
        provider.get_token()
        provider.invalidate()

    use_once()
    gc.collect()
    assert tokenstore.metrics_snapshot()[name] == {
        **dict.fromkeys(COUNTERS, 0),
        "hits": 1,
        "misses": 1,
        "fetches": 1,
        "invalidations": 1,
    }
    use_once()
    gc.collect()
    assert tokenstore.metrics_snapshot()[name]["hits"] == 2
    assert tokenstore.metrics_snapshot()[name]["fetches"] == 2


def test_untracked_and_uncached_providers() -> None:
    raw = _Const()
    assert tokenstore.provider_metrics(raw) == dict.fromkeys(COUNTERS, 0)
    cached = CachingProvider(_Const())
    cached.get_token()
    assert tokenstore.provider_metrics(cached)["misses"] == 1  # found without tracking
    with pytest.raises(TypeError):
        tokenstore.track_provider(object())  # type: ignore[arg-type]
    # a wrapper around the cache: its counters are found through .inner
    wrapper = _Wrapper(cached)
    assert tokenstore.provider_metrics(wrapper)["misses"] == 1


def test_enable_opentelemetry_is_idempotent(otel: Any) -> None:
    provider = CachingProvider(_Const())
    name = f"idem-{uuid.uuid4().hex[:8]}"
    tokenstore.track_provider(provider, name=name)
    provider.get_token()
    tokenstore.enable_opentelemetry()  # the global provider: already done automatically, a no-op
    assert exported(otel, name)["misses"] == 1
    assert exported(otel, name)["misses"] == 1  # one series per counter, not duplicated


def test_importing_the_packages_does_not_import_opentelemetry() -> None:
    code = textwrap.dedent(
        """
        import sys
        import tokenstore, sender
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported at import time"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_without_opentelemetry_metrics_still_work_and_enabling_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
        import tokenstore
        from tokenstore.backends.env import EnvBackend
        import os
        os.environ["T_OTEL_TEST"] = "x" * 20
        p = tokenstore.CachingProvider(EnvBackend("T_OTEL_TEST"))
        tokenstore.track_provider(p, name="p")
        p.get_token(); p.get_token()
        print(tokenstore.metrics_snapshot()["p"]["hits"])
        try:
            tokenstore.enable_opentelemetry()
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1"
    assert "pip install 'whatsapp-tokenstore[otel]'" in lines[1]


class _Const(tokenstore.TokenProvider):
    source = "const:test"

    def get_token(self) -> tokenstore.Token:
        return tokenstore.Token("c" * 24, source=self.source)


class _Wrapper(tokenstore.TokenProvider):
    def __init__(self, inner: tokenstore.TokenProvider) -> None:
        self.inner = inner
        self.source = inner.source

    def get_token(self) -> tokenstore.Token:
        return self.inner.get_token()

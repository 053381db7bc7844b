"""The token store fails for a while during a stream of sends: sealed (OpenBao ``sys/seal``), stopped (the fault
proxy refuses connections and drops the pooled ones), cut (TCP resets) or hanging (no answer: read timeouts).

Over the real stack: Sender/AsyncSender -> CachingProvider -> VaultBackend -> fault proxy -> OpenBao, sending
to the Graph sandbox. The cache runs on a clock the test moves, so the TTL and ``max_stale`` are crossed at
known points of the stream; everything else (network, store, sandbox, threads) is real.

What must hold: the stale token is served within ``max_stale`` and the sends go on; past it, each send fails
at once with a clear :class:`~tokenstore.BackendUnavailable` and nothing goes out; the store is asked at
most once per backoff period (no storm); when the store is back the same sender and provider recover (no
restart), the failed messages are sent again, and every message arrives exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest

from sender import SendResult
from tests.contract import FakeClock
from tests.reliability.conftest import (
    TO,
    Outcome,
    VaultStore,
    arun_stream,
    assert_clean_errors,
    assert_delivered_once,
    cache_policy,
    make_async_sender,
    make_sender,
    run_stream,
)
from tokenstore import BackendUnavailable, CachingProvider, fingerprint_of

pytestmark = pytest.mark.backend("vault")


@dataclass(frozen=True)
class Fault:
    begin: Callable[[VaultStore], object]
    end: Callable[[VaultStore], object]
    #: what the backend's error (quoted in the cache's BackendUnavailable) says
    words: str


FAULTS = {
    "sealed": Fault(lambda s: s.bao.seal(), lambda s: s.bao.unseal(), "sealed or unavailable"),
    "stopped": Fault(lambda s: s.proxy.go_down(), lambda s: s.proxy.heal(), "cannot connect to Vault"),
    "cut": Fault(lambda s: s.proxy.reset(), lambda s: s.proxy.heal(), "cannot connect to Vault"),
    "hanging": Fault(lambda s: s.proxy.hang(), lambda s: s.proxy.heal(), "no answer from Vault"),
}
BACKEND_TIMEOUT = 0.3  # a hanging store costs one fetch this long, not a send per request


def _texts(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def _check_outage(
    store: VaultStore,
    fault: Fault,
    provider: CachingProvider,
    phase1: list[Outcome],
    phase2: list[Outcome],
    in_flight: int,
) -> list[str]:
    """Check the outage phases; returns the texts that failed (to be sent again after recovery).

    Phase 2 moves the clock beyond ``max_stale`` once 20 sends have completed; the sends in flight at that
    moment (at most ``in_flight``) may have got the token before or after, so they may go either way.
    """
    initial = fingerprint_of(store.initial)
    assert all(o.ok for o in phase1), [repr(o.error) for o in phase1 if not o.ok][:3]
    assert {o.result.token_fingerprint for o in phase1 if o.result} == {initial}
    assert provider.stats.stale_served >= 1, "the TTL ran out during the outage: the stale token must be served"
    ok = [o for o in phase2 if o.ok]
    failed = [o for o in phase2 if not o.ok]
    assert 20 <= len(ok) <= 20 + in_flight, (len(ok), [repr(o.error) for o in failed][:3])
    assert {o.result.token_fingerprint for o in ok if o.result} == {initial}
    for outcome in failed:
        assert isinstance(outcome.error, BackendUnavailable), repr(outcome.error)
        message = str(outcome.error)
        assert "max_stale" in message and fault.words in message, message
        assert provider.source in message  # names the secret, never the value
    counts = store.sandbox.received_counts()
    assert not any(counts[o.text] for o in failed), "a send that failed for want of a token must not go out"
    assert len(store.sandbox.requests) == len(phase1) + len(ok)  # the failed sends never reached Graph
    return [o.text for o in failed]


# The clock moves at fixed points of each stream (the stream pauses new sends while it does; sends in flight
# go on). Phase 1: the fault begins after 20 sends (the token is cached: nothing changes), the TTL runs out
# after 40 (one failed fetch, the stale token served, then backing off). Phase 2: 21 s past the TTL after 5
# sends (past the backoff: one more failed fetch, still within max_stale 30 s), 46 s past it after 20 sends
# (beyond max_stale: sends fail fast). A fetch in flight when the clock moves is judged at the new time, so
# phase 2 makes one or two fetches.
PHASE1 = {20: "begin", 40: 11.0}
PHASE2 = {5: 10.0, 20: 25.0}


def _actions(
    plan: Mapping[int, object], store: VaultStore, fault: Fault, clock: FakeClock
) -> dict[int, Callable[[], object]]:
    def action(step: object) -> Callable[[], object]:
        if step == "begin":
            return lambda: fault.begin(store)
        assert isinstance(step, float)
        return lambda: clock.advance(step)

    return {k: action(v) for k, v in plan.items()}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_outage_during_a_stream_of_sends(store: VaultStore, kind: str) -> None:
    fault = FAULTS[kind]
    sandbox = store.sandbox
    clock = FakeClock()
    raw = store.counted(timeout=BACKEND_TIMEOUT)
    provider = CachingProvider(raw, cache_policy(), clock=clock, rand=lambda: 0.0)
    with make_sender(sandbox, provider) as client:

        def send(text: str) -> SendResult:
            return client.send_text(TO, text)

        phase1 = run_stream(send, _texts("a", 60), after=_actions(PHASE1, store, fault, clock))
        assert raw.calls == 2  # the first fetch, one failed refetch; then backing off: no storm
        phase2 = run_stream(send, _texts("b", 40), after=_actions(PHASE2, store, fault, clock))
        assert 3 <= raw.calls <= 4  # at most one fetch per backoff period
        failed = _check_outage(store, fault, provider, phase1, phase2, in_flight=3)
        calls = raw.calls

        fault.end(store)
        clock.advance(5)  # past the longest backoff (4 s)
        phase3 = run_stream(send, failed + _texts("c", 20))
        assert all(o.ok for o in phase3), [repr(o.error) for o in phase3 if not o.ok][:3]
        assert raw.calls == calls + 1  # recovered with one fetch: same sender, same provider, no restart
        assert provider.stats.backend_errors == calls - 1

        # and fully alive: a rotation with the old token revoked at Graph is picked up by the next send
        new = store.rotate(revoke_old=True)
        rotated = client.send_text(TO, "d0")
        assert rotated.token_fingerprint == fingerprint_of(new)
        assert raw.calls == calls + 2

    assert_delivered_once(sandbox, [*_texts("a", 60), *_texts("b", 40), *_texts("c", 20), "d0"])
    # OpenBao itself served only the reads that succeeded: the first, the recovery, the rotation
    assert store.store_requests() == 3
    assert_clean_errors([*phase1, *phase2, *phase3], store.secrets)


@pytest.mark.parametrize("kind", ["sealed", "stopped"])
async def test_outage_during_a_stream_of_async_sends(store: VaultStore, kind: str) -> None:
    fault = FAULTS[kind]
    sandbox = store.sandbox
    clock = FakeClock()
    raw = store.counted(timeout=BACKEND_TIMEOUT)
    provider = CachingProvider(raw, cache_policy(), clock=clock, rand=lambda: 0.0)
    async with make_async_sender(sandbox, provider) as client:

        async def send(text: str) -> SendResult:
            return await client.send_text(TO, text)

        phase1 = await arun_stream(send, _texts("a", 60), after=_actions(PHASE1, store, fault, clock))
        assert raw.calls == 2
        phase2 = await arun_stream(send, _texts("b", 40), after=_actions(PHASE2, store, fault, clock))
        assert 3 <= raw.calls <= 4
        failed = _check_outage(store, fault, provider, phase1, phase2, in_flight=15)
        calls = raw.calls

        fault.end(store)
        clock.advance(5)
        phase3 = await arun_stream(send, failed + _texts("c", 20))
        assert all(o.ok for o in phase3), [repr(o.error) for o in phase3 if not o.ok][:3]
        assert raw.calls == calls + 1

    assert_delivered_once(sandbox, [*_texts("a", 60), *_texts("b", 40), *_texts("c", 20)])
    assert store.store_requests() == 2
    assert_clean_errors([*phase1, *phase2, *phase3], store.secrets)

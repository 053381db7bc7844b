"""The access token is revoked at Graph in the middle of a stream of sends.

With the new token already in the store (Meta's rotation: refresh, write, revoke the old), every send that
Graph refuses is resent once with the token refetched from the store; the concurrent refusals share one
refetch, and every message arrives exactly once. With the store still holding the revoked token, each send
fails with a clear :class:`~sender.AuthenticationError` after one refetch and one request: no resend, no
loop, no storm; once an operator writes a good token to the store, sending resumes without a restart.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sender import AuthenticationError, SendResult
from tests.contract import canary
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
from tokenstore import CachingProvider, Token, TokenProvider, fingerprint_of

pytestmark = pytest.mark.backend("vault")

N = 200


def _texts(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def _check_rotation(store: VaultStore, outcomes: list[Outcome], new: str, in_flight: int, resends: int) -> None:
    sandbox = store.sandbox
    assert all(o.ok for o in outcomes), [repr(o.error) for o in outcomes if not o.ok][:3]
    assert_delivered_once(sandbox, [o.text for o in outcomes])
    assert len({o.result.message_id for o in outcomes if o.result}) == len(outcomes)
    # every send that started after the rotation went out with the new token
    after = outcomes[N // 2 + in_flight :]
    assert {o.result.token_fingerprint for o in after if o.result} == {fingerprint_of(new)}
    rejected = [r for r in sandbox.requests if r.status != 200]
    assert rejected, "the revocation must have been noticed mid-stream"
    assert all(r.status == 401 and r.code == 190 for r in rejected)
    assert all(r.token_fingerprint == fingerprint_of(store.initial) for r in rejected)
    assert resends == len(rejected)  # each refusal resent once, with the new token
    assert len(sandbox.requests) == len(outcomes) + len(rejected)  # and nothing else


def test_revoked_mid_stream_with_the_new_token_in_the_store(store: VaultStore) -> None:
    raw = store.counted()
    provider = CachingProvider(raw, cache_policy(ttl=300))
    rotated: list[str] = []
    with make_sender(store.sandbox, provider) as client:
        outcomes = run_stream(
            lambda text: client.send_text(TO, text),
            _texts("r", N),
            workers=8,
            after={N // 2: lambda: rotated.append(store.rotate(revoke_old=True))},
        )
        resends = client.auth.resends
    _check_rotation(store, outcomes, rotated[0], in_flight=7, resends=resends)
    assert raw.calls == 2, "the concurrent refusals share one refetch"
    assert store.store_requests() == 2


async def test_revoked_mid_stream_with_the_new_token_in_the_store_async(store: VaultStore) -> None:
    raw = store.counted()
    provider = CachingProvider(raw, cache_policy(ttl=300))
    rotated: list[str] = []
    async with make_async_sender(store.sandbox, provider) as client:

        async def send(text: str) -> SendResult:
            return await client.send_text(TO, text)

        outcomes = await arun_stream(
            send, _texts("r", N), concurrency=16, after={N // 2: lambda: rotated.append(store.rotate(revoke_old=True))}
        )
        resends = client.auth.resends
    _check_rotation(store, outcomes, rotated[0], in_flight=15, resends=resends)
    assert raw.calls == 2
    assert store.store_requests() == 2


def test_revoked_while_the_store_still_holds_it(store: VaultStore) -> None:
    sandbox = store.sandbox
    raw = store.counted()
    provider = CachingProvider(raw, cache_policy(ttl=300))
    operator: list[str] = []

    def operator_rotates() -> None:
        """What the operator does on the alert: a new token from Meta, written to the store (no restart)."""
        new = sandbox.rotate_token(store.initial, value=canary())
        store.write(new)
        operator.append(new)

    with make_sender(sandbox, provider) as client:
        outcomes = run_stream(
            lambda text: client.send_text(TO, text),
            _texts("s", 60),
            workers=4,
            after={20: lambda: sandbox.revoke_token(store.initial), 40: operator_rotates},
        )
        failed = [o for o in outcomes if not o.ok]
        ok = [o for o in outcomes if o.ok]
        assert 20 - 3 <= len(failed) <= 20 + 3, len(failed)  # the sends between the revocation and the fix
        for outcome in failed:
            error = outcome.error
            assert isinstance(error, AuthenticationError), repr(error)
            assert error.code == 190 and error.subcode == 460 and error.http_status == 401
            assert not error.retryable
            assert "still holds it" in str(error) and "rotate the token in the store" in str(error)
        # one request per failed send: refused, not resent, no loop
        refused = [r for r in sandbox.requests if r.status == 401]
        assert len(refused) == len(failed) + client.auth.resends
        assert len(sandbox.requests) == len(ok) + len(refused)
        # bounded refetches: at most one store call per refused send
        assert raw.calls <= 1 + len(failed) + 1
        # after the fix the same sender works; the failed messages are sent again by their caller
        again = run_stream(lambda text: client.send_text(TO, text), [o.text for o in failed])
        assert all(o.ok for o in again)
        assert {o.result.token_fingerprint for o in again if o.result} == {fingerprint_of(operator[0])}
    assert_delivered_once(sandbox, _texts("s", 60))
    assert_clean_errors(outcomes, store.secrets)


def test_concurrent_refusals_of_an_unchanged_token_share_one_refetch(store: VaultStore) -> None:
    """Design: "no loops, no storms: concurrent 401s share one refetch" - also when the store has nothing new.

    24 sends with the same cached token, refused together: the first refusal invalidates it and refetches
    (the same value); the later ones must see that a refetch already happened instead of invalidating the
    freshly fetched copy again and going back to the store.
    """
    workers = 24
    sandbox = store.sandbox
    raw = store.counted()
    gate = GatherFirst(CachingProvider(raw, cache_policy(ttl=300)))
    with make_sender(sandbox, gate) as client:
        client.send_text(TO, "warm")
        sandbox.revoke_token(store.initial)
        # every send takes the cached token before any refusal is acted on: a send that only started after
        # the refetch would carry the refetched copy, and its refusal would rightly refetch once more
        gate.gather(workers)

        def burst(i: int) -> BaseException | None:
            try:
                client.send_text(TO, f"x{i}")
            except AuthenticationError as exc:
                return exc
            return None

        with ThreadPoolExecutor(max_workers=workers) as pool:
            errors = list(pool.map(burst, range(workers)))
    assert all(isinstance(e, AuthenticationError) for e in errors)
    assert [r.status for r in sandbox.requests].count(401) == workers  # one request each, no resend
    assert raw.calls == 2, f"{raw.calls - 1} refetches of the same refused token by {workers} concurrent sends"


class GatherFirst(TokenProvider):
    """Passes everything through, but holds ``invalidate`` until ``n`` callers have taken a token."""

    def __init__(self, inner: TokenProvider) -> None:
        self.inner = inner
        self.source = inner.source
        self._lock = threading.Lock()
        self._taken = 0
        self._target = 0
        self._all_in = threading.Event()
        self._all_in.set()

    def gather(self, n: int) -> None:
        with self._lock:
            self._taken = 0
            self._target = n
            self._all_in.clear()

    def get_token(self) -> Token:
        token = self.inner.get_token()
        with self._lock:
            self._taken += 1
            if self._taken >= self._target:
                self._all_in.set()
        return token

    def invalidate(self, token: Token | None = None) -> None:
        assert self._all_in.wait(30), "not every sender took a token"
        self.inner.invalidate(token)

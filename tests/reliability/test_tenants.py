"""50 tenants sending at once, from threads and from asyncio tasks, while random tenants' tokens are rotated or
revoked: every message is delivered exactly once with its own tenant's token (the sandbox records which
business's token sent each message, and every request it saw: no crossing, not even on a refused request), a
tenant revoked and not rotated raises TenantDisconnected while the others keep sending, and a rotation costs
the rotated tenant one refetch and nobody else anything.

The tokens live in a real store: files (one per tenant), and OpenBao (one KV v2 secret per tenant under a
folder, read by one client with one Vault token whose uses OpenBao counts, so the store itself confirms the
reads the caches report).

Deterministic: which tenants are rotated or revoked, and after how many completed sends, comes from a fixed
seed; the assertions hold whatever the interleaving of the sends in flight.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sender
from sender.sandbox import Business, Sandbox
from tests.contract import canary
from tests.reliability.conftest import (
    PATH_PREFIX,
    TO,
    TOKEN_ENV,
    TOKEN_USES,
    Counted,
    Outcome,
    arun_stream,
    assert_clean_errors,
    cache_policy,
    run_stream,
)
from tests.servers import wait_until
from tests.servers.openbao import OpenBaoServer
from tokenstore import TenantProviders, fingerprint_of
from tokenstore.backends.file import FileBackend

TENANTS = 50
PER_TENANT = 20
SEED = 15
#: (kind, how many tenants): rotated with the old token revoked at once, rotated with the old one left
#: valid, revoked and never rotated
PLAN = (("rotate_revoke", 6), ("rotate_keep", 3), ("revoke", 4))
_MESSAGES = re.compile(r"/v\d+\.\d+/(\d+)/messages")


@dataclass
class Fleet:
    """50 customer businesses in the sandbox, one number each, each token in the store under its WABA id."""

    sandbox: Sandbox
    businesses: dict[str, Business]
    #: writes a tenant's token to the store, as an operator or the rotation job would (not through the cache)
    write: Callable[[str, str], None]
    #: the ``tenants.token`` section naming the store, with ``{tenant}`` in the secret's name
    token_section: dict[str, Any]
    #: how many requests the store itself has answered for the senders (None: the store cannot count)
    store_requests: Callable[[], int] | None = None
    #: every secret value (tokens are canaries; the store's own credential too)
    issued: list[str] = field(default_factory=list)
    #: tenant -> what happened to it
    fate: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {
            "whatsapp": {"base_url": self.sandbox.url, "api_version": "v26.0", "timeout": 10},
            "tenants": {
                "token": {**self.token_section, "cache": {"ttl": 300, "refresh_ahead": 0, "jitter": 0}},
                "numbers": {b.phone_number_id: t for t, b in self.businesses.items()},
            },
        }

    def texts(self) -> list[str]:
        """Round robin over the tenants: ``<tenant>:<i>``."""
        return [f"{tenant}:{i}" for i in range(PER_TENANT) for tenant in self.businesses]

    def actions(self, workers: int) -> dict[int, Callable[[], object]]:
        """The plan, at fixed points of the stream (after k completed sends), on tenants chosen by the seed."""
        rng = random.Random(SEED)
        chosen = rng.sample(sorted(self.businesses), sum(n for _, n in PLAN))
        kinds = [kind for kind, n in PLAN for _ in range(n)]
        rng.shuffle(kinds)
        total = TENANTS * PER_TENANT
        step = (total - 4 * workers) // (len(chosen) + 1)
        plan: dict[int, Callable[[], object]] = {}
        for i, (tenant, kind) in enumerate(zip(chosen, kinds, strict=True)):
            self.fate[tenant] = kind
            plan[step * (i + 1)] = self._action(tenant, kind)
        return plan

    def _action(self, tenant: str, kind: str) -> Callable[[], object]:
        def act() -> None:
            if kind == "revoke":
                assert self.sandbox.revoke_business_token(tenant) == 1
                return
            # Meta's rotation, in its order: a new token, into the store, and only then the old one revoked (a
            # send refused in between finds the new token in the store)
            old = self.sandbox.business(tenant).token or ""
            new = self.sandbox.rotate_business_token(tenant, value=canary())
            self.issued.append(new)
            self.write(tenant, new)
            if kind == "rotate_revoke":
                assert self.sandbox.revoke_token(old)

        return act


def _businesses(sandbox: Sandbox) -> dict[str, Business]:
    businesses = {}
    for i in range(TENANTS):
        business = sandbox.add_business(name=f"Customer {i:02d}", token=canary())
        businesses[business.waba_id] = business
    return businesses


def _file_fleet(sandbox: Sandbox, tmp_path: Path) -> Fleet:
    folder = tmp_path / "tenants"
    folder.mkdir()

    def write(tenant: str, value: str) -> None:
        FileBackend(folder / tenant).put_token(value)

    section = {"backend": "file", "file": {"path": str(folder / "{tenant}")}}
    return Fleet(sandbox=sandbox, businesses=_businesses(sandbox), write=write, token_section=section)


def _vault_fleet(sandbox: Sandbox, bao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    admin = bao.client()
    vault_token = admin.auth.token.create(
        id=canary("VT"), policies=["reliability-sender"], ttl="2h", num_uses=TOKEN_USES
    )["auth"]["client_token"]
    monkeypatch.setenv(TOKEN_ENV, vault_token)
    folder = f"{PATH_PREFIX}/tenants-{uuid.uuid4().hex[:8]}"

    def write(tenant: str, value: str) -> None:
        admin.secrets.kv.v2.create_or_update_secret(path=f"{folder}/{tenant}", secret={"access_token": value})

    def store_requests() -> int:
        return TOKEN_USES - int(admin.auth.token.lookup(vault_token)["data"]["num_uses"])

    section = {
        "backend": "vault",
        "vault": {
            "url": bao.url,
            "path": f"{folder}/{{tenant}}",
            "auth": {"method": "token", "token": {"env": TOKEN_ENV}},
        },
    }
    fleet = Fleet(
        sandbox=sandbox,
        businesses=_businesses(sandbox),
        write=write,
        token_section=section,
        store_requests=store_requests,
    )
    fleet.issued.append(vault_token)
    return fleet


@pytest.fixture(params=["file", pytest.param("vault", marks=pytest.mark.backend("vault"))])
def fleet(
    request: pytest.FixtureRequest, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet]:
    if request.param == "file":
        result = _file_fleet(sandbox, tmp_path)
    else:
        result = _vault_fleet(sandbox, request.getfixturevalue("bao"), monkeypatch)
    for tenant, business in result.businesses.items():
        assert business.token is not None
        result.write(tenant, business.token)
        result.issued.append(business.token)
    yield result


def _tenant(text: str) -> str:
    return text.split(":", 1)[0]


def check(fleet: Fleet, outcomes: list[Outcome], reads: dict[str, int], *, in_flight: int) -> None:
    sandbox = fleet.sandbox
    counts = sandbox.received_counts()
    tokens = {t: {r.fingerprint for r in sandbox.business_tokens(t)} for t in fleet.businesses}
    assert len(outcomes) == TENANTS * PER_TENANT
    # each message: delivered exactly once with its own tenant's token, or refused as its tenant disconnected
    for outcome in outcomes:
        tenant = _tenant(outcome.text)
        if outcome.ok:
            assert outcome.result is not None
            assert counts[outcome.text] == 1, f"{outcome.text} delivered {counts[outcome.text]} times"
            assert outcome.result.token_fingerprint in tokens[tenant]
        else:
            error = outcome.error
            assert isinstance(error, sender.TenantDisconnected), repr(error)
            assert error.tenant == tenant and fleet.fate.get(tenant) == "revoke", (tenant, fleet.fate.get(tenant))
            assert counts[outcome.text] == 0
    assert sum(counts.values()) == sum(o.ok for o in outcomes)  # nothing else arrived
    # no crossing at the wire: every request to a number carried a token of the business owning it
    for record in sandbox.requests:
        match = _MESSAGES.match(record.path)
        assert match is not None and record.route == "messages"
        owner = sandbox.business_for_number(match.group(1))
        assert owner is not None and record.token_fingerprint in tokens[owner.waba_id]
        assert record.status == 200 or record.code == 190, record  # never 200/10: no token crossed
    for message in sandbox.received:
        assert message.waba_id == _tenant(message.text or "")
    # the others kept sending; the revoked ones stopped, and fast (no request per message once disconnected)
    by_tenant: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_tenant.setdefault(_tenant(outcome.text), []).append(outcome)
    for tenant, own in by_tenant.items():
        fate = fleet.fate.get(tenant)
        if fate != "revoke":
            assert all(o.ok for o in own), (tenant, fate, [repr(o.error) for o in own if not o.ok][:2])
            continue
        failed = [o for o in own if not o.ok]
        assert failed, f"revoked tenant {tenant} never noticed"
        assert own[-1].error is not None  # its last message came long after the revocation
        refused = [r for r in sandbox.requests if r.status != 200 and tenant in _owners(sandbox, r.path)]
        assert 1 <= len(refused) <= in_flight, (tenant, len(refused))
    # store reads: one per tenant, plus one refetch for a rotated-and-revoked tenant; bounded for a revoked one
    for tenant, count in reads.items():
        fate = fleet.fate.get(tenant)
        if fate == "rotate_revoke":
            assert count == 2, (tenant, fate, count)
        elif fate == "revoke":
            assert 2 <= count <= 1 + in_flight, (tenant, fate, count)
        else:
            assert count == 1, (tenant, fate, count)
    if fleet.store_requests is not None:  # the store's own count agrees with the caches': no hidden reads
        assert fleet.store_requests() == sum(reads.values())
    assert_clean_errors(outcomes, fleet.issued)


def _owners(sandbox: Sandbox, path: str) -> set[str]:
    match = _MESSAGES.match(path)
    owner = sandbox.business_for_number(match.group(1)) if match else None
    return {owner.waba_id} if owner else set()


def _reads(senders: sender.TenantSender | sender.AsyncTenantSender, fleet: Fleet) -> dict[str, int]:
    return {t: senders.tenants.provider(t).stats.fetches for t in fleet.businesses}


def test_fifty_tenants_from_threads(fleet: Fleet) -> None:
    workers = 8
    plan = fleet.actions(workers)
    with sender.TenantSender.from_config(fleet.config(), recheck_interval=3600) as senders:
        numbers = {t: b.phone_number_id for t, b in fleet.businesses.items()}
        outcomes = run_stream(
            lambda text: senders.for_number(numbers[_tenant(text)]).send_text(TO, text),
            fleet.texts(),
            workers=workers,
            after=plan,
        )
        reads = _reads(senders, fleet)
        assert senders.disconnected() == sorted(t for t, f in fleet.fate.items() if f == "revoke")
        assert senders.cached_senders() == TENANTS
    check(fleet, outcomes, reads, in_flight=workers)


async def test_fifty_tenants_from_tasks(fleet: Fleet) -> None:
    concurrency = 16
    plan = fleet.actions(concurrency)
    async with sender.AsyncTenantSender.from_config(fleet.config(), recheck_interval=3600) as senders:
        numbers = {t: b.phone_number_id for t, b in fleet.businesses.items()}

        async def send(text: str) -> sender.SendResult:
            return await senders.for_number(numbers[_tenant(text)]).send_text(TO, text)

        outcomes = await arun_stream(send, fleet.texts(), concurrency=concurrency, after=plan)
        reads = _reads(senders, fleet)
        assert senders.disconnected() == sorted(t for t, f in fleet.fate.items() if f == "revoke")
    check(fleet, outcomes, reads, in_flight=concurrency)


# -- a cold start across many tenants ---------------------------------------------------------------------------
COLD_TENANTS = 100
COLD_SENDS = 1000
#: threads for the sync variant: one per tenant, so every tenant's first read is held with its thread waiting.
#: (On httpx/httpcore's sync pool, 100 threads - a plain Sender too - saw "[Errno 9] Bad file descriptor" now
#: and then with DEBUG logging; the senders' urllib3 pool does not.)
COLD_THREADS = COLD_TENANTS


class _ColdStore:
    """Each tenant's store calls counted; held (while ``holding``) until :meth:`release_when_waiting`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counted: dict[str, Counted] = {}
        self.holding = True
        self._lock = threading.Lock()

    def factory(self, tenant: str) -> Counted:
        with self._lock:
            counted = Counted(FileBackend(self.folder / tenant))
            if self.holding:
                counted.hold()
            self.counted[tenant] = counted
            return counted

    def release_when_waiting(self, leaders: int) -> None:
        """Release the store once ``leaders`` tenants' first reads are held (every other send is waiting on a
        tenant's cache behind them, or has not started yet)."""
        wait_until(lambda: sum(c.waiting for c in list(self.counted.values())) == leaders, timeout=20)
        with self._lock:
            self.holding = False
            for counted in self.counted.values():
                counted.release()


def _cold_fleet(sandbox: Sandbox, tmp_path: Path) -> tuple[dict[str, Business], _ColdStore, TenantProviders]:
    """100 businesses, tokens in files."""
    folder = tmp_path / "cold"
    folder.mkdir()
    businesses = {}
    for i in range(COLD_TENANTS):
        business = sandbox.add_business(name=f"Cold {i:03d}", token=canary())
        FileBackend(folder / business.waba_id).put_token(business.token or "")
        businesses[business.waba_id] = business
    store = _ColdStore(folder)
    numbers = {b.phone_number_id: t for t, b in businesses.items()}
    return businesses, store, TenantProviders(store.factory, numbers=numbers, policy=cache_policy(ttl=300))


def _cold_check(
    sandbox: Sandbox, businesses: dict[str, Business], counted: dict[str, Counted], results: list[Any]
) -> None:
    assert {t: c.calls for t, c in counted.items()} == dict.fromkeys(businesses, 1)  # exactly 100 store reads
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, [repr(e) for e in errors[:3]]
    counts = sandbox.received_counts()
    assert len(counts) == COLD_SENDS and set(counts.values()) == {1}
    for message in sandbox.received:
        assert message.waba_id == (message.text or "").split(":")[0]
        assert message.token_fingerprint == fingerprint_of(businesses[message.waba_id].token or "")


def _cold_texts(businesses: dict[str, Business]) -> list[tuple[str, str]]:
    tenants = list(businesses)
    return [
        (businesses[tenants[i % COLD_TENANTS]].phone_number_id, f"{tenants[i % COLD_TENANTS]}:{i}")
        for i in range(COLD_SENDS)
    ]


async def test_thousand_cold_async_sends_across_a_hundred_tenants_make_a_hundred_store_reads(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    businesses, store, providers = _cold_fleet(sandbox, tmp_path)
    async with sender.AsyncTenantSender(providers, base_url=sandbox.url, timeout=30.0, owns_tenants=True) as senders:
        tasks = [
            asyncio.create_task(senders.for_number(number).send_text(TO, text))
            for number, text in _cold_texts(businesses)
        ]
        await asyncio.to_thread(store.release_when_waiting, COLD_TENANTS)
        results = await asyncio.gather(*tasks, return_exceptions=True)
    _cold_check(sandbox, businesses, store.counted, results)


def test_thousand_cold_sends_from_threads_across_a_hundred_tenants_make_a_hundred_store_reads(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    businesses, store, providers = _cold_fleet(sandbox, tmp_path)
    with sender.TenantSender(providers, base_url=sandbox.url, timeout=30.0, owns_tenants=True) as senders:

        def send(item: tuple[str, str]) -> Any:
            try:
                return senders.for_number(item[0]).send_text(TO, item[1])
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(max_workers=COLD_THREADS) as pool:
            futures = [pool.submit(send, item) for item in _cold_texts(businesses)]
            store.release_when_waiting(COLD_THREADS)
            results = [f.result(timeout=60) for f in futures]
    _cold_check(sandbox, businesses, store.counted, results)

"""TenantSender / AsyncTenantSender against the sandbox's many businesses: routing by number with each tenant's
own token, one shared connection pool, the per-number sender cache, a number with no tenant refused before
any request, a 190 touching one tenant only, TenantDisconnected, and the config story."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sender
from sender.sandbox import Business, Sandbox
from tests.contract import CANARY_MARK, Counting, canary
from tests.sender.conftest import TO
from tests.servers import wait_until
from tokenstore import CachePolicy, ConfigError, TenantProviders, UnknownTenant, fingerprint_of
from tokenstore.backends.file import FileBackend


@dataclasses.dataclass
class Tenants:
    """Three customer businesses in the sandbox, each with its token in its own file ``<dir>/<waba id>``."""

    sandbox: Sandbox
    folder: Path
    businesses: list[Business]
    counted: dict[str, Counting] = dataclasses.field(default_factory=dict)

    def write(self, business: Business, value: str) -> None:
        FileBackend(self.folder / business.waba_id).put_token(value)

    @property
    def numbers(self) -> dict[str, str]:
        return {n: b.waba_id for b in self.businesses for n in b.phone_number_ids}

    def providers(self, **options: Any) -> TenantProviders:
        def factory(tenant: str) -> Counting:
            self.counted[tenant] = Counting(FileBackend(self.folder / tenant))
            return self.counted[tenant]

        policy = CachePolicy(ttl=300, refresh_ahead=0, jitter=0)
        return TenantProviders(factory, numbers=options.pop("numbers", self.numbers), policy=policy, **options)

    def config(self, **tenants: Any) -> dict[str, Any]:
        return {
            "whatsapp": {"base_url": self.sandbox.url, "api_version": "v26.0", "retry": False},
            "tenants": {
                "token": {
                    "backend": "file",
                    "file": {"path": str(self.folder / "{tenant}")},
                    "cache": {"ttl": 300, "refresh_ahead": 0},
                },
                "numbers": self.numbers,
                **tenants,
            },
        }

    def open_connections(self) -> int:
        server = self.sandbox._server
        assert server is not None
        with server.connections_lock:
            return len(server.connections)


@pytest.fixture
def tenants(sandbox: Sandbox, tmp_path: Path) -> Tenants:
    folder = tmp_path / "tenants"
    folder.mkdir()
    businesses = [
        sandbox.add_business(name=f"Customer {i}", numbers=2 if i == 0 else 1, token=canary()) for i in range(3)
    ]
    result = Tenants(sandbox=sandbox, folder=folder, businesses=businesses)
    for business in businesses:
        assert business.token is not None
        result.write(business, business.token)
    return result


def make(tenants: Tenants, **options: Any) -> sender.TenantSender:
    return sender.TenantSender(tenants.providers(), base_url=tenants.sandbox.url, owns_tenants=True, **options)


def make_async(tenants: Tenants, **options: Any) -> sender.AsyncTenantSender:
    return sender.AsyncTenantSender(tenants.providers(), base_url=tenants.sandbox.url, owns_tenants=True, **options)


def assert_no_crossing(tenants: Tenants) -> None:
    """Every message the sandbox accepted came from a number of the business whose token sent it."""
    for message in tenants.sandbox.received:
        owner = tenants.sandbox.business_for_number(message.phone_number_id)
        assert owner is not None and message.waba_id == owner.waba_id
        assert message.token_fingerprint in {r.fingerprint for r in tenants.sandbox.business_tokens(owner.waba_id)}


# -- routing and isolation --------------------------------------------------------------------------------------
def test_each_number_sends_with_its_own_tenants_token(tenants: Tenants) -> None:
    with make(tenants) as senders:
        for business in tenants.businesses:
            for number in business.phone_number_ids:
                client = senders.for_number(number)
                assert isinstance(client, sender.Sender) and client.tenant == business.waba_id  # type: ignore[attr-defined]
                result = client.send_text(TO, f"from {number}")
                assert result.token_fingerprint == fingerprint_of(business.token or "")
        assert senders.tenant_for_number(tenants.businesses[1].phone_number_id) == tenants.businesses[1].waba_id
    received = {m.phone_number_id: m for m in tenants.sandbox.received}
    assert set(received) == set(tenants.numbers)
    assert_no_crossing(tenants)
    assert CANARY_MARK not in repr(senders) + repr(client)


def test_a_number_with_no_tenant_is_refused_before_any_request(tenants: Tenants) -> None:
    with make(tenants) as senders:
        with pytest.raises(UnknownTenant) as caught:
            senders.for_number("999000999000999")
        assert "999000999000999" in str(caught.value)
        # a number the sandbox knows, but the tenants' map does not: still no fallback to anyone's token
        other = tenants.sandbox.add_business()
        with pytest.raises(UnknownTenant):
            senders.for_number(other.phone_number_id)
    assert tenants.sandbox.requests == []
    assert all(c.calls == 0 for c in tenants.counted.values())


def test_a_wrong_map_entry_is_caught_by_graph_and_nothing_crosses(tenants: Tenants) -> None:
    a, b, _ = tenants.businesses
    numbers = {**tenants.numbers, b.phone_number_id: a.waba_id}  # an operator's mistake: B's number under A
    with sender.TenantSender(tenants.providers(numbers=numbers), base_url=tenants.sandbox.url) as senders:
        with pytest.raises(sender.PermissionDenied) as caught:
            senders.for_number(b.phone_number_id).send_text(TO, "crossed")
    assert caught.value.code == 200 and not isinstance(caught.value, sender.AuthenticationError)
    assert tenants.sandbox.received == []


# -- one pool, cached senders -----------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["urllib3", "httpx"])
def test_every_sender_shares_one_connection_pool(tenants: Tenants, transport: str) -> None:
    with make(tenants, sync_transport=transport) as senders:
        assert senders.transport_name == transport
        pool = {id(senders.for_number(n).pool) for n in tenants.numbers}
        for number in tenants.numbers:
            senders.for_number(number).send_text(TO, f"pooled {number}")
        assert len(pool) == 1 and tenants.open_connections() == 1  # 4 numbers of 3 tenants: one connection
        assert senders.cached_senders() == len(tenants.numbers)
        before = tenants.open_connections()
    if transport == "httpx":
        wait_until(lambda: tenants.open_connections() == 0, timeout=5)  # closing the TenantSender closed the pool
    # for comparison: one Sender per number opens one pool (and connection) each
    plain = [
        sender.Sender(tenants.counted[t], phone_number_id=n, base_url=tenants.sandbox.url, sync_transport=transport)
        for n, t in tenants.numbers.items()
    ]
    for client in plain:
        client.send_text(TO, f"separate {client.phone_number_id}")
    assert tenants.open_connections() - (before if transport == "urllib3" else 0) == len(plain)
    for client in plain:
        client.close()


def test_senders_are_cached_and_closing_one_leaves_the_pool_open(tenants: Tenants) -> None:
    a, b, _ = tenants.businesses
    with make(tenants, max_senders=2) as senders:
        first = senders.for_number(a.phone_number_id)
        assert senders.for_number(a.phone_number_id) is first
        first.send_text(TO, "one")
        first.close()
        with pytest.raises(RuntimeError):
            first.send_text(TO, "closed")
        again = senders.for_number(a.phone_number_id)
        assert again is not first
        again.send_text(TO, "two")
        senders.for_number(b.phone_number_id).send_text(TO, "three")
        assert tenants.open_connections() == 1  # closing a per-number sender did not close the shared pool
        senders.for_number(a.phone_number_ids[1])
        assert senders.cached_senders() == 2  # bounded: the least recently used left
        held = senders.for_number(b.phone_number_id)
    with pytest.raises(RuntimeError):
        senders.for_number(a.phone_number_id)
    with pytest.raises(RuntimeError):
        held.send_text(TO, "after close")
    assert tenants.sandbox.received_counts() == {"one": 1, "two": 1, "three": 1}


def test_bad_options_fail_at_construction(tenants: Tenants) -> None:
    providers = tenants.providers()
    with pytest.raises(ValueError, match="base_url"):
        sender.TenantSender(providers, base_url="http://graph.example.com")
    with pytest.raises(ValueError, match="appsecret_proof"):
        sender.TenantSender(providers, base_url=tenants.sandbox.url, appsecret_proof=True)
    with pytest.raises(TypeError):
        sender.TenantSender({"x": "y"}, base_url=tenants.sandbox.url)  # type: ignore[arg-type]


# -- rejected tokens: one tenant only ---------------------------------------------------------------------------
def test_a_190_refetches_that_tenant_only(tenants: Tenants) -> None:
    a, b, c = tenants.businesses
    with make(tenants) as senders:
        for business in tenants.businesses:
            senders.for_number(business.phone_number_id).send_text(TO, f"warm {business.waba_id}")
        reads = {t: counted.calls for t, counted in tenants.counted.items()}
        assert reads == {a.waba_id: 1, b.waba_id: 1, c.waba_id: 1}
        old = a.token or ""
        new = tenants.sandbox.rotate_business_token(a.waba_id, revoke_old=True, value=canary())
        tenants.write(a, new)
        result = senders.for_number(a.phone_number_id).send_text(TO, "after rotation")
        assert result.token_fingerprint == fingerprint_of(new) and result.attempts == 1
        for business in (b, c):
            senders.for_number(business.phone_number_id).send_text(TO, f"still {business.waba_id}")
    assert {t: counted.calls for t, counted in tenants.counted.items()} == {a.waba_id: 2, b.waba_id: 1, c.waba_id: 1}
    rejected = [r for r in tenants.sandbox.requests if r.status != 200]
    assert [(r.code, r.token_fingerprint) for r in rejected] == [(190, fingerprint_of(old))]
    assert_no_crossing(tenants)


def test_revoked_and_not_rotated_is_tenant_disconnected(tenants: Tenants, caplog: pytest.LogCaptureFixture) -> None:
    a, b, _ = tenants.businesses
    tenants.sandbox.revoke_business_token(a.waba_id)
    with make(tenants) as senders:
        with pytest.raises(sender.TenantDisconnected) as caught:
            senders.for_number(a.phone_number_id).send_text(TO, "to a dead tenant")
        error = caught.value
        assert isinstance(error, sender.AuthenticationError) and error.tenant == a.waba_id
        assert error.code == 190 and error.http_status == 401 and not error.retryable
        assert a.waba_id in str(error) and "reconnect" in str(error)
        senders.for_number(b.phone_number_id).send_text(TO, "b keeps sending")
    assert tenants.counted[a.waba_id].calls == 2  # the first fetch and one refetch: no loop
    assert tenants.sandbox.received_counts() == {"b keeps sending": 1}
    shown = str(error) + repr(error) + caplog.text
    assert CANARY_MARK not in shown
    import pickle

    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, sender.TenantDisconnected) and copy.tenant == a.waba_id


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_tenant_offboarded_elsewhere_is_unknown_tenant_not_its_stale_token(tenants: Tenants, mode: str) -> None:
    """Another replica offboarded A (its secret deleted, its token revoked at Meta) while this one still had A's
    token cached: the 190 invalidates, the store says the secret is gone, and that is the error (UnknownTenant),
    not the cached token handed back as stale (which made it TenantDisconnected). Nothing is resent."""
    a, b, _ = tenants.businesses
    if mode == "sync":
        with make(tenants) as senders:
            senders.for_number(a.phone_number_id).send_text(TO, "a before")
            (tenants.folder / a.waba_id).unlink()
            tenants.sandbox.revoke_business_token(a.waba_id)
            with pytest.raises(UnknownTenant) as caught:
                senders.for_number(a.phone_number_id).send_text(TO, "a after")
            senders.for_number(b.phone_number_id).send_text(TO, "b keeps sending")
            stale = senders.tenants.provider(a.waba_id).stats.stale_served
    else:
        async with make_async(tenants) as asenders:
            await asenders.for_number(a.phone_number_id).send_text(TO, "a before")
            (tenants.folder / a.waba_id).unlink()
            tenants.sandbox.revoke_business_token(a.waba_id)
            with pytest.raises(UnknownTenant) as caught:
                await asenders.for_number(a.phone_number_id).send_text(TO, "a after")
            await asenders.for_number(b.phone_number_id).send_text(TO, "b keeps sending")
            stale = asenders.tenants.provider(a.waba_id).stats.stale_served
    assert caught.value.tenant == a.waba_id and stale == 0
    assert CANARY_MARK not in str(caught.value)
    rejected = [r for r in tenants.sandbox.requests if r.status != 200]
    assert len(rejected) == 1  # the one send with the revoked token; no resend
    assert tenants.sandbox.received_counts() == {"a before": 1, "b keeps sending": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_disconnected_tenant_fails_fast_until_the_store_holds_a_new_token(tenants: Tenants) -> None:
    a, b, _ = tenants.businesses
    clock = Clock()
    tenants.sandbox.revoke_business_token(a.waba_id)
    with make(tenants, clock=clock, recheck_interval=30) as senders:
        with pytest.raises(sender.TenantDisconnected):
            senders.for_number(a.phone_number_id).send_text(TO, "first")
        assert senders.disconnected() == [a.waba_id]
        requests, reads = len(tenants.sandbox.requests), tenants.counted[a.waba_id].calls
        assert (requests, reads) == (1, 2)
        for number in a.phone_number_ids:  # both of A's numbers: the memo is per tenant
            with pytest.raises(sender.TenantDisconnected) as caught:
                senders.for_number(number).send_text(TO, "again")
            assert caught.value.tenant == a.waba_id and "nothing was sent" in str(caught.value)
        assert (len(tenants.sandbox.requests), tenants.counted[a.waba_id].calls) == (1, 2)  # no Graph call, no read
        # the customer reconnects: a new token in the store; picked up at the next recheck
        new = tenants.sandbox.rotate_business_token(a.waba_id, value=canary())
        tenants.write(a, new)
        clock.now += 29
        with pytest.raises(sender.TenantDisconnected):
            senders.for_number(a.phone_number_id).send_text(TO, "not yet")
        clock.now += 1
        result = senders.for_number(a.phone_number_id).send_text(TO, "reconnected")
        assert result.token_fingerprint == fingerprint_of(new)
        assert senders.disconnected() == [] and tenants.counted[a.waba_id].calls == 3
        senders.for_number(b.phone_number_id).send_text(TO, "b")
    assert tenants.sandbox.received_counts() == {"reconnected": 1, "b": 1}


def test_invalidating_a_disconnected_tenant_picks_up_its_new_token_at_once(tenants: Tenants) -> None:
    a = tenants.businesses[0]
    tenants.sandbox.revoke_business_token(a.waba_id)
    with make(tenants, recheck_interval=3600) as senders:
        with pytest.raises(sender.TenantDisconnected):
            senders.for_number(a.phone_number_id).send_text(TO, "dead")
        new = tenants.sandbox.rotate_business_token(a.waba_id, value=canary())
        tenants.write(a, new)
        senders.tenants.invalidate(a.waba_id)  # e.g. the onboarding flow, after writing the customer's new token
        assert senders.for_number(a.phone_number_id).send_text(TO, "back").token_fingerprint == fingerprint_of(new)


# -- asyncio ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["native", "aiohttp", "httpx"])
async def test_async_routes_shares_one_pool_and_disconnects_one_tenant(tenants: Tenants, transport: str) -> None:
    a, b, c = tenants.businesses
    tenants.sandbox.revoke_business_token(c.waba_id)
    async with make_async(tenants, async_transport=transport) as senders:
        assert senders.transport_name == transport
        for number, tenant in tenants.numbers.items():
            if tenant == c.waba_id:
                continue
            client = senders.for_number(number)
            assert isinstance(client, sender.AsyncSender) and client.transport_name == transport
            await client.send_text(TO, f"async {number}")
        with pytest.raises(sender.TenantDisconnected) as caught:
            await senders.for_number(c.phone_number_id).send_text(TO, "dead")
        assert caught.value.tenant == c.waba_id
        with pytest.raises(UnknownTenant):
            senders.for_number("123")
        with pytest.raises(UnknownTenant):
            await senders.afor_number("123")
        assert await senders.afor_number(a.phone_number_id) is senders.for_number(a.phone_number_id)
        assert tenants.open_connections() == 1
    wait_until(lambda: tenants.open_connections() == 0, timeout=5)
    assert tenants.sandbox.received_counts() == {f"async {n}": 1 for n, t in tenants.numbers.items() if t != c.waba_id}
    assert_no_crossing(tenants)


# -- config -----------------------------------------------------------------------------------------------------
def test_from_config(tenants: Tenants, tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tenants.config()))
    with sender.TenantSender.from_config(str(path)) as senders:
        for number in tenants.numbers:
            senders.for_number(number).send_text(TO, f"configured {number}")
        assert senders.tenants.tenants() == sorted(b.waba_id for b in tenants.businesses)
    assert_no_crossing(tenants)
    assert len(tenants.sandbox.received) == len(tenants.numbers)


async def test_async_from_config(tenants: Tenants) -> None:
    async with sender.AsyncTenantSender.from_config(tenants.config()) as senders:
        business = tenants.businesses[2]
        result = await senders.for_number(business.phone_number_id).send_text(TO, "async configured")
        assert result.token_fingerprint == fingerprint_of(business.token or "")


def test_config_errors_name_the_file_and_field(tenants: Tenants, tmp_path: Path) -> None:
    import yaml

    def error_for(config: dict[str, Any]) -> ConfigError:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError) as caught:
            sender.TenantSender.from_config(str(path))
        assert str(path) in str(caught.value)
        return caught.value

    no_tenants = tenants.config()
    del no_tenants["tenants"]
    assert error_for(no_tenants).field == "tenants"
    proof = tenants.config()
    proof["whatsapp"]["appsecret_proof"] = True
    assert error_for(proof).field == "whatsapp.appsecret_proof"
    no_placeholder = tenants.config()
    no_placeholder["tenants"]["token"]["file"]["path"] = str(tenants.folder / "one-token")
    assert "{tenant}" in str(error_for(no_placeholder))
    bad_map = tenants.config(numbers={"not-a-number": "x"})
    assert "numbers" in str(error_for(bad_map))
    bad_url = tenants.config()
    bad_url["whatsapp"]["base_url"] = "http://graph.example.com"
    assert error_for(bad_url).field == "whatsapp.base_url"


@pytest.fixture(autouse=True)
def _no_canary_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    assert CANARY_MARK not in caplog.text

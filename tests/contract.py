"""The provider contract: every backend's tests subclass :class:`ProviderContract` and so run all of this.

A subclass provides one fixture, ``target``, returning a :class:`ContractTarget` that points at a real store
(a local server, a file, an environment variable) whose secret currently holds ``target.initial``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import tokenstore
from tokenstore import CachePolicy, CachingProvider, Token, TokenProvider

CANARY_MARK = "CANARY"


def canary(prefix: str = "EAAG") -> str:
    """A token-shaped random value that must never appear anywhere but on the wire.

    Every canary contains ``CANARY``: the session-wide log scan in conftest.py flags any log record, at any
    level and from any logger, that contains it.
    """
    return prefix + CANARY_MARK + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")


@dataclass
class ContractTarget:
    #: builds a fresh raw (uncached) provider for the secret
    make: Callable[[], TokenProvider]
    #: the value the secret holds when the test starts
    initial: str
    #: writes a new value to the store out of band (another party rotating it); None if impossible
    write_out_of_band: Callable[[str], None] | None = None
    #: builds a provider for a secret that does not exist; None to skip that check
    make_missing: Callable[[], TokenProvider] | None = None
    #: whether put_token must work
    writable: bool = False
    #: extra values never to be seen in logs or messages (credentials of the store)
    secrets: list[str] = field(default_factory=list)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Counting(TokenProvider):
    """Wraps a provider and counts backend calls (sync and async)."""

    def __init__(self, inner: TokenProvider) -> None:
        self.inner = inner
        self.source = inner.source
        self.calls = 0
        self._lock = threading.Lock()

    def get_token(self) -> Token:
        with self._lock:
            self.calls += 1
        return self.inner.get_token()

    async def aget_token(self) -> Token:
        with self._lock:
            self.calls += 1
        return await self.inner.aget_token()

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


def assert_clean(text: str, *values: str) -> None:
    for value in values:
        assert value not in text, "a secret value leaked into captured text"


class ProviderContract:
    """Behaviour every backend must show. Subclasses define the ``target`` fixture."""

    @pytest.fixture
    def target(self) -> ContractTarget:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _debug_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)

    def _leak_check(self, target: ContractTarget, caplog: pytest.LogCaptureFixture, *extra: str) -> None:
        text = "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records)
        assert_clean(text, target.initial, *target.secrets, *extra)

    def test_reads_current_value(self, target: ContractTarget, caplog: pytest.LogCaptureFixture) -> None:
        with target.make() as provider:
            token = provider.get_token()
            assert isinstance(token, Token)
            assert token.reveal() == target.initial
            assert token.source == provider.source
            for shown in (str(token), repr(token), f"{token}", repr(provider), provider.source):
                assert_clean(shown, target.initial)
            assert token.fingerprint == tokenstore.fingerprint_of(target.initial)
        self._leak_check(target, caplog)

    async def test_async_reads_current_value(self, target: ContractTarget) -> None:
        provider = target.make()
        try:
            token = await provider.aget_token()
            assert token.reveal() == target.initial
        finally:
            await provider.aclose()

    def test_raw_provider_sees_out_of_band_change(self, target: ContractTarget) -> None:
        if target.write_out_of_band is None:
            pytest.skip("n/a: this store cannot be written out of band")
        new = canary()
        with target.make() as provider:
            assert provider.get_token().reveal() == target.initial
            target.write_out_of_band(new)
            provider.invalidate()
            assert provider.get_token().reveal() == new

    def test_cached_rotation_within_ttl_and_after_invalidate(
        self, target: ContractTarget, caplog: pytest.LogCaptureFixture
    ) -> None:
        if target.write_out_of_band is None:
            pytest.skip("n/a: this store cannot be written out of band")
        clock = FakeClock()
        raw = Counting(target.make())
        cached = CachingProvider(raw, CachePolicy(ttl=10, refresh_ahead=0, jitter=0), clock=clock)
        with cached:
            first = cached.get_token()
            assert first.reveal() == target.initial
            second = canary()
            target.write_out_of_band(second)
            clock.advance(5)
            assert cached.get_token().reveal() == target.initial  # within the TTL: cached
            assert raw.calls == 1
            clock.advance(5.01)
            assert cached.get_token().reveal() == second  # TTL over: rotation picked up
            assert raw.calls == 2
            third = canary()
            target.write_out_of_band(third)
            cached.invalidate()
            assert cached.get_token().reveal() == third  # at once after invalidate()
            assert raw.calls == 3
        self._leak_check(target, caplog, second, third)

    def test_concurrent_misses_single_flight(self, target: ContractTarget) -> None:
        raw = Counting(target.make())
        cached = CachingProvider(raw, CachePolicy(ttl=60, refresh_ahead=0))
        results: list[str] = []
        barrier = threading.Barrier(16)

        def worker() -> None:
            barrier.wait()
            results.append(cached.get_token().reveal())

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cached.close()
        assert results == [target.initial] * 16
        assert raw.calls == 1

    async def test_concurrent_async_misses_single_flight(self, target: ContractTarget) -> None:
        raw = Counting(target.make())
        cached = CachingProvider(raw, CachePolicy(ttl=60, refresh_ahead=0))
        tokens = await asyncio.gather(*(cached.aget_token() for _ in range(200)))
        await cached.aclose()
        assert {t.reveal() for t in tokens} == {target.initial}
        assert raw.calls == 1

    def test_put_token(self, target: ContractTarget, caplog: pytest.LogCaptureFixture) -> None:
        new = canary()
        with target.make() as provider:
            if not target.writable:
                assert not provider.supports_write
                with pytest.raises(tokenstore.WriteNotSupported) as info:
                    provider.put_token(new)
                assert_clean(str(info.value), new)
                return
            assert provider.supports_write
            version = provider.put_token(new)
            assert version is None or isinstance(version, str)
            provider.invalidate()
            token = provider.get_token()
            assert token.reveal() == new
            if version is not None and token.version is not None:
                assert token.version == version
        with target.make() as fresh:
            assert fresh.get_token().reveal() == new
        self._leak_check(target, caplog, new)

    async def test_async_put_token(self, target: ContractTarget) -> None:
        if not target.writable:
            pytest.skip("n/a: read-only backend (checked by test_put_token)")
        new = canary()
        provider = target.make()
        try:
            await provider.aput_token(new)
            provider.invalidate()
            assert (await provider.aget_token()).reveal() == new
        finally:
            await provider.aclose()

    def test_missing_secret(self, target: ContractTarget, caplog: pytest.LogCaptureFixture) -> None:
        if target.make_missing is None:
            pytest.skip("n/a: no missing-secret variant for this store")
        with target.make_missing() as provider:
            with pytest.raises(tokenstore.SecretNotFound) as info:
                provider.get_token()
            message = str(info.value)
            assert provider.source.split(":", 1)[0] in message or provider.source in message
            assert_clean(message, target.initial, *target.secrets)
        self._leak_check(target, caplog)

    async def test_async_missing_secret(self, target: ContractTarget) -> None:
        if target.make_missing is None:
            pytest.skip("n/a: no missing-secret variant for this store")
        provider = target.make_missing()
        try:
            with pytest.raises(tokenstore.SecretNotFound):
                await provider.aget_token()
        finally:
            await provider.aclose()

    def test_close_is_idempotent(self, target: ContractTarget) -> None:
        provider = target.make()
        provider.get_token()
        provider.close()
        provider.close()

    def test_pickle_refused(self, target: ContractTarget) -> None:
        import pickle

        with target.make() as provider:
            token = provider.get_token()
        with pytest.raises(TypeError):
            pickle.dumps(token)


def run_coro(coro: Any) -> Any:
    return asyncio.run(coro)


# -- many tenants ---------------------------------------------------------------------------------------------
@dataclass
class TenantTarget:
    """A store ready for one secret per tenant: a template unique to the test, on a real local server."""

    #: builds the shared backend (the client every tenant shares); its own name option does not matter
    make: Callable[[], tokenstore.Backend]
    #: the option holding ``{tenant}`` and its pattern (unique per test, so listings are exact)
    template: tokenstore.TenantTemplate
    #: writes a tenant's secret out of band (onboarding, or another party rotating it)
    write: Callable[[str, str], None]
    #: writes many tenants' secrets at once (default: ``write`` one by one)
    write_many: Callable[[dict[str, str]], None] | None = None
    #: writes a secret by its full name (option value): decoys near the template that are no tenant's
    write_name: Callable[[str, str], None] | None = None
    #: full names the listing must not report as tenants (written with ``write_name``)
    decoys: list[str] = field(default_factory=list)
    #: whether put_token works
    writable: bool = False
    #: whether put_token creates a tenant's secret that does not exist yet (onboarding)
    onboard: bool = True
    #: how many store clients / logins / access tokens the backend made (must stay 1 for all tenants)
    clients: Callable[[tokenstore.Backend], int] | None = None
    #: a ``tenants:`` section for tenants_from_config (the config path, template stand-in included)
    config: Callable[[], dict[str, Any]] | None = None
    #: how many tenants the big listing test writes
    many: int = 1000
    #: extra values never to be seen in logs or messages (credentials of the store)
    secrets: list[str] = field(default_factory=list)

    def write_all(self, values: dict[str, str]) -> None:
        if self.write_many is not None:
            self.write_many(values)
        else:
            for tenant, value in values.items():
                self.write(tenant, value)


def _tenant_values(count: int, prefix: str = "t") -> dict[str, str]:
    return {f"{prefix}{i:04d}": canary() for i in range(count)}


class TenantContract:
    """One secret per tenant on every backend. Subclasses define the ``tenant_target`` fixture."""

    @pytest.fixture
    def tenant_target(self) -> TenantTarget:  # pragma: no cover - overridden
        raise NotImplementedError

    def providers(self, target: TenantTarget, **kwargs: Any) -> tokenstore.TenantProviders:
        return tokenstore.TenantProviders(target.make(), template=target.template, **kwargs)

    def test_tenants_read_their_own_secrets(
        self, tenant_target: TenantTarget, caplog: pytest.LogCaptureFixture
    ) -> None:
        values = _tenant_values(3)
        tenant_target.write_all(values)
        with self.providers(tenant_target) as tenants:
            for tenant, value in values.items():
                token = tenants.get_token(tenant)
                assert token.reveal() == value
                assert tenant in token.source
                assert tenants.provider(tenant).get_token() is token
                for shown in (str(token), repr(token), repr(tenants), repr(tenants.provider(tenant))):
                    assert_clean(shown, *values.values())
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert_clean(text, *values.values(), *tenant_target.secrets)

    async def test_tenants_async(self, tenant_target: TenantTarget) -> None:
        values = _tenant_values(3)
        tenant_target.write_all(values)
        tenants = self.providers(tenant_target)
        try:
            got = await asyncio.gather(*(tenants.aget_token(t) for t in list(values) * 5))
            assert [t.reveal() for t in got] == list(values.values()) * 5
            assert await tenants.atenants() == sorted(values)
        finally:
            await tenants.aclose()

    def test_tenant_isolation_and_rotation(self, tenant_target: TenantTarget) -> None:
        values = _tenant_values(2)
        tenant_target.write_all(values)
        a, b = values
        with self.providers(tenant_target, policy=CachePolicy(ttl=300, refresh_ahead=0)) as tenants:
            token_a = tenants.get_token(a)
            assert tenants.get_token(b).reveal() == values[b]
            rotated = canary()
            tenant_target.write(a, rotated)
            tenants.invalidate(a, token_a)  # a 190 on tenant a
            assert tenants.get_token(a).reveal() == rotated
            assert tenants.get_token(b).reveal() == values[b]
            assert tenants.provider(b).stats.fetches == 1
            assert tenants.provider(a).stats.fetches == 2

    def _counted(self, target: TenantTarget) -> tuple[tokenstore.TenantProviders, dict[str, Counting]]:
        backend = target.make()
        real_named = backend.named
        counters: dict[str, Counting] = {}

        def counted(option: str, name: str) -> tokenstore.Backend:
            view = real_named(option, name)
            counters[name] = Counting(view)
            return counters[name]  # type: ignore[return-value]

        backend.named = counted  # type: ignore[method-assign]
        policy = CachePolicy(ttl=300, refresh_ahead=0)
        return tokenstore.TenantProviders(backend, template=target.template, policy=policy), counters

    def test_cold_gets_one_store_read_per_tenant_threads(self, tenant_target: TenantTarget) -> None:
        """1,000 concurrent cold gets across 100 tenants (20 threads): exactly 100 store reads."""
        values = _tenant_values(100)
        tenant_target.write_all(values)
        tenants, counters = self._counted(tenant_target)
        keys = list(values)
        barrier = threading.Barrier(20)
        wrong: list[str] = []

        def worker(index: int) -> None:
            barrier.wait()
            for j in range(50):
                tenant = keys[(index * 7 + j) % 100]
                if tenants.get_token(tenant).reveal() != values[tenant]:
                    wrong.append(tenant)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        tenants.close()
        assert not wrong
        assert sum(c.calls for c in counters.values()) == 100
        assert all(c.calls == 1 for c in counters.values())

    async def test_cold_gets_one_store_read_per_tenant_tasks(self, tenant_target: TenantTarget) -> None:
        """1,000 concurrent cold gets across 100 tenants (asyncio tasks): exactly 100 store reads."""
        values = _tenant_values(100)
        tenant_target.write_all(values)
        tenants, counters = self._counted(tenant_target)
        order = [f"t{i % 100:04d}" for i in range(1000)]
        try:
            tokens = await asyncio.gather(*(tenants.aget_token(t) for t in order))
        finally:
            await tenants.aclose()
        assert [t.reveal() for t in tokens] == [values[t] for t in order]
        assert sum(c.calls for c in counters.values()) == 100

    def test_unknown_tenant(self, tenant_target: TenantTarget, caplog: pytest.LogCaptureFixture) -> None:
        values = _tenant_values(1)
        tenant_target.write_all(values)
        with self.providers(tenant_target) as tenants:
            with pytest.raises(tokenstore.UnknownTenant) as info:
                tenants.get_token("nobody")
            assert info.value.tenant == "nobody"
            assert "'nobody'" in str(info.value)
            assert_clean(str(info.value), *values.values(), *tenant_target.secrets)

    def test_tenant_put_token(self, tenant_target: TenantTarget) -> None:
        values = _tenant_values(2)
        tenant_target.write_all(values)
        a, b = values
        new = canary()
        with self.providers(tenant_target) as tenants:
            if not tenant_target.writable:
                with pytest.raises(tokenstore.WriteNotSupported):
                    tenants.put_token(a, new)
                return
            tenants.put_token(a, new)
            assert tenants.get_token(a).reveal() == new
            assert tenants.get_token(b).reveal() == values[b]
        with self.providers(tenant_target) as fresh:
            assert fresh.get_token(a).reveal() == new

    def test_put_token_onboards_a_new_tenant(self, tenant_target: TenantTarget) -> None:
        """The first put_token of a tenant the store has no secret for yet writes it (creating it where needed)."""
        if not tenant_target.writable or not tenant_target.onboard:
            pytest.skip("n/a: this store cannot create a tenant's secret (declare it first)")
        tenant_target.write_all(_tenant_values(1))
        new = canary()
        with self.providers(tenant_target) as tenants:
            with pytest.raises(tokenstore.UnknownTenant):
                tenants.get_token("newcomer")
            tenants.put_token("newcomer", new)
            assert tenants.get_token("newcomer").reveal() == new
            assert tenants.tenants() == ["newcomer", "t0000"]

    async def test_aput_token_onboards_a_new_tenant(self, tenant_target: TenantTarget) -> None:
        if not tenant_target.writable or not tenant_target.onboard:
            pytest.skip("n/a: this store cannot create a tenant's secret (declare it first)")
        new = canary()
        tenants = self.providers(tenant_target)
        try:
            await tenants.aput_token("newcomer2", new)
            assert (await tenants.aget_token("newcomer2")).reveal() == new
        finally:
            await tenants.aclose()

    def test_tenant_listing(self, tenant_target: TenantTarget) -> None:
        values = _tenant_values(5)
        tenant_target.write_all(values)
        if tenant_target.write_name is not None:
            for name in tenant_target.decoys:
                tenant_target.write_name(name, canary())
        with self.providers(tenant_target) as tenants:
            assert tenants.tenants() == sorted(values)

    def test_tenant_listing_many(self, tenant_target: TenantTarget) -> None:
        values = _tenant_values(tenant_target.many)
        tenant_target.write_all(values)
        with self.providers(tenant_target) as tenants:
            assert tenants.tenants() == sorted(values)
            assert asyncio.run(tenants.atenants()) == sorted(values)

    def test_one_store_client_for_every_tenant(self, tenant_target: TenantTarget) -> None:
        if tenant_target.clients is None:
            pytest.skip("n/a: this store has no client or login to share")
        values = _tenant_values(6)
        tenant_target.write_all(values)
        backend = tenant_target.make()
        with tokenstore.TenantProviders(backend, template=tenant_target.template) as tenants:
            for tenant, value in values.items():
                assert tenants.get_token(tenant).reveal() == value
            tenants.tenants()
            assert tenant_target.clients(backend) == 1

    def test_tenants_from_config(self, tenant_target: TenantTarget) -> None:
        if tenant_target.config is None:
            pytest.skip("n/a: no config variant")
        values = _tenant_values(2)
        tenant_target.write_all(values)
        with tokenstore.tenants_from_config({"tenants": tenant_target.config()}) as tenants:
            assert tenants.get_token("t0001").reveal() == values["t0001"]
            assert tenants.tenants() == sorted(values)

    def test_tenant_keys_never_leave_the_template(self, tenant_target: TenantTarget) -> None:
        """Hypothesis: any key either is refused before any store call, or names a secret inside the template."""
        from hypothesis import given, settings
        from hypothesis import strategies as st

        template = tenant_target.template
        backend = tenant_target.make()
        named: list[str] = []
        real_named = backend.named

        def spy(option: str, name: str) -> tokenstore.Backend:
            named.append(name)
            return real_named(option, name)

        backend.named = spy  # type: ignore[method-assign]
        tenants = tokenstore.TenantProviders(backend, template=template)
        alphabet = st.characters(codec="utf-8") | st.sampled_from(list("./\\%-_ \t\n\x00{}:*?@~"))

        @settings(max_examples=120, deadline=None)
        @given(
            st.text(alphabet=alphabet, max_size=140) | st.sampled_from(["..", "../x", "a/../b", "%2e%2e", "a" * 129])
        )
        def check(key: str) -> None:
            before = len(named)
            try:
                tenants.provider(key)
            except tokenstore.InvalidTenantKey:
                assert len(named) == before, "a refused key reached the backend"
                return
            if len(named) == before:  # already cached
                return
            name = named[-1]
            assert name == template.name(key)
            assert template.tenant_of(name) == key
            assert ".." not in key and "/" not in key and "\\" not in key and "%" not in key
            assert not any(c.isspace() or ord(c) < 32 for c in key)
            assert 1 <= len(key) <= 128

        try:
            check()
        finally:
            tenants.close()

"""TenantProviders: config, tenant key validation, LRU, isolation, per-tenant invalidation, single-flight across
tenants, phone numbers (config, store-kept map, callable). The per-backend parts (templates on every store,
listing 1,000 tenants on each real local server) are in tests/backends/test_tenants_*.py and tests/contract.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenstore
from tests.contract import Counting, FakeClock, canary
from tokenstore import CachePolicy, InvalidTenantKey, TenantProviders, TenantTemplate, UnknownTenant
from tokenstore.backends.env import EnvBackend
from tokenstore.backends.file import FileBackend


def env_tenants(monkeypatch: pytest.MonkeyPatch, count: int, *, prefix: str = "TS_TENANT_") -> dict[str, str]:
    values = {}
    for i in range(count):
        tenant = f"t{i}"
        values[tenant] = canary()
        monkeypatch.setenv(f"{prefix}{tenant}", values[tenant])
    return values


class CountingFactory:
    """tenant -> a counting view of the real env backend (counts store reads per tenant)."""

    def __init__(self, backend: tokenstore.Backend, template: TenantTemplate) -> None:
        self.backend = backend
        self.template = template
        self.counters: dict[str, list[Counting]] = {}
        self._lock = threading.Lock()

    def __call__(self, tenant: str) -> Counting:
        counting = Counting(self.backend.named(self.template.option, self.template.name(tenant)))
        with self._lock:
            self.counters.setdefault(tenant, []).append(counting)
        return counting

    def built(self, tenant: str) -> int:
        return len(self.counters.get(tenant, []))

    def reads(self, tenant: str | None = None) -> int:
        if tenant is not None:
            return sum(c.calls for c in self.counters.get(tenant, []))
        return sum(c.calls for cs in self.counters.values() for c in cs)


def counting_env(policy: CachePolicy | None = None, **kwargs: object) -> tuple[TenantProviders, CountingFactory]:
    template = TenantTemplate("var", "TS_TENANT_{tenant}")
    factory = CountingFactory(EnvBackend("TS_TENANT_x"), template)
    providers = TenantProviders(factory, template=template, policy=policy, **kwargs)  # type: ignore[arg-type]
    return providers, factory


# -- config ---------------------------------------------------------------------------------------------------
def test_from_config_env_reads_each_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    values = env_tenants(monkeypatch, 3)
    cfg = {"tenants": {"token": {"backend": "env", "env": {"var": "TS_TENANT_{tenant}"}}}}
    with tokenstore.tenants_from_config(cfg) as tenants:
        for tenant, value in values.items():
            token = tenants.get_token(tenant)
            assert token.reveal() == value
            assert token.source == f"env:TS_TENANT_{tenant}"
        assert tenants.tenants() == sorted(values)
        assert value not in repr(tenants)


async def test_async_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    values = env_tenants(monkeypatch, 2)
    cfg = {"token": {"backend": "env", "env": {"var": "TS_TENANT_{tenant}"}}}
    async with tokenstore.tenants_from_config(cfg) as tenants:
        assert (await tenants.aget_token("t1")).reveal() == values["t1"]
        assert await tenants.atenants() == ["t0", "t1"]


def test_load_tenants_file_backend(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    values = {}
    for tenant in ("acme", "globex", "initech"):
        values[tenant] = canary()
        (folder / tenant).write_text(values[tenant] + "\n")
        (folder / tenant).chmod(0o600)
    (folder / ".hidden").write_text("x")
    (folder / "sub").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
tenants:
  token:
    backend: file
    file: {{path: "{folder}/{{tenant}}"}}
    cache: {{ttl: 300, refresh_ahead: 30, max_stale: 3600}}
  max_cached: 50
  numbers: {{"106540352242922": "acme", 106540352242923: globex}}
"""
    )
    with tokenstore.load_tenants(config) as tenants:
        assert tenants.max_cached == 50
        assert tenants.policy.ttl == 300
        assert tenants.tenants() == ["acme", "globex", "initech"]
        assert tenants.tenant_for_number("106540352242922") == "acme"
        assert tenants.tenant_for_number(106540352242923) == "globex"
        assert tenants.get_token(tenants.tenant_for_number("106540352242923")).reveal() == values["globex"]
        new = canary()
        tenants.put_token("initech", new)
        assert tenants.get_token("initech").reveal() == new
        assert (folder / "initech").read_text().strip() == new
        with pytest.raises(UnknownTenant) as info:
            tenants.tenant_for_number("999")
        assert info.value.phone_number_id == "999"
        assert "no tenant for phone number id 999" in str(info.value)
        with pytest.raises(UnknownTenant) as missing:
            tenants.get_token("hooli")
        assert missing.value.tenant == "hooli"
        assert isinstance(missing.value, tokenstore.SecretNotFound)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


BAD_CONFIGS = [
    (
        "tenants:\n  token: {backend: env, env: {var: WHATSAPP_TOKEN}}\n",
        "tenants.token.env: the tenants template must contain {tenant} in the secret's name (env.var), "
        "e.g. env: {var: WHATSAPP_TOKEN_{tenant}}",
    ),
    (
        "tenants:\n  token: {backend: file, file: {path: '/s/{tenant}', key: '{tenant}'}}\n",
        "tenants.token.file.path: {tenant} must be in exactly one option, the secret's name; found it in "
        "tenants.token.file.path and tenants.token.file.key",
    ),
    (
        "tenants:\n  token: {backend: file, file: {path: /s/x, key: 'k{tenant}'}}\n",
        "tenants.token.file.key: {tenant} can only be in the secret's name (file.path), "
        "e.g. file: {path: /run/secrets/whatsapp/{tenant}}",
    ),
    (
        "tenants:\n  token: {backend: env, env: {var: 'T_{tenant}_{tenant}'}}\n",
        "tenants.token.env.var: the tenant template must contain {tenant} exactly once",
    ),
    (
        "tenants:\n  token: {backend: env, env: {var: 'T_{tenant}_{x}'}}\n",
        "tenants.token.env.var: the tenant template may hold no braces other than {tenant}",
    ),
    (
        "tenants:\n  token: {backend: env, env: {var: 'T_{tenant}'}}\n  numbers: [1, 2]\n",
        'tenants.numbers: must be a mapping of phone number id -> tenant key, e.g. numbers: {"106540352242922": '
        '"acme"}',
    ),
    (
        "tenants:\n  token: {backend: env, env: {var: 'T_{tenant}'}}\n  numbers: {'10654x': acme}\n",
        "tenants.numbers.10654x: is not a phone number id (the digits Meta gives the number); quote it in YAML",
    ),
    (
        "tenants:\n  token: {backend: env, env: {var: 'T_{tenant}'}}\n  numbers: {'106': '../admin'}\n",
        "tenants.numbers.106: invalid tenant key '../admin': a tenant key is 1 to 128 characters",
    ),
    (
        "tenants:\n  token: {backend: env, env: {var: 'T_{tenant}'}}\n  max_cached: 0\n",
        "tenants.max_cached: must be at least 1, got 0",
    ),
    (
        "tenants:\n  token: {backend: env, env: {var: 'T_{tenant}'}}\n  max_cache: 5\n",
        "tenants.max_cache: unknown option (did you mean 'max_cached'?)",
    ),
    ("tenants:\n  max_cached: 5\n", "tenants.token: required section is missing"),
    (
        "tenants:\n  token: {backend: env, env: {var: 'T_{tenant}'}}\n  numbers: {'1': a}\n"
        "  numbers_from: {backend: env, env: {var: NUMBERS}}\n",
        "tenants.numbers_from: give numbers (in this file) or numbers_from (a map kept in the store), not both",
    ),
    (
        "tenants:\n  token: {backend: env, env: {var: 'T-{tenant}'}}\n",
        "tenants.token.env.var: must be an environment variable name (letters, digits and _)",
    ),
]


BAD_CONFIGS += [
    (
        "tenants:\n  token: {backend: env, env: {var: 'T_{tenant}'}, cache: false}\n",
        "tenants.token.cache: a tenant's token is always cached (one caching provider per tenant): set a short ttl "
        "instead",
    ),
    (
        "tenants:\n  token: {backend: vault, vault: {url: 'https://v:8200', path: whatsapp/prod}}\n",
        "tenants.token.vault: the tenants template must contain {tenant} in the secret's name (vault.path), "
        "e.g. vault: {path: whatsapp/tenants/{tenant}}",
    ),
    (
        "tenants:\n  token: {backend: vault, vault: {url: 'https://v:8200', path: a, key: 'k{tenant}'}}\n",
        "tenants.token.vault.key: {tenant} can only be in the secret's name (vault.path), "
        "e.g. vault: {path: whatsapp/tenants/{tenant}}",
    ),
    (
        "tenants:\n  token: {backend: aws, aws: {secret_id: whatsapp/prod}}\n",
        "tenants.token.aws: the tenants template must contain {tenant} in the secret's name (aws.secret_id or "
        "aws.parameter), e.g. aws: {secret_id: whatsapp/{tenant}} or aws: {parameter: /whatsapp/{tenant}/token}",
    ),
    (
        "tenants:\n  token: {backend: aws, aws: {secret_id: 'w/{tenant}', region: 'eu-{tenant}'}}\n",
        "tenants.token.aws.secret_id: {tenant} must be in exactly one option, the secret's name; found it in "
        "tenants.token.aws.secret_id and tenants.token.aws.region",
    ),
    (
        "tenants:\n  token: {backend: gcp, gcp: {project: p, secret: wa-token}}\n",
        "tenants.token.gcp: the tenants template must contain {tenant} in the secret's name (gcp.secret), "
        "e.g. gcp: {secret: wa-token-{tenant}}",
    ),
    (
        "tenants:\n  token: {backend: gcp, gcp: {project: 'p-{tenant}', secret: wa-token}}\n",
        "tenants.token.gcp.project: {tenant} can only be in the secret's name (gcp.secret), "
        "e.g. gcp: {secret: wa-token-{tenant}}",
    ),
    (
        "tenants:\n  token: {backend: azure, azure: {vault_url: 'https://v.vault.azure.net', name: wa}}\n",
        "tenants.token.azure: the tenants template must contain {tenant} in the secret's name (azure.name), "
        "e.g. azure: {name: wa-token-{tenant}}",
    ),
    (
        "tenants:\n  token: {backend: conjur, conjur: {url: 'https://c', account: a, login: h, variable: v}}\n",
        "tenants.token.conjur: the tenants template must contain {tenant} in the secret's name (conjur.variable), "
        "e.g. conjur: {variable: whatsapp/{tenant}/token}",
    ),
    (
        "tenants:\n  token: {backend: conjur, conjur: {url: 'https://c', account: a, login: 'h/{tenant}', "
        "variable: 'v/{tenant}'}}\n",
        "tenants.token.conjur.login: {tenant} must be in exactly one option, the secret's name; found it in "
        "tenants.token.conjur.login and tenants.token.conjur.variable",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(tokenstore.ConfigError) as info:
        tokenstore.load_tenants(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_backend_without_tenant_support(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Plain(tokenstore.Backend):
        name = "plain15a"

        @classmethod
        def from_config(cls, section: tokenstore.Section) -> Plain:
            return cls()

        def get_token(self) -> tokenstore.Token:  # pragma: no cover - never read
            raise AssertionError

    from tokenstore import _registry

    monkeypatch.setitem(_registry._registered, "plain15a", Plain)  # registered for this test only
    path = write_config(tmp_path, "tenants:\n  token: {backend: plain15a, plain15a: {name: 'x{tenant}'}}\n")
    with pytest.raises(tokenstore.ConfigError) as info:
        tokenstore.load_tenants(path)
    assert str(info.value) == (
        f"{path}: tenants.token.backend: the 'plain15a' backend cannot keep one secret per tenant "
        "(it has no tenant template)"
    )


def test_no_tenants_section(tmp_path: Path) -> None:
    path = write_config(tmp_path, "token: {backend: env}\n")
    with pytest.raises(tokenstore.ConfigError, match=r"bad\.yaml: tenants: no tenants: section"):
        tokenstore.load_tenants(path)


# -- tenant keys ----------------------------------------------------------------------------------------------
BAD_KEYS = ["", ".", "..", "a..b", "../b", "a/b", "a\\b", "%2e%2e", "a%2fb", "a b", " a", "a\n", "a\x00", "\t",
            "-a", ".a", "x" * 129, "é", "a:b", "a{b}", "a*", "a?b", "a@b"]  # fmt: skip


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_tenant_keys_refused_before_any_store_call(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    tenants, factory = counting_env()
    for call in (tenants.get_token, tenants.provider, tenants.invalidate):
        with pytest.raises(InvalidTenantKey):
            call(key)
    with pytest.raises(InvalidTenantKey):
        tenants.put_token(key, "EAAGx")
    with pytest.raises(InvalidTenantKey):
        asyncio.run(tenants.aget_token(key))
    assert factory.counters == {}
    assert len(tenants) == 0


@pytest.mark.parametrize("key", [1, None, b"abc", 1.5, ["a"], {"a": 1}])
def test_non_string_tenant_keys(key: object) -> None:
    tenants, _ = counting_env()
    with pytest.raises(InvalidTenantKey, match="a tenant key must be a string"):
        tenants.get_token(key)  # type: ignore[arg-type]


def test_good_tenant_keys() -> None:
    for key in ("102290129340398", "acme", "Acme-Corp_2.eu", "a", "x" * 128):
        assert tokenstore.check_tenant_key(key) == key


def test_invalid_key_message_does_not_echo_long_values() -> None:
    secret = canary()
    with pytest.raises(InvalidTenantKey) as info:
        tokenstore.check_tenant_key(secret + "/x")
    assert secret not in str(info.value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=140))
def test_generic_pattern_accepts_only_keys_that_stay_in_the_template(key: str) -> None:
    try:
        tokenstore.check_tenant_key(key)
    except InvalidTenantKey:
        return
    assert 1 <= len(key) <= 128
    assert ".." not in key
    for bad in "/\\%{}:*?@" + "".join(chr(c) for c in range(33)) + "\x7f":
        assert bad not in key
    assert key.isascii()
    assert key[0].isalnum()


# -- LRU ------------------------------------------------------------------------------------------------------
def test_lru_least_recently_used_leave_first(monkeypatch: pytest.MonkeyPatch) -> None:
    env_tenants(monkeypatch, 5)
    tenants, factory = counting_env(max_cached=3)
    for t in ("t0", "t1", "t2"):
        tenants.get_token(t)
    tenants.get_token("t0")  # t0 used again: t1 is now the least recently used
    tenants.get_token("t3")
    assert sorted(tenants.cached()) == ["t0", "t2", "t3"]
    assert tenants.cached()[0] == "t2"
    tenants.provider("t2")
    tenants.get_token("t4")
    assert sorted(tenants.cached()) == ["t2", "t3", "t4"]
    assert tenants.evicted == 2
    assert len(tenants) == 3


def test_evicted_provider_held_by_a_caller_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    values = env_tenants(monkeypatch, 3)
    tenants, _ = counting_env(max_cached=1)
    held = tenants.provider("t0")
    tenants.get_token("t1")
    assert tenants.cached() == ["t1"]
    assert held.get_token().reveal() == values["t0"]


def test_lru_batch_eviction_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    env_tenants(monkeypatch, 450)
    tenants, _ = counting_env(max_cached=400)
    for i in range(450):
        tenants.get_token(f"t{i}")
        assert len(tenants) <= 400
    assert "t449" in tenants.cached() and "t0" not in tenants.cached()


# -- isolation and invalidation -------------------------------------------------------------------------------
def test_isolation_each_tenant_gets_its_own_token(monkeypatch: pytest.MonkeyPatch) -> None:
    values = env_tenants(monkeypatch, 20)
    tenants, _ = counting_env(max_cached=7)
    for _ in range(3):
        for tenant, value in values.items():
            assert tenants.get_token(tenant).reveal() == value
            assert tenants.provider(tenant).get_token().reveal() == value


def test_invalidate_touches_only_that_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 190 for one tenant: it is refetched, the others' caches and store reads are untouched."""
    values = env_tenants(monkeypatch, 10)
    clock = FakeClock()
    tenants, factory = counting_env(CachePolicy(ttl=300, refresh_ahead=0, jitter=0), clock=clock)
    for tenant in values:
        tenants.get_token(tenant)
    assert factory.reads() == 10
    rejected = tenants.get_token("t3")
    rotated = canary()
    monkeypatch.setenv("TS_TENANT_t3", rotated)
    tenants.invalidate("t3", rejected)
    tenants.invalidate("t3", rejected)  # a concurrent 190 on the same token: no second refetch
    assert tenants.get_token("t3").reveal() == rotated
    for tenant, value in values.items():
        if tenant != "t3":
            assert tenants.get_token(tenant).reveal() == value
    assert factory.reads("t3") == 2
    assert {t: factory.reads(t) for t in values if t != "t3"} == {t: 1 for t in values if t != "t3"}
    assert tenants.provider("t4").stats.invalidations == 0
    summary = tenants.stats()
    assert (summary["cached"], summary["created"], summary["evicted"]) == (10, 10, 0)
    assert (summary["fetches"], summary["invalidations"]) == (11, 2)  # two 190s, one refetch
    tenants.invalidate("t9999")  # not cached: nothing to forget, no store call
    assert factory.reads() == 11


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_deleted_tenant_secret_after_invalidate_is_unknown_tenant_not_a_stale_token(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A tenant offboarded elsewhere (its secret deleted): the 190 that follows invalidates its cache, and the
    refetch says UnknownTenant instead of handing the old token back; the other tenants are untouched."""
    values = env_tenants(monkeypatch, 3)
    clock = FakeClock()
    tenants, factory = counting_env(CachePolicy(ttl=300, refresh_ahead=0, jitter=0, max_stale=3600), clock=clock)

    async def get(tenant: str) -> tokenstore.Token:
        return tenants.get_token(tenant) if mode == "sync" else await tenants.aget_token(tenant)

    for tenant in values:
        await get(tenant)
    rejected = await get("t1")
    monkeypatch.delenv("TS_TENANT_t1")
    tenants.invalidate("t1", rejected)
    with pytest.raises(UnknownTenant, match="t1") as info:
        await get("t1")
    assert info.value.tenant == "t1"
    with pytest.raises(UnknownTenant):  # the hit path does not serve it either
        await get("t1")
    assert tenants.provider("t1").stats.stale_served == 0
    assert rejected.reveal() not in str(info.value)
    assert (await get("t0")).reveal() == values["t0"] and (await get("t2")).reveal() == values["t2"]
    assert factory.reads("t0") == factory.reads("t2") == 1


def test_concurrent_cold_gets_threads_one_read_per_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    values = env_tenants(monkeypatch, 100)
    tenants, factory = counting_env(CachePolicy(ttl=300, refresh_ahead=0))
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        barrier.wait()
        try:
            for j in range(50):
                tenant = f"t{(index * 50 + j) % 100}"
                assert tenants.get_token(tenant).reveal() == values[tenant]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert factory.reads() == 100
    assert all(factory.reads(t) == 1 and factory.built(t) == 1 for t in values)


async def test_concurrent_cold_gets_tasks_one_read_per_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    values = env_tenants(monkeypatch, 100)
    tenants, factory = counting_env(CachePolicy(ttl=300, refresh_ahead=0))
    order = [f"t{i % 100}" for i in range(1000)]
    tokens = await asyncio.gather(*(tenants.aget_token(t) for t in order))
    assert [tok.reveal() for tok in tokens] == [values[t] for t in order]
    assert factory.reads() == 100


# -- phone numbers --------------------------------------------------------------------------------------------
def test_numbers_callable() -> None:
    routes = {"111": "acme", "222": "../x"}
    tenants, _ = counting_env(numbers=routes.get)
    assert tenants.tenant_for_number("111") == "acme"
    with pytest.raises(InvalidTenantKey):
        tenants.tenant_for_number("222")
    with pytest.raises(UnknownTenant):
        tenants.tenant_for_number("333")
    with pytest.raises(UnknownTenant):
        tenants.tenant_for_number("not-a-number")


def test_numbers_mapping_in_code_is_checked() -> None:
    with pytest.raises(ValueError, match="is not a phone number id"):
        counting_env(numbers={"abc": "acme"})
    with pytest.raises(InvalidTenantKey):
        counting_env(numbers={"1": "a/b"})


def numbers_file_config(folder: Path) -> dict[str, object]:
    return {
        "tenants": {
            "token": {"backend": "file", "file": {"path": f"{folder}/{{tenant}}"}},
            "numbers_from": {"backend": "file", "file": {"path": f"{folder}/numbers.json"}, "cache": {"ttl": 60}},
        }
    }


def test_numbers_kept_in_the_store_and_added_by_onboarding(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "acme").write_text(canary())
    clock = FakeClock()
    with tokenstore.tenants_from_config(numbers_file_config(folder), clock=clock) as tenants:
        with pytest.raises(UnknownTenant):
            tenants.tenant_for_number("111")  # no map yet
        assert tenants.add_numbers({"111": "acme", "112": "acme"}) == {"111": "acme", "112": "acme"}
        assert json.loads((folder / "numbers.json").read_text()) == {"111": "acme", "112": "acme"}
        assert tenants.tenant_for_number("111") == "acme"
        assert tenants.numbers() == {"111": "acme", "112": "acme"}
        with pytest.raises(ValueError, match="belongs to tenant 'acme'"):
            tenants.add_numbers({"111": "globex"})
        tenants.add_numbers({"111": "globex"}, replace=True)
        assert tenants.tenant_for_number("111") == "globex"
        # another replica onboards a number: an unknown number rereads the map (at most every few seconds)
        (folder / "numbers.json").write_text(
            json.dumps({"111": "globex", "112": "acme", "113": "initech"}, separators=(",", ":"))
        )
        clock.advance(10)
        assert tenants.tenant_for_number("113") == "initech"
        assert "acme" in tenants.tenants()
        # offboarding: a number of another tenant is refused; the map keeps the others
        with pytest.raises(ValueError, match="belongs to tenant 'acme', not 'globex'"):
            tenants.remove_numbers(["112"], tenant="globex")
        assert tenants.remove_numbers(["111", "999"], tenant="globex") == {"112": "acme", "113": "initech"}
        assert json.loads((folder / "numbers.json").read_text()) == {"112": "acme", "113": "initech"}
        with pytest.raises(UnknownTenant):
            tenants.tenant_for_number("111")


async def test_numbers_store_async(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "numbers.json").write_text('{"7":"acme"}')
    async with tokenstore.tenants_from_config(numbers_file_config(folder)) as tenants:
        assert await tenants.atenant_for_number("7") == "acme"
        assert await tenants.aadd_numbers({"8": "acme"}) == {"7": "acme", "8": "acme"}
        with pytest.raises(UnknownTenant):
            await tenants.atenant_for_number("9")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1]", "the numbers map is not a JSON object of phone number id -> tenant key"),
        ('{"abc":"acme"}', "the numbers map has a key that is not a phone number id (digits): 'abc'"),
        ('{"1":"../x"}', "the numbers map gives phone number id 1 an invalid tenant key ('../x')"),
    ],
)
def test_malformed_numbers_map_in_store(tmp_path: Path, content: str, message: str) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "numbers.json").write_text(content)
    with tokenstore.tenants_from_config(numbers_file_config(folder)) as tenants:
        with pytest.raises(tokenstore.SecretMalformed) as info:
            tenants.tenant_for_number("1")
    assert str(info.value) == f"file:{folder}/numbers.json: {message}"


def test_numbers_map_with_whitespace_says_compact_json(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "numbers.json").write_text('{"7": "acme"}')
    with tokenstore.tenants_from_config(numbers_file_config(folder)) as tenants:
        with pytest.raises(tokenstore.SecretMalformed, match="one line of compact JSON without whitespace"):
            tenants.tenant_for_number("7")


def test_unknown_number_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    env_tenants(monkeypatch, 2)
    tenants, factory = counting_env(numbers={"1": "t0"})
    with pytest.raises(UnknownTenant):
        tenants.tenant_for_number("2")
    assert factory.reads() == 0


def test_closed_providers_refuse_new_tenants(monkeypatch: pytest.MonkeyPatch) -> None:
    env_tenants(monkeypatch, 2)
    tenants, _ = counting_env()
    tenants.get_token("t0")
    tenants.close()
    tenants.close()
    assert len(tenants) == 0
    with pytest.raises(RuntimeError, match="closed"):
        tenants.get_token("t1")


def test_backend_template_in_code(tmp_path: Path) -> None:
    (tmp_path / "acme.tok").write_text(canary())
    backend = FileBackend(tmp_path / "unused")
    with TenantProviders(backend, template=TenantTemplate("path", f"{tmp_path}/{{tenant}}.tok")) as tenants:
        assert tenants.tenants() == ["acme"]
        assert tenants.get_token("acme").source == f"file:{tmp_path}/acme.tok"
    with pytest.raises(ValueError, match=re.escape("keeps {tenant} in path, not in 'key'")):
        TenantProviders(backend, template=TenantTemplate("key", "{tenant}"))
    with pytest.raises(ValueError, match="exactly once"):
        TenantTemplate("path", "/x")


def test_a_store_kept_numbers_map_is_not_refused_as_a_misplaced_token(tmp_path: Path) -> None:
    """The bare-token rule refuses a JSON object read without ``key:`` (a token under a field); the routing map
    that ``add_numbers`` keeps in a store is read through the same providers and must pass it."""
    from tokenstore._parsing import one_word

    assert one_word('{"106540352242922":"102290129340398"}', source="s") == '{"106540352242922":"102290129340398"}'
    for misplaced in ('{"access_token":"EAAGxyz"}', '{"whatsapp":"EAAGabcdef"}', '{"token":"abc"}'):
        with pytest.raises(tokenstore.SecretMalformed, match="JSON object"):
            one_word(misplaced, source="s")


def test_config_example_tenants_section_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parent.parent
    cfg = tokenstore.load_config(
        root / "config.example.yaml", environ={"WHATSAPP_PHONE_NUMBER_ID": "1", "WHATSAPP_APP_ID": "1"}
    )
    pytest.importorskip("hvac")
    with tokenstore.tenants_from_config(cfg, source="config.example.yaml") as tenants:
        assert tenants.max_cached == 10000
        assert tenants.numbers() == {"106540352242922": "102290129340398"}
        assert tenants.source == "vault:whatsapp/tenants/{tenant}"
        assert tenants.policy.max_stale == 3600


# -- fuzz: arbitrary tenants: sections give only our errors ----------------------------------------------------
_FUZZ_SECRET = "EAAGCANARYtenantsFUZZsecret0123456789"
_fuzz_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=10**16),
    st.text(max_size=20),
    st.just(_FUZZ_SECRET),
    st.sampled_from(["{tenant}", "T_{tenant}", "/s/{tenant}", "a{tenant}{tenant}", "{x}", "env", "file", "vault"]),
)
_fuzz_keys = st.sampled_from(
    ["token", "max_cached", "numbers", "numbers_from", "backend", "env", "file", "var", "path", "key", "cache", "ttl"]
) | st.text(max_size=6)
_fuzz_trees = st.recursive(
    _fuzz_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_fuzz_keys, inner, max_size=4)),
    max_leaves=15,
)
_fuzz_sections = st.builds(
    lambda backend, options, numbers, max_cached, extra: {
        "token": {"backend": backend, backend: options},
        "numbers": numbers,
        "max_cached": max_cached,
        **extra,
    },
    st.sampled_from(["env", "file", "vault", "nope"]),
    st.one_of(_fuzz_trees, st.dictionaries(_fuzz_keys, _fuzz_scalars, max_size=4)),
    st.one_of(st.none(), _fuzz_trees, st.dictionaries(_fuzz_scalars, _fuzz_scalars, max_size=3)),
    _fuzz_scalars,
    st.dictionaries(_fuzz_keys, _fuzz_trees, max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.one_of(_fuzz_sections, _fuzz_trees))
def test_arbitrary_tenants_sections_give_only_config_errors(section: object) -> None:
    try:
        tenants = tokenstore.tenants_from_config({"tenants": section}, source="fuzz.yaml")
    except tokenstore.ConfigError as exc:
        assert _FUZZ_SECRET not in str(exc)
        assert str(exc).startswith("fuzz.yaml: tenants")
        return
    except tokenstore.TokenStoreError as exc:  # pragma: no cover - reported with its type
        raise AssertionError(f"not a ConfigError: {type(exc).__name__}: {exc}") from exc
    tenants.close()

"""Many tenants: one token per customer business, a caching provider per tenant, phone numbers routed to tenants.

A Tech Provider (or any SaaS on the Cloud API) holds one business token per onboarded customer. Each lives in
the store under a name made from a template: ``{tenant}`` in the backend's own name option
(``vault.path: whatsapp/tenants/{tenant}``, ``env.var: WHATSAPP_TOKEN_{tenant}``, ...).
:class:`TenantProviders` keeps one :class:`~tokenstore.CachingProvider` per tenant (every cache semantic:
TTL, refresh ahead, single-flight, stale-on-error, backoff, invalidate), at most ``max_cached`` of them (the
least recently used leave first), all sharing ONE store client: only the secret's name differs.

Isolation rules:

* A tenant key must match :data:`TENANT_KEY_PATTERN` (a letter or digit, then letters, digits, ``_``, ``.``,
  ``-``; at most 128 characters; no ``..``), plus the store's own naming rules; anything else is
  :class:`~tokenstore.InvalidTenantKey` before any store call, so no key can leave its template.
* A phone number maps to exactly one tenant (``numbers:`` in the config, a JSON map kept in the store via
  ``numbers_from:``, or a callable given in code). A number nobody owns is :class:`~tokenstore.UnknownTenant`:
  never a fallback to a default or another tenant's token.
* :meth:`TenantProviders.invalidate` touches one tenant's cache only.

A cache hit through :meth:`TenantProviders.get_token` is a dict lookup, a "used" bit set in the tenant's slot and
one clock read and comparison: no lock, no call into the tenant's provider. Locks are taken only when a tenant's
provider is created. Eviction is a CLOCK (second chance), the usual approximation of least-recently-used: the
oldest provider leaves unless it was used since the hand last passed it; 1% of ``max_cached`` leave at once.
Hits through this path are not counted in the tenant's ``stats.hits``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._cache import CachePolicy, CachingProvider, _Entry
from ._config import Section, shown
from ._errors import ConfigError, InvalidTenantKey, SecretMalformed, SecretNotFound, UnknownTenant, WriteConflict
from ._provider import Backend, TokenProvider
from ._token import Token

if TYPE_CHECKING:
    import os

__all__ = [
    "DEFAULT_MAX_CACHED",
    "TENANT_KEY_PATTERN",
    "TenantProviders",
    "TenantTemplate",
    "check_tenant_key",
    "load_tenants",
    "tenants_from_config",
]

logger = logging.getLogger("tokenstore.tenants")

#: what every tenant key must match, in full (then: no ``..`` anywhere, and the store's own rules)
TENANT_KEY_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_TENANT_RE = re.compile(TENANT_KEY_PATTERN)
#: a phone number id as Meta gives it: digits
_NUMBER_RE = re.compile(r"[0-9]{1,32}")
PLACEHOLDER = "{tenant}"
DEFAULT_MAX_CACHED = 10_000
#: a valid name part for every store, put in place of ``{tenant}`` while the backend checks its own options
_STAND_IN = "ts0tenant0template"
#: an unknown number makes a store-kept numbers map be read again at most this often (seconds)
_NUMBERS_REREAD = 5.0
#: a store-kept numbers map changed by another writer between our read and our write is read and merged again
_MAP_WRITE_ATTEMPTS = 5

_EXAMPLES = {
    "env": "env: {var: WHATSAPP_TOKEN_{tenant}}",
    "file": "file: {path: /run/secrets/whatsapp/{tenant}}",
    "vault": "vault: {path: whatsapp/tenants/{tenant}}",
    "aws": "aws: {secret_id: whatsapp/{tenant}} or aws: {parameter: /whatsapp/{tenant}/token}",
    "gcp": "gcp: {secret: wa-token-{tenant}}",
    "azure": "azure: {name: wa-token-{tenant}}",
    "conjur": "conjur: {variable: whatsapp/{tenant}/token}",
}


def _describe_key(tenant: object) -> str:
    if not isinstance(tenant, str):
        return f"a {type(tenant).__name__}"
    return shown(tenant) if tenant else "an empty string"


def check_tenant_key(tenant: object) -> str:
    """``tenant`` if it is a valid tenant key, else :class:`~tokenstore.InvalidTenantKey` (no store is asked)."""
    if type(tenant) is not str:
        if isinstance(tenant, str):
            tenant = str.__str__(tenant)  # a str subclass: use its plain value
        else:
            raise InvalidTenantKey(f"a tenant key must be a string, got {_describe_key(tenant)}", tenant=None)
    assert isinstance(tenant, str)
    if not _TENANT_RE.fullmatch(tenant) or ".." in tenant:
        raise InvalidTenantKey(
            f"invalid tenant key {_describe_key(tenant)}: a tenant key is 1 to 128 characters, letters, digits, "
            "'_', '.' and '-', starting with a letter or digit, without '..' (no '/', '\\', '%', whitespace or "
            "control characters: a key must never reach another secret)",
            tenant=tenant,
        )
    return tenant


@dataclass(frozen=True)
class TenantTemplate:
    """Where ``{tenant}`` goes: ``option`` (the backend's name option) and ``pattern`` holding ``{tenant}`` once."""

    option: str
    pattern: str

    def __post_init__(self) -> None:
        if self.pattern.count(PLACEHOLDER) != 1:
            raise ValueError(f"the tenant template must contain {PLACEHOLDER} exactly once")
        rest = self.pattern.replace(PLACEHOLDER, "")
        if "{" in rest or "}" in rest:
            raise ValueError(f"the tenant template may hold no braces other than {PLACEHOLDER}")

    @property
    def prefix(self) -> str:
        return self.pattern.partition(PLACEHOLDER)[0]

    @property
    def suffix(self) -> str:
        return self.pattern.partition(PLACEHOLDER)[2]

    def name(self, tenant: str) -> str:
        """The secret's name for a (validated) tenant key."""
        return self.pattern.replace(PLACEHOLDER, tenant)

    def tenant_of(self, name: str) -> str | None:
        """The tenant key a listed secret name stands for, or None when it is not one of the template's."""
        prefix, _, suffix = self.pattern.partition(PLACEHOLDER)
        if len(name) <= len(prefix) + len(suffix) or not name.startswith(prefix) or not name.endswith(suffix):
            return None
        key = name[len(prefix) : len(name) - len(suffix)]
        if not _TENANT_RE.fullmatch(key) or ".." in key:
            return None
        return key


class _Slot:
    """What a cache hit reads: the tenant's cached token, until when it is served as is, and a used bit.

    The owning :class:`_TenantCache` writes ``token`` and ``refresh_at`` whenever its entry changes, in an order
    that keeps every interleaving safe for a reader that checks ``refresh_at`` and then takes ``token``: a new
    token is written before its later deadline; an invalidation writes the deadline (now) first.
    """

    __slots__ = ("provider", "refresh_at", "token", "used")

    def __init__(self, provider: _TenantCache) -> None:
        self.provider = provider
        self.token: Token | None = None
        self.refresh_at = -math.inf
        self.used = False


class _TenantCache(CachingProvider):
    """One tenant's caching provider; a secret not found is said as :class:`~tokenstore.UnknownTenant`.

    Every change of its cache entry is mirrored into its :class:`_Slot`, so the owner's hit path reads one small
    object (no method call into the provider, no attribute dict).
    """

    def __init__(
        self,
        inner: TokenProvider,
        tenant: str,
        policy: CachePolicy,
        *,
        clock: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        super().__init__(inner, policy, clock=clock, rand=rand)
        self.tenant = tenant
        self.slot = _Slot(self)

    def _store(self, token: Token, now: float) -> None:
        super()._store(token, now)
        entry = self._entry
        assert entry is not None
        self.slot.token = entry.token
        self.slot.refresh_at = entry.refresh_at

    def invalidate(self, token: Token | None = None) -> None:
        super().invalidate(token)
        entry = self._entry
        if entry is not None:
            self.slot.refresh_at = entry.refresh_at
            self.slot.token = entry.token

    def _forget(self, entry: _Entry | None = None) -> None:
        super()._forget(entry)
        if self._entry is None:  # the slot's token is then never served (its deadline has passed for good)
            self.slot.refresh_at = -math.inf

    def _unknown(self, exc: SecretNotFound) -> UnknownTenant:
        return UnknownTenant(
            f"no secret for tenant {self.tenant!r}: {exc} (onboard the tenant, or check its key)",
            tenant=self.tenant,
        )

    def get_token(self) -> Token:
        try:
            return super().get_token()
        except UnknownTenant:
            raise
        except SecretNotFound as exc:
            raise self._unknown(exc) from exc

    async def aget_token(self) -> Token:
        try:
            return await super().aget_token()
        except UnknownTenant:
            raise
        except SecretNotFound as exc:
            raise self._unknown(exc) from exc


NumbersSource = Mapping[str, str] | Callable[[str], "str | None"]


class TenantProviders:
    """A caching provider per tenant, built on demand, bounded (LRU), all on one store client.

    ``backend`` is either a :class:`~tokenstore.Backend` (its client is shared by every tenant) together with
    ``template`` (which option of it holds ``{tenant}``, and the pattern), or a callable ``tenant -> provider``
    (a raw provider per tenant; then ``lister`` may list the tenants). ``numbers`` maps phone number ids to
    tenants (a mapping or a callable returning the tenant or None); ``numbers_store`` is a provider whose secret
    holds that map as a JSON object (see :meth:`add_numbers`). Give at most one of the two.
    """

    def __init__(
        self,
        backend: Backend | Callable[[str], TokenProvider],
        *,
        template: TenantTemplate | None = None,
        policy: CachePolicy | None = None,
        max_cached: int = DEFAULT_MAX_CACHED,
        numbers: NumbersSource | None = None,
        numbers_store: TokenProvider | None = None,
        lister: Callable[[], Iterable[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if isinstance(max_cached, bool) or not isinstance(max_cached, int) or max_cached < 1:
            raise ValueError("max_cached must be a whole number of at least 1")
        if numbers is not None and numbers_store is not None:
            raise ValueError("give numbers or numbers_store, not both")
        self._backend: Backend | None = None
        self._factory: Callable[[str], TokenProvider]
        if isinstance(backend, Backend):
            if template is None:
                raise ValueError("a Backend needs template=TenantTemplate(option, pattern with {tenant})")
            if template.option not in type(backend).tenant_options:
                raise ValueError(
                    f"the {backend.name!r} backend keeps {PLACEHOLDER} in "
                    f"{' or '.join(type(backend).tenant_options) or 'no option'}, not in {template.option!r}"
                )
            self._backend = backend
            self._factory = self._named
            self.source = f"{backend.name}:{template.pattern}"
        elif callable(backend):
            self._factory = backend
            self.source = template.pattern if template is not None else "tenants"
        else:
            raise TypeError("backend must be a tokenstore.Backend or a callable tenant -> TokenProvider")
        self.template = template
        self.policy = policy if policy is not None else CachePolicy()
        self.max_cached = max_cached
        self._lister = lister
        self._clock = clock
        self._rand = rand
        self._lru: dict[str, _Slot] = {}
        #: the eviction order (a CLOCK: oldest first; a used slot gets a second chance), kept off the hit path
        self._order: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        #: tenants' providers built / evicted (for metrics and tests)
        self.created = 0
        self.evicted = 0
        self._numbers_map: dict[str, str] | None = None
        self._numbers_fn: Callable[[str], str | None] | None = None
        if isinstance(numbers, Mapping):
            self._numbers_map = _checked_numbers(numbers)
        elif numbers is not None:
            if not callable(numbers):
                raise TypeError("numbers must be a mapping of phone number id -> tenant, or a callable")
            self._numbers_fn = numbers
        self._numbers_store = numbers_store
        self._numbers_memo: tuple[Token, dict[str, str]] | None = None
        self._numbers_reread_at = -1e300
        self._numbers_lock = threading.Lock()
        # the hit path's lookups, bound once
        self._get = self._lru.get

    # -- per tenant -----------------------------------------------------------------------------------------
    def _named(self, tenant: str) -> TokenProvider:
        backend, template = self._backend, self.template
        assert backend is not None and template is not None
        problem = backend.tenant_key_problem(tenant)
        if problem:
            raise InvalidTenantKey(
                f"invalid tenant key {tenant!r} for the {backend.name} store: {problem}", tenant=tenant
            )
        return backend.named(template.option, template.name(tenant))

    def _create(self, tenant: object) -> _TenantCache:
        key = check_tenant_key(tenant)
        with self._lock:
            if self._closed:
                raise RuntimeError("these TenantProviders are closed")
            slot = self._lru.get(key)
            if slot is not None:
                slot.used = True
                return slot.provider
            raw = self._factory(key)
            provider = _TenantCache(raw, key, self.policy, clock=self._clock, rand=self._rand)
            if len(self._lru) >= self.max_cached:
                self._evict()
            self._lru[key] = provider.slot
            self._order[key] = None
            self.created += 1
        return provider

    def _evict(self) -> None:
        """Drop 1% of max_cached (at least one) of the least recently used providers, by second chance (CLOCK).

        The oldest slot goes unless it was used since the hand last passed it: then its used bit is cleared and it
        goes to the back. A hit only sets that bit, so recency costs the hit path one attribute store. Evicted
        providers are not closed: a caller may still hold one, and it keeps working on its own.
        """
        order, lru = self._order, self._lru
        for _ in range(max(1, self.max_cached // 100)):
            while order:
                key, _ = order.popitem(last=False)
                slot = lru[key]
                if slot.used:
                    slot.used = False
                    order[key] = None
                    continue
                del lru[key]
                self.evicted += 1
                break

    def provider(self, tenant: str) -> CachingProvider:
        """The tenant's caching provider (built on first use; kept while among the ``max_cached`` most recent)."""
        try:
            slot = self._get(tenant)
        except TypeError:  # unhashable: not a key at all (InvalidTenantKey below)
            slot = None
        if slot is None:
            return self._create(tenant)
        slot.used = True
        return slot.provider

    def get_token(self, tenant: str) -> Token:
        """The tenant's current token. A hit: a dict lookup, a bit set, one clock read and comparison."""
        try:
            slot = self._get(tenant)
        except TypeError:  # unhashable: not a key at all (InvalidTenantKey below)
            slot = None
        if slot is None:
            return self._create(tenant).get_token()
        slot.used = True
        if self._clock() < slot.refresh_at:
            return slot.token  # type: ignore[return-value]  # set whenever refresh_at is
        return slot.provider.get_token()

    async def aget_token(self, tenant: str) -> Token:
        """Async :meth:`get_token`."""
        try:
            slot = self._get(tenant)
        except TypeError:  # unhashable: not a key at all (InvalidTenantKey below)
            slot = None
        if slot is None:
            return await self._create(tenant).aget_token()
        slot.used = True
        if self._clock() < slot.refresh_at:
            return slot.token  # type: ignore[return-value]
        return await slot.provider.aget_token()

    def put_token(self, tenant: str, value: str) -> str | None:
        """Write the tenant's new token to the store (its cache is invalidated); returns the new version."""
        return self.provider(tenant).put_token(value)

    async def aput_token(self, tenant: str, value: str) -> str | None:
        """Async :meth:`put_token`."""
        return await self.provider(tenant).aput_token(value)

    def delete(self, tenant: str) -> None:
        """Delete (or disable) the tenant's secret in the store, where the backend can
        (:attr:`~tokenstore.TokenProvider.supports_delete`; else :class:`~tokenstore.WriteNotSupported`), and
        forget its provider. Offboarding: ``tokenstore offboard --tenant T``."""
        key = check_tenant_key(tenant)
        provider = self.provider(key)
        try:
            provider.delete_secret()
        finally:
            with self._lock:
                self._lru.pop(key, None)

    def invalidate(self, tenant: str, token: Token | None = None) -> None:
        """Make the tenant's next call go to the store (with ``token``: only if that is still the cached one).

        Only this tenant's cache is touched; a tenant not cached has nothing to forget.
        """
        key = check_tenant_key(tenant)
        slot = self._lru.get(key)
        if slot is not None:
            slot.provider.invalidate(token)

    def cached(self) -> list[str]:
        """The tenants whose providers are in memory, in eviction order (the next to leave first)."""
        with self._lock:
            return list(self._order)

    def __len__(self) -> int:
        return len(self._lru)

    def stats(self) -> dict[str, int]:
        """Counters: tenants ``cached`` / ``created`` / ``evicted``, and the cached tenants' cache counters summed
        (``fetches`` = store reads, ``backend_errors``, ``invalidations``, ...; hits through :meth:`get_token`
        are not counted: that path touches no counter)."""
        with self._lock:
            providers = [slot.provider for slot in self._lru.values()]
        totals: dict[str, int] = {"cached": len(providers), "created": self.created, "evicted": self.evicted}
        for provider in providers:
            for name, value in provider.stats.snapshot().items():
                totals[name] = totals.get(name, 0) + value
        return totals

    # -- listing --------------------------------------------------------------------------------------------
    def _from_names(self, names: Iterable[str]) -> list[str]:
        """The tenant keys among listed names: only those get_token would accept (the store's own rules too)."""
        template, backend = self.template, self._backend
        assert template is not None and backend is not None
        found: set[str] = set()
        for name in names:
            key = template.tenant_of(name)
            if key is not None and not backend.tenant_key_problem(key):
                found.add(key)
        return sorted(found)

    def tenants(self) -> list[str]:
        """The tenants the store holds a secret for, listed from the store under the template's prefix, sorted."""
        if self._backend is not None:
            assert self.template is not None
            t = self.template
            lister = self._backend.named(t.option, t.pattern)  # errors name the template, not a stand-in
            return self._from_names(lister.list_names(t.option, t.prefix, t.suffix))
        if self._lister is not None:
            return sorted({check_tenant_key(k) for k in self._lister()})
        raise TypeError("these TenantProviders were given no way to list tenants (pass lister=)")

    async def atenants(self) -> list[str]:
        """Async :meth:`tenants`."""
        if self._backend is not None:
            assert self.template is not None
            t = self.template
            lister = self._backend.named(t.option, t.pattern)
            return self._from_names(await lister.alist_names(t.option, t.prefix, t.suffix))
        import asyncio

        return await asyncio.to_thread(self.tenants)

    # -- phone numbers --------------------------------------------------------------------------------------
    def _store_map(self, token: Token) -> dict[str, str]:
        memo = self._numbers_memo
        if memo is not None and memo[0] is token:
            return memo[1]
        mapping = _parse_numbers(token)
        self._numbers_memo = (token, mapping)
        return mapping

    def _lookup(self, number: str | None, mapping: Mapping[str, str] | None) -> str | None:
        if number is None:
            return None
        if mapping is not None:
            return mapping.get(number)
        if self._numbers_fn is not None:
            found = self._numbers_fn(number)
            return None if found is None else check_tenant_key(found)
        return None

    def _unknown_number(self, number: str) -> UnknownTenant:
        where = (
            "the numbers map in the store (add it with TenantProviders.add_numbers)"
            if self._numbers_store is not None
            else "tenants.numbers"
        )
        return UnknownTenant(
            f"no tenant for phone number id {_describe_number(number)}: add it to {where}; "
            "a number with no tenant is never sent from",
            phone_number_id=number,
        )

    def _reread_due(self) -> bool:
        now = self._clock()
        with self._numbers_lock:
            if now - self._numbers_reread_at < _NUMBERS_REREAD:
                return False
            self._numbers_reread_at = now
            return True

    def _read_map(self, token: Token | None) -> dict[str, str]:
        return {} if token is None else self._store_map(token)

    def _map_token(self) -> Token | None:
        store = self._numbers_store
        assert store is not None
        try:
            return store.get_token()
        except SecretNotFound:
            return None  # no map in the store yet: no number is known
        except SecretMalformed as exc:
            raise _map_malformed(exc) from exc

    async def _amap_token(self) -> Token | None:
        store = self._numbers_store
        assert store is not None
        try:
            return await store.aget_token()
        except SecretNotFound:
            return None
        except SecretMalformed as exc:
            raise _map_malformed(exc) from exc

    def tenant_for_number(self, phone_number_id: str) -> str:
        """The tenant owning this phone number id; :class:`~tokenstore.UnknownTenant` when none does."""
        number = _number_key(phone_number_id)
        store = self._numbers_store
        if store is None:
            tenant = self._lookup(number, self._numbers_map) if number is not None else None
        else:
            tenant = self._read_map(self._map_token()).get(number) if number is not None else None
            if tenant is None and number is not None and self._reread_due():
                # a number onboarded by another replica since our copy of the map was read
                store.invalidate()
                tenant = self._read_map(self._map_token()).get(number)
        if tenant is None:
            raise self._unknown_number(str(phone_number_id))
        return tenant

    async def atenant_for_number(self, phone_number_id: str) -> str:
        """Async :meth:`tenant_for_number` (reads a store-kept map without blocking the loop)."""
        number = _number_key(phone_number_id)
        store = self._numbers_store
        if store is None:
            return self.tenant_for_number(phone_number_id)
        tenant = self._read_map(await self._amap_token()).get(number) if number is not None else None
        if tenant is None and number is not None and self._reread_due():
            store.invalidate()
            tenant = self._read_map(await self._amap_token()).get(number)
        if tenant is None:
            raise self._unknown_number(str(phone_number_id))
        return tenant

    def numbers(self) -> dict[str, str]:
        """The phone number id -> tenant map as known now (a copy; empty when a callable routes numbers)."""
        if self._numbers_store is not None:
            return dict(self._read_map(self._map_token()))
        return dict(self._numbers_map or {})

    def add_numbers(self, numbers: Mapping[str, str], *, replace: bool = False) -> dict[str, str]:
        """Add phone numbers to the map kept in the store (``numbers_from:``); returns the whole new map.

        A number already owned by another tenant is refused (:class:`ValueError`) unless ``replace=True``:
        moving a number between businesses is deliberate, never a side effect of onboarding. The map is read
        from the store (not the cache), merged and written back; this process sees it at once.
        """
        store = self._numbers_store
        if store is None:
            raise TypeError(
                "the phone numbers are not kept in the store here: configure tenants.numbers_from "
                "(numbers in the config file are edited there)"
            )
        additions = _checked_numbers(numbers)
        with self._numbers_lock:
            for attempt in range(_MAP_WRITE_ATTEMPTS):
                store.invalidate()
                held = self._map_token()
                current = dict(self._read_map(held))  # no map yet: the first onboarding creates it
                for number, tenant in additions.items():
                    owner = current.get(number)
                    if owner is not None and owner != tenant and not replace:
                        raise ValueError(
                            f"phone number id {number} belongs to tenant {owner!r}, not {tenant!r}: "
                            "pass replace=True to move it"
                        )
                if all(current.get(n) == t for n, t in additions.items()):
                    return current
                current.update(additions)
                payload = json.dumps(current, separators=(",", ":"), sort_keys=True)
                try:  # another process's additions since our read must not be lost: write only over what we read
                    store.put_token(payload) if held is None else store.put_token(payload, expected=held)
                except WriteConflict:
                    if attempt + 1 == _MAP_WRITE_ATTEMPTS:
                        raise
                    continue
                break
            self._numbers_memo = None
        logger.info("added %d phone number(s) to the numbers map at %s", len(additions), store.source)
        return current

    def remove_numbers(self, numbers: Iterable[str], *, tenant: str | None = None) -> dict[str, str]:
        """Take phone numbers out of the map kept in the store (offboarding); returns the whole new map.

        With ``tenant``, a number owned by another tenant is refused (:class:`ValueError`): one customer's
        offboarding never unroutes another's number. Numbers not in the map are ignored.
        """
        store = self._numbers_store
        if store is None:
            raise TypeError("the phone numbers are not kept in the store here: configure tenants.numbers_from")
        owner_check = check_tenant_key(tenant) if tenant is not None else None
        keys = []
        for number in numbers:
            key = _number_key(number)
            if key is None:
                raise ValueError(f"phone number id {_describe_key(number)} is not a phone number id (digits)")
            keys.append(key)
        with self._numbers_lock:
            store.invalidate()
            current = dict(self._read_map(self._map_token()))
            present = [k for k in keys if k in current]
            for key in present:
                if owner_check is not None and current[key] != owner_check:
                    raise ValueError(f"phone number id {key} belongs to tenant {current[key]!r}, not {owner_check!r}")
            if not present:
                return current
            for key in present:
                del current[key]
            store.put_token(json.dumps(current, separators=(",", ":"), sort_keys=True))
            self._numbers_memo = None
        logger.info("removed %d phone number(s) from the numbers map at %s", len(present), store.source)
        return current

    async def aremove_numbers(self, numbers: Iterable[str], *, tenant: str | None = None) -> dict[str, str]:
        """Async :meth:`remove_numbers` (runs in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.remove_numbers, list(numbers), tenant=tenant)

    async def aadd_numbers(self, numbers: Mapping[str, str], *, replace: bool = False) -> dict[str, str]:
        """Async :meth:`add_numbers` (runs in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.add_numbers, numbers, replace=replace)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close every tenant's provider and the one shared store client. Idempotent."""
        with self._lock:
            self._closed = True
            providers = [slot.provider for slot in self._lru.values()]
            self._lru.clear()
            self._order.clear()
        for provider in providers:
            provider.close()
        if self._backend is not None:
            self._backend.close()
        if self._numbers_store is not None:
            self._numbers_store.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        with self._lock:
            self._closed = True
            providers = [slot.provider for slot in self._lru.values()]
            self._lru.clear()
            self._order.clear()
        for provider in providers:
            await provider.aclose()
        if self._backend is not None:
            await self._backend.aclose()
        if self._numbers_store is not None:
            await self._numbers_store.aclose()

    def __enter__(self) -> TenantProviders:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> TenantProviders:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<TenantProviders source={self.source!r} cached={len(self._lru)}/{self.max_cached}>"


def _describe_number(number: str) -> str:
    return number if _NUMBER_RE.fullmatch(number) else _describe_key(number)


def _number_key(phone_number_id: object) -> str | None:
    """The map key for a phone number id (ints accepted), or None when it cannot be one."""
    if isinstance(phone_number_id, int) and not isinstance(phone_number_id, bool):
        phone_number_id = str(phone_number_id)
    if isinstance(phone_number_id, str) and _NUMBER_RE.fullmatch(phone_number_id):
        return phone_number_id
    return None


def _checked_numbers(numbers: Mapping[Any, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, tenant in numbers.items():
        key = _number_key(number)
        if key is None:
            raise ValueError(f"phone number id {_describe_key(number)} is not a phone number id (digits)")
        out[key] = check_tenant_key(tenant)
    return out


def _map_malformed(exc: SecretMalformed) -> SecretMalformed:
    return SecretMalformed(
        f"cannot read the numbers map ({exc}); it must be one line of compact JSON without whitespace, "
        '{"<phone number id>":"<tenant>",...} (what add_numbers writes; jq -c makes it)',
        source=None,
    )


def _parse_numbers(token: Token) -> dict[str, str]:
    """The numbers map a store secret holds: a JSON object of phone number id -> tenant key."""
    try:
        data = json.loads(token.reveal())
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SecretMalformed(
            "the numbers map is not a JSON object of phone number id -> tenant key", source=token.source
        )
    out: dict[str, str] = {}
    for number, tenant in data.items():
        if _number_key(number) is None:
            raise SecretMalformed(
                f"the numbers map has a key that is not a phone number id (digits): {_describe_key(number)}",
                source=token.source,
            )
        if not isinstance(tenant, str) or not _TENANT_RE.fullmatch(tenant) or ".." in tenant:
            raise SecretMalformed(
                f"the numbers map gives phone number id {number} an invalid tenant key ({_describe_key(tenant)})",
                source=token.source,
            )
        out[number] = tenant
    return out


# -- configuration --------------------------------------------------------------------------------------------
_TENANTS_KEYS = ("token", "max_cached", "numbers", "numbers_from")


def _tenant_fields(value: Any, path: str) -> list[tuple[str, str]]:
    """Every (dotted field, string) under ``value`` that holds ``{tenant}``."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        if PLACEHOLDER in value:
            found.append((path, value))
    elif isinstance(value, dict):
        for k, v in value.items():
            found.extend(_tenant_fields(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(_tenant_fields(v, f"{path}[{i}]"))
    return found


def _template_backend(token: Section) -> tuple[Backend, TenantTemplate, CachePolicy]:
    """The shared backend, the template and the cache policy of ``tenants.token``."""
    from ._factory import cache_policy_from_config, provider_from_section
    from ._registry import get_backend_class

    name = token.get_str("backend")
    try:
        backend_cls = get_backend_class(name)
    except ConfigError as exc:
        raise token.error("backend", str(exc)) from None
    options = token.get_section(name)
    example = _EXAMPLES.get(name, f"{name}: {{<its name option>: ...{PLACEHOLDER}...}}")
    if not backend_cls.tenant_options:
        token.fail("backend", f"the {name!r} backend cannot keep one secret per tenant (it has no tenant template)")
    found = _tenant_fields(options.data, options.path)
    allowed = backend_cls.tenant_options
    if not found:
        options.fail(
            None,
            f"the tenants template must contain {PLACEHOLDER} in the secret's name "
            f"({' or '.join(name + '.' + o for o in allowed)}), e.g. {example}",
        )
    if len(found) > 1:
        raise ConfigError(
            f"{PLACEHOLDER} must be in exactly one option, the secret's name; found it in "
            f"{' and '.join(f for f, _ in found)}",
            source=token.source,
            field=found[0][0],
        )
    field, pattern = found[0]
    option = field[len(options.path) + 1 :]
    if option not in allowed:
        raise ConfigError(
            f"{PLACEHOLDER} can only be in the secret's name ({' or '.join(name + '.' + o for o in allowed)}), "
            f"e.g. {example}",
            source=token.source,
            field=field,
        )
    try:
        template = TenantTemplate(option, pattern)
    except ValueError as exc:
        raise ConfigError(str(exc), source=token.source, field=field) from None
    data = dict(token.data)
    section_data = dict(options.data)
    section_data[option] = template.name(_STAND_IN)
    data[name] = section_data
    backend = provider_from_section(Section(data, path=token.path, source=token.source), cache=False)
    assert isinstance(backend, Backend)
    policy = cache_policy_from_config(token)
    if policy is None:
        backend.close()
        token.fail(
            "cache", "a tenant's token is always cached (one caching provider per tenant): set a short ttl instead"
        )
    return backend, template, policy


def _numbers_from_config(section: Section) -> dict[str, str]:
    numbers = section.raw("numbers")
    if not isinstance(numbers, dict):
        section.fail(
            "numbers", 'must be a mapping of phone number id -> tenant key, e.g. numbers: {"106540352242922": "acme"}'
        )
    out: dict[str, str] = {}
    for number, tenant in numbers.items():
        key = _number_key(number)
        field = f"numbers.{number}"
        if key is None:
            section.fail(field, "is not a phone number id (the digits Meta gives the number); quote it in YAML")
        if key in out:
            section.fail(field, "is listed twice")
        if isinstance(tenant, int) and not isinstance(tenant, bool):
            tenant = str(tenant)  # a WABA id written unquoted
        try:
            out[key] = check_tenant_key(tenant)
        except InvalidTenantKey as exc:
            section.fail(field, str(exc))
    return out


def tenants_from_config(
    config: Mapping[str, Any],
    *,
    source: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TenantProviders:
    """:class:`TenantProviders` from a config mapping: the whole config (with ``tenants:``) or that section."""
    from ._config import check_top_level
    from ._factory import provider_from_section

    if not isinstance(config, Mapping):
        raise ConfigError("the config must be a mapping", source=source)
    data = dict(config)
    if "tenants" in data:
        check_top_level(data, source=source)
        data = data["tenants"]
        if data is None:
            raise ConfigError("the section is empty: it needs token:", source=source, field="tenants")
    elif "token" not in data:
        raise ConfigError(
            "required section is missing, e.g. tenants: {token: {backend: vault, vault: {path: "
            "whatsapp/tenants/{tenant}}}}",
            source=source,
            field="tenants",
        )
    section = Section(data, path="tenants", source=source)
    section.reject_unknown(_TENANTS_KEYS)
    token = section.get_section("token", required=True)
    max_cached = section.get_int("max_cached", DEFAULT_MAX_CACHED, min=1)
    numbers = None
    numbers_store = None
    if section.raw("numbers") is not None and section.raw("numbers_from") is not None:
        section.fail("numbers_from", "give numbers (in this file) or numbers_from (a map kept in the store), not both")
    if section.raw("numbers") is not None:
        numbers = _numbers_from_config(section)
    backend, template, policy = _template_backend(token)
    try:
        if section.raw("numbers_from") is not None:
            numbers_store = provider_from_section(section.get_section("numbers_from"))
        return TenantProviders(
            backend,
            template=template,
            policy=policy,
            max_cached=max_cached,
            numbers=numbers,
            numbers_store=numbers_store,
            clock=clock,
        )
    except BaseException:
        backend.close()
        raise


def load_tenants(path: str | os.PathLike[str] | None = None) -> TenantProviders:
    """Load the YAML config (``path``, else ``$TOKENSTORE_CONFIG``, else ``./tokenstore.yaml``) and build the
    :class:`TenantProviders` of its ``tenants:`` section.
    """
    from ._config import find_config_path, load_config

    file = find_config_path(path)
    config = load_config(file)
    if config.get("tenants") is None:
        raise ConfigError(
            "no tenants: section (one token per customer business); see config.example.yaml",
            source=str(file),
            field="tenants",
        )
    return tenants_from_config(config, source=str(file))

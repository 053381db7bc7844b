"""Onboard a customer from Embedded Signup: the 30-second code becomes the customer's stored business token.

A Tech Provider's frontend hands the server the code Embedded Signup gave the customer's browser. The code lives
30 seconds and works once, so :func:`onboard` turns it into the stored token at once:

1. exchange it (:meth:`~sender.GraphTokenClient.exchange_code`) and inspect the business token (``debug_token``);
2. validate it: valid, of this app, ``whatsapp_business_messaging``, at least one WABA in its granular scopes.
   A token that fails is never stored, and revoked when Graph still calls it valid (nobody would hold it);
3. derive the tenant key of each WABA (default: the WABA id; one tenant per WABA when the token covers several),
   checked like every tenant key before any store call;
4. write it into each tenant's secret (``put_token(value, expected=<what was there>)``: a concurrent writer is
   noticed), read it back bypassing every cache, and compare;
5. list each WABA's phone numbers (``GET /{waba_id}/phone_numbers``) and add them to the routing map where the map
   lives in the store (``tenants.numbers_from``); a number owned by another tenant is reported, never moved;
6. a second onboarding of the same tenant replaced its token: once every replica's cache must have the new one
   (the tenants' cache ttl + refresh_ahead, or ``revoke_old_after``), revoke the old one - only while the store
   holds the new token, and never a token another tenant's secret still holds (:func:`revoke_replaced_tokens`,
   which a web service runs after answering).

Nothing here ever shows the code or a token: messages carry fingerprints.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenstore import SecretNotFound, Token, TokenProvider, WriteConflict, check_tenant_key

from ._exceptions import SendError
from ._models import WHATSAPP_MESSAGING_SCOPE, TokenInfo

if TYPE_CHECKING:
    from tokenstore import TenantProviders

    from ._lifecycle import GraphTokenClient

__all__ = [
    "OnboardedTenant",
    "Onboarding",
    "OnboardingRefused",
    "onboard",
    "revoke_replaced_tokens",
    "validate_business_token",
]

_WRITE_ATTEMPTS = 3


class OnboardingRefused(Exception):
    """The onboarding stopped; the message says what was (not) stored. Never carries the code or a token."""


@dataclass
class OnboardedTenant:
    """One tenant an onboarding wrote (fingerprints only)."""

    tenant: str
    waba_id: str
    version: str | None = None
    #: the phone number ids Graph lists for the WABA
    numbers: list[str] = field(default_factory=list)
    #: whether they are in the routing map kept in the store now
    numbers_added: bool = False
    #: the fingerprint of the token this onboarding replaced (None: the tenant is new)
    replaced: str | None = None
    revoked: bool = False
    revoke_note: str | None = None


@dataclass
class Onboarding:
    """What :func:`onboard` did. ``token`` is the new business token (a :class:`tokenstore.Token`: its ``repr``
    shows a fingerprint); the replaced tokens are kept (unshown) for :func:`revoke_replaced_tokens`."""

    token: Token
    app_id: str | None
    waba_ids: list[str]
    expires_at: dt.datetime | None
    tenants: list[OnboardedTenant] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    replaced_tokens: dict[str, Token] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str:
        return self.token.fingerprint

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "app_id": self.app_id,
            "waba_ids": list(self.waba_ids),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(timespec="seconds"),
            "tenants": [dict(t.__dict__) for t in self.tenants],
            "warnings": list(self.warnings),
        }


def validate_business_token(info: TokenInfo, app_id: str | None) -> list[str]:
    """Why a token from Embedded Signup cannot be stored; empty when it can."""
    problems = []
    if not info.is_valid:
        problems.append(f"Graph says the business token is not valid: {info.error or 'no reason given'}")
    if app_id and info.app_id and info.app_id != app_id:
        problems.append(f"the business token belongs to app {info.app_id}, not this app {app_id}")
    if info.is_valid and WHATSAPP_MESSAGING_SCOPE not in info.scopes:
        problems.append(
            f"the business token lacks the {WHATSAPP_MESSAGING_SCOPE} permission: it could not send messages "
            "(check the permissions in the Embedded Signup configuration)"
        )
    elif info.is_valid and not info.waba_ids:
        problems.append(
            f"the business token's {WHATSAPP_MESSAGING_SCOPE} names no WhatsApp Business Account: the customer "
            "shared none during Embedded Signup"
        )
    return problems


def _raw(provider: TokenProvider) -> TokenProvider:
    """The store behind a tenant's caching provider (reads and writes that bypass the cache)."""
    inner = getattr(provider, "inner", None)
    return inner if isinstance(inner, TokenProvider) else provider


def _read(store: TokenProvider) -> Token | None:
    store.invalidate()
    try:
        return store.get_token()
    except SecretNotFound:  # UnknownTenant included: a new tenant
        return None


def _discard(graph: GraphTokenClient, token: Token, info: TokenInfo | None) -> str:
    if info is not None and not info.is_valid:
        return "Graph already calls it invalid"
    try:
        graph.revoke(token)
    except SendError as exc:
        return f"revoking it failed ({type(exc).__name__}: {exc}); it stays valid until it expires"
    return "it was revoked"


def onboard(
    code: str,
    graph: GraphTokenClient,
    tenants: TenantProviders,
    *,
    tenant_for_waba: Callable[[str], str] | None = None,
    add_numbers: bool = True,
    revoke_old: bool = True,
    revoke_old_after: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    report: Callable[[str, str], None] | None = None,
) -> Onboarding:
    """Turn an Embedded Signup ``code`` into the customer's stored token (the steps are in the module docstring).

    ``tenant_for_waba(waba_id) -> tenant key`` (default: the WABA id). ``add_numbers``: add the WABAs' phone
    numbers to the routing map kept in the store. ``revoke_old``: revoke the token a second onboarding replaced,
    after ``revoke_old_after`` seconds (None: the tenants' cache ttl + refresh_ahead) waited with ``sleep``;
    pass False and call :func:`revoke_replaced_tokens` later to answer the customer first.

    Raises :class:`~sender.SignupCodeRejected` (expired, used or another app's code) or
    :class:`~sender.AppCredentialsError` from the exchange, :class:`OnboardingRefused` when the token fails
    validation or the store did not keep it, tokenstore errors when the store fails.
    """
    say = report or (lambda step, text: None)
    issued = graph.exchange_code(code)
    token = issued.token
    info: TokenInfo | None = None
    try:
        info = graph.inspect(token)
        say("exchanged", f"business token {token.fingerprint} for WABA {', '.join(info.waba_ids) or '-'}")
        problems = validate_business_token(info, graph.app_id)
        if problems:
            raise OnboardingRefused(
                f"nothing was stored; the business token {token.fingerprint} {_discard(graph, token, info)}: "
                + "; ".join(problems)
            )
        keys: dict[str, str] = {}
        for waba_id in info.waba_ids:
            keys[waba_id] = check_tenant_key(tenant_for_waba(waba_id) if tenant_for_waba else waba_id)
    except OnboardingRefused:
        raise
    except BaseException:
        if info is None or info.is_valid:  # a token nobody will store must not stay live
            _discard(graph, token, info)
        raise

    result = Onboarding(token=token, app_id=info.app_id, waba_ids=list(info.waba_ids), expires_at=info.expires_at)
    for waba_id, tenant in keys.items():
        if any(t.tenant == tenant for t in result.tenants):
            continue  # two WABAs of one tenant: one secret
        entry = OnboardedTenant(tenant=tenant, waba_id=waba_id)
        try:
            store = _raw(tenants.provider(tenant))
            old = _store_token(store, token, entry, result.tenants)
        except Exception as exc:
            if not result.tenants:  # stored nowhere: a live token nobody holds must not remain
                note = _discard(graph, token, info)
                say("discarded", f"business token {token.fingerprint}: {note}")
                if isinstance(exc, OnboardingRefused):
                    raise OnboardingRefused(f"{exc}; the business token {note}") from exc
            raise
        tenants.invalidate(tenant)
        if old is not None and old != token:
            entry.replaced = old.fingerprint
            result.replaced_tokens[tenant] = old
        result.tenants.append(entry)
        say("stored", f"tenant {tenant}: {token.fingerprint} (version {entry.version or '-'}), read back: matches")

    for entry in result.tenants:
        _add_numbers(graph, tenants, token, entry, result, add_numbers, say)
    if revoke_old and result.replaced_tokens:
        revoke_replaced_tokens(
            result,
            graph,
            tenants,
            revoke_old_after=revoke_old_after,
            sleep=sleep,
            tenant_for_waba=tenant_for_waba,
            report=say,
        )
    return result


def _store_token(
    store: TokenProvider, token: Token, entry: OnboardedTenant, done: list[OnboardedTenant]
) -> Token | None:
    """Write ``token`` into the tenant's secret and read it back; the token it replaced (None: none)."""
    for _ in range(_WRITE_ATTEMPTS):
        old = _read(store)
        if old == token:
            entry.version = old.version if old is not None else None
            return old
        try:
            entry.version = (
                store.put_token(token.reveal()) if old is None else store.put_token(token.reveal(), expected=old)
            )
        except WriteConflict:
            continue  # another onboarding of this tenant wrote meanwhile: replace what is there now
        back = _read(store)
        if back != token:
            stored = ", ".join(t.tenant for t in done) or "none"
            raise OnboardingRefused(
                f"tenant {entry.tenant}: the business token {token.fingerprint} was written (version "
                f"{entry.version or '-'}) but the store reads back {back.fingerprint if back else 'nothing'}: "
                f"another writer, replica lag or a cache in front of the store; tenants stored before: {stored}"
            )
        return old
    raise OnboardingRefused(
        f"tenant {entry.tenant}: its secret kept changing while the business token {token.fingerprint} was being "
        "written: another onboarding of the same customer is running; try again"
    )


def _add_numbers(
    graph: GraphTokenClient,
    tenants: TenantProviders,
    token: Token,
    entry: OnboardedTenant,
    result: Onboarding,
    add: bool,
    say: Callable[[str, str], None],
) -> None:
    try:
        numbers = graph.phone_numbers(entry.waba_id, access_token=token)
    except SendError as exc:
        result.warnings.append(
            f"tenant {entry.tenant}: listing the phone numbers of WABA {entry.waba_id} failed "
            f"({type(exc).__name__}: {exc}); add them to the routing map by hand"
        )
        return
    entry.numbers = [str(n["id"]) for n in numbers]
    if not add or not entry.numbers:
        say("numbers", f"tenant {entry.tenant}: {', '.join(entry.numbers) or 'none'} (not added)")
        return
    try:
        tenants.add_numbers({number: entry.tenant for number in entry.numbers})
    except TypeError:  # the map is in the config file or code, not in the store
        result.warnings.append(
            f"tenant {entry.tenant}: phone numbers {', '.join(entry.numbers)} were not added: the routing map is "
            "not kept in the store (tenants.numbers_from); add them where it lives"
        )
        return
    except ValueError as exc:
        result.warnings.append(f"tenant {entry.tenant}: phone numbers not added: {exc}")
        return
    entry.numbers_added = True
    say("numbers", f"tenant {entry.tenant}: {', '.join(entry.numbers)} added to the routing map")


def revoke_replaced_tokens(
    onboarding: Onboarding,
    graph: GraphTokenClient,
    tenants: TenantProviders,
    *,
    revoke_old_after: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    tenant_for_waba: Callable[[str], str] | None = None,
    report: Callable[[str, str], None] | None = None,
) -> list[str]:
    """Revoke the tokens an onboarding replaced, once every replica's cache must hold the new one; returns the
    fingerprints revoked. A replaced token is left alone while the tenant's store does not hold the new token
    (somebody changed it since), or while the secret of another tenant among the old token's WABAs holds it."""
    say = report or (lambda step, text: None)
    if not onboarding.replaced_tokens:
        return []
    policy = tenants.policy
    wait = revoke_old_after if revoke_old_after is not None else policy.ttl + policy.refresh_ahead
    say("waiting", f"{wait:g} s before revoking the replaced token(s), so every replica has the new one")
    if wait > 0:
        sleep(wait)
    revoked: list[str] = []
    entries = {t.tenant: t for t in onboarding.tenants}
    for tenant, old in onboarding.replaced_tokens.items():
        entry = entries[tenant]
        held = _read(_raw(tenants.provider(tenant)))
        if held != onboarding.token:
            entry.revoke_note = (
                f"not revoked: the store now holds {held.fingerprint if held else 'nothing'}, not the new token"
            )
            continue
        if old.fingerprint in revoked:
            entry.revoked, entry.revoke_note = True, "revoked (with another tenant's)"
            continue
        try:
            info = graph.inspect(old)
            if not info.is_valid:
                entry.revoke_note = "not needed: Graph already calls it invalid"
                continue
            keeper = _still_held_elsewhere(old, info, onboarding, tenants, tenant_for_waba)
            if keeper is not None:
                entry.revoke_note = f"not revoked: tenant {keeper}'s secret still holds it"
                continue
            graph.revoke(old, access_token=onboarding.token)
        except SendError as exc:
            entry.revoke_note = f"revoking it failed ({type(exc).__name__}: {exc}): revoke it with tokenstore revoke"
            continue
        entry.revoked = True
        revoked.append(old.fingerprint)
        say("revoked", f"tenant {tenant}: {old.fingerprint} (the token it replaced)")
    return revoked


def _still_held_elsewhere(
    old: Token,
    info: TokenInfo,
    onboarding: Onboarding,
    tenants: TenantProviders,
    tenant_for_waba: Callable[[str], str] | None,
) -> str | None:
    """A tenant outside this onboarding whose secret holds ``old`` (a multi-WABA token), or None."""
    mine = {t.tenant for t in onboarding.tenants}
    for waba_id in info.waba_ids:
        try:
            tenant = check_tenant_key(tenant_for_waba(waba_id) if tenant_for_waba else waba_id)
        except ValueError:
            continue
        if tenant in mine:
            continue
        if _read(_raw(tenants.provider(tenant))) == old:
            return tenant
    return None

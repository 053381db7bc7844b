"""The fleet: every tenant's token, checked in Graph batches, and tenants whose customer left.

* :func:`check_tenants` reads every tenant's token from the store (``TenantProviders.tenants()``, a bounded
  number of reads at once) and inspects them with Graph batch calls (:meth:`GraphTokenClient.inspect_many`:
  50 per call, so 10,000 tenants take 200 calls): one :class:`TenantCheck` per tenant and a summary whose
  exit code is the worst. ``tokenstore check --all`` prints it.
* A tenant is **disconnected** when Graph calls its token invalid and the store holds no newer one (it is
  read again to be sure), or when its store entry holds the disconnected marker
  (:class:`tokenstore.Disconnected`): :func:`mark_disconnected` writes it when the customer uninstalled the
  app (:func:`handle_account_update` takes the ``account_update`` webhook event), in place of the dead
  token, so every replica sees it and a new onboarding (a ``put_token``) clears it.

Statuses and exit codes (``tokenstore`` CLI codes): ``ok`` 0, ``warning`` 5 (expires within ``warn_days``,
a USER token), ``problem`` 1 (another app's token, no messaging permission), ``disconnected`` 1, ``error``
3 (the store failed) or 4 (Graph failed). The worst, in the order 0 < 5 < 1 < 4 < 3, is the summary's.
Nothing here returns, logs or raises a token value: results carry fingerprints.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tokenstore import Disconnected, Token, TokenProvider, TokenStoreError, WriteNotSupported, disconnected_marker

from ._batch import DEFAULT_BATCH_CONCURRENCY, MAX_BATCH
from ._exceptions import SendError
from ._lifecycle import GraphTokenClient
from ._models import WHATSAPP_MESSAGING_SCOPE, TokenInfo
from ._refresh import RefreshRefused, RefreshResult, assess_token, refresh_stored_token

__all__ = [
    "DisconnectOutcome",
    "FleetCheck",
    "FleetRefresh",
    "OffboardResult",
    "TenantCheck",
    "TenantRefresh",
    "TenantStatus",
    "TenantStore",
    "account_update_of",
    "check_tenants",
    "disconnect_reason",
    "handle_account_update",
    "mark_disconnected",
    "offboard_tenant",
    "refresh_tenants",
    "worst_exit_code",
]

logger = logging.getLogger("sender.fleet")

TenantStatus = Literal["ok", "warning", "problem", "disconnected", "error"]

EXIT_OK, EXIT_PROBLEM, EXIT_BACKEND, EXIT_API, EXIT_WARNING = 0, 1, 3, 4, 5
#: severity of each exit code, for "the worst": ok < warning < problem < Graph error < store error
_RANK = {EXIT_OK: 0, EXIT_WARNING: 1, EXIT_PROBLEM: 2, EXIT_API: 3, EXIT_BACKEND: 4}
_STATUSES: tuple[TenantStatus, ...] = ("ok", "warning", "problem", "disconnected", "error")
#: store reads in flight at once, by default
DEFAULT_READ_CONCURRENCY = 16

UNINSTALLED = "PARTNER_APP_UNINSTALLED"


class TenantStore(Protocol):
    """What the fleet functions need of :class:`tokenstore.TenantProviders`."""

    def tenants(self) -> Iterable[str]: ...

    def get_token(self, tenant: str) -> Token: ...

    def put_token(self, tenant: str, value: str) -> str | None: ...

    def invalidate(self, tenant: str, token: Token | None = None) -> None: ...

    def provider(self, tenant: str) -> TokenProvider: ...


def worst_exit_code(codes: Iterable[int]) -> int:
    """The worst of ``codes`` (0 < 5 < 1 < 4 < 3; unknown codes count as worst); 0 for none."""
    return max(codes, key=lambda c: _RANK.get(c, 99), default=EXIT_OK)


def disconnect_reason(info: TokenInfo) -> str:
    """The marker reason for a token Graph calls invalid: ``TOKEN_EXPIRED`` (463), ``TOKEN_REVOKED`` (460),
    ``PARTNER_APP_UNINSTALLED`` (458: the app is no longer installed), else ``TOKEN_INVALID``."""
    subcode = info.error_subcode
    if subcode == 463 or (info.expires_at is not None and info.is_expired()):
        return "TOKEN_EXPIRED"
    return {460: "TOKEN_REVOKED", 458: UNINSTALLED}.get(subcode or 0, "TOKEN_INVALID")


@dataclass(frozen=True)
class TenantCheck:
    """One tenant's verdict. ``fingerprint`` identifies the token checked; no value is kept."""

    tenant: str
    status: TenantStatus
    exit_code: int
    info: TokenInfo | None = None
    fingerprint: str | None = None
    source: str | None = None
    version: str | None = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: why the check could not be made (store or Graph failure), for status ``error``
    error: str | None = None
    #: why the tenant is disconnected (the stored marker, or what Graph said about the token)
    disconnected: Disconnected | None = None
    now: dt.datetime | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """One JSON line of ``tokenstore check --all --json`` (no secret in it)."""
        info = self.info
        left = info.expires_in(self.now) if info is not None else None
        return {
            "tenant": self.tenant,
            "status": self.status,
            "exit_code": self.exit_code,
            "valid": None if info is None else info.is_valid,
            "type": None if info is None else info.type,
            "app_id": None if info is None else info.app_id,
            "scopes": [] if info is None else list(info.scopes),
            WHATSAPP_MESSAGING_SCOPE: None if info is None else WHATSAPP_MESSAGING_SCOPE in info.scopes,
            "waba_ids": [] if info is None else list(info.waba_ids),
            "expires_at": None if info is None or info.expires_at is None else info.expires_at.isoformat(),
            "never_expires": None if info is None else info.never_expires,
            "expires_in_days": None if left is None else round(left.total_seconds() / 86400, 3),
            "fingerprint": self.fingerprint,
            "source": self.source,
            "version": self.version,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "error": self.error,
            "disconnected": None if self.disconnected is None else self.disconnected.to_dict(),
        }


@dataclass(frozen=True)
class FleetCheck:
    """Every tenant's :class:`TenantCheck` (sorted by tenant) and the summary."""

    tenants: tuple[TenantCheck, ...]
    #: Graph calls made (batch calls, plus single inspections of tokens that changed while checking)
    graph_calls: int = 0

    @property
    def exit_code(self) -> int:
        return worst_exit_code(t.exit_code for t in self.tenants)

    def count(self, status: TenantStatus) -> int:
        return sum(1 for t in self.tenants if t.status == status)

    @property
    def disconnected(self) -> list[str]:
        return [t.tenant for t in self.tenants if t.status == "disconnected"]

    def summary(self) -> dict[str, Any]:
        """The last JSON line of ``tokenstore check --all --json``."""
        code = self.exit_code
        worst = "ok"
        for check in self.tenants:
            if check.exit_code == code:
                worst = check.status
                break
        return {
            "summary": True,
            "status": worst,
            "exit_code": code,
            "tenants": len(self.tenants),
            "counts": {status: self.count(status) for status in _STATUSES},
            "graph_calls": self.graph_calls,
        }


def _read_fresh(tenants: TenantStore, tenant: str) -> Token:
    """The tenant's token as the store holds it now: read through the store behind the tenant's cache (a
    failing store raises instead of a cached token being served stale), and the cache told to forget."""
    provider = tenants.provider(tenant)
    inner = getattr(provider, "inner", None)
    store = inner if isinstance(inner, TokenProvider) else provider
    tenants.invalidate(tenant)
    store.invalidate()
    return store.get_token()


def read_tokens(
    tenants: TenantStore, keys: Sequence[str], *, concurrency: int = DEFAULT_READ_CONCURRENCY
) -> list[Token | TokenStoreError]:
    """Each tenant's token read from the store now (a bounded number of reads in flight), or the store's
    error for that tenant."""

    def read(tenant: str) -> Token | TokenStoreError:
        try:
            return _read_fresh(tenants, tenant)
        except TokenStoreError as exc:
            return exc

    if len(keys) <= 1 or concurrency <= 1:
        return [read(k) for k in keys]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(keys)), thread_name_prefix="tenant-read") as pool:
        return list(pool.map(read, keys))


def _verdict(
    tenant: str, token: Token, info: TokenInfo, *, app_id: str, warn_days: float, now: dt.datetime
) -> TenantCheck:
    common: dict[str, Any] = {
        "info": info,
        "fingerprint": token.fingerprint,
        "source": token.source,
        "version": token.version,
        "now": now,
    }
    problems, warnings = assess_token(info, app_id=app_id, warn_within=warn_days * 86400, now=now)
    if not info.is_valid:
        seen = info.expires_at if info.expires_at is not None and info.is_expired(now) else now
        reason = Disconnected(reason=disconnect_reason(info), at=int(seen.timestamp()))
        return TenantCheck(
            tenant, "disconnected", EXIT_PROBLEM, problems=tuple(problems), disconnected=reason, **common
        )
    if problems:
        return TenantCheck(
            tenant, "problem", EXIT_PROBLEM, problems=tuple(problems), warnings=tuple(warnings), **common
        )
    if warnings:
        return TenantCheck(tenant, "warning", EXIT_WARNING, warnings=tuple(warnings), **common)
    return TenantCheck(tenant, "ok", EXIT_OK, **common)


def _failed(tenant: str, error: BaseException, token: Token | None, now: dt.datetime) -> TenantCheck:
    code = EXIT_API if isinstance(error, SendError) else EXIT_BACKEND
    return TenantCheck(
        tenant,
        "error",
        code,
        fingerprint=None if token is None else token.fingerprint,
        source=None if token is None else token.source,
        error=f"{type(error).__name__}: {error}",
        now=now,
    )


def _marked(tenant: str, token: Token, marker: Disconnected, now: dt.datetime) -> TenantCheck:
    return TenantCheck(
        tenant,
        "disconnected",
        EXIT_PROBLEM,
        source=token.source,
        version=token.version,
        problems=(
            f"the customer is disconnected ({marker.reason} since {marker.since.isoformat()}): ask them to "
            "reconnect (onboard again)",
        ),
        disconnected=marker,
        now=now,
    )


def check_tenants(
    tenants: TenantStore,
    graph: GraphTokenClient,
    *,
    keys: Iterable[str] | None = None,
    warn_days: float = 7,
    batch_size: int = MAX_BATCH,
    concurrency: int = DEFAULT_BATCH_CONCURRENCY,
    read_concurrency: int = DEFAULT_READ_CONCURRENCY,
    now: dt.datetime | None = None,
) -> FleetCheck:
    """Check every tenant's token (``keys``, default ``tenants.tenants()``): read it from the store, inspect
    it in Graph batch calls (``batch_size`` per call, ``concurrency`` calls in flight), judge it like
    ``tokenstore check``. A token Graph calls invalid is read again: a newer one in the store is inspected
    instead (a refresh raced the check); none is ``disconnected``. One tenant's failure (store or Graph) is
    that tenant's ``error``, never the others'. Raises only when the tenants cannot be listed or the app
    secret cannot be read."""
    now = now or dt.datetime.now(dt.timezone.utc)
    names = sorted(set(tenants.tenants() if keys is None else keys))
    read = read_tokens(tenants, names, concurrency=read_concurrency)
    results: dict[str, TenantCheck] = {}
    to_inspect: list[tuple[str, Token]] = []
    for tenant, got in zip(names, read, strict=True):
        if isinstance(got, TokenStoreError):
            results[tenant] = _failed(tenant, got, None, now)
            continue
        marker = disconnected_marker(got)
        if marker is not None:
            results[tenant] = _marked(tenant, got, marker, now)
        else:
            to_inspect.append((tenant, got))
    outcomes = graph.inspect_many([t for _, t in to_inspect], batch_size=batch_size, concurrency=concurrency)
    calls = math.ceil(len(to_inspect) / batch_size)
    for (tenant, token), outcome in zip(to_inspect, outcomes, strict=True):
        if not isinstance(outcome, TokenInfo):
            results[tenant] = _failed(tenant, outcome, token, now)
            continue
        if not outcome.is_valid:
            # the store may hold a newer token by now (a refresh ran meanwhile): judge that one instead
            try:
                again = _read_fresh(tenants, tenant)
            except TokenStoreError as exc:
                results[tenant] = _failed(tenant, exc, token, now)
                continue
            if again.reveal() != token.reveal():
                marker = disconnected_marker(again)
                if marker is not None:
                    results[tenant] = _marked(tenant, again, marker, now)
                    continue
                token = again
                calls += 1
                try:
                    outcome = graph.inspect(again)
                except (SendError, TokenStoreError, ValueError) as exc:
                    results[tenant] = _failed(tenant, exc, again, now)
                    continue
        results[tenant] = _verdict(tenant, token, outcome, app_id=graph.app_id, warn_days=warn_days, now=now)
    checks = tuple(results[name] for name in names)
    for check in checks:
        if check.status == "disconnected":
            logger.warning(
                "tenant %s is disconnected (%s)", check.tenant, check.disconnected and check.disconnected.reason
            )
    return FleetCheck(tenants=checks, graph_calls=calls)


# -- refreshing every due tenant -------------------------------------------------------------------------------

RefreshStatus = Literal["refreshed", "not-due", "skipped", "disconnected", "refused", "error"]
_REFRESH_STATUSES: tuple[RefreshStatus, ...] = ("refreshed", "not-due", "skipped", "disconnected", "refused", "error")
#: tenants refreshed at once, by default (each may wait ``revoke_old_after`` before revoking: the waits overlap)
DEFAULT_REFRESH_CONCURRENCY = 32


@dataclass(frozen=True)
class TenantRefresh:
    """What ``refresh --all`` did for one tenant (fingerprints only)."""

    tenant: str
    status: RefreshStatus
    exit_code: int
    #: what :func:`sender.refresh_stored_token` did (also for a refused refresh, as far as it got)
    result: RefreshResult | None = None
    #: why it was not refreshed (not due, skipped, disconnected, refused, error)
    detail: str | None = None
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """One JSON line of ``tokenstore refresh --all --json``."""
        out: dict[str, Any] = {
            "tenant": self.tenant,
            "status": self.status,
            "exit_code": self.exit_code,
            "detail": self.detail,
            "fingerprint": self.fingerprint,
        }
        if self.result is not None:
            out.update(self.result.to_dict())
        return out


@dataclass(frozen=True)
class FleetRefresh:
    """Every tenant's :class:`TenantRefresh` (sorted by tenant) and the summary."""

    tenants: tuple[TenantRefresh, ...]
    #: the check that chose the due tenants
    check: FleetCheck | None = field(default=None, repr=False)

    @property
    def exit_code(self) -> int:
        return worst_exit_code(t.exit_code for t in self.tenants)

    def count(self, status: RefreshStatus) -> int:
        return sum(1 for t in self.tenants if t.status == status)

    def summary(self) -> dict[str, Any]:
        """The last JSON line of ``tokenstore refresh --all --json``."""
        code = self.exit_code
        worst = next((t.status for t in self.tenants if t.exit_code == code), "ok") if code else "ok"
        return {
            "summary": True,
            "status": worst,
            "exit_code": code,
            "tenants": len(self.tenants),
            "counts": {status: self.count(status) for status in _REFRESH_STATUSES},
            "revoked": sum(1 for t in self.tenants if t.result is not None and t.result.revoked),
            "revoke_failed": sum(1 for t in self.tenants if t.result is not None and t.result.revoke_failed),
        }


def _due(check: TenantCheck, within: float | None, force: bool, now: dt.datetime) -> TenantRefresh | None:
    """None when ``check``'s tenant is to be refreshed; else what to report for it."""
    if check.status == "disconnected":
        return TenantRefresh(
            check.tenant,
            "disconnected",
            EXIT_PROBLEM,
            detail="; ".join(check.problems) or "disconnected",
            fingerprint=check.fingerprint,
        )
    if check.status == "error":
        return TenantRefresh(check.tenant, "error", check.exit_code, detail=check.error, fingerprint=check.fingerprint)
    if check.status == "problem":
        detail = "nothing was changed: " + "; ".join(check.problems)
        return TenantRefresh(check.tenant, "refused", EXIT_PROBLEM, detail=detail, fingerprint=check.fingerprint)
    info = check.info
    assert info is not None
    if info.never_expires and not force:
        return TenantRefresh(
            check.tenant,
            "skipped",
            EXIT_OK,
            detail="the token never expires (refreshing would make it a 60-day one; force=True / --force to do it)",
            fingerprint=check.fingerprint,
        )
    left = info.expires_in(now)
    if within is not None and left is not None and left > dt.timedelta(seconds=within):
        return TenantRefresh(
            check.tenant,
            "not-due",
            EXIT_OK,
            detail=f"it expires later than {within / 86400:g} days",
            fingerprint=check.fingerprint,
        )
    return None


def refresh_tenants(
    tenants: TenantStore,
    graph: GraphTokenClient,
    *,
    keys: Iterable[str] | None = None,
    if_expiring_within: float | None = None,
    revoke_old_after: float | None = None,
    wait_reason: str | None = None,
    force: bool = False,
    sleep: Callable[[float], None] | None = None,
    now: Callable[[], dt.datetime] | None = None,
    batch_size: int = MAX_BATCH,
    concurrency: int = DEFAULT_BATCH_CONCURRENCY,
    refresh_concurrency: int = DEFAULT_REFRESH_CONCURRENCY,
    report: Callable[[str, str, str], None] | None = None,
) -> FleetRefresh:
    """Refresh every due tenant's token with :func:`sender.refresh_stored_token` (its provider from
    ``tenants.provider(tenant)``; compare-and-set writes, so replicas racing on a tenant leave one token).

    Which tenants are due comes from one :func:`check_tenants` pass (Graph batch calls): valid tokens
    expiring within ``if_expiring_within`` seconds (None: every valid token); never-expiring tokens are
    skipped unless ``force``; disconnected, refused (another app's, no messaging permission) and failed
    tenants are reported and left alone. Up to ``refresh_concurrency`` refreshes run at once, so their
    ``revoke_old_after`` waits overlap. One tenant's failure never stops the others. ``report(tenant, step,
    text)`` follows each refresh's steps. ``sleep``/``now``: as for :func:`refresh_stored_token`."""
    import time

    clock = now or (lambda: dt.datetime.now(dt.timezone.utc))
    check = check_tenants(tenants, graph, keys=keys, batch_size=batch_size, concurrency=concurrency, now=clock())
    outcomes: dict[str, TenantRefresh] = {}
    due: list[str] = []
    for item in check.tenants:
        verdict = _due(item, if_expiring_within, force, clock())
        if verdict is None:
            due.append(item.tenant)
        else:
            outcomes[item.tenant] = verdict

    def one(tenant: str) -> TenantRefresh:
        def say(step: str, text: str) -> None:
            if report is not None:
                report(tenant, step, text)

        try:
            result = refresh_stored_token(
                tenants.provider(tenant),
                graph,
                if_expiring_within=if_expiring_within,
                revoke_old_after=revoke_old_after,
                wait_reason=wait_reason,
                force=force,
                sleep=sleep or time.sleep,
                now=clock,
                report=say,
            )
        except RefreshRefused as exc:
            done = exc.result
            return TenantRefresh(
                tenant,
                "refused",
                EXIT_PROBLEM,
                result=done,
                detail=str(exc),
                fingerprint=None if done is None else done.old_fingerprint,
            )
        except (TokenStoreError, SendError) as exc:
            code = EXIT_API if isinstance(exc, SendError) else EXIT_BACKEND
            return TenantRefresh(tenant, "error", code, detail=f"{type(exc).__name__}: {exc}")
        if result.action != "refreshed":
            return TenantRefresh(
                tenant, "not-due", EXIT_OK, result=result, detail="not due", fingerprint=result.old_fingerprint
            )
        code = EXIT_API if result.revoke_failed else EXIT_OK
        return TenantRefresh(tenant, "refreshed", code, result=result, fingerprint=result.new_fingerprint)

    if due:
        workers = max(1, min(refresh_concurrency, len(due)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tenant-refresh") as pool:
            for tenant, outcome in zip(due, pool.map(one, due), strict=True):
                outcomes[tenant] = outcome
    names = [c.tenant for c in check.tenants]
    return FleetRefresh(tenants=tuple(outcomes[n] for n in names), check=check)


# -- customers who left -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisconnectOutcome:
    """What :func:`mark_disconnected` did: ``marked`` (the marker was written), or why not (``reason``)."""

    tenant: str
    marked: bool
    #: ``"marked"``, ``"already disconnected"``, ``"token still valid"`` (a stale event: not marked)
    detail: str
    marker: Disconnected | None = None
    #: the fingerprint of the dead token the marker replaced
    replaced: str | None = None


def mark_disconnected(
    tenants: TenantStore,
    tenant: str,
    *,
    graph: GraphTokenClient | None,
    reason: str = UNINSTALLED,
    at: float | None = None,
) -> DisconnectOutcome:
    """Record that ``tenant``'s customer is gone: the disconnected marker replaces its token in the store.

    With ``graph``, the stored token is inspected first and a token Graph still calls valid is left alone
    (``marked`` False, ``detail`` "token still valid"): an uninstall event that arrives after the customer
    reinstalled and onboarded again must not disconnect them. Without it (``graph=None``) the marker is
    written unconditionally. Idempotent. Raises the store's errors (``WriteNotSupported`` for a read-only
    store; ``UnknownTenant`` for a tenant the store does not hold)."""
    marker = Disconnected.now(reason, clock=at)
    current = _read_fresh(tenants, tenant)
    existing = disconnected_marker(current)
    if existing is not None:
        return DisconnectOutcome(tenant, False, "already disconnected", marker=existing)
    if graph is not None:
        info = graph.inspect(current)
        if info.is_valid:
            logger.warning(
                "tenant %s: not marked disconnected (%s): its token %s is still valid (a stale event?)",
                tenant,
                reason,
                current.fingerprint,
            )
            return DisconnectOutcome(tenant, False, "token still valid")
    tenants.put_token(tenant, marker.value)
    tenants.invalidate(tenant)
    logger.warning("tenant %s marked disconnected (%s); token %s replaced", tenant, reason, current.fingerprint)
    return DisconnectOutcome(tenant, True, "marked", marker=marker, replaced=current.fingerprint)


@dataclass(frozen=True)
class OffboardResult:
    """What :func:`offboard_tenant` did (fingerprints only)."""

    tenant: str
    fingerprint: str | None
    source: str | None
    revoked: bool
    #: why it was not revoked (already invalid, already disconnected) or the revoke's error
    revoke_note: str | None
    revoke_failed: bool
    deleted: bool
    #: why the secret was not deleted (the store cannot; the revoke failed)
    delete_note: str | None
    #: the tenant's phone numbers taken out of the routing map kept in the store (``tenants.numbers_from``)
    numbers_removed: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """0 done; 4 the revoke failed (nothing deleted); 5 revoked but the store cannot delete the secret."""
        if self.revoke_failed:
            return EXIT_API
        return EXIT_OK if self.deleted else EXIT_WARNING

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["numbers_removed"] = list(self.numbers_removed)
        return out


def _unroute(tenants: TenantStore, tenant: str) -> tuple[str, ...]:
    """Take the tenant's numbers out of the routing map kept in the store (nothing when the map is not kept
    in the store: ``numbers:`` in the config is the operator's to edit)."""
    numbers_of = getattr(tenants, "numbers", None)
    remove = getattr(tenants, "remove_numbers", None)
    if numbers_of is None or remove is None:
        return ()
    mine = tuple(sorted(n for n, t in numbers_of().items() if t == tenant))
    if not mine:
        return ()
    try:
        remove(mine, tenant=tenant)
    except TypeError:  # the map is not kept in the store
        return ()
    return mine


def offboard_tenant(
    tenants: TenantStore, tenant: str, *, graph: GraphTokenClient, delete: bool = True
) -> OffboardResult:
    """Offboard ``tenant``: revoke its token at Graph (at once), then delete its secret where the store can
    (``TenantProviders.delete``; a store that cannot says so in ``delete_note`` and the exit code is 5), and
    takes its phone numbers out of the routing map kept in the store (``tenants.numbers_from``).
    A token Graph already calls invalid, or a disconnected marker, needs no revoke. When the revoke fails
    nothing is deleted: the token would stay valid with nobody holding it. Raises the store's errors
    (``UnknownTenant`` when the store holds no secret for the tenant)."""
    token = _read_fresh(tenants, tenant)
    marker = disconnected_marker(token)
    revoked, note, failed = False, None, False
    fingerprint = None if marker is not None else token.fingerprint
    if marker is not None:
        note = f"nothing to revoke: disconnected ({marker.reason}) since {marker.since.isoformat()}"
    else:
        try:
            info = graph.inspect(token)
            if not info.is_valid:
                note = f"not needed: Graph already calls it invalid ({info.error or 'no reason'})"
            else:
                revoked = graph.revoke(token)
        except SendError as exc:
            failed, note = True, f"{type(exc).__name__}: {exc}"
    deleted, delete_note = False, None
    if failed:
        delete_note = "not deleted: the token could not be revoked (it would stay valid with nobody holding it)"
    elif not delete:
        delete_note = "kept, as asked"
    else:
        delete_fn = getattr(tenants, "delete", None)
        try:
            if delete_fn is None:
                raise WriteNotSupported("these tenants cannot delete secrets")
            delete_fn(tenant)
            deleted = True
        except WriteNotSupported as exc:
            delete_note = f"not deleted: {exc}; remove the secret in the store yourself"
    removed = _unroute(tenants, tenant) if deleted else ()
    logger.warning(
        "tenant %s offboarded: token %s %s, secret %s",
        tenant,
        fingerprint or "-",
        "revoked" if revoked else (note or "-"),
        "deleted" if deleted else "kept",
    )
    return OffboardResult(tenant, fingerprint, token.source, revoked, note, failed, deleted, delete_note, removed)


def _field(event: Any, name: str) -> Any:
    if isinstance(event, Mapping):
        return event.get(name)
    return getattr(event, name, None)


def account_update_of(event: Any) -> tuple[str | None, str | None]:
    """``(event name, WABA id)`` of an ``account_update`` event: a :class:`sender.AccountUpdateEvent`
    (``event``, ``account_waba_id``), any object with ``event`` and ``waba_id``, the change's ``value``
    mapping (``waba_info.waba_id``), or a whole webhook payload (its first ``account_update`` change)."""
    if isinstance(event, Mapping) and isinstance(event.get("entry"), list):
        for entry in event["entry"]:
            if not isinstance(entry, Mapping):
                continue
            for change in entry.get("changes") or ():
                if isinstance(change, Mapping) and change.get("field") == "account_update":
                    value = change.get("value")
                    if isinstance(value, Mapping):
                        name, waba = account_update_of(value)
                        entry_id = entry.get("id")
                        return name, waba or (str(entry_id) if entry_id is not None else None)
        return None, None
    name = _field(event, "event")
    waba = _field(event, "account_waba_id")  # sender.AccountUpdateEvent: its entry id may be another object's
    info = _field(event, "waba_info")
    if waba is None and info is not None:
        waba = _field(info, "waba_id")
    if waba is None:
        waba = _field(event, "waba_id")
    return (name if isinstance(name, str) else None), (str(waba) if waba is not None else None)


def handle_account_update(
    tenants: TenantStore,
    event: Any,
    *,
    graph: GraphTokenClient | None,
    tenant_for_waba: Callable[[str], str] | None = None,
    at: float | None = None,
) -> DisconnectOutcome | None:
    """Act on an ``account_update`` webhook event: ``PARTNER_APP_UNINSTALLED`` marks the WABA's tenant
    disconnected (:func:`mark_disconnected`; the tenant key is the WABA id unless ``tenant_for_waba`` maps
    it). Other events return None. ``event``: a typed event (``.event``, ``.waba_id``), the change's
    ``value`` mapping, or the whole webhook payload."""
    name, waba = account_update_of(event)
    if name != UNINSTALLED:
        return None
    if not waba:
        raise ValueError("the account_update event names no WABA (entry id or value.waba_info.waba_id)")
    tenant = tenant_for_waba(waba) if tenant_for_waba is not None else waba
    return mark_disconnected(tenants, tenant, graph=graph, reason=UNINSTALLED, at=at)

"""Refresh a stored 60-day token before it dies: one implementation for the CLI, services and rotation handlers.

Meta's zero-downtime rotation is refresh, deploy, then revoke. Here "deploy" is the store: every service asks
it (through its cache) on every request, so once the new token is in the store and every replica's cache has
had time to pick it up, the old token can go. :func:`refresh_stored_token` (and its asyncio twin
:func:`arefresh_stored_token`) runs the steps against any :class:`tokenstore.TokenProvider` that can write:

1. read the token from the store (through ``read_back``: fresh, not from a cache) and inspect it
   (``debug_token`` with the app token); refuse one Graph no longer accepts, or of another app;
2. with ``if_expiring_within`` (seconds): when it expires later than that, or never, stop - nothing changed;
3. refuse a never-expiring token (refreshing makes it a 60-day one) unless ``force``;
4. exchange it (``fb_exchange_token``) and validate the new token (:func:`validate_refreshed`): valid, same
   app, ``whatsapp_business_messaging`` for the same WABAs, expiry in the future. A new token that fails is
   never written, and revoked when Graph still calls it valid (nobody would hold it otherwise);
5. write it with ``put_token(value, expected=old)``: the store's compare-and-set where it has one (see
   :attr:`tokenstore.TokenProvider.supports_compare_and_set`), so of several replicas refreshing the same
   token at once exactly one write wins; a process that loses (:class:`tokenstore.WriteConflict`, or the
   store already changed) revokes the token it obtained, which nobody else holds. Then read it back fresh
   and compare fingerprints;
6. with ``revoke_old_after`` (seconds): wait (``sleep``) until every replica's cache must have picked the new
   token up, read the store again, and revoke the old token only while the store holds the new one. When the
   store holds a third token instead (another writer replaced ours), ours is revoked and the old one left.

No process ever revokes the token the store holds. Any failure before step 5 leaves the store untouched.
The pieces are public too, for code that writes elsewhere than ``put_token`` (a rotation function staging
AWSPENDING): :func:`validate_current`, :func:`validate_refreshed`, :func:`exchange_and_validate`,
:func:`assess_token`. The logic is written once, as a generator of I/O steps that a sync and an async driver
perform; only fingerprints ever reach a message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tokenstore import Token, TokenProvider, WriteConflict, WriteNotSupported

from ._exceptions import SendError
from ._models import WHATSAPP_MESSAGING_SCOPE, IssuedToken, TokenInfo

if TYPE_CHECKING:
    from ._lifecycle import AsyncGraphTokenClient, GraphTokenClient

__all__ = [
    "RefreshRefused",
    "RefreshResult",
    "aexchange_and_validate",
    "arefresh_stored_token",
    "assess_token",
    "describe_token",
    "exchange_and_validate",
    "refresh_stored_token",
    "validate_current",
    "validate_refreshed",
]

DAY = 86400.0
T = TypeVar("T")


class RefreshRefused(Exception):
    """The refresh stopped before doing harm; the message says what was (and was not) done.

    ``result`` is what the refresh had done up to then (fingerprints only), e.g. whether the token it obtained
    was revoked because another writer won (``result.new_revoked``).
    """

    def __init__(self, message: str, *, result: RefreshResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class RefreshResult:
    """What a refresh did (fingerprints and dates only, never a token)."""

    source: str
    old_fingerprint: str
    old_expires_at: dt.datetime | None = None
    #: ``not-due``, ``refreshed``
    action: str = "not-due"
    new_fingerprint: str | None = None
    new_expires_at: dt.datetime | None = None
    version: str | None = None
    readback_fingerprint: str | None = None
    #: seconds waited before revoking (None: no revoke asked)
    waited: float | None = None
    revoked: bool = False
    #: why the old token was not revoked although asked (already invalid), or the revoke's error
    revoke_note: str | None = None
    revoke_failed: bool = False
    #: the token this refresh obtained was revoked again: it was not stored, or another writer replaced it
    new_revoked: bool = False
    #: the fingerprint the store held instead of ours when another writer won
    superseded_by: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["warnings"] = list(self.warnings)
        for key in ("old_expires_at", "new_expires_at"):
            value = out[key]
            out[key] = None if value is None else value.isoformat(timespec="seconds")
        return out


# -- judging tokens (no I/O) ---------------------------------------------------------------------------------
def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _when(value: dt.datetime | None) -> str:
    return "never" if value is None else value.isoformat(timespec="seconds")


def _plural(n: float, unit: str) -> str:
    return f"{n:g} {unit}" if n == 1 else f"{n:g} {unit}s"


def _span(seconds: float) -> str:
    return _plural(seconds / DAY, "day") if seconds >= DAY or seconds == 0 else f"{seconds:g} s"


def _hours_or_days(delta: dt.timedelta) -> str:
    hours = max(0.0, delta.total_seconds() / 3600)
    return _plural(round(hours), "hour") if hours < 48 else f"{hours / 24:.1f} days"


def describe_token(info: TokenInfo, now: dt.datetime | None = None) -> str:
    """One line about a token for progress reports: fingerprint, type, app, scope, WABAs, expiry."""
    now = now or _utcnow()
    wabas = ", ".join(info.waba_ids) or "-"
    scope = (
        f"{WHATSAPP_MESSAGING_SCOPE} (WABA {wabas})"
        if WHATSAPP_MESSAGING_SCOPE in info.scopes
        else f"no {WHATSAPP_MESSAGING_SCOPE}"
    )
    kind = f"{info.type or '?'} of app {info.app_id or '?'}"
    if info.expires_at is None:
        left = "never expires"
    elif info.expires_at <= now:
        left = f"expired {_when(info.expires_at)}"
    else:
        left = f"expires {_when(info.expires_at)}, in {_hours_or_days(info.expires_at - now)}"
    return f"{info.fingerprint} ({kind}, {scope}, {left})"


def assess_token(
    info: TokenInfo, *, app_id: str | None = None, warn_within: float = 7 * DAY, now: dt.datetime | None = None
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` about a token as ``debug_token`` describes it: invalid or expired, another app's,
    without ``whatsapp_business_messaging`` (problems); expiring within ``warn_within`` seconds, a short-lived
    USER token (warnings). What ``tokenstore check`` reports."""
    now = now or _utcnow()
    problems: list[str] = []
    warnings: list[str] = []
    if not info.is_valid:
        if info.expires_at is not None and info.is_expired(now):
            problems.append(
                f"the token expired at {_when(info.expires_at)}: it can no longer be refreshed; generate a new one "
                "and put it in with tokenstore rotate"
            )
        else:
            problems.append(f"the token is not valid: {info.error or 'Graph says it is not valid'}")
    if app_id and info.app_id and info.app_id != app_id:
        problems.append(f"the token belongs to app {info.app_id}, not the configured whatsapp.app_id {app_id}")
    if info.is_valid and WHATSAPP_MESSAGING_SCOPE not in info.scopes:
        problems.append(f"the token lacks the {WHATSAPP_MESSAGING_SCOPE} permission: it cannot send messages")
    left = info.expires_in(now)
    if info.is_valid and left is not None and left <= dt.timedelta(seconds=warn_within):
        advice = "tokenstore refresh" if info.type == "SYSTEM_USER" else "tokenstore rotate"
        warnings.append(f"the token expires in {_hours_or_days(left)}: refresh or rotate it ({advice})")
    if info.is_valid and info.type == "USER":
        warnings.append("a USER token (the dashboard's temporary tokens last under 24 hours): use a system user token")
    return problems, warnings


def validate_current(info: TokenInfo, app_id: str | None = None, now: dt.datetime | None = None) -> list[str]:
    """Why the stored token (as ``debug_token`` describes it) cannot be refreshed; empty when it can."""
    problems, _ = assess_token(info, app_id=app_id, now=now)
    if not info.is_valid:
        problems.append("a token Graph no longer accepts cannot be refreshed: generate one and use tokenstore rotate")
    return problems


def validate_refreshed(
    new: TokenInfo, old: TokenInfo, app_id: str | None = None, now: dt.datetime | None = None
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` about a token Graph issued in exchange for ``old``: any problem means it must
    not be stored (not valid, another app's, no messaging scope, fewer WABAs, expiry not in the future, the
    same token); warnings do not block (another type, an earlier expiry, a never-expiring token becoming a
    60-day one)."""
    now = now or _utcnow()
    problems = []
    if not new.is_valid:
        problems.append(f"Graph says the new token is not valid: {new.error or 'no reason given'}")
    if app_id and new.app_id and new.app_id != app_id:
        problems.append(f"the new token belongs to app {new.app_id}, not the configured whatsapp.app_id {app_id}")
    if new.is_valid and WHATSAPP_MESSAGING_SCOPE not in new.scopes:
        problems.append(f"the new token lacks the {WHATSAPP_MESSAGING_SCOPE} permission: it could not send messages")
    if new.is_valid and new.expires_at is not None and new.expires_at <= now:
        problems.append(f"the new token's expiry {_when(new.expires_at)} is not in the future")
    if old.app_id and new.app_id and new.app_id != old.app_id:
        problems.append(f"the new token belongs to app {new.app_id}, the stored one to app {old.app_id}")
    lost = [w for w in old.waba_ids if w not in new.waba_ids]
    if new.is_valid and WHATSAPP_MESSAGING_SCOPE in new.scopes and lost:
        problems.append(f"the new token's {WHATSAPP_MESSAGING_SCOPE} no longer covers WABA {', '.join(lost)}")
    if new.fingerprint is not None and new.fingerprint == old.fingerprint:
        problems.append("Graph answered with the same token")
    warnings = []
    if new.type != old.type:
        warnings.append(f"the new token is a {new.type} token, the stored one a {old.type} token")
    if old.expires_at is not None and new.expires_at is not None and new.expires_at < old.expires_at:
        warnings.append("the new token expires before the stored one did")
    if old.never_expires and new.expires_at is not None:
        warnings.append(
            f"the stored token never expired; the new one expires {_when(new.expires_at)}: run "
            "`tokenstore refresh --if-expiring-within 7 --revoke-old-after` daily (cron) from now on"
        )
    return problems, warnings


# -- the steps, as I/O requests a driver performs --------------------------------------------------------------
@dataclass(frozen=True)
class _Read:
    """Read the store fresh (not from a cache)."""


@dataclass(frozen=True)
class _Inspect:
    token: Token


@dataclass(frozen=True)
class _Exchange:
    token: Token


@dataclass(frozen=True)
class _Revoke:
    token: Token
    access_token: Token | None = None


@dataclass(frozen=True)
class _Put:
    token: Token
    expected: Token


@dataclass(frozen=True)
class _Sleep:
    seconds: float


_Op = _Read | _Inspect | _Exchange | _Revoke | _Put | _Sleep
_Flow = Generator[_Op, Any, T]


@dataclass(frozen=True)
class _Options:
    app_id: str | None
    if_expiring_within: float | None
    revoke_old_after: float | None
    wait_reason: str | None
    force: bool
    now: Callable[[], dt.datetime]
    report: Callable[[str, str], None]


def _discard_flow(token: Token, why: str) -> _Flow[str]:
    """Revoke a token this process obtained and nobody holds; the outcome, for messages."""
    try:
        yield _Revoke(token)
    except SendError as exc:
        return (
            f"revoking it failed ({type(exc).__name__}: {exc}): it stays valid until it expires, unknown to anyone; "
            "report it to the app's admin"
        )
    return f"it was revoked ({why})"


def _exchange_flow(
    old: Token, info: TokenInfo, app_id: str | None, now: dt.datetime, report: Callable[[str, str], None]
) -> _Flow[tuple[IssuedToken, TokenInfo, list[str]]]:
    issued: IssuedToken = yield _Exchange(old)
    new_info: TokenInfo = yield _Inspect(issued.token)
    report("exchanged", describe_token(new_info, now))
    problems, warnings = validate_refreshed(new_info, info, app_id, now)
    if problems:
        note = ""
        if new_info.is_valid and issued.token != old:
            outcome = yield from _discard_flow(issued.token, "it failed validation")
            note = f"; {outcome}"
        raise RefreshRefused(
            f"the new token {issued.fingerprint} was not written (the store still holds {old.fingerprint}, "
            f"which stays valid){note}: " + "; ".join(problems)
        )
    return issued, new_info, warnings


def _refresh_flow(store: TokenProvider, opts: _Options) -> _Flow[RefreshResult]:
    say = opts.report
    if not store.supports_write:
        raise WriteNotSupported(
            "this backend is read-only, so a refreshed token could not be stored: refresh it where the store is "
            "written, or use a writable backend",
            source=store.source,
        )
    old: Token = yield _Read()
    say("store", store.source)
    info: TokenInfo = yield _Inspect(old)
    result = RefreshResult(source=store.source, old_fingerprint=old.fingerprint, old_expires_at=info.expires_at)
    say("current", describe_token(info, opts.now()))
    problems = validate_current(info, opts.app_id, opts.now())
    if problems:
        raise RefreshRefused("nothing was changed: " + "; ".join(problems), result=result)
    if opts.if_expiring_within is not None:
        window = _span(opts.if_expiring_within)
        left = info.expires_in(opts.now())
        if left is None or left > dt.timedelta(seconds=opts.if_expiring_within):
            say("due", "no: " + ("it never expires" if left is None else f"it expires later than {window}"))
            return result
        say("due", f"yes: it expires within {window}")
    if info.never_expires and not opts.force:
        raise RefreshRefused(
            "nothing was changed: the stored token never expires, and refreshing would replace it with one that "
            "expires in 60 days (which then must be refreshed every 60 days); pass --force (force=True) if that "
            "is what you want",
            result=result,
        )
    try:
        issued, new_info, warnings = yield from _exchange_flow(old, info, opts.app_id, opts.now(), say)
    except RefreshRefused as exc:
        exc.result = result
        raise
    result.new_fingerprint = issued.fingerprint
    result.new_expires_at = new_info.expires_at
    result.warnings = warnings
    new = issued.token

    # -- write: at most one of several concurrent refreshes of this token wins --------------------------------
    current: Token = yield _Read()
    conflict: str | None = None
    if current != old:
        conflict = current.fingerprint
    else:
        try:
            result.version = yield _Put(new, old)
        except WriteConflict as exc:
            conflict = exc.current_fingerprint or "a newer token"
    if conflict is not None:
        result.superseded_by = conflict
        outcome = yield from _discard_flow(new, "nobody holds it")
        result.new_revoked = outcome.startswith("it was revoked")
        raise RefreshRefused(
            f"the store changed while refreshing (it now holds {conflict}, not {old.fingerprint}: another replica "
            f"refreshed or somebody rotated it): the new token {new.fingerprint} was not written and {outcome}; "
            "the old token was not revoked; run the command again to check the stored token",
            result=result,
        )
    back: Token = yield _Read()
    result.readback_fingerprint = back.fingerprint
    if back != new:
        yield from _superseded_flow(result, new, old, back, "read back")
        raise RefreshRefused(
            f"the new token {new.fingerprint} was written (version {result.version or '-'}) but the store reads "
            f"back {back.fingerprint}: another writer, replica lag or a cache in front of the store; the old token "
            "was not revoked: check the store" + _superseded_note(result),
            result=result,
        )
    result.action = "refreshed"
    say("written", f"version {result.version or '-'}, read back {back.fingerprint} from a fresh provider: matches")
    for warning in warnings:
        say("warning", warning)

    # -- revoke the old token once every replica has the new one ------------------------------------------------
    if opts.revoke_old_after is None:
        say("old token", f"{old.fingerprint} stays valid until {_when(info.expires_at)} (not revoked)")
        return result
    seconds = opts.revoke_old_after
    say("waiting", f"{seconds:g} s before revoking {old.fingerprint} ({opts.wait_reason or 'as asked'})")
    if seconds > 0:
        yield _Sleep(seconds)
    result.waited = seconds
    held: Token = yield _Read()
    if held != new:
        result.action = "superseded" if held != old else result.action
        yield from _superseded_flow(result, new, old, held, "after the wait")
        raise RefreshRefused(
            f"after the wait the store holds {held.fingerprint}, not the new token {new.fingerprint}: the old "
            f"token {old.fingerprint} was not revoked" + _superseded_note(result),
            result=result,
        )
    try:
        old_now: TokenInfo = yield _Inspect(old)
        if not old_now.is_valid:
            result.revoke_note = f"not needed: Graph already calls it invalid ({old_now.error or 'no reason'})"
            say("revoked", f"{old.fingerprint}: {result.revoke_note}")
            return result
        yield _Revoke(old, new)
    except SendError as exc:
        result.revoke_failed = True
        result.revoke_note = f"{type(exc).__name__}: {exc}"
        say("revoke", f"FAILED for {old.fingerprint}: {result.revoke_note}")
        return result
    result.revoked = True
    say("revoked", f"{old.fingerprint} (oauth/revoke: effective at once)")
    return result


def _superseded_flow(result: RefreshResult, new: Token, old: Token, held: Token, when: str) -> _Flow[None]:
    """The store holds ``held`` where ours was written. A third token (neither ours nor the old one) means
    another writer replaced ours: ours is held by nobody and is revoked. The old token back (a rollback, or a
    replica that lags) leaves both alone: ours may still appear."""
    if held == old:
        return
    result.superseded_by = held.fingerprint
    outcome = yield from _discard_flow(new, f"another writer replaced it ({when})")
    result.new_revoked = outcome.startswith("it was revoked")
    result.revoke_note = f"the new token {new.fingerprint}: {outcome}"


def _superseded_note(result: RefreshResult) -> str:
    if result.superseded_by is None:
        return ""
    return f"; another writer replaced ours with {result.superseded_by}: {result.revoke_note}"


# -- drivers -----------------------------------------------------------------------------------------------------
def _drive(flow: _Flow[T], perform: Callable[[_Op], Any]) -> T:
    reply: Any = None
    error: Exception | None = None
    try:
        while True:
            op = flow.throw(error) if error is not None else flow.send(reply)
            error = None
            try:
                reply = perform(op)
            except Exception as exc:  # handed to the flow at the failing step; it decides
                error = exc
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()


async def _adrive(flow: _Flow[T], perform: Callable[[_Op], Awaitable[Any]]) -> T:
    reply: Any = None
    error: Exception | None = None
    try:
        while True:
            op = flow.throw(error) if error is not None else flow.send(reply)
            error = None
            try:
                reply = await perform(op)
            except Exception as exc:
                error = exc
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()


def _fresh_reader(store: TokenProvider) -> Callable[[], Token]:
    def read() -> Token:
        store.invalidate()
        return store.get_token()

    return read


def _sync_performer(
    store: TokenProvider | None,
    graph: GraphTokenClient,
    read_back: Callable[[], Token] | None,
    sleep: Callable[[float], None],
) -> Callable[[_Op], Any]:
    read = read_back or (_fresh_reader(store) if store is not None else None)

    def perform(op: _Op) -> Any:
        if isinstance(op, _Read):
            assert read is not None
            return read()
        if isinstance(op, _Inspect):
            return graph.inspect(op.token)
        if isinstance(op, _Exchange):
            return graph.refresh(op.token)
        if isinstance(op, _Revoke):
            return graph.revoke(op.token, access_token=op.access_token)
        if isinstance(op, _Put):
            assert store is not None
            return store.put_token(op.token.reveal(), expected=op.expected)
        sleep(op.seconds)
        return None

    return perform


def _async_performer(
    store: TokenProvider | None,
    graph: AsyncGraphTokenClient,
    read_back: Callable[[], Awaitable[Token]] | None,
    sleep: Callable[[float], Awaitable[None]],
) -> Callable[[_Op], Awaitable[Any]]:
    async def fresh() -> Token:
        assert store is not None
        store.invalidate()
        return await store.aget_token()

    read = read_back or fresh

    async def perform(op: _Op) -> Any:
        if isinstance(op, _Read):
            return await read()
        if isinstance(op, _Inspect):
            return await graph.inspect(op.token)
        if isinstance(op, _Exchange):
            return await graph.refresh(op.token)
        if isinstance(op, _Revoke):
            return await graph.revoke(op.token, access_token=op.access_token)
        if isinstance(op, _Put):
            assert store is not None
            return await store.aput_token(op.token.reveal(), expected=op.expected)
        await sleep(op.seconds)
        return None

    return perform


def _options(
    graph: GraphTokenClient | AsyncGraphTokenClient,
    app_id: str | None,
    if_expiring_within: float | None,
    revoke_old_after: float | None,
    wait_reason: str | None,
    force: bool,
    now: Callable[[], dt.datetime] | None,
    report: Callable[[str, str], None] | None,
) -> _Options:
    for name, value in (("if_expiring_within", if_expiring_within), ("revoke_old_after", revoke_old_after)):
        if value is not None and (isinstance(value, bool) or not 0 <= value < float("inf")):
            raise ValueError(f"{name} must be a number of seconds, zero or more")
    return _Options(
        app_id=app_id if app_id is not None else graph.app_id,
        if_expiring_within=None if if_expiring_within is None else float(if_expiring_within),
        revoke_old_after=None if revoke_old_after is None else float(revoke_old_after),
        wait_reason=wait_reason,
        force=force,
        now=now or _utcnow,
        report=report or (lambda step, text: None),
    )


def refresh_stored_token(
    store: TokenProvider,
    graph: GraphTokenClient,
    *,
    app_id: str | None = None,
    if_expiring_within: float | None = None,
    revoke_old_after: float | None = None,
    wait_reason: str | None = None,
    force: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] | None = None,
    report: Callable[[str, str], None] | None = None,
    read_back: Callable[[], Token] | None = None,
) -> RefreshResult:
    """Refresh the token ``store`` holds (the steps are in this module's docstring) and return what was done.

    ``store``: any writable :class:`tokenstore.TokenProvider` (a backend, a caching provider, a tenant's
    provider); ``graph``: a :class:`~sender.GraphTokenClient` of the app; ``app_id`` (default
    ``graph.app_id``) is the app the token must belong to. ``if_expiring_within`` and ``revoke_old_after`` are
    seconds (None: always refresh; do not revoke the old token); ``wait_reason`` explains the wait in
    reports. ``sleep`` performs the wait, ``now`` is the clock tokens are judged by, ``report(step, text)`` is
    called as each step completes (steps: store, current, due, exchanged, written, warning, old token,
    waiting, revoked, revoke). ``read_back`` reads the store fresh, bypassing every cache (default:
    ``store.invalidate()`` then ``store.get_token()``).

    Raises :class:`RefreshRefused` (nothing harmful done; the message says whether the store was written),
    tokenstore errors when the store fails, sender errors when Graph does. A failed revoke of the old token
    does not raise: the result has ``revoke_failed`` and the reason in ``revoke_note``.
    """
    opts = _options(graph, app_id, if_expiring_within, revoke_old_after, wait_reason, force, now, report)
    return _drive(_refresh_flow(store, opts), _sync_performer(store, graph, read_back, sleep))


async def arefresh_stored_token(
    store: TokenProvider,
    graph: AsyncGraphTokenClient,
    *,
    app_id: str | None = None,
    if_expiring_within: float | None = None,
    revoke_old_after: float | None = None,
    wait_reason: str | None = None,
    force: bool = False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    now: Callable[[], dt.datetime] | None = None,
    report: Callable[[str, str], None] | None = None,
    read_back: Callable[[], Awaitable[Token]] | None = None,
) -> RefreshResult:
    """The asyncio twin of :func:`refresh_stored_token` (an :class:`~sender.AsyncGraphTokenClient`, the store's
    ``aget_token``/``aput_token``, an awaitable ``sleep`` and ``read_back``)."""
    opts = _options(graph, app_id, if_expiring_within, revoke_old_after, wait_reason, force, now, report)
    return await _adrive(_refresh_flow(store, opts), _async_performer(store, graph, read_back, sleep))


def exchange_and_validate(
    graph: GraphTokenClient,
    token: Token,
    info: TokenInfo | None = None,
    *,
    app_id: str | None = None,
    now: dt.datetime | None = None,
    report: Callable[[str, str], None] | None = None,
) -> tuple[IssuedToken, TokenInfo, list[str]]:
    """Steps 1, 3-4 for code that stores the new token itself (a rotation function staging it as AWSPENDING):
    inspect ``token`` (unless ``info`` is given) and refuse it as :func:`validate_current` does, exchange it,
    inspect and validate the new one (:func:`validate_refreshed`). Returns ``(issued, new_info, warnings)``;
    raises :class:`RefreshRefused` when either fails (a new token that failed is revoked when still valid).
    Never-expiring tokens are not refused here: decide that before calling."""
    return _drive(
        _validated_exchange_flow(token, info, app_id or graph.app_id, now, report),
        _sync_performer(None, graph, None, time.sleep),
    )


async def aexchange_and_validate(
    graph: AsyncGraphTokenClient,
    token: Token,
    info: TokenInfo | None = None,
    *,
    app_id: str | None = None,
    now: dt.datetime | None = None,
    report: Callable[[str, str], None] | None = None,
) -> tuple[IssuedToken, TokenInfo, list[str]]:
    """The asyncio twin of :func:`exchange_and_validate`."""
    return await _adrive(
        _validated_exchange_flow(token, info, app_id or graph.app_id, now, report),
        _async_performer(None, graph, None, asyncio.sleep),
    )


def _validated_exchange_flow(
    token: Token,
    info: TokenInfo | None,
    app_id: str | None,
    now: dt.datetime | None,
    report: Callable[[str, str], None] | None,
) -> _Flow[tuple[IssuedToken, TokenInfo, list[str]]]:
    moment = now or _utcnow()
    if info is None:
        info = yield _Inspect(token)
    problems = validate_current(info, app_id, moment)
    if problems:
        raise RefreshRefused("nothing was changed: " + "; ".join(problems))
    return (yield from _exchange_flow(token, info, app_id, moment, report or (lambda step, text: None)))

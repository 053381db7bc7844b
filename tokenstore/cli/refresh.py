"""``tokenstore refresh``: exchange the stored 60-day token for a new one before it dies, with no failed send.

Meta's zero-downtime rotation is refresh, deploy, then revoke. Here "deploy" is the store: every service
asks it (through its cache) on every request, so once the new token is in the store and every replica's
cache has had time to pick it up, the old token can go. The steps, in order, are in :data:`EPILOG`; any
failure before the write leaves the store untouched, and the old token is only revoked after the new one is
read back from the store, the wait is over and the store still holds it. Safe to run from cron with
``--if-expiring-within``: when the token is not due it exits 0 after one read-only ``debug_token`` call.
Only fingerprints are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import ConfigError, WriteNotSupported
from ._common import (
    EXIT_API,
    EXIT_OK,
    EXIT_PROBLEM,
    add_config_option,
    add_json_option,
    command,
    emit,
    error,
    non_negative,
)

if TYPE_CHECKING:
    import os

    from sender import TokenInfo

HELP = "exchange the stored token for a new 60-day one before it expires: validate, put, read back, revoke the old"
MESSAGING_SCOPE = "whatsapp_business_messaging"
EPILOG = """\
steps (any failure before step 5 leaves the store untouched):
  1. read the token from the store and inspect it (debug_token with the app token)
  2. with --if-expiring-within DAYS: when it expires later than that, or never, stop: exit 0, nothing changed
  3. refuse a never-expiring token (refreshing makes it a 60-day one) unless --force
  4. exchange it (oauth/access_token, fb_exchange_token, set_token_expires_in_60_days=true) and validate
     the new token: valid, same app, whatsapp_business_messaging for the same WABAs, expiry in the future
  5. check the store still holds the old token, put_token the new one, read it back through a fresh,
     uncached provider and compare fingerprints
  6. with --revoke-old-after [SECONDS]: wait until every replica's cache must have picked the new token up
     (default: this config's token.cache ttl + refresh_ahead), check the store still holds it, and revoke
     the old token (oauth/revoke). Without it the old token stays valid until its own expiry.

exit codes:
  0  refreshed (and the old token revoked when asked), or not due with --if-expiring-within
  1  refused: the stored token is invalid or expired, never expires (without --force), the new token
     failed validation, the store changed meanwhile, or the read-back did not match; nothing was revoked
  2  config or usage error (e.g. whatsapp.app_id or the app_secret: section missing)
  3  the secret store failed (read, write or read-back), or it is read-only
  4  the Graph API refused or failed a call (AppCredentialsError: the app id or secret was rejected).
     If the revoke fails, the new token is already stored and in use: revoke the old one later with
     `tokenstore revoke`

cron, daily: tokenstore refresh --if-expiring-within 7 --revoke-old-after
Only fingerprints are printed, never a token or the app secret."""

#: the value of a bare ``--revoke-old-after``: wait the configured ttl + refresh_ahead
DEFAULT_WAIT = "default"


class RefreshRefused(Exception):
    """The refresh stopped before doing harm; the message says what was (not) done."""


@dataclass
class Refresh:
    """What a refresh did (fingerprints and dates only)."""

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
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("old_expires_at", "new_expires_at"):
            value = out[key]
            out[key] = None if value is None else value.isoformat(timespec="seconds")
        return out


def _seconds(text: str) -> float | str:
    if text == DEFAULT_WAIT:  # argparse converts a string const too: a bare --revoke-old-after
        return DEFAULT_WAIT
    return non_negative("seconds")(text)


_days_arg = non_negative("days")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "refresh", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_option(parser)
    parser.add_argument(
        "--if-expiring-within",
        type=_days_arg,
        metavar="DAYS",
        help="only refresh when the token expires within DAYS days (exit 0 and change nothing otherwise)",
    )
    parser.add_argument(
        "--revoke-old-after",
        type=_seconds,
        nargs="?",
        const=DEFAULT_WAIT,
        metavar="SECONDS",
        help="revoke the old token after this wait (alone: token.cache ttl + refresh_ahead, so every replica "
        "has picked up the new one first)",
    )
    parser.add_argument(
        "--force", action="store_true", help="refresh a never-expiring token too (the new one expires in 60 days)"
    )
    add_json_option(parser)
    parser.set_defaults(func=command(run))


def _when(value: dt.datetime | None) -> str:
    return "never" if value is None else value.isoformat(timespec="seconds")


def _left(value: dt.datetime | None, now: dt.datetime) -> str:
    if value is None:
        return "never expires"
    seconds = (value - now).total_seconds()
    if seconds <= 0:
        return f"expired {_when(value)}"
    hours = seconds / 3600
    return f"expires {_when(value)}, in " + (f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.1f} days")


def _summary(info: TokenInfo, now: dt.datetime) -> str:
    wabas = ", ".join(info.waba_ids) or "-"
    scope = f"{MESSAGING_SCOPE} (WABA {wabas})" if MESSAGING_SCOPE in info.scopes else f"no {MESSAGING_SCOPE}"
    kind = f"{info.type or '?'} of app {info.app_id or '?'}"
    return f"{info.fingerprint} ({kind}, {scope}, {_left(info.expires_at, now)})"


def revoke_wait(config: Mapping[str, Any], source: str | None, value: float | str) -> tuple[float, str]:
    """Seconds to wait before revoking, and why: ``value``, or for :data:`DEFAULT_WAIT` the config's
    ``token.cache`` ttl + refresh_ahead (0 when the cache is off)."""
    if value != DEFAULT_WAIT:
        return float(value), "as given by --revoke-old-after"
    from .. import Section, cache_policy_from_config

    section = config.get("token")
    if not isinstance(section, Mapping):
        raise ConfigError("required section is missing; it names the token's backend", source=source, field="token")
    policy = cache_policy_from_config(Section(dict(section), path="token", source=source))
    if policy is None:
        return 0.0, "token.cache is off here: every request reads the store"
    return (
        policy.ttl + policy.refresh_ahead,
        f"token.cache ttl {policy.ttl:g} s + refresh_ahead {policy.refresh_ahead:g} s, by when every replica with "
        "this cache policy has the new token; if yours cache longer, pass --revoke-old-after SECONDS",
    )


def _current_problems(info: TokenInfo, app_id: str | None, now: dt.datetime) -> list[str]:
    from .check import assess

    problems, _ = assess(info, app_id=app_id, now=now)
    if not info.is_valid:
        problems.append("a token Graph no longer accepts cannot be refreshed: generate one and use tokenstore rotate")
    return problems


def _new_problems(new: TokenInfo, old: TokenInfo, app_id: str | None, now: dt.datetime) -> tuple[list[str], list[str]]:
    problems = []
    if not new.is_valid:
        problems.append(f"Graph says the new token is not valid: {new.error or 'no reason given'}")
    if app_id and new.app_id and new.app_id != app_id:
        problems.append(f"the new token belongs to app {new.app_id}, not the configured whatsapp.app_id {app_id}")
    if new.is_valid and MESSAGING_SCOPE not in new.scopes:
        problems.append(f"the new token lacks the {MESSAGING_SCOPE} permission: it could not send messages")
    if new.is_valid and new.expires_at is not None and new.expires_at <= now:
        problems.append(f"the new token's expiry {_when(new.expires_at)} is not in the future")
    if old.app_id and new.app_id and new.app_id != old.app_id:
        problems.append(f"the new token belongs to app {new.app_id}, the stored one to app {old.app_id}")
    lost = [w for w in old.waba_ids if w not in new.waba_ids]
    if new.is_valid and MESSAGING_SCOPE in new.scopes and lost:
        problems.append(f"the new token's {MESSAGING_SCOPE} no longer covers WABA {', '.join(lost)}")
    if new.fingerprint == old.fingerprint:
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


def perform_refresh(
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
    *,
    if_expiring_within: float | None = None,
    revoke_old_after: float | str | None = None,
    force: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] | None = None,
    report: Callable[[str, str], None] | None = None,
) -> Refresh:
    """Refresh the stored token (see :data:`EPILOG`). ``report(step, text)`` is called as each step completes.

    Raises :class:`RefreshRefused` (nothing harmful done; the message says whether the store was written),
    tokenstore errors when the store fails, sender errors when Graph does. A failed revoke does not raise:
    the result has ``revoke_failed`` and the reason in ``revoke_note``.
    """
    from sender import SendError, read_config, settings_from_config

    from .. import provider_from_config
    from .check import graph_client

    clock = now or (lambda: dt.datetime.now(dt.timezone.utc))
    say = report or (lambda step, text: None)
    data, source = read_config(config)
    settings = settings_from_config(data, source=source, require_phone_number_id=False)
    wait: tuple[float, str] | None = None
    if revoke_old_after is not None:
        wait = revoke_wait(data, source, revoke_old_after)  # a config error surfaces before any call
    with graph_client(data, settings, purpose="refresh") as graph:
        with provider_from_config(data, source=source, cache=False) as store:
            if not store.supports_write:
                raise WriteNotSupported(
                    "this backend is read-only, so a refreshed token could not be stored: refresh it where the "
                    "store is written, or use a writable backend",
                    source=store.source,
                )
            old = store.get_token()
            say("store", store.source)
            info = graph.inspect(old)
            result = Refresh(source=store.source, old_fingerprint=old.fingerprint, old_expires_at=info.expires_at)
            say("current", _summary(info, clock()))
            problems = _current_problems(info, settings.app_id, clock())
            if problems:
                raise RefreshRefused("nothing was changed: " + "; ".join(problems))
            if if_expiring_within is not None:
                left = info.expires_in(clock())
                if left is None or left > dt.timedelta(days=if_expiring_within):
                    why = "it never expires" if left is None else f"it expires later than {if_expiring_within:g} days"
                    say("due", f"no: {why}")
                    return result
                say("due", f"yes: it expires within {if_expiring_within:g} days")
            if info.never_expires and not force:
                raise RefreshRefused(
                    "nothing was changed: the stored token never expires, and refreshing would replace it with one "
                    "that expires in 60 days (which then must be refreshed every 60 days); pass --force if that is "
                    "what you want"
                )
            issued = graph.refresh(old)
            new_info = graph.inspect(issued.token)
            result.new_fingerprint = issued.fingerprint
            result.new_expires_at = new_info.expires_at
            say("exchanged", _summary(new_info, clock()))
            problems, warnings = _new_problems(new_info, info, settings.app_id, clock())
            if problems:
                raise RefreshRefused(
                    f"the new token {issued.fingerprint} was not written (the store still holds {old.fingerprint}, "
                    "which stays valid): " + "; ".join(problems)
                )
            result.warnings = warnings
            current = store.get_token()
            if current != old:
                raise RefreshRefused(
                    f"the store changed while refreshing (it now holds {current.fingerprint}, not {old.fingerprint}): "
                    "the new token was not written; run the command again"
                )
            result.version = store.put_token(issued.token.reveal())
        with provider_from_config(data, source=source, cache=False) as fresh:
            back = fresh.get_token()
        result.readback_fingerprint = back.fingerprint
        if back.fingerprint != issued.fingerprint:
            raise RefreshRefused(
                f"the new token {issued.fingerprint} was written (version {result.version or '-'}) but the store "
                f"reads back {back.fingerprint}: another writer, replica lag or a cache in front of the store; the "
                "old token was not revoked: check the store"
            )
        result.action = "refreshed"
        say("written", f"version {result.version or '-'}, read back {back.fingerprint} from a fresh provider: matches")
        for warning in warnings:
            say("warning", warning)
        if wait is None:
            say("old token", f"{old.fingerprint} stays valid until {_when(info.expires_at)} (not revoked)")
            return result
        seconds, why = wait
        say("waiting", f"{seconds:g} s before revoking {old.fingerprint} ({why})")
        if seconds > 0:
            sleep(seconds)
        result.waited = seconds
        with provider_from_config(data, source=source, cache=False) as fresh:
            held = fresh.get_token()
        if held.fingerprint != issued.fingerprint:
            raise RefreshRefused(
                f"after the wait the store holds {held.fingerprint}, not the new token {issued.fingerprint}: the old "
                f"token {old.fingerprint} was not revoked"
            )
        try:
            old_now = graph.inspect(old)
            if not old_now.is_valid:
                result.revoke_note = f"not needed: Graph already calls it invalid ({old_now.error or 'no reason'})"
                say("revoked", f"{old.fingerprint}: {result.revoke_note}")
                return result
            graph.revoke(old, access_token=issued.token)
        except SendError as exc:
            result.revoke_failed = True
            result.revoke_note = f"{type(exc).__name__}: {exc}"
            say("revoke", f"FAILED for {old.fingerprint}: {result.revoke_note}")
            return result
        result.revoked = True
        say("revoked", f"{old.fingerprint} (oauth/revoke: effective at once)")
        return result


def run(args: argparse.Namespace) -> int:
    def text(step: str, value: str) -> None:
        print(f"{step + ':':<11} {value}", flush=True)

    def progress(step: str, value: str) -> None:
        if step == "waiting":
            print(f"tokenstore: {step}: {value}", file=sys.stderr, flush=True)

    try:
        result = perform_refresh(
            args.config,
            if_expiring_within=args.if_expiring_within,
            revoke_old_after=args.revoke_old_after,
            force=args.force,
            sleep=_sleep,
            report=progress if args.json else text,
        )
    except RefreshRefused as exc:
        error(f"refresh refused: {exc}")
        return emit(args, {}, code=EXIT_PROBLEM, status="refused", rows=[])
    code = EXIT_API if result.revoke_failed else EXIT_OK
    if result.revoke_failed:
        error(
            f"revoking {result.old_fingerprint} failed ({result.revoke_note}); the new token "
            f"{result.new_fingerprint} is stored: revoke the old one later (tokenstore revoke)"
        )
    if args.json:
        status = "revoke-failed" if result.revoke_failed else result.action
        emit(args, result.to_dict(), code=code, status=status)
    else:
        outcome = {
            "not-due": "not due: nothing was changed",
            "refreshed": "refreshed" + (", old token revoked" if result.revoked else ""),
        }[result.action]
        if result.revoke_failed:
            outcome = "refreshed, but revoking the old token failed: the new token is stored and in use"
        text("result", outcome)
    return code


#: the wait before revoking; tests replace it
_sleep: Callable[[float], None] = time.sleep

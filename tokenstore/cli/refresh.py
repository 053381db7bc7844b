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
from typing import TYPE_CHECKING, Any

from .. import ConfigError
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

    from sender import RefreshResult

    from .. import Token

HELP = "exchange the stored token for a new 60-day one before it expires: validate, put, read back, revoke the old"
EPILOG = """\
steps (any failure before step 5 leaves the store untouched):
  1. read the token from the store and inspect it (debug_token with the app token)
  2. with --if-expiring-within DAYS: when it expires later than that, or never, stop: exit 0, nothing changed
  3. refuse a never-expiring token (refreshing makes it a 60-day one) unless --force
  4. exchange it (oauth/access_token, fb_exchange_token, set_token_expires_in_60_days=true) and validate
     the new token: valid, same app, whatsapp_business_messaging for the same WABAs, expiry in the future
  5. check the store still holds the old token, put_token the new one with the store's compare-and-set
     where it has one (several replicas refreshing at once: one wins, the others revoke the token they
     obtained and exit 1), read it back through a fresh, uncached provider and compare fingerprints
  6. with --revoke-old-after [SECONDS]: wait until every replica's cache must have picked the new token up
     (default: this config's token.cache ttl + refresh_ahead), check the store still holds it, and revoke
     the old token (oauth/revoke). Without it the old token stays valid until its own expiry.

exit codes:
  0  refreshed (and the old token revoked when asked), or not due with --if-expiring-within
  1  refused: the stored token is invalid or expired, never expires (without --force), the new token
     failed validation (it is revoked), the store changed meanwhile (another replica won: our new token is
     revoked), or the read-back did not match; the old token was not revoked
  2  config or usage error (e.g. whatsapp.app_id or the app_secret: section missing)
  3  the secret store failed (read, write or read-back), or it is read-only
  4  the Graph API refused or failed a call (AppCredentialsError: the app id or secret was rejected).
     If the revoke fails, the new token is already stored and in use: revoke the old one later with
     `tokenstore revoke`

cron, daily: tokenstore refresh --if-expiring-within 7 --revoke-old-after
Only fingerprints are printed, never a token or the app secret."""

#: the value of a bare ``--revoke-old-after``: wait the configured ttl + refresh_ahead
DEFAULT_WAIT = "default"


def __getattr__(name: str) -> object:
    # the refresh itself lives in the library (sender.refresh_stored_token); these names stay importable here
    if name in ("RefreshRefused", "Refresh"):
        import sender

        return sender.RefreshRefused if name == "RefreshRefused" else sender.RefreshResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def perform_refresh(
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
    *,
    if_expiring_within: float | None = None,
    revoke_old_after: float | str | None = None,
    force: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] | None = None,
    report: Callable[[str, str], None] | None = None,
) -> RefreshResult:
    """``tokenstore refresh`` on a config: ``sender.refresh_stored_token`` with the config's token store (no
    cache), its app and a fresh uncached provider for every read. ``if_expiring_within`` is in days here (the
    CLI's unit); ``revoke_old_after`` seconds, or :data:`DEFAULT_WAIT` for the config's ttl + refresh_ahead.
    Raises what :func:`sender.refresh_stored_token` raises."""
    from sender import read_config, refresh_stored_token, settings_from_config

    from .. import provider_from_config
    from .check import graph_client

    data, source = read_config(config)
    settings = settings_from_config(data, source=source, require_phone_number_id=False)
    wait: tuple[float, str] | None = None
    if revoke_old_after is not None:
        wait = revoke_wait(data, source, revoke_old_after)  # a config error surfaces before any call

    def read_back() -> Token:
        with provider_from_config(data, source=source, cache=False) as fresh:
            return fresh.get_token()

    with (
        graph_client(data, settings, purpose="refresh") as graph,
        provider_from_config(data, source=source, cache=False) as store,
    ):
        return refresh_stored_token(
            store,
            graph,
            app_id=settings.app_id,
            if_expiring_within=None if if_expiring_within is None else if_expiring_within * 86400,
            revoke_old_after=None if wait is None else wait[0],
            wait_reason=None if wait is None else wait[1],
            force=force,
            sleep=sleep,
            now=now,
            report=report,
            read_back=read_back,
        )


def run(args: argparse.Namespace) -> int:
    def text(step: str, value: str) -> None:
        print(f"{step + ':':<11} {value}", flush=True)

    def progress(step: str, value: str) -> None:
        if step == "waiting":
            print(f"tokenstore: {step}: {value}", file=sys.stderr, flush=True)

    from sender import RefreshRefused

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
        done = exc.result.to_dict() if exc.result is not None else {}
        return emit(args, done, code=EXIT_PROBLEM, status="refused", rows=[])
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

"""``tokenstore check``: is the stored token valid, what is it, can it send, for which WABAs, when does it expire?

It fetches the token from the store and asks Graph's ``GET /debug_token`` about it, authenticated with the
app token (``whatsapp.app_id`` and the app secret from the ``app_secret:`` section, any backend), never with
the token inspecting itself. Exit codes are in :data:`EPILOG`; ``--json`` prints one object for monitoring
(also when the check itself fails).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_WARNING,
    add_config_option,
    add_json_option,
    command,
    emit,
    non_negative,
    plural,
)

if TYPE_CHECKING:
    from sender import GraphTokenClient, SenderSettings, TokenInfo
    from tokenstore import Token

HELP = "check the stored token with Graph's debug_token: validity, type, scopes, WABAs, expiry (never prints it)"
MESSAGING_SCOPE = "whatsapp_business_messaging"
EPILOG = """\
exit codes:
  0  ok: valid, of whatsapp.app_id, with whatsapp_business_messaging, not expiring within --warn-days
  1  problem: invalid, expired or revoked, another app's token, or without whatsapp_business_messaging
  2  config or usage error (e.g. whatsapp.app_id or the app_secret: section missing)
  3  the secret store failed (the token or the app secret could not be read)
  4  the Graph API refused or failed the call (AppCredentialsError: the app id or secret was rejected)
  5  warning: valid, but expires within --warn-days (default 7), a short-lived USER token, or
     whatsapp.api_version ends within 90 days (or has ended: Meta's dates are in sender's table)

--json prints one object on stdout: status ("ok", "warning", "problem" or "error"), exit_code, valid, type,
app_id, scopes, whatsapp_business_messaging, waba_ids, issued_at, expires_at (null: never or unknown), never_expires,
expires_in_seconds, expires_in_days, fingerprint, source, api_version, problems, warnings, error (null
unless the check failed, or the token's error as debug_token gives it).
A 60-day token is refreshed with `tokenstore refresh --if-expiring-within 7` (safe to run daily from cron)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_option(parser)
    parser.add_argument(
        "--warn-days",
        type=non_negative("days"),
        default=7,
        metavar="N",
        help="warn (exit 5) when the token expires within N days (default 7)",
    )
    add_json_option(parser, help="print one JSON object (for monitoring) instead of text")
    parser.set_defaults(func=command(run))


def _days(delta: dt.timedelta) -> str:
    hours = max(0.0, delta.total_seconds() / 3600)
    return plural(round(hours), "hour") if hours < 48 else f"{hours / 24:.1f} days"


def assess(
    info: TokenInfo, *, app_id: str | None, warn_days: float = 7, now: dt.datetime | None = None
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` about a token as debug_token describes it (:func:`sender.assess_token`)."""
    from sender import assess_token

    return assess_token(info, app_id=app_id, warn_within=warn_days * 86400, now=now)


def _when(value: dt.datetime | None, *, never: str = "never") -> str:
    return never if value is None else value.isoformat(timespec="seconds")


def _expiry(info: TokenInfo, now: dt.datetime | None) -> tuple[str, str]:
    """``expires_at`` and ``expires_in`` as text: "unknown" for a token Graph does not accept (debug_token
    then says nothing trustworthy about its expiry), "never" only for a valid never-expiring one."""
    if not info.is_valid and info.expires_at is None:
        return "unknown", "unknown"
    left = info.expires_in(now)
    return _when(info.expires_at), "never" if left is None else (
        "expired" if left.total_seconds() <= 0 else _days(left)
    )


def describe(info: TokenInfo, token: Token | None = None, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The facts to print as text (no secret)."""
    expires_at, expires_in = _expiry(info, now)
    return {
        "valid": info.is_valid,
        "type": info.type,
        "app_id": info.app_id,
        "application": info.application,
        "scopes": list(info.scopes),
        MESSAGING_SCOPE: MESSAGING_SCOPE in info.scopes,
        "waba_ids": list(info.waba_ids),
        "issued_at": _when(info.issued_at, never="-"),
        "expires_at": expires_at,
        "expires_in": expires_in,
        "fingerprint": info.fingerprint,
        "source": token.source if token is not None else None,
        "version": token.version if token is not None else None,
    }


def describe_json(info: TokenInfo, token: Token | None = None, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The facts for ``--json``: machine-friendly (null for never, seconds and days left)."""
    left = info.expires_in(now)
    data = info.to_dict()
    return {
        "valid": info.is_valid,
        "type": info.type,
        "app_id": info.app_id,
        "application": info.application,
        "scopes": list(info.scopes),
        MESSAGING_SCOPE: MESSAGING_SCOPE in info.scopes,
        "waba_ids": list(info.waba_ids),
        "granular_scopes": data["granular_scopes"],
        "issued_at": data["issued_at"],
        "expires_at": data["expires_at"],
        "never_expires": info.never_expires,
        "expires_in_seconds": None if left is None else int(left.total_seconds()),
        "expires_in_days": None if left is None else round(left.total_seconds() / 86400, 3),
        "error": data["error"],
        "fingerprint": info.fingerprint,
        "source": token.source if token is not None else None,
        "version": token.version if token is not None else None,
    }


def graph_client(config: Mapping[str, Any], settings: SenderSettings, *, purpose: str) -> GraphTokenClient:
    """A :class:`sender.GraphTokenClient` for the configured app (the app secret read without a cache);
    ConfigError naming ``whatsapp.app_id`` or ``app_secret`` when missing."""
    from sender import graph_client_from_config

    return graph_client_from_config(config, settings, purpose=purpose, cache=False)


def inspect_token(
    token: Token | str, config: Mapping[str, Any], settings: SenderSettings, *, purpose: str
) -> TokenInfo:
    """debug_token for ``token`` with the configured app token; ConfigError naming what is missing."""
    with graph_client(config, settings, purpose=purpose) as graph:
        return graph.inspect(token)


def _check(args: argparse.Namespace) -> tuple[int, dict[str, Any], list[tuple[str, Any]]]:
    from sender import api_version_warning, read_config, settings_from_config

    from .. import provider_from_config

    config, source = read_config(args.config)
    settings = settings_from_config(config, source=source, require_phone_number_id=False, warn_api_version=False)
    with provider_from_config(config, source=source, cache=False) as provider:
        token = provider.get_token()
    info = inspect_token(token, config, settings, purpose="check")
    now = dt.datetime.now(dt.timezone.utc)
    problems, warnings = assess(info, app_id=settings.app_id, warn_days=args.warn_days, now=now)
    version_notice = api_version_warning(settings.api_version, today=now.date())
    if version_notice:
        warnings.append(version_notice)
    code = EXIT_PROBLEM if problems else EXIT_WARNING if warnings else EXIT_OK
    status = {EXIT_OK: "ok", EXIT_WARNING: "warning", EXIT_PROBLEM: "problem"}[code]
    data = {"status": status, "exit_code": code, **describe_json(info, token, now=now)}
    data["api_version"] = settings.api_version
    data.update(problems=problems, warnings=warnings)
    rows: list[tuple[str, Any]] = []
    for key, value in describe(info, token, now=now).items():
        if isinstance(value, list):
            value = ", ".join(value)
        rows.append((key, "-" if value is None or value == "" else value))
    rows += [("problem", p) for p in problems] + [("warning", w) for w in warnings]
    return code, data, rows


def run(args: argparse.Namespace) -> int:
    code, data, rows = _check(args)
    return emit(args, data, code=code, status=data["status"], rows=rows)

"""``tokenstore check``: is the stored token valid, what is it, can it send, when does it expire?

It fetches the token from the store and asks Graph's ``GET /debug_token`` about it, authenticated with the
app token (``whatsapp.app_id`` and the app secret from the ``app_secret:`` section). Exit 0 when all is well,
1 when the token is invalid, belongs to another app or lacks ``whatsapp_business_messaging``, 5 when it
expires within ``--warn-days`` (default 7) or is a short-lived user token.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from ._common import EXIT_OK, EXIT_PROBLEM, EXIT_WARNING, add_config_option, guarded, print_kv

if TYPE_CHECKING:
    from sender import TokenInfo
    from sender._config import SenderSettings

    from .._token import Token

HELP = "check the stored token with Graph's debug_token: validity, type, scopes, expiry (never prints it)"
MESSAGING_SCOPE = "whatsapp_business_messaging"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("check", help=HELP, description=HELP)
    add_config_option(parser)
    parser.add_argument(
        "--warn-days", type=int, default=7, metavar="N", help="warn (exit 5) when the token expires within N days"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=guarded(run))


def assess(
    info: TokenInfo, *, app_id: str | None, warn_days: int = 7, now: dt.datetime | None = None
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` about a token as debug_token describes it."""
    problems: list[str] = []
    warnings: list[str] = []
    if not info.is_valid:
        reason = info.error_message or "Graph says it is not valid"
        code = f" (code {info.error_code}" + (f"/{info.error_subcode}" if info.error_subcode else "") + ")"
        problems.append(f"the token is not valid: {reason}{code if info.error_code else ''}")
    if app_id and info.app_id and info.app_id != app_id:
        problems.append(f"the token belongs to app {info.app_id}, not the configured whatsapp.app_id {app_id}")
    if info.is_valid and MESSAGING_SCOPE not in info.scopes:
        problems.append(f"the token lacks the {MESSAGING_SCOPE} permission: it cannot send messages")
    left = info.expires_in(now)
    if info.is_valid and left is not None and left <= dt.timedelta(days=warn_days):
        hours = max(0.0, left.total_seconds() / 3600)
        when = f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.1f} days"
        warnings.append(f"the token expires in {when}: refresh or rotate it (tokenstore rotate)")
    if info.is_valid and info.type == "USER":
        warnings.append("a USER token (the dashboard's temporary tokens last under 24 hours): use a system user token")
    return problems, warnings


def _when(value: dt.datetime | None, *, never: str = "never") -> str:
    return never if value is None else value.isoformat(timespec="seconds")


def describe(info: TokenInfo, token: Token | None = None) -> dict[str, Any]:
    """The facts to print (no secret)."""
    return {
        "valid": info.is_valid,
        "type": info.type,
        "app_id": info.app_id,
        "application": info.application,
        "scopes": list(info.scopes),
        MESSAGING_SCOPE: MESSAGING_SCOPE in info.scopes,
        "expires_at": _when(info.expires_at),
        "issued_at": _when(info.issued_at, never="-"),
        "fingerprint": info.fingerprint,
        "source": token.source if token is not None else None,
        "version": token.version if token is not None else None,
    }


def inspect_token(
    token: Token | str, config: Mapping[str, Any], settings: SenderSettings, *, purpose: str
) -> TokenInfo:
    """debug_token for ``token`` with the configured app token; ConfigError naming what is missing."""
    from sender import debug_token

    from .._factory import provider_from_config

    source = settings.source
    if not settings.app_id:
        raise ConfigError(
            f"required for {purpose}: debug_token authenticates with the app token ({{app-id}}|{{app-secret}})",
            source=source,
            field="whatsapp.app_id",
        )
    if config.get("app_secret") is None:
        raise ConfigError(
            f"required for {purpose}: the section naming the store of the Meta app secret",
            source=source,
            field="app_secret",
        )
    with provider_from_config(config, section="app_secret", source=source, cache=False) as secrets:
        app_secret = secrets.get_token()
    return debug_token(
        token,
        app_id=settings.app_id,
        app_secret=app_secret,
        base_url=settings.base_url,
        api_version=settings.api_version,
        timeout=settings.timeout,
        ca_bundle=settings.ca_bundle,
    )


def run(args: argparse.Namespace) -> int:
    from sender._config import read_config, settings_from_config

    from .._factory import provider_from_config

    config, source = read_config(args.config)
    settings = settings_from_config(config, source=source, require_phone_number_id=False)
    with provider_from_config(config, source=source, cache=False) as provider:
        token = provider.get_token()
    info = inspect_token(token, config, settings, purpose="check")
    problems, warnings = assess(info, app_id=settings.app_id, warn_days=args.warn_days)
    facts = describe(info, token)
    if args.json:
        print(json.dumps({**facts, "problems": problems, "warnings": warnings}))
    else:
        rows = [(k, ", ".join(v) if isinstance(v, list) else ("-" if v is None else v)) for k, v in facts.items()]
        rows += [("problem", p) for p in problems] + [("warning", w) for w in warnings]
        print_kv(rows)
    if problems:
        return EXIT_PROBLEM
    return EXIT_WARNING if warnings else EXIT_OK

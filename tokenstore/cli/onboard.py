"""``tokenstore onboard``: turn an Embedded Signup code into a customer's stored business token.

The code is read from stdin (or a no-echo prompt on a terminal), never from the command line. It lives 30
seconds, so pipe it in as soon as the frontend has it. :func:`sender.onboard` does the work: exchange, validate,
write into the tenant's secret (``tenants:`` in the config), read back, add the business's phone numbers to the
routing map kept in the store, and revoke the token a second onboarding replaced after the cache wait.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from ._common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_WARNING,
    add_config_option,
    add_json_option,
    command,
    emit,
    error,
    non_negative,
    read_token_input,
    warning,
)

HELP = "exchange an Embedded Signup code (from stdin, never argv) for the customer's token and store it"
EPILOG = """\
steps (any failure before step 4 stores nothing; a token that fails validation is revoked):
  1. exchange the code (oauth/access_token with client_id, client_secret and code)
  2. inspect the business token (debug_token): valid, this app, whatsapp_business_messaging, at least one WABA
  3. derive the tenant of each WABA: the WABA id (or --tenant, for a token of one WABA)
  4. write it into the tenant's secret (tenants.token in the config), read it back bypassing every cache
  5. add the WABA's phone numbers (GET /{waba_id}/phone_numbers) to the routing map where it is kept in the
     store (tenants.numbers_from); unless --no-numbers
  6. a tenant onboarded before had another token: wait until every replica's cache has the new one
     (tenants.token.cache ttl + refresh_ahead, or --revoke-old-after SECONDS), check the store still holds it,
     and revoke the old one; --keep-old leaves it valid

exit codes:
  0  onboarded
  1  refused: the business token failed validation, or the store did not keep it
  2  config or usage error (whatsapp.app_id, app_secret: or tenants: missing; no code given)
  3  the secret store failed
  4  the Graph API refused a call: an expired (codes live 30 s), used or another app's code, or the app
     credentials
  5  onboarded with a warning (phone numbers not added, the old token not revoked)

example: tokenstore onboard < code.txt
Only fingerprints are printed, never the code or a token."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "onboard", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_option(parser)
    parser.add_argument(
        "--tenant", metavar="KEY", help="the tenant key to store the token under (default: the WABA id)"
    )
    parser.add_argument(
        "--revoke-old-after",
        type=non_negative(),
        metavar="SECONDS",
        help="wait this long before revoking a replaced token (default: tenants.token.cache ttl + refresh_ahead)",
    )
    parser.add_argument("--keep-old", action="store_true", help="do not revoke a token this onboarding replaced")
    parser.add_argument(
        "--no-numbers", action="store_true", help="do not add the business's phone numbers to the routing map"
    )
    add_json_option(parser)
    parser.set_defaults(func=command(run))


def _rows(result: Any) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("token", result.fingerprint),
        ("wabas", ", ".join(result.waba_ids)),
        ("expires", "never" if result.expires_at is None else result.expires_at.isoformat(timespec="seconds")),
    ]
    for t in result.tenants:
        numbers = ", ".join(t.numbers) or "none"
        rows.append(("tenant", f"{t.tenant} (WABA {t.waba_id}, version {t.version or '-'})"))
        rows.append(("numbers", numbers + (" (added to the routing map)" if t.numbers_added else "")))
        if t.replaced:
            rows.append(("replaced", f"{t.replaced}: " + ("revoked" if t.revoked else t.revoke_note or "kept valid")))
    rows += [("warning", w) for w in result.warnings]
    return rows


def run(args: argparse.Namespace) -> int:
    import sender
    from sender import read_config

    from .. import tenants_from_config

    data, source = read_config(args.config)  # config errors before the code is asked for
    settings = sender.settings_from_config(data, source=source, require_phone_number_id=False)

    def report(step: str, text: str) -> None:
        if step == "waiting":
            print(f"tokenstore: {step}: {text}", file=sys.stderr, flush=True)

    with (
        sender.graph_client_from_config(data, settings, purpose="onboard", cache=False) as graph,
        tenants_from_config(data, source=source) as tenants,
    ):
        try:
            code = read_token_input(
                sys.stdin,
                prompt="Embedded Signup code (input hidden): ",
                command="onboard",
                what="signup code",
                header_safe=True,
            )
        except ValueError as exc:
            error(str(exc))
            return EXIT_CONFIG
        except (EOFError, KeyboardInterrupt):
            error("no signup code given")
            return EXIT_CONFIG
        chosen = args.tenant
        try:
            result = sender.onboard(
                code,
                graph,
                tenants,
                tenant_for_waba=(lambda waba_id: chosen) if chosen else None,
                add_numbers=not args.no_numbers,
                revoke_old=not args.keep_old,
                revoke_old_after=args.revoke_old_after,
                sleep=_sleep,
                report=report,
            )
        except sender.OnboardingRefused as exc:
            error(f"onboarding refused: {exc}")
            return emit(args, {}, code=EXIT_PROBLEM, status="refused", rows=[])
    unrevoked = [t for t in result.tenants if t.replaced and not t.revoked and not args.keep_old]
    code_ = EXIT_WARNING if result.warnings or unrevoked else EXIT_OK
    for text in result.warnings:
        warning(text)
    return emit(args, result.to_dict(), code=code_, status="onboarded", rows=_rows(result))


#: the wait before revoking a replaced token; tests replace it
_sleep: Callable[[float], None] = time.sleep

"""``tokenstore tenants list``: the tenants the store holds a token for, each with its phone numbers.

The tenants come from the store itself (its list call under the template's prefix, see
:meth:`tokenstore.TenantProviders.tenants`), the numbers from the ``tenants.numbers`` map (or the map kept in
the store). A number whose tenant has no token in the store is a warning (exit 5): sends from it fail with
UnknownTenant. No token is read or shown.
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import load_tenants
from ._common import (
    EXIT_OK,
    EXIT_WARNING,
    UsageError,
    add_config_option,
    add_json_option,
    command,
    emit,
    warning,
)

HELP = "the tenants (customer businesses) of the tenants: section: list them from the store, with their numbers"
LIST_HELP = "list the tenants the store holds a token for, with their phone numbers (never a token)"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("tenants", help=HELP, description=HELP)
    # not required at parse time: a missing action is reported by run_no_action, so that a stray word is
    # reported as such (never echoed) rather than as a missing action
    actions = parser.add_subparsers(dest="tenants_command", metavar="ACTION")
    parser.set_defaults(func=command(run_no_action))
    listing = actions.add_parser("list", help=LIST_HELP, description=LIST_HELP)
    add_config_option(listing)
    add_json_option(listing)
    listing.set_defaults(func=command(run_list))


def run_no_action(args: argparse.Namespace) -> int:
    raise UsageError("give an action: tokenstore tenants list [--json]")


def tenant_rows(tenants: list[str], numbers: dict[str, str]) -> list[dict[str, Any]]:
    """One entry per tenant (in the store, or named by the numbers map), with its numbers, sorted."""
    by_tenant: dict[str, list[str]] = {t: [] for t in tenants}
    for number, tenant in sorted(numbers.items()):
        by_tenant.setdefault(tenant, []).append(number)
    stored = set(tenants)
    return [{"tenant": t, "numbers": by_tenant[t], "in_store": t in stored} for t in sorted(by_tenant)]


def run_list(args: argparse.Namespace) -> int:
    with load_tenants(args.config) as providers:
        stored = providers.tenants()
        numbers = providers.numbers()
        source = providers.source
    rows = tenant_rows(stored, numbers)
    missing = [r["tenant"] for r in rows if not r["in_store"]]
    code = EXIT_OK
    if missing:
        code = EXIT_WARNING
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        warning(
            f"{len(missing)} tenant(s) named in the numbers map have no token in the store ({source}): {shown}; "
            "sends from their numbers fail with UnknownTenant until they are onboarded"
        )
    lines: list[tuple[str, Any]] = [("source", source), ("tenants", f"{len(stored)} in the store")]
    for row in rows:
        numbers_text = ", ".join(row["numbers"]) or "(no numbers)"
        lines.append((row["tenant"], numbers_text + ("" if row["in_store"] else "   [no token in the store]")))
    data = {"source": source, "count": len(stored), "tenants": rows}
    return emit(args, data, code=code, rows=lines)

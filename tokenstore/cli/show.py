"""``tokenstore show``: which token the config resolves to, without ever printing it."""

from __future__ import annotations

import argparse

from .. import InvalidTenantKey, load_provider, load_tenants, mask
from ._common import EXIT_CONFIG, EXIT_OK, UsageError, add_config_option, add_json_option, command, emit, error

HELP = "fetch the token and show its source, version, fingerprint and a masked preview (never the token)"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("show", help=HELP, description=HELP)
    add_config_option(parser)
    add_json_option(parser)
    parser.add_argument(
        "--section", default=None, choices=("token", "app_secret"), help="which provider section to show"
    )
    parser.add_argument(
        "--tenant",
        metavar="TENANT",
        default=None,
        help="show this tenant's token instead (the tenants: section; the tenant key, by default its WABA id)",
    )
    parser.set_defaults(func=command(run))


def run(args: argparse.Namespace) -> int:
    extra: dict[str, str] = {}
    if args.tenant is not None:
        if args.section is not None:
            raise UsageError("--tenant and --section do not go together: a tenant's token is in the tenants: section")
        with load_tenants(args.config) as tenants:
            try:
                tenant_provider = tenants.provider(args.tenant)
            except InvalidTenantKey as exc:
                error(f"{type(exc).__name__}: {exc}")  # refused before any store call: bad input
                return EXIT_CONFIG
            token = tenant_provider.get_token()
        extra["tenant"] = args.tenant
    else:
        with load_provider(args.config, section=args.section or "token", cache=False) as provider:
            token = provider.get_token()
    value = token.reveal()
    info = {
        **extra,
        "source": token.source,
        "version": token.version,
        "fingerprint": token.fingerprint,
        "preview": mask(value),
        "length": len(value),
        "fetched_at": token.fetched_at.isoformat(timespec="seconds"),
    }
    return emit(args, info, code=EXIT_OK, rows=[(k, v) for k, v in info.items() if k != "length"])

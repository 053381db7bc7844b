"""``tokenstore show``: which token the config resolves to, without ever printing it."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from .. import InvalidTenantKey, mask, provider_from_config, tenants_from_config
from ._common import EXIT_CONFIG, EXIT_OK, UsageError, add_config_option, add_json_option, command, emit, error

HELP = (
    "validate the whole config, fetch the token and show its source, version, fingerprint and a masked preview "
    "(never the token)"
)


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


def validate_whole_config(config: Mapping[str, Any], source: str | None) -> None:
    """Check every section the way ``send``/``check`` would read it, without any network call: the
    ``whatsapp:`` options (a token pasted there fails here, not at the first send) and both providers'
    sections (built, never asked)."""
    from sender import settings_from_config

    if config.get("whatsapp") is not None:
        settings_from_config(config, source=source, require_phone_number_id=False)
    for section in ("token", "app_secret"):
        if config.get(section) is not None:
            provider_from_config(config, section=section, source=source, cache=False).close()


def run(args: argparse.Namespace) -> int:
    from sender import read_config

    extra: dict[str, str] = {}
    if args.tenant is not None and args.section is not None:
        raise UsageError("--tenant and --section do not go together: a tenant's token is in the tenants: section")
    config, source = read_config(args.config)
    validate_whole_config(config, source)
    if args.tenant is not None:
        with tenants_from_config(config, source=source) as tenants:
            try:
                tenant_provider = tenants.provider(args.tenant)
            except InvalidTenantKey as exc:
                error(f"{type(exc).__name__}: {exc}")  # refused before any store call: bad input
                return EXIT_CONFIG
            token = tenant_provider.get_token()
        extra["tenant"] = args.tenant
    else:
        with provider_from_config(config, section=args.section or "token", source=source, cache=False) as provider:
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

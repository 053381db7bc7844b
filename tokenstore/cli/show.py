"""``tokenstore show``: which token the config resolves to, without ever printing it."""

from __future__ import annotations

import argparse

from .. import load_provider, mask
from ._common import EXIT_OK, add_config_option, add_json_option, command, emit

HELP = "fetch the token and show its source, version, fingerprint and a masked preview (never the token)"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("show", help=HELP, description=HELP)
    add_config_option(parser)
    add_json_option(parser)
    parser.add_argument(
        "--section", default="token", choices=("token", "app_secret"), help="which provider section to show"
    )
    parser.set_defaults(func=command(run))


def run(args: argparse.Namespace) -> int:
    with load_provider(args.config, section=args.section, cache=False) as provider:
        token = provider.get_token()
    value = token.reveal()
    info = {
        "source": token.source,
        "version": token.version,
        "fingerprint": token.fingerprint,
        "preview": mask(value),
        "length": len(value),
        "fetched_at": token.fetched_at.isoformat(timespec="seconds"),
    }
    return emit(args, info, code=EXIT_OK, rows=[(k, v) for k, v in info.items() if k != "length"])

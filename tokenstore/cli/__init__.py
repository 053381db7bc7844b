"""The ``tokenstore`` command line for operators.

Each command lives in its own module with ``add_parser(subparsers)``; the modules are imported when the
parser is built, and import the sender or any SDK only inside their ``run``. The conventions every command
follows (the usage-error guard, ``-v`` anywhere, ``--json``, exit codes, no traceback) are in
:mod:`tokenstore.cli._common`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ._common import CommandParser, add_verbose_option

__all__ = ["COMMANDS", "build_parser", "main"]

#: command modules, in the order ``tokenstore --help`` lists them
COMMANDS = ["show", "send", "check", "rotate", "refresh", "revoke", "onboard", "demo", "sandbox", "tenants"]


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="tokenstore",
        description="Operate the WhatsApp Cloud API access token kept in your secret store.",
        epilog="Exit codes: 0 ok, 1 problem found, 2 config/usage error, 3 secret store error, "
        "4 Graph API error, 5 ok with a warning.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_verbose_option(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").add_parser(sub)
    for command_parser in sub.choices.values():
        if not any("-v" in action.option_strings for action in command_parser._actions):
            add_verbose_option(command_parser, sub=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (usage errors: one line and ``SystemExit(2)``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    verbose = args.verbose + getattr(args, "verbose_sub", 0)
    if verbose:
        import logging

        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``tokenstore`` command line for operators.

Each command lives in its own module with ``add_parser(subparsers)``; the modules are imported when the
parser is built, and import the sender or any SDK only inside their ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._version import __version__

__all__ = ["COMMANDS", "build_parser", "main"]

#: command modules, in the order ``tokenstore --help`` lists them
COMMANDS = ["show", "send", "check", "rotate", "refresh", "revoke", "demo", "sandbox"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenstore",
        description="Operate the WhatsApp Cloud API access token kept in your secret store.",
        epilog="Exit codes: 0 ok, 1 problem found, 2 config/usage error, 3 secret store error, "
        "4 Graph API error, 5 ok with a warning.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.verbose:
        import logging

        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

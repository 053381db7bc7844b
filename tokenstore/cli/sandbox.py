"""``tokenstore sandbox`` (also ``python -m sender.sandbox``): run the local Graph API sandbox in the foreground."""

from __future__ import annotations

import argparse

from ._common import UsageError, command, non_negative, output_file, port_number

HELP = "run a local Graph API sandbox on 127.0.0.1 for tests and trials (prints token fingerprints only)"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "sandbox",
        help=HELP,
        description=HELP + ". It issues a token and can write it to a file a `file` backend reads.",
    )
    parser.add_argument(
        "--port", type=port_number, default=8765, help="port on 127.0.0.1 (default 8765; 0: any free port)"
    )
    parser.add_argument("--token-file", type=output_file, metavar="PATH", help="write the issued token here (mode 600)")
    parser.add_argument(
        "--app-secret-file", type=output_file, metavar="PATH", help="write the app secret here (mode 600)"
    )
    parser.add_argument(
        "--accept-env",
        metavar="VAR",
        action="append",
        default=[],
        help="also accept the token held in this environment variable (repeatable)",
    )
    parser.add_argument("--phone-number-id", metavar="ID", help="accept only this phone number id (default: any)")
    parser.add_argument(
        "--expires-in",
        type=non_negative("seconds"),
        metavar="SECONDS",
        help="the issued token expires after this (default: never)",
    )
    parser.add_argument(
        "--require-appsecret-proof", action="store_true", help="refuse calls without a valid appsecret_proof"
    )
    parser.set_defaults(func=command(run))


def run(args: argparse.Namespace) -> int:
    from sender.sandbox import serve

    if args.phone_number_id is not None and not args.phone_number_id.isdigit():
        raise UsageError("--phone-number-id must be a numeric id")
    return serve(
        port=args.port,
        token_file=args.token_file,
        app_secret_file=args.app_secret_file,
        accept_env=args.accept_env,
        phone_number_id=args.phone_number_id,
        expires_in=args.expires_in,
        require_appsecret_proof=args.require_appsecret_proof,
    )

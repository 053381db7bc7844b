"""``tokenstore send``: one text or template message, the Cloud API's curl example as one command."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from .. import UnknownTenant
from ._common import EXIT_CONFIG, EXIT_OK, add_config_option, add_json_option, command, emit, error

HELP = "send one text or template message through the configured token store (prints the message id)"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("send", help=HELP, description=HELP)
    add_config_option(parser)
    parser.add_argument("--to", required=True, metavar="NUMBER", help="recipient phone number, e.g. 15551234567")
    parser.add_argument(
        "--from",
        dest="from_number",
        metavar="PHONE_NUMBER_ID",
        default=None,
        help="send from this business phone number id with its tenant's token (the tenants: section routes it)",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", metavar="TEXT", help="send a text message")
    what.add_argument("--template", metavar="NAME", help="send an approved template, e.g. hello_world")
    parser.add_argument("--lang", metavar="CODE", default=None, help="template language code (default en_US)")
    parser.add_argument("--preview-url", action="store_true", help="render a link preview in a text message")
    add_json_option(parser)
    parser.set_defaults(func=command(run))


def run(args: argparse.Namespace) -> int:
    from sender import InvalidRequest, Sender

    if args.lang is not None and args.template is None:
        error("--lang only applies to --template")
        return EXIT_CONFIG
    extra: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if args.from_number is not None:
            from sender import TenantSender

            senders = stack.enter_context(TenantSender.from_config(args.config))
            try:
                client: Any = senders.for_number(args.from_number)  # refused before any request
            except UnknownTenant as exc:
                if exc.tenant is not None:
                    raise  # the number's tenant has no token in the store: a store problem (exit 3)
                error(f"{type(exc).__name__}: {exc}")  # no tenant owns --from: a usage/config error
                return EXIT_CONFIG
            extra = {"from": client.phone_number_id, "tenant": client.tenant}
        else:
            client = stack.enter_context(Sender.from_config(args.config))
        try:
            if args.template is not None:
                result = client.send_template(args.to, args.template, language=args.lang or "en_US")
            else:
                result = client.send_text(args.to, args.text, preview_url=args.preview_url)
        except InvalidRequest as exc:
            if exc.code is not None:
                raise
            error(str(exc))  # refused before sending: a usage error
            return EXIT_CONFIG
    info = {
        **extra,
        "message_id": result.message_id,
        "wa_id": result.wa_id,
        "message_status": result.message_status,
        "token": result.token_fingerprint,
        "attempts": result.attempts,
    }
    return emit(args, info, code=EXIT_OK)

"""``tokenstore revoke``: revoke an access token at Graph (``oauth/revoke``), effective at once.

The token to revoke is read from stdin (or a no-echo prompt on a terminal), never from the command line:
argv is visible to every user of the machine and lands in shell history. The call authenticates as the
configured app (``whatsapp.app_id`` and the app secret from the ``app_secret:`` section) and with the token
itself. A token Graph already calls invalid needs no revoking; the token the store currently holds (the one
every service sends with) is refused unless ``--force``. Only fingerprints are printed.
"""

from __future__ import annotations

import argparse
from typing import IO

from ._common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEM,
    add_config_option,
    add_json_option,
    command,
    emit,
    error,
    read_token_input,
)

HELP = "revoke an access token (read from stdin, never argv) at Graph: oauth/revoke, effective at once"
EPILOG = """\
example: tokenstore revoke < old-token.txt   (or type it at the hidden prompt)

exit codes:
  0  revoked, or Graph already calls the token invalid (expired or revoked: nothing to do)
  1  refused: it is the token the store holds (every service sends with it; pass --force to revoke it
     anyway), or it belongs to another app than whatsapp.app_id
  2  config or usage error (no token on stdin, more than one word, a token on the command line)
  3  the secret store failed (the app secret, or the store's current token for the check above)
  4  the Graph API refused or failed the call (AppCredentialsError: the app id or secret was rejected)"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "revoke", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_option(parser)
    parser.add_argument(
        "--force", action="store_true", help="revoke it even if the store holds it (every service then gets 190)"
    )
    add_json_option(parser)
    # a token typed on the command line is caught here, so that argparse does not echo it back in an error
    parser.add_argument("argv_words", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(func=command(run))


def read_token(stdin: IO[str], prompt: str = "Access token to revoke (input hidden): ") -> str:
    """One token: a hidden prompt on a terminal, else all of stdin. Raises ValueError when unusable."""
    return read_token_input(stdin, prompt=prompt, command="revoke", header_safe=True)


def run(args: argparse.Namespace) -> int:
    import sys

    from sender import read_config, settings_from_config

    from .. import fingerprint_of, provider_from_config
    from .check import graph_client

    if args.argv_words:
        error(
            "the token to revoke is read from stdin, never from the command line (argv is visible to other users "
            "and lands in shell history): tokenstore revoke < file, or type it at the hidden prompt"
        )
        return EXIT_CONFIG
    config, source = read_config(args.config)  # a config error is reported before the token is asked for
    settings = settings_from_config(config, source=source, require_phone_number_id=False)
    try:
        value = read_token(sys.stdin)
    except ValueError as exc:
        error(str(exc))
        return EXIT_CONFIG
    except (EOFError, KeyboardInterrupt):
        error("no token given")
        return EXIT_CONFIG
    fingerprint = fingerprint_of(value)
    outcome: dict[str, object] = {"fingerprint": fingerprint, "revoked": False}

    def done(code: int, result: str) -> int:
        outcome["result"] = result
        status = "revoked" if outcome["revoked"] else "refused" if code == EXIT_PROBLEM else "ok"
        return emit(args, outcome, code=code, status=status)

    with graph_client(config, settings, purpose="revoke") as graph:
        info = graph.inspect(value)
        outcome["type"] = info.type
        outcome["app_id"] = info.app_id
        if not info.is_valid:
            return done(EXIT_OK, f"nothing to do: Graph already calls it invalid ({info.error or 'no reason given'})")
        if info.app_id and info.app_id != settings.app_id:
            error(f"{fingerprint} belongs to app {info.app_id}, not whatsapp.app_id {settings.app_id}")
            return done(EXIT_PROBLEM, "refused: another app's token")
        if not args.force:
            with provider_from_config(config, source=source, cache=False) as store:
                held = store.get_token()
            outcome["store"] = held.source
            if held.fingerprint == fingerprint:
                error(
                    f"{fingerprint} is the token {held.source} holds: every service sends with it, and revoking it "
                    "makes every send fail until a new token is stored. Refresh or rotate first "
                    "(tokenstore refresh / rotate), or pass --force"
                )
                return done(EXIT_PROBLEM, "refused: the store holds this token")
        graph.revoke(value)
    outcome["revoked"] = True
    return done(EXIT_OK, "revoked (effective at once)")

"""What every CLI command shares: exit codes, the --config option, error reporting without secrets."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import IO, Any, TextIO

from .._errors import ConfigError, ProviderError, TokenStoreError

# Exit codes (documented in README.md; operators script against them)
EXIT_OK = 0
EXIT_PROBLEM = 1  # the command ran and found a problem (e.g. check: token invalid or expired)
EXIT_CONFIG = 2  # bad configuration or command line
EXIT_BACKEND = 3  # the secret store failed (unreachable, denied, secret missing or malformed)
EXIT_API = 4  # the Graph API refused or failed a call
EXIT_WARNING = 5  # the command succeeded with a warning (e.g. check: token expires within 7 days)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=None,
        help="config file (default: $TOKENSTORE_CONFIG, then ./tokenstore.yaml)",
    )


def error(message: str, *, stream: TextIO | None = None) -> None:
    print(f"tokenstore: error: {message}", file=stream or sys.stderr)


def exit_code_for(exc: BaseException) -> int:
    """Map an exception to the CLI's exit code (sender errors are recognised without importing sender)."""
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, (ProviderError, TokenStoreError)):
        return EXIT_BACKEND
    if any(cls.__module__.startswith("sender") and cls.__name__ == "SendError" for cls in type(exc).__mro__):
        return EXIT_API
    raise exc


def guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; our own errors become one clean line on stderr and an exit code, never a traceback."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except KeyboardInterrupt:
            error("interrupted")
            return 130
        except Exception as exc:
            code = exit_code_for(exc)  # re-raises what is not ours: a bug deserves its traceback
            error(f"{type(exc).__name__}: {exc}")
            return code

    return wrapper


def print_kv(rows: list[tuple[str, Any]], *, stream: TextIO | None = None) -> None:
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}", file=stream or sys.stdout)


def read_token_input(stdin: IO[str], *, prompt: str, command: str, header_safe: bool = False) -> str:
    """One token typed at a hidden prompt (on a terminal) or piped on stdin; never from argv.

    Raises ValueError with a message that never contains the input. ``header_safe`` also refuses control and
    non-ASCII characters (a value that could not travel in an HTTP header).
    """
    import getpass

    value = getpass.getpass(prompt) if stdin.isatty() else stdin.read()
    value = value.strip()
    if not value:
        raise ValueError(f"no token given: pipe it on stdin (tokenstore {command} < file) or type it at the prompt")
    if any(c.isspace() for c in value):
        raise ValueError("the input holds more than one word: give exactly one access token")
    if header_safe and not (value.isascii() and value.isprintable()):
        raise ValueError("the input holds control or non-ASCII characters: give exactly one access token")
    return value

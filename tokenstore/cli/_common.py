"""What every CLI command shares: exit codes, the --config option, the command-line guard, the ``--json``
contract and error reporting without secrets.

Conventions every command follows (new commands get them for free by using these helpers):

* The parser is :class:`CommandParser` (``build_parser`` makes it; subcommands inherit it). A usage error is
  one line on stderr, ``tokenstore CMD: error: ...``, and exit code 2 (``SystemExit(2)``, as argparse does).
  The line never repeats the user's words: a stray argument, a bad value or an unknown choice may be a token
  pasted in the wrong place (``unexpected argument(s) (not shown: they may be a secret)``). With ``--json``
  on the command line a usage error also prints the one JSON error object described below.
* ``-v``/``-vv`` are accepted before and after the subcommand.
* ``parser.set_defaults(func=command(run))``: :func:`command` (alias :func:`guarded`) runs ``run(args)``
  and turns every exception into one line on stderr and a documented exit code, never a traceback:
  tokenstore errors (2 config, 3 store), sender errors (4 Graph), :class:`UsageError` (2), anything else
  (1, ``unexpected error``).
* ``--json`` (:func:`add_json_option`): the command prints exactly one JSON object on stdout, on success
  and on error. It always has ``status`` (``ok``, ``warning``, ``problem``, ``error`` or a command's own word
  such as ``refreshed``), ``exit_code`` and ``error`` (null on success, else the same one line as stderr).
  A command produces its result with ``return emit(args, data, code=..., rows=...)``; errors need nothing:
  :func:`error` remembers the message and :func:`command` writes the JSON object when the command returns or
  raises without having emitted one.
* Error and warning lines go through :func:`tokenstore.mask_credentials` (a credential-looking word is shown
  as fingerprint and length, never as itself); source labels are masked where they are made (the backends'
  ``source``, ``Token.source``), so results can print them as they are.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, ClassVar, NoReturn, TextIO

from .. import ConfigError, ProviderError, TokenStoreError, mask_credentials

__all__ = [
    "EXIT_API",
    "EXIT_BACKEND",
    "EXIT_CONFIG",
    "EXIT_OK",
    "EXIT_PROBLEM",
    "EXIT_WARNING",
    "CommandParser",
    "UsageError",
    "add_config_option",
    "add_json_option",
    "add_verbose_option",
    "command",
    "describe_error",
    "emit",
    "emit_lines",
    "error",
    "exit_code_for",
    "guarded",
    "narrate",
    "non_negative",
    "output_file",
    "plural",
    "port_number",
    "print_kv",
    "read_token_input",
    "warning",
]

# Exit codes (documented in README.md; operators script against them)
EXIT_OK = 0
EXIT_PROBLEM = 1  # the command ran and found a problem (e.g. check: token invalid or expired)
EXIT_CONFIG = 2  # bad configuration or command line
EXIT_BACKEND = 3  # the secret store failed (unreachable, denied, secret missing or malformed)
EXIT_API = 4  # the Graph API refused or failed a call
EXIT_WARNING = 5  # the command succeeded with a warning (e.g. check: token expires within 7 days)

_STATUS = {EXIT_OK: "ok", EXIT_WARNING: "warning", EXIT_PROBLEM: "problem"}


class UsageError(Exception):
    """The command line cannot be run as given (exit 2). The message must not contain the user's words."""


# -- the command line guard -------------------------------------------------------------------------------------
_HIDDEN = "not shown: it may be a secret"


def _safe_usage_message(message: str) -> str:
    """argparse's message without any word the user typed (see the module docstring)."""
    if message.startswith("unrecognized arguments:"):
        return "unexpected argument(s) (not shown: they may be a secret)"
    m = re.match(r"(?s)^(argument [^:]+: )?invalid choice: .*\(choose from (.*)\)$", message)
    if m:
        choices = m.group(2).replace("'", "")
        return f"{m.group(1) or ''}invalid choice ({_HIDDEN}); choose from {choices}"
    m = re.match(r"(?s)^(argument [^:]+: )invalid (\S+) value: ", message)
    if m:
        kind = {"int": "a whole number", "float": "a number"}.get(m.group(2), f"a valid {m.group(2)}")
        return f"{m.group(1)}must be {kind} (the value given is {_HIDDEN})"
    m = re.match(r"(?s)^(argument [^:]+: )ignored explicit argument ", message)
    if m:
        return f"{m.group(1)}takes no value (the value given is {_HIDDEN})"
    m = re.match(r"(?s)^ambiguous option: .* could match (.*)$", message)
    if m:
        return f"ambiguous option ({_HIDDEN}); it could be {m.group(1)}"
    return message


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line that never echoes the command line (see module docstring)."""

    #: the words of the command line being parsed (set by :meth:`parse_args`), to keep them out of messages
    _argv: Sequence[str] = ()
    #: every word the parsers define themselves (option strings, command names, choices): safe to show
    _own_words: frozenset[str] = frozenset()

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        CommandParser._argv = argv
        CommandParser._own_words = frozenset(_own_words(self))
        parsed, extras = self.parse_known_args(argv, namespace)
        if extras:  # reported by the subcommand's parser, so that the line names the command
            self._subparser(getattr(parsed, "command", None)).error("unrecognized arguments:")
        return parsed

    def _subparser(self, name: str | None) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                found: argparse.ArgumentParser = action.choices[name]
                return found
        return self

    def error(self, message: str) -> NoReturn:
        text = _safe_usage_message(message)
        for word in _user_words(CommandParser._argv, CommandParser._own_words):
            if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text):
                text = "invalid command line (the details are not shown: they would repeat what you typed)"
                break
        text = mask_credentials(text)
        print(f"{self.prog}: error: {text} (see {self.prog} --help)", file=sys.stderr)
        if "--json" in CommandParser._argv:
            print(json.dumps({"status": "error", "exit_code": EXIT_CONFIG, "error": text}))
        raise SystemExit(EXIT_CONFIG)


def _own_words(parser: argparse.ArgumentParser) -> set[str]:
    words = {parser.prog, *parser.prog.split()}
    for action in parser._actions:
        words.update(action.option_strings)
        if action.choices:
            words.update(str(c) for c in action.choices)
        if isinstance(action.choices, dict):
            for sub in action.choices.values():
                if isinstance(sub, argparse.ArgumentParser):
                    words.update(_own_words(sub))
        if isinstance(action.metavar, str):
            words.add(action.metavar)
    return words


def _user_words(argv: Sequence[str], own: frozenset[str]) -> list[str]:
    words = []
    for arg in argv:
        for part in arg.split("=", 1) if arg.startswith("-") else (arg,):
            if len(part) >= 3 and part not in own:
                words.append(part)
    return words


def add_verbose_option(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """``-v``/``-vv``; on a subcommand the count lands in ``verbose_sub`` and adds to the top-level one."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbose_sub" if sub else "verbose",
        default=argparse.SUPPRESS if sub else 0,
        help="log more (-vv for debug)",
    )


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=None,
        help="config file (default: $TOKENSTORE_CONFIG, then ./tokenstore.yaml)",
    )


def add_json_option(parser: argparse.ArgumentParser, help: str = "print one JSON object instead of text") -> None:
    """``--json``: exactly one JSON object on stdout, on success and on error (see the module docstring)."""
    parser.add_argument("--json", action="store_true", help=help)


def plural(n: float, unit: str) -> str:
    """``1 day``, ``2 days``, ``1.5 days``: a count with its unit, in good grammar."""
    return f"{n:g} {unit}" if n == 1 else f"{n:g} {unit}s"


def port_number(text: str) -> int:
    """An argparse ``type=``: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, 0 to 65535 ({_HIDDEN})") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number, 0 to 65535")
    return value


def output_file(text: str) -> str:
    """An argparse ``type=``: a file path to write (``~`` expanded); its folder must exist and it must not
    be a folder itself."""
    import os

    path = os.path.expanduser(text)
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError("names a folder: give the path of a file to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError("its folder does not exist: create it first, or give another path")
    return path


def non_negative(unit: str = "seconds", *, whole: bool = False) -> Callable[[str], float]:
    """An argparse ``type=``: a finite number >= 0 (negative, nan and inf refused; the text is never echoed)."""

    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number of {unit} ({_HIDDEN})") from None
        if not value >= 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be zero or more {unit} (a finite number)")
        return value

    parse.__name__ = f"number of {unit}"
    return parse


# -- output -----------------------------------------------------------------------------------------------------
class _Run:
    """What the running command has said (one command runs per process; tests run them one after another)."""

    error: str | None = None
    emitted: bool = False


def error(message: str, *, stream: TextIO | None = None) -> None:
    """One ``tokenstore: error: ...`` line on stderr (credentials masked); remembered for ``--json``."""
    text = mask_credentials(message)
    _Run.error = text
    print(f"tokenstore: error: {text}", file=stream or sys.stderr)


def warning(message: str, *, stream: TextIO | None = None) -> None:
    """One ``tokenstore: warning: ...`` line on stderr (credentials masked)."""
    print(f"tokenstore: warning: {mask_credentials(message)}", file=stream or sys.stderr)


def emit(
    args: argparse.Namespace,
    data: Mapping[str, Any],
    *,
    code: int = EXIT_OK,
    status: str | None = None,
    rows: Sequence[tuple[str, Any]] | None = None,
) -> int:
    """Print a command's result and return ``code``.

    With ``--json``: one object ``{"status", "exit_code", "error", **data}`` (``status`` defaults from the
    code: ok / warning / problem / error; ``error`` defaults to null, or to the last :func:`error` line).
    Without: ``rows`` (``(key, value)`` pairs; default: ``data``'s items) as aligned ``key: value`` lines.
    """
    if getattr(args, "json", False):
        out: dict[str, Any] = {
            "status": status or _STATUS.get(code, "error"),
            "exit_code": code,
            "error": _Run.error if code not in (EXIT_OK, EXIT_WARNING) else None,
        }
        out.update(data)
        out["status"], out["exit_code"] = status or out["status"], code
        if isinstance(out["error"], str):
            out["error"] = mask_credentials(out["error"])
        print(json.dumps(out))
        _Run.emitted = True
    else:
        print_kv([(k, "-" if v is None else v) for k, v in (rows if rows is not None else data.items())])
    return code


def emit_lines(
    args: argparse.Namespace,
    lines: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    *,
    code: int = EXIT_OK,
    status: str | None = None,
) -> int:
    """For a command over many items (``--all``) with ``--json``: one JSON object per item, then the summary
    object through :func:`emit` (it carries ``status``, ``exit_code`` and ``error``); returns ``code``."""
    for line in lines:
        print(json.dumps(line))
    return emit(args, summary, code=code, status=status)


def print_kv(rows: Sequence[tuple[str, Any]], *, stream: TextIO | None = None) -> None:
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}", file=stream or sys.stdout)


def exit_code_for(exc: BaseException) -> int:
    """Map an exception to the CLI's exit code (sender errors are recognised without importing sender);
    anything not ours is 1 (an unexpected error)."""
    if isinstance(exc, (ConfigError, UsageError)):
        return EXIT_CONFIG
    if isinstance(exc, (ProviderError, TokenStoreError)):
        return EXIT_BACKEND
    if any(cls.__module__.startswith("sender") and cls.__name__ == "SendError" for cls in type(exc).__mro__):
        return EXIT_API
    return EXIT_PROBLEM


def describe_error(exc: BaseException) -> str:
    """The one line for an exception: ``Type: message`` for ours, a plain sentence for OS and other errors."""
    if isinstance(exc, UsageError):
        return str(exc)
    if exit_code_for(exc) != EXIT_PROBLEM:
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        what = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or type(exc).__name__}:{what}" if what else f"{type(exc).__name__}: {exc.strerror}"
    return f"unexpected {type(exc).__name__}: {exc} (please report this, with the command line)"


class _LibraryWarnings(logging.Handler):
    """Without ``-v``: holds the libraries' warning records while a command runs. They are printed as
    ``tokenstore: warning: ...`` lines when it ends, or dropped when it fails: its one error line says what
    went wrong (one message per failure; ``-v`` shows every record as it happens). Each message is printed
    once per command.

    A command run inside another (the demo runs ``check --all``) holds its own: while it runs, records go to
    the innermost holder only, which prints them at the inner command's end; the outer one never sees them,
    so they are not printed a second time when the outer command ends. A command that narrates its steps
    prints what it holds as it goes (:func:`narrate`)."""

    #: the holders of the commands running now, innermost last
    running: ClassVar[list[_LibraryWarnings]] = []  # one stack shared by every holder

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._printed: set[str] = set()
        self._shown = 0  # messages[:_shown] have been through show()

    def emit(self, record: logging.LogRecord) -> None:
        running = self.running
        if running and running[-1] is not self:  # a nested command's record: that command prints it
            return
        try:
            self.messages.append(record.getMessage())
        except Exception:
            self.messages.append("(a log record could not be formatted)")

    def show(self) -> None:
        """Print the messages held since the last call, each once per command."""
        self.acquire()  # the lock emit() runs under (records may come from the libraries' threads)
        try:
            pending, self._shown = self.messages[self._shown :], len(self.messages)
        finally:
            self.release()
        for message in dict.fromkeys(pending):  # in order
            if message not in self._printed:
                self._printed.add(message)
                warning(message)


def narrate(text: str) -> None:
    """One line of a command that tells what it does step by step (the demo), printed at once, then the
    library warnings held since the previous line: each warning shows right after the step that caused it,
    not all of them at the command's end."""
    print(text, flush=True)
    running = _LibraryWarnings.running
    if running:
        running[-1].show()


def command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command under the CLI's contract: every exception becomes one line on stderr and an exit code,
    never a traceback; with ``--json`` exactly one JSON object is printed on stdout; library warnings
    become ``tokenstore: warning:`` lines, one message per failure (see the module docstring)."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        _Run.error, _Run.emitted = None, False
        status = None
        quiet = not (getattr(args, "verbose", 0) or getattr(args, "verbose_sub", 0))
        held = _LibraryWarnings() if quiet else None
        root = logging.getLogger()
        if held is not None:
            _LibraryWarnings.running.append(held)
            root.addHandler(held)
        try:
            try:
                code = run(args)
            except KeyboardInterrupt:
                error("interrupted")
                code, status = 130, "error"
            except Exception as exc:
                code, status = exit_code_for(exc), "error"
                error(describe_error(exc))
        finally:
            if held is not None:
                root.removeHandler(held)
                _LibraryWarnings.running.remove(held)
        if held is not None and _Run.error is None:
            held.show()
        if getattr(args, "json", False) and not _Run.emitted:
            emit(args, {}, code=code, status=status)
        return code

    return wrapper


#: the former name of :func:`command`
guarded = command


def read_token_input(
    stdin: IO[str], *, prompt: str, command: str, header_safe: bool = False, what: str = "access token"
) -> str:
    """One token (or another secret: ``what``) typed at a hidden prompt (on a terminal) or piped on stdin; never
    from argv.

    Raises ValueError with a message that never contains the input. ``header_safe`` also refuses control and
    non-ASCII characters (a value that could not travel in an HTTP header).
    """
    import getpass

    value = getpass.getpass(prompt) if stdin.isatty() else stdin.read()
    value = value.strip()
    noun = "token" if what == "access token" else what
    if not value:
        raise ValueError(f"no {noun} given: pipe it on stdin (tokenstore {command} < file) or type it at the prompt")
    if any(c.isspace() for c in value):
        raise ValueError(f"the input holds more than one word: give exactly one {what}")
    if header_safe and not (value.isascii() and value.isprintable()):
        raise ValueError(f"the input holds control or non-ASCII characters: give exactly one {what}")
    return value

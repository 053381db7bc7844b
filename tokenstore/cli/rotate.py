"""``tokenstore rotate``: put a new access token into the store, safely.

The new token is read from stdin (or a no-echo prompt on a terminal), never from the command line (argv is
visible to every user of the machine and lands in shell history). Unless ``--no-validate``, Graph's
``debug_token`` must call it valid, of the configured app, with ``whatsapp_business_messaging``. It is then
written with ``put_token`` and read back through a fresh, uncached provider; the fingerprints must match.
Only fingerprints are printed. Services pick the new token up within their cache TTL, or at once on a 190.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from .. import SecretNotFound, fingerprint_of
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

if TYPE_CHECKING:
    import os

    from sender import TokenInfo

HELP = "write a new access token (from stdin, never argv) to the store: validate, put, read back"


class RotationRefused(Exception):
    """The new token failed validation, or the read-back did not match; nothing (or the wrong thing) stuck."""


@dataclass
class Rotation:
    """What a rotation did (fingerprints only)."""

    source: str
    old_fingerprint: str | None
    new_fingerprint: str
    version: str | None = None
    readback_fingerprint: str | None = None
    unchanged: bool = False
    info: TokenInfo | None = None
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [
            ("store", self.source),
            ("old", self.old_fingerprint or "-"),
            ("new", self.new_fingerprint),
        ]
        if self.unchanged:
            rows.append(("result", "unchanged: the store already holds this token"))
            return rows
        if self.info is not None:
            expires = "never" if self.info.expires_at is None else self.info.expires_at.isoformat(timespec="seconds")
            rows.append(("validated", f"debug_token: valid {self.info.type} token, expires {expires}"))
        else:
            rows.append(("validated", "no (--no-validate)"))
        rows += [("version", self.version or "-"), ("read back", self.readback_fingerprint)]
        rows += [("warning", w) for w in self.warnings]
        return rows


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "rotate",
        help=HELP,
        description=HELP + ". Example: tokenstore rotate < new-token.txt (or type it at the hidden prompt)",
    )
    add_config_option(parser)
    parser.add_argument(
        "--no-validate", action="store_true", help="skip the debug_token check (e.g. no app secret at hand)"
    )
    add_json_option(parser)
    parser.set_defaults(func=command(run))


def read_new_token(stdin: IO[str]) -> str:
    """The new token: a hidden prompt on a terminal, else all of stdin. Raises ValueError when unusable."""
    return read_token_input(stdin, prompt="New access token (input hidden): ", command="rotate")


def perform_rotation(
    config: str | os.PathLike[str] | Mapping[str, Any] | None, new_value: str, *, validate: bool = True
) -> Rotation:
    """Validate (debug_token), write (put_token) and read back (a fresh uncached provider) ``new_value``.

    Raises :class:`RotationRefused` when validation or the read-back fails, tokenstore errors when the store
    does, sender errors when Graph does.
    """
    from sender import read_config, settings_from_config

    from .. import provider_from_config
    from .check import assess, inspect_token

    data, source = read_config(config)
    settings = settings_from_config(data, source=source, require_phone_number_id=False)
    new_fp = fingerprint_of(new_value)
    info = None
    warnings: list[str] = []
    if validate:
        info = inspect_token(new_value, data, settings, purpose="rotate (or pass --no-validate)")
        problems, warnings = assess(info, app_id=settings.app_id)
        if problems:
            raise RotationRefused("the new token was not written: " + "; ".join(problems))
    with provider_from_config(data, source=source, cache=False) as provider:
        try:
            old = provider.get_token()
        except SecretNotFound:
            old = None
        rotation = Rotation(
            source=provider.source,
            old_fingerprint=old.fingerprint if old is not None else None,
            new_fingerprint=new_fp,
            info=info,
            warnings=warnings,
        )
        if old is not None and old.reveal() == new_value:
            rotation.unchanged = True
            return rotation
        rotation.version = provider.put_token(new_value)
    with provider_from_config(data, source=source, cache=False) as fresh:
        back = fresh.get_token()
    rotation.readback_fingerprint = back.fingerprint
    if back.fingerprint != new_fp:
        raise RotationRefused(
            f"read back {back.fingerprint} from {back.source}, not the new token {new_fp}: another writer, a "
            "replica lag or a caching layer in front of the store; check the store before relying on it"
        )
    return rotation


def run(args: argparse.Namespace) -> int:
    from sender import read_config, settings_from_config

    data, source = read_config(args.config)  # a config error is reported before the token is asked for
    settings_from_config(data, source=source, require_phone_number_id=False)
    try:
        new_value = read_new_token(sys.stdin)
    except ValueError as exc:
        error(str(exc))
        return EXIT_CONFIG
    except (EOFError, KeyboardInterrupt):
        error("no token given")
        return EXIT_CONFIG
    try:
        rotation = perform_rotation(args.config, new_value, validate=not args.no_validate)
    except RotationRefused as exc:
        error(str(exc))
        return EXIT_PROBLEM
    out = {k: v for k, v in rotation.__dict__.items() if k != "info"}
    out["validated"] = rotation.info is not None
    return emit(args, out, code=EXIT_OK, status="unchanged" if rotation.unchanged else "rotated", rows=rotation.rows())

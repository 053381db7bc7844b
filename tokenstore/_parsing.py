"""What every backend does with a secret's contents: find the token in it, or refuse it.

A token is one word: the text (or the string under an optional ``key`` of a JSON object), stripped, not empty
and without whitespace inside. Contents that are clearly not a bare token are refused too, because Graph would
only answer them with a 190 later: a token in double or single quotes, a ``NAME=value`` line (as in a
``.env`` file, ``export`` included), and a JSON object read without ``key``. Everything else is refused with
a :class:`~tokenstore.SecretMalformed` (or a :class:`~tokenstore.SecretNotFound` for a missing key) naming
``source``, ``what`` was read and the key, and saying what to do; a message never contains the value. What
is particular to one store (decoding bytes, checksums, disabled or binary secrets) stays in its backend.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from ._errors import SecretMalformed, SecretNotFound

__all__ = ["json_object", "new_token_value", "not_a_bare_token", "one_word", "string_under_key", "token_from_text"]

_ASSIGNMENT = re.compile(r"(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*=\S")


def token_from_text(
    text: str, *, source: str, key: str | None = None, what: str = "the secret", key_hint: bool = True
) -> str:
    """The token in ``text``: all of it, or the string under ``key`` of the JSON object it holds.

    ``what`` names what was read in messages ("the file", "the secret at secret/data/app"); ``key_hint``: whether
    a value with whitespace inside, read without ``key``, is answered with a hint to set ``key`` (false for a
    store that has no ``key`` option, or that refuses a JSON object read without ``key`` by itself).
    """
    if key is None:
        return one_word(text, source=source, what=what, key_hint=key_hint)
    data = json_object(text, source=source, key=key, what=what)
    return string_under_key(data, source=source, key=key, what=what)


def json_object(
    text: str | bytes,
    *,
    source: str,
    key: str,
    action: Literal["read", "write"] = "read",
    what: str = "the secret",
) -> dict[str, Any]:
    """``text`` (UTF-8 when bytes) parsed as a JSON object, to read ``key`` from or to write it into."""
    try:
        data = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except ValueError:  # UnicodeDecodeError included
        data = None
    if not isinstance(data, dict):
        if action == "read":
            raise SecretMalformed(
                f"{what} is not a JSON object, so key {key!r} cannot be read (remove key if it holds only the token)",
                source=source,
            )
        raise SecretMalformed(
            f"{what} is not a JSON object, so key {key!r} cannot be written into it; not overwriting it",
            source=source,
        )
    return data


def string_under_key(data: dict[str, Any], *, source: str, key: str, what: str = "the secret") -> str:
    """The token under ``key`` of ``data`` (a JSON object or key/value map), checked to be one word."""
    if key not in data:
        raise SecretNotFound(f"{what} has no key {key!r} (set key to the field that holds the token)", source=source)
    value = data[key]
    if not isinstance(value, str):
        raise SecretMalformed(f"key {key!r} of {what} is not a string: it must hold the token as text", source=source)
    return one_word(value, source=source, what=f"key {key!r} of {what}", key_hint=False)


def not_a_bare_token(value: str, *, what: str = "the secret", key_hint: bool = False) -> str | None:
    """Why ``value`` (stripped, not empty) is clearly not a bare token, or None. Never quotes the value."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return (
            f"{what} holds the token in quotes: store it without them (the quotes would be sent as part of the "
            "token and Graph would answer 190)"
        )
    if _ASSIGNMENT.match(value):
        return f"{what} holds a NAME=value line (as in a .env file), not a bare token: store only the value after the ="
    if value.startswith("{") and value.endswith("}") and not _is_numbers_map(value):
        return f"{what} holds a JSON object, not a bare token: " + (
            "set key: to the field that holds the token" if key_hint else "store only the token itself"
        )
    return None


_TOKEN_FIELDS = frozenset({"token", "access_token", "accesstoken", "value", "secret", "bearer", "whatsapp_token"})
_MAP_VALUE = re.compile(r"[^\s]{1,256}")


def _is_numbers_map(value: str) -> bool:
    """Whether ``value`` looks like a tenants' routing map as ``TenantProviders.add_numbers`` keeps it in a store
    (compact JSON of tenant keys; the tenants layer checks it in full): read through the same providers, it is
    not a misplaced token. A token under a field (``{"access_token": "EAA..."}``) is still refused."""
    try:
        data = json.loads(value)
    except ValueError:
        return False
    return (
        isinstance(data, dict)
        and bool(data)
        and all(
            isinstance(k, str)
            and k.lower() not in _TOKEN_FIELDS
            and isinstance(v, str)
            and _MAP_VALUE.fullmatch(v) is not None
            and not v.startswith("EAA")
            for k, v in data.items()
        )
    )


def one_word(text: str, *, source: str, what: str = "the secret", key_hint: bool = False) -> str:
    """``text`` stripped, refused when empty, when it has whitespace inside (an access token is one word), or
    when it is clearly not a bare token (:func:`not_a_bare_token`)."""
    value = text.strip()
    if not value:
        raise SecretMalformed(f"{what} is empty: it must hold the access token", source=source)
    problem = not_a_bare_token(value, what=what, key_hint=key_hint)
    if problem:
        raise SecretMalformed(problem, source=source)
    if any(c.isspace() for c in value):
        raise SecretMalformed(
            f"{what} contains whitespace inside it; an access token is one word"
            + (" (set key when it holds a JSON object)" if key_hint else ""),
            source=source,
        )
    return value


def new_token_value(value: object, *, source: str) -> str:
    """The value ``put_token`` may write: a non-empty string with no whitespace inside, stripped."""
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise SecretMalformed("refusing to write an empty token or one with whitespace", source=source)
    return value.strip()

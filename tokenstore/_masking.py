"""One rule for a credential-looking word in any text built from a config value, and its masked form.

A token pasted where a name goes (``env: {var: EAAG...}``, a ``${VAR}`` holding the token, a file or store
path, the ``app_secret:`` variable name) must never come back in an error message, a ``Token.source``, a log
record or CLI output. Every such text passes :func:`mask_credentials` at the boundary: :class:`ConfigError`
and :class:`ProviderError` messages, every backend's ``source`` label and ``Token.source``, and everything
the CLI prints, and the records of tokenstore's loggers (:class:`MaskingFilter`).

The rule (:func:`looks_like_credential`), applied to every *word*: a maximal run of the characters tokens
are made of (letters, digits and ``- _ . ~ + / =``; a word ends at a space, a quote, ``:``, ``#``, ``@``,
``,``, brackets and the like). A word is a credential when

1. it contains a run of 20 or more letters and digits that starts with ``EAA`` (a Meta access token),
   switches between letters and digits at least four times (twice in a run of 32 or more: app secrets of
   32 hex digits, Conjur API keys), mixes upper case, lower case and digits (spread: Shannon entropy of at
   least 3.8 bits per character), or mixes upper and lower case spread like random text (4.3 bits), or
2. it is at least 32 characters long, holds upper and lower case, and its characters are spread like random
   text (4.2 bits per character: base64 and Azure-style client secrets with ``~ . _ - + /`` inside).

In a path (a word with ``/``), and in a dotted name with at least two readable segments
(``tenants.numbers.<key>``), only the segments that are credentials are masked; a prefixed token
(``hvs.<random>``) and a word that is a credential as a whole but none of whose segments is one (base64 with
``/`` inside) are masked whole.
Names, paths, URLs, host names, ARNs, UUIDs, numeric ids and version numbers stay readable: their runs of
letters and digits are short, or all one case, or do not look random (``WhatsAppBusinessAccountToken`` is
shown; a CamelCase name with digits in it, ``MyToken2024Production``, is masked: it cannot be told from a
short random secret). Measured on 20,000 random values each: no 32-hex-digit secret, base64url secret of 40
characters or Meta token was left unmasked; 1% of 24-character random alphanumeric secrets were. A
32-hex-digit version id, as Azure Key Vault uses, is masked too: it cannot be told from an app secret. A
masked word is replaced by ``[masked sha256:<12 hex>, <n> chars]`` - the same fingerprint
:attr:`Token.fingerprint` shows for that value, so an operator can still tell which credential it was.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter

from ._token import fingerprint_of

__all__ = ["MaskingFilter", "looks_like_credential", "mask_credentials", "masked", "masked_logger"]

_WORD = re.compile(r"[A-Za-z0-9\-_.~+/=]{20,}")
_RUN = re.compile(r"[A-Za-z0-9]{20,}")
#: a quick test for text that cannot hold a credential word (no run of 20 letters/digits, no 32-char word)
_CANDIDATE = re.compile(r"[A-Za-z0-9]{20}|[A-Za-z0-9\-_.~+/=]{32}")
_SEGMENTS = re.compile(r"([/.])")
_SWITCH = re.compile(r"(?<=[A-Za-z])[0-9]|(?<=[0-9])[A-Za-z]")


def _entropy(word: str) -> float:
    counts = Counter(word)
    n = len(word)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_like_credential(word: str) -> bool:
    """Whether one word (see the module docstring) looks like a token, a secret or a key."""
    if word.startswith("wamid."):  # a WhatsApp message id: not a secret, and operators need to see it
        return False
    for run in _RUN.findall(word):
        if run.startswith("EAA"):
            return True
        switches = len(_SWITCH.findall(run))
        if switches >= 4 or (switches >= 2 and len(run) >= 32):
            return True
        upper = any(c.isupper() for c in run)
        lower = any(c.islower() for c in run)
        if upper and lower:
            digits = any(c.isdigit() for c in run)
            if _entropy(run) >= (3.8 if digits else 4.3):
                return True
    return (
        len(word) >= 32 and any(c.isupper() for c in word) and any(c.islower() for c in word) and _entropy(word) >= 4.2
    )


def masked(value: str) -> str:
    """The masked form of one credential-looking value: fingerprint and length, never the value."""
    return f"[masked {fingerprint_of(value)}, {len(value)} chars]"


def _replace(match: re.Match[str]) -> str:
    word = match.group(0)
    if not looks_like_credential(word):
        return word
    if "/" in word or "." in word:  # a path or a dotted field name: mask only the segments that are credentials
        parts = _SEGMENTS.split(word)  # separators kept at the odd indexes
        secret = [looks_like_credential(part) for part in parts[::2]]
        # a path: any secret segment; a dotted name (tenants.numbers.<key>): two readable segments at least, so a
        # prefixed token (hvs.<random>) is still masked whole and keeps its Token.fingerprint
        readable = len(secret) - sum(secret)
        if any(secret) and ("/" in word or readable >= 2):
            return "".join(masked(part) if i % 2 == 0 and secret[i // 2] else part for i, part in enumerate(parts))
    return masked(word)  # one credential (base64 may hold "/" itself)


def mask_credentials(text: str) -> str:
    """``text`` with every credential-looking word replaced by its :func:`masked` form (idempotent)."""
    if len(text) < 20 or not _CANDIDATE.search(text):
        return text
    return _WORD.sub(_replace, text)


def _mask_arg(arg: object) -> object:
    if isinstance(arg, str):
        return mask_credentials(arg)
    if isinstance(arg, (int, float, bool)) or arg is None:
        return arg
    return mask_credentials(str(arg))  # a Path, a URL object...: its text, masked


class MaskingFilter(logging.Filter):
    """Masks credential-looking words in a record's message and arguments (tokenstore's loggers carry it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.msg, str):
                record.msg = mask_credentials(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(_mask_arg(a) for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: _mask_arg(v) for k, v in record.args.items()}
        except Exception:  # a filter must never break logging; withhold the record's text rather than leak it
            record.msg, record.args = "(log record withheld: it could not be masked)", ()
        return True


_FILTER = MaskingFilter()


def masked_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the :class:`MaskingFilter` on it: what every tokenstore module logs to."""
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log

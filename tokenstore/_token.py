"""The :class:`Token` value: a secret string that only :meth:`Token.reveal` gives out."""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
from typing import Any, NoReturn

__all__ = ["Token", "fingerprint_of", "mask"]


def fingerprint_of(value: str) -> str:
    """A short, log-safe identifier of a secret: ``sha256:`` and the first 12 hex digits of its hash."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def mask(value: str) -> str:
    """A masked preview for operators: the first 4 characters and the length (``EAAB…(212 chars)``).

    Four characters of a Meta token are its fixed type prefix (``EAAG``, ``EAAB``), not secret material.
    Values shorter than 16 characters show no characters at all.
    """
    if len(value) < 16:
        return f"…({len(value)} chars)"
    return f"{value[:4]}…({len(value)} chars)"


def _mask_credentials(text: str) -> str:
    from ._masking import mask_credentials  # _masking imports this module

    return mask_credentials(text)


class Token:
    """An access token fetched from a store.

    The value is only available through :meth:`reveal`; ``str``, ``repr``, ``format`` and logging show the
    fingerprint instead, and the object refuses to be pickled or copied into a payload by accident.
    """

    __slots__ = ("__value", "expires_at", "fetched_at", "fingerprint", "source", "version")

    def __init__(
        self,
        value: str,
        *,
        source: str,
        version: str | None = None,
        fetched_at: _dt.datetime | None = None,
        expires_at: _dt.datetime | None = None,
    ) -> None:
        if not isinstance(value, str):
            raise TypeError("Token value must be a str")
        self.__value = value
        #: where it came from, e.g. ``vault:secret/whatsapp/prod#access_token`` (never the value; a
        #: credential-looking word in it is masked, see :func:`tokenstore.mask_credentials`)
        self.source = _mask_credentials(source)
        #: the backend's version id, where the store has one (KV version, VersionId, ...)
        self.version = version
        #: when it was read from the store (UTC)
        self.fetched_at = fetched_at or _dt.datetime.now(_dt.timezone.utc)
        #: when the store says the secret expires, if it says so
        self.expires_at = expires_at
        #: short sha256 prefix, safe to log
        self.fingerprint = fingerprint_of(value)

    def reveal(self) -> str:
        """The secret string. Call it only where the token is put on the wire."""
        return self.__value

    def __repr__(self) -> str:
        version = f", version={self.version!r}" if self.version is not None else ""
        return f"Token(source={self.source!r}{version}, fingerprint={self.fingerprint!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return hmac.compare_digest(self.__value.encode(), other.__value.encode())

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __bool__(self) -> bool:
        return bool(self.__value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("Token objects cannot be pickled: that would write the secret out")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("Token objects cannot be pickled: that would write the secret out")

    def __copy__(self) -> Token:
        return self

    def __deepcopy__(self, memo: Any) -> Token:
        return self

    def __getstate__(self) -> NoReturn:
        raise TypeError("Token objects cannot be pickled: that would write the secret out")

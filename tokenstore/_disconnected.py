"""The disconnected marker: a tenant whose customer took the app away, recorded where every replica sees it.

When a customer uninstalls the app (or its token dies and nothing replaces it), the tenant's token in the
store is dead. Recording that in the store itself, in place of the dead token, means every replica, cron
job and CLI sees the same state with no other database, and a new onboarding (``put_token`` of a fresh
token) clears it by the same write that reconnects the tenant. The marker is one word, so it travels
through every backend's parser unchanged::

    tokenstore-disconnected:PARTNER_APP_UNINSTALLED:1764580000

(``tokenstore-disconnected:`` + a reason of capital letters, digits and ``_`` + unix seconds). It is not a
secret. A sender that sends with it gets Graph's 190 and, with no newer token in the store, reports the
tenant disconnected; :func:`disconnected_marker` recognises it without a Graph call.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

from ._token import Token

__all__ = ["DISCONNECTED_PREFIX", "Disconnected", "disconnected_marker"]

DISCONNECTED_PREFIX = "tokenstore-disconnected:"
_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_MARKER = re.compile(r"^tokenstore-disconnected:(?P<reason>[A-Z][A-Z0-9_]{0,63}):(?P<at>\d{1,12})$")


@dataclass(frozen=True, kw_only=True)
class Disconnected:
    """Why and since when a tenant is disconnected (``reason``: e.g. ``PARTNER_APP_UNINSTALLED``,
    ``TOKEN_INVALID``; ``at``: unix seconds)."""

    reason: str
    at: int

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not _REASON.match(self.reason):
            raise ValueError("a disconnect reason is 1-64 capital letters, digits or _, starting with a letter")
        if isinstance(self.at, bool) or not isinstance(self.at, int) or self.at < 0:
            raise ValueError("Disconnected.at is unix seconds")

    @classmethod
    def now(cls, reason: str, *, clock: float | None = None) -> Disconnected:
        return cls(reason=reason, at=int(time.time() if clock is None else clock))

    @property
    def value(self) -> str:
        """The marker to store in place of the tenant's token."""
        return f"{DISCONNECTED_PREFIX}{self.reason}:{self.at}"

    @property
    def since(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.at, dt.timezone.utc)

    def to_dict(self) -> dict[str, object]:
        return {"reason": self.reason, "since": self.since.isoformat(timespec="seconds")}


def disconnected_marker(token: Token | str | None) -> Disconnected | None:
    """The :class:`Disconnected` state a stored value records, or None for anything else (a real token)."""
    if token is None:
        return None
    value = token.reveal() if isinstance(token, Token) else token
    if not value.startswith(DISCONNECTED_PREFIX):
        return None
    match = _MARKER.match(value.strip())
    if match is None:
        return None
    return Disconnected(reason=match["reason"], at=int(match["at"]))

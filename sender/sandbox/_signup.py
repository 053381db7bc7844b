"""Embedded Signup codes: what the frontend gets when a customer finishes Embedded Signup, and what the server
exchanges (``GET /oauth/access_token?client_id&client_secret&code``, no grant_type, no redirect_uri) for the
customer's business integration system user token.

A code belongs to one app and names the WABAs the customer shared (one business, or several); it lives 30
seconds on the sandbox clock and can be exchanged once. The exchange issues one token scoped to every WABA of
the code (``granular_scopes`` with their ids, as debug_token shows it), 60-day by default (Meta's configuration
template), and makes it each business's current token. Codes are kept by value in memory only; ``repr`` and
every summary show a fingerprint.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from tokenstore import fingerprint_of

from ._tokens import SIXTY_DAYS

__all__ = ["CODE_LIFETIME", "SignupCode", "SignupCodes"]

#: seconds an Embedded Signup code can be exchanged
CODE_LIFETIME = 30.0


@dataclass
class SignupCode:
    value: str = field(repr=False)
    app_id: str
    waba_ids: tuple[str, ...]
    issued_at: float
    #: scopes of the token the exchange issues
    scopes: tuple[str, ...]
    #: seconds of life of the issued token (None: never expires)
    token_expires_in: float | None = SIXTY_DAYS
    lifetime: float = CODE_LIFETIME
    #: the fingerprint of the token it was exchanged for (None: not used yet)
    used_for: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.value)

    def status(self, now: float) -> str:
        """``unused``, ``used`` or ``expired``."""
        if self.used_for is not None:
            return "used"
        return "expired" if now >= self.issued_at + self.lifetime else "unused"


class SignupCodes:
    """Thread-safe: codes by value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, SignupCode] = {}

    def add(self, code: SignupCode) -> SignupCode:
        with self._lock:
            self._codes[code.value] = code
        return code

    def new(
        self,
        *,
        app_id: str,
        waba_ids: tuple[str, ...],
        now: float,
        scopes: tuple[str, ...],
        token_expires_in: float | None = SIXTY_DAYS,
        lifetime: float = CODE_LIFETIME,
        value: str | None = None,
    ) -> SignupCode:
        value = value or "AQ" + secrets.token_urlsafe(96).replace("-", "x").replace("_", "y")
        return self.add(
            SignupCode(
                value=value,
                app_id=app_id,
                waba_ids=waba_ids,
                issued_at=now,
                scopes=scopes,
                token_expires_in=token_expires_in,
                lifetime=lifetime,
            )
        )

    def get(self, value: str) -> SignupCode | None:
        with self._lock:
            return self._codes.get(value)

    def take(self, value: str, now: float) -> tuple[SignupCode | None, str]:
        """Mark the code as being used: ``(code, status before)``; only an ``unused`` code is taken."""
        with self._lock:
            code = self._codes.get(value)
            if code is None:
                return None, "unknown"
            status = code.status(now)
            if status == "unused":
                code.used_for = "-"  # set to the token's fingerprint by the exchange
            return code, status

    def all(self) -> list[SignupCode]:
        with self._lock:
            return list(self._codes.values())

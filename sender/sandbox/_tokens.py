"""The sandbox's token registry: which access tokens exist, for which app, with what scopes and lifetime.

A token record carries what ``debug_token`` reports (type, app, user, scopes, granular scopes, ``issued_at``,
``expires_at`` with 0 for never, ``data_access_expires_at``) plus its revocation, all on the sandbox clock,
so a test can expire a 60-day token by moving the clock. Apps (id and secret) authenticate app-token calls
(``{app-id}|{app-secret}``). Values are only returned by the calls that create them; records, reprs and
listings show fingerprints.
"""

from __future__ import annotations

import dataclasses
import hmac
import math
import secrets
import string
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tokenstore import fingerprint_of

from ._clock import Clock

__all__ = [
    "DEFAULT_SCOPES",
    "SIXTY_DAYS",
    "AppRecord",
    "TokenRecord",
    "TokenRegistry",
    "new_token_value",
]

DEFAULT_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
SIXTY_DAYS = 60 * 24 * 3600
_ALPHABET = string.ascii_letters + string.digits


def new_token_value(prefix: str = "EAAG", length: int = 160) -> str:
    """A fresh random token shaped like Meta's (a fixed ``EAA…`` type prefix and a base62 tail)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass
class AppRecord:
    """A Meta app: its id, secret and name. ``repr`` hides the secret."""

    app_id: str
    secret: str = field(repr=False)
    name: str = "Sandbox App"

    @property
    def app_token(self) -> str:
        return f"{self.app_id}|{self.secret}"


@dataclass
class TokenRecord:
    """One access token as Graph knows it. ``value`` is excluded from ``repr``."""

    value: str = field(repr=False)
    fingerprint: str
    app_id: str
    type: str = "SYSTEM_USER"
    user_id: str = "100000000000009"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    #: scope -> target ids (WABA / phone number ids), as in debug_token's granular_scopes
    granular_scopes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    issued_at: int = 0
    #: unix seconds; 0 means never
    expires_at: int = 0
    data_access_expires_at: int = 0
    revoked_at: int | None = None
    #: the fingerprint of the token this one was exchanged from (a refresh or rotation)
    parent: str | None = None
    label: str | None = None

    def status(self, now: float) -> str:
        """``valid``, ``expired`` or ``revoked`` at time ``now``."""
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked"
        if self.expires_at and now >= self.expires_at:
            return "expired"
        return "valid"

    def is_valid(self, now: float) -> bool:
        return self.status(now) == "valid"

    def copy(self) -> TokenRecord:
        return dataclasses.replace(self, granular_scopes=dict(self.granular_scopes))

    def summary(self, now: float) -> dict[str, object]:
        """A JSON-able description without the value."""
        return {
            "fingerprint": self.fingerprint,
            "type": self.type,
            "app_id": self.app_id,
            "status": self.status(now),
            "scopes": list(self.scopes),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "parent": self.parent,
            "label": self.label,
        }


class TokenRegistry:
    """Thread-safe registry of apps and tokens on an injectable clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._tokens: dict[str, TokenRecord] = {}
        self._apps: dict[str, AppRecord] = {}

    # -- apps -------------------------------------------------------------------------------------------------
    def add_app(self, app_id: str | None = None, secret: str | None = None, name: str = "Sandbox App") -> AppRecord:
        app = AppRecord(
            app_id=app_id or str(1_000_000_000_000_000 + secrets.randbelow(10**15)),
            secret=secret or secrets.token_hex(16),
            name=name,
        )
        with self._lock:
            self._apps[app.app_id] = app
        return app

    def app(self, app_id: str) -> AppRecord | None:
        with self._lock:
            return self._apps.get(app_id)

    def app_for_app_token(self, value: str) -> AppRecord | None:
        """The app whose app token (``id|secret``) this is, or None."""
        app_id, sep, secret = value.partition("|")
        if not sep:
            return None
        app = self.app(app_id)
        if app is None or not hmac.compare_digest(app.secret.encode(), secret.encode()):
            return None
        return app

    def rotate_app_secret(self, app_id: str, value: str | None = None) -> str:
        """Reset the app's secret (to ``value``, default a random one), as Meta's dashboard does."""
        with self._lock:
            app = self._apps[app_id]
            app.secret = value or secrets.token_hex(16)
            return app.secret

    # -- tokens -----------------------------------------------------------------------------------------------
    def add(
        self,
        value: str,
        *,
        app_id: str,
        type: str = "SYSTEM_USER",
        scopes: Iterable[str] = DEFAULT_SCOPES,
        granular_scopes: Mapping[str, Iterable[str]] | None = None,
        expires_in: float | None = None,
        user_id: str = "100000000000009",
        parent: str | None = None,
        label: str | None = None,
    ) -> TokenRecord:
        """Register ``value`` as a token of ``app_id`` issued now (``expires_in`` seconds, None: never)."""
        if not value or any(c.isspace() for c in value):
            raise ValueError("a token value must be one non-empty word")
        if expires_in is not None and not (isinstance(expires_in, (int, float)) and math.isfinite(expires_in)):
            raise ValueError("expires_in must be a finite number of seconds (None: never expires)")
        now = int(self.clock())
        record = TokenRecord(
            value=value,
            fingerprint=fingerprint_of(value),
            app_id=app_id,
            type=type,
            user_id=user_id,
            scopes=tuple(scopes),
            granular_scopes={k: tuple(v) for k, v in (granular_scopes or {}).items()},
            issued_at=now,
            expires_at=0 if expires_in is None else now + int(expires_in),
            parent=parent,
            label=label,
        )
        with self._lock:
            if value in self._tokens:
                raise ValueError(f"token {record.fingerprint} is already registered")
            self._tokens[value] = record
        return record

    def issue(self, *, app_id: str, **options: object) -> str:
        """Create a new random token (same options as :meth:`add`); returns its value."""
        value = new_token_value()
        self.add(value, app_id=app_id, **options)  # type: ignore[arg-type]
        return value

    def get(self, value: str) -> TokenRecord | None:
        """The live record of ``value`` (None when unknown). Callers outside the sandbox get copies."""
        with self._lock:
            return self._tokens.get(value)

    def find(self, value_or_fingerprint: str) -> TokenRecord | None:
        with self._lock:
            record = self._tokens.get(value_or_fingerprint)
            if record is not None:
                return record
            for record in self._tokens.values():
                if record.fingerprint == value_or_fingerprint:
                    return record
        return None

    def exchange(
        self,
        old: str,
        *,
        expires_in: float | str | None = "same",
        revoke_old: bool = False,
        value: str | None = None,
    ) -> str:
        """A new token with the old one's app, type, user and scopes (a refresh or rotation); returns it.

        ``expires_in``: ``"same"`` keeps the old lifetime policy (never stays never, a 60-day token gets a new
        60 days), a number sets it, None makes it never expire. The old token stays valid unless
        ``revoke_old``. ``value``: the new token's value (default: a fresh random one).
        """
        with self._lock:
            record = self.find(old)
            if record is None:
                raise KeyError("no such token")
            if expires_in == "same":
                lifetime: float | None = (record.expires_at - record.issued_at) if record.expires_at else None
            else:
                lifetime = None if expires_in is None else float(expires_in)  # type: ignore[arg-type]
            if value is None:
                value = new_token_value()
            self.add(
                value,
                app_id=record.app_id,
                type=record.type,
                scopes=record.scopes,
                granular_scopes=record.granular_scopes,
                expires_in=lifetime,
                user_id=record.user_id,
                parent=record.fingerprint,
                label=record.label,
            )
            if revoke_old and record.revoked_at is None:
                record.revoked_at = int(self.clock())
            return value

    def revoke(self, value_or_fingerprint: str) -> bool:
        """Revoke a token at once; False when unknown or already revoked."""
        with self._lock:
            record = self.find(value_or_fingerprint)
            if record is None or record.revoked_at is not None:
                return False
            record.revoked_at = int(self.clock())
            return True

    def records(self) -> list[TokenRecord]:
        with self._lock:
            return [r.copy() for r in self._tokens.values()]

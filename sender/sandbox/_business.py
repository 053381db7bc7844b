"""The businesses the sandbox knows: each a customer's WhatsApp Business Account (WABA) with its phone numbers
and its own tokens, as a Tech Provider sees them after Embedded Signup.

A token acts for the WABAs named in its ``granular_scopes`` (debug_token's ``target_ids``), as Meta's business
integration system user tokens do; a token without granular scopes (the sandbox's classic ``issue_token()``)
acts for the default business only. ``POST /{phone-number-id}/messages`` with a token that does not act for the
number's business answers Graph's permission error (code 200) and delivers nothing.

The default business (:data:`DEFAULT_WABA_ID`) holds the sandbox's classic phone numbers; with
``phone_number_ids=None`` it owns every numeric id that no other business owns (the sandbox's old behaviour).

To add what a business needs (installed/uninstalled, a webhook subscription, an Embedded Signup code), add a
field to :class:`Business` with a default, and methods on :class:`BusinessRegistry`/``Sandbox``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BUSINESS_SCOPES",
    "DEFAULT_WABA_ID",
    "MANAGEMENT_SCOPE",
    "MESSAGING_SCOPE",
    "Business",
    "BusinessRegistry",
    "PhoneNumber",
]

DEFAULT_WABA_ID = "102290129340398"
MESSAGING_SCOPE = "whatsapp_business_messaging"
MANAGEMENT_SCOPE = "whatsapp_business_management"
#: the scopes of a business token (Embedded Signup's business integration system user token)
BUSINESS_SCOPES = (MANAGEMENT_SCOPE, MESSAGING_SCOPE)

# id ranges for generated objects (15 digits, like Meta's; apart from the sandbox's fixed defaults)
_WABA_BASE = 210_000_000_000_000
_NUMBER_BASE = 310_000_000_000_000
_PORTFOLIO_BASE = 410_000_000_000_000
_SYSTEM_USER_BASE = 510_000_000_000_000


@dataclass
class PhoneNumber:
    """A business phone number as ``GET /{waba-id}/phone_numbers`` describes it."""

    id: str
    display_phone_number: str
    verified_name: str
    quality_rating: str = "GREEN"
    code_verification_status: str = "VERIFIED"
    platform_type: str = "CLOUD_API"
    throughput_level: str = "STANDARD"

    def graph(self) -> dict[str, Any]:
        """The object in Meta's shape."""
        return {
            "verified_name": self.verified_name,
            "code_verification_status": self.code_verification_status,
            "display_phone_number": self.display_phone_number,
            "quality_rating": self.quality_rating,
            "platform_type": self.platform_type,
            "throughput": {"level": self.throughput_level},
            "id": self.id,
        }


@dataclass
class Business:
    """One customer business: its WABA, its business portfolio, its phone numbers and its current token.

    ``token`` is the value most recently issued for this business through the sandbox's business methods
    (``repr`` hides it); every token ever issued for it stays in the token registry with
    ``granular_scopes`` naming this WABA (see ``Sandbox.business_tokens``).
    """

    waba_id: str
    name: str
    business_id: str
    system_user_id: str
    numbers: dict[str, PhoneNumber] = field(default_factory=dict)
    token: str | None = field(default=None, repr=False)
    #: the default business owns every numeric phone number id no other business owns
    open_numbers: bool = False

    @property
    def phone_number_ids(self) -> list[str]:
        return list(self.numbers)

    @property
    def phone_number_id(self) -> str:
        """The first phone number's id (most businesses have one)."""
        if not self.numbers:
            raise LookupError(f"business {self.waba_id} has no phone number")
        return next(iter(self.numbers))

    def summary(self, token_fingerprint: str | None = None) -> dict[str, Any]:
        """A JSON-able description (the token by fingerprint only)."""
        return {
            "waba_id": self.waba_id,
            "name": self.name,
            "business_id": self.business_id,
            "system_user_id": self.system_user_id,
            "phone_numbers": [n.graph() for n in self.numbers.values()],
            "token": token_fingerprint,
        }


class BusinessRegistry:
    """Thread-safe: businesses by WABA id, and which business owns each phone number id."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._businesses: dict[str, Business] = {}
        self._owner: dict[str, str] = {}  # phone number id -> WABA id
        self._counter = itertools.count(1)

    def _next(self) -> int:
        return next(self._counter)

    def add(
        self,
        *,
        waba_id: str | None = None,
        name: str | None = None,
        numbers: int | Iterable[str] = 1,
        business_id: str | None = None,
        system_user_id: str | None = None,
        open_numbers: bool = False,
    ) -> Business:
        """A new business with ``numbers`` phone numbers (a count, or the ids to give them)."""
        with self._lock:
            n = self._next()
            waba_id = _check_id(waba_id if waba_id is not None else str(_WABA_BASE + n), "waba_id")
            if waba_id in self._businesses:
                raise ValueError(f"business {waba_id} already exists")
            business = Business(
                waba_id=waba_id,
                name=name or f"Sandbox Business {n}",
                business_id=_check_id(business_id or str(_PORTFOLIO_BASE + n), "business_id"),
                system_user_id=_check_id(system_user_id or str(_SYSTEM_USER_BASE + n), "system_user_id"),
                open_numbers=open_numbers,
            )
            self._businesses[waba_id] = business
            ids = [None] * numbers if isinstance(numbers, int) else list(numbers)
            for phone_id in ids:
                self.add_number(waba_id, phone_id)
            return business

    def add_number(
        self,
        waba_id: str,
        phone_number_id: str | None = None,
        *,
        display_phone_number: str | None = None,
        verified_name: str | None = None,
    ) -> PhoneNumber:
        with self._lock:
            business = self.get(waba_id)
            n = self._next()
            phone_id = _check_id(phone_number_id if phone_number_id is not None else str(_NUMBER_BASE + n), "id")
            owner = self._owner.get(phone_id)
            if owner is not None:
                raise ValueError(f"phone number {phone_id} already belongs to business {owner}")
            number = PhoneNumber(
                id=phone_id,
                display_phone_number=display_phone_number or f"+1 555-{n // 10000 % 1000:03d}-{n % 10000:04d}",
                verified_name=verified_name or business.name,
            )
            business.numbers[phone_id] = number
            self._owner[phone_id] = waba_id
            return number

    def get(self, waba_id: str) -> Business:
        with self._lock:
            business = self._businesses.get(waba_id)
        if business is None:
            raise KeyError(f"no business with WABA id {waba_id}")
        return business

    def find(self, waba_id: str) -> Business | None:
        with self._lock:
            return self._businesses.get(waba_id)

    def for_number(self, phone_number_id: str) -> Business | None:
        """The business that owns this phone number id (the open default business for unowned numeric ids)."""
        with self._lock:
            owner = self._owner.get(phone_number_id)
            if owner is not None:
                return self._businesses[owner]
            if phone_number_id.isdigit():
                for business in self._businesses.values():
                    if business.open_numbers:
                        return business
        return None

    def all(self) -> list[Business]:
        with self._lock:
            return list(self._businesses.values())

    def owners(self) -> Mapping[str, str]:
        """phone number id -> WABA id, for every number a business owns (a copy)."""
        with self._lock:
            return dict(self._owner)


def _check_id(value: str, what: str) -> str:
    value = str(value).strip()
    if not value.isdigit() or len(value) > 32:
        raise ValueError(f"{what} must be a numeric id, got {value!r}")
    return value


def token_wabas(granular_scopes: Mapping[str, Iterable[str]], default: str) -> tuple[str, ...]:
    """The WABAs a token acts for: its ``whatsapp_business_messaging`` (else ``..._management``) targets, else
    the default business."""
    for scope in (MESSAGING_SCOPE, MANAGEMENT_SCOPE):
        targets = granular_scopes.get(scope)
        if targets:
            return tuple(targets)
    return (default,)

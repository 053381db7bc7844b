"""What the sender returns: :class:`SendResult` for a message, :class:`TokenInfo` for ``debug_token``,
:class:`IssuedToken` for a token Graph issued (a refresh or a generated system-user token)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenstore import Token

from ._redact import redact_text

__all__ = ["InvalidTokenReason", "IssuedToken", "SendResult", "TokenInfo"]

WHATSAPP_MESSAGING_SCOPE = "whatsapp_business_messaging"
WHATSAPP_MANAGEMENT_SCOPE = "whatsapp_business_management"


@dataclass(frozen=True)
class SendResult:
    """A message the Cloud API accepted: ``{"messaging_product", "contacts": [{"input", "wa_id"}], "messages":
    [{"id", "message_status"?}]}``."""

    #: the ``wamid.…`` id; status webhooks refer to it
    message_id: str
    #: the recipient's WhatsApp id, as the API resolved it (None where the API did not say)
    wa_id: str | None = None
    #: the recipient as sent (``contacts[0].input``)
    input: str | None = None
    #: ``messages[0].message_status`` where given (``accepted``, ``held_for_quality_assessment``, ...)
    message_status: str | None = None
    #: how many attempts it took (retries included)
    attempts: int = 1
    #: the fingerprint of the token that carried the accepted request (safe to log)
    token_fingerprint: str | None = None
    #: the parsed response body
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_response(
        cls, data: Mapping[str, Any], *, attempts: int = 1, token_fingerprint: str | None = None
    ) -> SendResult | None:
        """Parse the Cloud API's success shape; None when it is not that shape."""
        return cls._parse(data, dict(data), attempts, token_fingerprint)

    @classmethod
    def _parse(
        cls, data: Mapping[str, Any], raw: Mapping[str, Any], attempts: int, token_fingerprint: str | None
    ) -> SendResult | None:
        """:meth:`from_response` keeping ``raw`` as given (the sender's own freshly parsed body: no copy)."""
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            return None
        first = messages[0]
        if type(first) is not dict and not isinstance(first, Mapping):  # a dict skips the ABC check
            return None
        message_id = first.get("id")
        if not isinstance(message_id, str) or not message_id:
            return None
        status = first.get("message_status")
        wa_id = input_ = None
        contacts = data.get("contacts")
        if isinstance(contacts, list) and contacts:
            contact = contacts[0]
            if type(contact) is dict or isinstance(contact, Mapping):
                wa_id = contact.get("wa_id")
                input_ = contact.get("input")
                wa_id = wa_id if isinstance(wa_id, str) else None
                input_ = input_ if isinstance(input_, str) else None
        return cls(
            message_id=message_id,
            wa_id=wa_id,
            input=input_,
            message_status=status if isinstance(status, str) else None,
            attempts=attempts,
            token_fingerprint=token_fingerprint,
            raw=raw,
        )


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return dt.datetime.fromtimestamp(value, dt.timezone.utc)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


@dataclass(frozen=True)
class InvalidTokenReason:
    """Why ``debug_token`` calls a token invalid: Graph's ``data.error`` (code 190 and a subcode: 463
    expired, 460 invalidated or revoked, 467 invalid, 458 app not installed)."""

    code: int | None
    subcode: int | None = None
    message: str | None = None

    @property
    def expired(self) -> bool:
        return self.subcode == 463

    def __str__(self) -> str:
        code = "" if self.code is None else f" (code {self.code}" + (f"/{self.subcode}" if self.subcode else "") + ")"
        return f"{self.message or 'Graph says the token is not valid'}{code}"


@dataclass(frozen=True)
class TokenInfo:
    """What ``GET /debug_token`` says about a token (the ``data`` object). Never holds the token itself."""

    is_valid: bool
    #: ``SYSTEM_USER``, ``USER``, ``PAGE``, ``APP``
    type: str | None = None
    app_id: str | None = None
    application: str | None = None
    user_id: str | None = None
    scopes: tuple[str, ...] = ()
    #: ``{scope: target ids}`` from ``granular_scopes`` (WABA and phone number ids)
    granular_scopes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: None means never (``expires_at: 0``)
    expires_at: dt.datetime | None = None
    issued_at: dt.datetime | None = None
    data_access_expires_at: dt.datetime | None = None
    #: when invalid: the reason Graph gives (``{"code": 190, "subcode": 463, "message": ...}``)
    error_code: int | None = None
    error_subcode: int | None = None
    error_message: str | None = None
    #: fingerprint of the inspected token (safe to log)
    fingerprint: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def never_expires(self) -> bool:
        return self.expires_at is None

    def expires_in(self, now: dt.datetime | None = None) -> dt.timedelta | None:
        """Time left before expiry (negative once expired); None for a token that never expires."""
        if self.expires_at is None:
            return None
        return self.expires_at - (now or dt.datetime.now(dt.timezone.utc))

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        """Whether the expiry has passed (Graph then also reports the token invalid, subcode 463)."""
        left = self.expires_in(now)
        return left is not None and left.total_seconds() <= 0

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def targets(self, scope: str) -> tuple[str, ...]:
        """The target ids ``granular_scopes`` lists for ``scope`` (empty: none listed)."""
        return tuple(self.granular_scopes.get(scope, ()))

    @property
    def waba_ids(self) -> tuple[str, ...]:
        """The WhatsApp Business Account ids the ``whatsapp_business_messaging`` scope covers (its
        ``granular_scopes`` targets); empty when Graph lists none."""
        return self.targets(WHATSAPP_MESSAGING_SCOPE)

    @property
    def can_send_messages(self) -> bool:
        return self.is_valid and self.has_scope(WHATSAPP_MESSAGING_SCOPE)

    @property
    def error(self) -> InvalidTokenReason | None:
        """Why Graph calls the token invalid (``data.error``); None when it gave no reason."""
        if self.error_code is None and self.error_subcode is None and self.error_message is None:
            return None
        return InvalidTokenReason(code=self.error_code, subcode=self.error_subcode, message=self.error_message)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (times in ISO 8601, ``expires_at`` None for never); no secret in it."""
        error = self.error
        return {
            "is_valid": self.is_valid,
            "type": self.type,
            "app_id": self.app_id,
            "application": self.application,
            "user_id": self.user_id,
            "scopes": list(self.scopes),
            "granular_scopes": {k: list(v) for k, v in self.granular_scopes.items()},
            "waba_ids": list(self.waba_ids),
            "issued_at": _iso(self.issued_at),
            "expires_at": _iso(self.expires_at),
            "never_expires": self.never_expires,
            "data_access_expires_at": _iso(self.data_access_expires_at),
            "error": None
            if error is None
            else {"code": error.code, "subcode": error.subcode, "message": error.message},
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_response(cls, body: Mapping[str, Any], *, fingerprint: str | None = None) -> TokenInfo:
        """Parse ``{"data": {...}}``. Raises ValueError when the body is not that shape."""
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise ValueError("debug_token answered without a data object")
        error = data.get("error") if isinstance(data.get("error"), Mapping) else {}
        assert isinstance(error, Mapping)
        granular: dict[str, tuple[str, ...]] = {}
        for item in data.get("granular_scopes") or ():
            if isinstance(item, Mapping) and isinstance(item.get("scope"), str):
                targets = item.get("target_ids") or ()
                granular[item["scope"]] = tuple(str(t) for t in targets if isinstance(t, (str, int)))
        scopes = tuple(s for s in (data.get("scopes") or ()) if isinstance(s, str))

        def text(key: str) -> str | None:
            value = data.get(key)
            return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None

        code = error.get("code")
        subcode = error.get("subcode", error.get("error_subcode"))
        message = error.get("message")
        return cls(
            is_valid=data.get("is_valid") is True,
            type=text("type"),
            app_id=text("app_id"),
            application=text("application"),
            user_id=text("user_id"),
            scopes=scopes,
            granular_scopes=granular,
            expires_at=_time(data.get("expires_at")),
            issued_at=_time(data.get("issued_at")),
            data_access_expires_at=_time(data.get("data_access_expires_at")),
            error_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            error_subcode=subcode if isinstance(subcode, int) and not isinstance(subcode, bool) else None,
            error_message=redact_text(message) if isinstance(message, str) else None,
            fingerprint=fingerprint,
            raw=dict(body),
        )


@dataclass(frozen=True)
class IssuedToken:
    """A token Graph issued: a refresh (``fb_exchange_token``) or a generated system-user token.

    The value is a :class:`tokenstore.Token` (``token.reveal()`` gives it; ``repr`` shows its fingerprint
    only). Graph's raw answer is not kept: it holds the value.
    """

    token: Token
    #: ``bearer``
    token_type: str | None = None
    #: seconds of life Graph announced (None: Graph did not say; ``inspect`` the token for its expiry)
    expires_in: int | None = None
    #: ``expires_in`` from the moment the answer arrived
    expires_at: dt.datetime | None = None

    @property
    def fingerprint(self) -> str:
        return self.token.fingerprint

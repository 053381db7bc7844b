"""Typed webhook events, parsed from a verified body. Meta adds fields: nothing unknown ever raises.

Meta's envelope is ``{"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [{"field":
..., "value": {...}}]}]}``. :func:`parse_events` flattens it into one event per status, inbound message or
account update; any other change (or a malformed part) becomes an :class:`UnknownEvent` holding the raw
value. Every event keeps ``raw``: the JSON object it was read from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._webhooks import InvalidPayload

__all__ = [
    "AccountUpdateEvent",
    "MessageEvent",
    "Pricing",
    "StatusError",
    "StatusEvent",
    "UnknownEvent",
    "WebhookEvent",
    "parse_events",
]


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class WebhookEvent:
    """Base of every event: where it came from and the raw object."""

    #: the ``field`` of the change (``messages``, ``account_update``, ...)
    field: str
    #: the entry id: the WhatsApp Business Account id
    waba_id: str | None
    #: the JSON object this event was read from (a status, a message, a change's value)
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)


@dataclass(frozen=True)
class Pricing:
    """A status's ``pricing`` object."""

    billable: bool | None
    pricing_model: str | None
    category: str | None
    type: str | None
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: Any) -> Pricing | None:
        if not isinstance(raw, Mapping):
            return None
        billable = raw.get("billable")
        return cls(
            billable=billable if isinstance(billable, bool) else None,
            pricing_model=_str(raw.get("pricing_model")),
            category=_str(raw.get("category")),
            type=_str(raw.get("type")),
            raw=raw,
        )


@dataclass(frozen=True)
class StatusError:
    """One entry of a failed status's ``errors``: Meta's code and title (and details where given)."""

    code: int | None
    title: str | None
    message: str | None
    details: str | None

    @classmethod
    def from_raw(cls, raw: Any) -> StatusError:
        raw = _map(raw)
        return cls(
            code=_int(raw.get("code")),
            title=_str(raw.get("title")),
            message=_str(raw.get("message")),
            details=_str(_map(raw.get("error_data")).get("details")),
        )


@dataclass(frozen=True)
class StatusEvent(WebhookEvent):
    """A message status: ``sent``, ``delivered``, ``read``, ``failed`` (or whatever Meta adds)."""

    #: the ``wamid.…`` of the message this status is about (``SendResult.message_id``)
    message_id: str | None = None
    status: str | None = None
    #: unix seconds
    timestamp: int | None = None
    recipient_id: str | None = None
    phone_number_id: str | None = None
    display_phone_number: str | None = None
    #: what the send carried as ``biz_opaque_callback_data``
    biz_opaque_callback_data: str | None = None
    conversation_id: str | None = None
    pricing: Pricing | None = None
    errors: tuple[StatusError, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def error_code(self) -> int | None:
        """The first error's code (failed statuses)."""
        return self.errors[0].code if self.errors else None

    @property
    def error_title(self) -> str | None:
        return self.errors[0].title if self.errors else None


@dataclass(frozen=True)
class MessageEvent(WebhookEvent):
    """An inbound message; ``raw`` is Meta's whole message object (every type, every field)."""

    message_id: str | None = None
    #: the sender's WhatsApp id (``from``)
    from_: str | None = None
    type: str | None = None
    timestamp: int | None = None
    #: the text body for ``text`` messages
    text: str | None = None
    #: the sender's profile name from ``contacts``, where given
    profile_name: str | None = None
    phone_number_id: str | None = None
    display_phone_number: str | None = None
    #: the message this one replies to (``context.id``)
    context_id: str | None = None


@dataclass(frozen=True)
class AccountUpdateEvent(WebhookEvent):
    """An ``account_update``: ``PARTNER_APP_INSTALLED`` / ``PARTNER_APP_UNINSTALLED`` (the customer removed
    the app: a disconnect), verification and policy events."""

    event: str | None = None
    #: ``waba_info.waba_id`` where given, else the entry id
    account_waba_id: str | None = None
    owner_business_id: str | None = None
    partner_app_id: str | None = None

    @property
    def installed(self) -> bool:
        return self.event == "PARTNER_APP_INSTALLED"

    @property
    def uninstalled(self) -> bool:
        return self.event == "PARTNER_APP_UNINSTALLED"


@dataclass(frozen=True)
class UnknownEvent(WebhookEvent):
    """A change this library has no type for (or could not read): ``raw`` is the change's value."""


def _status(
    value: Mapping[str, Any], raw: Mapping[str, Any], waba_id: str | None, meta: Mapping[str, Any]
) -> StatusEvent:
    errors = raw.get("errors")
    return StatusEvent(
        field="messages",
        waba_id=waba_id,
        raw=raw,
        message_id=_str(raw.get("id")),
        status=_str(raw.get("status")),
        timestamp=_int(raw.get("timestamp")),
        recipient_id=_str(raw.get("recipient_id")),
        phone_number_id=_str(meta.get("phone_number_id")),
        display_phone_number=_str(meta.get("display_phone_number")),
        biz_opaque_callback_data=_str(raw.get("biz_opaque_callback_data")),
        conversation_id=_str(_map(raw.get("conversation")).get("id")),
        pricing=Pricing.from_raw(raw.get("pricing")),
        errors=tuple(StatusError.from_raw(e) for e in errors) if isinstance(errors, list) else (),
    )


def _message(
    value: Mapping[str, Any], raw: Mapping[str, Any], waba_id: str | None, meta: Mapping[str, Any]
) -> MessageEvent:
    sender = _str(raw.get("from"))
    profile = None
    contacts = value.get("contacts")
    if isinstance(contacts, list):
        for contact in contacts:
            contact = _map(contact)
            if sender is None or _str(contact.get("wa_id")) == sender:
                profile = _str(_map(contact.get("profile")).get("name"))
                break
    return MessageEvent(
        field="messages",
        waba_id=waba_id,
        raw=raw,
        message_id=_str(raw.get("id")),
        from_=sender,
        type=_str(raw.get("type")),
        timestamp=_int(raw.get("timestamp")),
        text=_str(_map(raw.get("text")).get("body")),
        profile_name=profile,
        phone_number_id=_str(meta.get("phone_number_id")),
        display_phone_number=_str(meta.get("display_phone_number")),
        context_id=_str(_map(raw.get("context")).get("id")),
    )


def _change(change: Any, waba_id: str | None) -> list[WebhookEvent]:
    change = _map(change)
    name = _str(change.get("field")) or "?"
    value = change.get("value")
    if not isinstance(value, Mapping):
        return [UnknownEvent(field=name, waba_id=waba_id, raw=change)]
    if name == "messages":
        meta = _map(value.get("metadata"))
        events: list[WebhookEvent] = []
        for key, build in (("statuses", _status), ("messages", _message)):
            items = value.get(key)
            if isinstance(items, list):
                for item in items:
                    if isinstance(item, Mapping):
                        events.append(build(value, item, waba_id, meta))
                    else:
                        events.append(UnknownEvent(field=name, waba_id=waba_id, raw={key: item}))
        if not events:  # errors-only values and whatever Meta adds
            events.append(UnknownEvent(field=name, waba_id=waba_id, raw=value))
        return events
    if name == "account_update":
        info = _map(value.get("waba_info"))
        return [
            AccountUpdateEvent(
                field=name,
                waba_id=waba_id,
                raw=value,
                event=_str(value.get("event")),
                account_waba_id=_str(info.get("waba_id")) or waba_id,
                owner_business_id=_str(info.get("owner_business_id")),
                partner_app_id=_str(info.get("partner_app_id")),
            )
        ]
    return [UnknownEvent(field=name, waba_id=waba_id, raw=value)]


def parse_events(payload: bytes | bytearray | str | Mapping[str, Any]) -> list[WebhookEvent]:
    """The events of a webhook body (verify it first: :meth:`sender.WebhookVerifier.events` does both).

    Raises :class:`sender.InvalidPayload` only when the body is not a JSON object; anything unknown or
    malformed inside it becomes an :class:`UnknownEvent`.
    """
    if isinstance(payload, Mapping):
        data: Any = payload
    else:
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise InvalidPayload("the webhook body is not JSON") from None
    if not isinstance(data, Mapping):
        raise InvalidPayload("the webhook body is not a JSON object")
    entries = data.get("entry")
    events: list[WebhookEvent] = []
    if not isinstance(entries, list):
        return [UnknownEvent(field="?", waba_id=None, raw=data)]
    for entry in entries:
        entry = _map(entry)
        waba_id = _str(entry.get("id"))
        changes = entry.get("changes")
        if not isinstance(changes, list):
            events.append(UnknownEvent(field="?", waba_id=waba_id, raw=entry))
            continue
        for change in changes:
            events.extend(_change(change, waba_id))
    return events

"""parse_events: Meta's envelope into typed events; unknown fields and kinds never raise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sender
from tests.webhooks.conftest import status_body


def envelope(field: str, value: Any, waba: str = "102290129340398") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": [{"field": field, "value": value}]}],
    }


def test_status_events() -> None:
    (event,) = sender.parse_events(status_body("delivered", ref="ref-7", message_id="wamid.X"))
    assert isinstance(event, sender.StatusEvent)
    assert (event.message_id, event.status, event.biz_opaque_callback_data) == ("wamid.X", "delivered", "ref-7")
    assert (event.timestamp, event.recipient_id, event.phone_number_id) == (
        1764547200,
        "15551234567",
        "106540352242922",
    )
    assert event.waba_id == "102290129340398" and event.display_phone_number == "15550001111"
    assert not event.failed and event.error_code is None


def test_failed_status_with_error_code_title_and_pricing() -> None:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": "1"},
        "statuses": [
            {
                "id": "wamid.F",
                "status": "failed",
                "timestamp": 1764547200,
                "recipient_id": "1555",
                "biz_opaque_callback_data": "ref-f",
                "conversation": {"id": "conv-1", "origin": {"type": "marketing"}},
                "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"},
                "errors": [
                    {
                        "code": 131026,
                        "title": "Message undeliverable",
                        "message": "Message undeliverable",
                        "error_data": {"details": "Unable to deliver"},
                        "href": "https://developers.facebook.com/...",
                    }
                ],
                "a_field_meta_adds_tomorrow": {"x": 1},
            }
        ],
    }
    (event,) = sender.parse_events(envelope("messages", value))
    assert isinstance(event, sender.StatusEvent) and event.failed
    assert (event.error_code, event.error_title) == (131026, "Message undeliverable")
    assert event.errors[0].details == "Unable to deliver"
    assert event.pricing == sender.Pricing(
        billable=True, pricing_model="PMP", category="marketing", type="regular", raw=value["statuses"][0]["pricing"]
    )
    assert event.conversation_id == "conv-1" and event.timestamp == 1764547200
    assert event.raw["a_field_meta_adds_tomorrow"] == {"x": 1}


def test_inbound_message_keeps_the_raw_object() -> None:
    message = {
        "from": "15557654321",
        "id": "wamid.IN",
        "timestamp": "1764547300",
        "type": "text",
        "text": {"body": "hello"},
        "context": {"from": "15550001111", "id": "wamid.OUT"},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "15557654321"}],
        "messages": [message, {**message, "id": "wamid.IMG", "type": "image", "image": {"id": "m1"}, "text": None}],
    }
    text, image = sender.parse_events(envelope("messages", value))
    assert isinstance(text, sender.MessageEvent) and isinstance(image, sender.MessageEvent)
    assert (text.from_, text.type, text.text, text.profile_name, text.context_id) == (
        "15557654321",
        "text",
        "hello",
        "Ana",
        "wamid.OUT",
    )
    assert image.type == "image" and image.text is None and image.raw["image"] == {"id": "m1"}
    assert text.raw is message or text.raw == message


@pytest.mark.parametrize("event_name", ["PARTNER_APP_INSTALLED", "PARTNER_APP_UNINSTALLED", "SOMETHING_NEW"])
def test_account_update(event_name: str) -> None:
    value = {"event": event_name, "waba_info": {"waba_id": "555", "owner_business_id": "777", "partner_app_id": "9"}}
    (event,) = sender.parse_events(envelope("account_update", value, waba="0"))
    assert isinstance(event, sender.AccountUpdateEvent)
    assert (event.event, event.account_waba_id, event.owner_business_id, event.partner_app_id) == (
        event_name,
        "555",
        "777",
        "9",
    )
    assert event.uninstalled == (event_name == "PARTNER_APP_UNINSTALLED")
    assert event.installed == (event_name == "PARTNER_APP_INSTALLED")


def test_unknown_kinds_and_malformed_parts_become_unknown_events() -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "1", "changes": [{"field": "message_template_status_update", "value": {"event": "APPROVED"}}]},
            {"id": "2", "changes": [{"field": "messages", "value": "not an object"}]},
            {"id": "3", "changes": "nope"},
            "not an entry",
            {"id": "4", "changes": [{"field": "messages", "value": {"statuses": [1, None, {"status": 5}]}}]},
            {"id": "5", "changes": [{"field": "messages", "value": {"errors": [{"code": 131000}]}}]},
        ],
    }
    events = sender.parse_events(json.dumps(payload).encode())
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "UnknownEvent",
        "UnknownEvent",
        "UnknownEvent",
        "UnknownEvent",
        "UnknownEvent",
        "UnknownEvent",
        "StatusEvent",
        "UnknownEvent",
    ]
    assert events[0].field == "message_template_status_update" and events[0].raw == {"event": "APPROVED"}
    weird = events[6]
    assert isinstance(weird, sender.StatusEvent) and weird.status == "5" and weird.message_id is None
    assert sender.parse_events({"object": "x"})[0].raw == {"object": "x"}


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b"\xff\xfe", b'"text"', b"null"])
def test_a_body_that_is_not_a_json_object_is_invalid_payload(body: bytes) -> None:
    with pytest.raises(sender.InvalidPayload):
        sender.parse_events(body)


leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=6)
meta_keys = st.sampled_from(
    [
        "statuses",
        "messages",
        "errors",
        "metadata",
        "pricing",
        "contacts",
        "waba_info",
        "event",
        "id",
        "status",
        "text",
        "context",
        "from",
        "timestamp",
        "conversation",
        "error_data",
        "code",
        "profile",
        "wa_id",
    ]
)
anything = st.recursive(
    leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(meta_keys, inner, max_size=4), max_leaves=12
)
changes = st.lists(
    st.fixed_dictionaries(
        {"field": st.sampled_from(["messages", "account_update", "other"]) | leaf, "value": anything}
    ),
    max_size=3,
)
entries = st.lists(st.fixed_dictionaries({"id": leaf, "changes": changes}) | anything, max_size=3)


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({"object": leaf, "entry": entries}))
def test_any_json_object_parses_without_raising(payload: dict[str, Any]) -> None:
    events = sender.parse_events(json.dumps(payload).encode())
    assert all(isinstance(e, sender.WebhookEvent) for e in events)

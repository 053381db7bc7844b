"""Message builders match Meta's published schema; bad input is refused before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

import sender
from sender import InvalidRequest, check_message
from sender._messages import prepare_message
from sender.sandbox import Sandbox
from tests.sender.conftest import TO

ENVELOPE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": TO}


def test_text_shape() -> None:
    assert sender.text_message(TO, "hi") == {**ENVELOPE, "type": "text", "text": {"body": "hi", "preview_url": False}}
    reply = sender.text_message(TO, "yes", preview_url=True, reply_to="wamid.X", biz_opaque_callback_data="ref-1")
    assert reply["context"] == {"message_id": "wamid.X"}
    assert reply["biz_opaque_callback_data"] == "ref-1"
    assert reply["text"]["preview_url"] is True


def test_template_shape_with_components() -> None:
    components = [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/a.png"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ada"}]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": "Y"}],
        },
    ]
    msg = sender.template_message(TO, "order_update", language="pt_BR", components=components)
    assert msg == {
        **ENVELOPE,
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "pt_BR"}, "components": components},
    }
    assert "components" not in sender.template_message(TO, "hello_world")["template"]


@pytest.mark.parametrize("kind", ["image", "audio", "video", "document", "sticker"])
def test_media_by_link_or_id(kind: str) -> None:
    by_link = sender.media_message(TO, kind, link="https://example.com/f")
    assert by_link[kind] == {"link": "https://example.com/f"} and by_link["type"] == kind
    by_id = sender.media_message(TO, kind, media_id="1234")
    assert by_id[kind] == {"id": "1234"}


def test_media_caption_and_filename() -> None:
    doc = sender.media_message(TO, "document", media_id="9", caption="Invoice", filename="inv.pdf")
    assert doc["document"] == {"id": "9", "caption": "Invoice", "filename": "inv.pdf"}
    with pytest.raises(InvalidRequest, match="caption"):
        sender.media_message(TO, "audio", media_id="9", caption="no")
    with pytest.raises(InvalidRequest, match="filename"):
        sender.media_message(TO, "image", media_id="9", filename="a.png")
    with pytest.raises(InvalidRequest, match="exactly one"):
        sender.media_message(TO, "image", media_id="9", link="https://x")
    with pytest.raises(InvalidRequest, match="media kind"):
        sender.media_message(TO, "gif", media_id="9")


def test_interactive_buttons_and_list() -> None:
    buttons = sender.button_message(TO, "Pick one", {"yes": "Yes", "no": "No"}, header="Q", footer="f")
    assert buttons["interactive"] == {
        "type": "button",
        "body": {"text": "Pick one"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "no", "title": "No"}},
            ]
        },
        "header": {"type": "text", "text": "Q"},
        "footer": {"text": "f"},
    }
    sections = [{"title": "Sizes", "rows": [{"id": "s", "title": "Small", "description": "250 ml"}]}]
    listing = sender.list_message(TO, "Choose", "Options", sections)
    assert listing["interactive"]["action"] == {"button": "Options", "sections": sections}
    with pytest.raises(InvalidRequest, match="1 to 3"):
        sender.button_message(TO, "too many", [(str(i), str(i)) for i in range(4)])
    with pytest.raises(InvalidRequest, match="title"):
        sender.button_message(TO, "long", {"a": "x" * 21})
    with pytest.raises(InvalidRequest, match="10 rows"):
        sender.list_message(TO, "b", "Go", [{"title": "t", "rows": [{"id": str(i), "title": "r"} for i in range(11)]}])


def test_reaction_location_contacts_read() -> None:
    assert sender.reaction_message(TO, "wamid.A", "👍")["reaction"] == {"message_id": "wamid.A", "emoji": "👍"}
    assert sender.reaction_message(TO, "wamid.A", "")["reaction"]["emoji"] == ""
    loc = sender.location_message(TO, 52.52, 13.405, name="Office", address="Berlin")
    assert loc["location"] == {"latitude": 52.52, "longitude": 13.405, "name": "Office", "address": "Berlin"}
    with pytest.raises(InvalidRequest, match="latitude"):
        sender.location_message(TO, 91, 0)
    card = {
        "name": {"formatted_name": "Ada L", "first_name": "Ada"},
        "phones": [{"phone": "+1 555 0100", "type": "WORK"}],
    }
    assert sender.contacts_message(TO, [card])["contacts"] == [card]
    assert sender.read_receipt("wamid.B") == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.B",
    }
    assert sender.read_receipt("wamid.B", typing_indicator=True)["typing_indicator"] == {"type": "text"}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("not a number", "hi"), "to:"),
        ((TO, ""), "text.body"),
        ((TO, "x" * 4097), "text.body"),
    ],
)
def test_text_refused(args: tuple[str, str], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as info:
        sender.text_message(*args)
    assert info.value.code is None  # refused locally, never sent


def test_template_language_checked() -> None:
    with pytest.raises(InvalidRequest, match="language"):
        sender.template_message(TO, "hello_world", language="english")
    with pytest.raises(InvalidRequest, match="sub_type"):
        sender.template_message(TO, "t", components=[{"type": "button", "index": 0}])


def test_check_message_lists_every_problem() -> None:
    problems = check_message({"messaging_product": "sms", "type": "text", "text": {}})
    assert any("messaging_product" in p for p in problems)
    assert any(p.startswith("to:") for p in problems)
    assert any("text.body" in p for p in problems)
    assert check_message([]) == ["the body must be a JSON object"]
    assert check_message({"messaging_product": "whatsapp", "to": TO, "type": "carrier_pigeon"})


def test_prepare_message_fills_the_envelope_only() -> None:
    body = prepare_message({"to": TO, "type": "future_type", "future_type": {"x": 1}})
    assert body["messaging_product"] == "whatsapp" and body["recipient_type"] == "individual"
    assert prepare_message({"status": "read", "message_id": "w"}) == {
        "status": "read",
        "message_id": "w",
        "messaging_product": "whatsapp",
    }
    with pytest.raises(InvalidRequest):
        prepare_message({"messaging_product": "sms", "to": TO})
    with pytest.raises(InvalidRequest):
        prepare_message({"type": "text"})


def test_every_kind_is_accepted_by_the_sandbox(client: sender.Sender, sandbox: Sandbox) -> None:
    sandbox.add_template("order_update", ["pt_BR"])
    messages: list[dict[str, Any]] = [
        sender.text_message(TO, "hi"),
        sender.template_message(
            TO,
            "order_update",
            language="pt_BR",
            components=[{"type": "body", "parameters": [{"type": "text", "text": "1"}]}],
        ),
        sender.media_message(TO, "image", link="https://example.com/a.png", caption="a"),
        sender.media_message(TO, "document", media_id="77", filename="a.pdf"),
        sender.button_message(TO, "Pick", {"a": "A"}),
        sender.list_message(TO, "Pick", "Open", [{"rows": [{"id": "1", "title": "One"}]}]),
        sender.reaction_message(TO, "wamid.A", "👍"),
        sender.location_message(TO, 1.5, 2.5),
        sender.contacts_message(TO, [{"name": {"formatted_name": "Ada"}}]),
    ]
    ids = {client.send(m).message_id for m in messages}
    assert len(ids) == len(messages)
    assert [m.type for m in sandbox.received] == [m["type"] for m in messages]
    assert client.send_media(TO, "video", link="https://example.com/v.mp4").message_id
    assert client.send_interactive(TO, sender.button_message(TO, "b", {"x": "X"})["interactive"]).message_id
    assert client.send_reaction(TO, "wamid.A", "❤").message_id
    assert client.send_location(TO, 0, 0, name="Null Island").message_id
    assert client.send_contacts(TO, [{"name": {"formatted_name": "B"}}]).message_id
    assert client.mark_read("wamid.inbound") is True
    assert client.mark_read("wamid.inbound", typing_indicator=True) is True


def test_raw_object_the_api_refuses_is_code_100_with_details(client: sender.Sender, sandbox: Sandbox) -> None:
    with pytest.raises(InvalidRequest) as info:
        client.send({"to": TO, "type": "text", "text": {"body": ""}})
    assert info.value.code == 100 and info.value.http_status == 400
    assert info.value.details is not None and "text.body" in info.value.details
    assert sandbox.received == []

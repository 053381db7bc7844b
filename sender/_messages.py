"""Message objects as Meta's published schema of ``POST /{phone-number-id}/messages`` has them.

Every builder returns a plain ``dict`` ready to send (``Sender.send`` accepts any such object, built here
or not)::

    {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "15551234567",
     "type": "text", "text": {"body": "hi", "preview_url": false}}

Optional on every message: ``context: {"message_id": ...}`` (a reply) and ``biz_opaque_callback_data`` (up
to 512 characters, echoed in the status webhooks: use it to reconcile a send whose outcome is unknown).

:func:`check_message` lists what the API would refuse in a body (the sandbox answers code 100 with it); the
builders run it and raise :class:`~sender.InvalidRequest` before anything is sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._exceptions import InvalidRequest

__all__ = [
    "MEDIA_TYPES",
    "button_message",
    "check_message",
    "contacts_message",
    "interactive_message",
    "list_message",
    "location_message",
    "media_message",
    "prepare_message",
    "reaction_message",
    "read_receipt",
    "template_message",
    "text_message",
]

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
_CAPTIONED = ("image", "video", "document")
MESSAGE_TYPES = ("text", "template", *MEDIA_TYPES, "interactive", "reaction", "location", "contacts")
INTERACTIVE_TYPES = (
    "button",
    "list",
    "cta_url",
    "flow",
    "product",
    "product_list",
    "catalog_message",
    "location_request_message",
    "address_message",
    "call_permission_request",
)

TEXT_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_DATA_MAX = 512
_PHONE_STRIP = re.compile(r"[\s+\-().]")
_LANG = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")


# -- checking --------------------------------------------------------------------------------------------------
def _is_str(value: Any, *, max_len: int | None = None, allow_empty: bool = False) -> bool:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        return False
    return max_len is None or len(value) <= max_len


def recipient_problem(to: Any) -> str | None:
    """Why ``to`` is not a phone number or WhatsApp id, or None."""
    if isinstance(to, str) and to.isdigit() and 6 <= len(to) <= 20:  # the usual case: digits only
        return None
    if not isinstance(to, str) or not to.strip():
        return "to: required, the recipient's phone number in international format (digits, optional +)"
    digits = _PHONE_STRIP.sub("", to)
    if not digits.isdigit() or not 6 <= len(digits) <= 20:
        return "to: not a phone number in international format (e.g. 15551234567)"
    return None


def _check_media(kind: str, media: Any, out: list[str]) -> None:
    if not isinstance(media, Mapping):
        out.append(f"{kind}: required object with id or link")
        return
    has_id, has_link = "id" in media, "link" in media
    if has_id == has_link:
        out.append(f"{kind}: give exactly one of id (an uploaded media id) or link (an https URL)")
    if has_id and not _is_str(media.get("id")):
        out.append(f"{kind}.id: must be a non-empty string")
    if has_link and not (_is_str(media.get("link")) and str(media["link"]).startswith(("https://", "http://"))):
        out.append(f"{kind}.link: must be an http(s) URL")
    if "caption" in media:
        if kind not in _CAPTIONED:
            out.append(f"{kind}.caption: only image, video and document take a caption")
        elif not _is_str(media["caption"], max_len=CAPTION_MAX, allow_empty=True):
            out.append(f"{kind}.caption: must be a string of at most {CAPTION_MAX} characters")
    if "filename" in media and (kind != "document" or not _is_str(media["filename"])):
        out.append(f"{kind}.filename: only a document takes a filename (a non-empty string)")


def _check_template(tpl: Any, out: list[str]) -> None:
    if not isinstance(tpl, Mapping):
        out.append("template: required object {name, language: {code}}")
        return
    if not _is_str(tpl.get("name"), max_len=512):
        out.append("template.name: required string")
    lang = tpl.get("language")
    if not isinstance(lang, Mapping) or not _is_str(lang.get("code")):
        out.append('template.language: required object {"code": "en_US"}')
    elif not _LANG.match(str(lang["code"])):
        out.append("template.language.code: not a language code such as en or en_US")
    comps = tpl.get("components")
    if comps is None:
        return
    if not isinstance(comps, list):
        out.append("template.components: must be a list")
        return
    for i, comp in enumerate(comps):
        where = f"template.components[{i}]"
        if not isinstance(comp, Mapping):
            out.append(f"{where}: must be an object")
            continue
        ctype = comp.get("type")
        if ctype not in ("header", "body", "button", "footer", "carousel", "limited_time_offer"):
            out.append(f"{where}.type: must be header, body, button, carousel or limited_time_offer")
        if ctype == "button":
            if comp.get("sub_type") not in ("quick_reply", "url", "copy_code", "flow", "catalog", "mpm", "voice_call"):
                out.append(f"{where}.sub_type: required for a button (quick_reply, url, copy_code, flow, ...)")
            if not isinstance(comp.get("index"), (int, str)) or isinstance(comp.get("index"), bool):
                out.append(f"{where}.index: required for a button (its position, 0-9)")
        params = comp.get("parameters")
        if params is not None:
            if not isinstance(params, list):
                out.append(f"{where}.parameters: must be a list")
                continue
            for j, param in enumerate(params):
                if not isinstance(param, Mapping) or not _is_str(param.get("type")):
                    out.append(f"{where}.parameters[{j}]: must be an object with a type")


def _check_text_obj(value: Any, where: str, max_len: int, out: list[str], *, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, Mapping) or not _is_str(value.get("text"), max_len=max_len):
        out.append(f"{where}: required object {{text}} of at most {max_len} characters")


def _check_interactive(inter: Any, out: list[str]) -> None:
    if not isinstance(inter, Mapping):
        out.append("interactive: required object {type, body, action}")
        return
    itype = inter.get("type")
    if itype not in INTERACTIVE_TYPES:
        out.append(f"interactive.type: must be one of {', '.join(INTERACTIVE_TYPES)}")
        return
    action = inter.get("action")
    if itype not in ("product", "location_request_message") or "body" in inter:
        _check_text_obj(inter.get("body"), "interactive.body", 1024, out, required=itype != "product")
    if "footer" in inter:
        _check_text_obj(inter.get("footer"), "interactive.footer", 60, out)
    header = inter.get("header")
    if header is not None:
        if not isinstance(header, Mapping) or header.get("type") not in ("text", "image", "video", "document"):
            out.append("interactive.header: an object of type text, image, video or document")
        elif header["type"] == "text" and not _is_str(header.get("text"), max_len=60):
            out.append("interactive.header.text: required, at most 60 characters")
        elif header["type"] != "text":
            _check_media(str(header["type"]), header.get(str(header["type"])), out)
    if not isinstance(action, Mapping):
        out.append("interactive.action: required object")
        return
    if itype == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            out.append("interactive.action.buttons: 1 to 3 reply buttons")
            return
        ids = set()
        for i, button in enumerate(buttons):
            reply = button.get("reply") if isinstance(button, Mapping) else None
            if (
                not isinstance(button, Mapping)
                or button.get("type") != "reply"
                or not isinstance(reply, Mapping)
                or not _is_str(reply.get("id"), max_len=256)
                or not _is_str(reply.get("title"), max_len=20)
            ):
                out.append(
                    f"interactive.action.buttons[{i}]: must be "
                    '{"type": "reply", "reply": {"id": ≤256 chars, "title": ≤20 chars}}'
                )
            else:
                if reply["id"] in ids:
                    out.append(f"interactive.action.buttons[{i}].reply.id: duplicate id")
                ids.add(reply["id"])
    elif itype == "list":
        if not _is_str(action.get("button"), max_len=20):
            out.append("interactive.action.button: required, the list's button text, at most 20 characters")
        sections = action.get("sections")
        if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
            out.append("interactive.action.sections: 1 to 10 sections")
            return
        rows_total = 0
        for i, section in enumerate(sections):
            rows = section.get("rows") if isinstance(section, Mapping) else None
            if not isinstance(rows, list) or not rows:
                out.append(f"interactive.action.sections[{i}].rows: at least one row")
                continue
            if len(sections) > 1 and not _is_str(section.get("title"), max_len=24):
                out.append(f"interactive.action.sections[{i}].title: required with several sections, ≤24 chars")
            for j, row in enumerate(rows):
                rows_total += 1
                if (
                    not isinstance(row, Mapping)
                    or not _is_str(row.get("id"), max_len=200)
                    or not _is_str(row.get("title"), max_len=24)
                    or ("description" in row and not _is_str(row["description"], max_len=72))
                ):
                    out.append(
                        f"interactive.action.sections[{i}].rows[{j}]: "
                        "{id: ≤200 chars, title: ≤24 chars, description?: ≤72 chars}"
                    )
        if rows_total > 10:
            out.append("interactive.action.sections: at most 10 rows in all")
    elif itype == "cta_url":
        params = action.get("parameters")
        if (
            action.get("name") != "cta_url"
            or not isinstance(params, Mapping)
            or not _is_str(params.get("display_text"), max_len=20)
            or not _is_str(params.get("url"))
        ):
            out.append('interactive.action: {"name": "cta_url", "parameters": {"display_text": ≤20 chars, "url"}}')


def _check_location(loc: Any, out: list[str]) -> None:
    if not isinstance(loc, Mapping):
        out.append("location: required object {latitude, longitude, name?, address?}")
        return
    for key, limit in (("latitude", 90.0), ("longitude", 180.0)):
        value = loc.get(key)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            out.append(f"location.{key}: required number")
        elif abs(value) > limit:
            out.append(f"location.{key}: must be between -{limit:g} and {limit:g}")
    for key in ("name", "address"):
        if key in loc and not _is_str(loc[key], max_len=1000):
            out.append(f"location.{key}: must be a non-empty string")


def _check_contacts(contacts: Any, out: list[str]) -> None:
    if not isinstance(contacts, list) or not contacts:
        out.append("contacts: required non-empty list of contact objects")
        return
    for i, contact in enumerate(contacts):
        name = contact.get("name") if isinstance(contact, Mapping) else None
        if not isinstance(name, Mapping) or not _is_str(name.get("formatted_name")):
            out.append(f"contacts[{i}].name.formatted_name: required")
        phones = contact.get("phones") if isinstance(contact, Mapping) else None
        if phones is not None and (
            not isinstance(phones, list) or not all(isinstance(p, Mapping) and _is_str(p.get("phone")) for p in phones)
        ):
            out.append(f"contacts[{i}].phones: a list of {{phone, type?, wa_id?}}")


def check_message(message: Any) -> list[str]:
    """What the Cloud API would refuse in this ``/messages`` body: a list of problems (empty when fine).

    Covers the common types fully (text, template, media, interactive button/list/cta_url, reaction,
    location, contacts) and read receipts; other interactive kinds are checked only for their envelope.
    """
    out: list[str] = []
    if not isinstance(message, Mapping):
        return ["the body must be a JSON object"]
    if message.get("messaging_product") != "whatsapp":
        out.append('messaging_product: required, must be "whatsapp"')
    if message.get("status") is not None:  # a read receipt, not a message
        if message.get("status") != "read":
            out.append('status: only "read" can be set')
        if not _is_str(message.get("message_id")):
            out.append("message_id: required for a read receipt")
        indicator = message.get("typing_indicator")
        if indicator is not None and (not isinstance(indicator, Mapping) or indicator.get("type") != "text"):
            out.append('typing_indicator: must be {"type": "text"}')
        return out
    problem = recipient_problem(message.get("to"))
    if problem:
        out.append(problem)
    rtype = message.get("recipient_type", "individual")
    if rtype not in ("individual", "group"):
        out.append('recipient_type: must be "individual"')
    mtype = message.get("type", "text")
    if mtype not in MESSAGE_TYPES:
        out.append(f"type: unsupported message type; one of {', '.join(MESSAGE_TYPES)}")
        return out
    body = message.get(mtype)
    if mtype == "text":
        text = body.get("body") if isinstance(body, Mapping) else None
        if isinstance(text, str) and len(text) > TEXT_MAX:
            out.append(f"text.body: too long ({len(text)} characters; the limit is {TEXT_MAX})")
        elif not isinstance(body, Mapping) or not _is_str(text, max_len=TEXT_MAX):
            out.append(f"text.body: required, 1 to {TEXT_MAX} characters")
        elif "preview_url" in body and not isinstance(body["preview_url"], bool):
            out.append("text.preview_url: must be true or false")
    elif mtype == "template":
        _check_template(body, out)
    elif mtype in MEDIA_TYPES:
        _check_media(mtype, body, out)
    elif mtype == "interactive":
        _check_interactive(body, out)
    elif mtype == "reaction":
        if not isinstance(body, Mapping) or not _is_str(body.get("message_id")):
            out.append("reaction.message_id: required, the wamid of the message reacted to")
        elif not isinstance(body.get("emoji"), str) or len(body["emoji"]) > 10:
            out.append('reaction.emoji: required, one emoji ("" removes the reaction)')
    elif mtype == "location":
        _check_location(body, out)
    elif mtype == "contacts":
        _check_contacts(body, out)
    context = message.get("context")
    if context is not None and (not isinstance(context, Mapping) or not _is_str(context.get("message_id"))):
        out.append("context.message_id: the wamid of the message replied to")
    callback = message.get("biz_opaque_callback_data")
    if callback is not None and not _is_str(callback, max_len=CALLBACK_DATA_MAX):
        out.append(f"biz_opaque_callback_data: a string of at most {CALLBACK_DATA_MAX} characters")
    return out


def _checked(message: dict[str, Any]) -> dict[str, Any]:
    problems = check_message(message)
    if problems:
        raise InvalidRequest("invalid message, not sent: " + "; ".join(problems))
    return message


def prepare_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a caller's raw message object with ``messaging_product`` (and ``recipient_type`` for a
    message) filled in. Only the envelope is checked: the API itself judges the rest, so new message types
    work without a library update."""
    if not isinstance(message, Mapping):
        raise InvalidRequest("a message must be a mapping (a JSON object)")
    body = dict(message)
    body.setdefault("messaging_product", "whatsapp")
    if body["messaging_product"] != "whatsapp":
        raise InvalidRequest('invalid message, not sent: messaging_product must be "whatsapp"')
    if "status" not in body:
        body.setdefault("recipient_type", "individual")
        problem = recipient_problem(body.get("to"))
        if problem:
            raise InvalidRequest(f"invalid message, not sent: {problem}")
    return body


# -- builders ---------------------------------------------------------------------------------------------------
def _envelope(
    to: str, mtype: str, payload: Any, *, reply_to: str | None, biz_opaque_callback_data: str | None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": mtype,
        mtype: payload,
    }
    if reply_to is not None:
        message["context"] = {"message_id": reply_to}
    if biz_opaque_callback_data is not None:
        message["biz_opaque_callback_data"] = biz_opaque_callback_data
    return _checked(message)


def text_message(
    to: str,
    body: str,
    *,
    preview_url: bool = False,
    reply_to: str | None = None,
    biz_opaque_callback_data: str | None = None,
) -> dict[str, Any]:
    """A text message (``body`` up to 4096 characters; ``preview_url`` renders a link preview)."""
    return _envelope(
        to,
        "text",
        {"body": body, "preview_url": preview_url},
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


def template_message(
    to: str,
    name: str,
    *,
    language: str = "en_US",
    components: Sequence[Mapping[str, Any]] | None = None,
    reply_to: str | None = None,
    biz_opaque_callback_data: str | None = None,
) -> dict[str, Any]:
    """A template message; ``components`` as Meta documents them (header/body/button with parameters)."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components is not None:
        template["components"] = [dict(c) if isinstance(c, Mapping) else c for c in components]
    return _envelope(to, "template", template, reply_to=reply_to, biz_opaque_callback_data=biz_opaque_callback_data)


def media_message(
    to: str,
    kind: str,
    *,
    link: str | None = None,
    media_id: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
    reply_to: str | None = None,
    biz_opaque_callback_data: str | None = None,
) -> dict[str, Any]:
    """An image, audio, video, document or sticker, by ``link`` (https URL) or uploaded ``media_id``."""
    if kind not in MEDIA_TYPES:
        raise InvalidRequest(f"invalid message, not sent: media kind must be one of {', '.join(MEDIA_TYPES)}")
    if (link is None) == (media_id is None):
        raise InvalidRequest("invalid message, not sent: give exactly one of link or media_id")
    media: dict[str, Any] = {"link": link} if link is not None else {"id": media_id}
    if caption is not None:
        media["caption"] = caption
    if filename is not None:
        media["filename"] = filename
    return _envelope(to, kind, media, reply_to=reply_to, biz_opaque_callback_data=biz_opaque_callback_data)


def interactive_message(
    to: str,
    interactive: Mapping[str, Any],
    *,
    reply_to: str | None = None,
    biz_opaque_callback_data: str | None = None,
) -> dict[str, Any]:
    """An interactive message from its ``interactive`` object (any kind Meta supports)."""
    return _envelope(
        to,
        "interactive",
        dict(interactive),
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


def _decor(interactive: dict[str, Any], header: str | None, footer: str | None) -> dict[str, Any]:
    if header is not None:
        interactive["header"] = {"type": "text", "text": header}
    if footer is not None:
        interactive["footer"] = {"text": footer}
    return interactive


def button_message(
    to: str,
    body: str,
    buttons: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    header: str | None = None,
    footer: str | None = None,
    reply_to: str | None = None,
    biz_opaque_callback_data: str | None = None,
) -> dict[str, Any]:
    """Up to three reply buttons: ``buttons`` maps each button's id to its title (≤ 20 characters)."""
    pairs = list(buttons.items()) if isinstance(buttons, Mapping) else list(buttons)
    interactive = {
        "type": "button",
        "body": {"text": body},
        "action": {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in pairs]},
    }
    return interactive_message(
        to,
        _decor(interactive, header, footer),
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


def list_message(
    to: str,
    body: str,
    button: str,
    sections: Sequence[Mapping[str, Any]],
    *,
    header: str | None = None,
    footer: str | None = None,
    reply_to: str | None = None,
    biz_opaque_callback_data: str | None = None,
) -> dict[str, Any]:
    """A list message: ``sections`` are ``{"title": ..., "rows": [{"id", "title", "description"?}]}``."""
    interactive = {
        "type": "list",
        "body": {"text": body},
        "action": {"button": button, "sections": [dict(s) for s in sections]},
    }
    return interactive_message(
        to,
        _decor(interactive, header, footer),
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


def reaction_message(to: str, message_id: str, emoji: str) -> dict[str, Any]:
    """React to message ``message_id`` with ``emoji`` (an empty string removes the reaction)."""
    return _envelope(
        to, "reaction", {"message_id": message_id, "emoji": emoji}, reply_to=None, biz_opaque_callback_data=None
    )


def location_message(
    to: str,
    latitude: float,
    longitude: float,
    *,
    name: str | None = None,
    address: str | None = None,
    reply_to: str | None = None,
    biz_opaque_callback_data: str | None = None,
) -> dict[str, Any]:
    """A location pin."""
    location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    if name is not None:
        location["name"] = name
    if address is not None:
        location["address"] = address
    return _envelope(to, "location", location, reply_to=reply_to, biz_opaque_callback_data=biz_opaque_callback_data)


def contacts_message(
    to: str,
    contacts: Sequence[Mapping[str, Any]],
    *,
    reply_to: str | None = None,
    biz_opaque_callback_data: str | None = None,
) -> dict[str, Any]:
    """Contact cards, each ``{"name": {"formatted_name", ...}, "phones": [{"phone", "type"?}], ...}``."""
    return _envelope(
        to,
        "contacts",
        [dict(c) for c in contacts],
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


def read_receipt(message_id: str, *, typing_indicator: bool = False) -> dict[str, Any]:
    """Mark an incoming message as read (and optionally show a typing indicator)."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
    if typing_indicator:
        body["typing_indicator"] = {"type": "text"}
    return _checked(body)

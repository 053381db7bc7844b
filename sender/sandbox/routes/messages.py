"""``POST /{version}/{phone-number-id}/messages``: send a message or mark one read.

In Graph's order: the token (190 with a subcode when unknown, expired or revoked; appsecret_proof when sent
or required), the phone number (100/33 when unknown), the permission (10 without
``whatsapp_business_messaging``), the business (200 when the token does not act for the WABA that owns
the number, e.g. another business's token: nothing is delivered), then any queued fault, then the body
against the published schema (100 with the problems in ``error_data.details``), the template (132001 when
unknown), and success in Meta's shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..._messages import check_message
from .._business import Business
from .._graph import Call, Reply, graph_error, new_wamid
from .._state import MESSAGING_SCOPE, Fault, SandboxState
from .._tokens import TokenRecord
from . import Route, versioned

__all__ = ["ROUTES"]

_DIGITS = re.compile(r"\D")


def _unknown_object(object_id: str) -> Reply:
    return graph_error(
        100,
        subcode=33,
        error_type="GraphMethodException",
        message=f"Unsupported post request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation.",
    )


def _fault_reply(fault: Fault) -> Reply:
    headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
    if fault.code is not None:
        return graph_error(
            fault.code,
            subcode=fault.subcode,
            message=fault.message,
            details=fault.details,
            status=fault.status,
            headers=headers,
        )
    status = fault.status or 500
    return Reply(
        status=status,
        body=b"<html><body>" + str(status).encode() + b" upstream error</body></html>",
        headers={**headers, "Content-Type": "text/html"},
    )


def _not_this_business(phone: str) -> Reply:
    return graph_error(
        200,
        message="(#200) Permissions error",
        details=f"the access token has not been granted access to the WhatsApp Business Account that owns "
        f"phone number {phone}",
    )


def _accept(
    call: Call, state: SandboxState, body: Mapping[str, Any], token: TokenRecord, business: Business | None = None
) -> Reply:
    """Validate and record; the success answer or the Graph error."""
    problems = check_message(body)
    if problems:
        return graph_error(
            100,
            message="(#100) Invalid parameter",
            details="; ".join(problems),
            error_type="OAuthException",
        )
    if body.get("status") == "read":
        return Reply(status=200, body={"success": True})
    if body.get("type") == "template" and state.templates is not None:
        template = body.get("template") or {}
        name = template.get("name")
        code = (template.get("language") or {}).get("code")
        if name not in state.templates or code not in state.templates[name]:
            return graph_error(
                132001,
                message="(#132001) Template name does not exist in the translation",
                details=f"template name ({name}) does not exist in {code}",
            )
    to = str(body["to"])
    wa_id = _DIGITS.sub("", to)
    message_id = new_wamid(wa_id)
    state.record_message(
        message_id=message_id,
        phone_number_id=call.params["phone_number_id"],
        to=to,
        body=body,
        token=token,
        waba_id=business.waba_id if business is not None else None,
    )
    first: dict[str, Any] = {"id": message_id}
    if body.get("type") == "template":
        first["message_status"] = "accepted"
    return Reply(
        status=200,
        body={"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}], "messages": [first]},
    )


def send_message(call: Call, state: SandboxState) -> Reply:
    who = state.authenticate(call)
    if isinstance(who, Reply):
        return who
    assert isinstance(who, TokenRecord)
    phone = call.params["phone_number_id"]
    business = state.businesses.for_number(phone) if phone.isdigit() else None
    if business is None:
        return _unknown_object(phone)
    if MESSAGING_SCOPE not in who.scopes:
        return graph_error(
            10, message="(#10) Application does not have permission for this action", error_type="OAuthException"
        )
    if not state.may_act_for(who, business):
        return _not_this_business(phone)
    try:
        body = call.json()
    except (ValueError, UnicodeDecodeError):
        return graph_error(100, message="(#100) The request body must be a JSON object", details="invalid JSON")
    fault = state.take_fault("messages")
    if fault is None:
        return _accept(call, state, body, who, business)
    delivered = _accept(call, state, body, who, business) if fault.deliver else None
    if fault.code is not None or (fault.status or 200) != 200:
        reply = _fault_reply(fault)
    elif fault.drop and delivered is None:
        reply = Reply(status=200)  # dropped before anything was processed
    else:
        reply = delivered or _accept(call, state, body, who, business)  # a slow (or dropped) success
    reply.delay = fault.delay
    reply.drop = fault.drop
    return reply


ROUTES = [
    Route("POST", versioned(r"/(?P<phone_number_id>[^/]+)/messages", required=True), "messages", send_message),
]

"""The businesses the sandbox knows: ``GET /{version}/{waba-id}/phone_numbers`` and ``/_sandbox/businesses``.

``GET /{version}/{waba-id}/phone_numbers`` answers Meta's shape, ``{"data": [{"verified_name",
"code_verification_status", "display_phone_number", "quality_rating", "platform_type", "throughput", "id"}],
"paging": {"cursors": {"before", "after"}, "next"?}}``, paged by ``limit`` (default 25) and ``after``/``before``
cursors, ``fields`` selecting fields (``id`` always). The token must act for that WABA: an unknown WABA is
100/33, another business's token is 200.

Control routes (loopback only; no token value is ever returned, only fingerprints):

* ``GET /_sandbox/businesses``: every business with its numbers and its current token's fingerprint.
* ``POST /_sandbox/businesses`` ``{"waba_id"?, "name"?, "numbers": 1 | ["id", ...], "token"?: "value"}``: add a
  business; its token is ``token`` when given (so the caller knows it), else a random one (fingerprint only).
* ``POST /_sandbox/businesses/{waba_id}/numbers`` ``{"id"?, "display_phone_number"?}``: add a phone number.
* ``POST /_sandbox/businesses/{waba_id}/rotate`` ``{"token"?: "new value", "revoke_old": false}``: a new token
  for the business (the old one stays valid unless ``revoke_old``).
* ``POST /_sandbox/businesses/{waba_id}/revoke`` ``{"all": false}``: revoke the business's current token (or
  every token it has).
"""

from __future__ import annotations

import base64
from typing import Any

from tokenstore import fingerprint_of

from .._business import Business
from .._graph import Call, Reply, graph_error
from .._state import SandboxState
from .._tokens import TokenRecord
from . import Route, versioned
from .control import _bad, _json
from .messages import _fault_reply

__all__ = ["DEFAULT_PAGE_SIZE", "ROUTES"]

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


def _cursor(phone_id: str) -> str:
    return base64.urlsafe_b64encode(phone_id.encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> str | None:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return value if value.isdigit() else None


def _unknown(object_id: str) -> Reply:
    return graph_error(
        100,
        subcode=33,
        error_type="GraphMethodException",
        message=f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation.",
    )


def phone_numbers(call: Call, state: SandboxState) -> Reply:
    who = state.authenticate(call)
    if isinstance(who, Reply):
        return who
    assert isinstance(who, TokenRecord)
    waba_id = call.params["waba_id"]
    business = state.businesses.find(waba_id)
    if business is None:
        return _unknown(waba_id)
    if not state.may_act_for(who, business):
        return graph_error(
            200,
            message="(#200) Permissions error",
            details="the access token has no access to this WhatsApp Business Account",
        )
    fault = state.take_fault("businesses.phone_numbers")
    if fault is not None:
        return _fault_reply(fault)
    raw_limit = call.arg("limit") or str(DEFAULT_PAGE_SIZE)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE_SIZE:
        return graph_error(100, message=f"(#100) limit must be a number from 1 to {MAX_PAGE_SIZE}")
    limit = int(raw_limit)
    with state.lock:
        numbers = list(business.numbers.values())
    ids = [n.id for n in numbers]
    start, end = 0, limit
    after, before = call.arg("after"), call.arg("before")
    if after or before:
        anchor = _uncursor(after or before or "")
        if anchor is None or anchor not in ids:
            return graph_error(100, message="(#100) Invalid cursor")
        if after:
            start = ids.index(anchor) + 1
            end = start + limit
        else:
            end = ids.index(anchor)
            start = max(0, end - limit)
    page = numbers[start:end]
    fields = [f.strip() for f in (call.arg("fields") or "").split(",") if f.strip()]
    data = []
    for number in page:
        item = number.graph()
        if fields:
            item = {k: v for k, v in item.items() if k in fields or k == "id"}
        data.append(item)
    body: dict[str, Any] = {"data": data}
    if page:
        version = call.params.get("version", "")
        url = f"{'/' + version if version else ''}/{waba_id}/phone_numbers?limit={limit}"
        paging: dict[str, Any] = {"cursors": {"before": _cursor(page[0].id), "after": _cursor(page[-1].id)}}
        if end < len(numbers):
            paging["next"] = f"{url}&after={_cursor(page[-1].id)}"
        if start > 0:
            paging["previous"] = f"{url}&before={_cursor(page[0].id)}"
        body["paging"] = paging
    return Reply(status=200, body=body)


# -- control ----------------------------------------------------------------------------------------------------
def _summary(business: Business) -> dict[str, Any]:
    return business.summary(fingerprint_of(business.token) if business.token else None)


def _token_value(body: dict[str, Any]) -> str | Reply | None:
    value = body.get("token")
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return _bad('"token" must be one non-empty word (the token value to register)')
    return value


def list_businesses(call: Call, state: SandboxState) -> Reply:
    return Reply(status=200, body={"businesses": [_summary(b) for b in state.businesses.all()]})


def add_business(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    unknown = set(body) - {"waba_id", "name", "numbers", "token"}
    if unknown:
        return _bad(f"unknown business fields: {', '.join(sorted(unknown))}")
    token = _token_value(body)
    if isinstance(token, Reply):
        return token
    numbers = body.get("numbers", 1)
    if isinstance(numbers, bool) or not (
        (isinstance(numbers, int) and 0 <= numbers <= 1000)
        or (isinstance(numbers, list) and all(isinstance(n, str) for n in numbers))
    ):
        return _bad('"numbers" must be a count (0-1000) or a list of phone number ids')
    try:
        business = state.add_business(
            waba_id=body.get("waba_id"), name=body.get("name"), numbers=numbers, token=token if token else True
        )
    except (TypeError, ValueError) as exc:
        return _bad(f"bad business: {exc}")
    return Reply(status=200, body=_summary(business))


def _business(call: Call, state: SandboxState) -> Business | Reply:
    business = state.businesses.find(call.params["waba_id"])
    return business if business is not None else _bad(f"no business with WABA id {call.params['waba_id']}")


def add_number(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    business = _business(call, state)
    if isinstance(business, Reply):
        return business
    try:
        number = state.businesses.add_number(
            business.waba_id, body.get("id"), display_phone_number=body.get("display_phone_number")
        )
    except (TypeError, ValueError) as exc:
        return _bad(f"bad phone number: {exc}")
    return Reply(status=200, body=number.graph())


def rotate(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    business = _business(call, state)
    if isinstance(business, Reply):
        return business
    token = _token_value(body)
    if isinstance(token, Reply):
        return token
    try:
        value = state.rotate_business_token(business.waba_id, revoke_old=body.get("revoke_old") is True, value=token)
    except (KeyError, ValueError) as exc:
        return _bad(f"cannot rotate: {exc}")
    return Reply(status=200, body={"fingerprint": fingerprint_of(value)})


def revoke(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    business = _business(call, state)
    if isinstance(business, Reply):
        return business
    return Reply(
        status=200, body={"revoked": state.revoke_business_tokens(business.waba_id, all=body.get("all") is True)}
    )


ROUTES = [
    Route("GET", versioned(r"/(?P<waba_id>\d{1,32})/phone_numbers"), "businesses.phone_numbers", phone_numbers),
    Route("GET", r"^/_sandbox/businesses$", "control", list_businesses),
    Route("POST", r"^/_sandbox/businesses$", "control", add_business),
    Route("POST", r"^/_sandbox/businesses/(?P<waba_id>\d{1,32})/numbers$", "control", add_number),
    Route("POST", r"^/_sandbox/businesses/(?P<waba_id>\d{1,32})/rotate$", "control", rotate),
    Route("POST", r"^/_sandbox/businesses/(?P<waba_id>\d{1,32})/revoke$", "control", revoke),
]

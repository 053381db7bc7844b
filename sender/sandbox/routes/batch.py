"""``POST /{version}/``: Graph batch requests, as Meta documents them.

Form fields: ``access_token`` (the fallback token of every item: a user/system-user token or the app token
``{app-id}|{app-secret}``) and ``batch``, a JSON list of up to 50 ``{"method", "relative_url"[, "body"]}``.
Each item is answered by the sandbox's own route for it (``debug_token?input_token=...`` is the one the
fleet check uses), authenticated with the item's own ``access_token`` parameter or the fallback. The answer
is HTTP 200 with a list aligned with the items: ``{"code", "headers": [{"name", "value"}], "body": "<the
item's answer as a JSON string>"}``, or ``null`` for an item whose answer was dropped.

Counted: the call itself is one request of route ``batch`` (``Sandbox.route_counts()["batch"]``); its items
are counted per route in ``Sandbox.batch_item_counts()``. A queued fault for route ``batch`` answers the
whole call (a Graph error or status), or delays or drops its answer. Refused: a missing or unparsable
``batch`` (100), more than 50 items (100), a nested batch.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._graph import Call, Reply, graph_error
from .._state import SandboxState
from . import Route, versioned
from .messages import _fault_reply

__all__ = ["MAX_BATCH", "ROUTES"]

MAX_BATCH = 50
DEFAULT_VERSION = "v27.0"
_VERSIONED = re.compile(r"^v\d{1,3}\.\d{1,2}(/|$)")


def _item_error(code: int, message: str) -> dict[str, Any]:
    return {
        "code": 400,
        "headers": [{"name": "Content-Type", "value": "application/json; charset=UTF-8"}],
        "body": json.dumps({"error": {"message": message, "type": "OAuthException", "code": code}}),
    }


def _answer(reply: Reply) -> dict[str, Any] | None:
    if reply.drop:
        return None
    payload, content_type = reply.encode()
    headers = [{"name": "Content-Type", "value": content_type}]
    headers += [{"name": k, "value": v} for k, v in reply.headers.items() if k.lower() != "content-type"]
    return {"code": reply.status, "headers": headers, "body": payload.decode("utf-8", "replace")}


def batch(call: Call, state: SandboxState) -> Reply:
    who = state.authenticate(call, allow_app_token=True)
    if isinstance(who, Reply):
        return who
    fallback = call.access_token()
    assert fallback
    raw = call.arg("batch")
    if not raw:
        return graph_error(100, message="(#100) The parameter batch is required")
    try:
        items = json.loads(raw)
    except ValueError:
        return graph_error(100, message="(#100) batch parameter must be a JSON array")
    if not isinstance(items, list) or not items:
        return graph_error(100, message="(#100) batch parameter must be a non-empty JSON array")
    if len(items) > MAX_BATCH:
        return graph_error(100, message=f"(#100) Too many requests in batch message. Maximum batch size is {MAX_BATCH}")
    fault = state.take_fault("batch")
    if fault is not None and (fault.code is not None or fault.status is not None):
        return _fault_reply(fault)
    dispatch = state.dispatch
    if dispatch is None:  # a SandboxState used without a Sandbox
        return graph_error(1, message="batch requests need a running Sandbox", status=500)
    version = call.params.get("version") or DEFAULT_VERSION
    answers: list[dict[str, Any] | None] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("relative_url"), str):
            answers.append(_item_error(100, "(#100) each batch item needs a method and a relative_url"))
            continue
        method = str(item.get("method") or "GET").upper()
        parts = urlsplit(item["relative_url"].lstrip("/"))
        path = parts.path
        sub_path = path if _VERSIONED.match(path) else f"{version}/{path}"
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = item.get("body")
        headers = {"content-type": "application/x-www-form-urlencoded"} if isinstance(body, str) else {}
        if "access_token" not in query:
            headers["authorization"] = f"Bearer {fallback}"
        sub = Call(
            method=method,
            path="/" + sub_path.rstrip("/"),
            query=query,
            headers=headers,
            body=body.encode() if isinstance(body, str) else b"",
        )
        reply, route = dispatch(sub)
        with state.lock:
            state.batch_items[route] += 1
        answers.append(_answer(reply))
    reply = Reply(status=200, body=answers)
    if fault is not None:  # a delay or a drop: after the items were answered
        reply.delay, reply.drop = fault.delay, fault.drop
    return reply


ROUTES = [Route("POST", versioned(r""), "batch", batch)]

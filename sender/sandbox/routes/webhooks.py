"""``/_sandbox/webhook...``: drive the sandbox's webhook delivery over HTTP (a sandbox in another process).

* ``POST /_sandbox/webhook`` ``{"url": "http://127.0.0.1:PORT/webhook", "verify_token": "..."}``: register the
  callback URL (loopback only); with ``verify_token``, Meta's GET handshake runs first.
* ``GET /_sandbox/webhook``: the deliveries (status, attempts, answers, the signing secret's fingerprint).
* ``POST /_sandbox/webhook/fail`` ``{"code": 131026, "title": "...", "count": 1}``: the next accepted messages
  get a ``failed`` status.
* ``POST /_sandbox/webhook/emit`` ``{"payload": {...}}``: deliver any signed payload (an ``account_update``).
* ``POST /_sandbox/app_secret`` ``{"value": "..."}``: reset the app secret to the value given (so that no
  secret is ever returned by the sandbox); webhooks are signed with it from then on.
"""

from __future__ import annotations

from .._graph import Call, Reply
from .._state import SandboxState
from . import Route
from .control import _bad, _json

__all__ = ["ROUTES"]


def subscribe(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    url, token = body.get("url"), body.get("verify_token")
    if not isinstance(url, str) or (token is not None and not isinstance(token, str)):
        return _bad('give {"url": "http://127.0.0.1:PORT/webhook", "verify_token": optional}')
    try:
        state.webhooks.subscribe(url, token)
    except ValueError as exc:
        return _bad(str(exc))
    return Reply(status=200, body={"subscribed": True})


def deliveries(call: Call, state: SandboxState) -> Reply:
    items = [d.summary() for d in state.webhooks.snapshot()]
    return Reply(status=200, body={"url": state.webhooks.url, "deliveries": items})


def fail(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    code, title, count = body.get("code", 131026), body.get("title", "Message undeliverable"), body.get("count", 1)
    if not isinstance(code, int) or not isinstance(title, str) or not isinstance(count, int) or count < 1:
        return _bad('give {"code": 131026, "title": "...", "count": 1}')
    state.webhooks.fail_next(code, title=title, count=count)
    return Reply(status=200, body={"queued": count})


def emit(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    payload = body.get("payload")
    if not isinstance(payload, dict):
        return _bad('give {"payload": {...}}')
    try:
        delivery = state.webhooks.emit(payload)
    except RuntimeError as exc:
        return _bad(str(exc))
    return Reply(status=200, body={"queued": delivery.seq})


def app_secret(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    value = body.get("value")
    if not isinstance(value, str) or len(value) < 16 or any(c.isspace() for c in value):
        return _bad('give {"value": "<the new app secret, 16+ characters>"}')
    state.tokens.rotate_app_secret(state.app.app_id, value)
    return Reply(status=200, body={"rotated": True})


ROUTES = [
    Route("POST", r"^/_sandbox/webhook$", "control", subscribe),
    Route("GET", r"^/_sandbox/webhook$", "control", deliveries),
    Route("POST", r"^/_sandbox/webhook/fail$", "control", fail),
    Route("POST", r"^/_sandbox/webhook/emit$", "control", emit),
    Route("POST", r"^/_sandbox/app_secret$", "control", app_secret),
]

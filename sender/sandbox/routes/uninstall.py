"""``POST /_sandbox/uninstall`` ``{"waba_id": "..."}``: the customer of that WABA removes the app.

Every token that reaches the WABA dies at once (Graph's 190, subcode 458) and an ``account_update`` webhook
payload with ``PARTNER_APP_UNINSTALLED`` is produced (kept in the sandbox's events and handed to its event
hooks). Answers ``{"uninstalled_tokens": N, "event": {...}}``; no token value is returned.
``GET /_sandbox/events`` lists the events produced so far.
"""

from __future__ import annotations

from .._events import uninstall as uninstall_waba
from .._graph import Call, Reply
from .._state import SandboxState
from . import Route
from .control import _bad, _json

__all__ = ["ROUTES"]


def uninstall(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    waba_id = body.get("waba_id", state.waba_id)
    if not isinstance(waba_id, str) or not waba_id.isdigit():
        return _bad('give {"waba_id": "<digits>"}')
    killed, event = uninstall_waba(state, waba_id)
    return Reply(status=200, body={"uninstalled_tokens": killed, "event": event})


def events(call: Call, state: SandboxState) -> Reply:
    with state.lock:
        return Reply(status=200, body={"events": list(state.events)})


ROUTES = [
    Route("POST", r"^/_sandbox/uninstall$", "control", uninstall),
    Route("GET", r"^/_sandbox/events$", "control", events),
]

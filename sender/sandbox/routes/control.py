"""``/_sandbox/...``: drive a sandbox running in another process (``tokenstore sandbox``) over HTTP.

* ``GET /_sandbox/state``: tokens (fingerprints and status), accepted messages and the request log.
* ``POST /_sandbox/faults`` ``{"code": 130429, "count": 2, ...}``: queue a fault (fields of ``Fault``).
* ``POST /_sandbox/revoke`` ``{"fingerprint": "sha256:..."}``: revoke a token at once.
* ``POST /_sandbox/clock`` ``{"advance": 86400}``: move a manual clock.
* ``POST /_sandbox/reset``: forget faults, messages and the request log.

The sandbox only listens on loopback. No token value is ever returned.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._clock import ManualClock
from .._graph import Call, Reply
from .._state import Fault, SandboxState
from . import Route

__all__ = ["ROUTES"]

_FAULT_FIELDS = {f.name for f in dataclasses.fields(Fault)}


def _bad(message: str) -> Reply:
    return Reply(status=400, body={"error": {"message": message, "type": "SandboxControl", "code": 100}}, code=100)


def _json(call: Call) -> dict[str, Any] | Reply:
    try:
        body = call.json() if call.body else {}
    except (ValueError, UnicodeDecodeError):
        return _bad("the body must be a JSON object")
    return body if isinstance(body, dict) else _bad("the body must be a JSON object")


def state(call: Call, state: SandboxState) -> Reply:
    now = state.clock()
    with state.lock:
        body = {
            "now": now,
            "app_id": state.app.app_id,
            "tokens": [r.summary(now) for r in state.tokens.records()],
            "faults": [dataclasses.asdict(f) for f in state.faults],
            "received": [m.summary() for m in state.received],
            "requests": [r.summary() for r in state.requests],
        }
    return Reply(status=200, body=body)


def faults(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    unknown = set(body) - _FAULT_FIELDS
    if unknown:
        return _bad(f"unknown fault fields: {', '.join(sorted(unknown))}")
    try:
        fault = Fault(**body)
    except (TypeError, ValueError) as exc:
        return _bad(f"bad fault: {exc}")
    state.queue(fault)
    return Reply(status=200, body={"queued": fault.count})


def revoke(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    fingerprint = body.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint.startswith("sha256:"):
        return _bad('give {"fingerprint": "sha256:..."}')
    return Reply(status=200, body={"revoked": state.tokens.revoke(fingerprint)})


def clock(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    if not isinstance(state.clock, ManualClock):
        return _bad("this sandbox runs on the real clock (start it with a manual clock)")
    advance = body.get("advance")
    if isinstance(advance, bool) or not isinstance(advance, (int, float)) or advance < 0:
        return _bad('give {"advance": seconds}')
    return Reply(status=200, body={"now": state.clock.advance(float(advance))})


def reset(call: Call, state: SandboxState) -> Reply:
    state.reset()
    return Reply(status=200, body={"reset": True})


ROUTES = [
    Route("GET", r"^/_sandbox/state$", "control", state),
    Route("POST", r"^/_sandbox/faults$", "control", faults),
    Route("POST", r"^/_sandbox/revoke$", "control", revoke),
    Route("POST", r"^/_sandbox/clock$", "control", clock),
    Route("POST", r"^/_sandbox/reset$", "control", reset),
]

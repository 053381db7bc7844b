"""Embedded Signup: the code exchange and the control route that issues codes.

* ``GET /{version}/oauth/access_token?client_id&client_secret&code`` (no grant_type, no redirect_uri): the
  customer's business integration system user token ``{"access_token", "token_type": "bearer",
  "expires_in"}``, scoped to the WABAs of the code. The app credentials are checked first (101, 1), then the
  code: unknown (100, "Invalid verification code format."), of another app (100), expired after 30 s on the
  sandbox clock (100/36007) or used already (100/36009). Queued faults for ``oauth.access_token`` apply after
  these checks. (:mod:`.oauth` hands a request without grant_type but with a code to :func:`exchange_code`.)
* ``POST /_sandbox/signup_codes`` ``{"waba_ids"?: ["..."], "numbers"?: 1, "name"?: "...", "scopes"?: [...],
  "token_expires_in"?: seconds | null}``: what the customer's browser gets at the end of Embedded Signup. Without
  ``waba_ids`` a new business (with ``numbers`` phone numbers) is created first. Answers ``{"code", "waba_ids",
  "expires_in": 30}`` (the code is handed to the caller: it plays the frontend).
"""

from __future__ import annotations

from typing import Any

from .._business import BUSINESS_SCOPES
from .._graph import Call, Reply, graph_error
from .._state import SandboxState
from .._tokens import SIXTY_DAYS
from . import Route
from .control import _bad, _json

__all__ = ["ROUTES", "exchange_code", "new_signup_code"]


def new_signup_code(
    state: SandboxState,
    *,
    waba_ids: list[str] | tuple[str, ...] | None = None,
    numbers: int = 1,
    name: str | None = None,
    scopes: tuple[str, ...] = BUSINESS_SCOPES,
    token_expires_in: float | None = SIXTY_DAYS,
    app_id: str | None = None,
    value: str | None = None,
) -> tuple[str, tuple[str, ...]]:
    """A code for ``waba_ids`` (existing businesses) or for a new business; returns ``(code, waba_ids)``."""
    with state.lock:
        if waba_ids:
            ids = tuple(str(w) for w in waba_ids)
            for waba_id in ids:
                state.businesses.get(waba_id)  # KeyError when unknown
        else:
            business = state.add_business(name=name, numbers=numbers, token=False)
            ids = (business.waba_id,)
        code = state.signup_codes.new(
            app_id=app_id or state.app.app_id,
            waba_ids=ids,
            now=state.clock(),
            scopes=tuple(scopes),
            token_expires_in=token_expires_in,
            value=value,
        )
        return code.value, ids


def exchange_code(call: Call, state: SandboxState, app_id: str) -> Reply:
    """The exchange, once the app credentials (``app_id``) are checked."""
    value = call.arg("code") or ""
    registry = state.signup_codes
    code = registry.get(value)
    if code is None:
        return graph_error(100, message="Invalid verification code format.", error_type="OAuthException")
    if code.app_id != app_id:
        return graph_error(
            100, message="The authorization code was not issued for the app in client_id.", error_type="OAuthException"
        )
    now = state.clock()
    status = code.status(now)
    if status == "expired":
        return graph_error(
            100, subcode=36007, message="This authorization code has expired.", error_type="OAuthException"
        )
    if status == "used":
        return graph_error(
            100, subcode=36009, message="This authorization code has been used.", error_type="OAuthException"
        )
    fault = state.take_fault("oauth.access_token")
    if fault is not None:
        from .messages import _fault_reply

        return _fault_reply(fault)
    taken, before = registry.take(value, now)
    if taken is None or before != "unused":  # another exchange of the same code won the race
        return graph_error(
            100, subcode=36009, message="This authorization code has been used.", error_type="OAuthException"
        )
    with state.lock:
        first = state.businesses.get(code.waba_ids[0])
        options: dict[str, Any] = {
            "app_id": code.app_id,
            "type": "SYSTEM_USER",
            "user_id": first.system_user_id,
            "scopes": code.scopes,
            "granular_scopes": {scope: code.waba_ids for scope in code.scopes},
            "expires_in": code.token_expires_in,
            "label": "signup:" + ",".join(code.waba_ids),
        }
        token = state.tokens.issue(**options)
        for waba_id in code.waba_ids:
            state.businesses.get(waba_id).token = token
        record = state.tokens.get(token)
        assert record is not None
        taken.used_for = record.fingerprint
    body: dict[str, object] = {"access_token": token, "token_type": "bearer"}
    if record.expires_at:
        body["expires_in"] = max(0, record.expires_at - int(now))
    return Reply(status=200, body=body)


def signup_codes(call: Call, state: SandboxState) -> Reply:
    body = _json(call)
    if isinstance(body, Reply):
        return body
    unknown = set(body) - {"waba_ids", "numbers", "name", "scopes", "token_expires_in", "app_id"}
    if unknown:
        return _bad(f"unknown fields: {', '.join(sorted(unknown))}")
    waba_ids = body.get("waba_ids")
    if waba_ids is not None and (not isinstance(waba_ids, list) or not all(isinstance(w, str) for w in waba_ids)):
        return _bad("waba_ids must be a list of WABA ids")
    numbers = body.get("numbers", 1)
    if isinstance(numbers, bool) or not isinstance(numbers, int) or not 0 <= numbers <= 100:
        return _bad("numbers must be a whole number from 0 to 100")
    scopes = body.get("scopes", list(BUSINESS_SCOPES))
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        return _bad("scopes must be a list of permission names")
    lifetime = body.get("token_expires_in", SIXTY_DAYS)
    if lifetime is not None and (isinstance(lifetime, bool) or not isinstance(lifetime, (int, float))):
        return _bad("token_expires_in must be seconds or null (never expires)")
    try:
        code, ids = new_signup_code(
            state,
            waba_ids=waba_ids,
            numbers=numbers,
            name=body.get("name") if isinstance(body.get("name"), str) else None,
            scopes=tuple(scopes),
            token_expires_in=lifetime,
            app_id=body.get("app_id") if isinstance(body.get("app_id"), str) else None,
        )
    except (KeyError, ValueError) as exc:
        return _bad(str(exc).strip("'\""))
    return Reply(status=200, body={"code": code, "waba_ids": list(ids), "expires_in": 30})


ROUTES = [Route("POST", r"^/_sandbox/signup_codes$", "control", signup_codes)]

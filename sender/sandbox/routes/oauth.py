"""``/oauth/access_token`` (refresh a token) and ``/oauth/revoke`` (revoke one), as Meta documents them.

* ``GET /{version}/oauth/access_token?grant_type=fb_exchange_token&client_id&client_secret
  [&set_token_expires_in_60_days=true]&fb_exchange_token=OLD`` -> ``{"access_token", "token_type": "bearer",
  "expires_in"}``: a new token with the old one's app, type, user and scopes; with the 60-day flag it expires
  60 days from now (a never-expiring token included: that is what the flag does), else it keeps the old
  one's lifetime policy. The old token stays valid until its own expiry.
* ``GET /{version}/oauth/revoke?client_id&client_secret&revoke_token=OLD`` (the call authenticated with a
  valid token of the same app, or the app token, in ``Authorization`` or ``access_token``) ->
  ``{"success": "true"}``, effective at once. Revoking an already revoked or expired token succeeds.

Both check ``client_id`` (101 when unknown) and ``client_secret`` (1, "Error validating client secret.")
before anything else. The exchange refuses unknown (190/467), expired (190/463) and revoked (190/460)
tokens and another app's (100). Queued faults (route ``oauth.access_token`` / ``oauth.revoke``) apply after
these checks.
"""

from __future__ import annotations

import hmac

from .._graph import Call, Reply, graph_error
from .._state import SandboxState
from .._tokens import SIXTY_DAYS, AppRecord, TokenRecord
from . import Route, versioned
from .messages import _fault_reply

__all__ = ["ROUTES"]

_REFUSED = {
    "expired": (463, "Error validating access token: Session has expired."),
    "revoked": (460, "Error validating access token: The session was invalidated explicitly using an API call."),
}


def _missing(name: str) -> Reply:
    return graph_error(100, message=f"(#100) Missing required parameter: {name}")


def app_from_client_credentials(call: Call, state: SandboxState) -> AppRecord | Reply:
    """The app that ``client_id``/``client_secret`` name, or Graph's error (101 unknown id, 1 bad secret)."""
    client_id = call.arg("client_id")
    if not client_id:
        return _missing("client_id")
    app = state.tokens.app(client_id)
    if app is None:
        return graph_error(101, message="Error validating application. Invalid application ID.", status=400)
    secret = call.arg("client_secret")
    if not secret:
        return _missing("client_secret")
    if not hmac.compare_digest(app.secret.encode(), secret.encode()):
        return graph_error(1, message="Error validating client secret.", status=400)
    return app


def _token_refused(record: TokenRecord | None, state: SandboxState) -> Reply | None:
    """Graph's 190 for an unknown, expired or revoked token; None when it is valid."""
    if record is None:
        return graph_error(190, subcode=467, message="Invalid OAuth access token - Cannot parse access token")
    status = record.status(state.clock())
    if status in _REFUSED:
        subcode, message = _REFUSED[status]
        return graph_error(190, subcode=subcode, message=message)
    return None


def access_token(call: Call, state: SandboxState) -> Reply:
    grant = call.arg("grant_type")
    if not grant and call.arg("code") is not None:  # Embedded Signup's code exchange (see .signup)
        from .signup import exchange_code

        app = app_from_client_credentials(call, state)
        return app if isinstance(app, Reply) else exchange_code(call, state, app.app_id)
    if not grant:
        return _missing("grant_type")
    if grant != "fb_exchange_token":
        return graph_error(100, message=f"(#100) Unsupported grant_type {grant!r}: the sandbox exchanges tokens only")
    app = app_from_client_credentials(call, state)
    if isinstance(app, Reply):
        return app
    old = call.arg("fb_exchange_token")
    if not old:
        return _missing("fb_exchange_token")
    record = state.tokens.get(old)
    refused = _token_refused(record, state)
    if refused is not None:
        return refused
    assert record is not None
    if record.app_id != app.app_id:
        return graph_error(100, message="(#100) The fb_exchange_token was not issued for the app in client_id")
    fault = state.take_fault("oauth.access_token")
    if fault is not None:
        return _fault_reply(fault)
    sixty_days = (call.arg("set_token_expires_in_60_days") or "").lower() in ("true", "1")
    new = state.tokens.exchange(old, expires_in=SIXTY_DAYS if sixty_days else "same")
    issued = state.tokens.get(new)
    assert issued is not None
    body: dict[str, object] = {"access_token": new, "token_type": "bearer"}
    if issued.expires_at:
        body["expires_in"] = max(0, issued.expires_at - int(state.clock()))
    return Reply(status=200, body=body)


def revoke(call: Call, state: SandboxState) -> Reply:
    app = app_from_client_credentials(call, state)
    if isinstance(app, Reply):
        return app
    target = call.arg("revoke_token")
    if not target:
        return _missing("revoke_token")
    access = call.access_token()
    if not access:
        return graph_error(190, message="An active access token must be used to revoke a token.")
    caller = state.tokens.app_for_app_token(access) if "|" in access else None
    if caller is None:
        record = state.tokens.get(access)
        refused = _token_refused(record, state)
        if refused is not None:
            return refused
        assert record is not None
        caller_app = record.app_id
    else:
        caller_app = caller.app_id
    if caller_app != app.app_id:
        return graph_error(100, message="(#100) The access token does not belong to the app in client_id")
    victim = state.tokens.get(target)
    if victim is None or victim.app_id != app.app_id:
        return graph_error(100, message="(#100) revoke_token is not an access token of the app in client_id")
    fault = state.take_fault("oauth.revoke")
    if fault is not None:
        return _fault_reply(fault)
    state.tokens.revoke(target)  # False when already revoked: revoking twice succeeds
    return Reply(status=200, body={"success": "true"})


ROUTES = [
    Route("GET", versioned(r"/oauth/access_token"), "oauth.access_token", access_token),
    Route("GET", versioned(r"/oauth/revoke"), "oauth.revoke", revoke),
]

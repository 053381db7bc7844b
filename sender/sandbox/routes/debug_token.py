"""``GET /{version}/debug_token?input_token=...``: what Graph knows about a token.

Authenticated with the app token ``{app-id}|{app-secret}`` (header or ``access_token``), or with another
valid token of the same app (a token may not inspect itself: #100). An unknown, expired or revoked input
token still answers 200 with ``is_valid: false`` and ``error`` {code 190, subcode}; ``expires_at: 0`` means
never. GET only.
"""

from __future__ import annotations

from typing import Any

from .._graph import Call, Reply, graph_error
from .._state import SandboxState
from .._tokens import AppRecord, TokenRecord
from . import Route, versioned

__all__ = ["ROUTES", "token_data"]

_INVALID = {
    "expired": (463, "Error validating access token: Session has expired."),
    "revoked": (460, "Error validating access token: The session was invalidated explicitly using an API call."),
    "uninstalled": (458, "Error validating access token: The user has not authorized application."),
}


def token_data(record: TokenRecord, state: SandboxState) -> dict[str, Any]:
    """The ``data`` object debug_token returns for a known token."""
    app = state.tokens.app(record.app_id)
    status = record.status(state.clock())
    granular = []
    for scope in record.scopes:
        targets = record.granular_scopes.get(scope)
        if targets is None and scope.startswith("whatsapp_business_"):
            targets = (state.waba_id,)
        granular.append({"scope": scope, **({"target_ids": list(targets)} if targets else {})})
    data: dict[str, Any] = {
        "app_id": record.app_id,
        "type": record.type,
        "application": app.name if app else "",
        "data_access_expires_at": record.data_access_expires_at,
        "expires_at": record.expires_at,
        "is_valid": status == "valid",
        "issued_at": record.issued_at,
        "scopes": list(record.scopes),
        "granular_scopes": granular,
        "user_id": record.user_id,
    }
    if status != "valid":
        subcode, message = _INVALID[status]
        data["error"] = {"code": 190, "message": message, "subcode": subcode}
    return data


def debug_token(call: Call, state: SandboxState) -> Reply:
    who = state.authenticate(call, allow_app_token=True)
    if isinstance(who, Reply):
        return who
    input_token = call.arg("input_token")
    if not input_token:
        return graph_error(100, message="(#100) The parameter input_token is required")
    if isinstance(who, TokenRecord) and input_token == who.value:
        return graph_error(100, message="(#100) A token cannot be used to inspect itself: use the app token")
    viewer_app = who.app_id if isinstance(who, (AppRecord, TokenRecord)) else None
    record = state.tokens.get(input_token)
    if record is None:
        return Reply(
            status=200,
            body={
                "data": {
                    "error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
                    "is_valid": False,
                    "scopes": [],
                }
            },
        )
    if record.app_id != viewer_app:
        return graph_error(100, message="(#100) The App_id in the input_token did not match the Viewing App")
    return Reply(status=200, body={"data": token_data(record, state)})


def not_get(call: Call, state: SandboxState) -> Reply:
    return graph_error(
        100, message="Unsupported post request. debug_token only answers GET", error_type="GraphMethodException"
    )


ROUTES = [
    Route("GET", versioned(r"/debug_token"), "debug_token", debug_token),
    Route("POST", versioned(r"/debug_token"), "debug_token", not_get),
]

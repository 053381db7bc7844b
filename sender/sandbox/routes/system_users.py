"""``POST /{version}/{system-user-id}/access_tokens``: generate a system-user access token.

Form (or query) parameters, as Meta documents them: ``business_app`` (the app id), ``scope`` (comma-separated
permissions), ``appsecret_proof`` (required: HMAC-SHA256 of the calling token keyed with the app secret;
100 when missing or wrong), ``set_token_expires_in_60_days`` (``true``: the token expires in 60 days, else
never). The call is authenticated with an admin system user's (or another valid user's) token of the same
app. The system user must exist (one the sandbox has issued tokens for: 100/33 otherwise); an unknown
permission is #3962. Answers ``{"access_token": "..."}``. Queued faults (route
``system_users.access_tokens``) apply after these checks.
"""

from __future__ import annotations

from .._graph import Call, Reply, graph_error
from .._state import SandboxState
from .._tokens import SIXTY_DAYS, TokenRecord
from . import Route, versioned
from .messages import _fault_reply

__all__ = ["KNOWN_PERMISSIONS", "ROUTES"]

#: permissions the sandbox accepts in ``scope``
KNOWN_PERMISSIONS = frozenset(
    {
        "whatsapp_business_messaging",
        "whatsapp_business_management",
        "whatsapp_business_manage_events",
        "business_management",
        "catalog_management",
        "ads_management",
        "ads_read",
        "pages_show_list",
        "pages_messaging",
        "public_profile",
    }
)


def generate(call: Call, state: SandboxState) -> Reply:
    if call.arg("appsecret_proof") is None:
        return graph_error(100, message="API calls from the server require an appsecret_proof argument")
    who = state.authenticate(call)  # checks the token and its appsecret_proof
    if isinstance(who, Reply):
        return who
    assert isinstance(who, TokenRecord)
    user_id = call.params["system_user_id"]
    known_users = {r.user_id for r in state.tokens.records() if r.type == "SYSTEM_USER"}
    if user_id not in known_users:
        return graph_error(
            100,
            subcode=33,
            error_type="GraphMethodException",
            message=f"Unsupported post request. Object with ID '{user_id}' does not exist, cannot be loaded due to "
            "missing permissions, or does not support this operation.",
        )
    business_app = call.arg("business_app")
    if not business_app:
        return graph_error(100, message="(#100) Missing required parameter: business_app")
    if business_app != who.app_id or state.tokens.app(business_app) is None:
        return graph_error(100, message="(#100) The app in business_app is not installed for this system user")
    scopes = [s.strip() for s in (call.arg("scope") or "").split(",") if s.strip()]
    if not scopes:
        return graph_error(100, message="(#100) Missing required parameter: scope")
    unknown = [s for s in scopes if s not in KNOWN_PERMISSIONS]
    if unknown:
        return graph_error(3962, message="(#3962) Provided permission is not valid. Check your spelling and syntax.")
    fault = state.take_fault("system_users.access_tokens")
    if fault is not None:
        return _fault_reply(fault)
    sixty_days = (call.arg("set_token_expires_in_60_days") or "").lower() in ("true", "1")
    value = state.tokens.issue(
        app_id=business_app,
        type="SYSTEM_USER",
        user_id=user_id,
        scopes=tuple(dict.fromkeys(scopes)),
        expires_in=SIXTY_DAYS if sixty_days else None,
        label="generated",
    )
    return Reply(status=200, body={"access_token": value})


ROUTES = [
    Route("POST", versioned(r"/(?P<system_user_id>\d{1,32})/access_tokens"), "system_users.access_tokens", generate),
]

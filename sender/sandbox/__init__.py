"""A local Graph API sandbox for tests and demos: ``python -m sender.sandbox`` or ``tokenstore sandbox``.

A real HTTP server on 127.0.0.1 that speaks enough of the Graph API for the sender and the operator
commands: ``POST /{version}/{phone-number-id}/messages`` (Meta's success shape, schema validation, Graph
error objects), ``GET /{version}/debug_token``, the token lifecycle (``GET /oauth/access_token`` to refresh,
``GET /oauth/revoke``, ``POST /{system-user-id}/access_tokens`` to generate), and ``/_sandbox/...`` control
routes. It checks bearer tokens against a registry it can issue, rotate, revoke and expire (on an injectable
clock), returns Graph errors on command, and records what it received (fingerprints only, never a token)::

    from sender.sandbox import Sandbox

    with Sandbox() as sb:
        token = sb.issue_token()
        sb.fail_next(130429, count=2)        # the next two sends are rate limited
        ...                                  # point a sender at sb.url / sb.phone_number_id
        sb.revoke_token(token)               # 190 from now on
        sb.received_counts()                 # Counter of accepted text bodies
        sb.route_counts()["oauth.access_token"]   # how many refresh calls it answered

New endpoints go in their own module under ``sender.sandbox.routes``.
"""

from __future__ import annotations

from ._clock import Clock, ManualClock, SystemClock
from ._graph import ERRORS, Call, Reply, graph_error
from ._server import DEFAULT_PHONE_NUMBER_ID, DEFAULT_TEMPLATES, Sandbox
from ._state import Fault, ReceivedMessage, RequestRecord, SandboxState
from ._tokens import DEFAULT_SCOPES, SIXTY_DAYS, AppRecord, TokenRecord, TokenRegistry
from ._webhooks import WebhookDelivery, account_update_payload, status_payload
from .routes import ROUTE_MODULES, Route, versioned

__all__ = [
    "DEFAULT_PHONE_NUMBER_ID",
    "DEFAULT_SCOPES",
    "DEFAULT_TEMPLATES",
    "ERRORS",
    "ROUTE_MODULES",
    "SIXTY_DAYS",
    "AppRecord",
    "Call",
    "Clock",
    "Fault",
    "ManualClock",
    "ReceivedMessage",
    "Reply",
    "RequestRecord",
    "Route",
    "Sandbox",
    "SandboxState",
    "SystemClock",
    "TokenRecord",
    "TokenRegistry",
    "WebhookDelivery",
    "account_update_payload",
    "graph_error",
    "status_payload",
    "versioned",
]

"""A local Graph API sandbox for tests and demos: ``python -m sender.sandbox`` or ``tokenstore sandbox``.

A real HTTP server on 127.0.0.1 that speaks enough of the Graph API for the sender and the operator
commands: ``POST /{version}/{phone-number-id}/messages`` (Meta's success shape, schema validation, Graph
error objects), ``GET /{version}/debug_token``, the token lifecycle (``GET /oauth/access_token`` to refresh,
``GET /oauth/revoke``, ``POST /{system-user-id}/access_tokens`` to generate), and ``/_sandbox/...`` control
routes. It checks bearer tokens against a registry it can issue, rotate, revoke and expire (on an injectable
clock), returns Graph errors on command, and records what it received (fingerprints only, never a token).

It knows one business by default and as many as a test adds (:meth:`Sandbox.add_business`: a WABA of its own,
phone numbers and tokens scoped to it): a token used on another business's number gets Graph's permission
error (code 200) and nothing is delivered; ``GET /{version}/{waba-id}/phone_numbers`` lists a business's
numbers in Meta's shape::

    from sender.sandbox import Sandbox

    with Sandbox() as sb:
        token = sb.issue_token()
        sb.fail_next(130429, count=2)        # the next two sends are rate limited
        ...                                  # point a sender at sb.url / sb.phone_number_id
        sb.revoke_token(token)               # 190 from now on
        sb.received_counts()                 # Counter of accepted text bodies
        sb.route_counts()["oauth.access_token"]   # how many refresh calls it answered
        biz = sb.add_business(numbers=2)     # a customer business: biz.waba_id, biz.phone_number_ids, biz.token
        sb.rotate_business_token(biz.waba_id)     # or sb.revoke_business_token(biz.waba_id)

New endpoints go in their own module under ``sender.sandbox.routes``.
"""

from __future__ import annotations

from ._business import DEFAULT_WABA_ID, Business, BusinessRegistry, PhoneNumber
from ._cli import check_serve_options, serve
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
    "DEFAULT_WABA_ID",
    "ERRORS",
    "ROUTE_MODULES",
    "SIXTY_DAYS",
    "AppRecord",
    "Business",
    "BusinessRegistry",
    "Call",
    "Clock",
    "Fault",
    "ManualClock",
    "PhoneNumber",
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
    "check_serve_options",
    "graph_error",
    "serve",
    "status_payload",
    "versioned",
]

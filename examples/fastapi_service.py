"""A FastAPI service that sends WhatsApp template messages, never holding the access token.

One ``sender.AsyncSender`` serves the whole process: the lifespan builds it from the config file (the
``whatsapp:`` section and the token store of ``token:``) and closes it at shutdown. Every request asks the
store for the token through the cache, so a token rotated in the store is used without a restart, and a
token Meta revoked (190) is refetched and the message resent once.

Run it (``pip install whatsapp-tokenstore fastapi uvicorn``)::

    TOKENSTORE_CONFIG=config.yaml uvicorn --app-dir examples fastapi_service:app

    curl -s localhost:8000/messages/template -H 'content-type: application/json' \\
         -d '{"to": "15551234567", "template": "hello_world", "language": "en_US"}'

``POST /messages/template`` answers:

* 200 ``{"message_id", "wa_id", "message_status", "attempts"}``: Meta accepted the message;
* 422: the caller must fix the request (invalid parameter, unknown template, recipient not reachable);
* 429 with ``Retry-After``: rate limited, try again later;
* 502: Meta refused our credentials or is blocking us: an operator must act (see the logs);
* 503 (with ``Retry-After`` where known): Meta or the secret store is unavailable: nothing was sent, retry;
* 504: the request went out but no answer came back: the message MAY have been sent, do not retry blindly
  (reconcile with the status webhooks; ``biz_opaque_callback_data`` comes back in them).

``GET /healthz`` says the process is up; ``GET /metrics/token`` returns the token layer's counters per
provider (cache hits, misses, refreshes, stale serves, store errors, invalidations, 190 resends).

Webhooks (when the config has a ``webhook:`` or ``app_secret:`` section): ``GET /webhook`` answers Meta's
subscription handshake (200 with ``hub.challenge``, 403 on a wrong verify token); ``POST /webhook`` reads the
body raw, checks ``X-Hub-Signature-256`` with the app secret from the store (401 when it does not match; a
reset app secret is picked up without a restart) and feeds the statuses to a ``sender.Reconciler``. Every
send carries a ``biz_opaque_callback_data`` reference (the caller's, or a generated one, returned as
``reference`` even with a 504), and ``GET /messages/outcome/{reference}`` tells what the status webhooks
said about it: after a 504, ask there instead of resending blind. ``PARTNER_APP_UNINSTALLED`` reaches
``on_account_update`` (pass your own to ``create_app``: the tenant-disconnect hook).

A Tech Provider's service also onboards customers. With a ``tenants:`` section (and ``whatsapp.app_id`` and
``app_secret:``) in the config, ``POST /onboard`` takes ``{"code": "..."}``, the code Embedded Signup hands the
customer's browser (it lives 30 seconds: post it from the signup callback at once), and stores the customer's
business token in the tenant's secret (``sender.onboard``), the phone numbers in the routing map. It answers:

* 200 ``{"fingerprint", "waba_ids", "tenants": [{"tenant", "waba_id", "numbers", "replaced", ...}],
  "warnings"}``: onboarded; a token it replaced (a customer signing up again) is revoked in the background once
  every replica's cache has the new one;
* 400: the code is missing or malformed, expired, used already or another app's: the customer signs up again;
* 422: the business token cannot send (no ``whatsapp_business_messaging``, no WABA shared): nothing was stored;
* 502: Meta refused our app credentials; 503: Meta or the secret store is unavailable, nothing was stored.

``POST /tenants/{tenant}/refresh`` refreshes one tenant's token when it expires within 7 days
(``sender.refresh_stored_token``, the same code as ``tokenstore refresh``); the old token stays valid until its
own expiry (``tokenstore refresh --all --revoke-old-after`` from cron is the fleet's way).

Neither route ever answers with, or logs, the code or a token: only fingerprints.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import sender
import tokenstore

logger = logging.getLogger("whatsapp_service")


class TemplateMessage(BaseModel):
    """The body of ``POST /messages/template``."""

    to: str = Field(min_length=1, max_length=64, description="the recipient, in international format")
    template: str = Field(min_length=1, max_length=512, description="an approved template's name")
    language: str = Field("en_US", min_length=2, max_length=16, description="the template's language code")
    components: list[dict[str, Any]] | None = Field(None, description="header/body/button parameters (Meta's shape)")
    biz_opaque_callback_data: str | None = Field(None, max_length=512, description="comes back in status webhooks")


def _problem(status: int, error: Exception, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": type(error).__name__, "message": str(error)}
    headers: dict[str, str] = {}
    if isinstance(error, sender.SendError):
        body.update(code=error.code, retryable=error.retryable, fbtrace_id=error.fbtrace_id)
        if error.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after)))
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(error: Exception) -> JSONResponse:
    """The HTTP answer for a failed send. Our error messages never carry a token (the library scrubs them)."""
    if isinstance(error, sender.RateLimited):
        return _problem(429, error)
    if isinstance(error, (sender.InvalidRequest, sender.TemplateError, sender.RecipientError)):
        return _problem(422, error)
    if isinstance(error, (sender.AuthenticationError, sender.PermissionDenied, sender.PolicyBlocked)):
        return _problem(502, error)
    if isinstance(error, sender.OutcomeUnknown):
        return _problem(504, error, note="the message may have been sent: do not retry blindly")
    if isinstance(error, (sender.ServerError, sender.ConnectFailed, tokenstore.TokenStoreError)):
        return _problem(503, error)
    return _problem(502, error)


def log_account_update(event: sender.AccountUpdateEvent) -> None:
    """The default ``on_account_update``: log it (replace it to mark the tenant disconnected)."""
    logger.warning("account_update %s for WABA %s", event.event, event.account_waba_id)


def onboarding_error(error: Exception) -> JSONResponse:
    """The HTTP answer for a failed onboarding (never the code or a token: the library scrubs its messages)."""
    if isinstance(error, sender.SignupCodeRejected):
        return _problem(400, error, note="ask the customer to finish Embedded Signup again")
    if isinstance(error, (sender.OnboardingRefused, tokenstore.InvalidTenantKey)):
        return _problem(422, error)
    if isinstance(error, (sender.ServerError, sender.NetworkError, tokenstore.TokenStoreError)):
        return _problem(503, error)
    return _problem(502, error)


def _code_from(body: Any) -> str | None:
    """The signup code of ``{"code": "..."}``: one printable ASCII word, or None (never echoed back)."""
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str):
        return None
    code = code.strip()
    ok = 0 < len(code) <= 4096 and code.isascii() and code.isprintable() and " " not in code
    return code if ok else None


def create_app(
    config: str | os.PathLike[str] | None = None,
    *,
    revoke_wait: float | None = None,
    on_account_update: sender.EventHook | None = log_account_update,
) -> FastAPI:
    """The service. ``config``: the config file (default: ``$TOKENSTORE_CONFIG``, then ./tokenstore.yaml).
    ``revoke_wait``: seconds before a token an onboarding replaced is revoked (default: the tenants' cache ttl
    + refresh_ahead).

    Nothing is read or connected here: the lifespan builds the sender (and, with a ``tenants:`` section, the
    tenants' providers and the Graph token client) when the server starts, so a bad config fails the start-up
    with an error naming the file and field. With a ``webhook:`` or ``app_secret:`` section it also builds the
    webhook verifier. ``on_account_update``: called with every verified ``account_update`` event
    (``PARTNER_APP_UNINSTALLED``: the customer removed the app).
    """
    reconciler = sender.Reconciler()

    def on_status(event: sender.WebhookEvent) -> None:
        if isinstance(event, sender.StatusEvent):
            logger.info("status %s for %s (%s)", event.status, event.message_id, event.biz_opaque_callback_data)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        data, _ = sender.read_config(config)
        app.state.tenants = app.state.graph = None
        if data.get("tenants") is not None:
            app.state.tenants = tokenstore.load_tenants(config)
            app.state.graph = sender.GraphTokenClient.from_config(config, purpose="onboarding")
        try:
            async with sender.AsyncSender.from_config(config) as whatsapp:
                app.state.sender = whatsapp
                app.state.reconciler = reconciler
                app.state.webhooks = None
                logger.info("sending as phone number %s through %s", whatsapp.phone_number_id, whatsapp.provider.source)
                if "webhook" not in data and "app_secret" not in data:
                    yield
                else:
                    async with sender.WebhookVerifier.from_config(config) as verifier:
                        app.state.webhooks = sender.WebhookASGI(
                            verifier, on_event=on_status, on_account_update=on_account_update, reconciler=reconciler
                        )
                        yield
        finally:
            if app.state.graph is not None:
                app.state.graph.close()
                app.state.tenants.close()
        logger.info("sender closed")

    app = FastAPI(title="WhatsApp template sender", lifespan=lifespan)

    @app.post("/messages/template")
    async def send_template(message: TemplateMessage, request: Request) -> Any:
        whatsapp: sender.AsyncSender = request.app.state.sender
        reference = message.biz_opaque_callback_data or reconciler.new_reference("tpl")
        try:
            result = await whatsapp.send_template(
                message.to,
                message.template,
                language=message.language,
                components=message.components,
                biz_opaque_callback_data=reference,
            )
        except (sender.SendError, tokenstore.TokenStoreError) as exc:
            logger.warning("template %r not sent: %s", message.template, type(exc).__name__)
            answer = error_response(exc)
            if isinstance(exc, sender.OutcomeUnknown):  # GET /messages/outcome/{reference} settles it
                answer = _problem(
                    504, exc, note="the message may have been sent: do not retry blindly", reference=reference
                )
            return answer
        return {
            "message_id": result.message_id,
            "wa_id": result.wa_id,
            "message_status": result.message_status,
            "attempts": result.attempts,
            "reference": reference,
        }

    @app.get("/messages/outcome/{reference}")
    async def outcome(reference: str, wait: float = 0) -> Any:
        """What the status webhooks said about a send (``wait``: up to this many seconds for one to come)."""
        status = await reconciler.await_status(reference, min(max(wait, 0), 30))
        if status is None:
            return JSONResponse({"reference": reference, "status": "unknown"}, status_code=404)
        return {
            "reference": reference,
            "status": status.status,
            "message_id": status.message_id,
            "error_code": status.error_code,
            "error_title": status.error_title,
        }

    @app.get("/webhook")
    async def webhook_handshake(request: Request) -> Response:
        """Meta's subscription handshake: 200 with hub.challenge, 403 on a wrong verify token."""
        return await _webhook(request)

    @app.post("/webhook")
    async def webhook_delivery(request: Request) -> Response:
        """Meta's deliveries, verified over the raw body: 200, 401 on a bad signature, 413 when too large."""
        return await _webhook(request)

    async def _webhook(request: Request) -> Response:
        webhooks: sender.WebhookASGI | None = request.app.state.webhooks
        if webhooks is None:
            return JSONResponse({"error": "webhooks are not configured (webhook: / app_secret:)"}, status_code=404)
        answer: Response = (await webhooks.answer_request(request)).to_starlette()
        return answer

    @app.post("/onboard")
    async def onboard(request: Request, background: BackgroundTasks) -> Any:
        tenants, graph = request.app.state.tenants, request.app.state.graph
        if tenants is None:
            return JSONResponse({"error": "NotConfigured", "message": "no tenants: section in the config"}, 404)
        try:
            body = await request.json()
        except ValueError:
            body = None
        code = _code_from(body)
        if code is None:
            message = 'the body must be {"code": "<the Embedded Signup code>"} (one word)'
            return JSONResponse({"error": "BadRequest", "message": message}, status_code=400)
        try:
            result = await asyncio.to_thread(sender.onboard, code, graph, tenants, revoke_old=False)
        except (sender.SendError, sender.OnboardingRefused, tokenstore.TokenStoreError) as exc:
            logger.warning("onboarding failed: %s", type(exc).__name__)
            return onboarding_error(exc)
        if result.replaced_tokens:
            background.add_task(_revoke_later, result, graph, tenants, revoke_wait)
        logger.info("onboarded WABA %s as tenant(s) %s", result.waba_ids, [t.tenant for t in result.tenants])
        return result.to_dict()

    @app.post("/tenants/{tenant}/refresh")
    async def refresh(tenant: str, request: Request) -> Any:
        tenants, graph = request.app.state.tenants, request.app.state.graph
        if tenants is None:
            return JSONResponse({"error": "NotConfigured", "message": "no tenants: section in the config"}, 404)
        try:
            store = tenants.provider(tenant)
            result = await asyncio.to_thread(sender.refresh_stored_token, store, graph, if_expiring_within=7 * 86400)
        except sender.RefreshRefused as exc:
            return _problem(409, exc)
        except tokenstore.UnknownTenant as exc:
            return _problem(404, exc)
        except (sender.SendError, tokenstore.TokenStoreError) as exc:
            return onboarding_error(exc)
        return result.to_dict()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics/token")
    async def token_metrics() -> dict[str, dict[str, int]]:
        return tokenstore.metrics_snapshot()

    return app


async def _revoke_later(
    result: sender.Onboarding, graph: sender.GraphTokenClient, tenants: tokenstore.TenantProviders, wait: float | None
) -> None:
    """After the answer: wait until every replica's cache holds the new token, then revoke the replaced one."""
    policy = tenants.policy
    await asyncio.sleep(wait if wait is not None else policy.ttl + policy.refresh_ahead)
    revoked = await asyncio.to_thread(sender.revoke_replaced_tokens, result, graph, tenants, revoke_old_after=0)
    logger.info("revoked %d replaced token(s) after onboarding", len(revoked))


app = create_app()

"""The webhook endpoint without a framework: GET handshake and POST delivery in, an HTTP answer out.

:class:`WebhookHandler` turns a request's method, query, ``X-Hub-Signature-256`` header and raw body into a
:class:`WebhookResponse`, calling your hooks with the verified events. The ASGI app
(:class:`sender.WebhookASGI`, for FastAPI / Starlette) and the WSGI app (:class:`sender.WebhookWSGI`, for
Flask / Django) are thin adapters around it; a Django view can call it directly::

    handler = sender.WebhookHandler(verifier, on_event=print)
    answer = handler.handle(request.method, request.GET, request.headers.get("X-Hub-Signature-256"), request.body)

Answers: GET 200 with the challenge (text/plain), 403 refused; POST 200 after every hook ran, 401 bad
signature, 413 body over ``max_body``, 400 verified but not JSON, 503 the secrets' store cannot be read
(Meta retries), 500 a hook raised (Meta retries: make hooks idempotent); anything else 405.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenstore import TokenStoreError

from ._events import AccountUpdateEvent, WebhookEvent
from ._reconcile import Reconciler
from ._webhooks import InvalidPayload, InvalidSignature, PayloadTooLarge, SubscriptionRefused, WebhookVerifier

__all__ = ["EventHook", "WebhookHandler", "WebhookResponse"]

logger = logging.getLogger("sender.webhooks")

#: a hook: a function of one argument, plain or ``async`` (async hooks need the async paths)
EventHook = Callable[[Any], Awaitable[None] | None]

_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class WebhookResponse:
    """An HTTP answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = _TEXT
    headers: tuple[tuple[str, str], ...] = ()

    def header_list(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))), *self.headers]

    def to_starlette(self) -> Any:
        """This answer as a ``starlette.responses.Response`` (FastAPI's too); imports Starlette only here."""
        from starlette.responses import Response

        return Response(self.body, status_code=self.status, headers=dict(self.headers), media_type=self.content_type)


_OK = WebhookResponse(200, b"ok")
_FORBIDDEN = WebhookResponse(403, b"forbidden")
_UNAUTHORIZED = WebhookResponse(401, b"invalid signature")
_TOO_LARGE = WebhookResponse(413, b"payload too large")
_BAD = WebhookResponse(400, b"not a webhook payload")
_UNAVAILABLE = WebhookResponse(503, b"webhook secrets unavailable, retry later", headers=(("Retry-After", "30"),))
_FAILED = WebhookResponse(500, b"webhook processing failed")
_NOT_ALLOWED = WebhookResponse(405, b"method not allowed", headers=(("Allow", "GET, POST"),))


def _first(query: Mapping[str, Any], key: str) -> str | None:
    value = query.get(key)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


class WebhookHandler:
    """Verify, parse and dispatch webhook requests to hooks.

    Hooks (each optional, plain or ``async``): ``on_events(list)`` once per delivery, ``on_event(event)`` per
    event, ``on_account_update(event)`` per :class:`sender.AccountUpdateEvent` (``PARTNER_APP_UNINSTALLED``
    is the customer removing your app: the tenant-disconnect hook). ``reconciler`` is fed every delivery.
    """

    def __init__(
        self,
        verifier: WebhookVerifier,
        *,
        on_event: EventHook | None = None,
        on_events: EventHook | None = None,
        on_account_update: EventHook | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self.verifier = verifier
        self.on_event = on_event
        self.on_events = on_events
        self.on_account_update = on_account_update
        self.reconciler = reconciler

    @classmethod
    def of(
        cls,
        verifier: WebhookVerifier | WebhookHandler,
        *,
        on_event: EventHook | None = None,
        on_events: EventHook | None = None,
        on_account_update: EventHook | None = None,
        reconciler: Reconciler | None = None,
    ) -> WebhookHandler:
        """``verifier`` itself when it is a handler already, else a handler around it with these hooks (what the
        ASGI and WSGI glue take)."""
        if isinstance(verifier, WebhookHandler):
            return verifier
        return cls(
            verifier, on_event=on_event, on_events=on_events, on_account_update=on_account_update, reconciler=reconciler
        )

    @property
    def max_body(self) -> int:
        return self.verifier.max_body

    # -- no I/O -------------------------------------------------------------------------------------------------
    def _calls(self, events: Sequence[WebhookEvent]) -> list[tuple[EventHook, Any]]:
        calls: list[tuple[EventHook, Any]] = []
        if self.on_events is not None:
            calls.append((self.on_events, list(events)))
        for event in events:
            if self.on_event is not None:
                calls.append((self.on_event, event))
            if self.on_account_update is not None and isinstance(event, AccountUpdateEvent):
                calls.append((self.on_account_update, event))
        return calls

    @staticmethod
    def _refusal(exc: Exception) -> WebhookResponse:
        if isinstance(exc, PayloadTooLarge):
            return _TOO_LARGE
        if isinstance(exc, InvalidSignature):
            return _UNAUTHORIZED
        if isinstance(exc, InvalidPayload):
            return _BAD
        if isinstance(exc, SubscriptionRefused):
            return _FORBIDDEN
        logger.warning("webhook secrets could not be read from the store: %s", type(exc).__name__)
        return _UNAVAILABLE

    @staticmethod
    def too_large() -> WebhookResponse:
        """The answer for a body known to be over ``max_body`` before it was read (Content-Length)."""
        return _TOO_LARGE

    # -- sync ---------------------------------------------------------------------------------------------------
    def handle(
        self, method: str, query: Mapping[str, Any], signature: str | None, body: bytes = b""
    ) -> WebhookResponse:
        """Answer one request (``query``: the parsed query string, values str or lists of str)."""
        if method in ("GET", "HEAD"):
            return self.handle_get(query)
        if method == "POST":
            return self.handle_post(body, signature)
        return _NOT_ALLOWED

    def handle_get(self, query: Mapping[str, Any]) -> WebhookResponse:
        try:
            challenge = self.verifier.verify_subscription(
                _first(query, "hub.mode"), _first(query, "hub.verify_token"), _first(query, "hub.challenge")
            )
        except (SubscriptionRefused, TokenStoreError) as exc:
            return self._refusal(exc)
        return WebhookResponse(200, challenge.encode("ascii"))

    def handle_post(self, body: bytes, signature: str | None) -> WebhookResponse:
        try:
            events = self.verifier.events(body, signature)
        except (InvalidSignature, InvalidPayload, TokenStoreError) as exc:
            return self._refusal(exc)
        if self.reconciler is not None:
            self.reconciler.observe(events)
        try:
            for hook, arg in self._calls(events):
                result = hook(arg)
                if inspect.isawaitable(result):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                    raise TypeError("an async webhook hook needs the async path (WebhookASGI / ahandle)")
        except Exception:
            logger.exception("a webhook hook failed; answering 500 so that Meta retries the delivery")
            return _FAILED
        return _OK

    # -- async --------------------------------------------------------------------------------------------------
    async def ahandle(
        self, method: str, query: Mapping[str, Any], signature: str | None, body: bytes = b""
    ) -> WebhookResponse:
        if method in ("GET", "HEAD"):
            return await self.ahandle_get(query)
        if method == "POST":
            return await self.ahandle_post(body, signature)
        return _NOT_ALLOWED

    async def ahandle_get(self, query: Mapping[str, Any]) -> WebhookResponse:
        try:
            challenge = await self.verifier.averify_subscription(
                _first(query, "hub.mode"), _first(query, "hub.verify_token"), _first(query, "hub.challenge")
            )
        except (SubscriptionRefused, TokenStoreError) as exc:
            return self._refusal(exc)
        return WebhookResponse(200, challenge.encode("ascii"))

    async def averified(self, body: bytes, signature: str | None) -> list[WebhookEvent] | WebhookResponse:
        """The verified events (the reconciler fed, no hook called), or the refusal to answer."""
        try:
            events = await self.verifier.aevents(body, signature)
        except (InvalidSignature, InvalidPayload, TokenStoreError) as exc:
            return self._refusal(exc)
        if self.reconciler is not None:
            self.reconciler.observe(events)
        return events

    async def ahandle_post(self, body: bytes, signature: str | None) -> WebhookResponse:
        events = await self.averified(body, signature)
        if isinstance(events, WebhookResponse):
            return events
        try:
            for hook, arg in self._calls(events):
                result = hook(arg)
                if inspect.isawaitable(result):
                    await result
        except Exception:
            logger.exception("a webhook hook failed; answering 500 so that Meta retries the delivery")
            return _FAILED
        return _OK

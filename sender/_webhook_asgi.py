"""The webhook endpoint as a plain ASGI app: FastAPI, Starlette (and any ASGI server) without importing them.

::

    verifier = sender.WebhookVerifier.from_config("config.yaml")
    webhook = sender.WebhookASGI(verifier, on_event=handle_event, on_account_update=disconnect)
    app.add_route("/webhook", webhook, methods=["GET", "POST"])     # FastAPI / Starlette
    # or serve it alone: uvicorn module:webhook

The body is read raw from ASGI ``http.request`` messages, never parsed before the signature is checked,
and never beyond ``max_body``: a larger Content-Length is refused before reading, a body that grows past
it is refused as soon as it does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from ._events import WebhookEvent
from ._reconcile import Reconciler
from ._webhook_handler import EventHook, WebhookHandler, WebhookResponse
from ._webhooks import WebhookVerifier

__all__ = ["WebhookASGI"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _TooLarge(Exception):
    pass


class WebhookASGI:
    """An ASGI app answering Meta's GET handshake and POST deliveries (see :class:`sender.WebhookHandler`)."""

    def __init__(
        self,
        verifier: WebhookVerifier | WebhookHandler,
        *,
        on_event: EventHook | None = None,
        on_events: EventHook | None = None,
        on_account_update: EventHook | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self.handler = WebhookHandler.of(
            verifier, on_event=on_event, on_events=on_events, on_account_update=on_account_update, reconciler=reconciler
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served alone: nothing to set up
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method = str(scope.get("method", "GET")).upper()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        body = b""
        if method == "POST":
            try:
                body = await self._read_body(receive, headers)
            except _TooLarge:
                await self._answer(send, self.handler.too_large(), method)
                return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        answer = await self.handler.ahandle(method, query, headers.get("x-hub-signature-256"), body)
        await self._answer(send, answer, method)

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        limit = self.handler.max_body
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _read_request(self, request: Any) -> bytes | WebhookResponse:
        limit = self.handler.max_body
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return self.handler.too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return self.handler.too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def dependency(self) -> Callable[..., Awaitable[list[WebhookEvent]]]:
        """A FastAPI dependency: the verified events of a POST (raw body, ``max_body``, the reconciler fed),
        or ``HTTPException`` 401 / 413 / 400 / 503. The route then does the work itself (no hook is called)::

            verified = webhook.dependency()

            @app.post("/webhook")
            async def receive(events: list[sender.WebhookEvent] = Depends(verified)) -> dict[str, str]:
                ...
                return {"status": "ok"}

        Imports Starlette when called (FastAPI needs the ``Request`` annotation).
        """
        from starlette.exceptions import HTTPException
        from starlette.requests import Request

        async def verified_webhook_events(request: Request) -> list[WebhookEvent]:
            body = await self._read_request(request)
            if isinstance(body, WebhookResponse):
                raise HTTPException(body.status, body.body.decode("ascii"))
            events = await self.handler.averified(body, request.headers.get("x-hub-signature-256"))
            if isinstance(events, WebhookResponse):
                raise HTTPException(events.status, events.body.decode("ascii"), headers=dict(events.headers) or None)
            return events

        verified_webhook_events.__annotations__ = {"request": Request, "return": list}
        return verified_webhook_events

    async def answer_request(self, request: Any) -> WebhookResponse:
        """The answer to a Starlette / FastAPI ``Request``, for use inside a route function (the body is read
        raw through ``request.stream()``, never beyond ``max_body``)::

            @app.post("/webhook")
            async def webhook(request: Request) -> Response:
                return (await webhooks.answer_request(request)).to_starlette()
        """
        method = str(request.method).upper()
        signature = request.headers.get("x-hub-signature-256")
        body = b""
        if method == "POST":
            read = await self._read_request(request)
            if isinstance(read, WebhookResponse):
                return read
            body = read
        return await self.handler.ahandle(method, request.query_params, signature, body)

    @staticmethod
    async def _answer(send: Send, answer: WebhookResponse, method: str) -> None:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.header_list()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer.body})

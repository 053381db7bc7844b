"""The webhook endpoint as a WSGI app: Flask, Django or any WSGI server, without importing them.

::

    webhook = sender.WebhookWSGI(sender.WebhookVerifier.from_config("config.yaml"), on_event=handle_event)
    # Flask: mount it beside the app
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/webhook": webhook})
    # Django: call webhook.handler.handle(...) from a view (see sender.WebhookHandler), or route to it in
    # the WSGI entry point; any server: waitress.serve(webhook), wsgiref.simple_server.make_server(..., webhook)

The body is read raw from ``wsgi.input`` and never beyond ``max_body``: a larger Content-Length is refused
before reading. Hooks must be plain functions here (async hooks need :class:`sender.WebhookASGI`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from ._reconcile import Reconciler
from ._webhook_handler import EventHook, WebhookHandler, WebhookResponse
from ._webhooks import WebhookVerifier

__all__ = ["WebhookWSGI"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

StartResponse = Callable[..., Any]


class WebhookWSGI:
    """A WSGI app answering Meta's GET handshake and POST deliveries (see :class:`sender.WebhookHandler`)."""

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

    def __call__(self, environ: Mapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        body = b""
        if method == "POST":
            length_text = str(environ.get("CONTENT_LENGTH") or "0").strip()
            length = int(length_text) if length_text.isdigit() else 0
            if length > self.handler.max_body:
                return self._answer(start_response, self.handler.too_large(), method)
            stream = environ.get("wsgi.input")
            body = stream.read(length) if (stream is not None and length) else b""
        query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        answer = self.handler.handle(method, query, environ.get("HTTP_X_HUB_SIGNATURE_256"), body)
        return self._answer(start_response, answer, method)

    @staticmethod
    def _answer(start_response: StartResponse, answer: WebhookResponse, method: str) -> list[bytes]:
        start_response(f"{answer.status} {_REASONS.get(answer.status, 'Error')}", answer.header_list())
        return [b"" if method == "HEAD" else answer.body]

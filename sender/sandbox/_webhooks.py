"""The sandbox's webhook delivery: signed status webhooks to a registered callback URL, as Meta sends them.

For every message the sandbox accepts it delivers ``sent``, ``delivered`` and ``read`` (or ``sent`` then
``failed`` on command), each in its own POST of Meta's envelope, carrying the message's
``biz_opaque_callback_data``, signed ``X-Hub-Signature-256: sha256=HMAC-SHA256(app secret, body)`` with the
app secret current at delivery time (``rotate_app_secret`` switches it). A delivery that gets no 2xx is
retried with backoff, like Meta does. ``emit`` delivers any payload (an ``account_update``, say). The
callback URL must be on loopback; deliveries run in one background thread, in order.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from tokenstore import fingerprint_of, is_loopback_host

if TYPE_CHECKING:
    import httpx

    from ._state import ReceivedMessage, SandboxState

__all__ = ["DEFAULT_RETRY_DELAYS", "WebhookDelivery", "WebhookSender", "account_update_payload", "status_payload"]

logger = logging.getLogger("sender.sandbox")

#: seconds between delivery attempts (Meta retries undelivered webhooks with backoff, for much longer)
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
DISPLAY_PHONE_NUMBER = "15550783881"


@dataclass
class WebhookDelivery:
    """One webhook the sandbox delivered (or tried to). ``secret_fingerprint``: the app secret that signed
    the last attempt (a fingerprint, never the secret)."""

    seq: int
    kind: str  # status | custom
    body: bytes = field(repr=False)
    status: str | None = None
    message_id: str | None = None
    biz_opaque_callback_data: str | None = None
    attempts: int = 0
    http_statuses: list[int | None] = field(default_factory=list)
    delivered: bool = False
    done: bool = False
    secret_fingerprint: str | None = None

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    def summary(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "status": self.status,
            "message_id": self.message_id,
            "biz_opaque_callback_data": self.biz_opaque_callback_data,
            "attempts": self.attempts,
            "http_statuses": list(self.http_statuses),
            "delivered": self.delivered,
            "secret_fingerprint": self.secret_fingerprint,
        }


def _envelope(waba_id: str, change_field: str, value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": dict(value), "field": change_field}]}],
    }


def status_payload(
    message: ReceivedMessage,
    status: str,
    *,
    waba_id: str,
    timestamp: int,
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Meta's status webhook for an accepted message (one status)."""
    item: dict[str, Any] = {
        "id": message.message_id,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": "".join(c for c in message.to if c.isdigit()),
    }
    callback = message.body.get("biz_opaque_callback_data")
    if isinstance(callback, str):
        item["biz_opaque_callback_data"] = callback
    if status in ("sent", "delivered"):
        category = "marketing" if message.type == "template" else "service"
        item["conversation"] = {"id": "c" + message.message_id[-16:], "origin": {"type": category}}
        item["pricing"] = {
            "billable": category != "service",
            "pricing_model": "PMP",
            "category": category,
            "type": "regular",
        }
    if error is not None:
        item["errors"] = [dict(error)]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": message.phone_number_id},
        "statuses": [item],
    }
    return _envelope(waba_id, "messages", value)


def account_update_payload(
    event: str = "PARTNER_APP_UNINSTALLED",
    *,
    waba_id: str,
    owner_business_id: str = "100000000000001",
    partner_app_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """Meta's ``account_update`` webhook (``PARTNER_APP_INSTALLED`` / ``PARTNER_APP_UNINSTALLED`` ...)."""
    info: dict[str, Any] = {"waba_id": waba_id, "owner_business_id": owner_business_id}
    if partner_app_id is not None:
        info["partner_app_id"] = partner_app_id
    payload = _envelope("0", "account_update", {"event": event, "waba_info": info})
    if timestamp is not None:
        payload["entry"][0]["time"] = timestamp
    return payload


def check_callback_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
        raise ValueError("the sandbox delivers webhooks only to a loopback URL (http://127.0.0.1:PORT/...)")
    return url


class WebhookSender:
    """Queues and delivers the sandbox's webhooks (one background thread, started on first use)."""

    def __init__(self, state: SandboxState, *, retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS) -> None:
        self.state = state
        self.retry_delays = tuple(retry_delays)
        self.url: str | None = None
        #: statuses delivered for each accepted message (``sent`` then ``failed`` for a queued failure)
        self.statuses: tuple[str, ...] = ("sent", "delivered", "read")
        self.failures: list[dict[str, Any]] = []  # queued: {"code", "title", "message", "details", "count"}
        self.deliveries: list[WebhookDelivery] = []
        self._queue: collections.deque[WebhookDelivery] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._paused = False
        self._busy = False

    # -- configuration --------------------------------------------------------------------------------------------
    def subscribe(self, url: str, verify_token: str | None = None, *, timeout: float = 5.0) -> None:
        """Register the callback URL. With ``verify_token``, first do Meta's GET handshake: the endpoint must
        answer 200 with the challenge, else ``ValueError`` and nothing is registered."""
        check_callback_url(url)
        if verify_token is not None:
            import httpx

            from .._redact import install_log_redaction

            install_log_redaction()  # httpx logs the handshake URL, hub.verify_token included

            challenge = str(secrets.randbelow(10**10))
            query = urlencode({"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge})
            try:
                answer = httpx.get(f"{url}{'&' if '?' in url else '?'}{query}", timeout=timeout)
            except httpx.HTTPError as exc:
                raise ValueError(f"the callback URL did not answer the handshake ({type(exc).__name__})") from None
            if answer.status_code != 200 or answer.text != challenge:
                raise ValueError(f"the callback URL refused the handshake (HTTP {answer.status_code})")
        with self._cond:
            self.url = url

    def fail_next(
        self,
        code: int = 131026,
        *,
        title: str = "Message undeliverable",
        message: str | None = None,
        details: str = "Message Undeliverable.",
        count: int = 1,
    ) -> None:
        """The next ``count`` accepted messages get ``sent`` then ``failed`` with this error."""
        with self._cond:
            self.failures.append(
                {"code": code, "title": title, "message": message or title, "details": details, "count": count}
            )

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    # -- queueing ---------------------------------------------------------------------------------------------------
    def _take_failure(self) -> dict[str, Any] | None:
        with self._cond:
            if not self.failures:
                return None
            failure = self.failures[0]
            failure["count"] -= 1
            if failure["count"] <= 0:
                self.failures.pop(0)
            return {k: v for k, v in failure.items() if k != "count"}

    def on_message(self, message: ReceivedMessage) -> None:
        """Called for every message the sandbox accepts: queue its statuses (when a URL is registered)."""
        if self.url is None or message.body.get("status") == "read":
            return
        failure = self._take_failure()
        statuses = ("sent", "failed") if failure is not None else self.statuses
        now = int(self.state.clock())
        for status in statuses:
            error = None
            if status == "failed" and failure is not None:
                error = {
                    "code": failure["code"],
                    "title": failure["title"],
                    "message": failure["message"],
                    "error_data": {"details": failure["details"]},
                }
            payload = status_payload(message, status, waba_id=self.state.waba_id, timestamp=now, error=error)
            self._enqueue("status", payload, status=status, message=message)

    def emit(self, payload: Mapping[str, Any] | bytes) -> WebhookDelivery:
        """Deliver ``payload`` (a JSON object, or exact body bytes), signed, to the registered URL."""
        if self.url is None:
            raise RuntimeError("no webhook callback URL is registered: call subscribe_webhook(url) first")
        return self._enqueue("custom", payload)

    def deliver_event(self, payload: Mapping[str, Any]) -> WebhookDelivery | None:
        """Deliver an event the sandbox produced (an uninstall's ``account_update``) when a callback URL is
        registered; without one, nothing (no app subscribed, as at Meta). Usable as a sandbox event hook."""
        if self.url is None:
            return None
        return self._enqueue("custom", payload)

    def _enqueue(
        self,
        kind: str,
        payload: Mapping[str, Any] | bytes,
        *,
        status: str | None = None,
        message: ReceivedMessage | None = None,
    ) -> WebhookDelivery:
        body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        callback = message.body.get("biz_opaque_callback_data") if message is not None else None
        with self._cond:
            delivery = WebhookDelivery(
                seq=len(self.deliveries) + 1,
                kind=kind,
                body=body,
                status=status,
                message_id=message.message_id if message is not None else None,
                biz_opaque_callback_data=callback if isinstance(callback, str) else None,
            )
            self.deliveries.append(delivery)
            self._queue.append(delivery)
            self._stop = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return delivery

    def snapshot(self) -> list[WebhookDelivery]:
        """The deliveries so far, in order (a copy of the list; the records are live)."""
        with self._cond:
            return list(self.deliveries)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook was delivered or given up; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    # -- the delivery thread ------------------------------------------------------------------------------------------
    def _sign(self, body: bytes) -> tuple[str, str]:
        secret = self.state.app.secret
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        return "sha256=" + digest, fingerprint_of(secret)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._stop or (self._queue and not self._paused))
                    if self._stop:
                        self._busy = False
                        self._cond.notify_all()
                        return
                    delivery = self._queue.popleft()
                    self._busy = True
                self._deliver(client, delivery)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, client: httpx.Client, delivery: WebhookDelivery) -> None:
        import httpx

        for attempt, delay in enumerate((0.0, *self.retry_delays), start=1):
            if delay and self._wait_or_stop(delay):
                break
            url = self.url
            if url is None:
                break
            signature, fingerprint = self._sign(delivery.body)
            status: int | None
            try:
                answer = client.post(
                    url,
                    content=delivery.body,
                    headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
                )
                status = answer.status_code
            except httpx.HTTPError as exc:
                logger.debug("sandbox webhook %d: %s", delivery.seq, type(exc).__name__)
                status = None
            with self._cond:
                delivery.attempts = attempt
                delivery.http_statuses.append(status)
                delivery.secret_fingerprint = fingerprint
                if status is not None and 200 <= status < 300:
                    delivery.delivered = True
                    break
        with self._cond:
            delivery.done = True

    def _wait_or_stop(self, seconds: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._stop, seconds)

"""The sender's error tree, built from Graph API error objects.

Meta asks clients to key on the error ``code`` (and ``error_data.details``), not on HTTP status or titles.
Every error keeps ``code``, ``subcode``, ``fbtrace_id``, ``details``, ``http_status`` and ``retryable`` (Meta
calls it transient and the request is known not to have been delivered), and its message never contains a
token (known secrets and token-shaped words are scrubbed from whatever Graph sent back)::

    SendError
    ├── AuthenticationError   0, 190 (expired 463, invalid 467, password changed 460, app removed 458):
    │   │                     the store's token was rejected, and refetching it did not help
    │   └── TenantDisconnected  the same for one tenant of a TenantSender (``tenant``): ask that customer
    │                         to reconnect
    ├── PermissionDenied      3, 10, 200-299, 131005: the token lacks a permission or asset access
    ├── RateLimited           4, 80007, 130429, 131056 (pair rate limit); ``retry_after`` carries a hint
    ├── InvalidRequest        100, 33, 131008, 131009, 131051, 131052, 131053, 2500: fix the request
    ├── RecipientError        131026 (undeliverable), 131047 (24 h window closed), 131021, 131050
    ├── TemplateError         132000-132999
    ├── PolicyBlocked         368, 131048 (spam rate limit), 131031, 131049, 130497
    ├── ServerError           1, 2, 131000, 131016, 131057, 133004, and HTTP 5xx without a Graph error
    ├── QueueTimeout          waited longer than ``queue_timeout`` for one of the ``max_in_flight`` slots:
    │                         nothing was sent (our own backpressure, not a network failure; not retried)
    └── NetworkError          no Graph answer at all
        ├── ConnectFailed     never reached the API (connect error or timeout, pool timeout): not delivered
        └── OutcomeUnknown    the request went out but no usable answer came back (read timeout, connection
                              dropped, unreadable 2xx): it may have been delivered; not retried by default

An unknown code maps to :class:`SendError` itself (or :class:`ServerError` for HTTP 5xx).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._redact import redact_text

__all__ = [
    "AuthenticationError",
    "ConnectFailed",
    "InvalidRequest",
    "NetworkError",
    "OutcomeUnknown",
    "PermissionDenied",
    "PolicyBlocked",
    "QueueTimeout",
    "RateLimited",
    "RecipientError",
    "SendError",
    "ServerError",
    "TemplateError",
    "TenantDisconnected",
    "error_class_for",
    "error_from_graph",
    "error_from_status",
]

#: codes Meta documents as transient ("retry with backoff"); all of them mean the request was not processed
TRANSIENT_CODES: frozenset[int] = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004})

_MAX_TEXT = 500


class SendError(Exception):
    """Base of every error the sender raises for a failed Graph API call."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        details: str | None = None,
        http_status: int | None = None,
        retryable: bool = False,
        error_type: str | None = None,
        title: str | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.message = message
        #: the Graph error ``code`` (None when there was no Graph error object)
        self.code = code
        #: ``error_subcode`` where Graph sent one
        self.subcode = subcode
        #: Meta's trace id: quote it to Meta support
        self.fbtrace_id = fbtrace_id
        #: ``error_data.details``: Meta's explanation of this particular failure
        self.details = details
        self.http_status = http_status
        #: Meta calls this transient and the request was not processed: safe to send again later
        self.retryable = retryable
        #: the Graph ``type`` (``OAuthException``, ``GraphMethodException``...)
        self.error_type = error_type
        #: the ``error_user_title`` where Graph sent one
        self.title = title
        #: seconds to wait before trying again, where known (Retry-After, pair-rate-limit hint, pacing)
        self.retry_after = retry_after
        #: how many attempts were made before giving up
        self.attempts = attempts
        super().__init__(message)

    def __str__(self) -> str:
        bits = []
        if self.code is not None:
            bits.append(f"code {self.code}" + (f"/{self.subcode}" if self.subcode is not None else ""))
        if self.http_status is not None:
            bits.append(f"HTTP {self.http_status}")
        if self.attempts > 1:
            bits.append(f"after {self.attempts} attempts")
        if self.fbtrace_id:
            bits.append(f"fbtrace_id {self.fbtrace_id}")
        text = self.message
        if self.details and self.details not in text:
            text += f": {self.details}"
        return f"{text} ({', '.join(bits)})" if bits else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, subcode={self.subcode!r}, http_status={self.http_status!r}, "
            f"retryable={self.retryable!r}, fbtrace_id={self.fbtrace_id!r}, message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[SendError], message: str, state: dict[str, Any]) -> SendError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class AuthenticationError(SendError):
    """Graph rejected the access token (190 or 0): expired, invalidated, revoked, or the wrong app.

    Raised after the sender invalidated its cache and refetched: the store still holds the rejected token
    (rotate it there), or the freshly fetched one was rejected too.
    """


class TenantDisconnected(AuthenticationError):
    """Graph rejected one tenant's token (190) and the store holds no newer one (or the newer one was
    rejected too): the app's cue to ask that customer business to reconnect (Embedded Signup again) or to
    write a new token for ``tenant`` in the store. The other tenants are not affected.
    """

    def __init__(self, message: str, *, tenant: str, **fields: Any) -> None:
        #: the tenant key (by default the customer's WABA id) whose token is dead
        self.tenant = tenant
        super().__init__(message, **fields)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, tenant={self.tenant!r})"


class PermissionDenied(SendError):
    """The token is valid but lacks a permission (``whatsapp_business_messaging``) or access to the asset."""


class RateLimited(SendError):
    """A rate limit was hit (throughput, app, or the per-recipient pair limit). ``retry_after`` is a hint."""


class InvalidRequest(SendError):
    """The request is malformed or has an invalid parameter (fix it; never retried)."""


class RecipientError(SendError):
    """The recipient cannot get this message (not on WhatsApp, 24-hour window closed, ...)."""


class TemplateError(SendError):
    """The template is missing, paused, disabled, or its parameters do not match (132xxx)."""


class PolicyBlocked(SendError):
    """Meta is blocking sends for policy or quality reasons (368, spam rate limit 131048, ...)."""


class ServerError(SendError):
    """A transient failure on Meta's side (1, 2, 131000, 131016, 133004) or an HTTP 5xx."""


class QueueTimeout(SendError):
    """The send waited longer than ``queue_timeout`` for a free in-flight slot: nothing was sent.

    Backpressure in the sender itself (``max_in_flight`` requests are already on the wire), not a network
    failure: it is never retried by the sender. Safe to send again later (``retryable`` is True); a steady
    stream of these means more is asked than ``max_in_flight / latency`` messages a second.
    """


class NetworkError(SendError):
    """No answer from the Graph API."""


class ConnectFailed(NetworkError):
    """The request never reached the API (connection refused, DNS, connect/pool timeout): not delivered."""


class OutcomeUnknown(NetworkError):
    """The request went out but no usable answer came back: the message may or may not have been sent.

    The Cloud API has no idempotency key, so this is not retried by default; reconcile through the status
    webhooks (``biz_opaque_callback_data`` comes back in them).
    """


_EXACT: dict[int, type[SendError]] = {
    0: AuthenticationError,
    190: AuthenticationError,
    3: PermissionDenied,
    10: PermissionDenied,
    131005: PermissionDenied,
    4: RateLimited,
    80007: RateLimited,
    130429: RateLimited,
    131056: RateLimited,
    100: InvalidRequest,
    33: InvalidRequest,
    2500: InvalidRequest,
    131008: InvalidRequest,
    131009: InvalidRequest,
    131051: InvalidRequest,
    131052: InvalidRequest,
    131053: InvalidRequest,
    133010: InvalidRequest,
    131026: RecipientError,
    131047: RecipientError,
    131021: RecipientError,
    131050: RecipientError,
    368: PolicyBlocked,
    131048: PolicyBlocked,
    131031: PolicyBlocked,
    131049: PolicyBlocked,
    130497: PolicyBlocked,
    1: ServerError,
    2: ServerError,
    131000: ServerError,
    131016: ServerError,
    131057: ServerError,
    133004: ServerError,
}


def error_class_for(code: int | None, http_status: int | None = None) -> type[SendError]:
    """The error class for a Graph error code (and, failing that, the HTTP status)."""
    if code is not None:
        cls = _EXACT.get(code)
        if cls is not None:
            return cls
        if 200 <= code <= 299:
            return PermissionDenied
        if 132000 <= code <= 132999:
            return TemplateError
    if http_status is not None:
        if http_status >= 500:
            return ServerError
        if code is None:
            return {
                401: AuthenticationError,
                403: PermissionDenied,
                429: RateLimited,
            }.get(http_status, InvalidRequest if 400 <= http_status < 500 else SendError)
    return SendError


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _text(value: Any, secrets: Iterable[str | None]) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = redact_text(text, secrets)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def error_from_graph(
    error: Mapping[str, Any],
    *,
    http_status: int | None,
    retry_after: float | None = None,
    secrets: Iterable[str | None] = (),
) -> SendError:
    """Build the typed error for a Graph error object (the value of ``{"error": {...}}``).

    ``secrets`` are values to scrub from Graph's texts (the token that was sent), on top of the generic
    scrubbing of token-shaped words.
    """
    secrets = list(secrets)
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    data = error.get("error_data")
    details: Any = None
    if isinstance(data, Mapping):
        details = data.get("details")
    elif isinstance(data, str):
        details = data
    message = _text(error.get("message"), secrets) or "the Graph API returned an error"
    cls = error_class_for(code, http_status)
    retryable = code in TRANSIENT_CODES if code is not None else bool(http_status in (429, 503))
    trace = error.get("fbtrace_id")
    return cls(
        message,
        code=code,
        subcode=subcode,
        fbtrace_id=_text(trace, secrets) if trace is not None else None,
        details=_text(details, secrets),
        http_status=http_status,
        retryable=retryable,
        error_type=_text(error.get("type"), secrets),
        title=_text(error.get("error_user_title"), secrets),
        retry_after=retry_after,
    )


def error_from_status(http_status: int, *, retry_after: float | None = None, what: str = "") -> SendError:
    """An error for a response that carries no Graph error object (a proxy's or load balancer's page)."""
    cls = error_class_for(None, http_status)
    # 503 and 429 say "not processed, come back later"; a bare 500/502/504 may come after the API acted
    retryable = http_status in (429, 503)
    message = f"HTTP {http_status} without a Graph error object" + (f" from {what}" if what else "")
    return cls(message, http_status=http_status, retryable=retryable, retry_after=retry_after)

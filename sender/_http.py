"""What every Graph call shares, without I/O: response parsing, error building, transport-error mapping."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from tokenstore import Token

from ._auth import TOKEN_EXTENSION
from ._exceptions import ConnectFailed, OutcomeUnknown, SendError, error_from_graph, error_from_status
from ._redact import redact_text
from ._version import USER_AGENT

__all__ = [
    "Answer",
    "default_headers",
    "error_for_response",
    "json_body",
    "network_error",
    "retry_after",
    "sent_token",
    "ssl_context",
]


def default_headers() -> dict[str, str]:
    return {"User-Agent": USER_AGENT, "Accept": "application/json"}


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """``verify=`` for httpx: the default trust store, or one extended by a CA bundle file."""
    if ca_bundle is None:
        return True
    return ssl.create_default_context(cafile=ca_bundle)


#: an answer the parsers read: an ``httpx.Response``, or the direct paths' ``Reply`` (status_code, headers,
#: content, token)
Answer = Any


def sent_token(response: Answer) -> Token | None:
    """The :class:`tokenstore.Token` the auth flow put on the request that got this response."""
    if isinstance(response, httpx.Response):
        token = response.request.extensions.get(TOKEN_EXTENSION) if response.request is not None else None
    else:
        token = getattr(response, "token", None)
    return token if isinstance(token, Token) else None


def json_body(response: Answer) -> Any:
    """The parsed JSON body, or None when it is not JSON."""
    content = response.content
    try:
        if content[:1] == b"{":  # Graph's UTF-8 JSON object: skip json's encoding detection for bytes
            return json.loads(content.decode("utf-8"))
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def retry_after(response: Answer) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), None when absent or unusable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        date = response.headers.get("date")
        try:
            now = parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            now = None
        if now is None:
            import datetime as dt

            now = dt.datetime.now(dt.timezone.utc)
        seconds = (when - now).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN guard


def error_for_response(
    response: Answer, *, secrets: Iterable[str | None] = (), what: str = "the Graph API"
) -> SendError:
    """The typed error for a non-2xx response: from its Graph error object, else from its status."""
    token = sent_token(response)
    scrub = [*secrets, token.reveal() if token is not None else None]
    body = json_body(response)
    hint = retry_after(response)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return error_from_graph(body["error"], http_status=response.status_code, retry_after=hint, secrets=scrub)
    return error_from_status(response.status_code, retry_after=hint, what=what)


def network_error(exc: httpx.HTTPError, *, what: str) -> SendError:
    """Map an httpx failure to :class:`~sender.ConnectFailed` (not sent) or :class:`~sender.OutcomeUnknown`.

    The message names the failure's kind and ``what`` (host and path, never a query string), and only a
    scrubbed, shortened copy of httpx's own text.
    """
    kind = type(exc).__name__
    detail = redact_text(str(exc))[:200]
    detail = f": {detail}" if detail and detail != kind else ""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)):
        return ConnectFailed(
            f"could not reach {what} ({kind}{detail}); nothing was sent", retryable=True, error_type=kind
        )
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return ConnectFailed(f"could not send to {what} ({kind}{detail}); nothing was sent", error_type=kind)
    return OutcomeUnknown(
        f"no usable answer from {what} ({kind}{detail}): the request went out, so it may have been "
        "processed; not retried, to avoid sending twice",
        error_type=kind,
    )

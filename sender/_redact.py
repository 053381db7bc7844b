"""Keep secrets out of log records and messages: URL query redaction, text scrubbing, a logging filter.

The Graph API takes some secrets in the query string (``debug_token?input_token=``, ``oauth/access_token?
client_secret=&fb_exchange_token=``, ``appsecret_proof=``), and httpx logs every request URL at INFO on the
``httpx`` logger. :func:`install_log_redaction` puts a filter on that logger (and ours) that rewrites those
values to ``[redacted]`` before any handler sees the record. The ``Authorization`` header is never logged by
httpx; our own code never logs a token value at all.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "SECRET_PARAMS",
    "RedactingFilter",
    "install_log_redaction",
    "redact_text",
    "redact_url",
]

REDACTED = "[redacted]"

#: query (and form) parameters whose value is a secret
SECRET_PARAMS: frozenset[str] = frozenset(
    {
        "access_token",
        "input_token",
        "client_secret",
        "fb_exchange_token",
        "appsecret_proof",
        "revoke_token",
        "client_assertion",
        "hub.verify_token",  # the webhook subscription handshake (GET /webhook?hub.verify_token=...)
    }
)

#: secret in a URL's query only (as text, "code" is far more often Graph's error code than a signup code)
URL_SECRET_PARAMS: frozenset[str] = SECRET_PARAMS | {"code"}
_QUERY_CODE_RE = re.compile(r"(?P<key>[?&]code=)(?P<value>[^&\s\"',;)}]+)")

# key=value (query strings, form bodies) and "key": "value" (JSON)
_PARAM_RE = re.compile(
    r"(?P<key>\b(?:" + "|".join(re.escape(p) for p in sorted(SECRET_PARAMS)) + r"))"
    r"(?P<sep>=|[\"']\s*:\s*[\"']?)(?P<value>[^&\s\"',;)}]+)",
    re.IGNORECASE,
)
# Meta access tokens: "EAA" and a long base62 tail (user, system user, page tokens)
_META_TOKEN_RE = re.compile(r"\bEAA[A-Za-z0-9]{16,}")
# an app access token: app_id|app_secret (the secret is 32 hex digits)
_APP_TOKEN_RE = re.compile(r"\b(\d{6,20})\|[A-Za-z0-9_-]{16,}")
_BEARER_RE = re.compile(r"(?i)\b(bearer|oauth)\s+[A-Za-z0-9._~+/|=-]{8,}")


def redact_url(url: object) -> str:
    """The URL as text with the value of every secret query parameter replaced by ``[redacted]``."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return redact_text(text)
    if not parts.query:
        return text
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k.lower() in URL_SECRET_PARAMS for k, _ in pairs):
        return redact_text(text)
    query = urlencode([(k, REDACTED if k.lower() in URL_SECRET_PARAMS else v) for k, v in pairs], safe="[]|")
    return redact_text(urlunsplit(parts._replace(query=query)))


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Scrub ``text``: the given secret values, ``param=value`` pairs of secret parameters, Meta-token-shaped
    words, app tokens and bearer credentials all become ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, REDACTED)
    if "=" in text or ":" in text:
        text = _PARAM_RE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)
        if "code=" in text:
            text = _QUERY_CODE_RE.sub(lambda m: f"{m.group('key')}{REDACTED}", text)
    if "EAA" in text:
        text = _META_TOKEN_RE.sub(REDACTED, text)
    if "|" in text:
        text = _APP_TOKEN_RE.sub(lambda m: f"{m.group(1)}|{REDACTED}", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return text


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, (int, float, bool)) or arg is None:
        return arg
    if isinstance(arg, str):
        return redact_url(arg) if "?" in arg else redact_text(arg)
    type_name = type(arg).__name__
    if type_name == "URL":  # httpx.URL, without importing httpx here
        return redact_url(arg)
    return arg


class RedactingFilter(logging.Filter):
    """Rewrites a record's message and arguments so that no secret query value or token-shaped word passes.

    Attach it to a logger (it then sees that logger's own records) or to a handler (every record).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.msg, str):
                record.msg = redact_text(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(_redact_arg(a) for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        except Exception:  # a filter must never break logging; drop the arguments rather than leak them
            record.msg, record.args = "(log record withheld: it could not be redacted)", ()
        return True


_FILTER = RedactingFilter()
_installed: set[str] = set()
_install_lock = threading.Lock()

#: the loggers that can see our URLs: httpx logs each request line at INFO; httpcore traces at DEBUG; urllib3
#: (Sender's direct path) logs each request line at DEBUG
_LOGGERS = (
    "httpx",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.connection",
    "urllib3.connectionpool",
    "sender",
    "sender.http",
    "sender.sandbox",
)


def install_log_redaction(names: Iterable[str] = _LOGGERS) -> None:
    """Put the redacting filter on the loggers that can see request URLs. Idempotent, cheap to call often."""
    if _installed.issuperset(names):
        return
    with _install_lock:
        for name in names:
            if name in _installed:
                continue
            logging.getLogger(name).addFilter(_FILTER)
            _installed.add(name)

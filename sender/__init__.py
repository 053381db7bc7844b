"""sender: a WhatsApp Cloud API client that never holds the access token.

>>> import sender, tokenstore                                                # doctest: +SKIP
>>> with sender.Sender.from_config("config.yaml") as s:                      # doctest: +SKIP
...     s.send_template("15551234567", "hello_world", language="en_US").message_id
'wamid.…'

Every request asks the token provider (a :mod:`tokenstore` provider, cached) through an ``httpx.Auth`` flow;
a token Graph rejects (190) is refetched and the request resent once when the store has a new one. Graph
errors become a typed tree (:class:`SendError` and its subclasses); retries are narrow and code-aware
(:class:`RetryPolicy`); pacing is optional (:class:`PacingPolicy`). ``sender.sandbox`` is a local Graph API
for tests and demos. Importing this package does no network I/O and imports no cloud SDK.
"""

from __future__ import annotations

from ._auth import TokenAuth, appsecret_proof
from ._client import AsyncSender, Sender
from ._config import DEFAULT_API_VERSION, DEFAULT_BASE_URL, SenderSettings, settings_from_config
from ._exceptions import (
    AuthenticationError,
    ConnectFailed,
    InvalidRequest,
    NetworkError,
    OutcomeUnknown,
    PermissionDenied,
    PolicyBlocked,
    RateLimited,
    RecipientError,
    SendError,
    ServerError,
    TemplateError,
    error_class_for,
)
from ._lifecycle import AppCredentialsError, AsyncGraphTokenClient, GraphTokenClient
from ._messages import (
    button_message,
    check_message,
    contacts_message,
    interactive_message,
    list_message,
    location_message,
    media_message,
    reaction_message,
    read_receipt,
    template_message,
    text_message,
)
from ._models import InvalidTokenReason, IssuedToken, SendResult, TokenInfo
from ._pacing import Pacer, PacingPolicy
from ._redact import RedactingFilter, install_log_redaction, redact_text, redact_url
from ._redirect import RedirectTransport
from ._retry import DEFAULT_RETRY_CODES, NEVER_RETRY_CODES, RetryPolicy
from ._tokeninfo import adebug_token, debug_token
from ._version import __version__

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_RETRY_CODES",
    "NEVER_RETRY_CODES",
    "AppCredentialsError",
    "AsyncGraphTokenClient",
    "AsyncSender",
    "AuthenticationError",
    "ConnectFailed",
    "GraphTokenClient",
    "InvalidRequest",
    "InvalidTokenReason",
    "IssuedToken",
    "NetworkError",
    "OutcomeUnknown",
    "Pacer",
    "PacingPolicy",
    "PermissionDenied",
    "PolicyBlocked",
    "RateLimited",
    "RecipientError",
    "RedactingFilter",
    "RedirectTransport",
    "RetryPolicy",
    "SendError",
    "SendResult",
    "Sender",
    "SenderSettings",
    "ServerError",
    "TemplateError",
    "TokenAuth",
    "TokenInfo",
    "__version__",
    "adebug_token",
    "appsecret_proof",
    "button_message",
    "check_message",
    "contacts_message",
    "debug_token",
    "error_class_for",
    "install_log_redaction",
    "interactive_message",
    "list_message",
    "location_message",
    "media_message",
    "reaction_message",
    "read_receipt",
    "redact_text",
    "redact_url",
    "settings_from_config",
    "template_message",
    "text_message",
]

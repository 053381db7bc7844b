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

import typing as _typing

from ._version import __version__

if _typing.TYPE_CHECKING:  # type checkers see every name; at run time each loads on first use (import cost)
    from ._auth import TokenAuth, appsecret_proof
    from ._client import AsyncSender, Sender
    from ._config import (
        API_VERSION_END_OF_AVAILABILITY,
        DEFAULT_API_VERSION,
        DEFAULT_BASE_URL,
        SenderSettings,
        api_version_warning,
        read_config,
        settings_from_config,
    )
    from ._events import (
        AccountUpdateEvent,
        MessageEvent,
        Pricing,
        StatusError,
        StatusEvent,
        UnknownEvent,
        WebhookEvent,
        parse_events,
    )
    from ._exceptions import (
        AuthenticationError,
        ConnectFailed,
        InvalidRequest,
        NetworkError,
        OutcomeUnknown,
        PermissionDenied,
        PolicyBlocked,
        QueueTimeout,
        RateLimited,
        RecipientError,
        SendError,
        ServerError,
        TemplateError,
        TenantDisconnected,
        error_class_for,
    )
    from ._lifecycle import (
        AppCredentialsError,
        AsyncGraphTokenClient,
        GraphTokenClient,
        SignupCodeRejected,
        app_secret_provider_from_config,
        graph_client_from_config,
    )
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
    from ._onboard import (
        OnboardedTenant,
        Onboarding,
        OnboardingRefused,
        onboard,
        revoke_replaced_tokens,
        validate_business_token,
    )
    from ._pacing import Pacer, PacingPolicy
    from ._pool import DEFAULT_MAX_CONNECTIONS, DEFAULT_QUEUE_TIMEOUT, AsyncConnectionPool, ConnectionPool
    from ._reconcile import Reconciler
    from ._redact import RedactingFilter, install_log_redaction, redact_text, redact_url
    from ._redirect import RedirectTransport
    from ._refresh import (
        RefreshRefused,
        RefreshResult,
        aexchange_and_validate,
        arefresh_stored_token,
        assess_token,
        describe_token,
        exchange_and_validate,
        refresh_stored_token,
        validate_current,
        validate_refreshed,
    )
    from ._retry import DEFAULT_RETRY_CODES, NEVER_RETRY_CODES, RetryPolicy
    from ._tenants import AsyncTenantSender, TenantAuth, TenantSender
    from ._tokeninfo import adebug_token, debug_token
    from ._webhook_asgi import WebhookASGI
    from ._webhook_handler import EventHook, WebhookHandler, WebhookResponse
    from ._webhook_wsgi import WebhookWSGI
    from ._webhooks import (
        InvalidPayload,
        InvalidSignature,
        PayloadTooLarge,
        SubscriptionRefused,
        WebhookError,
        WebhookSettings,
        WebhookVerifier,
    )

__all__ = [
    "API_VERSION_END_OF_AVAILABILITY",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_QUEUE_TIMEOUT",
    "DEFAULT_RETRY_CODES",
    "NEVER_RETRY_CODES",
    "AccountUpdateEvent",
    "AppCredentialsError",
    "AsyncConnectionPool",
    "AsyncGraphTokenClient",
    "AsyncSender",
    "AsyncTenantSender",
    "AuthenticationError",
    "ConnectFailed",
    "ConnectionPool",
    "EventHook",
    "GraphTokenClient",
    "InvalidPayload",
    "InvalidRequest",
    "InvalidSignature",
    "InvalidTokenReason",
    "IssuedToken",
    "MessageEvent",
    "NetworkError",
    "OnboardedTenant",
    "Onboarding",
    "OnboardingRefused",
    "OutcomeUnknown",
    "Pacer",
    "PacingPolicy",
    "PayloadTooLarge",
    "PermissionDenied",
    "PolicyBlocked",
    "Pricing",
    "QueueTimeout",
    "RateLimited",
    "RecipientError",
    "Reconciler",
    "RedactingFilter",
    "RedirectTransport",
    "RefreshRefused",
    "RefreshResult",
    "RetryPolicy",
    "SendError",
    "SendResult",
    "Sender",
    "SenderSettings",
    "ServerError",
    "SignupCodeRejected",
    "StatusError",
    "StatusEvent",
    "SubscriptionRefused",
    "TemplateError",
    "TenantAuth",
    "TenantDisconnected",
    "TenantSender",
    "TokenAuth",
    "TokenInfo",
    "UnknownEvent",
    "WebhookASGI",
    "WebhookError",
    "WebhookEvent",
    "WebhookHandler",
    "WebhookResponse",
    "WebhookSettings",
    "WebhookVerifier",
    "WebhookWSGI",
    "__version__",
    "adebug_token",
    "aexchange_and_validate",
    "api_version_warning",
    "app_secret_provider_from_config",
    "appsecret_proof",
    "arefresh_stored_token",
    "assess_token",
    "button_message",
    "check_message",
    "contacts_message",
    "debug_token",
    "describe_token",
    "error_class_for",
    "exchange_and_validate",
    "graph_client_from_config",
    "install_log_redaction",
    "interactive_message",
    "list_message",
    "location_message",
    "media_message",
    "onboard",
    "parse_events",
    "reaction_message",
    "read_config",
    "read_receipt",
    "redact_text",
    "redact_url",
    "refresh_stored_token",
    "revoke_replaced_tokens",
    "settings_from_config",
    "template_message",
    "text_message",
    "validate_business_token",
    "validate_current",
    "validate_refreshed",
]


#: public name -> the private module that defines it
_LAZY: dict[str, str] = {
    "TokenAuth": "._auth",
    "appsecret_proof": "._auth",
    "AsyncSender": "._client",
    "Sender": "._client",
    "API_VERSION_END_OF_AVAILABILITY": "._config",
    "DEFAULT_API_VERSION": "._config",
    "DEFAULT_BASE_URL": "._config",
    "SenderSettings": "._config",
    "api_version_warning": "._config",
    "read_config": "._config",
    "settings_from_config": "._config",
    "AuthenticationError": "._exceptions",
    "ConnectFailed": "._exceptions",
    "InvalidRequest": "._exceptions",
    "NetworkError": "._exceptions",
    "OutcomeUnknown": "._exceptions",
    "PermissionDenied": "._exceptions",
    "PolicyBlocked": "._exceptions",
    "QueueTimeout": "._exceptions",
    "RateLimited": "._exceptions",
    "RecipientError": "._exceptions",
    "SendError": "._exceptions",
    "ServerError": "._exceptions",
    "TemplateError": "._exceptions",
    "TenantDisconnected": "._exceptions",
    "error_class_for": "._exceptions",
    "AppCredentialsError": "._lifecycle",
    "AsyncGraphTokenClient": "._lifecycle",
    "GraphTokenClient": "._lifecycle",
    "SignupCodeRejected": "._lifecycle",
    "app_secret_provider_from_config": "._lifecycle",
    "graph_client_from_config": "._lifecycle",
    "button_message": "._messages",
    "check_message": "._messages",
    "contacts_message": "._messages",
    "interactive_message": "._messages",
    "list_message": "._messages",
    "location_message": "._messages",
    "media_message": "._messages",
    "reaction_message": "._messages",
    "read_receipt": "._messages",
    "template_message": "._messages",
    "text_message": "._messages",
    "InvalidTokenReason": "._models",
    "IssuedToken": "._models",
    "SendResult": "._models",
    "TokenInfo": "._models",
    "OnboardedTenant": "._onboard",
    "Onboarding": "._onboard",
    "OnboardingRefused": "._onboard",
    "onboard": "._onboard",
    "revoke_replaced_tokens": "._onboard",
    "validate_business_token": "._onboard",
    "Pacer": "._pacing",
    "PacingPolicy": "._pacing",
    "AsyncConnectionPool": "._pool",
    "ConnectionPool": "._pool",
    "DEFAULT_MAX_CONNECTIONS": "._pool",
    "DEFAULT_QUEUE_TIMEOUT": "._pool",
    "RedactingFilter": "._redact",
    "install_log_redaction": "._redact",
    "redact_text": "._redact",
    "redact_url": "._redact",
    "RedirectTransport": "._redirect",
    "RefreshRefused": "._refresh",
    "RefreshResult": "._refresh",
    "aexchange_and_validate": "._refresh",
    "arefresh_stored_token": "._refresh",
    "assess_token": "._refresh",
    "describe_token": "._refresh",
    "exchange_and_validate": "._refresh",
    "refresh_stored_token": "._refresh",
    "validate_current": "._refresh",
    "validate_refreshed": "._refresh",
    "DEFAULT_RETRY_CODES": "._retry",
    "NEVER_RETRY_CODES": "._retry",
    "RetryPolicy": "._retry",
    "AsyncTenantSender": "._tenants",
    "TenantAuth": "._tenants",
    "TenantSender": "._tenants",
    "adebug_token": "._tokeninfo",
    "debug_token": "._tokeninfo",
    "AccountUpdateEvent": "._events",
    "MessageEvent": "._events",
    "Pricing": "._events",
    "StatusError": "._events",
    "StatusEvent": "._events",
    "UnknownEvent": "._events",
    "WebhookEvent": "._events",
    "parse_events": "._events",
    "Reconciler": "._reconcile",
    "WebhookASGI": "._webhook_asgi",
    "EventHook": "._webhook_handler",
    "WebhookHandler": "._webhook_handler",
    "WebhookResponse": "._webhook_handler",
    "WebhookWSGI": "._webhook_wsgi",
    "InvalidPayload": "._webhooks",
    "InvalidSignature": "._webhooks",
    "PayloadTooLarge": "._webhooks",
    "SubscriptionRefused": "._webhooks",
    "WebhookError": "._webhooks",
    "WebhookSettings": "._webhooks",
    "WebhookVerifier": "._webhooks",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

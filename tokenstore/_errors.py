"""The tokenstore error tree.

Every error this package raises is a :class:`TokenStoreError`; foreign exceptions (SDK, OS, parser) are
translated at the boundary with ``raise ... from exc`` so ``__cause__`` is kept for debugging. No message
ever contains a secret value: messages name the file, field or secret path and say what to do. Messages
are built from config values (names, paths), so :class:`ConfigError` and :class:`ProviderError` mask every
credential-looking word in them (:func:`tokenstore.mask_credentials`: fingerprint and length, never the
value) - one rule for every backend and plugin.

::

    TokenStoreError
    ├── ConfigError              bad or missing configuration (names the file and the dotted field)
    ├── BackendNotInstalled      the backend's optional SDK is missing (names the extra to install);
    │                            also an ImportError
    ├── InvalidTenantKey         a tenant key that could leave its template (``..``, ``/``, ``%``, whitespace,
    │                            ...): refused before any store call; also a ValueError (bad caller input)
    └── ProviderError            the store answered, or failed to, at run time
        ├── SecretNotFound       no such secret / version / key in the store
        │   └── UnknownTenant    no tenant for this phone number, or no secret for this tenant
        ├── SecretMalformed      the secret is there but its contents are unusable (empty, not JSON, ...)
        ├── AccessDenied         the store refused our credentials or permissions, or the store's
        │                        credential is missing from this environment (see below)
        ├── WriteNotSupported    put_token on a read-only backend
        ├── WriteConflict        put_token(value, expected=...) found another token than expected in the store
        └── BackendUnavailable   the store is down, sealed, throttling or timing out (transient: the
                                 caching layer retries these with backoff and may serve a stale token)

One rule for a store credential missing from the environment, in every backend: when a backend is about to
authenticate and its credential is not there - an ``{env: VAR}`` unset or empty, an ``{file: PATH}`` missing,
unreadable or empty (Vault token / AppRole ids / Kubernetes JWT, Conjur API key or JWT, an Azure client
secret), or nothing in the SDK's own chain (boto3, Google ADC, DefaultAzureCredential) - it raises
:class:`AccessDenied` (CLI exit 3) whose message begins ``the store's credential is missing`` and names the
field, the config file and what to set. :class:`ConfigError` (exit 2) is for what the config file itself
says wrong, found when it is read.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BackendNotInstalled",
    "BackendUnavailable",
    "ConfigError",
    "InvalidTenantKey",
    "ProviderError",
    "SecretMalformed",
    "SecretNotFound",
    "TokenStoreError",
    "UnknownTenant",
    "WriteConflict",
    "WriteNotSupported",
]


def _mask(text: str) -> str:
    from ._masking import mask_credentials  # only when an error is raised (import cost)

    return mask_credentials(text)


class TokenStoreError(Exception):
    """Base of every error raised by tokenstore."""


class ConfigError(TokenStoreError):
    """The configuration is invalid. The message names the file (when there is one) and the dotted field."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = _mask(source) if source else source
        self.field = _mask(field) if field else field
        prefix = ""
        if source:
            prefix += f"{source}: "
        if field:
            prefix += f"{field}: "
        super().__init__(_mask(prefix + message))


class BackendNotInstalled(TokenStoreError, ImportError):
    """The optional SDK a backend needs is not installed."""

    def __init__(self, backend: str, extra: str, missing: str | None = None) -> None:
        self.backend = backend
        self.extra = extra
        what = f" ({missing} is missing)" if missing else ""
        super().__init__(
            f"the {backend!r} backend needs an optional dependency{what}: pip install 'whatsapp-tokenstore[{extra}]'"
        )


class InvalidTenantKey(TokenStoreError, ValueError):
    """A tenant key that does not match the strict tenant pattern (see :mod:`tokenstore._tenants`).

    Raised before any store call, so no key can name another tenant's secret, or any other secret. The message
    describes the key (quoted when short, with control characters escaped), never a value from the store.
    """

    def __init__(self, message: str, *, tenant: object = None) -> None:
        self.tenant = tenant
        super().__init__(message)


class ProviderError(TokenStoreError):
    """A backend could not deliver the token. ``source`` names the store and path, never the value;
    ``section`` the config section of the provider (``token``, ``app_secret``) when it was built from a
    config: the message then starts with it (``app_secret: env:WHATSAPP_APP_SECRET: ...``)."""

    #: transient errors are retried by the caching layer and allow serving a stale token
    transient: bool = False
    #: the config section of the provider that raised it (set as it leaves the backend), or None
    section: str | None = None

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = _mask(source) if source else source
        super().__init__(_mask(f"{source}: {message}" if source else message))

    def __str__(self) -> str:
        text = super().__str__()
        return f"{self.section}: {text}" if self.section else text


class SecretNotFound(ProviderError):
    """The secret, version or key does not exist (or is not visible to us)."""


class UnknownTenant(SecretNotFound):
    """No tenant owns this phone number, or the store holds no secret for this tenant.

    ``tenant`` and ``phone_number_id`` say which (either may be None). There is never a fallback to a default or
    another tenant's token: a number nobody owns gets this error before any request is made.
    """

    def __init__(
        self,
        message: str,
        *,
        tenant: str | None = None,
        phone_number_id: str | None = None,
        source: str | None = None,
    ) -> None:
        self.tenant = tenant
        self.phone_number_id = phone_number_id
        super().__init__(message, source=source)


class SecretMalformed(ProviderError):
    """The secret exists but its contents cannot be used as a token."""


class AccessDenied(ProviderError):
    """The store rejected our credentials or we lack permission on the secret."""


class WriteNotSupported(ProviderError):
    """This backend cannot write (``put_token``)."""


class WriteConflict(ProviderError):
    """``put_token(value, expected=...)`` did not write: the store no longer holds the expected token (another
    writer got there first). ``current_fingerprint`` names what it holds instead, where known."""

    def __init__(self, message: str, *, source: str | None = None, current_fingerprint: str | None = None) -> None:
        self.current_fingerprint = current_fingerprint
        super().__init__(message, source=source)


class BackendUnavailable(ProviderError):
    """The store is unreachable, sealed, throttling or timing out. Transient."""

    transient = True

    def __init__(self, message: str, *, source: str | None = None, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, source=source)

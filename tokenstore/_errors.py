"""The tokenstore error tree.

Every error this package raises is a :class:`TokenStoreError`; foreign exceptions (SDK, OS, parser) are
translated at the boundary with ``raise ... from exc`` so ``__cause__`` is kept for debugging. No message
ever contains a secret value: messages name the file, field or secret path and say what to do.

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
        ├── AccessDenied         the store refused our credentials or permissions
        ├── WriteNotSupported    put_token on a read-only backend
        └── BackendUnavailable   the store is down, sealed, throttling or timing out (transient: the
                                 caching layer retries these with backoff and may serve a stale token)
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
    "WriteNotSupported",
]


class TokenStoreError(Exception):
    """Base of every error raised by tokenstore."""


class ConfigError(TokenStoreError):
    """The configuration is invalid. The message names the file (when there is one) and the dotted field."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        prefix = ""
        if source:
            prefix += f"{source}: "
        if field:
            prefix += f"{field}: "
        super().__init__(prefix + message)


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
    """A backend could not deliver the token. ``source`` names the store and path, never the value."""

    #: transient errors are retried by the caching layer and allow serving a stale token
    transient: bool = False

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


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


class BackendUnavailable(ProviderError):
    """The store is unreachable, sealed, throttling or timing out. Transient."""

    transient = True

    def __init__(self, message: str, *, source: str | None = None, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, source=source)

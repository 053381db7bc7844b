"""tokenstore: fetch the WhatsApp Cloud API access token from a secret store, on every request, cheaply.

>>> provider = tokenstore.load_provider("config.yaml")   # doctest: +SKIP
>>> provider.get_token().fingerprint                        # doctest: +SKIP
'sha256:1a2b3c4d5e6f'

Importing this package imports no cloud SDK: backends are loaded by name, on first use.
"""

from __future__ import annotations

from ._cache import CachePolicy, CacheStats, CachingProvider
from ._config import SecretRef, Section, load_config
from ._errors import (
    AccessDenied,
    BackendNotInstalled,
    BackendUnavailable,
    ConfigError,
    ProviderError,
    SecretMalformed,
    SecretNotFound,
    TokenStoreError,
    WriteNotSupported,
)
from ._factory import load_provider, provider_from_config
from ._metrics import AuthStats, auth_stats, enable_opentelemetry, metrics_snapshot, provider_metrics, track_provider
from ._provider import Backend, TokenProvider
from ._registry import ENTRY_POINT_GROUP, available_backends, get_backend_class, register_backend
from ._token import Token, fingerprint_of, mask
from ._version import __version__

__all__ = [
    "ENTRY_POINT_GROUP",
    "AccessDenied",
    "AuthStats",
    "Backend",
    "BackendNotInstalled",
    "BackendUnavailable",
    "CachePolicy",
    "CacheStats",
    "CachingProvider",
    "ConfigError",
    "ProviderError",
    "SecretMalformed",
    "SecretNotFound",
    "SecretRef",
    "Section",
    "Token",
    "TokenProvider",
    "TokenStoreError",
    "WriteNotSupported",
    "__version__",
    "auth_stats",
    "available_backends",
    "enable_opentelemetry",
    "fingerprint_of",
    "get_backend_class",
    "load_config",
    "load_provider",
    "mask",
    "metrics_snapshot",
    "provider_from_config",
    "provider_metrics",
    "register_backend",
    "track_provider",
]

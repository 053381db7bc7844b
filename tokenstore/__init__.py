"""tokenstore: fetch the WhatsApp Cloud API access token from a secret store, on every request, cheaply.

>>> provider = tokenstore.load_provider("config.yaml")   # doctest: +SKIP
>>> provider.get_token().fingerprint                        # doctest: +SKIP
'sha256:1a2b3c4d5e6f'

Importing this package imports no cloud SDK: backends are loaded by name, on first use.

Besides providers, tokens and errors, the package exports what code built on it needs (``sender``, the CLI,
a third-party backend), so that nothing has to reach into a private module:

* :func:`is_loopback_host` - whether a URL's host is this machine (plain ``http://`` is allowed only there);
* :func:`shown_value` - a config value for an error message: short ones quoted, long ones (a pasted token?)
  only described; :func:`mask_credentials` / :func:`masked` for any other text;
* :class:`AuthStats`, :func:`auth_stats`, :func:`track_provider` - the per-provider counters an auth flow
  (``sender.TokenAuth``) updates, read with :func:`provider_metrics` / :func:`metrics_snapshot`;
* ``__version__`` - the distribution's version.
"""

from __future__ import annotations

import typing as _typing

from ._version import __version__

if _typing.TYPE_CHECKING:  # type checkers see every name; at run time each loads on first use (import cost)
    from ._cache import CachePolicy, CacheStats, CachingProvider
    from ._config import SecretRef, Section, is_loopback_host, load_config, resolve_config_path, shown_value
    from ._disconnected import DISCONNECTED_PREFIX, Disconnected, disconnected_marker
    from ._errors import (
        AccessDenied,
        BackendNotInstalled,
        BackendUnavailable,
        ConfigError,
        InvalidTenantKey,
        ProviderError,
        SecretMalformed,
        SecretNotFound,
        TokenStoreError,
        UnknownTenant,
        WriteConflict,
        WriteNotSupported,
    )
    from ._factory import cache_policy_from_config, load_provider, provider_from_config
    from ._masking import looks_like_credential, mask_credentials, masked
    from ._metrics import (
        AuthStats,
        auth_stats,
        enable_opentelemetry,
        metrics_snapshot,
        provider_metrics,
        track_provider,
    )
    from ._provider import Backend, TokenProvider, expected_matches
    from ._registry import ENTRY_POINT_GROUP, available_backends, get_backend_class, register_backend
    from ._tenants import TenantProviders, TenantTemplate, check_tenant_key, load_tenants, tenants_from_config
    from ._token import Token, fingerprint_of, mask

__all__ = [
    "DISCONNECTED_PREFIX",
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
    "Disconnected",
    "InvalidTenantKey",
    "ProviderError",
    "SecretMalformed",
    "SecretNotFound",
    "SecretRef",
    "Section",
    "TenantProviders",
    "TenantTemplate",
    "Token",
    "TokenProvider",
    "TokenStoreError",
    "UnknownTenant",
    "WriteConflict",
    "WriteNotSupported",
    "__version__",
    "auth_stats",
    "available_backends",
    "cache_policy_from_config",
    "check_tenant_key",
    "disconnected_marker",
    "enable_opentelemetry",
    "expected_matches",
    "fingerprint_of",
    "get_backend_class",
    "is_loopback_host",
    "load_config",
    "load_provider",
    "load_tenants",
    "looks_like_credential",
    "mask",
    "mask_credentials",
    "masked",
    "metrics_snapshot",
    "provider_from_config",
    "provider_metrics",
    "register_backend",
    "resolve_config_path",
    "shown_value",
    "tenants_from_config",
    "track_provider",
]


#: public name -> the private module that defines it
_LAZY: dict[str, str] = {
    "CachePolicy": "._cache",
    "CacheStats": "._cache",
    "CachingProvider": "._cache",
    "SecretRef": "._config",
    "Section": "._config",
    "is_loopback_host": "._config",
    "load_config": "._config",
    "DISCONNECTED_PREFIX": "._disconnected",
    "Disconnected": "._disconnected",
    "disconnected_marker": "._disconnected",
    "resolve_config_path": "._config",
    "shown_value": "._config",
    "AccessDenied": "._errors",
    "BackendNotInstalled": "._errors",
    "BackendUnavailable": "._errors",
    "ConfigError": "._errors",
    "InvalidTenantKey": "._errors",
    "ProviderError": "._errors",
    "SecretMalformed": "._errors",
    "SecretNotFound": "._errors",
    "TokenStoreError": "._errors",
    "UnknownTenant": "._errors",
    "WriteConflict": "._errors",
    "WriteNotSupported": "._errors",
    "cache_policy_from_config": "._factory",
    "load_provider": "._factory",
    "provider_from_config": "._factory",
    "looks_like_credential": "._masking",
    "mask_credentials": "._masking",
    "masked": "._masking",
    "AuthStats": "._metrics",
    "auth_stats": "._metrics",
    "enable_opentelemetry": "._metrics",
    "metrics_snapshot": "._metrics",
    "provider_metrics": "._metrics",
    "track_provider": "._metrics",
    "Backend": "._provider",
    "TokenProvider": "._provider",
    "expected_matches": "._provider",
    "ENTRY_POINT_GROUP": "._registry",
    "available_backends": "._registry",
    "get_backend_class": "._registry",
    "register_backend": "._registry",
    "TenantProviders": "._tenants",
    "TenantTemplate": "._tenants",
    "check_tenant_key": "._tenants",
    "load_tenants": "._tenants",
    "tenants_from_config": "._tenants",
    "Token": "._token",
    "fingerprint_of": "._token",
    "mask": "._token",
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

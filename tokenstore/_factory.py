"""Build providers from configuration: ``load_provider(path)`` and ``provider_from_config(dict)``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._cache import CachePolicy, CachingProvider
from ._config import Section, check_top_level, load_config
from ._errors import ConfigError
from ._provider import Backend, TokenProvider
from ._registry import available_backends, get_backend_class

__all__ = ["cache_policy_from_config", "load_provider", "provider_from_config", "provider_from_section"]

_CACHE_KEYS = (
    "enabled",
    "ttl",
    "refresh_ahead",
    "max_stale",
    "jitter",
    "backoff_initial",
    "backoff_max",
    "fetch_timeout",
    "background_refresh",
)


def cache_policy_from_config(section: Section) -> CachePolicy | None:
    """The ``cache:`` part of a provider section; None when caching is turned off (``cache: false``)."""
    if section.raw("cache") is False:
        return None
    cache = section.get_section("cache")
    cache.reject_unknown(_CACHE_KEYS)
    if not cache.get_bool("enabled", True):
        return None
    defaults = CachePolicy()
    ttl = cache.get_float("ttl", defaults.ttl, min=0.001)
    refresh_ahead = cache.get_float("refresh_ahead", min(defaults.refresh_ahead, ttl / 10), min=0)
    if refresh_ahead >= ttl:
        cache.fail("refresh_ahead", f"must be shorter than ttl ({ttl:g}s), got {refresh_ahead:g}")
    backoff_initial = cache.get_float("backoff_initial", defaults.backoff_initial, min=0)
    backoff_max = cache.get_float("backoff_max", max(defaults.backoff_max, backoff_initial), min=0)
    if backoff_max < backoff_initial:
        cache.fail("backoff_max", f"must be at least backoff_initial ({backoff_initial:g}s)")
    return CachePolicy(
        ttl=ttl,
        refresh_ahead=refresh_ahead,
        max_stale=cache.get_float("max_stale", defaults.max_stale, min=0),
        jitter=cache.get_float("jitter", defaults.jitter, min=0, max=0.99),
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        fetch_timeout=cache.get_float("fetch_timeout", defaults.fetch_timeout, min=0.001),
        background_refresh=cache.get_bool("background_refresh", defaults.background_refresh),
    )


def provider_from_section(section: Section, *, cache: bool = True) -> TokenProvider:
    """Build the provider a ``token:``-shaped section describes (backend, its options, cache)."""
    known_backends = available_backends()
    name = section.get_str("backend")
    backend_cls = _backend_class(section, name)
    allowed = {"backend", "cache", *known_backends}
    section.reject_unknown(allowed)
    options = section.get_section(name)
    backend = backend_cls.from_config(options)
    if section.path:
        backend.config_section = section.path
    policy = cache_policy_from_config(section)
    if policy is None or not cache:
        return backend
    return CachingProvider(backend, policy)


def _backend_class(section: Section, name: str) -> type[Backend]:
    try:
        return get_backend_class(name)
    except ConfigError as exc:
        raise section.error("backend", str(exc)) from None


def provider_from_config(
    config: Mapping[str, Any],
    *,
    section: str = "token",
    source: str | None = None,
    cache: bool = True,
) -> TokenProvider:
    """Build a provider from a config mapping: the whole config (``{"token": {...}, ...}``) or one section.

    ``section`` picks the part (``token`` or ``app_secret``). ``cache=False`` returns the raw backend.
    """
    if not isinstance(config, Mapping):
        raise ConfigError("the config must be a mapping", source=source)
    data = dict(config)
    if "backend" in data:  # handed the provider section itself
        return provider_from_section(Section(data, path=section, source=source), cache=cache)
    check_top_level(data, source=source)
    if section not in data or data[section] is None:
        raise ConfigError(
            f"required section is missing; it names the backend, e.g. {section}: {{backend: env, env: {{var: "
            "WHATSAPP_TOKEN}}",
            source=source,
            field=section,
        )
    return provider_from_section(Section(data[section], path=section, source=source), cache=cache)


def load_provider(
    path: str | os.PathLike[str] | None = None, *, section: str = "token", cache: bool = True
) -> TokenProvider:
    """Load the YAML config (``path``, else ``$TOKENSTORE_CONFIG``, else ``./tokenstore.yaml``) and build the
    provider of its ``token:`` section (or ``section``), wrapped in the caching layer unless ``cache=False``.
    """
    from ._config import resolve_config_path

    file, label = resolve_config_path(path)
    config = load_config(file, source=label)
    return provider_from_config(config, section=section, source=label, cache=cache)

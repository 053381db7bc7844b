"""The ``whatsapp:`` config section, validated: errors name the file and the dotted field.

::

    whatsapp:
      phone_number_id: "123456789012345"
      api_version: v27.0                 # pinned; never discovered at run time
      base_url: https://graph.facebook.com
      app_id: "1234567890"               # check / rotate: debug_token uses the app token
      timeout: {connect: 5, read: 20, write: 20, pool: 5}    # or one number for all
      ca_bundle: /etc/ssl/corp-ca.pem    # optional: a CA bundle for a TLS-inspecting proxy
      appsecret_proof: false             # true | timed: needs the app_secret: section
      retry: {max_attempts: 3, backoff_initial: 0.5, backoff_max: 8, ...}     # or false
      pacing: {messages_per_second: 80, per_recipient_interval: 6, max_wait: 30}  # off when absent
      max_connections: 400               # the pool: in flight = rate x latency (1,000/s x 0.3 s = 300)
      max_in_flight: 400                 # requests on the wire at once (default and most: max_connections)
      queue_timeout: 60                  # seconds a send waits for a slot, then QueueTimeout (false: no limit)
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from tokenstore import ConfigError, Section, is_loopback_host, load_config, resolve_config_path, shown_value

from ._pacing import MAX_GRANULARITY, PacingPolicy
from ._pool import ASYNC_TRANSPORTS, DEFAULT_MAX_CONNECTIONS, DEFAULT_QUEUE_TIMEOUT
from ._retry import DEFAULT_RETRY_CODES, RetryPolicy

__all__ = [
    "API_VERSION_END_OF_AVAILABILITY",
    "API_VERSION_WARNING_DAYS",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "WHATSAPP_KEYS",
    "SenderSettings",
    "api_version_warning",
    "check_api_version",
    "check_base_url",
    "read_config",
    "settings_from_config",
]

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v27.0"
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=5.0)

#: Meta's published end-of-availability dates of the Graph API versions (the changelog's version table): a
#: version keeps working until its date; calls to an unavailable version are answered by the oldest available
#: one. v26.0 and v27.0 have no date yet (a version ends two years after its successor ships). Update this
#: table when Meta publishes a new date.
API_VERSION_END_OF_AVAILABILITY: Mapping[str, dt.date] = {
    "v21.0": dt.date(2027, 1, 21),
    "v22.0": dt.date(2027, 5, 20),
    "v23.0": dt.date(2027, 10, 8),
    "v24.0": dt.date(2028, 2, 18),
    "v25.0": dt.date(2028, 7, 29),
}
#: a configured version this close to its end (or past it) gets a warning at load and from ``tokenstore check``
API_VERSION_WARNING_DAYS = 90

logger = logging.getLogger("sender")
_warned_versions: set[str] = set()

#: the options of the ``whatsapp:`` section
WHATSAPP_KEYS = [
    "phone_number_id",
    "api_version",
    "base_url",
    "app_id",
    "timeout",
    "ca_bundle",
    "appsecret_proof",
    "retry",
    "pacing",
    "async_transport",
    "max_connections",
    "max_in_flight",
    "queue_timeout",
]
_RETRY_KEYS = (
    "max_attempts",
    "codes",
    "statuses",
    "connect_errors",
    "unknown_outcome",
    "backoff_initial",
    "backoff_max",
    "multiplier",
    "jitter",
    "pair_limit_base",
    "max_wait",
    "deadline",
)
_PACING_KEYS = ("messages_per_second", "per_recipient_interval", "max_wait", "granularity")
_VERSION = re.compile(r"^v\d{1,3}\.\d{1,2}$")
_ID = re.compile(r"^\d{1,32}$")

AppSecretProof = Literal["off", "on", "timed"]


def check_api_version(value: str) -> str | None:
    """Why ``value`` is not a Graph API version such as ``v27.0``, or None."""
    if not isinstance(value, str) or not _VERSION.match(value):
        return "must be a Graph API version such as v27.0"
    return None


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def api_version_warning(version: str, *, today: dt.date | None = None) -> str | None:
    """A warning when Graph API ``version`` ends within :data:`API_VERSION_WARNING_DAYS` days or has ended
    (Meta's dates: :data:`API_VERSION_END_OF_AVAILABILITY`), else None."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    end = API_VERSION_END_OF_AVAILABILITY.get(version)
    upgrade = f"set whatsapp.api_version to {DEFAULT_API_VERSION}, the newest, after testing your calls with it"
    if end is None:
        oldest = min(API_VERSION_END_OF_AVAILABILITY, key=lambda v: _version_key(v))
        if check_api_version(version) is None and _version_key(version) < _version_key(oldest):
            return f"Graph API {version} is past its end of availability (older than {oldest}): {upgrade}"
        return None
    left = (end - today).days
    if left < 0:
        return (
            f"Graph API {version} reached its end of availability on {end.isoformat()}: Meta answers its calls "
            f"with the oldest available version; {upgrade}"
        )
    if left <= API_VERSION_WARNING_DAYS:
        when = "today" if left == 0 else f"in {_days(left)}"
        return f"Graph API {version} stops working on {end.isoformat()} ({when}): {upgrade}"
    return None


def _version_key(version: str) -> tuple[int, int]:
    major, _, minor = version.lstrip("v").partition(".")
    return int(major), int(minor or 0)


def check_base_url(value: str) -> str | None:
    """Why ``value`` is not a usable Graph base URL, or None. Plain http is only allowed to loopback."""
    if not isinstance(value, str):
        return "must be a URL"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an https:// URL (such as https://graph.facebook.com)"
    if parts.query or parts.fragment:
        return "must not carry a query or fragment"
    if parts.username or parts.password:
        return "must not carry credentials"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "plain http would send the access token in clear: use https (http is allowed only to 127.0.0.1)"
    return None


@dataclass(frozen=True)
class SenderSettings:
    """The ``whatsapp:`` section, validated."""

    phone_number_id: str | None
    api_version: str = DEFAULT_API_VERSION
    base_url: str = DEFAULT_BASE_URL
    app_id: str | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    ca_bundle: str | None = None
    appsecret_proof: AppSecretProof = "off"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    pacing: PacingPolicy | None = None
    #: AsyncSender's transport: "auto" (the native HTTP/1.1 client; httpx when a proxy is set in the environment),
    #: "native", "aiohttp" or "httpx"
    async_transport: str = "auto"
    #: connections in the pool (None: the default, 400)
    max_connections: int | None = None
    #: requests in flight at once (None: max_connections)
    max_in_flight: int | None = None
    #: seconds a send waits for an in-flight slot before QueueTimeout (None: no limit)
    queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT
    source: str | None = None


def read_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> tuple[dict[str, Any], str | None]:
    """The whole config as a dict, and the file it came from: a path (or None: ``$TOKENSTORE_CONFIG``, then
    ``./tokenstore.yaml``) is loaded and interpolated; a mapping is used as it is."""
    if isinstance(config, Mapping):
        return dict(config), None
    path, label = resolve_config_path(config)
    return load_config(path, source=label), label


def _timeout(section: Section) -> httpx.Timeout:
    raw = section.raw("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    if not isinstance(raw, dict):
        seconds = section.get_float("timeout", min=0.001)
        return httpx.Timeout(seconds)
    sub = section.get_section("timeout")
    sub.reject_unknown(("connect", "read", "write", "pool"))
    return httpx.Timeout(
        connect=sub.get_float("connect", DEFAULT_TIMEOUT.connect, min=0.001),
        read=sub.get_float("read", DEFAULT_TIMEOUT.read, min=0.001),
        write=sub.get_float("write", DEFAULT_TIMEOUT.write, min=0.001),
        pool=sub.get_float("pool", DEFAULT_TIMEOUT.pool, min=0.001),
    )


def _int_list(section: Section, key: str) -> frozenset[int] | None:
    raw = section.raw(key)
    if raw is None:
        return None
    if not isinstance(raw, list):
        section.fail(key, "must be a list of whole numbers")
    values = []
    for i, item in enumerate(raw):
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        if isinstance(item, bool) or not isinstance(item, int):
            section.fail(f"{key}[{i}]", "must be a whole number")
        values.append(item)
    return frozenset(values)


def _retry(section: Section) -> RetryPolicy:
    raw = section.raw("retry")
    if raw is None or raw is True:
        return RetryPolicy()
    if raw is False:
        return RetryPolicy.disabled()
    sub = section.get_section("retry")
    sub.reject_unknown(_RETRY_KEYS)
    default = RetryPolicy()
    kwargs: dict[str, Any] = {
        "max_attempts": sub.get_int("max_attempts", default.max_attempts, min=1, max=20),
        "connect_errors": sub.get_bool("connect_errors", default.connect_errors),
        "unknown_outcome": sub.get_bool("unknown_outcome", default.unknown_outcome),
        "backoff_initial": sub.get_float("backoff_initial", default.backoff_initial, min=0),
        "backoff_max": sub.get_float("backoff_max", default.backoff_max, min=0),
        "multiplier": sub.get_float("multiplier", default.multiplier, min=1),
        "jitter": sub.get_float("jitter", default.jitter, min=0, max=1),
        "pair_limit_base": sub.get_float("pair_limit_base", default.pair_limit_base, min=0),
        "max_wait": sub.get_float("max_wait", default.max_wait, min=0),
        "deadline": sub.get_float("deadline", None, min=0.001),
    }
    codes = _int_list(sub, "codes")
    kwargs["codes"] = DEFAULT_RETRY_CODES if codes is None else codes
    statuses = _int_list(sub, "statuses")
    if statuses is not None:
        kwargs["statuses"] = statuses
    try:
        return RetryPolicy(**kwargs)
    except ValueError as exc:
        text = str(exc)
        field = next((k for k in _RETRY_KEYS if f"RetryPolicy.{k}" in text), None)
        raise sub.error(field, text.split(": ", 1)[-1] if ": " in text else text) from None


def _pacing(section: Section) -> PacingPolicy | None:
    raw = section.raw("pacing")
    if raw is None or raw is False:
        return None
    sub = section.get_section("pacing")
    sub.reject_unknown(_PACING_KEYS)
    policy = PacingPolicy(
        messages_per_second=sub.get_float("messages_per_second", None, min=0.001),
        per_recipient_interval=sub.get_float("per_recipient_interval", None, min=0),
        max_wait=sub.get_float("max_wait", PacingPolicy().max_wait, min=0),
        granularity=sub.get_float("granularity", PacingPolicy().granularity, min=0, max=MAX_GRANULARITY),
    )
    return policy if policy.enabled else None


def _appsecret_proof(section: Section) -> AppSecretProof:
    raw = section.raw("appsecret_proof")
    if raw is None:
        return "off"
    if isinstance(raw, str) and raw.strip().lower() == "timed":
        return "timed"
    try:
        return "on" if section.get_bool("appsecret_proof", False) else "off"
    except ConfigError:
        raise section.error("appsecret_proof", "must be true, false or timed") from None


def _id(section: Section, key: str, *, required: bool) -> str | None:
    value: str | None = section.get_str(key, None, coerce_numbers=True, allow_empty=True)
    value = value.strip() if value is not None else None
    if not value:  # absent, or empty (e.g. "${WHATSAPP_APP_ID:-}" with the variable unset)
        if required:
            section.fail(key, "required: the numeric id from the WhatsApp Manager / app dashboard")
        return None
    if not _ID.match(value):
        section.fail(key, "must be a numeric id")
    return value


def settings_from_config(
    config: Mapping[str, Any],
    *,
    source: str | None = None,
    require_phone_number_id: bool = True,
    warn_api_version: bool = True,
) -> SenderSettings:
    """Validate the ``whatsapp:`` section of a whole config mapping.

    A pinned ``api_version`` within 90 days of its end of availability, or past it, logs one warning on the
    ``sender`` logger per version and process (:func:`api_version_warning`; ``warn_api_version=False`` for
    a caller that reports it itself, as ``tokenstore check`` does)."""
    raw = config.get("whatsapp")
    if raw is None:
        if require_phone_number_id:
            raise ConfigError(
                "required section is missing: whatsapp: {phone_number_id: ..., api_version: v27.0}",
                source=source,
                field="whatsapp",
            )
        raw = {}
    section = Section(raw, path="whatsapp", source=source)
    section.reject_unknown(WHATSAPP_KEYS)
    api_version = section.get_str("api_version", DEFAULT_API_VERSION)
    problem = check_api_version(api_version)
    if problem:
        section.fail("api_version", f"{problem}, got {shown_value(api_version)}")
    if warn_api_version and api_version not in _warned_versions:
        notice = api_version_warning(api_version)
        if notice:
            _warned_versions.add(api_version)
            logger.warning("%s%s", f"{source}: " if source else "", notice)
    base_url = section.get_str("base_url", DEFAULT_BASE_URL)
    problem = check_base_url(base_url)
    if problem:
        section.fail("base_url", problem)
    max_connections = section.get_int("max_connections", None, min=1, max=100_000)
    max_in_flight = section.get_int("max_in_flight", None, min=1, max=100_000)
    if max_in_flight is not None and max_in_flight > (max_connections or DEFAULT_MAX_CONNECTIONS):
        section.fail(
            "max_in_flight",
            f"must not exceed max_connections ({max_connections or DEFAULT_MAX_CONNECTIONS}): a request with a "
            "slot must never wait for a connection; raise max_connections too",
        )
    queue_timeout: float | None = None  # false: wait for a slot as long as it takes
    if section.raw("queue_timeout") is not False:
        queue_timeout = section.get_float("queue_timeout", DEFAULT_QUEUE_TIMEOUT, min=0)
    ca_bundle = section.get_path("ca_bundle", None)
    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        section.fail("ca_bundle", f"no such file: {ca_bundle}")
    return SenderSettings(
        phone_number_id=_id(section, "phone_number_id", required=require_phone_number_id),
        api_version=api_version,
        base_url=base_url.rstrip("/"),
        app_id=_id(section, "app_id", required=False),
        timeout=_timeout(section),
        ca_bundle=ca_bundle,
        appsecret_proof=_appsecret_proof(section),
        retry=_retry(section),
        pacing=_pacing(section),
        async_transport=section.get_str("async_transport", "auto", choices=ASYNC_TRANSPORTS),
        max_connections=max_connections,
        max_in_flight=max_in_flight,
        queue_timeout=queue_timeout,
        source=source,
    )

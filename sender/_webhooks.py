"""Verify Meta's webhooks: ``X-Hub-Signature-256`` over the raw body, and the GET subscription handshake.

Both secrets come from providers (any backend): the app secret(s) that sign the POSTs and the verify token of
the handshake. The verifier keeps the values it fetched and compares in constant time; when a signature
matches none of them (an app secret reset in Meta's dashboard and written to the store), it refetches them
once - single-flight across threads, and across tasks of one event loop - and checks again. Refetches happen
at most once per ``refetch_interval``, so a flood of forged requests cannot hammer the store::

    verifier = sender.WebhookVerifier.from_config("config.yaml")     # webhook: / app_secret: sections
    verifier.verify(raw_body, request.headers.get("X-Hub-Signature-256"))   # or: await verifier.averify(...)
    events = sender.parse_events(raw_body)

The errors say nothing that helps a forger (not the expected value, not which part failed)::

    WebhookError
    ├── InvalidSignature      missing, malformed or wrong X-Hub-Signature-256 (answer 401)
    │   └── PayloadTooLarge   the body is over ``max_body``: refused before hashing (answer 413)
    ├── SubscriptionRefused   the GET handshake: wrong hub.mode or verify token, bad challenge (answer 403)
    └── InvalidPayload        a verified body that is not a JSON object (answer 400)

A store that cannot be read raises the provider's own :class:`tokenstore.TokenStoreError` (answer 503: Meta
retries undelivered webhooks with backoff).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tokenstore import ConfigError, Section, Token, TokenProvider, TokenStoreError, provider_from_config

from ._config import read_config
from ._redact import install_log_redaction

if TYPE_CHECKING:
    from ._events import WebhookEvent

__all__ = [
    "ACCESS_LOGGERS",
    "DEFAULT_MAX_BODY",
    "DEFAULT_REFETCH_INTERVAL",
    "SIGNATURE_HEADER",
    "WEBHOOK_KEYS",
    "InvalidPayload",
    "InvalidSignature",
    "PayloadTooLarge",
    "SubscriptionRefused",
    "WebhookError",
    "WebhookSettings",
    "WebhookVerifier",
    "webhook_settings_from_config",
]

logger = logging.getLogger("sender.webhooks")

SIGNATURE_HEADER = "X-Hub-Signature-256"
DEFAULT_REFETCH_INTERVAL = 30.0
DEFAULT_MAX_BODY = 1 << 20
#: the options of the ``webhook:`` section
WEBHOOK_KEYS = ("verify_token", "app_secrets", "refetch_interval", "max_body")
#: web servers' access loggers: the handshake's request line carries hub.verify_token, redacted there too
ACCESS_LOGGERS = ("uvicorn.access", "uvicorn.error", "gunicorn.access", "hypercorn.access", "werkzeug")

_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
_CHALLENGE = re.compile(r"[\x21-\x7e]{1,1024}")  # Meta sends a number; anything printable, no spaces, is echoed


class WebhookError(Exception):
    """Base of the webhook errors."""


class InvalidSignature(WebhookError):
    """The request is not signed by any configured app secret (or the header is missing or malformed)."""

    def __init__(self, message: str = "the webhook signature is invalid") -> None:
        super().__init__(message)


class PayloadTooLarge(InvalidSignature):
    """The body is larger than ``max_body``; it was not hashed."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        super().__init__(f"the webhook body is larger than webhook.max_body ({max_body} bytes)")


class SubscriptionRefused(WebhookError):
    """The GET subscription handshake was refused."""

    def __init__(self, message: str = "the webhook subscription was refused") -> None:
        super().__init__(message)


class InvalidPayload(WebhookError):
    """A verified body that is not a JSON object of Meta's webhook shape."""


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    """The ``webhook:`` section's policy (seconds, bytes)."""

    #: at most one refetch of the secrets per this many seconds, however many signatures fail
    refetch_interval: float = DEFAULT_REFETCH_INTERVAL
    #: bodies larger than this are refused before hashing
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        if self.refetch_interval < 0:
            raise ValueError("WebhookSettings.refetch_interval must be >= 0")
        if self.max_body < 1:
            raise ValueError("WebhookSettings.max_body must be >= 1")


class _SecretSet:
    """The values of some providers, fetched on first use and refetched on demand (single-flight, at most once
    per ``interval``). Holds ``Token`` objects (their repr is a fingerprint) and a ready HMAC per token."""

    def __init__(self, providers: Sequence[TokenProvider], *, interval: float, clock: Callable[[], float]) -> None:
        self.providers = list(providers)
        self.interval = interval
        self.clock = clock
        self.refetches = 0
        self._tokens: list[Token | None] = [None] * len(self.providers)
        self._errors: list[TokenStoreError | None] = [None] * len(self.providers)
        self._macs: tuple[hmac.HMAC | None, ...] = ()
        self._loaded = False
        self._generation = 0
        self._last_refetch: float | None = None
        self._state = threading.Lock()  # guards the fields above (held briefly, never across I/O)
        self._fetch = threading.Lock()  # sync single flight
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    # -- no I/O -------------------------------------------------------------------------------------------------
    def snapshot(self) -> tuple[list[Token | None], tuple[hmac.HMAC | None, ...], int]:
        with self._state:
            return list(self._tokens), self._macs, self._generation

    def error(self) -> TokenStoreError | None:
        """The first store error of the last fetch, if any provider failed."""
        with self._state:
            return next((e for e in self._errors if e is not None), None)

    def _claim(self, seen: int) -> bool:
        """Whether this caller may refetch now (nobody refetched since it looked, and the interval allows)."""
        with self._state:
            if self._generation != seen:
                return False
            now = self.clock()
            if self._last_refetch is not None and now - self._last_refetch < self.interval:
                return False
            self._last_refetch = now
            return True

    def _store(self, results: list[Token | TokenStoreError]) -> None:
        with self._state:
            for i, result in enumerate(results):
                if isinstance(result, Token):
                    self._tokens[i] = result
                    self._errors[i] = None
                else:  # keep the last good value: a store outage does not forget a secret
                    self._errors[i] = result
            self._macs = tuple(
                None if t is None else hmac.new(t.reveal().encode("utf-8"), digestmod=hashlib.sha256)
                for t in self._tokens
            )
            self._loaded = True
            self._generation += 1

    def _changed(self, seen: int) -> bool:
        with self._state:
            return self._generation != seen

    # -- sync I/O -----------------------------------------------------------------------------------------------
    def _fetch_all(self, *, fresh: bool) -> list[Token | TokenStoreError]:
        results: list[Token | TokenStoreError] = []
        for provider in self.providers:
            try:
                if fresh:
                    provider.invalidate()
                results.append(provider.get_token())
            except TokenStoreError as exc:
                results.append(exc)
        return results

    def load(self) -> None:
        if self._loaded:
            return
        with self._fetch:
            if not self._loaded:
                self._store(self._fetch_all(fresh=False))

    def refetch(self, seen: int) -> bool:
        """Refetch if allowed; True when the values changed since ``seen`` (by us or a concurrent caller)."""
        with self._fetch:
            if self._changed(seen):
                return True
            if not self._claim(seen):
                return False
            self.refetches += 1
            logger.info("webhook secrets refetched (a value matched none of the cached ones)")
            self._store(self._fetch_all(fresh=True))
            return True

    # -- async I/O ----------------------------------------------------------------------------------------------
    def _alock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._state:
            lock = self._alocks.get(loop)
            if lock is None:
                lock = self._alocks[loop] = asyncio.Lock()
            return lock

    async def _afetch_all(self, *, fresh: bool) -> list[Token | TokenStoreError]:
        results: list[Token | TokenStoreError] = []
        for provider in self.providers:
            try:
                if fresh:
                    provider.invalidate()
                results.append(await provider.aget_token())
            except TokenStoreError as exc:
                results.append(exc)
        return results

    async def aload(self) -> None:
        if self._loaded:
            return
        async with self._alock():
            if not self._loaded:
                self._store(await self._afetch_all(fresh=False))

    async def arefetch(self, seen: int) -> bool:
        async with self._alock():
            if self._changed(seen):
                return True
            if not self._claim(seen):
                return False
            self.refetches += 1
            logger.info("webhook secrets refetched (a value matched none of the cached ones)")
            self._store(await self._afetch_all(fresh=True))
            return True


def _as_bytes(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError("verify() needs the raw body bytes as received (never re-serialised JSON)")


class WebhookVerifier:
    """Checks Meta's webhook signatures and answers the subscription handshake, with secrets from providers.

    ``app_secrets``: one provider or a list (several Meta apps, e.g. tenants under different apps): a body is
    accepted when any of them signed it. ``verify_token``: the provider of the handshake's verify token
    (optional when you only receive). ``refetch_interval`` (seconds) bounds refetches on a mismatch;
    ``max_body`` (bytes) bounds what is hashed. ``clock`` is injectable for tests. Thread-safe; the async
    methods may be used from any event loop.
    """

    def __init__(
        self,
        app_secrets: TokenProvider | Iterable[TokenProvider],
        verify_token: TokenProvider | None = None,
        *,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL,
        max_body: int = DEFAULT_MAX_BODY,
        clock: Callable[[], float] = time.monotonic,
        owns_providers: bool = False,
    ) -> None:
        providers = [app_secrets] if isinstance(app_secrets, TokenProvider) else list(app_secrets)
        if not providers:
            raise ValueError("app_secrets: give at least one provider of a Meta app secret")
        for provider in [*providers, *([verify_token] if verify_token is not None else [])]:
            if not isinstance(provider, TokenProvider):
                raise TypeError("app_secrets and verify_token must be tokenstore.TokenProvider objects")
        self.settings = WebhookSettings(refetch_interval=refetch_interval, max_body=max_body)
        self.max_body = self.settings.max_body
        self._secrets = _SecretSet(providers, interval=refetch_interval, clock=clock)
        self._verify_token = (
            None if verify_token is None else _SecretSet([verify_token], interval=refetch_interval, clock=clock)
        )
        self._owns_providers = owns_providers
        install_log_redaction()
        install_log_redaction(ACCESS_LOGGERS)
        self._stats_lock = threading.Lock()
        self._stats = {"accepted": 0, "refused": 0, "too_large": 0, "subscriptions": 0, "subscriptions_refused": 0}

    @classmethod
    def from_config(
        cls, config: str | os.PathLike[str] | Mapping[str, Any] | None = None, **overrides: Any
    ) -> WebhookVerifier:
        """Build from a config file (or a loaded mapping): ``webhook.app_secrets`` (a list of provider
        sections; default: the top-level ``app_secret:`` section), ``webhook.verify_token`` (a provider
        section), ``webhook.refetch_interval`` and ``webhook.max_body``. No network I/O happens here."""
        data, source = read_config(config)
        settings, secret_sections, token_section = webhook_settings_from_config(data, source=source)
        built: list[TokenProvider] = []
        try:
            for path, section in secret_sections:
                built.append(provider_from_config(section, section=path, source=source))
            verify_token = None
            if token_section is not None:
                verify_token = provider_from_config(token_section, section="webhook.verify_token", source=source)
                built.append(verify_token)
            kwargs: dict[str, Any] = {
                "refetch_interval": settings.refetch_interval,
                "max_body": settings.max_body,
                "owns_providers": True,
                **overrides,
            }
            n = len(secret_sections)
            return cls(built[:n], verify_token, **kwargs)
        except BaseException:
            for provider in built:
                provider.close()
            raise

    # -- counters -----------------------------------------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    @property
    def stats(self) -> dict[str, int]:
        """Cumulative counters: accepted, refused, too_large, subscriptions, subscriptions_refused, refetches."""
        with self._stats_lock:
            stats = dict(self._stats)
        stats["refetches"] = self._secrets.refetches + (self._verify_token.refetches if self._verify_token else 0)
        return stats

    # -- no I/O -------------------------------------------------------------------------------------------------
    def _digest(self, body: bytes, signature_header: str | None) -> bytes:
        """The signature's digest bytes, after every check that needs no secret; raises InvalidSignature."""
        if len(body) > self.max_body:
            self._count("too_large")
            raise PayloadTooLarge(self.max_body)
        if not isinstance(signature_header, str) or not body or not _SIGNATURE.fullmatch(signature_header):
            self._count("refused")
            raise InvalidSignature()
        return bytes.fromhex(signature_header[7:])

    @staticmethod
    def _match(macs: tuple[hmac.HMAC | None, ...], body: bytes, digest: bytes) -> int:
        """The index of the app secret that signed ``body`` (-1: none)."""
        for i, template in enumerate(macs):
            if template is None:
                continue
            mac = template.copy()
            mac.update(body)
            if hmac.compare_digest(mac.digest(), digest):
                return i
        return -1

    def _accepted(self, index: int) -> str:
        self._count("accepted")
        return self._secrets.providers[index].source

    def _refuse(self, secrets: _SecretSet) -> InvalidSignature:
        error = secrets.error()
        if error is not None:  # a store we could not read may hold the secret that signed it: 503, not 401
            raise error
        self._count("refused")
        return InvalidSignature()

    def _subscription_args(self, mode: str | None, verify_token: str | None, challenge: str | None) -> bytes:
        if self._verify_token is None:
            self._count("subscriptions_refused")
            raise SubscriptionRefused("no verify token is configured (webhook.verify_token)")
        if (
            mode != "subscribe"
            or not isinstance(verify_token, str)
            or not verify_token
            or not isinstance(challenge, str)
            or not _CHALLENGE.fullmatch(challenge)
        ):
            self._count("subscriptions_refused")
            raise SubscriptionRefused()
        return verify_token.encode("utf-8")

    @staticmethod
    def _token_matches(tokens: list[Token | None], given: bytes) -> bool:
        return any(t is not None and hmac.compare_digest(t.reveal().encode("utf-8"), given) for t in tokens)

    def _subscribed(self, challenge: str) -> str:
        self._count("subscriptions")
        return challenge

    def _refuse_subscription(self) -> SubscriptionRefused:
        assert self._verify_token is not None
        error = self._verify_token.error()
        if error is not None:
            raise error
        self._count("subscriptions_refused")
        return SubscriptionRefused()

    # -- sync -----------------------------------------------------------------------------------------------------
    def verify(self, body: bytes, signature_header: str | None) -> str:
        """Check ``X-Hub-Signature-256: sha256=<hex>`` against HMAC-SHA256(app secret, ``body``).

        ``body``: the raw bytes as received. Returns the ``source`` label of the app-secret provider whose
        secret signed it (with several Meta apps: which one; never the secret). Raises
        :class:`InvalidSignature` (or :class:`PayloadTooLarge`); a store that cannot be read raises its
        :class:`tokenstore.TokenStoreError`.
        """
        body = _as_bytes(body)
        digest = self._digest(body, signature_header)
        self._secrets.load()
        _, macs, seen = self._secrets.snapshot()
        index = self._match(macs, body, digest)
        if index < 0 and self._secrets.refetch(seen):
            index = self._match(self._secrets.snapshot()[1], body, digest)
        if index < 0:
            raise self._refuse(self._secrets)
        return self._accepted(index)

    def verify_subscription(self, mode: str | None, verify_token: str | None, challenge: str | None) -> str:
        """Answer Meta's GET handshake: the ``hub.challenge`` to echo when ``hub.mode`` is ``subscribe`` and
        ``hub.verify_token`` is ours (compared in constant time); else :class:`SubscriptionRefused`."""
        given = self._subscription_args(mode, verify_token, challenge)
        assert self._verify_token is not None and challenge is not None
        self._verify_token.load()
        tokens, _, seen = self._verify_token.snapshot()
        if not self._token_matches(tokens, given):
            refetched = self._verify_token.refetch(seen)
            if not refetched or not self._token_matches(self._verify_token.snapshot()[0], given):
                raise self._refuse_subscription()
        return self._subscribed(challenge)

    def events(self, body: bytes, signature_header: str | None) -> list[WebhookEvent]:
        """:meth:`verify`, then :func:`sender.parse_events` (raises :class:`InvalidPayload` for a body that is
        not a JSON object)."""
        from ._events import parse_events

        self.verify(body, signature_header)
        return parse_events(body)

    # -- async ----------------------------------------------------------------------------------------------------
    async def averify(self, body: bytes, signature_header: str | None) -> str:
        """The awaitable :meth:`verify` (the store is read with the providers' async path)."""
        body = _as_bytes(body)
        digest = self._digest(body, signature_header)
        await self._secrets.aload()
        _, macs, seen = self._secrets.snapshot()
        index = self._match(macs, body, digest)
        if index < 0 and await self._secrets.arefetch(seen):
            index = self._match(self._secrets.snapshot()[1], body, digest)
        if index < 0:
            raise self._refuse(self._secrets)
        return self._accepted(index)

    async def averify_subscription(self, mode: str | None, verify_token: str | None, challenge: str | None) -> str:
        """The awaitable :meth:`verify_subscription`."""
        given = self._subscription_args(mode, verify_token, challenge)
        assert self._verify_token is not None and challenge is not None
        await self._verify_token.aload()
        tokens, _, seen = self._verify_token.snapshot()
        if not self._token_matches(tokens, given):
            refetched = await self._verify_token.arefetch(seen)
            if not refetched or not self._token_matches(self._verify_token.snapshot()[0], given):
                raise self._refuse_subscription()
        return self._subscribed(challenge)

    async def aevents(self, body: bytes, signature_header: str | None) -> list[WebhookEvent]:
        """The awaitable :meth:`events`."""
        from ._events import parse_events

        await self.averify(body, signature_header)
        return parse_events(body)

    # -- lifecycle ------------------------------------------------------------------------------------------------
    @property
    def providers(self) -> list[TokenProvider]:
        """The app-secret providers, then the verify token's (if any)."""
        extra = self._verify_token.providers if self._verify_token is not None else []
        return [*self._secrets.providers, *extra]

    def close(self) -> None:
        """Close the providers when this verifier built them (``from_config``). Idempotent."""
        if self._owns_providers:
            self._owns_providers = False
            for provider in self.providers:
                provider.close()

    async def aclose(self) -> None:
        if self._owns_providers:
            self._owns_providers = False
            for provider in self.providers:
                await provider.aclose()

    def __enter__(self) -> WebhookVerifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> WebhookVerifier:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        sources = [p.source for p in self._secrets.providers]
        token = self._verify_token.providers[0].source if self._verify_token is not None else None
        return f"<WebhookVerifier app_secrets={sources!r} verify_token={token!r}>"


def webhook_settings_from_config(
    config: Mapping[str, Any], *, source: str | None = None
) -> tuple[WebhookSettings, list[tuple[str, Mapping[str, Any]]], Mapping[str, Any] | None]:
    """Validate the ``webhook:`` section: the policy, the app-secret provider sections (``(field, section)``
    pairs; ``app_secret:`` when ``webhook.app_secrets`` is absent) and the verify token's section (or None)."""
    raw = config.get("webhook")
    section = Section(raw, path="webhook", source=source)
    section.reject_unknown(WEBHOOK_KEYS)
    settings = WebhookSettings(
        refetch_interval=section.get_float("refetch_interval", DEFAULT_REFETCH_INTERVAL, min=0),
        max_body=section.get_int("max_body", DEFAULT_MAX_BODY, min=1),
    )
    secrets: list[tuple[str, Mapping[str, Any]]] = []
    listed = section.raw("app_secrets")
    if listed is not None:
        if not isinstance(listed, list) or not listed:
            section.fail("app_secrets", "must be a non-empty list of provider sections ({backend: ..., ...})")
        for i, item in enumerate(listed):
            path = f"webhook.app_secrets[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(
                    "must be a provider section ({backend: env, env: {var: ...}})", source=source, field=path
                )
            secrets.append((path, item))
    elif isinstance(config.get("app_secret"), dict):
        secrets.append(("app_secret", config["app_secret"]))
    else:
        raise ConfigError(
            "webhooks need the Meta app secret: give webhook.app_secrets (a list of provider sections) or the "
            "app_secret: section",
            source=source,
            field="webhook.app_secrets",
        )
    token = section.raw("verify_token")
    if token is not None and not isinstance(token, dict):
        # never echo the value: it may be the verify token itself
        section.fail("verify_token", "must be a provider section ({backend: env, env: {var: WHATSAPP_VERIFY_TOKEN}})")
    return settings, secrets, token

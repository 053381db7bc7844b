"""What the three rotation handlers share: settings, the secret an event names, results, failures, logging.

A handler runs inside the cloud's own scheduler (a Lambda function, an Azure Function, a Cloud Run service or
Cloud Function): it reads the same config file as everything else (``$TOKENSTORE_CONFIG``), finds the
configured secret the event is about (the ``token:`` section, or a tenant's secret from its name), and drives
the one refresh implementation, :mod:`sender._refresh`. Any failure is a :class:`RotationFailed` with a
message naming the secret and what was (not) done, logged at ERROR on ``sender.rotation`` (which the
function's runtime ships to the cloud's log service) and raised, so the scheduler records the failure and
retries. Only fingerprints are ever logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenstore import ConfigError, Section, TokenStoreError

from .._config import read_config
from .._exceptions import SendError
from .._refresh import RefreshRefused

if TYPE_CHECKING:
    from tokenstore import Backend

    from .._lifecycle import GraphTokenClient

__all__ = ["ROTATION_KEYS", "RotationFailed", "RotationResult", "RotationSettings", "Target"]

logger = logging.getLogger("sender.rotation")

#: the options of the config's ``rotation:`` section
ROTATION_KEYS = ("revoke_old_after",)


class RotationFailed(Exception):
    """A rotation step refused or failed; the secret's current version was left as it was.

    The message names the secret (and tenant) and what was and was not done; never a token or the app secret.
    ``step`` is the AWS step or the event type, ``secret`` the secret's name or id as the event gave it.
    """

    def __init__(self, message: str, *, step: str | None = None, secret: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.secret = secret


@dataclass
class RotationResult:
    """What one handler invocation did (fingerprints, versions and dates only)."""

    #: ``aws``, ``azure``, ``gcp``
    store: str
    #: the AWS step (``createSecret`` ...) or the event type (``Microsoft.KeyVault.SecretNearExpiry``,
    #: ``SECRET_ROTATE``)
    step: str
    #: ``staged``, ``tested``, ``finished``, ``refreshed``, ``nothing``, ``ignored``, ``validated``
    action: str
    #: the secret as the event names it
    secret: str
    #: the configured store it resolved to (tokenstore's ``source`` label)
    source: str | None = None
    tenant: str | None = None
    old_fingerprint: str | None = None
    new_fingerprint: str | None = None
    version: str | None = None
    #: fingerprints of tokens revoked by this invocation
    revoked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)
        logger.info("%s %s: %s", self.store, self.step, text)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["revoked"] = list(self.revoked)
        out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True)
class Target:
    """The configured secret an event is about."""

    #: the raw (uncached) backend for it: every read goes to the store
    backend: Backend
    #: the tenant whose secret it is (None: the single ``token:`` secret)
    tenant: str | None
    #: the config section it came from (``token`` or ``tenants.token``), for messages
    field: str
    #: releases the backend (and the tenants' shared client)
    close: Callable[[], None]


@dataclass(frozen=True)
class RotationSettings:
    """The config as a rotation handler needs it."""

    data: Mapping[str, Any]
    #: the label errors name the file by (the path, and whether $TOKENSTORE_CONFIG chose it)
    source: str | None
    #: what the config was loaded from (a path, a mapping, or None: $TOKENSTORE_CONFIG)
    origin: str | os.PathLike[str] | Mapping[str, Any] | None
    #: seconds between writing a new token and revoking the old one (every replica's cache has moved by
    #: then): ``rotation.revoke_old_after``, default the ``token.cache`` ttl + refresh_ahead
    revoke_old_after: float
    #: whether ``rotation.revoke_old_after`` was set explicitly
    revoke_configured: bool

    @classmethod
    def load(cls, config: str | os.PathLike[str] | Mapping[str, Any] | None) -> RotationSettings:
        data, source = read_config(config)
        raw = data.get("rotation")
        explicit = False
        wait: float | None = None
        if raw is not None:
            section = Section(raw if isinstance(raw, dict) else {"": raw}, path="rotation", source=source)
            if not isinstance(raw, dict):
                section.fail(None, "must be a mapping, e.g. rotation: {revoke_old_after: 330}")
            section.reject_unknown(ROTATION_KEYS)
            if section.raw("revoke_old_after") is not None:
                wait = section.get_float("revoke_old_after", min=0, max=86400 * 30)
                explicit = True
        if wait is None:
            wait = _cache_wait(data, source)
        return cls(data=data, source=source, origin=config, revoke_old_after=wait, revoke_configured=explicit)

    def graph(self, purpose: str) -> GraphTokenClient:
        """The Graph token client of ``whatsapp.app_id`` and the ``app_secret:`` section (no network I/O)."""
        from .._lifecycle import GraphTokenClient

        return GraphTokenClient.from_config(self.origin, purpose=purpose, cache=False)

    def target(
        self, backend_name: str, matches: Callable[[Backend], bool], described: str, names: Iterable[str] = ()
    ) -> Target:
        """The configured secret the event names: a tenant's, when one of ``names`` (the secret's name as the
        event gives it) fits the ``tenants:`` template and ``matches`` confirms it, else the ``token:`` secret
        when ``matches`` says so. Raises :class:`RotationFailed` for a secret not configured here."""
        import tokenstore

        tenants_section = self.data.get("tenants")
        tenants_token = tenants_section.get("token") if isinstance(tenants_section, Mapping) else None
        if isinstance(tenants_token, Mapping) and tenants_token.get("backend") == backend_name:
            found = self._tenant_target(matches, names, described)
            if found is not None:
                return found
        section = self.data.get("token")
        backend_of = section.get("backend") if isinstance(section, Mapping) else None
        where = self.source or "the config"
        if backend_of != backend_name:
            tenants = " or its tenants: template" if tenants_token is not None else ""
            raise RotationFailed(
                f"{described} is not configured here: {where} token.backend is {backend_of!r}{tenants}, and "
                f"this handler rotates {backend_name} secrets; nothing was changed"
            )
        backend = tokenstore.provider_from_config(self.data, source=self.source, cache=False)
        try:
            matched = matches(backend)  # type: ignore[arg-type]
        except BaseException:
            backend.close()
            raise
        if matched:
            return Target(backend=backend, tenant=None, field="token", close=backend.close)  # type: ignore[arg-type]
        source = backend.source
        backend.close()
        raise RotationFailed(
            f"{described} is not configured here ({where} token: names {source}): nothing was changed; point the "
            "rotation at the configured secret, or configure this one"
        )

    def _tenant_target(self, matches: Callable[[Backend], bool], names: Iterable[str], described: str) -> Target | None:
        import tokenstore

        tenants = tokenstore.tenants_from_config(self.data, source=self.source)
        try:
            template = tenants.template
            for name in names:
                tenant = template.tenant_of(name) if template is not None else None
                if tenant is None:
                    continue
                try:
                    provider = tenants.provider(tenant)
                except tokenstore.InvalidTenantKey as exc:
                    raise RotationFailed(f"{described}: {exc}; nothing was changed") from exc
                backend = provider.inner
                if isinstance(backend, tokenstore.Backend) and matches(backend):
                    logger.info("%s is the secret of tenant %s (%s)", described, tenant, backend.source)
                    return Target(backend=backend, tenant=tenant, field="tenants.token", close=tenants.close)
        except BaseException:
            tenants.close()
            raise
        tenants.close()
        return None


def _cache_wait(data: Mapping[str, Any], source: str | None) -> float:
    """The configured cache's ttl + refresh_ahead (``token.cache``, else ``tenants.token.cache``; 0 when the
    cache is off): by then every replica with this cache policy reads the store again. Building the providers
    does no I/O."""
    import tokenstore

    if isinstance(data.get("token"), Mapping):
        provider = tokenstore.provider_from_config(data, source=source)
        try:
            if isinstance(provider, tokenstore.CachingProvider):
                return float(provider.policy.ttl + provider.policy.refresh_ahead)
            return 0.0
        finally:
            provider.close()
    tenants = data.get("tenants")
    if isinstance(tenants, Mapping) and isinstance(tenants.get("token"), Mapping):
        if tenants["token"].get("cache") is False:
            return 0.0
        family = tokenstore.tenants_from_config(data, source=source)
        try:
            return float(family.policy.ttl + family.policy.refresh_ahead)
        finally:
            family.close()
    return 0.0


@contextmanager
def failures(store: str, step: str, secret: str) -> Iterator[None]:
    """Turn every failure inside into one logged :class:`RotationFailed` naming the step and the secret.

    Library errors (config, store, Graph, refused refreshes) carry messages without secrets by design; anything
    else is reported by its type only."""
    label = f"{store} {step} for {secret}"
    try:
        yield
    except RotationFailed as exc:
        exc.step = exc.step or step
        exc.secret = exc.secret or secret
        logger.error("%s failed: %s", label, exc)
        raise
    except RefreshRefused as exc:
        logger.error("%s refused: %s", label, exc)
        raise RotationFailed(f"{label} refused: {exc}", step=step, secret=secret) from exc
    except (ConfigError, TokenStoreError, SendError) as exc:
        logger.error("%s failed: %s: %s", label, type(exc).__name__, exc)
        raise RotationFailed(f"{label} failed: {type(exc).__name__}: {exc}", step=step, secret=secret) from exc
    except Exception as exc:
        logger.error("%s failed: unexpected %s", label, type(exc).__name__)
        raise RotationFailed(f"{label} failed: unexpected {type(exc).__name__}", step=step, secret=secret) from exc


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Rotation:
    """What the three handlers (:class:`AwsRotation`, :class:`AzureRotation`, :class:`GcpRotation`) share.

    ``config``: a path or mapping (default: ``$TOKENSTORE_CONFIG``), read on every invocation. ``sleep`` and
    ``now`` are the wait before revoking (``rotation.revoke_old_after``) and the clock.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.sleep = sleep
        self.now = now


def monotonic_sleep() -> Callable[[float], None]:
    return time.sleep


_SAFE = re.compile(r"[^A-Za-z0-9_./:@+=,-]")


def label(value: object, limit: int = 200) -> str:
    """An event field fit for a message: printable, bounded, never a long blob (which might be a secret)."""
    text = str(value)
    if len(text) > limit:
        return f"<{len(text)} characters>"
    return _SAFE.sub("?", text)

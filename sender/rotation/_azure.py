"""Azure Key Vault: refresh the token when Event Grid delivers ``Microsoft.KeyVault.SecretNearExpiry``.

Key Vault publishes ``SecretNearExpiry`` 30 days before a secret version's ``exp``. The handler takes that event
(Event Grid schema or CloudEvents 1.0; one event, a list, JSON text, or an Azure Functions ``EventGridEvent``),
finds the configured secret it names (``data.Id`` / ``VaultName`` + ``ObjectName``), and when that version is
still the latest, refreshes the token with :func:`sender.refresh_stored_token` and sets the new one with
``expires_on`` = the new token's own expiry: Key Vault fires again 30 days before the next expiry. A version
that is no longer the latest means the rotation already happened (Event Grid delivers at least once): nothing
is done. Other event types (``SecretNewVersionCreated``, which our own write causes) are logged and ignored so
that Event Grid does not redeliver them; a subscription validation event is answered.

Key Vault has no compare-and-set: the read-just-before-write check leaves a window of one round trip in which
a second writer is not noticed (see :func:`sender.refresh_stored_token`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tokenstore import Token, TokenProvider

from .._refresh import refresh_stored_token
from ._core import Rotation, RotationFailed, RotationResult, RotationSettings, failures, label, logger

if TYPE_CHECKING:
    from .._lifecycle import GraphTokenClient

__all__ = ["NEAR_EXPIRY", "AzureRotation", "azure_event_handler"]

NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"


class _ExpiringWrites(TokenProvider):
    """The Key Vault backend, writing each new token with ``expires_on`` = the token's expiry per Graph."""

    def __init__(self, backend: Any, graph: GraphTokenClient) -> None:
        self._backend = backend
        self._graph = graph
        self.source = backend.source
        #: the expiry the last write set
        self.expires_at: dt.datetime | None = None

    @property
    def supports_write(self) -> bool:
        return bool(self._backend.supports_write)

    @property
    def supports_compare_and_set(self) -> bool:
        return bool(getattr(self._backend, "supports_compare_and_set", False))

    def get_token(self) -> Token:
        return self._backend.get_token()  # type: ignore[no-any-return]

    def invalidate(self, token: Token | None = None) -> None:
        self._backend.invalidate(token)

    def put_token(self, value: str, **options: Any) -> str | None:
        info = self._graph.inspect(value)
        self.expires_at = info.expires_at
        return self._backend.put_token(value, expires_at=info.expires_at, **options)  # type: ignore[no-any-return]


class AzureRotation(Rotation):
    """The Event Grid handler, configurable; :func:`azure_event_handler` is one of these.

    ``config``: a path or mapping (default: ``$TOKENSTORE_CONFIG``), read on every event. ``sleep`` and ``now``
    are the wait before revoking (``rotation.revoke_old_after``, when set) and the clock.
    """

    def __call__(self, event: Any) -> list[dict[str, Any]] | dict[str, Any]:
        results = self.handle(event)
        for result in results:
            if result.action == "validated":
                return {"validationResponse": result.version}
        return [r.to_dict() for r in results]

    def handle(self, event: Any) -> list[RotationResult]:
        """Handle one event or a batch; each event is handled in turn, and the first failure raises."""
        return [self._one(e) for e in _events(event)]

    def _one(self, event: Mapping[str, Any]) -> RotationResult:
        kind = str(event.get("eventType") or event.get("type") or "")
        data = event.get("data")
        if not isinstance(data, Mapping):
            data = {}
        if kind == VALIDATION:
            code = data.get("validationCode")
            if not isinstance(code, str):
                raise RotationFailed("an Event Grid subscription validation event without data.validationCode")
            logger.info("azure: answering Event Grid's subscription validation")
            return RotationResult(store="azure", step=kind, action="validated", secret="-", version=code)
        name = label(data.get("ObjectName") or event.get("subject") or "?")
        if kind != NEAR_EXPIRY:
            logger.warning(
                "azure: ignored an event of type %s for %s: this handler acts on %s only (nothing was changed)",
                label(kind or "?"),
                name,
                NEAR_EXPIRY,
            )
            return RotationResult(store="azure", step=kind or "?", action="ignored", secret=name)
        with failures("azure", "SecretNearExpiry", name), contextlib.ExitStack() as stack:
            object_type = data.get("ObjectType")
            if object_type is not None and object_type != "Secret":
                raise RotationFailed(f"the event is about a Key Vault {label(object_type)}, not a secret")
            if not isinstance(data.get("ObjectName"), str):
                raise RotationFailed("the event's data has no ObjectName: not Key Vault's SecretNearExpiry schema")
            settings = RotationSettings.load(self.config)
            target = settings.target(
                "azure", lambda backend: _matches(backend, data), f"Key Vault secret {name}", [data["ObjectName"]]
            )
            backend = target.backend
            stack.callback(target.close)
            result = RotationResult(
                store="azure",
                step=NEAR_EXPIRY,
                action="nothing",
                secret=name,
                source=backend.source,
                tenant=target.tenant,
            )
            current = backend.get_token()
            result.old_fingerprint = current.fingerprint
            version = data.get("Version")
            if isinstance(version, str) and version and current.version and current.version != version:
                result.version = current.version
                result.note(
                    f"version {label(version)} is no longer the latest ({current.version} is): already rotated, "
                    "nothing to do"
                )
                return result
            graph = settings.graph("the Key Vault SecretNearExpiry handler")
            stack.callback(graph.close)
            store = _ExpiringWrites(backend, graph)
            revoke_after = settings.revoke_old_after if settings.revoke_configured else None
            done = refresh_stored_token(
                store,
                graph,
                revoke_old_after=revoke_after,
                wait_reason="rotation.revoke_old_after",
                sleep=self.sleep,
                now=self.now,
                report=lambda step, text: logger.info("azure SecretNearExpiry %s: %s: %s", name, step, text),
                read_back=backend.get_token,
            )
            result.action = "refreshed" if done.action == "refreshed" else "nothing"
            result.new_fingerprint, result.version = done.new_fingerprint, done.version
            if done.revoked:
                result.revoked.append(done.old_fingerprint)
            exp = "none" if store.expires_at is None else store.expires_at.isoformat(timespec="seconds")
            result.note(
                f"set version {done.version} ({done.new_fingerprint}) with expires_on {exp}; old token "
                + ("revoked" if done.revoked else done.revoke_note or "left to expire on its own (within 30 days)")
            )
            return result


def _matches(backend: Any, data: Mapping[str, Any]) -> bool:
    if getattr(backend, "secret_name", None) != data.get("ObjectName"):
        return False
    vault = urlsplit(str(getattr(backend, "vault_url", "")))
    ident = data.get("Id")
    if isinstance(ident, str) and ident:
        where = urlsplit(ident)
        return where.netloc.lower() == vault.netloc.lower() and where.path.startswith(f"/secrets/{data['ObjectName']}")
    vault_name = data.get("VaultName")
    return isinstance(vault_name, str) and vault_name.lower() == (vault.hostname or "").split(".")[0].lower()


def _events(event: Any) -> list[Mapping[str, Any]]:
    """The events in what the runtime handed over: a mapping, a list of them, JSON text or bytes, or an Azure
    Functions ``EventGridEvent`` (``get_json()`` + ``event_type``)."""
    if isinstance(event, (bytes, bytearray)):
        event = event.decode("utf-8", "replace")
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except ValueError:
            logger.error("azure: the event is not JSON")
            raise RotationFailed("the event is not JSON: expected an Event Grid or CloudEvents event") from None
    if hasattr(event, "get_json") and hasattr(event, "event_type"):
        event = {
            "eventType": event.event_type,
            "subject": getattr(event, "subject", None),
            "id": getattr(event, "id", None),
            "data": event.get_json(),
        }
    if isinstance(event, Mapping):
        if event.get("specversion") and isinstance(event.get("data_base64"), str):
            event = {**event, "data": json.loads(base64.b64decode(event["data_base64"]))}
        return [event]
    if isinstance(event, list) and all(isinstance(e, Mapping) for e in event):
        return list(event)
    logger.error("azure: the event is a %s, not an Event Grid event", type(event).__name__)
    raise RotationFailed(f"not an Event Grid or CloudEvents event: got a {type(event).__name__}")


def azure_event_handler(event: Any) -> list[dict[str, Any]] | dict[str, Any]:
    """Handle Event Grid's ``Microsoft.KeyVault.SecretNearExpiry`` for the secret ``$TOKENSTORE_CONFIG`` configures.

    From an Azure Function with an Event Grid trigger: ``def main(event: func.EventGridEvent):
    azure_event_handler(event)``. From a webhook: pass the request body (answers subscription validation)."""
    return AzureRotation()(event)

"""GCP Secret Manager: refresh the token when Pub/Sub delivers Secret Manager's ``SECRET_ROTATE`` notification.

A secret with ``rotation.next_rotation_time`` + ``rotation.rotation_period`` and a Pub/Sub ``topics`` entry gets a
message at each rotation time: attributes ``eventType=SECRET_ROTATE``, ``secretId=projects/P/secrets/S``,
``dataFormat=JSON_API_V1``; data = the Secret resource as base64 JSON. The handler takes it as a Cloud
Functions CloudEvent (``messagePublished``: ``data.message``), a Cloud Run push subscription's envelope
(``{"message": ..., "subscription": ...}``), a first-generation background event (``{"attributes", "data"}``),
or JSON text of any of those; finds the configured secret ``secretId`` names; and refreshes the token with
:func:`sender.refresh_stored_token`, which adds a version. A redelivered message (Pub/Sub delivers at least
once) finds a token issued after the message was published: nothing is done. Other event types
(``SECRET_VERSION_ADD``, which our own write causes, ``SECRET_UPDATE``, ...) are logged and ignored, so that
Pub/Sub does not redeliver them.

On failure :class:`~sender.rotation.RotationFailed` is raised: answer the push with a 5xx (or let the function
fail) and Pub/Sub redelivers with backoff. The latest version is then unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from .._refresh import refresh_stored_token
from ._core import Rotation, RotationFailed, RotationResult, RotationSettings, failures, label, logger

__all__ = ["SECRET_ROTATE", "GcpRotation", "gcp_pubsub_handler"]

SECRET_ROTATE = "SECRET_ROTATE"
_SECRET = re.compile(r"projects/([^/]+)/secrets/([^/]+)\Z")


class GcpRotation(Rotation):
    """The Pub/Sub handler, configurable; :func:`gcp_pubsub_handler` is one of these.

    ``config``: a path or mapping (default: ``$TOKENSTORE_CONFIG``), read on every message. ``sleep`` and
    ``now`` are the wait before revoking (``rotation.revoke_old_after``, when set) and the clock.
    """

    def __call__(self, message: Any, context: Any = None) -> dict[str, Any]:
        return self.handle(message, context).to_dict()

    def handle(self, message: Any, context: Any = None) -> RotationResult:
        attributes, published = _message(message, context)
        kind = str(attributes.get("eventType") or "")
        secret_id = label(attributes.get("secretId") or "?")
        if kind != SECRET_ROTATE:
            logger.warning(
                "gcp: ignored a %s notification for %s: this handler acts on %s only (nothing was changed)",
                label(kind or "message without eventType"),
                secret_id,
                SECRET_ROTATE,
            )
            return RotationResult(store="gcp", step=kind or "?", action="ignored", secret=secret_id)
        with failures("gcp", SECRET_ROTATE, secret_id), contextlib.ExitStack() as stack:
            match = _SECRET.match(str(attributes.get("secretId") or ""))
            if match is None:
                raise RotationFailed("the message's secretId attribute is not projects/PROJECT/secrets/NAME")
            project, name = match.groups()
            settings = RotationSettings.load(self.config)

            def matches(backend: Any) -> bool:
                if getattr(backend, "secret", None) != name:
                    return False
                # Secret Manager names the project by number in notifications; a config may use the project id
                return bool(getattr(backend, "project", None) == project or project.isdigit())

            target = settings.target("gcp", matches, f"secret {secret_id}", [name])
            backend = target.backend
            stack.callback(target.close)
            result = RotationResult(
                store="gcp",
                step=SECRET_ROTATE,
                action="nothing",
                secret=secret_id,
                source=backend.source,
                tenant=target.tenant,
            )
            graph = settings.graph("the Secret Manager SECRET_ROTATE handler")
            stack.callback(graph.close)
            if published is not None:
                current = backend.get_token()
                info = graph.inspect(current)
                # debug_token's issued_at is whole seconds: a token from the second the message was published
                # on is this rotation's (or a newer one's)
                if info.is_valid and info.issued_at is not None and info.issued_at >= published.replace(microsecond=0):
                    result.old_fingerprint, result.version = current.fingerprint, current.version
                    result.note(
                        f"the stored token {current.fingerprint} was issued at {info.issued_at.isoformat()}, "
                        f"after this message was published ({published.isoformat()}): already rotated, nothing to do"
                    )
                    return result
            revoke_after = settings.revoke_old_after if settings.revoke_configured else None
            done = refresh_stored_token(
                backend,
                graph,
                revoke_old_after=revoke_after,
                wait_reason="rotation.revoke_old_after",
                sleep=self.sleep,
                now=self.now,
                report=lambda step, text: logger.info("gcp SECRET_ROTATE %s: %s: %s", secret_id, step, text),
            )
            result.old_fingerprint = done.old_fingerprint
            result.action = "refreshed" if done.action == "refreshed" else "nothing"
            result.new_fingerprint, result.version = done.new_fingerprint, done.version
            if done.revoked:
                result.revoked.append(done.old_fingerprint)
            result.note(
                f"added version {done.version} ({done.new_fingerprint}); old token "
                + ("revoked" if done.revoked else done.revoke_note or "left valid until its own expiry")
            )
            return result


def _message(message: Any, context: Any) -> tuple[Mapping[str, Any], dt.datetime | None]:
    """(attributes, publish time) from any of the shapes the runtimes deliver."""
    if isinstance(message, (bytes, bytearray)):
        message = message.decode("utf-8", "replace")
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except ValueError:
            logger.error("gcp: the push body is not JSON")
            raise RotationFailed("the message is not JSON: expected a Pub/Sub push envelope") from None
    if not isinstance(message, Mapping) and isinstance(getattr(message, "data", None), Mapping):
        message = message.data  # a CloudEvent (functions_framework): data = {"message": ..., "subscription": ...}
    if isinstance(message, Mapping) and isinstance(message.get("message"), Mapping):
        message = message["message"]
    if not isinstance(message, Mapping) or not isinstance(message.get("attributes"), Mapping):
        logger.error("gcp: not a Pub/Sub message (no attributes)")
        raise RotationFailed("not a Pub/Sub message: expected attributes eventType and secretId")
    published = _time(message.get("publishTime") or message.get("publish_time"))
    if published is None and context is not None:
        published = _time(getattr(context, "timestamp", None))
    data = message.get("data")
    if isinstance(data, str) and data:
        try:
            json.loads(base64.b64decode(data, validate=True))
        except ValueError:
            logger.warning("gcp: the message's data is not base64 JSON (the Secret resource); using the attributes")
    return message["attributes"], published


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    fraction = re.match(r"(.*\.\d{6})\d*(.*)\Z", text)  # Pub/Sub sends nanoseconds; Python reads microseconds
    if fraction:
        text = fraction.group(1) + fraction.group(2)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def gcp_pubsub_handler(message: Any, context: Any = None) -> dict[str, Any]:
    """Handle Secret Manager's ``SECRET_ROTATE`` for the secret ``$TOKENSTORE_CONFIG`` configures.

    Cloud Functions: ``@functions_framework.cloud_event def main(event): gcp_pubsub_handler(event)``. Cloud Run:
    pass the push request's JSON body; answer 204 on return, 500 on :class:`~sender.rotation.RotationFailed`."""
    return GcpRotation()(message, context)

"""AWS Secrets Manager rotation function for a Meta access token: the four steps as Secrets Manager runs them.

Secrets Manager calls the function four times per rotation with ``{"SecretId", "ClientRequestToken", "Step"}``;
``ClientRequestToken`` is the id of the new version, which the service has already labelled AWSPENDING:

* ``createSecret`` - exchange the AWSCURRENT token (``fb_exchange_token``), validate the new one (valid, same
  app, ``whatsapp_business_messaging`` for the same WABAs, expiry in the future) and put it as that AWSPENDING
  version. Nothing when AWSPENDING already holds a token for this request (AWS retries steps). A token that was
  obtained but could not be stored is revoked (nobody would hold it). Before that, the token of the previous
  rotation (AWSPREVIOUS) is revoked, once AWSCURRENT has been current longer than ``rotation.revoke_old_after``
  (every replica's cache has moved), and never when it is the token AWSCURRENT holds.
* ``setSecret`` - nothing: Meta issued the token in createSecret; there is no database password to set.
* ``testSecret`` - ``debug_token`` on the AWSPENDING token, judged against the AWSCURRENT one.
* ``finishSecret`` - move AWSCURRENT to the new version with ``RemoveFromVersionId`` = the version that holds
  it (AWS's compare-and-set: the old one becomes AWSPREVIOUS), then take AWSPENDING off the new version. When
  the function has time left for ``rotation.revoke_old_after`` (``context.get_remaining_time_in_millis()``), it
  waits that long, checks AWSCURRENT still holds the new token, and revokes the old one; otherwise the next
  rotation's createSecret does.

Every step is idempotent. A failure raises :class:`~sender.rotation.RotationFailed` (logged first): Secrets
Manager then retries the step, and AWSCURRENT stays where it was.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tokenstore import SecretNotFound, Token

from .._exceptions import SendError
from .._refresh import exchange_and_validate, validate_refreshed
from ._core import Rotation, RotationFailed, RotationResult, RotationSettings, Target, failures, label, logger

if TYPE_CHECKING:
    from tokenstore.backends.aws import AwsBackend, SecretVersions

    from .._lifecycle import GraphTokenClient

__all__ = ["STEPS", "AwsRotation", "aws_lambda_handler"]

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
AWSCURRENT, AWSPENDING, AWSPREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
#: what finishSecret keeps in hand after waiting before it revokes the old token
_MARGIN = 10.0


class AwsRotation(Rotation):
    """The rotation function, configurable for tests and wrappers; :func:`aws_lambda_handler` is one of these.

    ``config``: a path or mapping (default: ``$TOKENSTORE_CONFIG``), read on every invocation so a changed
    config or app secret is picked up. ``sleep`` and ``now`` are the wait and the clock.
    """

    def __call__(self, event: Any, context: Any = None) -> dict[str, Any]:
        return self.handle(event, context).to_dict()

    def handle(self, event: Any, context: Any = None) -> RotationResult:
        secret_id, request, step = _parse(event)
        with failures("aws", step, secret_id), contextlib.ExitStack() as stack:
            settings = RotationSettings.load(self.config)
            target, versions = self._target(settings, secret_id)
            stack.callback(target.close)
            backend: AwsBackend = target.backend  # type: ignore[assignment]
            result = RotationResult(
                store="aws", step=step, action="nothing", secret=secret_id, source=backend.source, tenant=target.tenant
            )
            logger.info("aws %s for %s (version %s, %s)", step, secret_id, request, backend.source)
            if not versions.rotation_enabled:
                raise RotationFailed(f"rotation is not enabled on {secret_id}: nothing was changed")
            stages = versions.stages.get(request)
            if stages is None:
                raise RotationFailed(
                    f"version {request} (the ClientRequestToken) is not a version of {secret_id}: nothing was changed"
                )
            if AWSCURRENT in stages:
                if step == "finishSecret" and AWSPENDING in stages:
                    backend.remove_stage(AWSPENDING, from_version=request)
                    result.note(f"version {request} is AWSCURRENT already; AWSPENDING taken off it")
                else:
                    result.note(f"version {request} is AWSCURRENT already: nothing to do")
                result.version = request
                return result
            if AWSPENDING not in stages:
                raise RotationFailed(
                    f"version {request} of {secret_id} is not labelled AWSPENDING (it is "
                    f"{', '.join(stages) or 'unlabelled'}): another rotation moved on; nothing was changed"
                )
            if step == "setSecret":
                result.note("nothing to set: Meta issued the token in createSecret, and nothing else holds a copy")
                return result
            graph = settings.graph("the Secrets Manager rotation function")
            stack.callback(graph.close)
            if step == "createSecret":
                self._create(backend, graph, settings, versions, request, result)
            elif step == "testSecret":
                self._test(backend, graph, request, result)
            else:
                self._finish(backend, graph, settings, versions, request, result, context)
            return result

    # -- resolving the secret -------------------------------------------------------------------------------
    def _target(self, settings: RotationSettings, secret_id: str) -> tuple[Target, SecretVersions]:
        found: dict[str, SecretVersions] = {}

        def matches(backend: Any) -> bool:
            if getattr(backend, "service", None) != "secretsmanager":
                raise RotationFailed(
                    f"{settings.source or 'the config'} token.aws names an SSM parameter: a Secrets Manager rotation "
                    "function rotates a Secrets Manager secret"
                )
            if not backend.supports_write:
                raise RotationFailed(
                    "token.aws is pinned to a version or stage: the rotation function must read AWSCURRENT"
                )
            versions = backend.describe_versions()
            found["versions"] = versions
            return secret_id in (backend.secret_id, *versions.names())

        target = settings.target("aws", matches, f"secret {secret_id}", _names(secret_id))
        return target, found["versions"]

    # -- the steps ------------------------------------------------------------------------------------------
    def _create(
        self,
        backend: AwsBackend,
        graph: GraphTokenClient,
        settings: RotationSettings,
        versions: SecretVersions,
        request: str,
        result: RotationResult,
    ) -> None:
        current = backend.get_token_at(stage=AWSCURRENT)
        result.old_fingerprint = current.fingerprint
        try:
            pending = backend.get_token_at(stage=AWSPENDING, version_id=request)
        except SecretNotFound:
            pending = None
        if pending is not None:
            result.new_fingerprint, result.version = pending.fingerprint, request
            result.note(f"AWSPENDING (version {request}) already holds {pending.fingerprint}: nothing to do")
            return
        self._revoke_previous(backend, graph, settings, versions, current, result)
        info = graph.inspect(current)
        if info.is_valid and info.never_expires:
            raise RotationFailed(
                f"the AWSCURRENT token {current.fingerprint} never expires; exchanging it would replace it with one "
                "that expires in 60 days: nothing was changed. Turn rotation off for this secret, or store a 60-day "
                "token"
            )
        issued, new_info, warnings = exchange_and_validate(graph, current, info, now=self.now())
        for warning in warnings:
            result.note(f"warning: {warning}")
        new = issued.token
        try:
            backend.put_pending(new.reveal(), client_request_token=request)
            stored = backend.get_token_at(stage=AWSPENDING, version_id=request)
        except Exception:
            outcome = _discard(graph, new, "it could not be stored as AWSPENDING")
            logger.error("aws createSecret: the new token %s was not stored: %s", new.fingerprint, outcome)
            raise
        if stored != new:
            # another invocation of this step wrote its own token to this version meanwhile: ours is held by nobody
            outcome = _discard(graph, new, "another invocation stored its token first")
            result.note(
                f"AWSPENDING holds {stored.fingerprint} from another invocation; ours {new.fingerprint}: {outcome}"
            )
            result.new_fingerprint, result.version = stored.fingerprint, request
            return
        result.action, result.new_fingerprint, result.version = "staged", new.fingerprint, request
        expires = "never" if new_info.expires_at is None else new_info.expires_at.isoformat(timespec="seconds")
        result.note(f"exchanged {current.fingerprint} for {new.fingerprint} (expires {expires}); put as AWSPENDING")

    def _test(self, backend: AwsBackend, graph: GraphTokenClient, request: str, result: RotationResult) -> None:
        try:
            pending = backend.get_token_at(stage=AWSPENDING, version_id=request)
        except SecretNotFound as exc:
            raise RotationFailed(f"AWSPENDING (version {request}) holds no token: createSecret has not run") from exc
        current = backend.get_token_at(stage=AWSCURRENT)
        result.old_fingerprint, result.new_fingerprint, result.version = (
            current.fingerprint,
            pending.fingerprint,
            request,
        )
        new_info = graph.inspect(pending)
        old_info = graph.inspect(current)
        problems, warnings = validate_refreshed(new_info, old_info, graph.app_id, self.now())
        if problems:
            raise RotationFailed(
                f"the AWSPENDING token {pending.fingerprint} failed the test; AWSCURRENT still holds "
                f"{current.fingerprint}: " + "; ".join(problems)
            )
        for warning in warnings:
            result.note(f"warning: {warning}")
        result.action = "tested"
        wabas = ", ".join(new_info.waba_ids) or "-"
        result.note(f"AWSPENDING {pending.fingerprint}: valid, app {new_info.app_id}, WABA {wabas}")

    def _finish(
        self,
        backend: AwsBackend,
        graph: GraphTokenClient,
        settings: RotationSettings,
        versions: SecretVersions,
        request: str,
        result: RotationResult,
        context: Any,
    ) -> None:
        old_version = versions.version_with(AWSCURRENT)
        try:
            pending = backend.get_token_at(stage=AWSPENDING, version_id=request)
        except SecretNotFound as exc:
            raise RotationFailed(f"AWSPENDING (version {request}) holds no token: createSecret has not run") from exc
        old = backend.get_token_at(version_id=old_version) if old_version else None
        backend.move_stage(AWSCURRENT, to_version=request, from_version=old_version)
        backend.remove_stage(AWSPENDING, from_version=request)
        result.action, result.version, result.new_fingerprint = "finished", request, pending.fingerprint
        result.old_fingerprint = old.fingerprint if old is not None else None
        result.note(
            f"AWSCURRENT moved to version {request} ({pending.fingerprint}); version {old_version} is AWSPREVIOUS"
        )
        if old is None or old == pending:
            return
        wait = settings.revoke_old_after
        left = _remaining(context)
        if left is None or left < wait + _MARGIN:
            why = "no time left in this invocation" if left is not None else "no Lambda context"
            result.note(
                f"the old token {old.fingerprint} stays valid ({why} to wait {wait:g} s for every replica's cache): "
                "the next rotation's createSecret revokes it"
            )
            return
        if wait > 0:
            result.note(f"waiting {wait:g} s before revoking {old.fingerprint} (rotation.revoke_old_after)")
            self.sleep(wait)
        held = backend.get_token_at(stage=AWSCURRENT)
        if held != pending:
            result.note(
                f"after the wait AWSCURRENT holds {held.fingerprint}, not {pending.fingerprint}: nothing revoked"
            )
            return
        _revoke_old(graph, old, held, result)

    def _revoke_previous(
        self,
        backend: AwsBackend,
        graph: GraphTokenClient,
        settings: RotationSettings,
        versions: SecretVersions,
        current: Token,
        result: RotationResult,
    ) -> None:
        """Revoke the AWSPREVIOUS token of the last rotation, once every replica has had time to move on."""
        previous_version = versions.version_with(AWSPREVIOUS)
        current_version = versions.version_with(AWSCURRENT)
        if previous_version is None or previous_version == current_version:
            return
        try:
            previous = backend.get_token_at(version_id=previous_version)
        except SecretNotFound:
            return
        if previous == current:
            return
        created = versions.created.get(current_version or "")
        wait = settings.revoke_old_after
        if created is None or (self.now() - created).total_seconds() < wait:
            result.note(
                f"AWSPREVIOUS {previous.fingerprint} not revoked: AWSCURRENT is younger than {wait:g} s "
                "(rotation.revoke_old_after), some replica may still use the previous token"
            )
            return
        _revoke_old(graph, previous, current, result)


def _revoke_old(graph: GraphTokenClient, old: Token, current: Token, result: RotationResult) -> None:
    """Revoke ``old`` (never ``current``, the token the store holds), authenticated with ``current``."""
    if old == current:
        return
    try:
        info = graph.inspect(old)
        if not info.is_valid:
            result.note(f"{old.fingerprint}: already invalid at Graph, nothing to revoke")
            return
        if info.app_id and info.app_id != graph.app_id:
            result.note(f"{old.fingerprint} belongs to app {info.app_id}, not {graph.app_id}: not revoked")
            return
        graph.revoke(old, access_token=current)
    except SendError as exc:
        logger.warning("aws: revoking the old token %s failed: %s: %s", old.fingerprint, type(exc).__name__, exc)
        result.note(f"revoking {old.fingerprint} failed ({type(exc).__name__}); the next rotation tries again")
        return
    result.revoked.append(old.fingerprint)
    result.note(f"revoked the old token {old.fingerprint}")


def _discard(graph: GraphTokenClient, token: Token, why: str) -> str:
    try:
        graph.revoke(token)
    except SendError as exc:
        return f"revoking it failed ({type(exc).__name__}); it stays valid until it expires"
    return f"revoked it ({why})"


_ARN = re.compile(r"arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:(.+)\Z")


def _names(secret_id: str) -> list[str]:
    """The names a SecretId may stand for: itself, or for an ARN the name in it (AWS appends ``-`` and six
    random characters to a secret's name in its ARN)."""
    match = _ARN.match(secret_id)
    if match is None:
        return [secret_id]
    tail = match.group(1)
    stripped = re.sub(r"-[A-Za-z0-9]{6}\Z", "", tail)
    return [stripped, tail] if stripped != tail else [tail]


def _remaining(context: Any) -> float | None:
    method = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(method):
        return None
    try:
        return float(method()) / 1000.0
    except (TypeError, ValueError):
        return None


def _parse(event: Any) -> tuple[str, str, str]:
    if not isinstance(event, Mapping):
        logger.error("aws rotation: the event is a %s, not Secrets Manager's rotation event", type(event).__name__)
        raise RotationFailed(
            "not a Secrets Manager rotation event (expected a mapping with SecretId, ClientRequestToken, Step)"
        )
    values = {key: event.get(key) for key in ("SecretId", "ClientRequestToken", "Step")}
    missing = [key for key, value in values.items() if not isinstance(value, str) or not value]
    if missing:
        logger.error("aws rotation: the event lacks %s", ", ".join(missing))
        raise RotationFailed(f"not a Secrets Manager rotation event: {', '.join(missing)} missing")
    step = str(values["Step"])
    secret = label(values["SecretId"])
    if step not in STEPS:
        logger.error("aws rotation: unknown step %s for %s", label(step), secret)
        raise RotationFailed(f"unknown rotation step {label(step)} for {secret}: expected one of {', '.join(STEPS)}")
    return str(values["SecretId"]), str(values["ClientRequestToken"]), step


def aws_lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The Secrets Manager rotation function: set the Lambda's handler to ``sender.rotation.aws_lambda_handler``
    and ``TOKENSTORE_CONFIG`` to the config file packaged with it."""
    return AwsRotation()(event, context)

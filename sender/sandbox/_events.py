"""Webhook events the sandbox produces, and the uninstall that produces one.

A customer who removes the app in Business Settings (:func:`uninstall`) makes every token of its business
die at once (Graph's 190 with subcode 458, "the user has not authorized application") and Meta sends the
app an ``account_update`` webhook with ``PARTNER_APP_UNINSTALLED``. The sandbox builds that payload in
Meta's shape (:func:`account_update_event`), keeps it in ``SandboxState.events`` and hands it to every hook
in ``SandboxState.event_hooks`` (``Sandbox.add_event_hook(fn)``): a webhook delivery (signing and POSTing
it to an app's callback URL) is wired there. No token is ever part of an event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._state import SandboxState

__all__ = ["account_update_event", "emit_event", "tokens_of_waba", "uninstall"]

logger = logging.getLogger("sender.sandbox")


def account_update_event(
    waba_id: str, event: str, *, app_id: str, at: int, owner_business_id: str | None = None
) -> dict[str, Any]:
    """An ``account_update`` webhook payload (``PARTNER_APP_UNINSTALLED`` / ``PARTNER_APP_INSTALLED``)."""
    waba_info: dict[str, Any] = {"waba_id": waba_id, "partner_app_id": app_id}
    if owner_business_id:
        waba_info["owner_business_id"] = owner_business_id
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "time": at,
                "changes": [{"field": "account_update", "value": {"event": event, "waba_info": waba_info}}],
            }
        ],
    }


def tokens_of_waba(state: SandboxState, waba_id: str) -> list[str]:
    """Fingerprints of the tokens that act for ``waba_id`` (``SandboxState.token_wabas``: their granular
    scopes name it; a token without granular targets acts for the default business)."""
    return [r.fingerprint for r in state.tokens.records() if waba_id in state.token_wabas(r)]


def emit_event(state: SandboxState, payload: dict[str, Any]) -> None:
    """Keep ``payload`` in ``state.events`` and hand it to every hook (a failing hook is logged, not raised)."""
    with state.lock:
        state.events.append(payload)
        hooks = list(state.event_hooks)
    for hook in hooks:
        try:
            hook(payload)
        except Exception:
            logger.exception("a sandbox event hook failed")


def uninstall(state: SandboxState, waba_id: str) -> tuple[int, dict[str, Any]]:
    """The customer of ``waba_id`` removes the app: its tokens stop working now (190/458) and an
    ``account_update`` ``PARTNER_APP_UNINSTALLED`` event is emitted. Returns (tokens killed, the event)."""
    now = int(state.clock())
    killed = 0
    for fingerprint in tokens_of_waba(state, waba_id):
        record = state.tokens.find(fingerprint)
        if record is not None and record.uninstalled_at is None and record.status(now) == "valid":
            record.uninstalled_at = now
            killed += 1
    payload = account_update_event(waba_id, "PARTNER_APP_UNINSTALLED", app_id=state.app.app_id, at=now)
    emit_event(state, payload)
    return killed, payload

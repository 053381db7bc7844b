"""Webhook events the sandbox produces, and the uninstall that produces one.

A customer who removes the app in Business Settings (:func:`uninstall`) makes every token of its business
die at once (Graph's 190 with subcode 458, "the user has not authorized application") and Meta sends the
app an ``account_update`` webhook with ``PARTNER_APP_UNINSTALLED``. The sandbox builds that payload in
Meta's shape (:func:`~sender.sandbox.account_update_payload`), keeps it in ``SandboxState.events`` and hands
it to every hook in ``SandboxState.event_hooks`` (``Sandbox.add_event_hook(fn)``); the first is the webhook
delivery, which signs and POSTs it to the app's callback URL when one is subscribed. No token is ever part of an event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._webhooks import account_update_payload

if TYPE_CHECKING:
    from ._state import SandboxState

__all__ = ["emit_event", "tokens_of_waba", "uninstall"]

logger = logging.getLogger("sender.sandbox")


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
    business = state.businesses.find(waba_id)
    payload = account_update_payload(
        "PARTNER_APP_UNINSTALLED",
        waba_id=waba_id,
        partner_app_id=state.app.app_id,
        timestamp=now,
        **({"owner_business_id": business.business_id} if business is not None else {}),
    )
    emit_event(state, payload)
    return killed, payload

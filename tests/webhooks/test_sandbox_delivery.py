"""The sandbox delivers signed status webhooks (sent -> delivered -> read, or failed on command) to a
registered callback URL, carrying biz_opaque_callback_data; it can switch to a new app secret; and a real
WSGI server (wsgiref) running sender.WebhookWSGI verifies every one with the secret from the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

import sender
from sender.sandbox import Sandbox, account_update_payload
from tests.contract import canary
from tests.sender.conftest import Store, make_sender
from tests.webhooks.conftest import Clock, SecretFile, wsgi_server

TO = "15551234567"


@dataclass
class Receiver:
    url: str
    verifier: sender.WebhookVerifier
    events: list[sender.WebhookEvent] = field(default_factory=list)
    updates: list[sender.AccountUpdateEvent] = field(default_factory=list)
    reconciler: sender.Reconciler = field(default_factory=sender.Reconciler)

    def statuses(self) -> list[tuple[str | None, str | None, str | None]]:
        return [
            (e.message_id, e.status, e.biz_opaque_callback_data)
            for e in self.events
            if isinstance(e, sender.StatusEvent)
        ]


@pytest.fixture
def receiver(sandbox: Sandbox, app_secret: SecretFile, verify_token: SecretFile, clock: Clock) -> Iterator[Receiver]:
    sandbox.rotate_app_secret(app_secret.value)  # the sandbox app's secret is the canary in our store
    verifier = sender.WebhookVerifier(app_secret.provider(), verify_token=verify_token.provider(), clock=clock)
    box: list[Receiver] = []
    app = sender.WebhookWSGI(
        verifier,
        on_event=lambda e: box[0].events.append(e),
        on_account_update=lambda e: box[0].updates.append(e),
        reconciler=None,
    )
    with wsgi_server(app) as base:
        rec = Receiver(url=base + "/webhook", verifier=verifier)
        app.handler.reconciler = rec.reconciler
        box.append(rec)
        sandbox.subscribe_webhook(rec.url, verify_token.value)  # Meta's GET handshake first
        yield rec


def test_statuses_arrive_signed_in_order_with_the_callback_data(
    sandbox: Sandbox, store: Store, receiver: Receiver, app_secret: SecretFile
) -> None:
    with make_sender(sandbox, store.cached()) as s:
        one = s.send_text(TO, "one", biz_opaque_callback_data="ref-one")
        two = s.send_template(TO, "hello_world", biz_opaque_callback_data="ref-two")
        three = s.send_text(TO, "no reference")
    assert sandbox.wait_for_webhooks(10)
    assert receiver.statuses() == [
        (one.message_id, "sent", "ref-one"),
        (one.message_id, "delivered", "ref-one"),
        (one.message_id, "read", "ref-one"),
        (two.message_id, "sent", "ref-two"),
        (two.message_id, "delivered", "ref-two"),
        (two.message_id, "read", "ref-two"),
        (three.message_id, "sent", None),
        (three.message_id, "delivered", None),
        (three.message_id, "read", None),
    ]
    deliveries = sandbox.webhook_deliveries
    assert len(deliveries) == 9 and all(d.delivered and d.http_statuses == [200] for d in deliveries)
    sent = receiver.events[0]
    assert isinstance(sent, sender.StatusEvent)
    assert sent.phone_number_id == sandbox.phone_number_id and sent.waba_id == sandbox.waba_id
    assert sent.recipient_id == TO and sent.pricing is not None and sent.pricing.category == "service"
    assert receiver.verifier.stats["accepted"] == 9 and app_secret.reads == 1
    assert receiver.reconciler.status("ref-two").status == "read"  # type: ignore[union-attr]


def test_failed_on_command_carries_meta_error_code_and_title(
    sandbox: Sandbox, store: Store, receiver: Receiver
) -> None:
    sandbox.fail_delivery_next(131026, title="Message undeliverable")
    with make_sender(sandbox, store.cached()) as s:
        bad = s.send_text(TO, "to nowhere", biz_opaque_callback_data="ref-bad")
        good = s.send_text(TO, "fine", biz_opaque_callback_data="ref-good")
    assert sandbox.wait_for_webhooks(10)
    assert [(m, st) for m, st, _ in receiver.statuses()] == [
        (bad.message_id, "sent"),
        (bad.message_id, "failed"),
        (good.message_id, "sent"),
        (good.message_id, "delivered"),
        (good.message_id, "read"),
    ]
    failed = receiver.reconciler.status("ref-bad")
    assert failed is not None and failed.failed
    assert (failed.error_code, failed.error_title) == (131026, "Message undeliverable")


def test_app_secret_rotation_mid_stream_loses_no_webhook(
    sandbox: Sandbox, store: Store, receiver: Receiver, app_secret: SecretFile, clock: Clock
) -> None:
    """Meta resets the secret first, the operator writes it to the store a moment later: the webhooks in
    between are refused (401) and Meta (here the sandbox) retries them; after the store has the new secret,
    the verifier refetches on the first mismatch and every webhook is accepted. None is lost."""
    old = app_secret.value
    with make_sender(sandbox, store.cached()) as s:
        before = s.send_text(TO, "before", biz_opaque_callback_data="ref-before")
        assert sandbox.wait_for_webhooks(10)
        new = canary("appsecret")
        sandbox.rotate_app_secret(new)  # the dashboard's "Reset": the store still holds the old one
        during = s.send_text(TO, "during", biz_opaque_callback_data="ref-during")
        deadline = time.monotonic() + 10
        while not any(401 in d.http_statuses for d in sandbox.webhook_deliveries):
            assert time.monotonic() < deadline, "no delivery was refused while the store held the old secret"
            time.sleep(0.01)
        app_secret.write(new)  # the operator catches up ...
        clock.advance(30)  # ... and refetch_interval has passed since the refused delivery's refetch
        after = s.send_text(TO, "after", biz_opaque_callback_data="ref-after")
    assert sandbox.wait_for_webhooks(15)
    deliveries = sandbox.webhook_deliveries
    assert len(deliveries) == 9 and all(d.delivered for d in deliveries), [d.summary() for d in deliveries]
    assert [d.secret_fingerprint for d in deliveries[3:]] == [sender_fp(new)] * 6
    assert any(d.http_statuses[0] == 401 for d in deliveries[3:6])  # refused, then retried
    for ref in ("ref-before", "ref-during", "ref-after"):
        assert receiver.reconciler.status(ref).status == "read"  # type: ignore[union-attr]
    assert {m for m, _, _ in receiver.statuses()} == {before.message_id, during.message_id, after.message_id}
    # the old secret's signature no longer verifies anything
    body = deliveries[0].body
    from tests.webhooks.conftest import sign

    with pytest.raises(sender.InvalidSignature):
        receiver.verifier.verify(body, sign(old, body))


def sender_fp(value: str) -> str:
    from tokenstore import fingerprint_of

    return fingerprint_of(value)


def test_emit_webhook_delivers_an_account_update(sandbox: Sandbox, receiver: Receiver) -> None:
    delivery = sandbox.emit_webhook(account_update_payload("PARTNER_APP_UNINSTALLED", waba_id="555000111"))
    assert sandbox.wait_for_webhooks(10) and delivery.delivered
    (update,) = receiver.updates
    assert update.uninstalled and update.account_waba_id == "555000111"


def test_handshake_with_a_wrong_verify_token_registers_nothing(sandbox: Sandbox, receiver: Receiver) -> None:
    with pytest.raises(ValueError, match="refused the handshake"):
        sandbox.subscribe_webhook(receiver.url + "?x=1", "wrong-token")
    with pytest.raises(ValueError, match="loopback"):
        sandbox.subscribe_webhook("http://example.com/webhook")


def test_control_routes(sandbox: Sandbox, store: Store, receiver: Receiver, app_secret: SecretFile) -> None:
    with httpx.Client(base_url=sandbox.url) as control:
        assert control.post("/_sandbox/webhook", json={"url": receiver.url}).status_code == 200
        assert control.post("/_sandbox/webhook/fail", json={"code": 131049, "title": "not delivered"}).json() == {
            "queued": 1
        }
        with make_sender(sandbox, store.cached()) as s:
            s.send_text(TO, "x", biz_opaque_callback_data="ref-x")
        assert (
            control.post("/_sandbox/webhook/emit", json={"payload": account_update_payload(waba_id="9")}).status_code
            == 200
        )
        assert sandbox.wait_for_webhooks(10)
        listing = control.get("/_sandbox/webhook").json()
        assert [d["status"] for d in listing["deliveries"]] == ["sent", "failed", None]
        assert all(d["delivered"] for d in listing["deliveries"])
        assert app_secret.value not in str(listing)
        assert control.post("/_sandbox/app_secret", json={"value": "short"}).status_code == 400
        assert control.post("/_sandbox/webhook", json={"url": "http://10.0.0.1/x"}).status_code == 400
    assert receiver.reconciler.status("ref-x").error_code == 131049  # type: ignore[union-attr]
    assert len(receiver.updates) == 1


def test_deliver_event_needs_a_subscription(sandbox: Sandbox, receiver: Receiver) -> None:
    hooks = sandbox.state.webhooks
    assert hooks.deliver_event(account_update_payload("PARTNER_APP_INSTALLED", waba_id="1")) is not None
    assert sandbox.wait_for_webhooks(10)
    assert [u.installed for u in receiver.updates] == [True]
    hooks.url = None
    assert hooks.deliver_event(account_update_payload(waba_id="2")) is None
    with pytest.raises(RuntimeError, match="no webhook callback URL"):
        sandbox.emit_webhook(account_update_payload(waba_id="3"))

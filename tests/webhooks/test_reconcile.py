"""Reconciler: a send that raised OutcomeUnknown is settled from its status webhooks, matched by the
biz_opaque_callback_data reference; against the sandbox, end to end."""

from __future__ import annotations

import asyncio
import threading

import pytest

import sender
from sender.sandbox import Sandbox
from tests.sender.conftest import Store, make_sender
from tests.webhooks.conftest import Clock, SecretFile, status_body, wsgi_server


def status(state: str, ref: str | None = "ref-1") -> sender.StatusEvent:
    (event,) = sender.parse_events(status_body(state, ref=ref))
    assert isinstance(event, sender.StatusEvent)
    return event


def test_keeps_the_most_advanced_status() -> None:
    rec = sender.Reconciler()
    assert rec.observe([status("delivered")]) == [status("delivered")]
    assert rec.observe(status("sent")) == []  # late, lower: ignored
    assert rec.status("ref-1").status == "delivered"  # type: ignore[union-attr]
    rec.observe(status("read"))
    assert rec.status("ref-1").status == "read"  # type: ignore[union-attr]
    rec.observe(status("failed"))
    assert rec.status("ref-1").status == "failed"  # type: ignore[union-attr]
    rec.observe([status("sent", ref=None)])
    assert len(rec) == 1 and rec.status("other") is None


def test_references_are_unique_and_fit_meta_limit() -> None:
    refs = {sender.Reconciler.new_reference() for _ in range(1000)}
    assert len(refs) == 1000 and all(len(r) <= 512 and r.startswith("ref-") for r in refs)
    with pytest.raises(ValueError):
        sender.Reconciler.new_reference("x" * 600)


def test_bounded_by_entries_and_age() -> None:
    clock = Clock()
    rec = sender.Reconciler(max_entries=3, ttl=60, clock=clock)
    for i in range(5):
        rec.observe(status("sent", ref=f"r{i}"))
    assert len(rec) == 3 and rec.status("r0") is None and rec.status("r4") is not None
    clock.advance(61)
    rec.observe(status("sent", ref="fresh"))
    assert len(rec) == 1


def test_wait_and_await_status_wake_on_a_webhook() -> None:
    rec = sender.Reconciler()
    assert rec.wait("ref-1", timeout=0.01) is None
    timer = threading.Timer(0.05, rec.observe, args=([status("delivered")],))
    timer.start()
    assert rec.wait("ref-1", timeout=10).status == "delivered"  # type: ignore[union-attr]

    async def main() -> None:
        assert await rec.await_status("nope", timeout=0.01) is None
        waiting = asyncio.ensure_future(rec.await_status("ref-2", timeout=10))
        await asyncio.sleep(0.01)
        threading.Thread(target=rec.observe, args=([status("read", ref="ref-2")],)).start()  # another thread
        got = await waiting
        assert got is not None and got.status == "read"
        assert await rec.await_status("ref-2", timeout=0) is got  # already known: at once

    asyncio.run(main())
    assert rec._waiters == {}


def test_outcome_unknown_settled_from_the_status_webhook(
    sandbox: Sandbox, store: Store, app_secret: SecretFile, clock: Clock
) -> None:
    """The response is lost after Meta accepted the message: the sender raises OutcomeUnknown (it must not
    resend blind); the status webhook for its reference says it went out, so the caller does not resend.
    A second send fails at Meta: the webhook says failed, with the code, so resending is a decision."""
    sandbox.rotate_app_secret(app_secret.value)
    reconciler = sender.Reconciler()
    app = sender.WebhookWSGI(sender.WebhookVerifier(app_secret.provider(), clock=clock), reconciler=reconciler)
    with wsgi_server(app) as base, make_sender(sandbox, store.cached(), timeout=2) as s:
        sandbox.subscribe_webhook(base + "/webhook")
        ref = reconciler.new_reference()
        sandbox.drop_next()  # accepted, then the connection drops before the answer
        with pytest.raises(sender.OutcomeUnknown):
            s.send_text("15551234567", "did it go?", biz_opaque_callback_data=ref)
        settled = reconciler.wait(ref, timeout=10)
        assert settled is not None and not settled.failed
        assert settled.message_id == sandbox.received[0].message_id
        assert sandbox.received_counts() == {"did it go?": 1}  # sent once, not resent

        ref2 = reconciler.new_reference()
        sandbox.fail_delivery_next(131049, title="Meta chose not to deliver")
        s.send_text("15551234567", "and this one?", biz_opaque_callback_data=ref2)
        assert sandbox.wait_for_webhooks(10)
        failed = reconciler.status(ref2)
        assert failed is not None and failed.failed and failed.error_code == 131049

"""``tokenstore demo``, part 3: webhooks verified with the app secret from the store, and the app secret reset
mid-stream with no webhook lost.

A real WSGI server on 127.0.0.1 runs ``sender.WebhookWSGI`` with a ``sender.WebhookVerifier`` built from the
config (the app secret from ``app_secret:``, the verify token from ``webhook.verify_token:``). The sandbox,
standing in for Meta, subscribes it (the GET handshake) and delivers a signed status webhook for each status
of each message. Then the app secret is reset at "Meta": the next webhooks are signed with the new secret
while the store still holds the old one, so they are refused (401) and retried, as Meta retries; the operator
writes the new secret to the store, the verifier refetches it on the next mismatch (no restart) and every
retried webhook is accepted. Last, a send whose answer is lost (``OutcomeUnknown``) is settled from its
status webhook through ``sender.Reconciler`` instead of being resent. Only fingerprints are printed.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ._common import EXIT_OK, EXIT_PROBLEM, narrate

if TYPE_CHECKING:
    from sender import WebhookEvent
    from sender.sandbox import Sandbox

__all__ = ["run_webhooks"]

RECIPIENT = "15551234567"
#: seconds between two refetches of the secrets on a mismatch: 30 by default, short here so the demo is quick
DEMO_REFETCH_INTERVAL = 0.5


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the handshake's request line holds the verify token
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _say(text: str) -> None:
    narrate(text)  # and the library warnings its step caused, right after it


def run_webhooks(sandbox: Sandbox, folder: Path, config_path: Path, secret_path: Path) -> int:
    import yaml

    import sender
    from tokenstore import fingerprint_of

    from ..backends.file import FileBackend

    _say("")
    _say("Webhooks: statuses signed with the app secret from the store, and the app secret reset mid-stream")
    token_path = folder / "verify_token"
    FileBackend(token_path).put_token(secrets.token_urlsafe(24))
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["webhook"] = {
        "verify_token": {"backend": "file", "file": {"path": str(token_path)}},
        "refetch_interval": DEMO_REFETCH_INTERVAL,
    }
    webhook_config = folder / "config-webhooks.yaml"
    webhook_config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    webhook_config.chmod(0o600)

    events: list[WebhookEvent] = []
    lock = threading.Lock()

    def on_event(event: WebhookEvent) -> None:
        with lock:
            events.append(event)

    reconciler = sender.Reconciler()
    verifier = sender.WebhookVerifier.from_config(webhook_config)
    app = sender.WebhookWSGI(verifier, on_event=on_event, reconciler=reconciler)
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/webhook"
    old_fp = fingerprint_of(FileBackend(secret_path).get_token().reveal())
    try:
        _say(
            f"14. webhook receiver on {url} (sender.WebhookWSGI under a WSGI server): app secret {old_fp} and "
            f"verify token {FileBackend(token_path).get_token().fingerprint} from the store"
        )
        sandbox.subscribe_webhook(url, FileBackend(token_path).get_token().reveal())
        _say("15. the sandbox (standing in for Meta) subscribed it: the GET handshake echoed hub.challenge")

        def show(since: int) -> int:
            with lock:
                fresh = events[since:]
            for event in fresh:
                if isinstance(event, sender.StatusEvent):
                    _say(
                        f"     verified: {event.status:<9} {event.message_id} "
                        f"(biz_opaque_callback_data {event.biz_opaque_callback_data})"
                    )
            return since + len(fresh)

        with sender.Sender.from_config(webhook_config) as client:
            for n in (1, 2):
                client.send_text(RECIPIENT, f"webhook message {n}", biz_opaque_callback_data=f"demo-{n}")
            sandbox.wait_for_webhooks(10)
            _say("16. sent 2 texts; their status webhooks, each signed and verified:")
            shown = show(0)

            new_secret = secrets.token_hex(16)
            new_fp = fingerprint_of(new_secret)
            sandbox.rotate_app_secret(new_secret)
            _say(f"17. app secret reset at Meta: webhooks are now signed with {new_fp}; the store still holds {old_fp}")
            client.send_text(RECIPIENT, "webhook message 3", biz_opaque_callback_data="demo-3")
            deadline = time.monotonic() + 10
            while not any(401 in d.http_statuses for d in sandbox.webhook_deliveries):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            if any(401 in d.http_statuses for d in sandbox.webhook_deliveries):
                _say("     the receiver refused them (HTTP 401: no cached secret matches); Meta retries with backoff")
            FileBackend(secret_path).put_token(new_secret)
            _say(f"18. the operator wrote {new_fp} to the store; no restart of the receiver")
            client.send_text(RECIPIENT, "webhook message 4", biz_opaque_callback_data="demo-4")
            sandbox.wait_for_webhooks(15)
            shown = show(shown)

            reference = reconciler.new_reference("demo")
            sandbox.drop_next()  # Meta accepts the message, the answer never arrives
            try:
                client.send_text(RECIPIENT, "did this one go out?", biz_opaque_callback_data=reference)
                unknown = False
            except sender.OutcomeUnknown:
                unknown = True
            settled = reconciler.wait(reference, timeout=10)
            sandbox.wait_for_webhooks(10)
            shown = show(shown)
            _say(
                f"19. a send whose answer was lost raised OutcomeUnknown: {unknown}; its status webhook says "
                f"{settled.status if settled else 'nothing yet'}, so it is not resent blind"
            )
    finally:
        server.shutdown()
        server.server_close()
        verifier.close()

    deliveries = sandbox.webhook_deliveries
    retried = [d for d in deliveries if d.attempts > 1]
    stats = verifier.stats
    accepted = sum(1 for d in deliveries if d.delivered)
    ok = (
        len(deliveries) == 15
        and accepted == 15
        and stats["accepted"] == 15
        and bool(retried)
        and all(d.secret_fingerprint == new_fp for d in deliveries[6:])
        and unknown
        and settled is not None
        and not settled.failed
        and sandbox.received_counts().get("did this one go out?") == 1
    )
    if not ok:
        print(
            f"tokenstore: error: demo failed: {accepted} of {len(deliveries)} webhooks accepted ({stats})",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    _say(
        f"20. all {accepted} status webhooks delivered and verified, none lost ({len(retried)} refused while the "
        f"store held the old secret, accepted on Meta's retry); {stats['refetches']} refetches of the secrets, "
        "bounded by webhook.refetch_interval. No secret was printed: only sha256 fingerprints."
    )
    return EXIT_OK

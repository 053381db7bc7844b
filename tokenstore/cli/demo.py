"""``tokenstore demo``: rotation without a lost message, end to end on this machine, no account needed.

It starts the local Graph API sandbox and a file-backed token store in a temporary folder, sends the
``hello_world`` template, rotates the token in the store (``tokenstore rotate``'s own path: debug_token, put,
read back) and revokes the old one at the sandbox, then sends again with the same sender, whose cache still
holds the revoked token: Graph answers 190, the sender refetches and resends once. Both messages arrive,
each once. Only fingerprints are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ._common import EXIT_OK, EXIT_PROBLEM, guarded

HELP = "run a rotation end to end against a local Graph API sandbox (no account, nothing leaves 127.0.0.1)"
RECIPIENT = "15551234567"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("demo", help=HELP, description=HELP)
    parser.set_defaults(func=guarded(run))


def _say(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace) -> int:
    import yaml

    from sender import Sender
    from sender.sandbox import Sandbox

    from ..backends.file import FileBackend
    from .rotate import perform_rotation

    with tempfile.TemporaryDirectory(prefix="tokenstore-demo-") as tmp, Sandbox() as sandbox:
        folder = Path(tmp)
        token_path, secret_path, config_path = folder / "token", folder / "app_secret", folder / "config.yaml"
        first = sandbox.issue_sixty_day_token(label="demo")
        FileBackend(token_path).put_token(first)
        FileBackend(secret_path).put_token(sandbox.app_secret)
        config = {
            "whatsapp": {
                "phone_number_id": sandbox.phone_number_id,
                "base_url": sandbox.url,
                "api_version": "v26.0",
                "app_id": sandbox.app_id,
            },
            "token": {"backend": "file", "file": {"path": str(token_path)}, "cache": {"ttl": 300}},
            "app_secret": {"backend": "file", "file": {"path": str(secret_path)}},
        }
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        os.chmod(config_path, 0o600)
        _say(f"1. Graph API sandbox on {sandbox.url} (app {sandbox.app_id}, phone number {sandbox.phone_number_id})")
        _say(f"2. token store: file {token_path} holds token {FileBackend(token_path).get_token().fingerprint}")

        with Sender.from_config(config_path) as client:
            sent = client.send_template(RECIPIENT, "hello_world", language="en_US")
            _say(f"3. sent hello_world: {sent.message_id} (token {sent.token_fingerprint})")

            second = sandbox.rotate_token(first)  # Meta's refresh: a new token, the old one still valid
            rotation = perform_rotation(config_path, second)
            assert rotation.info is not None
            _say(
                f"4. rotated in the store: {rotation.old_fingerprint} -> {rotation.new_fingerprint} "
                f"(debug_token: valid {rotation.info.type}; read back {rotation.readback_fingerprint})"
            )
            sandbox.revoke_token(first)
            _say(f"5. revoked {rotation.old_fingerprint} at the sandbox; the sender's cache still holds it (TTL 300 s)")

            mark = len(sandbox.requests)
            again = client.send_template(RECIPIENT, "hello_world", language="en_US")
            _say(f"6. sent hello_world again, same sender: {again.message_id} (token {again.token_fingerprint})")
            for record in sandbox.requests[mark:]:
                outcome = f"HTTP {record.status}" + (f" (Graph code {record.code})" if record.code is not None else "")
                _say(f"     {record.method} {record.path} with {record.token_fingerprint}: {outcome}")

        received = sandbox.received_counts(lambda m: m.message_id)
        delivered = [m for m in (sent, again) if received.get(m.message_id) == 1]
        ok = (
            len(delivered) == 2
            and len(sandbox.received) == 2
            and again.token_fingerprint == rotation.new_fingerprint
            and sent.token_fingerprint == rotation.old_fingerprint
        )
        if ok:
            _say(
                "7. both messages delivered, each exactly once; the rotation needed no restart and lost nothing. "
                "No token was printed: only sha256 fingerprints."
            )
            return EXIT_OK
        print(
            f"tokenstore: error: demo failed: {len(sandbox.received)} messages received, {len(delivered)} as sent",
            file=sys.stderr,
        )
        return EXIT_PROBLEM

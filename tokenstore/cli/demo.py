"""``tokenstore demo``: rotation and the 60-day token lifecycle without a lost message, end to end on this
machine, no account needed.

It starts the local Graph API sandbox and a file-backed token store in a temporary folder.

Part 1, rotation: it sends the ``hello_world`` template, rotates the token in the store (``tokenstore
rotate``'s own path: debug_token, put, read back) and revokes the old one at the sandbox, then sends again
with the same sender, whose cache still holds the revoked token: Graph answers 190, the sender refetches and
resends once. Both messages arrive, each once.

Part 2, lifecycle: the store gets a 60-day token issued 57 days ago (the sandbox clock is set back to issue
it). ``tokenstore check`` warns that it expires in 3 days; a running sender sends with it; ``tokenstore
refresh --if-expiring-within 7 --revoke-old-after`` exchanges it for a new 60-day token, validates, writes
and reads it back, and revokes the old one - the demo does not sit through the 330 s wait (ttl +
refresh_ahead), the running sender sends during it instead. After the revoke the same sender sends again:
190, refetch, resend with the new token. Every message arrives exactly once. Only fingerprints are printed.

Part 3, webhooks (``_demo_webhooks.py``): status webhooks signed by the sandbox arrive at a local receiver and
are verified with the app secret from the store; the app secret is reset mid-stream and no webhook is lost.

Part 4, the fleet (``_demo_fleet.py``): two customers are onboarded from Embedded Signup codes and send from
their own numbers with their own tokens; one removes the app, the uninstall webhook marks it disconnected,
and ``tokenstore check --all`` reports it (exit 1) while the other keeps sending.

It prints the config it used (it holds no secret: the token and the app secret are in files beside it),
shows the file store's versions as times, keeps its folder with ``--keep``, and ends with the next step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import EXIT_OK, EXIT_PROBLEM, command, narrate

if TYPE_CHECKING:
    from sender.sandbox import ManualClock, Sandbox

HELP = (
    "run a rotation, a 60-day token refresh, verified webhooks with an app-secret reset and a fleet of onboarded "
    "customers (one uninstalls) end to end against a local Graph API sandbox (nothing leaves 127.0.0.1)"
)
RECIPIENT = "15551234567"
ISSUED_DAYS_AGO = 57


NEXT_STEP = (
    "Next: write your own config (start from config.example.yaml: whatsapp: with your phone_number_id and "
    "app_id, token: naming your secret store, app_secret:), then run `tokenstore show -c config.yaml` and "
    "`tokenstore check -c config.yaml`; `tokenstore sandbox` runs this Graph API sandbox for your own trials."
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("demo", help=HELP, description=HELP)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo's folder (config.yaml, the token and app secret files) and print where it is",
    )
    parser.set_defaults(func=command(run))


def _say(text: str) -> None:
    narrate(text)  # and the library warnings its step caused, right after it


def version_time(version: str | None) -> str:
    """A file store's version (the file's mtime in nanoseconds) as a UTC time; other versions as they are."""
    if version is None or not version.isdigit() or len(version) < 16:
        return version or "-"
    seconds, nanos = divmod(int(version), 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{nanos // 1000:06d} UTC"


def _times(text: str) -> str:
    return re.sub(r"\bversion (\d{16,})", lambda m: f"version {version_time(m.group(1))}", text)


def run(args: argparse.Namespace) -> int:
    from sender.sandbox import ManualClock, Sandbox

    clock = ManualClock()
    keep = bool(getattr(args, "keep", False))
    tmp = tempfile.mkdtemp(prefix="tokenstore-demo-")
    try:
        with Sandbox(clock=clock) as sandbox:
            code = _run(Path(tmp), sandbox, clock)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if code == EXIT_OK:
        _say("")
        if keep:
            _say(
                f"Kept {tmp}: config.yaml, token and app_secret (mode 600). The sandbox has stopped, so "
                f"`tokenstore show -c {tmp}/config.yaml` works there, while send and check need a running "
                "sandbox (`tokenstore sandbox`). Delete the folder when done."
            )
        _say(NEXT_STEP)
    return code


def _run(folder: Path, sandbox: Sandbox, clock: ManualClock) -> int:
    import yaml

    from sender import Sender

    from ..backends.file import FileBackend
    from .rotate import perform_rotation

    token_path, secret_path, config_path = folder / "token", folder / "app_secret", folder / "config.yaml"
    first = sandbox.issue_sixty_day_token(label="demo")
    FileBackend(token_path).put_token(first)
    FileBackend(secret_path).put_token(sandbox.app_secret)
    config = {
        "whatsapp": {
            "phone_number_id": sandbox.phone_number_id,
            "base_url": sandbox.url,
            "api_version": "v27.0",
            "app_id": sandbox.app_id,
        },
        "token": {"backend": "file", "file": {"path": str(token_path)}, "cache": {"ttl": 300}},
        "app_secret": {"backend": "file", "file": {"path": str(secret_path)}},
    }
    text = yaml.safe_dump(config, sort_keys=False)
    config_path.write_text(text, encoding="utf-8")
    os.chmod(config_path, 0o600)
    _say(f"1. Graph API sandbox on {sandbox.url} (app {sandbox.app_id}, phone number {sandbox.phone_number_id})")
    stored = FileBackend(token_path).get_token()
    _say(f"2. token store: file {token_path} holds token {stored.fingerprint} (version {version_time(stored.version)})")
    _say(f"   the config used, {config_path} (no secret in it: they are in the files it names):")
    for line in text.splitlines():
        _say(f"     {line}")

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
    if not ok:
        print(
            f"tokenstore: error: demo failed: {len(sandbox.received)} messages received, {len(delivered)} as sent",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    _say(
        "7. both messages delivered, each exactly once; the rotation needed no restart and lost nothing. "
        "No token was printed: only sha256 fingerprints."
    )
    code = _lifecycle(sandbox, clock, config_path, token_path)
    if code != EXIT_OK:
        return code
    # part 3, webhooks (tokenstore/cli/_demo_webhooks.py)
    from ._demo_webhooks import run_webhooks

    code = run_webhooks(sandbox, folder, config_path, secret_path)
    if code != EXIT_OK:
        return code
    # part 4, the fleet (tokenstore/cli/_demo_fleet.py)
    from ._demo_fleet import run_fleet

    return run_fleet(sandbox, folder, config_path)


def _lifecycle(sandbox: Sandbox, clock: ManualClock, config_path: Path, token_path: Path) -> int:
    """Part 2: a 60-day token three days from expiry is refreshed under a running sender, the old one revoked."""
    from sender import Sender, SendResult, read_config, settings_from_config
    from sender.sandbox import SIXTY_DAYS

    from .. import fingerprint_of
    from ..backends.file import FileBackend
    from .check import assess, inspect_token
    from .refresh import perform_refresh

    _say("")
    _say("Token lifecycle: a 60-day token close to expiry, refreshed under a running sender")
    now = time.time()
    clock.set(now - ISSUED_DAYS_AGO * 86400)
    old = sandbox.issue_token(expires_in=SIXTY_DAYS, label="demo-60-day")
    clock.set(now)
    FileBackend(token_path).put_token(old)
    old_fp = fingerprint_of(old)
    data, source = read_config(config_path)
    settings = settings_from_config(data, source=source)
    info = inspect_token(old, data, settings, purpose="the demo")
    problems, warnings = assess(info, app_id=settings.app_id)
    expires = "never" if info.expires_at is None else info.expires_at.isoformat(timespec="seconds")
    _say(
        f"8. the store now holds {old_fp}, a 60-day {info.type} token issued {ISSUED_DAYS_AGO} days ago "
        f"(expires {expires})"
    )
    code = 1 if problems else 5 if warnings else 0
    _say(f"9. tokenstore check: {'; '.join(problems + warnings) or 'ok'} (exit {code})")

    results: list[SendResult] = []
    with Sender.from_config(config_path) as client:

        def send(step: str, why: str) -> None:
            result = client.send_text(RECIPIENT, f"lifecycle message {len(results) + 1}")
            results.append(result)
            _say(f"{step} the running sender sent a text {why}: {result.message_id} (token {result.token_fingerprint})")

        send("10.", "before the refresh")

        def step(name: str, text: str) -> None:
            _say(f"     refresh {name}: {_times(text)}")

        def wait(seconds: float) -> None:  # the demo does not sit through the wait: it keeps sending instead
            _say(f"     (the demo skips the {seconds:g} s wait; meanwhile the old token is still valid)")
            send("    ", "during the wait")

        _say("11. tokenstore refresh --if-expiring-within 7 --revoke-old-after")
        outcome = perform_refresh(
            config_path,
            if_expiring_within=7,
            revoke_old_after="default",
            sleep=wait,
            now=lambda: dt.datetime.fromtimestamp(clock(), dt.timezone.utc),
            report=step,
        )
        mark = len(sandbox.requests)
        send("12.", "after the old token was revoked (its cache still held it)")
        for record in sandbox.requests[mark:]:
            result = f"HTTP {record.status}" + (f" (Graph code {record.code})" if record.code is not None else "")
            _say(f"     {record.method} {record.path} with {record.token_fingerprint}: {result}")

    old_record = sandbox.token_record(old)
    received = sandbox.received_counts(lambda m: m.message_id)
    new_fp = outcome.new_fingerprint
    ok = (
        outcome.action == "refreshed"
        and outcome.revoked
        and old_record is not None
        and old_record.status(clock()) == "revoked"
        and len(results) == 3
        and all(received.get(r.message_id) == 1 for r in results)
        and [r.token_fingerprint for r in results] == [old_fp, old_fp, new_fp]
        and FileBackend(token_path).get_token().fingerprint == new_fp
    )
    if not ok:
        print("tokenstore: error: demo failed: the lifecycle part did not go as expected", file=sys.stderr)
        return EXIT_PROBLEM
    expires = "never" if outcome.new_expires_at is None else outcome.new_expires_at.isoformat(timespec="seconds")
    _say(
        f"13. all 3 texts delivered, each exactly once; {old_fp} is revoked, the store and every sender use {new_fp} "
        f"(expires {expires}). Run `tokenstore refresh --if-expiring-within 7 --revoke-old-after` daily from cron."
    )
    return EXIT_OK

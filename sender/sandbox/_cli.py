"""Run the sandbox in the foreground for people: ``tokenstore sandbox`` / ``python -m sender.sandbox``."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from tokenstore import fingerprint_of, mask_credentials

from ._clock import ManualClock
from ._server import Sandbox

__all__ = ["check_serve_options", "serve", "write_secret_file"]


def check_serve_options(
    *, port: int, token_file: str | None = None, app_secret_file: str | None = None, expires_in: float | None = None
) -> str | None:
    """Why these :func:`serve` options cannot work (one sentence naming the option, never its value), or None."""
    import math

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        return "--port must be a port number, 0 to 65535"
    if expires_in is not None and not (math.isfinite(expires_in) and expires_in >= 0):
        return "--expires-in must be zero or more seconds (a finite number)"
    for option, path in (("--token-file", token_file), ("--app-secret-file", app_secret_file)):
        if path is None:
            continue
        target = Path(path).expanduser()
        if target.is_dir():
            return f"{option} names a folder: give the path of a file to write"
        if not target.absolute().parent.is_dir():
            return f"{option}: its folder does not exist: create it first, or give another path"
    return None


def write_secret_file(path: str | os.PathLike[str], value: str) -> None:
    """Write ``value`` to ``path`` readable by its owner only (0600), replacing the file atomically."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def serve(
    *,
    port: int = 8765,
    token_file: str | None = None,
    app_secret_file: str | None = None,
    accept_env: Iterable[str] = (),
    phone_number_id: str | None = None,
    expires_in: float | None = None,
    require_appsecret_proof: bool = False,
    manual_clock: bool = False,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[Sandbox], None] | None = None,
) -> int:
    """Start a sandbox, print how to use it (fingerprints only), and serve until interrupted or ``stop``."""
    out = out or sys.stdout
    problem = check_serve_options(
        port=port, token_file=token_file, app_secret_file=app_secret_file, expires_in=expires_in
    )
    if problem:
        print(f"tokenstore: error: {problem}", file=sys.stderr)
        return 2
    sandbox = Sandbox(
        port=port,
        clock=ManualClock() if manual_clock else None,
        phone_number_ids=(phone_number_id,) if phone_number_id else None,
        require_appsecret_proof=require_appsecret_proof,
    )
    token = sandbox.issue_token(expires_in=expires_in, label="cli")
    accepted = []
    for var in accept_env:
        value = os.environ.get(var, "").strip()
        if not value:
            shown = mask_credentials(var)  # a token typed where the variable's name goes is not echoed
            print(f"tokenstore: error: --accept-env {shown}: the variable is not set or empty", file=sys.stderr)
            return 2
        if sandbox.token_record(value) is None:
            sandbox.issue_token(value=value, label=f"env:{var}")
        accepted.append((var, fingerprint_of(value)))
    for option, path, value in (
        ("--token-file", token_file, token),
        ("--app-secret-file", app_secret_file, sandbox.app_secret),
    ):
        if not path:
            continue
        try:
            write_secret_file(Path(path).expanduser(), value)
        except OSError as exc:
            print(f"tokenstore: error: {option}: cannot write the file ({exc.strerror})", file=sys.stderr)
            return 2
    try:
        sandbox.start()
    except OSError as exc:
        print(f"tokenstore: error: cannot listen on 127.0.0.1:{port} ({exc.strerror}); try --port 0", file=sys.stderr)
        return 2
    stop = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        phone = phone_number_id or "any numeric id"
        lines = [
            f"Graph API sandbox listening on {sandbox.url}",
            f"  app_id:          {sandbox.app_id}",
            f"  phone_number_id: {phone}",
            f"  token:           {fingerprint_of(token)}"
            + (f" written to {token_file} (mode 600)" if token_file else " (pass --token-file PATH to use it)"),
        ]
        if app_secret_file:
            lines.append(f"  app secret:      written to {app_secret_file} (mode 600)")
        for var, fp in accepted:
            lines.append(f"  also accepted:   ${var} ({fp})")
        example_id = phone_number_id or "106540352242922"
        lines += [
            "Point a config at it:",
            f'  whatsapp: {{phone_number_id: "{example_id}", base_url: "{sandbox.url}", app_id: "{sandbox.app_id}"}}',
            f"  token: {{backend: file, file: {{path: {token_file or 'PATH'}}}}}",
            f"  app_secret: {{backend: file, file: {{path: {app_secret_file or 'PATH'}}}}}"
            + ("" if app_secret_file else "   # pass --app-secret-file PATH: check, rotate, refresh, revoke need it"),
            f"Control: GET {sandbox.url}/_sandbox/state; POST /_sandbox/faults "
            '{"code": 130429, "count": 2}; POST /_sandbox/revoke {"fingerprint": "sha256:..."}',
            "Ctrl-C to stop.",
        ]
        print("\n".join(lines), file=out, flush=True)
        if on_ready is not None:
            on_ready(sandbox)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print("sandbox stopped", file=out, flush=True)
    return 0

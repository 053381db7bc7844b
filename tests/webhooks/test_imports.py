"""The webhook glue imports no web framework: FastAPI, Starlette, Flask, Django stay optional."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("fastapi", "starlette", "flask", "werkzeug", "django", "uvicorn", "pydantic")


def test_webhook_names_import_no_framework() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import sender
        for name in ("WebhookVerifier", "WebhookASGI", "WebhookWSGI", "WebhookHandler", "Reconciler",
                     "parse_events", "StatusEvent", "InvalidSignature", "SubscriptionRefused", "WebhookError"):
            getattr(sender, name)
        import sender.sandbox
        print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in {FRAMEWORKS!r})))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""

"""Issue 14's items that live in check and the Graph API version: v27.0 by default, Meta's end-of-availability
table (a warning at load, exit 5 from check within 90 days), ``expires_at: unknown`` for an invalid token,
grammar, and one ``warning:`` line per warning."""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

import pytest

import sender
from sender import API_VERSION_END_OF_AVAILABILITY, DEFAULT_API_VERSION, api_version_warning
from tests.contract import canary
from tests.lifecycle.conftest import Env, cli
from tokenstore.cli import main
from tokenstore.cli._common import plural


def test_the_default_is_v27() -> None:
    assert DEFAULT_API_VERSION == "v27.0"
    settings = sender.settings_from_config({"whatsapp": {"phone_number_id": "1"}})
    assert settings.api_version == "v27.0"


def test_meta_s_published_dates() -> None:
    assert {k: v.isoformat() for k, v in API_VERSION_END_OF_AVAILABILITY.items()} == {
        "v21.0": "2027-01-21",
        "v22.0": "2027-05-20",
        "v23.0": "2027-10-08",
        "v24.0": "2028-02-18",
        "v25.0": "2028-07-29",
    }


@pytest.mark.parametrize(
    ("version", "today", "expected"),
    [
        ("v21.0", "2026-10-22", None),  # 91 days before the end
        ("v21.0", "2026-10-23", "stops working on 2027-01-21 (in 90 days)"),
        ("v21.0", "2027-01-20", "(in 1 day)"),
        ("v21.0", "2027-01-21", "(today)"),
        ("v21.0", "2027-01-22", "reached its end of availability on 2027-01-21"),
        ("v25.0", "2026-12-01", None),
        ("v20.0", "2026-12-01", "past its end of availability (older than v21.0)"),
        ("v26.0", "2026-12-01", None),
        ("v27.0", "2030-01-01", None),  # no date published yet
    ],
)
def test_api_version_warning(version: str, today: str, expected: str | None) -> None:
    notice = api_version_warning(version, today=dt.date.fromisoformat(today))
    if expected is None:
        assert notice is None
    else:
        assert notice is not None and expected in notice and "v27.0" in notice


def test_one_warning_at_load_per_version(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from sender import _config

    monkeypatch.setattr(_config, "_warned_versions", set())
    caplog.set_level(logging.WARNING, logger="sender")
    for _ in range(3):
        sender.settings_from_config({"whatsapp": {"phone_number_id": "1", "api_version": "v20.0"}}, source="c.yaml")
    records = [r for r in caplog.records if "api_version" in r.getMessage()]
    assert len(records) == 1 and records[0].getMessage().startswith("c.yaml: Graph API v20.0")


def test_check_reports_a_version_close_to_its_end_with_exit_5(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write_config(whatsapp={"api_version": "v20.0"})
    code, out, err = cli(["check", "-c", str(env.config)], capsys, env)
    assert code == 5 and re.search(r"warning:\s+Graph API v20.0 is past its end", out)
    assert "tokenstore: warning" not in err  # reported once, by check, not also by the load-time warning
    code, out, _ = cli(["check", "-c", str(env.config), "--json"], capsys, env)
    import json

    data = json.loads(out)
    assert code == 5 and data["status"] == "warning" and data["api_version"] == "v20.0"
    assert any("v20.0" in w for w in data["warnings"])


def run_cli(argv: list[str], env: Env) -> tuple[int, str, str]:
    """As an operator runs it (a subprocess, no logging set up by a test runner)."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tokenstore", *argv],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "TOKENSTORE_CONFIG"},
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    for text in (done.stdout, done.stderr):
        for secret in env.secrets:
            assert secret not in text
    return done.returncode, done.stdout, done.stderr


def test_other_commands_show_the_version_warning_once_with_a_prefix(env: Env) -> None:
    env.write_config(whatsapp={"api_version": "v19.0"})
    code, _, err = run_cli(["send", "-c", str(env.config), "--to", "15551234567", "--text", "hi"], env)
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 1, err
    assert lines[0].startswith("tokenstore: warning: ") and "v19.0" in lines[0]


def test_a_rejected_token_is_one_error_line(env: Env) -> None:
    env.sandbox.revoke_token(env.initial)
    code, _, err = run_cli(["send", "-c", str(env.config), "--to", "15551234567", "--text", "hi"], env)
    lines = err.strip().splitlines()
    assert code == 4 and len(lines) == 1, err
    assert lines[0].startswith("tokenstore: error: AuthenticationError")


def test_check_on_an_invalid_token_says_unknown_expiry(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write(canary())  # Graph does not know it
    code, out, _ = cli(["check", "-c", str(env.config)], capsys, env)
    assert code == 1 and re.search(r"^expires_at:\s+unknown$", out, re.MULTILINE)
    assert re.search(r"^expires_in:\s+unknown$", out, re.MULTILINE) and "never" not in out


def test_grammar() -> None:
    assert plural(1, "day") == "1 day" and plural(2, "day") == "2 days" and plural(1.5, "day") == "1.5 days"
    from tokenstore.cli.check import _days

    assert _days(dt.timedelta(hours=1)) == "1 hour" and _days(dt.timedelta(hours=5)) == "5 hours"


def test_a_too_long_text_says_too_long(tmp_path: Path, capsys: pytest.CaptureFixture[str], env: Env) -> None:
    code = main(["send", "-c", str(env.config), "--to", "15551234567", "--text", "x" * 5000])
    err = capsys.readouterr().err
    assert code == 2 and "too long (5000 characters; the limit is 4096)" in err and "required" not in err

"""``tokenstore check``: validity, type, the messaging scope and its WABA ids, expiry; documented exit codes;
``--json`` for monitoring, also when the check itself fails."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from sender.sandbox import SIXTY_DAYS, ManualClock, Sandbox
from tests.contract import canary
from tests.lifecycle.conftest import DAY, Env, cli, make_env
from tokenstore.cli import main


def check(env: Env, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return cli(["check", "-c", str(env.config), *extra], capsys, env)


def check_json(env: Env, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, object]]:
    code, out, _ = check(env, capsys, "--json", *extra)
    data = json.loads(out)
    assert data["exit_code"] == code
    return code, data


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    for code in range(6):
        assert re.search(rf"^\s+{code}\s+\w", out, re.MULTILINE), f"exit code {code} undocumented"
    assert "--json" in out and "waba_ids" in out


def test_a_valid_60_day_token(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = check(env, capsys)
    assert code == 0, out
    assert re.search(r"valid:\s+True", out) and re.search(r"type:\s+SYSTEM_USER", out)
    assert re.search(r"whatsapp_business_messaging:\s+True", out)
    assert re.search(rf"waba_ids:\s+{env.sandbox.waba_id}$", out, re.MULTILINE)
    assert re.search(r"expires_in:\s+(59\.9|60\.0) days", out) and env.fingerprint() in out
    code, data = check_json(env, capsys)
    assert code == 0 and data["status"] == "ok" and data["valid"] is True and data["type"] == "SYSTEM_USER"
    assert data["whatsapp_business_messaging"] is True and data["waba_ids"] == [env.sandbox.waba_id]
    assert data["never_expires"] is False and isinstance(data["expires_at"], str)
    assert isinstance(data["expires_in_days"], float) and 59.9 < data["expires_in_days"] <= 60
    assert data["problems"] == [] and data["warnings"] == [] and data["fingerprint"] == env.fingerprint()


def test_a_never_expiring_token(sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = make_env(sandbox, tmp_path, expires_in=None)
    code, out, _ = check(env, capsys)
    assert code == 0 and re.search(r"expires_at:\s+never", out)
    code, data = check_json(env, capsys)
    assert data["expires_at"] is None and data["never_expires"] is True and data["expires_in_days"] is None


def test_warning_within_7_days_suggests_refresh(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write(env.issue(expires_in=3 * DAY))
    code, out, _ = check(env, capsys)
    assert code == 5 and "expires in 3.0 days" in out and "tokenstore refresh" in out
    code, data = check_json(env, capsys)
    assert data["status"] == "warning" and len(data["warnings"]) == 1 and data["problems"] == []
    assert check(env, capsys, "--warn-days", "2.5")[0] == 0


def test_an_expired_token_is_an_error(
    clocked_sandbox: Sandbox, clock: ManualClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    clock.set(now - 61 * DAY)
    env = make_env(clocked_sandbox, tmp_path, expires_in=SIXTY_DAYS)  # issued 61 days ago: expired yesterday
    clock.set(now)
    code, out, _ = check(env, capsys)
    assert code == 1 and "expired at" in out and "tokenstore rotate" in out
    code, data = check_json(env, capsys)
    assert data["status"] == "problem" and data["valid"] is False
    assert data["error"] == {
        "code": 190,
        "subcode": 463,
        "message": "Error validating access token: Session has expired.",
    }


@pytest.mark.parametrize("problem", ["revoked", "unknown", "no_scope", "other_app"])
def test_problems_exit_1(env: Env, capsys: pytest.CaptureFixture[str], problem: str) -> None:
    if problem == "revoked":
        env.sandbox.revoke_token(env.initial)
        text = "not valid"
    elif problem == "unknown":
        env.write(canary())
        text = "not valid"
    elif problem == "no_scope":
        env.write(env.issue(scopes=("whatsapp_business_management",)))
        text = "lacks the whatsapp_business_messaging permission"
    else:
        env.write_config(whatsapp={"app_id": "4242"})
        text = "belongs to app"
    code, out, err = check(env, capsys)
    if problem == "other_app":  # Graph refuses to show another app's token to this app
        assert code == 4 and "AppCredentialsError" in err
        return
    assert code == 1 and text in out
    code, data = check_json(env, capsys)
    assert data["status"] == "problem" and any(text in p for p in data["problems"])


def test_json_reports_failures_of_the_check_itself(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.secret_path.write_text(canary("APPSECRET"))  # the wrong app secret
    code, out, err = cli(["check", "-c", str(env.config), "--json"], capsys, env, env.secret_path.read_text())
    data = json.loads(out)
    assert code == 4 and data["status"] == "error" and data["exit_code"] == 4
    assert data["error"].startswith("AppCredentialsError: ") and "AppCredentialsError" in err
    env.token_path.unlink()
    code, data = check_json(env, capsys)
    assert code == 3 and data["status"] == "error" and "SecretNotFound" in str(data["error"])
    env.write_config(app_secret=None)
    env.write(env.initial)
    code, data = check_json(env, capsys)
    assert code == 2 and "app_secret: required for check" in str(data["error"])

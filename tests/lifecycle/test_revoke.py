"""``tokenstore revoke``: the token comes from stdin (or a hidden prompt), never argv; the store's current
token is protected unless --force; a dead token needs nothing."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

from tests.contract import canary
from tests.lifecycle.conftest import Env, cli, stdin
from tokenstore import fingerprint_of


def revoke(env: Env, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return cli(["revoke", "-c", str(env.config), *extra], capsys, env)


def status(env: Env, value: str) -> str:
    record = env.sandbox.token_record(value)
    assert record is not None
    return record.status(env.sandbox.clock())


def test_revoke_an_old_token_from_stdin(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = env.issue()
    stdin(monkeypatch, old + "\n")
    code, out, _ = revoke(env, capsys)
    assert code == 0 and re.search(r"revoked:\s+True", out) and fingerprint_of(old) in out
    assert status(env, old) == "revoked" and status(env, env.initial) == "valid"
    stdin(monkeypatch, old)
    code, out, _ = revoke(env, capsys, "--json")
    data = json.loads(out)
    assert code == 0 and data["revoked"] is False and "already calls it invalid" in data["result"]
    assert env.sandbox.route_counts()["oauth.revoke"] == 1


def test_the_token_the_store_holds_needs_force(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin(monkeypatch, env.initial)
    code, out, err = revoke(env, capsys)
    assert code == 1 and "every service sends with it" in err and "--force" in err
    assert status(env, env.initial) == "valid" and env.sandbox.route_counts()["oauth.revoke"] == 0
    stdin(monkeypatch, env.initial)
    code, out, _ = revoke(env, capsys, "--force")
    assert code == 0 and status(env, env.initial) == "revoked"


def test_prompt_without_echo_on_a_terminal(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = env.issue()

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []
    monkeypatch.setattr(sys, "stdin", Tty(""))
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or old)
    code, _, _ = revoke(env, capsys)
    assert code == 0 and prompts == ["Access token to revoke (input hidden): "] and status(env, old) == "revoked"


def test_never_from_argv_and_input_errors(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = env.issue()
    code, _, err = revoke(env, capsys, token)  # cli() also checks the token is not echoed
    assert code == 2 and "never from the command line" in err
    for bad, text in (("", "no token given"), ("two words", "exactly one access token"), ("bad\x01", "control")):
        stdin(monkeypatch, bad)
        code, _, err = revoke(env, capsys)
        assert code == 2 and text in err
    assert status(env, token) == "valid" and sum(env.sandbox.route_counts().values()) == 0


def test_wrong_app_secret_and_another_apps_token(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = env.issue()
    wrong = canary("APPSECRET")
    env.secret_path.write_text(wrong)
    stdin(monkeypatch, old)
    code, _, err = cli(["revoke", "-c", str(env.config)], capsys, env, wrong)
    assert code == 4 and "AppCredentialsError" in err and status(env, old) == "valid"
    env.secret_path.write_text(env.app_secret)
    env.write_config(whatsapp={"app_id": env.sandbox.state.tokens.add_app(secret=env.app_secret).app_id})
    stdin(monkeypatch, old)
    code, _, err = revoke(env, capsys)
    assert code == 4 and "Viewing App" in err and status(env, old) == "valid"

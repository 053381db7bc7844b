"""The operator commands send, check, rotate and demo (in process, against the sandbox); never a token in
their output."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
import yaml

from sender.sandbox import Sandbox
from tests.contract import assert_clean, canary
from tests.sender.conftest import TO, Store
from tokenstore.backends.file import FileBackend
from tokenstore.cli import main

TOKEN_SHAPED = re.compile(r"EAA[A-Za-z0-9]{20,}")


@pytest.fixture
def app_secret(sandbox: Sandbox, tmp_path: Path) -> str:
    secret = canary("APPSECRET")
    sandbox.state.app.secret = secret
    (tmp_path / "app_secret").write_text(secret)
    return secret


@pytest.fixture
def config(tmp_path: Path, sandbox: Sandbox, store: Store, app_secret: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "whatsapp": {
                    "phone_number_id": sandbox.phone_number_id,
                    "base_url": sandbox.url,
                    "app_id": sandbox.app_id,
                },
                "token": {"backend": "file", "file": {"path": str(store.path)}},
                "app_secret": {"backend": "file", "file": {"path": str(tmp_path / "app_secret")}},
            }
        )
    )
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str], *secrets: str) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    for text in (out, err):
        assert_clean(text, *secrets)
        assert not TOKEN_SHAPED.search(text), "a token-shaped string in CLI output"
    return code, out, err


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("show", "send", "check", "rotate", "refresh", "revoke", "demo", "sandbox"):
        assert name in out


# -- send -----------------------------------------------------------------------------------------------------
def test_send_text_and_template(
    config: Path, sandbox: Sandbox, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["send", "-c", str(config), "--to", TO, "--text", "hello"], capsys, store.initial)
    assert code == 0 and re.search(r"message_id:\s+wamid\.", out)
    assert FileBackend(store.path).get_token().fingerprint in out
    code, out, _ = run(
        ["send", "-c", str(config), "--to", TO, "--template", "hello_world", "--lang", "en_US", "--json"],
        capsys,
        store.initial,
    )
    assert code == 0 and '"message_status": "accepted"' in out
    assert [m.type for m in sandbox.received] == ["text", "template"]


def test_send_usage_errors(config: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["send", "-c", str(config), "--to", TO, "--text", "x", "--lang", "de"], capsys)[0] == 2
    code, _, err = run(["send", "-c", str(config), "--to", "nobody", "--text", "x"], capsys)
    assert code == 2 and "to:" in err
    code, _, err = run(["send", "-c", str(config.parent / "missing.yaml"), "--to", TO, "--text", "x"], capsys)
    assert code == 2 and "config file not found" in err
    assert sandbox.received == []


def test_send_graph_refusal_is_exit_4_one_line(
    config: Path, sandbox: Sandbox, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.revoke_token(store.initial)
    code, out, err = run(["send", "-c", str(config), "--to", TO, "--text", "x"], capsys, store.initial)
    assert code == 4 and out == ""
    assert err.startswith("tokenstore: error: AuthenticationError: ") and err.count("\n") == 1
    assert "Traceback" not in err


# -- check ----------------------------------------------------------------------------------------------------
def test_check_valid(config: Path, store: Store, app_secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", "-c", str(config)], capsys, store.initial, app_secret)
    assert code == 0
    assert re.search(r"valid:\s+True", out) and "SYSTEM_USER" in out and re.search(r"expires_at:\s+never", out)
    assert re.search(r"whatsapp_business_messaging:\s+True", out)


def test_check_warns_within_7_days(
    config: Path, sandbox: Sandbox, store: Store, app_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    short = sandbox.issue_token(value=canary(), expires_in=3 * 86400)
    store.write(short)
    code, out, _ = run(["check", "-c", str(config), "--json"], capsys, short, app_secret)
    assert code == 5
    assert "expires in 3.0 days" in out or "expires in 72 hours" in out
    code, _, _ = run(["check", "-c", str(config), "--warn-days", "2"], capsys, short, app_secret)
    assert code == 0


@pytest.mark.parametrize("problem", ["revoked", "no_scope", "user"])
def test_check_problems(
    config: Path, sandbox: Sandbox, store: Store, app_secret: str, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    if problem == "revoked":
        sandbox.revoke_token(store.initial)
        expected, text = 1, "not valid"
    elif problem == "no_scope":
        store.write(sandbox.issue_token(value=canary(), scopes=("whatsapp_business_management",)))
        expected, text = 1, "lacks the whatsapp_business_messaging permission"
    else:
        store.write(sandbox.issue_token(value=canary(), type="USER"))
        expected, text = 5, "USER token"
    code, out, _ = run(["check", "-c", str(config)], capsys, store.initial, store.read(), app_secret)
    assert code == expected and text in out


def test_check_needs_app_id_and_secret(
    tmp_path: Path, config: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(config.read_text())
    del data["whatsapp"]["app_id"]
    config.write_text(yaml.safe_dump(data))
    code, _, err = run(["check", "-c", str(config)], capsys, store.initial)
    assert code == 2 and "whatsapp.app_id: required for check" in err
    data["whatsapp"]["app_id"] = "123"
    del data["app_secret"]
    config.write_text(yaml.safe_dump(data))
    code, _, err = run(["check", "-c", str(config)], capsys, store.initial)
    assert code == 2 and "app_secret: required for check" in err


def test_check_with_a_wrong_app_secret_is_a_graph_error(
    tmp_path: Path, config: Path, store: Store, app_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "app_secret").write_text("0" * 32)
    code, _, err = run(["check", "-c", str(config)], capsys, store.initial, app_secret)
    assert code == 4 and "AppCredentialsError" in err and "rejected the app token" in err


# -- rotate ---------------------------------------------------------------------------------------------------
def test_rotate_from_stdin(
    config: Path,
    sandbox: Sandbox,
    store: Store,
    app_secret: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new = sandbox.rotate_token(store.initial, value=canary())
    stdin(monkeypatch, new + "\n")
    code, out, _ = run(["rotate", "-c", str(config)], capsys, store.initial, new, app_secret)
    assert code == 0, out
    assert store.read() == new
    new_fp = FileBackend(store.path).get_token().fingerprint
    assert re.search(rf"new:\s+{new_fp}", out) and re.search(rf"read back:\s+{new_fp}", out)
    assert re.search(r"validated:\s+debug_token: valid SYSTEM_USER token", out)


def test_rotate_refuses_an_invalid_token_and_keeps_the_old(
    config: Path, store: Store, app_secret: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = canary()
    stdin(monkeypatch, bogus)
    code, _, err = run(["rotate", "-c", str(config)], capsys, store.initial, bogus, app_secret)
    assert code == 1 and "not written" in err and "not valid" in err
    assert store.read() == store.initial


def test_rotate_no_validate_and_unchanged(
    config: Path, store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = canary()
    stdin(monkeypatch, unknown)
    code, out, _ = run(["rotate", "-c", str(config), "--no-validate", "--json"], capsys, store.initial, unknown)
    assert code == 0 and '"validated": false' in out and store.read() == unknown
    stdin(monkeypatch, unknown)
    code, out, _ = run(["rotate", "-c", str(config), "--no-validate"], capsys, unknown)
    assert code == 0 and "unchanged" in out


def test_rotate_prompts_without_echo_on_a_terminal(
    config: Path,
    sandbox: Sandbox,
    store: Store,
    app_secret: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new = sandbox.rotate_token(store.initial, value=canary())

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []
    monkeypatch.setattr(sys, "stdin", Tty(""))
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or new)
    code, _, _ = run(["rotate", "-c", str(config)], capsys, new, store.initial, app_secret)
    assert code == 0 and prompts == ["New access token (input hidden): "] and store.read() == new


def test_rotate_input_errors_and_no_argv(
    config: Path, store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin(monkeypatch, "   \n")
    assert run(["rotate", "-c", str(config)], capsys)[0] == 2
    stdin(monkeypatch, "two words")
    code, _, err = run(["rotate", "-c", str(config)], capsys)
    assert code == 2 and "exactly one access token" in err
    with pytest.raises(SystemExit) as info:
        main(["rotate", "-c", str(config), canary()])  # a token on the command line is refused by the parser
    assert info.value.code == 2
    capsys.readouterr()
    assert store.read() == store.initial


def test_rotate_read_only_store_is_exit_3(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    current = sandbox.issue_token(value=canary())
    monkeypatch.setenv("CLI_TEST_TOKEN", current)
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump({"token": {"backend": "env", "env": {"var": "CLI_TEST_TOKEN"}}}))
    new = canary()
    stdin(monkeypatch, new)
    code, _, err = run(["rotate", "-c", str(path), "--no-validate"], capsys, current, new)
    assert code == 3 and "WriteNotSupported" in err and "read-only" in err


# -- demo -----------------------------------------------------------------------------------------------------
def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["demo"], capsys)
    assert code == 0, err
    assert "HTTP 401 (Graph code 190)" in out and "HTTP 200" in out
    assert "both messages delivered, each exactly once" in out
    assert out.count("sent hello_world") == 2

"""The contract every CLI command keeps (tokenstore/cli/_common.py): a usage error is one line and exit 2 and
never repeats what was typed, ``-v`` works after the command, ``--json`` prints exactly one JSON object on
success and on error, and no command ends in a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract import canary
from tokenstore.cli import COMMANDS, build_parser, main

#: the commands with a --json option (asserted below against the parser, so a new command cannot miss it)
JSON_COMMANDS = sorted(
    name
    for name, parser in build_parser()._subparsers._group_actions[0].choices.items()  # type: ignore[union-attr]
    if any("--json" in action.option_strings for action in parser._actions)
)


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str], *secrets: str) -> tuple[str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2, (argv, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "usage:" not in err
    for secret in secrets:
        assert secret not in out and secret not in err, (argv, err)
    return out, err


def test_every_command_has_json_but_demo_and_sandbox() -> None:
    assert set(JSON_COMMANDS) >= {"show", "send", "check", "rotate", "refresh", "revoke"}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_stray_argument_is_never_echoed(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    token = canary()
    required = ["--to", "1", "--text", "x"] if command == "send" else []
    for argv in ([command, *required, token], [command, *required, f"--{token}"], [command, *required, "--x", token]):
        if command == "revoke" and argv == [command, token]:  # revoke takes words to say why: it reads stdin
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert token not in err and "read from stdin, never from the command line" in err
            continue
        _, err = usage_error(argv, capsys, token)
        assert "not shown" in err and f"tokenstore {command}:" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "--section", "SECRET"],
        ["check", "--warn-days", "SECRET"],
        ["refresh", "--if-expiring-within", "SECRET"],
        ["refresh", "--revoke-old-after", "SECRET"],
        ["refresh", "--force=SECRET"],
        ["sandbox", "--port", "SECRET"],
        ["sandbox", "--expires-in", "SECRET"],
        ["SECRET"],
        ["--verb=SECRET"],
    ],
)
def test_a_bad_value_or_choice_is_never_echoed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    token = canary()
    usage_error([token if a == "SECRET" else a.replace("SECRET", token) for a in argv], capsys, token)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["check", "--warn-days", "-3"], "zero or more days"),
        (["check", "--warn-days", "nan"], "zero or more days"),
        (["check", "--warn-days", "inf"], "zero or more days"),
        (["refresh", "--if-expiring-within", "-1"], "zero or more days"),
        (["refresh", "--revoke-old-after", "-1"], "zero or more seconds"),
        (["refresh", "--revoke-old-after", "inf"], "zero or more seconds"),
        (["sandbox", "--expires-in", "-5"], "zero or more seconds"),
        (["sandbox", "--expires-in", "nan"], "zero or more seconds"),
        (["sandbox", "--port", "99999"], "0 to 65535"),
        (["sandbox", "--port", "-1"], "0 to 65535"),
        (["sandbox", "--phone-number-id", "12ab"], "numeric id"),
        (["send", "--to", "1"], "required"),
        (["send", "--to", "1", "--text", "x", "--template", "y"], "not allowed"),
    ],
)
def test_negative_non_finite_and_out_of_range_numbers_are_usage_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[:2] == ["sandbox", "--phone-number-id"]:  # checked by the command: exit 2, one line, no SystemExit
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err
        return
    _, err = usage_error(argv, capsys)
    assert expected in err


def test_sandbox_output_files_are_checked_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, err = usage_error(["sandbox", "--port", "0", "--token-file", str(tmp_path / "missing" / "token")], capsys)
    assert "folder does not exist" in err
    _, err = usage_error(["sandbox", "--port", "0", "--app-secret-file", str(tmp_path)], capsys)
    assert "names a folder" in err


def test_sandbox_accept_env_never_echoes_a_pasted_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = canary()
    monkeypatch.delenv(token, raising=False)
    assert main(["sandbox", "--port", "0", "--accept-env", token]) == 2
    err = capsys.readouterr().err
    assert token not in err and "--accept-env [masked sha256:" in err and err.count("\n") == 1


def test_serve_checks_its_options_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sender.sandbox._cli import serve

    assert serve(port=99999) == 2
    assert serve(port=0, expires_in=-5) == 2
    assert serve(port=0, token_file=str(tmp_path / "no" / "token")) == 2
    assert serve(port=0, app_secret_file=str(tmp_path)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("tokenstore: error: --") for line in err)


@pytest.mark.parametrize("command", ["show", "check", "rotate", "refresh", "revoke", "send"])
def test_verbose_after_the_command(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--to", "1", "--text", "x"] if command == "send" else []
    for flags in (["-v"], ["-vv"], ["-v", "-v"]):
        code = main([command, "-c", str(tmp_path / "missing.yaml"), *extra, *flags])
        assert code == 2  # it parsed: the missing config is reported by the command
        assert "config file not found" in capsys.readouterr().err


@pytest.mark.parametrize("command", JSON_COMMANDS)
def test_json_error_is_one_object_on_stdout(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--to", "1", "--text", "x"] if command == "send" else []
    (tmp_path / "token.txt").write_text(canary())
    code = main([command, "-c", str(tmp_path / "missing.yaml"), *extra, "--json"])
    out, err = capsys.readouterr()
    data = json.loads(out)  # exactly one object: json.loads refuses trailing data
    assert code == 2 and data["status"] == "error" and data["exit_code"] == 2
    assert "config file not found" in data["error"] and data["error"] in err


@pytest.mark.parametrize("command", JSON_COMMANDS)
def test_json_usage_error_is_one_object_too(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--to", "1", "--text", "x"] if command == "send" else []
    out, _ = usage_error([command, *extra, "--json", "--no-such-option"], capsys)
    data = json.loads(out)
    assert data == {"status": "error", "exit_code": 2, "error": data["error"]} and "not shown" in data["error"]


def test_an_unexpected_error_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tokenstore.cli.show as show

    def boom(*args: object, **kwargs: object) -> None:
        raise OverflowError("a bug")

    monkeypatch.setattr(show, "provider_from_config", boom)
    (tmp_path / "x.yaml").write_text("token: {backend: env}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["show", "-c", "x.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected OverflowError: a bug" in err
    assert main(["show", "-c", "x.yaml", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == 1 and data["status"] == "error" and "OverflowError" in data["error"]


#: every command with bad arguments: (argv, documented exit code)
BAD_ARGUMENTS = [
    (["show", "-c", "{dir}"], 2),
    (["show", "-c", "{dir}/missing.yaml"], 2),
    (["show", "--section"], 2),
    (["send", "-c", "{dir}/missing.yaml", "--to", "1", "--text", "x", "--lang", "en"], 2),
    (["send", "--to"], 2),
    (["check", "--warn-days", "1e999"], 2),
    (["check", "-c", "{dir}"], 2),
    (["rotate", "-c", "{dir}/missing.yaml", "extra"], 2),
    (["refresh", "--revoke-old-after", "x"], 2),
    (["refresh", "-c", "{dir}/missing.yaml"], 2),
    (["revoke", "word"], 2),
    (["demo", "--no-such-flag"], 2),
    (["sandbox", "--port", "99999"], 2),
    (["sandbox", "--port", "-1"], 2),
    (["sandbox", "--token-file", "{dir}/missing/token"], 2),
    (["sandbox", "--token-file", "{dir}"], 2),
    (["sandbox", "--expires-in", "-5"], 2),
    (["nosuchcommand"], 2),
]


@pytest.mark.parametrize(("argv", "code"), BAD_ARGUMENTS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_no_traceback_from_any_command(argv: list[str], code: int, tmp_path: Path) -> None:
    """Run as an operator would (a subprocess): one line on stderr, the documented exit code."""
    args = [a.replace("{dir}", str(tmp_path)) for a in argv]
    env = {k: v for k, v in os.environ.items() if k != "TOKENSTORE_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "tokenstore", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_cli_imports_only_public_names() -> None:
    """tokenstore/cli stands on both packages' public names: no ``sender._x`` / ``tokenstore._x`` module, no
    relative import of tokenstore's private modules (the CLI's own ``._common`` is the CLI's business)."""
    import ast

    offenders = []
    for path in sorted((Path(__file__).parent.parent / "tokenstore" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 0:
                    names = [module]
                elif node.level >= 2:  # from tokenstore's package: .. / ..x
                    names = [f"tokenstore.{module}" if module else "tokenstore"]
                if node.level == 0 or node.level >= 2:
                    names += [f"{names[0]}.{alias.name}" for alias in node.names if alias.name.startswith("_")]
            for name in names:
                parts = name.split(".")
                if parts[0] in ("sender", "tokenstore") and any(
                    p.startswith("_") and p != "__version__" for p in parts[1:]
                ):
                    offenders.append(f"{path.name}:{node.lineno}: {name}")
    assert offenders == []


def test_the_sandbox_library_refuses_a_non_finite_lifetime() -> None:
    from sender.sandbox import Sandbox

    sandbox = Sandbox()
    for value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError, match="finite number of seconds"):
            sandbox.issue_token(expires_in=value)
    assert sandbox.issue_token(expires_in=-5)  # an already expired token stays possible (tests need it)

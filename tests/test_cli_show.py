"""`tokenstore show`: source, version, fingerprint, masked preview; never the token; exit codes 0/2/3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract import canary
from tokenstore import fingerprint_of
from tokenstore.cli import main


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tokenstore", *args], capture_output=True, text=True, env=full_env, check=False
    )


def test_show_prints_fingerprint_and_mask_never_the_token(tmp_path: Path) -> None:
    value = canary()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("token:\n  backend: env\n  env: {var: TS_SHOW_TOKEN}\n")
    out = run_cli(["show", "--config", str(cfg)], {"TS_SHOW_TOKEN": value})
    assert out.returncode == 0, out.stderr
    assert value not in out.stdout + out.stderr
    assert value[4:] not in out.stdout
    assert f"fingerprint: {fingerprint_of(value)}" in out.stdout
    assert f"preview:     EAAG…({len(value)} chars)" in out.stdout
    assert "source:      env:TS_SHOW_TOKEN" in out.stdout
    js = run_cli(["show", "--json", "--config", str(cfg)], {"TS_SHOW_TOKEN": value})
    data = json.loads(js.stdout)
    assert data["fingerprint"] == fingerprint_of(value) and data["length"] == len(value)
    assert value not in js.stdout


def test_show_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    value = canary()
    bad = tmp_path / "bad.yaml"
    bad.write_text("token:\n  backend: nope\n")
    assert main(["show", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tokenstore: error: ConfigError: {bad}: token.backend: unknown backend 'nope'")
    assert "Traceback" not in err
    missing = tmp_path / "m.yaml"
    missing.write_text("token:\n  backend: file\n  file: {path: /nonexistent/token}\n")
    assert main(["show", "--config", str(missing)]) == 3
    err = capsys.readouterr().err
    assert err.strip() == "tokenstore: error: SecretNotFound: token: file:/nonexistent/token: the file does not exist"
    malformed = tmp_path / "tok"
    malformed.write_text(f"{value} {value}")
    cfg = tmp_path / "f.yaml"
    cfg.write_text(f"token:\n  backend: file\n  file: {{path: {malformed}}}\n")
    assert main(["show", "-c", str(cfg)]) == 3
    captured = capsys.readouterr()
    assert value not in captured.out + captured.err
    monkeypatch.setenv("TS_OK", value)
    ok = tmp_path / "ok.yaml"
    ok.write_text("token:\n  backend: env\n  env: {var: TS_OK}\n")
    assert main(["show", "-c", str(ok)]) == 0
    captured = capsys.readouterr()
    assert value not in captured.out + captured.err


def test_help_lists_commands() -> None:
    out = run_cli(["--help"])
    assert out.returncode == 0
    assert "show" in out.stdout
    assert "Exit codes: 0 ok" in out.stdout.replace("\n", " ")


def test_show_validates_the_whole_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A token written under whatsapp: (or any bad whatsapp:/app_secret: option) fails show, not the first send."""
    token = canary()
    (tmp_path / "token").write_text(canary())
    (tmp_path / "token").chmod(0o600)
    base = {"token": {"backend": "file", "file": {"path": str(tmp_path / "token")}}}
    for extra, field in (
        ({"whatsapp": {"phone_number_id": "1", "token": token}}, "whatsapp.token: unknown option"),
        ({"whatsapp": {"api_version": "27"}}, "whatsapp.api_version"),
        ({"app_secret": {"backend": "env", "env": {"var": "X"}, "ttl": 3}}, "app_secret.ttl: unknown option"),
    ):
        path = tmp_path / "c.yaml"
        path.write_text(json.dumps({**base, **extra}))
        assert main(["show", "-c", str(path)]) == 2
        out, err = capsys.readouterr()
        assert field in err and token not in out + err and out == ""
    path.write_text(json.dumps({**base, "whatsapp": {"phone_number_id": "1"}}))
    assert main(["show", "-c", str(path)]) == 0
    capsys.readouterr()

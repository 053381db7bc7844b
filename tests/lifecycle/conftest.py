"""Fixtures for the token lifecycle tests: a Graph sandbox whose app secret is a canary, a file-backed token
store holding a 60-day canary token, a config pointing at both, and a CLI runner that checks every output
for secrets."""

from __future__ import annotations

import io
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sender.sandbox import SIXTY_DAYS, Sandbox
from tests.contract import assert_clean, canary

# the sender suite's fixtures, imported so that pytest provides them to this folder's tests too
from tests.sender.conftest import clock as clock
from tests.sender.conftest import clocked_sandbox as clocked_sandbox
from tests.sender.conftest import sandbox as sandbox
from tokenstore.backends.file import FileBackend
from tokenstore.cli import main

TO = "15551234567"
TOKEN_SHAPED = re.compile(r"EAA[A-Za-z0-9]{20,}")
DAY = 86400


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sender", "sender.sandbox", "tokenstore"):
        caplog.set_level(logging.DEBUG, logger=name)


@dataclass
class Env:
    """A sandbox, a token store (file), an app secret store (file) and a config file naming them."""

    sandbox: Sandbox
    tmp: Path
    token_path: Path
    secret_path: Path
    config: Path
    app_secret: str
    initial: str

    @property
    def secrets(self) -> list[str]:
        """Every secret value this environment has handed out so far (tokens issued by Graph included)."""
        return [self.app_secret, *(r.value for r in self.sandbox.tokens())]

    def read(self) -> str:
        return FileBackend(self.token_path).get_token().reveal()

    def write(self, value: str) -> None:
        FileBackend(self.token_path).put_token(value)

    def fingerprint(self) -> str:
        return FileBackend(self.token_path).get_token().fingerprint

    def write_config(self, **changes: Any) -> Path:
        """Rewrite the config with ``changes`` merged into its sections (``token={"cache": {...}}``)."""
        data = yaml.safe_load(self.config.read_text())
        for section, values in changes.items():
            if values is None:
                data.pop(section, None)
            else:
                data.setdefault(section, {}).update(values)
        self.config.write_text(yaml.safe_dump(data))
        return self.config

    def issue(self, *, expires_in: float | None = SIXTY_DAYS, **options: Any) -> str:
        return self.sandbox.issue_token(value=canary(), expires_in=expires_in, **options)


def make_env(sandbox: Sandbox, tmp: Path, *, expires_in: float | None = SIXTY_DAYS, ttl: float = 300) -> Env:
    app_secret = canary("APPSECRET")
    sandbox.state.app.secret = app_secret
    secret_path = tmp / "app_secret"
    FileBackend(secret_path).put_token(app_secret)
    initial = sandbox.issue_token(value=canary(), expires_in=expires_in)
    token_path = tmp / "token"
    FileBackend(token_path).put_token(initial)
    config = tmp / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "whatsapp": {
                    "phone_number_id": sandbox.phone_number_id,
                    "base_url": sandbox.url,
                    "app_id": sandbox.app_id,
                },
                "token": {"backend": "file", "file": {"path": str(token_path)}, "cache": {"ttl": ttl}},
                "app_secret": {"backend": "file", "file": {"path": str(secret_path)}},
            }
        )
    )
    return Env(sandbox, tmp, token_path, secret_path, config, app_secret, initial)


@pytest.fixture
def env(sandbox: Sandbox, tmp_path: Path) -> Env:
    """A store holding a 60-day token issued just now."""
    return make_env(sandbox, tmp_path)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    """Replaces the wait before revoking in ``tokenstore refresh`` (records it instead)."""
    recorder = Sleeps()
    monkeypatch.setattr("tokenstore.cli.refresh._sleep", recorder)
    return recorder


def cli(argv: list[str], capsys: pytest.CaptureFixture[str], env: Env, *extra: str) -> tuple[int, str, str]:
    """Run ``tokenstore ARGV`` in process; no secret and nothing token-shaped may appear in its output."""
    code = main(argv)
    out, err = capsys.readouterr()
    for text in (out, err):
        assert_clean(text, *env.secrets, *extra)
        assert not TOKEN_SHAPED.search(text), f"a token-shaped string in CLI output: {text}"
        assert "CANARY" not in text
    return code, out, err


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))

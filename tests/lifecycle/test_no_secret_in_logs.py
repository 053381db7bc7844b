"""No secret reaches a log record during check, refresh and revoke: these calls carry the token, the
client_secret and the token to revoke in query strings, and httpx logs every request URL at INFO. Handlers
are put on the ``httpx`` and ``httpcore`` loggers themselves, at DEBUG, on top of the session-wide scan."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sender import AsyncGraphTokenClient
from tests.contract import assert_clean
from tests.lifecycle.conftest import Env, Sleeps, cli, stdin


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        out = []
        for record in self.records:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" {record.exc_info[1]!r} {record.exc_info[1]}"
            out.append(f"{record.name} {text}")
        return out


@pytest.fixture
def http_logs() -> Iterator[Capture]:
    capture = Capture()
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(capture)
    try:
        yield capture
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(capture)
            logger.setLevel(level)


def check_clean(capture: Capture, env: Env, *extra: str) -> str:
    texts = capture.texts()
    secrets = [*env.secrets, f"{env.sandbox.app_id}|{env.app_secret}", *extra]
    everything = "\n".join(texts)
    assert_clean(everything, *secrets)
    assert "CANARY" not in everything
    assert any(t.startswith("httpcore.") for t in texts), "the httpcore loggers were not really at DEBUG"
    return everything


def test_check_refresh_revoke_at_debug(
    env: Env, http_logs: Capture, sleeps: Sleeps, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(["-vv", "check", "-c", str(env.config)], capsys, env)[0] == 0
    assert cli(["-vv", "refresh", "-c", str(env.config), "--revoke-old-after", "0"], capsys, env)[0] == 0
    old = env.issue()
    stdin(monkeypatch, old)
    assert cli(["-vv", "revoke", "-c", str(env.config)], capsys, env)[0] == 0
    env.secret_path.write_text("f" * 32)  # a refused call: Graph's error path
    assert cli(["check", "-c", str(env.config)], capsys, env)[0] == 4
    text = check_clean(http_logs, env)
    for path in ("debug_token?input_token=[redacted]", "client_secret=[redacted]", "fb_exchange_token=[redacted]"):
        assert path in text, path
    assert "revoke_token=[redacted]" in text
    request_lines = [t for t in http_logs.texts() if t.startswith("httpx HTTP Request")]
    assert len(request_lines) >= 8


async def test_async_client_at_debug(env: Env, http_logs: Capture) -> None:
    async with AsyncGraphTokenClient.from_config(env.config) as graph:
        new = await graph.refresh(env.initial)
        assert (await graph.inspect(new.token)).is_valid
        assert await graph.revoke(env.initial, access_token=new.token)
    text = check_clean(http_logs, env, new.token.reveal())
    assert "fb_exchange_token=[redacted]" in text and "revoke_token=[redacted]" in text

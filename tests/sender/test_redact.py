"""Secrets never reach a log record, an exception or output: URL redaction, text scrubbing, the filter on
httpx's request log, and one sweep over a busy scenario with canary tokens at DEBUG everywhere."""

from __future__ import annotations

import logging

import httpx
import pytest

import sender
from sender import RedactingFilter, SendError, redact_text, redact_url
from sender.sandbox import Sandbox
from tests.contract import assert_clean, canary
from tests.sender.conftest import TO, Sleeps, Store, log_text, make_async_sender, make_sender
from tokenstore.backends.file import FileBackend


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://g/v26.0/debug_token?input_token=EAAGx&x=1", "https://g/v26.0/debug_token?input_token=[redacted]&x=1"),
        (
            "https://g/oauth/access_token?grant_type=fb_exchange_token&client_id=1&client_secret=s3&fb_exchange_token=t",
            "https://g/oauth/access_token?grant_type=fb_exchange_token&client_id=1&client_secret=[redacted]"
            "&fb_exchange_token=[redacted]",
        ),
        (
            "https://g/oauth/revoke?revoke_token=a&access_token=1|2",
            "https://g/oauth/revoke?revoke_token=[redacted]&access_token=[redacted]",
        ),
        (
            "https://g/v26.0/1/messages?appsecret_proof=abc&appsecret_time=5",
            "https://g/v26.0/1/messages?appsecret_proof=[redacted]&appsecret_time=5",
        ),
        ("https://g/v26.0/1/messages", "https://g/v26.0/1/messages"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_url(httpx.URL(url)) == expected


def test_redact_text() -> None:
    value = canary()
    text = f'Bearer {value} {{"access_token": "{value}"}} 123456789|{"a" * 32} raw {value}'
    scrubbed = redact_text(text, [value])
    assert value not in scrubbed and "a" * 32 not in scrubbed and "123456789|[redacted]" in scrubbed
    assert redact_text("code 190, subcode 463") == "code 190, subcode 463"
    assert redact_text("short EAAG1 stays") == "short EAAG1 stays"


def test_filter_never_breaks_logging() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %d", (object(), 5), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage().endswith(" 5")


def test_httpx_request_line_carries_no_query_secret(
    sandbox: Sandbox, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    sender.debug_token(store.initial, app_id=sandbox.app_id, app_secret=sandbox.app_secret, base_url=sandbox.url)
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("debug_token?input_token=[redacted]" in line for line in lines), lines
    assert_clean(log_text(caplog), store.initial, sandbox.app_secret)


async def test_async_debug_token(sandbox: Sandbox, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    info = await sender.adebug_token(
        store.initial, app_id=sandbox.app_id, app_secret=sandbox.app_secret, base_url=sandbox.url
    )
    assert info.is_valid and info.never_expires and info.can_send_messages
    assert info.fingerprint == FileBackend(store.path).get_token().fingerprint
    assert_clean(repr(info) + log_text(caplog), store.initial, sandbox.app_secret)


def test_canary_sweep(
    tmp_path,
    sandbox: Sandbox,
    store: Store,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    """A busy run at DEBUG (sender, httpx, httpcore, tokenstore): sends, retries, a rotation with a
    revocation, a refused token, Graph errors echoing the token, appsecret_proof, debug_token. No canary
    appears in any record, exception text or repr."""
    app_secret = canary("APPSECRET")
    sandbox.state.app.secret = app_secret
    secret_path = tmp_path / "secret"
    FileBackend(secret_path).put_token(app_secret)
    seen: list[str] = [store.initial, app_secret]
    errors: list[BaseException] = []
    with make_sender(
        sandbox, store.cached(), sleeps, app_secret=FileBackend(secret_path), appsecret_proof="timed"
    ) as client:
        client.send_text(TO, "one")
        sandbox.fail_next(130429)
        client.send_text(TO, "retried")
        seen.append(store.rotate(revoke_old=True))
        client.send_text(TO, "after rotation")
        sandbox.fail_next(100, message=f"(#100) echo {seen[-1]} access_token={seen[-1]}")
        sandbox.revoke_token(seen[-1])
        for attempt in (lambda: client.send_text(TO, "refused"), lambda: client.send({"to": TO, "type": "text"})):
            try:
                attempt()
            except SendError as exc:
                errors.append(exc)
        info = sender.debug_token(seen[-1], app_id=sandbox.app_id, app_secret=app_secret, base_url=sandbox.url)
        assert not info.is_valid
        texts = [repr(info), repr(client), repr(client.provider), repr(client.auth)]
    assert len(errors) == 2
    texts += [str(e) + repr(e) + str(e.__cause__) for e in errors]
    texts.append(log_text(caplog))
    texts += [str(r) for r in sandbox.requests]
    for text in texts:
        assert_clean(text, *seen)
    assert "CANARY" not in "\n".join(texts)
    assert any(r.name == "httpcore.http11" for r in caplog.records)  # the deep loggers were really on


async def test_canary_sweep_async(sandbox: Sandbox, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    async with make_async_sender(sandbox, store.cached()) as client:
        await client.send_text(TO, "a")
        new = store.rotate(revoke_old=True)
        await client.send_text(TO, "b")
        sandbox.revoke_token(new)
        with pytest.raises(SendError) as info:
            await client.send_text(TO, "c")
    for text in (log_text(caplog), str(info.value), repr(info.value)):
        assert_clean(text, store.initial, new)

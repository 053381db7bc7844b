"""Security: the issue's list, end to end over HTTP where it applies, with canary secrets scanned for in every
log record, error (message, repr, traceback) and response."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Iterator

import httpx
import pytest

import sender
from tests.sender.conftest import log_text
from tests.webhooks.conftest import Clock, SecretFile, sign, status_body, uvicorn_server, wsgi_server

BODY = status_body()
TEN_MIB = b"{" + b" " * (10 << 20) + b"}"


def everything_about(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc)) + repr(exc.__cause__) + repr(exc.__context__)


@pytest.fixture
def servers(verifier: sender.WebhookVerifier) -> Iterator[list[str]]:
    with wsgi_server(sender.WebhookWSGI(verifier)) as wsgi, uvicorn_server(sender.WebhookASGI(verifier)) as asgi:
        yield [wsgi, asgi]


def test_the_issue_list_over_http(
    servers: list[str],
    verifier: sender.WebhookVerifier,
    app_secret: SecretFile,
    verify_token: SecretFile,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = app_secret.value
    answers: list[httpx.Response] = []
    for base in servers:
        with httpx.Client(base_url=base, timeout=30) as client:

            def post(body: bytes, signature: str | None) -> int:
                headers = {} if signature is None else {"X-Hub-Signature-256": signature}
                answer = client.post("/", content=body, headers=headers)
                answers.append(answer)
                return answer.status_code

            assert post(BODY, sign("forged-secret", BODY)) == 401  # forged signature
            assert post(BODY, sign(app_secret.value, status_body("read"))) == 401  # another body's signature
            assert post(BODY, sign(app_secret.value, BODY).upper()) == 401  # uppercase hex
            assert post(BODY, "sha256=" + sign(app_secret.value, BODY)[7:].upper()) == 401
            # whitespace inside the value (around it, HTTP strips it before any app sees the header)
            assert post(BODY, "sha256= " + sign(app_secret.value, BODY)[7:]) == 401
            assert post(BODY, sign(app_secret.value, BODY)[:20] + "\t" + sign(app_secret.value, BODY)[20:]) == 401
            assert post(b"", sign(app_secret.value, b"")) == 401  # empty body
            assert post(TEN_MIB, sign(app_secret.value, TEN_MIB)) == 413  # 10 MiB body
            assert post(BODY, sign(app_secret.value, BODY)) == 200
    # a signature by the old secret after rotation
    new = "appsecretCANARYrotated00000000000000"
    app_secret.write(new)
    clock.advance(30)
    for base in servers:
        with httpx.Client(base_url=base) as client:
            assert client.post("/", content=BODY, headers={"X-Hub-Signature-256": sign(new, BODY)}).status_code == 200
            old_answer = client.post("/", content=BODY, headers={"X-Hub-Signature-256": sign(old, BODY)})
            assert old_answer.status_code == 401
            answers.append(old_answer)
            handshake = client.get(
                "/",
                params={"hub.mode": "subscribe", "hub.verify_token": verify_token.value + "x", "hub.challenge": "1"},
            )
            assert handshake.status_code == 403
            answers.append(handshake)
    secrets = (old, new, verify_token.value)
    for answer in answers:
        text = answer.text + str(answer.headers)
        assert not any(s in text for s in secrets)
    logs = log_text(caplog)
    assert not any(s in logs for s in secrets)
    assert verifier.stats["accepted"] == 4


def test_errors_carry_no_secret(
    verifier: sender.WebhookVerifier, app_secret: SecretFile, verify_token: SecretFile
) -> None:
    expected_hex = sign(app_secret.value, BODY)[7:]
    errors: list[BaseException] = []
    for header in (sign("x", BODY), None, "sha1=00", sign(app_secret.value, BODY).upper()):
        try:
            verifier.verify(BODY, header)
        except sender.InvalidSignature as exc:
            errors.append(exc)
    try:
        asyncio.run(verifier.averify(BODY, sign("x", BODY)))
    except sender.InvalidSignature as exc:
        errors.append(exc)
    for args in (("subscribe", "wrong", "1"), ("subscribe", verify_token.value, ""), ("x", verify_token.value, "1")):
        try:
            verifier.verify_subscription(*args)
        except sender.SubscriptionRefused as exc:
            errors.append(exc)
    assert len(errors) == 8
    for exc in errors:
        text = everything_about(exc)
        assert app_secret.value not in text and verify_token.value not in text and expected_hex not in text
    # every refusal reads the same: nothing tells a forger which part failed
    assert {str(e) for e in errors if isinstance(e, sender.InvalidSignature)} == {"the webhook signature is invalid"}
    assert {str(e) for e in errors if isinstance(e, sender.SubscriptionRefused)} == {
        "the webhook subscription was refused"
    }

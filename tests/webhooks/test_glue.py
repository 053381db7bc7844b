"""The framework glue over real HTTP on loopback: sender.WebhookWSGI under the standard library's WSGI server
(alone, and mounted in a Flask app), sender.WebhookASGI under uvicorn (alone), and the FastAPI example's
GET/POST /webhook under uvicorn, fed by the sandbox. No response ever carries a secret."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

import sender
from sender.sandbox import Sandbox, account_update_payload
from tests.conftest import need
from tests.ecosystem.conftest import load_example
from tests.sender.conftest import Store, log_text
from tests.webhooks.conftest import Clock, SecretFile, sign, status_body, uvicorn_server, wsgi_server
from tokenstore import BackendUnavailable, Token, TokenProvider

BODY = status_body("delivered", ref="ref-glue")


class Hooks:
    def __init__(self) -> None:
        self.events: list[sender.WebhookEvent] = []
        self.batches = 0
        self.updates: list[sender.AccountUpdateEvent] = []
        self.fail = False

    def on_event(self, event: sender.WebhookEvent) -> None:
        if self.fail:
            raise RuntimeError("the hook failed")
        self.events.append(event)

    def on_events(self, events: list[sender.WebhookEvent]) -> None:
        self.batches += 1

    def on_account_update(self, event: sender.AccountUpdateEvent) -> None:
        self.updates.append(event)


class AsyncHooks(Hooks):
    async def on_event(self, event: sender.WebhookEvent) -> None:  # type: ignore[override]
        super().on_event(event)


def exchanges(
    base: str, app_secret: SecretFile, verify_token: SecretFile, path: str = "/webhook"
) -> list[httpx.Response]:
    """The same conversation against any of the servers; returns every response for the secret scan."""
    seen: list[httpx.Response] = []
    with httpx.Client(base_url=base, timeout=10) as client:

        def get(**params: str) -> httpx.Response:
            answer = client.get(path, params=params)
            seen.append(answer)
            return answer

        def post(body: bytes, signature: str | None, **headers: str) -> httpx.Response:
            h = {"Content-Type": "application/json", **headers}
            if signature is not None:
                h["X-Hub-Signature-256"] = signature
            answer = client.post(path, content=body, headers=h)
            seen.append(answer)
            return answer

        ok = get(**{"hub.mode": "subscribe", "hub.verify_token": verify_token.value, "hub.challenge": "1158201444"})
        assert (ok.status_code, ok.text) == (200, "1158201444")
        assert ok.headers["content-type"].startswith("text/plain")
        bad = get(**{"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"})
        assert bad.status_code == 403
        assert get(**{"hub.mode": "subscribe", "hub.challenge": "1"}).status_code == 403
        assert post(BODY, sign(app_secret.value, BODY)).status_code == 200
        assert post(BODY, sign("forged", BODY)).status_code == 401
        assert post(BODY, None).status_code == 401
        assert post(BODY, sign(app_secret.value, BODY + b"x")).status_code == 401
        assert post(BODY, sign(app_secret.value, BODY).upper()).status_code == 401
        assert post(b"", sign(app_secret.value, b"")).status_code == 401
        assert post(b"not json", sign(app_secret.value, b"not json")).status_code == 400
        big = b"{" + b" " * 4096 + b"}"
        assert post(big, sign(app_secret.value, big)).status_code == 413
        answer = client.put(path, content=BODY)
        seen.append(answer)
        assert answer.status_code == 405
    return seen


def assert_no_secret(responses: list[httpx.Response], *secrets: str) -> None:
    for answer in responses:
        text = answer.text + str(answer.headers)
        for secret in secrets:
            assert secret not in text


@pytest.fixture
def verifier(app_secret: SecretFile, verify_token: SecretFile, clock: Clock) -> sender.WebhookVerifier:
    return sender.WebhookVerifier(
        app_secret.provider(), verify_token=verify_token.provider(), max_body=4096, clock=clock
    )


def test_wsgi_app_under_a_real_wsgi_server(
    verifier: sender.WebhookVerifier, app_secret: SecretFile, verify_token: SecretFile, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = Hooks()
    app = sender.WebhookWSGI(verifier, on_event=hooks.on_event, on_events=hooks.on_events)
    with wsgi_server(app) as base:
        responses = exchanges(base, app_secret, verify_token)
        hooks.fail = True
        with httpx.Client(base_url=base) as client:
            failed = client.post(
                "/webhook", content=BODY, headers={"X-Hub-Signature-256": sign(app_secret.value, BODY)}
            )
        assert failed.status_code == 500  # Meta retries: nothing is acknowledged that was not handled
    assert hooks.batches == 2 and [type(e) for e in hooks.events] == [sender.StatusEvent]
    assert_no_secret([*responses, failed], app_secret.value, verify_token.value)
    assert app_secret.value not in log_text(caplog) and verify_token.value not in log_text(caplog)


def test_wsgi_app_mounted_in_flask(
    verifier: sender.WebhookVerifier, app_secret: SecretFile, verify_token: SecretFile
) -> None:
    need(importlib.util.find_spec("flask") is not None, "flask (pip install flask)")
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    hooks = Hooks()
    flask_app = Flask("shop")

    @flask_app.get("/")
    def index() -> str:
        return "shop"

    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/webhook": sender.WebhookWSGI(verifier, on_event=hooks.on_event)}
    )
    with wsgi_server(flask_app) as base:
        responses = exchanges(base, app_secret, verify_token)
        assert httpx.get(base + "/").text == "shop"
    assert len(hooks.events) == 1
    assert_no_secret(responses, app_secret.value, verify_token.value)


def test_asgi_app_alone_under_uvicorn(
    verifier: sender.WebhookVerifier, app_secret: SecretFile, verify_token: SecretFile
) -> None:
    hooks = AsyncHooks()
    app = sender.WebhookASGI(verifier, on_event=hooks.on_event, on_account_update=hooks.on_account_update)
    update = account_update_payload("PARTNER_APP_UNINSTALLED", waba_id="42")
    import json

    update_body = json.dumps(update).encode()
    with uvicorn_server(app) as base:
        responses = exchanges(base, app_secret, verify_token, path="/")
        answer = httpx.post(
            base + "/", content=update_body, headers={"X-Hub-Signature-256": sign(app_secret.value, update_body)}
        )
        assert answer.status_code == 200

        # a body larger than max_body, streamed without Content-Length, is cut off as soon as it passes it
        def chunks() -> Iterator[bytes]:
            for _ in range(8):
                yield b" " * 1024

        streamed = httpx.post(base + "/", content=chunks(), headers={"X-Hub-Signature-256": sign("x", b"")})
        assert streamed.status_code == 413
    assert [e.uninstalled for e in hooks.updates] == [True]
    assert_no_secret([*responses, answer, streamed], app_secret.value, verify_token.value)


class Down(TokenProvider):
    source = "test:down"

    def get_token(self) -> Token:
        raise BackendUnavailable("the store is down", source=self.source)


def test_store_down_is_503_so_that_meta_retries(clock: Clock) -> None:
    app = sender.WebhookWSGI(sender.WebhookVerifier(Down(), verify_token=Down(), clock=clock))
    with wsgi_server(app) as base, httpx.Client(base_url=base) as client:
        answer = client.post("/webhook", content=BODY, headers={"X-Hub-Signature-256": sign("x", BODY)})
        assert answer.status_code == 503 and answer.headers["retry-after"] == "30"
        handshake = client.get(
            "/webhook", params={"hub.mode": "subscribe", "hub.verify_token": "t", "hub.challenge": "1"}
        )
        assert handshake.status_code == 503


# -- the FastAPI example --------------------------------------------------------------------------------------
@pytest.fixture
def example_config(
    tmp_path: Path, sandbox: Sandbox, store: Store, app_secret: SecretFile, verify_token: SecretFile
) -> Path:
    sandbox.rotate_app_secret(app_secret.value)
    config = {
        "whatsapp": {"phone_number_id": sandbox.phone_number_id, "base_url": sandbox.url, "retry": False},
        "token": {"backend": "file", "file": {"path": str(store.path)}, "cache": {"ttl": 300, "refresh_ahead": 0}},
        "app_secret": {"backend": "file", "file": {"path": str(app_secret.path)}},
        "webhook": {"verify_token": {"backend": "file", "file": {"path": str(verify_token.path)}}, "max_body": 4096},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fastapi_example_webhook_routes_under_uvicorn(
    example_config: Path,
    sandbox: Sandbox,
    app_secret: SecretFile,
    verify_token: SecretFile,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    need(importlib.util.find_spec("fastapi") is not None, "fastapi (pip install fastapi)")
    service = load_example("fastapi_service")
    monkeypatch.setenv("TOKENSTORE_CONFIG", str(example_config))
    updates: list[sender.AccountUpdateEvent] = []
    app = service.create_app(on_account_update=updates.append)
    with uvicorn_server(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        responses = exchanges(base, app_secret, verify_token)
        # Meta's side: the sandbox subscribes (handshake), then delivers signed statuses for each send
        sandbox.subscribe_webhook(base + "/webhook", verify_token.value)
        sent = client.post("/messages/template", json={"to": "15551234567", "template": "hello_world"})
        assert sent.status_code == 200, sent.text
        reference = sent.json()["reference"]
        outcome = client.get(f"/messages/outcome/{reference}", params={"wait": 10})
        assert outcome.status_code == 200 and outcome.json()["message_id"] == sent.json()["message_id"]
        assert sandbox.wait_for_webhooks(10)
        assert client.get(f"/messages/outcome/{reference}").json()["status"] == "read"
        assert client.get("/messages/outcome/ref-unknown").status_code == 404
        sandbox.emit_webhook(account_update_payload("PARTNER_APP_UNINSTALLED", waba_id="777"))
        assert sandbox.wait_for_webhooks(10)
    assert [u.account_waba_id for u in updates] == ["777"]
    assert all(d.delivered for d in sandbox.webhook_deliveries)
    assert_no_secret([*responses, sent, outcome], app_secret.value, verify_token.value)
    assert app_secret.value not in log_text(caplog) and verify_token.value not in log_text(caplog)


async def test_fastapi_example_without_webhook_config_answers_404(
    tmp_path: Path, sandbox: Sandbox, store: Store
) -> None:
    need(importlib.util.find_spec("fastapi") is not None, "fastapi (pip install fastapi)")
    service = load_example("fastapi_service")
    config = tmp_path / "plain.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "whatsapp": {"phone_number_id": sandbox.phone_number_id, "base_url": sandbox.url},
                "token": {"backend": "file", "file": {"path": str(store.path)}},
            }
        )
    )
    app = service.create_app(config)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.post("/webhook", content=BODY)).status_code == 404


def test_fastapi_dependency_under_uvicorn(
    verifier: sender.WebhookVerifier, app_secret: SecretFile, verify_token: SecretFile
) -> None:
    need(importlib.util.find_spec("fastapi") is not None, "fastapi (pip install fastapi)")
    from fastapi import Depends, FastAPI

    reconciler = sender.Reconciler()
    webhook = sender.WebhookASGI(verifier, reconciler=reconciler)
    verified = webhook.dependency()
    app = FastAPI()
    received: list[sender.WebhookEvent] = []

    @app.post("/hooks/whatsapp")
    async def receive(events: list[sender.WebhookEvent] = Depends(verified)) -> dict[str, int]:  # noqa: B008
        received.extend(events)
        return {"events": len(events)}

    app.add_route("/hooks/whatsapp", webhook, methods=["GET"])  # the handshake through the ASGI app
    big = b"{" + b" " * 5000 + b"}"
    with uvicorn_server(app) as base, httpx.Client(base_url=base) as client:
        ok = client.post("/hooks/whatsapp", content=BODY, headers={"X-Hub-Signature-256": sign(app_secret.value, BODY)})
        assert (ok.status_code, ok.json()) == (200, {"events": 1})
        forged = client.post("/hooks/whatsapp", content=BODY, headers={"X-Hub-Signature-256": sign("x", BODY)})
        assert forged.status_code == 401 and forged.json() == {"detail": "invalid signature"}
        assert (
            client.post(
                "/hooks/whatsapp", content=big, headers={"X-Hub-Signature-256": sign(app_secret.value, big)}
            ).status_code
            == 413
        )
        hand = client.get(
            "/hooks/whatsapp",
            params={"hub.mode": "subscribe", "hub.verify_token": verify_token.value, "hub.challenge": "77"},
        )
        assert (hand.status_code, hand.text) == (200, "77")
    assert [type(e) for e in received] == [sender.StatusEvent]
    assert reconciler.status("ref-glue") is not None
    assert app_secret.value not in forged.text + ok.text

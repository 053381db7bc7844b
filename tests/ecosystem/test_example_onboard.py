"""The FastAPI example's ``POST /onboard`` (Embedded Signup's code in, the customer's token stored) and
``POST /tenants/{tenant}/refresh``, through httpx's ASGI transport against the sandbox. No code or token may
appear in an answer or a log record."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import tokenstore
from sender.sandbox import Sandbox
from tests.conftest import need
from tests.contract import canary
from tests.ecosystem.conftest import TO, load_example
from tests.sender.conftest import Store, log_text
from tokenstore.backends.file import FileBackend

DAY = 86400


@pytest.fixture(scope="module")
def service() -> Any:
    need(importlib.util.find_spec("fastapi") is not None, "fastapi (pip install fastapi)")
    return load_example("fastapi_service")


@pytest.fixture
def config(tmp_path: Path, sandbox: Sandbox, store: Store) -> Path:
    secret = tmp_path / "app_secret"
    sandbox.state.app.secret = canary("APPSECRET")
    FileBackend(secret).put_token(sandbox.state.app.secret)
    (tmp_path / "tenants").mkdir()
    data = {
        "whatsapp": {
            "phone_number_id": sandbox.phone_number_id,
            "base_url": sandbox.url,
            "app_id": sandbox.app_id,
            "retry": False,
        },
        "token": {"backend": "file", "file": {"path": str(store.path)}},
        "app_secret": {"backend": "file", "file": {"path": str(secret)}},
        "tenants": {
            "token": {"backend": "file", "file": {"path": str(tmp_path / "tenants" / "{tenant}")}},
            "numbers_from": {"backend": "file", "file": {"path": str(tmp_path / "numbers.json")}},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
async def client(service: Any, config: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = service.create_app(config, revoke_wait=0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as c:
            yield c


def secrets_of(sandbox: Sandbox, *extra: str) -> list[str]:
    return [sandbox.state.app.secret, *(r.value for r in sandbox.tokens()), *extra]


def clean(text: str, sandbox: Sandbox, *extra: str) -> bool:
    return not any(s in text for s in secrets_of(sandbox, *extra))


async def test_onboard_stores_the_customer_and_the_customer_can_send(
    client: httpx.AsyncClient, sandbox: Sandbox, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = sandbox.signup_code(numbers=2, value=canary("CODE"))
    (waba_id,) = sandbox.signup_wabas(code)
    answer = await client.post("/onboard", json={"code": code})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    business = sandbox.business(waba_id)
    assert body["waba_ids"] == [waba_id] and body["tenants"][0]["tenant"] == waba_id
    assert body["tenants"][0]["numbers"] == business.phone_number_ids and body["tenants"][0]["numbers_added"]
    assert clean(answer.text, sandbox, code)
    with tokenstore.load_tenants(config) as tenants:
        assert tenants.get_token(waba_id).fingerprint == body["fingerprint"]
        assert tenants.tenant_for_number(business.phone_number_ids[0]) == waba_id
    # signing up again replaces the token; the old one is revoked after the answer (the wait is 0 here)
    again = await client.post("/onboard", json={"code": sandbox.signup_code(waba_id, value=canary("CODE"))})
    assert again.status_code == 200 and again.json()["tenants"][0]["replaced"] == body["fingerprint"]
    old = sandbox.token_record(body["fingerprint"])
    assert old is not None and old.status(sandbox.clock()) == "revoked"
    assert clean(log_text(caplog), sandbox, code)


@pytest.mark.parametrize(
    "body",
    [None, {}, {"code": ""}, {"code": 12345}, {"code": "two words"}, {"code": "x" * 5000}],
)
async def test_onboard_refuses_a_malformed_body_without_echoing_it(
    client: httpx.AsyncClient, sandbox: Sandbox, body: Any
) -> None:
    answer = await client.post("/onboard", content=b"not json" if body is None else json.dumps(body).encode())
    assert answer.status_code == 400 and answer.json()["error"] == "BadRequest"
    assert "two words" not in answer.text and "x" * 100 not in answer.text
    assert sandbox.route_counts()["oauth.access_token"] == 0


async def test_onboard_errors(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    # a used code: 400, ask the customer to sign up again
    code = sandbox.signup_code(value=canary("CODE"))
    assert (await client.post("/onboard", json={"code": code})).status_code == 200
    answer = await client.post("/onboard", json={"code": code})
    assert answer.status_code == 400 and answer.json()["error"] == "SignupCodeRejected"
    assert "sign up again" in answer.json()["note"] or "Embedded Signup again" in answer.json()["note"]
    # no messaging permission: 422, nothing stored
    bad = sandbox.signup_code(scopes=["whatsapp_business_management"], value=canary("CODE"))
    answer = await client.post("/onboard", json={"code": bad})
    assert answer.status_code == 422 and "nothing was stored" in answer.json()["message"]
    # Meta down: 503
    sandbox.fail_next(2, route="oauth.access_token")
    answer = await client.post("/onboard", json={"code": sandbox.signup_code(value=canary("CODE"))})
    assert answer.status_code == 503
    for text in (answer.text,):
        assert clean(text, sandbox, code, bad)


async def test_refresh_a_tenant(client: httpx.AsyncClient, sandbox: Sandbox, config: Path) -> None:
    waba = sandbox.add_business(numbers=1, token=False)
    value = sandbox.issue_business_token(waba.waba_id, value=canary(), expires_in=3 * DAY)
    FileBackend(config.parent / "tenants" / waba.waba_id).put_token(value)
    answer = await client.post(f"/tenants/{waba.waba_id}/refresh")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["action"] == "refreshed" and data["old_fingerprint"] == tokenstore.fingerprint_of(value)
    assert FileBackend(config.parent / "tenants" / waba.waba_id).get_token().fingerprint == data["new_fingerprint"]
    assert clean(answer.text, sandbox)
    assert (await client.post("/tenants/no-such-tenant/refresh")).status_code == 404
    assert (await client.post("/tenants/a%2F..%2Fb/refresh")).status_code in (404, 422)


async def test_a_sender_for_the_onboarded_number(client: httpx.AsyncClient, sandbox: Sandbox, config: Path) -> None:
    import sender

    code = sandbox.signup_code(value=canary("CODE"))
    body = (await client.post("/onboard", json={"code": code})).json()
    number = body["tenants"][0]["numbers"][0]
    async with sender.AsyncTenantSender.from_config(config) as fleet:
        result = await fleet.for_number(number).send_text(TO, "hello new customer")
    assert result.token_fingerprint == body["fingerprint"]


def test_onboard_under_uvicorn_on_loopback(
    service: Any, config: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Embedded Signup callback as deployed: the service under uvicorn, the code posted over real HTTP."""
    import socket
    import threading
    import time

    need(importlib.util.find_spec("uvicorn") is not None, "uvicorn (pip install uvicorn)")
    import uvicorn

    monkeypatch.setenv("TOKENSTORE_CONFIG", str(config))
    app = service.create_app(revoke_wait=0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        code = sandbox.signup_code(value=canary("CODE"))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            answer = client.post("/onboard", json={"code": code})
            again = client.post("/onboard", json={"code": code})
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert answer.status_code == 200, answer.text
    assert again.status_code == 400 and again.json()["error"] == "SignupCodeRejected"
    assert clean(answer.text + again.text, sandbox, code)
    (waba_id,) = sandbox.signup_wabas(code)
    with tokenstore.load_tenants(config) as tenants:
        assert tenants.get_token(waba_id).fingerprint == answer.json()["fingerprint"]

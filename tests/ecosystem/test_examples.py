"""The scripts under examples/, run against the sandbox: the FastAPI service (through httpx's ASGI transport,
and once under uvicorn on loopback) and the plain worker (a subprocess fed JSON lines)."""

from __future__ import annotations

import importlib.util
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import sender
import tokenstore
from sender.sandbox import Sandbox
from tests.conftest import need
from tests.ecosystem.conftest import EXAMPLES, ROOT, TO, load_example
from tests.sender.conftest import Store, log_text


def write_config(path: Path, sandbox: Sandbox, store: Store, **whatsapp: Any) -> Path:
    config = {
        "whatsapp": {
            "phone_number_id": sandbox.phone_number_id,
            "base_url": sandbox.url,
            "retry": False,
            **whatsapp,
        },
        "token": {"backend": "file", "file": {"path": str(store.path)}, "cache": {"ttl": 300, "refresh_ahead": 0}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


# -- the FastAPI service ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service() -> Any:
    need(importlib.util.find_spec("fastapi") is not None, "fastapi (pip install fastapi)")
    return load_example("fastapi_service")


@pytest.fixture
def config(tmp_path: Path, sandbox: Sandbox, store: Store) -> Path:
    return write_config(tmp_path / "config.yaml", sandbox, store)


@pytest.fixture
async def api(service: Any, config: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = service.create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
            yield client, app


def template(**extra: Any) -> dict[str, Any]:
    return {"to": TO, "template": "hello_world", "language": "en_US", **extra}


async def test_service_sends_templates_with_one_sender_for_its_life(
    api: tuple[httpx.AsyncClient, Any], sandbox: Sandbox
) -> None:
    client, app = api
    whatsapp = app.state.sender
    assert isinstance(whatsapp, sender.AsyncSender)
    answers = [
        await client.post("/messages/template", json=template(biz_opaque_callback_data=f"o{i}")) for i in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    ids = [a.json()["message_id"] for a in answers]
    assert all(i.startswith("wamid.") for i in ids) and len(set(ids)) == 3
    assert answers[0].json()["message_status"] == "accepted" and answers[0].json()["attempts"] == 1
    assert app.state.sender is whatsapp  # the same sender served every request
    assert [m.message_id for m in sandbox.received] == ids
    assert sandbox.received[0].body["template"] == {"name": "hello_world", "language": {"code": "en_US"}}
    health = await client.get("/healthz")
    assert health.json() == {"status": "ok"}


async def test_service_survives_rotation_with_revocation(
    api: tuple[httpx.AsyncClient, Any], sandbox: Sandbox, store: Store
) -> None:
    client, app = api
    assert (
        await client.post("/messages/template", json=template(biz_opaque_callback_data="before"))
    ).status_code == 200
    new = store.rotate()
    answer = await client.post("/messages/template", json=template(biz_opaque_callback_data="after"))
    assert answer.status_code == 200, answer.text
    assert [r.status for r in sandbox.requests] == [200, 401, 200]
    assert [m.body["biz_opaque_callback_data"] for m in sandbox.received] == ["before", "after"]
    assert sandbox.requests[-1].token_fingerprint == tokenstore.fingerprint_of(new)
    metrics = (await client.get("/metrics/token")).json()
    mine = metrics[app.state.sender.provider.source]
    assert (mine["rejections"], mine["resends"], mine["auth_failures"]) == (1, 1, 0)
    assert store.initial not in json.dumps(metrics) and new not in json.dumps(metrics)


async def test_service_maps_errors_to_http_answers(
    api: tuple[httpx.AsyncClient, Any], sandbox: Sandbox, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = api
    post = client.post
    # what the caller must fix
    answer = await post("/messages/template", json=template(template="no_such_template"))
    assert answer.status_code == 422 and answer.json()["error"] == "TemplateError" and answer.json()["code"] == 132001
    answer = await post("/messages/template", json=template(to="not a number"))
    assert answer.status_code == 422 and answer.json()["error"] == "InvalidRequest"
    answer = await post("/messages/template", json={"to": TO})
    assert answer.status_code == 422  # FastAPI's own validation: no template
    # rate limited: 429 with a Retry-After
    sandbox.fail_next(130429, retry_after=7)
    answer = await post("/messages/template", json=template())
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7" and answer.json()["retryable"] is True
    # Meta down: 503
    sandbox.fail_next(131000, status=500)
    answer = await post("/messages/template", json=template())
    assert answer.status_code == 503 and answer.json()["error"] == "ServerError"
    # the store holds a token Meta revoked: 502 (an operator must rotate), and no token in the answer
    sandbox.revoke_token(store.initial)
    answer = await post("/messages/template", json=template())
    assert answer.status_code == 502 and answer.json()["error"] == "AuthenticationError"
    assert "rotate the token in the store" in answer.json()["message"]
    assert store.initial not in answer.text
    assert sandbox.received == []
    assert store.initial not in log_text(caplog)


async def test_service_lifespan_closes_the_sender(service: Any, config: Path) -> None:
    app = service.create_app(config)
    async with app.router.lifespan_context(app):
        whatsapp = app.state.sender
    with pytest.raises(RuntimeError, match="closed"):
        await whatsapp.send_text(TO, "after shutdown")


async def test_service_refuses_to_start_on_a_bad_config(
    service: Any, tmp_path: Path, sandbox: Sandbox, store: Store
) -> None:
    bad = write_config(tmp_path / "bad.yaml", sandbox, store, api_version="26")
    app = service.create_app(bad)
    with pytest.raises(tokenstore.ConfigError) as info:
        async with app.router.lifespan_context(app):
            pass
    assert "bad.yaml" in str(info.value) and "whatsapp.api_version" in str(info.value)


@pytest.fixture
def uvicorn_server(service: Any, config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    need(importlib.util.find_spec("uvicorn") is not None, "uvicorn (pip install uvicorn)")
    import uvicorn

    monkeypatch.setenv("TOKENSTORE_CONFIG", str(config))
    app = service.create_app()  # the config from $TOKENSTORE_CONFIG, as deployed
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()


def test_service_under_uvicorn_on_loopback(uvicorn_server: str, sandbox: Sandbox, store: Store) -> None:
    with httpx.Client(base_url=uvicorn_server, timeout=10) as client:
        first = client.post("/messages/template", json=template(biz_opaque_callback_data="u1"))
        store.rotate()
        second = client.post("/messages/template", json=template(biz_opaque_callback_data="u2"))
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert [m.body["biz_opaque_callback_data"] for m in sandbox.received] == ["u1", "u2"]
    assert [r.status for r in sandbox.requests] == [200, 401, 200]


# -- the worker ---------------------------------------------------------------------------------------------
def worker(config: Path | None, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if config is not None:
        env["TOKENSTORE_CONFIG"] = str(config)
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / "worker.py"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def readline(proc: subprocess.Popen[str], timeout: float = 20) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the worker wrote no result line in time"
    line = proc.stdout.readline()
    assert line, f"the worker ended early: {proc.stderr.read() if proc.stderr else ''}"
    result: dict[str, Any] = json.loads(line)
    return result


def feed(proc: subprocess.Popen[str], job: dict[str, Any]) -> dict[str, Any]:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.flush()
    return readline(proc)


def test_worker_keeps_sending_across_a_rotation_without_restart(config: Path, sandbox: Sandbox, store: Store) -> None:
    proc = worker(config)
    try:
        one = feed(proc, {"id": "a", "to": TO, "template": "hello_world"})
        two = feed(proc, {"id": "b", "to": TO, "text": "plain text"})
        new = store.rotate()  # while the worker runs: new token in the store, the old one revoked
        three = feed(proc, {"id": "c", "to": TO, "text": "after rotation"})
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert [r["id"] for r in (one, two, three)] == ["a", "b", "c"]
    assert all(r["ok"] for r in (one, two, three)), (one, two, three)
    assert out == ""
    assert [m.message_id for m in sandbox.received] == [one["message_id"], two["message_id"], three["message_id"]]
    assert [r.status for r in sandbox.requests] == [200, 200, 401, 200]
    # the final counters, logged on stderr; never a token anywhere
    counters = json.loads(err.split("token layer: ", 1)[1].splitlines()[0])
    assert (counters["resends"], counters["rejections"], counters["auth_failures"]) == (1, 1, 0)
    assert tokenstore.fingerprint_of(new) in err
    assert store.initial not in err and new not in err


def test_worker_reports_failed_jobs_and_exits_1(config: Path, sandbox: Sandbox) -> None:
    proc = worker(config)
    jobs = [
        {"id": 1, "to": TO, "template": "no_such_template"},
        {"id": 2, "to": TO},
        {"id": 3, "to": TO, "text": "fine"},
    ]
    out, err = proc.communicate("\n".join(json.dumps(j) for j in jobs) + "\nnot json\n\n", timeout=30)
    assert proc.returncode == 1, err
    results = [json.loads(line) for line in out.splitlines()]
    assert [r.get("id", r.get("line")) for r in results] == [1, 2, 3, 4]
    assert results[0]["error"] == "TemplateError" and results[0]["code"] == 132001
    assert results[1]["error"] == "InvalidRequest"
    assert results[2]["ok"] is True
    assert results[3] == {"line": 4, "ok": False, "error": "InvalidJob", "message": "not a JSON object"}
    assert sandbox.received_counts() == {"fine": 1}


def test_worker_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("whatsapp: {phone_number_id: '1'}\ntoken: {backend: nosuch}\n")
    proc = worker(bad)
    out, err = proc.communicate("", timeout=30)
    assert proc.returncode == 2
    assert out == "" and "bad.yaml" in err and "token.backend" in err


def test_worker_stops_on_sigterm_while_waiting(config: Path, sandbox: Sandbox) -> None:
    proc = worker(config)
    try:
        assert feed(proc, {"id": "x", "to": TO, "text": "one"})["ok"] is True
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    # usually idle on stdin by then (stops at once); if the signal beat the end of the job, it stops right after
    assert "stopped while waiting" in err or "stopping after the job in flight" in err
    assert "token layer: " in err

"""The Graph sandbox itself: tokens (issue, rotate, revoke, expire on a moved clock), debug_token, schema
validation, faults, control routes, clean shutdown, and the command line."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from sender.sandbox import SIXTY_DAYS, ManualClock, Route, Sandbox, graph_error, versioned
from tests.contract import canary
from tests.sender.conftest import TO
from tests.servers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
HTTP = httpx.Client(timeout=5, verify=False)  # one pool for the whole module: plain http on loopback only


@pytest.fixture(autouse=True, scope="module")
def _close_http() -> object:
    yield
    HTTP.close()


def post(sb: Sandbox, token: str | None, body: object, *, phone: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return HTTP.post(f"{sb.url}/v26.0/{phone or sb.phone_number_id}/messages", json=body, headers=headers)


def text(body: str = "hi") -> dict[str, object]:
    return {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": body}}


def debug(sb: Sandbox, input_token: str, auth: str | None = None) -> httpx.Response:
    return HTTP.get(
        f"{sb.url}/v26.0/debug_token",
        params={"input_token": input_token},
        headers={"Authorization": f"Bearer {auth or sb.app_token}"},
    )


def test_success_shape(sandbox: Sandbox) -> None:
    token = sandbox.issue_token()
    response = post(sandbox, token, text())
    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": TO, "wa_id": TO}]
    assert body["messages"][0]["id"].startswith("wamid.")
    template = {
        "messaging_product": "whatsapp",
        "to": "+1 555 123 4567",
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    }
    first = post(sandbox, token, template).json()
    assert first["contacts"][0] == {"input": "+1 555 123 4567", "wa_id": TO}
    assert first["messages"][0]["message_status"] == "accepted"
    assert [m.type for m in sandbox.received] == ["text", "template"]


def test_token_states(clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    sb = clocked_sandbox
    sixty = sb.issue_sixty_day_token()
    forever = sb.issue_token()
    revoked = sb.issue_token()
    sb.revoke_token(revoked)
    cases = {None: None, "EAAGunknown": 467, revoked: 460}
    for token, subcode in cases.items():
        response = post(sb, token, text())
        error = response.json()["error"]
        assert response.status_code == 401 and error["code"] == 190, token
        assert error.get("error_subcode") == subcode
        assert error["fbtrace_id"] and "WWW-Authenticate" in response.headers
    assert post(sb, sixty, text()).status_code == 200
    clock.advance(SIXTY_DAYS + 1)
    expired = post(sb, sixty, text()).json()["error"]
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    assert post(sb, forever, text()).status_code == 200
    assert post(sb, f"{sb.app_id}|{sb.app_secret}", text()).json()["error"]["code"] == 200


def test_rotation_keeps_the_lifetime_policy(clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    sb = clocked_sandbox
    forever = sb.issue_token()
    renewed = sb.rotate_token(forever)
    record = sb.token_record(renewed)
    assert record is not None and record.expires_at == 0 and record.parent == sb.token_record(forever).fingerprint  # type: ignore[union-attr]
    sixty = sb.issue_sixty_day_token()
    clock.advance(86400)
    fresh = sb.rotate_token(sixty)
    new_record = sb.token_record(fresh)
    assert new_record is not None and new_record.expires_at == int(clock()) + SIXTY_DAYS
    assert post(sb, sixty, text()).status_code == 200  # the old one stays valid until revoked
    sb.rotate_token(sixty, revoke_old=True)
    assert post(sb, sixty, text()).status_code == 401
    assert all(r.value not in repr(r) for r in sb.tokens())


def test_debug_token(clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    sb = clocked_sandbox
    token = sb.issue_sixty_day_token(scopes=("whatsapp_business_messaging",))
    data = debug(sb, token).json()["data"]
    assert data["is_valid"] is True and data["type"] == "SYSTEM_USER" and data["app_id"] == sb.app_id
    assert data["scopes"] == ["whatsapp_business_messaging"]
    assert data["granular_scopes"] == [{"scope": "whatsapp_business_messaging", "target_ids": [sb.waba_id]}]
    assert data["expires_at"] == data["issued_at"] + SIXTY_DAYS
    assert debug(sb, sb.issue_token()).json()["data"]["expires_at"] == 0  # never
    clock.advance(SIXTY_DAYS)
    expired = debug(sb, token)
    assert expired.status_code == 200
    assert expired.json()["data"]["is_valid"] is False
    assert expired.json()["data"]["error"] == {
        "code": 190,
        "message": expired.json()["data"]["error"]["message"],
        "subcode": 463,
    }
    unknown = debug(sb, "EAAGnothing").json()["data"]
    assert unknown["is_valid"] is False and unknown["error"]["code"] == 190
    other = sb.issue_token()
    assert debug(sb, other, auth=other).json()["error"]["code"] == 100  # a token may not inspect itself
    assert debug(sb, other, auth=sb.issue_token()).json()["data"]["is_valid"] is True  # a token of the same app may
    assert debug(sb, other, auth=f"{sb.app_id}|wrong").json()["error"]["code"] == 190
    foreign = sb.state.tokens.issue(app_id=sb.state.tokens.add_app().app_id)
    assert debug(sb, foreign).json()["error"]["code"] == 100
    assert HTTP.post(f"{sb.url}/v26.0/debug_token").json()["error"]["code"] == 100
    missing = HTTP.get(f"{sb.url}/debug_token", headers={"Authorization": f"Bearer {sb.app_token}"})
    assert missing.json()["error"]["code"] == 100  # unversioned path works, input_token is required
    assert all("input_token=[redacted]" in r.path for r in sb.requests if r.route == "debug_token" and "?" in r.path)


def test_request_checks_in_graph_order(sandbox: Sandbox) -> None:
    token = sandbox.issue_token()
    unknown_phone = post(sandbox, token, text(), phone="999").json()["error"]
    assert (unknown_phone["code"], unknown_phone["error_subcode"]) == (100, 33)
    no_scope = sandbox.issue_token(scopes=("whatsapp_business_management",))
    assert post(sandbox, no_scope, text()).json()["error"]["code"] == 10
    bad = post(sandbox, token, {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {}})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 100
    assert "text.body" in bad.json()["error"]["error_data"]["details"]
    raw = HTTP.post(
        f"{sandbox.url}/v26.0/{sandbox.phone_number_id}/messages",
        content=b"{not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert raw.json()["error"]["code"] == 100
    tpl = {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "template",
        "template": {"name": "nope", "language": {"code": "en_US"}},
    }
    missing = post(sandbox, token, tpl)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 132001
    assert HTTP.get(f"{sandbox.url}/v26.0/nothing/here").json()["error"]["code"] == 2500
    assert HTTP.get(f"{sandbox.url}/v26.0/{sandbox.phone_number_id}/messages").json()["error"]["code"] == 100
    assert sandbox.received == []


def test_faults_apply_after_authentication_and_count_down(sandbox: Sandbox) -> None:
    token = sandbox.issue_token()
    sandbox.fail_next(130429, count=2)
    assert post(sandbox, "EAAGunknown", text()).json()["error"]["code"] == 190  # the fault is not used up
    assert post(sandbox, token, text()).json()["error"]["code"] == 130429
    assert post(sandbox, token, text()).json()["error"]["code"] == 130429
    assert post(sandbox, token, text("ok")).status_code == 200
    sandbox.fail_next(131000, deliver=True)
    assert post(sandbox, token, text("delivered anyway")).status_code == 500
    assert sandbox.received_counts() == {"ok": 1, "delivered anyway": 1}
    with pytest.raises(ValueError):
        sandbox.fail_next()


def test_control_routes(clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    sb = clocked_sandbox
    token = sb.issue_token(value=canary())
    faults = HTTP.post(f"{sb.url}/_sandbox/faults", json={"code": 131056, "count": 1})
    assert faults.json() == {"queued": 1}
    assert post(sb, token, text()).json()["error"]["code"] == 131056
    assert post(sb, token, text("fine")).status_code == 200
    fp = sb.token_record(token).fingerprint  # type: ignore[union-attr]
    state = HTTP.get(f"{sb.url}/_sandbox/state")
    assert token not in state.text and sb.app_secret not in state.text
    assert [t["fingerprint"] for t in state.json()["tokens"]] == [fp]
    assert len(state.json()["received"]) == 1
    assert HTTP.post(f"{sb.url}/_sandbox/revoke", json={"fingerprint": fp}).json() == {"revoked": True}
    assert post(sb, token, text()).status_code == 401
    now = HTTP.post(f"{sb.url}/_sandbox/clock", json={"advance": 60}).json()["now"]
    assert now == clock()
    assert HTTP.post(f"{sb.url}/_sandbox/faults", json={"bogus": 1}).status_code == 400
    assert HTTP.post(f"{sb.url}/_sandbox/reset").json() == {"reset": True}
    assert sb.received == [] and [r.path for r in sb.requests] == ["/_sandbox/reset"]


def test_extra_routes_plug_in(sandbox: Sandbox) -> None:
    def hello(call, state):  # type: ignore[no-untyped-def]
        return graph_error(2, message=f"hello {call.params.get('version')}")

    with Sandbox(extra_routes=[Route("GET", versioned(r"/hello"), "hello", hello)]) as sb:
        assert HTTP.get(f"{sb.url}/v26.0/hello").json()["error"]["message"] == "hello v26.0"


def test_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Sandbox(host="0.0.0.0")


def test_stop_closes_keep_alive_and_wakes_hanging_answers() -> None:
    sb = Sandbox().start()
    token = sb.issue_token()
    client = httpx.Client(timeout=10)
    try:
        assert (
            client.post(
                f"{sb.url}/v26.0/{sb.phone_number_id}/messages",
                json=text(),
                headers={"Authorization": f"Bearer {token}"},
            ).status_code
            == 200
        )
        sb.hang_next(30)
        started = time.monotonic()
        import threading

        outcome: list[object] = []

        def hang() -> None:
            try:
                outcome.append(
                    client.post(
                        f"{sb.url}/v26.0/{sb.phone_number_id}/messages",
                        json=text("h"),
                        headers={"Authorization": f"Bearer {token}"},
                    ).status_code
                )
            except httpx.HTTPError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=hang)
        thread.start()
        wait_until(lambda: len(sb.requests) == 2 or bool(sb.state.received[1:]), timeout=5, what="the hanging call")
        sb.stop()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 5
        assert outcome
    finally:
        client.close()
        sb.stop()
    assert not sb.running


def test_command_line(tmp_path: Path) -> None:
    port = free_port()
    token_file = tmp_path / "token"
    secret_file = tmp_path / "app_secret"
    env = {**os.environ, "SB_EXTRA": canary()}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sender.sandbox",
            "--port",
            str(port),
            "--token-file",
            str(token_file),
            "--app-secret-file",
            str(secret_file),
            "--accept-env",
            "SB_EXTRA",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_until(
            lambda: token_file.exists() and HTTP.get(f"http://127.0.0.1:{port}/_sandbox/state").status_code == 200,
            timeout=10,
            what="the sandbox command",
        )
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        for value in (token, env["SB_EXTRA"]):
            response = HTTP.post(
                f"http://127.0.0.1:{port}/v26.0/106540352242922/messages",
                json=text(),
                headers={"Authorization": f"Bearer {value}"},
                timeout=5,
            )
            assert response.status_code == 200
        state = HTTP.get(f"http://127.0.0.1:{port}/_sandbox/state").json()
        assert len(state["tokens"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}" in out and "sha256:" in out and "sandbox stopped" in out
    snippet = out[out.index("Point a config at it:\n") :].splitlines()[1:4]
    config = yaml.safe_load("\n".join(line.strip() for line in snippet))  # the printed config works as it is
    assert config["token"] == {"backend": "file", "file": {"path": str(token_file)}}
    assert config["app_secret"] == {"backend": "file", "file": {"path": str(secret_file)}}
    assert config["whatsapp"]["base_url"] == f"http://127.0.0.1:{port}"
    assert token not in out + err and env["SB_EXTRA"] not in out + err
    assert json.dumps(state)  # JSON all the way


def test_command_line_refuses_a_busy_port(tmp_path: Path) -> None:
    with Sandbox() as busy:
        out = subprocess.run(
            [sys.executable, "-m", "tokenstore", "sandbox", "--port", str(busy.port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert out.returncode == 2 and "try --port 0" in out.stderr

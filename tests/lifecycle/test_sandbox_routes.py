"""The sandbox's token lifecycle endpoints, spoken to with plain httpx: Meta's shapes, checks and errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sender import install_log_redaction
from sender.sandbox import SIXTY_DAYS, ManualClock, Sandbox
from tests.contract import canary
from tests.lifecycle.conftest import DAY, TO

# these requests carry canary secrets in their query strings: httpx logs each URL at INFO, so the redacting
# filter goes on first, as the sender's clients do
install_log_redaction()
HTTP = httpx.Client(timeout=5)


def exchange(sb: Sandbox, token: str | None, **overrides: Any) -> httpx.Response:
    params = {
        "grant_type": "fb_exchange_token",
        "client_id": sb.app_id,
        "client_secret": sb.app_secret,
        "set_token_expires_in_60_days": "true",
        "fb_exchange_token": token,
        **overrides,
    }
    return HTTP.get(f"{sb.url}/v26.0/oauth/access_token", params={k: v for k, v in params.items() if v is not None})


def revoke(sb: Sandbox, token: str, access: str | None, **overrides: Any) -> httpx.Response:
    params = {"client_id": sb.app_id, "client_secret": sb.app_secret, "revoke_token": token, **overrides}
    headers = {"Authorization": f"Bearer {access}"} if access else {}
    return HTTP.get(f"{sb.url}/v26.0/oauth/revoke", params=params, headers=headers)


def send(sb: Sandbox, token: str, text: str) -> httpx.Response:
    return HTTP.post(
        f"{sb.url}/v26.0/{sb.phone_number_id}/messages",
        headers={"Authorization": f"Bearer {token}"},
        json={"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": text}},
    )


def error(response: httpx.Response) -> tuple[int, int | None, str]:
    body = response.json()["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= set(body)
    return body["code"], body.get("error_subcode"), body["message"]


def test_debug_token_get_only_bad_input_and_no_self_inspection(sandbox: Sandbox) -> None:
    sb = sandbox
    token = sb.issue_token(value=canary())
    url = f"{sb.url}/v26.0/debug_token"
    app = {"Authorization": f"Bearer {sb.app_token}"}
    bad = HTTP.get(url, params={"input_token": canary()}, headers=app)
    assert bad.status_code == 200 and bad.json()["data"]["is_valid"] is False
    assert bad.json()["data"]["error"]["code"] == 190
    itself = HTTP.get(url, params={"input_token": token}, headers={"Authorization": f"Bearer {token}"})
    assert itself.status_code == 400 and error(itself)[0] == 100 and "itself" in error(itself)[2]
    assert error(HTTP.post(url, params={"input_token": token}, headers=app))[0] == 100


def test_exchange_success_shape_and_lifetime(clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    sb = clocked_sandbox
    never = sb.issue_token(value=canary())
    answer = exchange(sb, never)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in"} and body["token_type"] == "bearer"
    assert body["expires_in"] == SIXTY_DAYS and body["access_token"].startswith("EAA")
    assert send(sb, never, "old still works").status_code == 200
    same = exchange(sb, never, set_token_expires_in_60_days=None).json()
    assert "expires_in" not in same  # without the flag a never-expiring token stays never-expiring
    clock.advance(SIXTY_DAYS)
    assert send(sb, body["access_token"], "too late").status_code == 401
    assert send(sb, same["access_token"], "fine").status_code == 200
    records = [r for r in sb.requests if r.route == "oauth.access_token"]
    assert all("client_secret=[redacted]" in r.path and "fb_exchange_token=[redacted]" in r.path for r in records)


def test_exchange_checks_the_client_and_refuses_dead_tokens(clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    sb = clocked_sandbox
    token = sb.issue_token(value=canary(), expires_in=DAY)
    assert error(exchange(sb, token, client_id="4242"))[:2] == (101, None)
    wrong = exchange(sb, token, client_secret=canary("APPSECRET"))
    assert wrong.status_code == 400 and error(wrong)[0] == 1 and "client secret" in error(wrong)[2]
    assert error(exchange(sb, token, client_secret=None))[0] == 100
    assert error(exchange(sb, token, grant_type="client_credentials"))[0] == 100
    assert error(exchange(sb, None))[0] == 100
    assert error(exchange(sb, canary()))[:2] == (190, 467)
    other = sb.state.tokens.add_app()
    assert error(exchange(sb, sb.state.tokens.issue(app_id=other.app_id)))[0] == 100
    revoked = sb.issue_token(value=canary())
    sb.revoke_token(revoked)
    assert error(exchange(sb, revoked))[:2] == (190, 460)
    clock.advance(DAY)
    assert error(exchange(sb, token))[:2] == (190, 463)
    assert len(sb.tokens()) == 3  # nothing was issued
    assert error(HTTP.post(f"{sb.url}/v26.0/oauth/access_token"))[0] == 100


def test_revoke_is_effective_at_once_and_checks_everything(sandbox: Sandbox) -> None:
    sb = sandbox
    token = sb.issue_token(value=canary())
    other = sb.issue_token(value=canary())
    assert send(sb, token, "before").status_code == 200
    assert error(revoke(sb, token, token, client_secret="0" * 32))[0] == 1
    assert error(revoke(sb, token, None))[0] == 190
    assert error(revoke(sb, canary(), token))[0] == 100
    foreign_app = sb.state.tokens.add_app()
    foreign = sb.state.tokens.issue(app_id=foreign_app.app_id)
    assert error(revoke(sb, token, foreign))[0] == 100  # a token of another app cannot revoke ours
    assert send(sb, token, "still fine").status_code == 200
    ok = revoke(sb, token, other)
    assert ok.status_code == 200 and ok.json() == {"success": "true"}
    refused = send(sb, token, "after")
    assert refused.status_code == 401 and error(refused)[:2] == (190, 460)
    assert revoke(sb, token, sb.app_token).json() == {"success": "true"}  # the app token may revoke; twice is fine
    assert sb.received_counts() == {"before": 1, "still fine": 1}
    assert all("revoke_token=[redacted]" in r.path for r in sb.requests if r.route == "oauth.revoke")


def test_faults_target_the_new_routes_and_routes_are_counted(sandbox: Sandbox) -> None:
    token = sandbox.issue_token(value=canary())
    sandbox.fail_next(1, route="oauth.access_token")
    sandbox.fail_next(status=503, route="oauth.revoke")
    assert error(exchange(sandbox, token))[0] == 1
    assert revoke(sandbox, token, token).status_code == 503
    assert exchange(sandbox, token).status_code == 200
    counts = sandbox.route_counts()
    assert counts["oauth.access_token"] == 2 and counts["oauth.revoke"] == 1 and counts["messages"] == 0


@pytest.fixture(autouse=True, scope="module")
def _close_client() -> object:
    yield None
    HTTP.close()

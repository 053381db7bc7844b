"""The sandbox's many businesses: each with its WABA, phone numbers and tokens; a token on another business's
number gets Graph's permission error and nothing is delivered; ``GET /{waba-id}/phone_numbers`` in Meta's
shape, paged; control routes and the Python API to add businesses and rotate or revoke their tokens."""

from __future__ import annotations

import json

import httpx
import pytest

import sender
from sender.sandbox import DEFAULT_WABA_ID, Sandbox
from tests.contract import CANARY_MARK, canary
from tests.sender.conftest import TO
from tokenstore import fingerprint_of
from tokenstore.backends.env import EnvBackend

HTTP = httpx.Client(timeout=5)


@pytest.fixture(autouse=True, scope="module")
def _close_http() -> object:
    yield
    HTTP.close()


def post(sb: Sandbox, token: str, phone: str, body: str = "hi") -> httpx.Response:
    message = {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": body}}
    return HTTP.post(f"{sb.url}/v26.0/{phone}/messages", json=message, headers={"Authorization": f"Bearer {token}"})


def numbers(sb: Sandbox, token: str, waba_id: str, **params: str) -> httpx.Response:
    return HTTP.get(
        f"{sb.url}/v26.0/{waba_id}/phone_numbers", params=params, headers={"Authorization": f"Bearer {token}"}
    )


def test_each_business_sends_from_its_own_numbers_only(sandbox: Sandbox) -> None:
    a = sandbox.add_business(name="Acme", numbers=2, token=canary())
    b = sandbox.add_business(name="Bolt", numbers=1, token=canary())
    assert a.waba_id != b.waba_id and not set(a.phone_number_ids) & set(b.phone_number_ids)
    assert a.token is not None and b.token is not None
    assert CANARY_MARK not in repr(a) and CANARY_MARK not in repr(sandbox.business_tokens(a.waba_id))

    for phone in a.phone_number_ids:
        assert post(sandbox, a.token, phone, f"a-{phone}").status_code == 200
    assert post(sandbox, b.token, b.phone_number_id, "b").status_code == 200
    crossed = [
        post(sandbox, a.token, b.phone_number_id, "a-on-b"),
        post(sandbox, b.token, a.phone_number_id, "b-on-a"),
        post(sandbox, sandbox.issue_token(), b.phone_number_id, "default-on-b"),
        post(sandbox, b.token, sandbox.phone_number_id, "b-on-default"),
    ]
    for response in crossed:
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == 200 and "Permissions error" in error["message"]
        assert CANARY_MARK not in response.text
    received = sandbox.received
    assert sorted(m.text or "" for m in received) == sorted([*(f"a-{p}" for p in a.phone_number_ids), "b"])
    for message in received:
        owner = sandbox.business_for_number(message.phone_number_id)
        assert owner is not None and message.waba_id == owner.waba_id
        assert message.token_fingerprint in {r.fingerprint for r in sandbox.business_tokens(owner.waba_id)}


def test_the_sender_sees_a_crossed_token_as_permission_denied(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = sandbox.add_business(token=canary())
    b = sandbox.add_business()
    assert a.token is not None
    monkeypatch.setenv("TS_TEST_BIZ_A", a.token)
    provider = EnvBackend("TS_TEST_BIZ_A")
    with sender.Sender(provider, phone_number_id=b.phone_number_id, base_url=sandbox.url) as client:
        with pytest.raises(sender.PermissionDenied) as caught:
            client.send_text(TO, "crossed")
    assert caught.value.code == 200 and caught.value.http_status == 403
    assert CANARY_MARK not in str(caught.value) + repr(caught.value)
    assert sandbox.received == []
    assert client.auth.rejections == 0  # a permission error is not a rejected token: no refetch


def test_the_default_business_keeps_the_classic_behaviour() -> None:
    with Sandbox(phone_number_ids=None) as sb:
        token = sb.issue_token()
        assert sb.default_business.waba_id == sb.waba_id == DEFAULT_WABA_ID
        assert post(sb, token, "123456").status_code == 200  # any numeric id is the default business's
        biz = sb.add_business()
        assert post(sb, token, biz.phone_number_id).status_code == 403  # but not another business's number
        assert sb.received[0].waba_id == DEFAULT_WABA_ID


def test_rotate_and_revoke_a_business_token(sandbox: Sandbox) -> None:
    biz = sandbox.add_business(token=canary())
    first = biz.token
    assert first is not None
    second = sandbox.rotate_business_token(biz.waba_id, value=canary())
    assert biz.token == second != first
    assert post(sandbox, first, biz.phone_number_id).status_code == 200  # the old one stays valid
    assert post(sandbox, second, biz.phone_number_id).status_code == 200
    third = sandbox.rotate_business_token(biz.waba_id, revoke_old=True)
    assert post(sandbox, second, biz.phone_number_id).json()["error"]["code"] == 190
    assert sandbox.revoke_business_token(biz.waba_id) == 1
    assert post(sandbox, third, biz.phone_number_id).json()["error"]["code"] == 190
    assert post(sandbox, first, biz.phone_number_id).status_code == 200
    assert sandbox.revoke_business_token(biz.waba_id, all=True) == 1  # only `first` was still live
    assert post(sandbox, first, biz.phone_number_id).json()["error"]["code"] == 190
    records = sandbox.business_tokens(biz.waba_id)
    assert [r.fingerprint for r in records] == [fingerprint_of(v) for v in (first, second, third)]
    assert all(r.status(sandbox.clock()) == "revoked" for r in records)


def test_phone_numbers_in_metas_shape_paged(sandbox: Sandbox) -> None:
    biz = sandbox.add_business(name="Many Numbers", numbers=30)
    assert biz.token is not None
    first = numbers(sandbox, biz.token, biz.waba_id, limit="10")
    assert first.status_code == 200
    body = first.json()
    assert [n["id"] for n in body["data"]] == biz.phone_number_ids[:10]
    item = body["data"][0]
    assert set(item) == {
        "verified_name",
        "code_verification_status",
        "display_phone_number",
        "quality_rating",
        "platform_type",
        "throughput",
        "id",
    }
    assert item["verified_name"] == "Many Numbers" and item["throughput"] == {"level": "STANDARD"}
    assert set(body["paging"]["cursors"]) == {"before", "after"} and "previous" not in body["paging"]
    seen = [n["id"] for n in body["data"]]
    while "next" in body["paging"]:
        response = HTTP.get(sandbox.url + body["paging"]["next"], headers={"Authorization": f"Bearer {biz.token}"})
        body = response.json()
        seen += [n["id"] for n in body["data"]]
    assert seen == biz.phone_number_ids
    back = numbers(sandbox, biz.token, biz.waba_id, limit="10", before=body["paging"]["cursors"]["before"])
    assert [n["id"] for n in back.json()["data"]] == biz.phone_number_ids[10:20]
    picked = numbers(sandbox, biz.token, biz.waba_id, fields="display_phone_number").json()
    assert set(picked["data"][0]) == {"id", "display_phone_number"} and len(picked["data"]) == 25


def test_phone_numbers_refuses_other_businesses_and_unknown_wabas(sandbox: Sandbox) -> None:
    a = sandbox.add_business(token=canary())
    b = sandbox.add_business()
    assert a.token is not None
    other = numbers(sandbox, a.token, b.waba_id)
    assert other.status_code == 403 and other.json()["error"]["code"] == 200
    unknown = numbers(sandbox, a.token, "999999999999999").json()["error"]
    assert (unknown["code"], unknown["error_subcode"]) == (100, 33)
    assert numbers(sandbox, "nonsense", a.waba_id).json()["error"]["code"] == 190
    assert numbers(sandbox, a.token, a.waba_id, limit="0").json()["error"]["code"] == 100
    assert numbers(sandbox, a.token, a.waba_id, after="bogus").json()["error"]["code"] == 100
    default = numbers(sandbox, sandbox.issue_token(), sandbox.waba_id).json()
    assert [n["id"] for n in default["data"]] == [sandbox.phone_number_id]
    assert sandbox.route_counts()["businesses.phone_numbers"] == 6


def test_control_routes_add_rotate_revoke_without_showing_a_token(sandbox: Sandbox) -> None:
    value = canary()
    created = HTTP.post(f"{sandbox.url}/_sandbox/businesses", json={"name": "Remote", "numbers": 2, "token": value})
    assert created.status_code == 200
    summary = created.json()
    assert summary["token"] == fingerprint_of(value) and len(summary["phone_numbers"]) == 2
    waba = summary["waba_id"]
    phone = summary["phone_numbers"][0]["id"]
    assert post(sandbox, value, phone).status_code == 200

    random_token = HTTP.post(f"{sandbox.url}/_sandbox/businesses", json={"numbers": ["777000111222333"]}).json()
    assert random_token["token"].startswith("sha256:") and random_token["phone_numbers"][0]["id"] == "777000111222333"

    new = canary()
    rotated = HTTP.post(f"{sandbox.url}/_sandbox/businesses/{waba}/rotate", json={"token": new, "revoke_old": True})
    assert rotated.json() == {"fingerprint": fingerprint_of(new)}
    assert post(sandbox, value, phone).json()["error"]["code"] == 190
    added = HTTP.post(f"{sandbox.url}/_sandbox/businesses/{waba}/numbers", json={"id": "777000111222444"}).json()
    assert added["id"] == "777000111222444"
    assert post(sandbox, new, "777000111222444").status_code == 200
    assert HTTP.post(f"{sandbox.url}/_sandbox/businesses/{waba}/revoke", json={}).json() == {"revoked": 1}
    assert post(sandbox, new, phone).json()["error"]["code"] == 190

    listing = HTTP.get(f"{sandbox.url}/_sandbox/businesses").json()["businesses"]
    assert [b["waba_id"] for b in listing] == [sandbox.waba_id, waba, random_token["waba_id"]]
    texts = [created.text, rotated.text, json.dumps(listing), HTTP.get(f"{sandbox.url}/_sandbox/state").text]
    assert not any(CANARY_MARK in t for t in texts)

    bad = [
        HTTP.post(f"{sandbox.url}/_sandbox/businesses", json={"numbers": "two"}),
        HTTP.post(f"{sandbox.url}/_sandbox/businesses", json={"colour": "red"}),
        HTTP.post(f"{sandbox.url}/_sandbox/businesses", json={"waba_id": waba}),
        HTTP.post(f"{sandbox.url}/_sandbox/businesses", json={"token": "two words"}),
        HTTP.post(f"{sandbox.url}/_sandbox/businesses/123/rotate", json={}),
        HTTP.post(f"{sandbox.url}/_sandbox/businesses/{waba}/numbers", json={"id": phone}),
    ]
    assert [r.status_code for r in bad] == [400] * len(bad)
    assert "already" in bad[2].json()["error"]["message"]

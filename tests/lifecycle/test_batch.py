"""Graph batch debug_token: ``GraphTokenClient.inspect_many`` against the sandbox's batch route (real HTTP),
plus malformed batch answers from an in-process transport (our parser's unit tests)."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

import sender
from sender.sandbox import Fault, ManualClock, Sandbox
from tests.contract import assert_clean, canary
from tests.sender.conftest import log_text
from tokenstore import fingerprint_of

DAY = 86400


class CountingTransport(httpx.BaseTransport):
    """Passes requests to a real transport and records how many were in flight at once."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.in_flight += 1
            self.calls += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            response = self.inner.handle_request(request)
            response.read()
            return response
        finally:
            with self.lock:
                self.in_flight -= 1

    def close(self) -> None:
        self.inner.close()


def client(sb: Sandbox, secret: str | None = None, **options: Any) -> sender.GraphTokenClient:
    return sender.GraphTokenClient(sb.app_id, secret or sb.app_secret, base_url=sb.url, **options)


def _secrets(sb: Sandbox) -> list[str]:
    return [sb.app_secret, *(r.value for r in sb.tokens())]


def test_outcomes_in_order_for_every_kind_of_token(clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    sb = clocked_sandbox
    sb.state.app.secret = canary("APPSECRET")
    valid = [sb.issue_token(value=canary(), expires_in=60 * DAY) for _ in range(60)]
    never = sb.issue_token(value=canary(), expires_in=None)
    short = sb.issue_token(value=canary(), expires_in=DAY)
    revoked = sb.issue_token(value=canary())
    sb.revoke_token(revoked)
    unknown = canary()
    clock.advance(2 * DAY)  # `short` has expired
    tokens = [*valid, never, short, revoked, unknown, "two words"]
    with client(sb) as graph:
        outcomes = graph.inspect_many(tokens)
    assert len(outcomes) == len(tokens)
    assert all(isinstance(o, sender.TokenInfo) and o.is_valid for o in outcomes[:60])
    assert [o.fingerprint for o in outcomes[:60]] == [fingerprint_of(v) for v in valid]  # type: ignore[union-attr]
    info_never, info_short, info_revoked, info_unknown = outcomes[60:64]
    assert isinstance(info_never, sender.TokenInfo) and info_never.is_valid and info_never.never_expires
    assert isinstance(info_short, sender.TokenInfo) and not info_short.is_valid and info_short.error.expired
    assert isinstance(info_revoked, sender.TokenInfo) and not info_revoked.is_valid
    assert info_revoked.error is not None and info_revoked.error.subcode == 460
    assert isinstance(info_unknown, sender.TokenInfo) and not info_unknown.is_valid
    assert isinstance(outcomes[64], ValueError)  # not a token: no call made for it
    # 64 usable tokens: two batch calls (50 + 14), 64 debug_token items, no single debug_token call
    assert sb.route_counts()["batch"] == 2
    assert sb.route_counts()["debug_token"] == 0
    assert sb.batch_item_counts()["debug_token"] == 64


def _fp(value: str) -> str:
    return fingerprint_of(value)


async def test_async_inspect_many_matches_sync(sandbox: Sandbox) -> None:
    tokens = [sandbox.issue_token(value=canary()) for _ in range(75)]
    sandbox.revoke_token(tokens[10])
    async with sender.AsyncGraphTokenClient(sandbox.app_id, sandbox.app_secret, base_url=sandbox.url) as graph:
        outcomes = await graph.inspect_many(tokens, concurrency=2)
    assert [isinstance(o, sender.TokenInfo) and o.is_valid for o in outcomes] == [i != 10 for i in range(75)]
    assert sandbox.route_counts()["batch"] == 2


def test_ten_thousand_tokens_take_two_hundred_calls(sandbox: Sandbox) -> None:
    tokens = [sandbox.issue_token() for _ in range(10_000)]
    with client(sandbox) as graph:
        outcomes = graph.inspect_many(tokens, concurrency=8)
    assert all(isinstance(o, sender.TokenInfo) and o.is_valid for o in outcomes)
    assert len(outcomes) == 10_000
    assert sandbox.route_counts()["batch"] == 200
    assert sum(sandbox.route_counts().values()) == 200
    assert sandbox.batch_item_counts()["debug_token"] == 10_000


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_is_bounded(sandbox: Sandbox, concurrency: int) -> None:
    tokens = [sandbox.issue_token() for _ in range(10 * 5)]
    sandbox.queue_fault(Fault(delay=0.1, count=10, route="batch"))
    transport = CountingTransport()
    with client(sandbox, transport=transport) as graph:
        outcomes = graph.inspect_many(tokens, batch_size=5, concurrency=concurrency)
    assert all(isinstance(o, sender.TokenInfo) and o.is_valid for o in outcomes)
    assert transport.calls == 10
    assert transport.peak <= concurrency
    if concurrency > 1:
        assert transport.peak > 1  # it does run calls side by side


async def test_async_concurrency_is_bounded(sandbox: Sandbox) -> None:
    tokens = [sandbox.issue_token() for _ in range(40)]
    sandbox.queue_fault(Fault(delay=0.1, count=8, route="batch"))
    peak = in_flight = 0

    class Counting(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal peak, in_flight
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                response = await self.inner.handle_async_request(request)
                await response.aread()
                return response
            finally:
                in_flight -= 1

    async with sender.AsyncGraphTokenClient(
        sandbox.app_id, sandbox.app_secret, base_url=sandbox.url, transport=Counting()
    ) as graph:
        outcomes = await graph.inspect_many(tokens, batch_size=5, concurrency=2)
    assert all(isinstance(o, sender.TokenInfo) for o in outcomes)
    assert 1 < peak <= 2


def test_options_are_checked(sandbox: Sandbox) -> None:
    with client(sandbox) as graph:
        for bad in (0, 51, True):
            with pytest.raises(ValueError, match="batch_size"):
                graph.inspect_many(["EAAx"], batch_size=bad)
        with pytest.raises(ValueError, match="concurrency"):
            graph.inspect_many(["EAAx"], concurrency=0)
        with pytest.raises(TypeError, match="list of tokens"):
            graph.inspect_many("EAAxyz")  # type: ignore[arg-type]
        assert graph.inspect_many([]) == []
    assert sandbox.route_counts()["batch"] == 0


def test_rejected_app_token_is_every_items_error_without_secrets(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = [sandbox.issue_token(value=canary()) for _ in range(3)]
    wrong = canary("WRONGSECRET")
    with client(sandbox, wrong) as graph:
        outcomes = graph.inspect_many(tokens)
    assert all(isinstance(o, sender.AppCredentialsError) for o in outcomes)
    text = " ".join(f"{o} {o!r}" for o in outcomes)
    assert "whatsapp.app_id" in text and sandbox.app_id in text
    assert_clean(text + log_text(caplog), wrong, *_secrets(sandbox))


def test_a_failed_batch_does_not_hide_the_others(sandbox: Sandbox) -> None:
    tokens = [sandbox.issue_token() for _ in range(6)]
    sandbox.fail_next(2, route="batch")  # the first call: a transient server error
    with client(sandbox) as graph:
        outcomes = graph.inspect_many(tokens, batch_size=3, concurrency=1)
    assert all(isinstance(o, sender.ServerError) and o.retryable for o in outcomes[:3])
    assert "batch" in str(outcomes[0]) and "sha256:" in str(outcomes[0])
    assert all(isinstance(o, sender.TokenInfo) and o.is_valid for o in outcomes[3:])


def test_dropped_batch_is_outcome_unknown_per_item(sandbox: Sandbox) -> None:
    tokens = [sandbox.issue_token() for _ in range(2)]
    sandbox.queue_fault(Fault(drop=True, route="batch"))
    with client(sandbox) as graph:
        outcomes = graph.inspect_many(tokens)
    assert all(isinstance(o, sender.OutcomeUnknown) for o in outcomes)


def test_no_token_in_logs_reprs_or_errors(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    sandbox.state.app.secret = canary("APPSECRET")
    tokens = [sandbox.issue_token(value=canary()) for _ in range(4)]
    with client(sandbox) as graph:
        outcomes = graph.inspect_many(tokens)
        prepared = graph._inspect_batches(tokens, sandbox.app_secret, 50, 4)
    assert "input_token" in prepared[1][0][1].data["batch"]  # the tokens do travel in the body...
    text = repr(prepared) + repr(outcomes) + " ".join(map(str, outcomes)) + log_text(caplog)
    text += json.dumps(sandbox.requests[-1].summary())
    assert_clean(text, *_secrets(sandbox))  # ...and nowhere else
    assert "CANARY" not in text


# -- malformed answers (our parser; an in-process transport plays Graph) ------------------------------------------


def _mock(answer: Any, status: int = 200, seen: list[dict[str, str]] | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        if seen is not None:
            seen.append(form)
        body = answer(form) if callable(answer) else answer
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers={"Content-Type": "application/json"})

    return httpx.MockTransport(handler)


APP_ID = "123456789"
SECRET = "0123456789abcdef0123456789abcdef"


def _graph(transport: httpx.MockTransport) -> sender.GraphTokenClient:
    return sender.GraphTokenClient(APP_ID, SECRET, base_url="http://127.0.0.1:9", transport=transport)


def _ok(fingerprint_valid: bool = True) -> dict[str, Any]:
    data = {"data": {"is_valid": fingerprint_valid, "app_id": APP_ID, "type": "SYSTEM_USER", "scopes": []}}
    return {"code": 200, "headers": [], "body": json.dumps(data)}


def test_the_request_is_a_form_with_the_app_token_and_the_batch() -> None:
    seen: list[dict[str, str]] = []
    tokens = [canary(), canary()]
    with _graph(_mock(lambda form: [_ok(), _ok()], seen=seen)) as graph:
        graph.inspect_many(tokens)
    (form,) = seen
    assert form["access_token"] == f"{APP_ID}|{SECRET}"
    items = json.loads(form["batch"])
    assert [i["method"] for i in items] == ["GET", "GET"]
    assert [dict(parse_qsl(i["relative_url"].split("?", 1)[1]))["input_token"] for i in items] == tokens
    assert all(i["relative_url"].startswith("debug_token?") for i in items)


@pytest.mark.parametrize(
    ("item", "expected", "words"),
    [
        (None, sender.OutcomeUnknown, "null"),
        ("a string", sender.SendError, "not an object"),
        ({"headers": [], "body": "{}"}, sender.SendError, "no numeric code"),
        ({"code": 200, "body": {"data": {}}}, sender.SendError, "not a JSON string"),
        ({"code": 200, "body": "{not json"}, sender.SendError, "not JSON"),
        ({"code": 200, "body": "[]"}, sender.SendError, "not a JSON object"),
        ({"code": 200, "body": "{}"}, sender.SendError, "without a data object"),
        ({"code": 500, "body": "<html>"}, sender.SendError, "not JSON"),
        ({"code": 503, "body": "{}"}, sender.ServerError, "HTTP 503"),
        (
            {
                "code": 400,
                "body": json.dumps({"error": {"code": 100, "message": "bad input_token=EAAsecretTOKENvalue12345"}}),
            },
            sender.InvalidRequest,
            "refused",
        ),
    ],
)
def test_malformed_items_get_clear_errors_and_spare_the_others(item: Any, expected: type, words: str) -> None:
    tokens = ["EAAfirst" + "x" * 20, "EAAsecretTOKENvalue12345", "EAAthird" + "y" * 20]
    with _graph(_mock([_ok(), item, _ok()])) as graph:
        outcomes = graph.inspect_many(tokens)
    assert isinstance(outcomes[0], sender.TokenInfo) and isinstance(outcomes[2], sender.TokenInfo)
    error = outcomes[1]
    assert type(error) is expected or isinstance(error, expected)
    message = str(error)
    assert words in message
    assert "item 2 of" in message and _fp(tokens[1]) in message
    assert_clean(message + repr(error), *tokens, SECRET)


def test_a_short_answer_list_names_the_items_left_without_answer() -> None:
    tokens = ["EAAfirst" + "x" * 20, "EAAsecond" + "y" * 20]
    with _graph(_mock([_ok()])) as graph:
        outcomes = graph.inspect_many(tokens)
    assert isinstance(outcomes[0], sender.TokenInfo)
    assert isinstance(outcomes[1], sender.OutcomeUnknown) and "shorter than the batch" in str(outcomes[1])


@pytest.mark.parametrize("body", [b"not json", json.dumps({"data": []}).encode()])
def test_an_answer_that_is_no_list_fails_every_item(body: bytes) -> None:
    tokens = ["EAAfirst" + "x" * 20, "EAAsecond" + "y" * 20]
    with _graph(_mock(body)) as graph:
        outcomes = graph.inspect_many(tokens)
    assert all(isinstance(o, sender.OutcomeUnknown) for o in outcomes)


def test_an_error_echoing_the_batch_is_scrubbed() -> None:
    def echo(form: dict[str, str]) -> dict[str, Any]:
        return {"error": {"code": 1, "message": f"could not run {form['batch']} for {form['access_token']}"}}

    tokens = [canary(), canary()]
    with _graph(_mock(echo, status=500)) as graph:
        outcomes = graph.inspect_many(tokens)
    text = " ".join(f"{o} {o!r}" for o in outcomes)
    assert all(isinstance(o, sender.ServerError) for o in outcomes)
    assert_clean(text, *tokens, SECRET)
    assert "CANARY" not in text


# -- the sandbox's batch route --------------------------------------------------------------------------------


def _post(sb: Sandbox, data: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{sb.url}/v27.0/", data=data)


def test_sandbox_refuses_bad_batches(sandbox: Sandbox) -> None:
    app_token = sandbox.app_token
    assert _post(sandbox, {"access_token": app_token}).json()["error"]["code"] == 100
    assert _post(sandbox, {"access_token": app_token, "batch": "{"}).json()["error"]["code"] == 100
    too_many = json.dumps([{"method": "GET", "relative_url": "debug_token?input_token=x"}] * 51)
    answer = _post(sandbox, {"access_token": app_token, "batch": too_many}).json()
    assert answer["error"]["code"] == 100 and "50" in answer["error"]["message"]
    assert _post(sandbox, {"access_token": "nope", "batch": "[]"}).json()["error"]["code"] == 190
    nested = json.dumps([{"method": "POST", "relative_url": ""}, {"relative_url": 5}])
    items = _post(sandbox, {"access_token": app_token, "batch": nested}).json()
    assert [i["code"] for i in items] == [400, 400]
    assert "batch" in json.loads(items[0]["body"])["error"]["message"]


def test_sandbox_items_use_their_own_token_or_the_fallback(sandbox: Sandbox) -> None:
    a, b = sandbox.issue_token(), sandbox.issue_token()
    batch = [
        {"method": "GET", "relative_url": f"debug_token?input_token={a}"},  # the app token (fallback)
        {"method": "GET", "relative_url": f"debug_token?input_token={a}&access_token={b}"},  # another token
        {"method": "GET", "relative_url": f"debug_token?input_token={a}&access_token={a}"},  # itself: #100
    ]
    items = _post(sandbox, {"access_token": sandbox.app_token, "batch": json.dumps(batch)}).json()
    assert [i["code"] for i in items] == [200, 200, 400]
    assert json.loads(items[0]["body"])["data"]["is_valid"] is True
    assert any(h["name"] == "Content-Type" for h in items[0]["headers"])

"""Every Graph error code the sandbox can produce maps to its class, with code, subcode, fbtrace_id, details,
http_status and retryable kept; over real loopback HTTP, sync and async."""

from __future__ import annotations

import pickle

import pytest

import sender
from sender import (
    AuthenticationError,
    InvalidRequest,
    PermissionDenied,
    PolicyBlocked,
    RateLimited,
    RecipientError,
    RetryPolicy,
    SendError,
    ServerError,
    TemplateError,
    error_class_for,
)
from sender.sandbox import ERRORS, Sandbox
from tests.contract import assert_clean
from tests.sender.conftest import TO, Store, make_async_sender, make_sender

EXPECTED: dict[int, type[SendError]] = {
    0: AuthenticationError,
    1: ServerError,
    2: ServerError,
    3: PermissionDenied,
    4: RateLimited,
    10: PermissionDenied,
    33: InvalidRequest,
    100: InvalidRequest,
    190: AuthenticationError,
    200: PermissionDenied,
    368: PolicyBlocked,
    2500: InvalidRequest,
    80007: RateLimited,
    130429: RateLimited,
    130497: PolicyBlocked,
    131000: ServerError,
    131005: PermissionDenied,
    131008: InvalidRequest,
    131009: InvalidRequest,
    131016: ServerError,
    131021: RecipientError,
    131026: RecipientError,
    131031: PolicyBlocked,
    131042: SendError,
    131047: RecipientError,
    131048: PolicyBlocked,
    131049: PolicyBlocked,
    131050: RecipientError,
    131051: InvalidRequest,
    131052: InvalidRequest,
    131053: InvalidRequest,
    131056: RateLimited,
    131057: ServerError,
    132000: TemplateError,
    132001: TemplateError,
    132005: TemplateError,
    132007: TemplateError,
    132012: TemplateError,
    132015: TemplateError,
    132016: TemplateError,
    133004: ServerError,
    133010: InvalidRequest,
}
RETRYABLE = {1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004}
SUBCODES = {190: 463, 100: 33}


def test_table_covers_the_sandbox_catalogue() -> None:
    assert set(EXPECTED) == set(ERRORS)


def _check(error: SendError, code: int) -> None:
    assert type(error) is EXPECTED[code], (code, type(error))
    assert error.code == code
    assert error.subcode == SUBCODES.get(code)
    assert error.http_status == ERRORS[code][0]
    assert error.retryable is (code in RETRYABLE)
    assert error.fbtrace_id and error.fbtrace_id.startswith("A")
    assert error.error_type == "OAuthException"
    if code >= 130000:
        assert error.details == ERRORS[code][1]
    assert str(code) in str(error) and error.fbtrace_id in str(error)


def test_every_code_maps_sync(sandbox: Sandbox, store: Store) -> None:
    # 190 and 0 go through the token refetch first: the store has nothing new, so AuthenticationError
    with make_sender(sandbox, store.cached(), retry=RetryPolicy.disabled()) as client:
        for code in EXPECTED:
            sandbox.fail_next(code, subcode=SUBCODES.get(code))
            with pytest.raises(SendError) as info:
                client.send_text(TO, f"code {code}")
            _check(info.value, code)
    assert sandbox.received == []


async def test_every_code_maps_async(sandbox: Sandbox, store: Store) -> None:
    async with make_async_sender(sandbox, store.cached(), retry=RetryPolicy.disabled()) as client:
        for code in EXPECTED:
            sandbox.fail_next(code, subcode=SUBCODES.get(code))
            with pytest.raises(SendError) as info:
                await client.send_text(TO, f"code {code}")
            _check(info.value, code)
    assert sandbox.received == []


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (500, ServerError, False),
        (502, ServerError, False),
        (503, ServerError, True),
        (504, ServerError, False),
        (429, RateLimited, True),
        (403, PermissionDenied, False),
        (404, InvalidRequest, False),
    ],
)
def test_status_without_graph_error_object(
    sandbox: Sandbox, store: Store, status: int, cls: type[SendError], retryable: bool
) -> None:
    sandbox.fail_next(status=status)
    with make_sender(sandbox, store.cached(), retry=RetryPolicy.disabled()) as client:
        with pytest.raises(SendError) as info:
            client.send_text(TO, "proxy page")
    assert type(info.value) is cls
    assert info.value.code is None and info.value.http_status == status and info.value.retryable is retryable
    assert "without a Graph error object" in str(info.value)


def test_graph_text_echoing_the_token_is_scrubbed(sandbox: Sandbox, store: Store) -> None:
    sandbox.fail_next(100, message=f"(#100) bad access_token={store.initial}", details=f"token {store.initial} x")
    with make_sender(sandbox, store.cached(), retry=RetryPolicy.disabled()) as client:
        with pytest.raises(InvalidRequest) as info:
            client.send_text(TO, "x")
    for text in (str(info.value), repr(info.value), info.value.message, str(info.value.details)):
        assert_clean(text, store.initial)
    assert "[redacted]" in str(info.value)


def test_unknown_codes_and_ranges() -> None:
    assert error_class_for(299) is PermissionDenied
    assert error_class_for(132999) is TemplateError
    assert error_class_for(999999) is SendError
    assert error_class_for(999999, 502) is ServerError
    assert error_class_for(None, 401) is AuthenticationError
    error = sender._exceptions.error_from_graph({"code": "131026", "error_subcode": "7"}, http_status=400)
    assert isinstance(error, RecipientError) and error.code == 131026 and error.subcode == 7
    assert error.message == "the Graph API returned an error"


def test_errors_pickle_with_their_attributes() -> None:
    error = sender._exceptions.error_from_graph(
        {"code": 130429, "message": "(#130429) Rate limit hit", "fbtrace_id": "Axyz"}, http_status=400, retry_after=2
    )
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is RateLimited
    assert (clone.code, clone.fbtrace_id, clone.retry_after, clone.retryable) == (130429, "Axyz", 2, True)
    assert str(clone) == str(error)

"""Graph batch requests for ``debug_token``: inspect many tokens in few calls, without I/O here.

``POST /{version}/`` with the form fields ``access_token`` (the app token ``{app-id}|{app-secret}``) and
``batch``: a JSON list of up to :data:`MAX_BATCH` requests ``{"method": "GET", "relative_url":
"debug_token?input_token=T"}``. Graph answers HTTP 200 with a list aligned with the requests, each item
``{"code": 200, "headers": [{"name", "value"}], "body": "<a JSON string>"}``, or ``null`` for a request
that did not complete. 10,000 tokens take 200 calls.

The batch body carries every inspected token and the app secret: it travels in the POST body (never in a
URL), the prepared call keeps it out of ``repr``, and every error built from an answer is scrubbed of all
of them (:func:`~sender.redact_text` with the batch's values). Each item gets its own outcome: a
:class:`~sender.TokenInfo`, or an exception naming the item and the token's fingerprint (a malformed item,
a Graph error for that item, or the failure of the whole call it was part of). One bad item never hides
the others' answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from tokenstore import TokenStoreError, fingerprint_of

from ._exceptions import OutcomeUnknown, SendError, error_from_graph, error_from_status
from ._models import TokenInfo
from ._redact import redact_text

__all__ = ["DEFAULT_BATCH_CONCURRENCY", "MAX_BATCH", "InspectOutcome", "chunks"]

#: Graph's limit of requests in one batch call
MAX_BATCH = 50
#: batch calls in flight at once, by default
DEFAULT_BATCH_CONCURRENCY = 4

#: what :meth:`GraphTokenClient.inspect_many` gives per token: what Graph said, or why it could not be asked
InspectOutcome = TokenInfo | SendError | TokenStoreError | ValueError


@dataclass(frozen=True)
class BatchCall:
    """One prepared batch call. Everything that may hold a secret is kept out of ``repr``."""

    url: str
    #: ``POST /v27.0/ (batch of 50 debug_token)``: for messages
    what: str
    data: dict[str, str] = field(repr=False)
    #: the fingerprint of each token of the batch, in order
    subjects: tuple[str, ...]
    #: values to scrub from anything Graph sends back: each item's token, the app secret and app token
    values: tuple[str, ...] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def check_batch_options(batch_size: int, concurrency: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be a whole number from 1 to {MAX_BATCH} (Graph's limit per batch)")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError("concurrency must be a whole number of at least 1")


def build_inspect_batch(url: str, api_version: str, values: Sequence[str], secret: str, app_id: str) -> BatchCall:
    """The batch call inspecting ``values`` (already checked one-word tokens) with the app token."""
    if not 1 <= len(values) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} requests, not {len(values)}")
    app_token = f"{app_id}|{secret}"
    requests = [{"method": "GET", "relative_url": f"debug_token?input_token={quote(v, safe='')}"} for v in values]
    return BatchCall(
        url=url,
        what=f"POST /{api_version}/ (a batch of {len(values)} debug_token calls)",
        data={"access_token": app_token, "batch": json.dumps(requests, separators=(",", ":"))},
        subjects=tuple(fingerprint_of(v) for v in values),
        values=tuple(values),
        secrets=(secret, app_token),
    )


def _scrub(call: BatchCall, text: str) -> str:
    return redact_text(text, [*call.values, *call.secrets])


def batch_failed(call: BatchCall, error: SendError) -> list[InspectOutcome]:
    """Every item's outcome when the whole call failed: the same error, named for each token."""
    outcomes: list[InspectOutcome] = []
    for subject in call.subjects:
        outcomes.append(
            _with_message(error, f"debug_token for token {subject} (in {call.what}) failed: {error.message}")
        )
    return outcomes


def _with_message(error: SendError, message: str) -> SendError:
    copy = type(error)(
        message,
        code=error.code,
        subcode=error.subcode,
        fbtrace_id=error.fbtrace_id,
        details=error.details,
        http_status=error.http_status,
        retryable=error.retryable,
        error_type=error.error_type,
        title=error.title,
        retry_after=error.retry_after,
    )
    copy.__cause__ = error
    return copy


def parse_inspect_batch(response: httpx.Response, call: BatchCall) -> list[InspectOutcome]:
    """Each item's outcome from the batch answer. Raises (for the whole call) only when the call was
    refused or the answer is not a list at all; the caller turns that into every item's outcome."""
    if response.status_code != 200:
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            secrets = [*call.values, *call.secrets]
            raise error_from_graph(body["error"], http_status=response.status_code, secrets=secrets)
        raise error_from_status(response.status_code, what=call.what)
    try:
        answers = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise OutcomeUnknown(f"{call.what} answered HTTP 200 with a body that is not JSON", http_status=200) from None
    if not isinstance(answers, list):
        raise OutcomeUnknown(f"{call.what} answered HTTP 200 without a list of answers", http_status=200)
    outcomes: list[InspectOutcome] = []
    for index, subject in enumerate(call.subjects):
        answer = answers[index] if index < len(answers) else _MISSING
        outcomes.append(_item(call, index, subject, answer))
    return outcomes


_MISSING = object()


def _item(call: BatchCall, index: int, subject: str, answer: Any) -> InspectOutcome:
    where = f"debug_token for token {subject} (item {index + 1} of {call.what})"
    if answer is _MISSING:
        return OutcomeUnknown(f"{where}: Graph's answer list is shorter than the batch: no answer for this item")
    if answer is None:
        return OutcomeUnknown(f"{where}: Graph gave no answer (null: the request did not complete); try again")
    if not isinstance(answer, dict):
        return SendError(f"{where}: the answer is not an object but {type(answer).__name__}", http_status=200)
    code = answer.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        return SendError(f"{where}: the answer has no numeric code", http_status=200)
    raw = answer.get("body")
    if not isinstance(raw, str):
        return SendError(f"{where}: the answer's body is not a JSON string (HTTP {code})", http_status=code)
    try:
        body = json.loads(raw)
    except ValueError:
        return SendError(f"{where}: the answer's body is not JSON (HTTP {code})", http_status=code)
    if code != 200:
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = error_from_graph(body["error"], http_status=code, secrets=[call.values[index], *call.secrets])
            return _with_message(error, f"{where} was refused: {error.message}")
        return error_from_status(code, what=where)
    if not isinstance(body, dict):
        return SendError(f"{where}: the answer's body is not a JSON object", http_status=200)
    try:
        return TokenInfo.from_response(body, fingerprint=subject)
    except ValueError as exc:
        return SendError(_scrub(call, f"{where}: {exc}"), http_status=200)

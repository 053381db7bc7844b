"""Graph API shapes for the sandbox: the request a route sees (:class:`Call`), the answer it gives
(:class:`Reply`), and Graph error objects for every code the sender knows (:data:`ERRORS`)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["ERRORS", "Call", "Reply", "graph_error", "new_fbtrace_id", "new_wamid"]


# code -> (HTTP status, title) as Meta's Cloud API error-code reference lists them
ERRORS: dict[int, tuple[int, str]] = {
    0: (401, "AuthException"),
    1: (400, "API Unknown"),
    2: (503, "API Service"),
    3: (400, "API Method"),
    4: (400, "API Too Many Calls"),
    10: (403, "Permission Denied"),
    33: (400, "Parameter value is not valid"),
    100: (400, "Invalid parameter"),
    190: (401, "Access token has expired"),
    200: (403, "API Permission"),
    368: (403, "Temporarily blocked for policies violations"),
    2500: (400, "Unknown path components"),
    80007: (400, "Rate limit issues"),
    130429: (400, "Rate limit hit"),
    130497: (403, "Business account is restricted from messaging users in this country"),
    131000: (500, "Something went wrong"),
    131005: (403, "Access denied"),
    131008: (400, "Required parameter is missing"),
    131009: (400, "Parameter value is not valid"),
    131016: (500, "Service unavailable"),
    131021: (400, "Recipient cannot be sender"),
    131026: (400, "Message Undeliverable"),
    131031: (403, "Account has been locked"),
    131042: (400, "Business eligibility payment issue"),
    131047: (400, "Re-engagement message"),
    131048: (400, "Spam rate limit hit"),
    131049: (400, "Meta chose not to deliver"),
    131050: (400, "User stopped marketing messages"),
    131051: (400, "Unsupported message type"),
    131052: (400, "Media download error"),
    131053: (400, "Media upload error"),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit"),
    131057: (500, "Account in maintenance mode"),
    132000: (400, "Template Param Count Mismatch"),
    132001: (404, "Template does not exist"),
    132005: (400, "Template Hydrated Text Too Long"),
    132007: (400, "Template Format Character Policy Violated"),
    132012: (400, "Template Parameter Format Mismatch"),
    132015: (400, "Template is Paused"),
    132016: (400, "Template is Disabled"),
    133004: (503, "Server Temporarily Unavailable"),
    133010: (400, "Phone number Not Registered"),
}

# 190's subcodes (and the message Graph gives with each)
AUTH_SUBCODES: dict[int, str] = {
    458: "Error validating access token: The user has not authorized application.",
    460: "Error validating access token: The session has been invalidated because the user changed their "
    "password or Facebook has changed the session for security reasons.",
    463: "Error validating access token: Session has expired.",
    467: "Invalid OAuth access token - Cannot parse access token",
}


def new_fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(16).replace("-", "x").replace("_", "y")


def new_wamid(to_digits: str = "") -> str:
    raw = b"\x15" + to_digits.encode()[:20] + b"\x15\x02\x00\x11\x18\x12" + os.urandom(18)
    return "wamid." + base64.b64encode(raw).decode().rstrip("=")


@dataclass
class Reply:
    """What a route answers. ``drop`` closes the connection without an answer; ``delay`` waits first."""

    status: int = 200
    body: Any = None  # a JSON-able object, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0
    #: the Graph error code, for the request log
    code: int | None = None

    def encode(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "text/plain; charset=utf-8")
        if self.body is None:
            return b"", "application/json"
        return json.dumps(self.body, separators=(",", ":")).encode(), "application/json; charset=UTF-8"


def graph_error(
    code: int,
    *,
    subcode: int | None = None,
    message: str | None = None,
    details: str | None = None,
    status: int | None = None,
    error_type: str = "OAuthException",
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """A Graph error reply: ``{"error": {"message", "type", "code", "error_subcode", "error_data":
    {"messaging_product", "details"}, "fbtrace_id"}}`` with Meta's HTTP status for the code."""
    default_status, title = ERRORS.get(code, (400, "Unknown error"))
    if message is None:
        message = AUTH_SUBCODES.get(subcode or 467, AUTH_SUBCODES[467]) if code == 190 else f"(#{code}) {title}"
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None or code >= 130000:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details or title}
    error["fbtrace_id"] = new_fbtrace_id()
    out_headers = dict(headers or {})
    status = status or default_status
    if status == 401:
        out_headers.setdefault("WWW-Authenticate", 'OAuth "Facebook Platform" "invalid_token" "' + title + '"')
    return Reply(status=status, body={"error": error}, headers=out_headers, code=code)


@dataclass
class Call:
    """One request as a route sees it."""

    method: str
    path: str
    query: dict[str, str]
    #: header names in lower case
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        if "application/x-www-form-urlencoded" not in self.headers.get("content-type", ""):
            return {}
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def arg(self, name: str) -> str | None:
        """A parameter from the query string or a form body (Graph reads both)."""
        if name in self.query:
            return self.query[name]
        return self.form().get(name)

    def access_token(self) -> str | None:
        """The access token: ``Authorization: Bearer|OAuth <token>`` or the ``access_token`` parameter."""
        header = self.headers.get("authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value.strip():
            return value.strip()
        return self.arg("access_token")

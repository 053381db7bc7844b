"""Everything the sandbox remembers, behind one lock: tokens and apps, businesses and their phone numbers,
queued faults, templates, the messages it accepted and a log of every request (fingerprints only, never a
token)."""

from __future__ import annotations

import collections
import dataclasses
import hmac
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenstore import fingerprint_of

from .._auth import appsecret_proof
from .._redact import redact_url
from ._business import (
    BUSINESS_SCOPES,
    DEFAULT_WABA_ID,
    MESSAGING_SCOPE,
    Business,
    BusinessRegistry,
    token_wabas,
)
from ._clock import Clock
from ._graph import Call, Reply, graph_error
from ._signup import SignupCodes
from ._tokens import AppRecord, TokenRecord, TokenRegistry

__all__ = ["MESSAGING_SCOPE", "Fault", "ReceivedMessage", "RequestRecord", "SandboxState"]

APPSECRET_TIME_WINDOW = 300  # seconds a timed appsecret_proof stays acceptable


@dataclass
class Fault:
    """A queued misbehaviour for the next ``count`` requests to ``route`` (after their token is accepted).

    ``code``: answer this Graph error (``status`` overrides its HTTP status); ``status`` alone: answer that
    status with a non-Graph body (a proxy's page). ``deliver``: accept and record the message first (so the
    failure happens after delivery). ``delay``: wait this long before answering. ``drop``: close the
    connection without an answer. With ``deliver`` and nothing else, the message is accepted normally.
    """

    code: int | None = None
    status: int | None = None
    subcode: int | None = None
    message: str | None = None
    details: str | None = None
    retry_after: float | None = None
    count: int = 1
    route: str = "messages"
    deliver: bool = False
    delay: float = 0.0
    drop: bool = False

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("a fault must apply to at least one request")


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the sandbox accepted."""

    seq: int
    message_id: str
    phone_number_id: str
    to: str
    type: str
    body: Mapping[str, Any] = field(repr=False)
    token_fingerprint: str
    at: float
    #: the WABA id of the business that owns ``phone_number_id`` (the token was checked to act for it)
    waba_id: str | None = None

    @property
    def text(self) -> str | None:
        """The text body, for text messages."""
        text = self.body.get("text")
        return text.get("body") if isinstance(text, Mapping) else None

    def summary(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "message_id": self.message_id,
            "phone_number_id": self.phone_number_id,
            "to": self.to,
            "type": self.type,
            "token_fingerprint": self.token_fingerprint,
            "at": self.at,
            "waba_id": self.waba_id,
        }


@dataclass(frozen=True)
class RequestRecord:
    """One request the sandbox answered (or dropped)."""

    seq: int
    method: str
    path: str  # with secret query values redacted
    route: str
    status: int | None  # None: dropped without an answer
    code: int | None
    token_fingerprint: str | None
    at: float

    def summary(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SandboxState:
    """Shared state of one sandbox. Routes call into it from the server's threads."""

    def __init__(
        self,
        clock: Clock,
        *,
        phone_number_ids: Iterable[str] | None,
        templates: Mapping[str, Iterable[str]] | None,
        require_appsecret_proof: bool,
    ) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.tokens = TokenRegistry(clock)
        self.app: AppRecord = self.tokens.add_app()
        #: every business the sandbox knows; the default one holds ``phone_number_ids`` (None: it owns every
        #: numeric phone number id that no other business owns)
        self.businesses = BusinessRegistry()
        self.default_business: Business = self.businesses.add(
            waba_id=DEFAULT_WABA_ID,
            name="Sandbox Business",
            numbers=() if phone_number_ids is None else list(dict.fromkeys(phone_number_ids)),
            system_user_id="100000000000009",
            open_numbers=phone_number_ids is None,
        )
        #: template name -> languages; None: any template is accepted
        self.templates: dict[str, set[str]] | None = (
            None if templates is None else {k: set(v) for k, v in templates.items()}
        )
        self.require_appsecret_proof = require_appsecret_proof
        self.faults: list[Fault] = []
        self.received: list[ReceivedMessage] = []
        self.requests: list[RequestRecord] = []
        self.stopping = threading.Event()
        self._seq = 0
        from ._webhooks import WebhookSender

        #: signed status webhooks to a registered callback URL (see ``sender.sandbox._webhooks``)
        self.webhooks = WebhookSender(self)
        #: Embedded Signup codes (see ``routes/signup.py``)
        self.signup_codes = SignupCodes()

    @property
    def waba_id(self) -> str:
        """The default business's WABA id (what debug_token names for a token without granular scopes)."""
        return self.default_business.waba_id

    @property
    def phone_number_ids(self) -> set[str] | None:
        """The default business's phone number ids; None: any numeric id no other business owns is its own."""
        business = self.default_business
        return None if business.open_numbers else set(business.numbers)

    # -- businesses -----------------------------------------------------------------------------------------
    def token_wabas(self, record: TokenRecord) -> tuple[str, ...]:
        """The WABA ids this token acts for (its granular scopes; the default business without any)."""
        return token_wabas(record.granular_scopes, self.waba_id)

    def may_act_for(self, record: TokenRecord, business: Business) -> bool:
        return business.waba_id in self.token_wabas(record)

    def add_business(
        self,
        *,
        waba_id: str | None = None,
        name: str | None = None,
        numbers: int | Iterable[str] = 1,
        token: str | bool = True,
        expires_in: float | None = None,
        business_id: str | None = None,
    ) -> Business:
        """A new business; ``token``: True issues a random token for it, a string registers that value, False
        none (see :meth:`issue_business_token`)."""
        with self.lock:
            business = self.businesses.add(waba_id=waba_id, name=name, numbers=numbers, business_id=business_id)
            if token is not False:
                self.issue_business_token(
                    business.waba_id, value=token if isinstance(token, str) else None, expires_in=expires_in
                )
            return business

    def issue_business_token(
        self, waba_id: str, *, value: str | None = None, expires_in: float | None = None, label: str | None = None
    ) -> str:
        """A business integration system user token of the app, scoped to this WABA; becomes its ``token``."""
        with self.lock:
            business = self.businesses.get(waba_id)
            options: dict[str, Any] = {
                "app_id": self.app.app_id,
                "type": "SYSTEM_USER",
                "user_id": business.system_user_id,
                "granular_scopes": {scope: (business.waba_id,) for scope in BUSINESS_SCOPES},
                "expires_in": expires_in,
                "label": label or f"business:{business.waba_id}",
            }
            if value is None:
                value = self.tokens.issue(**options)
            else:
                self.tokens.add(value, **options)
            business.token = value
            return value

    def rotate_business_token(self, waba_id: str, *, revoke_old: bool = False, value: str | None = None) -> str:
        """A new token like the business's current one (or a first one); the old stays valid unless
        ``revoke_old``."""
        with self.lock:
            business = self.businesses.get(waba_id)
            if business.token is None:
                return self.issue_business_token(waba_id, value=value)
            new = self.tokens.exchange(business.token, revoke_old=revoke_old, value=value)
            business.token = new
            return new

    def business_tokens(self, waba_id: str) -> list[TokenRecord]:
        """Every token that acts for this business (copies), oldest first."""
        return [r for r in self.tokens.records() if waba_id in self.token_wabas(r)]

    def revoke_business_tokens(self, waba_id: str, *, all: bool = False) -> int:
        """Revoke the business's current token (``all``: every token acting for it); how many were revoked."""
        with self.lock:
            business = self.businesses.get(waba_id)
            if not all:
                return int(business.token is not None and self.tokens.revoke(business.token))
            return sum(self.tokens.revoke(r.fingerprint) for r in self.business_tokens(waba_id))

    # -- faults ---------------------------------------------------------------------------------------------
    def queue(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.route in (route, "*"):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return dataclasses.replace(fault, count=1)
        return None

    # -- records --------------------------------------------------------------------------------------------
    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    def record_message(
        self,
        *,
        message_id: str,
        phone_number_id: str,
        to: str,
        body: Mapping[str, Any],
        token: TokenRecord,
        waba_id: str | None = None,
    ) -> ReceivedMessage:
        with self.lock:
            message = ReceivedMessage(
                seq=len(self.received) + 1,
                message_id=message_id,
                phone_number_id=phone_number_id,
                to=to,
                type=str(body.get("type", "text")),
                body=dict(body),
                token_fingerprint=token.fingerprint,
                at=self.clock(),
                waba_id=waba_id,
            )
            self.received.append(message)
        self.webhooks.on_message(message)
        return message

    def record_request(self, call: Call, route: str, reply: Reply | None, token_fingerprint: str | None) -> None:
        path = redact_url(call.path + ("?" + "&".join(f"{k}={v}" for k, v in call.query.items()) if call.query else ""))
        with self.lock:
            self.requests.append(
                RequestRecord(
                    seq=len(self.requests) + 1,
                    method=call.method,
                    path=path,
                    route=route,
                    status=None if reply is None or reply.drop else reply.status,
                    code=None if reply is None else reply.code,
                    token_fingerprint=token_fingerprint,
                    at=self.clock(),
                )
            )

    def received_counts(self, key: Callable[[ReceivedMessage], Any] | None = None) -> collections.Counter[Any]:
        """How many times each message was received, keyed by ``key`` (default: the text body)."""
        key = key or (lambda m: m.text)
        with self.lock:
            return collections.Counter(key(m) for m in self.received)

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.received.clear()
            self.requests.clear()

    # -- authentication -------------------------------------------------------------------------------------
    def authenticate(self, call: Call, *, allow_app_token: bool = False) -> TokenRecord | AppRecord | Reply:
        """The caller's token record (or app, for an app token where allowed), or the Graph error to answer."""
        value = call.access_token()
        if not value:
            return graph_error(
                190, message="An active access token must be used to query information about the current user."
            )
        app = self.tokens.app_for_app_token(value) if "|" in value else None
        if app is not None:
            if allow_app_token:
                return app
            return graph_error(200, message="(#200) App access tokens cannot be used for this call")
        record = self.tokens.get(value)
        if record is None:
            return graph_error(190, subcode=467)
        status = record.status(self.clock())
        if status == "expired":
            return graph_error(190, subcode=463)
        if status == "revoked":
            return graph_error(
                190,
                subcode=460,
                message="Error validating access token: The session was invalidated explicitly using an API call.",
            )
        problem = self.check_appsecret_proof(call, record)
        if problem is not None:
            return problem
        return record

    def check_appsecret_proof(self, call: Call, record: TokenRecord) -> Reply | None:
        proof = call.arg("appsecret_proof")
        if proof is None:
            if self.require_appsecret_proof:
                return graph_error(100, message="API calls from the server require an appsecret_proof argument")
            return None
        app = self.tokens.app(record.app_id)
        if app is None:
            return graph_error(100, message="Invalid appsecret_proof provided in the API argument")
        stamp = call.arg("appsecret_time")
        if stamp is not None:
            if not stamp.isdigit() or abs(self.clock() - int(stamp)) > APPSECRET_TIME_WINDOW:
                return graph_error(100, message="appsecret_time is too old or in the future")
            expected = appsecret_proof(record.value, app.secret, int(stamp))
        else:
            expected = appsecret_proof(record.value, app.secret)
        if not hmac.compare_digest(expected, proof):
            return graph_error(100, message="Invalid appsecret_proof provided in the API argument")
        return None

    def fingerprint_of_call(self, call: Call) -> str | None:
        value = call.access_token()
        if not value:
            return None
        app = self.tokens.app_for_app_token(value) if "|" in value else None
        if app is not None:
            return f"app:{app.app_id}"
        return fingerprint_of(value)

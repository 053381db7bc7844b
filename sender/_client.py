"""``Sender`` and ``AsyncSender``: the Cloud API client. One pooled httpx client each.

The logic without I/O (URLs, validation, result parsing, error building, retry decisions) lives in
:class:`_BaseSender`; :class:`Sender` and :class:`AsyncSender` hold the I/O paths, side by side, in the
same order. The access token is never held: the :class:`~sender.TokenAuth` flow asks the provider on every
request, refetches and resends once when Graph rejects it.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx

from tokenstore import Token, TokenProvider, provider_from_config, shown_value

from ._auth import TokenAuth
from ._config import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    AppSecretProof,
    SenderSettings,
    check_api_version,
    check_base_url,
    read_config,
    settings_from_config,
)
from ._exceptions import OutcomeUnknown, QueueTimeout, RateLimited, SendError
from ._http import Answer, default_headers, error_for_response, json_body, network_error, sent_token
from ._messages import (
    contacts_message,
    interactive_message,
    location_message,
    media_message,
    prepare_message,
    reaction_message,
    read_receipt,
    template_message,
    text_message,
)
from ._models import SendResult
from ._pacing import Pacer, PacingPolicy
from ._pool import (
    ASYNC_TRANSPORTS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_QUEUE_TIMEOUT,
    AsyncConnectionPool,
    ConnectionPool,
    Reply,
    encode_json,
    queue_timeout_error,
)
from ._redact import install_log_redaction
from ._retry import RetryPolicy

__all__ = ["AsyncSender", "Sender"]

logger = logging.getLogger("sender")
#: the direct paths' request lines, as httpx logs its own at INFO (redacted like httpx's)
http_logger = logging.getLogger("sender.http")


def _wire_headers(request: httpx.Request) -> dict[str, str]:
    """An httpx request's headers for aiohttp/urllib3 (which set Host and Content-Length themselves)."""
    return {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}


def _log_request(url: str, status: int) -> None:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    http_logger.info('HTTP Request: POST %s "HTTP/1.1 %d %s"', url, status, reason)


_S = TypeVar("_S", bound="_BaseSender")
_ID = re.compile(r"^\d{1,32}$")
_Outcome = Any  # SendResult | bool | SendError

#: the default pool's httpx limits, for code that builds its own httpx client beside a sender (every connection
#: kept alive: fewer keep-alive than total makes httpcore 1.0 close connections assigned to queued requests,
#: encode/httpcore#1110)
POOL_LIMITS = httpx.Limits(
    max_connections=DEFAULT_MAX_CONNECTIONS, max_keepalive_connections=DEFAULT_MAX_CONNECTIONS, keepalive_expiry=5.0
)

#: the options a shared ``pool=`` replaces (they shape the pool, so they are set on it)
_POOL_OPTIONS = ("max_connections", "max_in_flight", "ca_bundle", "transport")


#: headers the HTTP client writes itself from the request (a caller's value would be sent twice)
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _header_label(name: str) -> str:
    """A header name for an error: quoted when short, else only its length (a pasted token is not echoed)."""
    shown = shown_value(name)
    return shown if shown.startswith(("'", '"')) else f"a header whose name is {shown}"


def _checked_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """The ``headers=`` option, checked once: names are HTTP tokens, values one line of text; framing headers
    (Host, Content-Length, Transfer-Encoding, Connection) are the client's own. ValueError names the header,
    never its value (it may be a credential)."""
    if not headers:
        return None
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(f"headers: {_header_label(str(name))} is not an HTTP header name")
        if name.lower() in _FRAMING_HEADERS:
            raise ValueError(f"headers: {name} is set by the HTTP client itself; leave it out")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"headers: the value of {_header_label(name)} must be one line of text (no CR, LF or NUL)")
        checked[name] = value
    return checked


def _mask_recipient(to: str | None) -> str:
    """A recipient for logs: the last 4 digits only (phone numbers are personal data)."""
    if not to:
        return "-"
    digits = re.sub(r"\D", "", to)
    return f"…{digits[-4:]}" if len(digits) > 4 else "…"


class _BaseSender:
    """What the sync and async senders share: configuration and every decision that needs no I/O."""

    def __init__(
        self,
        provider: TokenProvider,
        *,
        phone_number_id: str,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        app_secret: TokenProvider | None = None,
        appsecret_proof: AppSecretProof | bool | None = None,
        retry: RetryPolicy | None = None,
        pacing: PacingPolicy | Pacer | None = None,
        timeout: httpx.Timeout | float | None = None,
        ca_bundle: str | None = None,
        transport: Any = None,
        headers: Mapping[str, str] | None = None,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        owns_providers: bool = False,
        auth: TokenAuth | None = None,
        max_connections: int | None = None,
        max_in_flight: int | None = None,
        queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
        pool: ConnectionPool | AsyncConnectionPool | None = None,
    ) -> None:
        if not isinstance(provider, TokenProvider):
            raise TypeError("provider must be a tokenstore.TokenProvider (e.g. tokenstore.load_provider(...))")
        phone_number_id = str(phone_number_id).strip()
        if not _ID.match(phone_number_id):
            raise ValueError("phone_number_id must be the numeric id of the business phone number")
        problem = check_api_version(api_version)
        if problem:
            raise ValueError(f"api_version {problem}, got {api_version!r}")
        problem = check_base_url(base_url)
        if problem:
            raise ValueError(f"base_url {problem}")
        if appsecret_proof is None:
            appsecret_proof = "on" if app_secret is not None else "off"
        elif isinstance(appsecret_proof, bool):
            appsecret_proof = "on" if appsecret_proof else "off"
        if appsecret_proof not in ("off", "on", "timed"):
            raise ValueError("appsecret_proof must be 'off', 'on' or 'timed'")
        if appsecret_proof != "off" and app_secret is None:
            raise ValueError("appsecret_proof needs app_secret: a provider of the Meta app secret")
        self.provider = provider
        self.app_secret = app_secret if appsecret_proof != "off" else None
        self.phone_number_id = phone_number_id
        self.api_version = api_version
        self.base_url = base_url.rstrip("/")
        self.retry = retry if retry is not None else RetryPolicy()
        self.pacer = Pacer(pacing) if isinstance(pacing, PacingPolicy) and pacing.enabled else None
        if isinstance(pacing, Pacer):
            self.pacer = pacing
        if auth is not None and auth.provider is not provider:
            raise ValueError("auth must ask the sender's own provider")
        #: the token flow; ``auth=`` gives one of your own (a TokenAuth subclass over the same provider)
        self.auth = (
            auth
            if auth is not None
            else TokenAuth(provider, app_secret=self.app_secret, timed=appsecret_proof == "timed")
        )
        # the direct paths run TokenAuth's decisions themselves (run/arun); a subclass that overrides an httpx
        # flow without overriding run/arun as well gets that flow driven instead, so its customization is never
        # skipped
        cls = type(self.auth)
        self._plain_flow = (cls.sync_auth_flow is TokenAuth.sync_auth_flow or cls.run is not TokenAuth.run) and (
            cls.async_auth_flow is TokenAuth.async_auth_flow or cls.arun is not TokenAuth.arun
        )
        self.messages_url = f"{self.base_url}/{api_version}/{phone_number_id}/messages"
        self._what = f"POST /{api_version}/{phone_number_id}/messages"
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        if pool is not None:
            given = [
                name
                for name, value in zip(
                    _POOL_OPTIONS, (max_connections, max_in_flight, ca_bundle, transport), strict=True
                )
                if value not in (None, False)
            ]
            if given:
                raise ValueError(f"pool= replaces {', '.join(given)}: set them on the pool")
        self._pool_options: dict[str, Any] = {
            "ca_bundle": ca_bundle,
            "queue_timeout": queue_timeout,
            "max_in_flight": max_in_flight,
        }
        if max_connections is not None:
            self._pool_options["max_connections"] = max_connections
        self._transport = transport
        headers = _checked_headers(headers)
        #: headers of every request beyond the pool's User-Agent and Accept (None: none)
        self._extra_headers = dict(headers) if headers else None
        self._headers = {**default_headers(), **(headers or {})}
        self._rand = rand
        self._clock = clock
        self._owns_providers = owns_providers
        self._closed = False
        install_log_redaction()

    @classmethod
    def from_config(
        cls: type[_S],
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> _S:
        """Build from a config file (or an already loaded mapping): the ``whatsapp:`` section and the token
        provider of ``token:`` (plus ``app_secret:`` when ``whatsapp.appsecret_proof`` is on).

        ``config``: a path, else ``$TOKENSTORE_CONFIG``, else ``./tokenstore.yaml``. Keyword ``overrides`` go
        to the constructor (``transport=``, ``sleep=``, ``retry=``...). No network I/O happens here.
        """
        data, source = read_config(config)
        settings = settings_from_config(data, source=source)
        return cls._from_settings(settings, data, **overrides)

    @classmethod
    def _from_settings(cls: type[_S], settings: SenderSettings, data: Mapping[str, Any], **overrides: Any) -> _S:
        from tokenstore import ConfigError

        app_secret = None
        if settings.appsecret_proof != "off" and data.get("app_secret") is None:
            raise ConfigError(
                "appsecret_proof is on, so the app_secret: section is required (it names the store of the "
                "Meta app secret)",
                source=settings.source,
                field="whatsapp.appsecret_proof",
            )
        provider = provider_from_config(data, section="token", source=settings.source)
        try:
            if settings.appsecret_proof != "off":
                app_secret = provider_from_config(data, section="app_secret", source=settings.source)
            assert settings.phone_number_id is not None
            kwargs: dict[str, Any] = {
                "phone_number_id": settings.phone_number_id,
                "base_url": settings.base_url,
                "api_version": settings.api_version,
                "app_secret": app_secret,
                "appsecret_proof": settings.appsecret_proof,
                "retry": settings.retry,
                "pacing": settings.pacing,
                "timeout": settings.timeout,
                "ca_bundle": settings.ca_bundle,
                "max_connections": settings.max_connections,
                "max_in_flight": settings.max_in_flight,
                "queue_timeout": settings.queue_timeout,
                "owns_providers": True,
            }
            if issubclass(cls, AsyncSender):
                kwargs["async_transport"] = settings.async_transport
            if overrides.get("pool") is not None:  # a shared pool brings its own size, TLS and transport
                for name in (*_POOL_OPTIONS, "queue_timeout", "async_transport"):
                    kwargs.pop(name, None)
            kwargs.update(overrides)
            return cls(provider, **kwargs)
        except BaseException:
            provider.close()
            if app_secret is not None:
                app_secret.close()
            raise

    # -- decisions without I/O -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")

    def _interpret(self, response: Answer, attempts: int, *, receipt: bool) -> _Outcome:
        """A SendResult (or True for a read receipt) for a success, else the typed error."""
        if 200 <= response.status_code < 300:
            body = json_body(response)
            if isinstance(body, dict):
                if receipt and body.get("success") is True:
                    return True
                if not receipt:
                    # the direct paths' Reply carries its token; an httpx.Response, in its request's extensions
                    token = response.token if type(response) is Reply else sent_token(response)
                    # the body was parsed here: the result keeps it without a copy
                    result = SendResult._parse(body, body, attempts, token.fingerprint if token else None)
                    if result is not None:
                        return result
            return OutcomeUnknown(
                f"{self._what} answered HTTP {response.status_code} without the Cloud API's success shape: "
                "the message was probably accepted but has no id",
                http_status=response.status_code,
            )
        return error_for_response(response, what=self._what)

    def _give_up_or_wait(self, error: SendError, attempt: int, started: float) -> float:
        """Seconds to wait before the next attempt; raises ``error`` when the policy says to stop."""
        error.attempts = attempt
        wait = self.retry.next_wait(error, attempt, self._rand(), self._clock() - started)
        if wait is None:
            if isinstance(error, RateLimited) and error.retry_after is None:
                # the hint a caller needs to come back later: the pair-limit rule or the next backoff
                error.retry_after = max(self.retry.hint(error, attempt), self.retry.backoff(attempt, 0.0))
            raise error
        logger.warning(
            "%s failed (%s%s, attempt %d of %d); retrying in %.2fs",
            self._what,
            type(error).__name__,
            f" code {error.code}" if error.code is not None else "",
            attempt,
            self.retry.max_attempts,
            wait,
        )
        return wait

    def _log_sent(self, body: Mapping[str, Any], outcome: _Outcome) -> None:
        if isinstance(outcome, SendResult) and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "sent %s message to %s: %s (token %s, %d attempt%s)",
                body.get("type", "?"),
                _mask_recipient(body.get("to")),
                outcome.message_id,
                outcome.token_fingerprint,
                outcome.attempts,
                "" if outcome.attempts == 1 else "s",
            )

    @staticmethod
    def _recipient(body: Mapping[str, Any]) -> str | None:
        to = body.get("to")
        return re.sub(r"\D", "", to) if isinstance(to, str) and "status" not in body else None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} phone_number_id={self.phone_number_id!r} api_version={self.api_version!r} "
            f"base_url={self.base_url!r} source={self.provider.source!r}>"
        )


class Sender(_BaseSender):
    """Send WhatsApp Cloud API messages; the token is asked from ``provider`` on every request.

    >>> with Sender(provider, phone_number_id="123") as s:          # doctest: +SKIP
    ...     s.send_text("15551234567", "hi").message_id
    'wamid.…'

    Thread-safe: one Sender (one connection pool) serves any number of threads. At most ``max_in_flight``
    requests are on the wire at once (default: ``max_connections``, 400); more callers wait their turn, first
    come first served, up to ``queue_timeout`` seconds (then :class:`~sender.QueueTimeout`: nothing sent).
    ``pool``: a :class:`~sender.ConnectionPool` shared with other senders (not closed by this one).
    ``sync_transport``: ``"auto"`` (urllib3's pool when installed and no proxy is configured, else httpx's),
    ``"urllib3"`` or ``"httpx"``; ``transport`` (an httpx transport) puts httpx's client over it.
    ``sleep`` (seconds) is injectable for tests.
    """

    def __init__(
        self,
        provider: TokenProvider,
        *,
        phone_number_id: str,
        sleep: Callable[[float], None] = time.sleep,
        sync_transport: str = "auto",
        pool: ConnectionPool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(provider, phone_number_id=phone_number_id, pool=pool, **options)
        self._sleep = sleep
        if sync_transport not in ("auto", "urllib3", "httpx"):
            raise ValueError("sync_transport must be 'auto', 'urllib3' or 'httpx'")
        self._owns_pool = pool is None
        if pool is None:
            pool = ConnectionPool(
                transport=self._transport if self._transport is not None else sync_transport, **self._pool_options
            )
        self.pool = pool
        #: the transport in use: "urllib3", "httpx" or the name of a transport passed in
        self.transport_name = self.pool.transport_name
        self._client = self.pool.client
        self._session = self.pool.session
        if self._session is not None:
            self._u3pool = self._session.pool_for(self.messages_url)
            self._u3timeout = self._session.timeout(self._timeout)
            self._target = urlsplit(self.messages_url).path
            self._direct_headers = {
                **self._headers,
                "Accept-Encoding": "gzip, deflate",
                "Content-Type": "application/json",
            }

    # -- the I/O path --------------------------------------------------------------------------------------
    def _post(self, body: dict[str, Any], *, receipt: bool = False) -> _Outcome:
        self._check_open()
        recipient = self._recipient(body) if self.pacer is not None else None
        started = self._clock()
        attempt = 0
        data: bytes | None = None
        while True:
            attempt += 1
            if self.pacer is not None:
                wait = self.pacer.reserve(recipient)
                if wait > 0:
                    self._sleep(wait)
            try:
                # an in-flight slot is taken per request, after the token was asked for (a cold cache or a
                # slow store holds no slot): in _send_direct, or by the pool's httpx transport
                if self._session is not None:
                    if data is None:
                        data = encode_json(body)
                    response: Answer = (
                        self.auth.run(partial(self._send_direct, data))
                        if self._plain_flow
                        else self._send_through_flow(data)
                    )
                else:
                    assert self._client is not None
                    response = self._client.post(
                        self.messages_url, json=body, auth=self.auth, timeout=self._timeout, headers=self._extra_headers
                    )
            except httpx.HTTPError as exc:
                outcome: _Outcome = network_error(exc, what=self._what)
                outcome.__cause__ = exc
            except QueueTimeout as exc:  # waited for a slot: nothing was sent, never retried
                exc.attempts = attempt
                raise
            else:
                outcome = self._interpret(response, attempt, receipt=receipt)
            if not isinstance(outcome, SendError):
                self._log_sent(body, outcome)
                return outcome
            self._sleep(self._give_up_or_wait(outcome, attempt, started))

    def _send_direct(self, data: bytes, token: Token, secret: Token | None) -> Reply:
        """One POST on urllib3's pool carrying ``token`` (the step :meth:`TokenAuth.run` repeats on a 401)."""
        headers = self._direct_headers.copy()
        headers["Authorization"] = self.auth.bearer(token)
        query = f"?{urlencode(self.auth.proof_params(token, secret))}" if secret is not None else ""
        status, answer_headers, content = self._wire(query, headers, data)
        return Reply(status, answer_headers, content, token)

    def _wire(self, query: str, headers: dict[str, str], data: bytes) -> tuple[int, Any, bytes]:
        """Take an in-flight slot, POST, give the slot back: ``(status, headers, body)``."""
        assert self._session is not None
        slots = self.pool.slots
        if not slots.acquire(self.pool.queue_timeout):
            raise queue_timeout_error(self.pool.queue_timeout, slots.limit, self._what)
        try:
            answer = self._session.post(
                self._u3pool, self._target + query, data, headers, self._u3timeout, self.messages_url
            )
        finally:
            slots.release()
        if http_logger.isEnabledFor(logging.INFO):
            _log_request(self.messages_url + query, answer[0])
        return answer

    def _send_through_flow(self, data: bytes) -> httpx.Response:
        """The direct path under a TokenAuth subclass that overrides ``sync_auth_flow``: its flow is driven
        over urllib3 with httpx Request/Response objects, so every customization keeps applying."""
        request = httpx.Request("POST", self.messages_url, content=data, headers=self._direct_headers)
        flow = self.auth.sync_auth_flow(request)
        outgoing = next(flow)
        while True:
            query = outgoing.url.query.decode("ascii")
            status, headers, content = self._wire(f"?{query}" if query else "", _wire_headers(outgoing), data)
            response = httpx.Response(status, headers=list(headers.items()), content=content, request=outgoing)
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return response

    # -- the public API ------------------------------------------------------------------------------------
    def send(self, message: Mapping[str, Any]) -> SendResult:
        """Send any message object the Cloud API accepts (``messaging_product`` is filled in)."""
        result: SendResult = self._post(prepare_message(message))
        return result

    def send_text(
        self,
        to: str,
        body: str,
        *,
        preview_url: bool = False,
        reply_to: str | None = None,
        biz_opaque_callback_data: str | None = None,
    ) -> SendResult:
        return self.send(
            text_message(
                to, body, preview_url=preview_url, reply_to=reply_to, biz_opaque_callback_data=biz_opaque_callback_data
            )
        )

    def send_template(
        self,
        to: str,
        name: str,
        language: str = "en_US",
        components: Sequence[Mapping[str, Any]] | None = None,
        *,
        reply_to: str | None = None,
        biz_opaque_callback_data: str | None = None,
    ) -> SendResult:
        return self.send(
            template_message(
                to,
                name,
                language=language,
                components=components,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_media(
        self,
        to: str,
        kind: str,
        *,
        link: str | None = None,
        media_id: str | None = None,
        caption: str | None = None,
        filename: str | None = None,
        reply_to: str | None = None,
        biz_opaque_callback_data: str | None = None,
    ) -> SendResult:
        """An image, audio, video, document or sticker by ``link`` or uploaded ``media_id``."""
        return self.send(
            media_message(
                to,
                kind,
                link=link,
                media_id=media_id,
                caption=caption,
                filename=filename,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_interactive(
        self,
        to: str,
        interactive: Mapping[str, Any],
        *,
        reply_to: str | None = None,
        biz_opaque_callback_data: str | None = None,
    ) -> SendResult:
        """An interactive message (buttons, list, cta_url...); see ``button_message``/``list_message``."""
        return self.send(
            interactive_message(to, interactive, reply_to=reply_to, biz_opaque_callback_data=biz_opaque_callback_data)
        )

    def send_reaction(self, to: str, message_id: str, emoji: str) -> SendResult:
        return self.send(reaction_message(to, message_id, emoji))

    def send_location(
        self,
        to: str,
        latitude: float,
        longitude: float,
        *,
        name: str | None = None,
        address: str | None = None,
        reply_to: str | None = None,
    ) -> SendResult:
        return self.send(location_message(to, latitude, longitude, name=name, address=address, reply_to=reply_to))

    def send_contacts(self, to: str, contacts: Iterable[Mapping[str, Any]]) -> SendResult:
        return self.send(contacts_message(to, list(contacts)))

    def mark_read(self, message_id: str, *, typing_indicator: bool = False) -> bool:
        """Mark an incoming message as read (optionally with a typing indicator). True when the API agrees."""
        ok: bool = self._post(read_receipt(message_id, typing_indicator=typing_indicator), receipt=True)
        return ok

    # -- lifecycle -----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool (and the providers when this sender built them). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            self.pool.close()
        if self._owns_providers:
            self.provider.close()
            if self.app_secret is not None:
                self.app_secret.close()

    def __enter__(self) -> Sender:
        self._check_open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncSender(_BaseSender):
    """The asyncio twin of :class:`Sender`: the same methods, awaitable; ``async with`` closes it.

    By default (``async_transport="auto"``: ``"native"``) requests go out on the sender's own HTTP/1.1 client
    (:mod:`sender._wire`: keep-alive connections on asyncio protocols), with ``"aiohttp"`` on aiohttp's pool:
    no httpx Request or Response per message, the same :class:`~sender.TokenAuth` decisions
    (:meth:`TokenAuth.arun`). With ``async_transport="httpx"`` (also what "auto" picks when the environment
    names a proxy) or a ``transport`` (an ``httpx.AsyncBaseTransport``) they go through ``httpx.AsyncClient``
    with ``TokenAuth`` as its auth flow. ``pool``: an :class:`~sender.AsyncConnectionPool` shared with other
    senders on the same event loop.
    """

    def __init__(
        self,
        provider: TokenProvider,
        *,
        phone_number_id: str,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        async_transport: str = "auto",
        pool: AsyncConnectionPool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(provider, phone_number_id=phone_number_id, pool=pool, **options)
        if sleep is None:
            import asyncio

            sleep = asyncio.sleep
        self._sleep = sleep
        if async_transport not in ASYNC_TRANSPORTS:
            raise ValueError("async_transport must be 'auto', 'native', 'aiohttp' or 'httpx'")
        self._owns_pool = pool is None
        if pool is None:
            # CPU per message is the rate once hundreds of sends are in flight: httpcore's async pool costs
            # 2-5x aiohttp's, aiohttp's ClientSession several times the native client's (bench/)
            pool = AsyncConnectionPool(
                transport=self._transport if self._transport is not None else async_transport, **self._pool_options
            )
        self.pool = pool
        #: the transport in use: "native", "aiohttp", "httpx" or the name of a transport passed in
        self.transport_name = pool.transport_name
        self._session = pool.session
        self._client = pool.client
        if self._session is not None:
            self._aio_timeout: Any = self._session.timeout(self._timeout)  # the session's own timeout value
            self._direct_headers = {**self._headers, "Content-Type": "application/json"}
            if pool.transport_name == "aiohttp":
                # aiohttp decompresses; the native client asks for identity (Graph's answers are small) and
                # still decodes gzip/deflate should a server send it anyway
                self._direct_headers["Accept-Encoding"] = "gzip, deflate"

    # -- the I/O path --------------------------------------------------------------------------------------
    async def _post(self, body: dict[str, Any], *, receipt: bool = False) -> _Outcome:
        self._check_open()
        recipient = self._recipient(body) if self.pacer is not None else None
        started = self._clock()
        attempt = 0
        data: bytes | None = None
        while True:
            attempt += 1
            if self.pacer is not None:
                wait = self.pacer.reserve(recipient)
                if wait > 0:
                    # coalesced with the loop's other wake-ups on the policy's grid (one timer per window);
                    # an injected sleep (tests) waits exactly
                    await self.pacer.await_slot(wait, self._sleep)
            try:
                # an in-flight slot is taken per request, after the token was asked for (a cold cache or a
                # slow store holds no slot): in _send_direct, or by the pool's httpx transport
                if self._session is not None:
                    if data is None:
                        data = encode_json(body)
                    response: Answer = (
                        await self.auth.arun(partial(self._send_direct, data))
                        if self._plain_flow
                        else await self._send_through_flow(data)
                    )
                else:
                    assert self._client is not None
                    response = await self._client.post(
                        self.messages_url, json=body, auth=self.auth, timeout=self._timeout, headers=self._extra_headers
                    )
            except httpx.HTTPError as exc:
                outcome: _Outcome = network_error(exc, what=self._what)
                outcome.__cause__ = exc
            except QueueTimeout as exc:  # waited for a slot: nothing was sent, never retried
                exc.attempts = attempt
                raise
            else:
                outcome = self._interpret(response, attempt, receipt=receipt)
            if not isinstance(outcome, SendError):
                self._log_sent(body, outcome)
                return outcome
            await self._sleep(self._give_up_or_wait(outcome, attempt, started))

    async def _send_direct(self, data: bytes, token: Token, secret: Token | None) -> Reply:
        """One POST on the direct path's session (native or aiohttp) carrying ``token`` (the step
        :meth:`TokenAuth.arun` repeats on a 401): :meth:`_wire` inlined (the hot path; one coroutine frame less
        per message)."""
        headers = self._direct_headers.copy()
        headers["Authorization"] = self.auth.bearer(token)
        url = self.messages_url
        if secret is not None:
            url += f"?{urlencode(self.auth.proof_params(token, secret))}"
        session = self._session
        assert session is not None
        slots = self.pool.slots
        if not slots.try_acquire() and not await slots.acquire(self.pool.queue_timeout):
            raise queue_timeout_error(self.pool.queue_timeout, slots.limit, self._what)
        try:
            status, answer_headers, content = await session.post(
                url, data, headers, self._aio_timeout, self.messages_url
            )
        finally:
            slots.release()
        if http_logger.isEnabledFor(logging.INFO):
            _log_request(url, status)
        return Reply(status, answer_headers, content, token)

    async def _wire(self, query: str, headers: dict[str, str], data: bytes) -> tuple[int, Any, bytes]:
        """Take an in-flight slot, POST, give the slot back: ``(status, headers, body)``."""
        assert self._session is not None
        slots = self.pool.slots
        if not slots.try_acquire() and not await slots.acquire(self.pool.queue_timeout):
            raise queue_timeout_error(self.pool.queue_timeout, slots.limit, self._what)
        url = self.messages_url + query
        try:
            answer = await self._session.post(url, data, headers, self._aio_timeout, self.messages_url)
        finally:
            slots.release()
        if http_logger.isEnabledFor(logging.INFO):
            _log_request(url, answer[0])
        return answer

    async def _send_through_flow(self, data: bytes) -> httpx.Response:
        """The direct path under a TokenAuth subclass that overrides ``async_auth_flow``: its flow is driven
        over aiohttp with httpx Request/Response objects, so every customization keeps applying."""
        request = httpx.Request("POST", self.messages_url, content=data, headers=self._direct_headers)
        flow = self.auth.async_auth_flow(request)
        try:
            outgoing = await flow.__anext__()
            while True:
                query = outgoing.url.query.decode("ascii")
                status, headers, content = await self._wire(f"?{query}" if query else "", _wire_headers(outgoing), data)
                response = httpx.Response(status, headers=list(headers.items()), content=content, request=outgoing)
                try:
                    outgoing = await flow.asend(response)
                except StopAsyncIteration:
                    return response
        finally:
            await flow.aclose()

    # -- the public API ------------------------------------------------------------------------------------
    async def send(self, message: Mapping[str, Any]) -> SendResult:
        """Send any message object the Cloud API accepts (``messaging_product`` is filled in)."""
        result: SendResult = await self._post(prepare_message(message))
        return result

    async def send_text(
        self,
        to: str,
        body: str,
        *,
        preview_url: bool = False,
        reply_to: str | None = None,
        biz_opaque_callback_data: str | None = None,
    ) -> SendResult:
        return await self.send(
            text_message(
                to, body, preview_url=preview_url, reply_to=reply_to, biz_opaque_callback_data=biz_opaque_callback_data
            )
        )

    async def send_template(
        self,
        to: str,
        name: str,
        language: str = "en_US",
        components: Sequence[Mapping[str, Any]] | None = None,
        *,
        reply_to: str | None = None,
        biz_opaque_callback_data: str | None = None,
    ) -> SendResult:
        return await self.send(
            template_message(
                to,
                name,
                language=language,
                components=components,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    async def send_media(
        self,
        to: str,
        kind: str,
        *,
        link: str | None = None,
        media_id: str | None = None,
        caption: str | None = None,
        filename: str | None = None,
        reply_to: str | None = None,
        biz_opaque_callback_data: str | None = None,
    ) -> SendResult:
        """An image, audio, video, document or sticker by ``link`` or uploaded ``media_id``."""
        return await self.send(
            media_message(
                to,
                kind,
                link=link,
                media_id=media_id,
                caption=caption,
                filename=filename,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    async def send_interactive(
        self,
        to: str,
        interactive: Mapping[str, Any],
        *,
        reply_to: str | None = None,
        biz_opaque_callback_data: str | None = None,
    ) -> SendResult:
        """An interactive message (buttons, list, cta_url...); see ``button_message``/``list_message``."""
        return await self.send(
            interactive_message(to, interactive, reply_to=reply_to, biz_opaque_callback_data=biz_opaque_callback_data)
        )

    async def send_reaction(self, to: str, message_id: str, emoji: str) -> SendResult:
        return await self.send(reaction_message(to, message_id, emoji))

    async def send_location(
        self,
        to: str,
        latitude: float,
        longitude: float,
        *,
        name: str | None = None,
        address: str | None = None,
        reply_to: str | None = None,
    ) -> SendResult:
        return await self.send(location_message(to, latitude, longitude, name=name, address=address, reply_to=reply_to))

    async def send_contacts(self, to: str, contacts: Iterable[Mapping[str, Any]]) -> SendResult:
        return await self.send(contacts_message(to, list(contacts)))

    async def mark_read(self, message_id: str, *, typing_indicator: bool = False) -> bool:
        """Mark an incoming message as read (optionally with a typing indicator). True when the API agrees."""
        ok: bool = await self._post(read_receipt(message_id, typing_indicator=typing_indicator), receipt=True)
        return ok

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the connection pool (and the providers when this sender built them). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            await self.pool.aclose()
        if self._owns_providers:
            await self.provider.aclose()
            if self.app_secret is not None:
                await self.app_secret.aclose()

    async def __aenter__(self) -> AsyncSender:
        self._check_open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

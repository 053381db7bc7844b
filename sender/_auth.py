"""Token injection as an ``httpx.Auth`` flow that asks the provider for the token on every request.

Nothing captures the token: each request asks the provider (a cache hit costs next to nothing), so a token
rotated in the store is picked up without a restart. When Graph rejects the token (HTTP 401, or code 190 or
0 in the error object) the flow:

1. calls ``provider.invalidate(token)`` - the caching layer only forgets the token if it is still the cached
   one, so N concurrent rejections cause a single refetch from the store;
2. asks the provider again;
3. if the token changed, resends the request once with it; if not, raises
   :class:`~sender.AuthenticationError` (the store itself holds the rejected token: rotate it there).

There is no loop: a second rejection raises too. A 401 means Graph did not process the request, so the
resend cannot deliver a message twice.

With an app-secret provider, each request also carries ``appsecret_proof`` = HMAC-SHA256(key=app secret,
msg=token) (or, timed, msg=``token|unix_time`` plus ``appsecret_time``), recomputed whenever the token changes.

The flow is public API: put it under any ``httpx.Client`` or ``httpx.AsyncClient`` - another Cloud API
library's client included - and that client gets the same behaviour as :class:`~sender.Sender`::

    auth = sender.TokenAuth(tokenstore.load_provider("config.yaml"))
    with httpx.Client(auth=auth, base_url="https://graph.facebook.com/v27.0") as client:
        client.post(f"/{phone_number_id}/messages", json=message)

What it counts (Graph's rejections, resends, failures) goes to the provider's
:class:`tokenstore.AuthStats`, read with :func:`tokenstore.provider_metrics` and
:func:`tokenstore.metrics_snapshot` next to the cache's counters; counting happens only when Graph rejects a
token, never per request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any, TypeVar

import httpx

from tokenstore import AuthStats, Token, TokenProvider, auth_stats, track_provider

from ._exceptions import AuthenticationError, SendError, error_from_graph

__all__ = ["TOKEN_EXTENSION", "TokenAuth", "appsecret_proof"]

logger = logging.getLogger("sender")

#: the request extension under which the flow records the Token it sent (a Token never shows its value)
TOKEN_EXTENSION = "sender.token"

#: what the flow reads from an answer: an httpx.Response, or the sender's Reply (status_code, content)
_Answer = Any

_R = TypeVar("_R")

#: Graph codes that mean "this access token is not (or no longer) valid"
TOKEN_REJECTED_CODES = frozenset({0, 190})


def appsecret_proof(token: str, app_secret: str, timestamp: int | None = None) -> str:
    """Hex HMAC-SHA256 of the token (or ``token|timestamp``) keyed with the app secret."""
    message = token if timestamp is None else f"{token}|{timestamp}"
    return hmac.new(app_secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def _graph_error(response: _Answer) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error: dict[str, Any] = body["error"]
        return error
    return None


class TokenAuth(httpx.Auth):
    """Bearer authentication from a :class:`tokenstore.TokenProvider`, asked on every request (sync and async).

    >>> auth = TokenAuth(tokenstore.load_provider("config.yaml"))                     # doctest: +SKIP
    >>> client = httpx.Client(auth=auth)              # or httpx.AsyncClient(auth=auth)  # doctest: +SKIP

    The ``Authorization`` header it sets replaces any the client carries (a library's static token header
    included). When Graph rejects the token (HTTP 401, or code 190/0), the provider is invalidated and asked
    again; the request is resent once if the token changed, else :class:`~sender.AuthenticationError` is
    raised. A resend needs the request body again: JSON and form bodies are replayable, a one-shot stream
    is not (httpx then raises ``StreamConsumed``). One instance may serve any number of clients, threads and
    tasks. Use the client for Graph only: the flow gives the token to every request the client sends.

    ``app_secret``: a provider of the Meta app secret, to add ``appsecret_proof`` (``timed=True`` for the
    timestamped form). ``clock`` gives unix seconds for the timed proof.

    Counters: ``rejections``, ``resends`` and ``failures`` of this instance; ``stats`` is the provider's
    :class:`tokenstore.AuthStats`, shared by every flow over the same provider.
    """

    requires_response_body = True  # the error object decides whether the token was rejected

    def __init__(
        self,
        provider: TokenProvider,
        *,
        app_secret: TokenProvider | None = None,
        timed: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.app_secret = app_secret
        self.timed = timed
        self._clock = clock
        #: counters of this instance (Graph rejected the token / resent with a new one / gave up)
        self.rejections = 0
        self.resends = 0
        self.failures = 0
        self._count_lock = threading.Lock()
        self._checked: Token | None = None  # the last token found fit for a header
        #: the provider's counters, shared with every other flow over it (see :mod:`tokenstore` metrics)
        self.stats: AuthStats = auth_stats(provider)
        if app_secret is not None:
            track_provider(app_secret)

    # -- logic without I/O ---------------------------------------------------------------------------------
    def bearer(self, token: Token) -> str:
        """The ``Authorization`` header value for ``token``; AuthenticationError when a header cannot carry it."""
        value = token.reveal()
        if token is not self._checked:
            if not (value.isascii() and value.isprintable()) or " " in value:
                # never let an HTTP library quote the value back in its own error message
                raise AuthenticationError(
                    f"the access token {token.fingerprint} from {token.source} holds characters an HTTP header "
                    "cannot carry (spaces, control or non-ASCII characters): fix the value in the store"
                )
            self._checked = token  # the same Token object again (a cache hit) needs no second look
        return f"Bearer {value}"

    def proof_params(self, token: Token, secret: Token) -> dict[str, str]:
        """The ``appsecret_proof`` (and, timed, ``appsecret_time``) query parameters for ``token``."""
        stamp = int(self._clock()) if self.timed else None
        params = {"appsecret_proof": appsecret_proof(token.reveal(), secret.reveal(), stamp)}
        if stamp is not None:
            params["appsecret_time"] = str(stamp)
        return params

    def _authorize(self, request: httpx.Request, token: Token, secret: Token | None) -> None:
        request.headers["Authorization"] = self.bearer(token)
        request.extensions = {**request.extensions, TOKEN_EXTENSION: token}
        if secret is not None:
            url = request.url
            for name, value in self.proof_params(token, secret).items():
                url = url.copy_set_param(name, value)
            request.url = url

    @staticmethod
    def _rejected(response: _Answer) -> bool:
        """Whether Graph rejected the access token (the body must have been read)."""
        if response.status_code == 401:
            return True
        if 400 <= response.status_code < 500:
            error = _graph_error(response)
            return error is not None and error.get("code") in TOKEN_REJECTED_CODES
        return False

    def _failure(self, response: _Answer, token: Token, *, refetched: Token | None) -> SendError:
        error = _graph_error(response) or {"message": f"HTTP {response.status_code}: the access token was rejected"}
        if refetched is None:
            advice = (
                f"the access token {token.fingerprint} from {token.source} was rejected and the store still "
                "holds it: rotate the token in the store"
            )
        else:
            advice = (
                f"the access token {token.fingerprint} was rejected, and so was the one refetched from "
                f"{refetched.source} ({refetched.fingerprint})"
            )
        graph = error_from_graph(error, http_status=response.status_code, secrets=[token.reveal()])
        return AuthenticationError(
            f"{advice}; Graph said: {graph.message}",
            code=graph.code,
            subcode=graph.subcode,
            fbtrace_id=graph.fbtrace_id,
            details=graph.details,
            http_status=response.status_code,
            retryable=False,
            error_type=graph.error_type,
        )

    def _count(self, *, rejection: bool = False, resend: bool = False, failure: bool = False) -> None:
        with self._count_lock:
            self.rejections += rejection
            self.resends += resend
            self.failures += failure
        self.stats.count(rejections=int(rejection), resends=int(resend), auth_failures=int(failure))

    def _give_up(self, response: _Answer, token: Token, *, refetched: Token | None) -> SendError:
        """Count and log a rejection the store had no better token for; the error to raise."""
        self._count(failure=True)
        error = self._failure(response, token, refetched=refetched)
        if refetched is None:
            logger.warning(
                "access token %s from %s rejected (HTTP %d, code %s) and the store still holds it: "
                "rotate the token in the store",
                token.fingerprint,
                token.source,
                response.status_code,
                error.code,
            )
        else:
            logger.warning(
                "access token %s rejected (HTTP %d, code %s), and so was the one refetched from %s (%s)",
                token.fingerprint,
                response.status_code,
                error.code,
                refetched.source,
                refetched.fingerprint,
            )
        return error

    def _changed(self, response: _Answer, old: Token, new: Token) -> None:
        self._count(resend=True)
        logger.info(
            "access token %s rejected (HTTP %d); resending once with the refetched token %s",
            old.fingerprint,
            response.status_code,
            new.fingerprint,
        )

    # -- the sync and async I/O paths ----------------------------------------------------------------------
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.provider.get_token()
        self._authorize(request, token, self.app_secret.get_token() if self.app_secret else None)
        response = yield request
        if 400 <= response.status_code < 500:
            response.read()
        if not self._rejected(response):
            return
        self._count(rejection=True)
        self.provider.invalidate(token)
        fresh = self.provider.get_token()
        if fresh == token:
            raise self._give_up(response, token, refetched=None)
        self._changed(response, token, fresh)
        self._authorize(request, fresh, self.app_secret.get_token() if self.app_secret else None)
        response = yield request
        if 400 <= response.status_code < 500:
            response.read()
        if self._rejected(response):
            self._count(rejection=True)
            self.provider.invalidate(fresh)
            raise self._give_up(response, token, refetched=fresh)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.provider.aget_token()
        self._authorize(request, token, await self.app_secret.aget_token() if self.app_secret else None)
        response = yield request
        if 400 <= response.status_code < 500:
            await response.aread()
        if not self._rejected(response):
            return
        self._count(rejection=True)
        self.provider.invalidate(token)
        fresh = await self.provider.aget_token()
        if fresh == token:
            raise self._give_up(response, token, refetched=None)
        self._changed(response, token, fresh)
        self._authorize(request, fresh, await self.app_secret.aget_token() if self.app_secret else None)
        response = yield request
        if 400 <= response.status_code < 500:
            await response.aread()
        if self._rejected(response):
            self._count(rejection=True)
            self.provider.invalidate(fresh)
            raise self._give_up(response, token, refetched=fresh)

    # -- the same flow without httpx (the senders' urllib3 and aiohttp paths) ----------------------------------
    def run(self, send: Callable[[Token, Token | None], _R]) -> _R:
        """Run the flow around ``send(token, app_secret)``, which puts the token on one request and returns the
        answer (``status_code`` and ``content`` read whole): the provider is asked for this request, and on a
        rejection the token is invalidated, refetched and - if it changed - ``send`` runs once more with it.
        The same decisions, counters and errors as :meth:`sync_auth_flow`."""
        provider, app_secret = self.provider, self.app_secret
        token = provider.get_token()
        response = send(token, app_secret.get_token() if app_secret else None)
        status = response.status_code  # type: ignore[attr-defined]
        if status < 400 or status >= 500 or not self._rejected(response):
            return response
        self._count(rejection=True)
        provider.invalidate(token)
        fresh = provider.get_token()
        if fresh == token:
            raise self._give_up(response, token, refetched=None)
        self._changed(response, token, fresh)
        response = send(fresh, app_secret.get_token() if app_secret else None)
        if self._rejected(response):
            self._count(rejection=True)
            provider.invalidate(fresh)
            raise self._give_up(response, token, refetched=fresh)
        return response

    async def arun(self, send: Callable[[Token, Token | None], Awaitable[_R]]) -> _R:
        """The asyncio twin of :meth:`run` (the same decisions as :meth:`async_auth_flow`)."""
        provider, app_secret = self.provider, self.app_secret
        token = await provider.aget_token()
        response = await send(token, await app_secret.aget_token() if app_secret else None)
        status = response.status_code  # type: ignore[attr-defined]
        if status < 400 or status >= 500 or not self._rejected(response):
            return response
        self._count(rejection=True)
        provider.invalidate(token)
        fresh = await provider.aget_token()
        if fresh == token:
            raise self._give_up(response, token, refetched=None)
        self._changed(response, token, fresh)
        response = await send(fresh, await app_secret.aget_token() if app_secret else None)
        if self._rejected(response):
            self._count(rejection=True)
            provider.invalidate(fresh)
            raise self._give_up(response, token, refetched=fresh)
        return response

"""The Graph token client: inspect, refresh, revoke and generate access tokens, sync and async.

Meta's system-user tokens either never expire or expire after 60 days (Meta's recommendation, and a must for
some businesses). A 60-day token nobody refreshes dies silently; this client is the Graph side of closing
that loop (``tokenstore check``, ``refresh`` and ``revoke`` drive it):

* :meth:`GraphTokenClient.inspect` - ``GET /debug_token?input_token=T`` authenticated with the app token
  ``{app-id}|{app-secret}`` (in the ``Authorization`` header), never with the token inspecting itself;
* :meth:`GraphTokenClient.refresh` - ``GET /oauth/access_token?grant_type=fb_exchange_token&client_id&
  client_secret&set_token_expires_in_60_days=true&fb_exchange_token=OLD``: a new 60-day token; the old one
  stays valid until its own expiry;
* :meth:`GraphTokenClient.revoke` - ``GET /oauth/revoke?client_id&client_secret&revoke_token=OLD``,
  effective at once;
* :meth:`GraphTokenClient.generate` - ``POST /{system-user-id}/access_tokens`` (``business_app``, ``scope``,
  ``appsecret_proof``, ``set_token_expires_in_60_days``) with an admin system user's token.

It shares the sender's httpx stack, error tree and redaction: these calls carry secrets in query strings,
so the redacting log filter is installed before the first request, and every error message is scrubbed of
the token values and the app secret it handled. Issued tokens come back as :class:`tokenstore.Token`
values (:class:`~sender.IssuedToken`): ``repr`` shows a fingerprint, never the value. No call is retried
automatically: an exchange whose answer was lost has an unknown outcome (the old token is still valid, and
nothing was written anywhere).

The app secret is a :class:`tokenstore.TokenProvider` (any backend: the config's ``app_secret:`` section),
asked on every call, or a fixed value.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import httpx

from tokenstore import ConfigError, SecretMalformed, Token, TokenProvider, fingerprint_of

from ._auth import appsecret_proof
from ._config import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    SenderSettings,
    check_api_version,
    check_base_url,
    read_config,
    settings_from_config,
)
from ._exceptions import AuthenticationError, InvalidRequest, OutcomeUnknown, SendError
from ._http import default_headers, error_for_response, json_body, network_error, ssl_context
from ._models import WHATSAPP_MANAGEMENT_SCOPE, WHATSAPP_MESSAGING_SCOPE, IssuedToken, TokenInfo
from ._redact import install_log_redaction

__all__ = [
    "DEFAULT_GENERATE_SCOPES",
    "AppCredentialsError",
    "AsyncGraphTokenClient",
    "GraphTokenClient",
    "SignupCodeRejected",
    "app_secret_provider_from_config",
    "graph_client_from_config",
]

#: the permissions :meth:`GraphTokenClient.generate` asks for unless told otherwise
DEFAULT_GENERATE_SCOPES: tuple[str, ...] = (WHATSAPP_MESSAGING_SCOPE, WHATSAPP_MANAGEMENT_SCOPE)

_Kind = Literal["inspect", "refresh", "revoke", "generate", "code", "numbers"]


class SignupCodeRejected(InvalidRequest):
    """Graph refused an Embedded Signup code: expired (codes live 30 seconds), used already, malformed, or
    issued for another app. The customer must finish Embedded Signup again; retrying does not help."""


class AppCredentialsError(AuthenticationError):
    """Graph rejected the app credentials: the app id (``client_id``), the app secret (``client_secret``, the
    app token ``{app-id}|{app-secret}``) or an ``appsecret_proof`` made with it. Fix ``whatsapp.app_id`` or
    the secret in the ``app_secret:`` store; retrying does not help."""


def _value(secret: Token | str, what: str) -> str:
    """The secret string, stripped; refuses empty or multi-word values without echoing them."""
    if isinstance(secret, Token):
        value = secret.reveal().strip()
        if not value or not (value.isascii() and value.isprintable()) or " " in value:
            raise SecretMalformed(
                f"{what} is empty or holds spaces, control or non-ASCII characters: fix the value in the store",
                source=secret.source,
            )
        return value
    if not isinstance(secret, str):
        raise TypeError(f"{what} must be a str or a tokenstore.Token")
    value = secret.strip()
    if not value or not (value.isascii() and value.isprintable()) or " " in value:
        raise ValueError(f"{what} is empty or holds spaces, control or non-ASCII characters")
    return value


def _unix(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


@dataclass(frozen=True)
class _Call:
    """One prepared Graph call. Everything that may hold a secret is kept out of ``repr``."""

    kind: _Kind
    method: str
    url: str
    #: ``GET /v26.0/oauth/access_token``: for messages (never a query string)
    what: str
    params: dict[str, str] = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    data: dict[str, str] | None = field(default=None, repr=False)
    #: values to scrub from anything Graph sends back
    scrub: tuple[str, ...] = field(default=(), repr=False)
    #: the fingerprint of the token the call is about
    subject: str | None = None


class _BaseTokenClient:
    """Configuration and everything without I/O: request building, answer parsing, error classification."""

    def __init__(
        self,
        app_id: str,
        app_secret: TokenProvider | Token | str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        timeout: httpx.Timeout | float | None = None,
        ca_bundle: str | None = None,
        transport: Any = None,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        owns_app_secret: bool = False,
    ) -> None:
        app_id = str(app_id).strip()
        if not app_id.isdigit():
            raise ValueError("app_id must be the numeric Meta app id")
        for problem, name in ((check_base_url(base_url), "base_url"), (check_api_version(api_version), "api_version")):
            if problem:
                raise ValueError(f"{name} {problem}")
        if not isinstance(app_secret, (TokenProvider, Token, str)):
            raise TypeError("app_secret must be a tokenstore.TokenProvider, a tokenstore.Token or a str")
        if isinstance(app_secret, str):
            _value(app_secret, "the app secret")  # fail at construction, not at the first call
        self.app_id = app_id
        self.app_secret = app_secret
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout or DEFAULT_TIMEOUT)
        self._verify = ssl_context(ca_bundle)
        self._transport = transport
        self._headers = {**default_headers(), **(headers or {})}
        self._clock = clock
        self._owns_app_secret = owns_app_secret
        self._closed = False
        install_log_redaction()

    @property
    def app_secret_source(self) -> str:
        """Where the app secret comes from (for messages; never the value)."""
        if isinstance(self.app_secret, TokenProvider):
            return self.app_secret.source
        if isinstance(self.app_secret, Token):
            return self.app_secret.source
        return "the app_secret argument"

    # -- request building ----------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return f"{self.base_url}/{self.api_version}/{path}"

    def _what(self, method: str, path: str) -> str:
        return f"{method} /{self.api_version}/{path}"

    def _inspect_call(self, token: Token | str, secret: str) -> _Call:
        value = _value(token, "the token to inspect")
        app_token = f"{self.app_id}|{secret}"
        return _Call(
            kind="inspect",
            method="GET",
            url=self._url("debug_token"),
            what=self._what("GET", "debug_token"),
            params={"input_token": value},
            headers={"Authorization": f"Bearer {app_token}"},
            scrub=(value, secret, app_token),
            subject=fingerprint_of(value),
        )

    def _refresh_call(self, token: Token | str, secret: str, sixty_days: bool) -> _Call:
        value = _value(token, "the token to refresh")
        params = {
            "grant_type": "fb_exchange_token",
            "client_id": self.app_id,
            "client_secret": secret,
            "fb_exchange_token": value,
        }
        if sixty_days:
            params["set_token_expires_in_60_days"] = "true"
        return _Call(
            kind="refresh",
            method="GET",
            url=self._url("oauth/access_token"),
            what=self._what("GET", "oauth/access_token"),
            params=params,
            headers={},
            scrub=(value, secret),
            subject=fingerprint_of(value),
        )

    def _code_call(self, code: str, secret: str) -> _Call:
        if not isinstance(code, str):
            raise TypeError("code must be a str")
        value = code.strip()
        if not value or not (value.isascii() and value.isprintable()) or " " in value or len(value) > 4096:
            raise ValueError("the signup code is empty, too long, or holds spaces, control or non-ASCII characters")
        return _Call(
            kind="code",
            method="GET",
            url=self._url("oauth/access_token"),
            what=self._what("GET", "oauth/access_token"),
            params={"client_id": self.app_id, "client_secret": secret, "code": value},
            headers={},
            scrub=(value, secret),
            subject=None,
        )

    def _numbers_call(self, waba_id: str, access_token: Token | str, after: str | None) -> _Call:
        waba = str(waba_id).strip()
        if not waba.isdigit():
            raise ValueError("waba_id must be the numeric id of the WhatsApp Business Account")
        access = _value(access_token, "the access token for the phone numbers call")
        params = {"limit": "100"}
        if after:
            params["after"] = after
        return _Call(
            kind="numbers",
            method="GET",
            url=self._url(f"{waba}/phone_numbers"),
            what=self._what("GET", f"{waba}/phone_numbers"),
            params=params,
            headers={"Authorization": f"Bearer {access}"},
            scrub=(access,),
            subject=fingerprint_of(access),
        )

    def _numbers_page(self, response: httpx.Response, call: _Call) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``GET /{waba}/phone_numbers``: the number objects and the cursor of the next page."""
        body = self._body(response, call)
        data = body.get("data")
        if not isinstance(data, list):
            raise SendError(f"{call.what} answered HTTP 200 without a data list", http_status=200)
        numbers = [n for n in data if isinstance(n, dict) and isinstance(n.get("id"), (str, int))]
        paging = body.get("paging") if isinstance(body.get("paging"), dict) else {}
        assert isinstance(paging, dict)
        cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
        assert isinstance(cursors, dict)
        after = cursors.get("after")
        more = paging.get("next") and isinstance(after, str) and after and numbers
        return numbers, after if more else None

    def _revoke_call(self, token: Token | str, access_token: Token | str | None, secret: str) -> _Call:
        value = _value(token, "the token to revoke")
        access = value if access_token is None else _value(access_token, "the access token for the revoke call")
        return _Call(
            kind="revoke",
            method="GET",
            url=self._url("oauth/revoke"),
            what=self._what("GET", "oauth/revoke"),
            params={"client_id": self.app_id, "client_secret": secret, "revoke_token": value},
            headers={"Authorization": f"Bearer {access}"},
            scrub=(value, access, secret),
            subject=fingerprint_of(value),
        )

    def _generate_call(
        self, system_user_id: str, access_token: Token | str, scopes: Iterable[str], sixty_days: bool, secret: str
    ) -> _Call:
        user = str(system_user_id).strip()
        if not user.isdigit():
            raise ValueError("system_user_id must be the numeric id of the system user")
        scope_list = [s.strip() for s in ([scopes] if isinstance(scopes, str) else scopes)]
        if not scope_list or any(not s or "," in s or " " in s for s in scope_list):
            raise ValueError("scopes must be one or more permission names, e.g. whatsapp_business_messaging")
        access = _value(access_token, "the admin system user's access token")
        proof = appsecret_proof(access, secret)
        data = {
            "business_app": self.app_id,
            "scope": ",".join(scope_list),
            "appsecret_proof": proof,
            "set_token_expires_in_60_days": "true" if sixty_days else "false",
        }
        return _Call(
            kind="generate",
            method="POST",
            url=self._url(f"{user}/access_tokens"),
            what=self._what("POST", f"{user}/access_tokens"),
            params={},
            headers={"Authorization": f"Bearer {access}"},
            data=data,
            scrub=(access, secret, proof),
            subject=fingerprint_of(access),
        )

    # -- answers -------------------------------------------------------------------------------------------
    def _body(self, response: httpx.Response, call: _Call) -> dict[str, Any]:
        if response.status_code != 200:
            raise self._error(response, call)
        body = json_body(response)
        if not isinstance(body, dict):
            raise OutcomeUnknown(f"{call.what} answered HTTP 200 without a JSON object", http_status=200)
        return body

    def _inspected(self, response: httpx.Response, call: _Call) -> TokenInfo:
        body = self._body(response, call)
        try:
            return TokenInfo.from_response(body, fingerprint=call.subject)
        except ValueError as exc:
            raise SendError(f"{call.what}: {exc}", http_status=200) from None

    def _issued(self, response: httpx.Response, call: _Call) -> IssuedToken:
        body = self._body(response, call)
        value = body.get("access_token")
        if not isinstance(value, str) or not value.strip():
            raise SendError(f"{call.what} answered HTTP 200 without an access_token", http_status=200)
        value = value.strip()
        if not (value.isascii() and value.isprintable()) or " " in value:
            raise SendError(f"{call.what} answered with an access_token that is not one word", http_status=200)
        now = self._clock()
        expires_in = _unix(body.get("expires_in"))
        if expires_in is not None and expires_in <= 0:
            expires_in = None
        expires_at = None if expires_in is None else dt.datetime.fromtimestamp(now + expires_in, dt.timezone.utc)
        token_type = body.get("token_type")
        source = {
            "refresh": "graph:oauth/access_token",
            "code": "graph:oauth/access_token#code",
        }.get(call.kind, "graph:system_user/access_tokens")
        return IssuedToken(
            token=Token(value, source=source, fetched_at=dt.datetime.fromtimestamp(now, dt.timezone.utc)),
            token_type=token_type if isinstance(token_type, str) else None,
            expires_in=expires_in,
            expires_at=expires_at,
        )

    def _revoked(self, response: httpx.Response, call: _Call) -> bool:
        body = self._body(response, call)
        success = body.get("success")
        if success is True or (isinstance(success, str) and success.strip().lower() == "true"):
            return True
        raise SendError(f"{call.what} answered HTTP 200 without success: the token may still be valid", http_status=200)

    def _error(self, response: httpx.Response, call: _Call) -> SendError:
        """The typed error for a refused call, with what it means for this call."""
        error = error_for_response(response, secrets=call.scrub, what=call.what)
        text = (error.message or "").lower()
        code = error.code
        rejected = code in (0, 190) or (code is None and response.status_code == 401)
        creds: str | None = None
        if call.kind == "inspect" and rejected:
            creds = f"Graph rejected the app token of app {self.app_id} that debug_token authenticates with"
        elif call.kind in ("refresh", "revoke", "code") and code == 101:
            creds = f"Graph rejected the app id {self.app_id} (client_id)"
        elif call.kind in ("refresh", "revoke", "code") and code == 1 and "secret" in text:
            creds = f"Graph rejected the app secret (client_secret) of app {self.app_id}"
        elif call.kind == "generate" and code == 100 and "appsecret_proof" in text:
            creds = f"Graph rejected the appsecret_proof made with the app secret of app {self.app_id}"
        if creds is not None:
            return _rebuild(
                error,
                f"{creds}: check whatsapp.app_id and the secret in the app secret store ({self.app_secret_source}); "
                f"Graph said: {error.message}",
                AppCredentialsError,
            )
        if call.kind == "refresh" and rejected:
            return _rebuild(error, f"Graph refused to refresh token {call.subject}: {error.message}")
        if call.kind == "revoke" and rejected:
            return _rebuild(
                error, f"Graph rejected the access token of the call revoking {call.subject}: {error.message}"
            )
        if call.kind == "generate" and rejected:
            return _rebuild(error, f"Graph rejected the admin token {call.subject}: {error.message}")
        if call.kind == "code":
            return _rebuild(
                error,
                f"Graph refused the Embedded Signup code ({error.message}): codes live 30 seconds and work once; "
                "the customer must finish Embedded Signup again for a new one",
                SignupCodeRejected if code == 100 else None,
            )
        return error

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} app_id={self.app_id!r} api_version={self.api_version!r} "
            f"base_url={self.base_url!r} app_secret={self.app_secret_source!r}>"
        )


def _rebuild(error: SendError, message: str, cls: type[SendError] | None = None) -> SendError:
    return (cls or type(error))(
        message,
        code=error.code,
        subcode=error.subcode,
        fbtrace_id=error.fbtrace_id,
        details=error.details,
        http_status=error.http_status,
        retryable=error.retryable if cls is None else False,
        error_type=error.error_type,
        title=error.title,
        retry_after=error.retry_after,
    )


def app_secret_provider_from_config(
    config: Mapping[str, Any], settings: SenderSettings, *, purpose: str, cache: bool = True
) -> TokenProvider:
    """The provider of the ``app_secret:`` section; ConfigError naming what is missing for ``purpose``."""
    from tokenstore import provider_from_config

    if not settings.app_id:
        raise ConfigError(
            f"required for {purpose}: the Meta app id (Graph's token calls authenticate as the app)",
            source=settings.source,
            field="whatsapp.app_id",
        )
    if config.get("app_secret") is None:
        raise ConfigError(
            f"required for {purpose}: the section naming the store of the Meta app secret (any backend)",
            source=settings.source,
            field="app_secret",
        )
    return provider_from_config(config, section="app_secret", source=settings.source, cache=cache)


def graph_client_from_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    settings: SenderSettings | None = None,
    *,
    purpose: str = "Graph token calls",
    cache: bool = True,
    **overrides: Any,
) -> GraphTokenClient:
    """A :class:`GraphTokenClient` for the configured app: ``whatsapp.app_id``, ``base_url``,
    ``api_version``, ``timeout``, ``ca_bundle`` and the provider of the ``app_secret:`` section (closed with the
    client; ``cache=False`` reads the secret on every call). ``config`` is a path (or None:
    ``$TOKENSTORE_CONFIG``, then ``./tokenstore.yaml``) or an already loaded mapping; ``settings`` the
    validated ``whatsapp:`` section when the caller has it (its ``source`` then names the file in errors).
    ConfigError naming ``whatsapp.app_id`` or ``app_secret`` (and ``purpose``) when one is missing. No
    network I/O here."""
    data, source = read_config(config)
    if settings is None:
        settings = settings_from_config(data, source=source, require_phone_number_id=False)
    secret = app_secret_provider_from_config(data, settings, purpose=purpose, cache=cache)
    assert settings.app_id is not None
    try:
        return GraphTokenClient(settings.app_id, secret, **_options(settings, overrides))
    except BaseException:
        secret.close()
        raise


def _settings(
    config: str | os.PathLike[str] | Mapping[str, Any] | None, purpose: str, cache: bool
) -> tuple[SenderSettings, TokenProvider]:
    data, source = read_config(config)
    settings = settings_from_config(data, source=source, require_phone_number_id=False)
    return settings, app_secret_provider_from_config(data, settings, purpose=purpose, cache=cache)


def _options(settings: SenderSettings, overrides: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "base_url": settings.base_url,
        "api_version": settings.api_version,
        "timeout": settings.timeout,
        "ca_bundle": settings.ca_bundle,
        "owns_app_secret": True,
    }
    options.update(overrides)
    return options


class GraphTokenClient(_BaseTokenClient):
    """Inspect, refresh, revoke and generate Graph access tokens (one pooled httpx client; thread-safe).

    >>> with GraphTokenClient(app_id, app_secret_provider) as graph:           # doctest: +SKIP
    ...     info = graph.inspect(token)            # TokenInfo: is_valid, type, scopes, waba_ids, expires_at
    ...     new = graph.refresh(token)             # IssuedToken: new.token.reveal(), new.expires_at
    ...     graph.revoke(token, access_token=new.token)

    ``app_secret``: a provider of the Meta app secret (asked on every call), or the value. ``transport`` is
    handed to httpx; ``clock`` (unix seconds) dates issued tokens; ``http_client`` shares an existing
    ``httpx.Client`` (not closed by :meth:`close`).
    """

    def __init__(
        self,
        app_id: str,
        app_secret: TokenProvider | Token | str,
        *,
        http_client: httpx.Client | None = None,
        **options: Any,
    ) -> None:
        super().__init__(app_id, app_secret, **options)
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(
            timeout=self._timeout,
            verify=self._verify,
            transport=self._transport,
            headers=self._headers,
            follow_redirects=False,
        )

    @classmethod
    def from_config(
        cls, config: str | os.PathLike[str] | Mapping[str, Any] | None = None, **overrides: Any
    ) -> GraphTokenClient:
        """Build from a config: ``whatsapp.app_id``, ``base_url``, ``api_version``, ``timeout``, ``ca_bundle``
        and the provider of the ``app_secret:`` section (closed with the client). No network I/O here."""
        purpose = overrides.pop("purpose", "Graph token calls")
        settings, secret = _settings(config, purpose, cache=overrides.pop("cache", True))
        assert settings.app_id is not None
        try:
            return cls(settings.app_id, secret, **_options(settings, overrides))
        except BaseException:
            secret.close()
            raise

    def _secret(self) -> str:
        self._check_open()
        secret = self.app_secret
        if isinstance(secret, TokenProvider):
            secret = secret.get_token()
        return _value(secret, "the app secret")

    def _send(self, call: _Call) -> httpx.Response:
        try:
            return self._http.request(
                call.method, call.url, params=call.params or None, data=call.data, headers=call.headers
            )
        except httpx.HTTPError as exc:
            error = network_error(exc, what=call.what)
            raise error from exc

    def inspect(self, token: Token | str) -> TokenInfo:
        """What Graph knows about ``token`` (``GET /debug_token`` with the app token). An invalid, expired or
        revoked token is a :class:`~sender.TokenInfo` with ``is_valid`` False and the reason in ``error``; a
        refused call raises (:class:`AppCredentialsError` when the app token is rejected)."""
        call = self._inspect_call(token, self._secret())
        return self._inspected(self._send(call), call)

    def refresh(self, token: Token | str, *, sixty_days: bool = True) -> IssuedToken:
        """Exchange ``token`` for a new one (``fb_exchange_token``; ``set_token_expires_in_60_days=true``
        unless ``sixty_days`` is False). The old token stays valid until its own expiry. Nothing is stored:
        validate the new token (:meth:`inspect`) and write it yourself (``provider.put_token``)."""
        call = self._refresh_call(token, self._secret(), sixty_days)
        return self._issued(self._send(call), call)

    def revoke(self, token: Token | str, *, access_token: Token | str | None = None) -> bool:
        """Revoke ``token`` at once (``/oauth/revoke``). ``access_token`` authenticates the call (default: the
        token itself). Returns True; raises when Graph refuses."""
        call = self._revoke_call(token, access_token, self._secret())
        return self._revoked(self._send(call), call)

    def exchange_code(self, code: str) -> IssuedToken:
        """Exchange an Embedded Signup ``code`` for the customer's business token (``GET /oauth/access_token``
        with ``client_id``, ``client_secret`` and ``code``; no grant_type, no redirect_uri). Codes live 30
        seconds and work once: :class:`SignupCodeRejected` when Graph refuses it (expired, used, another app's).
        Nothing is stored: inspect the token (:meth:`inspect`) and store it (:func:`sender.onboard` does both)."""
        call = self._code_call(code, self._secret())
        return self._issued(self._send(call), call)

    def phone_numbers(self, waba_id: str, *, access_token: Token | str) -> list[dict[str, Any]]:
        """The phone numbers of a WhatsApp Business Account (``GET /{waba_id}/phone_numbers``, every page),
        as Graph describes them (``id``, ``display_phone_number``, ``verified_name``, ...)."""
        numbers: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(1000):
            call = self._numbers_call(waba_id, access_token, after)
            page, after = self._numbers_page(self._send(call), call)
            numbers.extend(page)
            if after is None:
                break
        return numbers

    def generate(
        self,
        system_user_id: str,
        *,
        access_token: Token | str,
        scopes: Iterable[str] = DEFAULT_GENERATE_SCOPES,
        sixty_days: bool = True,
    ) -> IssuedToken:
        """A new token for a system user (``POST /{system-user-id}/access_tokens``) of this app, with
        ``scopes``, authenticated by an admin system user's ``access_token`` and its ``appsecret_proof``."""
        call = self._generate_call(system_user_id, access_token, scopes, sixty_days, self._secret())
        return self._issued(self._send(call), call)

    def close(self) -> None:
        """Close the connection pool (and the app secret provider when built by :meth:`from_config`)."""
        if self._closed:
            return
        self._closed = True
        if self._own_http:
            self._http.close()
        if self._owns_app_secret and isinstance(self.app_secret, TokenProvider):
            self.app_secret.close()

    def __enter__(self) -> GraphTokenClient:
        self._check_open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncGraphTokenClient(_BaseTokenClient):
    """The asyncio twin of :class:`GraphTokenClient`: the same methods, awaitable; ``async with`` closes it."""

    def __init__(
        self,
        app_id: str,
        app_secret: TokenProvider | Token | str,
        *,
        http_client: httpx.AsyncClient | None = None,
        **options: Any,
    ) -> None:
        super().__init__(app_id, app_secret, **options)
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=self._timeout,
            verify=self._verify,
            transport=self._transport,
            headers=self._headers,
            follow_redirects=False,
        )

    @classmethod
    def from_config(
        cls, config: str | os.PathLike[str] | Mapping[str, Any] | None = None, **overrides: Any
    ) -> AsyncGraphTokenClient:
        """See :meth:`GraphTokenClient.from_config`."""
        purpose = overrides.pop("purpose", "Graph token calls")
        settings, secret = _settings(config, purpose, cache=overrides.pop("cache", True))
        assert settings.app_id is not None
        try:
            return cls(settings.app_id, secret, **_options(settings, overrides))
        except BaseException:
            secret.close()
            raise

    async def _secret(self) -> str:
        self._check_open()
        secret = self.app_secret
        if isinstance(secret, TokenProvider):
            secret = await secret.aget_token()
        return _value(secret, "the app secret")

    async def _send(self, call: _Call) -> httpx.Response:
        try:
            return await self._http.request(
                call.method, call.url, params=call.params or None, data=call.data, headers=call.headers
            )
        except httpx.HTTPError as exc:
            error = network_error(exc, what=call.what)
            raise error from exc

    async def inspect(self, token: Token | str) -> TokenInfo:
        """See :meth:`GraphTokenClient.inspect`."""
        call = self._inspect_call(token, await self._secret())
        return self._inspected(await self._send(call), call)

    async def refresh(self, token: Token | str, *, sixty_days: bool = True) -> IssuedToken:
        """See :meth:`GraphTokenClient.refresh`."""
        call = self._refresh_call(token, await self._secret(), sixty_days)
        return self._issued(await self._send(call), call)

    async def revoke(self, token: Token | str, *, access_token: Token | str | None = None) -> bool:
        """See :meth:`GraphTokenClient.revoke`."""
        call = self._revoke_call(token, access_token, await self._secret())
        return self._revoked(await self._send(call), call)

    async def exchange_code(self, code: str) -> IssuedToken:
        """See :meth:`GraphTokenClient.exchange_code`."""
        call = self._code_call(code, await self._secret())
        return self._issued(await self._send(call), call)

    async def phone_numbers(self, waba_id: str, *, access_token: Token | str) -> list[dict[str, Any]]:
        """See :meth:`GraphTokenClient.phone_numbers`."""
        numbers: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(1000):
            call = self._numbers_call(waba_id, access_token, after)
            page, after = self._numbers_page(await self._send(call), call)
            numbers.extend(page)
            if after is None:
                break
        return numbers

    async def generate(
        self,
        system_user_id: str,
        *,
        access_token: Token | str,
        scopes: Iterable[str] = DEFAULT_GENERATE_SCOPES,
        sixty_days: bool = True,
    ) -> IssuedToken:
        """See :meth:`GraphTokenClient.generate`."""
        call = self._generate_call(system_user_id, access_token, scopes, sixty_days, await self._secret())
        return self._issued(await self._send(call), call)

    async def aclose(self) -> None:
        """Close the connection pool (and the app secret provider when built by :meth:`from_config`)."""
        if self._closed:
            return
        self._closed = True
        if self._own_http:
            await self._http.aclose()
        if self._owns_app_secret and isinstance(self.app_secret, TokenProvider):
            await self.app_secret.aclose()

    async def __aenter__(self) -> AsyncGraphTokenClient:
        self._check_open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

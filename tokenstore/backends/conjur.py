"""``conjur``: a variable in CyberArk Conjur (self-hosted or Conjur Cloud), over Conjur's REST API with httpx.

No Conjur client library is used (none on PyPI is fit to depend on, see the project's testing notes); the API
is small and documented:

* ``POST {url}/authn/{account}/{login}/authenticate`` with the API key as body, or
  ``POST {url}/authn-jwt/{service-id}/{account}[/{host-id}]/authenticate`` with the form ``jwt=...``, gives a
  short-lived access token (a JSON document, 8 minutes by default). It is sent as
  ``Authorization: Token token="<base64 of that JSON>"``.
* ``GET {url}/secrets/{account}/variable/{id}[?version=N]`` reads a value (Conjur keeps the last 20 versions);
  ``POST`` to the same path with the value as body adds a version (201).
* ``GET {url}/resources/{account}/variable/{id}`` lists the variable's versions (used after a write, to return
  the new version).

Conjur Cloud is the same API under an ``/api`` prefix with the account ``conjur``. Logins and variable ids are
URL-encoded as one path segment (``host/apps/whatsapp`` -> ``host%2Fapps%2Fwhatsapp``).

The access token lives in memory only, shared by the sync and async paths, and is renewed before it expires
(its lifetime is the shorter of ``access_token_ttl`` and what the token itself says). Concurrent callers
authenticate once. A 401 on a request re-authenticates once and retries; a second 401 is an
:class:`~tokenstore.AccessDenied` naming the login. The API key and the JWT are read from where the config
points (an environment variable or a file; a JWT file such as a Kubernetes projected service-account token is
re-read at every login) and never kept. No message, repr or log record carries the value, the API key, the JWT
or the access token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from .._config import SecretRef, Section, is_loopback_host
from .._errors import (
    AccessDenied,
    BackendUnavailable,
    ConfigError,
    ProviderError,
    SecretMalformed,
    SecretNotFound,
    TokenStoreError,
    WriteNotSupported,
)
from .._masking import masked_logger
from .._parsing import json_object, new_token_value, string_under_key, token_from_text
from .._provider import Backend, check_expected
from .._token import Token
from .._version import __version__

__all__ = ["ConjurBackend"]

logger = masked_logger("tokenstore.backends.conjur")

T = TypeVar("T")

#: Conjur's documented default lifetime of an access token
DEFAULT_ACCESS_TOKEN_TTL = 480.0
DEFAULT_API_KEY_ENV = "CONJUR_AUTHN_API_KEY"
CLOUD_ACCOUNT = "conjur"
_CLOUD_SUFFIX = ".cyberark.cloud"
_OPTIONS = (
    "url",
    "account",
    "cloud",
    "login",
    "variable",
    "version",
    "key",
    "authn",
    "ca_bundle",
    "verify",
    "timeout",
    "access_token_ttl",
    "access_token_renew_before",
)
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


# -- small value types ----------------------------------------------------------------------------------------
class _Access:
    """A Conjur access token as the ready ``Authorization`` header, with when to renew it. Never printed."""

    __slots__ = ("header", "obtained_at", "renew_at")

    def __init__(self, header: str, obtained_at: float, renew_at: float) -> None:
        self.header = header
        self.obtained_at = obtained_at
        self.renew_at = renew_at

    def __repr__(self) -> str:
        return f"<conjur access token, renews at {self.renew_at:.1f}>"


@dataclass(frozen=True)
class _NeedAccess:
    """A flow step: the driver must supply a valid access token that is not ``stale``."""

    stale: _Access | None = None


@dataclass(frozen=True)
class _Call:
    """A flow step: one HTTP request, built and sent by the driver's client (sync or async)."""

    method: str
    url: str
    headers: Mapping[str, str] | None = None
    content: bytes | None = None
    data: Mapping[str, str] | None = None
    params: Mapping[str, str] | None = None

    def __repr__(self) -> str:  # the body may be a credential or the token: never shown
        return f"<{self.method} {self.url}>"


_Step = _NeedAccess | _Call
_Flow = Generator[_Step, Any, T]


def _b64url_json(part: str) -> Any:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _token_lifetime(token_json: Any) -> float | None:
    """``exp - iat`` from a Conjur (Slosilo JWT-shaped) access token, when it carries both; else None."""
    if not isinstance(token_json, dict) or not isinstance(token_json.get("payload"), str):
        return None
    try:
        claims = _b64url_json(token_json["payload"])
    except (ValueError, binascii.Error, UnicodeError):
        return None
    if not isinstance(claims, dict):
        return None
    iat, exp = claims.get("iat"), claims.get("exp")
    if isinstance(iat, (int, float)) and isinstance(exp, (int, float)) and exp > iat:
        return float(exp - iat)
    return None


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error somewhere in an httpx exception's chain, if the failure was TLS."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        current = current.__cause__ or current.__context__
    return None


class ConjurBackend(Backend):
    """Reads (and writes) one Conjur variable. See the module docstring for the API and the guarantees.

    ``clock`` (monotonic seconds) is injectable so tests can age the access token without sleeping.
    """

    name = "conjur"
    extra = None  # httpx is a core dependency

    def __init__(
        self,
        *,
        url: str,
        account: str,
        variable: str,
        login: str | None = None,
        authn: str = "api_key",
        api_key: SecretRef | None = None,
        jwt: SecretRef | None = None,
        service_id: str | None = None,
        version: int | None = None,
        key: str | None = None,
        ca_bundle: str | None = None,
        verify: bool = True,
        timeout: float = 10.0,
        access_token_ttl: float = DEFAULT_ACCESS_TOKEN_TTL,
        access_token_renew_before: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        config_source: str | None = None,
        config_path: str = "token.conjur",
    ) -> None:
        if authn not in ("api_key", "jwt"):
            raise ValueError("authn must be 'api_key' or 'jwt'")
        if authn == "api_key" and not login:
            raise ValueError("API-key authentication needs a login")
        if authn == "jwt" and (jwt is None or not service_id):
            raise ValueError("JWT authentication needs a jwt reference and a service_id")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ValueError("version must be a positive whole number or None (latest)")
        if access_token_renew_before is None:
            access_token_renew_before = min(60.0, access_token_ttl / 4)
        if not 0 <= access_token_renew_before < access_token_ttl:
            raise ValueError("access_token_renew_before must be shorter than access_token_ttl")
        self.url = url.rstrip("/")
        self.account = account
        self.variable = variable
        self.login = login
        self.authn = authn
        self.api_key = api_key if api_key is not None else SecretRef(env=DEFAULT_API_KEY_ENV, field="api_key")
        self.jwt = jwt
        self.service_id = service_id
        self.version = version
        self.key = key
        self.ca_bundle = ca_bundle
        self.verify = verify
        self.timeout = timeout
        self.access_token_ttl = float(access_token_ttl)
        self.access_token_renew_before = float(access_token_renew_before)
        self._clock = clock
        self._config_source = config_source
        self._config_path = config_path

        self.source, self._secret_url, self._resource_url = self._names_for(variable)
        if authn == "api_key":
            assert login is not None
            self._auth_url = f"{self.url}/authn/{quote(account, safe='')}/{quote(login, safe='')}/authenticate"
        else:
            assert service_id is not None
            host = f"/{quote(login, safe='')}" if login else ""
            self._auth_url = (
                f"{self.url}/authn-jwt/{quote(service_id, safe='')}/{quote(account, safe='')}{host}/authenticate"
            )

        self._access: _Access | None = None
        self._auth_lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
        self._closed = False

    def _names_for(self, variable: str) -> tuple[str, str, str]:
        """The label, the secret's URL and the resource's URL of a variable id."""
        source = f"conjur:{self.account}:variable:{variable}"
        if self.version is not None:
            source += f"?version={self.version}"
        if self.key:
            source += f"#{self.key}"
        var_path = f"{quote(self.account, safe='')}/variable/{quote(variable, safe='')}"
        return source, f"{self.url}/secrets/{var_path}", f"{self.url}/resources/{var_path}"

    # -- configuration ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, section: Section) -> ConjurBackend:
        section.reject_unknown(_OPTIONS)
        url = section.get_str("url").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            section.fail("url", "must be the https:// URL of the Conjur appliance (or of Conjur Cloud, ending in /api)")
        if parts.query or parts.fragment or parts.username or parts.password:
            section.fail("url", "must be a plain base URL: no query, fragment or user info")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            section.fail(
                "url", "Conjur must be reached over https:// (plain http is only accepted for a loopback host)"
            )
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            section.fail("url", "has an invalid port")
        base = url.rstrip("/")
        cloud = section.get_bool("cloud", parts.hostname.endswith(_CLOUD_SUFFIX))
        if cloud:
            if not parts.path.rstrip("/").endswith("/api"):
                base += "/api"
            account = section.get_str("account", CLOUD_ACCOUNT)
            if account != CLOUD_ACCOUNT:
                section.fail("account", f"Conjur Cloud's account is always {CLOUD_ACCOUNT!r}, got {account!r}")
        else:
            account = section.get_str("account")
            if "/" in account or ":" in account:
                section.fail("account", "is the Conjur account name (e.g. myorg), without / or :")

        variable = section.get_str("variable").strip()
        if variable.count(":") >= 2 and ":variable:" in variable:
            section.fail("variable", "give the variable id (e.g. apps/whatsapp/token), not the full resource id")
        version = cls._version_option(section)
        key = section.get_str("key", None)

        login = section.get_str("login", None)
        authn_sec = section.get_section("authn")
        authn_sec.reject_unknown(("method", "api_key", "jwt", "service_id"))
        default_method = "jwt" if ("jwt" in authn_sec or "service_id" in authn_sec) else "api_key"
        method = authn_sec.get_str("method", default_method, choices=("api_key", "jwt"))
        api_key: SecretRef | None = None
        jwt: SecretRef | None = None
        service_id: str | None = None
        if method == "api_key":
            for other in ("jwt", "service_id"):
                if other in authn_sec:
                    authn_sec.fail(other, "only applies to method: jwt")
            if login is None:
                section.fail("login", "required for API-key authentication (e.g. host/apps/whatsapp)")
            api_key = authn_sec.get_secret_ref("api_key", required=False)
            if api_key is None:
                api_key = SecretRef(
                    env=DEFAULT_API_KEY_ENV, field=authn_sec.field("api_key"), config_source=section.source
                )
        else:
            if "api_key" in authn_sec:
                authn_sec.fail("api_key", "only applies to method: api_key")
            service_id = authn_sec.get_str("service_id")
            jwt = authn_sec.get_secret_ref("jwt", required=True)

        ca_bundle = section.get_path("ca_bundle", None)
        verify = section.get_bool("verify", True)
        if not verify and ca_bundle:
            section.fail("verify", "is false while ca_bundle is set: drop one (verification should stay on)")
        ttl = section.get_float("access_token_ttl", DEFAULT_ACCESS_TOKEN_TTL, min=1)
        renew_before = section.get_float("access_token_renew_before", min(60.0, ttl / 4), min=0)
        if renew_before >= ttl:
            section.fail("access_token_renew_before", f"must be shorter than access_token_ttl ({ttl:g}s)")
        return cls(
            url=base,
            account=account,
            variable=variable,
            login=login,
            authn=method,
            api_key=api_key,
            jwt=jwt,
            service_id=service_id,
            version=version,
            key=key,
            ca_bundle=ca_bundle,
            verify=verify,
            timeout=section.get_float("timeout", 10.0, min=0.001, max=600),
            access_token_ttl=ttl,
            access_token_renew_before=renew_before,
            config_source=section.source,
            config_path=section.path,
        )

    @staticmethod
    def _version_option(section: Section) -> int | None:
        raw = section.raw("version")
        if raw is None or (isinstance(raw, str) and raw.strip().lower() == "latest"):
            return None
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw.strip())
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            section.fail("version", "must be latest or a version number (1, 2, ...; Conjur keeps the last 20)")
        return int(raw)

    # -- descriptions for messages (never a credential) -------------------------------------------------------
    def _who(self) -> str:
        if self.login:
            return f"login {self.login!r}"
        return f"the identity in the JWT (authn-jwt/{self.service_id})"

    def _how(self) -> str:
        if self.authn == "api_key":
            return f"authn with the API key from {self.api_key.describe()}"
        assert self.jwt is not None
        return f"authn-jwt/{self.service_id} with the JWT from {self.jwt.describe()}"

    def _what(self) -> str:
        what = f"variable {self.variable!r}"
        if self.version is not None:
            what += f" version {self.version}"
        return what

    @staticmethod
    def _scrub(text: str) -> str:
        """A foreign message made short and single-line (only ever about a request's parameters or a socket)."""
        return " ".join(text.split())[:200]

    # -- flows: what to send and how to read the answers, shared by the sync and async drivers ---------------
    def _auth_call(self) -> _Call:
        headers = {"Accept": "application/json"}
        if self.authn == "api_key":
            key = self.api_key.read(source=self.source)
            return _Call("POST", self._auth_url, {**headers, "Content-Type": "text/plain"}, content=key.encode())
        assert self.jwt is not None
        return _Call("POST", self._auth_url, headers, data={"jwt": self.jwt.read(source=self.source)})

    def _login_flow(self) -> _Flow[_Access]:
        started = self._clock()
        response = yield self._auth_call()
        if response.status_code != 200:
            raise self._auth_error(response)
        return self._parse_access(response, started)

    def _parse_access(self, response: httpx.Response, started: float) -> _Access:
        body = response.content.strip()
        try:
            if body.startswith(b"{"):  # the raw token (we do not ask for Accept-Encoding: base64)
                raw = body
                encoded = base64.b64encode(body).decode("ascii")
            else:  # a server or proxy that answers base64 anyway
                raw = base64.b64decode(body, validate=True)
                encoded = body.decode("ascii")
            token_json = json.loads(raw)
        except (ValueError, binascii.Error, UnicodeError):
            raise BackendUnavailable(
                f"Conjur at {self.url} answered the login of {self._who()} with something that is not an "
                "access token (is the url the Conjur API?)",
                source=self.source,
            ) from None
        if not isinstance(token_json, dict):
            raise BackendUnavailable(
                f"Conjur at {self.url} answered the login of {self._who()} with something that is not an access token",
                source=self.source,
            )
        life = self.access_token_ttl
        told = _token_lifetime(token_json)
        if told is not None:
            life = min(life, told)
        renew_at = started + max(life - self.access_token_renew_before, life / 2)
        logger.debug(
            "authenticated to Conjur at %s as %s; access token renewed after %.0fs",
            self.url,
            self._who(),
            renew_at - started,
        )
        return _Access(f'Token token="{encoded}"', started, renew_at)

    def _authed(self, build: Callable[[_Access], _Call]) -> _Flow[httpx.Response]:
        """Send a request with a valid access token; on 401 authenticate again once and retry."""
        access: _Access = yield _NeedAccess()
        response: httpx.Response = yield build(access)
        if response.status_code != 401:
            return response
        logger.info("Conjur at %s rejected the access token of %s (401); authenticating again", self.url, self._who())
        access = yield _NeedAccess(stale=access)
        response = yield build(access)
        if response.status_code == 401:
            raise AccessDenied(
                f"Conjur rejected the access token of {self._who()} again right after a new login (HTTP 401 "
                f"twice, reading {self._what()}): check that the login is enabled and that its tokens are not "
                "expiring at once",
                source=self.source,
            )
        return response

    def _headers(self, access: _Access, **extra: str) -> dict[str, str]:
        return {"Authorization": access.header, **extra}

    def _read_call(self, access: _Access, version: int | None) -> _Call:
        params = {"version": str(version)} if version is not None else None
        return _Call("GET", self._secret_url, self._headers(access), params=params)

    def _read_flow(self, version: int | None, *, missing_ok: bool = False) -> _Flow[bytes | None]:
        response = yield from self._authed(lambda access: self._read_call(access, version))
        if response.status_code == 200:
            return response.content
        if response.status_code == 404 and missing_ok:
            return None
        raise self._status_error(response, action="read", version=version)

    def _get_flow(self) -> _Flow[Token]:
        raw = yield from self._read_flow(self.version)
        assert raw is not None
        value = self._extract(raw)
        return Token(value, source=self.source, version=str(self.version) if self.version is not None else None)

    def _put_flow(self, value: str, expected: Token | str | None = None) -> _Flow[str | None]:
        if self.version is not None:
            raise WriteNotSupported(
                f"this provider reads the pinned version {self.version}, so a new version would not change what it "
                "reads: remove `version` from the config to rotate through it",
                source=self.source,
            )
        value = new_token_value(value, source=self.source)
        if expected is not None:  # Conjur has no conditional write: read, compare, then write (a window)
            raw = yield from self._read_flow(None, missing_ok=True)
            held: Token | None = None
            if raw is not None:
                latest = (yield from self._latest_version_flow()) if isinstance(expected, str) else None
                held = Token(self._extract(raw), source=self.source, version=None if latest is None else str(latest))
            check_expected(held, expected, source=self.source)
        if self.key is not None:
            current = yield from self._read_flow(None, missing_ok=True)
            data: dict[str, Any] = {}
            if current is not None:
                data = json_object(current, source=self.source, key=self.key, action="write", what="the variable")
            data[self.key] = value
            payload = json.dumps(data).encode("utf-8")
        else:
            payload = value.encode("utf-8")
        response = yield from self._authed(
            lambda access: _Call(
                "POST", self._secret_url, self._headers(access, **{"Content-Type": "application/octet-stream"}), payload
            )
        )
        if response.status_code not in (200, 201, 204):
            raise self._status_error(response, action="write")
        logger.info("wrote a new value to Conjur %s", self._what())
        try:
            return (yield from self._new_version_flow(payload))
        except ProviderError as exc:  # the write happened: failing now would invite a second one
            logger.warning(
                "wrote a new value to Conjur %s but could not learn its version (%s): version unknown",
                self._what(),
                type(exc).__name__,
            )
            return None

    def _new_version_flow(self, payload: bytes) -> _Flow[str | None]:
        """The number of the version just written: the newest listed, checked to hold what was written."""
        version = yield from self._latest_version_flow()
        if version is None:
            return None
        check = yield from self._authed(lambda access: self._read_call(access, version))
        if check.status_code == 200 and not hmac.compare_digest(check.content, payload):
            logger.warning(
                "Conjur %s: the newest version (%d) is not the value just written (another writer?); version unknown",
                self._what(),
                version,
            )
            return None
        return str(version)

    def _latest_version_flow(self) -> _Flow[int | None]:
        response = yield from self._authed(lambda access: _Call("GET", self._resource_url, self._headers(access)))
        if response.status_code != 200:
            logger.debug(
                "cannot list the versions of Conjur %s (HTTP %d; %s may lack read on it): version unknown",
                self._what(),
                response.status_code,
                self._who(),
            )
            return None
        try:
            secrets = response.json().get("secrets")
            versions = [s["version"] for s in secrets if isinstance(s.get("version"), int)]
        except (ValueError, AttributeError, TypeError, KeyError):
            return None
        return max(versions) if versions else None

    # -- interpreting values and answers ----------------------------------------------------------------------
    def _extract(self, raw: bytes) -> str:
        if self.key is not None:
            data = json_object(raw, source=self.source, key=self.key, what="the variable")
            return string_under_key(data, source=self.source, key=self.key, what="the variable")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretMalformed("the variable is not UTF-8 text", source=self.source) from None
        return token_from_text(text, source=self.source, what="the variable")

    def _server_error(self, response: httpx.Response) -> tuple[str | None, str | None]:
        """Conjur's ``{"error": {"code", "message"}}``, if the body is that."""
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            return None, None
        if not isinstance(error, dict):
            return None, None
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, str) and _ERROR_CODE.match(code) else None,
            message if isinstance(message, str) else None,
        )

    def _unavailable(self, response: httpx.Response, doing: str) -> BackendUnavailable:
        retry_after: float | None = None
        header = response.headers.get("Retry-After")
        if header and header.strip().isdigit():
            retry_after = float(header.strip())
        return BackendUnavailable(
            f"Conjur at {self.url} answered HTTP {response.status_code} while {doing}; retrying later",
            source=self.source,
            retry_after=retry_after,
        )

    def _auth_error(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        if status == 429 or status >= 500:
            return self._unavailable(response, f"authenticating {self._who()}")
        if status == 401:
            return AccessDenied(
                f"Conjur rejected the credentials of {self._who()} in account {self.account!r} ({self._how()}; "
                f"HTTP 401): check the credential, the login and the account, and that the authenticator is enabled",
                source=self.source,
            )
        if status == 403:
            return AccessDenied(
                f"Conjur refused to authenticate {self._who()} ({self._how()}; HTTP 403): the login is not "
                "permitted to use this authenticator",
                source=self.source,
            )
        if status == 400:
            return AccessDenied(
                f"Conjur refused the login request of {self._who()} ({self._how()}; HTTP 400): check the "
                "credential's format",
                source=self.source,
            )
        if status == 404:
            return AccessDenied(
                f"Conjur at {self.url} has no such authenticator or account for {self._who()} (HTTP 404): check "
                "url, account and the authenticator's service_id",
                source=self.source,
            )
        return ProviderError(
            f"unexpected HTTP {status} from Conjur at {self.url} while authenticating {self._who()}",
            source=self.source,
        )

    def _status_error(
        self, response: httpx.Response, *, action: str, version: int | None = None
    ) -> ProviderError | ConfigError:
        """Translate a non-2xx answer to a read (``action="read"``) or a write (``"write"``) of the variable."""
        status = response.status_code
        code, message = self._server_error(response)
        doing = {"read": "reading", "list": "listing"}.get(action, "writing")
        what = f"variable {self.variable!r}" + (f" version {version}" if version is not None else "")
        if status == 429 or status >= 500:
            return self._unavailable(response, f"{doing} {what}")
        if status == 403:
            privilege = "execute" if action == "read" else "update"
            return AccessDenied(
                f"{self._who()} may not {action} {what} (HTTP 403): grant it the {privilege!r} privilege on the "
                "variable in Conjur policy",
                source=self.source,
            )
        if status == 404:
            hint = (
                f" or version {version} is not among the versions Conjur keeps (the last 20)"
                if version is not None
                else " or it has no value yet"
            )
            return SecretNotFound(
                f"{what} not found in account {self.account!r}: it does not exist, is not visible to "
                f"{self._who()},{hint}",
                source=self.source,
            )
        if status == 422:
            if action == "write":  # only Conjur's error code: its message might quote what was sent
                return SecretMalformed(
                    f"Conjur refused the new value for {what} (HTTP 422{f': {code}' if code else ''})",
                    source=self.source,
                )
            detail = self._scrub(message or code or "no detail")
            return ConfigError(
                f"Conjur refused the request for {what} as invalid (HTTP 422: {detail}): check variable and version",
                source=self._config_source,
                field=self._config_path,
            )
        return ProviderError(
            f"unexpected HTTP {status}{f' ({code})' if code else ''} from Conjur while {doing} {what}",
            source=self.source,
        )

    def _transport_error(self, exc: httpx.HTTPError) -> BackendUnavailable:
        if isinstance(exc, httpx.TimeoutException):
            return BackendUnavailable(
                f"Conjur at {self.url} did not answer within {self.timeout:g}s ({type(exc).__name__})",
                source=self.source,
            )
        tls = _tls_failure(exc)
        if isinstance(tls, ssl.SSLCertVerificationError):
            reason = tls.verify_message or tls.reason or "certificate verify failed"
            hint = (
                f"is {self.ca_bundle} the CA that signed Conjur's certificate?"
                if self.ca_bundle
                else "set ca_bundle to your Conjur's CA certificate (e.g. the conjur-<account>.pem from conjur init)"
            )
            return BackendUnavailable(
                f"TLS verification of Conjur at {self.url} failed ({reason}): {hint}", source=self.source
            )
        if tls is not None:
            return BackendUnavailable(
                f"TLS handshake with Conjur at {self.url} failed ({tls.reason or type(tls).__name__})",
                source=self.source,
            )
        if isinstance(exc, httpx.ConnectError):
            return BackendUnavailable(
                f"cannot connect to Conjur at {self.url} ({self._scrub(str(exc)) or 'connection failed'})",
                source=self.source,
            )
        return BackendUnavailable(
            f"the connection to Conjur at {self.url} failed ({type(exc).__name__})", source=self.source
        )

    # -- clients ----------------------------------------------------------------------------------------------
    def _verify_option(self) -> ssl.SSLContext | bool:
        if not self.verify:
            logger.warning("TLS verification is OFF for Conjur at %s: anyone on the path can read the token", self.url)
            return False
        if not self.ca_bundle:
            return True
        field = f"{self._config_path}.ca_bundle"
        try:
            return ssl.create_default_context(cafile=self.ca_bundle)
        except FileNotFoundError:
            raise ConfigError(
                f"CA bundle {self.ca_bundle} does not exist", source=self._config_source, field=field
            ) from None
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load CA bundle {self.ca_bundle} ({type(exc).__name__}): it must hold PEM certificates",
                source=self._config_source,
                field=field,
            ) from None

    def _client_options(self) -> dict[str, Any]:
        return {
            "verify": self._verify_option(),
            "timeout": httpx.Timeout(self.timeout),
            "follow_redirects": False,  # never hand the access token or the API key to another host
            "headers": {"User-Agent": f"whatsapp-tokenstore/{__version__} (conjur)"},
        }

    def _sync_client(self) -> httpx.Client:
        if self._parent is not None:
            return self._parent._sync_client()  # type: ignore[attr-defined,no-any-return]
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = httpx.Client(**self._client_options())
                client = self._client
        return client

    def _async_client(self) -> httpx.AsyncClient:
        if self._parent is not None:
            return self._parent._async_client()  # type: ignore[attr-defined,no-any-return]
        # a client's connections belong to the event loop that opened them: one client per loop
        loop = asyncio.get_running_loop()
        with self._client_lock:
            client = self._aclients.get(loop)
            if client is None:
                client = self._aclients[loop] = httpx.AsyncClient(**self._client_options())
            return client

    def _async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._client_lock:
            lock = self._alocks.get(loop)
            if lock is None:
                lock = self._alocks[loop] = asyncio.Lock()
            return lock

    @staticmethod
    def _close_async_client(client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        """Close a client of another (or no running) loop as well as can be done from here.

        A loop that is already closed took its connections' transports with it: close the provider (``await
        provider.aclose()``) before its event loop ends.
        """
        if loop.is_closed():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(client.aclose())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        elif running is None:  # an idle loop, and none running here: close it on its own loop
            loop.run_until_complete(client.aclose())
        # else: the loop is idle but another one runs in this thread; its connections go with the loop

    # -- drivers ----------------------------------------------------------------------------------------------
    def _fresh(self, stale: _Access | None) -> _Access | None:
        current = self._access
        if current is not None and current is not stale and self._clock() < current.renew_at:
            return current
        return None

    def _forget(self, rejected: _Access | None) -> None:
        """Conjur refused this access token: never send it again, even if the next login fails."""
        if rejected is not None and self._access is rejected:
            self._access = None

    def _send_sync(self, call: _Call) -> httpx.Response:
        client = self._sync_client()
        try:
            request = client.build_request(
                call.method, call.url, headers=call.headers, content=call.content, data=call.data, params=call.params
            )
            return client.send(request)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    async def _send_async(self, call: _Call) -> httpx.Response:
        client = self._async_client()
        try:
            request = client.build_request(
                call.method, call.url, headers=call.headers, content=call.content, data=call.data, params=call.params
            )
            return await client.send(request)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    def _access_sync(self, stale: _Access | None) -> _Access:
        if self._parent is not None:  # one access token (one login) for every tenant's view
            return self._parent._access_sync(stale)  # type: ignore[attr-defined,no-any-return]
        access = self._fresh(stale)
        if access is not None:
            return access
        with self._auth_lock:  # concurrent threads authenticate once
            access = self._fresh(stale)
            if access is None:
                self._forget(stale)
                access = self._run(self._login_flow())
                self._access = access
            return access

    async def _access_async(self, stale: _Access | None) -> _Access:
        if self._parent is not None:
            return await self._parent._access_async(stale)  # type: ignore[attr-defined,no-any-return]
        access = self._fresh(stale)
        if access is not None:
            return access
        async with self._async_lock():  # concurrent tasks authenticate once
            access = self._fresh(stale)
            if access is None:
                self._forget(stale)
                access = await self._arun(self._login_flow())
                self._access = access
            return access

    def _run(self, flow: _Flow[T]) -> T:
        """Drive a flow with the sync client. Translated errors are thrown into the flow at the failing step."""
        self._check_open()
        reply: Any = None
        error: TokenStoreError | None = None
        try:
            while True:
                step = flow.throw(error) if error is not None else flow.send(reply)
                error = None
                try:
                    reply = self._access_sync(step.stale) if isinstance(step, _NeedAccess) else self._send_sync(step)
                except TokenStoreError as exc:
                    error = exc
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            flow.close()

    async def _arun(self, flow: _Flow[T]) -> T:
        """Drive a flow with the async client (see :meth:`_run`)."""
        self._check_open()
        reply: Any = None
        error: TokenStoreError | None = None
        try:
            while True:
                step = flow.throw(error) if error is not None else flow.send(reply)
                error = None
                try:
                    if isinstance(step, _NeedAccess):
                        reply = await self._access_async(step.stale)
                    else:
                        reply = await self._send_async(step)
                except TokenStoreError as exc:
                    error = exc
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            flow.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderError("the provider is closed", source=self.source)

    # -- the provider interface -------------------------------------------------------------------------------
    def get_token(self) -> Token:
        return self._run(self._get_flow())

    async def aget_token(self) -> Token:
        return await self._arun(self._get_flow())

    @property
    def supports_write(self) -> bool:
        return self.version is None

    def put_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        return self._run(self._put_flow(value, expected))

    async def aput_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        return await self._arun(self._put_flow(value, expected))

    def delete_secret(self) -> None:
        """Conjur's REST API cannot delete or disable a variable (only a policy update can): always refused."""
        raise WriteNotSupported(
            "Conjur cannot delete or disable a variable over its REST API: remove it from the policy that declares "
            "it (conjur policy update with !delete) yourself",
            source=self.source,
        )

    # -- many tenants: one variable per tenant, one access token for all --------------------------------------
    tenant_options = ("variable",)

    def named(self, option: str, name: str) -> ConjurBackend:
        source, secret_url, resource_url = self._names_for(name)
        return self._view(variable=name, source=source, _secret_url=secret_url, _resource_url=resource_url)

    _LIST_PAGE = 100

    def _list_flow(self, prefix: str) -> _Flow[list[str]]:
        """Conjur's resource search (``GET /resources/{account}?kind=variable&search=...``), page by page."""
        url = f"{self.url}/resources/{quote(self.account, safe='')}"
        search = prefix.strip("/-_.:")
        mark = f"{self.account}:variable:"
        names: list[str] = []
        offset = 0
        while True:
            params = {"kind": "variable", "limit": str(self._LIST_PAGE), "offset": str(offset)}
            if search:
                params["search"] = search

            def search_call(access: _Access, params: dict[str, str] = params) -> _Call:
                return _Call("GET", url, self._headers(access), params=params)

            response = yield from self._authed(search_call)
            if response.status_code != 200:
                raise self._status_error(response, action="list")
            try:
                page = response.json()
            except ValueError:
                page = None
            if not isinstance(page, list):
                raise BackendUnavailable("Conjur's resource search did not answer a JSON list", source=self.source)
            for resource in page:
                ident = resource.get("id") if isinstance(resource, dict) else None
                if isinstance(ident, str) and ident.startswith(mark):
                    names.append(ident[len(mark) :])
            if len(page) < self._LIST_PAGE:
                return names
            offset += len(page)

    def list_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        return self._run(self._list_flow(prefix))

    async def alist_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        return await self._arun(self._list_flow(prefix))

    def close(self) -> None:
        if self._parent is not None:
            return  # a tenant's view: the clients and the access token belong to the backend it was made from
        with self._client_lock:
            self._closed = True
            client, self._client = self._client, None
            aclients = list(self._aclients.items())
            self._aclients.clear()
        self._access = None
        if client is not None:
            client.close()
        for loop, aclient in aclients:
            self._close_async_client(aclient, loop)

    async def aclose(self) -> None:
        if self._parent is not None:
            return
        loop = asyncio.get_running_loop()
        with self._client_lock:
            self._closed = True
            aclient = self._aclients.pop(loop, None)
        if aclient is not None:
            await aclient.aclose()
        self.close()

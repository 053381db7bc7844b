"""``vault``: the token in a HashiCorp Vault / OpenBao KV secret (KV v2, latest or a pinned version, or KV v1).

Talks to Vault through ``hvac`` (the ``vault`` extra). The client is built on first use, never in
:meth:`VaultBackend.from_config`; every request has a timeout and hvac makes a single attempt (the caching
layer owns retrying, with backoff).

Authentication (``auth.method``):

* ``token`` (default) - a Vault token from ``$VAULT_TOKEN`` or ``auth.token: {env: VAR} | {file: PATH}``
  (a Vault Agent sink file works: when Vault rejects the token, the file is read again).
* ``approle`` - ``role_id`` and ``secret_id`` (both ``{env: VAR} | {file: PATH}``), logging in at
  ``auth/<mount>/login`` (mount default ``approle``).
* ``kubernetes`` - the pod's service-account JWT (``jwt_file``, read again at every login because
  Kubernetes rotates it) and a Vault ``role``.

A login token is renewed (``renew-self``) once two thirds of its TTL have passed, or replaced by a fresh
login when it is not renewable or renewal fails. When Vault answers 403 anyway (token revoked, expired
while the service slept), ``lookup-self`` tells an invalid token from a policy denial: for an invalid token
the backend authenticates again once and retries; a policy denial is :class:`~tokenstore.AccessDenied`.

Errors: sealed/unreachable/timing out/rate limited/5xx -> :class:`~tokenstore.BackendUnavailable` (with
``retry_after`` when Vault sends ``Retry-After``); no such path, version or key ->
:class:`~tokenstore.SecretNotFound`; a value that is not a non-empty one-word string ->
:class:`~tokenstore.SecretMalformed`; 403 -> :class:`~tokenstore.AccessDenied`. Messages name the Vault path,
never a value or a credential; Vault's own error text is not copied into them (``__cause__`` keeps hvac's
exception for debugging).

``put_token`` merges the new value into the secret's other keys: on KV v2 with check-and-set (a concurrent
writer makes it read and try again) and returns the new version number; on KV v1 (no versions, no
check-and-set) it returns ``None``.

Async: hvac has no async client, so ``aget_token``/``aput_token`` run the sync call in a worker thread (the
:class:`~tokenstore.TokenProvider` default); with the caching layer in front that is one thread hop per
fetch, not per request.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .._config import SecretRef, Section, is_loopback_host
from .._errors import (
    AccessDenied,
    BackendUnavailable,
    ProviderError,
    SecretMalformed,
    SecretNotFound,
    WriteConflict,
    WriteNotSupported,
)
from .._masking import masked_logger
from .._parsing import new_token_value, string_under_key
from .._provider import Backend, check_expected
from .._registry import import_sdk
from .._token import Token, fingerprint_of

if TYPE_CHECKING:
    from types import ModuleType

    import requests

__all__ = ["DEFAULT_KUBERNETES_JWT", "VaultAuth", "VaultBackend"]

logger = masked_logger("tokenstore.backends.vault")

T = TypeVar("T")

DEFAULT_KUBERNETES_JWT = "/var/run/secrets/kubernetes.io/serviceaccount/token"
AUTH_METHODS = ("token", "approle", "kubernetes")
_AUTH_OPTIONS = {
    "token": ("method", "token"),
    "approle": ("method", "role_id", "secret_id", "mount"),
    "kubernetes": ("method", "role", "jwt_file", "mount"),
}
_OPTIONS = (
    "url",
    "mount",
    "path",
    "key",
    "kv_version",
    "version",
    "namespace",
    "auth",
    "verify",
    "ca_bundle",
    "timeout",
)
_CAS_ATTEMPTS = 3
_CONFLICT: Any = object()  # a check-and-set write lost to a concurrent writer


@dataclass(frozen=True)
class VaultAuth:
    """How the backend gets its Vault token. Credentials are references (env var or file), never values."""

    method: str = "token"
    #: ``token``: where the Vault token is (default ``$VAULT_TOKEN``)
    token: SecretRef | None = None
    #: ``approle``: the role id and (unless the role does not bind secret ids) the secret id
    role_id: SecretRef | None = None
    secret_id: SecretRef | None = None
    #: ``kubernetes``: the Vault role and the service-account JWT file
    role: str | None = None
    jwt_file: str = DEFAULT_KUBERNETES_JWT
    #: where the auth method is mounted (default: ``approle`` / ``kubernetes``)
    mount: str | None = None

    def __post_init__(self) -> None:
        if self.method not in AUTH_METHODS:
            raise ValueError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
        if self.method == "approle" and self.role_id is None:
            raise ValueError("approle auth needs role_id")
        if self.method == "kubernetes" and not self.role:
            raise ValueError("kubernetes auth needs role")

    @property
    def mount_point(self) -> str:
        return (self.mount or self.method).strip("/")

    @property
    def token_ref(self) -> SecretRef:
        return self.token or SecretRef(env="VAULT_TOKEN", field="auth.token")

    def describe(self) -> str:
        """For messages: how we authenticate, naming where credentials come from, never their values."""
        if self.method == "token":
            return f"the token from {self.token_ref.describe()}"
        if self.method == "approle":
            assert self.role_id is not None
            secret = f", secret_id from {self.secret_id.describe()}" if self.secret_id else ""
            return f"AppRole at auth/{self.mount_point} (role_id from {self.role_id.describe()}{secret})"
        return f"Kubernetes role {self.role!r} at auth/{self.mount_point} (JWT file {self.jwt_file})"


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class VaultBackend(Backend):
    """Reads ``key`` of the KV secret ``mount``/``path`` (KV v2 by default); writes new versions."""

    name = "vault"
    extra = "vault"

    def __init__(
        self,
        *,
        url: str,
        path: str,
        mount: str = "secret",
        key: str = "access_token",
        kv_version: int = 2,
        version: int | None = None,
        namespace: str | None = None,
        auth: VaultAuth | None = None,
        verify: bool = True,
        ca_bundle: str | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hvac: ModuleType = import_sdk("hvac", backend=self.name, extra="vault")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL of the Vault server")
        if kv_version not in (1, 2):
            raise ValueError("kv_version must be 1 or 2")
        if version is not None and (kv_version != 2 or version < 1):
            raise ValueError("version pins a KV v2 version (a number from 1); KV v1 has no versions")
        if not path.strip("/") or not mount.strip("/") or not key:
            raise ValueError("mount, path and key must not be empty")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url.rstrip("/")
        self.mount = mount.strip("/")
        self.path = path.strip("/")
        self.key = key
        self.kv_version = kv_version
        self.version = version
        self.namespace = namespace.strip("/") if namespace else None
        self.auth = auth or VaultAuth()
        self.verify = verify
        self.ca_bundle = ca_bundle
        self.timeout = float(timeout)
        self._clock = clock
        self.source = self._label(self.path)
        self._lock = threading.RLock()
        self._client: Any = None
        self._vault_token: str | None = None  # the Vault token in use: a credential, never logged or shown
        self._renewable = False
        self._renew_at: float | None = None
        self._expires_at: float | None = None
        self._login_lease = 0
        self._retry_after = threading.local()
        #: counters (for metrics and tests): logins performed, renewals done
        self.logins = 0
        self.renewals = 0
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            logger.warning("Vault URL %s is plain http: the Vault token would cross the network unencrypted", self.url)
        if not verify:
            logger.warning("TLS certificate verification is off for Vault at %s (verify: false)", self.url)

    # -- configuration --------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, section: Section) -> VaultBackend:
        section.reject_unknown(_OPTIONS)
        url = section.get_str("url", None)
        if url is None:
            url = os.environ.get("VAULT_ADDR") or None
            if url is None:
                section.fail(
                    "url", "required: the Vault address, e.g. https://vault.internal:8200 (or set $VAULT_ADDR)"
                )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            section.fail("url", "must be an http:// or https:// URL, e.g. https://vault.internal:8200")
        kv_version = section.get_int("kv_version", 2)
        if kv_version not in (1, 2):
            section.fail("kv_version", f"must be 1 or 2, got {kv_version}")
        version = section.get_int("version", None, min=1)
        if version is not None and kv_version == 1:
            section.fail("version", "KV v1 has no versions: remove version, or set kv_version: 2")
        for name in ("mount", "path"):
            if name in section and not str(section.raw(name)).strip("/"):
                section.fail(name, "must not be empty")
        verify = section.get_bool("verify", True)
        ca_bundle = section.get_path("ca_bundle", None)
        if ca_bundle is not None:
            if not verify:
                section.fail("ca_bundle", "is ignored with verify: false; remove one of them")
            if not Path(ca_bundle).is_file():
                section.fail(
                    "ca_bundle", f"file {ca_bundle} does not exist (a PEM file of the CA that signed Vault's cert)"
                )
        try:
            return cls(
                url=url,
                path=section.get_str("path"),
                mount=section.get_str("mount", "secret"),
                key=section.get_str("key", "access_token"),
                kv_version=kv_version,
                version=version,
                namespace=section.get_str("namespace", None),
                auth=_auth_from_config(section.get_section("auth")),
                verify=verify,
                ca_bundle=ca_bundle,
                timeout=section.get_float("timeout", 5.0, min=0.1, max=300),
            )
        except ValueError as exc:
            raise section.error(None, str(exc)) from None

    # -- paths and labels -----------------------------------------------------------------------------------
    def _label(self, path: str) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        pinned = f"?version={self.version}" if self.version is not None else ""
        return f"vault:{where}{self.mount}/{path}#{self.key}{pinned}"

    @property
    def api_path(self) -> str:
        """The secret's API path (``secret/data/whatsapp/prod`` on KV v2), as named in messages and policies."""
        middle = "data/" if self.kv_version == 2 else ""
        return f"{self.mount}/{middle}{self.path}"

    def _where(self) -> str:
        return f"{self.api_path} (namespace {self.namespace})" if self.namespace else self.api_path

    # -- client and authentication -------------------------------------------------------------------------
    def _build_client(self) -> Any:
        import requests

        session = requests.Session()
        session.hooks["response"].append(self._note_retry_after)
        verify: bool | str = self.ca_bundle if self.ca_bundle else self.verify
        session.verify = verify  # hvac takes a given session's verify over its own argument
        # token="" (not None): hvac would otherwise read $VAULT_TOKEN or ~/.vault-token on its own
        return self._hvac.Client(
            url=self.url, token="", verify=verify, timeout=self.timeout, namespace=self.namespace, session=session
        )

    def _note_retry_after(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        hint = None
        if response.status_code in (429, 503):
            hint = _parse_retry_after(response.headers.get("Retry-After"))
        self._retry_after.value = hint

    def _read_credential(self, ref: SecretRef) -> str:
        return ref.read(source=self.source)

    def _read_jwt(self) -> str:
        path = Path(self.auth.jwt_file)
        try:
            jwt = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise AccessDenied(
                f"the Kubernetes service-account token file {path} does not exist "
                "(is the token mounted into the pod? check auth.jwt_file)",
                source=self.source,
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AccessDenied(
                f"cannot read the Kubernetes service-account token file {path} ({type(exc).__name__})",
                source=self.source,
            ) from None
        if not jwt:
            raise AccessDenied(f"the Kubernetes service-account token file {path} is empty", source=self.source)
        return jwt

    def _ready(self) -> tuple[Any, str]:
        """The client, authenticated (logging in, renewing or re-logging in as due), and the token it uses."""
        if self._parent is not None:
            return self._parent._ready()  # type: ignore[attr-defined,no-any-return]
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            client = self._client
            if self._vault_token is None:
                self._login(client)
            elif self._renew_at is not None and self._clock() >= self._renew_at:
                self._renew_or_login(client)
            assert self._vault_token is not None
            return client, self._vault_token

    def _login(self, client: Any) -> None:
        """Authenticate with the configured method; on success the client uses the new token."""
        auth = self.auth
        errors = self._hvac.exceptions
        if auth.method == "token":
            token = self._read_credential(auth.token_ref)
            client.token = token
            self._vault_token = token
            self._renew_at = self._expires_at = None
            self._renewable = False
            return
        try:
            if auth.method == "approle":
                assert auth.role_id is not None
                role_id = self._read_credential(auth.role_id)
                secret_id = self._read_credential(auth.secret_id) if auth.secret_id is not None else None
                response = client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=auth.mount_point)
            else:
                response = client.auth.kubernetes.login(auth.role, self._read_jwt(), mount_point=auth.mount_point)
        except (errors.InvalidRequest, errors.Forbidden, errors.Unauthorized, errors.InvalidPath) as exc:
            raise AccessDenied(
                f"Vault refused the login with {auth.describe()}: check the credentials, the role and that the "
                "auth method is enabled there",
                source=self.source,
            ) from exc
        except Exception as exc:
            error = self._translate(exc, f"logging in to Vault with {auth.method}")
            if error is None:
                raise
            raise error from exc
        login = response.get("auth") if isinstance(response, dict) else None
        new_token = login.get("client_token") if isinstance(login, dict) else None
        if not isinstance(new_token, str) or not new_token or not isinstance(login, dict):
            raise BackendUnavailable("Vault's login answer carried no token", source=self.source)
        token = new_token
        client.token = token
        self._vault_token = token
        self._login_lease = int(login.get("lease_duration") or 0)
        self._set_lease(self._login_lease, bool(login.get("renewable")))
        self.logins += 1
        logger.info(
            "logged in to Vault at %s with %s (token TTL %ss)",
            self.url,
            auth.describe(),
            login.get("lease_duration"),
        )

    def _set_lease(self, lease: int, renewable: bool) -> None:
        now = self._clock()
        self._renewable = renewable
        if lease > 0:
            self._expires_at = now + lease
            self._renew_at = now + lease * 2 / 3
        else:
            self._expires_at = self._renew_at = None

    def _renew_or_login(self, client: Any) -> None:
        """Two thirds of the login token's TTL are gone: renew it, or log in again."""
        now = self._clock()
        if self._renewable and self._expires_at is not None and now < self._expires_at:
            try:
                response = client.auth.token.renew_self()
                login = response["auth"]
                lease = int(login.get("lease_duration") or 0)
            except Exception:
                logger.info("renewing the Vault token for %s failed: logging in again", self.source)
            else:
                self._set_lease(lease, bool(login.get("renewable")))
                if lease < self._login_lease / 2:
                    self._renewable = False  # near its max TTL: next time, a fresh login
                self.renewals += 1
                logger.debug("renewed the Vault token for %s (TTL %ss)", self.source, lease)
                return
        try:
            self._login(client)
        except BackendUnavailable:
            if self._expires_at is not None and self._clock() < self._expires_at:
                # Vault is unreachable but the current token has not expired: keep using it, try again later
                self._renew_at = self._clock() + min(5.0, max(0.0, self._expires_at - self._clock()) / 2)
                logger.warning("logging in to Vault again failed; the current token stays in use for now")
                return
            raise

    def _token_rejected(self, client: Any, used: str) -> bool:
        """Vault refused ``used`` (403). True when we hold a new token to retry with; False: a policy denial."""
        if self._parent is not None:
            return self._parent._token_rejected(client, used)  # type: ignore[attr-defined,no-any-return]
        errors = self._hvac.exceptions
        with self._lock:
            if self._vault_token != used:
                return True  # another caller already authenticated again
            try:
                client.auth.token.lookup_self()
            except (errors.Forbidden, errors.Unauthorized):
                pass  # the token itself is invalid: expired or revoked
            except Exception:
                return False  # cannot tell (Vault went away): report the original denial
            else:
                return False  # the token is alive: the policy does not allow this
            logger.info("Vault rejected the token for %s (expired or revoked): authenticating again", self.source)
            if self.auth.method == "token":
                fresh = self._read_credential(self.auth.token_ref)
                if fresh == used:
                    raise AccessDenied(
                        f"the Vault token ({self.auth.token_ref.describe()}) is expired or revoked: give a valid one "
                        "(or let Vault Agent rewrite the token file, or use approle/kubernetes auth)",
                        source=self.source,
                    )
            self._vault_token = None
            self._login(client)
            return True

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run one hvac call; on a 403 from an invalid token, authenticate again once and retry."""
        errors = self._hvac.exceptions
        client, used = self._ready()
        try:
            return fn(client)
        except (errors.Forbidden, errors.Unauthorized) as exc:
            if not self._token_rejected(client, used):
                denied = self._translate(exc, what)
                assert denied is not None
                raise denied from exc
        except Exception as exc:
            error = self._translate(exc, what)
            if error is None:
                raise
            raise error from exc
        client, _ = self._ready()
        try:
            return fn(client)
        except Exception as exc:
            error = self._translate(exc, what)
            if error is None:
                raise
            raise error from exc

    def _translate(self, exc: BaseException, what: str) -> ProviderError | None:
        """Our error for a foreign one; None for anything else (ours, or a bug: re-raised as is, not hidden)."""
        import requests

        errors = self._hvac.exceptions
        src = self.source
        retry_after = getattr(self._retry_after, "value", None)
        if isinstance(exc, errors.InvalidPath):
            meta = _deleted_metadata(exc)
            if meta is not None:
                state = "destroyed" if meta.get("destroyed") else "deleted"
                return SecretNotFound(f"version {meta.get('version')} of {self._where()} was {state}", source=src)
            if self.kv_version == 1 and _says_versioned(exc):
                return SecretNotFound(
                    f"{self.mount} is a KV v2 mount: set kv_version: 2 to read {self.path}", source=src
                )
            pinned = f", version {self.version}" if self.version is not None else ""
            return SecretNotFound(
                f"no secret at {self._where()}{pinned} (check mount, path and kv_version: {self.kv_version})",
                source=src,
            )
        if isinstance(exc, (errors.Forbidden, errors.Unauthorized)):
            need = {"reading": "read", "listing": "list"}.get(what, "read, create and update")
            return AccessDenied(
                f"permission denied {what} {self._where()}: the token's policies must grant {need} on it",
                source=src,
            )
        if isinstance(exc, errors.RateLimitExceeded):
            return BackendUnavailable("Vault is rate limiting us (HTTP 429)", source=src, retry_after=retry_after)
        if isinstance(exc, errors.VaultDown):
            return BackendUnavailable(
                f"Vault at {self.url} is sealed or unavailable (HTTP 503)", source=src, retry_after=retry_after
            )
        if isinstance(exc, errors.VaultNotInitialized):
            return BackendUnavailable(f"Vault at {self.url} is not initialized (HTTP 501)", source=src)
        if isinstance(exc, errors.InternalServerError):
            return BackendUnavailable(f"Vault answered an internal error (HTTP 500) {what}", source=src)
        if isinstance(exc, errors.BadGateway):
            return BackendUnavailable(f"Vault answered bad gateway (HTTP 502) {what}", source=src)
        if isinstance(exc, errors.InvalidRequest):
            return ProviderError(
                f"Vault rejected the request {what} {self._where()} (HTTP 400): check mount, path and kv_version "
                f"({self.kv_version})",
                source=src,
            )
        if isinstance(exc, errors.VaultError):
            return BackendUnavailable(f"unexpected answer from Vault {what} ({type(exc).__name__})", source=src)
        if isinstance(exc, requests.exceptions.SSLError):
            return BackendUnavailable(
                f"TLS handshake with Vault at {self.url} failed: its certificate must be trusted (ca_bundle)",
                source=src,
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return BackendUnavailable(f"no answer from Vault at {self.url} within {self.timeout:g}s", source=src)
        if isinstance(exc, requests.exceptions.ConnectionError):
            return BackendUnavailable(f"cannot connect to Vault at {self.url}", source=src)
        if isinstance(exc, requests.exceptions.RequestException):
            return BackendUnavailable(f"the request to Vault at {self.url} failed ({type(exc).__name__})", source=src)
        return None

    # -- reading --------------------------------------------------------------------------------------------
    def get_token(self) -> Token:
        if self.kv_version == 2:
            response = self._call(
                "reading",
                lambda c: c.secrets.kv.v2.read_secret_version(
                    path=self.path, version=self.version, mount_point=self.mount, raise_on_deleted_version=True
                ),
            )
        else:
            response = self._call(
                "reading", lambda c: c.secrets.kv.v1.read_secret(path=self.path, mount_point=self.mount)
            )
        if not isinstance(response, dict):
            # hvac hands back the raw response when a 200 is not JSON (a proxy's or portal's page)
            raise BackendUnavailable(
                f"unexpected answer from Vault at {self.url} (HTTP {getattr(response, 'status_code', '?')}, "
                "not a JSON object): is url the Vault API?",
                source=self.source,
            )
        body = response.get("data")
        version: str | None = None
        if self.kv_version == 2:
            if not isinstance(body, dict):
                raise SecretMalformed(
                    f"unexpected KV v2 answer for {self._where()}: is the mount KV v1?", source=self.source
                )
            meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
            assert isinstance(meta, dict)
            if meta.get("version") is not None:
                version = str(meta["version"])
            body = body.get("data")
            if body is None:
                raise SecretNotFound(
                    f"version {version} of {self._where()} was deleted or destroyed", source=self.source
                )
        return Token(
            self._extract(body),
            source=self.source,
            version=version,
            fetched_at=dt.datetime.now(dt.timezone.utc),
        )

    def _extract(self, data: Any) -> str:
        if not isinstance(data, dict):
            raise SecretMalformed(f"the secret at {self._where()} is not a key/value map", source=self.source)
        return string_under_key(data, source=self.source, key=self.key, what=f"the secret at {self._where()}")

    # -- writing --------------------------------------------------------------------------------------------
    @property
    def supports_write(self) -> bool:
        """False when pinned to a version: a new version would never be read by this provider."""
        return self.version is None

    @property
    def supports_compare_and_set(self) -> bool:
        """KV v2: ``put_token(value, expected=...)`` writes with check-and-set (``cas``) on the version it
        compared, so of concurrent writers expecting the same token exactly one writes. KV v1 has no versions:
        read, compare, write (a window of one round trip)."""
        return self.kv_version == 2

    def put_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        """Write ``value`` under ``key`` (other keys of the secret kept). Returns the new KV v2 version."""
        if self.version is not None:
            raise WriteNotSupported(
                f"pinned to version {self.version}: a new version would not be read; remove version to rotate",
                source=self.source,
            )
        value = new_token_value(value, source=self.source)
        new_version: str | None = None
        if self.kv_version == 2:
            new_version = self._put_v2(value, expected)
        else:
            self._put_v1(value, expected)
        logger.info("wrote a new token to %s (version %s, %s)", self.source, new_version or "-", fingerprint_of(value))
        return new_version

    def _held(self, data: dict[str, Any], version: int) -> Token | None:
        """The token a read-before-write found (for an ``expected`` check); None when there is none."""
        held = data.get(self.key)
        if not isinstance(held, str):
            return None
        return Token(held.strip(), source=self.source, version=str(version) if version else None)

    def _put_v2(self, value: str, expected: Token | str | None = None) -> str:
        errors = self._hvac.exceptions

        def kv(c: Any) -> Any:
            return c.secrets.kv.v2

        def read_latest(c: Any) -> Any:
            try:
                return kv(c).read_secret_version(path=self.path, mount_point=self.mount, raise_on_deleted_version=False)
            except errors.InvalidPath:
                return None  # no such secret yet: create it

        for _ in range(_CAS_ATTEMPTS):
            current = self._call("reading before writing", read_latest)
            data: dict[str, Any] = {}
            cas = 0
            if isinstance(current, dict) and isinstance(current.get("data"), dict):
                body = current["data"]
                if isinstance(body.get("data"), dict):
                    data = dict(body["data"])
                cas = int((body.get("metadata") or {}).get("version") or 0)
            if expected is not None:
                check_expected(self._held(data, cas), expected, source=self.source)
            data[self.key] = value

            def write(c: Any, data: dict[str, Any] = data, cas: int = cas) -> Any:
                try:
                    return kv(c).create_or_update_secret(path=self.path, secret=data, cas=cas, mount_point=self.mount)
                except errors.InvalidRequest as exc:
                    if any("check-and-set" in str(e) for e in (exc.errors or [])):
                        return _CONFLICT
                    raise

            response = self._call("writing", write)
            if response is _CONFLICT and expected is not None:
                raise WriteConflict(
                    f"not written: {self._where()} changed after version {cas} was compared (check-and-set): "
                    "another writer got there first",
                    source=self.source,
                )
            if response is _CONFLICT:
                logger.info("%s changed while writing (check-and-set): reading it again", self.source)
                continue
            try:
                return str(response["data"]["version"])
            except (TypeError, KeyError):
                raise BackendUnavailable("Vault's answer to the write carried no version", source=self.source) from None
        raise BackendUnavailable(
            f"{self._where()} kept changing under us ({_CAS_ATTEMPTS} check-and-set conflicts); try again",
            source=self.source,
        )

    def _put_v1(self, value: str, expected: Token | str | None = None) -> None:
        errors = self._hvac.exceptions

        def read(c: Any) -> Any:
            try:
                return c.secrets.kv.v1.read_secret(path=self.path, mount_point=self.mount)
            except errors.InvalidPath:
                return None

        current = self._call("reading before writing", read)
        data: dict[str, Any] = {}
        if isinstance(current, dict) and isinstance(current.get("data"), dict):
            data = dict(current["data"])
        if expected is not None:
            check_expected(self._held(data, 0), expected, source=self.source)
        data[self.key] = value
        self._call(
            "writing",
            lambda c: c.secrets.kv.v1.create_or_update_secret(path=self.path, secret=data, mount_point=self.mount),
        )

    # -- many tenants: one secret per tenant, one client and login for all ---------------------------------
    tenant_options = ("path",)

    def named(self, option: str, name: str) -> VaultBackend:
        path = name.strip("/")
        return self._view(path=path, source=self._label(path))

    def list_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        """Vault LIST of the folder holding the template's ``{tenant}`` (KV v2: its metadata path).

        A sub-folder counts as a tenant when the template goes on below ``{tenant}`` (``whatsapp/{tenant}/token``).
        """
        head, sep, _ = prefix.rpartition("/")
        folder = head.strip("/")
        errors = self._hvac.exceptions

        def listing(c: Any) -> Any:
            kv = c.secrets.kv.v2 if self.kv_version == 2 else c.secrets.kv.v1
            try:
                return kv.list_secrets(path=folder, mount_point=self.mount)
            except errors.InvalidPath:
                return None  # nothing under the folder yet

        response = self._call("listing", listing)
        keys = response.get("data", {}).get("keys") if isinstance(response, dict) else None
        if not isinstance(keys, list):
            return []
        deeper = suffix.startswith("/")
        names = []
        for key in keys:
            if not isinstance(key, str):
                continue
            if key.endswith("/"):
                if deeper:
                    names.append(f"{head}{sep}{key[:-1]}{suffix}")
            elif not deeper:
                names.append(f"{head}{sep}{key}")
        return names

    # -- lifecycle ------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._parent is not None:
            return  # a tenant's view: the client belongs to the backend it was made from
        with self._lock:
            client, self._client = self._client, None
            self._vault_token = None
            self._renew_at = self._expires_at = None
        if client is not None:
            try:
                client.adapter.close()
            except Exception:  # closing must not fail
                pass


def _deleted_metadata(exc: BaseException) -> dict[str, Any] | None:
    """KV v2 answers 404 with the version's metadata when that version was deleted or destroyed."""
    body = getattr(exc, "json", None)
    try:
        meta = body["data"]["metadata"]  # type: ignore[index]
    except (TypeError, KeyError):
        return None
    if isinstance(meta, dict) and (meta.get("deletion_time") or meta.get("destroyed")):
        return meta
    return None


def _says_versioned(exc: BaseException) -> bool:
    """Vault's 404 for a KV v1 call on a KV v2 mount carries a warning saying so."""
    body = getattr(exc, "json", None)
    warnings = body.get("warnings") if isinstance(body, dict) else None
    return isinstance(warnings, list) and any("versioned K/V" in str(w) for w in warnings)


def _auth_from_config(section: Section) -> VaultAuth:
    method = section.get_str("method", "token", choices=AUTH_METHODS)
    allowed = _AUTH_OPTIONS[method]
    for key in list(section.data):
        if key in allowed:
            continue
        owner = next((m for m, opts in _AUTH_OPTIONS.items() if key in opts), None)
        if owner is not None:
            section.fail(key, f"is an option of auth method {owner!r}, not {method!r}")
    section.reject_unknown(allowed)
    mount = section.get_str("mount", None)
    if mount is not None and not mount.strip("/"):
        section.fail("mount", "must not be empty")
    if method == "token":
        ref = section.get_secret_ref("token", required=False)
        if ref is None:
            ref = SecretRef(env="VAULT_TOKEN", field=section.field("token"), config_source=section.source)
        return VaultAuth(method="token", token=ref)
    if method == "approle":
        return VaultAuth(
            method="approle",
            role_id=section.get_secret_ref("role_id"),
            secret_id=section.get_secret_ref("secret_id", required=False),
            mount=mount,
        )
    return VaultAuth(
        method="kubernetes",
        role=section.get_str("role"),
        jwt_file=section.get_path("jwt_file", DEFAULT_KUBERNETES_JWT),
        mount=mount,
    )

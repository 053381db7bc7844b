"""``gcp``: Google Cloud Secret Manager, through the official client library over gRPC (sync and asyncio).

Reads ``projects/{project}/secrets/{secret}/versions/{version}`` (``latest`` or a version number), optionally
one ``key`` of a JSON object stored there; ``put_token`` adds a new version (``add_secret_version``);
``delete_secret`` (offboarding) deletes the secret with all its versions (``delete_secret``).

* Credentials: Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, workload identity, the
  metadata server, gcloud), or ``credentials_file`` (a service-account key or external-account file).
* ``endpoint`` (``host:port``) points the client elsewhere (a regional endpoint, a private endpoint, an emulator);
  ``plaintext: true`` talks to it over an insecure gRPC channel, for emulators and tests only (no credentials are
  sent then). ``ca_bundle`` trusts a private CA for a TLS endpoint.
* Integrity: the client library does not check ``payload.data_crc32c``; we do, and refuse a payload whose
  checksum does not match (``SecretMalformed``). Writes send the checksum so the service verifies it too.
* Retries: none in the client library (``retry=None``), one deadline per call (``timeout``), and a short gRPC
  reconnect backoff: the caching layer owns retrying, with backoff and ``RESOURCE_EXHAUSTED``'s retry delay.

The client library is imported when the first client is built, never at import time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config import Section
from .._errors import (
    AccessDenied,
    BackendUnavailable,
    ConfigError,
    ProviderError,
    SecretMalformed,
    SecretNotFound,
    WriteNotSupported,
)
from .._masking import masked_logger
from .._parsing import json_object, new_token_value, token_from_text
from .._provider import Backend, check_expected
from .._registry import import_sdk
from .._token import Token

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["GcpBackend"]

logger = masked_logger("tokenstore.backends.gcp")

_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]*\Z")  # an id, a number, or a domain-scoped "example.com:id"
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")
_RESOURCE = re.compile(r"projects/([^/]+)/secrets/([^/]+)\Z")
_ENDPOINT = re.compile(r"[A-Za-z0-9.\-\[\]:]+\Z")
_OPTIONS = ("project", "secret", "version", "key", "endpoint", "plaintext", "credentials_file", "ca_bundle", "timeout")
#: gRPC reconnects after a failed connection with an exponential backoff (default: 1 s growing to 120 s); keep it
#: short so a store that comes back is used on the caching layer's next attempt, which does its own backoff
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5000),
]
_TRANSPORT_LOGGERS = (
    "google.cloud.secretmanager_v1.services.secret_manager_service.transports.grpc",
    "google.cloud.secretmanager_v1.services.secret_manager_service.transports.grpc_asyncio",
    "google.cloud.secretmanager_v1.services.secret_manager_service.transports.rest",
)
_REDACTED = "<redacted by tokenstore>"


class _RedactPayloads(logging.Filter):
    """The client library logs whole request/response payloads and metadata at DEBUG: the secret and the bearer
    token. Blank those fields on its transport loggers, so DEBUG logging can never write the token out."""

    def filter(self, record: logging.LogRecord) -> bool:
        for attr in ("request", "response", "metadata", "httpRequest", "httpResponse"):
            if attr in record.__dict__:
                setattr(record, attr, _REDACTED)
        return True


_redact_lock = threading.Lock()
_redact_installed = False


def _install_log_redaction() -> None:
    global _redact_installed
    with _redact_lock:
        if _redact_installed:
            return
        for name in _TRANSPORT_LOGGERS:
            logging.getLogger(name).addFilter(_RedactPayloads())
        _redact_installed = True


def _sdk(module: str) -> ModuleType:
    return import_sdk(module, backend="gcp", extra="gcp")


class GcpBackend(Backend):
    """A Secret Manager secret version (``latest`` or a number), sync and async; writes add a version."""

    name = "gcp"
    extra = "gcp"

    def __init__(
        self,
        project: str,
        secret: str,
        *,
        version: str | int = "latest",
        key: str | None = None,
        endpoint: str | None = None,
        plaintext: bool = False,
        credentials_file: str | Path | None = None,
        ca_bundle: str | Path | None = None,
        timeout: float = 10.0,
        credentials: Any = None,
    ) -> None:
        """``credentials``: a ``google.auth.credentials.Credentials`` to use instead of ADC / ``credentials_file``."""
        version = str(version)
        if version != "latest" and not (version.isdigit() and int(version) > 0):
            raise ValueError("version must be 'latest' or a positive version number")
        if plaintext and not endpoint:
            raise ValueError("plaintext needs an endpoint")
        self.project = project
        self.secret = secret
        self.version = version
        self.key = key
        self.endpoint = endpoint
        self.plaintext = plaintext
        self.credentials_file = str(credentials_file) if credentials_file is not None else None
        self.ca_bundle = str(ca_bundle) if ca_bundle is not None else None
        self.timeout = float(timeout)
        self._explicit_credentials = credentials
        self.secret_path = f"projects/{project}/secrets/{secret}"
        self.version_path = f"{self.secret_path}/versions/{version}"
        self.source = f"gcp:{self.version_path}" + (f"#{key}" if key else "")
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._client: Any = None
        self._aclient: Any = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._exceptions: ModuleType | None = None
        self._crc32c: ModuleType | None = None
        self._closing: set[Any] = set()
        #: where this backend's options live, for errors that surface only when the client is built
        self.config_field = "token.gcp"
        self.config_source: str | None = None

    # -- configuration ---------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, section: Section) -> GcpBackend:
        section.reject_unknown(_OPTIONS)
        secret = section.get_str("secret")
        resource = _RESOURCE.match(secret)
        if resource:  # a full resource name: projects/P/secrets/S
            project, secret = resource.groups()
            if "project" in section and section.get_str("project") != project:
                section.fail("project", f"does not match the project in secret ({project!r}); give one or the other")
        else:
            project = section.get_str("project")
        if not _PROJECT.match(project):
            section.fail("project", "must be a project id or number (letters, digits, -, ., :)")
        if not _SECRET_ID.match(secret):
            section.fail(
                "secret", "must be a secret id (letters, digits, - and _, up to 255) or projects/PROJECT/secrets/ID"
            )
        version = section.get_str("version", "latest", coerce_numbers=True).strip()
        if version != "latest" and not (version.isdigit() and int(version) > 0):
            section.fail("version", f"must be 'latest' or a version number (1, 2, ...), got {version!r}")
        key = section.get_str("key", None)
        endpoint = section.get_str("endpoint", None)
        if endpoint is not None:
            endpoint = endpoint.strip()
            if "://" in endpoint or not _ENDPOINT.match(endpoint):
                section.fail("endpoint", "must be host or host:port (no scheme), e.g. 127.0.0.1:8085")
        plaintext = section.get_bool("plaintext", False)
        credentials_file = section.get_path("credentials_file", None)
        ca_bundle = section.get_path("ca_bundle", None)
        if plaintext:
            if endpoint is None:
                section.fail("plaintext", "needs endpoint: (an emulator or local server); Google's API is TLS only")
            for opt, value in (("credentials_file", credentials_file), ("ca_bundle", ca_bundle)):
                if value is not None:
                    section.fail(opt, "cannot be used with plaintext: true (no credentials are sent without TLS)")
        for opt, value in (("credentials_file", credentials_file), ("ca_bundle", ca_bundle)):
            if value is not None and not Path(value).is_file():
                section.fail(opt, f"file {value} does not exist")
        backend = cls(
            project,
            secret,
            version=version,
            key=key,
            endpoint=endpoint,
            plaintext=plaintext,
            credentials_file=credentials_file,
            ca_bundle=ca_bundle,
            timeout=section.get_float("timeout", 10.0, min=0.001),
        )
        backend.config_field = section.path
        backend.config_source = section.source
        return backend

    def _config_error(self, option: str | None, message: str) -> ConfigError:
        field = f"{self.config_field}.{option}" if option else self.config_field
        return ConfigError(message, source=self.config_source, field=field)

    @property
    def supports_write(self) -> bool:
        return self.version == "latest"

    # -- clients (built lazily, once) ---------------------------------------------------------------------
    def _load_modules(self) -> None:
        if self._exceptions is None:
            self._crc32c = _sdk("google_crc32c")
            self._exceptions = _sdk("google.api_core.exceptions")
            _install_log_redaction()

    def _get_credentials(self) -> Any:
        if self._explicit_credentials is not None:
            return self._explicit_credentials
        if self._credentials is None:
            auth = _sdk("google.auth")
            auth_exceptions = _sdk("google.auth.exceptions")
            if self.credentials_file:
                self._credentials = self._load_credentials_file(self.credentials_file)
                return self._credentials
            try:
                creds, _ = auth.default(scopes=_SCOPES)
            except auth_exceptions.DefaultCredentialsError as exc:
                raise AccessDenied(
                    "the store's credential is missing: no Google credentials in this environment (run on GCP "
                    f"with a service account, set GOOGLE_APPLICATION_CREDENTIALS, or give {self.config_field}"
                    ".credentials_file)",
                    source=self.source,
                ) from exc
            self._credentials = creds
        return self._credentials

    def _load_credentials_file(self, path: str) -> Any:
        """Credentials from a key file, loaded by its declared type (never a generic loader that would accept any
        credential configuration): a service-account key, an authorized user, or an external account (workload
        identity federation: file-, URL- or executable-sourced, or AWS)."""

        def unusable(why: str) -> ConfigError:
            return self._config_error("credentials_file", f"{path} {why}")

        try:
            info = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise unusable("does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise unusable(f"cannot be read ({type(exc).__name__})") from None
        except ValueError:
            raise unusable("is not JSON; expected a Google credentials file") from None
        kind = info.get("type") if isinstance(info, dict) else None
        try:
            if kind == "service_account":
                service_account = _sdk("google.oauth2.service_account")
                return service_account.Credentials.from_service_account_info(info, scopes=_SCOPES)
            if kind == "authorized_user":
                user = _sdk("google.oauth2.credentials")
                return user.Credentials.from_authorized_user_info(info, scopes=_SCOPES)
            if kind == "external_account":
                source = info.get("credential_source")
                source = source if isinstance(source, dict) else {}
                if str(source.get("environment_id", "")).startswith("aws"):
                    module = _sdk("google.auth.aws")
                elif "executable" in source:
                    module = _sdk("google.auth.pluggable")
                else:
                    module = _sdk("google.auth.identity_pool")
                return module.Credentials.from_info(info, scopes=_SCOPES)
        except (ValueError, TypeError, KeyError) as exc:
            # the library's message may quote the file's fields (a private key): only say what kind failed
            raise unusable(f"is a {kind} credentials file that cannot be loaded (missing or invalid fields)") from exc
        raise unusable(
            'is not a supported Google credentials file: expected "type" service_account, authorized_user or '
            "external_account"
        )

    def _ssl_credentials(self, grpc: ModuleType) -> Any:
        if self.ca_bundle is None:
            return None
        try:
            roots = Path(self.ca_bundle).read_bytes()
        except OSError as exc:
            raise self._config_error("ca_bundle", f"cannot read the CA bundle {self.ca_bundle}") from exc
        return grpc.ssl_channel_credentials(root_certificates=roots)

    def _build_client(self, *, aio: bool) -> Any:
        self._load_modules()
        grpc = _sdk("grpc")
        sm = _sdk("google.cloud.secretmanager_v1")
        if aio:
            transports = _sdk("google.cloud.secretmanager_v1.services.secret_manager_service.transports.grpc_asyncio")
            transport_cls = transports.SecretManagerServiceGrpcAsyncIOTransport
            client_cls = sm.SecretManagerServiceAsyncClient
        else:
            transports = _sdk("google.cloud.secretmanager_v1.services.secret_manager_service.transports.grpc")
            transport_cls = transports.SecretManagerServiceGrpcTransport
            client_cls = sm.SecretManagerServiceClient
        if self.plaintext:
            assert self.endpoint is not None
            make = grpc.aio.insecure_channel if aio else grpc.insecure_channel
            channel = make(self.endpoint, options=_CHANNEL_OPTIONS)
            return client_cls(transport=transport_cls(host=self.endpoint, channel=channel))

        credentials = self._get_credentials()
        ssl_credentials = self._ssl_credentials(grpc)

        def create_channel(host: str, **kwargs: Any) -> Any:
            kwargs["options"] = [*kwargs.get("options", ()), *_CHANNEL_OPTIONS]
            return transport_cls.create_channel(host, **kwargs)

        def make_transport(**kwargs: Any) -> Any:
            return transport_cls(channel=create_channel, ssl_channel_credentials=ssl_credentials, **kwargs)

        options = {"api_endpoint": self.endpoint} if self.endpoint else None
        return client_cls(credentials=credentials, transport=make_transport, client_options=options)

    def _sync_client(self) -> Any:
        if self._parent is not None:
            return self._parent._sync_client()  # type: ignore[attr-defined]
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._guarded_build(aio=False)
                client = self._client
        return client

    def _prepare(self) -> None:
        """The slow, blocking part of building a client: importing the library (~0.3 s) and resolving credentials
        (ADC may ask the metadata server). The async path runs it in a worker thread, off the event loop."""
        self._load_modules()
        _sdk("google.cloud.secretmanager_v1")
        _sdk("google.cloud.secretmanager_v1.services.secret_manager_service.transports.grpc_asyncio")
        if not self.plaintext:
            self._get_credentials()

    async def _async_client(self) -> Any:
        if self._parent is not None:
            return await self._parent._async_client()  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        if self._aclient is not None and self._aclient_loop is loop:
            return self._aclient
        try:
            await asyncio.to_thread(self._prepare)
        except (ConfigError, ProviderError, ImportError):
            raise
        except Exception as exc:
            raise self._translate(exc, "build the client") from exc
        with self._lock:
            if self._aclient is not None and self._aclient_loop is not loop:
                # a grpc.aio channel belongs to the event loop it was made in: a new loop needs a new client
                self._discard_async_client()
            if self._aclient is None:
                self._aclient = self._guarded_build(aio=True)
                self._aclient_loop = loop
            return self._aclient

    def _guarded_build(self, *, aio: bool) -> Any:
        try:
            return self._build_client(aio=aio)
        except (ConfigError, ProviderError, ImportError):
            raise
        except Exception as exc:
            raise self._translate(exc, "build the client") from exc

    # -- reading ---------------------------------------------------------------------------------------------
    def get_token(self) -> Token:
        client = self._sync_client()
        try:
            response = client.access_secret_version(
                request={"name": self.version_path}, retry=None, timeout=self.timeout
            )
        except Exception as exc:
            raise self._translate(exc, "read") from exc
        return self._token_from(response)

    async def aget_token(self) -> Token:
        client = await self._async_client()
        try:
            response = await client.access_secret_version(
                request={"name": self.version_path}, retry=None, timeout=self.timeout
            )
        except Exception as exc:
            raise self._translate(exc, "read") from exc
        return self._token_from(response)

    def _payload_text(self, response: Any) -> str:
        payload = response.payload
        data = bytes(payload.data)
        if "data_crc32c" in payload:
            assert self._crc32c is not None
            if self._crc32c.value(data) != payload.data_crc32c:
                raise SecretMalformed(
                    "the payload failed its CRC32C integrity check (corrupted in transit or in the store); "
                    "not using it",
                    source=self.source,
                )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretMalformed("the secret version is not UTF-8 text", source=self.source) from None

    def _token_from(self, response: Any) -> Token:
        text = self._payload_text(response)
        value = token_from_text(text, source=self.source, key=self.key, what="the secret version")
        version = str(response.name).rsplit("/", 1)[-1] or None
        logger.debug("read %s (version %s)", self.source, version)
        return Token(value, source=self.source, version=version)

    # -- writing ---------------------------------------------------------------------------------------------
    def _check_writable(self, value: str) -> str:
        if not self.supports_write:
            raise WriteNotSupported(
                f"pinned to version {self.version}: a new version would not be read; set version: latest to rotate",
                source=self.source,
            )
        return new_token_value(value, source=self.source)

    def _payload(self, data: bytes) -> dict[str, Any]:
        self._load_modules()
        assert self._crc32c is not None
        return {"data": data, "data_crc32c": self._crc32c.value(data)}

    def _merge(self, current: str | None, value: str) -> bytes:
        key = self.key or ""
        obj = {} if current is None else json_object(current, source=self.source, key=key, action="write")
        obj[key] = value
        return json.dumps(obj).encode("utf-8")

    def put_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        """A new version (``add_secret_version``). With ``expected``: read ``latest``, compare, then add - Secret
        Manager's versions take no precondition, so a writer between the two calls is not noticed
        (``supports_compare_and_set`` is False; the refresh detects it afterwards by reading back)."""
        value = self._check_writable(value)
        if expected is not None:
            check_expected(self._current_or_none(), expected, source=self.source)
        client = self._sync_client()
        if self.key is None:
            data = value.encode("utf-8")
        else:
            try:
                current: str | None = self._payload_text(
                    client.access_secret_version(
                        request={"name": f"{self.secret_path}/versions/latest"}, retry=None, timeout=self.timeout
                    )
                )
            except Exception as exc:
                current = self._current_or_raise(exc)
            data = self._merge(current, value)
        request = {"parent": self.secret_path, "payload": self._payload(data)}
        try:
            try:
                created = client.add_secret_version(request=request, retry=None, timeout=self.timeout)
            except Exception as exc:
                if not self._create_missing(exc):
                    raise
                try:
                    client.create_secret(request=self._create_request(), retry=None, timeout=self.timeout)
                except Exception as again:
                    if not self._already_exists(again):
                        raise
                created = client.add_secret_version(request=request, retry=None, timeout=self.timeout)
        except Exception as exc:
            raise self._translate(exc, "write") from exc
        return self._written(created)

    async def aput_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        value = self._check_writable(value)
        if expected is not None:
            check_expected(await self._acurrent_or_none(), expected, source=self.source)
        client = await self._async_client()
        if self.key is None:
            data = value.encode("utf-8")
        else:
            try:
                current: str | None = self._payload_text(
                    await client.access_secret_version(
                        request={"name": f"{self.secret_path}/versions/latest"}, retry=None, timeout=self.timeout
                    )
                )
            except Exception as exc:
                current = self._current_or_raise(exc)
            data = self._merge(current, value)
        request = {"parent": self.secret_path, "payload": self._payload(data)}
        try:
            try:
                created = await client.add_secret_version(request=request, retry=None, timeout=self.timeout)
            except Exception as exc:
                if not self._create_missing(exc):
                    raise
                try:
                    await client.create_secret(request=self._create_request(), retry=None, timeout=self.timeout)
                except Exception as again:
                    if not self._already_exists(again):
                        raise
                created = await client.add_secret_version(request=request, retry=None, timeout=self.timeout)
        except Exception as exc:
            raise self._translate(exc, "write") from exc
        return self._written(created)

    @property
    def supports_delete(self) -> bool:
        return True

    def delete_secret(self) -> None:
        """DeleteSecret on ``projects/P/secrets/S``: the secret and every version of it are gone at once (Secret
        Manager keeps no recoverable copy; the version pin does not matter). An unknown secret is
        :class:`~tokenstore.SecretNotFound`; the identity needs ``secretmanager.secrets.delete``."""
        client = self._sync_client()
        try:
            client.delete_secret(request={"name": self.secret_path}, retry=None, timeout=self.timeout)
        except Exception as exc:
            raise self._translate(exc, "delete") from exc
        logger.info("deleted %s", self.secret_path)

    async def adelete_secret(self) -> None:
        client = await self._async_client()
        try:
            await client.delete_secret(request={"name": self.secret_path}, retry=None, timeout=self.timeout)
        except Exception as exc:
            raise self._translate(exc, "delete") from exc
        logger.info("deleted %s", self.secret_path)

    def _create_missing(self, exc: Exception) -> bool:
        """A tenant's secret that does not exist yet is created by its first put_token (onboarding)."""
        self._load_modules()
        ex = self._exceptions
        assert ex is not None
        if self._parent is None or not isinstance(exc, ex.NotFound):
            return False
        logger.info("creating %s for a new tenant (CreateSecret, automatic replication)", self.secret_path)
        return True

    def _already_exists(self, exc: Exception) -> bool:
        ex = self._exceptions
        assert ex is not None
        return isinstance(exc, ex.AlreadyExists)  # another replica onboarded it at the same moment

    def _create_request(self) -> dict[str, Any]:
        return {
            "parent": f"projects/{self.project}",
            "secret_id": self.secret,
            "secret": {"replication": {"automatic": {}}},
        }

    def _current_or_raise(self, exc: Exception) -> str | None:
        """Reading the JSON object to update failed: a secret with no version yet starts a new object."""
        if isinstance(exc, ProviderError):
            raise exc
        error = self._translate(exc, "read")
        if isinstance(error, SecretNotFound):
            return None
        raise error from exc

    def _written(self, created: Any) -> str:
        version = str(created.name).rsplit("/", 1)[-1]
        logger.info("wrote a new version of %s: version %s", self.secret_path, version)
        return version

    # -- errors ------------------------------------------------------------------------------------------------
    def _translate(self, exc: BaseException, action: str) -> Exception:
        """Our error for a foreign one. Only status names are used: the service's messages are never copied."""
        if isinstance(exc, (ProviderError, ConfigError)):
            return exc
        self._load_modules()
        ex = self._exceptions
        assert ex is not None
        auth_exceptions = _sdk("google.auth.exceptions")
        what = "the secret version" if action == "read" else "the secret"
        source = self.source if action == "read" else f"gcp:{self.secret_path}"
        if isinstance(exc, ex.GoogleAPICallError):
            status = _status_name(exc)
            if isinstance(exc, ex.NotFound):
                if action == "delete":
                    return SecretNotFound(
                        f"{what} was not found ({status}): already deleted, or check project and secret",
                        source=source,
                    )
                return SecretNotFound(
                    f"{what} was not found ({status}): check project, secret and version, and that the secret has "
                    "a version",
                    source=source,
                )
            if isinstance(exc, ex.Forbidden):
                role = {
                    "read": "roles/secretmanager.secretAccessor",
                    "list secrets": "secretmanager.secrets.list on the project (roles/secretmanager.viewer)",
                    "delete": "secretmanager.secrets.delete (roles/secretmanager.admin)",
                }.get(action, "roles/secretmanager.secretVersionAdder")
                return AccessDenied(f"permission denied ({status}): the identity needs {role} on it", source=source)
            if isinstance(exc, ex.Unauthorized):
                return AccessDenied(f"the credentials were rejected ({status})", source=source)
            if isinstance(exc, ex.TooManyRequests):
                return BackendUnavailable(
                    f"throttled by Secret Manager ({status})", source=source, retry_after=_retry_delay(exc)
                )
            if isinstance(exc, ex.FailedPrecondition):
                return SecretMalformed(
                    f"{what} cannot be used ({status}): it is disabled or destroyed; enable it, or point version "
                    "at an enabled one",
                    source=source,
                )
            if isinstance(exc, ex.DeadlineExceeded):
                return BackendUnavailable(f"no answer within the timeout ({self.timeout:g}s)", source=source)
            transient = (ex.ServiceUnavailable, ex.InternalServerError, ex.ServerError, ex.Aborted, ex.Cancelled)
            if isinstance(exc, transient):
                return BackendUnavailable(
                    f"Secret Manager is unavailable ({status})", source=source, retry_after=_retry_delay(exc)
                )
            if isinstance(exc, ex.BadRequest):
                return ProviderError(f"Secret Manager rejected the request to {action} ({status})", source=source)
            return ProviderError(f"could not {action} {what} ({status})", source=source)
        if isinstance(exc, ex.RetryError):
            return BackendUnavailable(f"Secret Manager did not answer ({type(exc).__name__})", source=source)
        if isinstance(exc, auth_exceptions.DefaultCredentialsError):
            return AccessDenied(
                "the store's credential is missing: no usable Google credentials (run on GCP with a service "
                f"account, set GOOGLE_APPLICATION_CREDENTIALS, or give {self.config_field}.credentials_file)",
                source=source,
            )
        if isinstance(exc, auth_exceptions.TransportError):
            return BackendUnavailable(
                "could not reach Google's token service to refresh the credentials", source=source
            )
        if isinstance(exc, auth_exceptions.RefreshError):
            return AccessDenied("could not obtain an access token with the configured credentials", source=source)
        return ProviderError(
            f"unexpected error from the Secret Manager client while trying to {action} ({type(exc).__name__})",
            source=source,
        )

    # -- many tenants: one secret per tenant, one client (sync, and one async) for all ---------------------
    tenant_options = ("secret",)

    def tenant_key_problem(self, tenant: str) -> str | None:
        if "." in tenant:
            return "a Secret Manager secret id holds only letters, digits, '_' and '-'"
        return None

    def named(self, option: str, name: str) -> GcpBackend:
        secret_path = f"projects/{self.project}/secrets/{name}"
        version_path = f"{secret_path}/versions/{self.version}"
        return self._view(
            secret=name,
            secret_path=secret_path,
            version_path=version_path,
            source=f"gcp:{version_path}" + (f"#{self.key}" if self.key else ""),
        )

    def _list_request(self, prefix: str, page_token: str) -> dict[str, Any]:
        request: dict[str, Any] = {"parent": f"projects/{self.project}", "page_size": 250, "page_token": page_token}
        if prefix:
            request["filter"] = f'name:"{prefix}"'
        return request

    @staticmethod
    def _names(response: Any) -> list[str]:
        return [str(secret.name).rpartition("/secrets/")[2] for secret in response.secrets]

    def list_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        """ListSecrets in the project with a ``name:"<prefix>"`` filter (names containing it), page by page."""
        client = self._sync_client()
        names: list[str] = []
        token = ""
        try:
            while True:
                response = client.list_secrets(
                    request=self._list_request(prefix, token), retry=None, timeout=self.timeout
                )
                names.extend(self._names(response))
                token = response.next_page_token
                if not token:
                    return names
        except Exception as exc:
            raise self._translate(exc, "list secrets") from exc

    async def alist_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        client = await self._async_client()
        names: list[str] = []
        token = ""
        try:
            while True:
                response = await client.list_secrets(
                    request=self._list_request(prefix, token), retry=None, timeout=self.timeout
                )
                names.extend(self._names(response))
                token = response.next_page_token
                if not token:
                    return names
        except Exception as exc:
            raise self._translate(exc, "list secrets") from exc

    # -- closing ---------------------------------------------------------------------------------------------
    def _discard_async_client(self) -> None:
        """Close the async client on its own loop if that loop still runs; otherwise just drop it."""
        client, loop = self._aclient, self._aclient_loop
        self._aclient = self._aclient_loop = None
        if client is None or loop is None or loop.is_closed():
            return
        coro = client.transport.close()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(coro)
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(coro, loop)
        else:
            coro.close()

    def close(self) -> None:
        if self._parent is not None:
            return  # a tenant's view: the clients belong to the backend it was made from
        with self._lock:
            client, self._client = self._client, None
            self._discard_async_client()
        if client is not None:
            try:
                client.transport.close()
            except Exception:  # closing must not fail
                logger.debug("closing the Secret Manager channel failed", exc_info=True)

    async def aclose(self) -> None:
        if self._parent is not None:
            return
        with self._lock:
            aclient, loop = self._aclient, self._aclient_loop
            if aclient is not None and loop is asyncio.get_running_loop():
                self._aclient = self._aclient_loop = None
            else:
                aclient = None
        if aclient is not None:
            try:
                await aclient.transport.close()
            except Exception:
                logger.debug("closing the async Secret Manager channel failed", exc_info=True)
        self.close()


def _status_name(exc: Any) -> str:
    code = getattr(exc, "grpc_status_code", None)
    if code is not None:
        return str(code.name)
    return f"HTTP {exc.code}" if getattr(exc, "code", None) else type(exc).__name__


def _retry_delay(exc: Any) -> float | None:
    """The delay a ``google.rpc.RetryInfo`` detail asks for (Secret Manager sends one with RESOURCE_EXHAUSTED)."""
    for detail in getattr(exc, "details", None) or ():
        delay = getattr(detail, "retry_delay", None)
        if delay is not None and hasattr(delay, "seconds"):
            seconds = float(delay.seconds) + float(delay.nanos) / 1e9
            if seconds > 0:
                return seconds
    return None

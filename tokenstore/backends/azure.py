"""``azure``: Azure Key Vault secrets, through azure-keyvault-secrets and azure-identity (sync and aio clients).

Reads the secret ``name`` from ``vault_url`` (the latest version, or a pinned version id); ``put_token`` sets a
new version (``set_secret``); ``delete_secret`` (offboarding) deletes it (``begin_delete_secret``: soft-delete,
recoverable for the vault's retention period).

* Credentials: ``DefaultAzureCredential`` unless ``credential.method`` picks ``client_secret`` (the secret from
  ``{env: VAR}`` / ``{file: PATH}``, never a literal), ``managed_identity`` or ``workload_identity``.
* A secret that is disabled, expired (``exp``) or not yet valid (``nbf``) is refused with ``SecretMalformed``
  naming it: Key Vault itself answers 403 ``SecretDisabled`` for a disabled secret, and the client library does
  not look at ``exp``/``nbf`` at all.
* ``ca_bundle`` trusts a private CA (for the vault and the token endpoint); ``verify_challenge_resource`` (on by
  default) checks that the vault's authentication challenge names a resource matching ``vault_url``.
* Retries: none in the Key Vault client (``retry_total=0``), short ones for token acquisition; the caching layer
  owns retrying, honouring ``Retry-After`` on 429/503.
* The async path uses the aio clients (``azure.keyvault.secrets.aio`` over aiohttp, ``azure.identity.aio``).

The client libraries are imported when the first client is built, never at import time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._config import SecretRef, Section
from .._errors import (
    AccessDenied,
    BackendNotInstalled,
    BackendUnavailable,
    ConfigError,
    ProviderError,
    SecretMalformed,
    SecretNotFound,
    WriteNotSupported,
)
from .._masking import masked_logger
from .._parsing import new_token_value, one_word
from .._provider import Backend, check_expected
from .._registry import import_sdk
from .._token import Token

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["AzureBackend", "AzureCredentialConfig"]

logger = masked_logger("tokenstore.backends.azure")

_OPTIONS = (
    "vault_url",
    "name",
    "version",
    "credential",
    "ca_bundle",
    "timeout",
    "verify_challenge_resource",
    "api_version",
)
_NAME = re.compile(r"[0-9A-Za-z-]{1,127}\Z")
_VERSION = re.compile(r"[0-9A-Za-z]{1,64}\Z")
_GUIDISH = re.compile(r"[0-9A-Za-z.\-]{1,128}\Z")  # tenant / client ids: GUIDs, or a tenant's domain name
_METHODS = ("default", "client_secret", "managed_identity", "workload_identity")
_METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "default": ("method", "client_id", "authority", "disable_instance_discovery"),
    "client_secret": ("method", "tenant_id", "client_id", "client_secret", "authority", "disable_instance_discovery"),
    "managed_identity": ("method", "client_id"),
    "workload_identity": ("method", "tenant_id", "client_id", "token_file", "authority", "disable_instance_discovery"),
}
#: token acquisition: two quick retries at most (azure-core's default is 10, backing off up to 2 minutes)
_CREDENTIAL_RETRY = {"retry_total": 2, "retry_backoff_factor": 0.5, "retry_backoff_max": 4}


def _sdk(module: str) -> ModuleType:
    return import_sdk(module, backend="azure", extra="azure")


@dataclass(frozen=True)
class AzureCredentialConfig:
    """How the backend authenticates to Key Vault (``credential:`` in config)."""

    #: default | client_secret | managed_identity | workload_identity
    method: str = "default"
    tenant_id: str | None = None
    #: the app (client) id; for managed identity and default, a user-assigned identity's client id
    client_id: str | None = None
    #: client_secret only: where the secret is (an environment variable or a file)
    client_secret: SecretRef | None = None
    #: workload_identity: the projected service-account token (default: $AZURE_FEDERATED_TOKEN_FILE)
    token_file: str | None = None
    #: the Microsoft Entra authority host (sovereign clouds, Azure Stack); default login.microsoftonline.com
    authority: str | None = None
    #: skip Microsoft Entra instance discovery (Azure Stack, private authorities)
    disable_instance_discovery: bool = False

    @classmethod
    def from_section(cls, section: Section) -> AzureCredentialConfig:
        method = section.get_str("method", "default", choices=_METHODS)
        section.reject_unknown(_METHOD_OPTIONS[method])
        tenant_id = section.get_str("tenant_id", None)
        client_id = section.get_str("client_id", None)
        for key, value in (("tenant_id", tenant_id), ("client_id", client_id)):
            if value is not None and not _GUIDISH.match(value):
                section.fail(key, "must be an id (a GUID) or a tenant domain name")
        client_secret = None
        if method == "client_secret":
            if tenant_id is None:
                section.fail("tenant_id", "required for method client_secret")
            if client_id is None:
                section.fail("client_id", "required for method client_secret")
            client_secret = section.get_secret_ref("client_secret")
        authority = section.get_str("authority", None)
        if authority is not None and "://" in authority and not authority.startswith("https://"):
            section.fail("authority", "must be an https:// URL or a host name")
        return cls(
            method=method,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            token_file=section.get_path("token_file", None),
            authority=authority,
            disable_instance_discovery=section.get_bool("disable_instance_discovery", False),
        )

    def build(self, *, aio: bool, ca_bundle: str | None, source: str | None = None) -> Any:
        """The azure-identity credential (from ``azure.identity.aio`` when ``aio``). No network I/O."""
        identity = _sdk("azure.identity.aio" if aio else "azure.identity")
        kwargs: dict[str, Any] = dict(_CREDENTIAL_RETRY)
        if ca_bundle is not None:
            kwargs["connection_verify"] = ca_bundle
        if self.method == "managed_identity":
            return identity.ManagedIdentityCredential(client_id=self.client_id, **kwargs)
        if self.authority is not None:
            kwargs["authority"] = self.authority
        if self.disable_instance_discovery:
            kwargs["disable_instance_discovery"] = True
        if self.method == "client_secret":
            assert self.client_secret is not None and self.tenant_id is not None and self.client_id is not None
            return identity.ClientSecretCredential(
                self.tenant_id, self.client_id, self.client_secret.read(source=source), **kwargs
            )
        if self.method == "workload_identity":
            return identity.WorkloadIdentityCredential(
                tenant_id=self.tenant_id, client_id=self.client_id, token_file_path=self.token_file, **kwargs
            )
        if self.client_id is not None:
            kwargs["managed_identity_client_id"] = self.client_id
        return identity.DefaultAzureCredential(**kwargs)


class _AsyncFromSync:
    """Lets a sync ``TokenCredential`` given in code serve the aio client too (each call in a worker thread)."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> _AsyncFromSync:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class AzureBackend(Backend):
    """A Key Vault secret (latest or a version), sync and async; writes set a new version."""

    name = "azure"
    extra = "azure"

    def __init__(
        self,
        vault_url: str,
        name: str,
        *,
        version: str | None = None,
        credential: AzureCredentialConfig | Any = None,
        async_credential: Any = None,
        ca_bundle: str | Path | None = None,
        timeout: float = 10.0,
        verify_challenge_resource: bool = True,
        api_version: str | None = None,
    ) -> None:
        """``credential``: an :class:`AzureCredentialConfig` (default: ``DefaultAzureCredential``), or a ready
        azure-core ``TokenCredential``; then ``async_credential`` is its ``AsyncTokenCredential`` twin (without
        one, the sync credential is called in a worker thread). Credentials passed in are not closed by us."""
        if version in ("", "latest"):
            version = None
        self.vault_url = vault_url.rstrip("/")
        self.secret_name = name
        self.version = version
        self.ca_bundle = str(ca_bundle) if ca_bundle is not None else None
        self.timeout = float(timeout)
        self.verify_challenge_resource = verify_challenge_resource
        self.api_version = api_version
        if credential is None:
            credential = AzureCredentialConfig()
        self._credential_config = credential if isinstance(credential, AzureCredentialConfig) else None
        self._given_credential = None if self._credential_config is not None else credential
        self._given_async_credential = async_credential
        self.source = f"azure:{self.vault_url}/secrets/{name}" + (f"/{version}" if version else "")
        self._lock = threading.Lock()
        self._client: Any = None
        self._credential: Any = None  # built by us: closed by us
        self._aclient: Any = None
        self._acredential: Any = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[Any] = set()
        self._exceptions: ModuleType | None = None
        self.config_field = "token.azure"
        self.config_source: str | None = None

    # -- configuration ---------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, section: Section) -> AzureBackend:
        section.reject_unknown(_OPTIONS)
        vault_url = section.get_str("vault_url").strip()
        parts = urlsplit(vault_url)
        if parts.scheme != "https" or not parts.hostname:
            section.fail("vault_url", "must be the vault's https:// URL, e.g. https://my-vault.vault.azure.net")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            section.fail(
                "vault_url", "must be the vault's base URL only (no path), e.g. https://my-vault.vault.azure.net"
            )
        name = section.get_str("name")
        if not _NAME.match(name):
            section.fail("name", "must be a Key Vault secret name (letters, digits and -, up to 127)")
        version = section.get_str("version", None, coerce_numbers=True)
        if version is not None:
            version = version.strip()
            if version == "latest":
                version = None
            elif not _VERSION.match(version):
                section.fail("version", "must be 'latest' or a version id (32 hex characters)")
        raw_credential = section.raw("credential")
        if isinstance(raw_credential, str):
            credential_section = Section(
                {"method": raw_credential}, path=section.field("credential"), source=section.source
            )
        else:
            credential_section = section.get_section("credential")
        credential = AzureCredentialConfig.from_section(credential_section)
        ca_bundle = section.get_path("ca_bundle", None)
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            section.fail("ca_bundle", f"file {ca_bundle} does not exist")
        if credential.token_file is not None and not Path(credential.token_file).is_file():
            credential_section.fail("token_file", f"file {credential.token_file} does not exist")
        backend = cls(
            vault_url,
            name,
            version=version,
            credential=credential,
            ca_bundle=ca_bundle,
            timeout=section.get_float("timeout", 10.0, min=0.001),
            verify_challenge_resource=section.get_bool("verify_challenge_resource", True),
            api_version=section.get_str("api_version", None, coerce_numbers=True),
        )
        backend.config_field = section.path
        backend.config_source = section.source
        return backend

    def _config_error(self, option: str | None, message: str) -> ConfigError:
        field = f"{self.config_field}.{option}" if option else self.config_field
        return ConfigError(message, source=self.config_source, field=field)

    @property
    def supports_write(self) -> bool:
        return self.version is None

    # -- clients (built lazily, once) ---------------------------------------------------------------------
    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "verify_challenge_resource": self.verify_challenge_resource,
            "retry_total": 0,
            "connection_timeout": self.timeout,
            "read_timeout": self.timeout,
        }
        if self.ca_bundle is not None:
            kwargs["connection_verify"] = self.ca_bundle
        if self.api_version is not None:
            kwargs["api_version"] = self.api_version
        return kwargs

    def _make_credential(self, *, aio: bool) -> Any:
        assert self._credential_config is not None
        try:
            return self._credential_config.build(aio=aio, ca_bundle=self.ca_bundle, source=self.source)
        except (ConfigError, ImportError):
            raise
        except ValueError as exc:  # e.g. workload identity without tenant/client/token file in config or env
            raise self._config_error(
                "credential",
                f"cannot set up the {self._credential_config.method} credential ({type(exc).__name__}): give "
                "tenant_id, client_id (and token_file) or set AZURE_TENANT_ID / AZURE_CLIENT_ID / "
                "AZURE_FEDERATED_TOKEN_FILE",
            ) from exc

    def _load_modules(self, *, aio: bool) -> None:
        self._exceptions = _sdk("azure.core.exceptions")
        if aio:
            try:
                import_sdk("aiohttp", backend="azure", extra="azure")
            except BackendNotInstalled as exc:
                raise BackendNotInstalled("azure", "azure", missing="aiohttp (needed by the async path)") from exc
            _sdk("azure.keyvault.secrets.aio")
        else:
            _sdk("azure.keyvault.secrets")

    def _build(self, *, aio: bool) -> tuple[Any, Any]:
        """(client, credential we built or None)."""
        self._load_modules(aio=aio)
        secrets = _sdk("azure.keyvault.secrets.aio" if aio else "azure.keyvault.secrets")
        owned = None
        if self._credential_config is not None:
            credential = owned = self._make_credential(aio=aio)
        elif aio:
            credential = self._given_async_credential or _AsyncFromSync(self._given_credential)
        else:
            credential = self._given_credential
        try:
            client = secrets.SecretClient(self.vault_url, credential, **self._client_kwargs())
        except (ValueError, NotImplementedError) as exc:
            raise self._config_error(None, f"the Key Vault client refused the options ({type(exc).__name__})") from exc
        return client, owned

    def _sync_client(self) -> Any:
        if self._parent is not None:
            return self._parent._sync_client()  # type: ignore[attr-defined]
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client, self._credential = self._build(aio=False)
                client = self._client
        return client

    async def _async_client(self) -> Any:
        if self._parent is not None:
            return await self._parent._async_client()  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        if self._aclient is not None and self._aclient_loop is loop:
            return self._aclient
        await asyncio.to_thread(self._load_modules, aio=True)  # importing takes ~0.25 s: not on the loop
        with self._lock:
            if self._aclient is not None and self._aclient_loop is not loop:
                # an aiohttp session belongs to the event loop it was made in: a new loop needs a new client
                self._discard_async_client()
            if self._aclient is None:
                self._aclient, self._acredential = self._build(aio=True)
                self._aclient_loop = loop
            return self._aclient

    # -- many tenants: one secret per tenant, one client and credential for all -------------------------------
    tenant_options = ("name",)

    def tenant_key_problem(self, tenant: str) -> str | None:
        if not _NAME.match(tenant):
            return "a Key Vault secret name holds only letters, digits and '-'"
        if tenant != tenant.lower():
            return (
                "Key Vault secret names are case-insensitive: use lower-case tenant keys, so that two tenants can "
                "never share a secret"
            )
        return None

    def named(self, option: str, name: str) -> AzureBackend:
        return self._view(
            secret_name=name,
            source=f"azure:{self.vault_url}/secrets/{name}" + (f"/{self.version}" if self.version else ""),
        )

    def list_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        """list_properties_of_secrets (Key Vault's GET /secrets, paged by nextLink), names with the prefix."""
        client = self._sync_client()
        try:
            names = [str(p.name) for p in client.list_properties_of_secrets(max_page_size=25)]
        except Exception as exc:
            raise self._translate(exc, "list") from exc
        return [n for n in names if n.lower().startswith(prefix.lower())]

    async def alist_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        client = await self._async_client()
        try:
            names = [str(p.name) async for p in client.list_properties_of_secrets(max_page_size=25)]
        except Exception as exc:
            raise self._translate(exc, "list") from exc
        return [n for n in names if n.lower().startswith(prefix.lower())]

    # -- reading ---------------------------------------------------------------------------------------------
    def get_token(self) -> Token:
        client = self._sync_client()
        try:
            secret = client.get_secret(self.secret_name, self.version)
        except Exception as exc:
            raise self._translate(exc, "read") from exc
        return self._token_from(secret)

    async def aget_token(self) -> Token:
        client = await self._async_client()
        try:
            secret = await client.get_secret(self.secret_name, self.version)
        except Exception as exc:
            raise self._translate(exc, "read") from exc
        return self._token_from(secret)

    def _token_from(self, secret: Any) -> Token:
        props = secret.properties
        now = dt.datetime.now(dt.timezone.utc)
        if props.enabled is False:
            raise SecretMalformed(
                "the secret is disabled in Key Vault: enable it, or point version at an enabled one",
                source=self.source,
            )
        expires = _utc(props.expires_on)
        if expires is not None and expires <= now:
            raise SecretMalformed(
                f"the secret expired at {expires.isoformat(timespec='seconds')} (its exp attribute): set a new "
                "version or extend its expiry",
                source=self.source,
            )
        not_before = _utc(props.not_before)
        if not_before is not None and not_before > now:
            raise SecretMalformed(
                f"the secret is not valid before {not_before.isoformat(timespec='seconds')} (its nbf attribute)",
                source=self.source,
            )
        value = one_word(secret.value if isinstance(secret.value, str) else "", source=self.source)
        logger.debug("read %s (version %s)", self.source, props.version)
        return Token(value, source=self.source, version=props.version, expires_at=expires)

    # -- writing ---------------------------------------------------------------------------------------------
    def _check_writable(self, value: str) -> str:
        if not self.supports_write:
            raise WriteNotSupported(
                f"pinned to version {self.version}: a new version would not be read; remove version to rotate",
                source=self.source,
            )
        return new_token_value(value, source=self.source)

    def put_token(
        self, value: str, *, expected: Token | str | None = None, expires_at: dt.datetime | None = None
    ) -> str | None:
        """A new version (``set_secret``). With ``expected``: read, compare, then write - Key Vault has no
        conditional write, so a writer between the two calls is not noticed (``supports_compare_and_set`` is
        False; the refresh detects it afterwards by reading back). ``expires_at`` becomes the version's ``exp``
        attribute (``expires_on``): give the token's own expiry, and Key Vault's ``SecretNearExpiry`` event
        fires 30 days before it."""
        value = self._check_writable(value)
        options = _expiry(expires_at)
        if expected is not None:
            check_expected(self._current_or_none(), expected, source=self.source)
        client = self._sync_client()
        try:
            secret = client.set_secret(self.secret_name, value, **options)
        except Exception as exc:
            raise self._translate(exc, "write") from exc
        return self._written(secret)

    async def aput_token(
        self, value: str, *, expected: Token | str | None = None, expires_at: dt.datetime | None = None
    ) -> str | None:
        """See :meth:`put_token`."""
        value = self._check_writable(value)
        options = _expiry(expires_at)
        if expected is not None:
            check_expected(await self._acurrent_or_none(), expected, source=self.source)
        client = await self._async_client()
        try:
            secret = await client.set_secret(self.secret_name, value, **options)
        except Exception as exc:
            raise self._translate(exc, "write") from exc
        return self._written(secret)

    @property
    def supports_delete(self) -> bool:
        return True

    def delete_secret(self) -> None:
        """Delete the secret, every version (``begin_delete_secret``: ``DELETE /secrets/{name}``).

        Deleted rather than disabled: a disabled secret is still listed, so a fleet would keep seeing the tenant
        (and ``check --all`` report it broken); a deleted one leaves the listing and reads as not found at once.
        With soft-delete on (every vault now) it stays recoverable (and its name reserved: 409 until purged or
        recovered) for the vault's retention period, like AWS's recovery window. The poller is not waited on:
        Key Vault answers the DELETE once the secret is gone from ``/secrets``, and waiting would poll
        ``/deletedsecrets`` (which needs secrets/get on deleted secrets) for nothing. The async path runs this in a
        worker thread (the aio client's ``delete_secret`` always polls)."""
        client = self._sync_client()
        try:
            client.begin_delete_secret(self.secret_name)
        except Exception as exc:
            raise self._translate(exc, "delete") from exc
        logger.info("deleted %s", self.source)

    def _written(self, secret: Any) -> str | None:
        version = secret.properties.version
        logger.info("wrote a new version of %s: %s", self.source, version)
        return str(version) if version else None

    # -- errors ------------------------------------------------------------------------------------------------
    def _translate(self, exc: BaseException, action: str) -> Exception:
        """Our error for a foreign one: from status codes and Key Vault's error codes, never its messages."""
        if isinstance(exc, (ProviderError, ConfigError, BackendNotInstalled)):
            return exc
        ex = self._exceptions or _sdk("azure.core.exceptions")
        source = self.source
        if isinstance(exc, ex.ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
            # raised by the credential, before Key Vault was asked
            if _caused_by_connection_error(exc, ex):
                return BackendUnavailable(
                    "could not reach the Microsoft Entra token endpoint to get a token", source=source
                )
            kind = type(exc).__name__
            if kind == "CredentialUnavailableError":
                return AccessDenied(
                    "the store's credential is missing: no Azure credential is available in this environment "
                    f"({kind}); configure credential: in the config",
                    source=source,
                )
            hint = "the token request was refused: check tenant_id, client_id and the client secret"
            return AccessDenied(f"could not get a token for Key Vault ({kind}): {hint}", source=source)
        if isinstance(exc, ex.HttpResponseError) and getattr(exc, "status_code", None) is not None:
            status = int(exc.status_code)
            code, inner = _error_codes(exc)
            label = f"HTTP {status}" + (f" {code}" if code else "") + (f"/{inner}" if inner else "")
            if status == 404:
                what = "secret version" if self.version and action != "delete" else "secret"
                return SecretNotFound(f"no such {what} in the vault ({label})", source=source)
            if status == 403 and (inner == "SecretDisabled" or code == "SecretDisabled"):
                return SecretMalformed(
                    f"the secret is disabled in Key Vault ({label}): enable it, or point version at an enabled one",
                    source=source,
                )
            if status == 401:
                return AccessDenied(f"Key Vault rejected the token ({label})", source=source)
            if status == 403:
                need = {"read": "get", "list": "list", "delete": "delete"}.get(action, "set")
                role = "User" if need in ("get", "list") else "Officer"
                return AccessDenied(
                    f"permission denied ({label}): the identity needs secrets/{need} on the vault (RBAC role "
                    f"Key Vault Secrets {role} or an access policy)",
                    source=source,
                )
            if status in (408, 429) or status >= 500:
                what = "throttled by Key Vault" if status == 429 else "Key Vault is unavailable"
                return BackendUnavailable(f"{what} ({label})", source=source, retry_after=_retry_after(exc))
            if status == 409:
                return ProviderError(
                    f"Key Vault refused to {action} the secret ({label}): it may be deleted and awaiting purge or "
                    "recovery",
                    source=source,
                )
            return ProviderError(f"Key Vault refused to {action} the secret ({label})", source=source)
        if isinstance(exc, (ex.ServiceRequestError, ex.ServiceResponseError)):
            timed_out = "Timeout" in type(exc).__name__
            why = f"no answer within the timeout ({self.timeout:g}s)" if timed_out else "could not connect"
            return BackendUnavailable(
                f"Key Vault (or its token endpoint) is unreachable: {why} ({type(exc).__name__})", source=source
            )
        if isinstance(exc, ex.AzureError):
            return ProviderError(f"could not {action} the secret ({type(exc).__name__})", source=source)
        if isinstance(exc, ValueError) and "challenge" in str(exc).lower():
            return self._config_error(
                "verify_challenge_resource",
                "the vault's authentication challenge names a resource that does not match vault_url; if this "
                "host really is your vault (a private endpoint or a local test server) set "
                "verify_challenge_resource: false",
            )
        return ProviderError(
            f"unexpected error from the Key Vault client while trying to {action} ({type(exc).__name__})",
            source=source,
        )

    # -- closing ---------------------------------------------------------------------------------------------
    def _discard_async_client(self) -> None:
        client, credential, loop = self._aclient, self._acredential, self._aclient_loop
        self._aclient = self._acredential = self._aclient_loop = None
        if client is None or loop is None or loop.is_closed():
            return

        async def close() -> None:
            await client.close()
            if credential is not None:
                await credential.close()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), loop)

    def close(self) -> None:
        if self._parent is not None:
            return  # a tenant's view: the clients belong to the backend it was made from
        with self._lock:
            client, credential = self._client, self._credential
            self._client = self._credential = None
            self._discard_async_client()
        for thing in (client, credential):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    logger.debug("closing the Key Vault client failed", exc_info=True)

    async def aclose(self) -> None:
        if self._parent is not None:
            return
        with self._lock:
            client, credential = None, None
            if self._aclient is not None and self._aclient_loop is asyncio.get_running_loop():
                client, credential = self._aclient, self._acredential
                self._aclient = self._acredential = self._aclient_loop = None
        for thing in (client, credential):
            if thing is not None:
                try:
                    await thing.close()
                except Exception:
                    logger.debug("closing the async Key Vault client failed", exc_info=True)
        self.close()


def _expiry(expires_at: dt.datetime | None) -> dict[str, Any]:
    if expires_at is None:
        return {}
    if not isinstance(expires_at, dt.datetime):
        raise TypeError("expires_at must be a datetime")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware (UTC)")
    return {"expires_on": expires_at.astimezone(dt.timezone.utc)}


def _utc(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _error_codes(exc: Any) -> tuple[str | None, str | None]:
    """Key Vault's error code and inner error code (``Forbidden`` / ``SecretDisabled``), never its message."""
    code = inner = None
    error = getattr(exc, "error", None)
    if error is not None:
        code = getattr(error, "code", None)
        innererror = getattr(error, "innererror", None) or {}
        if isinstance(innererror, dict):
            inner = innererror.get("code")
    if code is None or inner is None:
        try:
            body = exc.response.json()
        except Exception:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            code = code or err.get("code")
            nested = err.get("innererror") or err.get("innerError")
            if isinstance(nested, dict):
                inner = inner or nested.get("code")
    safe = re.compile(r"[A-Za-z0-9_.]{1,64}\Z")
    code = code if isinstance(code, str) and safe.match(code) else None
    inner = inner if isinstance(inner, str) and safe.match(inner) else None
    return code, inner


def _retry_after(exc: Any) -> float | None:
    """Seconds from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms`` / ``x-ms-retry-after-ms``."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def _caused_by_connection_error(exc: BaseException, ex: Any) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ex.ServiceRequestError, ex.ServiceResponseError, ConnectionError, TimeoutError)):
            return True
        name = type(current).__name__
        if name in ("ConnectionError", "ConnectTimeout", "ClientConnectorError", "ServerDisconnectedError"):
            return True
        current = current.__cause__ or current.__context__
    return False

"""``aws``: the token in AWS Secrets Manager or in SSM Parameter Store (a SecureString), through boto3.

One backend, two services (``service: secretsmanager | ssm``, inferred from ``secret_id`` / ``parameter``):

* Secrets Manager - ``secret_id`` (name or ARN), read at ``version_stage`` (default ``AWSCURRENT``) or a
  pinned ``version_id``; the secret string is the token, or a JSON object whose ``key`` holds it.
  ``Token.version`` is the VersionId. ``put_token`` calls ``PutSecretValue``: the new version becomes
  ``AWSCURRENT`` (the old one ``AWSPREVIOUS``); with ``key``, the other fields of the JSON object are kept.
* SSM Parameter Store - ``parameter`` (name or ARN), decrypted (``WithDecryption``), optionally pinned to
  ``parameter_version``; ``Token.version`` is the parameter's Version. ``put_token`` calls ``PutParameter``
  (``Overwrite``, type ``SecureString``, ``kms_key_id`` if given) and returns the new Version.

Credentials come from boto3's own chain (environment, ``profile``, web identity, container or instance
role); ``assume_role`` adds an STS AssumeRole on top, refreshed before it expires. The boto3 client is built on
first use, never in :meth:`AwsBackend.from_config`, with ``connect_timeout``/``read_timeout`` and a single
attempt (``retries: total_max_attempts 1``): the caching layer owns retrying, with backoff.

Errors: throttling, 5xx, timeouts and connection failures -> :class:`~tokenstore.BackendUnavailable` (with
``retry_after`` when AWS sends ``Retry-After``); no such secret, version, parameter or key ->
:class:`~tokenstore.SecretNotFound`; a value that is not a non-empty one-word string, or not the JSON object
``key`` needs -> :class:`~tokenstore.SecretMalformed`; refused credentials or IAM/KMS permissions ->
:class:`~tokenstore.AccessDenied`. Messages name the secret or parameter and the AWS error code, never a value;
AWS's own message text is not copied into them (``__cause__`` keeps botocore's exception).

Async: boto3 has no async client, so ``aget_token``/``aput_token`` run the sync call in a worker thread (the
:class:`~tokenstore.TokenProvider` default); with the caching layer in front that is one thread hop per
fetch, not per request.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._config import Section
from .._errors import (
    AccessDenied,
    BackendUnavailable,
    ConfigError,
    ProviderError,
    SecretMalformed,
    SecretNotFound,
    WriteConflict,
    WriteNotSupported,
)
from .._masking import masked_logger
from .._parsing import json_object, new_token_value, token_from_text
from .._provider import Backend, check_expected
from .._registry import import_sdk
from .._token import Token, fingerprint_of

if TYPE_CHECKING:
    from types import ModuleType


class StageConflict(WriteConflict):
    """A version-stage move AWS refused because the stage is not where the caller said it was (the
    compare-and-set of ``RemoveFromVersionId``): someone else moved it. A :class:`~tokenstore.WriteConflict`."""


__all__ = ["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS", "AssumeRole", "AwsBackend", "SecretVersions", "StageConflict"]

logger = masked_logger("tokenstore.backends.aws")

T = TypeVar("T")

SERVICES = ("secretsmanager", "ssm")
AWSCURRENT = "AWSCURRENT"
AWSPENDING = "AWSPENDING"
AWSPREVIOUS = "AWSPREVIOUS"
#: the stage label a compare-and-set write parks its new version under until it moves AWSCURRENT
STAGED = "TOKENSTORE_STAGED"
_OPTIONS = (
    "service",
    "secret_id",
    "version_stage",
    "version_id",
    "parameter",
    "parameter_version",
    "kms_key_id",
    "key",
    "region",
    "profile",
    "endpoint_url",
    "assume_role",
    "connect_timeout",
    "read_timeout",
)
_ASSUME_ROLE_OPTIONS = ("role_arn", "session_name", "external_id", "duration_seconds", "endpoint_url")

_NOT_FOUND = {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"}
_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
}
_UNAVAILABLE = {
    "InternalServiceError",
    "InternalServiceErrorException",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
}
_KMS = {
    "DecryptionFailure",
    "InvalidKeyId",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
}
_DENIED = {
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredTokenException",
    "ExpiredToken",
    "AuthFailure",
}


@dataclass(frozen=True)
class SecretVersions:
    """A Secrets Manager secret's identity and version stages (``DescribeSecret`` + ``ListSecretVersionIds``);
    no value. The rotation steps read it to decide what is left to do."""

    arn: str
    name: str
    #: version id -> its staging labels (``AWSCURRENT``, ``AWSPENDING``, ``AWSPREVIOUS``, custom ones)
    stages: dict[str, tuple[str, ...]]
    #: version id -> when the version was created (where ``ListSecretVersionIds`` says)
    created: dict[str, dt.datetime]
    rotation_enabled: bool = False

    def version_with(self, stage: str) -> str | None:
        """The version id that carries ``stage`` (a stage is on one version at most), or None."""
        for version, labels in self.stages.items():
            if stage in labels:
                return version
        return None

    def names(self) -> tuple[str, str]:
        """The secret's name and ARN: either identifies it in an API call or an event."""
        return self.name, self.arn


@dataclass(frozen=True)
class AssumeRole:
    """An STS AssumeRole on top of boto3's credential chain (refreshed by botocore before it expires)."""

    role_arn: str
    session_name: str = "tokenstore"
    #: the external id the role's trust policy asks for (an identifier, not a secret)
    external_id: str | None = None
    duration_seconds: int = 900
    #: the STS endpoint (default: botocore's, for the region)
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if not self.role_arn.startswith("arn:"):
            raise ValueError("assume_role.role_arn must be a role ARN (arn:aws:iam::<account>:role/<name>)")
        if not 900 <= self.duration_seconds <= 43200:
            raise ValueError("assume_role.duration_seconds must be between 900 and 43200")


_in_call = threading.local()  # set while this thread runs one of our AWS calls


class _RedactBotocoreBodies(logging.Filter):
    """Blanks botocore's DEBUG dumps of request parameters and response bodies made during our calls.

    With DEBUG logging on, botocore logs every request's parameters (``botocore.endpoint``) and every response
    body (``botocore.parsers``): for GetSecretValue, PutSecretValue, GetParameter and PutParameter that is the
    token, for STS AssumeRole the session credentials. Only records emitted by the thread of one of our calls,
    while it runs, are touched; everything else botocore logs is left alone.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_in_call, "depth", 0) <= 0:
            return True
        message = str(record.msg)
        if record.name == "botocore.parsers" and message.startswith("Response body"):
            record.msg, record.args = "Response body: (redacted by tokenstore: it may carry a secret)", ()
        elif record.name == "botocore.endpoint" and message.startswith("Making request"):
            args = record.args if isinstance(record.args, tuple) else ()
            operation = str(getattr(args[0], "name", "?")) if args else "?"
            record.msg = "Making request for %s with params: (redacted by tokenstore: they may carry a secret)"
            record.args = (operation,)
        return True


_REDACTOR = _RedactBotocoreBodies()


_loader_lock = threading.Lock()
_loaders: dict[str | None, Any] = {}


def _share_loader(core: Any) -> None:
    """Give ``core`` the process-wide botocore data loader (one per AWS_DATA_PATH): the service models
    (read-only JSON) are then parsed once, and another backend's client costs ~10 ms instead of ~100 ms."""
    import botocore.loaders

    data_path = core.get_config_variable("data_path")
    with _loader_lock:
        loader = _loaders.get(data_path)
        if loader is None:
            loader = _loaders[data_path] = botocore.loaders.create_loader(data_path)
    core.register_component("data_loader", loader)


def _install_redactor() -> None:
    for name in ("botocore.endpoint", "botocore.parsers"):
        log = logging.getLogger(name)
        if _REDACTOR not in log.filters:
            log.addFilter(_REDACTOR)


def _parse_retry_after(value: object) -> float | None:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class AwsBackend(Backend):
    """Reads the token from a Secrets Manager secret or an SSM parameter; writes new versions."""

    name = "aws"
    extra = "aws"

    def __init__(
        self,
        *,
        service: str | None = None,
        secret_id: str | None = None,
        version_stage: str | None = None,
        version_id: str | None = None,
        parameter: str | None = None,
        parameter_version: int | None = None,
        kms_key_id: str | None = None,
        key: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        assume_role: AssumeRole | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
    ) -> None:
        self._boto3: ModuleType = import_sdk("boto3", backend=self.name, extra="aws")
        if service is None:
            service = "ssm" if parameter is not None and secret_id is None else "secretsmanager"
        if service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}")
        if service == "secretsmanager":
            if not secret_id:
                raise ValueError("Secrets Manager needs secret_id (the secret's name or ARN)")
            if parameter is not None or parameter_version is not None or kms_key_id is not None:
                raise ValueError("parameter, parameter_version and kms_key_id are SSM options, not Secrets Manager's")
            if version_stage is not None and version_id is not None:
                raise ValueError("give version_stage or version_id, not both")
        else:
            if not parameter:
                raise ValueError("SSM needs parameter (the parameter's name or ARN)")
            if secret_id is not None or version_stage is not None or version_id is not None:
                raise ValueError("secret_id, version_stage and version_id are Secrets Manager options, not SSM's")
            if parameter_version is not None and parameter_version < 1:
                raise ValueError("parameter_version must be a number from 1")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.service = service
        self.secret_id = secret_id
        self.version_id = version_id
        self.version_stage = version_stage or (AWSCURRENT if service == "secretsmanager" and not version_id else None)
        self.parameter = parameter
        self.parameter_version = parameter_version
        self.kms_key_id = kms_key_id
        self.key = key
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self.assume_role = assume_role
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.source = self._label(secret_id, parameter)
        self._config_source: str | None = None
        self._config_path = "token.aws"
        self._lock = threading.Lock()
        self._client: Any = None
        self._warned_plain = False

    def _label(self, secret_id: str | None, parameter: str | None) -> str:
        if self.service == "secretsmanager":
            if self.version_id:
                pin = f"?version_id={self.version_id}"
            elif self.version_stage != AWSCURRENT:
                pin = f"?stage={self.version_stage}"
            else:
                pin = ""
            source = f"aws:secretsmanager:{secret_id}{pin}"
        else:
            pin = f":{self.parameter_version}" if self.parameter_version is not None else ""
            source = f"aws:ssm:{parameter}{pin}"
        return source + (f"#{self.key}" if self.key else "")

    # -- configuration --------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, section: Section) -> AwsBackend:
        section.reject_unknown(_OPTIONS)
        service = section.get_str("service", None, choices=SERVICES)
        has_secret, has_param = "secret_id" in section, "parameter" in section
        if has_secret and has_param:
            section.fail("parameter", "give secret_id (Secrets Manager) or parameter (SSM), not both")
        if service is None:
            if not has_secret and not has_param:
                section.fail("secret_id", "required: secret_id (Secrets Manager) or parameter (SSM Parameter Store)")
            service = "ssm" if has_param else "secretsmanager"
        if service == "secretsmanager":
            wrong = ("parameter", "parameter_version", "kms_key_id")
        else:
            wrong = ("secret_id", "version_stage", "version_id")
        for name in wrong:
            if name in section:
                section.fail(name, f"is not an option of service {service!r}")
        if service == "secretsmanager":
            section.get_str("secret_id")
            if "version_stage" in section and "version_id" in section:
                section.fail("version_id", "give version_stage or version_id, not both")
        else:
            section.get_str("parameter")
        try:
            backend = cls(
                service=service,
                secret_id=section.get_str("secret_id", None),
                version_stage=section.get_str("version_stage", None),
                version_id=section.get_str("version_id", None),
                parameter=section.get_str("parameter", None),
                parameter_version=section.get_int("parameter_version", None, min=1),
                kms_key_id=section.get_str("kms_key_id", None),
                key=section.get_str("key", None),
                region=section.get_str("region", None),
                profile=section.get_str("profile", None),
                endpoint_url=_url(section, "endpoint_url"),
                assume_role=_assume_role_from_config(section),
                connect_timeout=section.get_float("connect_timeout", 3.0, min=0.1, max=300),
                read_timeout=section.get_float("read_timeout", 5.0, min=0.1, max=300),
            )
        except ValueError as exc:
            raise section.error(None, str(exc)) from None
        backend._config_source, backend._config_path = section.source, section.path
        return backend

    def _config_error(self, field: str, message: str) -> ConfigError:
        return ConfigError(message, source=self._config_source, field=f"{self._config_path}.{field}")

    # -- the client -----------------------------------------------------------------------------------------
    def _get_client(self) -> Any:
        if self._parent is not None:
            return self._parent._get_client()  # type: ignore[attr-defined]
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Any:
        import botocore.session
        from botocore import exceptions as bx
        from botocore.config import Config

        _install_redactor()
        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"total_max_attempts": 1},
            user_agent_extra="tokenstore",
        )
        try:
            core = botocore.session.Session(profile=self.profile)
            _share_loader(core)
            if self.assume_role is not None:
                self._install_assume_role(core, config)
            session = self._boto3.session.Session(botocore_session=core, region_name=self.region)
            return session.client(self.service, endpoint_url=self.endpoint_url, config=config)
        except bx.ProfileNotFound:
            raise self._config_error(
                "profile", f"AWS profile {self.profile!r} is not defined in the AWS config files"
            ) from None
        except bx.NoRegionError:
            raise self._config_error(
                "region", "no AWS region: set region here, or $AWS_REGION, or a region in the AWS profile"
            ) from None

    def _install_assume_role(self, core: Any, config: Any) -> None:
        """Make ``core`` use credentials from STS AssumeRole, with the chain's credentials as the source."""
        import botocore.session
        from botocore.credentials import (
            AssumeRoleCredentialFetcher,
            CredentialProvider,
            CredentialResolver,
            DeferredRefreshableCredentials,
        )

        role = self.assume_role
        assert role is not None
        base = botocore.session.Session(profile=self.profile)
        _share_loader(base)
        source = base.get_credentials()
        if source is None:
            raise AccessDenied(
                f"no AWS credentials to assume {role.role_arn} with: configure boto3's credential chain",
                source=self.source,
            )
        region = self.region

        def create_client(service_name: str, **kwargs: Any) -> Any:
            return base.create_client(
                service_name, region_name=region, endpoint_url=role.endpoint_url, config=config, **kwargs
            )

        extra: dict[str, Any] = {"RoleSessionName": role.session_name, "DurationSeconds": role.duration_seconds}
        if role.external_id:
            extra["ExternalId"] = role.external_id
        fetcher = AssumeRoleCredentialFetcher(create_client, source, role.role_arn, extra_args=extra)
        credentials = DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method="assume-role")

        class Provider(CredentialProvider):  # type: ignore[misc]
            METHOD = "assume-role"
            CANONICAL_NAME = "tokenstore-assume-role"

            def load(self) -> Any:
                return credentials

        core.register_component("credential_provider", CredentialResolver(providers=[Provider()]))

    # -- calls and errors -----------------------------------------------------------------------------------
    def _where(self) -> str:
        if self.service == "secretsmanager":
            pin = f"version {self.version_id}" if self.version_id else f"stage {self.version_stage}"
            return f"secret {self.secret_id!r} ({pin})"
        pin = f" version {self.parameter_version}" if self.parameter_version is not None else ""
        return f"parameter {self.parameter!r}{pin}"

    def _call(self, permission: str, fn: Callable[[Any], T]) -> T:
        client = self._get_client()
        _in_call.depth = getattr(_in_call, "depth", 0) + 1
        try:
            return fn(client)
        except Exception as exc:
            from botocore.exceptions import ParamValidationError

            error = self._translate(exc, permission)
            if error is None:
                raise
            if isinstance(exc, ParamValidationError):
                raise error from None  # its message quotes parameter values: not even as the cause
            raise error from exc
        finally:
            _in_call.depth -= 1

    def _translate(self, exc: BaseException, permission: str) -> ProviderError | None:
        """Our error for a botocore one (None: not botocore's; re-raised as is)."""
        from botocore import exceptions as bx

        src = self.source
        where = self._where()
        if isinstance(exc, bx.ClientError):
            response: dict[str, Any] = getattr(exc, "response", None) or {}
            code = str((response.get("Error") or {}).get("Code") or "")
            meta = response.get("ResponseMetadata") or {}
            status = meta.get("HTTPStatusCode")
            operation = getattr(exc, "operation_name", "?")
            if operation == "AssumeRole" and self.assume_role is not None:
                if code in _THROTTLED or code in _UNAVAILABLE or (isinstance(status, int) and status >= 500):
                    return BackendUnavailable(f"STS AssumeRole is unavailable ({code})", source=src)
                return AccessDenied(f"assuming {self.assume_role.role_arn} failed ({code})", source=src)
            if code in _NOT_FOUND:
                return SecretNotFound(f"{where} does not exist ({code})", source=src)
            if code == "InvalidRequestException":
                return SecretNotFound(f"{where} cannot be used now ({code}: is it scheduled for deletion?)", source=src)
            if code in _THROTTLED:
                retry_after = _parse_retry_after((meta.get("HTTPHeaders") or {}).get("retry-after"))
                return BackendUnavailable(
                    f"AWS is throttling {operation} ({code})", source=src, retry_after=retry_after
                )
            if code in _KMS:
                return AccessDenied(
                    f"AWS KMS could not decrypt or encrypt {where} ({code}): the caller needs kms:Decrypt/Encrypt "
                    "on the secret's KMS key, and the key must be enabled",
                    source=src,
                )
            if code in _DENIED:
                return AccessDenied(
                    f"AWS refused {operation} on {where} ({code}): check the credentials and that the IAM policy "
                    f"allows {permission}",
                    source=src,
                )
            if code in _UNAVAILABLE or (isinstance(status, int) and status >= 500):
                return BackendUnavailable(
                    f"AWS answered {code or 'an error'} (HTTP {status}) to {operation}", source=src
                )
            return ProviderError(
                f"AWS rejected {operation} on {where} ({code or 'no code'}, HTTP {status})", source=src
            )
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url") or self.endpoint_url or f"the {self.service} endpoint"
        credentials = (
            bx.NoCredentialsError,
            bx.PartialCredentialsError,
            bx.CredentialRetrievalError,
            bx.NoAuthTokenError,
            bx.TokenRetrievalError,
            bx.SSOError,
        )
        if isinstance(exc, credentials):
            return AccessDenied(
                f"the store's credential is missing: no usable AWS credentials ({type(exc).__name__}): configure "
                "boto3's chain (environment, profile, web identity, container or instance role)",
                source=src,
            )
        if isinstance(exc, bx.SSLError):
            return BackendUnavailable(f"TLS handshake with {endpoint} failed", source=src)
        if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectTimeoutError)):
            limit = self.read_timeout if isinstance(exc, bx.ReadTimeoutError) else self.connect_timeout
            return BackendUnavailable(f"no answer from {endpoint} within {limit:g}s", source=src)
        if isinstance(exc, bx.EndpointConnectionError):
            return BackendUnavailable(f"cannot connect to {endpoint}", source=src)
        if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError)):
            return BackendUnavailable(f"the connection to {endpoint} failed ({type(exc).__name__})", source=src)
        if isinstance(exc, bx.BotoCoreError):
            # never the message: parameter validation errors quote the values, which may be the token
            return ProviderError(f"boto3 failed ({type(exc).__name__})", source=src)
        return None

    # -- reading --------------------------------------------------------------------------------------------
    def get_token(self) -> Token:
        if self.service == "secretsmanager":
            text, version = self._read_secret(self.version_id, self.version_stage)
        else:
            text, version = self._read_parameter(self.parameter_version)
        return Token(
            self._extract(text), source=self.source, version=version, fetched_at=dt.datetime.now(dt.timezone.utc)
        )

    def _read_secret(self, version_id: str | None, stage: str | None) -> tuple[str, str | None]:
        kwargs: dict[str, Any] = {"SecretId": self.secret_id}
        if version_id:
            kwargs["VersionId"] = version_id
        else:
            kwargs["VersionStage"] = stage or AWSCURRENT
        response = self._call("secretsmanager:GetSecretValue", lambda c: c.get_secret_value(**kwargs))
        text = response.get("SecretString")
        if text is None:
            binary = response.get("SecretBinary")
            if not isinstance(binary, (bytes, bytearray)):
                raise SecretMalformed(f"{self._where()} holds neither a string nor binary data", source=self.source)
            try:
                text = bytes(binary).decode("utf-8")
            except UnicodeDecodeError:
                raise SecretMalformed(f"{self._where()} is binary and not UTF-8 text", source=self.source) from None
        version = response.get("VersionId")
        return str(text), str(version) if version else None

    def _read_parameter(self, pinned: int | None) -> tuple[str, str | None]:
        assert self.parameter is not None
        name = f"{self.parameter}:{pinned}" if pinned is not None else self.parameter
        response = self._call("ssm:GetParameter", lambda c: c.get_parameter(Name=name, WithDecryption=True))
        parameter = response.get("Parameter") or {}
        kind = parameter.get("Type")
        if kind == "StringList":
            raise SecretMalformed(
                f"{self._where()} is a StringList; store the token as a SecureString", source=self.source
            )
        if kind == "String" and not self._warned_plain:
            self._warned_plain = True
            logger.warning(
                "%s is a plain String parameter, not encrypted: store the token as a SecureString", self.source
            )
        value = parameter.get("Value")
        if not isinstance(value, str):
            raise SecretMalformed(f"{self._where()} has no value", source=self.source)
        version = parameter.get("Version")
        return value, str(version) if version is not None else None

    def _extract(self, text: str) -> str:
        where = self._where()
        if self.key is None and text.lstrip().startswith("{"):
            try:
                is_object = isinstance(json.loads(text), dict)
            except ValueError:
                is_object = False
            if is_object:
                raise SecretMalformed(
                    f"{where} holds a JSON object: set key to the field that holds the token", source=self.source
                )
        return token_from_text(text, source=self.source, key=self.key, what=where, key_hint=False)

    # -- writing --------------------------------------------------------------------------------------------
    @property
    def supports_write(self) -> bool:
        """False when this provider reads a pinned version or another stage than AWSCURRENT: a new version (which
        becomes AWSCURRENT, or the parameter's latest) would never be read by it."""
        return self._pinned() is None

    def _pinned(self) -> str | None:
        if self.version_id:
            return f"version id {self.version_id}"
        if self.service == "secretsmanager" and self.version_stage != AWSCURRENT:
            return f"stage {self.version_stage} (put_token moves AWSCURRENT)"
        if self.parameter_version is not None:
            return f"version {self.parameter_version}"
        return None

    @property
    def supports_compare_and_set(self) -> bool:
        """Secrets Manager: ``put_token(value, expected=...)`` stages the new version under a label of its own,
        then moves AWSCURRENT to it with ``RemoveFromVersionId`` = the version it compared, which AWS refuses
        once another writer moved AWSCURRENT: of concurrent writers exactly one wins. SSM's PutParameter takes
        no condition: read, compare, write (a window of one round trip)."""
        return self.service == "secretsmanager"

    def put_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        """Write a new version (Secrets Manager: the new AWSCURRENT; SSM: a new SecureString version)."""
        pinned = self._pinned()
        if pinned is not None:
            raise WriteNotSupported(
                f"pinned to {pinned}: a new version would not be read; read the latest/AWSCURRENT to rotate",
                source=self.source,
            )
        value = new_token_value(value, source=self.source)
        if self.service == "secretsmanager":
            version = self._put_secret(value) if expected is None else self._put_secret_if(value, expected)
        else:
            if expected is not None:
                check_expected(self._current_or_none(), expected, source=self.source)
            version = self._put_parameter(value)
        logger.info("wrote a new token to %s (version %s, %s)", self.source, version, fingerprint_of(value))
        return version

    def _put_secret_if(self, value: str, expected: Token | str) -> str:
        text, current_id = self._read_secret(None, AWSCURRENT)
        check_expected(Token(self._extract(text), source=self.source, version=current_id), expected, source=self.source)
        payload = value
        if self.key is not None:
            data = json_object(text, source=self.source, key=self.key, action="write", what=self._where())
            data[self.key] = value
            payload = json.dumps(data)
        request_token = str(uuid.uuid4())
        response = self._call(
            "secretsmanager:PutSecretValue",
            lambda c: c.put_secret_value(
                SecretId=self.secret_id, SecretString=payload, ClientRequestToken=request_token, VersionStages=[STAGED]
            ),
        )
        new_id = response.get("VersionId")
        if not new_id:
            raise BackendUnavailable("AWS's answer to PutSecretValue carried no VersionId", source=self.source)

        def move(c: Any) -> bool:
            from botocore.exceptions import ClientError

            try:
                c.update_secret_version_stage(
                    SecretId=self.secret_id,
                    VersionStage=AWSCURRENT,
                    MoveToVersionId=new_id,
                    RemoveFromVersionId=current_id,
                )
            except ClientError as exc:
                code = str(((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code") or "")
                if code == "InvalidParameterException":  # AWSCURRENT is no longer on the version we compared
                    return False
                raise
            return True

        try:
            moved = self._call("secretsmanager:UpdateSecretVersionStage", move)
        finally:
            try:  # the parking label is ours: never leave it behind
                self._call(
                    "secretsmanager:UpdateSecretVersionStage",
                    lambda c: c.update_secret_version_stage(
                        SecretId=self.secret_id, VersionStage=STAGED, RemoveFromVersionId=new_id
                    ),
                )
            except ProviderError:
                logger.warning("%s: could not remove the stage label %s from version %s", self.source, STAGED, new_id)
        if not moved:
            raise WriteConflict(
                f"not written: AWSCURRENT of {self._where()} moved off version {current_id} before ours could take "
                f"it: another writer got there first (our version {new_id} holds no stage)",
                source=self.source,
            )
        return str(new_id)

    def _put_secret(self, value: str) -> str:
        payload = value
        if self.key is not None:
            current, _ = self._read_secret(None, AWSCURRENT)
            data = json_object(current, source=self.source, key=self.key, action="write", what=self._where())
            data[self.key] = value
            payload = json.dumps(data)
        request_token = str(uuid.uuid4())  # idempotency: a retried request cannot make two versions
        onboarding = self._parent is not None  # a tenant's secret is created by its first put_token

        def put(c: Any) -> Any:
            try:
                return c.put_secret_value(
                    SecretId=self.secret_id, SecretString=payload, ClientRequestToken=request_token
                )
            except c.exceptions.ResourceNotFoundException:
                if not onboarding:
                    raise
            logger.info("creating %s for a new tenant (secretsmanager:CreateSecret)", self.source)
            return c.create_secret(Name=self.secret_id, SecretString=payload, ClientRequestToken=request_token)

        response = self._call("secretsmanager:PutSecretValue", put)
        version = response.get("VersionId")
        if not version:
            raise BackendUnavailable("AWS's answer to PutSecretValue carried no VersionId", source=self.source)
        return str(version)

    def _put_parameter(self, value: str) -> str:
        payload = value
        if self.key is not None:
            try:
                current, _ = self._read_parameter(None)
            except SecretNotFound:
                current = "{}"
            data = json_object(current, source=self.source, key=self.key, action="write", what=self._where())
            data[self.key] = value
            payload = json.dumps(data)
        kwargs: dict[str, Any] = {"Name": self.parameter, "Value": payload, "Type": "SecureString", "Overwrite": True}
        if self.kms_key_id:
            kwargs["KeyId"] = self.kms_key_id
        response = self._call("ssm:PutParameter", lambda c: c.put_parameter(**kwargs))
        version = response.get("Version")
        if version is None:
            raise BackendUnavailable("AWS's answer to PutParameter carried no Version", source=self.source)
        return str(version)

    # -- version stages (the rotation steps of a Secrets Manager rotation function) --------------------------
    def _rotatable(self, what: str) -> None:
        if self.service != "secretsmanager":
            raise WriteNotSupported(
                f"{what} needs Secrets Manager; SSM parameters have no version stages", source=self.source
            )

    def describe_versions(self) -> SecretVersions:
        """The secret's ARN, name and which version carries which stage (``DescribeSecret``, then
        ``ListSecretVersionIds`` for the versions' creation dates). No value is read."""
        self._rotatable("describe_versions")
        described = self._call("secretsmanager:DescribeSecret", lambda c: c.describe_secret(SecretId=self.secret_id))
        stages = {
            str(version): tuple(str(label) for label in labels)
            for version, labels in (described.get("VersionIdsToStages") or {}).items()
        }
        listed = self._call(
            "secretsmanager:ListSecretVersionIds",
            lambda c: c.list_secret_version_ids(SecretId=self.secret_id, MaxResults=100),
        )
        created: dict[str, dt.datetime] = {}
        for entry in listed.get("Versions") or []:
            when = entry.get("CreatedDate")
            if entry.get("VersionId") and isinstance(when, dt.datetime):
                created[str(entry["VersionId"])] = when.astimezone(dt.timezone.utc)
        return SecretVersions(
            arn=str(described.get("ARN") or ""),
            name=str(described.get("Name") or ""),
            stages=stages,
            created=created,
            rotation_enabled=bool(described.get("RotationEnabled")),
        )

    def get_token_at(self, *, stage: str | None = None, version_id: str | None = None) -> Token:
        """The token a given version holds: by ``version_id``, by ``stage``, or both (AWS then checks they
        agree). :class:`~tokenstore.SecretNotFound` when that version has no value (AWSPENDING before
        createSecret wrote it)."""
        self._rotatable("get_token_at")
        if stage is None and version_id is None:
            raise ValueError("give a stage, a version_id, or both")
        kwargs: dict[str, Any] = {"SecretId": self.secret_id}
        if version_id:
            kwargs["VersionId"] = version_id
        if stage:
            kwargs["VersionStage"] = stage
        where = " ".join(
            p for p in (f"stage {stage}" if stage else "", f"version {version_id}" if version_id else "") if p
        )
        try:
            response = self._call("secretsmanager:GetSecretValue", lambda c: c.get_secret_value(**kwargs))
        except SecretNotFound as exc:
            raise SecretNotFound(f"secret {self.secret_id!r} has no value at {where}", source=self.source) from exc
        text = response.get("SecretString")
        if not isinstance(text, str):
            raise SecretMalformed(f"secret {self.secret_id!r} ({where}) holds no string", source=self.source)
        version = response.get("VersionId")
        return Token(
            self._extract(text),
            source=self.source,
            version=str(version) if version else None,
            fetched_at=dt.datetime.now(dt.timezone.utc),
        )

    def put_pending(self, value: str, *, client_request_token: str, stage: str = AWSPENDING) -> str:
        """Write ``value`` as a new version labelled ``stage`` only (``PutSecretValue`` with ``VersionStages``
        and ``ClientRequestToken`` as the version id): readers of AWSCURRENT do not see it until
        :meth:`move_stage`. With ``key`` the other fields of the AWSCURRENT JSON object are kept. Returns the
        version id. Idempotent for the same token and value; AWS refuses the same token with another value."""
        self._rotatable("put_pending")
        if self._pinned() is not None:
            raise WriteNotSupported(f"pinned to {self._pinned()}: rotate the AWSCURRENT reader", source=self.source)
        value = new_token_value(value, source=self.source)
        payload = value
        if self.key is not None:
            current, _ = self._read_secret(None, AWSCURRENT)
            data = json_object(current, source=self.source, key=self.key, action="write", what=self._where())
            data[self.key] = value
            payload = json.dumps(data)
        response = self._call(
            "secretsmanager:PutSecretValue",
            lambda c: c.put_secret_value(
                SecretId=self.secret_id,
                ClientRequestToken=client_request_token,
                SecretString=payload,
                VersionStages=[stage],
            ),
        )
        version = str(response.get("VersionId") or client_request_token)
        logger.info(
            "wrote a new token to %s as %s (version %s, %s)", self.source, stage, version, fingerprint_of(value)
        )
        return version

    def move_stage(self, stage: str, *, to_version: str, from_version: str | None = None) -> None:
        """Move ``stage`` to ``to_version`` (``UpdateSecretVersionStage``). ``from_version`` is the version that
        must carry it now (AWS refuses otherwise: a compare-and-set); moving AWSCURRENT makes the old version
        AWSPREVIOUS. Moving a stage onto the version that already carries it is a no-op."""
        self._rotatable("move_stage")
        kwargs: dict[str, Any] = {"SecretId": self.secret_id, "VersionStage": stage, "MoveToVersionId": to_version}
        if from_version:
            kwargs["RemoveFromVersionId"] = from_version
        self._stage_call(kwargs, f"move {stage} to version {to_version}")
        logger.info("moved %s of %s to version %s (from %s)", stage, self.source, to_version, from_version or "-")

    def remove_stage(self, stage: str, *, from_version: str) -> None:
        """Take ``stage`` off ``from_version`` (e.g. AWSPENDING at the end of a rotation)."""
        self._rotatable("remove_stage")
        self._stage_call(
            {"SecretId": self.secret_id, "VersionStage": stage, "RemoveFromVersionId": from_version},
            f"remove {stage} from version {from_version}",
        )
        logger.info("removed %s from version %s of %s", stage, from_version, self.source)

    def _stage_call(self, kwargs: dict[str, Any], what: str) -> None:
        try:
            self._call("secretsmanager:UpdateSecretVersionStage", lambda c: c.update_secret_version_stage(**kwargs))
        except ProviderError as exc:
            cause = exc.__cause__
            code = str(((getattr(cause, "response", None) or {}).get("Error") or {}).get("Code") or "")
            if code in ("InvalidParameterException", "InvalidRequestException"):
                raise StageConflict(
                    f"AWS refused to {what} ({code}): the stages changed meanwhile (another rotation or writer)",
                    source=self.source,
                ) from cause
            raise

    # -- many tenants: one secret or parameter per tenant, one boto3 client for all --------------------------
    tenant_options = ("secret_id", "parameter")

    def named(self, option: str, name: str) -> AwsBackend:
        if option == "secret_id" and self.service == "secretsmanager":
            return self._view(secret_id=name, source=self._label(name, None), _warned_plain=False)
        if option == "parameter" and self.service == "ssm":
            return self._view(parameter=name, source=self._label(None, name), _warned_plain=False)
        raise ConfigError(f"{option} does not name the secret of service {self.service!r}")

    def list_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        """Secrets Manager: ListSecrets with a name filter (the prefix). SSM: GetParametersByPath under the
        template's folder (recursive, values left encrypted and dropped), or DescribeParameters ``BeginsWith``
        for a name with no folder. Both paged."""
        if self.service == "secretsmanager":
            filters = [{"Key": "name", "Values": [prefix]}] if prefix else []

            def secrets(c: Any) -> list[str]:
                pages = c.get_paginator("list_secrets").paginate(Filters=filters, PaginationConfig={"PageSize": 100})
                return [str(item["Name"]) for page in pages for item in page.get("SecretList", []) if "Name" in item]

            return self._call("secretsmanager:ListSecrets", secrets)
        head, sep, _ = prefix.rpartition("/")
        if sep:
            path = head or "/"

            def by_path(c: Any) -> list[str]:
                pages = c.get_paginator("get_parameters_by_path").paginate(
                    Path=path, Recursive=True, WithDecryption=False, PaginationConfig={"PageSize": 10}
                )
                return [str(p["Name"]) for page in pages for p in page.get("Parameters", []) if "Name" in p]

            return self._call("ssm:GetParametersByPath", by_path)

        def described(c: Any) -> list[str]:
            pages = c.get_paginator("describe_parameters").paginate(
                ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": [prefix]}],
                PaginationConfig={"PageSize": 50},
            )
            return [str(p["Name"]) for page in pages for p in page.get("Parameters", []) if "Name" in p]

        return self._call("ssm:DescribeParameters", described)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._parent is not None:
            return  # a tenant's view: the client belongs to the backend it was made from
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing must not fail
                pass


def _url(section: Section, key: str) -> str | None:
    value = section.get_str(key, None)
    if value is not None and not value.startswith(("http://", "https://")):
        section.fail(key, "must be an http:// or https:// URL")
    return value  # type: ignore[no-any-return]


def _assume_role_from_config(section: Section) -> AssumeRole | None:
    if section.raw("assume_role") is None:
        return None
    sub = section.get_section("assume_role")
    sub.reject_unknown(_ASSUME_ROLE_OPTIONS)
    try:
        return AssumeRole(
            role_arn=sub.get_str("role_arn"),
            session_name=sub.get_str("session_name", "tokenstore"),
            external_id=sub.get_str("external_id", None),
            duration_seconds=sub.get_int("duration_seconds", 900, min=900, max=43200),
            endpoint_url=_url(sub, "endpoint_url"),
        )
    except ValueError as exc:
        raise sub.error("role_arn", str(exc)) from None

"""A local gRPC server of Google Secret Manager (``google.cloud.secretmanager.v1.SecretManagerService``).

Serves ``AccessSecretVersion``, ``AddSecretVersion``, ``CreateSecret`` (``ALREADY_EXISTS`` for a secret that
exists, ``INVALID_ARGUMENT`` without replication), ``DeleteSecret`` (the secret and all its versions; an unknown
secret is ``NOT_FOUND``; answers ``google.protobuf.Empty``) and ``ListSecrets`` over real gRPC (HTTP/2) on 127.0.0.1 with the status
codes Secret Manager uses, so the real ``SecretManagerServiceClient`` and ``SecretManagerServiceAsyncClient``
can be pointed at it through the backend's ``endpoint`` + ``plaintext`` options (or over TLS with a local CA).
The package's own proto-plus classes (de)serialize the messages: no protoc step.

Behaviour modelled on the real service:

* ``versions/latest`` is the most recently added version; accessing a DISABLED or DESTROYED version is
  ``FAILED_PRECONDITION``; an unknown secret or version is ``NOT_FOUND``; a malformed name ``INVALID_ARGUMENT``.
* ``ListSecrets`` pages (``page_size``, default 25, at most 25,000; ``next_page_token``) and filters with the
  ``name:<text>`` term of Google's filter syntax (names containing the text; a trailing ``*`` is a prefix
  wildcard); any other filter is ``INVALID_ARGUMENT``, as a filter the service cannot parse is.
* ``AddSecretVersion`` checks ``payload.data_crc32c`` when the client sends one (``INVALID_ARGUMENT`` on a
  mismatch) and answers the new ``SecretVersion``; every served payload carries ``data_crc32c``.

Hooks for tests: ``fail_next`` (any status code, optionally with a ``RetryInfo`` delay as Google sends with
``RESOURCE_EXHAUSTED``), ``delay`` (seconds before answering), ``corrupt_crc`` (serve a wrong checksum),
``authorize`` (check the request metadata, ``UNAUTHENTICATED`` when it fails), ``deny`` (resources answered
with ``PERMISSION_DENIED``), ``stop``/``start`` on the same port with the data kept, and a log of calls.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import grpc
from google.cloud.secretmanager_v1.types import resources, service
from google.protobuf import any_pb2, duration_pb2, empty_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status  # type: ignore[import-untyped]

from . import free_port

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
_VERSION_NAME = re.compile(r"projects/([^/]+)/secrets/([^/]+)/versions/([^/]+)\Z")
_SECRET_NAME = re.compile(r"projects/([^/]+)/secrets/([^/]+)\Z")
_PROJECT_NAME = re.compile(r"projects/([^/]+)\Z")
_NAME_FILTER = re.compile(r"name\s*:\s*(\"[^\"]*\"|[A-Za-z0-9_*-]+)\Z")


@dataclass
class Version:
    data: bytes
    state: str = "ENABLED"  # ENABLED | DISABLED | DESTROYED
    created: float = field(default_factory=time.time)


@dataclass
class Call:
    method: str
    name: str
    metadata: dict[str, str]
    code: str  # the status code answered ("OK", "NOT_FOUND", ...)


@dataclass
class _Fault:
    code: grpc.StatusCode
    message: str
    retry_delay: float | None
    method: str | None


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, retry_delay: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_delay = retry_delay


class SecretManagerServer:
    """A threaded gRPC server of the Secret Manager service. Plaintext by default; ``tls=True`` uses a local CA.

    One instance serves both the sync and the async client. ``stop()`` then ``start()`` brings it back on the
    same port with its data (an outage and a recovery).
    """

    def __init__(self, *, tls: bool = False, folder: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.ca_pem: Path | None = None
        self._server_credentials: grpc.ServerCredentials | None = None
        if tls:
            import trustme

            if folder is None:
                raise ValueError("tls=True needs a folder for the CA file")
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            self.ca_pem = folder / "gcp-local-ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_pem))
            chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
            self._server_credentials = grpc.ssl_server_credentials([(cert.private_key_pem.bytes(), chain)])
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], list[Version]] = {}
        self._faults: list[_Fault] = []
        self._server: grpc.Server | None = None
        #: seconds to wait before answering each call
        self.delay = 0.0
        #: serve payloads whose data_crc32c does not match the data
        self.corrupt_crc = False
        #: serve payloads without data_crc32c (as an old emulator would)
        self.omit_crc = False
        #: when set, called with each call's metadata; False answers UNAUTHENTICATED
        self.authorize: Callable[[Mapping[str, str]], bool] | None = None
        #: secret resource names ("projects/p/secrets/s") answered with PERMISSION_DENIED
        self.deny: set[str] = set()
        self.calls: list[Call] = []

    # -- lifecycle ----------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``: the backend's ``endpoint`` option."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> SecretManagerServer:
        if self._server is not None:
            return self
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="fake-gcp-sm"))
        server.add_generic_rpc_handlers((self._handler(),))
        address = f"127.0.0.1:{self.port}"
        if self._server_credentials is not None:
            bound = server.add_secure_port(address, self._server_credentials)
        else:
            bound = server.add_insecure_port(address)
        if bound != self.port:
            raise RuntimeError(f"could not bind {address}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop listening and cut every connection at once (the data is kept for ``start()``)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait(5)

    def __enter__(self) -> SecretManagerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- data, out of band ----------------------------------------------------------------------------------
    def create_secret(self, project: str, secret: str) -> None:
        with self._lock:
            self._secrets.setdefault((project, secret), [])

    def add_version(self, project: str, secret: str, data: str | bytes) -> int:
        """Add a version (another party rotating the secret); creates the secret. Returns the version number."""
        raw = data.encode() if isinstance(data, str) else data
        with self._lock:
            versions = self._secrets.setdefault((project, secret), [])
            versions.append(Version(raw))
            return len(versions)

    def set_state(self, project: str, secret: str, version: int, state: str) -> None:
        assert state in ("ENABLED", "DISABLED", "DESTROYED")
        with self._lock:
            v = self._secrets[(project, secret)][version - 1]
            v.state = state
            if state == "DESTROYED":
                v.data = b""

    def exists(self, project: str, secret: str) -> bool:
        with self._lock:
            return (project, secret) in self._secrets

    def versions(self, project: str, secret: str) -> list[bytes]:
        with self._lock:
            return [v.data for v in self._secrets.get((project, secret), [])]

    # -- faults ---------------------------------------------------------------------------------------------
    def fail_next(
        self,
        code: grpc.StatusCode,
        count: int = 1,
        *,
        message: str = "injected by the test",
        retry_delay: float | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` calls (of ``method``, or any) with ``code``; ``retry_delay`` adds RetryInfo."""
        with self._lock:
            self._faults.extend(_Fault(code, message, retry_delay, method) for _ in range(count))

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self.delay = 0.0
        self.corrupt_crc = False
        self.omit_crc = False
        self.authorize = None
        self.deny.clear()

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for c in self.calls if method is None or c.method == method)

    # -- the service ----------------------------------------------------------------------------------------
    def _handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "AccessSecretVersion": grpc.unary_unary_rpc_method_handler(
                    self._wrap("AccessSecretVersion", self._access),
                    request_deserializer=service.AccessSecretVersionRequest.deserialize,
                    response_serializer=service.AccessSecretVersionResponse.serialize,
                ),
                "CreateSecret": grpc.unary_unary_rpc_method_handler(
                    self._wrap("CreateSecret", self._create),
                    request_deserializer=service.CreateSecretRequest.deserialize,
                    response_serializer=resources.Secret.serialize,
                ),
                "ListSecrets": grpc.unary_unary_rpc_method_handler(
                    self._wrap("ListSecrets", self._list),
                    request_deserializer=service.ListSecretsRequest.deserialize,
                    response_serializer=service.ListSecretsResponse.serialize,
                ),
                "DeleteSecret": grpc.unary_unary_rpc_method_handler(
                    self._wrap("DeleteSecret", self._delete),
                    request_deserializer=service.DeleteSecretRequest.deserialize,
                    response_serializer=empty_pb2.Empty.SerializeToString,
                ),
                "AddSecretVersion": grpc.unary_unary_rpc_method_handler(
                    self._wrap("AddSecretVersion", self._add),
                    request_deserializer=service.AddSecretVersionRequest.deserialize,
                    response_serializer=resources.SecretVersion.serialize,
                ),
            },
        )

    def _wrap(self, method: str, impl: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            name = getattr(request, "name", "") or getattr(request, "parent", "")
            code = "OK"
            try:
                if self.delay:
                    time.sleep(self.delay)
                fault = self._take_fault(method)
                if fault is not None:
                    raise _Abort(fault.code, fault.message, fault.retry_delay)
                if self.authorize is not None and not self.authorize(metadata):
                    raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials.")
                return impl(request)
            except _Abort as abort:
                code = abort.code.name
                context.abort_with_status(_status(abort))
                raise  # not reached: abort_with_status raises
            finally:
                with self._lock:
                    self.calls.append(Call(method, name, metadata, code))

        return handle

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.method is None or fault.method == method:
                    return self._faults.pop(i)
        return None

    def _check_denied(self, project: str, secret: str, permission: str = "secretmanager.versions.access") -> None:
        if f"projects/{project}/secrets/{secret}" in self.deny:
            raise _Abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission '{permission}' denied for resource "
                f"'projects/{project}/secrets/{secret}' (or it may not exist).",
            )

    def _access(self, request: service.AccessSecretVersionRequest) -> service.AccessSecretVersionResponse:
        match = _VERSION_NAME.match(request.name)
        if not match:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {request.name}"
            )
        project, secret, version = match.groups()
        self._check_denied(project, secret)
        with self._lock:
            versions = self._secrets.get((project, secret))
            if not versions:
                raise _Abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"Secret [projects/{project}/secrets/{secret}] not found or has no versions.",
                )
            if version == "latest":
                number = len(versions)
            elif version.isdigit() and 1 <= int(version) <= len(versions):
                number = int(version)
            elif version.isdigit():
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{request.name}] not found.")
            else:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {version}"
                )
            chosen = versions[number - 1]
            if chosen.state != "ENABLED":
                raise _Abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Secret Version [projects/{project}/secrets/{secret}/versions/{number}] is in {chosen.state} state.",
                )
            data = chosen.data
        payload = resources.SecretPayload(data=data)
        if not self.omit_crc:
            crc = google_crc32c.value(data)
            payload.data_crc32c = (crc + 1) % 2**32 if self.corrupt_crc else crc
        return service.AccessSecretVersionResponse(
            name=f"projects/{project}/secrets/{secret}/versions/{number}", payload=payload
        )

    def _create(self, request: service.CreateSecretRequest) -> resources.Secret:
        match = _PROJECT_NAME.match(request.parent)
        if not match or not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", request.secret_id):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Invalid resource field value in the request.")
        project = match.group(1)
        if "replication" not in request.secret:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Secret.replication is required.")
        self._check_denied(project, request.secret_id)
        with self._lock:
            if (project, request.secret_id) in self._secrets:
                raise _Abort(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"Secret [projects/{project}/secrets/{request.secret_id}] already exists.",
                )
            self._secrets[(project, request.secret_id)] = []
        return resources.Secret(
            name=f"projects/{project}/secrets/{request.secret_id}", replication=request.secret.replication
        )

    def _list(self, request: service.ListSecretsRequest) -> service.ListSecretsResponse:
        match = _PROJECT_NAME.match(request.parent)
        if not match:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {request.parent}"
            )
        project = match.group(1)
        size = request.page_size or 25
        if not 0 < size <= 25000:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must be between 1 and 25000")
        keep: Callable[[str], bool] = lambda secret: True  # noqa: E731
        if request.filter:
            term = _NAME_FILTER.match(request.filter.strip())
            if not term:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid filter: {request.filter}")
            text = term.group(1).strip('"')
            if text.endswith("*"):
                start = text[:-1]
                keep = lambda secret: secret.startswith(start)  # noqa: E731
            else:
                keep = lambda secret: text in secret  # noqa: E731
        with self._lock:
            names = sorted(secret for (p, secret) in self._secrets if p == project and keep(secret))
        offset = int(request.page_token) if request.page_token.isdigit() else 0
        page = names[offset : offset + size]
        following = offset + size
        return service.ListSecretsResponse(
            secrets=[resources.Secret(name=f"projects/{project}/secrets/{n}") for n in page],
            next_page_token=str(following) if following < len(names) else "",
            total_size=len(names),
        )

    def _delete(self, request: service.DeleteSecretRequest) -> empty_pb2.Empty:
        match = _SECRET_NAME.match(request.name)
        if not match:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {request.name}"
            )
        project, secret = match.groups()
        self._check_denied(project, secret, "secretmanager.secrets.delete")
        with self._lock:
            if self._secrets.pop((project, secret), None) is None:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"Secret [projects/{project}/secrets/{secret}] not found.")
        return empty_pb2.Empty()

    def _add(self, request: service.AddSecretVersionRequest) -> resources.SecretVersion:
        match = _SECRET_NAME.match(request.parent)
        if not match:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {request.parent}"
            )
        project, secret = match.groups()
        self._check_denied(project, secret)
        data = request.payload.data
        checked = "data_crc32c" in request.payload
        if checked and google_crc32c.value(data) != request.payload.data_crc32c:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Checksum mismatch: the data was corrupted in transit.")
        with self._lock:
            versions = self._secrets.get((project, secret))
            if versions is None:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"Secret [projects/{project}/secrets/{secret}] not found.")
            versions.append(Version(data))
            number = len(versions)
        return resources.SecretVersion(
            name=f"projects/{project}/secrets/{secret}/versions/{number}",
            create_time=dt.datetime.now(dt.timezone.utc),
            state=resources.SecretVersion.State.ENABLED,
            client_specified_payload_checksum=checked,
        )


def _status(abort: _Abort) -> grpc.Status:
    """A rich status (google.rpc.Status), with RetryInfo when the fault carries a retry delay."""
    details = []
    if abort.retry_delay is not None:
        seconds = int(abort.retry_delay)
        delay = duration_pb2.Duration(seconds=seconds, nanos=round((abort.retry_delay - seconds) * 1e9))
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(packed)
    code = getattr(code_pb2, abort.code.name)
    return rpc_status.to_status(status_pb2.Status(code=code, message=abort.message, details=details))

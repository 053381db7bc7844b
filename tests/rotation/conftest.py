"""Fixtures for the rotation handlers: the Graph sandbox as Meta, and each cloud's store on loopback (moto's
Secrets Manager, the Key Vault fake over HTTPS with its Entra token endpoint, the gRPC Secret Manager), with a
config file naming the token's secret and the app secret, as ``$TOKENSTORE_CONFIG`` would in the cloud.

Every handler test captures all logs at DEBUG; :func:`assert_logs_clean` checks them for every secret the test
handled (the app secret, the store credentials, and every token the sandbox issued, exchanged ones included).
"""

from __future__ import annotations

import importlib.util
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from sender.sandbox import SIXTY_DAYS, Sandbox
from tests.conftest import need
from tests.contract import assert_clean, canary

# the sender suite's sandbox fixture, imported so that pytest provides it to this folder's tests too
from tests.sender.conftest import sandbox as sandbox
from tests.servers import LocalTLS
from tests.servers.azure_keyvault import KeyVaultServer
from tests.servers.moto import REGION, MotoServer

LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:whatsapp-token-rotation"
AWS_ACCESS_KEY = "AKIA" + uuid.uuid4().hex[:16].upper()
AWS_SECRET_KEY = canary("AWSSECRET")
ENTRA_CLIENT = "rotation-test-app"
ENTRA_SECRET = canary("entra-secret-")
GCP_PROJECT = "rotation-test"


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sender", "sender.rotation", "sender.sandbox", "tokenstore", "botocore", "azure"):
        caplog.set_level(logging.DEBUG, logger=name)


@pytest.fixture(autouse=True)
def _every_log_clean(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """After every test here: no secret the test's sandbox handed out in any record it captured."""
    box = request.getfixturevalue("sandbox") if "sandbox" in request.fixturenames else None  # torn down after us
    yield
    if box is not None:
        assert_logs_clean(caplog, box)


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]) + str(record.exc_info[1]))
    return "\n".join(parts)


def assert_logs_clean(caplog: pytest.LogCaptureFixture, sandbox: Sandbox, *extra: str) -> None:
    """No token the sandbox knows, no app secret and no store credential in any captured record."""
    text = log_text(caplog)
    assert_clean(text, sandbox.app_secret, AWS_SECRET_KEY, ENTRA_SECRET, *extra, *(r.value for r in sandbox.tokens()))
    assert "CANARY" not in text


def status(sandbox: Sandbox, value: str) -> str:
    record = sandbox.token_record(value)
    assert record is not None, "the sandbox does not know this token"
    return record.status(sandbox.clock())


@dataclass
class Rig:
    """A sandbox with a canary app secret and a 60-day canary token, a store holding both, a config naming them."""

    sandbox: Sandbox
    config: Path
    initial: str
    app_secret: str
    data: dict[str, Any] = field(default_factory=dict)

    def write_config(self, **changes: Any) -> Path:
        """Rewrite the config with ``changes`` merged into its sections (a None value drops the section)."""
        data = yaml.safe_load(self.config.read_text())
        for section, values in changes.items():
            if values is None:
                data.pop(section, None)
            elif isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section].update(values)
            else:
                data[section] = values
        self.config.write_text(yaml.safe_dump(data))
        return self.config


def graph_section(sandbox: Sandbox) -> dict[str, Any]:
    return {"base_url": sandbox.url, "app_id": sandbox.app_id}


def issue(sandbox: Sandbox, *, expires_in: float | None = SIXTY_DAYS, age: int = 0) -> str:
    """A canary token the sandbox knows; ``age``: issued that many seconds ago (its expiry moves with it)."""
    value = sandbox.issue_token(value=canary(), expires_in=expires_in)
    if age:
        record = sandbox.state.tokens.get(value)
        assert record is not None
        record.issued_at -= age
        if record.expires_at:
            record.expires_at -= age
    return value


def canary_app_secret(sandbox: Sandbox) -> str:
    secret = canary("APPSECRET")
    sandbox.state.app.secret = secret
    return secret


# -- AWS ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    need(importlib.util.find_spec("moto") is not None, "moto[server] (pip install 'moto[server]')")
    need(importlib.util.find_spec("boto3") is not None, "boto3 (pip install 'whatsapp-tokenstore[aws]')")
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY)
    for var in ("AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)


@dataclass
class AwsRig(Rig):
    moto: Any = None
    sm: Any = None
    name: str = ""
    arn: str = ""

    def event(self, step: str, request: str, secret_id: str | None = None) -> dict[str, str]:
        return {"SecretId": secret_id or self.arn, "ClientRequestToken": request, "Step": step}

    def start_rotation(self, secret_id: str | None = None) -> str:
        """What Secrets Manager does before it calls the function: a new version id labelled AWSPENDING (moto then
        fails to invoke the function, which it cannot run here). Returns that id: the ClientRequestToken."""
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError) as info:
            self.sm.rotate_secret(
                SecretId=secret_id or self.arn,
                RotationLambdaARN=LAMBDA_ARN,
                RotationRules={"AutomaticallyAfterDays": 30},
            )
        assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
        pending = self.version_with("AWSPENDING", secret_id)
        assert pending is not None
        return pending

    def stages(self, secret_id: str | None = None) -> dict[str, list[str]]:
        return dict(self.sm.describe_secret(SecretId=secret_id or self.arn)["VersionIdsToStages"])

    def version_with(self, stage: str, secret_id: str | None = None) -> str | None:
        for version, labels in self.stages(secret_id).items():
            if stage in labels:
                return version
        return None

    def value(self, stage: str = "AWSCURRENT", secret_id: str | None = None) -> str:
        return str(self.sm.get_secret_value(SecretId=secret_id or self.arn, VersionStage=stage)["SecretString"])

    def snapshot(self, secret_id: str | None = None) -> tuple[str | None, str]:
        """(AWSCURRENT's version id, its value): what a failed step must leave as it was."""
        return self.version_with("AWSCURRENT", secret_id), self.value("AWSCURRENT", secret_id)


@pytest.fixture
def aws(moto: MotoServer, aws_env: None, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AwsRig:
    sm = moto.client("secretsmanager")
    app_secret = canary_app_secret(sandbox)
    initial = issue(sandbox)
    name = f"whatsapp/{uuid.uuid4().hex[:10]}/token"
    secret_name = f"whatsapp/{uuid.uuid4().hex[:10]}/app-secret"
    arn = sm.create_secret(Name=name, SecretString=initial)["ARN"]
    sm.create_secret(Name=secret_name, SecretString=app_secret)
    common = {"region": REGION, "endpoint_url": moto.url}
    data = {
        "whatsapp": graph_section(sandbox),
        "token": {"backend": "aws", "cache": {"ttl": 300}, "aws": {"secret_id": name, **common}},
        "app_secret": {"backend": "aws", "aws": {"secret_id": secret_name, **common}},
    }
    config = tmp_path / "tokenstore.yaml"
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("TOKENSTORE_CONFIG", str(config))
    return AwsRig(sandbox, config, initial, app_secret, data, moto=moto, sm=sm, name=name, arn=arn)


class LambdaContext:
    """The part of the Lambda context object the function reads."""

    def __init__(self, remaining_seconds: float) -> None:
        self.remaining = remaining_seconds
        self.function_name = "whatsapp-token-rotation"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining * 1000)


# -- Azure -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTLS:
    return LocalTLS.create(tmp_path_factory.mktemp("rotation-tls"))


@pytest.fixture(scope="module")
def kv(tls: LocalTLS) -> Iterator[KeyVaultServer]:
    need(importlib.util.find_spec("azure.keyvault.secrets") is not None, "azure-keyvault-secrets ([azure] extra)")
    with KeyVaultServer(tls) as server:
        server.register_app(ENTRA_CLIENT, ENTRA_SECRET)
        yield server


def azure_section(kv: KeyVaultServer, name: str) -> dict[str, Any]:
    return {
        "vault_url": kv.url,
        "name": name,
        "ca_bundle": str(kv.ca_pem),
        "verify_challenge_resource": False,
        "credential": {
            "method": "client_secret",
            "tenant_id": kv.tenant_id,
            "client_id": ENTRA_CLIENT,
            "client_secret": {"env": "ROTATION_TEST_ENTRA_SECRET"},
            "authority": kv.url,
            "disable_instance_discovery": True,
        },
    }


@dataclass
class AzureRig(Rig):
    kv: Any = None
    name: str = ""

    def latest(self) -> Any:
        return self.kv.versions(self.name)[-1]

    def event(
        self,
        *,
        version: str | None = None,
        kind: str = "Microsoft.KeyVault.SecretNearExpiry",
        name: str | None = None,
        cloudevents: bool = False,
    ) -> dict[str, Any]:
        """The event Key Vault publishes, in its documented shape (Event Grid schema, or CloudEvents 1.0)."""
        name = name or self.name
        latest = self.latest()
        version = version or latest.version
        data = {
            "Id": f"{self.kv.url}/secrets/{name}/{version}",
            "VaultName": "rotation-test-kv",
            "ObjectType": "Secret",
            "ObjectName": name,
            "Version": version,
            "NBF": latest.nbf,
            "EXP": latest.exp,
        }
        topic = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/rotation-test-kv"
        if cloudevents:
            return {
                "id": str(uuid.uuid4()),
                "source": topic,
                "specversion": "1.0",
                "type": kind,
                "subject": name,
                "time": "2026-12-01T08:00:00.0000000Z",
                "data": data,
            }
        return {
            "id": str(uuid.uuid4()),
            "topic": topic,
            "subject": name,
            "eventType": kind,
            "eventTime": "2026-12-01T08:00:00.0000000Z",
            "data": data,
            "dataVersion": "1",
            "metadataVersion": "1",
        }


@pytest.fixture
def azure(kv: KeyVaultServer, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AzureRig:
    monkeypatch.setenv("ROTATION_TEST_ENTRA_SECRET", ENTRA_SECRET)
    app_secret = canary_app_secret(sandbox)
    initial = issue(sandbox)
    name = "wa-" + uuid.uuid4().hex[:12]
    secret_name = name + "-app-secret"
    record = sandbox.token_record(initial)
    assert record is not None
    kv.set_secret(name, initial, exp=record.expires_at)
    kv.set_secret(secret_name, app_secret)
    data = {
        "whatsapp": graph_section(sandbox),
        "token": {"backend": "azure", "cache": {"ttl": 300}, "azure": azure_section(kv, name)},
        "app_secret": {"backend": "azure", "azure": azure_section(kv, secret_name)},
    }
    config = tmp_path / "tokenstore.yaml"
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("TOKENSTORE_CONFIG", str(config))
    return AzureRig(sandbox, config, initial, app_secret, data, kv=kv, name=name)


# -- GCP ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sm_server() -> Iterator[Any]:
    need(importlib.util.find_spec("google.cloud.secretmanager") is not None, "google-cloud-secret-manager ([gcp])")
    from tests.servers.gcp_secretmanager import SecretManagerServer

    with SecretManagerServer() as server:
        yield server


@dataclass
class GcpRig(Rig):
    server: Any = None
    secret: str = ""

    def versions(self) -> list[bytes]:
        return list(self.server.versions(GCP_PROJECT, self.secret))

    def latest(self) -> str:
        return self.versions()[-1].decode()

    def message(
        self,
        *,
        kind: str = "SECRET_ROTATE",
        secret: str | None = None,
        project: str = GCP_PROJECT,
        published: str | None = None,
    ) -> dict[str, Any]:
        """The Pub/Sub message Secret Manager publishes (attributes + base64 JSON Secret resource)."""
        import base64
        import datetime as dt
        import json

        resource = f"projects/{project}/secrets/{secret or self.secret}"
        body = {
            "name": resource,
            "createTime": "2026-10-01T08:00:00Z",
            "replication": {"automatic": {}},
            "topics": [{"name": f"projects/{project}/topics/secret-rotation"}],
            "rotation": {"nextRotationTime": "2026-12-31T08:00:00Z", "rotationPeriod": "2592000s"},
            "etag": '"16211daf5c4e4f"',
        }
        when = published or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "attributes": {"eventType": kind, "secretId": resource, "dataFormat": "JSON_API_V1"},
            "data": base64.b64encode(json.dumps(body).encode()).decode(),
            "messageId": str(uuid.uuid4().int)[:16],
            "publishTime": when,
        }

    def push(self, **options: Any) -> dict[str, Any]:
        """A Cloud Run push subscription's request body."""
        return {
            "message": self.message(**options),
            "subscription": f"projects/{GCP_PROJECT}/subscriptions/rotation-push",
        }


@pytest.fixture
def gcp(sm_server: Any, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GcpRig:
    app_secret = canary_app_secret(sandbox)
    initial = issue(sandbox, age=30 * 86400)  # a rotation period ago, with 30 days left: the message comes after it
    secret = "wa-" + uuid.uuid4().hex[:12]
    secret_name = secret + "-app-secret"
    sm_server.add_version(GCP_PROJECT, secret, initial)
    sm_server.add_version(GCP_PROJECT, secret_name, app_secret)
    common = {"project": GCP_PROJECT, "endpoint": sm_server.endpoint, "plaintext": True}
    data = {
        "whatsapp": graph_section(sandbox),
        "token": {"backend": "gcp", "cache": {"ttl": 300}, "gcp": {"secret": secret, **common}},
        "app_secret": {"backend": "gcp", "gcp": {"secret": secret_name, **common}},
    }
    config = tmp_path / "tokenstore.yaml"
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("TOKENSTORE_CONFIG", str(config))
    return GcpRig(sandbox, config, initial, app_secret, data, server=sm_server, secret=secret)

"""The store-side pieces the rotation handlers stand on, against the real local servers: the aws backend's
version-stage calls (moto's Secrets Manager) and the azure backend's write with an expiry (the Key Vault fake)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from tests.contract import canary
from tests.rotation.conftest import ENTRA_SECRET, LAMBDA_ARN, azure_section
from tests.servers.moto import REGION, MotoServer
from tokenstore import SecretNotFound, Section, WriteConflict, WriteNotSupported
from tokenstore.backends.aws import AWSCURRENT, AWSPENDING, AWSPREVIOUS, AwsBackend, StageConflict
from tokenstore.backends.azure import AzureBackend

pytestmark = pytest.mark.backend("aws")


def backend(moto: MotoServer, **options: Any) -> AwsBackend:
    return AwsBackend(region=REGION, endpoint_url=moto.url, **options)


def test_stages_put_pending_move_and_remove(moto: MotoServer, aws_env: None) -> None:
    sm = moto.client("secretsmanager")
    name = f"whatsapp/{uuid.uuid4().hex[:10]}"
    old, new = canary(), canary()
    arn = sm.create_secret(Name=name, SecretString=old)["ARN"]
    store = backend(moto, secret_id=name)
    before = store.describe_versions()
    assert before.names() == (name, arn) and not before.rotation_enabled
    current = before.version_with(AWSCURRENT)
    assert current is not None and before.version_with(AWSPENDING) is None and current in before.created
    request = str(uuid.uuid4())
    with pytest.raises(SecretNotFound, match=f"no value at stage {AWSPENDING} version {request}"):
        store.get_token_at(stage=AWSPENDING, version_id=request)
    assert store.put_pending(new, client_request_token=request) == request
    assert store.put_pending(new, client_request_token=request) == request  # idempotent
    staged = store.describe_versions()
    assert staged.stages[request] == (AWSPENDING,) and staged.version_with(AWSCURRENT) == current
    assert store.get_token().reveal() == old  # readers of AWSCURRENT do not see it
    assert store.get_token_at(stage=AWSPENDING, version_id=request).reveal() == new
    with pytest.raises(WriteConflict, match="the stages changed meanwhile") as conflict:
        store.move_stage(AWSCURRENT, to_version=request, from_version=request)  # AWSCURRENT is not there
    assert isinstance(conflict.value, StageConflict)
    store.move_stage(AWSCURRENT, to_version=request, from_version=current)
    store.remove_stage(AWSPENDING, from_version=request)
    after = store.describe_versions()
    assert after.stages == {request: (AWSCURRENT,), current: (AWSPREVIOUS,)}
    assert store.get_token_at(stage=AWSCURRENT).reveal() == new
    assert store.get_token_at(version_id=current).reveal() == old


def test_put_pending_keeps_the_other_json_fields(moto: MotoServer, aws_env: None) -> None:
    sm = moto.client("secretsmanager")
    name = f"whatsapp/{uuid.uuid4().hex[:10]}"
    old, new = canary(), canary()
    sm.create_secret(Name=name, SecretString=json.dumps({"access_token": old, "waba": "123"}))
    store = backend(moto, secret_id=name, key="access_token")
    request = str(uuid.uuid4())
    store.put_pending(new, client_request_token=request)
    stored = json.loads(sm.get_secret_value(SecretId=name, VersionId=request)["SecretString"])
    assert stored == {"access_token": new, "waba": "123"}
    assert store.get_token_at(version_id=request).reveal() == new


def test_rotation_calls_refuse_ssm_and_pinned_readers(moto: MotoServer, aws_env: None) -> None:
    with pytest.raises(WriteNotSupported, match="SSM parameters have no version stages"):
        backend(moto, parameter="/whatsapp/x").describe_versions()
    with pytest.raises(WriteNotSupported, match="pinned"):
        backend(moto, secret_id="x", version_stage=AWSPREVIOUS).put_pending(canary(), client_request_token="t" * 32)


def test_rotate_secret_leaves_an_empty_pending_version(moto: MotoServer, aws_env: None) -> None:
    """What the handler tests rely on: moto's rotate_secret labels a new version id AWSPENDING, with no value."""
    from botocore.exceptions import ClientError

    sm = moto.client("secretsmanager")
    name = f"whatsapp/{uuid.uuid4().hex[:10]}"
    sm.create_secret(Name=name, SecretString=canary())
    with pytest.raises(ClientError):
        sm.rotate_secret(SecretId=name, RotationLambdaARN=LAMBDA_ARN, RotationRules={"AutomaticallyAfterDays": 30})
    versions = backend(moto, secret_id=name).describe_versions()
    pending = versions.version_with(AWSPENDING)
    assert versions.rotation_enabled and pending is not None
    with pytest.raises(SecretNotFound):
        backend(moto, secret_id=name).get_token_at(stage=AWSPENDING, version_id=pending)


@pytest.mark.backend("azure")
def test_azure_write_carries_the_expiry(kv: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATION_TEST_ENTRA_SECRET", ENTRA_SECRET)
    name = "wa-" + uuid.uuid4().hex[:12]
    kv.set_secret(name, canary())
    store = AzureBackend.from_config(Section(azure_section(kv, name), path="token.azure"))
    expires = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=60)
    try:
        version = store.put_token(canary(), expires_at=expires)
        assert kv.versions(name)[-1].version == version and kv.versions(name)[-1].exp == int(expires.timestamp())
        token = store.get_token()
        assert token.version == version and token.expires_at == expires
        store.put_token(canary())
        assert kv.versions(name)[-1].exp is None
        with pytest.raises(ValueError, match="timezone-aware"):
            store.put_token(canary(), expires_at=dt.datetime(2027, 1, 1))
    finally:
        store.close()

"""``TokenProvider.delete_secret`` (offboarding) against the real local servers: Secrets Manager and SSM on moto,
KV v2 and v1 on OpenBao, a file; the stores that cannot delete say so."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import tokenstore
from tests.backends.test_aws import aws_env as aws_env  # autouse: moto's credentials
from tests.backends.test_aws import backend as aws_backend
from tests.backends.test_aws import moto as moto
from tests.backends.test_vault import bao as bao
from tests.contract import canary
from tests.servers.moto import MotoServer
from tests.servers.openbao import OpenBaoServer
from tokenstore import CachePolicy, CachingProvider, SecretNotFound, WriteNotSupported
from tokenstore.backends.env import EnvBackend
from tokenstore.backends.file import FileBackend


def test_secrets_manager_schedules_deletion_and_the_secret_leaves_the_listing(moto: MotoServer) -> None:
    sm = moto.client("secretsmanager")
    secret_id = f"whatsapp/{uuid.uuid4().hex[:12]}"
    sm.create_secret(Name=secret_id, SecretString=canary())
    with aws_backend(moto, secret_id=secret_id) as store:
        assert store.supports_delete
        store.delete_secret()
        with pytest.raises(SecretNotFound, match="scheduled for deletion"):
            store.get_token()
    listed = sm.list_secrets(Filters=[{"Key": "name", "Values": [secret_id]}])["SecretList"]
    assert listed == []
    assert sm.describe_secret(SecretId=secret_id).get("DeletedDate") is not None  # recoverable for 7 days


def test_ssm_deletes_the_parameter(moto: MotoServer) -> None:
    ssm = moto.client("ssm")
    parameter = f"/whatsapp/{uuid.uuid4().hex[:12]}/token"
    ssm.put_parameter(Name=parameter, Value=canary(), Type="SecureString")
    with aws_backend(moto, parameter=parameter) as store:
        store.delete_secret()
        with pytest.raises(SecretNotFound):
            store.get_token()
        with pytest.raises(SecretNotFound):
            store.delete_secret()


def test_vault_kv2_deletes_every_version_and_kv1_the_secret(
    bao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenstore.backends.vault import VaultBackend

    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    root = bao.client()
    path = f"offboard/{uuid.uuid4().hex[:10]}"
    for _ in range(2):
        root.secrets.kv.v2.create_or_update_secret(path=path, secret={"access_token": canary()})
    with VaultBackend(url=bao.url, path=path) as store:
        assert store.supports_delete
        store.delete_secret()
        with pytest.raises(SecretNotFound):
            store.get_token()
    listed = root.secrets.kv.v2.list_secrets(path="offboard")["data"]["keys"] if _has(root, "offboard") else []
    assert path.split("/")[1] not in listed
    mounts = root.sys.list_mounted_secrets_engines()
    if "kv1/" not in mounts:
        root.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    root.secrets.kv.v1.create_or_update_secret(path=path, secret={"access_token": canary()}, mount_point="kv1")
    with VaultBackend(url=bao.url, path=path, mount="kv1", kv_version=1) as store:
        store.delete_secret()
        with pytest.raises(SecretNotFound):
            store.get_token()


def _has(root: Any, folder: str) -> bool:
    try:
        root.secrets.kv.v2.list_secrets(path=folder)
    except Exception:
        return False
    return True


def test_file_delete_and_the_cache_forgets_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    FileBackend(path).put_token(canary())
    cached = CachingProvider(FileBackend(path), CachePolicy(ttl=300, refresh_ahead=0, jitter=0))
    cached.get_token()
    assert cached.supports_delete
    cached.delete_secret()
    assert not path.exists() and not FileBackend(path).lock_path.exists()
    with pytest.raises(SecretNotFound):  # no stale token served after a delete
        cached.get_token()


async def test_async_delete(tmp_path: Path) -> None:
    path = tmp_path / "token"
    FileBackend(path).put_token(canary())
    await FileBackend(path).adelete_secret()
    assert not path.exists()


def test_read_only_stores_say_they_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_DELETE_ME", canary())
    store = EnvBackend("TS_DELETE_ME")
    assert not store.supports_delete
    with pytest.raises(WriteNotSupported, match="cannot delete"):
        store.delete_secret()
    assert isinstance(tokenstore.WriteNotSupported("x"), tokenstore.ProviderError)

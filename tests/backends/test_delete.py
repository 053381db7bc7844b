"""``TokenProvider.delete_secret`` (offboarding) against the real local servers: Secrets Manager and SSM on moto,
KV v2 and v1 on OpenBao, Secret Manager on the local gRPC server, Key Vault on the local HTTPS fake (sync, async,
tenant views), a file; the stores that cannot delete (env, Conjur) say so."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import tokenstore
from tests.backends.test_aws import aws_env as aws_env  # autouse: moto's credentials
from tests.backends.test_aws import backend as aws_backend
from tests.backends.test_aws import moto as moto
from tests.backends.test_azure import BEARER
from tests.backends.test_azure import backend as azure_backend
from tests.backends.test_azure import kv as kv  # the Key Vault fake (module-scoped)
from tests.backends.test_azure import tls as tls
from tests.backends.test_gcp import PROJECT
from tests.backends.test_gcp import backend as gcp_backend
from tests.backends.test_gcp import sm_server as sm_server  # the Secret Manager gRPC server (module-scoped)
from tests.backends.test_vault import bao as bao
from tests.contract import canary
from tests.servers.azure_keyvault import KeyVaultServer
from tests.servers.gcp_secretmanager import SecretManagerServer
from tests.servers.moto import MotoServer
from tests.servers.openbao import OpenBaoServer
from tokenstore import (
    AccessDenied,
    CachePolicy,
    CachingProvider,
    ProviderError,
    SecretNotFound,
    TenantProviders,
    TenantTemplate,
    UnknownTenant,
    WriteNotSupported,
)
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


# -- Google Secret Manager (the local gRPC server) ------------------------------------------------------------


def _clean(caplog: pytest.LogCaptureFixture, error: BaseException, *values: str) -> bool:
    text = str(error) + repr(error) + "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    return not any(value in text for value in values)


def test_gcp_deletes_the_secret_with_every_version(
    sm_server: SecretManagerServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    secret = f"wa-del-{uuid.uuid4().hex[:10]}"
    values = [canary(), canary()]
    for value in values:
        sm_server.add_version(PROJECT, secret, value)
    with gcp_backend(sm_server, secret) as store:
        assert store.supports_delete
        store.delete_secret()
        assert not sm_server.exists(PROJECT, secret)
        with pytest.raises(SecretNotFound) as read:
            store.get_token()
        with pytest.raises(SecretNotFound, match="already deleted") as again:
            store.delete_secret()
    assert sm_server.count("DeleteSecret") >= 2
    assert _clean(caplog, read.value, *values) and _clean(caplog, again.value, *values)


def test_gcp_delete_denied_names_the_permission_and_keeps_the_secret(sm_server: SecretManagerServer) -> None:
    secret = f"wa-del-{uuid.uuid4().hex[:10]}"
    value = canary()
    sm_server.add_version(PROJECT, secret, value)
    sm_server.deny.add(f"projects/{PROJECT}/secrets/{secret}")
    with gcp_backend(sm_server, secret, version=1) as store:  # a pinned version still deletes the whole secret
        with pytest.raises(AccessDenied, match=r"secretmanager\.secrets\.delete") as denied:
            store.delete_secret()
    assert denied.value.__cause__ is not None and value not in str(denied.value)
    assert sm_server.exists(PROJECT, secret)


async def test_gcp_async_delete_on_a_tenant_view(sm_server: SecretManagerServer) -> None:
    prefix = f"wa-d{uuid.uuid4().hex[:8]}-"
    for tenant in ("a", "b"):
        sm_server.add_version(PROJECT, prefix + tenant, canary())
    parent = gcp_backend(sm_server, "unused")
    try:
        view = parent.named("secret", prefix + "a")
        assert view.supports_delete
        await view.adelete_secret()
        assert not sm_server.exists(PROJECT, prefix + "a") and sm_server.exists(PROJECT, prefix + "b")
        with pytest.raises(SecretNotFound):
            await view.aget_token()
        assert (await parent.named("secret", prefix + "b").aget_token()).version == "1"
    finally:
        await parent.aclose()


def test_gcp_offboarding_a_tenant_deletes_only_its_secret(sm_server: SecretManagerServer) -> None:
    prefix = f"wa-d{uuid.uuid4().hex[:8]}-"
    values = {tenant: canary() for tenant in ("a", "b")}
    for tenant, value in values.items():
        sm_server.add_version(PROJECT, prefix + tenant, value)
    with TenantProviders(gcp_backend(sm_server, "unused"), template=TenantTemplate("secret", prefix + "{tenant}")) as t:
        assert t.get_token("a").reveal() == values["a"]  # cached before the delete
        t.delete("a")
        with pytest.raises(UnknownTenant) as gone:
            t.get_token("a")
        assert t.get_token("b").reveal() == values["b"]
        assert t.tenants() == ["b"]
    assert values["a"] not in str(gone.value)


# -- Azure Key Vault (the local HTTPS fake) -------------------------------------------------------------------
def test_azure_deletes_the_secret_soft_delete(kv: KeyVaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    name = f"wa-del-{uuid.uuid4().hex[:10]}"
    values = [canary(), canary()]
    for value in values:
        kv.set_secret(name, value)
    with azure_backend(kv, name) as store:
        assert store.supports_delete
        store.delete_secret()
        assert kv.deleted(name) and kv.values(name) == []
        deletes = [r for r in kv.vault_requests() if r.method == "DELETE" and r.path == f"/secrets/{name}"]
        assert [r.status for r in deletes if r.auth == "accepted"] == [200]  # after the 401 challenge, if any
        assert not [r for r in kv.requests if r.path.startswith("/deletedsecrets")]  # the poller is not waited on
        with pytest.raises(SecretNotFound) as read:
            store.get_token()
        with pytest.raises(SecretNotFound) as again:
            store.delete_secret()
        # soft-deleted: the name stays reserved until purged or recovered, and a write says why
        with pytest.raises(ProviderError, match="deleted and awaiting purge") as reuse:
            store.put_token(canary())
    for error in (read.value, again.value, reuse.value):
        assert _clean(caplog, error, *values, BEARER)


def test_azure_delete_denied_names_the_permission(kv: KeyVaultServer) -> None:
    name = f"wa-del-{uuid.uuid4().hex[:10]}"
    kv.set_secret(name, canary())
    kv.deny.add(name)
    with azure_backend(kv, name) as store:
        with pytest.raises(AccessDenied, match="secrets/delete") as denied:
            store.delete_secret()
    assert denied.value.__cause__ is not None
    assert not kv.deleted(name)


async def test_azure_async_delete_on_a_tenant_view(kv: KeyVaultServer) -> None:
    prefix = f"wa-d{uuid.uuid4().hex[:8]}-"
    values = {tenant: canary() for tenant in ("a", "b")}
    for tenant, value in values.items():
        kv.set_secret(prefix + tenant, value)
    parent = azure_backend(kv, "unused")
    try:
        view = parent.named("name", prefix + "a")
        assert view.supports_delete
        await view.adelete_secret()
        assert kv.deleted(prefix + "a") and not kv.deleted(prefix + "b")
        with pytest.raises(SecretNotFound):
            await view.aget_token()
        assert (await parent.named("name", prefix + "b").aget_token()).reveal() == values["b"]
    finally:
        await parent.aclose()


def test_azure_offboarding_a_tenant_deletes_only_its_secret(kv: KeyVaultServer) -> None:
    prefix = f"wa-d{uuid.uuid4().hex[:8]}-"
    values = {tenant: canary() for tenant in ("a", "b")}
    for tenant, value in values.items():
        kv.set_secret(prefix + tenant, value)
    with TenantProviders(azure_backend(kv, "unused"), template=TenantTemplate("name", prefix + "{tenant}")) as t:
        assert t.get_token("a").reveal() == values["a"]
        t.delete("a")
        with pytest.raises(UnknownTenant) as gone:
            t.get_token("a")
        assert t.get_token("b").reveal() == values["b"]
        assert t.tenants() == ["b"]
    assert values["a"] not in str(gone.value)


def test_conjur_says_it_cannot_delete_over_rest() -> None:
    from tokenstore.backends.conjur import ConjurBackend

    assert not ConjurBackend.supports_delete.fget(None)  # type: ignore[attr-defined]
    with pytest.raises(WriteNotSupported, match="cannot delete or disable a variable over its REST API"):
        ConjurBackend.delete_secret(object.__new__(ConjurBackend))

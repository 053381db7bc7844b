"""env and file backends: the shared contract, plus what is particular to each."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

import pytest

import tokenstore
from tests.contract import ContractTarget, ProviderContract, TenantContract, TenantTarget, canary
from tokenstore.backends.env import EnvBackend
from tokenstore.backends.file import FileBackend

pytestmark = pytest.mark.backend("local")


class TestEnvContract(ProviderContract):
    @pytest.fixture
    def target(self, monkeypatch: pytest.MonkeyPatch) -> ContractTarget:
        value = canary()
        monkeypatch.setenv("TS_TEST_TOKEN", value)
        monkeypatch.delenv("TS_TEST_MISSING", raising=False)
        return ContractTarget(
            make=lambda: EnvBackend("TS_TEST_TOKEN"),
            initial=value,
            write_out_of_band=lambda v: monkeypatch.setenv("TS_TEST_TOKEN", v),
            make_missing=lambda: EnvBackend("TS_TEST_MISSING"),
            writable=False,
        )


class TestFileContract(ProviderContract):
    @pytest.fixture
    def target(self, tmp_path: Path) -> ContractTarget:
        value = canary()
        path = tmp_path / "token"
        path.write_text(value + "\n")
        path.chmod(0o600)

        def write(v: str) -> None:
            # the way Kubernetes does it: a new file swapped in, so inode and mtime change
            tmp = tmp_path / "token.new"
            tmp.write_text(v)
            os.replace(tmp, path)

        return ContractTarget(
            make=lambda: FileBackend(path),
            initial=value,
            write_out_of_band=write,
            make_missing=lambda: FileBackend(tmp_path / "nope"),
            writable=True,
        )


class TestFileJsonKeyContract(ProviderContract):
    @pytest.fixture
    def target(self, tmp_path: Path) -> ContractTarget:
        import json

        value = canary()
        path = tmp_path / "secret.json"
        path.write_text(json.dumps({"access_token": value, "other": "x"}))

        def write(v: str) -> None:
            tmp = tmp_path / "n.json"
            tmp.write_text(json.dumps({"access_token": v, "other": "x"}))
            os.replace(tmp, path)

        return ContractTarget(
            make=lambda: FileBackend(path, key="access_token"),
            initial=value,
            write_out_of_band=write,
            make_missing=lambda: FileBackend(tmp_path / "missing.json", key="access_token"),
            writable=True,
        )


def test_env_empty_and_whitespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_EMPTY", "  ")
    with pytest.raises(tokenstore.SecretMalformed, match="env:TS_EMPTY: the environment variable is empty"):
        EnvBackend("TS_EMPTY").get_token()
    secret = canary()
    monkeypatch.setenv("TS_TWO", f"{secret} {secret}")
    with pytest.raises(tokenstore.SecretMalformed) as info:
        EnvBackend("TS_TWO").get_token()
    assert secret not in str(info.value)


def test_file_reload_only_on_change(tmp_path: Path) -> None:
    path = tmp_path / "t"
    first = canary()
    path.write_text(first)
    backend = FileBackend(path)
    a = backend.get_token()
    assert backend.get_token() is a  # unchanged file: same object, no re-read
    second = canary()
    path.write_text(second + "-longer")
    assert backend.get_token().reveal() == second + "-longer"


def test_file_warns_when_group_readable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t"
    value = canary()
    path.write_text(value)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="tokenstore"):
        FileBackend(path).get_token()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("readable by group or others (mode 0644)" in w and str(path) in w for w in warnings)
    assert all(value not in w for w in warnings)
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="tokenstore"):
        FileBackend(path).get_token()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_file_put_is_atomic_and_private(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text(canary())
    path.chmod(0o600)
    backend = FileBackend(path)
    new = canary()
    backend.put_token(new)
    assert path.read_text() == new + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # no temporary file left behind; only the writers' lock file, private and empty
    assert sorted(p.name for p in tmp_path.iterdir()) == [".t.lock", "t"]
    lock = tmp_path / ".t.lock"
    assert lock.read_bytes() == b"" and stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_file_put_refuses_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "t"
    old = canary()
    path.write_text(old)
    with pytest.raises(tokenstore.SecretMalformed):
        FileBackend(path).put_token("two words")
    assert path.read_text() == old


def test_file_malformed_contents(tmp_path: Path) -> None:
    path = tmp_path / "t"
    secret = canary()
    path.write_text(f"{secret}\n{secret}\n")
    with pytest.raises(tokenstore.SecretMalformed) as info:
        FileBackend(path).get_token()
    assert secret not in str(info.value) and str(path) in str(info.value)
    path.write_text(f'{{"nope": "{secret}"}}')
    with pytest.raises(tokenstore.SecretNotFound, match="no key 'access_token'") as info2:
        FileBackend(path, key="access_token").get_token()
    assert secret not in str(info2.value)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(tokenstore.SecretMalformed, match="not UTF-8"):
        FileBackend(path).get_token()
    path.write_text("")
    with pytest.raises(tokenstore.SecretMalformed, match="empty"):
        FileBackend(path).get_token()


# -- many tenants ---------------------------------------------------------------------------------------------
class TestEnvTenants(TenantContract):
    @pytest.fixture
    def tenant_target(self, monkeypatch: pytest.MonkeyPatch) -> TenantTarget:
        prefix = f"TS_T{secrets.token_hex(4).upper()}_"

        def write_name(name: str, value: str) -> None:
            monkeypatch.setenv(name, value)

        return TenantTarget(
            make=lambda: EnvBackend("UNUSED"),
            template=tokenstore.TenantTemplate("var", prefix + "{tenant}"),
            write=lambda tenant, value: monkeypatch.setenv(prefix + tenant, value),
            write_name=write_name,
            decoys=[prefix[:-1] + "X_t1", prefix.lower() + "t2", prefix],
            config=lambda: {"token": {"backend": "env", "env": {"var": prefix + "{tenant}"}}},
        )


class TestFlatFileTenants(TenantContract):
    @pytest.fixture
    def tenant_target(self, tmp_path: Path) -> TenantTarget:
        def write(tenant: str, value: str) -> None:
            (tmp_path / f"{tenant}.token").write_text(value)

        return TenantTarget(
            make=lambda: FileBackend(tmp_path / "unused"),
            template=tokenstore.TenantTemplate("path", f"{tmp_path}/{{tenant}}.token"),
            write=write,
            writable=True,
            many=200,
        )


class TestFileTenants(TenantContract):
    @pytest.fixture
    def tenant_target(self, tmp_path: Path) -> TenantTarget:
        folder = tmp_path / "tenants"
        folder.mkdir()

        def write_name(name: str, value: str) -> None:
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            Path(name).write_text(value)

        def write(tenant: str, value: str) -> None:
            path = folder / tenant / "token"
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(".new")
            tmp.write_text(value + "\n")
            tmp.chmod(0o600)
            os.replace(tmp, path)

        (folder / "empty-folder").mkdir()
        return TenantTarget(
            make=lambda: FileBackend(tmp_path / "unused"),
            template=tokenstore.TenantTemplate("path", f"{folder}/{{tenant}}/token"),
            write=write,
            write_name=write_name,
            decoys=[f"{folder}/.hidden/token", f"{folder}/x/other", f"{folder}/token", f"{tmp_path}/token"],
            writable=True,
            onboard=False,  # the tenant's folder must exist (a mounted volume per tenant); flat templates onboard
            config=lambda: {"token": {"backend": "file", "file": {"path": f"{folder}/{{tenant}}/token"}}},
        )

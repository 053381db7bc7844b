"""Errors name their section (``token`` / ``app_secret``) and say when ``$TOKENSTORE_CONFIG`` chose the file;
file paths in a config expand ``~`` and resolve relative to the config file's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import tokenstore
from tests.contract import canary
from tokenstore import SecretNotFound, load_provider
from tokenstore.cli import main


def write(path: Path, config: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def test_provider_errors_name_their_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TS_UNSET_TOKEN", raising=False)
    monkeypatch.delenv("TS_UNSET_SECRET", raising=False)
    config = write(
        tmp_path / "c.yaml",
        {
            "token": {"backend": "env", "env": {"var": "TS_UNSET_TOKEN"}},
            "app_secret": {"backend": "env", "env": {"var": "TS_UNSET_SECRET"}},
        },
    )
    for section in ("token", "app_secret"):
        with load_provider(config, section=section) as provider, pytest.raises(SecretNotFound) as info:
            provider.get_token()
        assert info.value.section == section and str(info.value).startswith(f"{section}: env:TS_UNSET_")


async def test_async_errors_name_their_section_too(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", {"app_secret": {"backend": "file", "file": {"path": "missing"}}})
    async with load_provider(config, section="app_secret", cache=False) as provider:
        with pytest.raises(SecretNotFound, match=r"^app_secret: file:"):
            await provider.aget_token()


def test_a_path_from_tokenstore_config_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKENSTORE_CONFIG", str(tmp_path / "stale.yaml"))
    assert main(["show"]) == 2
    assert f"{tmp_path / 'stale.yaml'} (from $TOKENSTORE_CONFIG): config file not found" in capsys.readouterr().err
    assert main(["show", "-c", str(tmp_path / "given.yaml")]) == 2  # given on the command line: no mention
    assert "TOKENSTORE_CONFIG" not in capsys.readouterr().err
    write(tmp_path / "stale.yaml", {"token": {"backend": "nope"}})
    with pytest.raises(tokenstore.ConfigError, match=r"\(from \$TOKENSTORE_CONFIG\): token.backend"):
        load_provider()


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = canary()
    folder = tmp_path / "etc" / "wa"
    (folder / "secrets").mkdir(parents=True)
    (folder / "secrets" / "token").write_text(value)
    (folder / "secrets" / "token").chmod(0o600)
    config = write(folder / "config.yaml", {"token": {"backend": "file", "file": {"path": "secrets/token"}}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # cron and service managers start in another folder
    with load_provider(config, cache=False) as provider:
        assert provider.get_token().reveal() == value
        assert provider.source == f"file:{folder / 'secrets' / 'token'}"


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = canary()
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "token").write_text(value)
    (tmp_path / "token").chmod(0o600)
    (tmp_path / "ref").write_text("vault-token")
    config = write(tmp_path / "conf" / "c.yaml", {"token": {"backend": "file", "file": {"path": "~/token"}}})
    with load_provider(config, cache=False) as provider:
        assert provider.get_token().reveal() == value and "~" not in provider.source
    ref = tokenstore.Section({"k": {"file": "~/ref"}}, path="p", source=str(config)).get_secret_ref("k")
    assert ref is not None and ref.file == str(tmp_path / "ref") and ref.read() == "vault-token"
    monkeypatch.setenv("TOKENSTORE_CONFIG", "~/conf/c.yaml")
    with load_provider(cache=False) as provider:
        assert provider.get_token().reveal() == value

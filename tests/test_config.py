"""Configuration: loading, interpolation, and a table of bad configs with the exact message each gets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import tokenstore
from tests.contract import canary
from tokenstore import AccessDenied, CachingProvider, ConfigError
from tokenstore._factory import cache_policy_from_config
from tokenstore.backends.env import EnvBackend
from tokenstore.backends.file import FileBackend


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_ENV = "token:\n  backend: env\n  env: {var: TS_CFG_TOKEN}\n"

# (yaml text, expected message: the whole text after "<file>: ")
BAD_CONFIGS: list[tuple[str, str]] = [
    ("", "the config file is empty; see config.example.yaml"),
    ("- a\n- b\n", "the top level must be a mapping, got a list"),
    ("token: [\n", "invalid YAML at line 2, column 1: expected the node content, but found '<stream end>'"),
    (
        "tokn: {backend: env}\n",
        "tokn: unknown top-level section (did you mean 'token'?); known: whatsapp, token, app_secret, tenants, rotation, webhook",
    ),
    (
        "whatsapp: {}\n",
        "token: required section is missing; it names the backend, e.g. token: {backend: env, env: {var: WHATSAPP_TOKEN}}",
    ),
    ("token: env\n", "token: must be a mapping, got a string"),
    ("token: {env: {var: X}}\n", "token.backend: required string is missing"),
    ("token: {backend: 3}\n", "token.backend: must be a string, got a number"),
    (
        "token: {backend: valt}\n",
        "token.backend: unknown backend 'valt' (did you mean 'vault'?); available: aws, azure, conjur, env, file, gcp, "
        "vault. A third-party backend must be installed and registered under the 'tokenstore.backends' entry-point group",
    ),
    (
        "token: {backend: env, env: {var: X}, cahce: {ttl: 1}}\n",
        "token.cahce: unknown option (did you mean 'cache'?); known options: aws, azure, backend, cache, conjur, env, "
        "file, gcp, vault",
    ),
    ("token: {backend: env, env: {vr: X}}\n", "token.env.vr: unknown option (did you mean 'var'?); known options: var"),
    (
        "token: {backend: env, env: {var: 1BAD}}\n",
        "token.env.var: must be an environment variable name (letters, digits and _)",
    ),
    ("token: {backend: env, env: {var: ''}}\n", "token.env.var: must not be empty"),
    ("token: {backend: file, file: {}}\n", "token.file.path: required string is missing"),
    ("token: {backend: file, file: {path: [a]}}\n", "token.file.path: must be a string, got a list"),
    ("token: {backend: env, cache: {ttl: -5}}\n", "token.cache.ttl: must be at least 0.001, got -5"),
    ("token: {backend: env, cache: {ttl: soon}}\n", "token.cache.ttl: must be a number, got the string 'soon'"),
    (
        "token: {backend: env, cache: {ttl: 10, refresh_ahead: 20}}\n",
        "token.cache.refresh_ahead: must be shorter than ttl (10s), got 20",
    ),
    ("token: {backend: env, cache: {jitter: 2}}\n", "token.cache.jitter: must be at most 0.99, got 2"),
    (
        "token: {backend: env, cache: {background_refresh: maybe}}\n",
        "token.cache.background_refresh: must be true or false, got a string",
    ),
    (
        "token: {backend: env, cache: {backoff_initial: 10, backoff_max: 1}}\n",
        "token.cache.backoff_max: must be at least backoff_initial (10s)",
    ),
    (
        "token: {backend: env, cache: {tll: 10}}\n",
        "token.cache.tll: unknown option (did you mean 'ttl'?); known options: background_refresh, backoff_initial, backoff_max, enabled, fetch_timeout, jitter, max_stale, refresh_ahead, ttl",
    ),
    (
        "token: {backend: env, env: {var: '${TS_UNSET_VAR}'}}\n",
        "token.env.var: environment variable TS_UNSET_VAR is not set; set it, or give a default with ${VAR:-value}",
    ),
    (
        "token: {backend: env, env: {var: '${1x}'}}\n",
        "token.env.var: bad interpolation: use ${VAR} or ${VAR:-default} (write $$ for a literal $)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS, ids=[f"bad{i:02d}" for i in range(len(BAD_CONFIGS))])
def test_bad_config_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    monkeypatch.delenv("TS_UNSET_VAR", raising=False)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        tokenstore.load_provider(path)
    assert str(info.value) == f"{path}: {expected}"
    assert info.value.source == str(path)


def test_at_least_fifteen_bad_configs() -> None:
    assert len(BAD_CONFIGS) >= 15


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        tokenstore.load_provider(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        tokenstore.load_provider(tmp_path)


def test_yaml_error_never_echoes_the_file_text(tmp_path: Path) -> None:
    secret = canary()
    path = write(tmp_path, f"token: {{backend: env\n  bogus: '{secret}\n")
    with pytest.raises(ConfigError) as info:
        tokenstore.load_provider(path)
    assert secret not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_interpolation_with_defaults_and_escapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_VAR_NAME", "TS_CFG_TOKEN")
    monkeypatch.delenv("TS_TTL", raising=False)
    path = write(
        tmp_path,
        "x-note: 'costs $$5'\n"
        "token:\n  backend: env\n  env: {var: '${TS_VAR_NAME}'}\n  cache: {ttl: '${TS_TTL:-42}'}\n",
    )
    config = tokenstore.load_config(path)
    assert config["x-note"] == "costs $5"
    assert config["token"]["env"]["var"] == "TS_CFG_TOKEN"
    provider = tokenstore.load_provider(path)
    assert isinstance(provider, CachingProvider)
    assert provider.policy.ttl == 42.0
    assert isinstance(provider.inner, EnvBackend) and provider.inner.var == "TS_CFG_TOKEN"


def test_config_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = canary()
    monkeypatch.setenv("TS_CFG_TOKEN", value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENSTORE_CONFIG", raising=False)
    with pytest.raises(
        ConfigError, match=r"no config file given: pass a path \(--config FILE\), set \$TOKENSTORE_CONFIG"
    ):
        tokenstore.load_provider()
    write(tmp_path, GOOD_ENV, "tokenstore.yaml")
    assert tokenstore.load_provider().get_token().reveal() == value
    other = write(tmp_path, GOOD_ENV.replace("TS_CFG_TOKEN", "TS_OTHER"), "other.yaml")
    monkeypatch.setenv("TOKENSTORE_CONFIG", str(other))
    monkeypatch.setenv("TS_OTHER", value + "2")
    assert tokenstore.load_provider().get_token().reveal() == value + "2"


def test_provider_from_config_whole_or_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = canary()
    monkeypatch.setenv("TS_CFG_TOKEN", value)
    whole = {"token": {"backend": "env", "env": {"var": "TS_CFG_TOKEN"}}}
    assert tokenstore.provider_from_config(whole).get_token().reveal() == value
    assert tokenstore.provider_from_config(whole["token"]).get_token().reveal() == value
    raw = tokenstore.provider_from_config(whole, cache=False)
    assert isinstance(raw, EnvBackend)
    path = tmp_path / "t"
    path.write_text(value)
    secret_cfg: dict[str, Any] = {
        "token": {"backend": "env"},
        "app_secret": {"backend": "file", "file": {"path": str(path)}, "cache": False},
    }
    app = tokenstore.provider_from_config(secret_cfg, section="app_secret")
    assert isinstance(app, FileBackend)  # cache: false -> the raw backend


def test_other_backend_sections_may_stay_for_switching(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_CFG_TOKEN", canary())
    cfg = {
        "token": {
            "backend": "env",
            "env": {"var": "TS_CFG_TOKEN"},
            "vault": {"url": "https://vault.internal:8200", "path": "whatsapp/prod"},
        }
    }
    assert tokenstore.provider_from_config(cfg).get_token()


def test_cache_defaults_and_disable() -> None:
    from tokenstore import Section

    policy = cache_policy_from_config(Section({}, path="token"))
    assert policy is not None and (policy.ttl, policy.refresh_ahead, policy.max_stale) == (300, 30, 3600)
    assert cache_policy_from_config(Section({"cache": False}, path="token")) is None
    assert cache_policy_from_config(Section({"cache": {"enabled": False}}, path="token")) is None
    short = cache_policy_from_config(Section({"cache": {"ttl": 1}}, path="token"))
    assert short is not None and short.refresh_ahead == pytest.approx(0.1)  # defaults scale down with a short TTL


def test_secret_ref_refuses_literals_and_never_echoes_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenstore import Section

    secret = canary()
    section = Section({"api_key": secret}, path="token.x", source="c.yaml")
    with pytest.raises(ConfigError) as info:
        section.get_secret_ref("api_key")
    assert str(info.value) == (
        "c.yaml: token.x.api_key: a credential must not be written into the config: give {env: VAR_NAME} or {file: /path}"
    )
    with pytest.raises(ConfigError, match="give exactly one of env or file"):
        Section({"k": {"env": "A", "file": "/b"}}, path="p").get_secret_ref("k")
    # a token pasted where a variable name belongs is not echoed either
    ref = Section({"k": {"env": secret}}, path="p", source="c.yaml").get_secret_ref("k")
    assert ref is not None
    monkeypatch.delenv(secret, raising=False)
    with pytest.raises(AccessDenied) as info2:  # missing from the environment: the one rule (tokenstore/_errors.py)
        ref.read()
    assert secret not in str(info2.value) and "p.k" in str(info2.value)
    cred = tmp_path / "cred"
    cred.write_text(secret + "\n")
    file_ref = Section({"k": {"file": str(cred)}}, path="p").get_secret_ref("k")
    assert file_ref is not None and file_ref.read() == secret
    cred.write_text("")
    with pytest.raises(AccessDenied, match="is empty"):
        file_ref.read()
    monkeypatch.setenv("TS_REF", secret)
    env_ref = Section({"k": {"env": "TS_REF"}}, path="p").get_secret_ref("k")
    assert env_ref is not None and env_ref.read() == secret


def test_example_config_loads_with_env_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parent.parent / "config.example.yaml"
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "123")
    value = canary()
    monkeypatch.setenv("WHATSAPP_TOKEN", value)
    provider = tokenstore.load_provider(example)
    assert provider.get_token().reveal() == value
    assert os.fspath(example)

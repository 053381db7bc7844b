"""One rule, every backend: a store credential missing from the environment is AccessDenied (CLI exit 3) whose
message says "the store's credential is missing" and names the field or chain and the config file
(tokenstore/_errors.py). Each case fails before any request reaches a store, so no server is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import tokenstore
from tokenstore import AccessDenied
from tokenstore.cli import main

MISSING = "TOKENSTORE_TEST_UNSET_CREDENTIAL"

CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "vault token env": (
        "vault",
        {"url": "http://127.0.0.1:9", "path": "p", "auth": {"method": "token", "token": {"env": MISSING}}},
        f"environment variable {MISSING} is not set or empty (cfg.yaml: token.vault.auth.token)",
    ),
    "vault approle file": (
        "vault",
        {
            "url": "http://127.0.0.1:9",
            "path": "p",
            "auth": {"method": "approle", "role_id": {"env": MISSING}, "secret_id": {"file": "/no/such/secret"}},
        },
        "is not set or empty (cfg.yaml: token.vault.auth.role_id)",
    ),
    "conjur api key env": (
        "conjur",
        {
            "url": "http://127.0.0.1:9",
            "account": "acme",
            "login": "host/app",
            "variable": "wa/token",
            "authn": {"api_key": {"env": MISSING}},
        },
        f"environment variable {MISSING} is not set or empty (cfg.yaml: token.conjur.authn.api_key)",
    ),
    "conjur jwt file": (
        "conjur",
        {
            "url": "http://127.0.0.1:9",
            "account": "acme",
            "variable": "wa/token",
            "authn": {"method": "jwt", "service_id": "k8s", "jwt": {"file": "/no/such/jwt"}},
        },
        "file /no/such/jwt does not exist (cfg.yaml: token.conjur.authn.jwt)",
    ),
    "azure client secret env": (
        "azure",
        {
            "vault_url": "https://127.0.0.1:9",
            "name": "wa-token",
            "credential": {
                "method": "client_secret",
                "tenant_id": "00000000-0000-0000-0000-000000000001",
                "client_id": "00000000-0000-0000-0000-000000000002",
                "client_secret": {"env": MISSING},
            },
        },
        "is not set or empty (cfg.yaml: token.azure.credential.client_secret)",
    ),
    "aws chain": ("aws", {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9", "secret_id": "x"}, "AWS"),
    "gcp chain": ("gcp", {"project": "p", "secret": "s"}, "GOOGLE_APPLICATION_CREDENTIALS"),
}


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credential anywhere: no AWS keys or files, no Google ADC (and no metadata server), no Azure env."""
    monkeypatch.delenv(MISSING, raising=False)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # the metadata server lookup stays on loopback
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.usefixtures("bare_environment")
def test_a_missing_store_credential_is_access_denied(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend, options, expected = CASES[case]
    section = {"backend": backend, backend: options}
    with tokenstore.provider_from_config(section, source="cfg.yaml", cache=False) as provider:
        with pytest.raises(AccessDenied) as info:
            provider.get_token()
    message = str(info.value)
    assert "the store's credential is missing" in message and expected in message, message
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"token": section}))
    assert main(["show", "-c", str(config)]) == 3  # the same exit code from the CLI, whatever the backend
    assert "AccessDenied: " in capsys.readouterr().err

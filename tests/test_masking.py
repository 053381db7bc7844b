"""One masking rule for every text built from a config value: a token pasted where a name goes is shown as
fingerprint and length in error messages, Token.source, log records, ``show`` output and ``--json``."""

from __future__ import annotations

import json
import logging
import secrets
import string
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract import canary
from tokenstore import (
    ConfigError,
    ProviderError,
    Token,
    TokenStoreError,
    fingerprint_of,
    load_provider,
    looks_like_credential,
    mask_credentials,
    masked,
)
from tokenstore.cli import main

ALPHABET = string.ascii_letters + string.digits


def meta_token() -> str:
    return "EAAG" + "".join(secrets.choice(ALPHABET) for _ in range(150))


CREDENTIALS = [
    meta_token(),
    canary(),
    secrets.token_hex(16),  # a Meta app secret: 32 hex digits
    "hvs." + secrets.token_urlsafe(66),  # a Vault token
    secrets.token_urlsafe(30),  # base64url
    "1" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(54)),  # a Conjur API key
    "Xy8Q~abcdefGHIJ.klmn_opqr123STUVwxyz90",  # an Azure client secret's shape
]

READABLE = [
    "WHATSAPP_TOKEN",
    "WHATSAPP_BUSINESS_ACCOUNT_ACCESS_TOKEN_PROD",
    "whatsapp_token_for_tenant_acme_2024",
    "WhatsAppBusinessAccountToken",
    "CustomerServiceWhatsappSender",
    "/run/secrets/whatsapp_token",
    "vault:secret/whatsapp/prod#access_token",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:whatsapp/prod-AbCdEf",
    "projects/my-project-123456/secrets/whatsapp-token/versions/latest",
    "https://myvault.vault.azure.net/secrets/whatsapp-token",
    "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
    "/tmp/pytest-of-root/pytest-12/test_something_long_name0/config.yaml",
    "sha256:1a2b3c4d5e6f",
    "1234567890123456789012",
    "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
]


@pytest.mark.parametrize("value", CREDENTIALS)
def test_credentials_are_masked_in_any_text(value: str) -> None:
    assert looks_like_credential(value)
    text = mask_credentials(f"env:{value}: environment variable is not set ('{value}')")
    assert value not in text
    assert text == f"env:{masked(value)}: environment variable is not set ('{masked(value)}')"
    assert fingerprint_of(value) in text and f"{len(value)} chars" in text
    assert mask_credentials(text) == text  # idempotent


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("app secret", lambda r: "".join(r.choice("0123456789abcdef") for _ in range(32))),
        ("base64url 40", lambda r: "".join(r.choice(ALPHABET + "-_") for _ in range(40))),
        ("meta token", lambda r: "EAAG" + "".join(r.choice(ALPHABET) for _ in range(150))),
        ("alnum 32", lambda r: "".join(r.choice(ALPHABET) for _ in range(32))),
    ],
)
def test_random_secrets_are_masked(kind: str, make: Any) -> None:
    """A seeded sample (deterministic): every one of 2,000 random secrets of each kind is masked."""
    import random

    rng = random.Random(14)
    leaked = [v for v in (make(rng) for _ in range(2000)) if v in mask_credentials(f"x:{v}")]
    assert leaked == [], f"{len(leaked)} {kind} values not masked"


@pytest.mark.parametrize("value", READABLE)
def test_names_paths_urls_and_ids_stay_readable(value: str) -> None:
    assert mask_credentials(f"{value}: not found") == f"{value}: not found"


def test_errors_tokens_and_sources_mask_at_construction() -> None:
    value = meta_token()
    error = ConfigError("bad", source=f"/etc/{value}/config.yaml", field=f"token.env.{value}")
    assert (
        value not in str(error) and masked(value) in str(error) and error.source == f"/etc/{masked(value)}/config.yaml"
    )
    assert value not in str(ProviderError(value)) and masked(value) in str(ProviderError(value))
    assert ProviderError("x", source=f"env:{value}").source == f"env:{masked(value)}"
    token = Token("secret-value", source=f"file:/run/{value}")
    assert token.source == f"file:/run/{masked(value)}" and value not in repr(token)


def write(tmp_path: Path, config: dict[str, object]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def sections(value: str, tmp_path: Path) -> dict[str, dict[str, object]]:
    """A token pasted where a name goes, in every place the issue lists."""
    missing = tmp_path / "missing-dir"
    return {
        "env var name": {"token": {"backend": "env", "env": {"var": value}}},
        "${VAR} holding the token": {"token": {"backend": "file", "file": {"path": "${PASTED}"}}},
        "file path": {"token": {"backend": "file", "file": {"path": str(missing / value)}}},
        "vault path": {
            "token": {
                "backend": "vault",
                "vault": {"url": "http://127.0.0.1:9", "path": value, "auth": {"method": "token"}},
            }
        },
        "app_secret env var name": {
            "token": {"backend": "env", "env": {"var": "WHATSAPP_TOKEN"}},
            "app_secret": {"backend": "env", "env": {"var": value}},
        },
    }


@pytest.mark.parametrize(
    "case",
    ["env var name", "${VAR} holding the token", "file path", "vault path", "app_secret env var name"],
)
def test_a_token_pasted_where_a_name_goes_never_comes_back(
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    value = canary()
    monkeypatch.setenv("PASTED", value)
    monkeypatch.setenv("WHATSAPP_TOKEN", "t" * 30)
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    path = write(tmp_path, sections(value, tmp_path)[case])
    section = "app_secret" if case.startswith("app_secret") else "token"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TokenStoreError) as info:
        with load_provider(path, section=section, cache=False) as provider:
            assert value not in provider.source
            provider.get_token()
    assert value not in str(info.value) and masked(value) in str(info.value)
    for argv in (
        ["show", "-c", str(path), "--section", section],
        ["show", "-c", str(path), "--section", section, "--json"],
    ):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code in (2, 3) and value not in out + err and masked(value) in out + err
        if "--json" in argv:
            assert masked(value) in json.loads(out)["error"]
    assert value not in caplog.text


def test_show_masks_the_source_of_a_token_it_could_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pasted = meta_token()
    folder = tmp_path / pasted
    folder.mkdir()
    (folder / "token").write_text("EAAGreal" + "x" * 40)
    path = write(tmp_path, {"token": {"backend": "file", "file": {"path": str(folder / "token")}}})
    caplog.set_level(logging.DEBUG)
    assert main(["show", "-c", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert pasted not in out and json.loads(out)["source"] == f"file:{tmp_path}/{masked(pasted)}/token"
    assert pasted not in caplog.text


def test_the_masking_filter_covers_log_arguments(caplog: pytest.LogCaptureFixture) -> None:
    from tokenstore.backends.file import logger

    value = meta_token()
    caplog.set_level(logging.DEBUG, logger="tokenstore.backends.file")
    logger.warning("%s is readable by group or others", Path("/run") / value)
    assert value not in caplog.text and masked(value) in caplog.text


def test_a_dotted_field_name_keeps_its_readable_segments() -> None:
    """A credential used as a mapping key ends up in a dotted field name: only that segment is masked, so the
    message still says which section and field it is about."""
    token = "EAAG" + "Zx81qP" * 20
    text = mask_credentials(f"fuzz.yaml: tenants.numbers.{token}: must be a tenant key")
    assert token not in text
    assert text.startswith("fuzz.yaml: tenants.numbers.[masked sha256:")
    assert text.endswith(f", {len(token)} chars]: must be a tenant key")

"""``Sender.from_config``: the whatsapp: section validated (errors name file and dotted field), the token
provider built from token:, the app secret from app_secret:; the example config loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import sender
from sender import PacingPolicy, RetryPolicy
from sender.sandbox import Sandbox
from tests.contract import assert_clean
from tests.sender.conftest import TO, Store
from tokenstore import CachingProvider, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, config: dict[str, object]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def base(sandbox: Sandbox, store: Store, **whatsapp: object) -> dict[str, object]:
    return {
        "whatsapp": {"phone_number_id": sandbox.phone_number_id, "base_url": sandbox.url, **whatsapp},
        "token": {"backend": "file", "file": {"path": str(store.path)}, "cache": {"ttl": 60}},
    }


def test_from_config_file_sends(tmp_path: Path, sandbox: Sandbox, store: Store) -> None:
    path = write(
        tmp_path,
        base(
            sandbox,
            store,
            api_version="v25.0",
            timeout={"connect": 2, "read": 9},
            retry={"max_attempts": 5, "codes": [130429], "backoff_max": 2},
            pacing={"messages_per_second": 500},
        ),
    )
    with sender.Sender.from_config(path) as client:
        assert client.api_version == "v25.0"
        assert client.retry == RetryPolicy(max_attempts=5, codes=frozenset({130429}), backoff_max=2)
        assert client.pacer is not None and client.pacer.policy == PacingPolicy(messages_per_second=500)
        assert isinstance(client.provider, CachingProvider)
        assert client._timeout.read == 9 and client._timeout.connect == 2
        assert client.send_text(TO, "from config").message_id
    assert sandbox.requests[0].path.startswith("/v25.0/")


async def test_async_from_mapping(sandbox: Sandbox, store: Store) -> None:
    async with sender.AsyncSender.from_config(base(sandbox, store, retry=False)) as client:
        assert client.retry == RetryPolicy.disabled()
        assert (await client.send_template(TO, "hello_world")).message_status == "accepted"


def test_config_env_and_defaults(tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WA_PHONE", "1234567")
    path = tmp_path / "c.yaml"
    path.write_text(
        f"whatsapp:\n  phone_number_id: ${{WA_PHONE}}\ntoken:\n  backend: file\n  file: {{path: {store.path}}}\n"
    )
    monkeypatch.setenv("TOKENSTORE_CONFIG", str(path))
    with sender.Sender.from_config() as client:
        assert client.phone_number_id == "1234567"
        assert client.messages_url == "https://graph.facebook.com/v27.0/1234567/messages"
        assert client.retry == RetryPolicy() and client.pacer is None and client.app_secret is None


@pytest.mark.parametrize(
    ("whatsapp", "field", "message"),
    [
        ({"phone_number_id": None}, "whatsapp.phone_number_id", "required"),
        ({"phone_number_id": "+1555"}, "whatsapp.phone_number_id", "numeric"),
        ({"api_version": "26.0"}, "whatsapp.api_version", "v27.0"),
        ({"base_url": "http://graph.facebook.com"}, "whatsapp.base_url", "plain http"),
        ({"base_url": "https://u:p@graph.facebook.com"}, "whatsapp.base_url", "credentials"),
        ({"timeout": "soon"}, "whatsapp.timeout", "number"),
        ({"timeout": {"reed": 3}}, "whatsapp.timeout.reed", "did you mean 'read'"),
        ({"retry": {"codes": [130429, 131026]}}, "whatsapp.retry.codes", "131026 must never be retried"),
        ({"retry": {"codes": ["x"]}}, "whatsapp.retry.codes[0]", "whole number"),
        ({"retry": {"statuses": [400]}}, "whatsapp.retry.statuses", "only 429 and 5xx"),
        ({"retry": {"max_attempts": 0}}, "whatsapp.retry.max_attempts", "at least 1"),
        ({"pacing": {"messages_per_second": "fast"}}, "whatsapp.pacing.messages_per_second", "number"),
        ({"appsecret_proof": "maybe"}, "whatsapp.appsecret_proof", "true, false or timed"),
        ({"appsecret_proof": True}, "whatsapp.appsecret_proof", "app_secret: section is required"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "whatsapp.ca_bundle", "no such file"),
        ({"phone_numer_id": "1"}, "whatsapp.phone_numer_id", "did you mean 'phone_number_id'"),
    ],
)
def test_errors_name_file_and_field(
    tmp_path: Path, sandbox: Sandbox, store: Store, whatsapp: dict[str, object], field: str, message: str
) -> None:
    config = base(sandbox, store)
    section = dict(config["whatsapp"])  # type: ignore[call-overload]
    section.update(whatsapp)
    config["whatsapp"] = {k: v for k, v in section.items() if v is not None}
    path = write(tmp_path, config)
    with pytest.raises(ConfigError) as info:
        sender.Sender.from_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {field}: "), text
    assert message in text
    assert_clean(text, store.initial)


def test_missing_sections(tmp_path: Path, store: Store) -> None:
    path = write(tmp_path, {"token": {"backend": "file", "file": {"path": str(store.path)}}})
    with pytest.raises(ConfigError, match=r"whatsapp: required section is missing"):
        sender.Sender.from_config(path)
    path = write(tmp_path, {"whatsapp": {"phone_number_id": "1"}})
    with pytest.raises(ConfigError, match=r": token: required section"):
        sender.Sender.from_config(path)


def test_appsecret_proof_from_its_own_provider(tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox(require_appsecret_proof=True) as sb:
        sb.issue_token(value=store.initial)
        monkeypatch.setenv("TEST_APP_SECRET", sb.app_secret)
        config = base(sb, store, appsecret_proof="timed")
        config["app_secret"] = {"backend": "env", "env": {"var": "TEST_APP_SECRET"}}
        with sender.Sender.from_config(write(tmp_path, config)) as client:
            assert client.app_secret is not None and client.auth.timed
            client.send_text(TO, "proved")
        assert sb.received_counts() == {"proved": 1}
        assert "appsecret_time=" in sb.requests[0].path


def test_the_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "106540352242922")
    monkeypatch.delenv("WHATSAPP_APP_ID", raising=False)
    config = load_config(ROOT / "config.example.yaml")
    settings = sender.settings_from_config(config, source="config.example.yaml")
    assert settings.phone_number_id == "106540352242922" and settings.app_id is None
    assert settings.retry == RetryPolicy() and settings.pacing is None and settings.appsecret_proof == "off"

"""The webhook: options documented in README.md's table and config.example.yaml match the code's."""

from __future__ import annotations

import re

import pytest

import sender
import tokenstore
from sender._webhooks import WEBHOOK_KEYS
from tests.ecosystem.conftest import ROOT
from tests.ecosystem.test_docs import tables_under


def test_readme_table_lists_every_webhook_option() -> None:
    rows = next(t for t in tables_under((ROOT / "README.md").read_text(), "## Webhooks") if "option" in t[0])
    assert [re.findall(r"`([a-z_]+)`", r["option"])[0] for r in rows] == list(WEBHOOK_KEYS)


def test_config_example_documents_and_parses_the_webhook_section(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "config.example.yaml").read_text()
    section = text[text.index("\nwebhook:") :]
    documented = re.findall(r"^  (?:# )?([a-z_]+):", section, flags=re.M)
    assert documented == list(WEBHOOK_KEYS)
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "1")
    monkeypatch.setenv("WHATSAPP_APP_ID", "1")
    config = tokenstore.load_config(ROOT / "config.example.yaml")
    with sender.WebhookVerifier.from_config(config) as verifier:
        assert verifier.settings == sender.WebhookSettings()
        assert [p.source for p in verifier.providers] == ["env:WHATSAPP_APP_SECRET", "env:WHATSAPP_VERIFY_TOKEN"]

"""README matches what a new user runs in the first hour (issue 14): the sandbox flags, the examples extra,
the version default, the CLI conventions."""

from __future__ import annotations

from tests.ecosystem.conftest import ROOT
from tokenstore.cli import build_parser

README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = (ROOT / "config.example.yaml").read_text(encoding="utf-8")


def test_readme_documents_every_sandbox_and_demo_flag() -> None:
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in ("sandbox", "demo"):
        flags = {o for a in sub[command]._actions for o in a.option_strings if o.startswith("--")}
        for flag in flags - {"--help", "--verbose"}:
            assert flag in README, f"README does not document tokenstore {command} {flag}"


def test_readme_says_what_to_install_for_the_fastapi_example() -> None:
    section = README[README.index("### FastAPI") :]
    assert "pip install 'whatsapp-tokenstore[examples]'" in section[: section.index("\n## ")]


def test_readme_and_example_pin_v27_and_document_paths() -> None:
    for text in (README, EXAMPLE):
        assert "api_version: v27.0" in text and "v26.0" not in text
        assert "relative path is resolved against the folder" in text
    assert "(from $TOKENSTORE_CONFIG)" in README and "the store's credential is missing" in README

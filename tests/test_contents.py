"""Secret contents that are clearly not a bare token are refused at read time, naming the source and what to
do, never the value: quotes, a NAME=value line, a JSON object (compact too) read without ``key:``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contract import canary
from tokenstore import SecretMalformed
from tokenstore.backends.env import EnvBackend
from tokenstore.backends.file import FileBackend


def cases(value: str) -> list[tuple[str, str]]:
    return [
        (f'"{value}"', "in quotes"),
        (f"'{value}'", "in quotes"),
        (f"WHATSAPP_TOKEN={value}", "NAME=value line"),
        (f"export WHATSAPP_TOKEN={value}", "NAME=value line"),
        (json.dumps({"access_token": value}, separators=(",", ":")), "JSON object"),
        (json.dumps({"access_token": value}), "JSON object"),
    ]


@pytest.mark.parametrize("index", range(6))
def test_the_file_backend_refuses_what_is_not_a_bare_token(index: int, tmp_path: Path) -> None:
    value = canary()
    contents, expected = cases(value)[index]
    path = tmp_path / "token"
    path.write_text(contents + "\n")
    path.chmod(0o600)
    with pytest.raises(SecretMalformed) as info:
        FileBackend(path).get_token()
    message = str(info.value)
    assert expected in message and f"file:{path}" in message and value not in message
    if "JSON" in expected:
        assert "set key:" in message  # the file backend has a key option


@pytest.mark.parametrize("index", range(6))
def test_the_env_backend_refuses_what_is_not_a_bare_token(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    value = canary()
    contents, expected = cases(value)[index]
    if " " in contents and "JSON" not in expected:
        expected = "NAME=value line"
    monkeypatch.setenv("WA_TOKEN_UNDER_TEST", contents)
    with pytest.raises(SecretMalformed) as info:
        EnvBackend("WA_TOKEN_UNDER_TEST").get_token()
    message = str(info.value)
    assert "env:WA_TOKEN_UNDER_TEST" in message and value not in message
    assert expected in message or "whitespace" in message


def test_a_bare_token_and_a_json_object_with_key_are_read(tmp_path: Path) -> None:
    value = canary()
    path = tmp_path / "token"
    path.write_text(value + "\n")
    path.chmod(0o600)
    assert FileBackend(path).get_token().reveal() == value
    path.write_text(json.dumps({"access_token": value}))
    assert FileBackend(path, key="access_token").get_token().reveal() == value
    base64_like = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="  # "=" padding at the end is not NAME=value
    path.write_text(base64_like)
    assert FileBackend(path).get_token().reveal() == base64_like

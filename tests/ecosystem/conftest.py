"""Fixtures for the ecosystem tests: the Graph sandbox, a file-backed token store holding a canary token, and
a way to load the scripts under examples/ (they are not a package)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sender.sandbox import Sandbox
from tests.contract import canary
from tests.sender.conftest import Store
from tokenstore.backends.file import FileBackend

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TO = "15551234567"


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sender", "tokenstore", "pywa", "pywa_async"):
        caplog.set_level(logging.DEBUG, logger=name)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def store(tmp_path: Path, sandbox: Sandbox) -> Store:
    value = sandbox.issue_token(value=canary())
    path = tmp_path / "token"
    FileBackend(path).put_token(value)
    return Store(path=path, initial=value, sandbox=sandbox)


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a fresh module."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def texts(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the captured records say, arguments and exceptions included."""
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]) + str(record.exc_info[1]))
    return "\n".join(parts)

"""Fixtures for the ecosystem tests: the Graph sandbox and a file-backed token store holding a canary token
(both from tests/sender/conftest.py), and a way to load the scripts under examples/ (they are not a package)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

import pytest

# the sender suite's fixtures, imported so that pytest provides them to this folder's tests too
from tests.sender.conftest import sandbox as sandbox
from tests.sender.conftest import store as store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TO = "15551234567"


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sender", "tokenstore", "pywa", "pywa_async"):
        caplog.set_level(logging.DEBUG, logger=name)


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a fresh module."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

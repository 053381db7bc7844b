"""``tokenstore demo`` shows the lifecycle too: a 60-day token close to expiry is refreshed under a running
sender, the old token is revoked, and sends still succeed; fast, exit 0, fingerprints only."""

from __future__ import annotations

import re
import time

import pytest

from tests.lifecycle.conftest import TOKEN_SHAPED
from tokenstore.cli import main


def test_demo_shows_the_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code = main(["demo"])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 0, err
    assert elapsed < 10, f"the demo took {elapsed:.1f}s"
    assert not TOKEN_SHAPED.search(out + err) and "CANARY" not in out
    assert "both messages delivered, each exactly once" in out  # part 1 is unchanged
    assert re.search(r"tokenstore check: the token expires in 3\.0 days.*\(exit 5\)", out)
    assert re.search(r"refresh due:\s+yes", out) and re.search(r"refresh written: .*matches", out)
    assert re.search(r"refresh waiting: 330 s before revoking", out)
    assert out.count("the running sender sent a text") == 3
    assert re.search(r"refresh revoked: sha256:[0-9a-f]{12}", out)
    after = out[out.index("12. ") :]
    assert "HTTP 401 (Graph code 190)" in after and "HTTP 200" in after
    assert "all 3 texts delivered, each exactly once" in out

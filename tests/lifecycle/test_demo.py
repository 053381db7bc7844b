"""``tokenstore demo`` shows the lifecycle too: a 60-day token close to expiry is refreshed under a running
sender, the old token is revoked, and sends still succeed; fast, exit 0, fingerprints only."""

from __future__ import annotations

import re
import time
from pathlib import Path

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


def test_demo_shows_its_config_versions_as_times_and_the_next_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    folder = re.search(r"the config used, (\S+)/config\.yaml", out)
    assert folder is not None and "app_secret:" in out and "backend: file" in out and "api_version: v27.0" in out
    assert not Path(folder.group(1)).exists()  # removed without --keep
    assert re.search(r"version \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} UTC", out)
    assert not re.search(r"version \d{16,}", out)  # never a nanosecond count
    assert out.rstrip().splitlines()[-1].startswith("Next: ")


def test_demo_keep_leaves_the_folder(capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    assert main(["demo", "--keep"]) == 0
    out = capsys.readouterr().out
    kept = re.search(r"^Kept (\S+): config\.yaml", out, re.MULTILINE)
    assert kept is not None
    folder = Path(kept.group(1))
    try:
        assert (folder / "config.yaml").is_file() and (folder / "token").is_file()
        assert (folder / "app_secret").stat().st_mode & 0o077 == 0
        assert main(["show", "-c", str(folder / "config.yaml")]) == 0
    finally:
        shutil.rmtree(folder)
    capsys.readouterr()


def test_version_time() -> None:
    from tokenstore.cli.demo import version_time

    assert version_time("1764580207570190123") == "2025-12-01 09:10:07.570190 UTC"
    assert version_time("3") == "3" and version_time(None) == "-"


def test_demo_prints_each_library_warning_once_next_to_its_step(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's nested ``check --all`` prints its warnings at its own end; the demo's own held warnings come
    right after the step that caused them, and none is printed again at exit: the last line is "Next:"."""
    import contextlib
    import sys

    with contextlib.redirect_stderr(sys.stdout):  # one stream, as on a terminal: the order is what a person sees
        assert main(["demo"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    warnings = [line for line in lines if line.startswith("tokenstore: warning: ")]
    assert warnings, "the fleet part has warnings to show"
    assert len(warnings) == len(set(warnings)), [w for w in warnings if warnings.count(w) > 1]
    assert lines[-1].startswith("Next: ")

    def at(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    fleet = at("The fleet: ")
    check, checked = at("6. tokenstore check --all:"), at("   (exit 1: a disconnected tenant")
    inside_check = [line for line in lines[check:checked] if line.startswith("tokenstore: warning: ")]
    assert any(re.search(r"tenant \d+ is disconnected \(PARTNER_APP_UNINSTALLED\)", w) for w in inside_check)
    assert any("ask the customer to reconnect" in w for w in inside_check)
    marked = next(i for i, line in enumerate(lines) if re.search(r"warning: tenant \d+ marked disconnected", line))
    assert at("5. customer B removed the app") < marked < check  # right after the step whose webhook marked it
    assert all(i > fleet for i, line in enumerate(lines) if "disconnected" in line and line in warnings)

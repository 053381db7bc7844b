"""The CLI's held library warnings: printed once each when a command ends; a command run inside another prints
its own at its end and the outer one does not repeat them; :func:`narrate` prints them after the step."""

from __future__ import annotations

import argparse
import logging

import pytest

from tokenstore.cli._common import command, narrate

log = logging.getLogger("tokenstore.test")


def quiet() -> argparse.Namespace:
    return argparse.Namespace(verbose=0, json=False)


def test_a_nested_command_prints_its_warnings_and_the_outer_does_not_repeat_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @command
    def inner(args: argparse.Namespace) -> int:
        log.warning("inner trouble")
        log.warning("inner trouble")
        return 0

    @command
    def outer(args: argparse.Namespace) -> int:
        log.warning("outer trouble")
        assert inner(quiet()) == 0
        assert capsys.readouterr().err == "tokenstore: warning: inner trouble\n"  # at the inner command's end
        log.warning("outer again")
        return 0

    assert outer(quiet()) == 0
    assert capsys.readouterr().err == "tokenstore: warning: outer trouble\ntokenstore: warning: outer again\n"


def test_narrate_prints_held_warnings_after_the_step_and_not_again_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import contextlib
    import sys

    @command
    def story(args: argparse.Namespace) -> int:
        log.warning("step one went sideways")
        narrate("1. step one")
        log.warning("step one went sideways")  # the same message again: once per command
        narrate("2. step two")
        log.warning("late")
        return 0

    with contextlib.redirect_stderr(sys.stdout):
        assert story(quiet()) == 0
    assert capsys.readouterr().out.splitlines() == [
        "1. step one",
        "tokenstore: warning: step one went sideways",
        "2. step two",
        "tokenstore: warning: late",
    ]


def test_a_failing_command_drops_its_held_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    @command
    def fails(args: argparse.Namespace) -> int:
        log.warning("on the way down")
        raise ValueError("broken")

    assert fails(quiet()) == 1
    err = capsys.readouterr().err
    assert "on the way down" not in err and len(err.strip().splitlines()) == 1

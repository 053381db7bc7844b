"""The test-suite guards themselves must work: a guard that cannot fail proves nothing."""

from __future__ import annotations

import logging
import socket

import pytest

from tests import conftest
from tests.contract import canary


def test_leak_scanner_catches_a_canary_in_any_logger() -> None:
    before = len(conftest.leak_scanner.leaks)
    value = canary()
    logging.getLogger("some.sdk").debug("GET https://x/?access_token=%s", value)  # a logger without our redaction
    try:
        assert len(conftest.leak_scanner.leaks) == before + 1
    finally:
        del conftest.leak_scanner.leaks[before:]


def test_loopback_guard_refuses_other_addresses() -> None:
    before = len(conftest.off_loopback_attempts)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(ConnectionRefusedError, match="off loopback"):
            s.connect(("192.0.2.1", 443))  # refused by the guard before any packet is sent
    assert len(conftest.off_loopback_attempts) == before + 1
    del conftest.off_loopback_attempts[before:]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        assert s.connect_ex(("127.0.0.1", 1)) != 0  # loopback goes through (nothing listens on port 1)

"""Shared test set-up: loopback only, no proxies, no cloud metadata, and a guard that proves it."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Iterator

import pytest

# Before any SDK is imported: keep every client on loopback (see shared testing notes).
os.environ["NO_GCE_CHECK"] = "true"  # google-auth: no metadata-server probe
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # botocore: no IMDS
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)
for _var in (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
):
    os.environ.pop(_var, None)
os.environ.setdefault("AWS_CONFIG_FILE", os.devnull)
os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", os.devnull)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
off_loopback_attempts: list[object] = []


def _is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    if not isinstance(address, tuple) or not address:
        return True
    host = address[0]
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        off_loopback_attempts.append(address)
        raise ConnectionRefusedError(f"test guard: connection off loopback refused: {address!r}")
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        off_loopback_attempts.append(address)
        return 111
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True, scope="session")
def _no_off_loopback_traffic() -> Iterator[None]:
    yield
    assert not off_loopback_attempts, f"tests tried to reach addresses off loopback: {off_loopback_attempts}"


class LeakScanner(logging.Handler):
    """Sees every log record of the whole run, at DEBUG, from every logger (ours, httpx, httpcore, SDKs),
    and remembers any whose text (message, arguments, exception and stack) contains a canary token."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += 1
        try:
            text = record.getMessage()
        except Exception:
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1]) + " " + str(record.exc_info[1])
        if record.exc_text:
            text += record.exc_text
        if record.stack_info:
            text += record.stack_info
        if "CANARY" in text:
            self.leaks.append(f"{record.name}:{record.levelname}: {text[:300]}")


leak_scanner = LeakScanner()


@pytest.fixture(autouse=True, scope="session")
def _canary_scan_all_logs() -> Iterator[LeakScanner]:
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(leak_scanner)
    yield leak_scanner
    root.removeHandler(leak_scanner)
    root.setLevel(old_level)
    assert not leak_scanner.leaks, "canary tokens leaked into log records:\n" + "\n".join(leak_scanner.leaks[:20])


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOT_APPLICABLE = "n/a:"  # skips whose reason starts with this are a backend lacking a feature, not a missing server


def need(condition: object, what: str) -> None:
    """Skip locally when a server or tool is missing; in CI (CI=true) fail instead: nothing is skipped there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required for this test in CI but missing: {what}", pytrace=False)
    pytest.skip(f"missing: {what}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI, a skipped backend test (marker ``backend``) is a failure, unless the skip says ``n/a:``."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("backend") is not None:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if NOT_APPLICABLE not in reason:
            report.outcome = "failed"
            report.longrepr = f"backend test skipped in CI (CI=true): {reason}"

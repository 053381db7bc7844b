"""The public surface: ``__all__``, the design's names and error tree, no I/O at import or construction."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import sender
import sender.sandbox
import tokenstore
from tests.contract import Counting
from tests.sender.conftest import Store
from tokenstore.backends.file import FileBackend

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", [sender, sender.sandbox], ids=["sender", "sender.sandbox"])
def test_all_is_complete_and_resolvable(module: types.ModuleType) -> None:
    names = module.__all__
    assert len(names) == len(set(names)), "duplicates in __all__"
    for name in names:
        assert hasattr(module, name), name
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and n != "annotations" and not isinstance(v, types.ModuleType)
    }
    assert public <= set(names), f"public but not exported: {sorted(public - set(names))}"


def test_design_names_exist() -> None:
    for name in (
        "Sender",
        "AsyncSender",
        "SendResult",
        "SendError",
        "AuthenticationError",
        "PermissionDenied",
        "RateLimited",
        "InvalidRequest",
        "RecipientError",
        "TemplateError",
        "PolicyBlocked",
        "ServerError",
        "RetryPolicy",
        "TokenAuth",
        "RedirectTransport",
    ):
        assert name in sender.__all__, name
    for method in ("send", "send_text", "send_template", "from_config", "mark_read", "close"):
        assert callable(getattr(sender.Sender, method))
    for method in ("send", "send_text", "send_template", "from_config", "mark_read", "aclose"):
        assert callable(getattr(sender.AsyncSender, method))
    assert inspect.iscoroutinefunction(sender.AsyncSender.send_text)
    params = inspect.signature(sender.Sender.send_template).parameters
    assert list(params)[:5] == ["self", "to", "name", "language", "components"]


def test_lifecycle_names_exist() -> None:
    for name in (
        "GraphTokenClient",
        "AsyncGraphTokenClient",
        "AppCredentialsError",
        "TokenInfo",
        "IssuedToken",
        "InvalidTokenReason",
        "debug_token",
        "adebug_token",
    ):
        assert name in sender.__all__, name
    for method in ("inspect", "refresh", "revoke", "generate", "from_config"):
        assert callable(getattr(sender.GraphTokenClient, method))
        assert callable(getattr(sender.AsyncGraphTokenClient, method))
        if method != "from_config":
            assert inspect.iscoroutinefunction(getattr(sender.AsyncGraphTokenClient, method))
    assert issubclass(sender.AppCredentialsError, sender.AuthenticationError)
    for field in ("is_valid", "type", "app_id", "scopes", "granular_scopes", "issued_at", "expires_at", "error"):
        assert hasattr(sender.TokenInfo, field) or field in sender.TokenInfo.__dataclass_fields__, field


def test_error_tree() -> None:
    for cls in (
        sender.AuthenticationError,
        sender.PermissionDenied,
        sender.RateLimited,
        sender.InvalidRequest,
        sender.RecipientError,
        sender.TemplateError,
        sender.PolicyBlocked,
        sender.ServerError,
        sender.NetworkError,
    ):
        assert issubclass(cls, sender.SendError)
    assert issubclass(sender.ConnectFailed, sender.NetworkError)
    assert issubclass(sender.OutcomeUnknown, sender.NetworkError)
    error = sender.SendError("x")
    for attr in ("code", "subcode", "fbtrace_id", "details", "http_status", "retryable"):
        assert hasattr(error, attr)


def test_construction_does_no_io_and_asks_no_token(store: Store) -> None:
    provider = Counting(FileBackend(store.path))
    s = sender.Sender(provider, phone_number_id="123456", base_url="https://graph.facebook.com")
    s.close()
    s.close()  # idempotent
    assert provider.calls == 0
    with pytest.raises(RuntimeError, match="closed"):
        s.send_text("15551234567", "late")


async def test_async_construction_does_no_io(store: Store) -> None:
    provider = Counting(FileBackend(store.path))
    async with sender.AsyncSender(provider, phone_number_id="123456") as s:
        assert "graph.facebook.com" in s.messages_url and "/v27.0/123456/messages" in s.messages_url
    assert provider.calls == 0


def test_constructor_validates_arguments(store: Store) -> None:
    provider = FileBackend(store.path)
    with pytest.raises(ValueError, match="phone_number_id"):
        sender.Sender(provider, phone_number_id="+1 555")
    with pytest.raises(ValueError, match="api_version"):
        sender.Sender(provider, phone_number_id="1", api_version="26")
    with pytest.raises(ValueError, match="plain http"):
        sender.Sender(provider, phone_number_id="1", base_url="http://graph.facebook.com")
    with pytest.raises(ValueError, match="app_secret"):
        sender.Sender(provider, phone_number_id="1", appsecret_proof=True)
    with pytest.raises(TypeError, match="TokenProvider"):
        sender.Sender("EAAGnotaprovider", phone_number_id="1")  # type: ignore[arg-type]


def test_repr_shows_no_secret(store: Store) -> None:
    with sender.Sender(FileBackend(store.path), phone_number_id="42") as s:
        text = repr(s)
    assert "42" in text and store.initial not in text


def test_import_does_no_network_and_no_sdk() -> None:
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n    raise SystemExit('network at import')\n"
        "socket.socket.connect = refuse\n"
        "import sender, sender.sandbox, tokenstore.cli\n"
        "import sys\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'hvac', 'google', 'azure', 'grpc')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Host": "graph.example"}, "Host is set by the HTTP client itself"),
        ({"Content-Length": "3"}, "Content-Length is set by the HTTP client itself"),
        ({"X-Trace": "a\r\nX-Evil: 1"}, "value of 'X-Trace' must be one line"),
        ({"bad name": "v"}, "'bad name' is not an HTTP header name"),
        ({"EAAGgraph.example TOKEN0123456789abcdef": "v"}, "a header whose name is a value of 39 characters (not"),
        ({"EAAGgraph.example0123456789abcdefghijkl": "a\n"}, "value of a header whose name is a value of 39"),
    ],
)
def test_custom_headers_are_checked_once_at_construction(headers: dict[str, str], message: str) -> None:
    """Every transport writes them as given: a framing header would be sent twice, a line break would forge
    headers. The error names the header, never its value (it may be a credential)."""
    provider = tokenstore.provider_from_config({"token": {"backend": "file", "file": {"path": "/nonexistent"}}})
    for make in (sender.Sender, sender.AsyncSender):
        with pytest.raises(ValueError, match=re.escape(message)) as info:
            make(provider, phone_number_id="1", headers=headers)
        assert "X-Evil" not in str(info.value) and "graph.example" not in str(info.value)

"""No secret in what the library shows people: CLI output (with and without ``-vv`` logging), and the text of
every error the faults of this suite produce (message, repr, cause chain, traceback).

The access tokens are canaries (the session-wide log scan in tests/conftest.py flags any log record holding
one); the backend's Vault token is a canary too; the app secret, the app token and every token Graph issues
during a refresh are added to the list of values checked. The CLI runs the operator's whole round - show,
send, check, rotate, refresh, revoke - against OpenBao (through the fault proxy) and the Graph sandbox, then
again with the token revoked, the store sealed, the store unreachable, and bad input.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import sender
import tokenstore
from sender import AuthenticationError
from tests.contract import CANARY_MARK, canary
from tests.reliability.conftest import (
    TO,
    TOKEN_ENV,
    VaultStore,
    assert_no_secret,
    cache_policy,
    exception_text,
    make_sender,
)
from tokenstore import (
    AccessDenied,
    BackendUnavailable,
    CachingProvider,
    ProviderError,
    SecretMalformed,
    SecretNotFound,
)
from tokenstore.cli import main as cli_main

pytestmark = pytest.mark.backend("vault")

APP_SECRET_ENV = "TS_RELIABILITY_APP_SECRET"


@dataclass
class Cli:
    """The ``tokenstore`` command, run in this process against a config for ``store`` and its sandbox."""

    store: VaultStore
    config: Path
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    outputs: list[str] = field(default_factory=list)

    def __call__(self, *argv: str, stdin: str = "", expect: tuple[int, ...] = (0,)) -> str:
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli_main([argv[0], "--config", str(self.config), *argv[1:]])
        captured = self.capsys.readouterr()
        text = captured.out + captured.err
        self.outputs.append(text)
        assert code in expect, f"tokenstore {' '.join(argv)} exited {code}, expected {expect}:\n{text}"
        return text

    def secrets(self) -> list[str]:
        sandbox = self.store.sandbox
        return [*self.store.secrets, sandbox.app_secret, sandbox.app_token, self.store.read()]


def write_config(folder: Path, store: VaultStore, **whatsapp: Any) -> Path:
    sandbox = store.sandbox
    config = {
        "whatsapp": {
            "phone_number_id": sandbox.phone_number_id,
            "base_url": sandbox.url,
            "api_version": "v26.0",
            "app_id": sandbox.app_id,
            "retry": {"max_attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.02},
            **whatsapp,
        },
        "token": {
            "backend": "vault",
            "cache": {"ttl": 300},
            "vault": {
                "url": store.proxy.url,
                "path": store.path,
                "auth": {"method": "token", "token": {"env": TOKEN_ENV}},
                "timeout": 1,
            },
        },
        "app_secret": {"backend": "env", "env": {"var": APP_SECRET_ENV}},
    }
    path = folder / "tokenstore.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def cli(
    store: VaultStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    monkeypatch.setenv(APP_SECRET_ENV, store.sandbox.app_secret)
    # a 60-day token (Meta's recommended kind), so that refresh applies
    sixty_day = store.sandbox.issue_sixty_day_token(value=canary())
    store.write(sixty_day)
    runner = Cli(store, write_config(tmp_path, store), capsys, monkeypatch)
    yield runner
    for index, text in enumerate(runner.outputs):
        assert_no_secret(text, runner.secrets(), what=f"the output of CLI run #{index + 1}")
        assert CANARY_MARK not in text, f"a canary in the output of CLI run #{index + 1}:\n{text}"


def test_cli_round_never_prints_a_secret(cli: Cli) -> None:
    store, sandbox = cli.store, cli.store.sandbox
    assert "fingerprint" in cli("show")
    cli("show", "--json")
    cli("show", "--section", "app_secret")
    assert "message_id" in cli("send", "--to", TO, "--text", "hello")
    cli("send", "--to", TO, "--template", "hello_world", "--json")
    cli("check")
    cli("check", "--json")

    # rotate: a new token from stdin, validated with debug_token, written, read back
    rotated = sandbox.issue_sixty_day_token(value=canary())
    store.issued.append(rotated)
    cli("rotate", stdin=rotated + "\n")
    assert store.read() == rotated
    # refresh: exchanged at Graph (secrets in query strings), written, read back, the old one revoked
    cli("refresh", "--revoke-old-after", "0")
    refreshed = store.read()
    assert refreshed != rotated
    store.issued.append(refreshed)
    record = sandbox.token_record(rotated)
    assert record is not None and record.revoked_at is not None
    cli("send", "--to", TO, "--text", "after refresh")
    # revoke: the token from stdin; a token typed on the command line is refused without being echoed
    spare = sandbox.issue_token(value=canary())
    store.issued.append(spare)
    cli("revoke", stdin=spare)
    cli("revoke", spare, expect=(2,))

    # failures: Graph refuses the stored token; bad input; the store sealed; the store unreachable
    sandbox.revoke_token(refreshed)
    cli("send", "--to", TO, "--text", "refused", expect=(4,))
    cli("check", expect=(1,))
    cli("check", "--json", expect=(1,))
    unknown = canary()
    store.issued.append(unknown)
    cli("rotate", stdin=unknown, expect=(1,))  # Graph does not know it: not written
    cli("rotate", stdin=f"{unknown} {unknown}", expect=(2,))
    assert store.read() == refreshed
    with store.bao.sealed():
        cli("show", expect=(3,))
        cli("send", "--to", TO, "--text", "sealed", expect=(3,))
        cli("check", "--json", expect=(3,))
        cli("rotate", stdin=rotated, expect=(1, 3))
    with store.proxy.down():
        cli("send", "--to", TO, "--text", "down", expect=(3,))
        cli("refresh", expect=(3,))
    assert sandbox.received_counts() == {"hello": 1, None: 1, "after refresh": 1}  # None: the template


def test_cli_verbose_logs_never_show_a_secret(cli: Cli) -> None:
    """``-vv`` turns on DEBUG logging of every library (httpx, httpcore, hvac, urllib3) onto stderr, in a real
    process: the request URLs of debug_token, the token exchange and the revocation carry secrets in their
    query strings, and must reach no log line."""
    store, sandbox = cli.store, cli.store.sandbox
    env = {
        **os.environ,
        TOKEN_ENV: store.vault_token,
        APP_SECRET_ENV: sandbox.app_secret,
        "NO_PROXY": "127.0.0.1,localhost",
    }

    def run(*argv: str, stdin: str = "", expect: tuple[int, ...] = (0,)) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tokenstore", "-vv", argv[0], "--config", str(cli.config), *argv[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        text = done.stdout + done.stderr
        cli.outputs.append(text)
        assert done.returncode in expect, f"tokenstore -vv {' '.join(argv)} exited {done.returncode}:\n{text}"
        return text

    logs = run("send", "--to", TO, "--text", "verbose")
    assert "DEBUG" in logs and "HTTP Request: POST" in logs  # the logging really was on
    run("check")
    run("refresh", "--revoke-old-after", "0")
    store.issued.append(store.read())
    sandbox.revoke_token(store.read())
    run("send", "--to", TO, "--text", "refused", expect=(4,))


# -- the text of every error the store and Graph faults produce -----------------------------------------------
def _errors(
    store: VaultStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, type[BaseException], BaseException]]:
    """(what, the expected type, the error raised) for each failure of the store or of Graph."""

    def get(backend: Any) -> BaseException:
        with backend:
            try:
                backend.get_token()
            except ProviderError as exc:
                return exc
        raise AssertionError("expected the store to fail")

    with store.bao.sealed():
        yield "sealed", BackendUnavailable, get(store.backend())
    with store.proxy.down():
        yield "unreachable", BackendUnavailable, get(store.backend())
    store.proxy.hang()
    try:
        yield "hanging", BackendUnavailable, get(store.backend(timeout=0.2))
    finally:
        store.proxy.heal()
    store.proxy.respond(500, '{"errors":["internal error"]}', {"Content-Type": "application/json"})
    try:
        yield "answering 500", BackendUnavailable, get(store.backend())
    finally:
        store.proxy.heal()
    # a value that is not one word: the message must not quote it
    malformed = f"{store.initial} {canary()}"
    store.write(malformed)
    yield "malformed", SecretMalformed, get(store.backend())
    store.admin.secrets.kv.v2.create_or_update_secret(path=store.path, secret={"other": store.initial})
    yield "missing key", SecretNotFound, get(store.backend())
    store.write(store.initial)
    # the backend's own Vault token revoked: a credential problem, named without its value
    store.admin.auth.token.revoke(store.vault_token)
    yield "vault token revoked", AccessDenied, get(store.backend())
    # the cache after max_stale, with the last error chained
    provider = CachingProvider(store.backend(), cache_policy(ttl=1, max_stale=0, backoff_initial=0, backoff_max=0))
    monkeypatch.setenv(TOKEN_ENV, store.vault_token)  # still revoked
    try:
        provider.get_token()
    except ProviderError as exc:
        yield "no token at all", AccessDenied, exc
    finally:
        provider.close()


def test_errors_never_carry_a_secret(store: VaultStore, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    for what, expected, error in _errors(store, monkeypatch):
        seen.append(what)
        assert isinstance(error, expected), f"{what}: {error!r}"
        assert isinstance(error, tokenstore.TokenStoreError)
        text = exception_text(error)
        assert_no_secret(text, store.secrets, what=f"the {type(error).__name__} for {what}")
        assert CANARY_MARK not in str(error) + repr(error), f"{what}: {error}"
        assert store.path in str(error) or store.backend().source in str(error), f"{what}: names the secret"
    assert len(seen) == 8


def test_graph_errors_never_carry_the_token(store: VaultStore) -> None:
    provider = CachingProvider(store.backend(), cache_policy(ttl=300))
    with make_sender(store.sandbox, provider) as client:
        client.send_text(TO, "ok")
        store.sandbox.revoke_token(store.initial)
        with pytest.raises(AuthenticationError) as info:
            client.send_text(TO, "refused")
    text = exception_text(info.value)
    assert_no_secret(text, store.secrets, what="the AuthenticationError")
    assert CANARY_MARK not in str(info.value) + repr(info.value)


# -- a token pasted into the wrong config field ---------------------------------------------------------------
PASTED = canary()
WHATSAPP_BASE = {"phone_number_id": "106540352242922", "api_version": "v26.0", "base_url": "http://127.0.0.1:9"}
VAULT_BASE = {"url": "http://127.0.0.1:9", "path": "whatsapp/prod", "auth": {"method": "token", "token": {"env": "X"}}}
PASTE_INTO = [
    ("whatsapp", "phone_number_id"),
    ("whatsapp", "api_version"),
    ("whatsapp", "base_url"),
    ("whatsapp", "app_id"),
    ("whatsapp", "appsecret_proof"),
    ("whatsapp", "timeout"),
    ("whatsapp", "async_transport"),
    ("whatsapp", "max_connections"),
    ("whatsapp", "max_in_flight"),
    ("whatsapp", "queue_timeout"),
    ("whatsapp", "retry", "max_attempts"),
    ("whatsapp", "pacing", "messages_per_second"),
    ("token", "backend"),
    ("token", "cache", "ttl"),
    ("token", "vault", "url"),
    ("token", "vault", "kv_version"),
    ("token", "vault", "version"),
    ("token", "vault", "timeout"),
    ("token", "vault", "verify"),
    ("token", "vault", "auth", "method"),
    ("token", "vault", "auth", "token"),
]


def test_a_token_pasted_into_a_config_field_is_never_echoed() -> None:
    """The rule: errors on bad input name the file and the field and say what to do, never the value - a token
    pasted into the wrong field of the YAML must not reach the error message (and so the logs or CI output).
    Each field in turn gets the token; every error must be a ConfigError naming the field, without it."""
    echoed: list[str] = []
    for where in PASTE_INTO:
        config: dict[str, Any] = {
            "whatsapp": dict(WHATSAPP_BASE),
            "token": {"backend": "vault", "vault": yaml.safe_load(yaml.safe_dump(VAULT_BASE))},
        }
        node = config
        for key in where[:-1]:
            node = node.setdefault(key, {})
        node[where[-1]] = PASTED
        try:
            sender.Sender.from_config(config).close()
        except tokenstore.ConfigError as exc:
            assert where[-1] in str(exc), f"the error names the field: {exc}"
            if PASTED in exception_text(exc):
                echoed.append(str(exc).replace(PASTED, "<TOKEN>"))
    assert not echoed, "config errors that echo a pasted token:\n" + "\n".join(echoed)

"""``tokenstore refresh``: exchange, validate, write, read back, wait, revoke - and every way it refuses,
each leaving the store as it was. Real loopback HTTP against the sandbox; the wait is injected."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sender.sandbox import SIXTY_DAYS, ManualClock, Route, Sandbox, versioned
from sender.sandbox._graph import Call, Reply
from sender.sandbox._state import SandboxState
from sender.sandbox.routes import ROUTE_MODULES, oauth
from tests.contract import canary
from tests.lifecycle.conftest import DAY, Env, Sleeps, cli, make_env
from tokenstore import fingerprint_of
from tokenstore.cli import main
from tokenstore.cli.refresh import RefreshRefused, perform_refresh


def refresh(env: Env, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return cli(["refresh", "-c", str(env.config), *extra], capsys, env)


def status(env: Env, value: str) -> str:
    record = env.sandbox.token_record(value)
    assert record is not None
    return record.status(env.sandbox.clock())


def snapshot(env: Env) -> tuple[bytes, int]:
    st = env.token_path.stat()
    return env.token_path.read_bytes(), st.st_mtime_ns


def test_help_documents_steps_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["refresh", "--help"])
    out = capsys.readouterr().out
    for code in range(5):
        assert re.search(rf"^\s+{code}\s+\w", out, re.MULTILINE), f"exit code {code} undocumented"
    for option in ("--if-expiring-within", "--revoke-old-after", "--force", "ttl + refresh_ahead"):
        assert option in out


# -- the happy paths ----------------------------------------------------------------------------------------
def test_refresh_write_read_back_wait_and_revoke(env: Env, sleeps: Sleeps, capsys: pytest.CaptureFixture[str]) -> None:
    old_fp = env.fingerprint()
    code, out, err = refresh(env, capsys, "--revoke-old-after")
    assert code == 0, err
    new = env.read()
    new_fp = fingerprint_of(new)
    assert new != env.initial and status(env, new) == "valid" and status(env, env.initial) == "revoked"
    assert sleeps.waits == [330.0]  # the default: token.cache ttl 300 + refresh_ahead 30 (its default at ttl 300)
    assert re.search(r"waiting:\s+330 s before revoking .*ttl 300 s \+ refresh_ahead 30 s", out)
    assert re.search(rf"current:\s+{old_fp} \(SYSTEM_USER .* in (59\.9|60\.0) days\)", out)
    assert re.search(rf"exchanged:\s+{new_fp} .*whatsapp_business_messaging \(WABA {env.sandbox.waba_id}\)", out)
    assert re.search(rf"written:\s+version \S+, read back {new_fp} from a fresh provider: matches", out)
    assert re.search(rf"revoked:\s+{old_fp}", out) and re.search(r"result:\s+refreshed, old token revoked", out)
    counts = env.sandbox.route_counts()
    assert counts["oauth.access_token"] == 1 and counts["oauth.revoke"] == 1
    revoke_call = next(r for r in env.sandbox.requests if r.route == "oauth.revoke")
    assert revoke_call.token_fingerprint == new_fp  # authenticated with the new token


def test_without_revoke_the_old_token_stays_valid(env: Env, sleeps: Sleeps, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = refresh(env, capsys)
    assert code == 0 and sleeps.waits == []
    assert status(env, env.initial) == "valid" and env.read() != env.initial
    assert "stays valid until" in out and env.sandbox.route_counts()["oauth.revoke"] == 0


def test_an_explicit_wait_and_a_disabled_cache(env: Env, sleeps: Sleeps, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = refresh(env, capsys, "--revoke-old-after", "12.5")
    assert code == 0 and sleeps.waits == [12.5] and "as given by --revoke-old-after" in out
    env.write_config(token={"cache": False})
    code, out, _ = refresh(env, capsys, "--revoke-old-after")
    assert code == 0 and sleeps.waits == [12.5] and "0 s before revoking" in out and "cache is off" in out
    with pytest.raises(SystemExit) as info:
        main(["refresh", "-c", str(env.config), "--revoke-old-after", "-3"])
    assert info.value.code == 2 and "must be zero or more seconds" in capsys.readouterr().err


def test_json_output(env: Env, sleeps: Sleeps, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = refresh(env, capsys, "--revoke-old-after", "--json")
    data = json.loads(out)
    assert code == 0 and data["status"] == "refreshed" and data["exit_code"] == 0
    assert data["old_fingerprint"] == fingerprint_of(env.initial) and data["new_fingerprint"] == env.fingerprint()
    assert data["readback_fingerprint"] == data["new_fingerprint"] and data["revoked"] is True
    assert data["waited"] == 330.0 and data["new_expires_at"] and "waiting: 330 s" in err


# -- cron: --if-expiring-within -----------------------------------------------------------------------------
def test_not_due_exits_0_and_makes_no_exchange_call(
    sandbox: Sandbox, tmp_path: Path, sleeps: Sleeps, capsys: pytest.CaptureFixture[str]
) -> None:
    env = make_env(sandbox, tmp_path)
    before = snapshot(env)
    code, out, _ = refresh(env, capsys, "--if-expiring-within", "7", "--revoke-old-after")
    assert code == 0 and re.search(r"due:\s+no: it expires later than 7 days", out) and "not due" in out
    assert snapshot(env) == before and sleeps.waits == []
    counts = sandbox.route_counts()
    assert counts["oauth.access_token"] == 0 and counts["oauth.revoke"] == 0 and counts["debug_token"] == 1
    (tmp_path / "never").mkdir()
    never = make_env(sandbox, tmp_path / "never", expires_in=None)
    code, out, _ = refresh(never, capsys, "--if-expiring-within", "7", "--force")
    assert code == 0 and "it never expires" in out and sandbox.route_counts()["oauth.access_token"] == 0


def test_due_refreshes(env: Env, sleeps: Sleeps, capsys: pytest.CaptureFixture[str]) -> None:
    env.write(env.issue(expires_in=3 * DAY))
    code, out, _ = refresh(env, capsys, "--if-expiring-within", "7", "--revoke-old-after", "0")
    assert code == 0 and re.search(r"due:\s+yes", out) and "result:     refreshed, old token revoked" in out
    assert sleeps.waits == []  # a zero wait is not slept


def test_due_on_a_moved_clock(clocked_sandbox: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    env = make_env(clocked_sandbox, tmp_path)
    sandbox_now: Callable[[], dt.datetime] = lambda: dt.datetime.fromtimestamp(clock(), dt.timezone.utc)  # noqa: E731
    clock.advance(50 * DAY)
    result = perform_refresh(env.config, if_expiring_within=7, now=sandbox_now)
    assert result.action == "not-due" and env.read() == env.initial
    clock.advance(5 * DAY)
    steps: list[tuple[str, str]] = []
    result = perform_refresh(env.config, if_expiring_within=7, now=sandbox_now, report=lambda *s: steps.append(s))
    assert result.action == "refreshed" and env.read() != env.initial
    assert result.new_expires_at == dt.datetime.fromtimestamp(int(clock()) + SIXTY_DAYS, dt.timezone.utc)
    assert [s for s, _ in steps] == ["store", "current", "due", "exchanged", "written", "old token"]


# -- refusals: nothing written ------------------------------------------------------------------------------
def test_a_never_expiring_token_is_refused_without_force(
    sandbox: Sandbox, tmp_path: Path, sleeps: Sleeps, capsys: pytest.CaptureFixture[str]
) -> None:
    env = make_env(sandbox, tmp_path, expires_in=None)
    before = snapshot(env)
    code, _, err = refresh(env, capsys, "--revoke-old-after")
    assert code == 1 and "never expires" in err and "--force" in err and "nothing was changed" in err
    assert snapshot(env) == before and sandbox.route_counts()["oauth.access_token"] == 0
    code, out, _ = refresh(env, capsys, "--force")
    assert code == 0 and env.read() != env.initial and "the stored token never expired" in out
    assert "--if-expiring-within 7" in out  # the advice to schedule the refresh from now on
    new = sandbox.token_record(env.read())
    assert new is not None and new.expires_at - new.issued_at == SIXTY_DAYS


def test_a_wrong_app_secret_is_a_clear_error_and_the_store_is_untouched(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = canary("APPSECRET")
    env.secret_path.write_text(wrong)
    before = snapshot(env)
    code, out, err = cli(["refresh", "-c", str(env.config), "--revoke-old-after", "0"], capsys, env, wrong)
    assert code == 4 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("tokenstore: error: AppCredentialsError: Graph rejected the app token")
    assert str(env.secret_path) in err  # it names the store of the app secret
    assert snapshot(env) == before and len(env.sandbox.tokens()) == 1
    assert env.sandbox.route_counts()["oauth.access_token"] == 0  # refused at the first debug_token


def test_an_app_secret_graph_rejects_at_the_exchange(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """debug_token accepted the app token, the exchange refuses the client_secret (Meta rotated the secret
    between the two calls): AppCredentialsError from oauth/access_token, store untouched."""
    before = snapshot(env)
    env.sandbox.fail_next(1, message="Error validating client secret.", route="oauth.access_token")
    code, _, err = refresh(env, capsys)
    assert code == 4 and "AppCredentialsError" in err and "client_secret" in err
    assert snapshot(env) == before


@pytest.mark.parametrize(("failure", "status_code"), [(2, 4), ("drop", 4)])
def test_a_failed_exchange_leaves_the_store_untouched(
    env: Env, capsys: pytest.CaptureFixture[str], failure: object, status_code: int
) -> None:
    before = snapshot(env)
    if failure == "drop":
        env.sandbox.drop_next(route="oauth.access_token", deliver=False)
    else:
        env.sandbox.fail_next(failure, route="oauth.access_token")  # type: ignore[arg-type]
    code, _, err = refresh(env, capsys)
    assert code == status_code and ("ServerError" in err or "OutcomeUnknown" in err)
    assert snapshot(env) == before and status(env, env.initial) == "valid"


def test_an_invalid_stored_token_is_refused(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.sandbox.revoke_token(env.initial)
    code, _, err = refresh(env, capsys, "--if-expiring-within", "7")
    assert code == 1 and "cannot be refreshed" in err and "tokenstore rotate" in err
    assert env.sandbox.route_counts()["oauth.access_token"] == 0 and env.read() == env.initial


def test_a_read_only_store_is_refused_before_any_graph_call(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_TEST_TOKEN", env.initial)
    env.write_config(token={"backend": "env", "env": {"var": "LIFECYCLE_TEST_TOKEN"}, "file": None})
    data = env.config.read_text().replace("  file: null\n", "")
    env.config.write_text(data)
    code, _, err = refresh(env, capsys)
    assert code == 3 and "WriteNotSupported" in err and "read-only" in err
    assert sum(env.sandbox.route_counts().values()) == 0


def test_config_errors(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write_config(app_secret=None)
    code, _, err = refresh(env, capsys)
    assert code == 2 and "app_secret: required for refresh" in err
    assert sum(env.sandbox.route_counts().values()) == 0


# -- a new token that fails validation is never written ------------------------------------------------------
def sabotaging_sandbox(kind: str) -> Sandbox:
    """A sandbox whose token exchange hands out a token that fails our validation in the way ``kind`` says."""

    def exchange(call: Call, state: SandboxState) -> Reply:
        reply = oauth.access_token(call, state)
        if reply.status != 200:
            return reply
        new = reply.body["access_token"]
        record = state.tokens.get(new)
        assert record is not None
        if kind == "revoked":
            state.tokens.revoke(new)
        elif kind == "no_scope":
            record.scopes = ("whatsapp_business_management",)
        elif kind == "other_waba":
            record.granular_scopes = {"whatsapp_business_messaging": ("999999999",)}
        elif kind == "expired":
            record.expires_at = record.issued_at - 1
        elif kind == "same":
            state.tokens.revoke(new)
            reply.body["access_token"] = call.arg("fb_exchange_token")
        elif kind == "other_app":
            other = state.tokens.add_app()
            reply.body["access_token"] = state.tokens.issue(app_id=other.app_id, expires_in=SIXTY_DAYS)
        return reply

    routes = [m for m in ROUTE_MODULES if m != "oauth"]
    extra = [Route("GET", versioned(r"/oauth/access_token"), "oauth.access_token", exchange), oauth.ROUTES[1]]
    return Sandbox(routes=routes, extra_routes=extra)


@pytest.fixture(params=["revoked", "no_scope", "other_waba", "expired", "same", "other_app"])
def sabotaged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Env]]:
    with sabotaging_sandbox(request.param) as sb:
        yield request.param, make_env(sb, tmp_path)


def test_a_new_token_failing_validation_is_never_written(
    sabotaged: tuple[str, Env], sleeps: Sleeps, capsys: pytest.CaptureFixture[str]
) -> None:
    kind, env = sabotaged
    before = snapshot(env)
    code, _, err = refresh(env, capsys, "--revoke-old-after")
    expected = {
        "revoked": "not valid",
        "no_scope": "lacks the whatsapp_business_messaging permission",
        "other_waba": "no longer covers WABA",
        "expired": "not valid",
        "same": "the same token",
        "other_app": "did not match the Viewing App",  # Graph will not even show us another app's token
    }[kind]
    assert expected in err, err
    if kind == "other_app":
        assert code == 4
    else:
        assert code == 1 and "was not written" in err and "stays valid" in err
    assert snapshot(env) == before and sleeps.waits == []
    assert status(env, env.initial) == "valid"
    # a new token that failed but that Graph still calls valid is revoked: nobody would hold it otherwise
    assert env.sandbox.route_counts()["oauth.revoke"] == (1 if kind in ("no_scope", "other_waba") else 0)
    if kind in ("no_scope", "other_waba"):
        assert "it was revoked (it failed validation)" in err
    orphans = [r for r in env.sandbox.tokens() if r.value != env.initial and r.status(env.sandbox.clock()) == "valid"]
    assert orphans == [] or kind == "other_app"  # another app's token is that app's to revoke


# -- after the write ----------------------------------------------------------------------------------------
def test_another_writer_during_the_refresh_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder: dict[str, Env] = {}

    def exchange(call: Call, state: SandboxState) -> Reply:
        reply = oauth.access_token(call, state)
        env = holder["env"]
        env.write(env.issue())  # somebody rotates the token meanwhile
        return reply

    routes = [m for m in ROUTE_MODULES if m != "oauth"]
    extra = [Route("GET", versioned(r"/oauth/access_token"), "oauth.access_token", exchange), oauth.ROUTES[1]]
    with Sandbox(routes=routes, extra_routes=extra) as sb:
        env = holder["env"] = make_env(sb, tmp_path)
        code, _, err = refresh(env, capsys)
        assert code == 1 and "the store changed while refreshing" in err and "not written" in err
        other = env.read()
        assert other != env.initial and sb.token_record(other) is not None
        assert sb.token_record(other).label is None  # type: ignore[union-attr]  # theirs, not an exchanged one


def test_the_store_rolled_back_during_the_wait_means_no_revoke(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tokenstore.cli.refresh._sleep", lambda seconds: env.write(env.initial))
    code, _, err = refresh(env, capsys, "--revoke-old-after", "1")
    assert code == 1 and "after the wait the store holds" in err and "was not revoked" in err
    assert status(env, env.initial) == "valid" and env.sandbox.route_counts()["oauth.revoke"] == 0


def test_a_failed_revoke_after_the_write(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "tokenstore.cli.refresh._sleep", lambda seconds: env.sandbox.fail_next(status=503, route="oauth.revoke")
    )
    code, out, err = refresh(env, capsys, "--revoke-old-after", "1")
    assert code == 4 and "revoking the old token failed" in out and "tokenstore revoke" in err
    new = env.read()
    assert new != env.initial and status(env, new) == "valid" and status(env, env.initial) == "valid"


def test_an_old_token_already_dead_at_revoke_time(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tokenstore.cli.refresh._sleep", lambda seconds: env.sandbox.revoke_token(env.initial))
    code, out, _ = refresh(env, capsys, "--revoke-old-after", "1")
    assert code == 0 and "not needed: Graph already calls it invalid" in out
    assert env.sandbox.route_counts()["oauth.revoke"] == 0


def test_perform_refresh_raises_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    env = make_env(sandbox, tmp_path, expires_in=None)
    with pytest.raises(RefreshRefused, match="never expires"):
        perform_refresh(env.config)

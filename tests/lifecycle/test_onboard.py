"""Onboarding from Embedded Signup: ``GraphTokenClient.exchange_code``, ``sender.onboard`` and ``tokenstore onboard``
against the sandbox (real loopback HTTP), with the tenants' tokens and the routing map in file stores.

Every code and every token is a canary or issued by the sandbox; the CLI runner and the session-wide log scanner
check that none of them appears in any output or log record."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import sender
import tokenstore
from sender.sandbox import SIXTY_DAYS, ManualClock, Sandbox
from tests.contract import assert_clean, canary
from tests.lifecycle.conftest import Env, Sleeps, cli, make_env, stdin
from tokenstore import fingerprint_of
from tokenstore.backends.file import FileBackend

TO = "15551234567"


def tenants_env(sandbox: Sandbox, tmp: Path, *, ttl: float = 300) -> Env:
    env = make_env(sandbox, tmp, ttl=ttl)
    (tmp / "tenants").mkdir()
    (tmp / "routing").mkdir()
    env.write_config(
        tenants={
            "token": {"backend": "file", "file": {"path": str(tmp / "tenants" / "{tenant}")}, "cache": {"ttl": ttl}},
            "numbers_from": {"backend": "file", "file": {"path": str(tmp / "routing" / "numbers.json")}},
        }
    )
    return env


@pytest.fixture
def tenv(sandbox: Sandbox, tmp_path: Path) -> Env:
    return tenants_env(sandbox, tmp_path)


def stored(env: Env, tenant: str) -> str | None:
    path = env.tmp / "tenants" / tenant
    return FileBackend(path).get_token().reveal() if path.exists() else None


def numbers_map(env: Env) -> dict[str, str]:
    path = env.tmp / "routing" / "numbers.json"
    return json.loads(path.read_text()) if path.exists() else {}


def graph(env: Env) -> sender.GraphTokenClient:
    return sender.GraphTokenClient(env.sandbox.app_id, env.app_secret, base_url=env.sandbox.url)


def status(env: Env, value_or_fingerprint: str) -> str:
    record = env.sandbox.token_record(value_or_fingerprint)
    assert record is not None
    return record.status(env.sandbox.clock())


def run_onboard(env: Env, code: str, **options: Any) -> sender.Onboarding:
    with graph(env) as g, tokenstore.load_tenants(env.config) as tenants:
        return sender.onboard(code, g, tenants, **options)


# -- the Graph call ---------------------------------------------------------------------------------------------
def test_exchange_code_is_the_documented_call(tenv: Env) -> None:
    code = tenv.sandbox.signup_code(value=canary("CODE"))
    with graph(tenv) as g:
        issued = g.exchange_code(code)
        info = g.inspect(issued.token)
    (waba_id,) = tenv.sandbox.signup_wabas(code)
    assert info.is_valid and info.app_id == tenv.sandbox.app_id and info.waba_ids == (waba_id,)
    assert "whatsapp_business_messaging" in info.scopes and issued.expires_in == SIXTY_DAYS
    call = next(r for r in tenv.sandbox.requests if r.route == "oauth.access_token")
    assert call.method == "GET" and call.path.startswith(f"/{g.api_version}/oauth/access_token?")
    assert "grant_type" not in call.path and "redirect_uri" not in call.path
    assert "code=%5Bredacted%5D" in call.path or "code=[redacted]" in call.path  # the sandbox's log is redacted too
    assert code not in repr(issued) and code not in call.path


async def test_async_exchange_code_and_phone_numbers(tenv: Env) -> None:
    code = tenv.sandbox.signup_code(numbers=3)
    async with sender.AsyncGraphTokenClient(tenv.sandbox.app_id, tenv.app_secret, base_url=tenv.sandbox.url) as g:
        issued = await g.exchange_code(code)
        (waba_id,) = tenv.sandbox.signup_wabas(code)
        numbers = await g.phone_numbers(waba_id, access_token=issued.token)
    assert [n["id"] for n in numbers] == tenv.sandbox.business(waba_id).phone_number_ids


def test_phone_numbers_pages(tenv: Env) -> None:
    code = tenv.sandbox.signup_code(numbers=130)  # the sandbox pages by at most 100
    with graph(tenv) as g:
        issued = g.exchange_code(code)
        (waba_id,) = tenv.sandbox.signup_wabas(code)
        numbers = g.phone_numbers(waba_id, access_token=issued.token)
    assert len({n["id"] for n in numbers}) == 130
    assert tenv.sandbox.route_counts()["businesses.phone_numbers"] == 2


# -- onboarding, the library --------------------------------------------------------------------------------------
def test_onboard_stores_the_token_adds_the_numbers_and_the_tenant_can_send(tenv: Env) -> None:
    code = tenv.sandbox.signup_code(numbers=2, value=canary("CODE"))
    (waba_id,) = tenv.sandbox.signup_wabas(code)
    steps: list[tuple[str, str]] = []
    result = run_onboard(tenv, code, report=lambda *s: steps.append(s))
    business = tenv.sandbox.business(waba_id)
    assert [t.tenant for t in result.tenants] == [waba_id]  # the default tenant key: the WABA id
    value = stored(tenv, waba_id)
    assert value is not None and fingerprint_of(value) == result.fingerprint and business.token == value
    assert result.tenants[0].numbers == business.phone_number_ids and result.tenants[0].numbers_added
    assert numbers_map(tenv) == {n: waba_id for n in business.phone_number_ids}
    assert [s for s, _ in steps] == ["exchanged", "stored", "numbers"]
    assert code not in repr(result) and value not in repr(result) and value not in json.dumps(result.to_dict())
    # the new tenant sends from its own numbers, with its own token
    with sender.TenantSender.from_config(tenv.config) as fleet:
        sent = fleet.for_number(business.phone_number_ids[1]).send_text(TO, "welcome")
    assert sent.token_fingerprint == result.fingerprint


def test_a_second_onboarding_replaces_and_revokes_the_old_token_after_the_cache_wait(tenv: Env) -> None:
    first = run_onboard(tenv, tenv.sandbox.signup_code())
    waba_id = first.waba_ids[0]
    waits: list[float] = []
    second = run_onboard(tenv, tenv.sandbox.signup_code(waba_id), sleep=waits.append)
    assert waits == [330.0]  # tenants.token.cache: ttl 300 + refresh_ahead 30
    assert stored(tenv, waba_id) is not None and fingerprint_of(stored(tenv, waba_id) or "") == second.fingerprint
    entry = second.tenants[0]
    assert entry.replaced == first.fingerprint and entry.revoked
    assert status(tenv, first.fingerprint) == "revoked" and status(tenv, second.fingerprint) == "valid"
    assert numbers_map(tenv) == {n: waba_id for n in tenv.sandbox.business(waba_id).phone_number_ids}
    # the same again, but the service answers first and revokes later
    third = run_onboard(tenv, tenv.sandbox.signup_code(waba_id), revoke_old=False)
    assert status(tenv, second.fingerprint) == "valid" and third.tenants[0].replaced == second.fingerprint
    with graph(tenv) as g, tokenstore.load_tenants(tenv.config) as tenants:
        revoked = sender.revoke_replaced_tokens(third, g, tenants, revoke_old_after=0)
    assert revoked == [second.fingerprint] and status(tenv, second.fingerprint) == "revoked"


def test_a_token_for_several_wabas_makes_one_tenant_per_waba(tenv: Env) -> None:
    a = tenv.sandbox.add_business(numbers=1, token=False)
    b = tenv.sandbox.add_business(numbers=2, token=False)
    result = run_onboard(tenv, tenv.sandbox.signup_code([a.waba_id, b.waba_id]))
    assert sorted(t.tenant for t in result.tenants) == sorted([a.waba_id, b.waba_id])
    assert stored(tenv, a.waba_id) == stored(tenv, b.waba_id) is not None
    assert numbers_map(tenv) == {
        **{n: a.waba_id for n in a.phone_number_ids},
        **{n: b.waba_id for n in b.phone_number_ids},
    }
    # a later onboarding of A alone must not revoke the token B's secret still holds
    again = run_onboard(tenv, tenv.sandbox.signup_code(a.waba_id), revoke_old_after=0)
    assert again.tenants[0].replaced == result.fingerprint and not again.tenants[0].revoked
    assert "still holds it" in (again.tenants[0].revoke_note or "")
    assert status(tenv, result.fingerprint) == "valid"


def test_a_custom_tenant_key(tenv: Env) -> None:
    code = tenv.sandbox.signup_code()
    result = run_onboard(tenv, code, tenant_for_waba=lambda waba_id: f"acme-{waba_id[-4:]}")
    (waba_id,) = tenv.sandbox.signup_wabas(code)
    assert result.tenants[0].tenant == f"acme-{waba_id[-4:]}" and stored(tenv, f"acme-{waba_id[-4:]}")


# -- bad input: clear errors, nothing stored, nothing echoed ---------------------------------------------------
def assert_nothing_stored(env: Env) -> None:
    assert list((env.tmp / "tenants").iterdir()) == [] and numbers_map(env) == {}


def test_an_expired_code(sandbox: Sandbox, tmp_path: Path, clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    env = tenants_env(clocked_sandbox, tmp_path)
    code = clocked_sandbox.signup_code(value=canary("CODE"))
    clock.advance(31)
    with pytest.raises(sender.SignupCodeRejected) as info:
        run_onboard(env, code)
    assert "expired" in str(info.value) and "30 seconds" in str(info.value) and code not in str(info.value)
    assert info.value.subcode == 36007
    assert_nothing_stored(env)


def test_a_reused_code(tenv: Env) -> None:
    code = tenv.sandbox.signup_code(value=canary("CODE"))
    first = run_onboard(tenv, code)
    before = stored(tenv, first.waba_ids[0])
    with pytest.raises(sender.SignupCodeRejected, match="has been used") as info:
        run_onboard(tenv, code)
    assert code not in str(info.value) and stored(tenv, first.waba_ids[0]) == before


def test_a_code_of_another_app(tenv: Env) -> None:
    other = tenv.sandbox.state.tokens.add_app()
    code = tenv.sandbox.signup_code(app_id=other.app_id, value=canary("CODE"))
    with pytest.raises(sender.SignupCodeRejected, match="not issued for the app") as info:
        run_onboard(tenv, code)
    assert code not in str(info.value)
    assert_nothing_stored(tenv)


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        (["whatsapp_business_management"], "lacks the whatsapp_business_messaging permission"),
        ([], "lacks the whatsapp_business_messaging permission"),
    ],
)
def test_a_token_without_the_messaging_scope_is_refused_and_revoked(tenv: Env, scopes: list[str], message: str) -> None:
    code = tenv.sandbox.signup_code(scopes=scopes)
    with pytest.raises(sender.OnboardingRefused, match=message) as info:
        run_onboard(tenv, code)
    assert "nothing was stored" in str(info.value) and "it was revoked" in str(info.value)
    assert_nothing_stored(tenv)
    assert [r.status(tenv.sandbox.clock()) for r in tenv.sandbox.tokens() if r.label and "signup" in r.label] == [
        "revoked"
    ]


def test_an_invalid_tenant_key_stores_nothing_and_revokes_the_token(tenv: Env) -> None:
    with pytest.raises(tokenstore.InvalidTenantKey):
        run_onboard(tenv, tenv.sandbox.signup_code(), tenant_for_waba=lambda waba_id: "../other")
    assert_nothing_stored(tenv)
    assert all(
        r.status(tenv.sandbox.clock()) == "revoked" for r in tenv.sandbox.tokens() if r.label and "signup" in r.label
    )


def test_a_malformed_code_is_refused_before_any_call(tenv: Env) -> None:
    with graph(tenv) as g:
        for bad in ("", "two words", "tab\there"):
            with pytest.raises(ValueError):
                g.exchange_code(bad)
    assert sum(tenv.sandbox.route_counts().values()) == 0


# -- the CLI ------------------------------------------------------------------------------------------------------
def onboard_cli(env: Env, capsys: pytest.CaptureFixture[str], code: str, *args: str) -> tuple[int, str, str]:
    return cli(["onboard", "-c", str(env.config), *args], capsys, env, code)


@pytest.fixture
def cli_sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    recorder = Sleeps()
    monkeypatch.setattr("tokenstore.cli.onboard._sleep", recorder)
    return recorder


def test_cli_onboard_reads_the_code_from_stdin(
    tenv: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cli_sleeps: Sleeps
) -> None:
    code = tenv.sandbox.signup_code(numbers=2, value=canary("CODE"))
    (waba_id,) = tenv.sandbox.signup_wabas(code)
    stdin(monkeypatch, code + "\n")
    exit_code, out, err = onboard_cli(tenv, capsys, code)
    assert exit_code == 0, err
    value = stored(tenv, waba_id)
    assert value is not None and fingerprint_of(value) in out and re.search(rf"tenant:\s+{waba_id} \(WABA", out)
    assert "added to the routing map" in out and numbers_map(tenv)
    # a second onboarding, JSON: the old token is revoked after the (replaced) wait
    code2 = tenv.sandbox.signup_code(waba_id, value=canary("CODE"))
    stdin(monkeypatch, code2)
    exit_code, out, err = onboard_cli(tenv, capsys, code2, "--json")
    data = json.loads(out)
    assert exit_code == 0 and data["status"] == "onboarded" and data["exit_code"] == 0
    assert data["tenants"][0]["replaced"] == fingerprint_of(value) and data["tenants"][0]["revoked"] is True
    assert cli_sleeps.waits == [330.0] and status(tenv, value) == "revoked"


def test_cli_onboard_errors(
    tenv: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cli_sleeps: Sleeps
) -> None:
    code = tenv.sandbox.signup_code(value=canary("CODE"))
    stdin(monkeypatch, code)
    assert onboard_cli(tenv, capsys, code)[0] == 0
    stdin(monkeypatch, code)  # used already
    exit_code, out, err = onboard_cli(tenv, capsys, code, "--json")
    assert exit_code == 4 and json.loads(out)["status"] == "error" and "has been used" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    stdin(monkeypatch, "")
    exit_code, _, err = onboard_cli(tenv, capsys, code)
    assert exit_code == 2 and "no signup code given" in err
    stdin(monkeypatch, "two words")
    exit_code, _, err = onboard_cli(tenv, capsys, code)
    assert exit_code == 2 and "exactly one signup code" in err
    code3 = tenv.sandbox.signup_code(scopes=["whatsapp_business_management"], value=canary("CODE"))
    stdin(monkeypatch, code3)
    exit_code, _, err = onboard_cli(tenv, capsys, code3)
    assert exit_code == 1 and "onboarding refused" in err and "nothing was stored" in err
    # the code is never an argument
    with pytest.raises(SystemExit) as info:
        tokenstore.cli.main(["onboard", "-c", str(tenv.config), code])
    assert info.value.code == 2
    _, err = capsys.readouterr()
    assert_clean(err, code)


def test_cli_onboard_without_tenants_section(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = env.sandbox.signup_code(value=canary("CODE"))
    stdin(monkeypatch, code)
    exit_code, _, err = cli(["onboard", "-c", str(env.config)], capsys, env, code)
    assert exit_code == 2 and "tenants" in err
    assert env.sandbox.route_counts()["oauth.access_token"] == 0  # the config is checked before the code is used


# -- two replicas onboarding at once ---------------------------------------------------------------------------
class _Interleaving(tokenstore.TokenProvider):
    """A numbers store whose first write is preceded by another replica's whole ``add_numbers``."""

    def __init__(self, path: Path, before_first_write: Any) -> None:
        self.inner = FileBackend(path)
        self.source = self.inner.source
        self.before_first_write = before_first_write

    def get_token(self) -> tokenstore.Token:
        return self.inner.get_token()

    @property
    def supports_write(self) -> bool:
        return True

    def put_token(self, value: str, *, expected: tokenstore.Token | str | None = None) -> str | None:
        if self.before_first_write is not None:
            other, self.before_first_write = self.before_first_write, None
            other()
        return self.inner.put_token(value, expected=expected)


def test_numbers_added_by_two_replicas_at_once_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "numbers.json"
    FileBackend(path).put_token('{"100":"first"}')
    other = tokenstore.TenantProviders(lambda t: FileBackend(tmp_path / t), numbers_store=FileBackend(path))
    mine = tokenstore.TenantProviders(
        lambda t: FileBackend(tmp_path / t),
        numbers_store=_Interleaving(path, lambda: other.add_numbers({"200": "acme"})),
    )
    with other, mine:
        result = mine.add_numbers({"300": "globex"})
    assert json.loads(path.read_text()) == result == {"100": "first", "200": "acme", "300": "globex"}


def test_a_store_that_cannot_write_leaves_no_live_token(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(sandbox, tmp_path)
    env.write_config(tenants={"token": {"backend": "env", "env": {"var": "ONBOARD_TEST_{tenant}"}}})
    with pytest.raises(tokenstore.WriteNotSupported):
        run_onboard(env, sandbox.signup_code())
    signup = [r for r in sandbox.tokens() if r.label and "signup" in r.label]
    assert len(signup) == 1 and signup[0].status(sandbox.clock()) == "revoked"

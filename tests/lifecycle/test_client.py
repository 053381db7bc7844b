"""The Graph token client (sync and async) against the sandbox over loopback HTTP: inspect, refresh, revoke,
generate; typed results and errors; never a secret in a result's repr or an error's text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import sender
from sender import (
    AppCredentialsError,
    AsyncGraphTokenClient,
    AuthenticationError,
    ConnectFailed,
    GraphTokenClient,
    InvalidRequest,
    SendError,
    ServerError,
)
from sender.sandbox import SIXTY_DAYS, ManualClock, Sandbox
from tests.contract import assert_clean, canary
from tests.lifecycle.conftest import DAY, TO, Env
from tests.servers import free_port
from tokenstore import CachePolicy, CachingProvider, ConfigError, Token
from tokenstore.backends.file import FileBackend

SYSTEM_USER = "100000000000009"


def graph(sb: Sandbox, secret: str | None = None, **options: object) -> GraphTokenClient:
    return GraphTokenClient(sb.app_id, secret or sb.app_secret, base_url=sb.url, **options)  # type: ignore[arg-type]


def texts(*things: object) -> str:
    out = []
    for thing in things:
        out.append(repr(thing))
        out.append(str(thing))
        if isinstance(thing, BaseException) and thing.__cause__ is not None:
            out.append(str(thing.__cause__) + repr(thing.__cause__))
    return "\n".join(out)


def utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


# -- inspect ------------------------------------------------------------------------------------------------
def test_inspect_a_60_day_token(clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    sb = clocked_sandbox
    token = sb.issue_token(value=canary(), expires_in=SIXTY_DAYS)
    with graph(sb) as g:
        info = g.inspect(token)
    assert info.is_valid and info.type == "SYSTEM_USER" and info.app_id == sb.app_id
    assert set(info.scopes) == {"whatsapp_business_messaging", "whatsapp_business_management"}
    assert info.waba_ids == (sb.waba_id,) and info.granular_scopes["whatsapp_business_messaging"] == (sb.waba_id,)
    assert info.issued_at == utc(int(clock())) and info.expires_at == utc(int(clock()) + SIXTY_DAYS)
    assert not info.never_expires and info.error is None and info.can_send_messages
    assert info.fingerprint == Token(token, source="t").fingerprint
    data = info.to_dict()
    assert data["waba_ids"] == [sb.waba_id] and data["never_expires"] is False and data["error"] is None
    assert_clean(repr(info) + str(data), token, sb.app_secret)


def test_inspect_never_expiring_and_invalid_tokens_answer_without_raising(
    clocked_sandbox: Sandbox, clock: ManualClock
) -> None:
    sb = clocked_sandbox
    never = sb.issue_token(value=canary())
    short = sb.issue_token(value=canary(), expires_in=DAY)
    revoked = sb.issue_token(value=canary())
    sb.revoke_token(revoked)
    clock.advance(DAY + 1)
    with graph(sb) as g:
        info = g.inspect(never)
        assert info.is_valid and info.never_expires and info.expires_at is None and info.expires_in() is None
        expired = g.inspect(short)
        assert not expired.is_valid and expired.error is not None and expired.error.code == 190
        assert expired.error.subcode == 463 and expired.error.expired and expired.is_expired(utc(clock()))
        gone = g.inspect(revoked)
        assert not gone.is_valid and gone.error is not None and gone.error.subcode == 460
        unknown = g.inspect(canary())
        assert not unknown.is_valid and unknown.error is not None and unknown.error.code == 190
        assert "code 190" in str(unknown.error)


def test_inspect_authenticates_with_the_app_token_never_the_token_itself(sandbox: Sandbox) -> None:
    token = sandbox.issue_token(value=canary())
    with graph(sandbox) as g:
        g.inspect(token)
    (record,) = [r for r in sandbox.requests if r.route == "debug_token"]
    assert record.token_fingerprint == f"app:{sandbox.app_id}" and record.status == 200


# -- refresh ------------------------------------------------------------------------------------------------
def test_refresh_gives_a_new_60_day_token_and_the_old_stays_valid(clocked_sandbox: Sandbox, clock: ManualClock) -> None:
    sb = clocked_sandbox
    old = sb.issue_token(value=canary(), expires_in=SIXTY_DAYS)
    clock.advance(50 * DAY)
    with graph(sb, clock=clock) as g:
        new = g.refresh(old)
        assert new.expires_in == SIXTY_DAYS and new.expires_at == utc(clock() + SIXTY_DAYS)
        assert new.token_type == "bearer" and new.token.source == "graph:oauth/access_token"
        assert new.fingerprint == new.token.fingerprint != Token(old, source="x").fingerprint
        info = g.inspect(new.token)
        assert info.is_valid and info.expires_at == utc(int(clock()) + SIXTY_DAYS) and info.waba_ids == (sb.waba_id,)
        assert g.inspect(old).is_valid  # Meta: the old token stays valid until its own expiry
    record = sb.token_record(new.token.reveal())
    assert record is not None and record.parent == Token(old, source="x").fingerprint
    assert_clean(texts(new), old, new.token.reveal(), sb.app_secret)


def test_refresh_without_the_60_day_flag_keeps_the_lifetime(sandbox: Sandbox) -> None:
    never = sandbox.issue_token(value=canary())
    with graph(sandbox) as g:
        assert g.refresh(never, sixty_days=False).expires_in is None
        assert g.refresh(never).expires_in == SIXTY_DAYS  # the flag turns a never-expiring token into a 60-day one
    query = [r.path for r in sandbox.requests if r.route == "oauth.access_token"]
    assert "set_token_expires_in_60_days" not in query[0] and "set_token_expires_in_60_days=true" in query[1]


@pytest.mark.parametrize(("state", "subcode"), [("revoked", 460), ("expired", 463), ("unknown", 467)])
def test_refresh_refuses_dead_tokens(clocked_sandbox: Sandbox, clock: ManualClock, state: str, subcode: int) -> None:
    sb = clocked_sandbox
    token = sb.issue_token(value=canary(), expires_in=DAY) if state != "unknown" else canary()
    if state == "revoked":
        sb.revoke_token(token)
    if state == "expired":
        clock.advance(DAY)
    with graph(sb) as g, pytest.raises(AuthenticationError) as info:
        g.refresh(token)
    error = info.value
    assert error.code == 190 and error.subcode == subcode and not error.retryable
    assert "refuse" in str(error) and Token(token, source="x").fingerprint in str(error)
    assert_clean(texts(error), token, sb.app_secret)


def test_refresh_is_not_retried_and_a_fault_is_a_typed_error(sandbox: Sandbox) -> None:
    token = sandbox.issue_token(value=canary(), expires_in=SIXTY_DAYS)
    sandbox.fail_next(2, route="oauth.access_token")
    with graph(sandbox) as g, pytest.raises(ServerError) as info:
        g.refresh(token)
    assert info.value.code == 2 and info.value.retryable
    assert sandbox.route_counts()["oauth.access_token"] == 1


# -- app credentials ----------------------------------------------------------------------------------------
def test_a_wrong_app_secret_is_an_app_credentials_error_for_every_call(sandbox: Sandbox) -> None:
    token = sandbox.issue_token(value=canary(), expires_in=SIXTY_DAYS)
    wrong = canary("APPSECRET")
    calls = {
        "inspect": lambda g: g.inspect(token),
        "refresh": lambda g: g.refresh(token),
        "revoke": lambda g: g.revoke(token),
        "generate": lambda g: g.generate(SYSTEM_USER, access_token=token),
    }
    for name, call in calls.items():
        with graph(sandbox, wrong) as g, pytest.raises(AppCredentialsError) as info:
            call(g)
        error = info.value
        assert isinstance(error, AuthenticationError) and not error.retryable, name
        assert "app secret" in str(error) or "app token" in str(error), name
        assert_clean(texts(error), token, wrong, sandbox.app_secret)
    record = sandbox.token_record(token)
    assert record is not None and record.revoked_at is None
    assert sandbox.route_counts()["oauth.access_token"] == 1  # refused: no token was issued
    assert len(sandbox.tokens()) == 1


def test_an_unknown_app_id_is_an_app_credentials_error(sandbox: Sandbox) -> None:
    token = sandbox.issue_token(value=canary(), expires_in=SIXTY_DAYS)
    with GraphTokenClient("4242424242", sandbox.app_secret, base_url=sandbox.url) as g:
        with pytest.raises(AppCredentialsError, match="app id 4242424242") as info:
            g.refresh(token)
        assert info.value.code == 101
        with pytest.raises(AppCredentialsError):
            g.inspect(token)


def test_the_app_secret_provider_is_asked_on_every_call(sandbox: Sandbox, tmp_path: Path) -> None:
    token = sandbox.issue_token(value=canary())
    path = tmp_path / "secret"
    FileBackend(path).put_token(sandbox.app_secret)
    with GraphTokenClient(sandbox.app_id, FileBackend(path), base_url=sandbox.url) as g:
        assert g.inspect(token).is_valid
        new_secret = canary("APPSECRET")
        sandbox.state.app.secret = new_secret  # Meta-side app secret reset ...
        with pytest.raises(AppCredentialsError) as info:
            g.inspect(token)
        assert str(path) in str(info.value)  # the message names the store of the secret
        FileBackend(path).put_token(new_secret)  # ... and the store catches up: no restart needed
        assert g.inspect(token).is_valid


# -- revoke -------------------------------------------------------------------------------------------------
def test_revoke_is_effective_at_once(sandbox: Sandbox, tmp_path: Path) -> None:
    token = sandbox.issue_token(value=canary(), expires_in=SIXTY_DAYS)
    path = tmp_path / "token"
    FileBackend(path).put_token(token)
    provider = CachingProvider(FileBackend(path), CachePolicy(ttl=300, jitter=0))
    with (
        sender.Sender(provider, phone_number_id=sandbox.phone_number_id, base_url=sandbox.url) as s,
        graph(sandbox) as g,
    ):
        s.send_text(TO, "before")
        assert g.revoke(token) is True
        with pytest.raises(AuthenticationError) as info:
            s.send_text(TO, "after")
        assert info.value.code == 190 and info.value.subcode == 460
        assert g.inspect(token).error is not None
    assert sandbox.received_counts() == {"before": 1}


def test_revoke_with_another_access_token_and_twice(sandbox: Sandbox) -> None:
    old = sandbox.issue_token(value=canary(), expires_in=SIXTY_DAYS)
    with graph(sandbox) as g:
        new = g.refresh(old)
        assert g.revoke(old, access_token=new.token)
        assert g.revoke(old, access_token=new.token)  # revoking a revoked token succeeds
        assert g.inspect(new.token).is_valid and not g.inspect(old).is_valid
    (first, _) = [r for r in sandbox.requests if r.route == "oauth.revoke"]
    assert first.token_fingerprint == new.fingerprint and "revoke_token=[redacted]" in first.path


def test_revoke_refuses_another_apps_token(sandbox: Sandbox) -> None:
    other = sandbox.state.tokens.add_app()
    foreign = sandbox.state.tokens.issue(app_id=other.app_id)
    mine = sandbox.issue_token(value=canary())
    with graph(sandbox) as g, pytest.raises(InvalidRequest):
        g.revoke(foreign, access_token=mine)
    record = sandbox.token_record(foreign)
    assert record is not None and record.revoked_at is None


# -- generate -----------------------------------------------------------------------------------------------
def test_generate_a_system_user_token_with_appsecret_proof(sandbox: Sandbox, tmp_path: Path) -> None:
    admin = sandbox.issue_token(value=canary())
    with graph(sandbox) as g:
        issued = g.generate(SYSTEM_USER, access_token=admin, scopes=["whatsapp_business_messaging"])
        info = g.inspect(issued.token)
        assert info.is_valid and info.type == "SYSTEM_USER" and info.scopes == ("whatsapp_business_messaging",)
        assert info.expires_at is not None and info.issued_at is not None
        assert info.expires_at - info.issued_at == dt.timedelta(seconds=SIXTY_DAYS)
        never = g.generate(SYSTEM_USER, access_token=admin, sixty_days=False)
        assert g.inspect(never.token).never_expires
        with pytest.raises(InvalidRequest):
            g.generate("123", access_token=admin)  # no such system user
        with pytest.raises(SendError) as info_:
            g.generate(SYSTEM_USER, access_token=admin, scopes=["whatsapp_business_everything"])
        assert info_.value.code == 3962
    FileBackend(tmp_path / "generated").put_token(issued.token.reveal())
    provider = FileBackend(tmp_path / "generated")
    with sender.Sender(provider, phone_number_id=sandbox.phone_number_id, base_url=sandbox.url) as s:
        assert s.send_text(TO, "from a generated token").message_id
    posts = [r for r in sandbox.requests if r.route == "system_users.access_tokens"]
    assert all("?" not in r.path for r in posts)  # form body, not the URL
    assert_clean(texts(issued, never), issued.token.reveal(), never.token.reveal(), admin, sandbox.app_secret)


def test_generate_requires_a_valid_appsecret_proof(sandbox: Sandbox) -> None:
    import httpx

    admin = sandbox.issue_token(value=canary())
    url = f"{sandbox.url}/v26.0/{SYSTEM_USER}/access_tokens"
    form = {"business_app": sandbox.app_id, "scope": "whatsapp_business_messaging"}
    headers = {"Authorization": f"Bearer {admin}"}
    missing = httpx.post(url, data=form, headers=headers)
    assert missing.status_code == 400 and "appsecret_proof" in missing.json()["error"]["message"]
    bad = httpx.post(url, data={**form, "appsecret_proof": "0" * 64}, headers=headers)
    assert bad.status_code == 400 and "Invalid appsecret_proof" in bad.json()["error"]["message"]
    good = httpx.post(
        url, data={**form, "appsecret_proof": sender.appsecret_proof(admin, sandbox.app_secret)}, headers=headers
    )
    assert good.status_code == 200 and set(good.json()) == {"access_token"}


# -- async --------------------------------------------------------------------------------------------------
async def test_async_client(sandbox: Sandbox) -> None:
    old = sandbox.issue_token(value=canary(), expires_in=SIXTY_DAYS)
    async with AsyncGraphTokenClient(sandbox.app_id, sandbox.app_secret, base_url=sandbox.url) as g:
        assert (await g.inspect(old)).is_valid
        new = await g.refresh(old)
        assert (await g.inspect(new.token)).expires_in() is not None
        assert await g.revoke(old, access_token=new.token)
        assert not (await g.inspect(old)).is_valid
        generated = await g.generate(SYSTEM_USER, access_token=new.token)
        assert (await g.inspect(generated.token)).is_valid
    async with AsyncGraphTokenClient(sandbox.app_id, canary("APPSECRET"), base_url=sandbox.url) as bad:
        with pytest.raises(AppCredentialsError):
            await bad.refresh(new.token)
    assert await sender.adebug_token(
        new.token, app_id=sandbox.app_id, app_secret=sandbox.app_secret, base_url=sandbox.url
    )


# -- construction, config, transport errors -----------------------------------------------------------------
def test_from_config(env: Env) -> None:
    with GraphTokenClient.from_config(env.config) as g:
        assert g.inspect(env.initial).is_valid
        assert env.app_secret not in repr(g) and str(env.secret_path) in repr(g)
    data = {"whatsapp": {"base_url": env.sandbox.url}, "app_secret": {"backend": "env", "env": {"var": "X"}}}
    with pytest.raises(ConfigError, match=r"whatsapp\.app_id: required for"):
        GraphTokenClient.from_config(data)
    with pytest.raises(ConfigError, match=r"app_secret: required for"):
        GraphTokenClient.from_config({"whatsapp": {"app_id": "123"}})


async def test_async_from_config(env: Env) -> None:
    async with AsyncGraphTokenClient.from_config(env.config) as g:
        assert (await g.inspect(env.initial)).is_valid


def test_arguments_are_checked_without_echoing_them(sandbox: Sandbox) -> None:
    secret = canary("APPSECRET")
    with pytest.raises(ValueError, match="app_id"):
        GraphTokenClient("my-app", secret)
    with pytest.raises(ValueError, match="plain http"):
        GraphTokenClient("1", secret, base_url="http://graph.facebook.com")
    with pytest.raises(ValueError) as info:
        GraphTokenClient("1", secret + " two")
    assert secret not in str(info.value)
    with graph(sandbox) as g:
        for bad in ("", "two words" + canary(), canary() + "\n\x00"):
            with pytest.raises(ValueError) as info:
                g.inspect(bad)
            if bad:
                assert_clean(str(info.value), bad.strip())
    assert sandbox.requests == []
    g.close()
    with pytest.raises(RuntimeError, match="closed"):
        g.inspect(canary())


def test_connection_refused_is_connect_failed_without_the_query(sandbox: Sandbox) -> None:
    token = canary()
    secret = canary("APPSECRET")
    with GraphTokenClient("123456", secret, base_url=f"http://127.0.0.1:{free_port()}") as g:
        for call in (lambda: g.refresh(token), lambda: g.inspect(token), lambda: g.revoke(token)):
            with pytest.raises(ConnectFailed) as info:
                call()
            assert info.value.retryable and info.value.__cause__ is not None
            assert_clean(texts(info.value), token, secret)

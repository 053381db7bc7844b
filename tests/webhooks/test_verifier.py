"""WebhookVerifier: Meta's X-Hub-Signature-256 over the raw body and the GET handshake, with secrets from real
file-backed stores; rotation with a bounded number of store reads; limits; nothing that helps a forger."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from pathlib import Path

import pytest

import sender
import tokenstore
from tests.webhooks.conftest import Clock, SecretFile, sign, status_body
from tokenstore import BackendUnavailable, Token, TokenProvider

BODY = status_body()


def refused(verifier: sender.WebhookVerifier, body: bytes, header: str | None) -> sender.InvalidSignature:
    with pytest.raises(sender.InvalidSignature) as info:
        verifier.verify(body, header)
    return info.value


def test_accepts_meta_signature_sync_and_async(verifier: sender.WebhookVerifier, app_secret: SecretFile) -> None:
    verifier.verify(BODY, sign(app_secret.value, BODY))
    asyncio.run(verifier.averify(BODY, sign(app_secret.value, BODY)))
    verifier.verify(bytearray(BODY), sign(app_secret.value, BODY))
    assert verifier.stats["accepted"] == 3
    assert app_secret.reads == 1  # fetched once, then served from the verifier's own copy


def test_the_raw_bytes_are_signed_not_the_json(verifier: sender.WebhookVerifier, app_secret: SecretFile) -> None:
    reserialised = BODY.replace(b",", b", ")  # the same JSON, other bytes
    refused(verifier, reserialised, sign(app_secret.value, BODY))
    with pytest.raises(TypeError, match="raw body bytes"):
        verifier.verify(BODY.decode(), sign(app_secret.value, BODY))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda s, b: sign("not-the-secret", b), id="forged"),
        pytest.param(lambda s, b: sign(s, b + b" "), id="another-body"),
        pytest.param(lambda s, b: sign(s, b).upper().replace("SHA256=", "sha256="), id="uppercase-hex"),
        pytest.param(lambda s, b: sign(s, b).upper(), id="uppercase-all"),
        pytest.param(lambda s, b: " " + sign(s, b), id="leading-space"),
        pytest.param(lambda s, b: sign(s, b) + "\n", id="trailing-newline"),
        pytest.param(lambda s, b: sign(s, b).replace("=", "= "), id="inner-space"),
        pytest.param(lambda s, b: "sha1=" + hmac.new(s.encode(), b, hashlib.sha1).hexdigest(), id="sha1"),
        pytest.param(lambda s, b: sign(s, b)[:-2], id="truncated"),
        pytest.param(lambda s, b: sign(s, b) + "00", id="too-long"),
        pytest.param(lambda s, b: sign(s, b)[:-1] + "g", id="non-hex"),
        pytest.param(lambda s, b: sign(s, b)[7:], id="no-prefix"),
        pytest.param(lambda s, b: "", id="empty"),
        pytest.param(lambda s, b: None, id="missing"),
        pytest.param(lambda s, b: "sha256=", id="prefix-only"),
        pytest.param(lambda s, b: sign(s, b) + "," + sign(s, b), id="two-values"),
    ],
)
def test_refused_headers(verifier: sender.WebhookVerifier, app_secret: SecretFile, make_header: object) -> None:
    header = make_header(app_secret.value, BODY)  # type: ignore[operator]
    error = refused(verifier, BODY, header)
    assert str(error) == "the webhook signature is invalid"  # the same words whatever failed
    assert app_secret.value not in repr(error) and hmac.new(
        app_secret.value.encode(), BODY, "sha256"
    ).hexdigest() not in str(error)


def test_empty_body_refused_even_when_signed(verifier: sender.WebhookVerifier, app_secret: SecretFile) -> None:
    refused(verifier, b"", sign(app_secret.value, b""))
    assert app_secret.reads == 0  # refused before any secret was needed


def test_ten_mib_body_refused_before_hashing(
    verifier: sender.WebhookVerifier, app_secret: SecretFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = b"{" + b" " * (10 << 20) + b"}"
    header = sign(app_secret.value, big)
    calls: list[int] = []
    real_new = hmac.new
    monkeypatch.setattr(hmac, "new", lambda *a, **k: calls.append(1) or real_new(*a, **k))
    with pytest.raises(sender.PayloadTooLarge) as info:
        verifier.verify(big, header)
    assert calls == [] and app_secret.reads == 0
    assert isinstance(info.value, sender.InvalidSignature) and info.value.max_body == 1 << 20
    exactly = b"x" * (1 << 20)
    monkeypatch.setattr(hmac, "new", real_new)
    verifier.verify(exactly, sign(app_secret.value, exactly))  # the limit itself is allowed


def test_rotation_is_picked_up_and_the_old_secret_refused(
    verifier: sender.WebhookVerifier, app_secret: SecretFile
) -> None:
    old = app_secret.value
    verifier.verify(BODY, sign(old, BODY))
    app_secret.write(tokenstore_canary := "appsecret" + "CANARY" + "rotated0123456789")
    verifier.verify(BODY, sign(tokenstore_canary, BODY))  # no restart: refetched once on the mismatch
    assert app_secret.reads == 2 and verifier.stats["refetches"] == 1
    refused(verifier, BODY, sign(old, BODY))  # the old secret no longer verifies anything


def test_a_thousand_forged_requests_read_the_store_at_most_twice(
    verifier: sender.WebhookVerifier, app_secret: SecretFile, clock: Clock
) -> None:
    for i in range(1000):
        refused(verifier, BODY, sign(f"forged-{i}", BODY))
    assert app_secret.reads <= 2
    assert app_secret.reads == 2  # the first load and one refetch
    verifier.verify(BODY, sign(app_secret.value, BODY))  # the real one still passes, no read
    assert app_secret.reads == 2
    clock.advance(30)
    refused(verifier, BODY, sign("forged", BODY))
    assert app_secret.reads == 3  # one more refetch per refetch_interval
    refused(verifier, BODY, sign("forged", BODY))
    assert app_secret.reads == 3


def test_forged_flood_from_threads_and_tasks_is_single_flight(
    verifier: sender.WebhookVerifier, app_secret: SecretFile
) -> None:
    barrier = threading.Barrier(16)
    failures: list[BaseException] = []

    def flood() -> None:
        barrier.wait()
        for i in range(50):
            try:
                verifier.verify(BODY, sign(f"forged-{i}", BODY))
            except sender.InvalidSignature:
                pass
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

    threads = [threading.Thread(target=flood) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def tasks() -> None:
        async def one(i: int) -> None:
            with pytest.raises(sender.InvalidSignature):
                await verifier.averify(BODY, sign(f"forged-{i}", BODY))

        await asyncio.gather(*(one(i) for i in range(200)))

    asyncio.run(tasks())
    assert failures == [] and app_secret.reads == 2


def test_concurrent_genuine_requests_after_rotation_share_one_refetch(
    verifier: sender.WebhookVerifier, app_secret: SecretFile
) -> None:
    verifier.verify(BODY, sign(app_secret.value, BODY))
    app_secret.write("appsecretCANARYnext000000000000000")

    async def many() -> None:
        await asyncio.gather(*(verifier.averify(BODY, sign(app_secret.value, BODY)) for _ in range(100)))

    asyncio.run(many())
    assert app_secret.reads == 2


def test_several_app_secrets_any_may_sign(tmp_path: Path, app_secret: SecretFile, clock: Clock) -> None:
    from tests.webhooks.conftest import _secret_file

    other = _secret_file(tmp_path / "other", "appsecret")
    with sender.WebhookVerifier([app_secret.provider(), other.provider()], clock=clock) as verifier:
        # which app signed it: the provider's source label, never the secret
        assert verifier.verify(BODY, sign(app_secret.value, BODY)) == f"file:{app_secret.path}"
        assert verifier.verify(BODY, sign(other.value, BODY)) == f"file:{other.path}"
        assert asyncio.run(verifier.averify(BODY, sign(other.value, BODY))) == f"file:{other.path}"
        refused(verifier, BODY, sign(app_secret.value + other.value, BODY))


class Down(TokenProvider):
    source = "test:down"

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self) -> Token:
        self.calls += 1
        raise BackendUnavailable("the store is down", source=self.source)


def test_store_outage_is_the_store_error_and_reads_stay_bounded(clock: Clock) -> None:
    down = Down()
    verifier = sender.WebhookVerifier(down, clock=clock)
    for _ in range(100):
        with pytest.raises(BackendUnavailable):
            verifier.verify(BODY, sign("whatever", BODY))
    assert down.calls == 2  # the first load and one refetch, not one per request


def test_one_store_down_does_not_stop_the_others(app_secret: SecretFile, clock: Clock) -> None:
    verifier = sender.WebhookVerifier([Down(), app_secret.provider()], clock=clock)
    verifier.verify(BODY, sign(app_secret.value, BODY))
    with pytest.raises(BackendUnavailable):  # it might have been the down store's secret: 503, Meta retries
        verifier.verify(BODY, sign("forged", BODY))


# -- the GET handshake -----------------------------------------------------------------------------------------
def test_subscription_handshake(verifier: sender.WebhookVerifier, verify_token: SecretFile) -> None:
    assert verifier.verify_subscription("subscribe", verify_token.value, "1158201444") == "1158201444"
    assert asyncio.run(verifier.averify_subscription("subscribe", verify_token.value, "42")) == "42"
    for mode, token, challenge in [
        ("subscribe", verify_token.value + "x", "1"),
        ("subscribe", verify_token.value[:-1], "1"),
        ("unsubscribe", verify_token.value, "1"),
        (None, verify_token.value, "1"),
        ("subscribe", None, "1"),
        ("subscribe", "", "1"),
        ("subscribe", verify_token.value, None),
        ("subscribe", verify_token.value, ""),
        ("subscribe", verify_token.value, "<script>alert(1)</script> x"),
        ("subscribe", verify_token.value, "9" * 1025),
    ]:
        with pytest.raises(sender.SubscriptionRefused) as info:
            verifier.verify_subscription(mode, token, challenge)
        assert str(info.value) == "the webhook subscription was refused"
        assert verify_token.value not in repr(info.value)
    assert verify_token.reads == 2  # one load and one refetch for all those wrong tokens


def test_verify_token_rotation(verifier: sender.WebhookVerifier, verify_token: SecretFile, clock: Clock) -> None:
    old = verify_token.value
    verifier.verify_subscription("subscribe", old, "1")
    verify_token.write("verifyCANARYnewtoken")
    assert verifier.verify_subscription("subscribe", verify_token.value, "2") == "2"
    with pytest.raises(sender.SubscriptionRefused):
        verifier.verify_subscription("subscribe", old, "3")


def test_no_verify_token_configured(app_secret: SecretFile) -> None:
    verifier = sender.WebhookVerifier(app_secret.provider())
    with pytest.raises(sender.SubscriptionRefused, match="no verify token is configured"):
        verifier.verify_subscription("subscribe", "anything", "1")


def test_error_tree() -> None:
    assert issubclass(sender.InvalidSignature, sender.WebhookError)
    assert issubclass(sender.SubscriptionRefused, sender.WebhookError)
    assert issubclass(sender.PayloadTooLarge, sender.InvalidSignature)
    assert issubclass(sender.InvalidPayload, sender.WebhookError)


def test_repr_and_stats_hold_no_secret(
    verifier: sender.WebhookVerifier, app_secret: SecretFile, verify_token: SecretFile
) -> None:
    verifier.verify(BODY, sign(app_secret.value, BODY))
    verifier.verify_subscription("subscribe", verify_token.value, "1")
    text = repr(verifier) + str(verifier.stats) + repr(verifier._secrets.snapshot())
    assert app_secret.value not in text and verify_token.value not in text
    assert "file:" in repr(verifier)


# -- config -------------------------------------------------------------------------------------------------------
def test_from_config_webhook_section(tmp_path: Path, app_secret: SecretFile, verify_token: SecretFile) -> None:
    second = tmp_path / "second"
    second.write_text("appsecretCANARYsecond")
    second.chmod(0o600)
    config = {
        "webhook": {
            "verify_token": {"backend": "file", "file": {"path": str(verify_token.path)}},
            "app_secrets": [
                {"backend": "file", "file": {"path": str(app_secret.path)}},
                {"backend": "file", "file": {"path": str(second)}, "cache": {"ttl": 60}},
            ],
            "refetch_interval": 5,
            "max_body": 2048,
        }
    }
    with sender.WebhookVerifier.from_config(config) as verifier:
        assert verifier.settings == sender.WebhookSettings(refetch_interval=5.0, max_body=2048)
        verifier.verify(BODY, sign(app_secret.value, BODY))
        verifier.verify(BODY, sign("appsecretCANARYsecond", BODY))
        assert verifier.verify_subscription("subscribe", verify_token.value, "7") == "7"
        with pytest.raises(sender.PayloadTooLarge):
            verifier.verify(b"x" * 2049, sign(app_secret.value, b"x" * 2049))


def test_from_config_falls_back_to_app_secret(tmp_path: Path, app_secret: SecretFile) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"app_secret: {{backend: file, file: {{path: {app_secret.path}}}}}\n")
    with sender.WebhookVerifier.from_config(path) as verifier:
        assert verifier.settings == sender.WebhookSettings()
        assert verifier.settings.refetch_interval == 30 and verifier.settings.max_body == 1 << 20
        verifier.verify(BODY, sign(app_secret.value, BODY))


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({}, "webhook.app_secrets", "app_secret"),
        ({"webhook": {"app_secrets": []}}, "webhook.app_secrets", "non-empty list"),
        ({"webhook": {"app_secrets": ["literal"]}}, "webhook.app_secrets[0]", "provider section"),
        ({"webhook": {"app_secrets": [{"backend": "nosuch"}]}}, "webhook.app_secrets[0].backend", "nosuch"),
        ({"webhook": {"verfy_token": {}}, "app_secret": {"backend": "env"}}, "webhook.verfy_token", "verify_token"),
        (
            {"webhook": {"refetch_interval": "soon"}, "app_secret": {"backend": "env"}},
            "webhook.refetch_interval",
            "number",
        ),
        ({"webhook": {"max_body": 0}, "app_secret": {"backend": "env"}}, "webhook.max_body", "at least 1"),
    ],
)
def test_from_config_errors_name_the_field(config: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(tokenstore.ConfigError) as info:
        sender.WebhookVerifier.from_config(config)
    assert f"{field}:" in str(info.value) and words in str(info.value)


def test_a_literal_verify_token_is_refused_without_echo() -> None:
    config = {"webhook": {"verify_token": "verifyCANARYliteral"}, "app_secret": {"backend": "env"}}
    with pytest.raises(tokenstore.ConfigError) as info:
        sender.WebhookVerifier.from_config(config)
    assert "webhook.verify_token" in str(info.value) and "CANARY" not in str(info.value)


def test_the_webhook_section_does_not_break_the_sender_config(tmp_path: Path) -> None:
    config = {
        "whatsapp": {"phone_number_id": "1"},
        "token": {"backend": "env"},
        "webhook": {"refetch_interval": 10},
        "app_secret": {"backend": "env"},
    }
    with sender.Sender.from_config(config) as s:
        assert s.phone_number_id == "1"

"""The Secrets Manager rotation function against moto's server (boto3 over real HTTP) and the Graph sandbox as Meta.

Secrets Manager is driven as the service does it: ``rotate_secret`` with a RotationLambdaARN labels a new version
id AWSPENDING (and then fails to invoke the function, which moto cannot run here); the test calls
``sender.rotation.aws_lambda_handler`` with that id as ClientRequestToken for createSecret, setSecret, testSecret
and finishSecret, each twice (AWS retries steps). Settings come from ``$TOKENSTORE_CONFIG``, the app secret from
its own Secrets Manager secret.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from sender.rotation import AwsRotation, RotationFailed, aws_lambda_handler
from sender.sandbox import SIXTY_DAYS
from tests.contract import assert_clean
from tests.rotation.conftest import AwsRig, LambdaContext, assert_logs_clean, issue, log_text, status
from tokenstore import fingerprint_of

pytestmark = pytest.mark.backend("aws")

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


def rotate(rig: AwsRig, handler: Any = aws_lambda_handler, context: Any = None, twice: bool = True) -> str:
    """One whole rotation as Secrets Manager runs it; every step twice. Returns the new version id."""
    request = rig.start_rotation()
    for step in STEPS:
        for _ in range(2 if twice else 1):
            handler(rig.event(step, request), context)
    return request


def test_a_rotation_stages_tests_and_finishes_each_step_twice(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    old_version = aws.version_with("AWSCURRENT")
    request = aws.start_rotation()
    results = {}
    for step in STEPS:
        first = aws_lambda_handler(aws.event(step, request), None)
        second = aws_lambda_handler(aws.event(step, request), None)
        results[step] = (first, second)
        if step == "createSecret":
            pending = aws.value("AWSPENDING")
            assert pending != aws.initial and aws.value() == aws.initial  # readers still see the old token
            assert first["action"] == "staged" and second["action"] == "nothing"
            assert second["new_fingerprint"] == first["new_fingerprint"] == fingerprint_of(pending)
    new = aws.value()
    assert new == pending and status(aws.sandbox, new) == "valid"
    assert aws.stages() == {request: ["AWSCURRENT"], old_version: ["AWSPREVIOUS"]}  # AWSPENDING taken off
    assert aws.value("AWSPREVIOUS") == aws.initial
    assert status(aws.sandbox, aws.initial) == "valid"  # no Lambda context to wait in: revoked next rotation
    assert aws.sandbox.route_counts()["oauth.access_token"] == 1  # the retried createSecret exchanged nothing
    record = aws.sandbox.token_record(new)
    assert record is not None and record.expires_at - record.issued_at == SIXTY_DAYS
    assert [results[s][0]["action"] for s in STEPS] == ["staged", "nothing", "tested", "finished"]
    assert results["finishSecret"][1]["action"] == "nothing"
    assert "nothing to set" in " ".join(results["setSecret"][0]["notes"])
    text = log_text(caplog)
    assert f"exchanged {fingerprint_of(aws.initial)} for {fingerprint_of(new)}" in text
    assert_logs_clean(caplog, aws.sandbox)


def test_the_next_rotation_revokes_the_previous_token_never_the_current(
    aws: AwsRig, caplog: pytest.LogCaptureFixture
) -> None:
    rotate(aws)
    first = aws.value()
    later = AwsRotation(now=lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))
    rotate(aws, later)
    second = aws.value()
    assert status(aws.sandbox, aws.initial) == "revoked"  # AWSPREVIOUS of the first rotation
    assert status(aws.sandbox, first) == "valid" and status(aws.sandbox, second) == "valid"
    assert aws.value("AWSPREVIOUS") == first
    revoke = next(r for r in aws.sandbox.requests if r.route == "oauth.revoke")
    assert revoke.token_fingerprint == fingerprint_of(first)  # authenticated with the then current token
    assert aws.sandbox.route_counts()["oauth.revoke"] == 1
    assert_logs_clean(caplog, aws.sandbox)


def test_a_previous_token_younger_than_the_grace_is_left_alone(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    rotate(aws, twice=False)
    rotate(aws, twice=False)  # at once: replicas may still hold the first rotation's AWSPREVIOUS
    assert status(aws.sandbox, aws.initial) == "valid"
    assert aws.sandbox.route_counts()["oauth.revoke"] == 0
    assert "AWSCURRENT is younger than 330 s" in log_text(caplog)


def test_finish_waits_the_grace_when_the_function_has_time_then_revokes(
    aws: AwsRig, caplog: pytest.LogCaptureFixture
) -> None:
    aws.write_config(rotation={"revoke_old_after": 30})
    waits: list[float] = []
    handler = AwsRotation(sleep=waits.append)
    rotate(aws, handler, LambdaContext(remaining_seconds=300))
    assert waits == [30.0]  # once: the retried finishSecret found AWSCURRENT moved already
    assert status(aws.sandbox, aws.initial) == "revoked" and status(aws.sandbox, aws.value()) == "valid"
    assert_logs_clean(caplog, aws.sandbox)


def test_finish_without_time_for_the_grace_leaves_the_old_token_to_the_next_rotation(aws: AwsRig) -> None:
    waits: list[float] = []
    result = {}
    request = aws.start_rotation()
    for step in STEPS:
        result = AwsRotation(sleep=waits.append)(aws.event(step, request), LambdaContext(remaining_seconds=20))
    assert waits == [] and status(aws.sandbox, aws.initial) == "valid"
    assert any("the next rotation's createSecret revokes it" in n for n in result["notes"])


# -- bad input: a clear logged failure, AWSCURRENT untouched ---------------------------------------------------------
def failing(aws: AwsRig, caplog: pytest.LogCaptureFixture, event: Any, match: str) -> RotationFailed:
    before = aws.snapshot()
    with pytest.raises(RotationFailed, match=match) as info:
        aws_lambda_handler(event, None)
    assert aws.snapshot() == before
    assert any(r.levelname == "ERROR" and r.name == "sender.rotation" for r in caplog.records)
    assert_logs_clean(caplog, aws.sandbox)
    assert_clean(str(info.value), aws.app_secret, *(r.value for r in aws.sandbox.tokens()))
    return info.value


def test_an_event_for_a_secret_not_configured(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    other = aws.sm.create_secret(Name=aws.name + "-other", SecretString=issue(aws.sandbox))["ARN"]
    request = aws.start_rotation(other)
    before = aws.snapshot(other)
    failing(aws, caplog, aws.event("createSecret", request, other), "is not configured here")
    assert aws.snapshot(other) == before and aws.sandbox.route_counts()["oauth.access_token"] == 0


def test_a_missing_app_secret(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    aws.write_config(app_secret=None)
    request = aws.start_rotation()
    failing(aws, caplog, aws.event("createSecret", request), r"app_secret.*required for the Secrets Manager rotation")


def test_a_stored_token_graph_rejects(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    aws.sandbox.revoke_token(aws.initial)
    request = aws.start_rotation()
    error = failing(aws, caplog, aws.event("createSecret", request), "refused: nothing was changed")
    assert error.step == "createSecret" and aws.sandbox.route_counts()["oauth.access_token"] == 0
    assert "AWSPENDING" in aws.stages()[request] and aws.version_with("AWSPENDING") == request


def test_an_unknown_step_or_not_a_rotation_event(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    request = aws.start_rotation()
    failing(aws, caplog, aws.event("rotateSecret", request), "unknown rotation step rotateSecret")
    failing(aws, caplog, {"SecretId": aws.arn}, "ClientRequestToken, Step missing")
    failing(aws, caplog, ["createSecret"], "not a Secrets Manager rotation event")


def test_a_version_that_is_not_pending(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    aws.start_rotation()
    failing(aws, caplog, aws.event("createSecret", "00000000-0000-0000-0000-000000000000"), "is not a version of")


def test_test_secret_before_create_and_a_pending_token_that_fails(
    aws: AwsRig, caplog: pytest.LogCaptureFixture
) -> None:
    request = aws.start_rotation()
    failing(aws, caplog, aws.event("testSecret", request), "createSecret has not run")
    failing(aws, caplog, aws.event("finishSecret", request), "createSecret has not run")
    aws_lambda_handler(aws.event("createSecret", request), None)
    aws.sandbox.revoke_token(aws.value("AWSPENDING"))  # e.g. the app was removed meanwhile
    failing(aws, caplog, aws.event("testSecret", request), "failed the test; AWSCURRENT still holds")


def test_a_never_expiring_token_is_not_turned_into_a_60_day_one(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    never = issue(aws.sandbox, expires_in=None)
    aws.sm.put_secret_value(SecretId=aws.arn, SecretString=never)
    request = aws.start_rotation()
    failing(aws, caplog, aws.event("createSecret", request), "never expires")
    assert aws.sandbox.route_counts()["oauth.access_token"] == 0


def test_a_refused_exchange_stores_nothing(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    request = aws.start_rotation()
    aws.sandbox.fail_next(1, route="oauth.access_token")
    failing(aws, caplog, aws.event("createSecret", request), r"createSecret for .* failed: ServerError")
    assert aws.version_with("AWSPENDING") == request
    with pytest.raises(Exception, match="ResourceNotFoundException"):
        aws.value("AWSPENDING")


def test_a_token_that_could_not_be_staged_is_revoked(
    aws: AwsRig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets Manager goes away between the exchange and the write: the new token would be held by nobody."""
    from tokenstore.backends.aws import AwsBackend

    original = AwsBackend.put_pending

    def put_while_down(self: AwsBackend, value: str, **options: Any) -> str:
        with aws.moto.stopped():
            return original(self, value, **options)

    monkeypatch.setattr(AwsBackend, "put_pending", put_while_down)
    request = aws.start_rotation()
    failing(aws, caplog, aws.event("createSecret", request), "BackendUnavailable")
    (issued,) = [r for r in aws.sandbox.tokens() if r.parent == fingerprint_of(aws.initial)]
    assert issued.status(aws.sandbox.clock()) == "revoked" and status(aws.sandbox, aws.initial) == "valid"
    assert "was not stored: revoked it (it could not be stored as AWSPENDING)" in log_text(caplog)
    monkeypatch.setattr(AwsBackend, "put_pending", original)
    # AWS retries the step: now it goes through, with a token of its own
    assert aws_lambda_handler(aws.event("createSecret", request), None)["action"] == "staged"
    assert status(aws.sandbox, aws.value("AWSPENDING")) == "valid"


# -- tenants: the tenant from the secret's name --------------------------------------------------------------------
def test_a_tenants_secret_is_rotated_and_only_that_one(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    run = uuid.uuid4().hex[:8]
    tokens = {tenant: issue(aws.sandbox) for tenant in ("acme", "globex")}
    arns = {
        tenant: aws.sm.create_secret(Name=f"wa/{run}/{tenant}/token", SecretString=value)["ARN"]
        for tenant, value in tokens.items()
    }
    template = {"backend": "aws", "aws": {**aws.data["token"]["aws"], "secret_id": f"wa/{run}/{{tenant}}/token"}}
    aws.write_config(token=None, tenants={"token": template})
    request = aws.start_rotation(arns["acme"])
    results = [aws_lambda_handler(aws.event(step, request, arns["acme"]), None) for step in STEPS]
    assert {r["tenant"] for r in results} == {"acme"} and results[-1]["action"] == "finished"
    assert {r["source"] for r in results} == {f"aws:secretsmanager:wa/{run}/acme/token"}
    assert aws.value(secret_id=arns["acme"]) != tokens["acme"]
    assert aws.value(secret_id=arns["globex"]) == tokens["globex"]
    assert "is the secret of tenant acme" in log_text(caplog)
    # a secret outside the template is not configured, whatever its name looks like
    stray = aws.sm.create_secret(Name=f"wa/{run}/acme/other", SecretString=issue(aws.sandbox))["ARN"]
    request = aws.start_rotation(stray)
    before = aws.snapshot(stray)
    with pytest.raises(RotationFailed, match="is not configured here"):
        aws_lambda_handler(aws.event("createSecret", request, stray), None)
    assert aws.snapshot(stray) == before
    assert_logs_clean(caplog, aws.sandbox)


def test_the_secret_by_name_and_the_configs_it_refuses(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    request = aws.start_rotation()
    assert aws_lambda_handler(aws.event("createSecret", request, aws.name), None)["action"] == "staged"
    aws.write_config(token={"aws": {"secret_id": aws.name, "version_stage": "AWSPREVIOUS"}})
    failing(aws, caplog, aws.event("testSecret", request), "must read AWSCURRENT")
    aws.write_config(token={"aws": {"parameter": "/whatsapp/token", "region": "us-east-1"}})
    failing(aws, caplog, aws.event("testSecret", request), "names an SSM parameter")
    aws.write_config(token={"backend": "file", "file": {"path": "/nonexistent"}})
    failing(aws, caplog, aws.event("testSecret", request), "token.backend is 'file'")


def test_rotation_not_enabled(aws: AwsRig, caplog: pytest.LogCaptureFixture) -> None:
    request = str(uuid.uuid4())
    failing(aws, caplog, aws.event("createSecret", request), "rotation is not enabled")


def test_the_readme_policy_allows_every_call_the_function_makes(aws: AwsRig, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import re

    from tests.ecosystem.conftest import ROOT
    from tokenstore.backends.aws import AwsBackend

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### AWS Secrets Manager: a rotation function") :]
    policy = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))  # type: ignore[union-attr]
    allowed = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    made: set[str] = set()
    original = AwsBackend._call

    def recording(self: AwsBackend, permission: str, fn: Any) -> Any:
        made.add(permission)
        return original(self, permission, fn)

    monkeypatch.setattr(AwsBackend, "_call", recording)
    waits: list[float] = []
    later = AwsRotation(now=lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30), sleep=waits.append)
    rotate(aws, twice=False)
    rotate(aws, later, LambdaContext(remaining_seconds=900), twice=False)  # revokes in createSecret and finishSecret
    assert waits == [330.0] and aws.sandbox.route_counts()["oauth.revoke"] == 2
    assert made and made <= allowed, made - allowed


def test_a_fresh_process_with_only_the_environment_runs_a_step(aws: AwsRig) -> None:
    """As the Lambda runtime does it: import the handler in a new process, $TOKENSTORE_CONFIG and the AWS
    credentials in the environment, the event as a dict. Its output carries fingerprints only."""
    import json
    import os
    import subprocess
    import sys

    request = aws.start_rotation()
    code = (
        "import json, sys; from sender.rotation import aws_lambda_handler; "
        "print(json.dumps(aws_lambda_handler(json.loads(sys.argv[1]), None)))"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(aws.event("createSecret", request))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["action"] == "staged" and result["new_fingerprint"] == fingerprint_of(aws.value("AWSPENDING"))
    assert_clean(out.stdout + out.stderr, aws.app_secret, *(r.value for r in aws.sandbox.tokens()))


def test_config_given_as_a_mapping(aws: AwsRig) -> None:
    request = aws.start_rotation()
    handler = AwsRotation(aws.data)
    assert handler(aws.event("createSecret", request))["action"] == "staged"

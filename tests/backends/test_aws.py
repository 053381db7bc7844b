"""aws backend against moto's server on 127.0.0.1 (boto3 over real HTTP through ``endpoint_url``).

The shared contract on Secrets Manager (plain and JSON key) and SSM Parameter Store, then: version stages and
ids, write/read back, JSON handling, assume-role through STS, error translation (through a fault proxy for
throttling and the other answers moto does not give), botocore's DEBUG logs, and an outage (moto stopped,
then restarted on the same port) under the caching layer.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tokenstore
from tests.conftest import need
from tests.contract import (
    ContractTarget,
    FakeClock,
    ProviderContract,
    TenantContract,
    TenantTarget,
    assert_clean,
    canary,
)
from tests.servers.faultproxy import FaultProxy
from tests.servers.moto import REGION, MotoServer
from tokenstore import (
    AccessDenied,
    BackendUnavailable,
    CachePolicy,
    CachingProvider,
    ConfigError,
    SecretMalformed,
    SecretNotFound,
)
from tokenstore.backends.aws import AssumeRole, AwsBackend

pytestmark = pytest.mark.backend("aws")

# the credentials boto3's chain finds (moto accepts any): canaries, so the leak checks look for them too
ACCESS_KEY = "AKIA" + uuid.uuid4().hex[:16].upper()
SECRET_KEY = canary("AWSSECRET")


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    need(importlib.util.find_spec("moto") is not None, "moto[server] (pip install 'moto[server]')")
    need(importlib.util.find_spec("boto3") is not None, "boto3 (pip install 'whatsapp-tokenstore[aws]')")
    with MotoServer() as server:
        yield server


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    for var in ("AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def sm(moto: MotoServer) -> Any:
    return moto.client("secretsmanager")


@pytest.fixture
def ssm(moto: MotoServer) -> Any:
    return moto.client("ssm")


def name() -> str:
    return f"whatsapp/{uuid.uuid4().hex[:12]}"


def backend(moto: MotoServer | FaultProxy, **options: Any) -> AwsBackend:
    return AwsBackend(region=REGION, endpoint_url=moto.url, **options)


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records)


# -- the shared contract ------------------------------------------------------------------------------------------
class TestSecretsManagerContract(ProviderContract):
    @pytest.fixture
    def target(self, moto: MotoServer, sm: Any) -> ContractTarget:
        secret_id = name()
        value = canary()
        sm.create_secret(Name=secret_id, SecretString=value)
        return ContractTarget(
            make=lambda: backend(moto, secret_id=secret_id),
            initial=value,
            write_out_of_band=lambda v: sm.put_secret_value(SecretId=secret_id, SecretString=v) and None,
            make_missing=lambda: backend(moto, secret_id=name()),
            writable=True,
            secrets=[SECRET_KEY],
        )


class TestSecretsManagerJsonKeyContract(ProviderContract):
    @pytest.fixture
    def target(self, moto: MotoServer, sm: Any) -> ContractTarget:
        secret_id = name()
        value = canary()

        def payload(v: str) -> str:
            return json.dumps({"access_token": v, "app_id": "1234"})

        sm.create_secret(Name=secret_id, SecretString=payload(value))
        return ContractTarget(
            make=lambda: backend(moto, secret_id=secret_id, key="access_token"),
            initial=value,
            write_out_of_band=lambda v: sm.put_secret_value(SecretId=secret_id, SecretString=payload(v)) and None,
            make_missing=lambda: backend(moto, secret_id=name(), key="access_token"),
            writable=True,
            secrets=[SECRET_KEY],
        )


class TestSsmContract(ProviderContract):
    @pytest.fixture
    def target(self, moto: MotoServer, ssm: Any) -> ContractTarget:
        parameter = "/" + name()
        value = canary()

        def write(v: str) -> None:
            ssm.put_parameter(Name=parameter, Value=v, Type="SecureString", Overwrite=True)

        write(value)
        return ContractTarget(
            make=lambda: backend(moto, parameter=parameter),
            initial=value,
            write_out_of_band=write,
            make_missing=lambda: backend(moto, parameter="/" + name()),
            writable=True,
            secrets=[SECRET_KEY],
        )


# -- Secrets Manager ----------------------------------------------------------------------------------------------
def test_stages_and_version_ids(moto: MotoServer, sm: Any) -> None:
    secret_id = name()
    first = canary()
    first_id = sm.create_secret(Name=secret_id, SecretString=first)["VersionId"]
    with backend(moto, secret_id=secret_id) as current:
        token = current.get_token()
        assert (token.reveal(), token.version) == (first, first_id)
        second = canary()
        second_id = current.put_token(second)  # PutSecretValue: the new version is AWSCURRENT
        assert second_id and second_id != first_id
        token = current.get_token()
        assert (token.reveal(), token.version) == (second, second_id)
    stages = sm.describe_secret(SecretId=secret_id)["VersionIdsToStages"]
    assert stages[second_id] == ["AWSCURRENT"] and stages[first_id] == ["AWSPREVIOUS"]
    with backend(moto, secret_id=secret_id, version_stage="AWSPREVIOUS") as previous:
        assert previous.get_token().reveal() == first
        assert previous.source == f"aws:secretsmanager:{secret_id}?stage=AWSPREVIOUS"
        assert not previous.supports_write  # a new version would become AWSCURRENT, not AWSPREVIOUS
        with pytest.raises(tokenstore.WriteNotSupported, match="stage AWSPREVIOUS"):
            previous.put_token(canary())
    with backend(moto, secret_id=secret_id, version_id=first_id) as pinned:
        token = pinned.get_token()
        assert (token.reveal(), token.version) == (first, first_id)
        assert pinned.source == f"aws:secretsmanager:{secret_id}?version_id={first_id}"
        rejected = canary()
        with pytest.raises(tokenstore.WriteNotSupported, match=f"version id {first_id}") as info:
            pinned.put_token(rejected)
        assert_clean(str(info.value), rejected)
    with backend(moto, secret_id=secret_id, version_id=str(uuid.uuid4())) as gone, pytest.raises(SecretNotFound):
        gone.get_token()
    with backend(moto, secret_id=secret_id, version_stage="NOPE") as gone, pytest.raises(SecretNotFound):
        gone.get_token()


def test_json_key_write_keeps_other_fields(moto: MotoServer, sm: Any) -> None:
    secret_id = name()
    sm.create_secret(Name=secret_id, SecretString=json.dumps({"access_token": canary(), "app_id": "42"}))
    new = canary()
    with backend(moto, secret_id=secret_id, key="access_token") as b:
        version = b.put_token(new)
        token = b.get_token()
        assert (token.reveal(), token.version) == (new, version)
    assert json.loads(sm.get_secret_value(SecretId=secret_id)["SecretString"]) == {"access_token": new, "app_id": "42"}


def test_json_and_value_problems(moto: MotoServer, sm: Any) -> None:
    secret = canary()
    cases: list[tuple[str, str | None, type[Exception], str]] = [
        (json.dumps({"other": secret}), "access_token", SecretNotFound, "has no key 'access_token'"),
        (secret, "access_token", SecretMalformed, "is not a JSON object"),
        (json.dumps([secret]), "access_token", SecretMalformed, "is not a JSON object"),
        (json.dumps({"access_token": 5}), "access_token", SecretMalformed, "is not a string"),
        (json.dumps({"access_token": secret}), None, SecretMalformed, "set key"),
        (f"{secret} {secret}", None, SecretMalformed, "whitespace"),
        ("   ", None, SecretMalformed, "is empty"),
    ]
    for text, key, error, words in cases:
        secret_id = name()
        sm.create_secret(Name=secret_id, SecretString=text)
        with backend(moto, secret_id=secret_id, key=key) as b, pytest.raises(error) as info:
            b.get_token()
        message = str(info.value)
        assert words in message and secret_id in message, message
        assert_clean(message, secret, SECRET_KEY)
    # writing a key into a secret that is not a JSON object would destroy it: refused
    secret_id = name()
    sm.create_secret(Name=secret_id, SecretString=secret)
    with (
        backend(moto, secret_id=secret_id, key="access_token") as b,
        pytest.raises(SecretMalformed, match="not overwriting"),
    ):
        b.put_token(canary())
    assert sm.get_secret_value(SecretId=secret_id)["SecretString"] == secret


def test_binary_secret(moto: MotoServer, sm: Any) -> None:
    secret_id = name()
    value = canary()
    sm.create_secret(Name=secret_id, SecretBinary=value.encode())
    with backend(moto, secret_id=secret_id) as b:
        assert b.get_token().reveal() == value
    other = name()
    sm.create_secret(Name=other, SecretBinary=b"\xff\xfe\x00")
    with backend(moto, secret_id=other) as b, pytest.raises(SecretMalformed, match="not UTF-8"):
        b.get_token()


def test_deleted_secret_and_put_to_missing(moto: MotoServer, sm: Any) -> None:
    secret_id = name()
    sm.create_secret(Name=secret_id, SecretString=canary())
    sm.delete_secret(SecretId=secret_id, RecoveryWindowInDays=7)
    with backend(moto, secret_id=secret_id) as b, pytest.raises(SecretNotFound, match="scheduled for deletion"):
        b.get_token()
    with backend(moto, secret_id=name()) as b, pytest.raises(SecretNotFound, match="does not exist"):
        b.put_token(canary())  # we rotate secrets, we do not create them (KMS key, policy, tags are yours)


# -- SSM Parameter Store --------------------------------------------------------------------------------------------
def test_ssm_versions_types_and_keys(moto: MotoServer, ssm: Any, caplog: pytest.LogCaptureFixture) -> None:
    parameter = "/" + name()
    first, second = canary(), canary()
    ssm.put_parameter(Name=parameter, Value=first, Type="SecureString")
    with backend(moto, parameter=parameter) as b:
        token = b.get_token()
        assert (token.reveal(), token.version) == (first, "1")
        assert b.put_token(second) == "2"
        token = b.get_token()
        assert (token.reveal(), token.version) == (second, "2")
    stored = ssm.get_parameter(Name=parameter, WithDecryption=False)["Parameter"]
    assert stored["Type"] == "SecureString"
    with backend(moto, parameter=parameter, parameter_version=1) as pinned:
        assert pinned.get_token().reveal() == first
        assert pinned.source == f"aws:ssm:{parameter}:1"
        with pytest.raises(tokenstore.WriteNotSupported, match="pinned to version 1"):
            pinned.put_token(canary())
    with backend(moto, parameter=parameter, parameter_version=7) as gone, pytest.raises(SecretNotFound):
        gone.get_token()
    # a plain String works, with one warning; a StringList is refused
    plain = "/" + name()
    ssm.put_parameter(Name=plain, Value=first, Type="String")
    with caplog.at_level(logging.WARNING), backend(moto, parameter=plain) as b:
        b.get_token()
        b.get_token()
    assert caplog.text.count("plain String parameter") == 1
    listed = "/" + name()
    ssm.put_parameter(Name=listed, Value="a,b", Type="StringList")
    with backend(moto, parameter=listed) as b, pytest.raises(SecretMalformed, match="StringList"):
        b.get_token()
    # a JSON key inside a parameter, written back with the other fields kept
    keyed = "/" + name()
    ssm.put_parameter(Name=keyed, Value=json.dumps({"access_token": first, "x": 1}), Type="SecureString")
    with backend(moto, parameter=keyed, key="access_token") as b:
        assert b.get_token().reveal() == first
        b.put_token(second)
        assert b.get_token().reveal() == second
    assert json.loads(ssm.get_parameter(Name=keyed, WithDecryption=True)["Parameter"]["Value"]) == {
        "access_token": second,
        "x": 1,
    }


def test_ssm_put_with_kms_key(moto: MotoServer, ssm: Any) -> None:
    key_id = moto.client("kms").create_key(Description="whatsapp token")["KeyMetadata"]["KeyId"]
    parameter = "/" + name()
    with backend(moto, parameter=parameter, kms_key_id=key_id) as b:
        assert b.put_token(canary()) == "1"  # created on first write
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [parameter]}])["Parameters"]
    assert described[0]["KeyId"] == key_id


# -- credentials ----------------------------------------------------------------------------------------------
def test_assume_role_through_sts(moto: MotoServer, sm: Any) -> None:
    secret_id = name()
    value = canary()
    sm.create_secret(Name=secret_id, SecretString=value)
    with FaultProxy(moto.port) as sts:
        role = AssumeRole(role_arn="arn:aws:iam::123456789012:role/whatsapp-reader", endpoint_url=sts.url)
        with backend(moto, secret_id=secret_id, assume_role=role) as b:
            assert b.get_token().reveal() == value
            assert sts.connections >= 1  # credentials came from STS AssumeRole
        sts.go_down()
        with backend(moto, secret_id=secret_id, assume_role=role) as b, pytest.raises(BackendUnavailable) as info:
            b.get_token()  # the role cannot be assumed while STS is unreachable
        assert sts.url in str(info.value)


def test_profile_gives_region_and_credentials(
    moto: MotoServer, sm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_id = name()
    value = canary()
    sm.create_secret(Name=secret_id, SecretString=value)
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text(f"[profile whatsapp]\nregion = {REGION}\n")
    credentials.write_text(f"[whatsapp]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with AwsBackend(secret_id=secret_id, profile="whatsapp", endpoint_url=moto.url) as b:  # no region given
        assert b.get_token().reveal() == value


def test_no_credentials_is_access_denied(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with backend(moto, secret_id=name()) as b, pytest.raises(AccessDenied, match="no usable AWS credentials"):
        b.get_token()


def test_region_and_profile_errors_name_the_field(moto: MotoServer) -> None:
    provider = tokenstore.provider_from_config(
        {"backend": "aws", "aws": {"secret_id": "x"}}, source="cfg.yaml", cache=False
    )
    with pytest.raises(ConfigError, match=r"^cfg\.yaml: token\.aws\.region: no AWS region"):
        provider.get_token()
    provider = tokenstore.provider_from_config(
        {"backend": "aws", "aws": {"secret_id": "x", "region": REGION, "profile": "nope"}},
        source="cfg.yaml",
        cache=False,
    )
    with pytest.raises(ConfigError, match=r"^cfg\.yaml: token\.aws\.profile: AWS profile 'nope' is not defined"):
        provider.get_token()


# -- failures -------------------------------------------------------------------------------------------------------
@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto.port) as p:
        yield p


AMZ_JSON = {"Content-Type": "application/x-amz-json-1.1"}


@pytest.mark.parametrize("service", ["secretsmanager", "ssm"])
@pytest.mark.parametrize(
    ("status", "code", "headers", "error", "words", "retry_after"),
    [
        (400, "ThrottlingException", {"Retry-After": "3"}, BackendUnavailable, "throttling", 3.0),
        (429, "TooManyRequestsException", {}, BackendUnavailable, "throttling", None),
        (500, "InternalServiceError", {}, BackendUnavailable, "HTTP 500", None),
        (503, "ServiceUnavailable", {}, BackendUnavailable, "HTTP 503", None),
        (400, "AccessDeniedException", {}, AccessDenied, "IAM policy", None),
        (400, "UnrecognizedClientException", {}, AccessDenied, "credentials", None),
        (400, "DecryptionFailure", {}, AccessDenied, "kms:Decrypt", None),
    ],
)
def test_aws_error_codes(
    proxy: FaultProxy,
    service: str,
    status: int,
    code: str,
    headers: dict[str, str],
    error: type[Exception],
    words: str,
    retry_after: float | None,
) -> None:
    body = json.dumps({"__type": code, "message": f"text that must not be copied {SECRET_KEY}"})
    proxy.respond(status, body, {**AMZ_JSON, **headers})
    options: dict[str, Any] = {"secret_id": name()} if service == "secretsmanager" else {"parameter": "/" + name()}
    with backend(proxy, **options) as b, pytest.raises(error) as info:
        b.get_token()
    message = str(info.value)
    assert words in message and code in message, message
    assert "must not be copied" not in message
    if isinstance(info.value, BackendUnavailable):
        assert info.value.retry_after == retry_after
    assert info.value.__cause__ is not None  # botocore's exception kept for debugging


def test_transport_failures_are_backend_unavailable(moto: MotoServer, sm: Any, proxy: FaultProxy) -> None:
    secret_id = name()
    value = canary()
    sm.create_secret(Name=secret_id, SecretString=value)
    with backend(proxy, secret_id=secret_id, read_timeout=0.3) as b:
        assert b.get_token().reveal() == value  # a pooled keep-alive connection now exists
        proxy.go_down()
        with pytest.raises(BackendUnavailable, match="cannot connect to"):
            b.get_token()
        proxy.hang()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"no answer from .* within 0.3s"):
            b.get_token()
        assert time.monotonic() - started < 2  # a single attempt: the cache layer owns retrying
        proxy.reset()
        # a RST right after accept may reach urllib3 before or after it sent the request: both are transient
        with pytest.raises(BackendUnavailable, match=r"connection|cannot connect to"):
            b.get_token()
        proxy.heal()
        assert b.get_token().reveal() == value


def test_outage_moto_stopped_serves_stale_then_fails_then_recovers(
    moto: MotoServer, sm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_id = name()
    value = canary()
    sm.create_secret(Name=secret_id, SecretString=value)
    clock = FakeClock()
    raw = backend(moto, secret_id=secret_id)
    policy = CachePolicy(ttl=10, refresh_ahead=0, jitter=0, max_stale=30, backoff_initial=1, backoff_max=4)
    provider = CachingProvider(raw, policy, clock=clock, rand=lambda: 0.0)
    assert provider.get_token().reveal() == value
    moto.stop()  # listener closed, keep-alive connections dropped
    try:
        clock.advance(11)
        assert provider.get_token().reveal() == value  # stale, within max_stale
        clock.advance(15)
        assert provider.get_token().reveal() == value
        assert provider.stats.stale_served == 2 and provider.stats.backend_errors == 2
        rejected = canary()
        with pytest.raises(BackendUnavailable) as write_error:
            provider.put_token(rejected)
        assert_clean(str(write_error.value), rejected)
        clock.advance(20)  # beyond max_stale
        with pytest.raises(BackendUnavailable) as info:
            provider.get_token()
        assert "max_stale" in str(info.value) and "cannot connect" in str(info.value)
    finally:
        moto.start()  # same port; moto keeps its data
    clock.advance(5)
    assert provider.get_token().reveal() == value  # the same provider recovers, no restart
    rotated = canary()
    sm.put_secret_value(SecretId=secret_id, SecretString=rotated)
    provider.invalidate()
    assert provider.get_token().reveal() == rotated
    provider.close()
    assert_clean(log_text(caplog), value, rotated, rejected, SECRET_KEY)


def test_botocore_debug_logs_carry_no_secret(moto: MotoServer, sm: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_id = name()
    first, second, third = canary(), canary(), canary()
    sm.create_secret(Name=secret_id, SecretString=first)
    caplog.clear()
    role = AssumeRole(role_arn="arn:aws:iam::123456789012:role/r", endpoint_url=moto.url)
    with backend(moto, secret_id=secret_id, assume_role=role) as b:
        b.get_token()
        b.put_token(second)
        b.get_token()
    with backend(moto, parameter="/" + name()) as p:
        p.put_token(third)
        p.get_token()
    text = log_text(caplog)
    assert "redacted by tokenstore" in text  # botocore did log bodies: they were blanked
    assert "PutSecretValue" in text  # ... but what was called is still there
    assert_clean(text, first, second, third, SECRET_KEY, "SecretAccessKey", "SessionToken")


# -- configuration and packaging ---------------------------------------------------------------------------------------
def test_from_config_without_network() -> None:
    provider = tokenstore.provider_from_config(
        {
            "token": {
                "backend": "aws",
                "aws": {
                    "secret_id": "whatsapp/prod",
                    "key": "access_token",
                    "region": "eu-west-1",
                    "endpoint_url": "https://secretsmanager.invalid",
                    "assume_role": {"role_arn": "arn:aws:iam::1:role/r", "external_id": "ext"},
                    "connect_timeout": 1,
                    "read_timeout": 2,
                },
            }
        }
    )
    assert isinstance(provider, CachingProvider)
    b = provider.inner
    assert isinstance(b, AwsBackend)
    assert b._client is None and b.service == "secretsmanager" and b.version_stage == "AWSCURRENT"
    assert b.source == "aws:secretsmanager:whatsapp/prod#access_token"
    ssm = tokenstore.provider_from_config({"backend": "aws", "aws": {"parameter": "/p"}}, cache=False)
    assert isinstance(ssm, AwsBackend) and ssm.service == "ssm" and ssm.source == "aws:ssm:/p"


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({}, "token.aws.secret_id", "required"),
        ({"secret_id": "a", "parameter": "/b"}, "token.aws.parameter", "not both"),
        ({"service": "ssm", "secret_id": "a"}, "token.aws.secret_id", "not an option of service 'ssm'"),
        ({"secret_id": "a", "parameter_version": 2}, "token.aws.parameter_version", "not an option"),
        ({"service": "ssm"}, "token.aws.parameter", "required"),
        ({"service": "kms", "secret_id": "a"}, "token.aws.service", "must be one of"),
        ({"secret_id": "a", "version_stage": "X", "version_id": "y"}, "token.aws.version_id", "not both"),
        ({"secret_id": "a", "endpoint_url": "localhost:4566"}, "token.aws.endpoint_url", "http://"),
        ({"secret_id": "a", "regoin": "x"}, "token.aws.regoin", "did you mean 'region'"),
        ({"secret_id": "a", "assume_role": {"role_arn": "role/x"}}, "token.aws.assume_role.role_arn", "ARN"),
        (
            {"secret_id": "a", "assume_role": {"role_arn": "arn:x", "duration_seconds": 60}},
            "token.aws.assume_role.duration_seconds",
            "at least 900",
        ),
        ({"parameter": "/p", "parameter_version": 0}, "token.aws.parameter_version", "at least 1"),
        ({"secret_id": "a", "read_timeout": -1}, "token.aws.read_timeout", "at least"),
    ],
)
def test_config_errors_name_the_field(options: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        tokenstore.provider_from_config({"token": {"backend": "aws", "aws": options}}, source="cfg.yaml")
    message = str(info.value)
    assert message.startswith(f"cfg.yaml: {field}: "), message
    assert words in message


def test_importing_imports_no_sdk() -> None:
    code = (
        "import sys, tokenstore, tokenstore.backends.aws\n"
        "tokenstore.get_backend_class('aws')\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'hvac') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(tokenstore.BackendNotInstalled, match=r"whatsapp-tokenstore\[aws\]"):
        AwsBackend(secret_id="x")


def test_example_config_section_is_valid() -> None:
    import yaml

    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    section = yaml.safe_load(example.read_text())["token"]["aws"]
    backend = AwsBackend.from_options(section)
    assert backend.service == "secretsmanager" and backend._client is None
    backend.close()


def test_fault_proxy_semantics(moto: MotoServer, proxy: FaultProxy) -> None:
    """The proxy other suites reuse for outages: what each fault does to established and new connections."""
    import socket

    request = b"GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        sock.settimeout(2)
        return sock

    established = connect()
    established.sendall(request)
    assert established.recv(12).startswith(b"HTTP/1.1")
    proxy.go_down()
    while established.recv(65536):  # the rest of the answer, then EOF: dropped (a timeout here fails the test)
        pass
    with pytest.raises(ConnectionRefusedError):
        connect()  # and the listener is closed
    proxy.heal()
    again = connect()  # the same port again
    again.sendall(request)
    assert again.recv(12).startswith(b"HTTP/1.1")
    proxy.hang()
    held = connect()
    held.sendall(request)
    with pytest.raises(TimeoutError):
        held.settimeout(0.2)
        held.recv(1)
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        connect().recv(1)
    proxy.respond(503, "down for maintenance")
    canned = connect()
    canned.sendall(request)
    assert canned.recv(65536).startswith(b"HTTP/1.1 503")
    assert proxy.canned == 1
    for sock in (established, again, held, canned):
        sock.close()


# -- many tenants ---------------------------------------------------------------------------------------------
def _bulk(fn: Any, items: Any) -> None:
    for item in items:  # one by one: moto's server is not safe for concurrent writes
        fn(item)


class TestSecretsManagerTenants(TenantContract):
    """One secret per tenant (``whatsapp/t<id>/{tenant}``), one boto3 client; ListSecrets with a name filter."""

    @pytest.fixture
    def tenant_target(self, moto: MotoServer, sm: Any) -> TenantTarget:
        folder = f"whatsapp/t{uuid.uuid4().hex[:10]}"
        built: list[Any] = []

        def make() -> AwsBackend:
            b = backend(moto, secret_id="unused")
            real = b._build_client

            def counted() -> Any:
                built.append(1)
                return real()

            b._build_client = counted  # type: ignore[method-assign]
            return b

        def write_name(secret: str, value: str) -> None:
            try:
                sm.create_secret(Name=secret, SecretString=value)
            except sm.exceptions.ResourceExistsException:
                sm.put_secret_value(SecretId=secret, SecretString=value)

        return TenantTarget(
            make=make,
            template=tokenstore.TenantTemplate("secret_id", folder + "/{tenant}"),
            write=lambda tenant, value: write_name(f"{folder}/{tenant}", value),
            write_many=lambda values: _bulk(lambda kv: write_name(f"{folder}/{kv[0]}", kv[1]), values.items()),
            write_name=write_name,
            decoys=[f"{folder}x/t1", f"{folder}/deeper/t2", f"{folder.upper()}/t3"],
            writable=True,
            clients=lambda b: len(built),
            config=lambda: {
                "token": {
                    "backend": "aws",
                    "aws": {"region": REGION, "endpoint_url": moto.url, "secret_id": folder + "/{tenant}"},
                }
            },
            secrets=[SECRET_KEY],
        )


class TestSsmTenants(TenantContract):
    """One SecureString per tenant (``/whatsapp/t<id>/{tenant}/token``); GetParametersByPath, paged by 10."""

    @pytest.fixture
    def tenant_target(self, moto: MotoServer, ssm: Any) -> TenantTarget:
        folder = f"/whatsapp/t{uuid.uuid4().hex[:10]}"

        def write_name(parameter: str, value: str) -> None:
            ssm.put_parameter(Name=parameter, Value=value, Type="SecureString", Overwrite=True)

        return TenantTarget(
            make=lambda: backend(moto, parameter="/unused"),
            template=tokenstore.TenantTemplate("parameter", folder + "/{tenant}/token"),
            write=lambda tenant, value: write_name(f"{folder}/{tenant}/token", value),
            write_many=lambda values: _bulk(lambda kv: write_name(f"{folder}/{kv[0]}/token", kv[1]), values.items()),
            write_name=write_name,
            decoys=[f"{folder}/t1/other", f"{folder}/t2", f"{folder}/a/b/token", f"{folder}x/t3/token"],
            writable=True,
            config=lambda: {
                "token": {
                    "backend": "aws",
                    "aws": {"region": REGION, "endpoint_url": moto.url, "parameter": folder + "/{tenant}/token"},
                }
            },
            secrets=[SECRET_KEY],
        )


class TestSsmFlatTenants(TenantContract):
    """Parameter names without a folder (``wa-t<id>-{tenant}``): DescribeParameters with BeginsWith."""

    @pytest.fixture
    def tenant_target(self, moto: MotoServer, ssm: Any) -> TenantTarget:
        prefix = f"wa-t{uuid.uuid4().hex[:10]}-"

        def write_name(parameter: str, value: str) -> None:
            ssm.put_parameter(Name=parameter, Value=value, Type="SecureString", Overwrite=True)

        return TenantTarget(
            make=lambda: backend(moto, parameter="unused"),
            template=tokenstore.TenantTemplate("parameter", prefix + "{tenant}"),
            write=lambda tenant, value: write_name(prefix + tenant, value),
            write_name=write_name,
            decoys=[prefix[:-1] + "x-t1"],
            writable=True,
            many=120,
            secrets=[SECRET_KEY],
        )

"""Property tests of the backends' parsers, over their real stores, and of the sender's config loader.

Arbitrary secret payloads (text, bytes, JSON documents whose ``access_token`` is anything, the secret with
whitespace or junk around or inside it) are written to each store - OpenBao, moto's Secrets Manager, the
local Secret Manager gRPC service, the local Key Vault, the local Conjur - and read back through the real
backend; arbitrary ``whatsapp:`` sections and YAML texts go to ``Sender.from_config``. Only our own error
types may come out, and none of them (nor anything in its cause chain) may show the secret; a token that
is returned is one word. (tests/test_fuzz.py does the same for the tokenstore config loader and the file
backend.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sender
from tests.conftest import need
from tests.contract import canary
from tests.reliability.conftest import VaultStore, exception_text
from tests.servers import LocalTLS
from tokenstore import SecretRef, Token, TokenStoreError
from tokenstore.backends.env import EnvBackend
from tokenstore.backends.vault import VaultAuth, VaultBackend

SECRET = canary()
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
#: for the stores whose clients cost ~50 ms per example (a new SDK client and, for Conjur, a login each time)
FUZZ_SLOW = settings(FUZZ, max_examples=30)
#: config loading is cheap (no I/O): more examples
FUZZ_CONFIG = settings(FUZZ, max_examples=200)

# -- payloads -------------------------------------------------------------------------------------------------
junk = st.text(max_size=4)
token_texts = st.one_of(
    st.just(SECRET),
    st.builds(lambda a, b: a + SECRET + b, junk, junk),  # whitespace, newlines or control characters around it
    st.builds(lambda t: SECRET + t + SECRET, st.text(min_size=1, max_size=3)),  # ... or inside it
    st.just(f"{SECRET}\n"),
    st.just(f"{SECRET} {SECRET}"),
    st.sampled_from(["", " ", "\n", "\t\r\n", "\x00", "\u2028", "null", "{}", "[]", '"quoted"']),
    st.text(max_size=40),
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        token_texts,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
json_objects = st.dictionaries(st.sampled_from(["access_token", "token", "other", ""]), json_values, max_size=3)
text_payloads = st.one_of(token_texts, json_objects.map(json.dumps), json_values.map(json.dumps))
byte_payloads = st.one_of(
    text_payloads.map(lambda t: t.encode("utf-8")),
    st.builds(lambda b: b + SECRET.encode(), st.binary(max_size=12)),  # invalid UTF-8 before the secret
    st.builds(lambda b: SECRET.encode() + b, st.binary(max_size=12)),
    st.builds(lambda b: b"\xef\xbb\xbf" + SECRET.encode() + b, st.binary(max_size=2)),  # a BOM
)
keys = st.sampled_from([None, "access_token"])


def check(read: Callable[[], Token]) -> None:
    """One read: a one-word token, or one of our errors that shows no secret anywhere in its chain."""
    try:
        token = read()
    except Exception as exc:
        assert isinstance(exc, TokenStoreError), f"a foreign exception escaped: {type(exc).__name__}"
        assert SECRET not in exception_text(exc), f"the secret is in the {type(exc).__name__} or its chain"
        return
    value = token.reveal()
    assert value and not any(c.isspace() for c in value), "a token with whitespace (or empty) was returned"
    assert SECRET not in repr(token) + str(token)


# -- vault ----------------------------------------------------------------------------------------------------
@pytest.mark.backend("vault")
@FUZZ
@given(data=json_objects, key=st.sampled_from(["access_token", "token"]))
def test_vault_parses_arbitrary_secrets(store: VaultStore, data: dict[str, Any], key: str) -> None:
    store.admin.secrets.kv.v2.create_or_update_secret(path=store.path, secret=data)
    backend = VaultBackend(
        url=store.bao.url, path=store.path, key=key, auth=VaultAuth(method="token", token=SecretRef(env="TS_FUZZ_VT"))
    )
    os.environ["TS_FUZZ_VT"] = store.vault_token
    try:
        with backend:
            check(backend.get_token)
    finally:
        os.environ.pop("TS_FUZZ_VT", None)


# -- env ------------------------------------------------------------------------------------------------------
@FUZZ
@given(value=token_texts.filter(lambda t: "\x00" not in t))
def test_env_parses_arbitrary_values(value: str) -> None:
    os.environ["TS_FUZZ_ENV_TOKEN"] = value
    try:
        check(EnvBackend("TS_FUZZ_ENV_TOKEN").get_token)
    finally:
        del os.environ["TS_FUZZ_ENV_TOKEN"]


# -- aws ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto() -> Iterator[Any]:
    need(importlib.util.find_spec("moto") is not None, "moto[server] (pip install 'moto[server]')")
    need(importlib.util.find_spec("boto3") is not None, "boto3 (pip install 'whatsapp-tokenstore[aws]')")
    from tests.servers.moto import MotoServer

    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "AKIA" + uuid.uuid4().hex[:16].upper()
    os.environ["AWS_SECRET_ACCESS_KEY"] = canary("AWSSECRET")
    try:
        with MotoServer() as server:
            yield server
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.backend("aws")
@FUZZ
@given(payload=text_payloads.filter(lambda t: t != ""), key=keys)
def test_aws_parses_arbitrary_secrets(moto: Any, payload: str, key: str | None) -> None:
    from tests.servers.moto import REGION, quiet_bodies
    from tokenstore.backends.aws import AwsBackend

    secret_id = f"fuzz/{uuid.uuid4().hex[:12]}"
    quiet_bodies(moto.client("secretsmanager")).create_secret(Name=secret_id, SecretString=payload)
    with AwsBackend(region=REGION, endpoint_url=moto.url, secret_id=secret_id, key=key) as backend:
        check(backend.get_token)


# -- gcp ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sm_server() -> Iterator[Any]:
    need(importlib.util.find_spec("google.cloud.secretmanager") is not None, "google-cloud-secret-manager")
    from tests.servers.gcp_secretmanager import SecretManagerServer

    with SecretManagerServer() as server:
        yield server


@pytest.mark.backend("gcp")
@FUZZ
@given(payload=byte_payloads, key=keys)
def test_gcp_parses_arbitrary_payloads(sm_server: Any, payload: bytes, key: str | None) -> None:
    from tokenstore.backends.gcp import GcpBackend

    secret = f"fuzz-{uuid.uuid4().hex[:12]}"
    sm_server.add_version("fuzz-project", secret, payload)
    with GcpBackend("fuzz-project", secret, key=key, endpoint=sm_server.endpoint, plaintext=True, timeout=5) as backend:
        check(backend.get_token)


# -- azure ----------------------------------------------------------------------------------------------------
AZURE_BEARER = canary("kv-bearer-")


class _Credential:
    """A minimal azure-core TokenCredential whose bearer the local Key Vault accepts."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(AZURE_BEARER, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def key_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    need(importlib.util.find_spec("azure.keyvault.secrets") is not None, "azure-keyvault-secrets")
    from tests.servers.azure_keyvault import KeyVaultServer

    with KeyVaultServer(LocalTLS.create(tmp_path_factory.mktemp("fuzz-azure"))) as server:
        server.accept_token(AZURE_BEARER)
        yield server


@pytest.mark.backend("azure")
@FUZZ_SLOW
@given(payload=text_payloads)
def test_azure_parses_arbitrary_values(key_vault: Any, payload: str) -> None:
    from tokenstore.backends.azure import AzureBackend

    name = f"fuzz-{uuid.uuid4().hex[:12]}"
    key_vault.set_secret(name, payload)
    backend = AzureBackend(
        key_vault.url,
        name,
        credential=_Credential(),
        ca_bundle=key_vault.ca_pem,
        verify_challenge_resource=False,
        timeout=5,
    )
    with backend:
        check(backend.get_token)


# -- conjur ---------------------------------------------------------------------------------------------------
CONJUR_KEY = canary("KEY")
CONJUR_LOGIN = "host/apps/whatsapp"


@pytest.fixture(scope="module")
def conjur(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LocalTLS]]:
    from tests.servers.conjur_fake import ConjurFake

    tls = LocalTLS.create(tmp_path_factory.mktemp("fuzz-conjur"))
    with ConjurFake(tls) as fake:
        fake.add_host(CONJUR_LOGIN, CONJUR_KEY)
        yield fake, tls


@pytest.mark.backend("conjur")
@FUZZ_SLOW
@given(payload=byte_payloads, key=keys)
def test_conjur_parses_arbitrary_values(conjur: tuple[Any, LocalTLS], payload: bytes, key: str | None) -> None:
    from tokenstore.backends.conjur import ConjurBackend

    fake, tls = conjur
    variable = f"apps/fuzz/{uuid.uuid4().hex[:12]}"
    fake.set_secret(variable, payload)
    fake.grant(CONJUR_LOGIN, variable)
    os.environ["TS_FUZZ_CONJUR_KEY"] = CONJUR_KEY
    try:
        options: dict[str, Any] = {
            "url": fake.url,
            "account": fake.account,
            "login": CONJUR_LOGIN,
            "variable": variable,
            "authn": {"api_key": {"env": "TS_FUZZ_CONJUR_KEY"}},
            "ca_bundle": str(tls.ca_pem),
            "timeout": 5,
        }
        if key is not None:
            options["key"] = key
        with ConjurBackend.from_options(options) as backend:
            check(backend.get_token)
    finally:
        os.environ.pop("TS_FUZZ_CONJUR_KEY", None)


# -- the sender's config loader -------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**18),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.just(SECRET),
    st.sampled_from(["v26.0", "v1.0", "http://127.0.0.1:1", "https://graph.facebook.com", "timed", "123", "${X}"]),
)
#: the whatsapp: options (see config.example.yaml) and some of their sub-options
WHATSAPP_KEYS = [
    "phone_number_id",
    "api_version",
    "base_url",
    "app_id",
    "timeout",
    "ca_bundle",
    "appsecret_proof",
    "retry",
    "pacing",
    "async_transport",
    "max_connections",
    "max_in_flight",
    "queue_timeout",
]
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(
                st.sampled_from([*WHATSAPP_KEYS, "max_attempts", "codes", "connect", "read", "messages_per_second"]),
                st.text(max_size=6),
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=15,
)
#: ca_bundle is left out: its errors name the file it points to ("no such file: PATH"), by design
whatsapp_sections = st.dictionaries(
    st.one_of(st.sampled_from([k for k in WHATSAPP_KEYS if k != "ca_bundle"]), st.text(max_size=8)), trees, max_size=6
)
TOKEN_SECTION = {"backend": "env", "env": {"var": "TS_FUZZ_SENDER_TOKEN"}}


def check_config(build: Callable[[], Any]) -> None:
    try:
        client = build()
    except Exception as exc:
        assert isinstance(exc, TokenStoreError), f"a foreign exception escaped: {type(exc).__name__}: {exc}"
        assert SECRET not in exception_text(exc), f"the secret is in the {type(exc).__name__} or its chain"
        return
    client.close()


@FUZZ_CONFIG
@given(whatsapp=whatsapp_sections, appsecret=st.booleans())
def test_sender_config_from_arbitrary_sections(whatsapp: dict[str, Any], appsecret: bool) -> None:
    config: dict[str, Any] = {"whatsapp": whatsapp, "token": TOKEN_SECTION}
    if appsecret:
        config["app_secret"] = {"backend": "env", "env": {"var": "TS_FUZZ_SENDER_SECRET"}}
    check_config(lambda: sender.Sender.from_config(config))


@FUZZ_CONFIG
@given(
    text=st.one_of(
        st.text(max_size=120),
        st.builds(lambda w: yaml.safe_dump({"whatsapp": w, "token": TOKEN_SECTION}), whatsapp_sections),
    )
)
def test_sender_config_from_arbitrary_yaml(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenstore.yaml"
        path.write_text(text + f"\n# {SECRET}\n", encoding="utf-8", errors="surrogatepass")
        check_config(lambda: sender.Sender.from_config(path))

"""Property tests: arbitrary configs and secret payloads give only our own errors, never carrying the secret."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenstore
from tokenstore import TokenStoreError
from tokenstore.backends.file import FileBackend

SECRET = "EAAGCANARYfuzzSECRETvalue0123456789abcdef"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.just(SECRET),
    st.sampled_from(["env", "file", "vault", "aws", "gcp", "azure", "conjur", "${X}", "${TS_FUZZ_VAR:-d}", "$$"]),
)
keys = st.one_of(
    st.sampled_from(
        [
            "token",
            "whatsapp",
            "app_secret",
            "backend",
            "cache",
            "env",
            "file",
            "var",
            "path",
            "key",
            "ttl",
            "refresh_ahead",
            "max_stale",
            "jitter",
            "vault",
            "aws",
            "gcp",
            "azure",
            "conjur",
            "auth",
            "url",
            "secret_id",
            "api_key",
            "enabled",
            "backoff_max",
        ]
    ),
    st.text(max_size=10),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
BACKENDS = ["env", "file", "vault", "aws", "gcp", "azure", "conjur"]
shaped = st.builds(
    lambda name, options, cache, section: {section: {"backend": name, name: options, "cache": cache}},
    st.sampled_from(BACKENDS),
    st.one_of(trees, st.dictionaries(keys, scalars, max_size=6)),
    st.one_of(st.none(), st.booleans(), st.dictionaries(keys, scalars, max_size=4)),
    st.sampled_from(["token", "app_secret"]),
)
configs = st.one_of(
    shaped, st.dictionaries(st.sampled_from(["token", "whatsapp", "app_secret", "x-a", "other"]), trees, max_size=3)
)


def _check(exc: BaseException) -> None:
    assert isinstance(exc, TokenStoreError), f"foreign exception escaped: {type(exc).__name__}: {exc}"
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs)
def test_provider_from_arbitrary_config(config: dict[str, Any]) -> None:
    os.environ.pop("TS_FUZZ_VAR", None)
    try:
        section = "app_secret" if "app_secret" in config and "token" not in config else "token"
        provider = tokenstore.provider_from_config(config, source="fuzz.yaml", section=section)
    except TokenStoreError as exc:
        _check(exc)
        return
    except Exception as exc:
        _check(exc)
        return
    provider.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=200), st.builds(lambda c: yaml.safe_dump(c), configs)))
def test_load_config_from_arbitrary_yaml_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(text + f"\n# {SECRET}\n" if "\x00" not in text else SECRET)
        try:
            tokenstore.load_provider(path).close()
        except Exception as exc:
            _check(exc)


payloads = st.one_of(
    st.text(max_size=100).map(lambda t: t.replace(SECRET, "")),
    st.builds(lambda v: json.dumps(v), trees),
    st.builds(lambda d: json.dumps({**d, "access_token": SECRET}), st.dictionaries(st.text(max_size=5), scalars)),
    st.builds(lambda n: json.dumps({"access_token": n}), scalars),
    st.just(f"{SECRET} {SECRET}"),
    st.just(f"{SECRET}\n{SECRET}"),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1") + SECRET),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads, key=st.sampled_from([None, "access_token"]))
def test_file_backend_parses_arbitrary_payloads(payload: str, key: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t"
        path.write_bytes(payload.encode("utf-8", errors="replace"))
        try:
            token = FileBackend(path, key=key).get_token()
        except Exception as exc:
            _check(exc)
            return
        assert token.reveal().strip() == token.reveal() and token.reveal()
        assert SECRET not in repr(token)

"""Public API surface, lazy imports, the registry and plugin entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tokenstore
from tokenstore import BackendNotInstalled, ConfigError
from tokenstore._registry import BUILTIN_BACKENDS, import_sdk

SDK_PREFIXES = ("boto3", "botocore", "hvac", "google", "azure", "grpc", "requests", "opentelemetry")


def test_all_names_exist_and_are_sorted_exports() -> None:
    for name in tokenstore.__all__:
        assert hasattr(tokenstore, name), name
    public = {n for n in dir(tokenstore) if not n.startswith("_")} - {"annotations", "backends", "cli"}
    assert public <= set(tokenstore.__all__) | {
        n for n in public if n.islower() and not callable(getattr(tokenstore, n))
    }
    for name in (
        "Token",
        "TokenProvider",
        "CachingProvider",
        "load_provider",
        "provider_from_config",
        "TokenStoreError",
        "ConfigError",
        "BackendNotInstalled",
        "ProviderError",
        "SecretNotFound",
        "SecretMalformed",
        "BackendUnavailable",
        "AuthStats",
        "auth_stats",
        "enable_opentelemetry",
        "metrics_snapshot",
        "provider_metrics",
        "track_provider",
    ):
        assert name in tokenstore.__all__


def test_error_tree() -> None:
    assert issubclass(tokenstore.ConfigError, tokenstore.TokenStoreError)
    assert issubclass(tokenstore.BackendNotInstalled, tokenstore.TokenStoreError)
    assert issubclass(tokenstore.BackendNotInstalled, ImportError)
    for cls in (tokenstore.SecretNotFound, tokenstore.SecretMalformed, tokenstore.BackendUnavailable):
        assert issubclass(cls, tokenstore.ProviderError)
    assert issubclass(tokenstore.ProviderError, tokenstore.TokenStoreError)


def test_importing_the_packages_imports_no_sdk() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import tokenstore, sender
        import tokenstore.backends.env, tokenstore.backends.file, tokenstore.cli
        for name in {list(BUILTIN_BACKENDS)!r}:
            __import__("tokenstore.backends." + name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {SDK_PREFIXES!r})
        print(",".join(loaded))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0 and "No module named 'tokenstore.backends." in out.stderr:
        pytest.fail(out.stderr)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_missing_extra_names_it() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["hvac"] = None  # as if the extra were not installed
        from tokenstore._registry import import_sdk
        try:
            import_sdk("hvac", backend="vault", extra="vault")
        except ImportError as exc:
            print(type(exc).__name__, exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "BackendNotInstalled the 'vault' backend needs an optional dependency (hvac is missing): "
        "pip install 'whatsapp-tokenstore[vault]'"
    )


def test_import_sdk_present() -> None:
    assert import_sdk("json", backend="x", extra="x").__name__ == "json"
    with pytest.raises(BackendNotInstalled, match=r"\[nosuch\]"):
        import_sdk("tokenstore_no_such_sdk", backend="nosuch", extra="nosuch")


def test_unknown_backend_lists_available() -> None:
    with pytest.raises(
        ConfigError, match="unknown backend 'nope'; available: aws, azure, conjur, env, file, gcp, vault"
    ):
        tokenstore.get_backend_class("nope")


def test_every_builtin_backend_resolves() -> None:
    for name in BUILTIN_BACKENDS:
        cls = tokenstore.get_backend_class(name)
        assert issubclass(cls, tokenstore.Backend) and cls.name == name


def test_entry_point_plugin(tmp_path: Path) -> None:
    """A third-party backend installed as a distribution with an entry point is found by name."""
    (tmp_path / "ts_plugin_demo.py").write_text(
        textwrap.dedent(
            """
            from tokenstore import Backend, Token

            class ConstBackend(Backend):
                name = "const"

                def __init__(self, value):
                    self.value = value
                    self.source = "const:"

                @classmethod
                def from_config(cls, section):
                    section.reject_unknown(("value_env",))
                    import os
                    return cls(os.environ[section.get_str("value_env")])

                def get_token(self):
                    return Token(self.value, source=self.source)
            """
        )
    )
    dist = tmp_path / "ts_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ts-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tokenstore.backends]\nconst = ts_plugin_demo:ConstBackend\n")
    code = textwrap.dedent(
        """
        import os, tokenstore
        os.environ["TS_PLUGIN_VALUE"] = "plugin-token-value-123"
        assert "const" in tokenstore.available_backends()
        p = tokenstore.provider_from_config({"token": {"backend": "const", "const": {"value_env": "TS_PLUGIN_VALUE"}}})
        print(p.get_token().reveal() == "plugin-token-value-123")
        """
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_register_backend_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenstore import _registry
    from tokenstore.backends.env import EnvBackend

    monkeypatch.setitem(_registry._registered, "myenv", EnvBackend)
    assert tokenstore.get_backend_class("myenv") is EnvBackend
    monkeypatch.setitem(_registry._registered, "lazy", "tokenstore.backends.env:EnvBackend")
    assert tokenstore.get_backend_class("lazy") is EnvBackend


def test_py_typed_shipped() -> None:
    root = Path(tokenstore.__file__).parent
    assert (root / "py.typed").exists()
    import sender

    assert (Path(sender.__file__).parent / "py.typed").exists()


def test_lazy_exports_cover_all_and_resolve() -> None:
    """The packages load their modules on first use of a name; every public name must resolve that way."""
    import importlib

    for package in ("tokenstore", "sender"):
        module = importlib.import_module(package)
        lazy = module._LAZY
        assert set(lazy) == set(module.__all__) - {"__version__"}, package
        for name in module.__all__:
            assert getattr(module, name) is not None
        assert set(module.__all__) <= set(dir(module))
        with pytest.raises(AttributeError, match="has no attribute 'nope'"):
            module.nope  # noqa: B018


def test_plain_import_loads_no_submodule_until_used() -> None:
    code = (
        "import sys, tokenstore, sender\n"
        "print(sorted(m for m in sys.modules if m.startswith(('tokenstore.', 'sender.')) and "
        "not m.endswith('_version')))\n"
        "from sender import Sender\n"
        "print('sender._client' in sys.modules, 'sender._lifecycle' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()
    assert first == "[]"
    assert second == "True False"  # sending does not pay for the token lifecycle client


def test_pyproject_license_is_an_spdx_string_and_examples_have_an_extra() -> None:
    """The TOML-table form of project.license is deprecated (setuptools stops accepting it on 2027-02-18)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    data = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["license"] == "Apache-2.0"
    assert not any(c.startswith("License ::") for c in data["project"].get("classifiers", []))
    setuptools_req = next(r for r in data["build-system"]["requires"] if r.startswith("setuptools"))
    assert setuptools_req == "setuptools>=77"  # the first release that reads an SPDX license string
    examples = data["project"]["optional-dependencies"]["examples"]
    assert any(r.startswith("fastapi") for r in examples) and any(r.startswith("uvicorn") for r in examples)

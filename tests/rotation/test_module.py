"""sender.rotation as a package: importing it (and every handler module) loads no cloud SDK, its lazy exports
resolve, and it reaches tokenstore through public names only."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import sender.rotation

SDK_PREFIXES = ("boto3", "botocore", "google", "azure", "grpc", "requests")
PACKAGE = Path(sender.rotation.__file__).parent


def test_importing_the_handlers_imports_no_sdk() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import sender.rotation
        from sender.rotation import aws_lambda_handler, azure_event_handler, gcp_pubsub_handler, RotationFailed
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {SDK_PREFIXES!r})
        print(",".join(loaded))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_lazy_exports_cover_all() -> None:
    assert sorted(sender.rotation.__all__) == sender.rotation.__all__
    assert set(sender.rotation._LAZY) == set(sender.rotation.__all__)
    for name in sender.rotation.__all__:
        assert getattr(sender.rotation, name) is not None


def test_only_public_tokenstore_names() -> None:
    """The handlers orchestrate; store work stays in tokenstore, reached through its public modules only."""
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tokenstore"):
                assert not any(part.startswith("_") for part in node.module.split(".")), (path.name, node.module)
                for alias in node.names:
                    assert not alias.name.startswith("_"), (path.name, alias.name)
            if isinstance(node, ast.ImportFrom) and node.level and node.module and "sandbox" in node.module:
                raise AssertionError(f"{path.name} imports the sandbox")

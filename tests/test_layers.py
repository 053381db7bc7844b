"""The layers of design.md, read from the source: ``sender`` stands on ``tokenstore``'s public names only.

The CLI's own check (``tokenstore/cli`` uses both packages' public names) is in ``test_cli_contract.py``; this one
scans every module under ``sender/`` (the sandbox and the rotation handlers included).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: modules that import other packages dynamically, by name
_IMPORTERS = {"import_module", "__import__"}


def _private(dotted: str) -> bool:
    """Whether a dotted name under ``tokenstore`` reaches a private part (``__version__`` is public)."""
    parts = dotted.split(".")
    return parts[0] == "tokenstore" and any(p.startswith("_") and p != "__version__" for p in parts[1:])


def private_tokenstore_uses(source: str) -> list[tuple[int, str]]:
    """Every place in a module's source that reaches a private part of ``tokenstore``: ``import tokenstore._x``,
    ``from tokenstore._x import y``, ``from tokenstore import _x``, ``tokenstore._x`` as an attribute, and
    ``importlib.import_module("tokenstore._x")``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if _private(node.module) else [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "tokenstore":
            names = [f"tokenstore.{node.attr}"]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in _IMPORTERS and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
        found += [(node.lineno, name) for name in names if _private(name)]
    return found


def test_the_scanner_finds_each_kind_of_private_use() -> None:
    """The check below can fail: each form of reaching into tokenstore's private modules is caught."""
    source = (
        "import tokenstore._metrics\n"
        "from tokenstore._config import shown\n"
        "from tokenstore import _version\n"
        "import tokenstore\n"
        "x = tokenstore._cache\n"
        "import importlib\n"
        "importlib.import_module('tokenstore._tenants')\n"
        "from tokenstore import Token, __version__, is_loopback_host\n"
        "from tokenstore.backends.file import FileBackend\n"
        "from ._x import y\n"
    )
    assert private_tokenstore_uses(source) == [
        (1, "tokenstore._metrics"),
        (2, "tokenstore._config"),
        (3, "tokenstore._version"),
        (5, "tokenstore._cache"),
        (7, "tokenstore._tenants"),
    ]


def test_sender_imports_only_tokenstores_public_names() -> None:
    modules = sorted((ROOT / "sender").rglob("*.py"))
    assert ROOT / "sender" / "sandbox" / "_server.py" in modules  # the walk reaches the subpackages
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in modules
        for line, name in private_tokenstore_uses(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "sender reaches into tokenstore's private modules; export the name from tokenstore"

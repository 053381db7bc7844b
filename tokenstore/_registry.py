"""Backend registry: built-ins as a lazy name -> "module:Class" map, plugins through an entry-point group.

Nothing here imports a backend module (let alone a cloud SDK) until that backend is asked for by name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import BackendNotInstalled, ConfigError

if TYPE_CHECKING:
    from importlib import metadata
    from types import ModuleType

    from ._provider import Backend

__all__ = [
    "BUILTIN_BACKENDS",
    "ENTRY_POINT_GROUP",
    "available_backends",
    "get_backend_class",
    "import_sdk",
    "register_backend",
]

#: third-party packages add backends under this entry-point group: ``name = "package.module:Class"``
ENTRY_POINT_GROUP = "tokenstore.backends"

BUILTIN_BACKENDS: dict[str, str] = {
    "env": "tokenstore.backends.env:EnvBackend",
    "file": "tokenstore.backends.file:FileBackend",
    "vault": "tokenstore.backends.vault:VaultBackend",
    "aws": "tokenstore.backends.aws:AwsBackend",
    "gcp": "tokenstore.backends.gcp:GcpBackend",
    "azure": "tokenstore.backends.azure:AzureBackend",
    "conjur": "tokenstore.backends.conjur:ConjurBackend",
}

_registered: dict[str, Any] = {}


def register_backend(name: str, target: str | type[Backend]) -> None:
    """Register a backend class (or a lazy ``"module:Class"`` reference) under ``name`` at run time."""
    _registered[name] = target


def _entry_points() -> dict[str, metadata.EntryPoint]:
    from importlib import metadata  # only when a name is not built in (import cost)

    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    """Every backend name that can be configured: built-ins, registered and installed plugins."""
    names = set(BUILTIN_BACKENDS) | set(_registered)
    try:
        names |= set(_entry_points())
    except Exception:  # a broken distribution's metadata must not hide the built-ins
        pass
    return sorted(names)


def _load_ref(ref: str, name: str) -> Any:
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def get_backend_class(name: str) -> type[Backend]:
    """The backend class for a config name. Unknown names raise ConfigError listing what exists."""
    from ._provider import Backend

    target: Any
    if name in _registered:
        target = _registered[name]
        if isinstance(target, str):
            target = _load_ref(target, name)
    elif name in BUILTIN_BACKENDS:
        target = _load_ref(BUILTIN_BACKENDS[name], name)
    else:
        eps = _entry_points()
        if name not in eps:
            import difflib

            from ._config import shown

            known = available_backends()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown backend {shown(name)}{hint}; available: {', '.join(known)}. A third-party backend "
                f"must be installed and registered under the {ENTRY_POINT_GROUP!r} entry-point group"
            )
        try:
            target = eps[name].load()
        except ImportError as exc:
            raise BackendNotInstalled(name, name, missing=exc.name) from exc
    if not (isinstance(target, type) and issubclass(target, Backend)):
        raise ConfigError(f"backend {name!r} does not name a tokenstore.Backend subclass")
    return target


def import_sdk(module: str, *, backend: str, extra: str) -> ModuleType:
    """Import an optional SDK module, or raise BackendNotInstalled naming the pip extra.

    Always through ``importlib.import_module`` (cheap once imported): it waits on the module's import lock, so a
    thread never gets a module another thread is still initialising (``sys.modules`` holds it from the start).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendNotInstalled(backend, extra, missing=exc.name or module) from exc

"""The sandbox's routes: one module per Graph API area, each exporting ``ROUTES``.

To add an endpoint, write a module here with ``ROUTES = [Route("GET", versioned(r"/oauth/access_token"),
"oauth.access_token", handler), ...]`` and add its name to :data:`ROUTE_MODULES`. A handler takes the
:class:`~sender.sandbox._graph.Call` and the :class:`~sender.sandbox._state.SandboxState` and returns a
:class:`~sender.sandbox._graph.Reply`; ``call.params`` holds the path's named groups.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .._graph import Call, Reply
from .._state import SandboxState

__all__ = ["ROUTE_MODULES", "Handler", "Route", "Router", "load_routes", "versioned"]

Handler = Callable[[Call, SandboxState], Reply]

#: route modules loaded by default, in matching order
ROUTE_MODULES = ["messages", "debug_token", "oauth", "system_users", "businesses", "signup", "control", "webhooks"]

_VERSION = r"v\d{1,3}\.\d{1,2}"


def versioned(path: str, *, required: bool = False) -> str:
    """A path pattern under the Graph version prefix (``/v26.0/...``), optional unless ``required``."""
    prefix = f"/(?P<version>{_VERSION})" if required else f"(?:/(?P<version>{_VERSION}))?"
    return f"^{prefix}{path}/?$"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    #: a short name for logs and fault targeting (``messages``, ``debug_token``...)
    name: str
    handler: Handler
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))

    def match(self, path: str) -> dict[str, str] | None:
        m = self.regex.match(path)
        return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}


def load_routes(modules: Iterable[str] = ROUTE_MODULES) -> list[Route]:
    """The ``ROUTES`` of each named module of this package (or a dotted module path), in order."""
    routes: list[Route] = []
    for name in modules:
        module = importlib.import_module(name if "." in name else f"{__name__}.{name}")
        routes.extend(module.ROUTES)
    return routes


class Router:
    """Finds the route for a method and path."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = list(routes)

    def resolve(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """``(route, params, path_known)``: the matching route, or None with whether the path exists at all."""
        known = False
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            known = True
            if route.method == method:
                return route, params, True
        return None, {}, known

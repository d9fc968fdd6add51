"""The route table: method and path pattern to handler, one module per resource.

Paths are matched after the ``/v1.NN`` prefix is removed. A ``{name}``
segment matches one path segment; ``{name:path}`` matches the rest of the
path, slashes included, because image names contain slashes
(``/images/localhost:5000/a/b:tag/json``).
"""

from __future__ import annotations

import re
from typing import Callable

from dockyard.api import build, containers, execs, images, networks, system, volumes
from dockyard.api.errors import ApiError

Route = tuple[str, str, Callable]

ROUTES: list[Route] = [
    *system.ROUTES,
    *images.ROUTES,
    *build.ROUTES,
    *containers.ROUTES,
    *execs.ROUTES,
    *volumes.ROUTES,
    *networks.ROUTES,
]

_PARAMETER = re.compile(r"\{(\w+)(:path)?\}")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Turn ``/containers/{id}/json`` into a regular expression with named groups."""
    parts = []
    position = 0
    for match in _PARAMETER.finditer(pattern):
        parts.append(re.escape(pattern[position:match.start()]))
        parts.append(f"(?P<{match.group(1)}>.+)" if match.group(2) else f"(?P<{match.group(1)}>[^/]+)")
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    return re.compile("".join(parts) + "/?")


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = [(method, compile_pattern(pattern), handler) for method, pattern, handler in routes]

    def match(self, method: str, path: str) -> tuple[Callable, dict[str, str]]:
        """Return the handler and path parameters; raises ApiError 404 or 405 as dockerd does."""
        allowed = False
        for route_method, pattern, handler in self.routes:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            if route_method == method or (method == "HEAD" and route_method == "GET"):
                return handler, found.groupdict()
            allowed = True
        if allowed:
            raise ApiError(405, f"method {method} is not allowed on {path}")
        raise ApiError(404, "page not found")

"""System routes: ``/_ping``, ``/version``, ``/info`` and ``/system/df``."""

from __future__ import annotations

from dockyard.api.server import Api, Request, Response, json_response

PING_HEADERS = [("Builder-Version", "1"), ("Cache-Control", "no-cache"),
                ("Pragma", "no-cache")]


def ping(api: Api, request: Request) -> Response:
    return Response(200, b"OK", "text/plain; charset=utf-8", list(PING_HEADERS))


def version(api: Api, request: Request) -> Response:
    from dockyard.engine import system

    return json_response(system.version(api.engine))


def info(api: Api, request: Request) -> Response:
    from dockyard.engine import system

    return json_response(system.info(api.engine))


def disk_usage(api: Api, request: Request) -> Response:
    from dockyard.engine import system

    return json_response(system.disk_usage(api.engine))


ROUTES = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/system/df", disk_usage),
]

"""System routes: ``/_ping``, ``/version``, ``/info``, ``/events``, ``/system/df`` and ``/auth``."""

from __future__ import annotations

from typing import Iterator

from dockyard.api.server import Api, Request, Response, Stream, json_response, runs_inline

PING_HEADERS = [("Builder-Version", "1"), ("Cache-Control", "no-cache"),
                ("Pragma", "no-cache")]


@runs_inline()
def ping(api: Api, request: Request) -> Response:
    return Response(200, b"OK", "text/plain; charset=utf-8", list(PING_HEADERS))


def version(api: Api, request: Request) -> Response:
    from dockyard.engine import system

    return json_response(system.version(api.engine))


def info(api: Api, request: Request) -> Response:
    from dockyard.engine import system

    return json_response(system.info(api.engine))


def auth(api: Api, request: Request) -> Response:
    """Check registry credentials for ``docker login``; the client stores them, the server does not."""
    from dockyard.errors import InvalidArgument

    body = request.json()
    user = body.get("username") or ""
    password = body.get("password") or ""
    if not user or not password:
        raise InvalidArgument("username and password are required in the body of POST /auth")
    api.engine.images.check_login(body.get("serveraddress") or "docker.io", user, password)
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


def events(api: Api, request: Request) -> Stream:
    """Stream container events as newline-delimited JSON; see ``engine/events.py`` for what is reported."""
    import json
    import time

    from dockyard.api.containers import _unix_time
    from dockyard.engine import events as engine_events

    until = _unix_time(request.arg("until"))
    filters = request.filters()
    stream = engine_events.watch(api.engine, until=until, filters=filters)
    if until is not None and until <= time.time():
        stream = iter(())

    def chunks() -> Iterator[bytes]:
        for event in stream:
            # An empty chunk is not sent, but lets the server stop this generator once the client has left.
            yield b"" if event is None else json.dumps(event).encode() + b"\n"

    return Stream(chunks=chunks(), headers_first=True)


def disk_usage(api: Api, request: Request) -> Response:
    from dockyard.engine import system

    return json_response(system.disk_usage(api.engine))


ROUTES = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/system/df", disk_usage),
    ("POST", "/auth", auth),
    ("GET", "/events", events),
]

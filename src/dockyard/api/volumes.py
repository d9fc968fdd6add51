"""Volume routes: create, list, inspect, remove and prune."""

from __future__ import annotations

from dockyard.api.server import Api, Request, Response, empty_response, json_response
from dockyard.errors import InvalidArgument


def list_volumes(api: Api, request: Request) -> Response:
    return json_response({"Volumes": api.engine.volumes.list(request.filters()), "Warnings": []})


def create(api: Api, request: Request) -> Response:
    body = request.json()
    if not isinstance(body, dict):
        raise InvalidArgument("invalid volume config: the request body must be a JSON object")
    volume = api.engine.volumes.create(body.get("Name") or None, driver=body.get("Driver") or "local",
                                       labels=body.get("Labels") or None, options=body.get("DriverOpts") or None)
    return json_response(volume, status=201)


def inspect(api: Api, request: Request) -> Response:
    return json_response(api.engine.volumes.inspect(request.params["name"]))


def remove(api: Api, request: Request) -> Response:
    api.engine.volumes.remove(request.params["name"], force=request.flag("force"))
    return empty_response()


def prune(api: Api, request: Request) -> Response:
    result = api.engine.volumes.prune(request.filters())
    return json_response({"VolumesDeleted": result["VolumesDeleted"] or None,
                          "SpaceReclaimed": result["SpaceReclaimed"]})


ROUTES = [
    ("GET", "/volumes", list_volumes),
    ("POST", "/volumes/create", create),
    ("POST", "/volumes/prune", prune),
    ("GET", "/volumes/{name}", inspect),
    ("DELETE", "/volumes/{name}", remove),
]

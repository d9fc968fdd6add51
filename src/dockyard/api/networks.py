"""Network routes.

With a network service on the engine (``engine.networks``), the routes call
it. Without one they serve the built-in ``bridge``, ``host`` and ``none``
networks read-only, and return 501 for the rest.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dockyard.api.errors import not_implemented
from dockyard.api.server import Api, Request, Response, empty_response, json_response
from dockyard.errors import InvalidArgument, NotFound

BUILT_IN = (("bridge", "bridge"), ("host", "host"), ("none", "null"))
ZERO_TIME = "0001-01-01T00:00:00Z"


def _network(name: str, driver: str) -> dict:
    return {
        "Name": name,
        # Stable IDs derived from the name, because nothing stores these networks.
        "Id": hashlib.sha256(f"dockyard-network-{name}".encode()).hexdigest(),
        "Created": ZERO_TIME,
        "Scope": "local",
        "Driver": driver,
        "EnableIPv4": driver == "bridge",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": []},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": {},
        "Labels": {},
    }


def _find(name: str) -> dict:
    for network_name, driver in BUILT_IN:
        network = _network(network_name, driver)
        if name in (network_name, network["Id"]) or (len(name) >= 3 and network["Id"].startswith(name)):
            return network
    raise NotFound(f"network {name} not found")


def _service(api: Api) -> Any:
    return getattr(api.engine, "networks", None)


def list_networks(api: Api, request: Request) -> Response:
    filters = request.filters()
    service = _service(api)
    if service is not None:
        return json_response(service.list(filters))
    networks = [_network(name, driver) for name, driver in BUILT_IN]
    if filters.get("name"):
        networks = [network for network in networks if any(value in network["Name"] for value in filters["name"])]
    if filters.get("driver"):
        networks = [network for network in networks if network["Driver"] in filters["driver"]]
    return json_response(networks)


def inspect(api: Api, request: Request) -> Response:
    service = _service(api)
    if service is not None:
        return json_response(service.inspect(request.params["id"]))
    return json_response(_find(request.params["id"]))


def unsupported(api: Api, request: Request) -> Response:
    raise not_implemented(f"{request.method} {request.path} (user-defined networks)")


def create(api: Api, request: Request) -> Response:
    service = _service(api)
    if service is None:
        return unsupported(api, request)
    body = request.json()
    if not isinstance(body, dict) or not body.get("Name"):
        raise InvalidArgument("invalid network config: the request body needs Name")
    ipam_configs = (body.get("IPAM") or {}).get("Config") or [{}]
    if len(ipam_configs) > 1:
        raise InvalidArgument("only one IPAM config (one subnet) per network is supported")
    return json_response(service.create(
        body["Name"], driver=body.get("Driver") or "bridge", subnet=ipam_configs[0].get("Subnet") or None,
        gateway=ipam_configs[0].get("Gateway") or None, internal=bool(body.get("Internal")),
        labels=body.get("Labels") or None, options=body.get("Options") or None,
    ), status=201)


def remove(api: Api, request: Request) -> Response:
    service = _service(api)
    if service is None:
        return unsupported(api, request)
    service.remove(request.params["id"])
    return empty_response()


def prune(api: Api, request: Request) -> Response:
    service = _service(api)
    if service is None:
        return unsupported(api, request)
    return json_response({"NetworksDeleted": service.prune() or None})


def connect(api: Api, request: Request) -> Response:
    """Attach a container to a network; a running one gets its interface at once."""
    service = _service(api)
    if service is None:
        return unsupported(api, request)
    body = request.json()
    if not body.get("Container"):
        raise InvalidArgument("invalid request: the body of POST /networks/{id}/connect needs Container")
    info = api.engine.containers.inspect(body["Container"])
    state = info["State"]
    netns = state["Pid"] if state.get("Running") and state.get("Pid") else None
    service.connect(info["Id"], request.params["id"], name=info["Name"].removeprefix("/"),
                    endpoint_config=body.get("EndpointConfig") or {}, netns=netns)
    return Response(200, b"", None)


def disconnect(api: Api, request: Request) -> Response:
    service = _service(api)
    if service is None:
        return unsupported(api, request)
    body = request.json()
    if not body.get("Container"):
        raise InvalidArgument("invalid request: the body of POST /networks/{id}/disconnect needs Container")
    info = api.engine.containers.inspect(body["Container"])
    service.disconnect(info["Id"], request.params["id"], force=bool(body.get("Force")))
    return Response(200, b"", None)


ROUTES = [
    ("GET", "/networks", list_networks),
    ("POST", "/networks/create", create),
    ("POST", "/networks/prune", prune),
    ("GET", "/networks/{id}", inspect),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
    ("DELETE", "/networks/{id}", remove),
]

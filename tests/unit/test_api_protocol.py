"""The API server's protocol pieces, bytes in and bytes out: framing, versions, errors, routing, hijacking.

The connection tests run ``Server.handle_connection`` on one end of a
socketpair with a stand-in engine that has only the attributes a route
uses, so no container or privilege is needed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any

import pytest

from dockyard import errors
from dockyard.api import errors as api_errors
from dockyard.api import stdcopy, versions
from dockyard.api.routes import ROUTES, Router
from dockyard.api.server import Request, Server, handshake, parse_host, parse_target


# -- stdcopy ----------------------------------------------------------------------------


def test_frame_header_bytes() -> None:
    assert stdcopy.frame(stdcopy.STDOUT, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert stdcopy.frame(stdcopy.STDERR, b"x") == b"\x02\x00\x00\x00\x00\x00\x00\x01x"


def test_frame_empty_data_is_no_frame() -> None:
    assert stdcopy.frame(stdcopy.STDOUT, b"") == b""


def test_parse_keeps_incomplete_frame() -> None:
    data = stdcopy.frame(1, b"one") + stdcopy.frame(2, b"two")
    frames, rest = stdcopy.parse(data[:-1])
    assert frames == [(1, b"one")]
    assert rest == data[len(stdcopy.frame(1, b"one")):-1]
    frames, rest = stdcopy.parse(data)
    assert frames == [(1, b"one"), (2, b"two")]
    assert rest == b""


# -- versions --------------------------------------------------------------------------------


@pytest.mark.parametrize("path, expected", [
    ("/v1.50/containers/json", ((1, 50), "/containers/json")),
    ("/v1.40/_ping", ((1, 40), "/_ping")),
    ("/containers/json", ((1, 50), "/containers/json")),
    ("/v1.45/images/localhost:5000/a/b:t/json", ((1, 45), "/images/localhost:5000/a/b:t/json")),
])
def test_split_version(path: str, expected: tuple) -> None:
    assert versions.split_version(path) == expected


def test_version_too_old_wording() -> None:
    with pytest.raises(errors.InvalidArgument, match="client version 1.39 is too old. Minimum supported API version is 1.40"):
        versions.split_version("/v1.39/version")


def test_version_too_new_wording() -> None:
    with pytest.raises(errors.InvalidArgument, match="client version 1.51 is too new. Maximum supported API version is 1.50"):
        versions.split_version("/v1.51/version")


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("error, status", [
    (errors.ContainerNotFound("web"), 404),
    (errors.ImageNotFound("busybox:latest"), 404),
    (errors.VolumeNotFound("data"), 404),
    (errors.ManifestUnknown("manifest unknown"), 404),
    (errors.Conflict("in use"), 409),
    (errors.InvalidArgument("bad"), 400),
    (errors.InvalidReference("UPPER", "repository name must be lowercase"), 400),
    (errors.Unauthorized("denied"), 401),
    (errors.RuntimeFailure("boom"), 500),
    (RuntimeError("unexpected"), 500),
    (api_errors.ApiError(501, "not here"), 501),
])
def test_status_for(error: BaseException, status: int) -> None:
    assert api_errors.status_for(error) == status


def test_error_body_is_docker_json() -> None:
    body = api_errors.body_for(errors.ContainerNotFound("web"))
    assert body == b'{"message": "No such container: web"}\n'


# -- requests and routes -----------------------------------------------------------------------


def _request(query: str) -> Request:
    import io

    path, parsed = parse_target(f"/containers/json?{query}")
    return Request("GET", path, path, (1, 50), parsed, {}, io.BytesIO())


def test_filters_accept_both_forms() -> None:
    new_form = _request("filters=" + json.dumps({"status": ["running"], "label": ["a=b"]}))
    old_form = _request("filters=" + json.dumps({"status": {"running": True, "exited": False}}))
    assert new_form.filters() == {"status": ["running"], "label": ["a=b"]}
    assert old_form.filters() == {"status": ["running"]}


def test_flag_parsing_like_docker() -> None:
    request = _request("a=1&b=true&c=0&d=false&e=&f=True")
    assert [request.flag(name) for name in "abcdef"] == [True, True, False, False, False, True]
    assert request.flag("missing", default=True) is True


def test_router_matches_names_with_slashes() -> None:
    router = Router(ROUTES)
    handler, params = router.match("GET", "/images/localhost:5000/team/app:v1/json")
    assert handler.__name__ == "inspect"
    assert params == {"name": "localhost:5000/team/app:v1"}


def test_router_unknown_path_and_method() -> None:
    router = Router(ROUTES)
    with pytest.raises(api_errors.ApiError) as missing:
        router.match("GET", "/no/such/path")
    assert missing.value.status == 404
    with pytest.raises(api_errors.ApiError) as wrong_method:
        router.match("PUT", "/version")
    assert wrong_method.value.status == 405


def test_parse_host_rejects_non_loopback_tcp() -> None:
    assert parse_host("unix:///run/dockyard/dockyard.sock") == ("unix", "/run/dockyard/dockyard.sock")
    assert parse_host("tcp://127.0.0.1:2375") == ("tcp", ("127.0.0.1", 2375))
    assert parse_host("tcp://[::1]:2375") == ("tcp", ("::1", 2375))
    with pytest.raises(errors.InvalidArgument, match="only loopback"):
        parse_host("tcp://0.0.0.0:2375")


# -- hijack handshake -----------------------------------------------------------------------------


def test_handshake_with_upgrade() -> None:
    head = handshake({"connection": "Upgrade", "upgrade": "tcp"}, "application/vnd.docker.raw-stream")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 UPGRADED"
    assert "Content-Type: application/vnd.docker.raw-stream" in lines
    assert "Connection: Upgrade" in lines
    assert "Upgrade: tcp" in lines
    assert head.endswith(b"\r\n\r\n")


def test_handshake_without_upgrade() -> None:
    head = handshake({}, "application/vnd.docker.multiplexed-stream")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Upgrade: tcp" not in lines


# -- whole connections -------------------------------------------------------------------------------


class StandInContainers:
    """The part of the container service that the tested routes call."""

    def __init__(self) -> None:
        self.attached: list[dict[str, Any]] = []
        self.container_end: socket.socket | None = None

    def list(self, all: bool = False, **options: Any) -> list[dict]:
        return []

    def inspect(self, name: str, size: bool = False) -> dict:
        if name != "box":
            raise errors.ContainerNotFound(name)
        return {"Id": "b" * 64, "Config": {"Tty": False}, "State": {"Status": "running"}}

    def attach(self, name: str, **options: Any) -> "StandInAttachment":
        self.attached.append(options)
        ours, theirs = socket.socketpair()
        self.container_end = theirs
        return StandInAttachment(ours)


class StandInAttachment:
    """A socket end whose peer plays the container: what the test writes there is the container's output."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.container_id = "b" * 64

    def recv(self, size: int = 65536) -> bytes:
        return self.sock.recv(size)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


class StandInVolumes:
    def __init__(self) -> None:
        self.created: list[tuple] = []

    def create(self, name: str | None = None, driver: str = "local", labels: Any = None, options: Any = None) -> dict:
        self.created.append((name, driver, labels))
        return {"Name": name, "Driver": driver, "Labels": labels}


class StandInEngine:
    def __init__(self) -> None:
        self.containers = StandInContainers()
        self.volumes = StandInVolumes()


class Connection:
    """A server coroutine on one end of a socketpair, run in a thread with its own event loop."""

    def __init__(self, engine: StandInEngine) -> None:
        self.client, server_end = socket.socketpair()
        self.client.settimeout(10)
        self.server = Server(engine)  # type: ignore[arg-type]

        async def serve() -> None:
            reader, writer = await asyncio.open_connection(sock=server_end)
            await self.server.handle_connection(reader, writer)

        self.thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
        self.thread.start()

    def read_until(self, marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            chunk = self.client.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def read_all(self) -> bytes:
        data = b""
        while chunk := self.client.recv(65536):
            data += chunk
        return data

    def close(self) -> None:
        self.client.close()
        self.thread.join(timeout=10)


@pytest.fixture
def engine() -> StandInEngine:
    return StandInEngine()


@pytest.fixture
def connection(engine: StandInEngine) -> Any:
    opened = Connection(engine)
    yield opened
    opened.close()


def test_ping_head_and_get(connection: Connection) -> None:
    connection.client.sendall(b"HEAD /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    head = connection.read_until(b"\r\n\r\n").decode()
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    for header in ("Api-Version: 1.50", "Ostype: linux", "Builder-Version: 1", "Docker-Experimental: false",
                   "Cache-Control: no-cache"):
        assert header in head
    connection.client.sendall(b"GET /v1.45/_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    response = connection.read_all()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"\r\n\r\nOK")


def test_not_found_error_response(connection: Connection) -> None:
    connection.client.sendall(b"GET /v1.50/containers/web/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    response = connection.read_all()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"message": "No such container: web"}


def test_chunked_request_body(connection: Connection, engine: StandInEngine) -> None:
    body = json.dumps({"Name": "data", "Labels": {"a": "b"}, "Unknown": 1}).encode()
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:7], body[7:]))
    connection.client.sendall(b"POST /volumes/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n"
                              b"Content-Type: application/json\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    response = connection.read_all()
    assert response.startswith(b"HTTP/1.1 201 Created\r\n")
    assert engine.volumes.created == [("data", "local", {"a": "b"})]


def test_attach_hijack_both_directions(connection: Connection, engine: StandInEngine) -> None:
    connection.client.sendall(b"POST /v1.50/containers/box/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                              b"Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    head = connection.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert b"Content-Type: application/vnd.docker.multiplexed-stream\r\n" in head
    assert engine.containers.attached == [{"stdin": True, "stdout": True, "stderr": True, "logs": False}]
    container = engine.containers.container_end
    assert container is not None
    container.settimeout(10)

    # Output from the container reaches the client unchanged: the attachment frames it already.
    framed = stdcopy.frame(stdcopy.STDOUT, b"hello\n")
    container.sendall(framed)
    assert connection.read_until(b"hello\n")[-len(framed):] == framed

    # Input from the client reaches the container, and the client's half-close closes its stdin.
    connection.client.sendall(b"typed")
    assert container.recv(64) == b"typed"
    connection.client.shutdown(socket.SHUT_WR)
    assert container.recv(64) == b""

    # The container's output ending ends the connection.
    container.sendall(stdcopy.frame(stdcopy.STDERR, b"bye"))
    container.close()
    assert connection.read_all() == stdcopy.frame(stdcopy.STDERR, b"bye")


def test_attach_detach_keys(connection: Connection, engine: StandInEngine) -> None:
    connection.client.sendall(b"POST /containers/box/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x HTTP/1.1\r\n"
                              b"Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    connection.read_until(b"\r\n\r\n")
    container = engine.containers.container_end
    assert container is not None
    container.settimeout(10)
    connection.client.sendall(b"ab\x18cd")
    assert container.recv(64) == b"ab"
    # After the detach key the server closes the attachment, and so the connection, without closing stdin first.
    assert connection.read_all() == b""


def test_stream_ends_when_client_leaves(connection: Connection) -> None:
    connection.client.sendall(b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n")
    head = connection.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in head
    # No event is due, so only the server's read of the connection can notice that the client left.
    connection.client.close()
    connection.thread.join(timeout=10)
    assert not connection.thread.is_alive()


def test_events_until_past_ends_at_once(connection: Connection) -> None:
    connection.client.sendall(b"GET /events?until=1 HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    response = connection.read_all()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"\r\n\r\n0\r\n\r\n")

"""``GET /containers/{id}/attach/ws`` on real containers, driven by websocket-client (the package docker-py uses).

Containers are made with the docker CLI against the test service. The
WebSocket is opened on a unix socket connected by the test, because
websocket-client speaks only TCP by itself.
"""

from __future__ import annotations

import json
import socket
import time
from contextlib import closing
from typing import Iterator

import pytest

from tests.support.api import DOCKER_CLI, ApiService

websocket = pytest.importorskip("websocket")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(DOCKER_CLI is None, reason="the docker CLI is not installed"),
]

TIMEOUT = 30.0
NORMAL_CLOSURE = 1000


def connect(service: ApiService, container: str, query: str, version: str = "v1.50") -> "websocket.WebSocket":
    """Open the attach WebSocket of ``container`` with the query string ``query``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(str(service.socket_path))
    try:
        return websocket.create_connection(f"ws://localhost/{version}/containers/{container}/attach/ws?{query}",
                                           socket=sock, timeout=TIMEOUT)
    except BaseException:
        sock.close()
        raise


def receive_until_close(ws: "websocket.WebSocket") -> tuple[bytes, int]:
    """Collect the binary messages until the server's close frame, and return the bytes and the close code.

    websocket-client replies to the close frame itself, and the server then closes the connection.
    """
    received = b""
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
            assert ws.sock.recv(1) == b"", "the server kept the connection open after the closing handshake"
            return received, code
        assert opcode == websocket.ABNF.OPCODE_BINARY, f"expected binary messages, got opcode {opcode}"
        received += data


def receive_exactly(ws: "websocket.WebSocket", expected: bytes) -> bytes:
    received = b""
    while len(received) < len(expected):
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_BINARY
        received += data
    return received


def raw_request(service: ApiService, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send a request head on the API socket; return the status, headers (lower-case names) and the body read."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(service.socket_path))
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection after {data!r}"
            data += chunk
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            body += sock.recv(65536)
        return int(lines[0].split()[1]), headers, body


@pytest.fixture
def created(docker_api: ApiService) -> Iterator[callable]:
    """Create busybox containers with the docker CLI: ``created(*command, flags=[...])`` returns the new ID."""

    def create(*command: str, flags: tuple[str, ...] = ()) -> str:
        result = docker_api.docker("create", "--network", "none", *flags, "busybox", *command)
        return result.stdout.strip()

    docker_api.docker("pull", "-q", "busybox")
    yield create


def create_open_stdin(service: ApiService, *command: str) -> str:
    """Create a container whose stdin stays open across attachments (StdinOnce false, unlike ``docker create -i``)."""
    body = json.dumps({"Image": "busybox", "Cmd": list(command), "OpenStdin": True, "StdinOnce": False,
                       "HostConfig": {"NetworkMode": "none"}})
    status, _, data = raw_request(service, "POST /v1.50/containers/create HTTP/1.1\r\nHost: localhost\r\n"
                                           "Connection: close\r\nContent-Type: application/json\r\n"
                                           f"Content-Length: {len(body)}\r\n\r\n{body}")
    assert status == 201, data
    return json.loads(data)["Id"]


def test_echo_output_then_close_on_exit(docker_api: ApiService, created) -> None:
    container = created("sh", "-c", "echo hello-ws; echo to-stderr >&2")
    with closing(connect(docker_api, container, "stream=1&stdout=1&stderr=1")) as ws:
        assert ws.getstatus() == 101
        docker_api.docker("start", container)
        received, code = receive_until_close(ws)
    # Raw bytes in binary messages: no stdcopy headers, both streams.
    assert sorted(received.splitlines()) == [b"hello-ws", b"to-stderr"]
    assert code == NORMAL_CLOSURE
    state = docker_api.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container).stdout
    assert state.strip() == "exited 0"


def test_cat_echoes_input(docker_api: ApiService, created) -> None:
    container = create_open_stdin(docker_api, "cat")
    docker_api.docker("start", container)
    with closing(connect(docker_api, container, "stream=1&stdin=1&stdout=1")) as ws:
        ws.send("typed as text\n")
        assert receive_exactly(ws, b"typed as text\n") == b"typed as text\n"
        ws.send_binary(b"sent as bytes\n")
        assert receive_exactly(ws, b"sent as bytes\n") == b"sent as bytes\n"
        ws.ping(b"still there?")
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_PONG
        assert data == b"still there?"
    status = docker_api.docker("inspect", "-f", "{{.State.Status}}", container).stdout.strip()
    assert status == "running"


def test_client_close_ends_stdin_once_input(docker_api: ApiService, created) -> None:
    container = created("sh", "-c", "cat; echo stdin-closed", flags=("-i",))
    docker_api.docker("start", container)
    with closing(connect(docker_api, container, "stream=1&stdin=1&stdout=1")) as ws:
        ws.send("last line\n")
        assert receive_exactly(ws, b"last line\n") == b"last line\n"
        ws.close()
    # docker create -i sets StdinOnce, so the end of this attachment closes the container's stdin.
    assert docker_api.docker("wait", container).stdout.strip() == "0"
    assert docker_api.docker("logs", container).stdout == "last line\nstdin-closed\n"


def test_input_then_exit_closes_connection(docker_api: ApiService, created) -> None:
    container = created("sh", "-c", "read line; echo got $line", flags=("-i",))
    docker_api.docker("start", container)
    with closing(connect(docker_api, container, "stream=1&stdin=1&stdout=1&stderr=1")) as ws:
        ws.send("abc\n")
        received, code = receive_until_close(ws)
    assert received == b"got abc\n"
    assert code == NORMAL_CLOSURE


def test_only_requested_streams(docker_api: ApiService, created) -> None:
    container = created("sh", "-c", "echo out; echo err >&2")
    with closing(connect(docker_api, container, "stream=1&stdout=1")) as ws:
        docker_api.docker("start", container)
        received, _ = receive_until_close(ws)
    assert received == b"out\n"


def test_api_before_142_attaches_all_streams(docker_api: ApiService, created) -> None:
    container = created("sh", "-c", "echo out; echo err >&2")
    with closing(connect(docker_api, container, "stream=1", version="v1.41")) as ws:
        docker_api.docker("start", container)
        received, _ = receive_until_close(ws)
    assert sorted(received.splitlines()) == [b"err", b"out"]


def test_tty_output_is_raw(docker_api: ApiService, created) -> None:
    container = created("sh", "-c", "printf 'tty\\n'", flags=("-t",))
    with closing(connect(docker_api, container, "stream=1&stdout=1")) as ws:
        docker_api.docker("start", container)
        received, _ = receive_until_close(ws)
    assert received == b"tty\r\n"


def test_logs_replay_without_stream(docker_api: ApiService, created) -> None:
    container = created("sh", "-c", "echo first; echo second")
    docker_api.docker("start", "-a", container)
    with closing(connect(docker_api, container, "logs=1&stdout=1")) as ws:
        received, code = receive_until_close(ws)
    assert received == b"first\nsecond\n"
    assert code == NORMAL_CLOSURE


def test_detach_keys_leave_container_running(docker_api: ApiService, created) -> None:
    container = create_open_stdin(docker_api, "cat")
    docker_api.docker("start", container)
    with closing(connect(docker_api, container, "stream=1&stdin=1&stdout=1&detachKeys=ctrl-x")) as ws:
        ws.send_binary(b"before\n")
        assert receive_exactly(ws, b"before\n") == b"before\n"
        ws.send_binary(b"\x18")
        received, code = receive_until_close(ws)
    assert received == b""
    assert code == NORMAL_CLOSURE
    time.sleep(0.2)
    assert docker_api.docker("inspect", "-f", "{{.State.Status}}", container).stdout.strip() == "running"


def test_unknown_container_is_404(docker_api: ApiService) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as raised:
        connect(docker_api, "no-such-container", "stream=1&stdout=1")
    assert raised.value.status_code == 404


def test_plain_get_is_400(docker_api: ApiService, created) -> None:
    container = created("true")
    status, _, body = raw_request(docker_api, f"GET /v1.50/containers/{container}/attach/ws?stream=1 HTTP/1.1\r\n"
                                              "Host: localhost\r\nConnection: close\r\n\r\n")
    assert status == 400
    assert "WebSocket upgrade" in json.loads(body)["message"]


def test_other_websocket_version_is_426(docker_api: ApiService, created) -> None:
    container = created("true")
    status, headers, _ = raw_request(
        docker_api, f"GET /v1.50/containers/{container}/attach/ws?stream=1 HTTP/1.1\r\nHost: localhost\r\n"
                    "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert status == 426
    assert headers["sec-websocket-version"] == "13"

"""Loopback helpers that misbehave on purpose between a client and a registry.

``Proxy`` forwards TCP connections to a registry and records each request's method,
path and headers. It can cut one blob response after a number of body bytes, to test
resuming. It can respond to blob GETs itself with a 307 to another server, to test what
crosses a redirect. It can also respond 503 or 401 to the next requests, to test retries. ``BlobServer`` is such a redirect target: it serves blobs from a
dict and records the headers it receives.

The proxy adds ``Connection: close`` to every request, so each connection carries one
request and its response, and the proxy needs to parse only the first request head.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")
MAX_HEAD = 64 * 1024


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case

    @property
    def is_blob_get(self) -> bool:
        return self.method == "GET" and BLOB_PATH.match(self.path.split("?", 1)[0]) is not None


def _read_head(connection: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the end of an HTTP head; return the head and any bytes after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data, b""
        data += chunk
        if len(data) > MAX_HEAD:
            raise ValueError("request head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _parse_head(head: bytes) -> RecordedRequest:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return RecordedRequest(method, path, headers)


def _with_connection_close(head: bytes) -> bytes:
    lines = head.decode("latin-1").split("\r\n")
    headers = [line for line in lines[1:] if line and not line.lower().startswith(("connection:", "keep-alive:"))]
    return ("\r\n".join([lines[0], *headers, "Connection: close"]) + "\r\n\r\n").encode("latin-1")


@dataclass
class Proxy:
    """A TCP proxy on 127.0.0.1 in front of ``target`` (``host:port``)."""

    target: str
    cut_after: int | None = None  # cut the next blob response after this many body bytes, once
    redirect_to: str | None = None  # base URL that blob GETs are redirected to with a 307
    fail_next: int = 0  # respond 503 with Retry-After: 0 to this many next requests
    reject_next: int = 0  # respond 401 with ``challenge`` to this many next requests
    challenge: str = ""  # the WWW-Authenticate value of those 401 responses
    requests: list[RecordedRequest] = field(default_factory=list)
    cuts: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self._lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._accepter.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        self._stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._accepter.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), name="proxy-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            head, rest = _read_head(client)
            if not head.endswith(b"\r\n\r\n"):
                return
            request = _parse_head(head)
            with self._lock:
                self.requests.append(request)
            with self._lock:
                failing = self.fail_next > 0
                if failing:
                    self.fail_next -= 1
                rejecting = not failing and self.reject_next > 0
                if rejecting:
                    self.reject_next -= 1
            if failing:
                client.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
            if rejecting:
                client.sendall(
                    f"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {self.challenge}\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode("latin-1")
                )
                return
            match = BLOB_PATH.match(request.path.split("?", 1)[0])
            if self.redirect_to is not None and request.method == "GET" and match:
                location = f"{self.redirect_to}/blobs/{match.group('digest')}?signature=test"
                client.sendall(
                    f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )
                return
            host, port = self.target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=30)
            upstream.sendall(_with_connection_close(head) + rest)
            pump = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
            pump.start()
            with self._lock:
                cut = self.cut_after if request.is_blob_get else None
                if cut is not None:
                    self.cut_after = None
            self._relay_response(upstream, client, cut)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    sock.close()

    def _relay_response(self, upstream: socket.socket, client: socket.socket, cut: int | None) -> None:
        """Copy the response to the client; with ``cut``, stop after that many body bytes."""
        buffered = b""
        body_sent: int | None = None
        while True:
            chunk = upstream.recv(65536)
            if not chunk:
                if buffered:
                    client.sendall(buffered)
                return
            if cut is None:
                client.sendall(chunk)
                continue
            if body_sent is None:
                buffered += chunk
                if b"\r\n\r\n" not in buffered:
                    continue
                head, _, chunk = buffered.partition(b"\r\n\r\n")
                client.sendall(head + b"\r\n\r\n")
                buffered = b""
                body_sent = 0
            allowed = cut - body_sent
            client.sendall(chunk[:allowed])
            body_sent += min(len(chunk), allowed)
            if body_sent >= cut:
                with self._lock:
                    self.cuts += 1
                return


def _pump(source: socket.socket, destination: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            destination.sendall(chunk)
    except OSError:
        pass


class BlobServer:
    """An HTTP server on 127.0.0.1 that serves ``blobs[digest]`` at ``/blobs/DIGEST`` and records request headers."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.requests: list[RecordedRequest] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's naming
                headers = {name.lower(): value for name, value in self.headers.items()}
                server.requests.append(RecordedRequest("GET", self.path, headers))
                digest = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                data = server.blobs.get(digest)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="blob-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def blob_server() -> Iterator[BlobServer]:
    server = BlobServer()
    try:
        yield server
    finally:
        server.stop()

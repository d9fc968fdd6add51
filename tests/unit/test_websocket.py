"""Attach over a WebSocket, bytes in and bytes out: the handshake checks, and ``pump`` between two socketpairs.

One socketpair stands for the client's connection, driven by a wsproto
client, which masks its frames as RFC 6455 requires. The other stands for
the monitor's attach connection behind the engine's real ``Attachment``.
"""

from __future__ import annotations

import collections
import socket
import threading

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from dockyard.api import stdcopy, websocket
from dockyard.engine.containers import Attachment
from dockyard.errors import InvalidArgument

TIMEOUT = 10.0
UPGRADE = {"upgrade": "websocket", "connection": "keep-alive, Upgrade", "sec-websocket-version": "13",
           "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}


# -- the handshake -------------------------------------------------------------------------


def test_accept_head_has_rfc_example_token() -> None:
    key = websocket.check_upgrade("GET", UPGRADE)
    head = websocket.accept_head(key).decode()
    assert head.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    # The example of RFC 6455, section 1.3.
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert "Upgrade: websocket\r\n" in head
    assert head.endswith("\r\n\r\n")


@pytest.mark.parametrize(("method", "changes", "message"), [
    ("POST", {}, "must use GET"),
    ("GET", {"upgrade": "tcp"}, "Upgrade: websocket"),
    ("GET", {"connection": "close"}, "Connection: Upgrade"),
    ("GET", {"sec-websocket-key": "short"}, "invalid Sec-WebSocket-Key"),
])
def test_check_upgrade_rejects(method: str, changes: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        websocket.check_upgrade(method, {**UPGRADE, **changes})


def test_check_upgrade_other_version() -> None:
    with pytest.raises(websocket.VersionMismatch, match="Sec-WebSocket-Version '8'"):
        websocket.check_upgrade("GET", {**UPGRADE, "sec-websocket-version": "8"})


def test_output_decoder_unwraps_split_frames() -> None:
    decoder = websocket.OutputDecoder(framed=True)
    data = stdcopy.frame(stdcopy.STDOUT, b"out\n") + stdcopy.frame(stdcopy.STDERR, b"err\n")
    assert decoder.feed(data[:5]) == b""
    assert decoder.feed(data[5:14]) == b"out\n"
    assert decoder.feed(data[14:]) == b"err\n"
    assert websocket.OutputDecoder(framed=False).feed(b"\x01raw") == b"\x01raw"


# -- a session ---------------------------------------------------------------------------


class Client:
    """A WebSocket client on one end of a socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.connection = Connection(ConnectionType.CLIENT)
        self.pending: collections.deque[object] = collections.deque()

    def send(self, event: object) -> None:
        self.sock.sendall(self.connection.send(event))

    def next_event(self) -> object:
        while not self.pending:
            data = self.sock.recv(65536)
            self.connection.receive_data(data or None)
            self.pending.extend(self.connection.events())
        return self.pending.popleft()


class Session:
    """``websocket.pump`` in a thread between a client socketpair and an attachment socketpair."""

    def __init__(self, tty: bool = False, stdin: bool = True) -> None:
        client_side, server_side = socket.socketpair()
        self.container, attach_side = socket.socketpair()
        self.container.settimeout(TIMEOUT)
        self.client = Client(client_side)
        attachment = Attachment(attach_side, tty, "c1", monitor_dir=None)  # type: ignore[arg-type]
        self.server_side = server_side
        self.thread = threading.Thread(target=websocket.pump, args=(attachment, server_side, b"", stdin, b"\x10\x11"),
                                       daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "pump did not return"
        for sock in (self.client.sock, self.container, self.server_side):
            sock.close()


def test_output_goes_out_as_raw_binary_messages() -> None:
    session = Session()
    session.container.sendall(stdcopy.frame(stdcopy.STDOUT, b"hello\n") + stdcopy.frame(stdcopy.STDERR, b"oops\n"))
    received = b""
    while received != b"hello\noops\n":
        event = session.client.next_event()
        assert isinstance(event, BytesMessage)
        received += event.data
    session.container.close()
    close = session.client.next_event()
    assert isinstance(close, CloseConnection)
    assert close.code == websocket.NORMAL_CLOSURE
    session.client.send(close.response())
    session.finish()


def test_text_and_binary_messages_reach_stdin() -> None:
    session = Session(tty=True)
    session.client.send(TextMessage(data="text\n"))
    session.client.send(BytesMessage(data=b"bytes\n"))
    received = b""
    while len(received) < len(b"text\nbytes\n"):
        received += session.container.recv(100)
    assert received == b"text\nbytes\n"
    session.client.send(CloseConnection(code=websocket.NORMAL_CLOSURE))
    reply = session.client.next_event()
    assert isinstance(reply, CloseConnection)
    # The client's close ends the container's input: its side of the socketpair reads the end.
    assert session.container.recv(100) == b""
    session.finish()


def test_ping_gets_pong() -> None:
    session = Session()
    session.client.send(Ping(payload=b"are you there"))
    pong = session.client.next_event()
    assert isinstance(pong, Pong)
    assert pong.payload == b"are you there"
    session.client.send(CloseConnection(code=websocket.NORMAL_CLOSURE))
    assert isinstance(session.client.next_event(), CloseConnection)
    session.finish()


def test_detach_keys_close_the_session() -> None:
    session = Session()
    session.client.send(BytesMessage(data=b"kept\x10\x11dropped"))
    assert session.container.recv(100) == b"kept"
    close = session.client.next_event()
    assert isinstance(close, CloseConnection)
    assert close.code == websocket.NORMAL_CLOSURE
    session.client.send(close.response())
    session.finish()


def test_input_ignored_without_stdin() -> None:
    session = Session(stdin=False)
    session.client.send(TextMessage(data="ignored\n"))
    session.client.send(CloseConnection(code=websocket.NORMAL_CLOSURE))
    assert isinstance(session.client.next_event(), CloseConnection)
    assert session.container.recv(100) == b""
    session.finish()


def test_unmasked_client_frame_is_protocol_error() -> None:
    session = Session()
    # A text frame "hi" without the mask bit, which a server must reject.
    session.client.sock.sendall(b"\x81\x02hi")
    close = session.client.next_event()
    assert isinstance(close, CloseConnection)
    assert close.code == 1002
    session.finish()


def test_client_gone_without_close_frame() -> None:
    session = Session()
    session.client.sock.shutdown(socket.SHUT_RDWR)
    assert session.container.recv(100) == b""
    session.finish()

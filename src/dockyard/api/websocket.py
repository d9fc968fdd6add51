"""Attach over a WebSocket: the handshake of RFC 6455 and a wsproto connection on the hijacked socket.

h11 reads the upgrade request like any other request. ``check_upgrade``
then checks its headers (RFC 6455, section 4.2.1) and ``accept_head`` builds
the ``101 Switching Protocols`` head with ``Sec-WebSocket-Accept``. After the
hijack, ``pump`` runs a wsproto connection on the socket:

- the container's output goes to the client as binary messages of raw
  bytes, without stdcopy framing, as dockerd sends them from API 1.28 on;
- text and binary messages from the client go to the container's stdin,
  where the detach key sequence ends the session;
- a ping gets a pong. A close frame from the client gets one back and ends
  the session. The end of the container's output sends a close frame with
  code 1000 (normal closure).

wsproto is imported inside the functions, because the API server's start-up
must not pay for it.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from dockyard.api import stdcopy
from dockyard.api.server import common_headers
from dockyard.errors import InvalidArgument

log = logging.getLogger(__name__)

# The only protocol version of RFC 6455, which clients send in Sec-WebSocket-Version.
WEBSOCKET_VERSION = "13"
CHUNK_SIZE = 65536
# Seconds to wait for the client's close frame after sending ours, before closing the socket anyway.
CLOSE_TIMEOUT = 5.0
NORMAL_CLOSURE = 1000


class VersionMismatch(InvalidArgument):
    """A WebSocket upgrade request with a Sec-WebSocket-Version other than 13, which gets 426 Upgrade Required."""


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def check_upgrade(method: str, headers: dict[str, str]) -> str:
    """Return the request's Sec-WebSocket-Key after checking that it requests a WebSocket.

    Raises InvalidArgument (400) for a request that is not a WebSocket
    upgrade, and VersionMismatch for a protocol version other than 13.
    """
    import base64
    import binascii

    if method != "GET":
        raise InvalidArgument(f"a WebSocket upgrade must use GET, not {method}")
    upgrade = _tokens(headers.get("upgrade", ""))
    if "websocket" not in upgrade or "upgrade" not in _tokens(headers.get("connection", "")):
        raise InvalidArgument("this endpoint needs a WebSocket upgrade request: "
                              "send Connection: Upgrade and Upgrade: websocket")
    version = headers.get("sec-websocket-version", "").strip()
    if version != WEBSOCKET_VERSION:
        raise VersionMismatch(f"unsupported Sec-WebSocket-Version {version!r}: only {WEBSOCKET_VERSION} is supported")
    key = headers.get("sec-websocket-key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        raise InvalidArgument(f"invalid Sec-WebSocket-Key {key!r}: expected 16 random bytes in base64")
    return key


def accept_head(key: str) -> bytes:
    """Return the ``101 Switching Protocols`` response head for a checked Sec-WebSocket-Key."""
    from wsproto.utilities import generate_accept_token

    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {generate_accept_token(key.encode('ascii')).decode('ascii')}",
    ]
    lines += [f"{name}: {value}" for name, value in common_headers()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Session:
    """One WebSocket on a hijacked socket; ``send`` may be called from any thread."""

    def __init__(self, sock: socket.socket, received: bytes) -> None:
        from wsproto.connection import Connection, ConnectionType

        self.sock = sock
        self.connection = Connection(ConnectionType.SERVER)
        self.lock = threading.Lock()
        # Set once the closing handshake is complete or the socket failed.
        self.closed = threading.Event()
        self.pending = received

    def send(self, event: Any) -> bool:
        """Send one wsproto event; returns False when the connection no longer accepts it."""
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        with self.lock:
            state = self.connection.state
            closing = isinstance(event, CloseConnection)
            if state is not ConnectionState.OPEN and not (closing and state is ConnectionState.REMOTE_CLOSING):
                return False
            data = self.connection.send(event)
            # Sending under the lock keeps frames whole and in order, so no frame can follow the close frame.
            try:
                self.sock.sendall(data)
            except OSError as error:
                log.debug("sending to the WebSocket client failed: %s", error)
                self.closed.set()
                return False
            return True

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake, and shut the socket down once the client replies or CLOSE_TIMEOUT passes."""
        from wsproto.events import CloseConnection

        if self.send(CloseConnection(code=code, reason=reason)) and not self.closed.wait(CLOSE_TIMEOUT):
            log.debug("the WebSocket client sent no close frame within %g s", CLOSE_TIMEOUT)
        self.shutdown()

    def shutdown(self) -> None:
        # A shutdown, unlike close, also wakes a thread blocked in recv on this socket.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def receive(self) -> list[Any] | None:
        """Return the client's next events; None once the client has closed the connection."""
        from wsproto.connection import ConnectionState

        data = self.pending
        self.pending = b""
        if not data:
            try:
                data = self.sock.recv(CHUNK_SIZE)
            except OSError as error:
                log.debug("reading from the WebSocket client failed: %s", error)
                data = b""
        with self.lock:
            if self.connection.state is ConnectionState.CLOSED:
                return None
            self.connection.receive_data(data or None)
            return list(self.connection.events())


class OutputDecoder:
    """Turn an attachment's output into raw bytes: stdcopy frames are unwrapped, a TTY's bytes pass through."""

    def __init__(self, framed: bool) -> None:
        self.framed = framed
        self.buffer = b""

    def feed(self, data: bytes) -> bytes:
        if not self.framed:
            return data
        frames, self.buffer = stdcopy.parse(self.buffer + data)
        return b"".join(payload for _, payload in frames)


def pump(attachment: Any, sock: socket.socket, received: bytes, stdin: bool, detach_keys: bytes) -> None:
    """Carry a container attachment over the WebSocket on ``sock`` until either side ends it.

    ``received`` contains the bytes the client sent after its upgrade request.
    The caller closes ``sock`` afterwards.
    """
    from dockyard.api.containers import DetachScanner

    session = Session(sock, received)
    output = threading.Thread(target=_copy_output, args=(attachment, session), daemon=True, name="ws-attach-output")
    output.start()
    ended_by_client = _copy_input(attachment, session, stdin, DetachScanner(detach_keys))
    if ended_by_client:
        # Wakes the output thread, which is blocked reading the container's output.
        attachment.stop_reading()
    output.join()
    attachment.close()


def send_output(session: Session, chunks: list[bytes]) -> None:
    """Send finished output (a log replay) as binary messages, then close the WebSocket."""
    from wsproto.events import BytesMessage

    def answer_close() -> None:
        # The client's close frame and pings still need reading while the output goes out.
        while not session.closed.is_set():
            events = session.receive()
            if events is None:
                break
            _answer_control(session, events)
        session.closed.set()

    reader = threading.Thread(target=answer_close, daemon=True, name="ws-logs-input")
    reader.start()
    for chunk in chunks:
        if chunk and not session.send(BytesMessage(data=chunk)):
            break
    session.close()
    reader.join()


def _copy_output(attachment: Any, session: Session) -> None:
    from wsproto.events import BytesMessage

    decoder = OutputDecoder(framed=not attachment.tty)
    try:
        while True:
            data = attachment.recv(CHUNK_SIZE)
            if not data:
                break
            raw = decoder.feed(data)
            if raw and not session.send(BytesMessage(data=raw)):
                return
    except OSError as error:
        log.debug("attach output for the WebSocket client ended: %s", error)
    log.debug("output of container %s ended; closing the WebSocket", attachment.container_id)
    session.close()


def _answer_control(session: Session, events: list[Any]) -> bool:
    """Reply to pings and close frames, and return True once the client has closed."""
    from wsproto.connection import ConnectionState
    from wsproto.events import CloseConnection, Ping

    for event in events:
        if isinstance(event, Ping):
            session.send(event.response())
        elif isinstance(event, CloseConnection):
            if session.connection.state is ConnectionState.REMOTE_CLOSING:
                session.send(event.response())
            elif session.connection.state is ConnectionState.OPEN:
                # wsproto reports a malformed frame (say, an unmasked one) as a close with its code.
                log.info("closing a WebSocket after a protocol error: %s (%d)", event.reason, event.code)
                session.send(CloseConnection(code=event.code, reason=event.reason or ""))
            session.closed.set()
            return True
    return False


def _copy_input(attachment: Any, session: Session, stdin: bool, scanner: Any) -> bool:
    """Copy the client's messages to the container's stdin until the client closes or detaches.

    Returns whether the client ended the session (a close frame, the
    connection closed, or the detach keys), as opposed to the output side.
    """
    from wsproto.events import BytesMessage, CloseConnection, TextMessage

    detached = False
    while True:
        events = session.receive()
        if events is None:
            return False
        for event in events:
            if detached or not stdin or not isinstance(event, (TextMessage, BytesMessage)):
                continue
            data = event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)
            forward, detached = scanner.feed(data)
            try:
                if forward:
                    attachment.write(forward)
            except OSError as error:
                log.debug("writing to the stdin of container %s failed: %s", attachment.container_id, error)
            if detached:
                log.debug("WebSocket client detached from container %s", attachment.container_id)
                session.send(CloseConnection(code=NORMAL_CLOSURE))
                # This thread goes on reading for the client's close frame, but not for ever.
                session.sock.settimeout(CLOSE_TIMEOUT)
        if _answer_control(session, events):
            if stdin and not detached:
                attachment.close_stdin()
            return True

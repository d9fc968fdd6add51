"""Exec routes: create, start (attached through a hijacked connection, or detached), resize and inspect."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from dockyard.api import stdcopy
from dockyard.api.server import Api, Hijack, Request, Response, json_response
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.engine.execs import ExecService, ExecSession

log = logging.getLogger(__name__)

CHUNK_SIZE = 65536


def _service(api: Api) -> "ExecService":
    from dockyard.engine.execs import ExecService

    return ExecService(api.engine)


def create(api: Api, request: Request) -> Response:
    from dockyard.engine.execs import EXEC_CONFIG_KEYS

    body = request.json()
    if not isinstance(body, dict):
        raise InvalidArgument("invalid exec config: the request body must be a JSON object")
    # Clients send fields that only matter to them (the docker CLI sends Detach); the engine takes the rest.
    config = {key: value for key, value in body.items() if key in EXEC_CONFIG_KEYS}
    exec_id = _service(api).create(request.params["id"], config)
    return json_response({"Id": exec_id}, status=201)


def inspect(api: Api, request: Request) -> Response:
    return json_response(_service(api).inspect(request.params["id"]))


def resize(api: Api, request: Request) -> Response:
    height = request.int_arg("h")
    width = request.int_arg("w")
    if not height or not width:
        raise InvalidArgument("h and w are required: POST /exec/{id}/resize?h=ROWS&w=COLUMNS")
    exec_id = request.params["id"]
    service = _service(api)
    service.inspect(exec_id)
    with api.lock:
        session = api.exec_sessions.get(exec_id)
        if session is None:
            # Clients resize right after the start request, often before the process has its terminal;
            # the size is applied once it has.
            api.exec_pending_sizes[exec_id] = (height, width)
            return Response(200, b"", "text/plain; charset=utf-8")
    service.resize(session, height, width)
    return Response(200, b"", "text/plain; charset=utf-8")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def pump_exec(session: "ExecSession", sock: socket.socket, received: bytes, tty: bool) -> int:
    """Copy an exec's output to the client and the client's input to the exec; return its exit code.

    The exit code is recorded (``session.wait``) before the connection ends,
    because clients inspect the exec for it as soon as the stream closes.
    """
    send_lock = threading.Lock()
    exit_code: list[int] = []

    def copy_output(fd: int, stream: int) -> None:
        while True:
            try:
                data = os.read(fd, CHUNK_SIZE)
            except OSError:
                # EIO from a terminal whose last process exited.
                return
            if not data:
                return
            try:
                with send_lock:
                    sock.sendall(data if tty else stdcopy.frame(stream, data))
            except OSError as error:
                log.debug("exec %s output to the client ended: %s", session.exec_id, error)
                # Keep reading, so that the process does not block on a full pipe.

    if tty:
        assert session.terminal is not None
        sources = [(session.terminal, stdcopy.STDOUT)]
    else:
        sources = [(fd, number) for fd, number in ((session.stdout, stdcopy.STDOUT), (session.stderr, stdcopy.STDERR))
                   if fd is not None]
    outputs = [threading.Thread(target=copy_output, args=source, daemon=True, name="exec-output")
               for source in sources]

    def finish() -> None:
        for thread in outputs:
            thread.join()
        exit_code.append(session.wait())
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    finisher = threading.Thread(target=finish, daemon=True, name="exec-finish")
    for thread in outputs:
        thread.start()
    finisher.start()
    try:
        data = received
        while True:
            target = session.terminal if tty else session.stdin
            if data and target is not None:
                try:
                    _write_all(target, data)
                except OSError as error:
                    log.debug("exec %s input ended: %s", session.exec_id, error)
                    if not tty:
                        session.close_stdin()
            data = sock.recv(CHUNK_SIZE)
            if not data:
                break
    except OSError as error:
        log.debug("exec %s input from the client ended: %s", session.exec_id, error)
    if not tty:
        session.close_stdin()
    finisher.join()
    return exit_code[0] if exit_code else -1


def start(api: Api, request: Request) -> "Response | Hijack":
    exec_id = request.params["id"]
    body = request.json()
    service = _service(api)
    record = service.inspect(exec_id)
    console_size = body.get("ConsoleSize")
    size = (int(console_size[0]), int(console_size[1])) if console_size and all(console_size) else None
    if body.get("Detach"):
        service.start(exec_id, detach=True, console_size=size)
        return Response(200, b"", None)
    tty = bool(record["ProcessConfig"]["tty"])

    def run(sock: socket.socket, received: bytes) -> None:
        try:
            session = service.start(exec_id, console_size=size)
        except DockyardError as error:
            # As dockerd does, a failure to start is reported in the stream; the exit code is in the exec's inspect.
            log.info("exec %s failed to start: %s", exec_id, error)
            message = f"{error}\r\n".encode()
            sock.sendall(message if tty else stdcopy.frame(stdcopy.STDOUT, message))
            return
        assert session is not None
        with api.lock:
            api.exec_sessions[exec_id] = session
            pending = api.exec_pending_sizes.pop(exec_id, None)
        if pending is not None and session.terminal is not None:
            session.resize(*pending)
        try:
            code = pump_exec(session, sock, received, tty)
            log.debug("exec %s exited with %d", exec_id, code)
        finally:
            with api.lock:
                api.exec_sessions.pop(exec_id, None)
                api.exec_pending_sizes.pop(exec_id, None)
            session.close()

    from dockyard.api.containers import MULTIPLEXED_STREAM, RAW_STREAM

    return Hijack(run, RAW_STREAM if tty else MULTIPLEXED_STREAM)


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/containers/{id}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("POST", "/exec/{id}/resize", resize),
    ("GET", "/exec/{id}/json", inspect),
]

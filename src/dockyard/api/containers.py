"""Container routes: create, list, inspect, the lifecycle, wait, logs, attach, stats, files and prune."""

from __future__ import annotations

import base64
import json
import logging
import socket
import stat
import threading
import time
from typing import Any, Iterator

from dockyard.api import stdcopy
from dockyard.api.server import Api, Hijack, Request, Response, Stream, empty_response, json_response, runs_inline
from dockyard.errors import Conflict, InvalidArgument

log = logging.getLogger(__name__)

MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
RAW_STREAM = "application/vnd.docker.raw-stream"
CHUNK_SIZE = 65536
# How long a wait for next-exit gives the engine's wait call to reach the
# monitor before the response headers go out. Clients such as the docker CLI
# start the container once they have the headers, so a wait registered later
# could miss a short-lived container's exit. The other conditions have no such
# race: not-running checks the recorded state, and the monitor keeps recent
# exit codes for removed.
# NOTE: an estimate, because the engine does not report when its wait is registered.
WAIT_HEAD_START = 0.2
# Docker's default detach sequence for attach with stdin: ctrl-p, ctrl-q.
DEFAULT_DETACH_KEYS = b"\x10\x11"


def _name(request: Request) -> str:
    return request.params["id"]


def _stream_type(tty: bool) -> str:
    return RAW_STREAM if tty else MULTIPLEXED_STREAM


# -- create, list, inspect ---------------------------------------------------------------


def create(api: Api, request: Request) -> Response:
    body = request.json()
    if not isinstance(body, dict):
        raise InvalidArgument("invalid container config: the request body must be a JSON object")
    container_id = api.engine.containers.create(body, name=request.arg("name") or None)
    return json_response({"Id": container_id, "Warnings": []}, status=201)


# The last listing sent and its JSON body. A client that polls the list gets
# the same body while nothing changes, and comparing the summaries costs less
# than encoding them.
_last_listing: tuple[list[dict], bytes] = ([], b"[]\n")


# A listing without sizes reads the state database and the monitors' pidfds
# only, so it runs on the event loop's thread. With ``size`` it walks every
# container's writable layer, which can take seconds.
# NOTE: a listing that finds a dead monitor also adopts or cleans up its containers inline, which is slower.
@runs_inline(when=lambda request: not request.flag("size"))
def list_containers(api: Api, request: Request) -> Response:
    global _last_listing

    limit = request.int_arg("limit")
    summaries = api.engine.containers.list(all=request.flag("all"), filters=request.filters(),
                                           limit=limit if limit and limit > 0 else None, size=request.flag("size"))
    previous, body = _last_listing
    if summaries != previous:
        response = json_response(summaries)
        _last_listing = (summaries, response.body)
        return response
    return Response(200, body, "application/json")


def inspect(api: Api, request: Request) -> Response:
    return json_response(api.engine.containers.inspect(_name(request), size=request.flag("size")))


# -- lifecycle -------------------------------------------------------------------------------


def _status(api: Api, name: str) -> str:
    return api.engine.containers.inspect(name)["State"]["Status"]


def start(api: Api, request: Request) -> Response:
    name = _name(request)
    if _status(api, name) == "running":
        return empty_response(304)
    api.engine.containers.start(name)
    return empty_response()


def stop(api: Api, request: Request) -> Response:
    name = _name(request)
    if _status(api, name) not in ("running", "paused", "restarting"):
        return empty_response(304)
    api.engine.containers.stop(name, timeout=request.int_arg("t"), signal=request.arg("signal") or None)
    return empty_response()


def restart(api: Api, request: Request) -> Response:
    api.engine.containers.restart(_name(request), timeout=request.int_arg("t"))
    return empty_response()


def kill(api: Api, request: Request) -> Response:
    api.engine.containers.kill(_name(request), request.arg("signal") or "KILL")
    return empty_response()


def pause(api: Api, request: Request) -> Response:
    api.engine.containers.pause(_name(request))
    return empty_response()


def unpause(api: Api, request: Request) -> Response:
    api.engine.containers.unpause(_name(request))
    return empty_response()


def rename(api: Api, request: Request) -> Response:
    new_name = request.arg("name")
    if not new_name:
        raise InvalidArgument("name is required: POST /containers/{id}/rename?name=NEW_NAME")
    api.engine.containers.rename(_name(request), new_name)
    return empty_response()


def update(api: Api, request: Request) -> Response:
    warnings = api.engine.containers.update(_name(request), request.json())
    return json_response({"Warnings": warnings})


def remove(api: Api, request: Request) -> Response:
    api.engine.containers.remove(_name(request), force=request.flag("force"), volumes=request.flag("v"))
    return empty_response()


def prune(api: Api, request: Request) -> Response:
    result = api.engine.containers.prune(request.filters())
    return json_response({"ContainersDeleted": result["ContainersDeleted"] or None,
                          "SpaceReclaimed": result["SpaceReclaimed"]})


def wait(api: Api, request: Request) -> Stream:
    """Send the headers once the wait is under way, and the ``WaitResponse`` when the condition is met."""
    containers = api.engine.containers
    condition = request.arg("condition") or "not-running"
    container_id = containers.resolve(_name(request))
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["result"] = containers.wait(container_id, condition)
        except BaseException as error:  # noqa: BLE001 - reported in the response
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="wait").start()
    # The short wait for the other conditions still turns an early error (an invalid condition) into an HTTP error.
    if done.wait(WAIT_HEAD_START if condition == "next-exit" else 0.05) and "error" in outcome:
        raise outcome["error"]

    def body() -> Iterator[bytes]:
        done.wait()
        if "error" in outcome:
            log.info("wait for container %s failed: %s", container_id, outcome["error"])
            response = {"StatusCode": -1, "Error": {"Message": str(outcome["error"])}}
        else:
            result = outcome["result"]
            error = result.get("Error")
            if isinstance(error, str):
                error = {"Message": error}
            response = {"StatusCode": result["StatusCode"], "Error": error}
        yield json.dumps(response).encode() + b"\n"

    return Stream(chunks=body(), headers_first=True)


# -- output ---------------------------------------------------------------------------------


def _unix_time(value: str | None) -> float | None:
    """Parse ``since`` or ``until``: Unix seconds with an optional fraction; 0 or empty means no bound."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from dockyard.engine.logs import parse_time

        try:
            return parse_time(value)
        except (ValueError, InvalidArgument):
            raise InvalidArgument(f"invalid time {value!r}: expected Unix seconds or an RFC 3339 time") from None
    return seconds or None


def logs(api: Api, request: Request) -> Stream:
    stdout = request.flag("stdout")
    stderr = request.flag("stderr")
    if not (stdout or stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_text = request.arg("tail") or "all"
    if tail_text == "all":
        tail = None
    else:
        tail = request.int_arg("tail")
        if tail is not None and tail < 0:
            tail = None
    timestamps = request.flag("timestamps")
    containers = api.engine.containers
    name = _name(request)
    tty = bool(containers.inspect(name)["Config"].get("Tty"))
    entries = containers.logs(name, follow=request.flag("follow"), tail=tail, since=_unix_time(request.arg("since")),
                              until=_unix_time(request.arg("until")), stdout=stdout, stderr=stderr)

    def chunks() -> Iterator[bytes]:
        for entry in entries:
            data = entry.data
            if timestamps:
                data = entry.time.encode() + b" " + data
            yield data if tty else stdcopy.frame(stdcopy.STREAM_NUMBERS[entry.stream], data)

    return Stream(chunks=chunks(), content_type=_stream_type(tty), headers_first=True)


class DetachScanner:
    """Find the detach key sequence in a client's input, holding back bytes that may start it."""

    def __init__(self, sequence: bytes) -> None:
        self.sequence = sequence
        self.matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Return the bytes to forward and whether the sequence was completed."""
        forward = bytearray()
        for byte in data:
            if self.sequence and byte == self.sequence[self.matched]:
                self.matched += 1
                if self.matched == len(self.sequence):
                    return bytes(forward), True
                continue
            if self.matched:
                forward += self.sequence[:self.matched]
                self.matched = 0
                if byte == self.sequence[0]:
                    self.matched = 1
                    continue
            forward.append(byte)
        return bytes(forward), False


def parse_detach_keys(text: str | None) -> bytes:
    """Parse Docker's detach keys, such as ``ctrl-p,ctrl-q`` or ``a,ctrl-@``, into bytes."""
    if text is None:
        return DEFAULT_DETACH_KEYS
    if text == "":
        return b""
    keys = bytearray()
    for part in text.split(","):
        part = part.strip()
        if part.startswith("ctrl-") and len(part) == 6:
            letter = part[5]
            if letter == "@":
                keys.append(0)
            elif letter.isalpha():
                keys.append(ord(letter.lower()) - ord("a") + 1)
            elif letter in "[\\]^_":
                keys.append(ord(letter) - 64)
            else:
                raise InvalidArgument(f"invalid detach keys {text!r}: unknown key {part!r}")
        elif len(part) == 1:
            keys.append(ord(part))
        else:
            raise InvalidArgument(f"invalid detach keys {text!r}: unknown key {part!r}")
    return bytes(keys)


def pump_attachment(attachment: Any, sock: socket.socket, received: bytes, stdin: bool, detach_keys: bytes) -> None:
    """Copy the container's output to the client and, with ``stdin``, the client's input to the container.

    The output thread ends the connection when the container's output ends.
    When the client closes its side for writing, the container's stdin is
    closed and the output still flows. The detach sequence in the input ends
    the connection and leaves the container running.
    """
    def copy_output() -> None:
        try:
            while True:
                data = attachment.recv(CHUNK_SIZE)
                if not data:
                    break
                sock.sendall(data)
        except OSError as error:
            log.debug("attach output to the client ended: %s", error)
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    output = threading.Thread(target=copy_output, daemon=True, name="attach-output")
    output.start()
    scanner = DetachScanner(detach_keys)
    detached = False
    try:
        data = received
        while True:
            if data and stdin:
                forward, detached = scanner.feed(data)
                if forward:
                    attachment.write(forward)
                if detached:
                    break
            data = sock.recv(CHUNK_SIZE)
            if not data:
                break
        if stdin and not detached:
            attachment.close_stdin()
    except OSError as error:
        log.debug("attach input from the client ended: %s", error)
    if detached:
        log.debug("client detached from container %s", attachment.container_id)
        attachment.stop_reading()
    output.join()
    attachment.close()


def attach(api: Api, request: Request) -> Hijack:
    containers = api.engine.containers
    name = _name(request)
    stdin = request.flag("stdin")
    stdout = request.flag("stdout")
    stderr = request.flag("stderr")
    replay = request.flag("logs")
    tty = bool(containers.inspect(name)["Config"].get("Tty"))
    if not request.flag("stream"):
        if not replay:
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        entries = list(containers.logs(name, stdout=stdout, stderr=stderr))

        def send_logs(sock: socket.socket, received: bytes) -> None:
            for entry in entries:
                sock.sendall(entry.data if tty else stdcopy.frame(stdcopy.STREAM_NUMBERS[entry.stream], entry.data))

        return Hijack(send_logs, _stream_type(tty))
    detach_keys = parse_detach_keys(request.arg("detachKeys"))
    attachment = containers.attach(name, stdin=stdin, stdout=stdout, stderr=stderr, logs=replay)
    return Hijack(lambda sock, received: pump_attachment(attachment, sock, received, stdin, detach_keys),
                  _stream_type(tty))


def attach_websocket(api: Api, request: Request) -> "Response | Hijack":
    """Attach over a WebSocket: raw output bytes out as binary messages, client messages in to stdin.

    From API 1.42 on, the stdin, stdout and stderr parameters pick the
    streams. Before that version dockerd attached all three, and so does this.
    """
    from dockyard.api import websocket

    try:
        key = websocket.check_upgrade(request.method, request.headers)
    except websocket.VersionMismatch as error:
        response = json_response({"message": str(error)}, status=426)
        response.headers.append(("Sec-WebSocket-Version", websocket.WEBSOCKET_VERSION))
        return response
    containers = api.engine.containers
    name = _name(request)
    if request.version >= (1, 42):
        stdin, stdout, stderr = request.flag("stdin"), request.flag("stdout"), request.flag("stderr")
    else:
        stdin = stdout = stderr = True
    replay = request.flag("logs")
    head = websocket.accept_head(key)
    if not request.flag("stream"):
        if not replay:
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        chunks = [entry.data for entry in containers.logs(name, stdout=stdout, stderr=stderr)]
        return Hijack(lambda sock, received: websocket.send_output(websocket.Session(sock, received), chunks),
                      head=head, status=101)
    detach_keys = parse_detach_keys(request.arg("detachKeys"))
    attachment = containers.attach(name, stdin=stdin, stdout=stdout, stderr=stderr, logs=replay)
    return Hijack(lambda sock, received: websocket.pump(attachment, sock, received, stdin, detach_keys),
                  head=head, status=101)


def resize(api: Api, request: Request) -> Response:
    height = request.int_arg("h")
    width = request.int_arg("w")
    if not height or not width:
        raise InvalidArgument("h and w are required: POST /containers/{id}/resize?h=ROWS&w=COLUMNS")
    api.engine.containers.resize(_name(request), height, width)
    return Response(200, b"", "text/plain; charset=utf-8")


# -- processes and stats ------------------------------------------------------------------


def top(api: Api, request: Request) -> Response:
    from dockyard.engine.stats import StatsService

    return json_response(StatsService(api.engine).top(_name(request), request.arg("ps_args") or None))


def stats(api: Api, request: Request) -> "Response | Stream":
    from dockyard.engine.stats import SAMPLE_INTERVAL, StatsService

    service = StatsService(api.engine)
    name = _name(request)
    if not request.flag("stream", default=True):
        if request.flag("one-shot"):
            return json_response(service.sample(name))
        return json_response(service.stats(name))
    first = service.sample(name)

    def samples() -> Iterator[bytes]:
        previous = first
        yield json.dumps(previous).encode() + b"\n"
        while True:
            time.sleep(SAMPLE_INTERVAL)
            try:
                current = service.stats(name, previous)
            except Conflict:
                return  # the container stopped
            yield json.dumps(current).encode() + b"\n"
            previous = current

    return Stream(chunks=samples())


# -- files ---------------------------------------------------------------------------------

# Go's os.FileMode type bits, which docker's path stat uses in place of st_mode's.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20


def go_file_mode(st_mode: int) -> int:
    """Convert a POSIX ``st_mode`` to Go's ``os.FileMode``, as ``X-Docker-Container-Path-Stat`` carries it."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    mode |= {
        stat.S_IFDIR: GO_MODE_DIR,
        stat.S_IFLNK: GO_MODE_SYMLINK,
        stat.S_IFBLK: GO_MODE_DEVICE,
        stat.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        stat.S_IFIFO: GO_MODE_NAMED_PIPE,
        stat.S_IFSOCK: GO_MODE_SOCKET,
    }.get(kind, 0)
    if st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


def _path_stat_header(api: Api, name: str, path: str) -> tuple[str, str]:
    from dockyard.engine.filesystem import FilesystemService

    found = FilesystemService(api.engine).stat_path(name, path)
    found["mode"] = go_file_mode(found["mode"])
    encoded = base64.b64encode(json.dumps(found).encode()).decode("ascii")
    return "X-Docker-Container-Path-Stat", encoded


def _archive_path(request: Request) -> str:
    path = request.arg("path")
    if not path:
        raise InvalidArgument("path is required: /containers/{id}/archive?path=PATH")
    return path


def archive_head(api: Api, request: Request) -> Response:
    header = _path_stat_header(api, _name(request), _archive_path(request))
    return Response(200, b"", None, [header])


def archive_get(api: Api, request: Request) -> Stream:
    from dockyard.engine.filesystem import FilesystemService

    name = _name(request)
    path = _archive_path(request)
    header = _path_stat_header(api, name, path)
    service = FilesystemService(api.engine)
    return Stream(write=lambda out: service.archive(name, path, out), content_type="application/x-tar",
                  headers=[header])


def archive_put(api: Api, request: Request) -> Response:
    from dockyard.engine.filesystem import FilesystemService

    FilesystemService(api.engine).put_archive(_name(request), _archive_path(request), request.body,
                                               keep_owner=request.flag("copyUIDGID"))
    return Response(200, b"", None)


def changes(api: Api, request: Request) -> Response:
    from dockyard.engine.filesystem import FilesystemService

    return json_response(FilesystemService(api.engine).diff(_name(request)) or None)


def export(api: Api, request: Request) -> Stream:
    from dockyard.engine.filesystem import FilesystemService

    name = _name(request)
    api.engine.containers.inspect(name)
    service = FilesystemService(api.engine)
    return Stream(write=lambda out: service.export(name, out), content_type="application/x-tar")


ROUTES = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_containers),
    ("POST", "/containers/prune", prune),
    ("GET", "/containers/{id}/json", inspect),
    ("POST", "/containers/{id}/start", start),
    ("POST", "/containers/{id}/stop", stop),
    ("POST", "/containers/{id}/restart", restart),
    ("POST", "/containers/{id}/kill", kill),
    ("POST", "/containers/{id}/pause", pause),
    ("POST", "/containers/{id}/unpause", unpause),
    ("POST", "/containers/{id}/rename", rename),
    ("POST", "/containers/{id}/update", update),
    ("POST", "/containers/{id}/wait", wait),
    ("GET", "/containers/{id}/logs", logs),
    ("POST", "/containers/{id}/attach", attach),
    ("GET", "/containers/{id}/attach/ws", attach_websocket),
    ("POST", "/containers/{id}/resize", resize),
    ("GET", "/containers/{id}/top", top),
    ("GET", "/containers/{id}/stats", stats),
    ("GET", "/containers/{id}/changes", changes),
    ("GET", "/containers/{id}/export", export),
    ("HEAD", "/containers/{id}/archive", archive_head),
    ("GET", "/containers/{id}/archive", archive_get),
    ("PUT", "/containers/{id}/archive", archive_put),
    ("DELETE", "/containers/{id}", remove),
]

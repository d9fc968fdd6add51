"""The shared container monitor: one process per state root that supervises every running container.

The monitor is started on demand by the first command that starts a
container (``ensure_running``), detaches from it (double fork and
``setsid``), and exits ``IDLE_TIMEOUT`` seconds after its last container and
client are gone. It is a child subreaper, so the containers' init processes,
whose first parent (the runtime's set-up process) exits, become its children.

One ``selectors`` loop serves:

- the control socket ``<monitor dir>/control.sock``: one JSON request line
  per connection (``start``, ``stop``, ``kill``, ``wait``, ``attach``,
  ``resize``, ``adopt``, ``forget``, ``update``, ``ping``, ``shutdown``) and
  one JSON reply line. ``attach`` turns the connection into a stream: the container's
  output goes to the client (stdcopy-framed without a TTY, raw with one) and
  what the client sends goes to the container's stdin;
- each container's stdout and stderr FIFOs (``stdout.fifo`` and
  ``stderr.fifo`` in its bundle), or the PTY master it received over the
  runtime's console socket: output goes to the json-file log and to attached
  clients;
- SIGCHLD through ``signal.set_wakeup_fd``: reap, record the exit code
  (128+N for signal N) in state.db, unmount the root, apply the restart
  policy or ``AutoRemove``;
- pidfds of containers adopted from a monitor that died (their exit status is
  read from /proc while the process is a zombie, and is unknown otherwise).
  The adopting monitor reopens their output FIFOs by path, so their output
  keeps reaching the log.

The engine writes everything the monitor needs to start a container into
``<bundle>/monitor.json``, including the name of the OCI runtime to run it
with (``engine/runtimes.py``). To keep the memory per container small, this
module imports only the standard library, the runtime and the engine's
state, logs, rootfs and runtimes modules, and those only in the monitor process.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import heapq
import json
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, Callable

from dockyard.errors import ContainerError, DockyardError, RuntimeFailure

log = logging.getLogger(__name__)

IDLE_TIMEOUT = float(os.environ.get("DOCKYARD_MONITOR_IDLE_TIMEOUT", "10"))
START_TIMEOUT = 10.0
# Docker's restart backoff: 100 ms, doubled after each restart up to one
# minute, and reset when the container ran for at least 10 seconds.
RESTART_DELAY_FIRST = 0.1
RESTART_DELAY_MAX = 60.0
RESTART_RESET_AFTER = 10.0
# An attached client that falls this far behind is disconnected rather than
# letting the monitor's memory grow.
CLIENT_BUFFER_LIMIT = 8 * 1024 * 1024
# How long to keep reading a container's pipes after its init exited.
DRAIN_TIMEOUT = 2.0
UNKNOWN_EXIT_CODE = 255
RECENT_EXIT_TTL = 60.0
STDOUT, STDERR = 1, 2
# A container without a TTY writes its stdout and stderr into these FIFOs in
# its bundle directory rather than into anonymous pipes. A monitor that adopts
# the container after the first one died can then open them again by path.
STDOUT_FIFO, STDERR_FIFO = "stdout.fifo", "stderr.fifo"
TIOCSWINSZ = 0x5414


# -- paths and the client side (used by the engine) ---------------------------


def monitor_dir(root: Path, run_root: Path) -> Path:
    """Return the run-root directory of the monitor of ``root``; roots that share a run root get their own."""
    import zlib

    # CRC-32 rather than hashlib, whose import (OpenSSL) costs every command a
    # few milliseconds; the key only has to tell apart the roots on one machine.
    text = str(Path(root).resolve()).encode()
    key = f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"
    return Path(run_root) / "monitors" / key


def _short_path(directory: Path, name: str) -> tuple[str, int]:
    """Return a path to ``directory/name`` short enough for a unix socket, and a descriptor to close.

    A socket path is limited to 107 bytes; going through ``/proc/self/fd``
    of an open directory keeps it short whatever the run root is.
    """
    descriptor = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{descriptor}/{name}", descriptor


def connect(directory: Path, timeout: float | None = 30.0) -> socket.socket:
    """Connect to the monitor's control socket; raises OSError when no monitor listens."""
    path, descriptor = _short_path(directory, "control.sock")
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(timeout)
        try:
            connection.connect(path)
        except OSError:
            connection.close()
            raise
        return connection
    finally:
        os.close(descriptor)


def read_line(connection: socket.socket, limit: int = 1024 * 1024) -> tuple[bytes, bytes]:
    """Read one line; returns it without the newline, and any bytes received after it."""
    buffer = b""
    while b"\n" not in buffer:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the monitor closed the connection before replying")
        buffer += chunk
        if len(buffer) > limit:
            raise ConnectionError("the monitor's reply line is too long")
    line, _, rest = buffer.partition(b"\n")
    return line, rest


def call(directory: Path, request: dict[str, Any], timeout: float | None = 30.0) -> dict[str, Any]:
    """Send one request and return the reply; raises the error the monitor reported."""
    with connect(directory, timeout) as connection:
        connection.sendall(json.dumps(request).encode() + b"\n")
        line, _ = read_line(connection)
    reply = json.loads(line)
    raise_for(reply)
    return reply


def raise_for(reply: dict[str, Any]) -> None:
    if reply.get("ok"):
        return
    from dockyard import errors

    kind = getattr(errors, reply.get("kind", ""), None)
    message = reply.get("error", "the monitor failed without a message")
    if isinstance(kind, type) and issubclass(kind, DockyardError):
        try:
            raise kind(message)
        except TypeError:
            pass
    raise ContainerError(message)


def read_pidfile(directory: Path) -> int:
    try:
        return int((directory / "pid").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def is_monitor_process(pid: int) -> bool:
    """Tell whether ``pid`` is a live monitor process (not a zombie, not a reused PID)."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat[stat.rindex(")") + 2] in "ZX":
        return False
    # A monitor zygote (engine/zygote.py) has a monitor's command line but another name.
    if stat[stat.index("(") + 1 : stat.rindex(")")] == "dockyard-zygote":
        return False
    return b"dockyard.engine.monitor" in command


def ensure_running(root: Path, run_root: Path) -> int:
    """Start the monitor of ``root`` unless it runs; returns its PID.

    A lock file orders concurrent callers, so two commands never start two
    monitors; the monitor also holds ``alive.lock`` for its whole life.
    """
    from dockyard.engine.locks import file_lock

    directory = monitor_dir(root, run_root)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with file_lock(directory / "start.lock"):
        pid = read_pidfile(directory)
        if is_monitor_process(pid) and _answers(directory):
            return pid
        _start(root, run_root, directory)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            pid = read_pidfile(directory)
            if is_monitor_process(pid) and _answers(directory):
                return pid
            time.sleep(0.02)
    log_file = directory / "monitor.log"
    tail = log_file.read_text()[-2000:] if log_file.exists() else ""
    raise RuntimeFailure(f"the container monitor for {root} did not start within {START_TIMEOUT} s; its log:\n{tail}")


def _answers(directory: Path) -> bool:
    try:
        call(directory, {"op": "ping"}, timeout=5.0)
        return True
    except (OSError, ValueError, DockyardError):
        return False


def _start(root: Path, run_root: Path, directory: Path) -> None:
    """Start the monitor: forked by the CLI server's zygote if there is one, else with exec.

    Either way the new monitor writes a byte to a pipe once it serves, and
    this waits for that byte, or for the pipe's end when the monitor exits
    first. The caller then checks that a monitor responds to a ping.
    """
    from dockyard.engine import zygote

    log_fd = os.open(directory / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        for spawn in (zygote.request, _spawn):
            ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
            try:
                try:
                    started = spawn(root, run_root, log_fd, ready_write)
                finally:
                    os.close(ready_write)
                if started and _wait_ready(ready_read):
                    return
            finally:
                os.close(ready_read)
            if is_monitor_process(read_pidfile(directory)) and _answers(directory):
                return
    finally:
        os.close(log_fd)


def _wait_ready(fd: int) -> bool:
    """Wait for a new monitor's ready byte; False at the pipe's end or after START_TIMEOUT."""
    import select

    if not select.select([fd], [], [], START_TIMEOUT)[0]:
        return False
    return os.read(fd, 1) == b"1"


def _spawn(root: Path, run_root: Path, log_fd: int, ready_fd: int) -> bool:
    """Start the monitor with exec, detached from this process."""
    from dockyard.detach import run_detached

    command = [sys.executable, "-m", "dockyard.engine.monitor", "--root", str(root), "--run-root", str(run_root),
               "--ready-fd", str(ready_fd)]
    log.debug("starting the container monitor: %s", " ".join(command))
    null_fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)

    def become_monitor() -> None:
        # Above the standard streams, which are replaced next. The exec keeps the number.
        ready_copy = fcntl.fcntl(ready_fd, fcntl.F_DUPFD, 3)
        command[-1] = str(ready_copy)
        log_copy = fcntl.fcntl(log_fd, fcntl.F_DUPFD_CLOEXEC, 3)
        os.dup2(null_fd, 0)
        os.dup2(log_copy, 1)
        os.dup2(log_copy, 2)
        os.chdir("/")
        os.execv(sys.executable, command)

    try:
        run_detached(become_monitor)
    finally:
        os.close(null_fd)
    return True


# -- the monitor process ----------------------------------------------------------------------


class Client:
    """A control connection: a pending request, a waiter, or an attached stream."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = bytearray()
        self.mode = "request"  # request, waiting, attached, closing
        self.container: "Supervised | None" = None
        self.streams: tuple[bool, bool, bool] = (False, False, False)  # stdin, stdout, stderr
        self.condition = "next-exit"

    def fileno(self) -> int:
        return self.sock.fileno()


class Supervised:
    """One container in the monitor: running, waiting for a restart, or only attached to."""

    def __init__(self, container_id: str, spec: dict[str, Any]) -> None:
        self.id = container_id
        self.spec = spec
        self.pid = 0
        self.pidfd: int | None = None
        self.outputs: dict[int, int] = {}  # fd -> stream number
        self.stdin_fd: int | None = None
        self.pty_fd: int | None = None
        self.stdin_buffer = bytearray()
        self.close_stdin_pending = False
        self.writer: Any = None
        self.clients: list[Client] = []
        self.waiters: list[Client] = []
        self.stopping = False
        self.kill_timer: list | None = None
        self.restart_timer: list | None = None
        self.restart_count = int(spec.get("restart_count", 0))
        self.restart_delay = 0.0
        self.started = 0.0

    @property
    def tty(self) -> bool:
        return bool(self.spec.get("tty"))

    @property
    def running(self) -> bool:
        return self.pid > 0


def _now_rfc3339() -> str:
    from dockyard.engine.logs import format_time

    return format_time(time.time_ns())


class Monitor:
    def __init__(self, root: Path, run_root: Path) -> None:
        self.root = Path(root)
        self.run_root = Path(run_root)
        self.directory = monitor_dir(root, run_root)
        self.selector = selectors.DefaultSelector()
        self.watches: dict[int, list[Callable[[], None] | None]] = {}
        self.containers: dict[str, Supervised] = {}
        self.clients: set[Client] = set()
        self.timers: list[list] = []
        self.timer_sequence = 0
        self.idle_since = time.monotonic()
        self.done = False
        # Exit codes of containers that exited recently, so that a ``wait``
        # arriving just after an AutoRemove still gets the code.
        self.recent_exits: dict[str, tuple[int, float]] = {}
        # Network services by configuration file, made when the first container with a network starts.
        self.network_services: dict[str | None, Any] = {}
        # The write end of the starting process's ready pipe, until the monitor listens (see serve).
        self.ready_fd: int | None = None
        from dockyard.engine.state import State

        self.state = State(self.root / "state.db")

    # -- the loop ---------------------------------------------------------------

    def watch(self, fd: int, reader: Callable[[], None] | None = None, writer: Callable[[], None] | None = None) -> None:
        """Set the read and write handlers of ``fd``; with neither, the descriptor is no longer watched."""
        handlers = [reader, writer]
        events = (selectors.EVENT_READ if handlers[0] else 0) | (selectors.EVENT_WRITE if handlers[1] else 0)
        if fd in self.watches:
            if events:
                self.selector.modify(fd, events)
            else:
                self.selector.unregister(fd)
        elif events:
            self.selector.register(fd, events)
        if events:
            self.watches[fd] = handlers
        else:
            self.watches.pop(fd, None)

    def unwatch(self, fd: int) -> None:
        if self.watches.pop(fd, None) is not None:
            self.selector.unregister(fd)

    def set_writer(self, fd: int, writer: Callable[[], None] | None) -> None:
        current = self.watches.get(fd, [None, None])
        self.watch(fd, current[0], writer)

    def timer(self, delay: float, callback: Callable[[], None]) -> list:
        self.timer_sequence += 1
        entry = [time.monotonic() + delay, self.timer_sequence, callback]
        heapq.heappush(self.timers, entry)
        return entry

    @staticmethod
    def cancel(entry: list | None) -> None:
        if entry is not None:
            entry[2] = None

    def serve(self, ready_fd: int | None = None) -> None:
        """Serve until idle, SIGTERM or a shutdown request; write a byte to ``ready_fd`` and close it once listening.

        A monitor that exits before it listens closes ``ready_fd`` without writing.
        """
        self.ready_fd = ready_fd
        try:
            self._serve()
        finally:
            self.report_ready(False)

    def report_ready(self, listening: bool) -> None:
        """Write the ready byte if ``listening``, and close the ready pipe; later calls do nothing."""
        fd, self.ready_fd = self.ready_fd, None
        if fd is None:
            return
        try:
            if listening:
                os.write(fd, b"1")
        finally:
            os.close(fd)

    def _serve(self) -> None:
        libc_prctl_subreaper()
        self.directory.mkdir(parents=True, exist_ok=True)
        alive = os.open(self.directory / "alive.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # A monitor that is exiting holds the lock for a moment after closing
        # its socket, so wait a little before deciding that another one runs.
        deadline = time.monotonic() + START_TIMEOUT / 2
        while True:
            try:
                fcntl.flock(alive, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log.error("another monitor has the lock %s, so this monitor exits", self.directory / "alive.lock")
                    os.close(alive)
                    return
                time.sleep(0.01)
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda number, frame: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda number, frame: setattr(self, "done", True))
        self.watch(wake_read, lambda: self.on_signal(wake_read))

        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        socket_path = self.directory / "control.sock"
        socket_path.unlink(missing_ok=True)
        short, descriptor = _short_path(self.directory, "control.sock")
        try:
            listener.bind(short)
        finally:
            os.close(descriptor)
        os.chmod(socket_path, 0o600)
        listener.listen(64)
        listener.setblocking(False)
        self.watch(listener.fileno(), lambda: self.accept(listener))
        (self.directory / "pid").write_text(f"{os.getpid()}\n")
        log.info("monitor %d serving %s", os.getpid(), socket_path)
        self.report_ready(True)
        try:
            self.loop()
        finally:
            log.info("monitor %d exiting", os.getpid())
            self.unwatch(listener.fileno())
            listener.close()
            socket_path.unlink(missing_ok=True)
            if read_pidfile(self.directory) == os.getpid():
                (self.directory / "pid").unlink(missing_ok=True)
            os.close(alive)

    def loop(self) -> None:
        while not self.done:
            timeout = None
            while self.timers and self.timers[0][2] is None:
                heapq.heappop(self.timers)
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            if self.idle():
                remaining = self.idle_since + IDLE_TIMEOUT - time.monotonic()
                if remaining <= 0:
                    return
                timeout = remaining if timeout is None else min(timeout, remaining)
            else:
                self.idle_since = time.monotonic()
            for key, events in self.selector.select(timeout):
                handlers = self.watches.get(key.fd)
                if handlers is None:
                    continue
                if events & selectors.EVENT_READ and handlers[0]:
                    self.guard(handlers[0])
                handlers = self.watches.get(key.fd)
                if handlers is not None and events & selectors.EVENT_WRITE and handlers[1]:
                    self.guard(handlers[1])
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                entry = heapq.heappop(self.timers)
                if entry[2] is not None:
                    self.guard(entry[2])

    def guard(self, handler: Callable[[], None]) -> None:
        """Run a handler; an error is logged and the loop goes on serving the other containers."""
        try:
            handler()
        except Exception:  # noqa: BLE001 - one container's failure must not stop the others' monitor
            log.exception("monitor handler failed")

    def idle(self) -> bool:
        return not self.containers and not self.clients

    # -- control connections -----------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            client = Client(sock)
            self.clients.add(client)
            self.watch(client.fileno(), functools.partial(self.client_readable, client))

    def client_readable(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if client.mode == "attached":
            if data:
                self.to_stdin(client, data)
            else:
                self.attach_input_closed(client)
            return
        if not data:
            self.drop(client)
            return
        if client.mode != "request":
            return
        client.inbuf += data
        if b"\n" not in client.inbuf:
            if len(client.inbuf) > 1024 * 1024:
                self.drop(client)
            return
        line, _, rest = client.inbuf.partition(b"\n")
        client.inbuf = b""
        try:
            request = json.loads(line)
            self.dispatch(client, request, rest)
        except DockyardError as error:
            self.reply(client, {"ok": False, "error": str(error), "kind": type(error).__name__}, close=True)
        except (ValueError, KeyError, TypeError, OSError) as error:
            log.exception("request failed")
            self.reply(client, {"ok": False, "error": f"monitor request failed: {error}"}, close=True)

    def send(self, client: Client, data: bytes) -> None:
        if client.mode == "closed":
            return
        client.outbuf += data
        if len(client.outbuf) > CLIENT_BUFFER_LIMIT:
            log.warning("dropping a client that is %d bytes behind", len(client.outbuf))
            self.drop(client)
            return
        self.flush(client)

    def flush(self, client: Client) -> None:
        while client.outbuf:
            try:
                sent = client.sock.send(client.outbuf)
            except BlockingIOError:
                break
            except OSError:
                self.drop(client)
                return
            del client.outbuf[:sent]
        if client.outbuf:
            self.set_writer(client.fileno(), lambda: self.flush(client))
        else:
            if client.fileno() in self.watches:
                self.set_writer(client.fileno(), None)
            if client.mode == "closing":
                self.drop(client)

    def reply(self, client: Client, message: dict[str, Any], close: bool = True) -> None:
        if close:
            client.mode = "closing"
        self.send(client, json.dumps(message).encode() + b"\n")

    def drop(self, client: Client) -> None:
        if client.mode == "closed":
            return
        self.unwatch(client.fileno())
        client.mode = "closed"
        client.sock.close()
        self.clients.discard(client)
        container = client.container
        if container is not None:
            if client in container.clients:
                container.clients.remove(client)
            if client in container.waiters:
                container.waiters.remove(client)
            self.maybe_forget(container)

    def finish_stream(self, client: Client) -> None:
        """Close an attached client once what is queued for it is sent."""
        client.mode = "closing"
        self.flush(client)

    def dispatch(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        """Run one control request; each ``op`` has a method ``op_<name>``."""
        op = str(request.get("op"))
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ContainerError(f"unknown monitor request {op!r}")
        handler(client, request, rest)

    def op_ping(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        self.reply(client, {"ok": True, "pid": os.getpid()})

    def op_shutdown(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        if any(container.running for container in self.containers.values()):
            raise ContainerError("the monitor still supervises running containers; stop them first")
        self.reply(client, {"ok": True})
        self.done = True

    def op_start(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        container = self.supervised(request["id"])
        attach = request.get("attach")
        if attach:
            self.attach(client, container, attach, rest, reply=False)
        if not container.running:
            self.cancel(container.restart_timer)
            container.restart_timer = None
            container.stopping = False
            try:
                self.start(container)
            except BaseException:
                # Keep no entry for a container that did not start, or the monitor never becomes idle.
                self.maybe_forget(container)
                raise
        message = {"ok": True, "pid": container.pid}
        if attach:
            # The connection stays open as the attach stream.
            self.send(client, json.dumps(message).encode() + b"\n")
        else:
            self.reply(client, message)

    def op_attach(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        self.attach(client, self.supervised(request["id"]), request, rest, reply=True)

    def op_stop(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        self.stop(client, request["id"], int(request.get("signal", signal.SIGTERM)), request.get("timeout"))

    def op_kill(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        container = self.containers.get(request["id"])
        if container is None or not container.running:
            raise ContainerError(f"Container {request['id']} is not running")
        if request.get("manual"):
            container.stopping = True
        self.signal(container, int(request["signal"]))
        self.reply(client, {"ok": True})

    def op_wait(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        container_id = request["id"]
        container = self.containers.get(container_id)
        condition = request.get("condition", "next-exit")
        recent = self.recent_exits.get(container_id)
        if container is None and recent is not None and condition != "next-exit":
            removed = self.state.container(container_id) is None
            self.reply(client, {"ok": True, "running": False, "StatusCode": recent[0], "Error": None, "removed": removed})
            return
        if container is None or (condition == "not-running" and not container.running
                                 and container.restart_timer is None):
            self.reply(client, {"ok": True, "running": False})
            return
        client.mode = "waiting"
        client.condition = condition
        client.container = container
        container.waiters.append(client)

    def op_resize(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        container = self.containers.get(request["id"])
        if container is None or container.pty_fd is None:
            raise ContainerError(f"container {request['id']} has no terminal to resize")
        size = struct.pack("HHHH", int(request["height"]), int(request["width"]), 0, 0)
        fcntl.ioctl(container.pty_fd, TIOCSWINSZ, size)
        self.reply(client, {"ok": True})

    def op_adopt(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        self.adopt(request["id"], int(request["pid"]), int(request["start_time"]))
        self.reply(client, {"ok": True})

    def op_update(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        """Replace a container's restart policy, which decides about its next exit (the engine rewrote monitor.json too)."""
        container = self.containers.get(request["id"])
        if container is not None:
            container.spec["restart"] = request["restart"]
            log.info("container %s: restart policy is now %s", container.id, request["restart"])
        self.reply(client, {"ok": True})

    def op_forget(self, client: Client, request: dict[str, Any], rest: bytes) -> None:
        """Drop a container the engine is removing: cancel a pending restart and release its waiters."""
        container = self.containers.get(request["id"])
        if container is not None:
            if container.running:
                raise ContainerError(f"cannot forget container {request['id']}: it is running")
            self.cancel(container.restart_timer)
            container.restart_timer = None
            self.release(container, removed=True)
        self.reply(client, {"ok": True})

    # -- containers -------------------------------------------------------------------

    def load_spec(self, container_id: str) -> dict[str, Any]:
        from dockyard.engine.rootfs import bundle_dir

        path = bundle_dir(self.run_root, container_id) / "monitor.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise ContainerError(f"container {container_id} has no start description at {path}") from None

    def supervised(self, container_id: str) -> Supervised:
        container = self.containers.get(container_id)
        if container is None:
            container = Supervised(container_id, self.load_spec(container_id))
            row = self.state.container(container_id)
            if row is not None:
                container.restart_count = row["restart_count"]
            self.containers[container_id] = container
        return container

    def attach(self, client: Client, container: Supervised, options: dict[str, Any], rest: bytes, reply: bool) -> None:
        client.mode = "attached"
        client.container = container
        client.streams = (bool(options.get("stdin")), bool(options.get("stdout")), bool(options.get("stderr")))
        container.clients.append(client)
        if reply:
            self.send(client, json.dumps({"ok": True, "tty": container.tty}).encode() + b"\n")
        if rest:
            self.to_stdin(client, rest)

    def start(self, container: Supervised) -> None:
        """Mount the root, create the container with the runtime, connect its stdio, start it."""
        from dockyard.engine import logs, rootfs

        spec = self.load_spec(container.id)
        container.spec = spec
        runtime = self.runtime(container)
        bundle = rootfs.bundle_dir(self.run_root, container.id)
        target = rootfs.mount(self.root, self.run_root, container.id, spec["lowers"])
        for entry in spec.get("copy_up") or []:
            try:
                rootfs.copy_up(target, entry["source"], Path(entry["target"]))
            except OSError as error:
                log.error("container %s: filling volume %s from the image failed: %s", container.id, entry["target"], error)
        # The runtime state may be left from a run whose exit this monitor did not see.
        self.runtime_delete(container)
        child_fds: list[int] = []
        own_fds: list[int] = []
        console_dir = None
        listener = None
        try:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            child_fds.append(null)
            stdin = stdout = stderr = null
            if spec.get("tty"):
                import tempfile

                # A socket path must be short; the run root may be long.
                console_dir = tempfile.mkdtemp(prefix="dockyard-console-")
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(os.path.join(console_dir, "c.sock"))
                listener.listen(1)
            else:
                out_read, out_write = create_output_fifo(bundle / STDOUT_FIFO)
                own_fds.append(out_read)
                child_fds.append(out_write)
                err_read, err_write = create_output_fifo(bundle / STDERR_FIFO)
                own_fds.append(err_read)
                child_fds.append(err_write)
                stdout, stderr = out_write, err_write
                if spec.get("open_stdin"):
                    in_read, in_write = os.pipe()
                    own_fds.append(in_write)
                    child_fds.append(in_read)
                    stdin = in_read
            network_started = False

            def start_network(init_pid: int) -> None:
                nonlocal network_started
                self.network(spec).start(container.id, init_pid, spec.get("network_body"))
                network_started = True

            # The built-in runtime calls start_network while the init sets up
            # its mounts; other runtimes leave it to the code below.
            pid = runtime.create(
                container.id, bundle, stdin=stdin, stdout=stdout, stderr=stderr,
                console_socket=os.path.join(console_dir, "c.sock") if console_dir else None,
                on_init=start_network if spec.get("network") else None,
            )
            for fd in child_fds:
                os.close(fd)
            child_fds = []
            if listener is not None:
                listener.settimeout(START_TIMEOUT)
                connection, _ = listener.accept()
                with connection:
                    _, fds, _, _ = socket.recv_fds(connection, 1024, 1)
                if not fds:
                    raise RuntimeFailure(f"container {container.id}: the runtime sent no terminal")
                container.pty_fd = fds[0]
                own_fds.append(fds[0])
            if spec.get("network") and not network_started:
                # The init waits on the exec FIFO, so the container's process
                # starts with its interfaces, ports and DNS server in place.
                start_network(pid)
            runtime.start(container.id)
        except BaseException:
            for fd in child_fds + own_fds:
                os.close(fd)
            container.pty_fd = None
            self.runtime_delete(container)
            self.stop_network(container)
            rootfs.unmount(self.run_root, container.id)
            raise
        finally:
            if listener is not None:
                listener.close()
            if console_dir is not None:
                import shutil

                shutil.rmtree(console_dir, ignore_errors=True)

        container.pid = pid
        container.started = time.monotonic()
        if container.writer is None:
            container.writer = logs.LogWriter(Path(spec["log_path"]), spec["log_max_size"], spec["log_max_file"])
        self.connect_stdio(container, own_fds)
        self.state.update_container(
            container.id, status="running", pid=pid, started_at=_now_rfc3339(), error="", exit_code=0,
            oom_killed=0, monitor_pid=os.getpid(), restart_count=container.restart_count, manually_stopped=0,
        )
        log.info("container %s started with pid %d", container.id, pid)

    def connect_stdio(self, container: Supervised, own_fds: list[int]) -> None:
        """Watch a started container's output (pipes, or the PTY master) and its stdin."""
        spec = container.spec
        if container.pty_fd is not None:
            os.set_blocking(container.pty_fd, False)
            container.outputs = {container.pty_fd: STDOUT}
            container.stdin_fd = container.pty_fd if spec.get("open_stdin") else None
            self.watch(container.pty_fd, functools.partial(self.output_readable, container, container.pty_fd))
        else:
            container.outputs = {own_fds[0]: STDOUT, own_fds[1]: STDERR}
            for fd in own_fds[:2]:
                os.set_blocking(fd, False)
                self.watch(fd, functools.partial(self.output_readable, container, fd))
            container.stdin_fd = own_fds[2] if len(own_fds) > 2 else None
            if container.stdin_fd is not None:
                os.set_blocking(container.stdin_fd, False)
        if container.stdin_buffer and container.stdin_fd is not None:
            # Input that an attached client sent before the container started.
            self.set_writer(container.stdin_fd, lambda: self.write_stdin(container))

    def network(self, spec: dict[str, Any]) -> Any:
        """Return the network service of the configuration file a container was created with."""
        config_path = spec.get("config_path")
        service = self.network_services.get(config_path)
        if service is None:
            import dataclasses

            from dockyard import config
            from dockyard.network.service import NetworkService

            loaded = config.load(path=Path(config_path) if config_path else None, root=self.root)
            loaded = dataclasses.replace(loaded, root=self.root, run_root=self.run_root)
            service = NetworkService(loaded, self.state)
            self.network_services[config_path] = service
        return service

    def stop_network(self, container: Supervised) -> None:
        """Undo the network service's ``start`` for a container that exited or failed to start."""
        if not container.spec.get("network"):
            return
        try:
            self.network(container.spec).stop(container.id)
        except DockyardError as error:
            log.error("stopping the network of container %s failed: %s", container.id, error)

    def runtime(self, container: Supervised) -> Any:
        """Return the OCI runtime the container was created with (``runtime`` in its monitor.json)."""
        from dockyard.engine import runtimes

        return runtimes.get(container.spec.get("runtime"), self.run_root)

    def runtime_delete(self, container: Supervised) -> None:
        """Delete the container's runtime state, if there is any; a failure is logged."""
        try:
            runtime = self.runtime(container)
            if runtime.exists(container.id):
                runtime.delete(container.id, force=True)
        except DockyardError as error:
            log.error("deleting the runtime state of container %s failed: %s", container.id, error)

    def adopt(self, container_id: str, pid: int, start_time: int) -> None:
        """Supervise a running container whose monitor died: watch its init with a pidfd."""
        from dockyard.runtime.state import process_start_time

        container = self.supervised(container_id)
        if container.running:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is None or process_start_time(pid) != start_time:
            if pidfd is not None:
                os.close(pidfd)
            self.maybe_forget(container)
            raise ContainerError(f"container {container_id}: its process {pid} is gone, nothing to adopt")
        container.pid = pid
        container.pidfd = pidfd
        container.started = time.monotonic()
        self.watch(pidfd, lambda: self.adopted_exited(container))
        if container.spec.get("network"):
            # The host sockets that reserved its published ports died with the old monitor.
            self.network(container.spec).hold_ports(container_id)
        error = self.reconnect_output(container)
        self.state.update_container(container_id, monitor_pid=os.getpid(), **({"error": error} if error else {}))
        log.warning("adopted container %s (pid %d) after its monitor died", container_id, pid)

    def reconnect_output(self, container: Supervised) -> str:
        """Reopen an adopted container's output FIFOs and resume its log; returns an error for ``State.Error``.

        The container has its FIFOs open for reading and writing, so its
        writes neither fail nor get lost while no monitor reads. The pipe
        buffer (64 KiB by default on Linux) keeps them, and a container that
        fills it blocks until it is adopted. Its stdin pipe and a PTY master
        were open only in the dead monitor, and cannot be reopened.
        """
        from dockyard.engine import logs, rootfs

        bundle = rootfs.bundle_dir(self.run_root, container.id)
        spec = container.spec
        if spec.get("tty") or not (bundle / STDOUT_FIFO).exists():
            lost_at = _now_rfc3339()
            log.warning("container %s: its terminal was lost with the monitor that died; no output reaches the log "
                        "after %s", container.id, lost_at)
            return (f"the output after {lost_at} was lost because the container monitor stopped; "
                    "a container with a TTY cannot be reconnected")
        own_fds = [open_fifo_reader(bundle / name) for name in (STDOUT_FIFO, STDERR_FIFO)]
        if container.writer is None:
            container.writer = logs.LogWriter(Path(spec["log_path"]), spec["log_max_size"], spec["log_max_file"])
        self.connect_stdio(container, own_fds)
        return ""

    def adopted_exited(self, container: Supervised) -> None:
        assert container.pidfd is not None
        self.unwatch(container.pidfd)
        status = _zombie_exit_status(container.pid)
        os.close(container.pidfd)
        container.pidfd = None
        if status is None:
            self.exited(container, UNKNOWN_EXIT_CODE,
                        "the exit status is unknown: the container was adopted after its monitor died")
        else:
            self.exited(container, _exit_code(status))

    def on_signal(self, fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def reap(self) -> None:
        by_pid = {container.pid: container for container in self.containers.values() if container.running}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            container = by_pid.get(pid)
            if container is not None and container.pidfd is None:
                self.exited(container, _exit_code(status))
            elif container is None:
                # A child that is no container's init: a port proxy or DNS server
                # of the network service, which its stop() no longer needs to reap.
                log.debug("reaped process %d (status %d), which is no container's init", pid, status)

    def output_readable(self, container: Supervised, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as error:
            # EIO: the terminal's other side closed, which is how a PTY ends.
            if error.errno != errno.EIO:
                log.error("reading output of container %s failed: %s", container.id, error)
            data = b""
        if not data:
            self.close_output(container, fd)
            return
        self.deliver(container, container.outputs[fd], data)

    def deliver(self, container: Supervised, stream: int, data: bytes) -> None:
        container.writer.write("stdout" if stream == STDOUT else "stderr", data)
        for client in list(container.clients):
            if not client.streams[stream]:
                continue
            if container.tty:
                self.send(client, data)
            else:
                self.send(client, struct.pack(">BxxxL", stream, len(data)) + data)

    def close_output(self, container: Supervised, fd: int) -> None:
        stream = container.outputs.pop(fd, None)
        self.unwatch(fd)
        if fd == container.pty_fd:
            container.pty_fd = None
            if container.stdin_fd == fd:
                container.stdin_fd = None
        os.close(fd)
        if stream is not None and container.writer is not None:
            container.writer.close_stream("stdout" if stream == STDOUT else "stderr")

    def to_stdin(self, client: Client, data: bytes) -> None:
        container = client.container
        if container is None or not client.streams[0]:
            return
        container.stdin_buffer += data
        if container.stdin_fd is not None:
            self.set_writer(container.stdin_fd, lambda: self.write_stdin(container))

    def write_stdin(self, container: Supervised) -> None:
        fd = container.stdin_fd
        if fd is None:
            return
        while container.stdin_buffer:
            try:
                written = os.write(fd, container.stdin_buffer)
            except BlockingIOError:
                return
            except OSError:
                # The container closed its stdin: drop what it will never read.
                container.stdin_buffer.clear()
                break
            del container.stdin_buffer[:written]
        self.set_writer(fd, None)
        if container.close_stdin_pending:
            self.close_stdin(container)

    def attach_input_closed(self, client: Client) -> None:
        """The client ended its input; with StdinOnce the container's stdin closes too.

        A client that shut down only its sending side (``close_stdin``) still
        gets output. One that closed the connection is dropped at once, so
        that a client gone before the container started does not keep the
        monitor alive.
        """
        container = client.container
        if _peer_closed(client.sock):
            self.drop(client)
        else:
            self.unwatch_reader(client)
        if container is None or not client.streams[0]:
            return
        if container.spec.get("stdin_once") and not container.tty:
            container.close_stdin_pending = True
            if not container.stdin_buffer:
                self.close_stdin(container)

    def unwatch_reader(self, client: Client) -> None:
        handlers = self.watches.get(client.fileno())
        if handlers is not None:
            self.watch(client.fileno(), None, handlers[1])
        if not client.streams[1] and not client.streams[2]:
            self.drop(client)

    def close_stdin(self, container: Supervised) -> None:
        container.close_stdin_pending = False
        fd = container.stdin_fd
        if fd is None or fd == container.pty_fd:
            return
        self.unwatch(fd)
        os.close(fd)
        container.stdin_fd = None

    # -- stopping and exits ----------------------------------------------------------------

    def signal(self, container: Supervised, number: int) -> None:
        log.info("sending signal %d to container %s", number, container.id)
        try:
            if container.pidfd is not None:
                signal.pidfd_send_signal(container.pidfd, number)
            else:
                self.runtime(container).kill(container.id, number)
        except (ProcessLookupError, RuntimeFailure) as error:
            log.info("signal %d to container %s not delivered: %s", number, container.id, error)

    def stop(self, client: Client, container_id: str, number: int, timeout: Any) -> None:
        container = self.containers.get(container_id)
        if container is None or not container.running:
            if container is not None and container.restart_timer is not None:
                self.cancel(container.restart_timer)
                container.restart_timer = None
                self.state.update_container(container_id, status="exited", manually_stopped=1)
                self.release(container)
            self.reply(client, {"ok": True, "running": False})
            return
        container.stopping = True
        self.signal(container, number)
        # Paused containers get the signal once thawed, as in Docker.
        self.thaw(container)
        # A stop that already sent SIGKILL (rm -f, kill) needs no second one after the timeout.
        if timeout is not None and int(timeout) >= 0 and number != signal.SIGKILL:
            self.cancel(container.kill_timer)
            container.kill_timer = self.timer(float(timeout), lambda: self.signal(container, signal.SIGKILL))
        client.mode = "waiting"
        client.condition = "next-exit"
        client.container = container
        container.waiters.append(client)

    def thaw(self, container: Supervised) -> None:
        if container.pidfd is not None:
            return
        try:
            runtime = self.runtime(container)
            current = runtime.state(container.id)
            if current is not None and current.status == "paused":
                runtime.resume(container.id)
        except DockyardError as error:
            log.error("thawing container %s failed: %s", container.id, error)

    def drain(self, container: Supervised) -> None:
        """Read what is left in the output pipes after the init exited, for up to DRAIN_TIMEOUT."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while container.outputs and time.monotonic() < deadline:
            import select

            ready, _, _ = select.select(list(container.outputs), [], [], max(0.0, deadline - time.monotonic()))
            for fd in ready:
                self.output_readable(container, fd)
        for fd in list(container.outputs):
            self.close_output(container, fd)

    def exited(self, container: Supervised, code: int, error: str = "") -> None:
        from dockyard.engine import rootfs

        log.info("container %s exited with code %d", container.id, code)
        container.pid = 0
        self.cancel(container.kill_timer)
        container.kill_timer = None
        self.drain(container)
        if container.stdin_fd is not None:
            self.close_stdin(container)
        oom_killed = _oom_killed(container.id) if container.pidfd is None else False
        self.runtime_delete(container)
        self.stop_network(container)
        rootfs.unmount(self.run_root, container.id)

        ran = time.monotonic() - container.started
        restart = self.should_restart(container, code)
        self.state.update_container(
            container.id, status="restarting" if restart else "exited", pid=0, exit_code=code,
            finished_at=_now_rfc3339(), oom_killed=int(oom_killed), error=error,
            manually_stopped=int(container.stopping),
        )
        now = time.monotonic()
        self.recent_exits = {key: value for key, value in self.recent_exits.items() if now - value[1] < RECENT_EXIT_TTL}
        self.recent_exits[container.id] = (code, now)
        reply = {"ok": True, "running": False, "StatusCode": code, "Error": error or None}
        for client in list(container.waiters):
            if client.condition != "removed":
                container.waiters.remove(client)
                self.reply(client, reply)
        for client in list(container.clients):
            container.clients.remove(client)
            self.finish_stream(client)

        if restart:
            if ran >= RESTART_RESET_AFTER or container.restart_delay == 0:
                container.restart_delay = RESTART_DELAY_FIRST
            else:
                container.restart_delay = min(container.restart_delay * 2, RESTART_DELAY_MAX)
            log.info("restarting container %s in %.1f s", container.id, container.restart_delay)
            container.restart_timer = self.timer(container.restart_delay, lambda: self.restart(container))
            return
        if container.spec.get("auto_remove"):
            self.auto_remove(container, reply)
            return
        self.release(container)

    def should_restart(self, container: Supervised, code: int) -> bool:
        policy = container.spec.get("restart") or {}
        name = policy.get("Name") or "no"
        if container.stopping or name == "no":
            return False
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure":
            maximum = int(policy.get("MaximumRetryCount") or 0)
            return code != 0 and (maximum == 0 or container.restart_count < maximum)
        return False

    def restart(self, container: Supervised) -> None:
        container.restart_timer = None
        if self.state.container(container.id) is None:
            self.release(container, removed=True)
            return
        container.restart_count += 1
        try:
            self.start(container)
        except DockyardError as error:
            log.error("restarting container %s failed: %s", container.id, error)
            self.state.update_container(container.id, status="exited", error=str(error),
                                        restart_count=container.restart_count)
            self.release(container)

    def auto_remove(self, container: Supervised, reply: dict[str, Any]) -> None:
        from dockyard.engine import rootfs, volumes

        log.info("removing container %s (AutoRemove)", container.id)
        try:
            if container.spec.get("network"):
                self.network(container.spec).release(container.id)
            rootfs.remove_files(self.root, self.run_root, container.id)
            self.state.delete_container(container.id)
            for name in container.spec.get("anonymous_volumes") or []:
                directory = volumes.volume_path(self.root, name).parent
                if directory.exists():
                    import shutil

                    shutil.rmtree(directory, ignore_errors=True)
                self.state.delete_volume(name)
        except DockyardError as error:
            log.error("removing container %s failed: %s", container.id, error)
        self.release(container, removed=True, reply=reply)

    def release(self, container: Supervised, removed: bool = False, reply: dict[str, Any] | None = None) -> None:
        """Forget a container that is not running: close its log and reply to its remaining waiters."""
        if container.writer is not None:
            container.writer.close()
            container.writer = None
        if removed:
            message = reply or {"ok": True, "running": False, "removed": True}
            for client in list(container.waiters):
                container.waiters.remove(client)
                self.reply(client, message)
        self.maybe_forget(container)

    def maybe_forget(self, container: Supervised) -> None:
        if container.running or container.restart_timer is not None:
            return
        if container.clients or container.waiters:
            return
        if container.writer is not None:
            container.writer.close()
            container.writer = None
        self.containers.pop(container.id, None)


def create_output_fifo(path: Path) -> tuple[int, int]:
    """Create a container's output FIFO; returns the monitor's non-blocking read end and the container's end.

    Any FIFO left at ``path`` is replaced, so that a background process of an
    earlier run cannot write into the new run's output. The container's end
    is opened for reading and writing. While the container has it open, its
    writes never fail with EPIPE, even when no monitor reads.
    """
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o600)
    read_end = open_fifo_reader(path)
    try:
        return read_end, os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        os.close(read_end)
        raise


def open_fifo_reader(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


def _peer_closed(sock: socket.socket) -> bool:
    """Tell whether the other end closed the connection, rather than only shutting down its writing side."""
    import select

    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _zombie_exit_status(pid: int) -> int | None:
    """Return the wait status of a zombie process from /proc (field 52 of stat), or None once it is reaped."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] != "Z" or len(fields) < 50:
        return None
    return int(fields[49])


def _oom_killed(container_id: str) -> bool:
    """Tell whether the kernel's OOM killer killed a process of the container's memory cgroup."""
    for path in (f"/sys/fs/cgroup/memory/dockyard/{container_id}/memory.oom_control",
                 f"/sys/fs/cgroup/dockyard/{container_id}/memory.events"):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
    return False


def libc_prctl_subreaper() -> None:
    from dockyard.runtime import libc

    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)


def run(root: Path, run_root: Path, ready_fd: int | None = None) -> None:
    """Run as the monitor of ``root``: log to stderr, and serve until idle, SIGTERM or a shutdown request."""
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("DOCKYARD_DEBUG") == "1" else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    Monitor(root, run_root).serve(ready_fd)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dockyard.engine.monitor")
    parser.add_argument("--root", type=Path)
    parser.add_argument("--run-root", type=Path)
    parser.add_argument("--ready-fd", type=int, help="a pipe to write one byte to once serving")
    parser.add_argument("--zygote", metavar="ADDRESS", help="be a zygote that forks monitors (engine/zygote.py)")
    parser.add_argument("--parent-fd", type=int, help="with --zygote: exit at this pipe's end of file")
    args = parser.parse_args(argv)
    if args.zygote:
        from dockyard.engine import zygote

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.parent_fd is None:
            parser.error("--zygote needs --parent-fd")
        zygote.serve(args.zygote, args.parent_fd)
        return 0
    if args.root is None or args.run_root is None:
        parser.error("--root and --run-root are required")
    run(args.root, args.run_root, args.ready_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())

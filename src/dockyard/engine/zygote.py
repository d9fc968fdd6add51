"""A warm process that forks container monitors, so that starting one costs a fork, not a Python start.

A monitor started with exec spends about 60 ms starting Python and importing
the runtime before it can run its first container, and a command that finds
no monitor running waits for all of it. The CLI server (``cli/server.py``)
therefore starts a zygote next to itself::

    python -m dockyard.engine.monitor --zygote ADDRESS --parent-fd N

The zygote imports everything a monitor uses and listens on the abstract
unix socket ``ADDRESS`` (``SOCK_SEQPACKET``). The server's command children
find the address in ``ADDRESS`` below. A request is one message: JSON with the
root, the run root and the requester's environment, plus two descriptors,
the monitor's log file and the write end of its ready pipe. The zygote forks,
and the child calls ``setsid`` and forks again. The grandchild takes the
requester's environment and becomes the monitor, which writes to the ready
pipe once it listens (``Monitor.serve``). When no zygote takes the request,
``monitor.ensure_running`` starts the monitor with exec.

Forked monitors keep the zygote's command line, which names
``dockyard.engine.monitor`` as an exec'd monitor's does. The zygote itself is
recognised by its process name, ``dockyard-zygote`` (``NAME``).

The zygote exits when the read end of the pipe ``N`` reaches end of file,
that is once the server and every command it forked are gone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import struct
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# The process name (/proc/PID/comm) of a zygote; forked monitors take MONITOR_NAME.
NAME = b"dockyard-zygote"
MONITOR_NAME = b"dockyard-mon"
REQUEST_LIMIT = 1 << 20
# The zygote's address in the CLI server and its command children; None elsewhere.
ADDRESS: str | None = None
# The server's end of the pipe that keeps the zygote alive: open, never written, closed when the server exits.
_lifeline: int | None = None
# The modules a monitor imports lazily, imported once here so that every forked monitor has them.
PRELOADED = (
    "dockyard.engine.state", "dockyard.engine.logs", "dockyard.engine.rootfs", "dockyard.engine.runtimes",
    "dockyard.engine.volumes", "dockyard.engine.locks", "dockyard.config", "dockyard.runtime.container",
    "dockyard.runtime.state", "dockyard.runtime.libc", "dockyard.network.service", "dataclasses", "shutil",
    "tempfile", "select",
)


def start(address: str, log_fd: int | None = None) -> None:
    """Start a zygote for ``address`` next to the calling server, and make this process's children use it.

    The zygote writes its own log lines to ``log_fd`` when it is given.
    """
    global ADDRESS, _lifeline
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.set_inheritable(read_end, True)
            if log_fd is not None:
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
            os.execv(sys.executable, [sys.executable, "-P", "-m", "dockyard.engine.monitor", "--zygote", address,
                                      "--parent-fd", str(read_end)])
        finally:
            os._exit(127)
    os.close(read_end)
    _lifeline = write_end
    ADDRESS = address
    log.info("started monitor zygote %d on %s", pid, address)


def request(root: Path, run_root: Path, log_fd: int, ready_fd: int) -> bool:
    """Ask this process's zygote to fork the monitor of ``root``; False when there is no zygote to ask.

    The monitor writes to ``ready_fd`` once it serves; the caller waits for that.
    """
    if ADDRESS is None:
        return False
    body = json.dumps({"root": str(root), "run_root": str(run_root), "environment": dict(os.environ)}).encode()
    if len(body) > REQUEST_LIMIT:
        return False
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        connection.settimeout(2.0)
        connection.connect("\0" + ADDRESS)
        socket.send_fds(connection, [body], [log_fd, ready_fd])
        # The zygote replies after it has forked. A zygote that exits first closes the
        # connection instead, and the caller then starts the monitor with exec.
        return connection.recv(1) == b"1"
    except OSError as error:
        log.debug("monitor zygote %s did not take the request: %s", ADDRESS, error)
        return False
    finally:
        connection.close()


def serve(address: str, parent_fd: int) -> None:
    """Preload the monitor's modules, then fork a monitor per request until ``parent_fd`` reaches end of file."""
    import importlib
    import selectors
    import signal

    from dockyard.runtime import libc

    libc.set_process_name(NAME)
    # The server ignores SIGCHLD, and an ignored signal stays ignored across exec;
    # the zygote waits for each monitor's first child.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except ImportError:
            log.warning("the monitor zygote could not preload %s", name, exc_info=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        listener.bind("\0" + address)
    except OSError as error:
        log.info("monitor zygote for %s not started: %s", address, error)
        return
    listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(parent_fd, selectors.EVENT_READ)
    log.info("monitor zygote %d ready on %s", os.getpid(), address)
    while True:
        events = selector.select()
        if any(key.fd == parent_fd for key, _ in events):
            log.info("monitor zygote %d exits: its server is gone", os.getpid())
            return
        connection, _ = listener.accept()
        with connection:
            _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid != os.getuid():
                log.warning("monitor zygote: rejected a request from uid %d", uid)
                continue
            try:
                body, fds, _flags, _address = socket.recv_fds(connection, REQUEST_LIMIT, 2)
            except OSError as error:
                log.warning("monitor zygote: unreadable request: %s", error)
                continue
            try:
                if len(fds) != 2:
                    log.warning("monitor zygote: a request came with %d descriptors instead of 2", len(fds))
                    continue
                fork_monitor(json.loads(body), fds, [listener, connection, selector], parent_fd)
                connection.sendall(b"1")
            except Exception:
                log.exception("monitor zygote: the request failed")
            finally:
                for fd in fds:
                    os.close(fd)


def fork_monitor(request: dict, fds: list[int], owned: list, parent_fd: int) -> None:
    """Fork a detached process that serves as the monitor of the request's root."""
    from dockyard.detach import run_detached

    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    run_detached(lambda: _become_monitor(request, fds, owned, parent_fd))


def _become_monitor(request: dict, fds: list[int], owned: list, parent_fd: int) -> None:
    import signal
    import traceback

    from dockyard.engine import monitor
    from dockyard.runtime import libc

    for thing in owned:
        thing.close()
    os.close(parent_fd)
    # Above the standard streams, which are replaced next.
    log_fd, ready_fd = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in fds)
    null_fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in (null_fd, log_fd, *fds):
        os.close(fd)
    os.chdir("/")
    libc.set_process_name(MONITOR_NAME)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(request["environment"])
    try:
        monitor.run(Path(request["root"]), Path(request["run_root"]), ready_fd)
        code = 0
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)

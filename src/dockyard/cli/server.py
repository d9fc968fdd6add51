"""The CLI server: a warm process that runs ``dockyard`` commands in forked children.

``dockyard.cli.client`` starts it in the background (``python -m
dockyard.cli.server NAME``) when no server accepts connections on the
abstract unix socket NAME. The server claims that name first, so that a second client cannot start
a second server, then imports the command modules and the engine and builds
the full argument parser. From then on a command costs a fork instead of a
Python start-up and the imports.

For each connection the server checks that the peer runs as its own uid
(``SO_PEERCRED``: an abstract socket has no file permissions), reads the
request (``client.encode_request``) and the file descriptors passed with it,
and forks. The child moves into its own process group, to which the client
forwards signals. It puts the client's descriptors on 0, 1 and 2, changes to
the client's working directory, and takes its umask and environment. Then it
reopens ``sys.stdin``, ``sys.stdout`` and ``sys.stderr`` on the new
descriptors (line buffered on a terminal, as Python's start-up does) and runs
``dockyard.cli.main.main`` with the prebuilt parser. It sends its pid first
and its exit code last.

The server declines a request, and the client runs the command itself, when
the variables of the client's environment that the server's imports may
depend on (``client.SERVER_VARIABLES``) differ from the server's, or when a source file of the ``dockyard`` package changed
since the server started; it then exits, so that the next client starts a
server with the new code. It exits too after ``IDLE_TIMEOUT`` seconds without
a request (``DOCKYARD_CLI_SERVER_IDLE_TIMEOUT``, default 30).

The server opens no state database and starts no threads, so forking it is
safe. Its children are reaped by the kernel (``SIGCHLD`` ignored); each child
restores ``SIGCHLD`` before it runs the command.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import signal
import socket
import struct
import sys
import threading
import traceback

from dockyard.cli import client

log = logging.getLogger("dockyard.cli.server")

IDLE_TIMEOUT = float(os.environ.get("DOCKYARD_CLI_SERVER_IDLE_TIMEOUT", "30"))
REQUEST_TIMEOUT = 5.0
REQUEST_LIMIT = 16 * 1024 * 1024
# Modules most commands need beyond the command modules that build_parser imports.
WARM_MODULES = (
    "dockyard.config", "dockyard.engine", "dockyard.engine.containers", "dockyard.engine.state",
    "dockyard.engine.images", "dockyard.engine.monitor", "dockyard.engine.ocispec", "dockyard.engine.rootfs",
    "dockyard.engine.logs", "dockyard.engine.volumes", "dockyard.engine.events", "dockyard.engine.locks",
    "dockyard.engine.filesystem", "dockyard.engine.execs", "dockyard.image.store", "dockyard.image.reference",
    "dockyard.image.manifest", "dockyard.runtime.spec", "dockyard.cli.render", "dockyard.build.builder",
    "dockyard.build.dockerfile", "dockyard.build.context", "dockyard.build.cache", "dockyard.cli.container_io",
    "dockyard.engine.runtimes", "dockyard.image.layer", "dockyard.storage.snapshots", "dockyard.network.service",
    "dockyard.engine.pull", "dockyard.engine.push", "dockyard.registry.client", "dockyard.image.tarreader",
    "dockyard.build.copying", "dockyard.build.layers",
    "sqlite3", "json", "hashlib", "tomllib", "urllib3",
)

WARM_COMMAND_LINES = (
    ["run", "--rm", "-d", "-it", "-e", "A=b", "-p", "1:2", "--name", "x", "image", "true"],
    ["build", "-q", "-t", "name", "-f", "Dockerfile", "."],
    ["ps", "-a", "--format", "json"],
    ["exec", "-i", "container", "true"],
)


class Request:
    """A decoded request: argv, environment, umask and the passed descriptors."""

    def __init__(self, data: bytes, fds: list[int]) -> None:
        header_size = struct.calcsize("!4sBIII")
        magic, present, self.umask, argc, envc = struct.unpack("!4sBIII", data[:header_size])
        if magic != client.REQUEST_MAGIC:
            raise ValueError(f"unknown request magic {magic!r}")
        items = [item.decode("utf-8", "surrogateescape") for item in data[header_size:].split(b"\0")]
        if argc + envc == 0:
            items = []
        if len(items) != argc + envc:
            raise ValueError(f"the request has {len(items)} items, not {argc + envc}")
        self.argv = items[:argc]
        self.environment = dict(item.split("=", 1) for item in items[argc:])
        expected = bin(present).count("1") + 1
        if len(fds) != expected:
            raise ValueError(f"the request passed {len(fds)} file descriptors, not {expected}")
        self.stdio = {fd: fds.pop(0) for fd in client.STDIO_FDS if present & (1 << fd)}
        self.cwd = fds.pop(0)

    def close(self) -> None:
        for fd in [*self.stdio.values(), self.cwd]:
            os.close(fd)


def code_fingerprint() -> tuple[int, int]:
    """Return the newest modification time and the number of the package's .py files."""
    import dockyard

    latest = count = 0
    stack = [os.path.dirname(dockyard.__file__)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        stack.append(entry.path)
                elif entry.name.endswith(".py"):
                    count += 1
                    latest = max(latest, entry.stat().st_mtime_ns)
    return latest, count


def warm_up() -> object:
    """Import what commands use, and return the full argument parser after parsing a few command lines.

    argparse compiles regular expressions while it parses, and the ``re``
    module caches them, so parsing here fills that cache for every child.
    """
    from dockyard.cli import main as cli_main

    parser = cli_main.build_parser()
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for argv in WARM_COMMAND_LINES:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pass
    from dockyard.image import reference

    reference.parse(f"registry.example:5000/a/b:tag@sha256:{'0' * 64}")
    return parser


def read_request(connection: socket.socket) -> Request:
    data, fds, _, _ = socket.recv_fds(connection, 65536, 8)
    try:
        if len(data) < 4:
            raise ValueError("the request ended before its length")
        (size,) = struct.unpack("!I", data[:4])
        if size > REQUEST_LIMIT:
            raise ValueError(f"the request is {size} bytes, more than {REQUEST_LIMIT}")
        data = data[4:]
        while len(data) < size:
            chunk = connection.recv(min(size - len(data), 1 << 20))
            if not chunk:
                raise ValueError("the request ended early")
            data += chunk
        return Request(data, fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def open_log() -> None:
    """Log the server's own events to ``cli-server.log`` in the run root, when that can be written.

    The root logger is left alone: each child configures it for its command.
    """
    directory = os.environ.get("DOCKYARD_RUN_ROOT", "/run/dockyard")
    try:
        os.makedirs(directory, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(os.path.join(directory, "cli-server.log"))
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def log_stream_fd() -> int | None:
    """Return the descriptor of the server's log file, if it has one."""
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler) and handler.stream is not None:
            return handler.stream.fileno()
    return None


def serve(address: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + address)
    except OSError:
        # Another server is bound to the name already.
        listener.close()
        return
    listener.listen(64)
    open_log()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    parser = warm_up()
    from dockyard.engine import zygote

    zygote.start(f"{address}/zygote/{os.getpid()}", log_stream_fd())
    environment = client.server_environment(os.environ)
    fingerprint = code_fingerprint()
    listener.settimeout(IDLE_TIMEOUT)
    log.info("server %d for %s ready", os.getpid(), address)
    with listener:
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                log.info("server %d exits after %.0f s without a command", os.getpid(), IDLE_TIMEOUT)
                return
            with connection:
                pid, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
                if uid != os.getuid():
                    log.warning("rejected a connection from pid %d, uid %d: not this server's uid", pid, uid)
                    continue
                connection.settimeout(REQUEST_TIMEOUT)
                try:
                    request = read_request(connection)
                except (OSError, ValueError) as error:
                    log.warning("invalid request from pid %d: %s", pid, error)
                    continue
                if client.server_environment(request.environment) != environment:
                    request.close()
                    connection.sendall(client.DECLINED)
                    continue
                if code_fingerprint() != fingerprint:
                    log.info("server %d exits: dockyard's source files changed", os.getpid())
                    request.close()
                    listener.close()
                    connection.sendall(client.DECLINED)
                    return
                child = os.fork()
                if child == 0:
                    listener.close()
                    run_child(connection, request, parser)
                request.close()


def run_child(connection: socket.socket, request: Request, parser: object) -> None:
    """Become the client's command: take its descriptors, directory and environment, run, report. Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setpgid(0, 0)
        connection.settimeout(None)
        for target in client.STDIO_FDS:
            source = request.stdio.get(target)
            if source is None:
                os.close(target)
            else:
                os.dup2(source, target)
        for source in request.stdio.values():
            os.close(source)
        os.fchdir(request.cwd)
        os.close(request.cwd)
        os.umask(request.umask)
        os.environ.clear()
        os.environ.update(request.environment)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for number in client.FORWARDED_SIGNALS:
            if number != signal.SIGINT:
                signal.signal(number, signal.SIG_DFL)
        reopen_stdio()
        sys.argv = request.argv
        connection.sendall(client.STARTED + struct.pack("!i", os.getpid()))
        threading.Thread(target=die_with_client, args=(connection,), daemon=True).start()
        code = run_command(request.argv[1:], parser)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            connection.sendall(client.EXITED + struct.pack("!i", code))
        finally:
            os._exit(code)


def run_command(argv: list[str], parser: object) -> int:
    """Run main as the interpreter would: SystemExit's code, atexit handlers, flushed streams."""
    import atexit

    from dockyard.cli import main as cli_main

    try:
        code = cli_main.main(argv, parser=parser)
    except SystemExit as exit:
        code = exit_code(exit.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


def exit_code(value: object) -> int:
    """Return the exit status sys.exit(value) gives: 0 for None, the int, or 1 after printing anything else."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def reopen_stdio() -> None:
    """Make sys.stdin, sys.stdout and sys.stderr text streams on the new 0, 1 and 2."""
    for fd, name, mode in ((0, "stdin", "rb"), (1, "stdout", "wb"), (2, "stderr", "wb")):
        previous = getattr(sys, f"__{name}__")
        try:
            buffered = io.open(fd, mode, closefd=False)
        except OSError:
            setattr(sys, name, None)
            setattr(sys, f"__{name}__", None)
            continue
        line_buffering = name == "stderr" or (name == "stdout" and os.isatty(fd))
        stream = io.TextIOWrapper(
            buffered,
            encoding=getattr(previous, "encoding", None) or "utf-8",
            errors=getattr(previous, "errors", None) or "strict",
            line_buffering=line_buffering,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def die_with_client(connection: socket.socket) -> None:
    """Kill this process when the client's end of the connection closes before the command ends."""
    try:
        connection.recv(1)
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m dockyard.cli.server ADDRESS")
    serve(sys.argv[1])

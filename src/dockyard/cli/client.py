"""Entry point of the ``dockyard`` command: hand the command line to a warm CLI server, or run it here.

Starting Python and importing the engine costs more than most commands' own
work. So this module, which imports only a few built-in modules, first tries
the CLI server (``dockyard.cli.server``): a process that has imported
everything already and forks a child per command. It passes the child its
standard input, output and error and its working directory as file
descriptors (``SCM_RIGHTS``), and its arguments, environment and umask as
data. The child runs the command exactly as ``dockyard.cli.main`` would here,
writing straight to this process's terminal or pipes, and sends back its exit
code.

Meanwhile this process forwards the signals it gets (Ctrl-C, ``kill``, a
terminal resize) to the child's process group. If this process dies, the child
notices its connection closing and kills itself, as the command would have
died with it.

When no server accepts the connection, the command runs in this process,
and a server is started in the background for the next command. The child takes over this
process's whole environment, but what the server imported at its start may
depend on some variables (``SERVER_VARIABLES``: dockyard's settings, Python's
and the locale). So one server serves the clients that agree on those: the
socket's name is derived from the uid, the Python installation and their
values, and the server compares them too. It declines a request when they
differ or when dockyard's source files changed since it started; the command
then runs here.

``DOCKYARD_CLI_SERVER=0`` turns the server off. Commands that need this
process's controlling terminal (``login`` prompts for a password) or that are
servers themselves (``system service``) always run here.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib

# The C modules under ``signal`` and ``socket``: those two import ``enum``,
# which would double the start-up of this module.
import _signal as signal
import _socket as socket

# The variables that can change what the server's imports did: dockyard's own
# settings, Python's, and the locale, which sets the encoding of the standard
# streams. Commands read every other variable when they run, from the
# client's environment, which the child takes over whole.
SERVER_VARIABLE_PREFIXES = ("DOCKYARD_", "PYTHON", "LC_")
SERVER_VARIABLES = frozenset({"LANG", "LANGUAGE"})
FORWARDED_SIGNALS = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGWINCH, signal.SIGCONT,
)
# Forwarded signals that end the command when it does not handle them.
ENDING_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2})
# Global options that take a value, so that the word after them is not the command.
VALUE_OPTIONS = frozenset({"--root"})
# The server's replies: "F" declines (run the command here), "P" + pid when
# the child started, "X" + exit code when it finished.
DECLINED, STARTED, EXITED = b"F", b"P", b"X"
REQUEST_MAGIC = b"DYC1"
STDIO_FDS = (0, 1, 2)


def main() -> None:
    argv = sys.argv[1:]
    if os.environ.get("DOCKYARD_CLI_SERVER", "1") != "0" and _may_use_server(argv):
        code = _run_on_server(argv)
        if code is not None:
            # Nothing here needs the interpreter's clean-up: this process
            # wrote nothing, and the command ran elsewhere.
            os._exit(code)
    from dockyard.cli.main import main as run_here

    sys.exit(run_here(argv))


def _may_use_server(argv: list[str]) -> bool:
    """Tell whether the command may run in the server: all but ``login`` and ``system service`` may."""
    words = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in VALUE_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            words.append(word)
            if len(words) == 2:
                break
    if not words:
        return True
    if words[0] == "login":
        return False
    return not (words[0] == "system" and words[1:] == ["service"])


def server_environment(environment: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """Return the part of an environment that a server must share with its clients."""
    return {
        name: value for name, value in environment.items()
        if name in SERVER_VARIABLES or name.startswith(SERVER_VARIABLE_PREFIXES)
    }


def server_address(environment: dict[str, str] | os._Environ[str] | None = None) -> str:
    """Return the abstract socket name of the server for this uid, Python installation and environment."""
    shared = server_environment(os.environ if environment is None else environment)
    text = "\0".join(f"{name}={value}" for name, value in sorted(shared.items()))
    # The prefix names the venv whether the client runs as bin/python or bin/python3.
    checksum = zlib.crc32(f"{sys.prefix}\0{sys.version}\0{text}".encode("utf-8", "surrogateescape"))
    return f"\0dockyard-cli/{os.getuid()}/{checksum:08x}"


def encode_request(argv: list[str], environment: dict[str, str], umask: int, present: int) -> bytes:
    """Encode a request: magic, the mask of passed standard fds, umask, then argv and environment, NUL-separated."""
    items = [*argv, *(f"{name}={value}" for name, value in environment.items())]
    body = b"\0".join(item.encode("utf-8", "surrogateescape") for item in items)
    header = struct.pack("!4sBIII", REQUEST_MAGIC, present, umask, len(argv), len(environment))
    return struct.pack("!I", len(header) + len(body)) + header + body


class _Forwarder:
    """Forwards this process's signals to the child's process group once its pid is known."""

    def __init__(self) -> None:
        self.child = 0
        self.pending: list[int] = []
        self.last = 0
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        for number in FORWARDED_SIGNALS:
            self.previous[number] = signal.signal(number, self.handle)

    def uninstall(self) -> None:
        """Restore the handlers, for a command that runs in this process after all."""
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def handle(self, number: int, frame: object) -> None:
        if number in ENDING_SIGNALS:
            self.last = number
        if self.child:
            self.send(number)
        else:
            self.pending.append(number)

    def started(self, pid: int) -> None:
        self.child = pid
        for number in self.pending:
            self.send(number)
        self.pending.clear()

    def send(self, number: int) -> None:
        try:
            os.killpg(self.child, number)
        except ProcessLookupError:
            pass


def _run_on_server(argv: list[str]) -> int | None:
    """Run the command in the server and return its exit code; None when it must run here."""
    address = server_address()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(address)
    except OSError:
        connection.close()
        _start_server(address)
        return None
    forwarder = _Forwarder()
    forwarder.install()
    try:
        passed, present = [], 0
        for fd in STDIO_FDS:
            try:
                os.fstat(fd)
            except OSError:
                continue
            passed.append(fd)
            present |= 1 << fd
        umask = os.umask(0o022)
        os.umask(umask)
        try:
            cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            cwd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            request = encode_request([sys.argv[0], *argv], dict(os.environ), umask, present)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(passed) + 1}i", *passed, cwd))]
            sent = connection.sendmsg([request[:65536]], rights)
            connection.sendall(request[sent:])
        except OSError:
            forwarder.uninstall()
            return None
        finally:
            os.close(cwd)
        code = _wait_for_exit(connection, forwarder)
    finally:
        connection.close()
    if code is None:
        forwarder.uninstall()
    return code


def _wait_for_exit(connection: socket.socket, forwarder: _Forwarder) -> int | None:
    buffered = b""
    while True:
        try:
            data = connection.recv(64)
        except OSError:
            data = b""
        if not data:
            break
        buffered += data
        while buffered:
            kind = buffered[:1]
            if kind == DECLINED:
                return None
            if len(buffered) < 5:
                break
            (value,) = struct.unpack("!i", buffered[1:5])
            buffered = buffered[5:]
            if kind == STARTED:
                forwarder.started(value)
            elif kind == EXITED:
                return value
    if not forwarder.child:
        # The server closed the connection before starting the command.
        return None
    if forwarder.last:
        # The command died of a signal this process forwarded: die of it too.
        signal.signal(forwarder.last, signal.SIG_DFL)
        os.kill(os.getpid(), forwarder.last)
    print("Error: the dockyard CLI server's command process ended without an exit code; "
          "run the command again with DOCKYARD_CLI_SERVER=0 to run it in its own process", file=sys.stderr)
    return 125


def _start_server(address: str) -> None:
    """Start a server for this environment in the background, detached from this process."""
    from dockyard.detach import run_detached

    def become_server() -> None:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in STDIO_FDS:
            os.dup2(null, fd)
        os.closerange(3, 1 << 16)
        os.chdir("/")
        # -P keeps the working directory out of sys.path.
        os.execv(sys.executable, [sys.executable, "-P", "-m", "dockyard.cli.server", address[1:]])

    run_detached(become_server)


if __name__ == "__main__":
    main()

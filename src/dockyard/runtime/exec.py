"""Run a new process inside a running container, like ``runc exec``.

``spawn`` forks a joiner process. The joiner makes itself non-dumpable,
moves into the container's cgroup, joins the container's namespaces with
setns(2) and forks once more, because a PID namespace applies only to
children. The joiner then reports that child's PID and exits. The child is
the exec'd process: it sets up its terminal, user, limits, capabilities and
seccomp filter from the container's ``config.json`` and execs the program.

Isolation from the host: the joiner closes every descriptor except stdio
before it joins anything, and the child chdirs inside the container's root.
Only the child is visible in the container's PID namespace, and it stays
non-dumpable until execve. A non-dumpable process's ``/proc/PID/exe``,
``cwd``, ``root`` and ``fd/`` need CAP_SYS_PTRACE to open, which containers
do not get by default. So a container process cannot reach the host's
Python binary through it in that window. This defends against the attack of
CVE-2019-5736 on runc.

Set-up failures reach the caller over a pipe as JSON lines and are raised as
``ExecFailed``. The pipe is close-on-exec, so its end of file means that the
program was exec'd. A program that is missing or not executable
fails with 127 or 126, as a shell does.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import resource
import select
import signal
import socket
import struct
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from dockyard.errors import ExecFailed, RuntimeFailure
from dockyard.runtime import capabilities, libc, rlimits, seccomp, spec, state
from dockyard.runtime.cgroups import Cgroup
from dockyard.runtime.namespaces import FLAGS
from dockyard.runtime.state import PAUSED, RUNNING

log = logging.getLogger(__name__)

# prctl(2) option from <linux/prctl.h>: 0 makes /proc/PID/* of this process root-only and ptrace-protected.
PR_SET_DUMPABLE = 4

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126

# How long spawn waits for the set-up to finish (a stuck /etc/passwd read, for example).
SETUP_TIMEOUT = 60.0

# /proc/PID/ns file names and the runtime-spec namespace types, in joining
# order. The user namespace comes first, so that the others are joined with
# the capabilities it grants. The mount namespace comes last, because after
# it the host's /proc is out of reach.
NAMESPACE_FILES = (
    ("user", "user"),
    ("cgroup", "cgroup"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("net", "network"),
    ("pid", "pid"),
    ("time", "time"),
    ("mnt", "mount"),
)


@dataclass
class _Context:
    """Inputs of the joiner and the exec'd process, handed over by fork."""

    container_id: str
    container_pid: int
    process: dict[str, Any]
    user: str | None
    seccomp_config: dict[str, Any] | None
    cgroup: Cgroup | None
    namespaces: list[tuple[str, int]]  # (spec type, open descriptor), in joining order
    stdio: tuple[int | None, int | None, int | None]
    console: socket.socket | None
    sync_write: int


def build_process(
    config: dict[str, Any],
    args: list[str],
    *,
    env: list[str] | None = None,
    cwd: str | None = None,
    terminal: bool = False,
    console_size: tuple[int, int] | None = None,
    no_new_privileges: bool | None = None,
    additional_capabilities: list[str] | None = None,
) -> dict[str, Any]:
    """Return an OCI ``process`` object: the container's own, with the exec's args, env and cwd.

    ``env`` entries are added after the container's, so they override its
    values. ``console_size`` is (height, width).
    """
    base = json.loads(json.dumps(config.get("process") or {}))
    if not args:
        raise RuntimeFailure("exec needs a command: args is empty")
    process: dict[str, Any] = dict(base)
    process["args"] = list(args)
    process["env"] = merge_env(base.get("env") or [], env or [])
    if cwd:
        if not cwd.startswith("/"):
            raise RuntimeFailure(f"the working directory {cwd!r} is not an absolute path")
        process["cwd"] = cwd
    process["terminal"] = terminal
    if console_size:
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
    else:
        process.pop("consoleSize", None)
    if no_new_privileges is not None:
        process["noNewPrivileges"] = no_new_privileges
    if additional_capabilities:
        sets = dict(process.get("capabilities") or {})
        for name in ("bounding", "effective", "permitted"):
            sets[name] = list(dict.fromkeys([*(sets.get(name) or []), *additional_capabilities]))
        process["capabilities"] = sets
    return process


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """Return ``base`` with the ``NAME=value`` entries of ``extra`` replacing or following them."""
    merged: dict[str, str] = {}
    for entry in [*base, *extra]:
        name, _, _ = entry.partition("=")
        merged[name] = entry
    return list(merged.values())


@dataclass
class Execution:
    """A process started by ``spawn`` in a container, known by its host PID."""

    container_id: str
    pid: int

    def wait(self) -> int:
        """Wait for the process to exit; return its exit code, or 128+N after signal N."""
        return wait_exit(self.pid)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


def spawn(
    container_id: str,
    process: dict[str, Any],
    state_root: str | Path = state.DEFAULT_STATE_ROOT,
    *,
    user: str | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    console: socket.socket | None = None,
    on_pid: Callable[[int], None] | None = None,
) -> Execution:
    """Start ``process`` (an OCI process object) inside a running container; return once it is exec'd.

    ``user`` is Docker's ``name|uid[:group|gid]``, resolved in the
    container's /etc/passwd and /etc/group; without it ``process.user``
    applies. ``stdin``/``stdout``/``stderr`` are descriptors for the
    process (``None`` inherits the caller's). With ``process.terminal`` the
    process gets a new pseudo-terminal of the container's /dev/pts, and its
    master side is sent over the connected unix socket ``console``.
    ``on_pid`` is called with the host PID as soon as it is known, before the
    program is exec'd.

    The caller becomes a child subreaper (PR_SET_CHILD_SUBREAPER), so the
    process is its child and ``Execution.wait`` can reap it. Raises
    ContainerNotFound, RuntimeFailure for a container that is not running,
    and ExecFailed (with Docker's exit code: 126, or 127 for a missing
    program) when the set-up or the exec fails.
    """
    container = state.load(Path(state_root), container_id)
    status = container.status()
    if status == PAUSED:
        raise RuntimeFailure(f"container {container_id} is paused, unpause the container before exec")
    if status != RUNNING:
        raise RuntimeFailure(f"container {container_id} is not running (it is {status})")
    if process.get("terminal") and console is None:
        raise RuntimeFailure("process.terminal is true, so a console socket is required")
    if not process.get("args"):
        raise RuntimeFailure("exec needs a command: process.args is empty")

    config = spec.load(Path(container.bundle))
    seccomp_config = (config.get("linux") or {}).get("seccomp")
    if seccomp_config:
        # libseccomp is loaded from the host's filesystem, which the exec'd process cannot reach.
        seccomp.library()
    cgroup = Cgroup.from_state(container.cgroup) if container.cgroup else None

    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    namespaces = _open_namespaces(container.pid)
    sync_read, sync_write = os.pipe2(os.O_CLOEXEC)
    context = _Context(
        container_id=container_id,
        container_pid=container.pid,
        process=process,
        user=user,
        seccomp_config=seccomp_config,
        cgroup=cgroup,
        namespaces=namespaces,
        stdio=(stdin, stdout, stderr),
        console=console,
        sync_write=sync_write,
    )
    try:
        log.debug("exec in container %s (pid %d): %s", container_id, container.pid, process["args"])
        _flush_stdio()
        joiner = os.fork()
        if joiner == 0:
            os.close(sync_read)
            _run_joiner(context)
    finally:
        os.close(sync_write)
        for _, descriptor in namespaces:
            os.close(descriptor)
    return _follow_setup(container_id, joiner, sync_read, on_pid)


def _open_namespaces(container_pid: int) -> list[tuple[str, int]]:
    """Open the container's namespaces that differ from the caller's, in joining order."""
    opened: list[tuple[str, int]] = []
    try:
        for name, kind in NAMESPACE_FILES:
            path = f"/proc/{container_pid}/ns/{name}"
            try:
                theirs = os.stat(path)
            except FileNotFoundError:
                if name == "time":
                    continue  # a kernel without time namespaces
                raise
            ours = os.stat(f"/proc/self/ns/{name}")
            if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                continue
            opened.append((kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
    except OSError as error:
        for _, descriptor in opened:
            os.close(descriptor)
        raise RuntimeFailure(f"opening the namespaces of process {container_pid} failed: {error}") from None
    return opened


def _flush_stdio() -> None:
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _follow_setup(
    container_id: str, joiner: int, sync_read: int, on_pid: Callable[[int], None] | None
) -> Execution:
    """Read the set-up messages until the pipe closes at exec; raise on a reported failure."""
    pid: int | None = None
    failure: dict[str, Any] | None = None
    try:
        for message in _messages(sync_read, container_id):
            if message.get("type") == "pid":
                pid = int(message["pid"])
                if on_pid is not None:
                    on_pid(pid)
            elif message.get("type") == "error":
                failure = message
    except BaseException:
        # Timed out or interrupted: the process must not run on unsupervised.
        if pid is not None:
            _kill_and_reap(pid)
        raise
    finally:
        os.close(sync_read)
        joiner_status = _reap(joiner)

    if failure is not None:
        if pid is not None:
            _reap(pid)
        code = int(failure.get("exit_code") or EXIT_NOT_EXECUTABLE)
        raise ExecFailed(failure["message"], code, container_id)
    if pid is None:
        raise ExecFailed(
            f"the joining process ended (wait status {joiner_status}) without reporting why",
            EXIT_NOT_EXECUTABLE, container_id,
        )
    log.debug("exec in container %s started pid %d", container_id, pid)
    return Execution(container_id, pid)


def _messages(fd: int, container_id: str):  # type: ignore[no-untyped-def]
    buffer = b""
    deadline = time.monotonic() + SETUP_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise ExecFailed(f"set-up timed out after {SETUP_TIMEOUT} s", EXIT_NOT_EXECUTABLE, container_id)
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def _reap(pid: int) -> int | None:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return None


def wait_exit(pid: int) -> int:
    """Wait for a child (or, failing that, any process) to exit; return a shell-style exit code.

    A process that is not the caller's child cannot be reaped, so its exit
    status is unknown: it is polled until gone and 255 is returned.
    """
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            while state.process_start_time(pid) is not None:
                time.sleep(0.05)
            return 255
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        return os.WEXITSTATUS(status)


# -- the joiner (host PID namespace) ----------------------------------------------


class _Reporter:
    """Sends the current step and failures to the caller over the sync pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.current = "starting"

    def step(self, name: str) -> None:
        self.current = name

    def send(self, message: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(message) + "\n").encode())

    def fail(self, message: str, exit_code: int = EXIT_NOT_EXECUTABLE) -> NoReturn:
        try:
            self.send({"type": "error", "message": message, "exit_code": exit_code})
        except OSError:
            pass
        os._exit(exit_code)


def _run_joiner(context: _Context) -> NoReturn:
    # Log records would go to the caller's stderr, which is now the exec'd process's stderr.
    logging.disable(logging.CRITICAL)
    reporter = _Reporter(context.sync_write)
    try:
        _join(context, reporter)
    except ExecFailed as error:
        reporter.fail(error.reason, error.exit_code)
    except BaseException as error:  # noqa: BLE001 - every failure must reach the caller
        reporter.fail(f"{reporter.current} failed: {error or type(error).__name__}")
    os._exit(1)


def _join(context: _Context, reporter: _Reporter) -> NoReturn:
    # First of all, before this process can be seen from the container: a
    # non-dumpable process's /proc/PID/exe cannot be opened without
    # CAP_SYS_PTRACE. The child inherits the flag with the address space.
    reporter.step("making the process non-dumpable")
    libc.prctl(PR_SET_DUMPABLE, 0)
    _reset_signals()

    reporter.step("setting up stdio")
    _setup_stdio(context)

    # Nothing of the caller may leak into the container: its database,
    # sockets and log files are closed before any namespace is joined.
    reporter.step("closing inherited descriptors")
    keep = {0, 1, 2, context.sync_write, *(fd for _, fd in context.namespaces)}
    if context.console is not None:
        keep.add(context.console.fileno())
    _close_except(keep)

    # The cgroup files are host paths, so the cgroup is joined before the
    # mount namespace; the child and the program inherit it.
    if context.cgroup is not None:
        reporter.step(f"joining the cgroup {context.cgroup.path}")
        context.cgroup.join(os.getpid())

    for kind, descriptor in context.namespaces:
        reporter.step(f"joining the {kind} namespace of process {context.container_pid}")
        libc.setns(descriptor, FLAGS[kind])
        os.close(descriptor)

    # setns into a PID namespace applies to children: fork, so the process
    # that goes on is inside it. This process stays outside and exits.
    reporter.step("forking into the PID namespace")
    child = os.fork()
    if child:
        reporter.send({"type": "pid", "pid": child})
        os._exit(0)
    _become_process(context, reporter)


def _setup_stdio(context: _Context) -> None:
    # Move the sources out of the way first: one may sit on a target (stdout on 2).
    moved = []
    for source in context.stdio:
        moved.append(None if source is None else fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, 10))
    for target, source in enumerate(moved):
        if source is not None:
            os.dup2(source, target)
            os.close(source)


def _close_except(keep: set[int]) -> None:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        limit = 1 << 20
    start = 0
    for fd in [*sorted(keep), limit]:
        # Empty ranges are skipped: in CPython 3.11, os.closerange(0, 0) closes every descriptor.
        if start < fd:
            os.closerange(start, fd)
        start = fd + 1


def _reset_signals() -> None:
    for number in signal.valid_signals():
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


# -- the exec'd process (inside every namespace of the container) -------------------


def _become_process(context: _Context, reporter: _Reporter) -> NoReturn:
    process = context.process
    # setns into the mount namespace set the root and working directory to the
    # container's root; make that explicit, so nothing refers to a host directory.
    reporter.step("changing to the container's root")
    os.chdir("/")

    if process.get("terminal"):
        reporter.step("creating the terminal")
        assert context.console is not None
        _setup_terminal(context.console, process.get("consoleSize"))

    reporter.step("resolving the user")
    base_user = process.get("user") or {}
    home: str | None = None
    if context.user:
        uid, gid, groups, home = resolve_user(context.user)
    else:
        uid, gid, groups = base_user.get("uid", 0), base_user.get("gid", 0), []
    groups = list(dict.fromkeys([*groups, *(base_user.get("additionalGids") or [])]))

    reporter.step("setting rlimits")
    rlimits.apply(process.get("rlimits") or [])

    cwd = process.get("cwd") or "/"
    reporter.step(f"changing to the working directory {cwd}")
    try:
        os.chdir(cwd)
    except OSError as error:
        raise ExecFailed(f"chdir to {cwd!r} failed: {error.strerror}", EXIT_NOT_EXECUTABLE)

    no_new_privileges = bool(process.get("noNewPrivileges"))
    if no_new_privileges:
        reporter.step("setting no_new_privs")
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    # As in the container's init: without no_new_privs the filter must be
    # loaded while CAP_SYS_ADMIN is still held; with it, right before exec.
    if context.seccomp_config and not no_new_privileges:
        reporter.step("loading the seccomp filter")
        seccomp.load(context.seccomp_config)

    reporter.step("dropping bounding capabilities")
    spec_caps = process.get("capabilities") or {}
    capabilities.drop_bounding(capabilities.mask(spec_caps.get("bounding", [])))
    reporter.step(f"switching to uid {uid} gid {gid}")
    libc.prctl(libc.PR_SET_KEEPCAPS, 1)
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    libc.prctl(libc.PR_SET_KEEPCAPS, 0)
    reporter.step("setting capabilities")
    capabilities.apply(spec_caps)
    os.umask(base_user["umask"] if base_user.get("umask") is not None else 0o022)

    environment = _environment(process.get("env") or [])
    if "HOME" not in environment:
        environment["HOME"] = home or _home(uid)
    args = process["args"]
    reporter.step(f"finding {args[0]!r}")
    program, failure = find_program(args[0], environment.get("PATH", spec.DEFAULT_PATH))
    if program is None:
        reason = "permission denied" if failure == EXIT_NOT_EXECUTABLE else "executable file not found in $PATH"
        raise ExecFailed(f'exec: "{args[0]}": {reason}', failure or EXIT_NOT_FOUND)

    # Only stdio and the sync pipe (closed by execve) stay open.
    _close_except({0, 1, 2, context.sync_write})
    reporter.step(f"executing {program!r}")
    if context.seccomp_config and no_new_privileges:
        seccomp.load(context.seccomp_config)
    try:
        os.execve(program, args, environment)
    except FileNotFoundError:
        raise ExecFailed(f'exec: "{args[0]}": no such file or directory', EXIT_NOT_FOUND)
    except PermissionError:
        raise ExecFailed(f'exec: "{args[0]}": permission denied', EXIT_NOT_EXECUTABLE)
    except OSError as error:
        raise ExecFailed(f'exec: "{args[0]}": {error.strerror}', EXIT_NOT_EXECUTABLE)
    os._exit(EXIT_NOT_EXECUTABLE)  # unreachable: execve either replaces the process or raises


def _setup_terminal(console: socket.socket, size: dict[str, int] | None) -> None:
    """Open a terminal in the container's /dev/pts, send its master side, and make the other our stdio."""
    master, slave = os.openpty()
    if size:
        packed = struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, packed)
    socket.send_fds(console, [b"console"], [master])
    console.close()
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def find_program(name: str, path: str) -> tuple[str | None, int | None]:
    """Look ``name`` up in ``path`` as execvp does; return (path, None) or (None, 126 or 127)."""
    if "/" in name:
        return name, None
    failure = None
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate, None
            failure = EXIT_NOT_EXECUTABLE
    return None, failure


def _environment(entries: list[str]) -> dict[str, str]:
    environment: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        environment[key] = value
    return environment


# -- users, read from the container's /etc ------------------------------------------


def _read_database(path: str) -> list[list[str]]:
    """Return the colon-separated records of /etc/passwd or /etc/group; empty if the file is missing."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return [line.rstrip("\n").split(":") for line in file if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []


def _home(uid: int) -> str:
    for fields in _read_database("/etc/passwd"):
        if len(fields) >= 6 and fields[2] == str(uid):
            return fields[5] or "/"
    return "/"


def resolve_user(text: str, passwd: str = "/etc/passwd", group: str = "/etc/group") -> tuple[int, int, list[int], str]:
    """Resolve Docker's ``name|uid[:group|gid]``; return uid, gid, supplementary gids and home directory.

    A name must exist in ``passwd`` and a group name in ``group``; a number
    need not. Without a group the user's primary group from ``passwd``
    applies (0 for an unknown uid). The supplementary groups are those of
    ``group`` that list the user by name. Raises ExecFailed for an unknown name.
    """
    user_part, _, group_part = text.partition(":")
    if not user_part:
        raise ExecFailed(f"invalid user {text!r}: the user part is empty", EXIT_NOT_EXECUTABLE)
    users = _read_database(passwd)
    record = None
    for fields in users:
        if len(fields) < 4:
            continue
        if fields[0] == user_part or (user_part.isdigit() and fields[2] == user_part):
            record = fields
            break
    if record is None and not user_part.isdigit():
        raise ExecFailed(f"unable to find user {user_part}: no matching entries in passwd file", EXIT_NOT_EXECUTABLE)
    uid = int(record[2]) if record is not None else int(user_part)
    gid = int(record[3]) if record is not None and record[3].isdigit() else 0
    home = (record[5] if record is not None and len(record) >= 6 else "") or "/"
    name = record[0] if record is not None else None

    groups_db = _read_database(group)
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            for fields in groups_db:
                if len(fields) >= 3 and fields[0] == group_part:
                    gid = int(fields[2])
                    break
            else:
                raise ExecFailed(f"unable to find group {group_part}: no matching entries in group file", EXIT_NOT_EXECUTABLE
                )
    supplementary = []
    if name is not None:
        for fields in groups_db:
            if len(fields) >= 4 and name in fields[3].split(",") and fields[2].isdigit():
                supplementary.append(int(fields[2]))
    return uid, gid, supplementary, home


def run(
    container_id: str,
    process: dict[str, Any],
    state_root: str | Path = state.DEFAULT_STATE_ROOT,
    *,
    user: str | None = None,
    detach: bool = False,
    console: socket.socket | None = None,
    pid_file: str | Path | None = None,
) -> int:
    """Exec a process with the caller's stdio and, unless ``detach``, wait and return its exit code.

    While waiting, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are
    forwarded to the process.
    """
    execution = spawn(container_id, process, state_root, user=user, console=console)
    if pid_file:
        Path(pid_file).write_text(str(execution.pid))
    if detach:
        return 0

    def forward(number: int, _frame: object) -> None:
        execution.kill(number)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
    previous = {number: signal.signal(number, forward) for number in forwarded}
    try:
        return execution.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


__all__ = ["Execution", "build_process", "find_program", "merge_env", "resolve_user", "run", "spawn", "wait_exit"]

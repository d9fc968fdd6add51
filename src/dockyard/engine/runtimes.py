"""The OCI runtimes that run containers: dockyard's built-in one, runc and crun.

``HostConfig.Runtime`` picks one by name, and the engine records that name
with the container (in its HostConfig and in ``monitor.json``), so that every
later command, and a monitor that adopts the container, use the same runtime.

``get(name, run_root)`` returns an object with the operations the engine and
the monitor use: ``create`` (with stdio descriptors, or a console socket for
a TTY), ``start``, ``state``, ``exists``, ``kill``, ``delete``, ``pause``,
``resume``, ``update`` (new cgroup limits) and ``exec``. The built-in
runtime is called as a library (``dockyard.runtime``). runc and crun are run
as commands with their own state root, ``<run root>/<name>``:

    runc --root R --log L --log-format json create --bundle B --pid-file F [--console-socket S] ID

and likewise ``start``, ``state``, ``kill``, ``delete``, ``pause``,
``resume``, ``update --resources FILE`` and ``exec -d --process
process.json``. Both pass the caller's stdio through to the container's
process and send a TTY's master side over the console socket, as the
built-in runtime does, so the monitor treats them alike.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from dockyard.errors import ExecFailed, InvalidArgument, RuntimeFailure

if TYPE_CHECKING:
    import socket

# subprocess, tempfile, shutil and socket are imported where they are used,
# because most commands that import this module only validate a runtime name.

log = logging.getLogger(__name__)

BUILTIN = "dockyard"
# External runtimes that dockyard can run. Both take runc's command-line interface.
EXTERNAL = ("runc", "crun")
# Debian installs runc in /usr/sbin, which is not on every user's PATH.
EXTRA_SEARCH_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# How long one runtime command may take; create waits for the container's set-up.
COMMAND_TIMEOUT = 60.0
# Runtime states of the OCI runtime spec in which the container's init process exists.
ALIVE_STATUSES = ("created", "running", "paused")
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


@dataclass(frozen=True)
class RuntimeState:
    """A container's state as its runtime reports it: the OCI status, the init PID and the PID's start time.

    ``start_time`` is in clock ticks since boot, and None once the init is gone.
    """

    status: str
    pid: int
    start_time: int | None

    def alive(self) -> bool:
        return self.status in ALIVE_STATUSES and self.pid > 0 and self.start_time is not None


class Runtime(Protocol):
    name: str

    def create(self, container_id: str, bundle: Path, *, stdin: int | None = None, stdout: int | None = None,
               stderr: int | None = None, console_socket: str | None = None,
               on_init: Callable[[int], None] | None = None) -> int: ...
    def start(self, container_id: str) -> None: ...
    def exists(self, container_id: str) -> bool: ...
    def state(self, container_id: str) -> RuntimeState | None: ...
    def kill(self, container_id: str, number: int, all: bool = False) -> None: ...
    def delete(self, container_id: str, force: bool = False) -> None: ...
    def pause(self, container_id: str) -> None: ...
    def resume(self, container_id: str) -> None: ...
    def update(self, container_id: str, resources: dict[str, Any]) -> None: ...
    def exec(self, container_id: str, process: dict[str, Any], *, user: str | None = None,
             stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
             console: socket.socket | None = None, on_pid: Callable[[int], None] | None = None) -> Any: ...


# -- choosing a runtime -----------------------------------------------------------------


def find_executable(name: str) -> str | None:
    """Return the path of an external runtime's command, searching PATH and the sbin directories."""
    import shutil

    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *EXTRA_SEARCH_PATH])
    return shutil.which(name, path=search)


def found() -> dict[str, dict[str, str]]:
    """Return the runtimes available on this host, as ``SystemInfo.Runtimes``: name to ``{"path": ...}``."""
    result = {BUILTIN: {"path": "dockyard-runtime"}}
    for name in EXTERNAL:
        path = find_executable(name)
        if path is not None:
            result[name] = {"path": path}
    return result


def validate(name: str) -> str:
    """Return ``name`` if it is a runtime dockyard can use here.

    Raises InvalidArgument for a name dockyard does not know, and
    RuntimeFailure for a known external runtime whose command is not installed.
    """
    if name == BUILTIN:
        return name
    if name not in EXTERNAL:
        known = ", ".join((BUILTIN, *EXTERNAL))
        raise InvalidArgument(f"unknown or invalid runtime name: {name} (dockyard supports {known})")
    if find_executable(name) is None:
        raise RuntimeFailure(f"runtime {name} is not installed: no {name} command found in PATH or "
                             f"{', '.join(EXTRA_SEARCH_PATH)}; install the {name} package")
    return name


def get(name: str | None, run_root: Path) -> "Runtime":
    """Return the runtime called ``name`` (the built-in one for None or ""), with its state under ``run_root``."""
    name = name or BUILTIN
    validate(name)
    if name == BUILTIN:
        return Builtin(Path(run_root))
    path = find_executable(name)
    assert path is not None  # validate() checked it
    return External(name, path, Path(run_root))


# -- the built-in runtime -----------------------------------------------------------------


class Builtin:
    """dockyard's own runtime, called as a library; its state lives in ``<run root>/runtime``."""

    name = BUILTIN

    def __init__(self, run_root: Path) -> None:
        self.state_root = Path(run_root) / "runtime"

    def create(self, container_id: str, bundle: Path, *, stdin: int | None = None, stdout: int | None = None,
               stderr: int | None = None, console_socket: str | None = None,
               on_init: Callable[[int], None] | None = None) -> int:
        """Create the container; ``on_init(pid)`` runs as soon as the init exists, while it sets up its mounts."""
        from dockyard.runtime import container

        return container.create(container_id, bundle, self.state_root, stdin=stdin, stdout=stdout, stderr=stderr,
                                console_socket=console_socket, on_init=on_init)

    def start(self, container_id: str) -> None:
        from dockyard.runtime import container

        container.start(container_id, self.state_root)

    def exists(self, container_id: str) -> bool:
        return (self.state_root / container_id).exists()

    def state(self, container_id: str) -> RuntimeState | None:
        from dockyard.errors import NotFound
        from dockyard.runtime import state

        try:
            loaded = state.load(self.state_root, container_id)
        except NotFound:
            return None
        status = loaded.status()
        return RuntimeState(status, loaded.pid, loaded.start_time if status in ALIVE_STATUSES else None)

    def kill(self, container_id: str, number: int, all: bool = False) -> None:
        from dockyard.runtime import container

        container.kill(container_id, number, self.state_root, all=all)

    def delete(self, container_id: str, force: bool = False) -> None:
        from dockyard.runtime import container

        container.delete(container_id, self.state_root, force=force)

    def pause(self, container_id: str) -> None:
        from dockyard.runtime import container

        container.pause(container_id, self.state_root)

    def resume(self, container_id: str) -> None:
        from dockyard.runtime import container

        container.resume(container_id, self.state_root)

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Write new ``linux.resources`` sections to the cgroup of a created, running or paused container."""
        from dockyard.runtime import state
        from dockyard.runtime.cgroups import Cgroup

        loaded = state.load(self.state_root, container_id)
        if not loaded.cgroup:
            raise RuntimeFailure(f"container {container_id} has no cgroup recorded in {loaded.directory}")
        Cgroup.from_state(loaded.cgroup).update(resources)

    def exec(self, container_id: str, process: dict[str, Any], *, user: str | None = None,
             stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
             console: socket.socket | None = None, on_pid: Callable[[int], None] | None = None) -> Any:
        from dockyard.runtime import exec as runtime_exec

        return runtime_exec.spawn(container_id, process, self.state_root, user=user, stdin=stdin, stdout=stdout,
                                  stderr=stderr, console=console, on_pid=on_pid)


# -- runc and crun --------------------------------------------------------------------------


class External:
    """An external runtime with runc's command line (runc, crun); its state lives in ``<run root>/<name>``."""

    def __init__(self, name: str, path: str, run_root: Path) -> None:
        self.name = name
        self.path = path
        self.root = Path(run_root) / name

    def _run(self, action: str, container_id: str, arguments: list[str], *, stdin: int | None = None,
             stdout: int | None = None, stderr: int | None = None) -> str:
        """Run ``<runtime> --root R --log L ARGUMENTS`` and return its stdout (when not redirected).

        The runtime's error messages are read from its log file (JSON lines),
        because its stderr may be the container's. Raises RuntimeFailure with
        the runtime's own message.
        """
        import subprocess
        import tempfile

        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_fd, log_path = tempfile.mkstemp(prefix=".log-", dir=self.root)
        os.close(log_fd)
        command = [self.path, "--root", str(self.root), "--log", log_path, "--log-format", "json", *arguments]
        log.debug("running %s", " ".join(command))
        try:
            try:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL if stdin is None else stdin,
                    stdout=subprocess.PIPE if stdout is None else stdout,
                    stderr=subprocess.PIPE if stderr is None else stderr,
                    timeout=COMMAND_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise RuntimeFailure(
                    f"{self.name} {action} of container {container_id} timed out after {COMMAND_TIMEOUT:.0f} s"
                ) from None
            except OSError as error:
                raise RuntimeFailure(f"running {self.path} failed: {error}") from None
            if result.returncode != 0:
                message = _error_message(Path(log_path), result.stderr if stderr is None else None)
                raise RuntimeFailure(
                    f"{self.name} {action} of container {container_id} failed "
                    f"(exit status {result.returncode}): {message}"
                )
            return result.stdout.decode(errors="replace") if stdout is None else ""
        finally:
            os.unlink(log_path)

    def create(self, container_id: str, bundle: Path, *, stdin: int | None = None, stdout: int | None = None,
               stderr: int | None = None, console_socket: str | None = None,
               on_init: Callable[[int], None] | None = None) -> int:
        """Create the container with ``create``; ``on_init`` is not called (the caller does that work afterwards)."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix=".create-", dir=self._made_root()) as scratch:
            pid_file = Path(scratch) / "pid"
            arguments = ["create", "--bundle", str(bundle), "--pid-file", str(pid_file)]
            if console_socket:
                arguments += ["--console-socket", str(console_socket)]
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                # With a TTY the runtime's own stdio is not the container's, so it goes to /dev/null.
                self._run_create(container_id, arguments + [container_id],
                                 stdin=null if stdin is None else stdin,
                                 stdout=null if stdout is None else stdout,
                                 stderr=null if stderr is None else stderr)
            finally:
                os.close(null)
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError) as error:
                raise RuntimeFailure(f"{self.name} created container {container_id} but wrote no PID to "
                                     f"{pid_file}: {error}") from None
        log.debug("%s created container %s with init pid %d", self.name, container_id, pid)
        return pid

    def _made_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.root

    def _run_create(self, container_id: str, arguments: list[str], **stdio: int) -> None:
        try:
            self._run("create", container_id, arguments, **stdio)
        except RuntimeFailure as error:
            reason = crun_host_problem() if self.name == "crun" else None
            if reason is None:
                raise
            raise RuntimeFailure(f"{error}; {reason}") from None

    def start(self, container_id: str) -> None:
        self._run("start", container_id, ["start", container_id])

    def exists(self, container_id: str) -> bool:
        return (self.root / container_id).is_dir()

    def state(self, container_id: str) -> RuntimeState | None:
        from dockyard.runtime.state import process_start_time

        if not self.exists(container_id):
            return None
        document = json.loads(self._run("state", container_id, ["state", container_id]))
        status = str(document.get("status") or "stopped")
        pid = int(document.get("pid") or 0)
        start_time = process_start_time(pid) if pid > 0 and status in ALIVE_STATUSES else None
        return RuntimeState(status, pid, start_time)

    def kill(self, container_id: str, number: int, all: bool = False) -> None:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)  # a real-time signal has no name
        self._run("kill", container_id, ["kill", *(["--all"] if all else []), container_id, name])

    def delete(self, container_id: str, force: bool = False) -> None:
        if not self.exists(container_id):
            return
        self._run("delete", container_id, ["delete", *(["--force"] if force else []), container_id])
        log.debug("%s deleted container %s", self.name, container_id)

    def pause(self, container_id: str) -> None:
        self._run("pause", container_id, ["pause", container_id])

    def resume(self, container_id: str) -> None:
        self._run("resume", container_id, ["resume", container_id])

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Run ``update --resources FILE``, whose file is an OCI ``linux.resources`` object."""
        import tempfile

        with tempfile.NamedTemporaryFile("w", prefix=".update-", suffix=".json", dir=self._made_root()) as file:
            json.dump(resources, file)
            file.flush()
            self._run("update", container_id, ["update", "--resources", file.name, container_id])

    def exec(self, container_id: str, process: dict[str, Any], *, user: str | None = None,
             stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
             console: socket.socket | None = None, on_pid: Callable[[int], None] | None = None) -> Any:
        """Start ``process`` in the running container with ``exec -d``; return an ``Execution``.

        The arguments and the result are those of ``dockyard.runtime.exec.spawn``.
        The runtime exits once the process runs. The caller becomes a child
        subreaper first, so the process is reparented to it and
        ``Execution.wait`` can reap it.
        """
        import socket
        import tempfile

        from dockyard.runtime import libc
        from dockyard.runtime.exec import Execution

        current = self.state(container_id)
        if current is None or current.status == "stopped":
            raise RuntimeFailure(f"container {container_id} is not running")
        if current.status == "paused":
            raise RuntimeFailure(f"container {container_id} is paused, unpause the container before exec")
        if process.get("terminal") and console is None:
            raise RuntimeFailure("process.terminal is true, so a console socket is required")
        if user:
            process = with_user(process, self._rootfs(container_id), user)

        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        # A socket path is limited to 107 bytes, so the scratch directory is in /tmp, not the run root.
        with tempfile.TemporaryDirectory(prefix="dockyard-exec-") as scratch:
            process_file = Path(scratch) / "process.json"
            process_file.write_text(json.dumps(process))
            pid_file = Path(scratch) / "pid"
            arguments = ["exec", "-d", "--process", str(process_file), "--pid-file", str(pid_file)]
            listener = None
            if console is not None:
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(os.path.join(scratch, "console.sock"))
                listener.listen(1)
                arguments += ["--console-socket", os.path.join(scratch, "console.sock")]
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                try:
                    self._run("exec", container_id, arguments + [container_id],
                              stdin=null if stdin is None else stdin,
                              stdout=null if stdout is None else stdout,
                              stderr=null if stderr is None else stderr)
                except RuntimeFailure as error:
                    raise _exec_failure(str(error), container_id) from None
                pid = int(pid_file.read_text().strip())
                if on_pid is not None:
                    on_pid(pid)
                if listener is not None and console is not None:
                    _forward_terminal(listener, console, container_id)
            finally:
                os.close(null)
                if listener is not None:
                    listener.close()
        log.debug("%s exec in container %s started pid %d", self.name, container_id, pid)
        return Execution(container_id, pid)

    def _rootfs(self, container_id: str) -> Path:
        from dockyard.engine.rootfs import bundle_dir
        from dockyard.runtime import spec

        bundle = bundle_dir(self.root.parent, container_id)
        return spec.rootfs_path(bundle, spec.load(bundle))


def with_user(process: dict[str, Any], rootfs: Path, user: str) -> dict[str, Any]:
    """Return ``process`` running as Docker's ``name|uid[:group|gid]``, resolved in the container's /etc files.

    An external runtime takes only numeric IDs in ``process.user``. HOME is
    set to the user's home directory unless the process sets it.
    """
    from dockyard.runtime.exec import resolve_user
    from dockyard.runtime.mounts import resolve_in_root

    uid, gid, groups, home = resolve_user(user, str(resolve_in_root(rootfs, "/etc/passwd")),
                                          str(resolve_in_root(rootfs, "/etc/group")))
    result = dict(process)
    base = dict(process.get("user") or {})
    base.update(uid=uid, gid=gid, additionalGids=list(dict.fromkeys([*groups, *(base.get("additionalGids") or [])])))
    result["user"] = base
    env = list(process.get("env") or [])
    if not any(entry.startswith("HOME=") for entry in env):
        env.append(f"HOME={home}")
    result["env"] = env
    return result


def _forward_terminal(listener: socket.socket, console: socket.socket, container_id: str) -> None:
    """Receive the PTY master the runtime sent to ``listener`` and pass it on over the connected ``console``."""
    import socket

    listener.settimeout(10)
    try:
        connection, _ = listener.accept()
        with connection:
            _, fds, _, _ = socket.recv_fds(connection, 4096, 1)
    except OSError as error:
        raise ExecFailed(f"receiving the terminal from the runtime failed: {error}", EXIT_NOT_EXECUTABLE,
                         container_id) from None
    if not fds:
        raise ExecFailed("the runtime sent no terminal", EXIT_NOT_EXECUTABLE, container_id)
    try:
        socket.send_fds(console, [b"t"], fds)
    finally:
        for fd in fds:
            os.close(fd)


# runc's and crun's messages for a process that could not start; the rest of the message follows.
EXEC_PREFIXES = ("exec failed: unable to start container process: ", "exec failed: ")


def _exec_failure(message: str, container_id: str) -> ExecFailed:
    """Turn a failed ``exec`` into ExecFailed with a shell's exit code: 127 for a missing program, else 126."""
    _, _, reason = message.partition("): ")
    reason = reason or message
    for prefix in EXEC_PREFIXES:
        reason = reason.removeprefix(prefix)
    lowered = reason.lower()
    missing = "executable file not found" in lowered or "no such file or directory" in lowered
    return ExecFailed(reason, EXIT_NOT_FOUND if missing else EXIT_NOT_EXECUTABLE, container_id)


def _error_message(log_path: Path, stderr: bytes | None) -> str:
    """Return the error lines of a runtime's JSON log, or else its stderr, as one line."""
    messages = []
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal") and entry.get("msg"):
            messages.append(str(entry["msg"]))
    if not messages and stderr:
        messages = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    # runc logs the same error twice (once where it happens, once on exit).
    unique = list(dict.fromkeys(messages))
    return "; ".join(unique) or "no error message"


def crun_host_problem(mountinfo: str | None = None, unified_controllers: str | None = None) -> str | None:
    """Return why crun rejects this host, or None when it does not.

    crun rejects a hybrid host (v1 hierarchies plus a cgroup2 mount) where a
    controller is available only on the cgroup2 mount. crun 1.8.1 then fails
    with "cgroups in hybrid mode not supported, drop all controllers from
    cgroupv2", which names neither the controller nor the fix. ``mountinfo`` and
    ``unified_controllers`` (the cgroup2 root's ``cgroup.controllers``) are
    read from the host unless given.
    """
    from dockyard.runtime import cgroups

    try:
        found = cgroups.hierarchies(mountinfo)
        if cgroups.mode(found) != "hybrid":
            return None
    except RuntimeFailure:
        return None
    unified = next(hierarchy for hierarchy in found if hierarchy.version == 2)
    if unified_controllers is None:
        try:
            unified_controllers = (unified.mountpoint / "cgroup.controllers").read_text()
        except OSError:
            return None
    mounted_v1 = {name for hierarchy in found if hierarchy.version == 1 for name in hierarchy.controllers}
    only_v2 = sorted(set(unified_controllers.split()) - mounted_v1)
    if not only_v2:
        return None
    return (f"this host mixes cgroup v1 and v2, and the controllers {', '.join(only_v2)} are mounted only on the "
            f"cgroup2 hierarchy at {unified.mountpoint}; crun needs each of them mounted as a cgroup v1 hierarchy "
            f"too (or use --runtime runc)")

"""The runtime's library API: create, start, state, kill, delete and run a container.

The lifecycle follows the OCI runtime spec and runc. ``create`` leaves the
container's init set up and blocked on the exec FIFO in the container's state
directory. ``start`` opens the FIFO's other end, which lets the init exec the
user's program. The init is not a child of the caller: its first parent
exits, so it is reparented to the nearest subreaper (the engine's monitor) or
to PID 1. ``run`` makes the caller a subreaper so it can wait for it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import select
import signal
import time
from pathlib import Path
from typing import Any, Callable

from dockyard.errors import RuntimeFailure
from dockyard.runtime import libc, seccomp, spec, state
from dockyard.runtime.cgroups import Cgroup, hierarchies
from dockyard.runtime.init import InitContext
from dockyard.runtime.init import run as run_init
from dockyard.runtime.namespaces import Namespaces, write_id_maps
from dockyard.runtime.state import CREATED, PAUSED, RUNNING, STOPPED, ContainerState

log = logging.getLogger(__name__)

DEFAULT_STATE_ROOT = state.DEFAULT_STATE_ROOT
# How long create waits for the init to finish its set-up.
CREATE_TIMEOUT = 60.0


def create(
    container_id: str,
    bundle: str | Path,
    state_root: str | Path = DEFAULT_STATE_ROOT,
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    console_socket: str | Path | None = None,
    pid_file: str | Path | None = None,
    on_init: Callable[[int], None] | None = None,
) -> int:
    """Set up a container from an OCI bundle and return the PID of its init, blocked until ``start``.

    ``stdin``/``stdout``/``stderr`` are file descriptors for the container's
    stdio (by default it inherits the caller's). With ``process.terminal``,
    the master side of a new pseudo-terminal is sent over the unix socket
    ``console_socket``. ``on_init(pid)`` is called with the init's PID while
    the init sets up its mounts, for work that needs the init's namespaces
    (its network); what it raises fails the create. Raises RuntimeFailure
    naming the failed step.
    """
    bundle = Path(bundle).resolve()
    state_root = Path(state_root)
    config = spec.load(bundle)
    rootfs = spec.rootfs_path(bundle, config)
    if not rootfs.is_dir():
        raise RuntimeFailure(f"root filesystem {rootfs} of bundle {bundle} is not a directory")
    process = config["process"]
    if process.get("terminal") and not console_socket:
        raise RuntimeFailure("process.terminal is true, so a console socket is required (--console-socket)")
    linux = config.get("linux", {})
    for entry in config.get("mounts", []):
        # runc takes a relative bind source as relative to the bundle.
        source = entry.get("source")
        if source and not source.startswith("/") and _is_bind(entry):
            entry["source"] = str(bundle / source)
    spaces = Namespaces(linux.get("namespaces", []))
    if "user" in spaces.new and not (linux.get("uidMappings") and linux.get("gidMappings")):
        raise RuntimeFailure("a new user namespace needs linux.uidMappings and linux.gidMappings")

    directory = state.new_dir(state_root, container_id)
    cgroup = None
    pid = None
    fifo_fd = None
    try:
        fifo = directory / state.EXEC_FIFO
        os.mkfifo(fifo, 0o622)
        # Any container user must be able to open the FIFO for writing; mkfifo applied the umask.
        os.chmod(fifo, 0o622)
        # The init gets the FIFO as a descriptor: in a user namespace it may
        # not be allowed to walk the path to the state directory.
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)

        if linux.get("seccomp"):
            # libseccomp must be loaded while the host's filesystem is visible:
            # the init applies the filter after pivot_root.
            seccomp.library()

        found = hierarchies()
        cgroup = Cgroup.for_path(linux.get("cgroupsPath") or f"/dockyard/{container_id}", found)
        cgroup.create(linux.get("resources") or {}, linux.get("devices") or [])

        pid = _spawn(
            InitContext(
                container_id=container_id,
                config=config,
                rootfs=rootfs,
                namespaces=spaces,
                cgroup=cgroup,
                fifo_fd=fifo_fd,
                sync_write=-1,
                sync_read=-1,
                stdio=(stdin, stdout, stderr),
                console_socket=str(console_socket) if console_socket else None,
            ),
            linux,
            on_init,
        )
        start_time = state.process_start_time(pid)
        if start_time is None:
            raise RuntimeFailure(f"container {container_id}: init process {pid} exited right after set-up")
        ContainerState(
            id=container_id,
            directory=directory,
            pid=pid,
            start_time=start_time,
            bundle=str(bundle),
            rootfs=str(rootfs),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
            annotations=config.get("annotations") or {},
            cgroup=cgroup.to_state(),
            oci_version=config.get("ociVersion", spec.OCI_VERSION),
        ).save()
        if pid_file:
            Path(pid_file).write_text(str(pid))
    except BaseException:
        _undo_create(directory, cgroup, pid)
        raise
    finally:
        if fifo_fd is not None:
            os.close(fifo_fd)
    log.debug("created container %s with init pid %d", container_id, pid)
    return pid


def _is_bind(entry: dict[str, Any]) -> bool:
    return entry.get("type") == "bind" or any(option in ("bind", "rbind") for option in entry.get("options") or [])


def _spawn(context: InitContext, linux: dict[str, Any], on_init: Callable[[int], None] | None = None) -> int:
    """Fork the bring-up and follow its messages until the init reports created; return the init's PID."""
    to_runtime_read, to_runtime_write = os.pipe()
    to_init_read, to_init_write = os.pipe()
    context.sync_write, context.sync_read = to_runtime_write, to_init_read
    first = os.fork()
    if first == 0:
        os.close(to_runtime_read)
        os.close(to_init_write)
        run_init(context)
    os.close(to_runtime_write)
    os.close(to_init_read)
    init_pid = None
    join_error: Exception | None = None
    created = False
    succeeded = False
    try:
        for message in _messages(to_runtime_read, context.container_id):
            kind = message.get("type")
            if kind == "userns":
                write_id_maps(message["pid"], linux["uidMappings"], linux["gidMappings"])
                os.write(to_init_write, b"1")
            elif kind == "pid":
                init_pid = message["pid"]
                if "cgroup" not in context.namespaces.paths:
                    # The init waits for this before its cgroup mounts (see
                    # init.bring_up). A failed write means the init failed
                    # already, and its own error message follows.
                    try:
                        _join_while(context.cgroup, init_pid, on_init)
                        os.write(to_init_write, b"1")
                    except (OSError, RuntimeFailure) as error:
                        # Closing the pipe ends the init's wait with an error.
                        join_error = error
                        os.close(to_init_write)
                        to_init_write = -1
            elif kind == "error" and isinstance(join_error, RuntimeFailure):
                raise RuntimeFailure(f"container {context.container_id}: moving the init into its cgroup failed: {join_error}")
            elif kind == "error":
                raise RuntimeFailure(
                    f"container {context.container_id}: {message['step']} failed: {message['message']}"
                )
            elif kind == "created":
                created = True
            # The first child sends the PID and the init sends "created", both on
            # this pipe, so the two messages may arrive in either order.
            if created and init_pid is not None:
                if on_init is not None and "cgroup" in context.namespaces.paths:
                    # Without the late cgroup join, on_init runs once set-up is done.
                    on_init(init_pid)
                succeeded = True
                return init_pid
        if join_error is not None:
            raise RuntimeFailure(f"container {context.container_id}: moving the init into its cgroup failed: {join_error}")
        raise RuntimeFailure(f"container {context.container_id}: init exited during set-up without reporting why")
    finally:
        os.close(to_runtime_read)
        if to_init_write != -1:
            os.close(to_init_write)
        if not succeeded:
            _kill_quietly(first)
            if init_pid is not None:
                _kill_quietly(init_pid)
        _reap(first)
        if not succeeded and init_pid is not None:
            # Once its first parent is reaped, a subreaper caller inherits
            # the dead init and must reap it too.
            _wait_gone(init_pid, 10.0)


def _join_while(cgroup: Cgroup, pid: int, on_init: Callable[[int], None] | None) -> None:
    """Move ``pid`` into ``cgroup``, running ``on_init(pid)`` meanwhile.

    The move waits for an RCU grace period, mostly asleep, so a thread does
    it while this one runs ``on_init``.
    """
    if on_init is None:
        cgroup.join(pid)
        return
    import threading

    errors: list[BaseException] = []

    def join() -> None:
        try:
            cgroup.join(pid)
        except BaseException as error:  # handed to the calling thread below
            errors.append(error)

    joiner = threading.Thread(target=join, name=f"cgroup join {pid}")
    joiner.start()
    try:
        on_init(pid)
    finally:
        joiner.join()
    if errors:
        raise errors[0]


def _messages(fd: int, container_id: str):  # type: ignore[no-untyped-def]
    buffer = b""
    deadline = time.monotonic() + CREATE_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise RuntimeFailure(f"container {container_id}: set-up timed out after {CREATE_TIMEOUT} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def _reap(pid: int) -> int | None:
    """Wait for a child and return its wait status; None if it is not our child."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _undo_create(directory: Path, cgroup: Cgroup | None, pid: int | None) -> None:
    if pid is not None:
        _kill_quietly(pid)
        _wait_gone(pid, 10.0)
    if cgroup is not None:
        try:
            cgroup.remove_created()
        except RuntimeFailure as error:
            log.error("cleaning up after a failed create: %s", error)
    _remove_state_dir(directory)


def _remove_state_dir(directory: Path) -> None:
    for child in directory.iterdir() if directory.exists() else []:
        child.unlink()
    if directory.exists():
        directory.rmdir()


def _try_reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited, reaping it if it is our child; return whether it did in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            # Not our child: gone, or a zombie that its own parent reaps.
            if state.process_start_time(pid) is None:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def load(container_id: str, state_root: str | Path = DEFAULT_STATE_ROOT) -> ContainerState:
    return state.load(Path(state_root), container_id)


def start(container_id: str, state_root: str | Path = DEFAULT_STATE_ROOT, timeout: float = 10.0) -> None:
    """Let a created container's init exec the user's program."""
    container = load(container_id, state_root)
    status = container.status()
    if status != CREATED:
        raise RuntimeFailure(f"cannot start container {container_id}: it is {status}, not created")
    reader = os.open(container.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # The init is blocked opening the FIFO for writing; this open
        # releases it and it writes one byte. Polling with a timeout keeps a
        # dead init from hanging start.
        deadline = time.monotonic() + timeout
        while True:
            ready = select.select([reader], [], [], 0.05)[0]
            if ready and os.read(reader, 1):
                break
            if not container.alive():
                raise RuntimeFailure(f"cannot start container {container_id}: its init process {container.pid} exited")
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"cannot start container {container_id}: timed out after {timeout} s waiting for its init")
    finally:
        os.close(reader)
    container.fifo.unlink()
    log.debug("started container %s", container_id)


def oci_state(container_id: str, state_root: str | Path = DEFAULT_STATE_ROOT) -> dict[str, Any]:
    """Return the OCI state: ociVersion, id, status, pid, bundle, annotations (and rootfs, created)."""
    return load(container_id, state_root).oci()


def parse_signal(value: str | int) -> int:
    """Return a signal number from ``9``, ``KILL`` or ``SIGKILL``."""
    if isinstance(value, int) or str(value).isdigit():
        number = int(value)
        if number not in {int(sig) for sig in signal.valid_signals()}:
            raise RuntimeFailure(f"invalid signal {value!r}")
        return number
    name = str(value).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise RuntimeFailure(f"invalid signal {value!r}") from None


def kill(
    container_id: str, sig: str | int = signal.SIGTERM, state_root: str | Path = DEFAULT_STATE_ROOT, all: bool = False
) -> None:
    """Send a signal to the container's init, or with ``all`` to every process in its cgroup."""
    number = parse_signal(sig)
    container = load(container_id, state_root)
    status = container.status()
    if status == STOPPED:
        raise RuntimeFailure(f"cannot kill container {container_id}: it is stopped")
    if all and container.cgroup:
        Cgroup.from_state(container.cgroup).kill_all(number)
        return
    log.debug("kill %d with signal %d (container %s)", container.pid, number, container_id)
    os.kill(container.pid, number)
    if status == PAUSED and number == signal.SIGKILL:
        Cgroup.from_state(container.cgroup).thaw()


def wait_stopped(container: ContainerState, timeout: float) -> bool:
    """Wait until the init is gone; reaps it when the caller is its parent. Returns whether it stopped."""
    if not container.alive():
        _try_reap(container.pid)
        return True
    return _wait_gone(container.pid, timeout)


def delete(container_id: str, state_root: str | Path = DEFAULT_STATE_ROOT, force: bool = False) -> None:
    """Remove a stopped (or, like runc, a created) container: its processes, cgroup and state directory.

    A running or paused container needs ``force``, which kills every process
    in its cgroup first. The mounts live in the container's mount namespace
    and go away with its last process.
    """
    container = load(container_id, state_root)
    status = container.status()
    if status in (RUNNING, PAUSED) and not force:
        raise RuntimeFailure(f"cannot delete container {container_id}: it is {status}; stop it or use --force")
    cgroup = Cgroup.from_state(container.cgroup) if container.cgroup else None
    if status != STOPPED:
        _kill_quietly(container.pid)
        if status == PAUSED and cgroup is not None:
            cgroup.thaw()
    if cgroup is not None:
        cgroup.destroy()
    if not wait_stopped(container, 10.0):
        raise RuntimeFailure(f"container {container_id}: init process {container.pid} outlived SIGKILL")
    _remove_state_dir(container.directory)
    log.debug("deleted container %s", container_id)


def pause(container_id: str, state_root: str | Path = DEFAULT_STATE_ROOT) -> None:
    container = load(container_id, state_root)
    status = container.status()
    if status != RUNNING:
        raise RuntimeFailure(f"cannot pause container {container_id}: it is {status}, not running")
    Cgroup.from_state(container.cgroup).freeze()


def resume(container_id: str, state_root: str | Path = DEFAULT_STATE_ROOT) -> None:
    container = load(container_id, state_root)
    status = container.status()
    if status != PAUSED:
        raise RuntimeFailure(f"cannot resume container {container_id}: it is {status}, not paused")
    Cgroup.from_state(container.cgroup).thaw()


def exit_code(wait_status: int) -> int:
    """Return a shell-style exit code: the exit status, or 128+N for death by signal N."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def run(
    container_id: str,
    bundle: str | Path,
    state_root: str | Path = DEFAULT_STATE_ROOT,
    *,
    detach: bool = False,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    console_socket: str | Path | None = None,
    pid_file: str | Path | None = None,
) -> int:
    """Create and start a container; in the foreground, wait, delete it and return its exit code.

    The foreground mode makes the calling process a child subreaper
    (PR_SET_CHILD_SUBREAPER) so that the init becomes its child, and forwards
    SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to it while waiting.
    """
    if not detach:
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    pid = create(
        container_id,
        bundle,
        state_root,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        console_socket=console_socket,
        pid_file=pid_file,
    )
    try:
        start(container_id, state_root)
    except BaseException:
        delete(container_id, state_root, force=True)
        raise
    if detach:
        return 0

    def forward(number: int, _frame: object) -> None:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass

    previous = {number: signal.signal(number, forward) for number in FORWARDED_SIGNALS}
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                # Not our child after all (another subreaper sits between): poll instead.
                container = load(container_id, state_root)
                wait_stopped(container, float("inf"))
                status = 255 << 8
                break
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        delete(container_id, state_root, force=True)
    return exit_code(status)

"""Exec instances: processes started inside running containers (``docker exec``).

``create`` checks the container and stores an ``ExecConfig``. ``start`` runs
it through the container's OCI runtime (``engine/runtimes.py``) and returns
an ``ExecSession`` with the caller's ends of the process's stdio. ``inspect``
returns Docker's ``ExecInspectResponse``. The session has pipes, or the master side of a
pseudo-terminal that was opened inside the container. The host's files and
terminals are never handed to the process, because a process in the
container could reopen them through ``/proc/PID/fd``.

Each exec instance is a JSON file ``<run root>/execs/<id>.json``, so that a
detached exec started by one command can be inspected by another. A
detached exec is waited for by a small waiter process that records the exit
code. Records of containers that no longer exist are dropped when read.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, ContainerNotFound, ExecFailed, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.engine import Engine

log = logging.getLogger(__name__)

# Keys of the Engine API's ExecConfig that dockyard acts on.
EXEC_CONFIG_KEYS = (
    "AttachStdin", "AttachStdout", "AttachStderr", "ConsoleSize", "DetachKeys", "Tty", "Env", "Cmd",
    "Privileged", "User", "WorkingDir",
)


class ExecNotFound(NotFound):
    """No exec instance has this ID, or its container is gone."""

    def __init__(self, exec_id: str) -> None:
        super().__init__(f"No such exec instance: {exec_id}")
        self.exec_id = exec_id


@dataclass
class ExecSession:
    """A started exec: its host PID and the caller's ends of its stdio.

    Without a TTY, ``stdin`` (when the exec was created with AttachStdin),
    ``stdout`` and ``stderr`` are pipe descriptors. With a TTY, ``terminal``
    is the master side of the process's pseudo-terminal, for input and output.
    The caller owns the descriptors and must call ``wait`` (which records the
    exit code) and ``close``.
    """

    exec_id: str
    pid: int
    service: "ExecService"
    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None
    terminal: int | None = None
    # close_stdin runs in the stdin-copying thread while close may run in the main one.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def resize(self, height: int, width: int) -> None:
        if self.terminal is not None:
            set_window_size(self.terminal, height, width)

    def close_stdin(self) -> None:
        with self._lock:
            if self.stdin is not None:
                os.close(self.stdin)
                self.stdin = None

    def wait(self) -> int:
        """Wait for the process to exit, record the exit code and return it."""
        from dockyard.runtime import exec as runtime_exec

        code = runtime_exec.wait_exit(self.pid)
        self.service._finish(self.exec_id, code)
        return code

    def close(self) -> None:
        with self._lock:
            for name in ("stdin", "stdout", "stderr", "terminal"):
                fd = getattr(self, name)
                if fd is not None:
                    os.close(fd)
                    setattr(self, name, None)


def set_window_size(fd: int, height: int, width: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


class ExecService:
    """Exec instances of one dockyard root; reached as ``ExecService(engine)``."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.run_root = Path(engine.config.run_root)
        self.directory = self.run_root / "execs"

    # -- records -------------------------------------------------------------

    def _path(self, exec_id: str) -> Path:
        if not exec_id or not all(c in "0123456789abcdef" for c in exec_id):
            raise ExecNotFound(exec_id)
        return self.directory / f"{exec_id}.json"

    def _load(self, exec_id: str) -> dict[str, Any]:
        try:
            return json.loads(self._path(exec_id).read_text())
        except FileNotFoundError:
            raise ExecNotFound(exec_id) from None
        except ValueError as error:
            raise ExecNotFound(exec_id) from error

    def _save(self, record: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(record["ID"])
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)

    def _update(self, exec_id: str, **fields: Any) -> None:
        record = self._load(exec_id)
        record.update(fields)
        self._save(record)

    def _finish(self, exec_id: str, exit_code: int) -> None:
        try:
            self._update(exec_id, Running=False, ExitCode=exit_code)
        except ExecNotFound:
            pass
        log.debug("exec %s exited with %d", exec_id, exit_code)

    # -- the API ---------------------------------------------------------------

    def create(self, container: str, config: dict[str, Any]) -> str:
        """Store a new exec instance for a running container; return its ID.

        ``config`` is the Engine API's ``ExecConfig``. Raises
        ContainerNotFound, and Conflict for a container that is not running
        or is paused (with Docker's wording).
        """
        unknown = sorted(set(config) - set(EXEC_CONFIG_KEYS))
        if unknown:
            raise InvalidArgument(f"exec option {unknown[0]} is not supported")
        command = config.get("Cmd") or []
        if isinstance(command, str):
            command = [command]
        if not command:
            raise InvalidArgument("No exec command specified")
        info = self.engine.containers.inspect(container)
        self._check_running(info)
        exec_id = secrets.token_hex(32)
        record = {
            "ID": exec_id,
            "ContainerID": info["Id"],
            "Running": False,
            "ExitCode": None,
            "Pid": 0,
            "OpenStdin": bool(config.get("AttachStdin")),
            "OpenStdout": bool(config.get("AttachStdout", True)),
            "OpenStderr": bool(config.get("AttachStderr", True)),
            "CanRemove": False,
            "DetachKeys": config.get("DetachKeys") or "",
            "ProcessConfig": {
                "privileged": bool(config.get("Privileged")),
                "user": config.get("User") or "",
                "tty": bool(config.get("Tty")),
                "entrypoint": command[0],
                "arguments": list(command[1:]),
            },
            "Config": {key: config[key] for key in EXEC_CONFIG_KEYS if key in config} | {"Cmd": list(command)},
            "Started": False,
        }
        self._save(record)
        log.debug("created exec %s in container %s: %s", exec_id, info["Id"], command)
        return exec_id

    @staticmethod
    def _check_running(info: dict[str, Any]) -> None:
        state = info.get("State") or {}
        if not state.get("Running"):
            raise Conflict(f"container {info['Id']} is not running")
        if state.get("Paused"):
            raise Conflict(f"container {info['Id']} is paused, unpause the container before exec")

    def inspect(self, exec_id: str) -> dict[str, Any]:
        """Return the exec instance in the Engine API's ``ExecInspectResponse`` shape."""
        record = self._load(exec_id)
        try:
            self.engine.containers.resolve(record["ContainerID"])
        except ContainerNotFound:
            self._path(exec_id).unlink(missing_ok=True)
            raise ExecNotFound(exec_id) from None
        if record["Running"] and not _alive(record["Pid"]):
            # The waiter or the starting command died before recording the exit code.
            record["Running"] = False
        return {key: value for key, value in record.items() if key not in ("Config", "Started")}

    def resize(self, session: ExecSession, height: int, width: int) -> None:
        """Set the terminal size of a started exec with a TTY, whose master side only the session has."""
        if session.terminal is None:
            raise Conflict(f"exec {session.exec_id} has no TTY to resize")
        session.resize(height, width)

    def start(self, exec_id: str, *, detach: bool = False, console_size: tuple[int, int] | None = None) -> ExecSession | None:
        """Start an exec instance; return its session, or None when ``detach``.

        Raises Conflict when the exec was started before or its container
        stopped, and ExecFailed (exit code 126 or 127) when the process
        cannot start.
        """
        record = self._load(exec_id)
        if record["Started"]:
            raise Conflict(f"exec {exec_id} has already been started")
        info = self.engine.containers.inspect(record["ContainerID"])
        self._check_running(info)
        config = record["Config"]
        if console_size is None and config.get("ConsoleSize"):
            height, width = config["ConsoleSize"]
            console_size = (int(height), int(width))
        process = self._process(info, config, console_size)
        self._update(exec_id, Started=True)
        user = config.get("User") or None
        if detach:
            pid = self._start_detached(exec_id, info["Id"], process, user, self._runtime(info))
            self._update(exec_id, Running=True, Pid=pid)
            return None
        return self._start_attached(exec_id, info["Id"], process, user, bool(config.get("AttachStdin")),
                                    self._runtime(info))

    def _runtime(self, info: dict[str, Any]) -> Any:
        """Return the OCI runtime the container was created with (its HostConfig.Runtime)."""
        from dockyard.engine import runtimes

        return runtimes.get((info.get("HostConfig") or {}).get("Runtime"), self.run_root)

    def _process(self, info: dict[str, Any], config: dict[str, Any], console_size: tuple[int, int] | None) -> dict:
        from dockyard.engine import rootfs
        from dockyard.runtime import exec as runtime_exec
        from dockyard.runtime import spec
        from dockyard.runtime.capabilities import CAPABILITIES

        bundle = rootfs.bundle_dir(self.run_root, info["Id"])
        container_config = spec.load(bundle)
        env = list(config.get("Env") or [])
        tty = bool(config.get("Tty"))
        if tty and not any(entry.startswith("TERM=") for entry in env):
            base_env = (container_config.get("process") or {}).get("env") or []
            if not any(entry.startswith("TERM=") for entry in base_env):
                env.append("TERM=xterm")
        return runtime_exec.build_process(
            container_config,
            list(config["Cmd"]),
            env=env,
            cwd=config.get("WorkingDir") or None,
            terminal=tty,
            console_size=console_size,
            additional_capabilities=list(CAPABILITIES) if config.get("Privileged") else None,
        )

    def _start_attached(self, exec_id: str, container_id: str, process: dict, user: str | None,
                        open_stdin: bool, runtime: Any) -> ExecSession:
        theirs: list[int] = []
        ours: dict[str, int] = {}
        console_ours = console_theirs = None
        try:
            if process.get("terminal"):
                console_ours, console_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                stdio: tuple[int | None, int | None, int | None] = (None, None, None)
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                theirs.append(null)
                stdio = (null, null, null)
            else:
                if open_stdin:
                    read_end, write_end = os.pipe2(os.O_CLOEXEC)
                    theirs.append(read_end)
                    ours["stdin"] = write_end
                    stdin_fd = read_end
                else:
                    stdin_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                    theirs.append(stdin_fd)
                out_read, out_write = os.pipe2(os.O_CLOEXEC)
                err_read, err_write = os.pipe2(os.O_CLOEXEC)
                theirs += [out_write, err_write]
                ours["stdout"], ours["stderr"] = out_read, err_read
                stdio = (stdin_fd, out_write, err_write)

            def record_pid(pid: int) -> None:
                self._update(exec_id, Running=True, Pid=pid)

            execution = runtime.exec(
                container_id, process, user=user,
                stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], console=console_theirs, on_pid=record_pid,
            )
            if console_ours is not None:
                ours["terminal"] = _receive_terminal(console_ours, exec_id)
        except ExecFailed as error:
            for fd in ours.values():
                os.close(fd)
            self._update(exec_id, Running=False, ExitCode=error.exit_code)
            raise
        except BaseException:
            for fd in ours.values():
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
            for sock in (console_ours, console_theirs):
                if sock is not None:
                    sock.close()
        return ExecSession(exec_id, execution.pid, self, stdin=ours.get("stdin"), stdout=ours.get("stdout"),
                           stderr=ours.get("stderr"), terminal=ours.get("terminal"))

    def _start_detached(self, exec_id: str, container_id: str, process: dict, user: str | None,
                        runtime: Any) -> int:
        """Start the exec under a waiter process that outlives this one; return the exec's PID.

        The waiter is double-forked and in its own session, so it is not this
        command's child; it is a subreaper, so the exec'd process becomes its
        child and it can record the exit code.
        """
        from dockyard.runtime import exec as runtime_exec

        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        first = os.fork()
        if first == 0:
            os.close(status_read)
            _run_waiter(self, exec_id, container_id, process, user, runtime, status_write)
        os.close(status_write)
        try:
            with os.fdopen(status_read, "rb") as reader:
                data = reader.read()
        finally:
            runtime_exec._reap(first)
        try:
            message = json.loads(data or b"{}")
        except ValueError:
            message = {}
        if "pid" in message:
            return int(message["pid"])
        reason = message.get("message") or "the exec waiter ended without reporting why"
        code = int(message.get("exit_code") or 126)
        self._update(exec_id, Running=False, ExitCode=code)
        raise ExecFailed(reason, code, container_id)

    def remove_container_execs(self, container_id: str) -> None:
        """Drop the exec records of a container."""
        remove_exec_records(self.run_root, container_id)


def remove_exec_records(run_root: Path, container_id: str) -> None:
    """Delete the exec records of a container; removing the container calls this."""
    directory = run_root / "execs"
    if not directory.exists():
        return
    for path in directory.glob("*.json"):
        try:
            if json.loads(path.read_text()).get("ContainerID") == container_id:
                path.unlink(missing_ok=True)
        except (OSError, ValueError):
            continue


def _alive(pid: int) -> bool:
    from dockyard.runtime.state import process_start_time

    return bool(pid) and process_start_time(pid) is not None


def _receive_terminal(console: socket.socket, exec_id: str) -> int:
    console.settimeout(10)
    try:
        _, fds, _, _ = socket.recv_fds(console, 16, 1)
    except OSError as error:
        raise ExecFailed(f"receiving the terminal of exec {exec_id} failed: {error}") from None
    if not fds:
        raise ExecFailed(f"exec {exec_id}: the process sent no terminal")
    os.set_inheritable(fds[0], False)
    return fds[0]


def _run_waiter(service: ExecService, exec_id: str, container_id: str, process: dict, user: str | None,
                runtime: Any, status_write: int) -> None:
    """Body of the detached exec's waiter; never returns."""
    code = 1
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        # The waiter may outlive this command: it keeps none of its files, pipes or locks open.
        os.closerange(3, status_write)
        os.closerange(status_write + 1, 65536)
        null = 0
        logging.disable(logging.CRITICAL)
        try:
            execution = runtime.exec(container_id, process, user=user, stdin=null, stdout=null, stderr=null)
        except ExecFailed as error:
            os.write(status_write, json.dumps({"message": error.reason, "exit_code": error.exit_code}).encode())
            os._exit(1)
        os.write(status_write, json.dumps({"pid": execution.pid}).encode())
        os.close(status_write)
        # The caller records Running and Pid once it reads the status; wait for that before the exit code.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not service._load(exec_id).get("Running"):
            time.sleep(0.01)
        service._finish(exec_id, execution.wait())
        code = 0
    except BaseException as error:  # noqa: BLE001 - the waiter has no one else to report to
        try:
            os.write(status_write, json.dumps({"message": str(error), "exit_code": 126}).encode())
        except OSError:
            pass
    os._exit(code)


__all__ = ["ExecService", "ExecSession", "ExecNotFound", "set_window_size"]

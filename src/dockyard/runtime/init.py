"""The container bring-up: everything between fork and exec of the user's process.

``bring_up`` runs in a process forked by ``container.create`` and is one
linear sequence on purpose, because the order of the steps is what makes it
correct, so each step's comment gives the reason for its place. It forks once more in the
middle, so that the process that execs the user's program is PID 1 of the new
PID namespace; the first process reports that PID and exits.

Until the container is created, every failure goes to the parent over the
sync pipe as ``{"type": "error", "step": ..., "message": ...}`` and the parent
raises it as ``RuntimeFailure``. After that the parent has gone, so a failure
to exec is written to the container's stderr, with exit status 127 for a
program not found and 126 for one that cannot be executed, as a shell does.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import resource
import signal
import socket
import struct
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from dockyard.runtime import capabilities, devices, libc, mounts, namespaces, rlimits, seccomp
from dockyard.runtime.cgroups import Cgroup
from dockyard.runtime.namespaces import Namespaces
from dockyard.runtime.spec import DEFAULT_PATH

log = logging.getLogger(__name__)

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


@dataclass
class InitContext:
    """Inputs of the bring-up, handed over by fork rather than serialized."""

    container_id: str
    config: dict[str, Any]
    rootfs: Path
    namespaces: Namespaces
    cgroup: Cgroup
    fifo_fd: int  # the exec FIFO, opened with O_PATH
    sync_write: int  # init -> runtime: JSON lines
    sync_read: int  # runtime -> init: one byte per acknowledgement
    stdio: tuple[int | None, int | None, int | None]
    console_socket: str | None


class Reporter:
    """Tracks the current step and sends messages to the runtime over the sync pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.current = "starting"

    def step(self, name: str) -> None:
        self.current = name
        log.debug("init step: %s", name)

    def send(self, message: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(message) + "\n").encode())

    def wait_ack(self, fd: int) -> None:
        if os.read(fd, 1) != b"1":
            raise OSError(errno.EPIPE, "the runtime closed the sync pipe")


def run(context: InitContext) -> NoReturn:
    """Run the bring-up in a freshly forked process; never returns."""
    reporter = Reporter(context.sync_write)
    try:
        bring_up(context, reporter)
    except BaseException as error:  # noqa: BLE001 - every failure must reach the parent
        try:
            reporter.send({"type": "error", "step": reporter.current, "message": str(error)})
        except OSError:
            pass
        os._exit(1)
    os._exit(1)


def bring_up(context: InitContext, reporter: Reporter) -> NoReturn:
    config = context.config
    process = config["process"]
    linux = config.get("linux", {})
    spaces = context.namespaces

    # Python's own handlers (SIGINT) and ignored signals (SIGPIPE) would be
    # inherited by the user's program; it must start with the defaults.
    reporter.step("resetting signal handlers")
    _reset_signals()

    # Moving a process into a cgroup waits for an RCU grace period (6 to 15 ms
    # measured on this kind of host). So the runtime moves the init while the
    # init sets up its mounts (``late_join``). The init unshares its cgroup
    # namespace only once it is in the cgroup, so that the namespace's root
    # is the container's cgroup. With a cgroup namespace joined by path, this
    # process joins the cgroup first, here.
    late_join = "cgroup" not in spaces.paths
    if not late_join:
        reporter.step("joining the cgroup")
        context.cgroup.join(os.getpid())

    # Namespace files are host paths: open them all before joining any.
    reporter.step("joining namespaces by path")
    for kind, fd in spaces.open_paths():
        namespaces.join(kind, fd)

    # The user namespace comes first, so every namespace created after it is
    # owned by it and the init has capabilities there. Only the runtime,
    # outside, can write the ID maps, so the init waits until it has.
    if "user" in spaces.new:
        reporter.step("creating the user namespace")
        namespaces.unshare(libc.CLONE_NEWUSER)
        reporter.send({"type": "userns", "pid": os.getpid()})
        reporter.wait_ack(context.sync_read)
        if any(mapping["containerID"] == 0 for mapping in linux.get("gidMappings", [])):
            os.setresgid(0, 0, 0)
        if any(mapping["containerID"] == 0 for mapping in linux.get("uidMappings", [])):
            os.setresuid(0, 0, 0)

    reporter.step("creating namespaces")
    namespaces.unshare(spaces.unshare_flags(exclude=("user", "cgroup") if late_join else ("user",)))

    # A new PID namespace applies to children only: fork, so the process
    # that goes on is PID 1 there. This process reports that PID and exits.
    reporter.step("forking the container's init")
    child = os.fork()
    if child:
        reporter.send({"type": "pid", "pid": child})
        os._exit(0)

    # From here on this is the container's init.
    reporter.step("setting up stdio")
    for target, source in enumerate(context.stdio):
        if source is not None and source != target:
            os.dup2(source, target)

    # The console socket is a host path: connect before pivot_root hides it.
    fifo_fd = context.fifo_fd
    console = None
    if process.get("terminal"):
        reporter.step(f"connecting to the console socket {context.console_socket}")
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console.connect(str(context.console_socket))

    if "network" in spaces.new:
        # A new network namespace has only lo, and it is down.
        reporter.step("bringing up lo")
        _loopback_up()

    reporter.step("setting the hostname")
    if config.get("hostname") or config.get("domainname"):
        if not spaces.has("uts"):
            raise OSError(errno.EINVAL, "hostname or domainname is set but there is no UTS namespace")
    if config.get("hostname"):
        libc.sethostname(config["hostname"])
    if config.get("domainname"):
        libc.setdomainname(config["domainname"])

    # The root: stop mounts propagating to the host, make the rootfs a
    # mount point, mount the spec's mounts inside it in order (each may
    # depend on the one before, as /dev/pts on /dev), then create devices
    # in the new /dev. Everything still uses host paths until pivot_root.
    # Mounts of cgroup filesystems, and anything below them, wait until the
    # init is in its cgroup and namespace.
    reporter.step("preparing the root filesystem")
    mounts.prepare_root(context.rootfs, linux.get("rootfsPropagation"))
    early, late = mounts.split_cgroup_mounts(config.get("mounts", []))
    for entry in early:
        reporter.step(f"mounting {entry.get('destination')}")
        mounts.mount_entry(context.rootfs, entry, context.cgroup, cgroupns=spaces.has("cgroup"))

    reporter.step("creating devices")
    devices.create(context.rootfs, linux.get("devices", []), bind=spaces.has("user"))

    if late_join:
        reporter.step("waiting for the runtime to move the init into its cgroup")
        reporter.wait_ack(context.sync_read)
        if "cgroup" in spaces.new:
            reporter.step("creating the cgroup namespace")
            namespaces.unshare(namespaces.FLAGS["cgroup"])
    for entry in late:
        reporter.step(f"mounting {entry.get('destination')}")
        mounts.mount_entry(context.rootfs, entry, context.cgroup, cgroupns=spaces.has("cgroup"))

    reporter.step("pivot_root")
    mounts.pivot(context.rootfs)

    # sysctls are written through the container's /proc, before /proc/sys
    # becomes read-only below.
    for key, value in (linux.get("sysctl") or {}).items():
        reporter.step(f"setting sysctl {key}={value}")
        Path("/proc/sys", *key.split(".")).write_text(str(value))

    if process.get("oomScoreAdj") is not None:
        reporter.step(f"setting oom_score_adj {process['oomScoreAdj']}")
        Path("/proc/self/oom_score_adj").write_text(str(process["oomScoreAdj"]))

    reporter.step("masking paths")
    mounts.mask_paths(linux.get("maskedPaths", []))
    reporter.step("making paths read-only")
    mounts.readonly_paths(linux.get("readonlyPaths", []))

    # The terminal needs the container's /dev/pts, so it comes after the
    # mounts; the runtime gets the master side, the process the other.
    if console is not None:
        reporter.step("creating the console")
        _setup_console(console, process.get("consoleSize"))

    if config["root"].get("readonly"):
        reporter.step("remounting the root read-only")
        mounts.readonly_root()

    if linux.get("rootfsPropagation"):
        reporter.step(f"setting root propagation {linux['rootfsPropagation']}")
        mounts.mount(None, "/", None, mounts.PROPAGATION_OPTIONS[linux["rootfsPropagation"]])

    # Limits go before the switch to the container user: raising a hard
    # limit, or keeping one above an unprivileged user's, needs root.
    reporter.step("setting rlimits")
    rlimits.apply(process.get("rlimits") or [])

    # runc creates a missing working directory, as root, before the user
    # switch; the user might not be allowed to create it.
    user = process.get("user") or {}
    cwd = process.get("cwd") or "/"
    reporter.step(f"creating the working directory {cwd}")
    os.makedirs(cwd, exist_ok=True)

    if process.get("noNewPrivileges"):
        reporter.step("setting no_new_privs")
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)

    # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the
    # user process usually does not keep: load it now, while still root.
    # With no_new_privs it is loaded last, right before exec, so that it
    # filters nothing of the bring-up.
    seccomp_config = linux.get("seccomp")
    if seccomp_config and not process.get("noNewPrivileges"):
        reporter.step("loading the seccomp filter")
        seccomp.load(seccomp_config)

    # The bounding set is dropped while CAP_SETPCAP is still held. KEEPCAPS
    # keeps the permitted set across setuid to a non-root user. capset then
    # sets the exact sets, and ambient capabilities are raised last.
    reporter.step("dropping bounding capabilities")
    spec_caps = process.get("capabilities") or {}
    capabilities.drop_bounding(capabilities.mask(spec_caps.get("bounding", [])))
    reporter.step(f"switching to uid {user.get('uid', 0)} gid {user.get('gid', 0)}")
    libc.prctl(libc.PR_SET_KEEPCAPS, 1)
    os.setgroups(user.get("additionalGids") or [])
    os.setresgid(user.get("gid", 0), user.get("gid", 0), user.get("gid", 0))
    os.setresuid(user.get("uid", 0), user.get("uid", 0), user.get("uid", 0))
    libc.prctl(libc.PR_SET_KEEPCAPS, 0)
    reporter.step("setting capabilities")
    capabilities.apply(spec_caps)

    reporter.step(f"changing to the working directory {cwd}")
    os.chdir(cwd)
    os.umask(user["umask"] if user.get("umask") is not None else 0o022)
    environment = _environment(process.get("env") or [], user.get("uid", 0))

    # Set up: the runtime records the container as created and exits. The
    # init blocks on the exec FIFO until `start` opens its other end.
    reporter.step("reporting created")
    reporter.send({"type": "created"})
    os.close(context.sync_write)
    os.close(context.sync_read)
    writer = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(writer, b"0")
    os.close(writer)
    os.close(fifo_fd)

    _exec(process["args"], environment, seccomp_config if process.get("noNewPrivileges") else None)


def _exec(args: list[str], environment: dict[str, str], late_seccomp: dict[str, Any] | None) -> NoReturn:
    """Find the program in the container's PATH, load a late seccomp filter and exec."""
    program, failure = _find_program(args[0], environment.get("PATH", DEFAULT_PATH))
    if program is None:
        _fail(failure or EXIT_NOT_FOUND, args[0])
    # The user's program gets only stdio; anything else the runtime's caller had open stays out.
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    try:
        if late_seccomp:
            seccomp.load(late_seccomp)
        os.execve(program, args, environment)
    except FileNotFoundError:
        _fail(EXIT_NOT_FOUND, args[0])
    except PermissionError:
        _fail(EXIT_NOT_EXECUTABLE, args[0])
    except Exception as error:  # noqa: BLE001 - reported on the container's stderr
        os.write(2, f"dockyard-runtime: exec {args[0]!r} failed: {error}\n".encode())
        os._exit(EXIT_NOT_EXECUTABLE)


def _find_program(name: str, path: str) -> tuple[str | None, int | None]:
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


def _fail(code: int, program: str) -> NoReturn:
    reason = "executable file not found in $PATH" if code == EXIT_NOT_FOUND else "permission denied"
    os.write(2, f"dockyard-runtime: exec {program!r}: {reason}\n".encode())
    os._exit(code)


def _environment(entries: list[str], uid: int) -> dict[str, str]:
    environment = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        environment[key] = value
    if "HOME" not in environment:
        environment["HOME"] = _home(uid)
    return environment


def _home(uid: int) -> str:
    """Return the home directory of ``uid`` from the container's /etc/passwd, or "/"."""
    try:
        with open("/etc/passwd") as file:
            for line in file:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def _reset_signals() -> None:
    for number in signal.valid_signals():
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def _setup_console(console: socket.socket, size: dict[str, int] | None) -> None:
    master, slave = os.openpty()
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    # /dev/console is the terminal too, as in runc.
    slave_path = os.ttyname(slave)
    console_path = Path("/dev/console")
    if not console_path.exists():
        console_path.touch(mode=0o600)
    mounts.mount(slave_path, console_path, None, libc.MS_BIND)
    socket.send_fds(console, [b"console"], [master])
    console.close()
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)

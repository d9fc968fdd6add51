"""``exec`` on the real kernel: the runtime's exec on busybox bundles, and ``dockyard exec`` on containers.

The runtime tests create a container from a bundle, exec processes into it
and check from inside what they see. The isolation test stalls an exec
between joining the container and exec'ing its program (the container's
/etc/passwd is a FIFO that reading blocks on), and meanwhile tries,
from inside the container, to open that process's ``/proc/PID/exe`` (the
host's Python) for writing. The CLI tests run ``dockyard exec`` against
detached busybox containers.
"""

from __future__ import annotations

import hashlib
import os
import pty
import select
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import ContainerNotFound, ExecFailed, RuntimeFailure
from dockyard.runtime import container, libc
from dockyard.runtime import exec as runtime_exec
from dockyard.runtime import spec
from tests.support.containers import reap_orphaned_zombies, start_busybox, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="exec needs root"),
]


# -- the runtime's exec on a bundle ---------------------------------------------------------


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Make the test process a child subreaper, as the runtime's exec does, and undo it afterwards."""
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    yield
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 0)
    reap_orphaned_zombies()


@pytest.fixture
def running(subreaper, make_bundle, state_root: Path, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A started busybox container that sleeps; yields (id, bundle, state root) and deletes it afterwards."""
    bundle = make_bundle(["sleep", "300"], edit=lambda config: config.update(hostname="execbox"))
    container_id = f"exec-{os.getpid()}"
    with open(tmp_path / "init.out", "wb") as out:
        container.create(container_id, bundle, state_root, stdout=out.fileno(), stderr=out.fileno())
    try:
        container.start(container_id, state_root)
        yield container_id, bundle, state_root
    finally:
        try:
            container.delete(container_id, state_root, force=True)
        except ContainerNotFound:
            pass


def run_exec(running: tuple[str, Path, Path], tmp_path: Path, args: list[str], *, user: str | None = None,
             env: list[str] | None = None, cwd: str | None = None) -> tuple[int, str, str]:
    container_id, bundle, state_root = running
    process = runtime_exec.build_process(spec.load(bundle), args, env=env, cwd=cwd)
    out_path, err_path = tmp_path / "exec.out", tmp_path / "exec.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err, open(os.devnull, "rb") as null:
        execution = runtime_exec.spawn(container_id, process, state_root, user=user,
                                       stdin=null.fileno(), stdout=out.fileno(), stderr=err.fileno())
        code = execution.wait()
    return code, out_path.read_text(), err_path.read_text()


def test_runtime_exec_joins_namespaces(running, tmp_path):
    code, out, _ = run_exec(running, tmp_path, ["sh", "-c", "echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' '"])
    assert code == 0
    pid, hostname, init_command = out.splitlines()
    assert int(pid) != 1
    assert hostname == "execbox"
    assert init_command.strip() == "sleep 300"


def test_runtime_exec_joins_cgroup(running):
    from dockyard.runtime.cgroups import Cgroup

    container_id, bundle, state_root = running
    cgroup = Cgroup.from_state(container.load(container_id, state_root).cgroup)
    process = runtime_exec.build_process(spec.load(bundle), ["sleep", "30"])
    with open(os.devnull, "r+b") as null:
        execution = runtime_exec.spawn(container_id, process, state_root,
                                       stdin=null.fileno(), stdout=null.fileno(), stderr=null.fileno())
    try:
        assert execution.pid in cgroup.pids()
    finally:
        execution.kill()
        assert execution.wait() == 128 + 9


def test_runtime_exec_user_env_cwd(running, tmp_path):
    code, out, _ = run_exec(running, tmp_path, ["sh", "-c", 'echo "$(id -u):$(id -g) $GREETING $(pwd) $HOME"'],
                            user="user", env=["GREETING=hi"], cwd="/tmp")
    assert code == 0
    assert out == "1000:1000 hi /tmp /home/user\n"


def test_runtime_exec_numeric_user_and_group(running, tmp_path):
    code, out, _ = run_exec(running, tmp_path, ["id"], user="4242:root")
    assert code == 0
    assert out.startswith("uid=4242 gid=0(root)")


def test_runtime_exec_unknown_user_fails(running, tmp_path):
    with pytest.raises(ExecFailed) as raised:
        run_exec(running, tmp_path, ["id"], user="nosuchuser")
    assert raised.value.exit_code == 126
    assert "unable to find user nosuchuser" in str(raised.value)


def test_runtime_exec_exit_codes(running, tmp_path):
    assert run_exec(running, tmp_path, ["true"])[0] == 0
    assert run_exec(running, tmp_path, ["false"])[0] == 1
    assert run_exec(running, tmp_path, ["sh", "-c", "kill -TERM $$"])[0] == 128 + 15
    with pytest.raises(ExecFailed) as not_found:
        run_exec(running, tmp_path, ["no-such-program"])
    assert not_found.value.exit_code == 127
    with pytest.raises(ExecFailed) as not_executable:
        run_exec(running, tmp_path, ["/etc/not-executable"])
    assert not_executable.value.exit_code == 126


def test_runtime_exec_missing_workdir_fails(running, tmp_path):
    with pytest.raises(ExecFailed) as raised:
        run_exec(running, tmp_path, ["true"], cwd="/no/such/dir")
    assert raised.value.exit_code == 126
    assert "/no/such/dir" in str(raised.value)


def test_runtime_exec_gets_only_stdio(running, tmp_path):
    leaked = os.open(sys.executable, os.O_RDONLY)  # inheritable on purpose
    os.set_inheritable(leaked, True)
    try:
        code, out, _ = run_exec(running, tmp_path, ["sh", "-c", "ls /proc/self/fd; readlink /proc/self/cwd"])
    finally:
        os.close(leaked)
    assert code == 0
    *descriptors, cwd = out.split()
    # 0, 1, 2 and the descriptor ls opened to list the directory.
    assert len(descriptors) == 4
    assert cwd == "/"


def test_runtime_exec_keeps_capabilities_and_seccomp(running, tmp_path):
    code, out, _ = run_exec(running, tmp_path, ["sh", "-c", "grep -E '^(CapBnd|CapEff|Seccomp|NoNewPrivs):' /proc/self/status"])
    assert code == 0
    fields = dict(line.split(":\t") for line in out.splitlines())
    from dockyard.runtime.capabilities import DEFAULT_CAPABILITIES, mask

    assert int(fields["CapBnd"], 16) == mask(DEFAULT_CAPABILITIES)
    assert int(fields["CapEff"], 16) == mask(DEFAULT_CAPABILITIES)
    assert fields["Seccomp"] == "2"
    assert fields["NoNewPrivs"] == "1"


def test_runtime_exec_on_stopped_container_fails(subreaper, make_bundle, state_root, tmp_path):
    bundle = make_bundle(["true"])
    container_id = f"exec-stopped-{os.getpid()}"
    container.create(container_id, bundle, state_root)
    try:
        container.start(container_id, state_root)
        container.wait_stopped(container.load(container_id, state_root), 10)
        with pytest.raises(RuntimeFailure, match="is not running"):
            runtime_exec.spawn(container_id, runtime_exec.build_process(spec.load(bundle), ["true"]), state_root)
    finally:
        container.delete(container_id, state_root, force=True)


def _sha256(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def _namespace_pid(host_pid: int) -> int:
    """Return the PID of a host process in its innermost PID namespace, from /proc/PID/status."""
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid line for process {host_pid}")


# With a user name the process stalls in the user lookup, while it still has every capability.
# Without one it stalls reading HOME from /etc/passwd, after dropping to the container's capabilities.
@pytest.mark.parametrize("user", ["user", None])
def test_runtime_exec_hides_host_binary_while_joining(running, tmp_path, user):
    container_id, bundle, state_root = running
    python = os.path.realpath(sys.executable)
    python_hash = _sha256(python)
    passwd = bundle / "rootfs" / "etc" / "passwd"
    passwd_text = passwd.read_text()
    passwd.unlink()
    os.mkfifo(passwd)

    pids: list[int] = []
    outcome: dict[str, object] = {}

    def stalled_exec() -> None:
        process = runtime_exec.build_process(spec.load(bundle), ["true"])
        with open(os.devnull, "r+b") as null:
            try:
                execution = runtime_exec.spawn(container_id, process, state_root, user=user,
                                               stdin=null.fileno(), stdout=null.fileno(), stderr=null.fileno(),
                                               on_pid=pids.append)
                outcome["code"] = execution.wait()
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = error

    thread = threading.Thread(target=stalled_exec)
    thread.start()
    try:
        assert wait_until(lambda: pids, timeout=10), "the exec never reported its PID"
        host_pid = pids[0]
        # The process is blocked opening the FIFO, before its execve: it is still the host's Python.
        assert wait_until(lambda: os.readlink(f"/proc/{host_pid}/exe") == python, timeout=5)
        inner = _namespace_pid(host_pid)
        probe = (
            f"cat /proc/{inner}/exe > /dev/null 2>&1 && echo read-exe; "
            f"echo tampered >> /proc/{inner}/exe 2>/dev/null && echo wrote-exe; "
            f"readlink /proc/{inner}/exe >/dev/null 2>&1 && echo link-exe; "
            f"ls /proc/{inner}/cwd/ >/dev/null 2>&1 && echo read-cwd; "
            f"readlink /proc/{inner}/fd/1 >/dev/null 2>&1 && echo link-fd; "
            f"test -e /proc/{inner} && echo visible; true"
        )
        code, out, _ = run_exec(running, tmp_path, ["sh", "-c", probe], env=["HOME=/root"])
        assert code == 0
        assert out.split() == ["visible"]
    finally:
        # Release the stalled lookup: write the passwd contents into the FIFO.
        with open(passwd, "w") as fifo:
            fifo.write(passwd_text)
        thread.join(30)
    assert not thread.is_alive()
    assert outcome.get("code") == 0, outcome
    assert _sha256(python) == python_hash


# -- dockyard exec -----------------------------------------------------------------------------


def test_exec_shares_pid_namespace_and_hostname(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox, "--hostname", "shared")
    result = busybox_dockyard.run("exec", container_id[:12], "sh", "-c", "echo $$; hostname; cat /proc/1/cmdline")
    pid, hostname, init_command = result.stdout.splitlines()
    assert int(pid) != 1
    assert hostname == "shared"
    assert init_command.replace("\0", " ").strip() == "sleep 300"


def test_exec_user_nobody(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    result = busybox_dockyard.run("exec", "-u", "nobody", container_id, "id")
    assert result.stdout.startswith("uid=65534(nobody) gid=65534(nogroup)")


def test_exec_env_and_workdir(busybox_dockyard, test_images, tmp_path):
    container_id = start_busybox(busybox_dockyard, test_images.busybox, "-e", "FROM_RUN=run")
    env_file = tmp_path / "exec.env"
    env_file.write_text("FROM_FILE=file\n")
    result = busybox_dockyard.run("exec", "-e", "FROM_EXEC=exec", "--env-file", str(env_file), "-w", "/etc",
                                  container_id, "sh", "-c", 'echo "$FROM_RUN $FROM_EXEC $FROM_FILE $(pwd)"')
    assert result.stdout == "run exec file /etc\n"


@pytest.mark.parametrize(("command", "expected"), [
    (["true"], 0),
    (["false"], 1),
    (["/etc/passwd"], 126),
    (["no-such-program"], 127),
])
def test_exec_exit_codes(busybox_dockyard, test_images, command, expected):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    result = busybox_dockyard.run("exec", container_id, *command, check=False)
    assert result.returncode == expected, result.stderr
    if expected == 127:
        assert 'exec: "no-such-program": executable file not found in $PATH' in result.stderr


def test_exec_stdin(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    result = busybox_dockyard.run("exec", "-i", container_id, "sh", "-c", "cat; echo err >&2",
                                  input="one\ntwo\n")
    assert result.stdout == "one\ntwo\n"
    assert result.stderr == "err\n"


def test_exec_tty(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    from tests.support.cli import DOCKYARD

    child, master = pty.fork()
    if child == 0:
        os.environ.update(busybox_dockyard.env())
        os.execv(str(DOCKYARD), [str(DOCKYARD), "exec", "-it", container_id, "sh"])
    output = b""
    sent = False
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break  # EIO: the command exited and closed the terminal
            if not chunk:
                break
            output += chunk
            # The shell discards input typed before its prompt, so the command waits for it.
            if not sent and b"# " in output:
                os.write(master, b"tty; echo marker-$((6*7)); exit 5\r")
                sent = True
        _, status = os.waitpid(child, 0)
    finally:
        os.close(master)
    text = output.decode(errors="replace")
    assert "marker-42" in text
    assert "/dev/pts/" in text
    assert os.waitstatus_to_exitcode(status) == 5


def test_exec_detached(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    result = busybox_dockyard.run("exec", "-d", container_id, "sh", "-c", "sleep 0.2; echo done > /tmp/detached")
    assert result.stdout == ""
    assert wait_until(
        lambda: busybox_dockyard.run("exec", container_id, "cat", "/tmp/detached", check=False).stdout == "done\n",
        timeout=10,
    )


def test_exec_stopped_container_fails(busybox_dockyard, test_images):
    container_id = busybox_dockyard.run("create", test_images.busybox, "true").stdout.strip()
    result = busybox_dockyard.run("exec", container_id, "true", check=False)
    assert result.returncode == 1
    assert f"container {container_id} is not running" in result.stderr


def test_exec_paused_container_fails(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    busybox_dockyard.run("pause", container_id)
    result = busybox_dockyard.run("exec", container_id, "true", check=False)
    busybox_dockyard.run("unpause", container_id)
    assert result.returncode == 1
    assert "is paused, unpause the container before exec" in result.stderr


# -- the exec service, as the API server calls it ------------------------------------------------


def engine_for(dockyard):
    from dockyard import config as config_module
    from dockyard.engine import Engine

    return Engine(config_module.load(path=dockyard.config_path, root=dockyard.root))


def test_exec_service_attached_session(subreaper, busybox_dockyard, test_images):
    from dockyard.engine.execs import ExecService

    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    engine = engine_for(busybox_dockyard)
    service = ExecService(engine)
    exec_id = service.create(container_id[:12], {
        "AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Cmd": ["sh", "-c", "read x; echo got $x; exit 4"],
    })
    created = service.inspect(exec_id)
    assert created["Running"] is False
    assert created["ExitCode"] is None
    assert created["ContainerID"] == container_id
    assert created["OpenStdin"] is True
    assert created["ProcessConfig"] == {"privileged": False, "user": "", "tty": False, "entrypoint": "sh",
                                        "arguments": ["-c", "read x; echo got $x; exit 4"]}
    session = service.start(exec_id)
    assert session is not None
    try:
        assert service.inspect(exec_id)["Running"] is True
        assert service.inspect(exec_id)["Pid"] == session.pid
        os.write(session.stdin, b"hello\n")
        session.close_stdin()
        output = b""
        while chunk := os.read(session.stdout, 4096):
            output += chunk
    finally:
        session.close()
    assert session.wait() == 4
    assert output == b"got hello\n"
    finished = service.inspect(exec_id)
    assert finished["Running"] is False
    assert finished["ExitCode"] == 4
    engine.close()


def test_exec_service_detached_records_exit_code(subreaper, busybox_dockyard, test_images):
    from dockyard.engine.execs import ExecService
    from dockyard.errors import Conflict

    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    engine = engine_for(busybox_dockyard)
    service = ExecService(engine)
    exec_id = service.create(container_id, {"Cmd": ["sh", "-c", "sleep 0.3; exit 7"]})
    assert service.start(exec_id, detach=True) is None
    with pytest.raises(Conflict, match="already been started"):
        service.start(exec_id)
    assert wait_until(lambda: service.inspect(exec_id)["ExitCode"] == 7, timeout=10)
    assert service.inspect(exec_id)["Running"] is False
    engine.close()


def test_exec_service_unknown_id(busybox_dockyard):
    from dockyard.engine.execs import ExecNotFound, ExecService

    engine = engine_for(busybox_dockyard)
    with pytest.raises(ExecNotFound, match="No such exec instance: 00ff"):
        ExecService(engine).inspect("00ff")
    engine.close()


def test_exec_service_tty_size_and_resize(subreaper, busybox_dockyard, test_images):
    import errno

    from dockyard.engine.execs import ExecService

    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    engine = engine_for(busybox_dockyard)
    service = ExecService(engine)
    exec_id = service.create(container_id, {
        "AttachStdin": True, "Tty": True, "Cmd": ["sh", "-c", "stty size; read x; stty size; tty"],
    })
    session = service.start(exec_id, console_size=(30, 100))
    assert session is not None
    assert session.terminal is not None
    output = b""
    try:
        deadline = time.monotonic() + 20
        resized = False
        while time.monotonic() < deadline:
            if not select.select([session.terminal], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(session.terminal, 4096)
            except OSError as error:
                assert error.errno == errno.EIO
                break
            output += chunk
            if not resized and b"30 100" in output:
                service.resize(session, 40, 120)
                os.write(session.terminal, b"go\n")
                resized = True
    finally:
        session.close()
    assert session.wait() == 0
    lines = output.decode().replace("\r", "").split("\n")
    assert "30 100" in lines
    assert "40 120" in lines
    assert any(line.startswith("/dev/pts/") for line in lines)
    engine.close()


def test_exec_defaults_to_container_user(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox, "-u", "nobody")
    assert busybox_dockyard.run("exec", container_id, "id", "-u").stdout == "65534\n"
    assert busybox_dockyard.run("exec", "-u", "0", container_id, "id", "-u").stdout == "0\n"
    result = busybox_dockyard.run("exec", "-u", "nosuchuser", container_id, "true", check=False)
    assert result.returncode == 126
    assert "unable to find user nosuchuser" in result.stderr

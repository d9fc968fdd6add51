"""dockyard's OCI runtime on the real kernel, checked from inside busybox containers.

Each test runs a shell in a container that prints its view of the system (its PID,
capabilities, cgroup files, mounts), and asserts on that output. Every
container is deleted even when its test fails, and the last checks make sure
nothing is left: no cgroup directory, mount, state directory or process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import ContainerNotFound, RuntimeFailure
from dockyard.runtime import container, libc
from dockyard.runtime.capabilities import DEFAULT_CAPABILITIES, mask
from dockyard.runtime.spec import seccomp_profile

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the runtime needs root"),
]

DEFAULT_MASK = mask(DEFAULT_CAPABILITIES)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def runner(state_root: Path, tmp_path: Path) -> Iterator[Callable[[Path, str], Result]]:
    """Return a function that runs a bundle in the foreground and returns its exit code and output."""
    used: list[str] = []

    def run(bundle: Path, container_id: str) -> Result:
        used.append(container_id)
        out_path, err_path = tmp_path / f"{container_id}.out", tmp_path / f"{container_id}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            code = container.run(container_id, bundle, state_root, stdout=out.fileno(), stderr=err.fileno())
        return Result(code, out_path.read_text(), err_path.read_text())

    yield run
    for container_id in used:
        _delete_quietly(container_id, state_root)


def _delete_quietly(container_id: str, state_root: Path) -> None:
    try:
        container.delete(container_id, state_root, force=True)
    except ContainerNotFound:
        pass


@pytest.fixture
def lifecycle(state_root: Path, tmp_path: Path) -> Iterator[Callable[[str, Path], int]]:
    """Return a function that creates a container (stdio to files); deletes them all afterwards."""
    created: list[str] = []
    # The init's first parent exits; as a subreaper the test process inherits
    # the init and can reap it, so no zombie stays behind.
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)

    def create(container_id: str, bundle: Path) -> int:
        created.append(container_id)
        with open(tmp_path / f"{container_id}.out", "wb") as out:
            return container.create(container_id, bundle, state_root, stdout=out.fileno(), stderr=out.fileno())

    yield create
    for container_id in created:
        _delete_quietly(container_id, state_root)


def status_field(output: str, name: str) -> str:
    for line in output.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in output: {output!r}")


def test_init_is_pid_1_with_hostname(make_bundle, runner):
    bundle = make_bundle(["sh", "-c", "echo $$; hostname"], lambda c: c.update(hostname="box1"))
    result = runner(bundle, "pid1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["1", "box1"]


def test_default_capabilities_and_seccomp(make_bundle, runner):
    bundle = make_bundle(["sh", "-c", "cat /proc/self/status"])
    result = runner(bundle, "caps")
    assert result.exit_code == 0, result.stderr
    assert int(status_field(result.stdout, "CapEff"), 16) == DEFAULT_MASK
    assert int(status_field(result.stdout, "CapBnd"), 16) == DEFAULT_MASK
    assert int(status_field(result.stdout, "CapPrm"), 16) == DEFAULT_MASK
    assert status_field(result.stdout, "Seccomp") == "2"
    assert status_field(result.stdout, "NoNewPrivs") == "1"


def test_spec_changes_capabilities(make_bundle, runner):
    requested = [name for name in DEFAULT_CAPABILITIES if name != "CAP_NET_RAW"] + ["CAP_SYS_ADMIN"]

    def edit(config: dict[str, Any]) -> None:
        config["process"]["capabilities"] = {"bounding": requested, "effective": requested, "permitted": requested}
        config["linux"]["seccomp"] = seccomp_profile(requested)

    bundle = make_bundle(["sh", "-c", "cat /proc/self/status; unshare -m true; echo unshare=$?"], edit)
    result = runner(bundle, "capchange")
    assert result.exit_code == 0, result.stderr
    assert int(status_field(result.stdout, "CapEff"), 16) == mask(requested)
    assert int(status_field(result.stdout, "CapBnd"), 16) == mask(requested)
    # With CAP_SYS_ADMIN the profile lets unshare through.
    assert "unshare=0" in result.stdout


def test_seccomp_blocks_unshare_and_mount(make_bundle, runner):
    # CAP_SYS_ADMIN is granted but the filter is the default one, so only
    # seccomp can reject unshare or mount.
    requested = DEFAULT_CAPABILITIES + ["CAP_SYS_ADMIN"]

    def edit(config: dict[str, Any]) -> None:
        config["process"]["capabilities"] = {"bounding": requested, "effective": requested, "permitted": requested}

    script = "unshare -m true; echo unshare=$?; mount -t tmpfs none /tmp; echo mount=$?"
    result = runner(make_bundle(["sh", "-c", script], edit), "seccomp")
    assert "unshare=1" in result.stdout
    assert "mount=1" in result.stdout
    assert "unshare(0x20000): Operation not permitted" in result.stderr
    # busybox mount words EPERM this way.
    assert "mount: permission denied" in result.stderr


def test_no_new_privs_off(make_bundle, runner):
    bundle = make_bundle(["sh", "-c", "cat /proc/self/status"], lambda c: c["process"].update(noNewPrivileges=False))
    result = runner(bundle, "nnp-off")
    assert result.exit_code == 0, result.stderr
    assert status_field(result.stdout, "NoNewPrivs") == "0"
    assert status_field(result.stdout, "Seccomp") == "2"


def test_masked_and_readonly_paths(make_bundle, runner):
    script = (
        "wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; "
        "echo x > /proc/sys/kernel/domainname; echo write=$?; "
        "test -e /proc/kcore && wc -c < /proc/kcore || echo 0"
    )
    result = runner(make_bundle(["sh", "-c", script]), "masked")
    lines = result.stdout.split()
    assert lines[0] == "0"  # /proc/timer_list is /dev/null
    assert lines[1] == "0"  # /sys/firmware is an empty tmpfs
    assert lines[2] == "write=1"
    assert "Read-only file system" in result.stderr
    assert lines[3] == "0"  # /proc/kcore, where the kernel has it


def test_readonly_root(make_bundle, runner):
    bundle = make_bundle(["sh", "-c", "touch /file; echo touch=$?; touch /tmp/file; echo tmp=$?"],
                         lambda c: c["root"].update(readonly=True))
    result = runner(bundle, "roroot")
    assert "touch=1" in result.stdout
    assert "tmp=1" in result.stdout
    assert "Read-only file system" in result.stderr


def test_devices_and_links(make_bundle, runner):
    script = "ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; readlink /dev/ptmx; readlink /dev/fd; head -c 4 /dev/zero | wc -c"
    result = runner(make_bundle(["sh", "-c", script]), "devices")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("crw-rw-rw-") == 6
    assert "pts/ptmx" in result.stdout
    assert "/proc/self/fd" in result.stdout
    assert result.stdout.split()[-1] == "4"


def test_network_namespace_has_only_lo(make_bundle, runner):
    result = runner(make_bundle(["sh", "-c", "ip -o link"]), "netns")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert ": lo:" in lines[0]
    assert "UP" in lines[0]


def test_memory_limit_visible_and_enforced(make_bundle, runner):
    limit = 32 * 1024 * 1024

    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"]["memory"] = {"limit": limit}
        for entry in config["mounts"]:
            if entry["destination"] == "/dev/shm":
                entry["options"] = ["nosuid", "nodev", "mode=1777", "size=128m"]

    # tmpfs pages are charged to the cgroup, so writing 64 MiB to /dev/shm
    # crosses the limit and the OOM killer stops dd.
    script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 2>/dev/null; echo dd=$?"
    result = runner(make_bundle(["sh", "-c", script], edit), "memory")
    lines = result.stdout.split()
    assert lines[0] == str(limit)
    assert "dd=137" in lines


def test_pids_limit_stops_fork_bomb(make_bundle, runner):
    # The subshell forks sleeps until fork fails; at most 30 are attempted.
    script = "(i=0; while [ $i -lt 30 ]; do sleep 30 & i=$((i+1)); done); read n < /sys/fs/cgroup/pids/pids.max; echo max=$n; read n < /sys/fs/cgroup/pids/pids.current; echo current=$n"
    bundle = make_bundle(["sh", "-c", script], lambda c: c["linux"]["resources"].update(pids={"limit": 10}))
    result = runner(bundle, "pids")
    assert "max=10" in result.stdout
    # The shell and 8 sleeps remain once the subshell that hit the limit exits.
    assert "current=9" in result.stdout
    assert "can't fork" in result.stderr


def test_cpu_resources_written(make_bundle, runner):
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"]["cpu"] = {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"}

    script = "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpuset/cpuset.cpus"
    result = runner(make_bundle(["sh", "-c", script], edit), "cpu")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["512", "50000", "0"]


def test_missing_cwd_is_created(make_bundle, runner):
    bundle = make_bundle(["pwd"], lambda c: c["process"].update(cwd="/does/not/exist"))
    result = runner(bundle, "cwd")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "/does/not/exist"


def test_user_and_groups(make_bundle, runner):
    bundle = make_bundle(["id"], lambda c: c["process"].update(user={"uid": 1000, "gid": 1000, "additionalGids": [5]}))
    result = runner(bundle, "user")
    assert result.exit_code == 0, result.stderr
    assert "uid=1000(user) gid=1000(user)" in result.stdout
    assert "groups=5" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sh", "-c", "exit 0"], 0),
        (["sh", "-c", "exit 1"], 1),
        (["/etc/not-executable"], 126),
        (["no-such-program"], 127),
        (["/no/such/path"], 127),
    ],
)
def test_exit_codes(make_bundle, runner, args, expected):
    result = runner(make_bundle(args), f"exit{expected}-{len(args)}")
    assert result.exit_code == expected, result.stderr
    if expected in (126, 127):
        assert args[0] in result.stderr


def test_exit_code_of_signal(make_bundle, lifecycle, state_root):
    pid = lifecycle("sig9", make_bundle(["sleep", "30"]))
    container.start("sig9", state_root)
    container.kill("sig9", "KILL", state_root)
    _, status = os.waitpid(pid, 0)
    assert container.exit_code(status) == 128 + 9


def test_rlimit_above_hard_limit_is_clear_error(make_bundle, state_root):
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or libc.prctl(libc.PR_CAPBSET_READ, 24):
        pytest.skip("this process may raise RLIMIT_NOFILE (CAP_SYS_RESOURCE or no hard limit)")
    too_high = hard + 10000

    def edit(config: dict[str, Any]) -> None:
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": too_high, "hard": too_high}]

    with pytest.raises(RuntimeFailure) as caught:
        container.run("rlimit", make_bundle(["true"], edit), state_root)
    message = str(caught.value)
    assert "RLIMIT_NOFILE" in message
    assert str(too_high) in message
    assert str(hard) in message
    assert not (state_root / "rlimit").exists()


def test_lifecycle_create_start_kill_delete(make_bundle, lifecycle, state_root):
    bundle = make_bundle(["sleep", "30"])
    pid = lifecycle("life", bundle)
    created = container.oci_state("life", state_root)
    assert created["status"] == "created"
    assert created["pid"] == pid
    assert created["id"] == "life"
    assert created["bundle"] == str(bundle)
    assert created["ociVersion"].startswith("1.")

    container.start("life", state_root)
    assert container.oci_state("life", state_root)["status"] == "running"

    container.pause("life", state_root)
    assert container.oci_state("life", state_root)["status"] == "paused"
    container.resume("life", state_root)
    assert container.oci_state("life", state_root)["status"] == "running"

    record = container.load("life", state_root)
    container.kill("life", "SIGKILL", state_root)
    assert container.wait_stopped(record, 10)
    assert container.oci_state("life", state_root)["status"] == "stopped"

    container.delete("life", state_root)
    assert_nothing_left(record, bundle)


def test_delete_running_needs_force(make_bundle, lifecycle, state_root):
    bundle = make_bundle(["sleep", "30"])
    lifecycle("busy", bundle)
    container.start("busy", state_root)
    record = container.load("busy", state_root)
    with pytest.raises(RuntimeFailure, match="busy.*running"):
        container.delete("busy", state_root)
    container.delete("busy", state_root, force=True)
    assert_nothing_left(record, bundle)


def test_delete_created_container(make_bundle, lifecycle, state_root):
    bundle = make_bundle(["sleep", "30"])
    lifecycle("fresh", bundle)
    record = container.load("fresh", state_root)
    container.delete("fresh", state_root)
    assert_nothing_left(record, bundle)


def test_failed_setup_reports_step_and_cleans_up(make_bundle, state_root):
    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["rbind"]})

    with pytest.raises(RuntimeFailure, match="mounting /data.*/no/such/dir"):
        container.create("badmount", make_bundle(["true"], edit), state_root)
    assert not (state_root / "badmount").exists()


def test_bind_mount_read_only(make_bundle, runner, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from the host\n")

    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append(
            {"destination": "/mnt/shared", "type": "bind", "source": str(shared), "options": ["rbind", "ro", "rprivate"]}
        )

    result = runner(make_bundle(["sh", "-c", "cat /mnt/shared/hello; touch /mnt/shared/new; echo touch=$?"], edit), "bind")
    assert "from the host" in result.stdout
    assert "touch=1" in result.stdout
    assert not (shared / "new").exists()


def test_console_socket_receives_terminal(make_bundle, lifecycle, state_root, tmp_path):
    socket_path = tmp_path / "console.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    listener.listen(1)
    bundle = make_bundle(["sh", "-c", "tty; echo done"], lambda c: c["process"].update(terminal=True))
    try:
        container.create("tty", bundle, state_root, console_socket=socket_path)
        connection, _ = listener.accept()
        _, fds, _, _ = socket.recv_fds(connection, 16, 1)
        connection.close()
        master = fds[0]
        container.start("tty", state_root)
        output = b""
        deadline = time.monotonic() + 10
        while b"done" not in output and time.monotonic() < deadline:
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        os.close(master)
    finally:
        listener.close()
        _delete_quietly("tty", state_root)
    assert b"/dev/pts/0" in output
    assert b"done" in output


def test_cli_run_state_and_spec(make_bundle, state_root, tmp_path):
    command = [str(Path(sys.executable).parent / "dockyard-runtime"), "--root", str(state_root)]
    bundle = make_bundle(["sh", "-c", "echo from-cli; exit 3"])
    result = subprocess.run([*command, "run", "--bundle", str(bundle), "clirun"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "from-cli\n"
    assert not (state_root / "clirun").exists()

    missing = subprocess.run([*command, "state", "nosuch"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert "nosuch" in missing.stderr

    spec_dir = tmp_path / "specdir"
    spec_dir.mkdir()
    subprocess.run([*command, "spec", "--bundle", str(spec_dir)], check=True, timeout=60)
    config = json.loads((spec_dir / "config.json").read_text())
    assert config["process"]["capabilities"]["bounding"] == DEFAULT_CAPABILITIES


def test_cli_create_start_state_delete(make_bundle, state_root, tmp_path):
    command = [str(Path(sys.executable).parent / "dockyard-runtime"), "--root", str(state_root)]
    bundle = make_bundle(["sleep", "30"])
    pid_file = tmp_path / "pid"
    try:
        subprocess.run(
            [*command, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), "clilife"],
            check=True, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        state = json.loads(subprocess.run([*command, "state", "clilife"], capture_output=True, check=True, timeout=60).stdout)
        assert state["status"] == "created"
        assert state["pid"] == int(pid_file.read_text())
        subprocess.run([*command, "start", "clilife"], check=True, timeout=60)
        state = json.loads(subprocess.run([*command, "state", "clilife"], capture_output=True, check=True, timeout=60).stdout)
        assert state["status"] == "running"
        subprocess.run([*command, "kill", "clilife", "KILL"], check=True, timeout=60)
        record = container.load("clilife", state_root)
        assert container.wait_stopped(record, 10)
        subprocess.run([*command, "delete", "clilife"], check=True, timeout=60)
        assert_nothing_left(record, bundle)
    finally:
        _delete_quietly("clilife", state_root)


def assert_nothing_left(record: container.ContainerState, bundle: Path) -> None:
    # A container created by the CLI was reparented to this (subreaper) test process.
    try:
        os.waitpid(record.pid, os.WNOHANG)
    except ChildProcessError:
        pass
    assert not record.directory.exists(), f"state directory {record.directory} is left"
    for entry in record.cgroup["directories"]:
        assert not Path(entry["directory"]).exists(), f"cgroup {entry['directory']} is left"
    assert not Path(f"/proc/{record.pid}").exists() or record.start_time != _start_time(record.pid)
    with open("/proc/self/mountinfo") as file:
        assert str(bundle) not in file.read()


def _start_time(pid: int) -> int | None:
    from dockyard.runtime.state import process_start_time

    return process_start_time(pid)


def test_without_cgroup_namespace_binds_cgroup_dirs(make_bundle, runner):
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "cgroup"]
        config["linux"]["resources"]["pids"] = {"limit": 42}

    result = runner(make_bundle(["sh", "-c", "cat /sys/fs/cgroup/pids/pids.max"], edit), "nocgroupns")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "42"


@pytest.fixture
def open_bundle(make_bundle, tmp_path_factory) -> Iterator[Callable[..., Path]]:
    """Like make_bundle, but in a directory every user may traverse, for user-namespaced containers."""
    import shutil
    import tempfile

    directories: list[Path] = []

    def make(args: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        bundle = make_bundle(args, edit)
        directory = Path(tempfile.mkdtemp(prefix="dockyard-userns-"))
        directory.chmod(0o755)
        directories.append(directory)
        target = directory / "bundle"
        shutil.copytree(bundle, target, symlinks=True)
        return target

    yield make
    for directory in directories:
        shutil.rmtree(directory)


def test_user_namespace_maps_root(open_bundle, runner):
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]

    result = runner(open_bundle(["sh", "-c", "id -u; cat /proc/self/uid_map; echo $$"], edit), "userns")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "0"
    assert lines[1:4] == ["0", "200000", "65536"]
    assert lines[4] == "1"


def test_cgroup_in_use_is_rejected(make_bundle, lifecycle, state_root):
    first = make_bundle(["sleep", "30"])
    path = json.loads((first / "config.json").read_text())["linux"]["cgroupsPath"]
    lifecycle("owner", first)
    second = make_bundle(["true"], lambda c: c["linux"].update(cgroupsPath=path))
    with pytest.raises(RuntimeFailure, match="already in use"):
        lifecycle("intruder", second)
    assert container.oci_state("owner", state_root)["status"] == "created"
    assert not (state_root / "intruder").exists()


def test_grace_period_moves_nothing():
    import threading

    from dockyard.runtime import cgroups

    with open("/proc/self/cgroup") as file:
        before = file.read()
    cgroups.start_grace_period()
    for thread in threading.enumerate():
        if thread.name == "cgroup grace period":
            thread.join(timeout=10)
            assert not thread.is_alive(), "the grace period thread did not finish"
    with open("/proc/self/cgroup") as file:
        assert file.read() == before

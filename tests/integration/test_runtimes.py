"""Containers run by an external OCI runtime (``--runtime runc``, ``--runtime crun``), through the real CLI.

Each test runs the installed ``dockyard`` command in a private root with the
busybox test image, and checks that the runtime's state directory
(``<run root>/<runtime>/<id>``), the container's cgroups and its root mount
are gone once the container is removed.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from dockyard.engine import runtimes
from tests.support.api import DOCKER_CLI, ApiService
from tests.support.cli import Dockyard
from tests.support.containers import start_busybox, wait_until
from tests.support.images import ImageSet

pytestmark = pytest.mark.integration

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _runtime_params() -> list:
    params = []
    for name in runtimes.EXTERNAL:
        marks = []
        if runtimes.find_executable(name) is None:
            marks.append(pytest.mark.skip(reason=f"{name} is not installed"))
        elif name == "crun" and runtimes.crun_host_problem() is not None:
            marks.append(pytest.mark.skip(reason=f"crun rejects this host: {runtimes.crun_host_problem()}"))
        params.append(pytest.param(name, marks=marks))
    return params


@pytest.fixture(params=_runtime_params())
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run_root(dockyard: Dockyard) -> Path:
    from dockyard import config

    return config.load(path=dockyard.config_path, root=dockyard.root).run_root


def runtime_state_dir(dockyard: Dockyard, runtime: str, container_id: str) -> Path:
    return run_root(dockyard) / runtime / container_id


def container_cgroups(container_id: str) -> list[str]:
    """Return every cgroup directory named after the container, in any hierarchy."""
    found = []
    for directory, subdirectories, _ in os.walk(CGROUP_ROOT):
        if container_id in subdirectories:
            found.append(os.path.join(directory, container_id))
    return found


def container_mounts(container_id: str) -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line for line in mountinfo if container_id in line]


def assert_nothing_left(dockyard: Dockyard, runtime: str, container_id: str) -> None:
    assert not runtime_state_dir(dockyard, runtime, container_id).exists()
    assert container_cgroups(container_id) == []
    assert container_mounts(container_id) == []


def test_run_rm_echo(busybox_dockyard: Dockyard, test_images: ImageSet, runtime: str) -> None:
    result = busybox_dockyard.run("run", "--rm", "--runtime", runtime, test_images.busybox, "echo", "hi")
    assert result.stdout == "hi\n"
    assert busybox_dockyard.run("ps", "-a", "-q").stdout == ""
    state_root = run_root(busybox_dockyard) / runtime
    leftover = [path.name for path in state_root.iterdir() if path.is_dir()] if state_root.exists() else []
    assert leftover == []


def test_run_exit_code(busybox_dockyard: Dockyard, test_images: ImageSet, runtime: str) -> None:
    result = busybox_dockyard.run("run", "--rm", "--runtime", runtime, test_images.busybox,
                                  "sh", "-c", "echo to-stderr >&2; exit 3", check=False)
    assert result.returncode == 3
    assert "to-stderr" in result.stderr


def test_run_with_tty(busybox_dockyard: Dockyard, test_images: ImageSet, runtime: str) -> None:
    container_id = start_busybox(busybox_dockyard, test_images.busybox, "-t", "--runtime", runtime,
                                 command=("sh", "-c", "tty; sleep 300"))
    assert wait_until(lambda: "/dev/pts/" in busybox_dockyard.run("logs", container_id).stdout)
    busybox_dockyard.run("rm", "-f", container_id)
    assert_nothing_left(busybox_dockyard, runtime, container_id)


def test_detached_lifecycle(busybox_dockyard: Dockyard, test_images: ImageSet, runtime: str) -> None:
    dockyard = busybox_dockyard
    # The trap makes the stop signal end the shell with exit code 7, which shows that the runtime delivered it.
    container_id = start_busybox(dockyard, test_images.busybox, "--runtime", runtime,
                                 command=("sh", "-c", "trap 'exit 7' TERM; echo started; sleep 300 & wait"))

    listed = dockyard.run("ps", "-q", "--no-trunc").stdout.split()
    assert listed == [container_id]
    inspected = json.loads(dockyard.run("inspect", container_id).stdout)[0]
    assert inspected["HostConfig"]["Runtime"] == runtime
    assert inspected["State"]["Running"] is True
    assert runtime_state_dir(dockyard, runtime, container_id).is_dir()
    assert wait_until(lambda: "started" in dockyard.run("logs", container_id).stdout)

    assert dockyard.run("exec", container_id, "echo", "from-exec").stdout == "from-exec\n"
    assert dockyard.run("exec", container_id, "sh", "-c", "exit 5", check=False).returncode == 5
    missing = dockyard.run("exec", container_id, "no-such-program", check=False)
    assert missing.returncode == 127
    assert "no-such-program" in missing.stderr
    assert dockyard.run("exec", "-u", "nobody", container_id, "id", "-u").stdout.strip() == "65534"

    dockyard.run("pause", container_id)
    assert json.loads(dockyard.run("inspect", container_id).stdout)[0]["State"]["Status"] == "paused"
    dockyard.run("unpause", container_id)

    dockyard.run("stop", container_id)
    state = json.loads(dockyard.run("inspect", container_id).stdout)[0]["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 7
    assert not runtime_state_dir(dockyard, runtime, container_id).exists()

    dockyard.run("rm", container_id)
    assert dockyard.run("ps", "-a", "-q").stdout == ""
    assert_nothing_left(dockyard, runtime, container_id)


def test_exec_with_tty(busybox_dockyard: Dockyard, test_images: ImageSet, runtime: str) -> None:
    import pty
    import select
    import time

    from tests.support.cli import DOCKYARD

    container_id = start_busybox(busybox_dockyard, test_images.busybox, "--runtime", runtime)
    child, master = pty.fork()
    if child == 0:
        os.environ.update(busybox_dockyard.env())
        os.execv(str(DOCKYARD), [str(DOCKYARD), "exec", "-t", container_id, "sh", "-c", "tty; exit 4"])
    output = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break  # EIO: the command exited, which closes the terminal
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(child, 0)
    finally:
        os.close(master)
    assert b"/dev/pts/" in output
    assert os.waitstatus_to_exitcode(status) == 4


def test_restart_keeps_runtime(busybox_dockyard: Dockyard, test_images: ImageSet, runtime: str) -> None:
    container_id = start_busybox(busybox_dockyard, test_images.busybox, "--runtime", runtime)
    busybox_dockyard.run("restart", "-t", "0", container_id)
    assert runtime_state_dir(busybox_dockyard, runtime, container_id).is_dir()
    assert busybox_dockyard.run("exec", container_id, "true").returncode == 0
    busybox_dockyard.run("rm", "-f", container_id)
    assert_nothing_left(busybox_dockyard, runtime, container_id)


def test_adopted_after_monitor_died(busybox_dockyard: Dockyard, test_images: ImageSet, runtime: str) -> None:
    from dockyard.engine import monitor

    dockyard = busybox_dockyard
    container_id = start_busybox(dockyard, test_images.busybox, "--runtime", runtime)
    old = monitor.read_pidfile(monitor.monitor_dir(dockyard.root, run_root(dockyard)))
    # Guard the kill: os.kill(0, ...) would signal this test's own process group.
    assert monitor.is_monitor_process(old)
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: not monitor.is_monitor_process(old))

    # The next command finds the runtime's state through the runtime recorded with the container.
    state = json.loads(dockyard.run("inspect", container_id).stdout)[0]["State"]
    assert state["Status"] == "running"
    new = monitor.read_pidfile(monitor.monitor_dir(dockyard.root, run_root(dockyard)))
    assert new != old
    assert dockyard.run("exec", container_id, "echo", "still-here").stdout == "still-here\n"

    dockyard.run("stop", "-t", "1", container_id)
    assert json.loads(dockyard.run("inspect", container_id).stdout)[0]["State"]["Status"] == "exited"
    dockyard.run("rm", container_id)
    assert_nothing_left(dockyard, runtime, container_id)


def test_unknown_runtime_exit_125(busybox_dockyard: Dockyard, test_images: ImageSet) -> None:
    result = busybox_dockyard.run("run", "--rm", "--runtime", "no-such-runtime", test_images.busybox, "true",
                                  check=False)
    assert result.returncode == 125
    assert "unknown or invalid runtime name: no-such-runtime" in result.stderr
    assert busybox_dockyard.run("ps", "-a", "-q").stdout == ""


def test_info_lists_runtimes(dockyard: Dockyard) -> None:
    info = json.loads(dockyard.run("info", "--format", "json").stdout)
    assert info["DefaultRuntime"] == "dockyard"
    assert "dockyard" in info["Runtimes"]
    for name in runtimes.EXTERNAL:
        path = runtimes.find_executable(name)
        if path is not None:
            assert info["Runtimes"][name] == {"path": path}
    assert "Runtimes: dockyard" in dockyard.run("info").stdout


@pytest.mark.skipif(DOCKER_CLI is None, reason="the docker CLI is not installed")
def test_docker_cli_runtimes(docker_api: ApiService) -> None:
    info = json.loads(docker_api.docker("info", "--format", "{{json .Runtimes}}").stdout)
    assert "dockyard" in info
    assert "runc" in info
    docker_api.docker("pull", "busybox")
    result = docker_api.docker("run", "--rm", "--runtime", "runc", "busybox", "echo", "hi")
    assert result.stdout == "hi\n"


@pytest.mark.skipif(runtimes.find_executable("crun") is None or runtimes.crun_host_problem() is None,
                    reason="crun is missing, or accepts this host's cgroup layout")
def test_crun_rejected_host_error(busybox_dockyard: Dockyard, test_images: ImageSet) -> None:
    result = busybox_dockyard.run("run", "--rm", "--runtime", "crun", test_images.busybox, "true", check=False)
    assert result.returncode == 125
    assert "crun create of container" in result.stderr
    assert "mounted only on the cgroup2 hierarchy" in result.stderr
    state_root = run_root(busybox_dockyard) / "crun"
    leftover = [path.name for path in state_root.iterdir() if path.is_dir()] if state_root.exists() else []
    assert leftover == []

"""Container update on real containers: ``docker update`` against the API service, and ``dockyard update``.

Each test reads the limits back twice: from inside the container, where its
cgroup is mounted at /sys/fs/cgroup, and from inspect.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Callable, Iterator

import pytest

from tests.support.api import DOCKER_CLI, ApiService
from tests.support.cli import Dockyard
from tests.support.containers import wait_until
from tests.support.images import ImageSet

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
# Seconds the container monitor lingers after its last container; short, so that it is gone after each test.
MONITOR_IDLE_SECONDS = "0.5"
needs_docker_cli = pytest.mark.skipif(DOCKER_CLI is None, reason="the docker CLI is not installed")


def cgroup_mode() -> str:
    from dockyard.runtime import cgroups

    return cgroups.mode(cgroups.hierarchies())


def limits_inside(run: Callable[..., object], container: str) -> dict[str, str]:
    """Read memory, CPU quota and period, pids, CPU weight and cpuset from inside the container.

    ``run`` is ``ApiService.docker`` or ``Dockyard.run``, both of which return
    a CompletedProcess.
    """
    if cgroup_mode() == "v2":
        # NOTE: this branch has not run on the hybrid machine the tests were written on.
        script = ("cat /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/cpu.max; cat /sys/fs/cgroup/pids.max; "
                  "cat /sys/fs/cgroup/cpu.weight; cat /sys/fs/cgroup/cpuset.cpus")
        memory, cpu_max, pids, weight, cpus = run("exec", container, "sh", "-c", script).stdout.split("\n")[:5]
        quota, period = cpu_max.split()
        return {"memory": memory, "quota": quota, "period": period, "pids": pids, "weight": weight, "cpus": cpus}
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
              "/sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares "
              "/sys/fs/cgroup/cpuset/cpuset.cpus")
    memory, quota, period, pids, shares, cpus = run("exec", container, "sh", "-c", script).stdout.split()
    return {"memory": memory, "quota": quota, "period": period, "pids": pids, "weight": shares, "cpus": cpus}


def cpu_weight(shares: int) -> str:
    """What the container's cgroup shows for ``--cpu-shares``: cpu.shares in v1, cpu.weight in v2."""
    from dockyard.runtime.cgroups import v2

    return str(shares if cgroup_mode() != "v2" else v2.shares_to_weight(shares))


def host_config(run: Callable[..., object], container: str) -> dict:
    return json.loads(run("inspect", "-f", "{{json .HostConfig}}", container).stdout)


# -- docker update through the API ------------------------------------------------------------


@pytest.fixture
def docker(docker_api: ApiService) -> Iterator[ApiService]:
    """The API service with busybox pulled; the ``docker_api`` fixture removes every container afterwards."""
    docker_api.docker("pull", "-q", "busybox")
    yield docker_api


@needs_docker_cli
def test_docker_update_running_container(docker: ApiService) -> None:
    docker.docker("run", "-d", "--name", "limited", "--network", "none", "busybox", "sleep", "300")
    result = docker.docker("update", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50", "limited")
    assert result.stdout == "limited\n"
    limits = limits_inside(docker.docker, "limited")
    assert limits["memory"] == str(64 * MIB)
    assert limits["quota"] == "50000"
    assert limits["period"] == "100000"
    assert limits["pids"] == "50"
    recorded = host_config(docker.docker, "limited")
    assert recorded["Memory"] == 64 * MIB
    assert recorded["MemorySwap"] == 128 * MIB
    assert recorded["NanoCpus"] == 500_000_000
    assert recorded["PidsLimit"] == 50

    docker.docker("restart", "-t", "0", "limited")
    assert limits_inside(docker.docker, "limited") == limits


@needs_docker_cli
def test_docker_update_shares_cpuset_and_unlimited_pids(docker: ApiService) -> None:
    docker.docker("run", "-d", "--name", "shared", "--network", "none", "--pids-limit", "40", "busybox",
                  "sleep", "300")
    assert limits_inside(docker.docker, "shared")["pids"] == "40"
    docker.docker("update", "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "-1", "shared")
    limits = limits_inside(docker.docker, "shared")
    assert limits["weight"] == cpu_weight(512)
    assert limits["cpus"] == "0"
    assert limits["pids"] == "max"
    recorded = host_config(docker.docker, "shared")
    assert recorded["CpuShares"] == 512
    assert recorded["CpusetCpus"] == "0"
    assert recorded["PidsLimit"] in (None, 0)


@needs_docker_cli
def test_docker_update_stopped_container_applies_at_start(docker: ApiService) -> None:
    docker.docker("create", "--name", "later", "--network", "none", "busybox", "sleep", "300")
    assert docker.docker("update", "--memory", "32m", "--pids-limit", "20", "later").stdout == "later\n"
    assert host_config(docker.docker, "later")["Memory"] == 32 * MIB
    assert docker.docker("inspect", "-f", "{{.State.Status}}", "later").stdout.strip() == "created"
    docker.docker("start", "later")
    limits = limits_inside(docker.docker, "later")
    assert limits["memory"] == str(32 * MIB)
    assert limits["pids"] == "20"


@needs_docker_cli
def test_docker_update_restart_policy(docker: ApiService) -> None:
    docker.docker("run", "-d", "--name", "flaky", "--network", "none", "busybox", "sh", "-c", "sleep 1; exit 3")
    docker.docker("update", "--restart", "on-failure:2", "flaky")
    policy = host_config(docker.docker, "flaky")["RestartPolicy"]
    assert policy == {"Name": "on-failure", "MaximumRetryCount": 2}

    def restarted_twice_and_stopped() -> bool:
        state = docker.docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky").stdout.split()
        return state == ["2", "exited"]

    assert wait_until(restarted_twice_and_stopped, timeout=30), \
        docker.docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky").stdout


@needs_docker_cli
def test_docker_update_invalid_values(docker: ApiService) -> None:
    docker.docker("run", "-d", "--name", "strict", "--network", "none", "--memory", "64m", "busybox", "sleep", "300")
    result = docker.docker("update", "--cpuset-cpus", "0-999", "strict", check=False)
    assert result.returncode == 1
    assert "Requested CPUs are not available - requested 0-999" in result.stderr
    result = docker.docker("update", "--memory", "512m", "strict", check=False)
    assert result.returncode == 1
    assert "update the memoryswap at the same time" in result.stderr
    result = docker.docker("update", "--memory", "64m", "no-such-container", check=False)
    assert result.returncode == 1
    assert "No such container: no-such-container" in result.stderr
    assert host_config(docker.docker, "strict")["Memory"] == 64 * MIB


@needs_docker_cli
def test_dockerpy_update_container(docker: ApiService) -> None:
    docker_py = pytest.importorskip("docker")
    client = docker_py.APIClient(base_url=docker.url, version="auto", timeout=60)
    try:
        container = client.create_container("busybox", ["sleep", "300"],
                                            host_config=client.create_host_config(network_mode="none"))["Id"]
        client.start(container)
        result = client.update_container(container, mem_limit="48m", cpu_shares=256,
                                         restart_policy={"Name": "always", "MaximumRetryCount": 0})
        assert result == {"Warnings": []}
        recorded = client.inspect_container(container)["HostConfig"]
    finally:
        client.close()
    assert recorded["Memory"] == 48 * MIB
    assert recorded["CpuShares"] == 256
    assert recorded["RestartPolicy"]["Name"] == "always"
    limits = limits_inside(docker.docker, container)
    assert limits["memory"] == str(48 * MIB)
    assert limits["weight"] == cpu_weight(256)


@needs_docker_cli
def test_api_update_rejects_wrong_type(docker: ApiService) -> None:
    docker.docker("create", "--name", "typed", "--network", "none", "busybox", "true")
    body = json.dumps({"Memory": "lots"})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(docker.socket_path))
        sock.sendall(f"POST /v1.50/containers/typed/update HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(payload)["message"] == 'invalid Memory "lots": expected an integer'


# -- dockyard update --------------------------------------------------------------------------


@pytest.fixture
def installation(dockyard: Dockyard, test_images: ImageSet, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dockyard]:
    """A private root with busybox pulled; every container and the monitor are gone afterwards."""
    from dockyard import config
    from dockyard.engine import monitor

    monkeypatch.setenv("DOCKYARD_MONITOR_IDLE_TIMEOUT", MONITOR_IDLE_SECONDS)
    dockyard.run("pull", "-q", test_images.busybox)
    dockyard.image = test_images.busybox  # type: ignore[attr-defined]
    yield dockyard
    leftover = dockyard.run("ps", "-a", "-q", "--no-trunc", check=False).stdout.split()
    if leftover:
        dockyard.run("rm", "-f", *leftover, check=False)
    run_root = config.load(path=dockyard.config_path, root=dockyard.root).run_root
    pid = monitor.read_pidfile(monitor.monitor_dir(dockyard.root, run_root))
    if not wait_until(lambda: not monitor.is_monitor_process(pid), timeout=15):
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the container monitor {pid} did not exit after its last container was removed")
    mounts = [line for line in open("/proc/self/mountinfo") if str(dockyard.root) in line]
    assert mounts == [], f"container mounts left behind: {mounts}"


def test_dockyard_update_several_containers(installation: Dockyard) -> None:
    image = installation.image  # type: ignore[attr-defined]
    for name in ("first", "second"):
        installation.run("run", "-d", "--name", name, "--network", "none", image, "sleep", "300")
    result = installation.run("update", "-m", "64m", "--cpus", "0.5", "--pids-limit", "30", "first", "second")
    assert result.stdout == "first\nsecond\n"
    for name in ("first", "second"):
        limits = limits_inside(installation.run, name)
        assert limits["memory"] == str(64 * MIB)
        assert limits["quota"] == "50000"
        assert limits["pids"] == "30"
        recorded = host_config(installation.run, name)
        assert recorded["Memory"] == 64 * MIB
        assert recorded["NanoCpus"] == 500_000_000
        assert recorded["PidsLimit"] == 30

    installation.run("restart", "-t", "0", "first")
    assert limits_inside(installation.run, "first")["memory"] == str(64 * MIB)


def test_dockyard_update_memory_swap_and_restart(installation: Dockyard) -> None:
    image = installation.image  # type: ignore[attr-defined]
    installation.run("run", "-d", "--name", "grow", "--network", "none", "-m", "64m", image, "sleep", "300")
    installation.run("update", "-m", "256m", "--memory-swap", "512m", "--restart", "unless-stopped", "grow")
    assert limits_inside(installation.run, "grow")["memory"] == str(256 * MIB)
    if cgroup_mode() != "v2":
        memsw = installation.run("exec", "grow", "cat", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
        assert memsw.stdout.strip() == str(512 * MIB)
    recorded = host_config(installation.run, "grow")
    assert recorded["MemorySwap"] == 512 * MIB
    assert recorded["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}


def test_dockyard_update_paused_container(installation: Dockyard) -> None:
    image = installation.image  # type: ignore[attr-defined]
    installation.run("run", "-d", "--name", "frozen", "--network", "none", image, "sleep", "300")
    installation.run("pause", "frozen")
    assert installation.run("update", "--pids-limit", "25", "frozen").stdout == "frozen\n"
    installation.run("unpause", "frozen")
    assert limits_inside(installation.run, "frozen")["pids"] == "25"


def test_dockyard_update_reports_each_error(installation: Dockyard) -> None:
    image = installation.image  # type: ignore[attr-defined]
    installation.run("create", "--name", "present", "--network", "none", image, "true")
    result = installation.run("update", "--pids-limit", "30", "present", "missing", check=False)
    assert result.returncode == 1
    assert result.stdout == "present\n"
    assert "No such container: missing" in result.stderr
    flag = installation.run("update", "--memory", "lots", "present", check=False)
    assert flag.returncode == 125
    assert 'invalid argument "lots" for "-m, --memory" flag' in flag.stderr


@pytest.mark.skipif(not any(os.access(os.path.join(directory, "runc"), os.X_OK)
                            for directory in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")),
                    reason="runc is not installed")
def test_dockyard_update_with_runc(installation: Dockyard) -> None:
    image = installation.image  # type: ignore[attr-defined]
    installation.run("run", "-d", "--name", "external", "--runtime", "runc", "--network", "none", image,
                     "sleep", "300")
    installation.run("update", "-m", "64m", "--cpus", "0.5", "--pids-limit", "30", "external")
    limits = limits_inside(installation.run, "external")
    assert limits["memory"] == str(64 * MIB)
    assert limits["quota"] == "50000"
    assert limits["pids"] == "30"

"""A ``dockyard system service`` on a temporary unix socket, for tests that drive it with Docker's clients.

The module-scoped fixture ``api_service`` starts the service with its own
state root, run root and config file. The config points ``docker.io`` at the
session's test registry with ``mirrors_only``, so ``docker pull busybox``
resolves through the mirror and a missing image fails on the machine instead
of reaching Docker Hub. The busybox test image is pushed there as
``library/busybox:latest``.

The function-scoped ``docker_api`` is the same service after each test has
had its containers and volumes removed. ``ApiService.docker(...)`` runs the
installed docker CLI against the socket with a private ``DOCKER_CONFIG``.
At teardown the service is stopped by its PID, and the check that it
removed its socket is part of the test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.containers import reap_orphaned_zombies, wait_until
from tests.support.images import ImageSet, push_layout
from tests.support.registry import Registry

DOCKYARD = Path(sys.executable).with_name("dockyard")
DOCKER_CLI = shutil.which("docker", path="/usr/local/bin") or shutil.which("docker")
START_TIMEOUT = 15.0
COMMAND_TIMEOUT = 120
# Seconds the container monitor lingers after its last container; short, so that it is gone after the tests.
MONITOR_IDLE_SECONDS = "0.5"


@dataclass
class ApiService:
    """A running API service and the directories it owns."""

    base: Path
    process: subprocess.Popen
    registry_host: str
    network_token: str  # in the names of the service's bridge and nftables table

    @property
    def socket_path(self) -> Path:
        return self.base / "dockyard.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def run_root(self) -> Path:
        return self.base / "run"

    @property
    def log_path(self) -> Path:
        return self.base / "service.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"DOCKER_HOST": self.url, "DOCKER_CONFIG": str(self.base / "docker-config")})
        for name in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_API_VERSION"):
            env.pop(name, None)
        return env

    def docker(self, *args: str, input: str | bytes | None = None, check: bool = True,
               timeout: float = COMMAND_TIMEOUT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run the docker CLI against the service; with ``check``, fail the test on a non-zero exit.

        ``env`` adds variables to the client's environment.
        """
        assert DOCKER_CLI is not None, "the docker CLI is not installed"
        text = not isinstance(input, bytes)
        result = subprocess.run([DOCKER_CLI, *args], env={**self.client_env(), **(env or {})},
                                input=input if input is not None else "",
                                capture_output=True, text=text, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"docker {' '.join(args)} exited with {result.returncode}\n"
                        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nservice log (tail):\n{self.log()[-3000:]}")
        return result

    def remove_everything(self) -> None:
        """Remove every container and volume, so that the next test starts clean."""
        containers = self.docker("ps", "-aq", "--no-trunc", check=False).stdout.split()
        if containers:
            self.docker("rm", "-f", *containers, check=False)
        volumes = self.docker("volume", "ls", "-q", check=False).stdout.split()
        if volumes:
            self.docker("volume", "rm", "-f", *volumes, check=False)

    def stop(self) -> None:
        """Stop the service by its PID and wait for it to exit."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
                pytest.fail(f"the API service {self.process.pid} did not exit on SIGTERM:\n{self.log()[-3000:]}")


def start_service(base: Path, registry_host: str, extra_args: tuple[str, ...] = ()) -> ApiService:
    """Start ``dockyard system service`` on ``base/dockyard.sock`` and wait until ``/_ping`` returns 200.

    The service's containers get a bridge, nftables table and subnet of their
    own, and forwarded traffic to the machine's uplink is dropped;
    ``remove_networks`` undoes all of it.
    """
    from tests.support.network import _free_subnet, write_network_config

    (base / "docker-config").mkdir(parents=True, exist_ok=True)
    config = base / "config.toml"
    token = secrets.token_hex(3)
    write_network_config(config, f"dya{token}", str(_free_subnet()), f"dockyard_api_{token}", [])
    with config.open("a") as file:
        file.write(f'\n[registries."docker.io"]\nmirrors = ["http://{registry_host}"]\nmirrors_only = true\n')
    _guard_uplink(f"dockyard_api_{token}")
    env = dict(os.environ)
    env.update({
        "DOCKYARD_ROOT": str(base / "root"),
        "DOCKYARD_RUN_ROOT": str(base / "run"),
        "DOCKYARD_CONFIG": str(config),
        "DOCKER_CONFIG": str(base / "docker-config"),
        "DOCKYARD_MONITOR_IDLE_TIMEOUT": MONITOR_IDLE_SECONDS,
    })
    env.pop("DOCKYARD_DEBUG", None)
    log = (base / "service.log").open("ab")
    process = subprocess.Popen(
        [str(DOCKYARD), "system", "service", "--host", f"unix://{base / 'dockyard.sock'}", "--time", "0",
         "--log-level", "debug", *extra_args],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    service = ApiService(base, process, registry_host, token)
    if not wait_until(lambda: _answers(service) or process.poll() is not None, timeout=START_TIMEOUT) \
            or process.poll() is not None:
        service.stop()
        raise RuntimeError(f"dockyard system service did not answer /_ping:\n{service.log()}")
    return service


def _guard_uplink(table_name: str) -> None:
    from dockyard.network import netlink
    from dockyard.network.nat import Table

    uplink = netlink.uplink()
    if uplink is not None:
        Table(table_name).add_uplink_guard(uplink)


def remove_networks(service: ApiService) -> None:
    """Delete the bridges, veths and nftables table of the service's root."""
    from dockyard import config as config_module
    from dockyard.engine.state import State
    from dockyard.network import netlink
    from dockyard.network.nat import Table
    from dockyard.network.service import NetworkService

    config_path = service.base / "config.toml"
    config = config_module.load(path=config_path, root=service.root)
    config = config_module.Config(root=service.root, run_root=service.run_root, registries=config.registries,
                                  path=config_path)
    state = State(service.root / "state.db")
    try:
        NetworkService(config, state).teardown()
        for row in state.networks():
            netlink.delete_link(row["bridge"])
    finally:
        state.close()
    Table(f"dockyard_api_{service.network_token}").delete()


def _answers(service: ApiService) -> bool:
    import socket

    if not service.socket_path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(service.socket_path))
            probe.sendall(b"GET /_ping HTTP/1.1\r\nHost: dockyard\r\nConnection: close\r\n\r\n")
            return probe.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False


def stop_monitor(service: ApiService) -> None:
    """Wait for the service root's container monitor to exit after its idle timeout; kill it by PID if it lingers."""
    from dockyard.engine import monitor

    directory = monitor.monitor_dir(service.root, service.run_root)
    pid = monitor.read_pidfile(directory)
    if pid and not wait_until(lambda: not monitor.is_monitor_process(pid), timeout=15):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not monitor.is_monitor_process(pid), timeout=5)
        pytest.fail(f"the container monitor {pid} did not exit after its last container was removed")


@pytest.fixture(scope="module")
def api_service(registry: Registry, test_images: ImageSet) -> Iterator[ApiService]:
    """A running API service whose docker.io is the test registry (mirror only), removed after the module."""
    push_layout(test_images.layouts["busybox"], registry.host, "library/busybox")
    base = Path(tempfile.mkdtemp(prefix="dockyard-api-"))
    service = start_service(base, registry.host)
    try:
        yield service
    finally:
        try:
            service.remove_everything()
            service.stop()
            stop_monitor(service)
            remove_networks(service)
            reap_orphaned_zombies()
            assert not service.socket_path.exists(), "the service left its socket behind"
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def docker_api(api_service: ApiService) -> Iterator[ApiService]:
    """The module's API service; every container and volume is removed after the test."""
    yield api_service
    api_service.remove_everything()

"""Fixtures for network tests: a NetworkService of its own, stand-in containers, a dummy host address.

``network_env`` gives a NetworkService on a temporary state root whose
default bridge, subnet and nftables table are unique to the test, so test
runs on one machine do not collide. It adds the uplink guard (a rule that
drops forwarded traffic leaving through the interface of the default route)
before anything else and removes it, the bridges and the table at the end.

``namespace`` starts ``unshare --net sleep`` processes: each is a network
namespace with only ``lo``, standing in for a container's init.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

CLONE_NEWNET = 0x40000000


@dataclass
class NetworkEnv:
    service: Any
    config_path: Path
    root: Path
    run_root: Path
    bridge: str
    subnet: ipaddress.IPv4Network
    table: str

    def environment(self) -> dict[str, str]:
        """Return os.environ with this environment's root and configuration, for running the CLI."""
        return {
            **os.environ,
            "DOCKYARD_ROOT": str(self.root),
            "DOCKYARD_RUN_ROOT": str(self.run_root),
            "DOCKYARD_CONFIG": str(self.config_path),
        }


def _free_subnet() -> ipaddress.IPv4Network:
    from dockyard.network import netlink

    routes = netlink.host_routes()
    for _ in range(200):
        candidate = ipaddress.IPv4Network(f"10.{secrets.randbelow(50) + 200}.{secrets.randbelow(256)}.0/24")
        if not any(candidate.overlaps(route) for route in routes):
            return candidate
    raise RuntimeError("no free 10.200-249.x.0/24 subnet for the test")


def write_network_config(path: Path, bridge: str, subnet: str, table: str, upstreams: list[str]) -> None:
    quoted = ", ".join(f'"{each}"' for each in upstreams)
    path.write_text(
        "[network]\n"
        f'default_subnet = "{subnet}"\n'
        f'bridge = "{bridge}"\n'
        f'nft_table = "{table}"\n'
        f"dns_upstreams = [{quoted}]\n"
    )


@pytest.fixture
def network_env(tmp_path: Path) -> Iterator[NetworkEnv]:
    from dockyard import config as config_module
    from dockyard.engine.state import State
    from dockyard.network import netlink
    from dockyard.network.nat import Table
    from dockyard.network.service import NetworkService

    token = secrets.token_hex(3)
    bridge = f"dyt{token}"
    table_name = f"dockyard_test_{token}"
    subnet = _free_subnet()
    config_path = tmp_path / "config.toml"
    write_network_config(config_path, bridge, str(subnet), table_name, [])
    root, run_root = tmp_path / "root", tmp_path / "run"
    config = config_module.Config(root=root, run_root=run_root, path=config_path)

    table = Table(table_name)
    uplink = netlink.uplink()
    if uplink is not None:
        table.add_uplink_guard(uplink)
    state = State(root / "state.db")
    service = NetworkService(config, state)
    try:
        yield NetworkEnv(service, config_path, root, run_root, bridge, subnet, table_name)
    finally:
        service.teardown()
        for row in state.networks():
            netlink.delete_link(row["bridge"])
        table.delete()
        state.close()


@dataclass
class Namespace:
    pid: int
    process: subprocess.Popen

    @property
    def path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def run(self, *command: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command in this network namespace (only; files and processes are the host's)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", *command],
            capture_output=True, text=True, timeout=timeout, check=check,
        )

    def popen(self, *command: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["nsenter", "-t", str(self.pid), "-n", *command],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """Open a socket that belongs to this namespace, from a thread that entered it."""
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                result["socket"] = socket.socket(family, kind)
            except OSError as error:
                result["error"] = error

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result["socket"]


@pytest.fixture
def namespace() -> Iterator[Callable[[], Namespace]]:
    started: list[tuple[Namespace, list[subprocess.Popen]]] = []

    def start() -> Namespace:
        process = subprocess.Popen(["unshare", "--net", "sleep", "3600"])
        # unshare execs sleep after entering the namespace; wait until it has.
        own = os.readlink("/proc/self/ns/net")
        for _ in range(500):
            try:
                if os.readlink(f"/proc/{process.pid}/ns/net") != own:
                    break
            except OSError:
                pass
            threading.Event().wait(0.01)
        found = Namespace(process.pid, process)
        started.append((found, []))
        return found

    yield start
    for found, _ in started:
        found.process.send_signal(signal.SIGKILL)
        found.process.wait()


@pytest.fixture
def dummy_address() -> Iterator[str]:
    """Add a second host address on an interface made for the test; yield the address.

    The interface is an empty bridge, because this kernel may lack the dummy
    driver; its address is local all the same.
    """
    from pyroute2 import IPRoute

    name = f"dyd{secrets.token_hex(3)}"
    subnet = _free_subnet()
    address = str(subnet.network_address + 1)
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        index = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=index, address=address, prefixlen=32)
        ipr.link("set", index=index, state="up")
    try:
        yield address
    finally:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if found:
                ipr.link("del", index=found[0])

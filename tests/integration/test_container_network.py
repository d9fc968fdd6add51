"""Containers on networks through the installed ``dockyard`` CLI, on the real kernel.

Each test runs in a private root whose default bridge, subnet and nftables
table are its own (the ``dockyard`` fixture), with forwarded traffic to the
machine's uplink dropped. Traffic goes only to loopback and to the test's
bridge subnet. The busybox image has ``httpd``, ``wget``, ``ping`` and ``ip``
but its ``nc`` has no UDP mode, so the UDP test runs the host's Python in
the container (``/usr`` bind-mounted read-only, entered with ``chroot``).
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.support.cli import Dockyard
from tests.support.containers import wait_until
from tests.support.images import ImageSet

pytestmark = pytest.mark.integration

# Serves /www/index.html on port 8080 until stopped.
HTTPD = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"

# Echoes UDP datagrams on port 9999, prefixed with "echo ".
UDP_ECHO = (
    "import socket\n"
    "server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "server.bind(('0.0.0.0', 9999))\n"
    "while True:\n"
    "    data, client = server.recvfrom(65535)\n"
    "    server.sendto(b'echo ' + data, client)\n"
)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> tuple[int, str]:
    """GET http://HOST:PORT/, retried until a server responds; return the status and body."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=2) as response:
                return response.status, response.read().decode()
        except (urllib.error.URLError, ConnectionError, socket.timeout) as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"no HTTP response from {host}:{port}: {error}") from None
            time.sleep(0.1)


def inspect(dockyard: Dockyard, name: str) -> dict:
    return json.loads(dockyard.run("inspect", name).stdout)[0]


def run_detached(dockyard: Dockyard, image: str, *arguments: str) -> str:
    return dockyard.run("run", "-d", *arguments[:-1], image, "sh", "-c", arguments[-1]).stdout.strip()


def bridge_of(dockyard: Dockyard) -> str:
    network = json.loads(dockyard.run("network", "inspect", "bridge").stdout)[0]
    return network["Options"]["com.docker.network.bridge.name"]


def bridge_ports(bridge: str) -> list[str]:
    directory = f"/sys/class/net/{bridge}/brif"
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def helper_processes(container_id: str) -> list[int]:
    """Return the PIDs of proxies and DNS servers started for a container (their argv names it)."""
    marker = f"--container={container_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if marker in command:
            found.append(int(entry))
    return found


def port_rules(dockyard: Dockyard, container_id: str) -> list[dict]:
    from dockyard.network.nat import Table

    table = Table(dockyard.nft_table)
    if not table.exists():
        return []
    return [rule for rule in table.rules() if rule.get("comment") == f"port:{container_id}"]


def container_id_of(dockyard: Dockyard, name: str) -> str:
    return dockyard.run("ps", "-a", "-q", "--no-trunc", "--filter", f"name=^{name}$").stdout.strip()


def test_published_port_answers_http(busybox_dockyard: Dockyard, test_images: ImageSet):
    port = free_port()
    container_id = run_detached(busybox_dockyard, test_images.busybox, "-p", f"127.0.0.1:{port}:8080", HTTPD)

    status, body = http_get(port)
    assert status == 200
    assert body == f"hello from {container_id[:12]}\n"
    listing = busybox_dockyard.run("ps").stdout
    assert f"127.0.0.1:{port}->8080/tcp" in listing
    settings = inspect(busybox_dockyard, container_id)["NetworkSettings"]
    assert settings["Ports"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert settings["Networks"]["bridge"]["IPAddress"] == settings["IPAddress"]
    assert settings["IPAddress"]
    # 127.0.0.1 reaches the container through a DNAT rule, without a proxy process.
    assert helper_processes(container_id) == []
    assert port_rules(busybox_dockyard, container_id) != []


def test_ipv6_loopback_published_port(busybox_dockyard: Dockyard, test_images: ImageSet):
    port = free_port()
    container_id = run_detached(busybox_dockyard, test_images.busybox, "-p", f"[::1]:{port}:8080", HTTPD)

    status, body = http_get(port, host="[::1]")
    assert status == 200
    assert body == f"hello from {container_id[:12]}\n"
    assert busybox_dockyard.run("port", container_id).stdout.strip() == f"8080/tcp -> [::1]:{port}"
    assert len(helper_processes(container_id)) == 1
    with pytest.raises(AssertionError):
        http_get(port, timeout=0.5)


def test_random_host_port_and_port_command(busybox_dockyard: Dockyard, test_images: ImageSet):
    container_id = run_detached(busybox_dockyard, test_images.busybox, "-p", "8080", HTTPD)

    output = busybox_dockyard.run("port", container_id, "8080").stdout.strip()
    host, _, port_text = output.rpartition(":")
    assert host == "0.0.0.0"
    assert int(port_text) > 0
    assert http_get(int(port_text))[0] == 200
    listing = busybox_dockyard.run("port", container_id).stdout.strip()
    assert listing == f"8080/tcp -> 0.0.0.0:{port_text}"


def test_publish_all_exposed_ports(busybox_dockyard: Dockyard, test_images: ImageSet):
    container_id = run_detached(busybox_dockyard, test_images.busybox, "--expose", "8080", "-P", HTTPD)

    ports = inspect(busybox_dockyard, container_id)["NetworkSettings"]["Ports"]
    bindings = ports["8080/tcp"]
    assert len(bindings) == 1
    assert bindings[0]["HostIp"] == "0.0.0.0"
    assert http_get(int(bindings[0]["HostPort"]))[0] == 200


def test_udp_published_port(busybox_dockyard: Dockyard, test_images: ImageSet):
    port = free_port(socket.SOCK_DGRAM)
    # The host's /usr contains Python and its libraries; /lib and /lib64 are symlinks into it on Debian 12.
    script = (
        "mkdir -p /host && ln -s usr/lib /host/lib && ln -s usr/lib64 /host/lib64 && "
        f"exec chroot /host /usr/bin/python3 -c \"{UDP_ECHO}\""
    )
    busybox_dockyard.run("run", "-d", "-p", f"127.0.0.1:{port}:9999/udp", "-v", "/usr:/host/usr:ro",
                         test_images.busybox, "sh", "-c", script)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(0.5)
        reply = b""
        deadline = time.monotonic() + 15
        while not reply and time.monotonic() < deadline:
            client.sendto(b"ping", ("127.0.0.1", port))
            try:
                reply = client.recv(100)
            except socket.timeout:
                continue
    assert reply == b"echo ping"


def test_port_conflict_leaves_nothing_started(busybox_dockyard: Dockyard, test_images: ImageSet):
    bridge = bridge_of(busybox_dockyard)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = busybox_dockyard.run("run", "-d", "--name", "clash", "-p", f"127.0.0.1:{port}:8080",
                                      test_images.busybox, "sleep", "300", check=False)

    assert result.returncode != 0
    assert f"Bind for 127.0.0.1:{port} failed: port is already allocated" in result.stderr
    container_id = container_id_of(busybox_dockyard, "clash")
    assert inspect(busybox_dockyard, container_id)["State"]["Running"] is False
    assert bridge_ports(bridge) == []
    assert helper_processes(container_id) == []
    assert port_rules(busybox_dockyard, container_id) == []


def test_user_network_resolves_name_and_alias(busybox_dockyard: Dockyard, test_images: ImageSet):
    busybox_dockyard.run("network", "create", "appnet")
    try:
        busybox_dockyard.run("run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www",
                             test_images.busybox, "sh", "-c", HTTPD)
        for name in ("web", "www"):
            fetched = busybox_dockyard.run("run", "--rm", "--network", "appnet", test_images.busybox,
                                           "sh", "-c", f"for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{name}:8080/ "
                                           "&& exit 0; sleep 0.3; done; exit 1")
            web_id = container_id_of(busybox_dockyard, "web")
            assert fetched.stdout == f"hello from {web_id[:12]}\n"
        resolv = busybox_dockyard.run("run", "--rm", "--network", "appnet", test_images.busybox, "cat", "/etc/resolv.conf")
        assert "nameserver 127.0.0.11" in resolv.stdout
        busybox_dockyard.run("rm", "-f", "web")
        # Removing the network fails while any endpoint is left, including those of the --rm containers above.
        removed = busybox_dockyard.run("network", "rm", "appnet", check=False)
        assert removed.returncode == 0, removed.stderr
    finally:
        busybox_dockyard.run("rm", "-f", "web", check=False)
        busybox_dockyard.run("network", "rm", "appnet", check=False)


def test_rename_changes_dns_name_on_user_network(busybox_dockyard: Dockyard, test_images: ImageSet):
    busybox_dockyard.run("network", "create", "renamenet")
    try:
        for name in ("oldname", "client"):
            busybox_dockyard.run("run", "-d", "--name", name, "--network", "renamenet", test_images.busybox,
                                 "sleep", "100")
        address = inspect(busybox_dockyard, "oldname")["NetworkSettings"]["Networks"]["renamenet"]["IPAddress"]
        busybox_dockyard.run("rename", "oldname", "newname")
        # A container started before the rename runs the lookups, because starting a new one would refresh the names anyway.
        lookups = busybox_dockyard.run(
            "exec", "client", "sh", "-c", "nslookup newname; echo new=$?; nslookup oldname; echo old=$?", check=False,
        )
        assert "new=0" in lookups.stdout, lookups.stdout
        assert address in lookups.stdout
        assert "old=1" in lookups.stdout, lookups.stdout
        settings = inspect(busybox_dockyard, "newname")["NetworkSettings"]["Networks"]["renamenet"]
        assert "newname" in settings["DNSNames"]
        assert "oldname" not in settings["DNSNames"]
    finally:
        busybox_dockyard.run("rm", "-f", "oldname", "newname", "client", check=False)
        busybox_dockyard.run("network", "rm", "renamenet", check=False)


def test_default_bridge_has_no_names_but_addresses(busybox_dockyard: Dockyard, test_images: ImageSet):
    busybox_dockyard.run("run", "-d", "--name", "target", test_images.busybox, "sleep", "300")
    address = inspect(busybox_dockyard, "target")["NetworkSettings"]["IPAddress"]

    # Nothing listens on 127.0.0.1:53 inside the container, so a lookup fails at once and stays on the machine.
    by_name = busybox_dockyard.run("run", "--rm", "--dns", "127.0.0.1", test_images.busybox,
                                   "ping", "-c1", "-W2", "target", check=False)
    by_address = busybox_dockyard.run("run", "--rm", test_images.busybox, "ping", "-c1", "-W5", address, check=False)
    assert by_name.returncode != 0
    assert "bad address" in by_name.stdout + by_name.stderr
    assert by_address.returncode == 0, by_address.stdout + by_address.stderr


def test_network_none_has_only_lo(busybox_dockyard: Dockyard, test_images: ImageSet):
    result = busybox_dockyard.run("run", "--rm", "--network", "none", test_images.busybox, "ls", "/sys/class/net")
    assert result.stdout.split() == ["lo"]


def test_network_container_shares_namespace(busybox_dockyard: Dockyard, test_images: ImageSet):
    busybox_dockyard.run("run", "-d", "--name", "owner", "--add-host", "shared:10.9.9.9",
                         test_images.busybox, "sleep", "300")
    address = inspect(busybox_dockyard, "owner")["NetworkSettings"]["IPAddress"]

    addresses = busybox_dockyard.run("run", "--rm", "--network", "container:owner", test_images.busybox,
                                     "ip", "-o", "-4", "addr", "show")
    hosts = busybox_dockyard.run("run", "--rm", "--network", "container:owner", test_images.busybox,
                                 "cat", "/etc/hosts")
    assert f"inet {address}/" in addresses.stdout
    assert "10.9.9.9\tshared" in hosts.stdout


def test_network_container_needs_running_container(busybox_dockyard: Dockyard, test_images: ImageSet):
    busybox_dockyard.run("create", "--name", "idle", test_images.busybox, "sleep", "300")
    result = busybox_dockyard.run("run", "--rm", "--network", "container:idle", test_images.busybox, "true",
                                  check=False)
    assert result.returncode != 0
    assert "non running container: idle" in result.stderr


def test_add_host_lines_in_etc_hosts(busybox_dockyard: Dockyard, test_images: ImageSet):
    result = busybox_dockyard.run("run", "--rm", "--add-host", "x:1.2.3.4", "--add-host", "gw:host-gateway",
                                  test_images.busybox, "cat", "/etc/hosts")
    gateway = json.loads(busybox_dockyard.run("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]["Gateway"]
    assert "1.2.3.4\tx\n" in result.stdout
    assert f"{gateway}\tgw\n" in result.stdout


def test_dns_options_in_resolv_conf(busybox_dockyard: Dockyard, test_images: ImageSet):
    result = busybox_dockyard.run("run", "--rm", "--dns", "10.0.0.53", "--dns-search", "example.test",
                                  "--dns-option", "ndots:2", test_images.busybox, "cat", "/etc/resolv.conf")
    assert result.stdout == "nameserver 10.0.0.53\nsearch example.test\noptions ndots:2\n"


def test_ip_and_mac_address_on_user_network(busybox_dockyard: Dockyard, test_images: ImageSet):
    busybox_dockyard.run("network", "create", "--subnet", "10.231.7.0/24", "fixednet")
    try:
        result = busybox_dockyard.run("run", "--rm", "--network", "fixednet", "--ip", "10.231.7.50",
                                      "--mac-address", "02:42:0a:e7:07:32", test_images.busybox,
                                      "ip", "-o", "link", "show", "eth0")
        addresses = busybox_dockyard.run("run", "--rm", "--network", "fixednet", "--ip", "10.231.7.51",
                                         test_images.busybox, "ip", "-o", "-4", "addr", "show", "eth0")
    finally:
        busybox_dockyard.run("network", "rm", "fixednet", check=False)
    assert "02:42:0a:e7:07:32" in result.stdout
    assert "inet 10.231.7.51/24" in addresses.stdout


def test_rm_leaves_no_veth_rule_or_proxy(busybox_dockyard: Dockyard, test_images: ImageSet):
    bridge = bridge_of(busybox_dockyard)
    port = free_port()
    ipv6_port = free_port()
    container_id = run_detached(busybox_dockyard, test_images.busybox, "-p", f"127.0.0.1:{port}:8080",
                                "-p", f"[::1]:{ipv6_port}:8080", HTTPD)
    assert http_get(port)[0] == 200
    assert len(bridge_ports(bridge)) == 1
    assert helper_processes(container_id) != []
    assert port_rules(busybox_dockyard, container_id) != []

    busybox_dockyard.run("rm", "-f", container_id)

    assert bridge_ports(bridge) == []
    assert wait_until(lambda: helper_processes(container_id) == [], timeout=5)
    assert port_rules(busybox_dockyard, container_id) == []
    with pytest.raises(AssertionError):
        http_get(port, timeout=0.5)
    # The monitor closed the socket that reserved the port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_stop_and_start_publish_again(busybox_dockyard: Dockyard, test_images: ImageSet):
    bridge = bridge_of(busybox_dockyard)
    port = free_port()
    container_id = run_detached(busybox_dockyard, test_images.busybox, "-p", f"127.0.0.1:{port}:8080", HTTPD)
    address = inspect(busybox_dockyard, container_id)["NetworkSettings"]["IPAddress"]

    busybox_dockyard.run("stop", "-t", "1", container_id)
    stopped = inspect(busybox_dockyard, container_id)["NetworkSettings"]
    assert bridge_ports(bridge) == []
    assert wait_until(lambda: helper_processes(container_id) == [], timeout=5)
    assert stopped["Ports"] == {"8080/tcp": None}
    assert stopped["IPAddress"] == ""

    busybox_dockyard.run("start", container_id)
    assert http_get(port)[0] == 200
    assert inspect(busybox_dockyard, container_id)["NetworkSettings"]["IPAddress"] == address

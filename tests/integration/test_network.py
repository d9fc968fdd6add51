"""Container networking on the real kernel: bridges, veths, published ports, DNS, internal networks.

Network namespaces started with ``unshare --net`` stand in for containers:
the service gets their PID as it would get a container init's. Servers in
them are small Python programs run through ``nsenter``. Traffic goes only to
loopback, the test's bridge subnet and a dummy interface the test creates;
``network_env`` drops forwarded traffic towards the machine's uplink.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from dockyard.errors import Conflict, InvalidArgument, NetworkError

pytestmark = pytest.mark.integration

# Serves each TCP port on argv: every connection gets "port N from HOSTNAME-ARG" and is closed.
TCP_SERVER = r"""
import socket, sys, selectors
label = sys.argv[1]
selector = selectors.DefaultSelector()
for port in sys.argv[2:]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", int(port)))
    server.listen()
    selector.register(server, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in selector.select():
        connection, _ = key.fileobj.accept()
        connection.sendall(f"port {key.fileobj.getsockname()[1]} from {label}\n".encode())
        connection.close()
"""

# Echoes UDP datagrams on argv[1], prefixed with "echo ".
UDP_SERVER = r"""
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, client = server.recvfrom(65535)
    server.sendto(b"echo " + data, client)
"""


@pytest.fixture
def servers():
    started: list[subprocess.Popen] = []

    def start(ns, script: str, *arguments: str) -> subprocess.Popen:
        process = ns.popen(sys.executable, "-c", script, *arguments)
        started.append(process)
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def fetch(host: str, port: int, timeout: float = 5.0) -> str:
    with socket.create_connection((host, port), timeout=timeout) as connection:
        data = b""
        while chunk := connection.recv(4096):
            data += chunk
    return data.decode()


def container_body(bindings: dict | None = None, exposed: dict | None = None, **host_config) -> dict:
    host_config = {"PortBindings": bindings or {}, **host_config}
    return {"ExposedPorts": exposed or {key: {} for key in bindings or {}}, "HostConfig": host_config}


def dns_query(ns, name: str, qtype: int = 1, server: str = "127.0.0.11") -> tuple[int, list[str]]:
    """Send one query from inside ``ns``; return the response code and the A records' addresses."""
    query_id = 0x1234
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, 1)
    with ns.socket() as sock:
        sock.settimeout(5)
        sock.sendto(packet, (server, 53))
        reply = sock.recv(4096)
    flags, _, answers = struct.unpack("!HHH", reply[2:8])
    offset = 12 + len(question) + 4
    addresses = []
    for _ in range(answers):
        # In our server's replies, every answer's name is a two-byte pointer to the question.
        record_type, _, _, length = struct.unpack("!HHIH", reply[offset + 2 : offset + 12])
        data = reply[offset + 12 : offset + 12 + length]
        if record_type == 1:
            addresses.append(socket.inet_ntoa(data))
        offset += 12 + length
    return flags & 0xF, addresses


CONTAINER_A = "a" * 64
CONTAINER_B = "b" * 64


# -- default bridge and published ports -----------------------------------------------


def test_published_port_from_loopback(network_env, namespace, servers, dummy_address) -> None:
    service = network_env.service
    ns = namespace()
    servers(ns, TCP_SERVER, "web", "8080")
    host_port = free_port()
    body = container_body({"8080/tcp": [{"HostIp": "", "HostPort": str(host_port)}]})
    networks = service.allocate(CONTAINER_A, "web", body)
    settings = service.start(CONTAINER_A, ns.pid, body)

    assert list(networks) == ["bridge"]
    assert settings["Ports"] == {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(host_port)}]}
    assert fetch("127.0.0.1", host_port) == "port 8080 from web\n"
    # Another host address reaches it through the DNAT rule.
    assert fetch(dummy_address, host_port) == "port 8080 from web\n"
    routes = ns.run("ip", "-4", "route").stdout
    assert f"default via {network_env.subnet.network_address + 1} dev eth0" in routes


def test_container_gets_address_mac_and_lo(network_env, namespace) -> None:
    ns = namespace()
    settings = network_env.service.allocate(CONTAINER_A, "web", container_body())["bridge"]
    network_env.service.start(CONTAINER_A, ns.pid, container_body())

    assert settings["IPAddress"] == str(network_env.subnet.network_address + 2)
    assert settings["Gateway"] == str(network_env.subnet.network_address + 1)
    link = ns.run("ip", "-o", "addr", "show", "eth0").stdout
    assert f"{settings['IPAddress']}/24" in link
    assert settings["MacAddress"] in ns.run("ip", "link", "show", "eth0").stdout
    assert "UP" in ns.run("ip", "link", "show", "lo").stdout


def test_address_kept_across_restart(network_env, namespace) -> None:
    service = network_env.service
    first = namespace()
    address = service.allocate(CONTAINER_A, "a", container_body())["bridge"]["IPAddress"]
    other = service.allocate(CONTAINER_B, "b", container_body())["bridge"]["IPAddress"]
    service.start(CONTAINER_A, first.pid, container_body())
    service.stop(CONTAINER_A)
    second = namespace()
    restarted = service.start(CONTAINER_A, second.pid, container_body())

    assert other != address
    assert restarted["Networks"]["bridge"]["IPAddress"] == address
    service.release(CONTAINER_A)
    service.release(CONTAINER_B)
    assert service.state.endpoints() == []


def test_loopback_publish_not_on_other_address(network_env, namespace, servers, dummy_address) -> None:
    ns = namespace()
    servers(ns, TCP_SERVER, "web", "8080")
    host_port = free_port()
    body = container_body({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]})
    network_env.service.allocate(CONTAINER_A, "web", body)
    network_env.service.start(CONTAINER_A, ns.pid, body)

    assert fetch("127.0.0.1", host_port) == "port 8080 from web\n"
    with pytest.raises(ConnectionRefusedError):
        fetch(dummy_address, host_port)


def test_ipv6_loopback_publish(network_env, namespace, servers) -> None:
    ns = namespace()
    servers(ns, TCP_SERVER, "web", "8080")
    host_port = free_port()
    body = container_body({"8080/tcp": [{"HostIp": "::1", "HostPort": str(host_port)}]})
    network_env.service.allocate(CONTAINER_A, "web", body)
    network_env.service.start(CONTAINER_A, ns.pid, body)

    assert fetch("::1", host_port) == "port 8080 from web\n"
    with pytest.raises(ConnectionRefusedError):
        fetch("127.0.0.1", host_port)
    # The kernel cannot route ::1 to the container's IPv4 address, so the userland proxy does.
    assert network_env.service.state.sandbox(CONTAINER_A)["proxy_pid"] > 0


def test_udp_publish(network_env, namespace, servers) -> None:
    ns = namespace()
    servers(ns, UDP_SERVER, "5353")
    host_port = free_port(socket.SOCK_DGRAM)
    body = container_body({"5353/udp": [{"HostIp": "", "HostPort": str(host_port)}]})
    network_env.service.allocate(CONTAINER_A, "dns", body)
    network_env.service.start(CONTAINER_A, ns.pid, body)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(b"hello", ("127.0.0.1", host_port))
        assert client.recv(100) == b"echo hello"
        client.sendto(b"again", ("127.0.0.1", host_port))
        assert client.recv(100) == b"echo again"


def test_udp_flows_forgotten_on_stop(network_env, namespace, servers) -> None:
    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    ns = namespace()
    servers(ns, UDP_SERVER, "5353")
    service = network_env.service
    host_port = free_port(socket.SOCK_DGRAM)
    body = container_body({"5353/udp": [{"HostIp": "", "HostPort": str(host_port)}]})
    container_ip = service.allocate(CONTAINER_A, "dns", body)["bridge"]["IPAddress"]
    service.start(CONTAINER_A, ns.pid, body)
    reply = NFCTAttrTuple(proto=socket.IPPROTO_UDP, saddr=container_ip, sport=5353)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(b"hello", ("127.0.0.1", host_port))
        assert client.recv(100) == b"echo hello"
    conntrack = Conntrack()
    try:
        assert len(list(conntrack.dump_entries(tuple_reply=reply))) == 1
        service.stop(CONTAINER_A)
        # A client that kept sending would otherwise stay DNATed to the old address.
        assert list(conntrack.dump_entries(tuple_reply=reply)) == []
    finally:
        conntrack.close()


def test_port_range_publish(network_env, namespace, servers) -> None:
    ns = namespace()
    servers(ns, TCP_SERVER, "web", "9000", "9001", "9002")
    start = free_port()
    while any(free_port() == start + offset for offset in (1, 2)):
        start = free_port()
    bindings = {f"{9000 + offset}/tcp": [{"HostIp": "", "HostPort": str(start + offset)}] for offset in range(3)}
    body = container_body(bindings)
    network_env.service.allocate(CONTAINER_A, "web", body)
    network_env.service.start(CONTAINER_A, ns.pid, body)

    for offset in range(3):
        assert fetch("127.0.0.1", start + offset) == f"port {9000 + offset} from web\n"
    assert len(network_env.service.published_ports(CONTAINER_A)) == 3


def test_random_host_port(network_env, namespace, servers) -> None:
    ns = namespace()
    servers(ns, TCP_SERVER, "web", "8080")
    body = container_body({"8080/tcp": [{"HostIp": "", "HostPort": ""}]})
    network_env.service.allocate(CONTAINER_A, "web", body)
    settings = network_env.service.start(CONTAINER_A, ns.pid, body)

    host_port = int(settings["Ports"]["8080/tcp"][0]["HostPort"])
    assert host_port > 0
    assert fetch("127.0.0.1", host_port) == "port 8080 from web\n"


def test_port_conflict_leaves_nothing(network_env, namespace) -> None:
    ns = namespace()
    service = network_env.service
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        body = container_body({"8080/tcp": [{"HostIp": "", "HostPort": str(taken)}]})
        service.allocate(CONTAINER_A, "web", body)
        with pytest.raises(NetworkError) as caught:
            service.start(CONTAINER_A, ns.pid, body)

    assert str(caught.value) == f"Bind for 0.0.0.0:{taken} failed: port is already allocated"
    assert "eth0" not in ns.run("ip", "link").stdout
    assert service.state.sandbox(CONTAINER_A) is None
    assert not any(rule.get("comment", "").startswith("port:") for rule in service.table.rules())
    assert service.state.endpoints(container_id=CONTAINER_A)[0]["host_veth"] == ""


def test_stop_removes_veth_proxy_and_rules(network_env, namespace, servers) -> None:
    ns = namespace()
    service = network_env.service
    host_port = free_port()
    ipv6_port = free_port()
    body = container_body({"8080/tcp": [{"HostIp": "", "HostPort": str(host_port)},
                                        {"HostIp": "::1", "HostPort": str(ipv6_port)}]})
    service.allocate(CONTAINER_A, "web", body)
    service.start(CONTAINER_A, ns.pid, body)
    proxy = service.state.sandbox(CONTAINER_A)["proxy_pid"]
    veth = service.state.endpoints(container_id=CONTAINER_A)[0]["host_veth"]
    service.stop(CONTAINER_A)

    assert proxy > 0
    assert veth
    assert not os.path.exists(f"/sys/class/net/{veth}")
    assert not any(rule.get("comment") == f"port:{CONTAINER_A}" for rule in service.table.rules())
    with pytest.raises(ConnectionRefusedError):
        fetch("127.0.0.1", host_port)
    with pytest.raises(OSError):
        open(f"/proc/{proxy}/cmdline").close()
    # The held host sockets are closed: the ports can be bound again.
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", host_port))
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", ipv6_port))


def test_loopback_publish_through_kernel(network_env, namespace, servers) -> None:
    ns = namespace()
    servers(ns, TCP_SERVER, "web", "8080")
    service = network_env.service
    host_port = free_port()
    body = container_body({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]})
    service.allocate(CONTAINER_A, "web", body)
    service.start(CONTAINER_A, ns.pid, body)

    assert service.state.sandbox(CONTAINER_A)["proxy_pid"] == 0
    route_localnet = f"/proc/sys/net/ipv4/conf/{network_env.bridge}/route_localnet"
    assert open(route_localnet).read().strip() == "1"
    for _ in range(3):
        assert fetch("127.0.0.1", host_port) == "port 8080 from web\n"
    # The monitor's bound socket keeps the port reserved against other programs.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError) as caught:
            other.bind(("127.0.0.1", host_port))
    assert caught.value.errno == errno.EADDRINUSE


def test_adopting_service_holds_ports_again(network_env, namespace) -> None:
    from dockyard.network.service import NetworkService

    ns = namespace()
    service = network_env.service
    host_port = free_port()
    body = container_body({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]})
    service.allocate(CONTAINER_A, "web", body)
    service.start(CONTAINER_A, ns.pid, body)
    # What the death of the monitor that started the container does to its sockets.
    service._release_held(CONTAINER_A)
    adopting = NetworkService(service.config, service.state, service.settings)
    adopting.hold_ports(CONTAINER_A)
    try:
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError) as caught:
                other.bind(("127.0.0.1", host_port))
        assert caught.value.errno == errno.EADDRINUSE
    finally:
        adopting.stop(CONTAINER_A)


def test_loopback_publish_from_second_loopback_address(network_env, namespace, servers) -> None:
    ns = namespace()
    servers(ns, TCP_SERVER, "web", "8080")
    host_port = free_port()
    body = container_body({"8080/tcp": [{"HostIp": "", "HostPort": str(host_port)}]})
    network_env.service.allocate(CONTAINER_A, "web", body)
    network_env.service.start(CONTAINER_A, ns.pid, body)

    # All of 127.0.0.0/8 is local, and a source other than 127.0.0.1 is masqueraded too.
    with socket.socket() as client:
        client.settimeout(5)
        client.bind(("127.0.0.7", 0))
        client.connect(("127.0.0.1", host_port))
        assert client.recv(100) == b"port 8080 from web\n"


def test_container_cannot_reach_host_loopback(network_env, namespace) -> None:
    """route_localnet on the bridge must not open the host's 127.0.0.1 services to containers.

    The kernel already drops the host's TCP replies from 127.0.0.1 to a
    container, so the test sends UDP, which needs no reply to do harm.
    """
    ns = namespace()
    service = network_env.service
    settings = service.allocate(CONTAINER_A, "web", container_body())["bridge"]
    service.start(CONTAINER_A, ns.pid, container_body())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host_only:
        host_only.bind(("127.0.0.1", 0))
        host_only.settimeout(1)
        port = host_only.getsockname()[1]
        # Inside the namespace, send 127.0.0.1 to the gateway instead of the namespace's own lo.
        ns.run("sysctl", "-q", "-w", "net.ipv4.conf.eth0.route_localnet=1", "net.ipv4.conf.all.route_localnet=1")
        ns.run("ip", "route", "del", "local", "127.0.0.1", "dev", "lo", "table", "local")
        ns.run("ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
        ns.run("ip", "route", "add", "127.0.0.1/32", "via", settings["Gateway"], "dev", "eth0", "src",
               settings["IPAddress"])
        with ns.socket() as sender:
            sender.sendto(b"from the container", ("127.0.0.1", port))
        with pytest.raises(socket.timeout):
            host_only.recv(100)


# -- user-defined networks ---------------------------------------------------------------


def test_user_network_resolves_name_and_alias(network_env, namespace, servers) -> None:
    service = network_env.service
    service.create("appnet")
    web, client = namespace(), namespace()
    servers(web, TCP_SERVER, "web", "8080")
    web_body = {"HostConfig": {"NetworkMode": "appnet"},
                "NetworkingConfig": {"EndpointsConfig": {"appnet": {"Aliases": ["frontend"]}}}}
    client_body = {"HostConfig": {"NetworkMode": "appnet"}}
    web_ip = service.allocate(CONTAINER_A, "web", web_body)["appnet"]["IPAddress"]
    service.allocate(CONTAINER_B, "client", client_body)
    service.start(CONTAINER_A, web.pid, web_body)
    service.start(CONTAINER_B, client.pid, client_body)

    assert dns_query(client, "web") == (0, [web_ip])
    assert dns_query(client, "frontend") == (0, [web_ip])
    assert dns_query(client, CONTAINER_A[:12]) == (0, [web_ip])
    assert dns_query(client, "WEB") == (0, [web_ip])
    (address,) = dns_query(client, "web")[1]
    with client.socket(kind=socket.SOCK_STREAM) as connection:
        connection.settimeout(5)
        connection.connect((address, 8080))
        assert connection.recv(100) == b"port 8080 from web\n"


def test_user_network_unknown_name_without_upstream(network_env, namespace) -> None:
    service = network_env.service
    service.create("appnet")
    ns = namespace()
    body = {"HostConfig": {"NetworkMode": "appnet"}}
    service.allocate(CONTAINER_A, "web", body)
    service.start(CONTAINER_A, ns.pid, body)

    assert dns_query(ns, "nothing.invalid") == (3, [])


def test_user_network_forwards_to_upstream(network_env, namespace) -> None:
    # A fake upstream on the host's loopback that replies to every query with 192.0.2.77.
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.bind(("127.0.0.1", 0))
    upstream.settimeout(10)
    service = network_env.service
    service.create("appnet")
    ns = namespace()
    body = {"HostConfig": {"NetworkMode": "appnet", "Dns": [f"127.0.0.1:{upstream.getsockname()[1]}"]}}
    service.allocate(CONTAINER_A, "web", body)
    service.start(CONTAINER_A, ns.pid, body)

    def answer() -> None:
        query, client = upstream.recvfrom(512)
        reply = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + query[12:]
        reply += struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("192.0.2.77")
        upstream.sendto(reply, client)

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        assert dns_query(ns, "example.test") == (0, ["192.0.2.77"])
    finally:
        thread.join(timeout=10)
        upstream.close()


def test_default_bridge_has_no_name_resolution(network_env, namespace) -> None:
    service = network_env.service
    ns = namespace()
    service.allocate(CONTAINER_A, "web", container_body())
    service.start(CONTAINER_A, ns.pid, container_body())

    assert service.state.sandbox(CONTAINER_A)["dns_pid"] == 0
    with pytest.raises(OSError):
        dns_query(ns, "web")


def test_internal_network_has_no_route_out(network_env, namespace, dummy_address) -> None:
    service = network_env.service
    service.create("sealed", internal=True)
    ns = namespace()
    body = {"HostConfig": {"NetworkMode": "sealed"}}
    settings = service.allocate(CONTAINER_A, "web", body)["sealed"]
    service.start(CONTAINER_A, ns.pid, body)

    assert settings["Gateway"] == ""
    assert "default" not in ns.run("ip", "-4", "route").stdout
    with ns.socket(kind=socket.SOCK_STREAM) as connection:
        connection.settimeout(5)
        with pytest.raises(OSError) as caught:
            connection.connect((dummy_address, 80))
    assert caught.value.errno == errno.ENETUNREACH


def test_networks_are_isolated_from_each_other(network_env, namespace, servers) -> None:
    service = network_env.service
    service.create("left")
    service.create("right")
    left, right, neighbour = namespace(), namespace(), namespace()
    servers(right, TCP_SERVER, "right", "8080")
    servers(neighbour, TCP_SERVER, "neighbour", "8080")
    left_body, right_body = {"HostConfig": {"NetworkMode": "left"}}, {"HostConfig": {"NetworkMode": "right"}}
    service.allocate(CONTAINER_A, "l", left_body)
    right_ip = service.allocate(CONTAINER_B, "r", right_body)["right"]["IPAddress"]
    neighbour_ip = service.allocate("c" * 64, "n", left_body)["left"]["IPAddress"]
    service.start(CONTAINER_A, left.pid, left_body)
    service.start(CONTAINER_B, right.pid, right_body)
    service.start("c" * 64, neighbour.pid, left_body)

    with left.socket(kind=socket.SOCK_STREAM) as connection:
        connection.settimeout(5)
        connection.connect((neighbour_ip, 8080))
        assert connection.recv(100) == b"port 8080 from neighbour\n"
    with left.socket(kind=socket.SOCK_STREAM) as connection:
        connection.settimeout(1)
        with pytest.raises(OSError):
            connection.connect((right_ip, 8080))


def test_requested_ip_and_mac(network_env, namespace) -> None:
    service = network_env.service
    service.create("fixed")
    subnet = service.inspect("fixed")["IPAM"]["Config"][0]["Subnet"]
    wanted = str(ipaddress.IPv4Network(subnet).network_address + 50)
    body = {"HostConfig": {"NetworkMode": "fixed"}, "MacAddress": "02:42:de:ad:be:ef",
            "NetworkingConfig": {"EndpointsConfig": {"fixed": {"IPAMConfig": {"IPv4Address": wanted}}}}}
    settings = service.allocate(CONTAINER_A, "web", body)["fixed"]
    ns = namespace()
    service.start(CONTAINER_A, ns.pid, body)

    assert settings["IPAddress"] == wanted
    assert settings["MacAddress"] == "02:42:de:ad:be:ef"
    assert "02:42:de:ad:be:ef" in ns.run("ip", "link", "show", "eth0").stdout
    with pytest.raises(Conflict):
        service.allocate(CONTAINER_B, "other", body)


def test_alias_on_default_bridge_rejected(network_env) -> None:
    body = {"NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["x"]}}}}
    with pytest.raises(InvalidArgument):
        network_env.service.allocate(CONTAINER_A, "web", body)


def test_connect_running_container_to_second_network(network_env, namespace) -> None:
    service = network_env.service
    service.create("second")
    ns = namespace()
    service.allocate(CONTAINER_A, "web", container_body())
    service.start(CONTAINER_A, ns.pid, container_body())
    settings = service.connect(CONTAINER_A, "second", name="web", netns=ns.pid)

    assert f"{settings['IPAddress']}/" in ns.run("ip", "-o", "addr", "show", "eth1").stdout
    assert dns_query(ns, "web") == (0, [settings["IPAddress"]])
    service.disconnect(CONTAINER_A, "second")
    assert "eth1" not in ns.run("ip", "link").stdout
    with pytest.raises(Conflict):
        service.remove("bridge")


def test_remove_network_in_use_is_conflict(network_env) -> None:
    service = network_env.service
    service.create("busy")
    service.allocate(CONTAINER_A, "web", {"HostConfig": {"NetworkMode": "busy"}})
    with pytest.raises(Conflict):
        service.remove("busy")
    service.release(CONTAINER_A)
    service.remove("busy")
    assert [network["Name"] for network in service.list()] == ["bridge"]


# -- the CLI -------------------------------------------------------------------------------


def dockyard(env, *arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dockyard", *arguments]
    return subprocess.run(command, capture_output=True, text=True, env=env.environment(), timeout=60)


def test_network_cli_lifecycle(network_env) -> None:
    created = dockyard(network_env, "network", "create", "--label", "team=blue", "clinet")
    assert created.returncode == 0, created.stderr
    network_id = created.stdout.strip()

    listing = dockyard(network_env, "network", "ls")
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [network_id[:12], "clinet", "bridge", "local"] in [line.split() for line in lines[1:]]

    inspected = json.loads(dockyard(network_env, "network", "inspect", "clinet").stdout)
    assert inspected[0]["Id"] == network_id
    assert inspected[0]["Labels"] == {"team": "blue"}

    duplicate = dockyard(network_env, "network", "create", "clinet")
    assert duplicate.returncode == 1
    assert "network with name clinet already exists" in duplicate.stderr

    removed = dockyard(network_env, "network", "rm", "clinet")
    assert removed.returncode == 0, removed.stderr
    missing = dockyard(network_env, "network", "inspect", "clinet")
    assert missing.returncode == 1
    assert "network clinet not found" in missing.stderr


def test_network_cli_prune(network_env) -> None:
    for name in ("one", "two"):
        assert dockyard(network_env, "network", "create", name).returncode == 0
    pruned = dockyard(network_env, "network", "prune", "-f")
    assert pruned.stdout.splitlines() == ["Deleted Networks:", "one", "two"]


# -- a real container from dockyard's runtime ------------------------------------------------


def test_runtime_container_published_port(network_env, make_bundle, state_root, tmp_path) -> None:
    """The order the container service follows: runtime create, network start, runtime start."""
    from dockyard.errors import ContainerNotFound
    from dockyard.runtime import container, libc

    # The init's first parent exits; as a subreaper this process inherits the init and reaps it.
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    script = "mkdir -p /www && echo served-by-container > /www/index.html && exec httpd -f -p 8080 -h /www"
    bundle = make_bundle(["sh", "-c", script])
    service = network_env.service
    host_port = free_port()
    body = container_body({"8080/tcp": [{"HostIp": "", "HostPort": str(host_port)}]})
    container_id = "netruntime"
    service.allocate(container_id, "web", body)
    try:
        with open(tmp_path / "out", "wb") as out:
            pid = container.create(container_id, bundle, state_root, stdout=out.fileno(), stderr=out.fileno())
        settings = service.start(container_id, pid, body)
        container.start(container_id, state_root)

        response = ""
        deadline = time.monotonic() + 10
        while "served-by-container" not in response and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", host_port), timeout=5) as connection:
                    connection.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                    response = b"".join(iter(lambda: connection.recv(4096), b"")).decode()
            except OSError:
                time.sleep(0.1)
        assert "served-by-container" in response
        assert settings["SandboxKey"] == f"/proc/{pid}/ns/net"
    finally:
        service.stop(container_id)
        try:
            container.delete(container_id, state_root, force=True)
        except ContainerNotFound:
            pass
        service.release(container_id)

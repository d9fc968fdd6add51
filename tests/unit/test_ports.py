"""Published ports: from ``-p`` text through PortBindings to reserved sockets, the port command's lines."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.cli.container_flags import parse_ports
from dockyard.errors import InvalidArgument, NetworkError
from dockyard.network import ports


def requests_for(*specs: str, publish_all: bool = False) -> list[ports.PortRequest]:
    """Parse ``-p`` values as ``run`` does and turn them into port requests."""
    exposed, bindings = parse_ports(specs)
    return ports.requests(exposed, bindings, publish_all)


def test_fixed_host_port() -> None:
    assert requests_for("8600:8080") == [ports.PortRequest(8080, "tcp", "", 8600, 8600)]


def test_host_ip_and_udp() -> None:
    assert requests_for("127.0.0.1:8600:53/udp") == [ports.PortRequest(53, "udp", "127.0.0.1", 8600, 8600)]


def test_ipv6_host_ip() -> None:
    assert requests_for("[::1]:8600:8080") == [ports.PortRequest(8080, "tcp", "::1", 8600, 8600)]


def test_container_port_only_is_random() -> None:
    assert requests_for("8080") == [ports.PortRequest(8080, "tcp", "", 0, 0)]


def test_range_maps_port_by_port() -> None:
    found = requests_for("8000-8002:9000-9002")
    assert [(each.container_port, each.host_port_start) for each in found] == [(9000, 8000), (9001, 8001), (9002, 8002)]


def test_host_range_for_one_port() -> None:
    assert requests_for("8000-8010:80") == [ports.PortRequest(80, "tcp", "", 8000, 8010)]


def test_publish_all_adds_exposed_ports() -> None:
    found = ports.requests({"80/tcp": {}, "53/udp": {}}, {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, True)
    assert found == [ports.PortRequest(80, "tcp", "", 8080, 8080), ports.PortRequest(53, "udp", "", 0, 0)]


def test_exposed_without_publish_all_is_not_published() -> None:
    assert ports.requests({"80/tcp": {}}, None, False) == []


@pytest.mark.parametrize("key", ["0/tcp", "70000/tcp", "80/icmp", "eighty/tcp"])
def test_split_port_rejects(key: str) -> None:
    with pytest.raises(InvalidArgument):
        ports.split_port(key)


@pytest.mark.parametrize("binding", [{"HostPort": "90-80"}, {"HostPort": "x"}, {"HostIp": "nonsense"}])
def test_requests_reject_bad_bindings(binding: dict) -> None:
    with pytest.raises(InvalidArgument):
        ports.requests(None, {"80/tcp": [binding]})


def test_format_mapping_like_docker() -> None:
    assert ports.format_mapping("8080/tcp", "", 8600) == "8080/tcp -> 0.0.0.0:8600"
    assert ports.format_mapping("8080/tcp", "::1", 8600) == "8080/tcp -> [::1]:8600"


def test_ports_setting_lists_unpublished_exposed_ports() -> None:
    mapping = {"HostIp": "", "HostPort": 8600, "Protocol": "tcp", "ContainerPort": 8080, "ContainerIp": "10.0.0.2"}
    setting = ports.ports_setting({"8080/tcp": {}, "9090/tcp": {}}, [mapping])
    assert setting == {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8600"}], "9090/tcp": None}


def test_reserve_random_port_on_loopback() -> None:
    published = ports.reserve(ports.PortRequest(80, "tcp", "127.0.0.1"))
    try:
        assert published.host_port > 0
        assert published.sock is not None
        assert published.sock.getsockname() == ("127.0.0.1", published.host_port)
    finally:
        ports.release([published])


def test_reserve_port_in_use_names_it() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(NetworkError) as caught:
            ports.reserve(ports.PortRequest(80, "tcp", "127.0.0.1", taken, taken))
    assert str(caught.value) == f"Bind for 127.0.0.1:{taken} failed: port is already allocated"


def test_reserve_all_releases_on_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        with pytest.raises(NetworkError):
            ports.reserve_all([
                ports.PortRequest(80, "tcp", "127.0.0.1", free, free),
                ports.PortRequest(81, "tcp", "127.0.0.1", taken, taken),
            ])
    # The first port was bound and must be free again.
    with socket.socket() as again:
        again.bind(("127.0.0.1", free))


def test_reserve_range_skips_used_port() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        published = ports.reserve(ports.PortRequest(80, "tcp", "127.0.0.1", taken, taken + 1))
        try:
            assert published.host_port == taken + 1
        finally:
            ports.release([published])


def test_udp_port_conflict() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        with pytest.raises(NetworkError):
            ports.reserve(ports.PortRequest(53, "udp", "127.0.0.1", taken, taken))


port_numbers = st.integers(min_value=1, max_value=65535)
protocols = st.sampled_from(["tcp", "udp"])
host_ips = st.sampled_from(["", "127.0.0.1", "0.0.0.0", "[::1]", "10.1.2.3"])


@given(host_ip=host_ips, host_port=port_numbers, container_port=port_numbers, protocol=protocols)
def test_spec_round_trip(host_ip: str, host_port: int, container_port: int, protocol: str) -> None:
    spec = f"{host_ip + ':' if host_ip else ''}{host_port}:{container_port}/{protocol}"
    if host_ip and not host_ip.startswith("["):
        spec = f"{host_ip}:{host_port}:{container_port}/{protocol}"
    (request,) = requests_for(spec)
    assert request.container_port == container_port
    assert request.protocol == protocol
    assert request.host_ip == host_ip.strip("[]")
    assert request.host_port_start == request.host_port_end == host_port
    key = f"{container_port}/{protocol}"
    expected_host = host_ip.strip("[]") or "0.0.0.0"
    expected_host = f"[{expected_host}]" if ":" in expected_host else expected_host
    assert ports.format_mapping(key, request.host_ip, host_port) == f"{key} -> {expected_host}:{host_port}"


@given(start=st.integers(min_value=1, max_value=65000), length=st.integers(min_value=0, max_value=30),
       offset=st.integers(min_value=-500, max_value=500))
def test_range_spec_pairs_ports(start: int, length: int, offset: int) -> None:
    host_start = min(max(start + offset, 1), 65535 - length)
    spec = f"{host_start}-{host_start + length}:{start}-{start + length}"
    found = requests_for(spec)
    assert len(found) == length + 1
    for index, request in enumerate(found):
        assert request.container_port == start + index
        assert request.host_port_start == request.host_port_end == host_start + index


@given(text=st.text(max_size=30))
def test_parser_raises_only_invalid_argument(text: str) -> None:
    try:
        requests_for(text)
    except InvalidArgument:
        pass

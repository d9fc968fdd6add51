"""IP address management: subnets, allocation, MAC addresses, with property tests."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument, NetworkError
from dockyard.network import ipam

IPv4Network = ipaddress.IPv4Network


def test_parse_subnet_accepts_cidr() -> None:
    assert ipam.parse_subnet("10.1.0.0/16") == IPv4Network("10.1.0.0/16")


@pytest.mark.parametrize("text", ["10.1.0.1/16", "nonsense", "10.0.0.0/31", "fd00::/64", ""])
def test_parse_subnet_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        ipam.parse_subnet(text)
    assert repr(text) in str(caught.value)


def test_parse_address_outside_subnet() -> None:
    with pytest.raises(InvalidArgument) as caught:
        ipam.parse_address("10.2.0.5", IPv4Network("10.1.0.0/24"), "gateway")
    assert "not in subnet 10.1.0.0/24" in str(caught.value)


@pytest.mark.parametrize("text", ["10.1.0.0", "10.1.0.255"])
def test_parse_address_rejects_network_and_broadcast(text: str) -> None:
    with pytest.raises(InvalidArgument):
        ipam.parse_address(text, IPv4Network("10.1.0.0/24"), "IP address")


def test_gateway_is_first_host() -> None:
    assert str(ipam.gateway_of(IPv4Network("172.17.0.0/16"))) == "172.17.0.1"


def test_allocate_skips_used() -> None:
    subnet = IPv4Network("10.9.0.0/29")
    assert str(ipam.allocate(subnet, ["10.9.0.1"])) == "10.9.0.2"
    assert str(ipam.allocate(subnet, ["10.9.0.1", "10.9.0.2", "10.9.0.4"])) == "10.9.0.3"


def test_allocate_full_subnet_raises() -> None:
    subnet = IPv4Network("10.9.0.0/30")
    with pytest.raises(NetworkError) as caught:
        ipam.allocate(subnet, ["10.9.0.1", "10.9.0.2"])
    assert "10.9.0.0/30" in str(caught.value)


def test_pick_subnet_skips_taken_and_routes() -> None:
    taken = [IPv4Network("172.17.0.0/16"), IPv4Network("172.18.5.0/24")]
    assert ipam.pick_subnet(taken) == IPv4Network("172.19.0.0/16")


def test_pick_subnet_falls_back_to_192_168() -> None:
    taken = [IPv4Network("172.16.0.0/12")]
    assert ipam.pick_subnet(taken) == IPv4Network("192.168.0.0/20")


def test_pick_subnet_exhausted() -> None:
    with pytest.raises(NetworkError):
        ipam.pick_subnet([IPv4Network("0.0.0.0/1"), IPv4Network("128.0.0.0/1")])


def test_mac_follows_address() -> None:
    assert ipam.mac_for(ipaddress.IPv4Address("172.17.0.2")) == "02:42:ac:11:00:02"


@pytest.mark.parametrize("text", ["02:42:AC:11:00:02", "02-42-ac-11-00-02"])
def test_parse_mac_normalises(text: str) -> None:
    assert ipam.parse_mac(text) == "02:42:ac:11:00:02"


@pytest.mark.parametrize("text", ["01:00:5e:00:00:01", "02:42:ac:11:00", "zz:42:ac:11:00:02"])
def test_parse_mac_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        ipam.parse_mac(text)


subnets = st.builds(
    lambda base, prefix: IPv4Network((base, prefix), strict=False),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=20, max_value=30),
)


@given(subnet=subnets, count=st.integers(min_value=1, max_value=40))
def test_allocate_never_repeats(subnet: IPv4Network, count: int) -> None:
    used = [str(ipam.gateway_of(subnet))]
    capacity = subnet.num_addresses - 2
    for _ in range(min(count, capacity - 1)):
        address = ipam.allocate(subnet, used)
        assert str(address) not in used
        assert address in subnet
        assert address not in (subnet.network_address, subnet.broadcast_address)
        used.append(str(address))


@given(taken=st.lists(subnets, max_size=8))
def test_pick_subnet_overlaps_nothing(taken: list[IPv4Network]) -> None:
    try:
        chosen = ipam.pick_subnet(taken)
    except NetworkError:
        return
    assert all(not chosen.overlaps(each) for each in taken)


@given(number=st.integers(min_value=0, max_value=2**32 - 1))
def test_mac_for_is_unicast_and_parses(number: int) -> None:
    mac = ipam.mac_for(ipaddress.IPv4Address(number))
    assert ipam.parse_mac(mac) == mac

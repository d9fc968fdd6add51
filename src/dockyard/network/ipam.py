"""IP address management: picking a subnet for a network and addresses inside it.

Everything here is pure. The caller passes the subnets and addresses in use
(from the state database and the host's routing table). It stores the result
in the same transaction that read them, so an address is never handed out
twice.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from dockyard.errors import InvalidArgument, NetworkError

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

DEFAULT_BRIDGE_SUBNET = "172.17.0.0/16"

# Docker's default address pools for networks created without --subnet:
# 172.17.0.0/16 to 172.31.0.0/16, then the /20 subnets of 192.168.0.0/16.
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (
    *((f"172.{octet}.0.0/16", 16) for octet in range(17, 32)),
    ("192.168.0.0/16", 20),
)


def parse_subnet(text: str) -> IPv4Network:
    """Parse ``--subnet`` (IPv4 CIDR, host bits zero); IPv6 subnets are not supported yet."""
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise InvalidArgument(f"invalid subnet {text!r}: {error}") from None
    if not isinstance(network, IPv4Network):
        raise InvalidArgument(f"invalid subnet {text!r}: IPv6 networks are not supported yet")
    if network.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {text!r}: the prefix must be /30 or shorter to hold a gateway and an address")
    return network


def parse_address(text: str, subnet: IPv4Network, what: str) -> IPv4Address:
    """Parse an IPv4 address that must be a host address of ``subnet``; ``what`` names the option in errors."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: not an IP address") from None
    if not isinstance(address, IPv4Address):
        raise InvalidArgument(f"invalid {what} {text!r}: IPv6 addresses are not supported yet")
    if address not in subnet:
        raise InvalidArgument(f"invalid {what} {text}: not in subnet {subnet}")
    if address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"invalid {what} {text}: the network and broadcast addresses of {subnet} cannot be used")
    return address


def overlaps_any(subnet: IPv4Network, others: Iterable[IPv4Network]) -> IPv4Network | None:
    """Return the first of ``others`` that overlaps ``subnet``, or None."""
    for other in others:
        if subnet.overlaps(other):
            return other
    return None


def pick_subnet(taken: Iterable[IPv4Network], pools: Iterable[tuple[str, int]] = DEFAULT_POOLS) -> IPv4Network:
    """Return the first subnet of the pools that overlaps none of ``taken``.

    ``taken`` contains the subnets of existing networks and the destinations of
    the host's routes, so a new bridge never hides a route the machine uses.
    A default route (0.0.0.0/0) is left out by the caller.
    """
    taken = list(taken)
    for pool_text, prefix in pools:
        pool = ipaddress.ip_network(pool_text)
        for candidate in pool.subnets(new_prefix=prefix):
            if overlaps_any(candidate, taken) is None:
                return candidate
    raise NetworkError("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")


def gateway_of(subnet: IPv4Network) -> IPv4Address:
    """Return Docker's default gateway: the first host address of the subnet."""
    return subnet.network_address + 1


def allocate(subnet: IPv4Network, used: Iterable[IPv4Address | str]) -> IPv4Address:
    """Return the lowest host address of ``subnet`` not in ``used``.

    ``used`` must contain the gateway. Lowest-first reuses addresses of
    removed containers, as Docker's allocator does once it wraps around.
    """
    taken = {ipaddress.ip_address(str(each)) for each in used}
    # Walk the addresses as integers: subnet.hosts() builds objects for a /8's 16 million addresses.
    first = int(subnet.network_address) + 1
    last = int(subnet.broadcast_address) - 1
    taken_numbers = {int(each) for each in taken}
    for number in range(first, last + 1):
        if number not in taken_numbers:
            return IPv4Address(number)
    raise NetworkError(f"no available IPv4 addresses on network with subnet {subnet}")


def mac_for(address: IPv4Address) -> str:
    """Return Docker's MAC address for an IPv4 address: 02:42 followed by the four address bytes."""
    return "02:42:" + ":".join(f"{byte:02x}" for byte in address.packed)


def parse_mac(text: str) -> str:
    """Normalise a ``--mac-address`` value to lower-case colon form; reject multicast addresses."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(part) == 2 and all(c in "0123456789abcdefABCDEF" for c in part) for part in parts):
        raise InvalidArgument(f"invalid MAC address: {text}")
    if int(parts[0], 16) & 1:
        raise InvalidArgument(f"invalid MAC address {text}: a multicast address cannot be an interface's address")
    return ":".join(part.lower() for part in parts)

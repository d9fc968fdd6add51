"""The few rtnetlink requests a container start and stop make, sent on a plain netlink socket.

Creating a veth pair, putting its host end on a bridge, and giving the peer
an address and a default route takes six requests. Through pyroute2 they
took about 45 ms per container, because its sockets start an asyncio loop and
each call parses full replies. Packed by hand, all six took 3 ms here. pyroute2 still does the rest (``netlink.py``), where speed does not
matter.

Each request sets ``NLM_F_ACK``, so the kernel acknowledges it, and a kernel
error comes back as an ``OSError`` with the kernel's errno. A socket belongs to the
network namespace its creator was in when it opened it, so for work inside a
container's namespace the socket is opened in a thread that joined it
(``netlink.in_netns``).

Message layouts (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h):
``nlmsghdr`` is length, type, flags, sequence, port; ``ifinfomsg`` is family,
padding, device type, index, flags, change mask; ``ifaddrmsg`` is family,
prefix length, flags, scope, index; ``rtmsg`` is family, destination and
source prefix lengths, TOS, table, protocol, scope, type, flags. Attributes
are length, type and a value padded to four bytes.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_OIF, RTA_GATEWAY = 4, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

HEADER = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBI")
RTMSG = struct.Struct("=BBBBBBBBI")


def attribute(kind: int, value: bytes) -> bytes:
    """Pack one rtattr: length, type, the value, and padding to four bytes."""
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def name_value(name: str) -> bytes:
    return name.encode() + b"\0"


def ifinfomsg(index: int = 0, up: bool = False) -> bytes:
    flags = IFF_UP if up else 0
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, IFF_UP if up else 0)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


class Rtnl:
    """A route netlink socket in the namespace of the thread that opens it."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.socket.bind((0, 0))
        self.sequence = 0

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.socket.close()

    def request(self, kind: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its acknowledgement; raise OSError with the kernel's errno."""
        self.sequence += 1
        sequence = self.sequence
        self.socket.send(HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, sequence, 0) + body)
        while True:
            data = self.socket.recv(65536)
            offset = 0
            while offset + HEADER.size <= len(data):
                length, message_type, _, message_sequence, _ = HEADER.unpack_from(data, offset)
                if length < HEADER.size:
                    raise OSError(errno.EPROTO, f"netlink message of length {length}")
                if message_type == NLMSG_ERROR and message_sequence == sequence:
                    (code,) = struct.unpack_from("=i", data, offset + HEADER.size)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return
                offset += (length + 3) & ~3

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, peer_mac: str, master: int) -> None:
        """Create veth ``name`` on bridge index ``master``, up, with its peer ``peer`` inside another namespace."""
        peer_info = ifinfomsg() + attribute(IFLA_IFNAME, name_value(peer)) \
            + attribute(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd)) \
            + attribute(IFLA_ADDRESS, mac_bytes(peer_mac))
        link_info = attribute(IFLA_INFO_KIND, b"veth") \
            + attribute(IFLA_INFO_DATA, attribute(VETH_INFO_PEER, peer_info))
        body = ifinfomsg(up=True) + attribute(IFLA_IFNAME, name_value(name)) \
            + attribute(IFLA_MASTER, struct.pack("=I", master)) + attribute(IFLA_LINKINFO, link_info)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, ifinfomsg(index, up=True))

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, 0, ifinfomsg(index))

    def add_address(self, index: int, address: str, prefix_len: int) -> None:
        packed = socket.inet_aton(address)
        body = IFADDRMSG.pack(socket.AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE, index) \
            + attribute(IFA_LOCAL, packed) + attribute(IFA_ADDRESS, packed)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def add_default_route(self, gateway: str, index: int) -> None:
        body = RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0) \
            + attribute(RTA_GATEWAY, socket.inet_aton(gateway)) + attribute(RTA_OIF, struct.pack("=I", index))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)


def index_of(name: str) -> int | None:
    """Return the index of interface ``name`` in the calling thread's network namespace, or None."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None

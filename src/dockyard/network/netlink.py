"""Links, addresses and routes through rtnetlink (pyroute2).

Work inside a container's network namespace runs in a short-lived thread that
has called ``setns(2)`` into it. A netlink socket belongs to the namespace of
the thread that opened it, and the rest of the process keeps its own
namespace. pyroute2's own ``netns=`` option forks a child for that, which costs
more than the whole setup.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import threading
from typing import Any, Callable, TypeVar

from dockyard.errors import NetworkError

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000

T = TypeVar("T")

_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _iproute() -> Any:
    from pyroute2 import IPRoute

    # pyroute2 logs every netlink message at debug level, which buries dockyard's own debug lines.
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    return IPRoute()


def in_netns(netns_path: str, action: Callable[[Any], T], opener: Callable[[], Any] | None = None) -> T:
    """Run ``action(connection)`` with a netlink connection in the network namespace at ``netns_path``.

    The connection is pyroute2's IPRoute unless ``opener`` makes another
    (``rtnl.Rtnl``); it must be a context manager.
    """
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            with (opener or _iproute)() as connection:
                result["value"] = action(connection)
        except BaseException as error:  # handed to the calling thread below
            result["error"] = error

    thread = threading.Thread(target=run, name=f"netns {netns_path}")
    thread.start()
    thread.join()
    if "error" in result:
        error = result["error"]
        if isinstance(error, NetworkError):
            raise error
        raise NetworkError(f"network setup in namespace {netns_path} failed: {error}") from error
    return result["value"]


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


# ioctl requests from <linux/sockios.h>, each on a ``struct ifreq`` (16-byte name, then the value).
SIOCGIFFLAGS = 0x8913
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
IFF_UP = 0x1


def _bridge_ready(name: str, gateway: str, prefix_len: int) -> bool:
    """Tell whether ``name`` is up with the primary IPv4 address ``gateway/prefix_len``.

    Three ioctls read this without importing pyroute2. That import took
    about 0.2 s here (``python -X importtime``), which each new monitor's
    first container would otherwise wait for.
    """
    import fcntl
    import socket
    import struct

    request = struct.pack("16s16x", name.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            flags = struct.unpack_from("=H", fcntl.ioctl(sock, SIOCGIFFLAGS, request), 16)[0]
            address = fcntl.ioctl(sock, SIOCGIFADDR, request)[20:24]
            netmask = fcntl.ioctl(sock, SIOCGIFNETMASK, request)[20:24]
        except OSError:
            return False   # no such interface, or no IPv4 address
    expected_mask = ipaddress.IPv4Network(f"0.0.0.0/{prefix_len}").netmask.packed
    return bool(flags & IFF_UP) and socket.inet_ntoa(address) == gateway and netmask == expected_mask


def ensure_bridge(name: str, gateway: str, prefix_len: int) -> None:
    """Create bridge ``name`` with ``gateway/prefix_len`` unless it exists, and bring it up."""
    if _bridge_ready(name, gateway, prefix_len):
        return
    from pyroute2 import NetlinkError

    with _iproute() as ipr:
        index = _index(ipr, name)
        if index is None:
            log.debug("creating bridge %s", name)
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as error:
                if error.code != errno.EEXIST:
                    raise NetworkError(f"failed to create bridge {name}: {error}") from error
            index = _index(ipr, name)
            if index is None:
                raise NetworkError(f"bridge {name} vanished right after it was created")
        addresses = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
        if (gateway, prefix_len) not in addresses:
            log.debug("adding address %s/%d to bridge %s", gateway, prefix_len, name)
            try:
                ipr.addr("add", index=index, address=gateway, prefixlen=prefix_len)
            except NetlinkError as error:
                if error.code != errno.EEXIST:
                    raise NetworkError(f"failed to add address {gateway}/{prefix_len} to bridge {name}: {error}") from error
        ipr.link("set", index=index, state="up")


def delete_link(name: str) -> bool:
    """Delete interface ``name`` in the host namespace; return False when it did not exist."""
    from dockyard.network import rtnl

    index = rtnl.index_of(name)
    if index is None:
        return False
    log.debug("deleting interface %s", name)
    try:
        with rtnl.Rtnl() as connection:
            connection.delete_link(index)
    except OSError as error:
        if error.errno == errno.ENODEV:
            return False
        raise NetworkError(f"failed to delete interface {name}: {error.strerror}") from error
    return True


def add_veth(
    host_name: str,
    bridge: str,
    netns_path: str,
    interface: str,
    address: str,
    prefix_len: int,
    gateway: str | None,
    mac: str,
) -> None:
    """Connect a network namespace to ``bridge`` through a veth pair.

    The host end ``host_name`` is created on the bridge and up. The peer is
    created right inside the namespace at ``netns_path`` as ``interface``
    (``eth0``) with ``mac``, which is cheaper than creating it in the host's
    namespace and moving it there. It gets ``address/prefix_len`` and, when
    ``gateway`` is set, a default route through it; ``lo`` is brought up too.
    On failure the pair is deleted, which also removes the peer wherever it is.
    These are the requests of every container start, so they go through
    ``rtnl`` rather than pyroute2.
    """
    from dockyard.network import rtnl

    bridge_index = rtnl.index_of(bridge)
    if bridge_index is None:
        raise NetworkError(f"bridge {bridge} does not exist")
    log.debug("creating veth pair %s / %s on bridge %s, the peer in %s", host_name, interface, bridge, netns_path)
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with rtnl.Rtnl() as connection:
            connection.add_veth(host_name, interface, fd, mac, bridge_index)
    except OSError as error:
        raise NetworkError(
            f"failed to create veth pair {host_name}/{interface} on bridge {bridge} into {netns_path}: {error.strerror}"
        ) from error
    finally:
        os.close(fd)

    def configure(connection: Any) -> None:
        index = rtnl.index_of(interface)
        if index is None:
            raise NetworkError(f"interface {interface} did not arrive in network namespace {netns_path}")
        log.debug("configuring %s with %s/%d in %s", interface, address, prefix_len, netns_path)
        connection.add_address(index, address, prefix_len)
        connection.set_up(index)
        loopback = rtnl.index_of("lo")
        if loopback is not None:
            connection.set_up(loopback)
        if gateway is not None:
            connection.add_default_route(gateway, index)

    try:
        in_netns(netns_path, configure, opener=rtnl.Rtnl)
    except NetworkError:
        delete_link(host_name)
        raise


def forget_udp_flows(container_ip: str, container_port: int) -> int:
    """Delete the conntrack entries of UDP flows to ``container_ip:container_port``; return how many.

    A UDP client that keeps sending to a published port keeps its conntrack
    entry, and with it the DNAT to this address, after the rule is gone. A
    later container on the same host port would never see that client.
    """
    import socket

    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    conntrack = Conntrack()
    try:
        # The reply direction of a DNATed flow comes from the container's address and port.
        reply = NFCTAttrTuple(proto=socket.IPPROTO_UDP, saddr=container_ip, sport=container_port)
        found = list(conntrack.dump_entries(tuple_reply=reply))
        for entry in found:
            conntrack.entry("del", tuple_orig=entry.tuple_orig)
    finally:
        conntrack.close()
    if found:
        log.debug("deleted %d conntrack entries of UDP flows to %s:%d", len(found), container_ip, container_port)
    return len(found)


def host_routes() -> list[ipaddress.IPv4Network]:
    """Return the destinations of the host's IPv4 routes in the main table, without the default route."""
    found = []
    with _iproute() as ipr:
        for route in ipr.get_routes(family=2, table=254):
            destination = route.get_attr("RTA_DST")
            if destination is None or route["dst_len"] == 0:
                continue
            found.append(ipaddress.ip_network(f"{destination}/{route['dst_len']}", strict=False))
    return found


def uplink() -> str | None:
    """Return the name of the interface the host's IPv4 default route leaves through, if there is one."""
    with _iproute() as ipr:
        for route in ipr.get_routes(family=2, table=254):
            if route["dst_len"] == 0 and route.get_attr("RTA_DST") is None:
                index = route.get_attr("RTA_OIF")
                if index is None:
                    continue
                links = ipr.get_links(index)
                if links:
                    return str(links[0].get_attr("IFLA_IFNAME"))
    return None

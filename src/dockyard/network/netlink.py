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


def in_netns(netns_path: str, action: Callable[[Any], T]) -> T:
    """Run ``action(ipr)`` with an IPRoute socket in the network namespace at ``netns_path``."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            with _iproute() as ipr:
                result["value"] = action(ipr)
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


def ensure_bridge(name: str, gateway: str, prefix_len: int) -> None:
    """Create bridge ``name`` with ``gateway/prefix_len`` unless it exists, and bring it up."""
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
    from pyroute2 import NetlinkError

    with _iproute() as ipr:
        index = _index(ipr, name)
        if index is None:
            return False
        log.debug("deleting interface %s", name)
        try:
            ipr.link("del", index=index)
        except NetlinkError as error:
            if error.code == errno.ENODEV:
                return False
            raise NetworkError(f"failed to delete interface {name}: {error}") from error
        return True


def add_veth(
    host_name: str,
    peer_name: str,
    bridge: str,
    netns_path: str,
    interface: str,
    address: str,
    prefix_len: int,
    gateway: str | None,
    mac: str,
) -> None:
    """Connect a network namespace to ``bridge`` through a veth pair.

    The host end ``host_name`` joins the bridge. The peer moves into the
    namespace at ``netns_path``, where it is renamed ``interface`` (``eth0``)
    and gets ``mac``, ``address/prefix_len`` and, when ``gateway`` is set, a
    default route through it; ``lo`` is brought up too. On failure the pair is
    deleted, which also removes the peer wherever it is.
    """
    from pyroute2 import NetlinkError

    with _iproute() as ipr:
        bridge_index = _index(ipr, bridge)
        if bridge_index is None:
            raise NetworkError(f"bridge {bridge} does not exist")
        log.debug("creating veth pair %s / %s on bridge %s", host_name, peer_name, bridge)
        try:
            ipr.link("add", ifname=host_name, kind="veth", peer=peer_name)
        except NetlinkError as error:
            raise NetworkError(f"failed to create veth pair {host_name}/{peer_name}: {error}") from error
        try:
            host_index = _index(ipr, host_name)
            peer_index = _index(ipr, peer_name)
            ipr.link("set", index=host_index, master=bridge_index)
            ipr.link("set", index=host_index, state="up")
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                log.debug("moving %s into network namespace %s", peer_name, netns_path)
                ipr.link("set", index=peer_index, net_ns_fd=fd)
            finally:
                os.close(fd)
        except (NetlinkError, OSError) as error:
            _delete_quietly(ipr, host_name)
            raise NetworkError(f"failed to attach veth {host_name} to bridge {bridge}: {error}") from error

    def configure(inner: Any) -> None:
        index = _index(inner, peer_name)
        if index is None:
            raise NetworkError(f"interface {peer_name} did not arrive in network namespace {netns_path}")
        log.debug("configuring %s as %s with %s/%d in %s", peer_name, interface, address, prefix_len, netns_path)
        inner.link("set", index=index, ifname=interface, address=mac)
        inner.addr("add", index=index, address=address, prefixlen=prefix_len)
        inner.link("set", index=index, state="up")
        loopback = _index(inner, "lo")
        if loopback is not None:
            inner.link("set", index=loopback, state="up")
        if gateway is not None:
            inner.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)

    try:
        in_netns(netns_path, configure)
    except NetworkError:
        delete_link(host_name)
        raise


def _delete_quietly(ipr: Any, name: str) -> None:
    index = _index(ipr, name)
    if index is not None:
        try:
            ipr.link("del", index=index)
        except Exception as error:  # cleanup after an error that is being raised
            log.warning("could not delete interface %s while undoing a failed setup: %s", name, error)


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

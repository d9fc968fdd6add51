"""Published ports: from the Engine API's ``PortBindings`` to reserved host sockets.

The ``-p`` syntax itself is parsed by the CLI (``cli/container_flags.py``)
into Docker's ``PortBindings`` shape, ``{"8080/tcp": [{"HostIp": "", "HostPort": "8600"}]}``,
where ``HostPort`` may be empty (any free port) or a range to pick one from.
This module turns that into concrete mappings and binds their host sockets.

Binding is the reservation: the sockets stay open while the container runs,
so a port in use fails here, before anything else is set up, a port the
kernel chose (``HostPort`` empty) is known exactly, and no other program can
take the port later. The network service keeps the sockets of IPv4 mappings,
whose traffic the kernel DNATs, and hands those of IPv6 mappings to the
userland proxy.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from dockyard.errors import InvalidArgument, NetworkError

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class PortRequest:
    """One container port to publish, before a host port is chosen.

    ``host_port_start`` and ``host_port_end`` are 0 for any free port; equal
    for one fixed port; a range when any free port of the range will do.
    """

    container_port: int
    protocol: str
    host_ip: str
    host_port_start: int = 0
    host_port_end: int = 0


@dataclass
class PublishedPort:
    """A published port with its host socket, as ``port`` and ``NetworkSettings.Ports`` show it."""

    container_port: int
    protocol: str
    host_ip: str
    host_port: int
    sock: socket.socket | None = field(default=None, repr=False, compare=False)

    def as_dict(self, container_ip: str = "") -> dict[str, Any]:
        return {
            "HostIp": self.host_ip,
            "HostPort": self.host_port,
            "Protocol": self.protocol,
            "ContainerPort": self.container_port,
            "ContainerIp": container_ip,
        }


def split_port(key: str) -> tuple[int, str]:
    """Split an ``ExposedPorts``/``PortBindings`` key (``"8080/tcp"``, ``"53/udp"``, ``"80"``) into port and protocol."""
    number, _, protocol = key.partition("/")
    protocol = (protocol or "tcp").lower()
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {protocol} in port {key!r}")
    if not number.isascii() or not number.isdigit() or not 0 < int(number) <= 65535:
        raise InvalidArgument(f"invalid port {key!r}: expected a number from 1 to 65535")
    return int(number), protocol


def _host_range(text: str, key: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    start_text, dash, end_text = text.partition("-")
    parts = (start_text, end_text) if dash else (start_text,)
    if not all(part.isascii() and part.isdigit() and int(part) <= 65535 for part in parts):
        raise InvalidArgument(f"invalid host port {text!r} for {key}")
    start, end = int(parts[0]), int(parts[-1])
    if end < start:
        raise InvalidArgument(f"invalid host port range {text!r} for {key}: the end is before the start")
    return start, end


def _host_ip(text: str, key: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidArgument(f"invalid host IP {text!r} for port {key}") from None


def requests(
    exposed_ports: Mapping[str, Any] | None,
    port_bindings: Mapping[str, Iterable[Mapping[str, str]] | None] | None,
    publish_all: bool = False,
) -> list[PortRequest]:
    """Return the ports to publish, from ``PortBindings`` and, with ``publish_all``, every exposed port.

    An exposed port without a binding gets a random host port on all
    addresses when ``publish_all`` is set, as ``docker run -P`` does.
    """
    found: list[PortRequest] = []
    bound_keys = set()
    for key, bindings in (port_bindings or {}).items():
        number, protocol = split_port(key)
        bound_keys.add((number, protocol))
        for binding in bindings or [{}]:
            start, end = _host_range(str(binding.get("HostPort") or ""), key)
            found.append(PortRequest(number, protocol, _host_ip(binding.get("HostIp") or "", key), start, end))
    if publish_all:
        for key in exposed_ports or {}:
            number, protocol = split_port(key)
            if (number, protocol) not in bound_keys:
                found.append(PortRequest(number, protocol, ""))
    return found


def _display_ip(host_ip: str) -> str:
    return host_ip or "0.0.0.0"


def _bind(request: PortRequest, port: int) -> socket.socket:
    address = _display_ip(request.host_ip)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}.get(request.protocol)
    if kind is None:
        raise NetworkError(f"publishing {request.protocol} ports is not supported: use tcp or udp")
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            # Lets the port be bound again while old connections sit in TIME_WAIT;
            # it does not allow a second listener on the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            # Only a listening socket keeps another process from binding the port with
            # SO_REUSEADDR. Connections wait in the backlog until the proxy takes the
            # socket over. On a DNATed port, reject_pending resets the few that arrive
            # before the rule exists.
            sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _port_in_use(request: PortRequest, port: int | str) -> NetworkError:
    # Docker's wording, which scripts match on.
    host = _display_ip(request.host_ip)
    host = f"[{host}]" if ":" in host else host
    return NetworkError(f"Bind for {host}:{port} failed: port is already allocated")


def reserve(request: PortRequest) -> PublishedPort:
    """Bind the host socket of one request; raise NetworkError naming the port when it is in use."""
    if request.host_port_start == 0:
        candidates: Iterable[int] = [0]
    else:
        candidates = range(request.host_port_start, request.host_port_end + 1)
    for port in candidates:
        try:
            sock = _bind(request, port)
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            if error.errno == errno.EADDRNOTAVAIL:
                raise NetworkError(
                    f"cannot publish port {request.container_port}/{request.protocol} on {request.host_ip}:"
                    f" the host has no such address"
                ) from error
            raise NetworkError(f"cannot bind {_display_ip(request.host_ip)}:{port}/{request.protocol}: {error}") from error
        return PublishedPort(request.container_port, request.protocol, request.host_ip, sock.getsockname()[1], sock)
    if request.host_port_start == request.host_port_end:
        raise _port_in_use(request, request.host_port_start or "0")
    raise _port_in_use(request, f"{request.host_port_start}-{request.host_port_end}")


def reserve_all(port_requests: Iterable[PortRequest]) -> list[PublishedPort]:
    """Reserve every request, or none: on an error the sockets bound so far are closed."""
    reserved: list[PublishedPort] = []
    try:
        for request in port_requests:
            reserved.append(reserve(request))
    except BaseException:
        release(reserved)
        raise
    return reserved


def needs_proxy(host_ip: str) -> bool:
    """Tell whether a mapping on ``host_ip`` needs the userland proxy: IPv6 host addresses do."""
    return ":" in host_ip


def reject_pending(mappings: Iterable[PublishedPort]) -> None:
    """Reset the connections waiting in the backlog of DNAT-published TCP sockets.

    Only connections that arrived between ``reserve`` and the DNAT rule are
    there, and nothing would ever accept them, so each gets a reset (linger
    0 on close) and its client can retry through the rule.
    """
    for mapping in mappings:
        sock = mapping.sock
        if sock is None or sock.type != socket.SOCK_STREAM:
            continue
        sock.setblocking(False)
        while True:
            try:
                connection, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()


def release(mappings: Iterable[PublishedPort]) -> None:
    for mapping in mappings:
        if mapping.sock is not None:
            mapping.sock.close()
            mapping.sock = None


def format_mapping(key: str, host_ip: str, host_port: int | str) -> str:
    """Return one line of ``dockyard port``: ``8080/tcp -> 0.0.0.0:8600``."""
    host = host_ip or "0.0.0.0"
    host = f"[{host}]" if ":" in host else host
    return f"{key} -> {host}:{host_port}"


def ports_setting(exposed_ports: Mapping[str, Any] | None, mappings: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Return ``NetworkSettings.Ports``: every exposed port, with its host bindings or None."""
    ports: dict[str, Any] = {}
    for key in exposed_ports or {}:
        number, protocol = split_port(key)
        ports[f"{number}/{protocol}"] = None
    for mapping in mappings:
        key = f"{mapping['ContainerPort']}/{mapping['Protocol']}"
        if ports.get(key) is None:
            ports[key] = []
        ports[key].append({"HostIp": mapping["HostIp"] or "0.0.0.0", "HostPort": str(mapping["HostPort"])})
    return ports

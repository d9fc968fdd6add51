"""The contents of a networked container's /etc/hosts and /etc/resolv.conf.

These functions only build text; the container service writes the files.
Docker's rules: /etc/hosts lists localhost, the ``--add-host`` entries and the
container's own addresses with its hostname. On a user-defined network the
container queries the embedded DNS server (``nameserver 127.0.0.11``, with
``ndots:0``), and the host's servers become that server's upstreams. On the
default bridge it queries the host's servers (or ``--dns``) directly.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from dockyard.errors import InvalidArgument

EMBEDDED_DNS = "127.0.0.11"
HOST_GATEWAY = "host-gateway"

LOCALHOST_LINES = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def parse_extra_host(entry: str, host_gateway: str | None) -> tuple[str, str]:
    """Parse an ``ExtraHosts`` entry, ``name:ip`` or ``name=ip``; ``host-gateway`` becomes ``host_gateway``."""
    separator = "=" if "=" in entry else ":"
    name, found, address = entry.partition(separator)
    if not found or not name or not address:
        raise InvalidArgument(f"invalid argument {entry!r} for --add-host: expected HOST:IP")
    if address == HOST_GATEWAY:
        if host_gateway is None:
            raise InvalidArgument(f"cannot resolve {HOST_GATEWAY} for --add-host {entry}: the container has no gateway")
        address = host_gateway
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise InvalidArgument(f"invalid IP address {address!r} in --add-host {entry}") from None
    return name, address


def hosts_file(
    hostname: str,
    domainname: str,
    addresses: Iterable[str],
    extra_hosts: Iterable[str] = (),
    host_gateway: str | None = None,
) -> str:
    """Return /etc/hosts for a container with ``addresses`` (one per network it is on)."""
    lines = [LOCALHOST_LINES]
    for entry in extra_hosts:
        name, address = parse_extra_host(entry, host_gateway)
        lines.append(f"{address}\t{name}\n")
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    for address in addresses:
        lines.append(f"{address}\t{names}\n")
    return "".join(lines)


def _lines(text: str, keyword: str) -> list[str]:
    return [line.split(None, 1)[1].strip() for line in text.splitlines() if line.split()[:1] == [keyword] and len(line.split()) > 1]


def nameservers(resolv_text: str) -> list[str]:
    """Return the ``nameserver`` addresses of a resolv.conf text."""
    return [entry.split()[0] for entry in _lines(resolv_text, "nameserver")]


def resolv_conf(
    host_text: str,
    embedded: bool,
    dns: Iterable[str] = (),
    dns_search: Iterable[str] = (),
    dns_options: Iterable[str] = (),
) -> str:
    """Return /etc/resolv.conf for a container.

    ``host_text`` is the host's resolv.conf without the servers the container
    cannot reach (loopback ones). With ``embedded`` the container's only
    server is the embedded DNS server, and ``dns`` or the host's servers are
    that server's upstreams instead (see ``upstreams``).
    """
    dns = list(dns)
    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"invalid --dns {server!r}: not an IP address") from None
    search = list(dns_search) or _lines(host_text, "search")
    options = list(dns_options) or [option for entry in _lines(host_text, "options") for option in entry.split()]
    servers = [EMBEDDED_DNS] if embedded else (dns or nameservers(host_text))
    if embedded and "ndots:0" not in options and not any(option.startswith("ndots:") for option in options):
        options = ["ndots:0", *options]
    out = [f"nameserver {server}\n" for server in servers]
    search_line = " ".join(entry for entry in search if entry and entry != ".")
    if search_line:
        out.append(f"search {search_line}\n")
    if options:
        out.append(f"options {' '.join(options)}\n")
    return "".join(out)


def upstreams(host_text: str, dns: Iterable[str] = ()) -> list[str]:
    """Return the servers the embedded DNS server forwards to: ``--dns`` if given, else the host's."""
    return list(dns) or nameservers(host_text)

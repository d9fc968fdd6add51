"""NAT, forwarding rules and published ports in an nftables table of dockyard's own.

dockyard never touches another table. Its table (``ip dockyard`` unless the
configuration names another) holds five base chains and one regular chain:

- ``prerouting`` and ``output`` (nat): traffic to a local address jumps to
  ``publish``, which holds one DNAT rule per published port. ``output`` also
  matches loopback traffic, so 127.0.0.1 reaches a container through the kernel.
- ``postrouting`` (nat): per non-internal network, a masquerade rule for its
  subnet and one for sources in 127.0.0.0/8 leaving through its bridge. The
  second makes DNATed loopback connections answerable: the container replies
  to the bridge's address instead of its own loopback.
- ``loopback_guard`` (filter, prerouting hook, before conntrack): drops
  packets to 127.0.0.0/8 that arrive on a bridge of this table. The network
  service sets ``route_localnet`` on its bridges, which would otherwise let a
  container reach services that listen on the host's loopback only.
- ``forward`` (filter): one rule per network that drops traffic from its
  bridge to any other bridge of the set ``bridges`` (Docker's isolation
  between networks), two more drop rules per internal network, and the guard
  rules tests add to keep forwarded traffic off the machine's uplink.

Every rule carries a comment naming its owner (``net:<bridge>``,
``port:<container id>``, ``guard:<interface>``), so it can be found and
deleted by handle. nftables applies each command buffer as one transaction.

The commands go through libnftables (``libnftables.so.1``, the library
behind the ``nft`` command) with ctypes, so no process is started per change.
"""

from __future__ import annotations

import ctypes
import json
import logging
import threading
from typing import Any, Iterable

from dockyard.errors import NetworkError

log = logging.getLogger(__name__)

DEFAULT_TABLE = "dockyard"
FAMILY = "ip"
LOOPBACK = "127.0.0.0/8"

# nft_ctx_output_set_flags bits from <nftables/libnftables.h>.
NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4


class Nftables:
    """A libnftables context that runs nft command text and returns its output."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            library = ctypes.CDLL("libnftables.so.1", use_errno=True)
        except OSError as error:
            raise NetworkError(f"cannot load libnftables.so.1 (install the libnftables1 package): {error}") from error
        library.nft_ctx_new.restype = ctypes.c_void_p
        library.nft_ctx_new.argtypes = [ctypes.c_uint32]
        library.nft_ctx_free.argtypes = [ctypes.c_void_p]
        library.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        library.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        library.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        library.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(library, name).restype = ctypes.c_char_p
            getattr(library, name).argtypes = [ctypes.c_void_p]
        self._library = library
        self._context = library.nft_ctx_new(0)
        library.nft_ctx_buffer_output(self._context)
        library.nft_ctx_buffer_error(self._context)
        library.nft_ctx_output_set_flags(self._context, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE)

    def run(self, commands: str) -> str:
        """Run nft command text as one transaction; return the JSON output (empty for changes)."""
        with self._lock:
            log.debug("nft: %s", commands.strip().replace("\n", "; "))
            code = self._library.nft_run_cmd_from_buffer(self._context, commands.encode())
            output = (self._library.nft_ctx_get_output_buffer(self._context) or b"").decode()
            error = (self._library.nft_ctx_get_error_buffer(self._context) or b"").decode()
        if code != 0:
            raise NetworkError(f"nftables rejected the commands {commands.strip()!r}: {error.strip()}")
        return output

    def close(self) -> None:
        if self._context:
            self._library.nft_ctx_free(self._context)
            self._context = None


_shared: Nftables | None = None


def nftables() -> Nftables:
    global _shared
    if _shared is None:
        _shared = Nftables()
    return _shared


def _quote(text: str) -> str:
    if '"' in text or "\n" in text:
        raise NetworkError(f"invalid nftables comment or name {text!r}")
    return f'"{text}"'


class Table:
    """dockyard's nftables table; every method is one nftables transaction."""

    def __init__(self, name: str = DEFAULT_TABLE, nft: Nftables | None = None) -> None:
        self.name = name
        self._nft = nft

    @property
    def nft(self) -> Nftables:
        if self._nft is None:
            self._nft = nftables()
        return self._nft

    def _prefix(self, chain: str) -> str:
        return f"{FAMILY} {self.name} {chain}"

    def _setup_commands(self) -> str:
        # "add" leaves an existing table or chain alone, so this is idempotent.
        table = f"{FAMILY} {self.name}"
        return "\n".join([
            f"add table {table}",
            f"add chain {table} publish",
            f"add set {table} bridges {{ type ifname; }}",
            f"add chain {table} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
            f"add chain {table} output {{ type nat hook output priority -100; policy accept; }}",
            f"add chain {table} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
            f"add chain {table} forward {{ type filter hook forward priority filter; policy accept; }}",
            # Priority raw runs before conntrack undoes a masquerade, so replies to
            # masqueraded loopback connections still carry the bridge's address here.
            f"add chain {table} loopback_guard {{ type filter hook prerouting priority raw; policy accept; }}",
        ]) + "\n"

    def ensure(self) -> None:
        """Create the table and its chains unless they exist, with the jumps to ``publish``."""
        self.nft.run(self._setup_commands())
        jumps = self._find_rules(lambda rule: rule["chain"] in ("prerouting", "output") and rule.get("comment") == "publish")
        # Tables written by earlier versions skip 127.0.0.0/8 in output, where a userland
        # proxy carried loopback traffic; that jump is replaced by one without the exception.
        outdated = [rule for rule in jumps if rule["chain"] == "output" and LOOPBACK.split("/")[0] in json.dumps(rule["expr"])]
        commands = "".join(f"delete rule {self._prefix(rule['chain'])} handle {rule['handle']}\n" for rule in outdated)
        chains = {rule["chain"] for rule in jumps if rule not in outdated}
        for chain in ("prerouting", "output"):
            if chain not in chains:
                commands += f"add rule {self._prefix(chain)} fib daddr type local jump publish comment \"publish\"\n"
        if commands:
            self.nft.run(commands)

    def exists(self) -> bool:
        listing = json.loads(self.nft.run("list tables") or '{"nftables": []}')
        return any(
            item.get("table", {}).get("name") == self.name and item["table"].get("family") == FAMILY
            for item in listing["nftables"]
        )

    def delete(self) -> None:
        """Delete the whole table; a missing table is not an error."""
        if self.exists():
            self.nft.run(f"delete table {FAMILY} {self.name}\n")

    def rules(self) -> list[dict[str, Any]]:
        """Return the table's rules as libnftables JSON objects (``chain``, ``handle``, ``comment``, ...)."""
        if not self.exists():
            return []
        listing = json.loads(self.nft.run(f"list table {FAMILY} {self.name}"))
        return [item["rule"] for item in listing["nftables"] if "rule" in item]

    def chain_rules(self, chain: str) -> list[dict[str, Any]]:
        """Return the rules of one chain; cheaper than ``rules`` once many ports are published."""
        try:
            listing = json.loads(self.nft.run(f"list chain {self._prefix(chain)}"))
        except NetworkError:
            return []   # no such table or chain yet
        return [item["rule"] for item in listing["nftables"] if "rule" in item]

    def _find_rules(self, predicate: Any) -> list[dict[str, Any]]:
        return [rule for rule in self.rules() if predicate(rule)]

    def delete_owned(self, comments: Iterable[str]) -> int:
        """Delete every rule whose comment is one of ``comments``; return how many were deleted."""
        wanted = set(comments)
        found = self._find_rules(lambda rule: rule.get("comment") in wanted)
        if found:
            self.nft.run("".join(f"delete rule {self._prefix(rule['chain'])} handle {rule['handle']}\n" for rule in found))
        return len(found)

    # -- networks --------------------------------------------------------------------

    def add_network(self, bridge: str, subnet: str, internal: bool) -> None:
        """Add the rules of one network: masquerade for its subnet, or the drops that keep an internal one in."""
        self.ensure()
        owner = _quote(f"net:{bridge}")
        self.delete_owned([f"net:{bridge}"])
        name = _quote(bridge)
        commands = (
            f"add element {FAMILY} {self.name} bridges {{ {name} }}\n"
            f"add rule {self._prefix('forward')} iifname {name} oifname @bridges oifname != {name} drop comment {owner}\n"
            f"add rule {self._prefix('loopback_guard')} iifname {name} ip daddr {LOOPBACK} drop comment {owner}\n"
        )
        if internal:
            commands += (
                f"add rule {self._prefix('forward')} iifname {name} oifname != {name} drop comment {owner}\n"
                f"add rule {self._prefix('forward')} oifname {name} iifname != {name} drop comment {owner}\n"
            )
        else:
            commands += (
                f"add rule {self._prefix('postrouting')} ip saddr {subnet} oifname != {name} masquerade comment {owner}\n"
                f"add rule {self._prefix('postrouting')} ip saddr {LOOPBACK} oifname {name} masquerade comment {owner}\n"
            )
        self.nft.run(commands)

    def remove_network(self, bridge: str) -> None:
        if self.exists():
            self.delete_owned([f"net:{bridge}"])
            elements = json.loads(self.nft.run(f"list set {FAMILY} {self.name} bridges"))
            members = next((item["set"].get("elem", []) for item in elements["nftables"] if "set" in item), [])
            if bridge in members:
                self.nft.run(f"delete element {FAMILY} {self.name} bridges {{ {_quote(bridge)} }}\n")

    # -- published ports -------------------------------------------------------------

    def add_ports(self, container_id: str, mappings: Iterable[dict[str, Any]]) -> None:
        """Add one DNAT rule per mapping: ``HostIp``, ``HostPort``, ``Protocol``, ``ContainerIp``, ``ContainerPort``.

        Mappings on an IPv6 host address have no rule: the userland proxy
        carries them to the container's IPv4 address. A mapping on 127.0.0.1
        matches that address only, so the port is not reachable on others.
        """
        owner = _quote(f"port:{container_id}")
        lines = []
        for mapping in mappings:
            host_ip = mapping["HostIp"]
            if ":" in host_ip:
                continue
            match = "" if host_ip in ("", "0.0.0.0") else f"ip daddr {host_ip} "
            protocol = mapping["Protocol"]
            lines.append(
                f"add rule {self._prefix('publish')} {match}{protocol} dport {int(mapping['HostPort'])}"
                f" dnat to {mapping['ContainerIp']}:{int(mapping['ContainerPort'])} comment {owner}\n"
            )
        if not lines:
            return
        try:
            # The table exists whenever a network of this service is set up, so the full
            # ensure() with its listings runs only when that assumption fails.
            self.nft.run("".join(lines))
        except NetworkError:
            self.ensure()
            self.nft.run("".join(lines))

    def remove_ports(self, container_id: str) -> int:
        if not self.exists():
            return 0
        return self.delete_owned([f"port:{container_id}"])

    # -- the uplink guard ---------------------------------------------------------------

    def add_uplink_guard(self, interface: str) -> None:
        """Drop every forwarded packet that would leave through ``interface`` (tests add this around NAT)."""
        self.ensure()
        self.nft.run(
            f"insert rule {self._prefix('forward')} oifname {_quote(interface)} drop comment {_quote('guard:' + interface)}\n"
        )

    def remove_uplink_guard(self, interface: str) -> None:
        if self.exists():
            self.delete_owned([f"guard:{interface}"])

    def is_empty(self) -> bool:
        """Tell whether the table holds no rule besides the jumps to ``publish``."""
        return all(rule.get("comment") == "publish" for rule in self.rules())

"""NetworkService: bridge networks and the containers attached to them.

Networks (``create``, ``list``, ``inspect``, ``remove``, ``prune``) and the
lifecycle calls the container service makes:

- ``allocate`` at container create: an endpoint (IP address, MAC address,
  aliases) on the network of ``HostConfig.NetworkMode``, kept in state.db
  until ``release``, so the container keeps its address across restarts.
- ``start`` once the runtime created the container and before its process
  runs: a veth pair per endpoint into the init's network namespace, the
  published ports (DNAT rules, and the userland proxy for IPv6 host
  addresses) and, on user-defined
  networks, the embedded DNS server.
- ``stop`` when the container exited: undoes everything ``start`` did.
- ``release`` at container removal: ``stop`` and deletes the endpoints.

``connect`` and ``disconnect`` add and remove an endpoint, live when the
container runs. The default network is named ``bridge``, as in Docker, and is
created on first use. Its containers are not resolvable by name.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import functools
import ipaddress
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from dockyard.errors import Conflict, InvalidArgument, NetworkError, NetworkNotFound
from dockyard.network import hosts, ipam, netlink, ports
from dockyard.network.nat import Table
from dockyard.network.settings import NetworkSettings, load as load_settings

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.engine.state import State

log = logging.getLogger(__name__)

DEFAULT_NETWORK = "bridge"
# Docker's names for the modes that are not networks of this service.
SPECIAL_MODES = ("host", "none")
DRIVER = "bridge"
DNS_READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _netns_path(netns: int | str) -> str:
    return f"/proc/{netns}/ns/net" if isinstance(netns, int) else netns


def _short_hash(*parts: str) -> str:
    import hashlib

    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a method under the service's lock file, so two dockyard processes never change the same bridge or rules at once."""

    @functools.wraps(method)
    def wrapper(self: "NetworkService", *args: Any, **kwargs: Any) -> Any:
        with self._lock():
            return method(self, *args, **kwargs)

    return wrapper


@functools.lru_cache(maxsize=256)
def _prefix_length(subnet: str) -> int:
    """Return the prefix length of ``subnet`` (CIDR), cached because a container listing needs it for every endpoint."""
    return ipaddress.IPv4Network(subnet).prefixlen


class NetworkService:
    def __init__(self, config: "Config", state: "State", settings: NetworkSettings | None = None) -> None:
        self.config = config
        self.state = state
        self.settings = settings or load_settings(config.path)
        self.table = Table(self.settings.nft_table)
        self.run_dir = Path(config.run_root) / "networks"
        self._lock_fd: int | None = None
        self._lock_depth = 0
        # flock does not exclude threads that share the held descriptor, and the API server calls the
        # service from many threads, so a thread lock guards the descriptor and the nesting depth.
        self._thread_lock = threading.RLock()
        # The bound host sockets of each container's DNAT-published ports, held until ``stop``.
        self._held_ports: dict[str, builtins.list[ports.PublishedPort]] = {}
        # Bridge name to its interface index when this process last completed _ensure_network for it.
        self._ensured_bridges: dict[str, str | None] = {}

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Hold ``<run root>/networks/lock`` (flock); nested calls in one thread reuse the lock they hold."""
        with self._thread_lock, self._flock():
            yield

    @contextlib.contextmanager
    def _flock(self) -> Iterator[None]:
        if self._lock_depth == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.run_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- networks --------------------------------------------------------------------

    @_locked
    def resolve(self, name: str) -> dict:
        """Return the network row for a name, a full ID or a unique ID prefix; create ``bridge`` on first use."""
        row = self.state.network_by_name(name) or self.state.network(name)
        if row is None and name == DEFAULT_NETWORK:
            return self._default_network()
        if row is None:
            matches = self.state.network_ids_with_prefix(name)
            if len(matches) > 1:
                raise NetworkError(f"network {name} is ambiguous ({len(matches)} matches found based on ID prefix)")
            if matches:
                row = self.state.network(matches[0])
        if row is None:
            raise NetworkNotFound(name)
        return row

    def _taken_subnets(self) -> list[ipaddress.IPv4Network]:
        taken = [ipaddress.IPv4Network(row["subnet"]) for row in self.state.networks()]
        return taken + netlink.host_routes()

    def _default_network(self) -> dict:
        bridge = self.settings.bridge
        if self.settings.default_subnet:
            subnet = ipam.parse_subnet(self.settings.default_subnet)
        else:
            candidate = ipam.parse_subnet(ipam.DEFAULT_BRIDGE_SUBNET)
            # A route of our own old bridge (left by an earlier run) is no collision.
            routes = [route for route in self._taken_subnets() if not (route == candidate and netlink.link_exists(bridge))]
            subnet = candidate if ipam.overlaps_any(candidate, routes) is None else ipam.pick_subnet(routes)
        try:
            return self._add_network(DEFAULT_NETWORK, bridge, subnet, ipam.gateway_of(subnet), False, {}, {})
        except Conflict:
            # Another process created it first.
            row = self.state.network_by_name(DEFAULT_NETWORK)
            if row is None:
                raise
            return row

    def _add_network(
        self, name: str, bridge: str, subnet: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address,
        internal: bool, labels: dict, options: dict, network_id: str | None = None,
    ) -> dict:
        network_id = network_id or os.urandom(32).hex()
        row = {
            "id": network_id, "name": name, "driver": DRIVER, "bridge": bridge, "subnet": str(subnet),
            "gateway": str(gateway), "internal": int(internal), "labels": json.dumps(labels),
            "options": json.dumps(options), "created": _now(),
        }
        self.state.add_network(row)
        log.debug("created network %s (%s) on bridge %s with subnet %s", name, network_id[:12], bridge, subnet)
        return row

    @_locked
    def create(
        self,
        name: str,
        driver: str = DRIVER,
        subnet: str | None = None,
        gateway: str | None = None,
        internal: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
    ) -> dict:
        """Create a user-defined bridge network; return ``{"Id": ..., "Warning": ""}`` as the Engine API does."""
        if driver != DRIVER:
            raise InvalidArgument(f"network driver {driver!r} is not supported: only bridge is")
        if not name or name in SPECIAL_MODES or name == DEFAULT_NETWORK:
            raise Conflict(f"network with name {name} already exists" if name else "a network name is required")
        if self.state.network_by_name(name) is not None:
            raise Conflict(f"network with name {name} already exists")
        taken = self._taken_subnets()
        if subnet is not None:
            chosen = ipam.parse_subnet(subnet)
            clash = ipam.overlaps_any(chosen, taken)
            if clash is not None:
                raise NetworkError(f"invalid pool request: subnet {chosen} overlaps with {clash}, which is in use")
        else:
            if gateway is not None:
                raise InvalidArgument("--gateway needs --subnet")
            chosen = ipam.pick_subnet(taken)
        gateway_address = ipam.parse_address(gateway, chosen, "gateway") if gateway else ipam.gateway_of(chosen)
        network_id = os.urandom(32).hex()
        row = self._add_network(
            name, "br-" + network_id[:12], chosen, gateway_address, internal, labels or {}, options or {}, network_id
        )
        return {"Id": row["id"], "Warning": ""}

    def list(self, filters: dict[str, builtins.list[str]] | None = None) -> builtins.list[dict]:
        """Return every network as the Engine API's Network object; ``bridge`` always exists."""
        self.resolve(DEFAULT_NETWORK)
        found = [self._describe(row) for row in self.state.networks()]
        return [network for network in found if _matches(network, filters or {})]

    def inspect(self, name: str) -> dict:
        return self._describe(self.resolve(name))

    def _describe(self, row: dict) -> dict:
        containers = {}
        for endpoint in self.state.endpoints(network_id=row["id"]):
            containers[endpoint["container_id"]] = {
                "Name": endpoint["container_name"],
                "EndpointID": endpoint["id"],
                "MacAddress": endpoint["mac"],
                "IPv4Address": f"{endpoint['ip']}/{ipaddress.IPv4Network(row['subnet']).prefixlen}",
                "IPv6Address": "",
            }
        options = json.loads(row["options"])
        if row["name"] == DEFAULT_NETWORK:
            options.setdefault("com.docker.network.bridge.name", row["bridge"])
            options.setdefault("com.docker.network.bridge.default_bridge", "true")
        return {
            "Name": row["name"],
            "Id": row["id"],
            "Created": row["created"],
            "Scope": "local",
            "Driver": row["driver"],
            "EnableIPv4": True,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": [{"Subnet": row["subnet"], "Gateway": row["gateway"]}]},
            "Internal": bool(row["internal"]),
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": options,
            "Labels": json.loads(row["labels"]),
        }

    @_locked
    def remove(self, name: str) -> None:
        """Remove a user-defined network, its bridge and its rules; raise Conflict while containers use it."""
        row = self.resolve(name)
        if row["name"] == DEFAULT_NETWORK:
            raise Conflict(f"{DEFAULT_NETWORK} is a pre-defined network and cannot be removed")
        if self.state.endpoints(network_id=row["id"]):
            raise Conflict(f"error while removing network: network {row['name']} id {row['id']} has active endpoints")
        self._remove_network(row)

    def _remove_network(self, row: dict) -> None:
        self.state.delete_network(row["id"])
        netlink.delete_link(row["bridge"])
        self.table.remove_network(row["bridge"])
        names = self._names_path(row)
        names.unlink(missing_ok=True)
        try:
            names.parent.rmdir()
        except OSError:
            pass
        self._drop_empty_table()

    @_locked
    def prune(self) -> builtins.list[str]:
        """Remove every user-defined network without endpoints; return their names."""
        removed = []
        for row in self.state.networks():
            if row["name"] != DEFAULT_NETWORK and not self.state.endpoints(network_id=row["id"]):
                self._remove_network(row)
                removed.append(row["name"])
        return removed

    @_locked
    def teardown(self) -> None:
        """Undo every network of this state root on the host: stop all sandboxes, delete bridges and the rules.

        The rows stay, so the next use sets everything up again. For tests and
        ``system`` commands; containers still running lose their network.
        """
        for sandbox in self.state.sandboxes():
            self.stop(sandbox["container_id"])
        for row in self.state.networks():
            netlink.delete_link(row["bridge"])
            self.table.remove_network(row["bridge"])
        self._drop_empty_table()

    def _drop_empty_table(self) -> None:
        if self.table.exists() and self.table.is_empty():
            self.table.delete()

    # -- endpoints ---------------------------------------------------------------------

    def allocate(self, container_id: str, container_name: str, body: dict) -> dict[str, dict]:
        """Allocate the endpoints a create body requests; return them as ``NetworkSettings.Networks``.

        ``HostConfig.NetworkMode`` names the network (``default`` is
        ``bridge``); ``NetworkingConfig.EndpointsConfig`` gives aliases, the
        requested address and MAC address. ``host``, ``none`` and
        ``container:<id>`` allocate nothing.
        """
        host_config = body.get("HostConfig") or {}
        mode = host_config.get("NetworkMode") or "default"
        if mode in SPECIAL_MODES or mode.startswith("container:"):
            return {}
        network = DEFAULT_NETWORK if mode == "default" else mode
        endpoints_config = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        settings = endpoints_config.get(network) or endpoints_config.get(mode) or {}
        if body.get("MacAddress") and not settings.get("MacAddress"):
            settings = {**settings, "MacAddress": body["MacAddress"]}
        self.connect(container_id, network, name=container_name, endpoint_config=settings)
        # Docker connects the extra networks of NetworkingConfig too.
        for extra, extra_settings in endpoints_config.items():
            if extra not in (network, mode):
                self.connect(container_id, extra, name=container_name, endpoint_config=extra_settings or {})
        return self.endpoints(container_id)

    @_locked
    def connect(
        self,
        container_id: str,
        network: str,
        *,
        name: str,
        endpoint_config: dict | None = None,
        netns: int | str | None = None,
    ) -> dict:
        """Attach a container to a network; return its ``EndpointSettings``.

        ``endpoint_config`` is an Engine API ``EndpointSettings`` request
        (``Aliases``, ``IPAMConfig.IPv4Address``, ``MacAddress``). With
        ``netns`` (a PID or a namespace path) the container is running and
        gets its interface now.
        """
        row = self.resolve(network)
        endpoint_config = endpoint_config or {}
        user_network = row["name"] != DEFAULT_NETWORK
        aliases = builtins.list(endpoint_config.get("Aliases") or [])
        requested = ((endpoint_config.get("IPAMConfig") or {}).get("IPv4Address")) or None
        if aliases and not user_network:
            raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        if requested and not user_network:
            raise InvalidArgument("user specified IP address is supported on user defined networks only")
        subnet = ipaddress.IPv4Network(row["subnet"])
        requested_address = ipam.parse_address(requested, subnet, "IP address") if requested else None
        mac = ipam.parse_mac(endpoint_config["MacAddress"]) if endpoint_config.get("MacAddress") else None

        def pick(used: builtins.list[str]) -> tuple[str, str]:
            taken = [row["gateway"], *used]
            if requested_address is not None:
                if str(requested_address) in taken:
                    raise Conflict(f"Address already in use: {requested_address} on network {row['name']}")
                address = requested_address
            else:
                address = ipam.allocate(subnet, taken)
            return str(address), mac or ipam.mac_for(address)

        endpoint = self.state.add_endpoint(
            {
                "id": os.urandom(32).hex(), "network_id": row["id"], "container_id": container_id,
                "container_name": name.lstrip("/"), "aliases": json.dumps(aliases),
            },
            pick,
        )
        endpoint.update(interface="", host_veth="")
        log.debug("allocated %s on network %s for container %s", endpoint["ip"], row["name"], container_id[:12])
        if netns is not None:
            try:
                self._plug(endpoint, row, _netns_path(netns), self._next_interface(container_id), default_route=False)
                self._refresh_names(row)
                self._restart_dns(container_id)
            except BaseException:
                self.state.delete_endpoint(endpoint["id"])
                netlink.delete_link(self._host_veth(endpoint))
                raise
        return self._endpoint_settings(endpoint, row)

    @_locked
    def disconnect(self, container_id: str, network: str, force: bool = False) -> None:
        """Detach a container from a network, removing its interface there if it runs."""
        row = self.resolve(network)
        matching = [each for each in self.state.endpoints(network_id=row["id"], container_id=container_id)]
        if not matching:
            if force:
                return
            raise NetworkError(f"container {container_id[:12]} is not connected to network {row['name']}")
        endpoint = matching[0]
        self._unplug(endpoint)
        self.state.delete_endpoint(endpoint["id"])
        self._refresh_names(row)
        sandbox = self.state.sandbox(container_id)
        if sandbox is not None and sandbox["dns_pid"]:
            self._restart_dns(container_id)

    def endpoints(self, container_id: str, *, endpoint_rows: Iterable[dict] | None = None,
                  network_rows: dict[str, dict] | None = None) -> dict[str, dict]:
        """Return ``NetworkSettings.Networks`` of a container: network name to EndpointSettings.

        A caller that lists many containers passes the container's endpoint
        rows and the network rows by ID, read once for all of them.
        """
        found = {}
        if endpoint_rows is None:
            endpoint_rows = self.state.endpoints(container_id=container_id)
        for endpoint in endpoint_rows:
            if network_rows is not None:
                row = network_rows.get(endpoint["network_id"])
            else:
                row = self.state.network(endpoint["network_id"])
            if row is not None:
                found[row["name"]] = self._endpoint_settings(endpoint, row)
        return found

    def _endpoint_settings(self, endpoint: dict, row: dict) -> dict:
        # Most endpoints have no aliases, and skipping the JSON decoder for them speeds up listings.
        aliases = [] if endpoint["aliases"] == "[]" else json.loads(endpoint["aliases"])
        user_network = row["name"] != DEFAULT_NETWORK
        return {
            "IPAMConfig": None,
            "Links": None,
            "Aliases": aliases or None,
            "MacAddress": endpoint["mac"],
            "DriverOpts": None,
            "GwPriority": 0,
            "NetworkID": row["id"],
            "EndpointID": endpoint["id"],
            "Gateway": "" if row["internal"] else row["gateway"],
            "IPAddress": endpoint["ip"],
            "IPPrefixLen": _prefix_length(row["subnet"]),
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": self._dns_names(endpoint) if user_network else None,
        }

    @staticmethod
    def _dns_names(endpoint: dict) -> builtins.list[str]:
        names = [endpoint["container_name"], *json.loads(endpoint["aliases"]), endpoint["container_id"][:12]]
        return [name for index, name in enumerate(names) if name and name not in names[:index]]

    # -- start and stop --------------------------------------------------------------

    @_locked
    def start(self, container_id: str, netns: int | str, body: dict | None = None) -> dict:
        """Set up a created container's network; return ``NetworkSettings`` (Networks, Ports, SandboxKey).

        ``netns`` is the init's PID or its namespace path. ``body`` is the
        create body, read for ``ExposedPorts``, ``HostConfig.PortBindings``,
        ``PublishAllPorts`` and ``Dns``. When it is None, the ``config`` column
        of the container's row in state.db is used. On failure everything set
        up so far is undone before the error is raised.
        """
        if body is None:
            body = self._stored_body(container_id)
        path = _netns_path(netns)
        endpoints = self.state.endpoints(container_id=container_id)
        host_config = body.get("HostConfig") or {}
        self.state.set_sandbox(container_id, netns=path)
        try:
            rows = []
            has_default_route = False
            for position, endpoint in enumerate(endpoints):
                row = self.state.network(endpoint["network_id"])
                if row is None:
                    raise NetworkNotFound(endpoint["network_id"])
                # The first network with a way out gives the default route, as in Docker.
                gives_route = not has_default_route and not row["internal"]
                self._plug(endpoint, row, path, f"eth{position}", default_route=gives_route)
                has_default_route = has_default_route or gives_route
                rows.append(row)
            published: builtins.list[dict] = []
            if endpoints and not rows[0]["internal"]:
                published = self._publish(container_id, endpoints[0]["ip"], rows[0]["bridge"], body)
            for row in rows:
                self._refresh_names(row)
            if any(row["name"] != DEFAULT_NETWORK for row in rows):
                self._start_dns(container_id, path, host_config.get("Dns") or [])
        except BaseException:
            self.stop(container_id)
            raise
        return {
            "Networks": self.endpoints(container_id),
            "Ports": ports.ports_setting(body.get("ExposedPorts"), published),
            "SandboxKey": path,
        }

    @_locked
    def stop(self, container_id: str) -> None:
        """Undo ``start``: DNS server, proxy, DNAT rules, held host ports, veth pairs; the endpoints stay allocated."""
        sandbox = self.state.sandbox(container_id)
        if sandbox is not None:
            _terminate(sandbox["dns_pid"], "dockyard.network.dns", container_id)
            _terminate(sandbox["proxy_pid"], "dockyard.network.proxy", container_id)
        published = json.loads(sandbox["ports"] or "[]") if sandbox is not None else None
        # Listing the nftables rules takes a few milliseconds, spared for a container that published nothing.
        if published is None or published:
            self.table.remove_ports(container_id)
        self._release_held(container_id)
        if published:
            self._forget_udp_flows(container_id, published)
        for endpoint in self.state.endpoints(container_id=container_id):
            self._unplug(endpoint)
            row = self.state.network(endpoint["network_id"])
            if row is not None:
                self._refresh_names(row)
        self.state.delete_sandbox(container_id)

    @_locked
    def release(self, container_id: str) -> None:
        """Undo ``allocate``: stop the container's network and free its addresses."""
        self.stop(container_id)
        for endpoint in self.state.endpoints(container_id=container_id):
            self.state.delete_endpoint(endpoint["id"])

    def published_ports(self, container_id: str) -> builtins.list[dict]:
        """Return the running container's published ports (HostIp, HostPort, Protocol, ContainerPort, ContainerIp)."""
        sandbox = self.state.sandbox(container_id)
        return json.loads(sandbox["ports"]) if sandbox else []

    def etc_files(self, container_id: str, body: dict, host_resolv_conf: str) -> tuple[str, str]:
        """Return the texts of /etc/hosts and /etc/resolv.conf for a container with allocated endpoints.

        ``host_resolv_conf`` is the host's resolv.conf with loopback servers
        removed (what a container without the embedded DNS server can use).
        """
        host_config = body.get("HostConfig") or {}
        endpoints = self.endpoints(container_id)
        addresses = [settings["IPAddress"] for settings in endpoints.values()]
        gateway = next((settings["Gateway"] for settings in endpoints.values() if settings["Gateway"]), None)
        if gateway is None and any(host_config.get("ExtraHosts") or []):
            gateway = self.resolve(DEFAULT_NETWORK)["gateway"]
        hosts_text = hosts.hosts_file(
            body.get("Hostname") or container_id[:12], body.get("Domainname") or "", addresses,
            host_config.get("ExtraHosts") or [], gateway,
        )
        embedded = any(name != DEFAULT_NETWORK for name in endpoints)
        resolv_text = hosts.resolv_conf(
            host_resolv_conf, embedded, host_config.get("Dns") or [], host_config.get("DnsSearch") or [],
            host_config.get("DnsOptions") or [],
        )
        return hosts_text, resolv_text

    # -- plumbing ----------------------------------------------------------------------

    def _host_veth(self, endpoint: dict) -> str:
        return "veth" + _short_hash(endpoint["container_id"], endpoint["network_id"])[:10]

    def _next_interface(self, container_id: str) -> str:
        used = {endpoint["interface"] for endpoint in self.state.endpoints(container_id=container_id)}
        number = 0
        while f"eth{number}" in used:
            number += 1
        return f"eth{number}"

    def _ensure_network(self, row: dict) -> None:
        """Make sure the bridge, its address and its nftables rules exist (they vanish at reboot).

        A bridge that this process set up before and that still has the same
        interface index is taken as complete, which spares the monitor the
        netlink and nftables queries on every container start. Removing a
        network or ``teardown`` deletes the bridge together with its rules.
        """
        bridge = row["bridge"]
        if not row["internal"]:
            _enable_ip_forward()
        if bridge in self._ensured_bridges and self._ensured_bridges[bridge] == _interface_index(bridge):
            return
        prefix_len = ipaddress.IPv4Network(row["subnet"]).prefixlen
        netlink.ensure_bridge(bridge, row["gateway"], prefix_len)
        owner = f"net:{bridge}"
        # Checking for the loopback guard also renews the rules that earlier versions wrote without it.
        if not any(rule.get("comment") == owner for rule in self.table.chain_rules("loopback_guard")):
            self.table.add_network(bridge, row["subnet"], bool(row["internal"]))
        if not row["internal"]:
            # Lets DNATed loopback traffic (source 127.0.0.1) leave through the bridge; the
            # bridge's loopback guard rule drops traffic from containers to 127.0.0.0/8.
            _enable_route_localnet(bridge)
        self._ensured_bridges[bridge] = _interface_index(bridge)

    def _plug(self, endpoint: dict, row: dict, netns_path: str, interface: str, default_route: bool) -> None:
        self._ensure_network(row)
        host_veth = self._host_veth(endpoint)
        netlink.delete_link(host_veth)  # left over from a container whose monitor died
        prefix_len = ipaddress.IPv4Network(row["subnet"]).prefixlen
        netlink.add_veth(
            host_veth, row["bridge"], netns_path, interface,
            endpoint["ip"], prefix_len, row["gateway"] if default_route else None, endpoint["mac"],
        )
        self.state.update_endpoint(endpoint["id"], interface=interface, host_veth=host_veth)
        endpoint.update(interface=interface, host_veth=host_veth)

    def _unplug(self, endpoint: dict) -> None:
        netlink.delete_link(self._host_veth(endpoint))
        if endpoint["interface"] or endpoint["host_veth"]:
            self.state.update_endpoint(endpoint["id"], interface="", host_veth="")

    def _publish(self, container_id: str, container_ip: str, bridge: str, body: dict) -> builtins.list[dict]:
        """Publish the requested ports: DNAT rules for IPv4 host addresses, the userland proxy for IPv6 ones.

        Every host port is reserved by a bound socket (listening, for TCP), so
        another program cannot take it while the container runs. The sockets
        of IPv4 mappings stay in this process (the container monitor) until
        ``stop``. Nothing reads them, because the kernel DNATs their traffic,
        loopback included. IPv6 mappings need the proxy, because the container
        has IPv4 only and IPv6 has no ``route_localnet``.
        """
        host_config = body.get("HostConfig") or {}
        port_requests = ports.requests(
            body.get("ExposedPorts"), host_config.get("PortBindings"), bool(host_config.get("PublishAllPorts"))
        )
        if not port_requests:
            return []
        reserved = ports.reserve_all(port_requests)
        proxied = [each for each in reserved if ports.needs_proxy(each.host_ip)]
        held = [each for each in reserved if not ports.needs_proxy(each.host_ip)]
        try:
            mappings = [mapping.as_dict(container_ip) for mapping in reserved]
            self.table.add_ports(container_id, mappings)
            ports.reject_pending(held)
            proxy_pid = 0
            if proxied:
                specs = [
                    {**each.as_dict(container_ip), "fd": each.sock.fileno()}  # type: ignore[union-attr]
                    for each in proxied
                ]
                process = _spawn(
                    "dockyard.network.proxy", json.dumps(specs), container_id,
                    pass_fds=[spec["fd"] for spec in specs], log_path=self._log_path(container_id, "proxy"),
                )
                proxy_pid = process.pid
        except BaseException:
            ports.release(reserved)
            raise
        # The proxy has its own copies of its sockets now.
        ports.release(proxied)
        self._release_held(container_id)
        self._held_ports[container_id] = held
        self.state.set_sandbox(container_id, ports=json.dumps(mappings), proxy_pid=proxy_pid)
        log.debug("published %d ports of container %s: %d by DNAT, %d through proxy %d", len(mappings),
                  container_id[:12], len(held), len(proxied), proxy_pid)
        return mappings

    def hold_ports(self, container_id: str) -> None:
        """Bind the host sockets of a running container's DNAT-published ports again.

        For a monitor that adopts a container after the monitor that held them
        died. A port that another program took in between stays published by
        its DNAT rule, and is logged as a warning.
        """
        self._release_held(container_id)
        held = []
        for mapping in self.published_ports(container_id):
            if ports.needs_proxy(mapping["HostIp"]):
                continue
            port = int(mapping["HostPort"])
            request = ports.PortRequest(int(mapping["ContainerPort"]), mapping["Protocol"], mapping["HostIp"], port, port)
            try:
                held.append(ports.reserve(request))
            except NetworkError as error:
                log.warning("cannot reserve host port %s of container %s again: %s", port, container_id[:12], error)
        self._held_ports[container_id] = held

    def _forget_udp_flows(self, container_id: str, mappings: builtins.list[dict]) -> None:
        """Delete the conntrack entries that still DNAT UDP clients to a stopped container's ports."""
        for mapping in mappings:
            if mapping["Protocol"] != "udp" or ports.needs_proxy(mapping["HostIp"]):
                continue
            try:
                netlink.forget_udp_flows(mapping["ContainerIp"], int(mapping["ContainerPort"]))
            except Exception as error:  # noqa: BLE001 - stopping goes on; stale entries expire by themselves
                log.warning("cannot delete the UDP conntrack entries of container %s (%s:%s): %s", container_id[:12],
                            mapping["ContainerIp"], mapping["ContainerPort"], error)

    def _release_held(self, container_id: str) -> None:
        ports.release(self._held_ports.pop(container_id, []))

    def _names_path(self, row: dict) -> Path:
        return self.run_dir / row["id"] / "names.json"

    def _refresh_names(self, row: dict) -> None:
        """Rewrite the DNS name file of a user-defined network from its plugged-in endpoints."""
        if row["name"] == DEFAULT_NETWORK:
            return
        names: dict[str, builtins.list[str]] = {}
        for endpoint in self.state.endpoints(network_id=row["id"]):
            if not endpoint["host_veth"]:
                continue
            for name in self._dns_names(endpoint):
                names.setdefault(name.lower(), []).append(endpoint["ip"])
        path = self._names_path(row)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(names))
        temporary.replace(path)

    def _dns_upstreams(self, dns: builtins.list[str]) -> builtins.list[str]:
        if dns:
            return dns
        if self.settings.dns_upstreams is not None:
            return builtins.list(self.settings.dns_upstreams)
        try:
            return hosts.nameservers(self.settings.resolv_conf.read_text())
        except OSError:
            return []

    def _start_dns(self, container_id: str, netns_path: str, dns: builtins.list[str]) -> None:
        records = []
        for endpoint in self.state.endpoints(container_id=container_id):
            row = self.state.network(endpoint["network_id"])
            if row is not None and row["name"] != DEFAULT_NETWORK:
                records.append(str(self._names_path(row)))
        spec = {"netns": netns_path, "records": records, "upstreams": self._dns_upstreams(dns)}
        process = _spawn(
            "dockyard.network.dns", json.dumps(spec), container_id,
            log_path=self._log_path(container_id, "dns"), stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], DNS_READY_TIMEOUT)
        line = process.stdout.readline() if ready else b""
        process.stdout.close()
        if line.strip() != b"ready":
            _terminate(process.pid, "dockyard.network.dns", container_id)
            detail = self._log_path(container_id, "dns").read_text(errors="replace").strip()[-500:]
            raise NetworkError(f"the embedded DNS server of container {container_id[:12]} did not start: {detail}")
        self.state.set_sandbox(container_id, dns_pid=process.pid)

    def _restart_dns(self, container_id: str) -> None:
        sandbox = self.state.sandbox(container_id)
        if sandbox is None:
            return
        _terminate(sandbox["dns_pid"], "dockyard.network.dns", container_id)
        self.state.set_sandbox(container_id, dns_pid=0)
        networks = [self.state.network(each["network_id"]) for each in self.state.endpoints(container_id=container_id)]
        if any(row is not None and row["name"] != DEFAULT_NETWORK for row in networks):
            dns = (self._stored_body(container_id).get("HostConfig") or {}).get("Dns") or []
            self._start_dns(container_id, sandbox["netns"], dns)

    def _stored_body(self, container_id: str) -> dict:
        """Return the create body stored with a container, or {} when it has no row (tests, a removed container)."""
        row = self.state.container(container_id)
        if row is None:
            return {}
        config = row["config"]
        return json.loads(config) if isinstance(config, str) else dict(config)

    def _log_path(self, container_id: str, kind: str) -> Path:
        directory = self.run_dir / "logs"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{container_id[:12]}-{kind}.log"


def _spawn(module: str, argument: str, container_id: str, *, log_path: Path,
           pass_fds: Iterable[int] = (), stdout: int = subprocess.DEVNULL) -> subprocess.Popen:
    """Start a helper process of this package, in its own session so that a terminal's signals miss it."""
    with open(log_path, "ab") as log_file:
        # The container ID on the command line lets _terminate check that a PID is still ours.
        process = subprocess.Popen(
            [sys.executable, "-m", module, argument, f"--container={container_id}"],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=log_file,
            pass_fds=builtins.list(pass_fds), start_new_session=True,
        )
    log.debug("started %s for container %s as PID %d", module, container_id[:12], process.pid)
    return process


def _terminate(pid: int, module: str, container_id: str) -> None:
    """Stop a helper process by PID, if that PID still runs ``module`` for ``container_id``."""
    if not pid:
        return
    try:
        # A helper that died as our child is a zombie with an empty command line: reap it.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return
    except ChildProcessError:
        pass
    command = _command_line(pid)
    if module.encode() not in command or f"--container={container_id}".encode() not in command:
        log.debug("PID %d is no longer %s of container %s: %r", pid, module, container_id[:12], command)
        return
    log.debug("stopping %s of container %s (PID %d)", module, container_id[:12], pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            # Reaps it when it is our child (in tests, and right after a failed start).
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return
        time.sleep(0.02)
    log.warning("%s of container %s (PID %d) ignored SIGTERM; killing it", module, container_id[:12], pid)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _command_line(pid: int) -> list[bytes]:
    """Return the argv of a process; empty when it is gone."""
    # Right after exec, /proc/<pid>/cmdline can read empty for a moment, so an empty read is retried.
    for _ in range(50):
        try:
            data = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return []
        if data:
            return data.split(b"\0")
        time.sleep(0.01)
    return []


def _enable_ip_forward() -> None:
    path = Path("/proc/sys/net/ipv4/ip_forward")
    try:
        if path.read_text().strip() != "1":
            log.debug("setting net.ipv4.ip_forward=1")
            path.write_text("1\n")
    except OSError as error:
        raise NetworkError(f"cannot enable IPv4 forwarding in {path}: {error}") from error


def _interface_index(name: str) -> str | None:
    try:
        return Path(f"/sys/class/net/{name}/ifindex").read_text().strip()
    except OSError:
        return None


def _enable_route_localnet(bridge: str) -> None:
    path = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
    try:
        if path.read_text().strip() != "1":
            log.debug("setting net.ipv4.conf.%s.route_localnet=1", bridge)
            path.write_text("1\n")
    except OSError as error:
        raise NetworkError(f"cannot enable route_localnet on bridge {bridge} in {path}: {error}") from error


def _matches(network: dict, filters: dict[str, builtins.list[str]]) -> bool:
    """Apply ``network ls`` filters: name (substring), id (prefix), driver, label, type (builtin/custom)."""
    for key, values in filters.items():
        if key == "name" and not any(value in network["Name"] for value in values):
            return False
        if key == "id" and not any(network["Id"].startswith(value) for value in values):
            return False
        if key == "driver" and network["Driver"] not in values:
            return False
        if key == "label":
            for value in values:
                label, has_value, expected = value.partition("=")
                if label not in network["Labels"] or (has_value and network["Labels"][label] != expected):
                    return False
        if key == "type":
            kind = "builtin" if network["Name"] == DEFAULT_NETWORK else "custom"
            if kind not in values:
                return False
        if key not in ("name", "id", "driver", "label", "type"):
            raise InvalidArgument(f"invalid filter '{key}'")
    return True

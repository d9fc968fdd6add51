"""The ``[network]`` table of the configuration file.

Example::

    [network]
    default_subnet = "172.17.0.0/16"   # subnet of the default bridge network
    bridge = "dockyard0"               # interface name of the default bridge
    nft_table = "dockyard"             # nftables table (family ip) that contains dockyard's rules
    dns_upstreams = ["127.0.0.1:5353"] # where the embedded DNS server forwards; default: the host's resolv.conf

Every key is optional. Two state roots on one machine (tests, for example)
need different ``bridge`` names and subnets, and are best kept apart with
different ``nft_table`` names too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument

DEFAULT_BRIDGE = "dockyard0"


@dataclass(frozen=True)
class NetworkSettings:
    default_subnet: str | None = None
    bridge: str = DEFAULT_BRIDGE
    nft_table: str = "dockyard"
    # None means "the servers in the host's /etc/resolv.conf".
    dns_upstreams: tuple[str, ...] | None = None
    resolv_conf: Path = Path("/etc/resolv.conf")


def load(config_path: Path | None) -> NetworkSettings:
    """Read ``[network]`` from the configuration file at ``config_path`` (None: no file)."""
    table: dict[str, Any] = {}
    if config_path is not None and config_path.exists():
        import tomllib

        try:
            with config_path.open("rb") as file:
                table = tomllib.load(file).get("network") or {}
        except tomllib.TOMLDecodeError as error:
            raise InvalidArgument(f"invalid configuration file {config_path}: {error}") from error
    values: dict[str, Any] = {}
    for key in ("default_subnet", "bridge", "nft_table"):
        if key in table:
            if not isinstance(table[key], str) or not table[key]:
                raise InvalidArgument(f"{config_path}: network.{key} must be a non-empty string")
            values[key] = table[key]
    if len(values.get("bridge", DEFAULT_BRIDGE)) > 15:
        raise InvalidArgument(f"{config_path}: network.bridge {values['bridge']!r} is longer than 15 characters")
    if "dns_upstreams" in table:
        upstreams = table["dns_upstreams"]
        if not isinstance(upstreams, list) or not all(isinstance(each, str) for each in upstreams):
            raise InvalidArgument(f"{config_path}: network.dns_upstreams must be a list of addresses")
        values["dns_upstreams"] = tuple(upstreams)
    return NetworkSettings(**values)

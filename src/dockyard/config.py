"""Engine configuration from ``/etc/dockyard/config.toml``.

The file is optional. ``DOCKYARD_CONFIG`` names another file, ``DOCKYARD_ROOT``
and ``DOCKYARD_RUN_ROOT`` override the state directories, and the CLI's
``--root`` overrides both the file and the environment. Example::

    root = "/var/lib/dockyard"
    run_root = "/run/dockyard"

    [registries."docker.io"]
    mirrors = ["http://127.0.0.1:5000"]

    [registries."registry.example:5000"]
    insecure = true        # plain HTTP, or HTTPS without verifying the certificate

    [registries."quay.io"]
    mirrors = ["https://quay-mirror.example"]
    mirrors_only = true    # pulls never contact quay.io itself, only its mirrors
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import InvalidArgument

DEFAULT_CONFIG_PATH = Path("/etc/dockyard/config.toml")
DEFAULT_ROOT = Path("/var/lib/dockyard")
DEFAULT_RUN_ROOT = Path("/run/dockyard")


@dataclass(frozen=True)
class RegistryConfig:
    """Settings for one registry host, keyed by its domain (``host[:port]``)."""

    mirrors: tuple[str, ...] = ()
    insecure: bool = False
    # Pull only from the mirrors: a reference they lack fails instead of reaching the registry itself.
    mirrors_only: bool = False


@dataclass(frozen=True)
class Config:
    root: Path = DEFAULT_ROOT
    run_root: Path = DEFAULT_RUN_ROOT
    registries: dict[str, RegistryConfig] = field(default_factory=dict)
    path: Path | None = None

    def registry(self, domain: str) -> RegistryConfig:
        """Return the settings for ``domain``; loopback registries are insecure by default, as in Docker."""
        found = self.registries.get(domain)
        if found is not None:
            return found
        return RegistryConfig(insecure=is_loopback_domain(domain))


def is_loopback_domain(domain: str) -> bool:
    """Tell whether ``host[:port]`` names localhost or an address in 127.0.0.0/8 or ::1."""
    host = domain
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(path: Path | None = None, root: Path | None = None) -> Config:
    """Read the configuration file (if any) and apply the environment overrides."""
    if path is None:
        env_path = os.environ.get("DOCKYARD_CONFIG")
        path = Path(env_path) if env_path else DEFAULT_CONFIG_PATH
    data: dict = {}
    if path.exists():
        import tomllib

        try:
            with path.open("rb") as file:
                data = tomllib.load(file)
        except tomllib.TOMLDecodeError as error:
            raise InvalidArgument(f"invalid configuration file {path}: {error}") from error

    registries: dict[str, RegistryConfig] = {}
    for domain, settings in (data.get("registries") or {}).items():
        if not isinstance(settings, dict):
            raise InvalidArgument(f"{path}: [registries.{domain!r}] must be a table")
        mirrors = settings.get("mirrors", [])
        if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
            raise InvalidArgument(f"{path}: registries.{domain!r}.mirrors must be a list of URLs")
        insecure = settings.get("insecure", is_loopback_domain(domain))
        if not isinstance(insecure, bool):
            raise InvalidArgument(f"{path}: registries.{domain!r}.insecure must be true or false")
        mirrors_only = settings.get("mirrors_only", False)
        if not isinstance(mirrors_only, bool):
            raise InvalidArgument(f"{path}: registries.{domain!r}.mirrors_only must be true or false")
        if mirrors_only and not mirrors:
            raise InvalidArgument(f"{path}: registries.{domain!r}.mirrors_only needs at least one entry in mirrors")
        registries[domain] = RegistryConfig(mirrors=tuple(mirrors), insecure=insecure, mirrors_only=mirrors_only)

    root_value = root or os.environ.get("DOCKYARD_ROOT") or data.get("root") or DEFAULT_ROOT
    run_root_value = os.environ.get("DOCKYARD_RUN_ROOT") or data.get("run_root") or DEFAULT_RUN_ROOT
    return Config(
        root=Path(root_value),
        run_root=Path(run_root_value),
        registries=registries,
        path=path if path.exists() else None,
    )

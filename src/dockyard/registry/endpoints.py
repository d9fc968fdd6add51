"""Endpoint selection for registry requests: mirrors, the registry itself, HTTP or HTTPS.

Pulls try the mirrors configured for a domain in order, then the registry itself.
Pushes go only to the registry itself. Insecure registries (set in the config, and
loopback addresses by default, as in Docker) use plain HTTP; a non-loopback insecure
registry is tried first over HTTPS without certificate verification, then over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.config import is_loopback_domain
from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.config import Config

DOCKER_HUB = "docker.io"
# Docker Hub's registry API is served on another host than the name used in references.
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
# The key Docker uses for Docker Hub in ~/.docker/config.json and with credential helpers.
DOCKER_HUB_CREDENTIALS_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


@dataclass(frozen=True)
class Endpoint:
    """One base URL that serves the registry API for a domain."""

    url: str  # scheme and host[:port], no trailing slash: "http://127.0.0.1:5000"
    domain: str  # the reference's domain this endpoint serves: "docker.io"
    mirror: bool = False
    verify_tls: bool = True

    @property
    def host(self) -> str:
        """The ``host[:port]`` part of the URL, which also keys credentials for a mirror."""
        return self.url.split("://", 1)[1]

    @property
    def credentials_key(self) -> str:
        """The server name to look credentials up under."""
        return self.host if self.mirror else self.domain

    def __str__(self) -> str:
        return self.url


def normalize_server(server: str) -> str:
    """Reduce a server given as a URL or host to its domain, mapping Docker Hub's names to ``docker.io``.

    ``https://index.docker.io/v1/``, ``index.docker.io`` and ``docker.io`` all become
    ``docker.io``; ``http://127.0.0.1:5000/v2/`` becomes ``127.0.0.1:5000``.
    """
    text = server.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].lower()
    if not text:
        raise InvalidArgument(f"invalid registry server {server!r}: no host name")
    if text in DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    return text


def registry_host(domain: str) -> str:
    """Return the ``host[:port]`` that serves the registry API for ``domain``."""
    return DOCKER_HUB_REGISTRY if domain == DOCKER_HUB else domain


def registry_endpoints(config: Config, domain: str) -> list[Endpoint]:
    """Return the endpoints of the registry itself, most preferred first."""
    host = registry_host(domain)
    if not config.registry(domain).insecure:
        return [Endpoint(f"https://{host}", domain)]
    if is_loopback_domain(host):
        return [Endpoint(f"http://{host}", domain)]
    return [Endpoint(f"https://{host}", domain, verify_tls=False), Endpoint(f"http://{host}", domain)]


def mirror_endpoint(config: Config, domain: str, mirror: str) -> Endpoint:
    """Turn a mirror URL from the config into an endpoint; a bare host gets HTTP or HTTPS by its insecure setting."""
    text = mirror.strip().rstrip("/")
    if text.endswith("/v2"):
        text = text[: -len("/v2")]
    if "://" not in text:
        scheme = "http" if config.registry(text).insecure else "https"
        text = f"{scheme}://{text}"
    scheme, rest = text.split("://", 1)
    if scheme not in ("http", "https") or not rest:
        raise InvalidArgument(f"invalid mirror URL {mirror!r} for {domain}: expected http:// or https:// and a host")
    if "/" in rest:
        # NOTE: the client builds paths as /v2/..., so a mirror under a path prefix is not supported.
        raise InvalidArgument(f"invalid mirror URL {mirror!r} for {domain}: a path after the host is not supported")
    verify = scheme == "http" or not config.registry(rest).insecure
    return Endpoint(f"{scheme}://{rest}", domain, mirror=True, verify_tls=verify)


def pull_endpoints(config: Config, domain: str) -> list[Endpoint]:
    """Return the endpoints to pull from: the configured mirrors in order, then the registry unless ``mirrors_only``."""
    settings = config.registry(domain)
    mirrors = [mirror_endpoint(config, domain, url) for url in settings.mirrors]
    if settings.mirrors_only:
        return mirrors
    return mirrors + registry_endpoints(config, domain)


def push_endpoints(config: Config, domain: str) -> list[Endpoint]:
    """Return the endpoints to push to, which are only the registry's own."""
    return registry_endpoints(config, domain)

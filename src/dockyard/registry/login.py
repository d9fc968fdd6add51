"""``dockyard login`` and ``dockyard logout``: check credentials against a registry, then store or erase them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dockyard.errors import Unauthorized
from dockyard.registry.auth import Login
from dockyard.registry.endpoints import normalize_server

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.registry.credentials import Credentials

log = logging.getLogger(__name__)


class _OnlyThese:
    """Credentials that hold one login for one server, for checking it before it is stored."""

    def __init__(self, domain: str, login: Login) -> None:
        self._domain = domain
        self._login = login

    def get(self, server: str) -> Login | None:
        return self._login if normalize_server(server) == self._domain else None


def login(config: Config, server: str, user: str, password: str, credentials: Credentials | None = None) -> str:
    """Verify ``user`` and ``password`` against ``server``'s ``/v2/`` and store them; return the server's domain.

    The check follows the registry's authentication flow (Basic, or a token from its token
    server). Nothing is stored when it fails. Raises Unauthorized naming the server when the
    registry rejects the credentials, and RegistryUnreachable when it is unreachable.
    """
    from dockyard.registry.credentials import Credentials

    domain = check(config, server, user, password)
    store = credentials or Credentials.load()
    store.store(domain, user, password)
    log.debug("stored credentials for %s", domain)
    return domain


def check(config: Config, server: str, user: str, password: str) -> str:
    """Verify ``user`` and ``password`` against ``server``'s ``/v2/`` without storing them; return the server's domain.

    Raises Unauthorized naming the server when the registry rejects the
    credentials, and RegistryUnreachable when it is unreachable.
    """
    from dockyard.registry.client import RegistryClient

    domain = normalize_server(server)
    client = RegistryClient(config, credentials=_OnlyThese(domain, Login(user, password)))  # type: ignore[arg-type]
    try:
        client.ping(domain)
    except Unauthorized as error:
        raise Unauthorized(f"login to {domain} as {user} failed: the registry rejected the credentials") from error
    finally:
        client.close()
    return domain


def logout(server: str, credentials: Credentials | None = None) -> bool:
    """Erase the stored credentials for ``server``; return whether there were any."""
    from dockyard.registry.credentials import Credentials

    store = credentials or Credentials.load()
    return store.erase(server)

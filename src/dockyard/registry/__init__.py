"""The registry client (OCI distribution API), its authentication and Docker's stored credentials.

``RegistryClient`` is in ``client``; ``login`` and ``logout`` check and store credentials.
"""

from dockyard.registry.login import login, logout

__all__ = ["login", "logout"]

"""Registry credentials in Docker's ``config.json``, and Docker credential helpers.

The file is ``$DOCKER_CONFIG/config.json``, or ``~/.docker/config.json``. Credentials live in:

- ``credHelpers``: a helper per server, ``{"registry.example": "pass"}``;
- ``credsStore``: the helper for every other server;
- ``auths``: ``{"server": {"auth": base64("user:password")}}``, or an ``identitytoken``.

A helper is a program ``docker-credential-NAME`` on PATH that takes ``get``, ``store`` or
``erase`` as its argument. ``get`` and ``erase`` read the server name on stdin; ``store``
reads ``{"ServerURL", "Username", "Secret"}`` as JSON, which ``get`` also prints.
Keys in ``auths`` may be URLs (``https://index.docker.io/v1/`` for Docker Hub); they are
matched by host. The file is rewritten atomically with mode 0600, keeping unknown keys.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
from pathlib import Path

from dockyard.errors import InvalidArgument, RegistryError
from dockyard.registry.auth import IDENTITY_TOKEN_USER, Login
from dockyard.registry.endpoints import DOCKER_HUB, DOCKER_HUB_CREDENTIALS_KEY, normalize_server

log = logging.getLogger(__name__)

HELPER_TIMEOUT = 60.0  # seconds; a helper may wait for a keyring to unlock


def config_dir() -> Path:
    """Return Docker's configuration directory: ``$DOCKER_CONFIG`` or ``~/.docker``."""
    override = os.environ.get("DOCKER_CONFIG")
    return Path(override) if override else Path.home() / ".docker"


def server_key(server: str) -> str:
    """Return the name a server is stored under: Docker Hub's v1 URL, or the bare domain."""
    domain = normalize_server(server)
    return DOCKER_HUB_CREDENTIALS_KEY if domain == DOCKER_HUB else domain


class Credentials:
    """The credentials configured in one Docker ``config.json``."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self._data = data

    @classmethod
    def load(cls, directory: Path | None = None) -> Credentials:
        """Read ``config.json`` from ``directory`` (default: ``config_dir()``); a missing file means no credentials."""
        import json

        path = (directory or config_dir()) / "config.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, {})
        except OSError as error:
            raise RegistryError(f"cannot read {path}: {error.strerror}") from error
        if not text.strip():
            return cls(path, {})
        try:
            data = json.loads(text)
        except ValueError as error:
            raise InvalidArgument(f"invalid JSON in {path}: {error}") from error
        if not isinstance(data, dict):
            raise InvalidArgument(f"invalid {path}: the top level must be a JSON object")
        return cls(path, data)

    def helper_for(self, server: str) -> str | None:
        """Return the credential helper name used for ``server``, or None when the file stores it."""
        domain = normalize_server(server)
        helpers = self._data.get("credHelpers") or {}
        for key, name in helpers.items():
            if _matches(key, domain) and isinstance(name, str) and name:
                return name
        store = self._data.get("credsStore")
        return store if isinstance(store, str) and store else None

    def get(self, server: str) -> Login | None:
        """Return the credentials for ``server``, or None if there are none."""
        helper = self.helper_for(server)
        if helper is not None:
            return _helper_get(helper, server_key(server))
        return self._file_get(server)

    def store(self, server: str, user: str, secret: str) -> None:
        """Store credentials for ``server`` in its helper, or base64-encoded in the file."""
        key = server_key(server)
        helper = self.helper_for(server)
        auths = self._auths()
        for existing in [k for k in auths if _matches(k, normalize_server(server))]:
            del auths[existing]
        if helper is not None:
            _helper_store(helper, key, user, secret)
            auths[key] = {}  # Docker leaves an empty entry so that `docker info` lists the server
        elif user == IDENTITY_TOKEN_USER:
            auths[key] = {"identitytoken": secret}
        else:
            auths[key] = {"auth": base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")}
        self._save()

    def erase(self, server: str) -> bool:
        """Remove the credentials for ``server``; return whether there were any."""
        domain = normalize_server(server)
        helper = self.helper_for(server)
        found = False
        if helper is not None:
            found = _helper_erase(helper, server_key(server))
        auths = self._auths()
        for existing in [k for k in auths if _matches(k, domain)]:
            entry = auths.pop(existing)
            found = found or bool(entry)
        self._save()
        return found

    def _auths(self) -> dict:
        auths = self._data.get("auths")
        if not isinstance(auths, dict):
            auths = {}
            self._data["auths"] = auths
        return auths

    def _file_get(self, server: str) -> Login | None:
        domain = normalize_server(server)
        for key, entry in self._auths().items():
            if not _matches(key, domain) or not isinstance(entry, dict):
                continue
            if entry.get("identitytoken"):
                return Login(IDENTITY_TOKEN_USER, str(entry["identitytoken"]))
            encoded = entry.get("auth")
            if encoded:
                try:
                    user, _, secret = base64.b64decode(encoded, validate=False).decode("utf-8").partition(":")
                except (ValueError, UnicodeDecodeError) as error:
                    raise InvalidArgument(f"invalid auth entry for {key} in {self.path}: {error}") from error
                return Login(user, secret)
            if entry.get("username") and entry.get("password"):
                return Login(str(entry["username"]), str(entry["password"]))
        return None

    def _save(self) -> None:
        import json

        text = json.dumps(self._data, indent="\t") + "\n"
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = directory / f".{self.path.name}.{os.getpid()}.tmp"
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                    file.write(text)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        except OSError as error:
            raise RegistryError(f"cannot write {self.path}: {error.strerror}") from error
        log.debug("wrote %s", self.path)


def _matches(key: str, domain: str) -> bool:
    try:
        return normalize_server(key) == domain
    except InvalidArgument:
        return False


def _run_helper(helper: str, action: str, data: str, server: str) -> subprocess.CompletedProcess:
    program = f"docker-credential-{helper}"
    log.debug("running %s %s for %s", program, action, server)
    try:
        return subprocess.run(
            [program, action],
            input=data.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as error:
        raise RegistryError(f"credential helper {program} for {server} was not found on PATH") from error
    except subprocess.TimeoutExpired as error:
        raise RegistryError(f"credential helper {program} {action} for {server} timed out after {HELPER_TIMEOUT:.0f} s") from error


def _helper_output(result: subprocess.CompletedProcess) -> str:
    return (result.stdout or result.stderr).decode("utf-8", "replace").strip()


def _helper_get(helper: str, server: str) -> Login | None:
    import json

    result = _run_helper(helper, "get", server, server)
    if result.returncode != 0:
        message = _helper_output(result)
        # The helpers' protocol reports a missing entry with this exact text.
        if "credentials not found" in message.lower():
            return None
        raise RegistryError(f"credential helper docker-credential-{helper} get for {server} failed: {message}")
    try:
        document = json.loads(result.stdout)
        user, secret = document["Username"], document["Secret"]
    except (ValueError, KeyError, TypeError) as error:
        raise RegistryError(f"credential helper docker-credential-{helper} returned invalid output for {server}") from error
    if not secret:
        return None
    return Login(str(user), str(secret))


def _helper_store(helper: str, server: str, user: str, secret: str) -> None:
    import json

    payload = json.dumps({"ServerURL": server, "Username": user, "Secret": secret})
    result = _run_helper(helper, "store", payload, server)
    if result.returncode != 0:
        raise RegistryError(
            f"credential helper docker-credential-{helper} store for {server} failed: {_helper_output(result)}"
        )


def _helper_erase(helper: str, server: str) -> bool:
    result = _run_helper(helper, "erase", server, server)
    if result.returncode == 0:
        return True
    message = _helper_output(result)
    if "credentials not found" in message.lower():
        return False
    raise RegistryError(f"credential helper docker-credential-{helper} erase for {server} failed: {message}")

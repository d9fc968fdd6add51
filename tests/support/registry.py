"""A real registry on loopback for tests: Debian's ``docker-registry`` (distribution 2.8).

``start_registry(workdir)`` starts one on a free port of 127.0.0.1 with its storage under
``workdir`` and returns once ``/v2/`` responds. The session fixture ``registry`` is a plain
anonymous one that other test modules push their images into. ``htpasswd_auth`` builds the
``auth`` section for a registry that wants Basic credentials.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
START_TIMEOUT = 15.0


@dataclass
class Registry:
    """A running registry process."""

    host: str  # "127.0.0.1:PORT"
    storage: Path  # the filesystem driver's root directory
    process: subprocess.Popen
    log_path: Path
    config_path: Path
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    def log(self) -> str:
        """Return what the registry wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the registry by its PID and wait for it to exit."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _merge(base: dict, extra: dict) -> dict:
    """Merge ``extra`` into ``base`` recursively, with ``extra`` winning on conflicts."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def start_registry(workdir: Path, auth: dict | None = None, extra: dict | None = None) -> Registry:
    """Start a registry bound to 127.0.0.1 on a free port, storing under ``workdir``.

    ``auth`` becomes the config's ``auth`` section verbatim (for example the result of
    ``htpasswd_auth``, or ``{"token": {...}}``). ``extra`` is merged into the whole config.
    Raises RuntimeError with the registry's log if it does not respond within 15 s.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    storage.mkdir(exist_ok=True)
    port = free_port()
    config: dict = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "dockyard-test-secret"},
    }
    if auth is not None:
        config["auth"] = auth
    if extra:
        _merge(config, extra)

    # JSON is a subset of YAML, so the registry reads this file as its YAML config.
    config_path = workdir / "config.yml"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "registry.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(REGISTRY_BINARY), "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    registry = Registry(
        host=f"127.0.0.1:{port}",
        storage=storage,
        process=process,
        log_path=log_path,
        config_path=config_path,
    )
    try:
        _wait_until_ready(registry)
    except BaseException:
        registry.stop()
        raise
    return registry


def _wait_until_ready(registry: Registry) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited with code {registry.process.returncode}:\n{registry.log()}"
            )
        try:
            with urllib.request.urlopen(f"{registry.url}/v2/", timeout=2):
                return
        except urllib.error.HTTPError as error:
            if error.code == 401:  # up, and asking for credentials
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry at {registry.host} did not answer within {START_TIMEOUT} s:\n{registry.log()}")


def htpasswd_auth(workdir: Path, users: dict[str, str], realm: str = "dockyard-test") -> dict:
    """Write an htpasswd file with bcrypt hashes and return the ``auth`` config section for it."""
    import bcrypt

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "htpasswd"
    lines = []
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines.append(f"{user}:{hashed}\n")
    path.write_text("".join(lines))
    return {"htpasswd": {"realm": realm, "path": str(path)}}


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous registry on loopback, shared by the whole test session."""
    running = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that wants Basic credentials: user ``alice``, password ``wonderland``."""
    workdir = tmp_path_factory.mktemp("basic-registry")
    running = start_registry(workdir, auth=htpasswd_auth(workdir, {"alice": "wonderland"}))
    try:
        yield running
    finally:
        running.stop()

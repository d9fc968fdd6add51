"""The CLI servers a test session starts: one environment variable marks them, and teardown stops them.

Every ``dockyard`` command the tests run may start a CLI server
(``dockyard.cli.server``) that outlives it by its idle timeout. This plugin
puts ``DOCKYARD_TEST_CLI_SESSION`` into the session's environment, which
every command inherits. The name starts with ``DOCKYARD_``, so it is part of
what a server is keyed on, and a session never uses another session's
servers. At the end of the session the servers carrying the variable get
SIGTERM by PID, before the leak check looks for left-over processes.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from typing import Iterator

import pytest

MARKER_VARIABLE = "DOCKYARD_TEST_CLI_SESSION"
# Short, so that the servers of finished tests do not pile up during the session.
IDLE_SECONDS = "10"


def server_pids(marker: str | None = None, zygotes: bool = False) -> list[int]:
    """The pids of running CLI servers, only those whose environment has ``marker`` (NAME=value) if given.

    With ``zygotes``, the pids of the servers' monitor zygotes instead
    (``dockyard.engine.zygote``): processes named ``dockyard-zygote``.
    """
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if zygotes:
                with open(f"/proc/{name}/comm", "rb") as file:
                    if file.read().strip() != b"dockyard-zygote":
                        continue
            else:
                with open(f"/proc/{name}/cmdline", "rb") as file:
                    command = file.read().split(b"\0")
                if b"dockyard.cli.server" not in command:
                    continue
            if marker is not None:
                with open(f"/proc/{name}/environ", "rb") as file:
                    if marker.encode() not in file.read().split(b"\0"):
                        continue
        except OSError:
            continue
        found.append(int(name))
    return found


def server_for(address: str) -> int | None:
    """The pid of the server listening on the abstract socket ``address`` (as client.server_address gives it)."""
    for pid in server_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                if address.lstrip("\0").encode() in file.read().split(b"\0"):
                    return pid
        except OSError:
            continue
    return None


def stop(pids: list[int], timeout: float = 10.0) -> None:
    """Send SIGTERM to the servers ``pids`` and wait until they are gone.

    A server is a grandchild of the command that started it. When the test
    process is a child subreaper (the runtime's tests make it one), orphaned
    servers become its children, so it reaps them here.
    """
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    left.remove(pid)
                    continue
            except ChildProcessError:
                if not os.path.exists(f"/proc/{pid}"):
                    left.remove(pid)
                    continue
        time.sleep(0.05)


@pytest.fixture(scope="session", autouse=True)
def cli_server_session() -> Iterator[str]:
    marker = f"{MARKER_VARIABLE}={secrets.token_hex(8)}"
    name, value = marker.split("=", 1)
    saved = {key: os.environ.get(key) for key in (name, "DOCKYARD_CLI_SERVER_IDLE_TIMEOUT")}
    os.environ[name] = value
    os.environ.setdefault("DOCKYARD_CLI_SERVER_IDLE_TIMEOUT", IDLE_SECONDS)
    try:
        yield marker
    finally:
        stop(server_pids(marker))
        # A zygote exits by itself once its server is gone; this makes it sure and waits for it.
        stop(server_pids(marker, zygotes=True))
        # Servers that exited on their own idle timeout earlier are zombies of this
        # process when it is a child subreaper.
        from tests.support.containers import reap_orphaned_zombies

        reap_orphaned_zombies()
        for key, previous in saved.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous

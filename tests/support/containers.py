"""A private dockyard with the busybox test image pulled, and its containers removed afterwards.

``busybox_dockyard`` is the ``dockyard`` fixture after ``pull`` of the
busybox test image. At teardown every container left is removed with
``rm -f`` and the root's monitor is waited for (and killed by PID if it
lingers), so that no process, mount or cgroup outlives the test.
``start_busybox(dockyard, image, *flags)`` starts a detached container that
sleeps and returns its full ID.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Iterator

import pytest

from tests.support.cli import Dockyard
from tests.support.images import ImageSet

# Seconds the container monitor lingers after its last container; short, so that it is gone after each test.
MONITOR_IDLE_SECONDS = "0.5"


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    """Call ``predicate`` until it returns a true value or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def reap_orphaned_zombies() -> None:
    """Reap this process's children that have exited.

    A test process that is a child subreaper (as the runtime's ``run`` and
    ``exec`` make their caller) inherits every orphan below it, such as the
    monitor's and detached exec waiters' intermediate processes, and must
    reap them when they exit.
    """
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] == "Z" and int(fields[1]) == me:
            try:
                os.waitpid(int(entry), os.WNOHANG)
            except ChildProcessError:
                pass


def _stop_monitor(dockyard: Dockyard) -> None:
    from dockyard import config
    from dockyard.engine import monitor

    run_root = config.load(path=dockyard.config_path, root=dockyard.root).run_root
    directory = monitor.monitor_dir(dockyard.root, run_root)
    pid = monitor.read_pidfile(directory)
    if pid and not wait_until(lambda: not monitor.is_monitor_process(pid), timeout=15):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not monitor.is_monitor_process(pid), timeout=5)
        pytest.fail(f"the container monitor {pid} did not exit after its last container was removed")


@pytest.fixture
def busybox_dockyard(dockyard: Dockyard, test_images: ImageSet, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dockyard]:
    monkeypatch.setenv("DOCKYARD_MONITOR_IDLE_TIMEOUT", MONITOR_IDLE_SECONDS)
    dockyard.run("pull", "-q", test_images.busybox)
    yield dockyard
    leftover = dockyard.run("ps", "-a", "-q", "--no-trunc", check=False).stdout.split()
    if leftover:
        dockyard.run("rm", "-f", *leftover, check=False)
    _stop_monitor(dockyard)
    reap_orphaned_zombies()


def start_busybox(dockyard: Dockyard, image: str, *flags: str, command: tuple[str, ...] = ("sleep", "300")) -> str:
    """Start a detached busybox container and return its full ID."""
    container_id = dockyard.run("run", "-d", *flags, image, *command).stdout.strip()
    assert len(container_id) == 64, container_id
    return container_id

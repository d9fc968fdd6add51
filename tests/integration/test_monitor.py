"""The shared container monitor: one per root, its death, adoption of orphaned containers, and idle exit.

Tests that kill the monitor kill only the monitor process they started (by
the PID in its pidfile) and, in one case, the container's init by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from dockyard.config import Config
from dockyard.engine import Engine, monitor
from tests.support.cli import Dockyard
from tests.support.containers import reap_orphaned_zombies, start_busybox
from tests.support.images import ImageSet

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(test_images: ImageSet) -> Iterator[Engine]:
    base = Path(tempfile.mkdtemp(prefix="dockyard-monitor-"))
    instance = Engine(Config(root=base / "root", run_root=base / "run"))
    instance.images.pull(test_images.busybox)
    try:
        yield instance
    finally:
        for summary in instance.containers.list(all=True):
            instance.containers.remove(summary["Id"], force=True, volumes=True)
        instance.containers.shutdown_monitor()
        instance.close()
        shutil.rmtree(base)
        # A killed monitor's containers are reparented to the nearest
        # subreaper, which is this process once a runtime test has made it one.
        reap_orphaned_zombies()


def body(image: str, *cmd: str, **host_config: object) -> dict:
    return {"Image": image, "Cmd": list(cmd), "HostConfig": {"NetworkMode": "none", **host_config}}


def monitor_pid(engine: Engine) -> int:
    return monitor.read_pidfile(monitor.monitor_dir(engine.config.root, engine.config.run_root))


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` has exited: gone, or a zombie.

    A killed process loses its command line before it finishes exiting, and
    the engine checks monitors with a pidfd, which reports the exit only at
    its end, so waiting for the command line to vanish is not enough.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.02)


def test_one_monitor_for_concurrent_starts(engine: Engine, test_images: ImageSet):
    ids = [engine.containers.create(body(test_images.busybox, "sleep", "100")) for _ in range(4)]
    errors: list[BaseException] = []

    def start(container_id: str) -> None:
        try:
            # A separate engine per thread, as separate commands would have.
            other = Engine(engine.config)
            other.containers.start(container_id)
            other.close()
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(container_id,)) for container_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    pids = {engine.state.container(container_id)["monitor_pid"] for container_id in ids}
    assert pids == {monitor_pid(engine)}
    for container_id in ids:
        assert engine.containers.inspect(container_id)["State"]["Running"]


def test_dead_monitor_and_container_show_exited_with_error(engine: Engine, test_images: ImageSet):
    container_id = engine.containers.create(body(test_images.busybox, "sleep", "100"))
    engine.containers.start(container_id)
    pid = monitor_pid(engine)
    container_pid = engine.containers.inspect(container_id)["State"]["Pid"]
    assert monitor.is_monitor_process(pid)
    assert container_pid > 1
    os.kill(pid, signal.SIGKILL)
    os.kill(container_pid, signal.SIGKILL)
    wait_gone(pid)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{container_pid}/stat").exists() and "Z" not in Path(f"/proc/{container_pid}/stat").read_text().rsplit(")", 1)[1][:3]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    state = engine.containers.inspect(container_id)["State"]
    assert state["Status"] == "exited"
    assert state["Running"] is False
    assert "monitor" in state["Error"]
    assert state["ExitCode"] == monitor.UNKNOWN_EXIT_CODE
    assert container_id not in Path("/proc/self/mountinfo").read_text()


def test_running_container_is_adopted_by_next_monitor(engine: Engine, test_images: ImageSet):
    container_id = engine.containers.create(body(test_images.busybox, "sleep", "100"))
    engine.containers.start(container_id)
    old = monitor_pid(engine)
    container_pid = engine.containers.inspect(container_id)["State"]["Pid"]
    assert monitor.is_monitor_process(old)
    os.kill(old, signal.SIGKILL)
    wait_gone(old)
    state = engine.containers.inspect(container_id)["State"]
    new = monitor_pid(engine)
    assert state["Status"] == "running"
    assert state["Pid"] == container_pid
    assert new != old
    assert engine.state.container(container_id)["monitor_pid"] == new
    started = time.monotonic()
    engine.containers.stop(container_id, timeout=1)
    assert time.monotonic() - started < 5
    state = engine.containers.inspect(container_id)["State"]
    assert state["Status"] == "exited"
    # The monitor reads the exit status of a process that is not its child
    # from /proc while it is a zombie. If its new parent reaped it first, the status is unknown.
    assert state["ExitCode"] in (137, monitor.UNKNOWN_EXIT_CODE)
    assert container_id not in Path("/proc/self/mountinfo").read_text()


def log_lines(engine: Engine, container_id: str) -> list[str]:
    return [entry.data.decode() for entry in engine.containers.logs(container_id)]


def test_adopted_container_output_reaches_log(engine: Engine, test_images: ImageSet):
    script = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"
    container_id = engine.containers.create(body(test_images.busybox, "sh", "-c", script))
    engine.containers.start(container_id)
    deadline = time.monotonic() + 10
    while not log_lines(engine, container_id):
        assert time.monotonic() < deadline, "no output before the monitor was killed"
        time.sleep(0.05)
    old = monitor_pid(engine)
    os.kill(old, signal.SIGKILL)
    wait_gone(old)
    # Output written while no monitor runs waits in the FIFO, so no tick is lost.
    time.sleep(0.5)
    assert engine.containers.inspect(container_id)["State"]["Status"] == "running"
    count = len(log_lines(engine, container_id))
    deadline = time.monotonic() + 10
    while len(log_lines(engine, container_id)) < count + 3:
        assert time.monotonic() < deadline, "the adopted container's output does not reach the log"
        time.sleep(0.05)
    lines = log_lines(engine, container_id)
    assert lines == [f"tick {number}\n" for number in range(1, len(lines) + 1)]
    assert engine.containers.inspect(container_id)["State"]["Error"] == ""
    engine.containers.stop(container_id, timeout=1)


def test_adopted_tty_container_records_lost_output(engine: Engine, test_images: ImageSet):
    container_id = engine.containers.create({**body(test_images.busybox, "sleep", "100"), "Tty": True})
    engine.containers.start(container_id)
    old = monitor_pid(engine)
    os.kill(old, signal.SIGKILL)
    wait_gone(old)
    # sleep runs as the namespace's PID 1, which the terminal's hangup signal does not end.
    state = engine.containers.inspect(container_id)["State"]
    assert state["Status"] == "running"
    assert "was lost because the container monitor stopped" in state["Error"]
    engine.containers.remove(container_id, force=True)


def test_remove_force_sends_sigkill_once(engine: Engine, test_images: ImageSet):
    container_id = engine.containers.create(body(test_images.busybox, "sleep", "100"))
    engine.containers.start(container_id)
    engine.containers.remove(container_id, force=True)
    log_text = (monitor.monitor_dir(engine.config.root, engine.config.run_root) / "monitor.log").read_text()
    assert log_text.count(f"sending signal 9 to container {container_id}") == 1


def test_monitor_exits_when_idle(engine: Engine, test_images: ImageSet, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKYARD_MONITOR_IDLE_TIMEOUT", "0.5")
    container_id = engine.containers.create(body(test_images.busybox, "true"))
    engine.containers.start(container_id)
    pid = monitor_pid(engine)
    assert engine.containers.wait(container_id)["StatusCode"] == 0
    wait_gone(pid, timeout=10)
    assert not (monitor.monitor_dir(engine.config.root, engine.config.run_root) / "pid").exists()


def test_failed_start_leaves_monitor_idle(engine: Engine, test_images: ImageSet, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch):
    from dockyard.errors import RuntimeFailure

    monkeypatch.setenv("DOCKYARD_MONITOR_IDLE_TIMEOUT", "0.5")
    source = tmp_path / "gone"
    source.mkdir()
    container_id = engine.containers.create(body(test_images.busybox, "true", Binds=[f"{source}:/data"]))
    source.rmdir()
    with pytest.raises(RuntimeFailure):
        engine.containers.start(container_id)
    state = engine.containers.inspect(container_id)["State"]
    assert state["ExitCode"] == 128
    assert "/data" in state["Error"]
    assert state["Status"] == "created"
    wait_gone(monitor_pid(engine), timeout=10)
    assert container_id not in Path("/proc/self/mountinfo").read_text()


def test_closed_attach_before_start_lets_monitor_exit(engine: Engine, test_images: ImageSet,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKYARD_MONITOR_IDLE_TIMEOUT", "0.5")
    container_id = engine.containers.create(body(test_images.busybox, "true"))
    attachment = engine.containers.attach(container_id, stdin=False, stdout=True, stderr=True)
    pid = monitor_pid(engine)
    assert monitor.is_monitor_process(pid)
    attachment.close()
    wait_gone(pid, timeout=10)


def test_monitor_memory_per_idle_container(engine: Engine, test_images: ImageSet):
    """Report the monitor's resident memory with 20 idle containers; fail only above a generous bound."""
    ids = [engine.containers.create(body(test_images.busybox, "sleep", "100")) for _ in range(20)]
    for container_id in ids:
        engine.containers.start(container_id)
    status = Path(f"/proc/{monitor_pid(engine)}/status").read_text()
    rss_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    print(f"monitor RSS with 20 containers: {rss_kib} KiB, {rss_kib / 20:.0f} KiB per container")
    assert rss_kib / 20 < 2048


def test_cli_shows_container_of_dead_monitor_as_exited(busybox_dockyard: Dockyard, test_images: ImageSet):
    import json

    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    [info] = json.loads(busybox_dockyard.run("inspect", container_id).stdout)
    # MergedDir is <run root>/containers/<id>/rootfs.
    run_root = Path(info["GraphDriver"]["Data"]["MergedDir"]).parents[2]
    pid = monitor.read_pidfile(monitor.monitor_dir(busybox_dockyard.root, run_root))
    container_pid = info["State"]["Pid"]
    # Guard the kills: os.kill(0, ...) would signal this test's own process group.
    assert monitor.is_monitor_process(pid)
    assert container_pid > 1
    os.kill(pid, signal.SIGKILL)
    os.kill(container_pid, signal.SIGKILL)
    wait_gone(pid)
    time.sleep(0.2)
    listed = busybox_dockyard.run("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Status}}").stdout
    [info] = json.loads(busybox_dockyard.run("inspect", container_id).stdout)
    assert f"{container_id} Exited (255)" in listed
    assert info["State"]["Running"] is False
    assert "monitor" in info["State"]["Error"]

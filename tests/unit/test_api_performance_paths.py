"""The shortcuts the API service takes for speed: the state's change marker, reused worker threads, inline routes."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from dockyard.api import server
from dockyard.engine.state import State


def _container_row(container_id: str, name: str) -> dict:
    return {"id": container_id, "name": name, "image": "busybox", "image_id": "sha256:" + "0" * 64,
            "config": "{}", "created": "2026-01-01T00:00:00.000000000Z", "status": "created"}


def test_change_marker_sees_other_connection(tmp_path: Path) -> None:
    reader = State(tmp_path / "state.db")
    writer = State(tmp_path / "state.db")
    before = reader.change_marker()
    assert reader.change_marker() == before

    writer.add_container(_container_row("a" * 64, "first"))

    assert reader.change_marker() != before


def test_change_marker_sees_own_commits(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    before = state.change_marker()

    state.add_container(_container_row("b" * 64, "second"))

    assert state.change_marker() != before


def test_change_marker_differs_per_connection(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    before = state.change_marker()
    state.close()

    assert state.change_marker() != before


def test_workers_reuse_idle_thread() -> None:
    workers = server._Workers(idle_seconds=1.0)
    identities: list[int] = []
    done = threading.Semaphore(0)

    def record() -> None:
        identities.append(threading.get_ident())
        done.release()

    workers.submit(record, "reused-worker")
    assert done.acquire(timeout=5.0)
    # The thread counts itself idle only after its call has returned.
    deadline = time.monotonic() + 5.0
    while workers._idle != 1:
        assert time.monotonic() < deadline, "the worker did not become idle"
        time.sleep(0.01)
    workers.submit(record, "second-worker")
    assert done.acquire(timeout=5.0)

    assert len(identities) == 2
    assert identities[0] == identities[1]
    assert identities[0] != threading.get_ident()


def test_workers_never_wait_for_busy_thread() -> None:
    released = threading.Event()

    async def main() -> list[str]:
        blocked = server.run_blocking(released.wait, 10.0)
        # The first call holds its thread until released; the second must run anyway.
        quick = await asyncio.wait_for(server.run_blocking(lambda: "quick"), timeout=5.0)
        released.set()
        await blocked
        return [quick]

    assert asyncio.run(main()) == ["quick"]


def test_workers_exit_after_idle_time() -> None:
    workers = server._Workers(idle_seconds=0.05)
    names: list[str] = []
    done = threading.Event()

    def record() -> None:
        names.append(threading.current_thread().name)
        done.set()

    workers.submit(record, "short-lived-worker")
    assert done.wait(5.0)
    deadline = time.monotonic() + 5.0
    while any(thread.name == "short-lived-worker" for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "the idle worker thread did not exit"
        time.sleep(0.01)

    assert names == ["short-lived-worker"]


def test_inline_marker_respects_condition() -> None:
    def handler(api: object, request: object) -> None:
        return None

    marked = server.runs_inline(when=lambda request: request == "small")(handler)

    assert marked.inline_when("small") is True
    assert marked.inline_when("large") is False


def _engine(tmp_path: Path):
    from dockyard import config
    from dockyard.engine import Engine

    loaded = config.load(path=tmp_path / "missing-config.toml", root=tmp_path / "root")
    loaded = config.Config(root=tmp_path / "root", run_root=tmp_path / "run", registries=loaded.registries,
                           path=tmp_path / "missing-config.toml")
    return Engine(loaded)


def _record(labels: dict[str, str]) -> str:
    import json

    return json.dumps({"Config": {"Cmd": ["sleep", "60"], "Labels": labels}, "HostConfig": {"NetworkMode": "none"}})


def test_listing_sees_other_connection_write(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    first = dict(_container_row("c" * 64, "first"), config=_record({"n": "1"}))
    engine.state.add_container(first)
    assert [summary["Names"] for summary in engine.containers.list(all=True)] == [["/first"]]

    other = State(tmp_path / "root" / "state.db")
    other.add_container(dict(_container_row("d" * 64, "second"), config=_record({}),
                             created="2026-01-02T00:00:00.000000000Z"))
    other.rename_container("c" * 64, "renamed")

    names = [summary["Names"] for summary in engine.containers.list(all=True)]
    assert names == [["/second"], ["/renamed"]]


def test_listing_sees_own_write(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.state.add_container(dict(_container_row("e" * 64, "before"), config=_record({})))
    assert engine.containers.list(all=True)[0]["Names"] == ["/before"]

    engine.state.rename_container("e" * 64, "after")

    assert engine.containers.list(all=True)[0]["Names"] == ["/after"]


def test_reused_listing_returns_new_dicts(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.state.add_container(dict(_container_row("f" * 64, "only"), config=_record({"tier": "web"})))
    first = engine.containers.list(all=True)
    first[0]["Names"] = ["/changed by the caller"]

    second = engine.containers.list(all=True)

    assert second[0]["Names"] == ["/only"]
    assert second[0]["Labels"] == {"tier": "web"}
    assert second[0] is not first[0]


def test_listing_arguments_are_part_of_reuse(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.state.add_container(dict(_container_row("1" * 64, "stopped"), config=_record({})))

    assert len(engine.containers.list(all=True)) == 1
    assert engine.containers.list(all=False) == []
    assert len(engine.containers.list(all=True, filters={"name": ["stopped"]})) == 1
    assert engine.containers.list(all=True, filters={"name": ["other"]}) == []


def test_monitor_watch_notices_exit() -> None:
    import subprocess
    import sys

    from dockyard.engine.containers import _MonitorWatch

    # The argument puts "dockyard.engine.monitor" in the command line, which is what identifies a monitor.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "dockyard.engine.monitor"])
    watch = _MonitorWatch()
    try:
        assert watch.running(process.pid) is True
        assert process.pid in watch._pidfds
        assert watch.running(process.pid) is True
    finally:
        process.kill()
        process.wait()

    assert watch.running(process.pid) is False
    assert process.pid not in watch._pidfds


def test_monitor_watch_rejects_other_process() -> None:
    import subprocess
    import sys

    from dockyard.engine.containers import _MonitorWatch

    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _MonitorWatch().running(process.pid) is False
    finally:
        process.kill()
        process.wait()

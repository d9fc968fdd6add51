"""The snapshot store on the real kernel: creation, stacking, concurrency and removal."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest

from dockyard.errors import InvalidArgument, NotFound, StoreError, UnsafeLayer
from dockyard.image import layer
from dockyard.storage import snapshots
from dockyard.storage.snapshots import SnapshotStore
from tests.support.layers import directory, file, hardlink, opaque, symlink, tar_bytes, whiteout

pytestmark = pytest.mark.integration


def chain(n: int) -> str:
    return f"sha256:{n:064x}"


def filler(members, calls=None, delay=0.0):
    """A fill callback that unpacks ``members`` as a layer, counting its calls."""
    data = tar_bytes(members)

    def fill(target, lowers):
        if calls is not None:
            calls.append(target)
        time.sleep(delay)
        layer.apply(io.BytesIO(data), target, "sha256:test", lowers)

    return fill


def test_create_stack_and_lowers(tmp_path, overlay_mount):
    store = SnapshotStore(tmp_path)
    base = store.create(chain(1), None, filler([directory("etc/"), file("etc/os-release", b"base"),
                                                file("bin/tool", b"t")]))
    middle = store.create(chain(2), chain(1), filler([whiteout("bin/tool"), file("etc/motd", b"m")]))
    top = store.create(chain(3), chain(2), filler([hardlink("etc/os", "etc/os-release"), opaque("etc"),
                                                   file("etc/hostname", b"h")]))

    assert base == tmp_path / "snapshots" / f"{1:064x}" / "fs"
    assert store.get(chain(2)) == middle
    assert store.lowers(chain(3)) == [top, middle, base]
    assert (tmp_path / "snapshots" / f"{3:064x}" / "parent").read_text().strip() == chain(2)
    assert not (tmp_path / "snapshots" / f"{1:064x}" / "parent").exists()
    assert sorted(store.chain_ids()) == [chain(1), chain(2), chain(3)]
    assert os.listdir(tmp_path / "tmp") == []

    merged = overlay_mount(store.lowers(chain(3)))
    assert sorted(os.listdir(merged / "etc")) == ["hostname", "os", "os-release"]
    assert (merged / "etc/os").read_bytes() == b"base"
    assert not (merged / "bin/tool").exists()
    assert layer.read_file(store.lowers(chain(2)), "/etc/motd") == b"m"


def test_create_existing_returns_it_without_fill(tmp_path):
    store = SnapshotStore(tmp_path)
    calls: list = []
    first = store.create(chain(1), None, filler([file("a", b"1")], calls))
    second = store.create(chain(1), None, filler([file("a", b"2")], calls))
    assert first == second
    assert len(calls) == 1
    assert (first / "a").read_bytes() == b"1"


def test_failed_fill_leaves_nothing(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store = SnapshotStore(tmp_path / "store")
    with pytest.raises(UnsafeLayer):
        store.create(chain(1), None, filler([symlink("l", str(outside)), file("l/x", b"x")]))
    assert store.get(chain(1)) is None
    assert list(store.chain_ids()) == []
    assert os.listdir(tmp_path / "store" / "tmp") == []
    assert os.listdir(outside) == []


def test_missing_parent_raises_not_found(tmp_path):
    store = SnapshotStore(tmp_path)
    with pytest.raises(NotFound, match=chain(9)):
        store.create(chain(1), chain(9), filler([]))


def test_invalid_chain_id_rejected(tmp_path):
    store = SnapshotStore(tmp_path)
    with pytest.raises(InvalidArgument):
        store.get("sha256:../../etc")


def test_concurrent_create_same_chain(tmp_path):
    store = SnapshotStore(tmp_path)
    calls: list = []
    results: list = []
    errors: list = []
    fill = filler([file("a", b"x" * 1000), directory("d/")], calls, delay=0.3)

    def worker():
        try:
            results.append(store.create(chain(1), None, fill))
        except BaseException as e:  # reported below, a thread cannot fail the test itself
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(results) == 2
    assert results[0] == results[1]
    assert len(calls) == 1
    assert list(store.chain_ids()) == [chain(1)]
    assert (results[0] / "a").read_bytes() == b"x" * 1000
    assert os.listdir(tmp_path / "tmp") == []


def test_remove_deletes_one_snapshot(tmp_path):
    store = SnapshotStore(tmp_path)
    store.create(chain(1), None, filler([file("a", b"1")]))
    store.create(chain(2), chain(1), filler([directory("locked/", mode=0o000), file("locked/f", b"f"),
                                             directory("ro/", mode=0o555), file("ro/g", b"g")]))
    store.remove(chain(2))
    assert store.get(chain(2)) is None
    assert store.get(chain(1)) is not None
    assert os.listdir(tmp_path / "tmp") == []
    with pytest.raises(NotFound):
        store.remove(chain(2))


def test_remove_of_parent_makes_child_corrupt(tmp_path):
    store = SnapshotStore(tmp_path)
    store.create(chain(1), None, filler([]))
    store.create(chain(2), chain(1), filler([]))
    store.remove(chain(1))
    with pytest.raises(StoreError, match="ancestor"):
        store.lowers(chain(2))


def test_stale_work_directories_cleared(tmp_path):
    store = SnapshotStore(tmp_path)
    stale = tmp_path / "tmp" / f"{1:064x}-crashed"
    (stale / "fs" / "locked").mkdir(parents=True)
    (stale / "fs" / "locked" / "f").write_bytes(b"partial")
    other = tmp_path / "tmp" / f"{2:064x}-busy"
    other.mkdir()
    store.create(chain(1), None, filler([file("a", b"1")]))
    assert not stale.exists()
    assert other.exists()
    assert os.listdir(tmp_path / "tmp") == [other.name]


def wait_flushed(snapshot_fs, timeout=30.0):
    """Wait until the snapshot's detached flush has deleted its ``unsynced`` marker; True if it did."""
    marker = snapshot_fs.parent / snapshots.UNSYNCED
    deadline = time.monotonic() + timeout
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not marker.exists()


def test_new_snapshot_flushed_later(tmp_path):
    store = SnapshotStore(tmp_path)
    created = store.create(chain(1), None, filler([file("a", b"a")]))
    marker = created.parent / snapshots.UNSYNCED
    if marker.exists():
        assert marker.read_text().strip() == snapshots.boot_id()
    assert wait_flushed(created), "the flush never deleted the unsynced marker"
    assert store.get(chain(1)) == created


def test_unflushed_snapshot_of_earlier_boot_replaced(tmp_path):
    store = SnapshotStore(tmp_path)
    created = store.create(chain(1), None, filler([file("a", b"old")]))
    assert wait_flushed(created)
    # As if the machine had restarted before the flush ended.
    (created.parent / snapshots.UNSYNCED).write_text("another-boot\n")
    assert store.get(chain(1)) is None
    calls = []
    again = store.create(chain(1), None, filler([file("a", b"new")], calls))
    assert len(calls) == 1
    assert (again / "a").read_bytes() == b"new"
    assert wait_flushed(again)


def test_unflushed_ancestor_named_in_error(tmp_path):
    store = SnapshotStore(tmp_path)
    base = store.create(chain(1), None, filler([file("a", b"a")]))
    top = store.create(chain(2), chain(1), filler([file("b", b"b")]))
    assert wait_flushed(base)
    assert wait_flushed(top)
    (base.parent / snapshots.UNSYNCED).write_text("another-boot\n")
    with pytest.raises(StoreError, match=f"snapshot {chain(1)} was not flushed"):
        store.lowers(chain(2))

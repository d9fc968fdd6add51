"""File locks under root/locks: blob lock files go away with their lock, and never while one is held."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from dockyard.engine import locks

DIGEST = "sha256:" + "ab" * 32


def lock_path(root: Path) -> Path:
    return root / "locks" / "blobs" / DIGEST.replace(":", "-")


def test_blob_lock_removes_its_file(tmp_path):
    with locks.blob_lock(tmp_path, DIGEST):
        assert lock_path(tmp_path).exists()
    assert not lock_path(tmp_path).exists()


def test_gc_lock_keeps_its_file(tmp_path):
    with locks.gc_lock(tmp_path, exclusive=True):
        pass
    assert (tmp_path / "locks" / "gc").exists()


def test_blob_lock_waiter_retries_removed_file(tmp_path):
    """A waiter that opened the file before the holder removed it must not run beside a newer holder."""
    inside: list[str] = []
    overlaps: list[tuple[str, str]] = []
    guard = threading.Lock()
    holding = {name: threading.Event() for name in ("first", "second", "third")}
    release = {name: threading.Event() for name in ("first", "second", "third")}

    def hold(name: str) -> None:
        with locks.blob_lock(tmp_path, DIGEST):
            with guard:
                overlaps.extend((other, name) for other in inside)
                inside.append(name)
            holding[name].set()
            release[name].wait(5)
            with guard:
                inside.remove(name)

    threads = {name: threading.Thread(target=hold, args=(name,)) for name in holding}
    threads["first"].start()
    assert holding["first"].wait(5)
    # The second opens the file the first holds and waits for its lock.
    threads["second"].start()
    time.sleep(0.2)
    release["first"].set()
    assert holding["second"].wait(5)
    # The first removed the file, so the third creates a new one: it must still wait for the second.
    threads["third"].start()
    time.sleep(0.2)
    assert not holding["third"].is_set()
    release["second"].set()
    release["third"].set()
    for thread in threads.values():
        thread.join(10)
        assert not thread.is_alive()
    assert overlaps == []
    assert not lock_path(tmp_path).exists()


def test_remove_unused_blob_locks_skips_held_ones(tmp_path):
    directory = tmp_path / "locks" / "blobs"
    directory.mkdir(parents=True)
    stale = directory / "sha256-stale"
    stale.touch()
    held = lock_path(tmp_path)
    descriptor = os.open(held, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        assert locks.remove_unused_blob_locks(tmp_path) == 1
        assert not stale.exists()
        assert held.exists()
    finally:
        os.close(descriptor)


def test_remove_unused_blob_locks_without_directory(tmp_path):
    assert locks.remove_unused_blob_locks(tmp_path) == 0

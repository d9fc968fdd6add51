"""File locks that order dockyard processes sharing one root.

Locks are ``flock(2)`` locks on files under ``root/locks``. The kernel drops
them when their process exits, so a crashed process never leaves one held.

- ``blob_lock(root, digest)``: held while one process downloads a blob, so two
  pulls of the same image do not both download it. The second finds the blob
  present once it gets the lock. Its file is removed when the lock is
  released, so ``locks/blobs/`` does not grow with every blob ever pulled.
- ``gc_lock(root, exclusive)``: pulls, pushes and loads hold it shared from
  their first download until their image is recorded. Garbage collection
  holds it exclusively, so it never deletes a blob or snapshot that a pull has
  fetched but not yet recorded. Any other code that adds blobs or snapshots
  before recording them (build, commit) must hold it shared in the same way.

A lock file is only removed by a process that holds it exclusively. A process
that opened the file before the removal and then gets the lock finds that the
path no longer names the file it locked, and opens the path again, so two
processes never both believe they hold one lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Iterator

from dockyard.errors import StoreError

log = logging.getLogger(__name__)


@contextmanager
def file_lock(path: Path, exclusive: bool = True, remove: bool = False) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created if missing) for the duration of the block.

    With ``remove`` (only for exclusive locks), the file is deleted at the end
    of the block while the lock is still held.
    """
    if remove and not exclusive:
        raise ValueError(f"a shared lock on {path} cannot remove its file")
    path.parent.mkdir(parents=True, exist_ok=True)
    log.debug("locking %s (%s)", path, "exclusive" if exclusive else "shared")
    descriptor = _lock_current_file(path, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield
    finally:
        try:
            if remove:
                path.unlink(missing_ok=True)
                log.debug("removed lock file %s", path)
        finally:
            # Closing the descriptor releases the lock.
            os.close(descriptor)


def _lock_current_file(path: Path, operation: int) -> int:
    """Open and lock ``path``, again and again until the locked file is the one the path names."""
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise StoreError(f"cannot open lock file {path}: {error}") from error
        try:
            fcntl.flock(descriptor, operation)
            locked = os.fstat(descriptor)
            current = os.stat(path)
        except FileNotFoundError:
            # The holder removed the file while this process waited for it.
            os.close(descriptor)
            continue
        except BaseException:
            os.close(descriptor)
            raise
        if (locked.st_dev, locked.st_ino) == (current.st_dev, current.st_ino):
            return descriptor
        os.close(descriptor)


def blob_lock(root: Path, digest: str) -> AbstractContextManager[None]:
    return file_lock(root / "locks" / "blobs" / digest.replace(":", "-"), remove=True)


def gc_lock(root: Path, exclusive: bool) -> AbstractContextManager[None]:
    return file_lock(root / "locks" / "gc", exclusive=exclusive)


def remove_unused_blob_locks(root: Path) -> int:
    """Delete the blob lock files that no process holds, such as those left by a crash; return how many.

    Each file is removed only after a non-blocking exclusive lock on it
    succeeded, so a lock in use is never removed.
    """
    directory = root / "locks" / "blobs"
    try:
        paths = list(directory.iterdir())
    except FileNotFoundError:
        return 0
    removed = 0
    for path in paths:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as error:
            raise StoreError(f"cannot open lock file {path}: {error}") from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        try:
            # Remove the file only if the path still names the file that is locked.
            if os.fstat(descriptor).st_ino == os.stat(path).st_ino:
                path.unlink()
                removed += 1
                log.debug("removed unused lock file %s", path)
        except FileNotFoundError:
            pass
        finally:
            os.close(descriptor)
    return removed

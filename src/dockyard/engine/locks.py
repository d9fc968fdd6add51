"""File locks that order dockyard processes sharing one root.

Locks are ``flock(2)`` locks on files under ``root/locks``. The kernel drops
them when their process exits, so a crashed process never leaves one held.

- ``blob_lock(root, digest)``: held while one process downloads a blob, so two
  pulls of the same image do not both download it. The second finds the blob
  present once it gets the lock.
- ``gc_lock(root, exclusive)``: pulls, pushes and loads hold it shared from
  their first download until their image is recorded. Garbage collection
  holds it exclusively, so it never deletes a blob or snapshot that a pull has
  fetched but not yet recorded. Any other code that adds blobs or snapshots
  before recording them (build, commit) must hold it shared in the same way.
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
def file_lock(path: Path, exclusive: bool = True) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StoreError(f"cannot open lock file {path}: {error}") from error
    try:
        log.debug("locking %s (%s)", path, "exclusive" if exclusive else "shared")
        fcntl.flock(descriptor, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        # Closing the descriptor releases the lock.
        os.close(descriptor)


def blob_lock(root: Path, digest: str) -> AbstractContextManager[None]:
    return file_lock(root / "locks" / "blobs" / digest.replace(":", "-"))


def gc_lock(root: Path, exclusive: bool) -> AbstractContextManager[None]:
    return file_lock(root / "locks" / "gc", exclusive=exclusive)

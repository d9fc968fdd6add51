"""Unpacked layers, one snapshot directory per chain ID.

``root/snapshots/<hex>/fs`` contains one layer's changes in overlayfs format and
``root/snapshots/<hex>/parent`` the parent's chain ID (absent for a base
layer). A snapshot is filled in a private directory under ``root/tmp`` and
renamed into ``snapshots/`` when complete, so a snapshot directory that exists
is complete. Creators of the same chain ID serialise on an ``fcntl.flock``
lock file ``root/tmp/<hex>.lock``, so a layer is unpacked once and every
caller gets the same path.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from dockyard.errors import InvalidArgument, NotFound, StoreError
from dockyard.image.digest import validate
from dockyard.image.layer import remove_tree

log = logging.getLogger(__name__)

_SHA256_PREFIX = "sha256:"


def _hex_of(chain_id: str) -> str:
    validate(chain_id)
    if not chain_id.startswith(_SHA256_PREFIX):
        raise InvalidArgument(f"unsupported chain ID {chain_id!r}: snapshots are keyed by sha256 chain IDs")
    return chain_id[len(_SHA256_PREFIX) :]


def _syncfs(path: Path) -> None:
    """Flush the filesystem that contains ``path``, so a renamed snapshot survives a crash whole."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(path))
    finally:
        os.close(fd)


class SnapshotStore:
    """Snapshots under ``root/snapshots``, prepared in ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._snapshots = self.root / "snapshots"
        self._tmp = self.root / "tmp"

    def _dir(self, chain_id: str) -> Path:
        return self._snapshots / _hex_of(chain_id)

    def get(self, chain_id: str) -> Path | None:
        path = self._dir(chain_id)
        return path / "fs" if path.is_dir() else None

    def lowers(self, chain_id: str) -> list[Path]:
        """Return the fs directories of ``chain_id`` and its parents, topmost first."""
        result: list[Path] = []
        current: str | None = chain_id
        while current is not None:
            path = self._dir(current)
            if not path.is_dir():
                if current == chain_id:
                    raise NotFound(f"snapshot {chain_id} not found")
                raise StoreError(f"snapshot {chain_id} is corrupt: its ancestor {current} is missing")
            result.append(path / "fs")
            try:
                current = (path / "parent").read_text().strip()
            except FileNotFoundError:
                current = None
            if len(result) > 1000:
                raise StoreError(f"snapshot {chain_id} is corrupt: its parent chain loops")
        return result

    def create(self, chain_id: str, parent: str | None, fill: Callable[[Path, list[Path]], None]) -> Path:
        """Return the snapshot ``chain_id``, creating it with ``fill(target, lowers)`` if it is missing.

        ``fill`` gets an empty private directory and the parent chain's fs
        directories, topmost first. If ``fill`` raises, its directory is
        removed and the error propagates.
        """
        existing = self.get(chain_id)
        if existing is not None:
            return existing
        lowers = self.lowers(parent) if parent is not None else []
        with self._locked(chain_id):
            # Another creator may have finished while this one waited for the lock.
            existing = self.get(chain_id)
            if existing is not None:
                return existing
            return self._create_locked(chain_id, parent, lowers, fill)

    @contextlib.contextmanager
    def _locked(self, chain_id: str) -> Iterator[None]:
        """Hold the lock of ``chain_id`` that creators and removers take, and clear its stale work directories.

        The work directories of ``chain_id`` are named ``tmp/<hex>-*``, and only
        the lock holder uses them, so any found while holding it were left by
        a process that crashed.
        """
        try:
            self._snapshots.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the snapshot store under {self.root}: {e.strerror}") from e
        hex_id = _hex_of(chain_id)
        path = self._tmp / f"{hex_id}.lock"
        fd = self._lock(chain_id, path)
        try:
            for stale in self._tmp.glob(f"{hex_id}-*"):
                log.debug("removing %s, left by an interrupted create or remove of snapshot %s", stale, chain_id)
                remove_tree(stale)
            yield
        finally:
            # Unlinked before it is released: see _lock.
            path.unlink(missing_ok=True)
            os.close(fd)

    @staticmethod
    def _lock(chain_id: str, path: Path) -> int:
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError as e:
                raise StoreError(f"cannot open lock file {path} for snapshot {chain_id}: {e.strerror}") from e
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The previous holder unlinks the file before releasing it, so a lock taken
            # on an unlinked inode guards nothing. Then open the path again.
            try:
                if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def _create_locked(
        self, chain_id: str, parent: str | None, lowers: list[Path], fill: Callable[[Path, list[Path]], None]
    ) -> Path:
        try:
            work = Path(tempfile.mkdtemp(prefix=f"{_hex_of(chain_id)}-", dir=self._tmp))
        except OSError as e:
            raise StoreError(f"cannot create a work directory for snapshot {chain_id}: {e.strerror}") from e
        final = self._dir(chain_id)
        try:
            target = work / "fs"
            target.mkdir(mode=0o755)
            if parent is not None:
                (work / "parent").write_text(parent + "\n")
            log.debug("filling snapshot %s in %s", chain_id, work)
            fill(target, lowers)
            if not target.is_dir():
                raise StoreError(f"filling snapshot {chain_id} removed its directory {target}")
            try:
                # One syncfs for the whole snapshot, before the rename that
                # publishes it: a snapshot directory that exists counts as
                # complete, and without the flush a crash could leave renamed
                # files empty (ext4 allocates blocks late). It took about 50 ms
                # for the 81 MB layer of bench/pull.py on a 2-CPU VM, far less
                # than an fsync per file would.
                _syncfs(work)
                os.rename(work, final)
            except OSError as e:
                raise StoreError(f"cannot move snapshot {chain_id} into {final}: {e.strerror}") from e
        except BaseException:
            remove_tree(work)
            raise
        log.debug("created snapshot %s", chain_id)
        return final / "fs"

    def remove(self, chain_id: str) -> None:
        """Delete one snapshot; snapshots on top of it are left as they are."""
        path = self._dir(chain_id)
        if not path.is_dir():
            raise NotFound(f"snapshot {chain_id} not found")
        with self._locked(chain_id):
            try:
                # Renamed away first, so that no reader sees a half-deleted snapshot.
                doomed = Path(tempfile.mkdtemp(prefix=f"{_hex_of(chain_id)}-removing-", dir=self._tmp))
                os.rename(path, doomed / "snapshot")
                remove_tree(doomed)
            except FileNotFoundError:
                raise NotFound(f"snapshot {chain_id} not found") from None
            except OSError as e:
                raise StoreError(f"cannot remove snapshot {chain_id}: {e.strerror}") from e
        log.debug("removed snapshot %s", chain_id)

    def chain_ids(self) -> Iterator[str]:
        try:
            names = sorted(os.listdir(self._snapshots))
        except FileNotFoundError:
            return
        for name in names:
            yield _SHA256_PREFIX + name

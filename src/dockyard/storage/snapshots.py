"""Unpacked layers, one snapshot directory per chain ID.

``root/snapshots/<hex>/fs`` contains one layer's changes in overlayfs format and
``root/snapshots/<hex>/parent`` the parent's chain ID (absent for a base
layer). A snapshot is filled in a private directory under ``root/tmp`` and
renamed into ``snapshots/`` when complete, so a snapshot directory that exists
is complete. Creators of the same chain ID serialise on an ``fcntl.flock``
lock file ``root/tmp/<hex>.lock``, so a layer is unpacked once and every
caller gets the same path.

Flushing a snapshot to disk (about 50 ms for an 80 MB layer here) does not
hold up its creator. The snapshot is renamed into place with a marker file,
``unsynced``, that contains the kernel's boot ID, and a detached ``sync -f``
flushes the filesystem and then deletes the marker. Until a restart the page
cache serves the snapshot whole, flushed or not. A marker with another boot
ID means the machine restarted before the flush ended, so files may be
empty: such a snapshot counts as missing, and ``create`` replaces it.
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


UNSYNCED = "unsynced"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """Return the kernel's boot ID, which changes at every restart."""
    return _BOOT_ID.read_text().strip()


def _flush_later(snapshot: Path) -> None:
    """Flush the filesystem of ``snapshot`` in a detached process, then delete its ``unsynced`` marker."""
    import subprocess
    import threading

    script = 'sync -f "$1" && rm -f "$1/unsynced"'
    try:
        process = subprocess.Popen(
            ["sh", "-c", script, "dockyard-flush", str(snapshot)], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
    except OSError as error:
        # The marker stays, so a restart before another flush makes the snapshot count as missing.
        log.warning("cannot start flushing snapshot %s: %s", snapshot, error)
        return
    # Reaped here when this process lives long enough (the API service); otherwise
    # the process is orphaned, and init or the nearest subreaper reaps it.
    threading.Thread(target=process.wait, name="snapshot flush", daemon=True).start()


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
        if not path.is_dir() or self._unflushed_before_restart(path):
            return None
        return path / "fs"

    @staticmethod
    def _unflushed_before_restart(path: Path) -> bool:
        """Tell whether the snapshot ``path`` was published in an earlier boot and never flushed."""
        try:
            marked = (path / UNSYNCED).read_text().strip()
        except FileNotFoundError:
            return False
        return marked != boot_id()

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
            if self._unflushed_before_restart(path):
                raise StoreError(
                    f"snapshot {current} was not flushed to disk before the machine restarted, so its files "
                    "may be empty: remove the image and pull it again"
                )
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
            if self._dir(chain_id).is_dir():
                log.warning("replacing snapshot %s, which was not flushed to disk before a restart", chain_id)
                self._remove_locked(chain_id)
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
                # Without a flush, a crash could leave the renamed files empty (ext4
                # allocates blocks late), so the marker goes in first (see the module doc).
                (work / UNSYNCED).write_text(boot_id() + "\n")
                os.rename(work, final)
            except OSError as e:
                raise StoreError(f"cannot move snapshot {chain_id} into {final}: {e.strerror}") from e
        except BaseException:
            remove_tree(work)
            raise
        _flush_later(final)
        log.debug("created snapshot %s", chain_id)
        return final / "fs"

    def remove(self, chain_id: str) -> None:
        """Delete one snapshot; snapshots on top of it are left as they are."""
        path = self._dir(chain_id)
        if not path.is_dir():
            raise NotFound(f"snapshot {chain_id} not found")
        with self._locked(chain_id):
            self._remove_locked(chain_id)
        log.debug("removed snapshot %s", chain_id)

    def _remove_locked(self, chain_id: str) -> None:
        try:
            # Renamed away first, so that no reader sees a half-deleted snapshot.
            doomed = Path(tempfile.mkdtemp(prefix=f"{_hex_of(chain_id)}-removing-", dir=self._tmp))
            os.rename(self._dir(chain_id), doomed / "snapshot")
            remove_tree(doomed)
        except FileNotFoundError:
            raise NotFound(f"snapshot {chain_id} not found") from None
        except OSError as e:
            raise StoreError(f"cannot remove snapshot {chain_id}: {e.strerror}") from e

    def chain_ids(self) -> Iterator[str]:
        try:
            names = sorted(os.listdir(self._snapshots))
        except FileNotFoundError:
            return
        for name in names:
            yield _SHA256_PREFIX + name

"""The content-addressed blob store: manifests, indexes, configs and layers.

Blobs live at ``root/blobs/sha256/<hex>``. Every write goes first to a file in
``root/ingest/``, is hashed while it is written, is checked against the
expected digest and size, and is fsynced and renamed into ``blobs/`` (then the
directory is fsynced). A crash therefore leaves either no blob or a complete
one, never a partial blob under its digest.

A partial download is kept in ``ingest/<hex>`` so that a later ingest of the
same digest resumes at its ``offset``. The partial file is guarded by an
``fcntl.flock`` lock: an ingest that finds it locked by another writer writes
to a private file instead, so two concurrent ingests of one digest both
succeed and leave one blob.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from dockyard.errors import DigestMismatch, InvalidArgument, NotFound, StoreError
from dockyard.image.digest import validate

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"sha256:([a-f0-9]{64})")
_CHUNK = 1 << 20


def _hex_of(digest: str) -> str:
    match = _DIGEST.fullmatch(validate(digest))
    if match is None:
        raise InvalidArgument(f'unsupported digest "{digest}": the content store keeps sha256 blobs only')
    return match.group(1)


def _still_linked(path: Path, fd: int) -> bool:
    """Tell whether ``path`` still names the file open as ``fd``.

    A writer that held the lock before may have renamed or removed the file
    between our open and our lock. Then the lock guards an inode that no
    longer is the ingest file (it may even be the finished blob), and the
    caller must open the path again.
    """
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    """Blobs under ``root/blobs/sha256``, written through ``root/ingest``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / "sha256"
        self._ingest = self.root / "ingest"

    def _ensure_dirs(self) -> None:
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
            self._ingest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the content store under {self.root}: {e.strerror}") from e

    def path(self, digest: str) -> Path:
        return self._blobs / _hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading; raises NotFound if it is missing."""
        path = self.path(digest)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None
        except OSError as e:
            raise StoreError(f"cannot open blob {digest}: {e.strerror}") from e

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data`` and return its digest; raises DigestMismatch if it is not ``expected``."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if expected is not None and expected != actual:
            _hex_of(expected)
            raise DigestMismatch(f"blob of {len(data)} bytes", expected, actual)
        if self.has(actual):
            return actual
        with self.ingest(actual, len(data)) as ingest:
            if ingest.offset:
                ingest.reset()
            ingest.write(data)
            return ingest.commit()

    def ingest(self, expected: str, size: int | None = None) -> Ingest:
        """Start or resume writing the blob ``expected``; use the result as a context manager."""
        _hex_of(expected)
        if size is not None and size < 0:
            raise InvalidArgument(f"invalid size {size} for blob {expected}")
        self._ensure_dirs()
        return Ingest(self, expected, size)

    def delete(self, digest: str) -> None:
        path = self.path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None
        except OSError as e:
            raise StoreError(f"cannot delete blob {digest}: {e.strerror}") from e
        log.debug("deleted blob %s", digest)

    def digests(self) -> Iterator[str]:
        try:
            names = sorted(os.listdir(self._blobs))
        except FileNotFoundError:
            return
        for name in names:
            if _DIGEST.fullmatch("sha256:" + name):
                yield "sha256:" + name


class Ingest:
    """A writer for one blob that resumes where an earlier attempt stopped.

    ``offset`` is the number of bytes on disk: after opening, the bytes kept from
    an earlier attempt (resume the download there), and it grows with each
    ``write``. Leaving the context without ``commit`` keeps the partial file for
    a later attempt; an OSError while writing removes it and raises StoreError.
    """

    def __init__(self, store: ContentStore, expected: str, size: int | None) -> None:
        self.expected = expected
        self.size = size
        self.offset = 0
        # How often ``reset`` discarded the bytes on disk; a reader that follows the file must start over then.
        self.restarts = 0
        self._store = store
        self._hasher = hashlib.sha256()
        self._committed = False
        # True when writing to a private file (not resumable) because another writer has locked the shared one.
        self._private = False
        self._path, self._fd = self._open_partial()
        try:
            self._load_partial()
        except OSError as e:
            self._fail(e)

    def _open_partial(self) -> tuple[Path, int]:
        shared = self._store._ingest / _hex_of(self.expected)
        while True:
            try:
                fd = os.open(shared, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError as e:
                raise StoreError(f"cannot open ingest file {shared} for blob {self.expected}: {e.strerror}") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return self._open_private()
            if _still_linked(shared, fd):
                self._remove_stale_private_files()
                return shared, fd
            os.close(fd)

    def _open_private(self) -> tuple[Path, int]:
        while True:
            path = self._store._ingest / f"{_hex_of(self.expected)}.{secrets.token_hex(8)}"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError as e:
                raise StoreError(f"cannot create ingest file {path} for blob {self.expected}: {e.strerror}") from e
            # Locked too, so that _remove_stale_private_files leaves it alone.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _still_linked(path, fd):
                break
            os.close(fd)
        log.debug("ingest file for %s is locked by another writer, writing to %s", self.expected, path)
        self._private = True
        return path, fd

    def _remove_stale_private_files(self) -> None:
        """Remove private files of this digest that no writer has locked, left by a crashed process."""
        for path in self._store._ingest.glob(f"{_hex_of(self.expected)}.*"):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            log.debug("removing stale ingest file %s", path)
            path.unlink(missing_ok=True)
            os.close(fd)

    def _load_partial(self) -> None:
        """Hash the bytes kept from an earlier attempt, so writing can continue after them."""
        length = os.fstat(self._fd).st_size
        if self.size is not None and length > self.size:
            log.debug("partial file for %s is longer than %d bytes, starting over", self.expected, self.size)
            self.reset()
            return
        os.lseek(self._fd, 0, os.SEEK_SET)
        while chunk := os.read(self._fd, _CHUNK):
            self._hasher.update(chunk)
            self.offset += len(chunk)
        if self.offset:
            log.debug("resuming ingest of %s at offset %d", self.expected, self.offset)

    def _fail(self, error: OSError) -> None:
        """Remove the partial file after an OSError, release it and raise StoreError."""
        self._remove_file()
        reason = "no space left on device" if error.errno == errno.ENOSPC else error.strerror
        raise StoreError(f"cannot write blob {self.expected} to {self._path}: {reason}") from error

    def _remove_file(self) -> None:
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the flock
            self._fd = -1

    def write(self, chunk: bytes) -> None:
        if self._fd < 0:
            raise StoreError(f"ingest of blob {self.expected} is already closed")
        if self.size is not None and self.offset + len(chunk) > self.size:
            written = self.offset + len(chunk)
            self._remove_file()
            raise DigestMismatch(
                f"blob {self.expected} (more than the expected {self.size} bytes)",
                self.expected,
                f"at least {written} bytes",
            )
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            self._fail(e)
        self._hasher.update(chunk)
        self.offset += len(chunk)

    def reset(self) -> None:
        """Discard the bytes on disk and start the blob from the beginning."""
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
        except OSError as e:
            self._fail(e)
        self._hasher = hashlib.sha256()
        self.offset = 0
        self.restarts += 1

    def dup_fd(self) -> int:
        """Return a new descriptor of the file being written, which stays open after ``commit`` renames it.

        It shares the writer's file offset, so read it with ``os.pread``. The
        caller closes it. Pulls use it to unpack a layer while it downloads.
        """
        if self._fd < 0:
            raise StoreError(f"ingest of blob {self.expected} is already closed")
        return os.dup(self._fd)

    def commit(self) -> str:
        """Check the digest and size, fsync and rename the blob into place; return its digest."""
        if self._fd < 0:
            raise StoreError(f"ingest of blob {self.expected} is already closed")
        actual = "sha256:" + self._hasher.hexdigest()
        if self.size is not None and self.offset != self.size:
            self._remove_file()
            raise DigestMismatch(
                f"blob {self.expected} ({self.offset} bytes, expected {self.size})", self.expected, actual
            )
        if actual != self.expected:
            self._remove_file()
            raise DigestMismatch(f"blob of {self.offset} bytes", self.expected, actual)
        target = self._store.path(self.expected)
        try:
            os.fsync(self._fd)
            os.rename(self._path, target)
            _fsync_dir(target.parent)
        except OSError as e:
            self._fail(e)
        self._close()
        self._committed = True
        log.debug("committed blob %s (%d bytes)", self.expected, self.offset)
        return self.expected

    def close(self) -> None:
        """Release the partial file, keeping it for a later attempt unless it was private."""
        if self._fd < 0:
            return
        if self._private:
            self._remove_file()
        else:
            self._close()

    def __enter__(self) -> Ingest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

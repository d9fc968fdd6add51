"""Unpack layer tar streams into snapshot directories in overlayfs format.

Unpacking is a security boundary: nothing in a layer may create, change or
follow a path outside the snapshot directory. Every path is walked one
component at a time from a directory file descriptor with ``O_NOFOLLOW``, so
the kernel never resolves a symlink on the way. The lexical checks on names
only choose the error message. Metadata is set through ``/proc/self/fd/<fd>`` of
an ``O_PATH`` descriptor opened with ``O_NOFOLLOW``, so it lands on the inode
that was created and on nothing a symlink points at.

The snapshot holds only this layer's changes, stored as overlayfs stores them:

- ``D/.wh.NAME`` becomes a character device 0:0 at ``D/NAME``;
- ``D/.wh..wh..opq`` sets the xattr ``trusted.overlay.opaque=y`` on ``D``.

A whiteout hides lower layers only, never an entry of the same layer (the OCI
image spec's rule), wherever the two stand in the tar. So when a layer both
whites out ``X`` and creates ``X``, the new ``X`` is kept, and if it is a
directory it is made opaque, because the lower ``X`` and its contents are gone.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar, cast

from dockyard.errors import DockyardError, ImageError, StoreError, UnsafeLayer
from dockyard.image.tarreader import TarReader

log = logging.getLogger(__name__)

T = TypeVar("T")

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# Names starting with this prefix are AUFS metadata (".wh..wh.plnk"), not whiteouts.
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"
# overlayfs reads its metadata from these namespaces ("user." with the
# userxattr mount option), so a layer must not be able to set them.
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
PAX_XATTR_PREFIX = "SCHILY.xattr."

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Linux resolves at most 40 symlinks in one path lookup.
MAX_SYMLINKS = 40

_CHUNK = 1 << 20
# Chunks (of up to _CHUNK bytes) that the decompressing or the hashing thread may hold queued.
_PREFETCH_CHUNKS = 8
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Directory fds an unpacker keeps open between members (see _Unpacker.dirs).
_DIR_CACHE_SIZE = 64
# uid_t and gid_t value -1, which chown reads as "leave unchanged".
_NO_ID = 0xFFFFFFFF
# Mode bits that open, mkdir and symlink may not give a new inode (setuid, setgid, sticky).
_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
# A directory's default ACL replaces the umask for the inodes created in it.
_DEFAULT_ACL_XATTR = "system.posix_acl_default"


@dataclass(frozen=True)
class LayerResult:
    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream
    size: int  # bytes of regular file content unpacked, including copied-up lower files


# Decompression --------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """A raw reader that returns ``head`` and then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        super().__init__()
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
        else:
            data = self._raw.read(size)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ZstdFrames:
    """Follow zstd frame boundaries in the compressed bytes, to detect a truncated stream.

    python-zstandard's stream reader (0.25) returns end of file on a truncated
    frame without an error, so the frame and block headers (RFC 8878) are
    parsed here as the bytes go by.
    """

    _ZSTD_MAGIC = 0xFD2FB528
    _SKIPPABLE_MIN, _SKIPPABLE_MAX = 0x184D2A50, 0x184D2A5F

    def __init__(self) -> None:
        self._state = "magic"
        self._need = 4  # bytes of the header being parsed
        self._buffer = b""
        self._skip = 0  # bytes of block content, skippable frame or checksum still to pass
        self._checksum = False

    def feed(self, data: bytes) -> None:
        position = 0
        while position < len(data):
            if self._skip:
                passed = min(self._skip, len(data) - position)
                self._skip -= passed
                position += passed
                continue
            take = min(self._need - len(self._buffer), len(data) - position)
            self._buffer += data[position : position + take]
            position += take
            if len(self._buffer) == self._need:
                header, self._buffer = self._buffer, b""
                self._advance(header)

    def _advance(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        if self._state == "magic":
            if value == self._ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
            elif self._SKIPPABLE_MIN <= value <= self._SKIPPABLE_MAX:
                self._state, self._need = "skippable-size", 4
            else:
                raise ImageError(f"invalid zstd layer stream: unknown frame magic 0x{value:08x}")
        elif self._state == "skippable-size":
            self._skip = value
            self._state, self._need = "magic", 4
        elif self._state == "descriptor":
            single_segment = bool(value & 0x20)
            self._checksum = bool(value & 0x04)
            content_size_bytes = (1 if single_segment else 0, 2, 4, 8)[value >> 6]
            dictionary_bytes = (0, 1, 2, 4)[value & 0x03]
            rest = (0 if single_segment else 1) + dictionary_bytes + content_size_bytes
            if rest:
                self._state, self._need = "header", rest
            else:
                self._state, self._need = "block", 3
        elif self._state == "header":
            self._state, self._need = "block", 3
        else:  # a block header
            last = value & 1
            block_type = (value >> 1) & 3
            if block_type == 3:
                raise ImageError("invalid zstd layer stream: reserved block type")
            self._skip = 1 if block_type == 1 else value >> 3
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = "magic", 4

    @property
    def complete(self) -> bool:
        """True when the bytes so far end exactly after a frame."""
        return self._state == "magic" and not self._buffer and not self._skip


class _FrameTracking:
    """A reader that shows every chunk it returns to a ``_ZstdFrames``."""

    def __init__(self, raw: IO[bytes], frames: _ZstdFrames) -> None:
        self._raw = raw
        self._frames = frames

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._frames.feed(data)
        return data


class _ZstdStream(io.RawIOBase):
    """A raw zstd decompressing reader that raises ImageError on corrupt or truncated input."""

    def __init__(self, raw: IO[bytes]) -> None:
        import zstandard

        super().__init__()
        self._error = zstandard.ZstdError
        self._raw = raw
        self._frames = _ZstdFrames()
        source = cast(IO[bytes], _FrameTracking(raw, self._frames))
        self._reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            count = self._reader.readinto(buffer)
        except self._error as e:
            raise ImageError(f"invalid zstd layer stream: {e}") from e
        if count == 0 and len(buffer) and not self._frames.complete:
            raise ImageError("invalid zstd layer stream: it ends inside a frame (truncated)")
        return count

    def close(self) -> None:
        self._reader.close()
        self._raw.close()
        super().close()


class _Prefetcher(io.RawIOBase):
    """A reader that calls ``source.read`` in a thread of its own, up to ``_PREFETCH_CHUNKS`` chunks ahead.

    zlib and zstd release the GIL while they decompress, so decompression then
    runs on another CPU while the caller parses the tar and writes files.
    ``close`` stops the thread and closes ``source``.
    """

    def __init__(self, source: IO[bytes]) -> None:
        import queue
        import threading

        super().__init__()
        self._source = source
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=_PREFETCH_CHUNKS)
        self._stop = threading.Event()
        self._chunk = b""
        self._position = 0
        self._error: BaseException | None = None
        self._eof = False
        # The thread holds no reference to self, so an unclosed reader is still collected, and closed.
        self._thread = threading.Thread(
            target=_prefetch, args=(source, self._chunks, self._stop), name="layer-decompress", daemon=True
        )
        self._thread.start()

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bool:
        """Take the next chunk from the thread; return False at the end of the stream."""
        if self._error is not None:
            raise self._error
        if self._eof:
            return False
        item = self._chunks.get()
        if isinstance(item, BaseException):
            self._error = item
            raise item
        if not item:
            self._eof = True
            return False
        self._chunk, self._position = item, 0
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self._position >= len(self._chunk) and not self._next_chunk():
            return b""
        if self._position == 0 and size >= len(self._chunk):
            data = self._chunk
        else:
            data = self._chunk[self._position : self._position + size]
        self._position += len(data)
        return data

    def readall(self) -> bytes:
        parts = []
        while data := self.read(_CHUNK):
            parts.append(data)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def close(self) -> None:
        if self.closed:
            return
        self._stop.set()
        # Emptying the queue wakes a thread that waits to put a chunk, so that it sees the stop.
        while self._thread.is_alive():
            while not self._chunks.empty():
                self._chunks.get_nowait()
            self._thread.join(timeout=0.05)
        self._source.close()
        super().close()


def _prefetch(source: IO[bytes], chunks: Any, stop: Any) -> None:
    """Read ``source`` into the queue ``chunks`` until its end (an empty chunk), an error, or ``stop``."""
    import queue

    def put(item: bytes | BaseException) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        while not stop.is_set():
            data = source.read(_CHUNK)
            if not put(data) or not data:
                return
    except BaseException as error:  # handed to the reading thread, which raises it
        put(error)


def _is_skippable_frame(head: bytes) -> bool:
    """Tell whether ``head`` starts a zstd skippable frame (magic 0x184D2A50 to 0x184D2A5F)."""
    return len(head) == 4 and head[0] & 0xF0 == 0x50 and head[1:] == b"\x2a\x4d\x18"


def decompressed(fileobj: BinaryIO, media_type: str | None, prefetch: bool = False) -> BinaryIO:
    """Return a reader of the uncompressed tar inside ``fileobj`` (gzip, zstd or plain).

    The compression is taken from the magic bytes, because archives carry no
    media type. ``media_type``, when given, must be a known layer type, or
    InvalidManifest is raised. When it disagrees with the magic bytes, the
    disagreement is logged and the magic bytes win.

    With ``prefetch``, compressed input is decompressed ahead in a thread of
    its own (see _Prefetcher). The caller must then close the reader before
    it closes ``fileobj``, because the thread may still be reading it.
    """
    from dockyard.image import mediatypes

    declared = mediatypes.layer_compression(media_type) if media_type is not None else None
    head = b""
    while len(head) < len(ZSTD_MAGIC):
        chunk = fileobj.read(len(ZSTD_MAGIC) - len(head))
        if not chunk:
            break
        head += chunk
    if head.startswith(GZIP_MAGIC):
        sniffed: str | None = "gzip"
    elif head.startswith(ZSTD_MAGIC) or _is_skippable_frame(head):
        sniffed = "zstd"
    else:
        sniffed = None
    if media_type is not None and declared != sniffed:
        log.debug("layer of media type %s starts with %s data, unpacking it as such", media_type, sniffed or "tar")

    stream = io.BufferedReader(_Prefixed(head, fileobj), _CHUNK)
    if sniffed == "gzip":
        gunzipped = cast(BinaryIO, _gzip_module().GzipFile(fileobj=stream, mode="rb"))
        return cast(BinaryIO, _Prefetcher(gunzipped)) if prefetch else gunzipped
    if sniffed == "zstd":
        unzstded = cast(BinaryIO, io.BufferedReader(_ZstdStream(stream), _CHUNK))
        return cast(BinaryIO, _Prefetcher(unzstded)) if prefetch else unzstded
    return stream


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Compute the OCI chain IDs: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append("sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


# Reading a stack of snapshots -------------------------------------------------


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def _find(layers: Sequence[Path], comps: Sequence[str]) -> Path | None:
    """Return the path of ``comps`` in the topmost of ``layers`` that has it, as overlayfs would merge them.

    ``layers`` are snapshot directories, topmost first. A whiteout hides the
    path in the layers below, and so does an opaque directory on the way. A
    non-directory on the way, a symlink included, ends the lookup, because
    this function does not follow symlinks.
    """
    for layer in layers:
        current = layer
        hides_lower = False
        for index, comp in enumerate(comps):
            current = current / comp
            st = _lstat(current)
            if st is None:
                break
            if _is_whiteout(st):
                return None
            if index == len(comps) - 1:
                return current
            if not stat.S_ISDIR(st.st_mode):
                return None
            if _is_opaque(current):
                hides_lower = True
        else:
            return layer  # empty comps: the root
        if hides_lower:
            return None
    return None


def _split(path: str) -> list[str]:
    return [comp for comp in path.split("/") if comp not in ("", ".")]


def read_file(lowers: Sequence[Path], path: str) -> bytes | None:
    """Read ``path`` from the merged view of snapshot directories ``lowers`` (topmost first).

    Whiteouts and opaque directories are honoured, and symlinks are resolved
    inside the merged root as the container would see them (an absolute
    target or ``..`` never leaves it). Returns None when the path does not
    exist, and raises ImageError when it is not a regular file or the
    symlinks loop.
    """
    resolved: list[str] = []
    remaining = _split(path)
    hops = 0
    while remaining:
        comp = remaining.pop(0)
        if comp == "..":
            if resolved:
                resolved.pop()
            continue
        found = _find(lowers, resolved + [comp])
        if found is None:
            return None
        st = os.lstat(found)
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise ImageError(f"too many levels of symbolic links reading {path!r} from the image")
            target = os.readlink(found)
            if target.startswith("/"):
                resolved = []
            remaining = _split(target) + remaining
            continue
        if remaining and not stat.S_ISDIR(st.st_mode):
            return None
        resolved.append(comp)

    found = _find(lowers, resolved)
    if found is None:
        return None
    st = os.lstat(found)
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{path!r} in the image is not a regular file")
    fd = os.open(found, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


# Unpacking --------------------------------------------------------------------


class _HashingReader:
    """A reader that computes the SHA-256 of everything read through it in a thread of its own.

    Only the calling thread reads ``raw``, and it hands each chunk over to the
    hashing thread. hashlib releases the GIL while it hashes 2 KiB or more
    (CPython 3.11), so hashing runs on another CPU while the caller parses the
    tar and writes files. ``close`` stops the thread and leaves ``raw`` open.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        import queue
        import threading

        self._raw = raw
        self._hash = hashlib.sha256()
        # Bounded, so that a slow hashing thread holds back the reader instead of piling up chunks.
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=_PREFETCH_CHUNKS)
        self._thread = threading.Thread(target=_hash_chunks, args=(self._chunks, self._hash), name="layer-hash", daemon=True)
        self._thread.start()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self._chunks.put(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        """Return ``sha256:<hex>`` of everything read so far, and stop the thread."""
        self.close()
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._chunks.put(b"")
            self._thread.join()


def _hash_chunks(chunks: Any, hasher: Any) -> None:
    """Feed the chunks from the queue ``chunks`` to ``hasher`` until an empty one."""
    while chunk := chunks.get():
        hasher.update(chunk)


def _escapes(directory: Sequence[str], link_target: str) -> bool:
    """Tell whether a relative symlink in ``directory`` climbs above the root, read lexically."""
    if link_target.startswith("/"):
        return False
    comps = list(directory)
    for comp in link_target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not comps:
                return True
            comps.pop()
        else:
            comps.append(comp)
    return False


def _proc_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _copy_xattrs(source: Path, dest: int | str, follow_symlinks: bool = True) -> list[str]:
    """Copy the xattrs of ``source``, except overlayfs metadata, to ``dest``, and return the names copied."""
    copied = []
    for name in os.listxattr(source, follow_symlinks=False):
        if name.startswith(OVERLAY_XATTR_PREFIXES):
            continue
        os.setxattr(dest, name, os.getxattr(source, name, follow_symlinks=False), follow_symlinks=follow_symlinks)
        copied.append(name)
    return copied


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _umask() -> int | None:
    """Return the process umask from /proc/self/status (Linux 4.7 and later), or None where it is not shown.

    os.umask can only read the mask by setting it, which would change it for
    a moment for every thread of the process.
    """
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    return None


def _has_default_acl(fd: int) -> bool:
    try:
        os.getxattr(fd, _DEFAULT_ACL_XATTR)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    return True


class _Unpacker:
    """The state of one ``apply``: the snapshot root's fd, open directory fds and the directory times to set last."""

    def __init__(self, root_fd: int, target: Path, layer: str, lowers: Sequence[Path]) -> None:
        self.root_fd = root_fd
        self.target = target
        self.layer = layer
        self.lowers = list(lowers)
        self.size = 0
        # Directory mtimes in ns, set after all members, because adding an entry changes them.
        self.dir_times: dict[tuple[str, ...], int] = {}
        self.member = ""
        # Open fds of this snapshot's directories by path, least recently used first. Tar
        # members of one directory usually follow each other, so most lookups hit.
        self.dirs: dict[tuple[str, ...], int] = {}
        # fds dropped from ``dirs`` that the current member may still use; closed after it.
        self.retired: list[int] = []

        # The creator's ids and the umask decide what a new inode gets, so that chown
        # and chmod run only where they change something (see new_inode_exact).
        # Until probe_root has run, no new inode counts as exact.
        self.creator = (os.geteuid(), os.getegid())
        self.umask = 0o777
        # Every directory of this snapshot that has the setgid bit, as far as this
        # apply has set it. Extra entries only cost a chown or chmod.
        self.setgid_dirs: set[tuple[str, ...]] = set()
        # Set once any directory of the snapshot has a default ACL, and then every mode is set with chmod.
        self.default_acl = True

    def probe_root(self) -> None:
        """Read the umask and the snapshot root's setgid bit and default ACL, which decide what new inodes get."""
        umask = _umask()
        # An unknown umask makes every mode go through chmod.
        self.umask = umask if umask is not None else 0o777
        if os.fstat(self.root_fd).st_mode & stat.S_ISGID:
            self.setgid_dirs.add(())
        self.default_acl = _has_default_acl(self.root_fd)

    def unsafe(self, reason: str) -> UnsafeLayer:
        return UnsafeLayer(self.layer, self.member, reason)

    def invalid(self, reason: str) -> ImageError:
        return ImageError(f"layer {self.layer}: invalid member {self.member!r}: {reason}")

    def clean(self, name: str) -> tuple[str, ...]:
        """Split a member name into components.

        A leading "/" is dropped, "." is skipped and ".." removes the previous component.
        """
        if "\0" in name:
            raise self.invalid("the name contains a NUL byte")
        parts = name.split("/")
        if "" not in parts and "." not in parts and ".." not in parts:
            return tuple(parts)
        comps: list[str] = []
        for comp in parts:
            if comp in ("", "."):
                continue
            if comp == "..":
                if not comps:
                    raise self.unsafe(f"the path {name!r} climbs out of the layer root")
                comps.pop()
            else:
                comps.append(comp)
        return tuple(comps)

    # Directory fds ----------------------------------------------------------

    def remember_dir(self, comps: tuple[str, ...], fd: int) -> None:
        """Cache ``fd`` as the directory ``comps``, retiring the least recently used entry when full."""
        previous = self.dirs.pop(comps, None)
        if previous is not None:
            self.retired.append(previous)
        self.dirs[comps] = fd
        if len(self.dirs) > _DIR_CACHE_SIZE:
            oldest = next(iter(self.dirs))
            self.retired.append(self.dirs.pop(oldest))

    def forget_dirs(self) -> None:
        """Drop every cached directory fd, because a directory of this snapshot was removed.

        A cached fd keeps naming the inode it was opened on, so after a removal
        its path may name something else, such as a symlink put in its place.
        """
        self.retired.extend(self.dirs.values())
        self.dirs.clear()

    def close_retired(self) -> None:
        while self.retired:
            os.close(self.retired.pop())

    def close(self) -> None:
        self.forget_dirs()
        self.close_retired()

    # Walking --------------------------------------------------------------

    def open_dir(self, comps: Sequence[str], create: bool) -> int | None:
        """Return an fd of the directory ``comps`` of this snapshot, opened without following symlinks.

        With ``create``, missing directories are made (with the metadata of the
        same directory in the lower layers, if there is one) and whiteouts on
        the way become opaque directories. Without it, returns None when the
        directory is missing, whited out or not a directory. A symlink on the
        way raises UnsafeLayer in both cases. The fd belongs to the directory
        cache: the caller must not close it, and it stays open until the
        current member is done.
        """
        key = tuple(comps)
        if not key:
            return self.root_fd
        cached = self.dirs.pop(key, None)
        if cached is not None:
            self.dirs[key] = cached  # now the most recently used
            return cached

        # Walk from the longest cached prefix. Directories between it and the
        # target are opened and closed on the way, not cached.
        start = len(key) - 1
        while start > 0 and key[:start] not in self.dirs:
            start -= 1
        fd = self.open_dir(key[:start], create) if start else self.root_fd
        assert fd is not None
        owned = False
        try:
            for index in range(start, len(key)):
                child = self.open_child(fd, key[: index + 1], create)
                if owned:
                    os.close(fd)
                    owned = False
                if child is None:
                    return None
                fd, owned = child, True
        except BaseException:
            if owned:
                os.close(fd)
            raise
        self.remember_dir(key, fd)
        return fd

    def open_child(self, parent_fd: int, comps: tuple[str, ...], create: bool) -> int | None:
        """Open the last component of ``comps`` in ``parent_fd`` as a directory; the caller owns the fd."""
        name = comps[-1]
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                raise
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise self.unsafe(f"the path passes through the symlink {'/'.join(comps)!r}")
        if not create:
            return None
        return self.make_implied_dir(parent_fd, comps, st)

    def make_implied_dir(self, parent_fd: int, comps: Sequence[str], existing: os.stat_result | None) -> int:
        """Create a directory that a member needs but the layer does not list; return an fd the caller owns."""
        name = comps[-1]
        path = "/".join(comps)
        if existing is not None and not _is_whiteout(existing):
            raise self.invalid(f"its parent {path!r} is not a directory")
        # Looked up before mkdir, with this snapshot first, because its opaque
        # directories and whiteouts hide the lower directory.
        lower = _find([self.target, *self.lowers], comps) if existing is None else None
        lower_st = os.lstat(lower) if lower is not None else None
        if existing is not None:
            # The layer deleted the lower path and then put entries under it: the
            # new directory must hide the lower one's contents.
            os.unlink(name, dir_fd=parent_fd)
        os.mkdir(name, 0o700, dir_fd=parent_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            if lower is not None and lower_st is not None and stat.S_ISDIR(lower_st.st_mode):
                os.chown(fd, lower_st.st_uid, lower_st.st_gid)
                os.chmod(fd, stat.S_IMODE(lower_st.st_mode))
                if _DEFAULT_ACL_XATTR in _copy_xattrs(lower, fd):
                    self.default_acl = True
                self.dir_times[tuple(comps)] = lower_st.st_mtime_ns
                self.note_dir_mode(tuple(comps), lower_st.st_mode)
            else:
                os.chmod(fd, 0o755)
                self.note_dir_mode(tuple(comps), 0o755)
            if existing is not None:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
        except BaseException:
            os.close(fd)
            raise
        log.debug("layer %s: created implied directory %s", self.layer, path)
        return fd

    def remove_existing(self, parent_fd: int, name: str) -> os.stat_result | None:
        """Remove whatever this layer already has at ``name``, so a new entry never writes through it."""
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            self.forget_dirs()
            shutil.rmtree(name, dir_fd=parent_fd)
        else:
            os.unlink(name, dir_fd=parent_fd)
        return st

    def replace(self, parent_fd: int, name: str, create: Callable[[], T]) -> T:
        """Run ``create``, which fails with FileExistsError while ``name`` exists, removing the entry first if needed.

        Trying first saves a stat per member, because most names are new.
        """
        try:
            return create()
        except FileExistsError:
            self.remove_existing(parent_fd, name)
            return create()

    # Metadata -------------------------------------------------------------

    def ids(self, info: tarfile.TarInfo) -> tuple[int, int]:
        uid, gid = info.uid, info.gid
        if not 0 <= uid < _NO_ID:
            raise self.unsafe(f"uid {uid} is out of range")
        if not 0 <= gid < _NO_ID:
            raise self.unsafe(f"gid {gid} is out of range")
        return uid, gid

    def xattrs(self, info: tarfile.TarInfo) -> dict[str, bytes]:
        result = {}
        for key, value in info.pax_headers.items():
            if not key.startswith(PAX_XATTR_PREFIX):
                continue
            name = key[len(PAX_XATTR_PREFIX) :]
            if name.startswith(OVERLAY_XATTR_PREFIXES):
                raise self.unsafe(f"the xattr {name!r} is overlayfs metadata")
            result[name] = value.encode("utf-8", "surrogateescape")
        return result

    def set_inode_metadata(
        self, target: int | str, uid: int, gid: int, mode: int, xattrs: dict[str, bytes], created: bool = False
    ) -> None:
        """Set owner, mode and xattrs on ``target``: an fd opened for reading or writing, or a path to follow.

        With ``created``, ``target`` was just created with ``mode`` in a directory
        that ``self.new_inode_exact`` found exact for it, and chown and chmod are
        made only where they still change something.
        """
        # chown clears setuid, setgid and security.capability, so it goes first.
        if not created or (uid, gid) != self.creator:
            os.chown(target, uid, gid)
        if not created or mode & _SPECIAL_BITS:
            os.chmod(target, mode)
        for key, value in xattrs.items():
            self.set_xattr(target, key, value)

    def new_inode_exact(self, parent: tuple[str, ...], mode: int) -> bool:
        """Tell whether an inode created in the directory ``parent`` with ``mode`` gets those permission bits and the creator's ids.

        A new inode is owned by the process's effective uid and gid, but takes
        its directory's group when that directory is setgid (and a new directory
        then takes the setgid bit too). Its mode is the requested one without the
        umask's bits, unless the directory has a default ACL, which applies
        instead. The setuid, setgid and sticky bits are left out of the check,
        because ``set_inode_metadata`` always sets them with chmod.
        """
        return not (mode & self.umask or self.default_acl or parent in self.setgid_dirs)

    def note_dir_mode(self, comps: tuple[str, ...], mode: int) -> None:
        """Record whether the directory ``comps`` now has the setgid bit."""
        if mode & stat.S_ISGID:
            self.setgid_dirs.add(comps)
        else:
            self.setgid_dirs.discard(comps)

    def set_special_metadata(self, parent_fd: int, name: str, info: tarfile.TarInfo) -> None:
        """Set the metadata of a device or FIFO through an ``O_PATH`` fd, because opening it could block or reach a device."""
        uid, gid = self.ids(info)
        xattrs = self.xattrs(info)
        mtime_ns = int(info.mtime * 1_000_000_000)
        fd = os.open(name, _PATH_FLAGS, dir_fd=parent_fd)
        try:
            proc = _proc_path(fd)
            self.set_inode_metadata(proc, uid, gid, stat.S_IMODE(info.mode), xattrs)
            os.utime(proc, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def set_xattr(self, target: int | str, key: str, value: bytes, follow_symlinks: bool = True) -> None:
        """Set one xattr from the layer, skipping it with a warning where the filesystem has no support for it."""
        if key == _DEFAULT_ACL_XATTR:
            self.default_acl = True
        try:
            os.setxattr(target, key, value, follow_symlinks=follow_symlinks)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            log.warning("layer %s: skipped xattr %s of member %r: %s", self.layer, key, self.member, e.strerror)

    def set_dir_times(self) -> None:
        # Sorted, so that a parent comes before its children and stays in the directory cache for them.
        for comps in sorted(self.dir_times):
            mtime_ns = self.dir_times[comps]
            try:
                fd = self.open_dir(comps, create=False)
            except UnsafeLayer:
                fd = None  # a later member replaced a directory on the way with a symlink
            if fd is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            self.close_retired()

    # Members --------------------------------------------------------------

    def apply_member(self, archive: TarReader, info: tarfile.TarInfo) -> None:
        self.member = info.name
        comps = self.clean(info.name)
        if not comps:
            self.apply_root(info)
            return
        name = comps[-1]
        # One substring test spares most members the two prefix tests.
        if WHITEOUT_PREFIX in info.name:
            if comps[0].startswith(WHITEOUT_META_PREFIX):
                # NOTE: a hard link to a file under ".wh..wh.plnk" (old AUFS layers)
                # therefore fails as "not found", because the plink directory is not unpacked.
                log.debug("layer %s: skipped AUFS metadata member %s", self.layer, self.member)
                return
            if name.startswith(WHITEOUT_PREFIX):
                self.apply_whiteout(comps)
                return
        # The type is compared here as TarInfo's isreg(), isdir() and the like compare it.
        member_type = info.type
        if member_type == tarfile.LNKTYPE:
            self.apply_hardlink(comps, info)
            return

        parent_fd = self.open_dir(comps[:-1], create=True)
        assert parent_fd is not None
        if member_type in tarfile.REGULAR_TYPES:
            self.write_file(parent_fd, comps, archive, info)
        elif member_type == tarfile.DIRTYPE:
            self.make_dir(parent_fd, comps, info)
        elif member_type == tarfile.SYMTYPE:
            self.replace(parent_fd, name, lambda: os.symlink(info.linkname, name, dir_fd=parent_fd))
            self.set_symlink_metadata(parent_fd, comps, info)
        elif info.ischr() or info.isblk():
            if info.ischr() and info.devmajor == 0 and info.devminor == 0:
                raise self.unsafe(
                    "a character device 0:0 would read as an overlayfs whiteout, and layers mark deletions "
                    "with .wh. files"
                )
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
            device = os.makedev(info.devmajor, info.devminor)
            self.replace(parent_fd, name, lambda: os.mknod(name, kind | 0o600, device, dir_fd=parent_fd))
            self.set_special_metadata(parent_fd, name, info)
        elif info.isfifo():
            self.replace(parent_fd, name, lambda: os.mkfifo(name, 0o600, dir_fd=parent_fd))
            self.set_special_metadata(parent_fd, name, info)
        else:
            raise self.invalid(f"unsupported tar member type {info.type!r}")

    def apply_root(self, info: tarfile.TarInfo) -> None:
        if not info.isdir():
            raise self.unsafe("the layer root can only be a directory")
        uid, gid = self.ids(info)
        self.set_inode_metadata(self.root_fd, uid, gid, stat.S_IMODE(info.mode), self.xattrs(info))
        self.note_dir_mode((), info.mode)
        self.dir_times[()] = int(info.mtime * 1_000_000_000)

    def make_dir(self, parent_fd: int, comps: tuple[str, ...], info: tarfile.TarInfo) -> None:
        uid, gid = self.ids(info)
        xattrs = self.xattrs(info)
        mode = stat.S_IMODE(info.mode)
        name = comps[-1]
        created = self.new_inode_exact(comps[:-1], mode)
        try:
            os.mkdir(name, mode & 0o777 if created else 0o700, dir_fd=parent_fd)
        except FileExistsError:
            created = False
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            # An existing directory keeps its contents and any opaque xattr; its metadata is set again.
            if not stat.S_ISDIR(st.st_mode):
                self.remove_existing(parent_fd, name)
                os.mkdir(name, 0o700, dir_fd=parent_fd)
                if _is_whiteout(st):
                    fd = self.open_dir(comps, create=False)
                    assert fd is not None
                    os.setxattr(fd, OPAQUE_XATTR, b"y")
        # Cached, because the directory's own members usually come next.
        fd = self.open_dir(comps, create=False)
        assert fd is not None
        self.set_inode_metadata(fd, uid, gid, mode, xattrs, created)
        self.note_dir_mode(comps, mode)
        self.dir_times[comps] = int(info.mtime * 1_000_000_000)

    def write_file(self, parent_fd: int, comps: tuple[str, ...], archive: TarReader, info: tarfile.TarInfo) -> None:
        uid, gid = self.ids(info)
        xattrs = self.xattrs(info)
        mtime_ns = int(info.mtime * 1_000_000_000)
        mode = stat.S_IMODE(info.mode)
        name = comps[-1]
        created = self.new_inode_exact(comps[:-1], mode)
        # An fd opened for writing by the creating open can write whatever the file's mode.
        create_mode = mode & 0o777 if created else 0o600
        fd = self.replace(parent_fd, name, lambda: os.open(name, _CREATE_FLAGS, create_mode, dir_fd=parent_fd))
        try:
            unread = info.size
            while unread and (chunk := archive.read_data(_CHUNK)):
                unread -= len(chunk)
                written = os.write(fd, chunk)
                if written < len(chunk):
                    _write_all(fd, memoryview(chunk)[written:])
            # The fd is the new file's own, so metadata cannot land anywhere else.
            self.set_inode_metadata(fd, uid, gid, mode, xattrs, created)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)
        self.size += info.size

    def set_symlink_metadata(self, parent_fd: int, comps: tuple[str, ...], info: tarfile.TarInfo) -> None:
        uid, gid = self.ids(info)
        mtime_ns = int(info.mtime * 1_000_000_000)
        name = comps[-1]
        # Only the owner needs checking, because a symlink's mode is always 0777.
        if (uid, gid) != self.creator or comps[:-1] in self.setgid_dirs:
            os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
        for key, value in self.xattrs(info).items():
            self.set_xattr(f"{_proc_path(parent_fd)}/{name}", key, value, follow_symlinks=False)
        os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def apply_whiteout(self, comps: tuple[str, ...]) -> None:
        name = comps[-1]
        if name == OPAQUE_MARKER:
            fd = self.open_dir(comps[:-1], create=True)
            assert fd is not None
            os.setxattr(fd, OPAQUE_XATTR, b"y")
            return
        if name.startswith(WHITEOUT_META_PREFIX):
            log.debug("layer %s: skipped AUFS metadata member %s", self.layer, self.member)
            return

        hidden = name[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise self.unsafe(f"the whiteout names {hidden!r}, which is not a file name")
        parent_fd = self.open_dir(comps[:-1], create=True)
        assert parent_fd is not None
        try:
            st = os.stat(hidden, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent_fd)
            return
        if stat.S_ISDIR(st.st_mode):
            # This layer's directory stays, but the lower one's contents must not show through it.
            fd = os.open(hidden, _PATH_FLAGS, dir_fd=parent_fd)
            try:
                os.setxattr(_proc_path(fd), OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
        # A non-directory of this layer already hides the lower path.

    def apply_hardlink(self, comps: tuple[str, ...], info: tarfile.TarInfo) -> None:
        target = self.clean(info.linkname)
        if not target:
            raise self.unsafe("a hard link to the layer root")
        source_fd = self.open_dir(target[:-1], create=False)
        source_st = None
        if source_fd is not None:
            try:
                source_st = os.stat(target[-1], dir_fd=source_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
        if source_st is None or _is_whiteout(source_st):
            source_fd = self.copy_up(target)
        else:
            link_dir_fd = source_fd
            self.check_link_source(target, source_st, lambda: os.readlink(target[-1], dir_fd=link_dir_fd))

        parent_fd = self.open_dir(comps[:-1], create=True)
        assert parent_fd is not None
        if comps == target:
            return
        if target[: len(comps)] == comps:
            # Replacing the link's path would delete the directory that contains the target.
            raise self.invalid(f"a hard link to {'/'.join(target)} inside the directory it replaces")
        self.remove_existing(parent_fd, comps[-1])
        os.link(target[-1], comps[-1], src_dir_fd=source_fd, dst_dir_fd=parent_fd, follow_symlinks=False)

    def check_link_source(self, target: tuple[str, ...], st: os.stat_result, read_link: Callable[[], str]) -> None:
        link_path = "/".join(target)
        if stat.S_ISDIR(st.st_mode):
            raise self.invalid(f"a hard link to the directory {link_path!r}")
        if stat.S_ISLNK(st.st_mode) and _escapes(target[:-1], read_link()):
            raise self.unsafe(f"a hard link to the symlink {link_path!r}, which points out of the layer root")

    def copy_up(self, target: tuple[str, ...]) -> int:
        """Copy the lower layers' file at ``target`` into this snapshot; return a cached fd of its directory."""
        # This snapshot goes first, because its whiteouts and opaque directories hide lower files.
        found = _find([self.target, *self.lowers], target)
        link_path = "/".join(target)
        if found is None or found.is_relative_to(self.target):
            raise self.invalid(f"the hard link target {link_path!r} is neither in this layer nor below it")
        st = os.lstat(found)
        self.check_link_source(target, st, lambda: os.readlink(found))

        parent_fd = self.open_dir(target[:-1], create=True)
        assert parent_fd is not None
        name = target[-1]
        if stat.S_ISREG(st.st_mode):
            source = os.open(found, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=parent_fd)
                with os.fdopen(fd, "wb") as dest, os.fdopen(os.dup(source), "rb") as src:
                    shutil.copyfileobj(src, dest, _CHUNK)
            finally:
                os.close(source)
            self.size += st.st_size
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(found), name, dir_fd=parent_fd)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=parent_fd, follow_symlinks=False)
            os.utime(name, ns=(st.st_mtime_ns, st.st_mtime_ns), dir_fd=parent_fd, follow_symlinks=False)
            log.debug("layer %s: copied up symlink %s from %s", self.layer, link_path, found)
            return parent_fd
        else:
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=parent_fd)

        fd = os.open(name, _PATH_FLAGS, dir_fd=parent_fd)
        try:
            proc = _proc_path(fd)
            os.chown(proc, st.st_uid, st.st_gid)
            os.chmod(proc, stat.S_IMODE(st.st_mode))
            _copy_xattrs(found, proc)
            os.utime(proc, ns=(st.st_mtime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)
        log.debug("layer %s: copied up %s from %s for a hard link", self.layer, link_path, found)
        return parent_fd


def _make_dirs_writable(path: str) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return
    if st.st_mode & 0o700 != 0o700:
        os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _make_dirs_writable(entry.path)


def remove_tree(path: Path) -> None:
    """Remove a directory tree, making its directories writable first if that is needed."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except PermissionError:
        _make_dirs_writable(str(path))
        shutil.rmtree(path)


def apply(tar_stream: BinaryIO, target: Path, layer: str, lowers: Sequence[Path] = ()) -> LayerResult:
    """Unpack an uncompressed layer tar into the empty snapshot directory ``target``.

    ``layer`` is the layer's digest, used in error messages. ``lowers`` are the
    snapshot directories below, topmost first; hard links to their files are
    made by copying the file up into this snapshot first. The whole stream is
    read, past the tar end marker, to compute the diff ID.

    Raises UnsafeLayer for a member that would reach outside ``target``,
    ImageError for a malformed layer and StoreError for a failed write. On
    any error ``target`` is removed.
    """
    target = Path(target)
    try:
        root_fd = os.open(target, _DIR_FLAGS)
    except OSError as e:
        raise StoreError(f"cannot open snapshot directory {target} for layer {layer}: {e.strerror}") from e
    unpacker = _Unpacker(root_fd, target, layer, lowers)
    log.debug("unpacking layer %s into %s", layer, target)
    reader: _HashingReader | None = None
    try:
        if os.listdir(root_fd):
            raise StoreError(f"snapshot directory {target} for layer {layer} is not empty")
        unpacker.probe_root()
        # Hashing in this thread would cost about as much time as parsing the tar.
        # It gets a thread of its own even after a prefetching reader, whose
        # thread is busy decompressing.
        reader = _HashingReader(tar_stream)
        # An empty stream is read as an empty layer.
        archive = TarReader(reader)
        for info in archive:
            unpacker.apply_member(archive, info)
            unpacker.close_retired()
        reader.drain()
        unpacker.set_dir_times()
    except BaseException as e:
        if reader is not None:
            reader.close()
        unpacker.close()
        os.close(root_fd)
        remove_tree(target)
        if isinstance(e, DockyardError):
            if layer in str(e):
                raise
            # Raised by the decompressing reader, which has no layer digest to name.
            raise ImageError(f"layer {layer}: {e}") from e
        if isinstance(e, (tarfile.TarError, EOFError, ValueError, OverflowError)) or _is_decompression_error(e):
            raise ImageError(f"layer {layer}: invalid tar stream at member {unpacker.member!r}: {e}") from e
        if isinstance(e, OSError):
            where = f"member {unpacker.member!r} of layer {layer}" if unpacker.member else f"layer {layer}"
            reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise StoreError(f"cannot unpack {where} into {target}: {reason}") from e
        raise
    unpacker.close()
    os.close(root_fd)
    result = LayerResult(diff_id=reader.digest(), size=unpacker.size)
    log.debug("unpacked layer %s: diff ID %s, %d bytes", layer, result.diff_id, result.size)
    return result


def _gzip_module() -> Any:
    """Return isal's igzip, which decompresses about three times as fast as zlib, or the standard gzip."""
    try:
        from isal import igzip
    except ImportError:
        import gzip

        return gzip
    return igzip


def _is_decompression_error(error: BaseException) -> bool:
    import gzip
    import zlib

    kinds: tuple[type[BaseException], ...] = (gzip.BadGzipFile, zlib.error)
    try:
        from isal import isal_zlib
    except ImportError:
        pass
    else:
        kinds += (isal_zlib.error,)
    return isinstance(error, kinds)

"""A container's files: copy in and out as tar streams, diff, export and commit.

Every path inside a container is resolved with openat2(2) and
``RESOLVE_IN_ROOT`` against a descriptor of the container's root. Symlinks,
absolute ones and ``..`` included, therefore resolve inside the container
and never reach the host's files. The root is:

- for a running container, ``/proc/PID/root`` of its init: the container's
  own view, with its volumes and bind mounts;
- otherwise a private overlay mount made with fsopen(2)/fsmount(2) from the
  container's layers. It is never attached to any directory and disappears
  when its descriptor is closed, so a crash cannot leave it behind. A
  read-only copy stacks the upper directory as the topmost lower layer; a
  copy into the container mounts the upper and work directories.

``diff`` and ``commit`` read the upper directory, where overlayfs stores a
deleted path as a character device 0:0 and an opaque directory with the
xattr ``trusted.overlay.opaque=y``. ``commit`` turns those back into the
``.wh.NAME`` and ``.wh..wh..opq`` entries of the OCI layer format.

Tar streams are shaped like the Engine API's archive endpoints
(``GET``/``PUT /containers/{id}/archive``): the copied entry at the top,
under its base name.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import logging
import os
import stat
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard.errors import Conflict, ContainerError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.engine import Engine

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)

# Syscall numbers; the same on x86-64 and arm64 because they come after the tables were unified.
SYS_OPENAT2 = 437
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432

# <linux/openat2.h>
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
# <linux/mount.h>
FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_RDONLY = 0x1

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."

# Docker's change kinds, as ContainerChangeResponseItem.Kind numbers them.
MODIFIED, ADDED, DELETED = 0, 1, 2
KIND_LETTERS = {MODIFIED: "C", ADDED: "A", DELETED: "D"}

CHUNK_SIZE = 1 << 20


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """Open ``path`` as if ``root_fd`` were "/": symlinks and ``..`` never leave it; raises OSError."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    relative = path.lstrip("/") or "."
    fd = _libc.syscall(SYS_OPENAT2, root_fd, os.fsencode(relative), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


def _fs_call(number: int, *args: Any) -> int:
    result = _libc.syscall(number, *args)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _fs_context_log(fs_fd: int) -> str:
    """Return the messages the kernel queued on a filesystem context (``e overlay: ...`` lines)."""
    messages = []
    while True:
        try:
            messages.append(os.read(fs_fd, 512).decode(errors="replace").strip())
        except OSError:
            return "; ".join(message for message in messages if message)


def mount_overlay(lowers: list[str], upper: str | None = None, work: str | None = None) -> int:
    """Return the descriptor of a detached overlay mount of ``lowers`` (topmost first) and an optional upper.

    The mount is attached nowhere and goes away with its last descriptor.
    Each lower directory is added with ``lowerdir+`` (Linux 6.8 and later),
    because fsconfig(2) takes at most 256 bytes per value.
    """
    fs_fd = _fs_call(SYS_FSOPEN, b"overlay", FSOPEN_CLOEXEC)
    try:
        try:
            for lower in lowers:
                _fs_call(SYS_FSCONFIG, fs_fd, FSCONFIG_SET_STRING, b"lowerdir+", os.fsencode(lower), 0)
            if upper is not None and work is not None:
                _fs_call(SYS_FSCONFIG, fs_fd, FSCONFIG_SET_STRING, b"upperdir", os.fsencode(upper), 0)
                _fs_call(SYS_FSCONFIG, fs_fd, FSCONFIG_SET_STRING, b"workdir", os.fsencode(work), 0)
            _fs_call(SYS_FSCONFIG, fs_fd, FSCONFIG_CMD_CREATE, None, None, 0)
            attributes = 0 if upper is not None else MOUNT_ATTR_RDONLY
            return _fs_call(SYS_FSMOUNT, fs_fd, FSMOUNT_CLOEXEC, attributes)
        except OSError as error:
            detail = _fs_context_log(fs_fd)
            raise ContainerError(
                f"mounting an overlay of {len(lowers)} layers (upper {upper}) failed: {error.strerror}"
                + (f" ({detail})" if detail else "")
            ) from None
    finally:
        os.close(fs_fd)


# -- the root of a container ----------------------------------------------------------------


@dataclass(frozen=True)
class Layers:
    """The host directories of a container's filesystem, from ``GraphDriver.Data``."""

    lowers: list[str]
    upper: str
    work: str

    @classmethod
    def of(cls, info: dict[str, Any]) -> "Layers":
        data = (info.get("GraphDriver") or {}).get("Data") or {}
        lower_text = data.get("LowerDir") or ""
        return cls([path for path in lower_text.split(":") if path], data["UpperDir"], data["WorkDir"])


@contextmanager
def container_root(info: dict[str, Any], writable: bool = False) -> Iterator[int]:
    """Yield a descriptor of the container's root directory; see the module docstring for which one."""
    state = info.get("State") or {}
    if state.get("Running") and state.get("Pid"):
        try:
            fd = os.open(f"/proc/{state['Pid']}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise ContainerError(f"opening the root of container {info['Id']} (pid {state['Pid']}) failed: {error}") from None
        try:
            yield fd
        finally:
            os.close(fd)
        return
    layers = Layers.of(info)
    if writable:
        fd = mount_overlay(layers.lowers, layers.upper, layers.work)
    else:
        fd = mount_overlay([layers.upper, *layers.lowers])
    try:
        yield fd
    finally:
        os.close(fd)


# -- writing tar streams ------------------------------------------------------------------


def _xattrs(fd: int) -> dict[str, str]:
    """Return the xattrs of an open file as pax ``SCHILY.xattr`` headers, without overlayfs's own."""
    headers = {}
    path = f"/proc/self/fd/{fd}"
    try:
        names = os.listxattr(path)
    except OSError:
        return {}
    for name in names:
        if name.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            value = os.getxattr(path, name)
        except OSError:
            continue
        headers[f"SCHILY.xattr.{name}"] = value.decode("utf-8", errors="surrogateescape")
    return headers


class TarWriter:
    """Writes entries read through directory descriptors, never following a symlink."""

    def __init__(self, out: BinaryIO, keep_owner: bool = True, xattrs: bool = False) -> None:
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")
        self.keep_owner = keep_owner
        self.with_xattrs = xattrs
        self.links: dict[tuple[int, int], str] = {}

    def close(self) -> None:
        self.tar.close()

    def info(self, name: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        info.uid, info.gid = (st.st_uid, st.st_gid) if self.keep_owner else (0, 0)
        return info

    def add_entry(self, parent_fd: int, entry: str, name: str, st: os.stat_result | None = None) -> None:
        """Add one directory entry of ``parent_fd`` as ``name``; directories recursively."""
        if st is None:
            st = os.stat(entry, dir_fd=parent_fd, follow_symlinks=False)
        info = self.info(name, st)
        if stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(entry, dir_fd=parent_fd)
            self.tar.addfile(info)
            return
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in self.links:
                info.type = tarfile.LNKTYPE
                info.linkname = self.links[key]
                self.tar.addfile(info)
                return
            self.links[key] = name
        if stat.S_ISREG(st.st_mode):
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            with os.fdopen(fd, "rb") as file:
                if self.with_xattrs:
                    info.pax_headers = {**info.pax_headers, **_xattrs(fd)}
                info.size = os.fstat(fd).st_size
                self.tar.addfile(info, file)
            return
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            try:
                info.type = tarfile.DIRTYPE
                if self.with_xattrs:
                    info.pax_headers = {**info.pax_headers, **_xattrs(fd)}
                self.tar.addfile(info)
                self.add_children(fd, name)
            finally:
                os.close(fd)
            return
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets have no tar form
        self.tar.addfile(info)

    def add_children(self, directory_fd: int, prefix: str) -> None:
        for entry in sorted(os.listdir(directory_fd)):
            self.add_entry(directory_fd, entry, f"{prefix}/{entry}" if prefix else entry)


def _split_parent(path: str) -> tuple[str, str]:
    """Split a container path into its parent and base name; the base of "/" is "."."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/", "."
    parent, _, base = stripped.rpartition("/")
    return parent or "/", base


def stat_in_root(root_fd: int, path: str, follow: bool) -> os.stat_result | None:
    """Return the stat of a path in the container, following a final symlink only with ``follow``; None if missing."""
    flags = os.O_PATH | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = open_in_root(root_fd, path, flags)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ENOTDIR:
            return None
        raise
    try:
        return os.stat(fd)
    finally:
        os.close(fd)


def write_archive(root_fd: int, path: str, out: BinaryIO, *, follow_link: bool = False,
                  name: str | None = None) -> os.stat_result:
    """Write ``path`` of the container (a file, directory or symlink) as a tar stream to ``out``.

    The top entry is named ``name``, by default the path's base name. A path
    ending in ``/.`` writes the directory's contents without a top entry, as
    ``docker cp SRC/. DEST`` copies them. Returns the stat of the top entry.
    Raises NotFound for a missing path.
    """
    contents_only = path.endswith("/.") or path == "."
    parent, base = _split_parent(path[:-2] if contents_only and path != "." else path)
    try:
        parent_fd = open_in_root(root_fd, parent, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise NotFound(f"Could not find the file {path} in container") from None
    except NotADirectoryError:
        raise NotFound(f"Could not find the file {path} in container") from None
    writer = TarWriter(out)
    try:
        if base == ".":
            entry_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent_fd)
            os.close(parent_fd)
            parent_fd, base = entry_fd, "."
        try:
            st = os.stat(base, dir_fd=parent_fd, follow_symlinks=follow_link)
        except FileNotFoundError:
            raise NotFound(f"Could not find the file {path} in container") from None
        if follow_link and stat.S_ISLNK(os.stat(base, dir_fd=parent_fd, follow_symlinks=False).st_mode):
            # Follow the final symlink inside the root, then archive what it points to.
            target_fd = open_in_root(root_fd, path, os.O_PATH)
            os.close(parent_fd)
            parent_fd = os.open(f"/proc/self/fd/{target_fd}", os.O_PATH | os.O_CLOEXEC)
            os.close(target_fd)
            entry, st = "", os.stat(parent_fd)
        else:
            entry = base
        if name is not None:
            top = name
        elif contents_only:
            top = ""
        else:
            top = _split_parent(path)[1]
        if contents_only:
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"{path}: the source is not a directory")
            directory_fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            try:
                writer.add_children(directory_fd, "")
            finally:
                os.close(directory_fd)
        elif entry == "":
            _add_opened(writer, parent_fd, top or ".", st)
        else:
            writer.add_entry(parent_fd, entry, top if top != "." else ".", st)
    finally:
        writer.close()
        os.close(parent_fd)
    return st


def _add_opened(writer: TarWriter, fd: int, name: str, st: os.stat_result) -> None:
    """Add the object an O_PATH descriptor refers to (a followed symlink's target) as ``name``."""
    if stat.S_ISDIR(st.st_mode):
        directory_fd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            info = writer.info(name, st)
            info.type = tarfile.DIRTYPE
            writer.tar.addfile(info)
            writer.add_children(directory_fd, name)
        finally:
            os.close(directory_fd)
        return
    if stat.S_ISREG(st.st_mode):
        with open(f"/proc/self/fd/{fd}", "rb") as file:
            info = writer.info(name, st)
            info.size = st.st_size
            writer.tar.addfile(info, file)
        return
    raise InvalidArgument(f"{name}: a symlink to a special file cannot be copied")


# -- extracting tar streams -------------------------------------------------------------------


def _member_parts(name: str) -> list[str]:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"archive member {name!r} contains '..'")
    return parts


def extract_archive(stream: BinaryIO, scope_fd: int, base: str, *, keep_owner: bool,
                    owner: tuple[int, int] | None = None) -> None:
    """Extract a tar stream into the directory ``base``, resolved inside ``scope_fd`` like every member's parent.

    Member paths are taken relative to ``base``; a symlink unpacked earlier
    resolves inside ``scope_fd`` too, so no member lands outside it. With
    ``keep_owner`` the archive's owners are applied, else ``owner`` (when
    given) or the caller's.
    """
    with tarfile.open(fileobj=stream, mode="r|*", encoding="utf-8", errors="surrogateescape") as archive:
        directories: list[tuple[str, tarfile.TarInfo]] = []
        for member in archive:
            parts = _member_parts(member.name)
            if not parts:
                continue
            target = "/".join([base.rstrip("/"), *parts]) if base.strip("/") else "/" + "/".join(parts)
            parent_path, leaf = target.rsplit("/", 1)
            try:
                parent_fd = open_in_root(scope_fd, parent_path or "/", os.O_RDONLY | os.O_DIRECTORY)
            except OSError as error:
                raise ContainerError(f"extracting {member.name}: the directory {parent_path or '/'} failed to open: {error.strerror}") from None
            try:
                _extract_member(archive, member, parent_fd, leaf, scope_fd, base, keep_owner, owner)
            finally:
                os.close(parent_fd)
            if member.isdir():
                directories.append((target, member))
        # Directory times last: writing their contents changed them.
        for target, member in reversed(directories):
            try:
                fd = open_in_root(scope_fd, target, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)


def _remove_existing(parent_fd: int, leaf: str, keep_directory: bool) -> None:
    try:
        st = os.stat(leaf, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_directory:
            return
        raise Conflict(f"cannot overwrite directory {leaf!r} with a non-directory")
    os.unlink(leaf, dir_fd=parent_fd)


def _extract_member(archive: tarfile.TarFile, member: tarfile.TarInfo, parent_fd: int, leaf: str, scope_fd: int,
                    base: str, keep_owner: bool, owner: tuple[int, int] | None) -> None:
    mode = member.mode & 0o7777
    if member.isdir():
        _remove_existing(parent_fd, leaf, keep_directory=True)
        try:
            os.mkdir(leaf, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
    elif member.issym():
        _remove_existing(parent_fd, leaf, keep_directory=False)
        os.symlink(member.linkname, leaf, dir_fd=parent_fd)
    elif member.islnk():
        _remove_existing(parent_fd, leaf, keep_directory=False)
        source_parts = _member_parts(member.linkname)
        source = "/".join([base.rstrip("/"), *source_parts]) if base.strip("/") else "/" + "/".join(source_parts)
        source_fd = open_in_root(scope_fd, source, os.O_PATH | os.O_NOFOLLOW)
        try:
            os.link(f"/proc/self/fd/{source_fd}", leaf, dst_dir_fd=parent_fd, follow_symlinks=True)
        finally:
            os.close(source_fd)
        return
    elif member.isreg():
        _remove_existing(parent_fd, leaf, keep_directory=False)
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent_fd)
        with os.fdopen(fd, "wb") as out:
            contents = archive.extractfile(member)
            assert contents is not None
            while chunk := contents.read(CHUNK_SIZE):
                out.write(chunk)
    elif member.ischr() or member.isblk() or member.isfifo():
        _remove_existing(parent_fd, leaf, keep_directory=False)
        if member.ischr():
            kind = stat.S_IFCHR
        elif member.isblk():
            kind = stat.S_IFBLK
        else:
            kind = stat.S_IFIFO
        os.mknod(leaf, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=parent_fd)
    else:
        log.debug("skipping archive member %s of type %r", member.name, member.type)
        return
    if keep_owner:
        os.chown(leaf, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
    elif owner is not None:
        os.chown(leaf, owner[0], owner[1], dir_fd=parent_fd, follow_symlinks=False)
    if not member.issym():
        os.chmod(leaf, mode, dir_fd=parent_fd)
        os.utime(leaf, (member.mtime, member.mtime), dir_fd=parent_fd, follow_symlinks=False)


# -- docker cp's destination rules ---------------------------------------------------------


@dataclass(frozen=True)
class CopyTarget:
    """The destination of a copy: the directory to extract into, and the name of the top entry (None keeps the archive's)."""

    directory: str
    name: str | None


def copy_target(dest: str, dest_stat: os.stat_result | None, source_is_dir: bool, source_name: str) -> CopyTarget:
    """Apply ``docker cp``'s rules for a destination path that exists as ``dest_stat`` (or None when missing)."""
    if dest_stat is not None and stat.S_ISDIR(dest_stat.st_mode):
        return CopyTarget(dest, None if source_name == "" else source_name)
    if dest_stat is not None:
        if source_is_dir:
            raise InvalidArgument(f"cannot copy a directory to the existing file {dest}")
        parent, base = _split_parent(dest)
        return CopyTarget(parent, base)
    if dest.endswith("/") and not source_is_dir:
        raise NotFound(f"the destination directory {dest} does not exist")
    parent, base = _split_parent(dest)
    return CopyTarget(parent, base)


def rename_top(stream: BinaryIO, out: BinaryIO, old: str, new: str | None) -> None:
    """Copy a tar stream, renaming its top entry ``old`` (and everything below it) to ``new``."""
    with tarfile.open(fileobj=stream, mode="r|*") as source, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as target:
        for member in source:
            name = member.name
            if new is not None and old and (name == old or name.startswith(old + "/")):
                member.name = new + name[len(old):]
            if member.islnk() and new is not None and old and (member.linkname == old or member.linkname.startswith(old + "/")):
                member.linkname = new + member.linkname[len(old):]
            source_file = source.extractfile(member) if member.isreg() else None
            target.addfile(member, source_file)


# -- changes in the upper directory -----------------------------------------------------------


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def lower_lookup(lowers: list[str], relative: str) -> os.stat_result | None:
    """Return the stat of ``relative`` in the merged view of the lower layers (topmost first), or None."""
    parts = [part for part in relative.split("/") if part]
    for layer in lowers:
        current = layer
        hidden = False
        for index, part in enumerate(parts):
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except (FileNotFoundError, NotADirectoryError):
                break
            if _is_whiteout(st):
                return None
            if index == len(parts) - 1:
                return st
            if not stat.S_ISDIR(st.st_mode):
                return None
            if _is_opaque(current):
                hidden = True
        else:
            return os.lstat(layer)
        if hidden:
            return None
    return None


def _lower_children(lowers: list[str], relative: str) -> set[str]:
    """Return the names in a directory of the merged lower layers."""
    names: set[str] = set()
    deleted: set[str] = set()
    parts = [part for part in relative.split("/") if part]
    for layer in lowers:
        directory = os.path.join(layer, *parts)
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name in names or entry.name in deleted:
                continue
            if _is_whiteout(entry.stat(follow_symlinks=False)):
                deleted.add(entry.name)
            else:
                names.add(entry.name)
        if _is_opaque(directory):
            break
    return names


def changes(layers: Layers, mount_points: set[str] | None = None) -> list[dict[str, Any]]:
    """Return the container's changes as ContainerChangeResponseItem dicts (``Path``, ``Kind``), sorted by path.

    ``mount_points`` are paths the runtime mounts over (/etc/hosts, /proc,
    ...). Their empty stubs in the upper directory, and directories changed
    only by holding them, are left out, as Docker keeps them out of ``diff``
    and ``commit`` in its separate init layer.
    """
    mount_points = mount_points or set()
    found: dict[str, int] = {}
    upper = layers.upper

    def visit(relative: str) -> None:
        directory = os.path.join(upper, relative)
        for entry in sorted(os.scandir(directory), key=lambda item: item.name):
            path = f"{relative}/{entry.name}" if relative else entry.name
            st = entry.stat(follow_symlinks=False)
            if _is_whiteout(st):
                found["/" + path] = DELETED
                continue
            lower = lower_lookup(layers.lowers, path)
            if "/" + path in mount_points and _is_stub(entry.path, st) and (lower is None or stat.S_ISDIR(st.st_mode)):
                continue
            found["/" + path] = ADDED if lower is None else MODIFIED
            if stat.S_ISDIR(st.st_mode):
                if lower is not None and stat.S_ISDIR(lower.st_mode) and _is_opaque(entry.path):
                    present = {item.name for item in os.scandir(entry.path)}
                    for name in _lower_children(layers.lowers, path) - present:
                        found[f"/{path}/{name}"] = DELETED
                visit(path)
                if lower is not None and stat.S_ISDIR(lower.st_mode) and _same_metadata(st, lower):
                    if not any(key.startswith(f"/{path}/") for key in found):
                        del found["/" + path]

    visit("")
    return [{"Path": path, "Kind": kind} for path, kind in sorted(found.items())]


def _is_stub(path: str, st: os.stat_result) -> bool:
    if stat.S_ISDIR(st.st_mode):
        return not os.listdir(path)
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def _same_metadata(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode, a.st_uid, a.st_gid) == (b.st_mode, b.st_uid, b.st_gid)


def write_layer(layers: Layers, items: list[dict[str, Any]], out: BinaryIO) -> None:
    """Write the changes as an OCI layer tar: files from the upper directory, deletions as whiteouts."""
    writer = TarWriter(out, keep_owner=True, xattrs=True)
    upper_fd = os.open(layers.upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for item in items:
            relative = item["Path"].lstrip("/")
            parent, _, name = relative.rpartition("/")
            if item["Kind"] == DELETED:
                info = tarfile.TarInfo(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name)
                info.mtime = int(time.time())
                writer.tar.addfile(info, io.BytesIO(b""))
                continue
            parent_fd = open_in_root(upper_fd, parent or "/", os.O_RDONLY | os.O_DIRECTORY)
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    # Only the directory itself: its changed children are items of their own.
                    directory_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                           dir_fd=parent_fd)
                    try:
                        info = writer.info(relative, st)
                        info.type = tarfile.DIRTYPE
                        info.pax_headers = {**info.pax_headers, **_xattrs(directory_fd)}
                        writer.tar.addfile(info)
                        if _is_opaque(f"/proc/self/fd/{directory_fd}"):
                            marker = tarfile.TarInfo(f"{relative}/{OPAQUE_MARKER}")
                            marker.mtime = info.mtime
                            writer.tar.addfile(marker, io.BytesIO(b""))
                    finally:
                        os.close(directory_fd)
                else:
                    writer.add_entry(parent_fd, name, relative, st)
            finally:
                os.close(parent_fd)
    finally:
        os.close(upper_fd)
        writer.close()


# -- commit changes ------------------------------------------------------------------------

# Dockerfile instructions that ``commit --change`` accepts, as Docker does.
CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _json_or_words(value: str) -> list[str]:
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
            return parsed
    return stripped.split()


def _key_values(value: str, instruction: str) -> list[tuple[str, str]]:
    """Parse ``k=v k2="v 2"`` pairs, or the legacy ``k v`` form of ENV and LABEL."""
    import shlex

    words = shlex.split(value)
    if words and "=" not in words[0]:
        key, _, rest = value.strip().partition(" ")
        if not rest:
            raise InvalidArgument(f"{instruction} needs a value: {instruction} {value}")
        return [(key, rest.strip())]
    pairs = []
    for word in words:
        key, equals, item = word.partition("=")
        if not equals or not key:
            raise InvalidArgument(f"{instruction}: {word!r} is not of the form key=value")
        pairs.append((key, item))
    return pairs


def apply_changes(config: dict[str, Any], changes_text: list[str]) -> dict[str, Any]:
    """Apply ``--change`` Dockerfile instructions to an image's ``config`` object; return the new one."""
    result = json.loads(json.dumps(config))
    for text in changes_text:
        instruction, _, value = text.strip().partition(" ")
        instruction = instruction.upper()
        value = value.strip()
        if instruction not in CHANGE_INSTRUCTIONS:
            raise InvalidArgument(f"{instruction} is not a valid change command")
        if instruction in ("CMD", "ENTRYPOINT"):
            key = "Cmd" if instruction == "CMD" else "Entrypoint"
            stripped = value.strip()
            if stripped.startswith("["):
                result[key] = _json_or_words(stripped)
            else:
                result[key] = ["/bin/sh", "-c", stripped]
        elif instruction == "ENV":
            env = list(result.get("Env") or [])
            for key, item in _key_values(value, instruction):
                env = [entry for entry in env if entry.partition("=")[0] != key] + [f"{key}={item}"]
            result["Env"] = env
        elif instruction == "LABEL":
            labels = dict(result.get("Labels") or {})
            labels.update(_key_values(value, instruction))
            result["Labels"] = labels
        elif instruction == "EXPOSE":
            ports = dict(result.get("ExposedPorts") or {})
            for port in value.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            result["ExposedPorts"] = ports
        elif instruction == "VOLUME":
            volumes = dict(result.get("Volumes") or {})
            for path in _json_or_words(value):
                volumes[path] = {}
            result["Volumes"] = volumes
        elif instruction == "USER":
            result["User"] = value
        elif instruction == "WORKDIR":
            result["WorkingDir"] = value if value.startswith("/") else os.path.join(result.get("WorkingDir") or "/", value)
        elif instruction == "STOPSIGNAL":
            result["StopSignal"] = value
        elif instruction == "ONBUILD":
            result["OnBuild"] = [*(result.get("OnBuild") or []), value]
    return result


# -- the service --------------------------------------------------------------------------

# Keys of the image config's ``config`` object (the Engine API's ImageConfig).
IMAGE_CONFIG_KEYS = (
    "User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Volumes",
    "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell",
)


class FilesystemService:
    """cp, diff, export and commit of the containers of one root; reached as ``FilesystemService(engine)``."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.run_root = Path(engine.config.run_root)

    def _mount_points(self, container_id: str) -> set[str]:
        from dockyard.engine import rootfs

        try:
            config = json.loads((rootfs.bundle_dir(self.run_root, container_id) / "config.json").read_text())
        except (OSError, ValueError):
            return set()
        return {os.path.normpath(entry.get("destination", "")) for entry in config.get("mounts") or []}

    # -- cp ----------------------------------------------------------------

    def stat_path(self, name: str, path: str) -> dict[str, Any]:
        """Return the Engine API's ``X-Docker-Container-Path-Stat`` fields for a path: name, size, mode, mtime, linkTarget."""
        info = self.engine.containers.inspect(name)
        with container_root(info) as root_fd:
            st = stat_in_root(root_fd, path, follow=False)
            if st is None:
                raise NotFound(f"Could not find the file {path} in container {name}")
            target = ""
            if stat.S_ISLNK(st.st_mode):
                parent, base = _split_parent(path)
                parent_fd = open_in_root(root_fd, parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    target = os.readlink(base, dir_fd=parent_fd)
                finally:
                    os.close(parent_fd)
        return {"name": _split_parent(path)[1], "size": st.st_size, "mode": st.st_mode,
                "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)), "linkTarget": target}

    def archive(self, name: str, path: str, out: BinaryIO, follow_link: bool = False) -> None:
        """Write ``path`` of the container as a tar stream (``GET /containers/{id}/archive``)."""
        info = self.engine.containers.inspect(name)
        with container_root(info) as root_fd:
            write_archive(root_fd, path, out, follow_link=follow_link)

    def put_archive(self, name: str, path: str, stream: BinaryIO, keep_owner: bool = False) -> None:
        """Extract a tar stream into the existing directory ``path`` of the container (``PUT .../archive``).

        Without ``keep_owner`` the files belong to the container's root user (uid 0, gid 0).
        """
        info = self.engine.containers.inspect(name)
        with container_root(info, writable=True) as root_fd:
            st = stat_in_root(root_fd, path, follow=True)
            if st is None:
                raise NotFound(f"Could not find the file {path} in container {name}")
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"extraction point is not a directory: {path}")
            extract_archive(stream, root_fd, path, keep_owner=keep_owner, owner=None if keep_owner else (0, 0))

    def copy_from(self, name: str, source: str, dest: str, *, follow_link: bool = False, keep_owner: bool = False) -> int:
        """Copy ``source`` of the container to the host path ``dest``, by ``docker cp``'s rules.

        Returns the size of the tar stream copied, in bytes, which ``docker cp`` reports.
        """
        import tempfile

        info = self.engine.containers.inspect(name)
        with container_root(info) as root_fd, tempfile.TemporaryFile() as buffer:
            source_stat = stat_in_root(root_fd, source, follow=follow_link)
            if source_stat is None:
                raise NotFound(f"Could not find the file {source} in container {name}")
            contents_only = source.endswith("/.")
            source_name = "" if contents_only else _split_parent(source)[1]
            dest_stat = _host_stat(dest)
            target = copy_target(dest, dest_stat, stat.S_ISDIR(source_stat.st_mode), source_name)
            if not os.path.isdir(target.directory):
                raise NotFound(f"the destination directory {target.directory} does not exist")
            write_archive(root_fd, source, buffer, follow_link=follow_link, name=target.name)
            size = buffer.tell()
            buffer.seek(0)
            scope_fd = os.open(target.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                extract_archive(buffer, scope_fd, "/", keep_owner=keep_owner)
            finally:
                os.close(scope_fd)
        return size

    def copy_to(self, name: str, source: str, dest: str, *, follow_link: bool = False, keep_owner: bool = False) -> int:
        """Copy the host path ``source`` into the container at ``dest``, by ``docker cp``'s rules.

        Returns the size of the tar stream copied, in bytes, which ``docker cp`` reports.
        """
        import tempfile

        source_stat = _host_stat(source, follow=follow_link)
        if source_stat is None:
            raise NotFound(f"stat {source}: no such file or directory")
        contents_only = source.endswith("/.")
        source_name = "" if contents_only else os.path.basename(os.path.normpath(source))
        info = self.engine.containers.inspect(name)
        with container_root(info, writable=True) as root_fd, tempfile.TemporaryFile() as buffer:
            dest_stat = stat_in_root(root_fd, dest, follow=True)
            target = copy_target(dest, dest_stat, stat.S_ISDIR(source_stat.st_mode), source_name)
            directory_stat = stat_in_root(root_fd, target.directory, follow=True)
            if directory_stat is None or not stat.S_ISDIR(directory_stat.st_mode):
                raise NotFound(f"the destination directory {target.directory} does not exist in container {name}")
            host_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                write_archive(host_root, os.path.abspath(source) + ("/." if contents_only else ""), buffer,
                              follow_link=follow_link, name=target.name)
            finally:
                os.close(host_root)
            size = buffer.tell()
            buffer.seek(0)
            extract_archive(buffer, root_fd, target.directory, keep_owner=keep_owner,
                            owner=None if keep_owner else (0, 0))
        return size

    # -- diff and export -------------------------------------------------------

    def diff(self, name: str) -> list[dict[str, Any]]:
        """Return the container's changes to its image (``GET /containers/{id}/changes``)."""
        info = self.engine.containers.inspect(name)
        return changes(Layers.of(info), self._mount_points(info["Id"]))

    def export(self, name: str, out: BinaryIO) -> None:
        """Write the container's root filesystem as a tar stream, without volumes or mounts."""
        info = self.engine.containers.inspect(name)
        layers = Layers.of(info)
        # Always a fresh read-only overlay: the running container's own view would include /proc and its volumes.
        mount_fd = mount_overlay([layers.upper, *layers.lowers])
        try:
            # The mount descriptor is like an O_PATH one, which cannot list a directory.
            root_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=mount_fd)
        finally:
            os.close(mount_fd)
        try:
            writer = TarWriter(out)
            try:
                writer.add_children(root_fd, "")
            finally:
                writer.close()
        finally:
            os.close(root_fd)

    # -- commit ----------------------------------------------------------------

    def commit(self, name: str, reference: str | None = None, *, changes_text: list[str] | None = None,
               comment: str = "", author: str = "", pause: bool = True, config: dict[str, Any] | None = None) -> str:
        """Make a new image from the container's changes; return its ID (``POST /commit``).

        The upper directory becomes one gzip layer on top of the image's
        layers, unless nothing changed. ``config`` (an ImageConfig) replaces
        the container's config, and ``changes_text`` are Dockerfile
        instructions applied on top. With ``pause`` a running container is
        frozen while its layer is written.
        """
        from dockyard.engine import locks

        info = self.engine.containers.inspect(name)
        container_id = info["Id"]
        paused_here = False
        state = info.get("State") or {}
        if pause and state.get("Running") and not state.get("Paused"):
            self.engine.containers.pause(container_id)
            paused_here = True
        try:
            layers = Layers.of(info)
            items = changes(layers, self._mount_points(container_id))
            with locks.gc_lock(self.engine.root, exclusive=False):
                layer = self._store_layer(layers, items) if items else None
        finally:
            if paused_here:
                self.engine.containers.unpause(container_id)
        with locks.gc_lock(self.engine.root, exclusive=False):
            return self._record_image(info, layer, reference, changes_text or [], comment, author, config)

    def _store_layer(self, layers: Layers, items: list[dict[str, Any]]) -> "StoredLayer":
        import gzip
        import tempfile

        images = self.engine.images
        tmp_dir = self.engine.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=tmp_dir) as compressed:
            hashing = _HashingWriter(compressed)
            uncompressed = _HashingWriter(gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0))
            write_layer(layers, items, uncompressed)  # type: ignore[arg-type]
            uncompressed.raw.close()
            digest, size, diff_id = hashing.digest(), hashing.size, uncompressed.digest()
            if not images.store.has(digest):
                with images.store.ingest(digest, size) as ingest:
                    compressed.seek(ingest.offset)
                    while chunk := compressed.read(CHUNK_SIZE):
                        ingest.write(chunk)
                    ingest.commit()
        log.debug("committed layer %s (diff ID %s, %d bytes)", digest, diff_id, size)
        return StoredLayer(digest, size, diff_id)

    def _record_image(self, info: dict[str, Any], layer: "StoredLayer | None", reference: str | None,
                      changes_text: list[str], comment: str, author: str, config: dict[str, Any] | None) -> str:
        from dockyard.engine.pull import unpack_layer
        from dockyard.engine.state import ImageRecord, LayerRecord
        from dockyard.image import layer as layer_module
        from dockyard.image import mediatypes
        from dockyard.image import reference as references
        from dockyard.image.manifest import Descriptor

        images = self.engine.images
        state = images.state
        base = state.image(info["Image"])
        if base is None:
            raise ContainerError(f"the image {info['Image']} of container {info['Id']} is gone; cannot commit")
        base_config = json.loads(base.config)
        base_layers = state.image_layers(base.id)
        container_config = info.get("Config") or {}
        image_config = config if config is not None else {
            key: container_config[key] for key in IMAGE_CONFIG_KEYS if container_config.get(key) is not None
        }
        image_config = apply_changes(image_config, changes_text)
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
        diff_ids = list((base_config.get("rootfs") or {}).get("diff_ids") or [])
        records = list(base_layers)
        blobs = [record.blob_digest for record in base_layers if record.blob_digest]
        history = list(base_config.get("history") or [])
        entry: dict[str, Any] = {"created": now, "created_by": " ".join([info.get("Path", ""), *info.get("Args", [])]).strip()}
        if author:
            entry["author"] = author
        if comment:
            entry["comment"] = comment
        if layer is not None:
            diff_ids.append(layer.diff_id)
            parent = base_layers[-1].chain_id if base_layers else None
            chain_id = layer_module.chain_ids(diff_ids)[-1]
            descriptor = Descriptor(mediatypes.OCI_LAYER_GZIP, layer.digest, layer.size)
            size = unpack_layer(images, descriptor, layer.diff_id, chain_id, parent, lambda *args, **kwargs: None)
            records.append(LayerRecord(chain_id, layer.diff_id, parent, layer.digest, mediatypes.OCI_LAYER_GZIP,
                                       layer.size, size))
            blobs.append(layer.digest)
        else:
            entry["empty_layer"] = True
        history.append(entry)
        new_config = {
            key: value for key, value in base_config.items()
            if key not in ("config", "container_config", "rootfs", "history", "created", "author", "comment")
        }
        new_config.update({
            "created": now,
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        })
        if author:
            new_config["author"] = author
        if comment:
            new_config["comment"] = comment
        config_bytes = json.dumps(new_config, separators=(",", ":")).encode()
        image_id = images.store.put(config_bytes)
        tags = [str(references.parse_repository(reference))] if reference else []
        state.record_image(
            ImageRecord(
                id=image_id,
                config=config_bytes,
                created=now,
                size=sum(record.size for record in records),
                os=base.os,
                architecture=base.architecture,
                variant=base.variant,
            ),
            records,
            blobs=[image_id, *blobs],
            tags=tags,
        )
        log.debug("committed container %s as image %s %s", info["Id"], image_id, tags)
        return image_id


@dataclass(frozen=True)
class StoredLayer:
    digest: str
    size: int
    diff_id: str


class _HashingWriter:
    """A write-only file that hashes and counts what passes through to ``raw``."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def _host_stat(path: str, follow: bool = True) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        return None


__all__ = ["FilesystemService", "apply_changes", "changes", "copy_target", "extract_archive", "open_in_root",
           "write_archive", "write_layer"]

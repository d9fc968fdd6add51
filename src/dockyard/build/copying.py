"""``COPY`` and ``ADD``: the files to copy, their digest for the cache, and the layer tar they become.

Sources are read below a directory descriptor: the build context, or the
root of another stage or image (``--from``). A source path resolves with
``RESOLVE_IN_ROOT``, so symlinks in it stay inside that root; below it the
tree is walked without following symlinks, which are copied as symlinks.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import hashlib
import io
import lzma
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from dockyard.build.context import IgnoreRules
from dockyard.errors import BuildError

CHUNK_SIZE = 1 << 20
NEW_DIRECTORY_MODE = 0o755


@dataclass(frozen=True)
class Item:
    """One entry of the layer: ``name`` in the image, read from ``path`` (a ``/proc/self/fd`` path) or ``data``."""

    name: str
    # "file", "dir", "symlink", "archive" (extracted below name), or "mkdir":
    # the destination of a copied directory, created as a new parent directory would be.
    kind: str
    path: str | None
    mode: int
    mtime: float
    link: str = ""
    data: bytes | None = None


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


def _open_beneath(root_fd: int, relative: str) -> int | None:
    """Open ``relative`` below ``root_fd`` as an O_PATH descriptor, symlinks resolving inside the root; None if missing."""
    from dockyard.engine.filesystem import open_in_root

    try:
        return open_in_root(root_fd, relative or "/", os.O_PATH)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BuildError(f"cannot open {relative!r} in the build source: {error}") from error


def expand_sources(root_fd: int, pattern: str, ignore: IgnoreRules | None) -> list[str]:
    """Return the root-relative paths a source names; wildcards (``*``, ``?``, ``[...]``) match per component."""
    cleaned = posixpath.normpath("/" + pattern).lstrip("/")
    if cleaned.startswith(".."):
        raise BuildError(f"forbidden path outside the build context: {pattern}")
    if not any(char in cleaned for char in "*?["):
        return [cleaned]
    matches = [""]
    for component in cleaned.split("/"):
        next_matches = []
        for prefix in matches:
            if not any(char in component for char in "*?["):
                next_matches.append(f"{prefix}/{component}".lstrip("/"))
                continue
            descriptor = _open_beneath(root_fd, prefix)
            if descriptor is None:
                continue
            try:
                names = sorted(os.listdir(f"/proc/self/fd/{descriptor}"))
            except NotADirectoryError:
                names = []
            finally:
                os.close(descriptor)
            next_matches += [f"{prefix}/{name}".lstrip("/") for name in names if fnmatch.fnmatchcase(name, component)]
        matches = next_matches
    if ignore is not None:
        matches = [match for match in matches if not ignore.excludes(match)]
    return matches


class Collector:
    """Collects the items of one COPY or ADD and computes their digest."""

    def __init__(self, root_fd: int, ignore: IgnoreRules | None, chmod: int | None, extract_archives: bool,
                 keyword: str = "COPY") -> None:
        self.root_fd = root_fd
        self.keyword = keyword
        self.ignore = ignore
        self.chmod = chmod
        self.extract_archives = extract_archives
        self.items: list[Item] = []
        self._open: list[int] = []

    def close(self) -> None:
        for descriptor in self._open:
            os.close(descriptor)
        self._open.clear()

    def add_source(self, source: str, destination: str, to_directory: bool) -> None:
        """Add the source path (root-relative) as ``destination`` (a file path, or a directory with ``to_directory``)."""
        if self.ignore is not None and source and self.ignore.excludes(source):
            raise BuildError(
                f"{self.keyword} failed: file not found in build context or excluded by .dockerignore: "
                f"stat {source}: file does not exist"
            )
        descriptor = _open_beneath(self.root_fd, source)
        if descriptor is None:
            raise BuildError(
                f"{self.keyword} failed: file not found in build context or excluded by .dockerignore: "
                f"stat {source or '.'}: file does not exist"
            )
        self._open.append(descriptor)
        path = f"/proc/self/fd/{descriptor}"
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            # As in Docker, the directory's contents are copied, not the directory's own metadata.
            self.items.append(Item(destination, "mkdir", None, NEW_DIRECTORY_MODE, 0))
            self._walk(path, source, destination)
            return
        name = posixpath.join(destination, posixpath.basename(source)) if to_directory else destination
        if self.extract_archives and stat.S_ISREG(st.st_mode) and is_archive(path):
            self.items.append(Item(destination, "archive", path, 0, st.st_mtime))
            return
        self._add_entry(path, st, name)

    def add_data(self, name: str, data: bytes) -> None:
        """Add a file with the given content (a heredoc of ``COPY <<EOF``)."""
        mode = self.chmod if self.chmod is not None else 0o644
        self.items.append(Item(name, "file", None, mode, 0, data=data))

    def _mode(self, st: os.stat_result) -> int:
        return self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode)

    def _add_entry(self, path: str, st: os.stat_result, name: str) -> None:
        if stat.S_ISREG(st.st_mode):
            self.items.append(Item(name, "file", path, self._mode(st), st.st_mtime))
        elif stat.S_ISLNK(st.st_mode):
            self.items.append(Item(name, "symlink", path, 0o777, st.st_mtime, link=os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            self.items.append(Item(name, "dir", path, self._mode(st), st.st_mtime))
        else:
            raise BuildError(f"cannot copy {name}: only regular files, directories and symlinks can be copied")

    def _walk(self, directory: str, source: str, destination: str) -> None:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda item: item.name):
                relative = posixpath.join(source, entry.name) if source else entry.name
                if self.ignore is not None and self.ignore.excludes(relative):
                    if entry.is_dir(follow_symlinks=False) and any(p.exception for p in self.ignore.patterns):
                        self._walk(entry.path, relative, posixpath.join(destination, entry.name))
                    continue
                st = entry.stat(follow_symlinks=False)
                name = posixpath.join(destination, entry.name)
                self._add_entry(entry.path, st, name)
                if stat.S_ISDIR(st.st_mode):
                    self._walk(entry.path, relative, name)

    def digest(self) -> str:
        """Return a digest of names, types, modes, link targets and contents; times are left out, as Docker does."""
        hasher = hashlib.sha256()
        for item in self.items:
            hasher.update(f"{item.kind}\0{item.name}\0{item.mode:o}\0{item.link}\0".encode())
            if item.data is not None:
                hasher.update(item.data)
            elif item.kind in ("file", "archive") and item.path is not None:
                with open(item.path, "rb") as file:
                    while chunk := file.read(CHUNK_SIZE):
                        hasher.update(chunk)
            hasher.update(b"\0")
        return "sha256:" + hasher.hexdigest()


def is_archive(path: str) -> bool:
    """Return whether the file is a tar archive, plain or compressed with gzip, bzip2 or xz, judged by its content."""
    try:
        with open_decompressed(path) as stream:
            head = stream.read(512)
    except (OSError, EOFError, lzma.LZMAError):
        return False
    return len(head) >= 262 and head[257:262] == b"ustar"


def open_decompressed(path: str) -> BinaryIO:
    with open(path, "rb") as file:
        magic = file.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


# -- the layer tar ------------------------------------------------------------------------------


def parent_directories(items: list[Item]) -> list[str]:
    """Return every directory above the items' names, shallowest first."""
    parents: dict[str, None] = {}
    for item in items:
        parts = item.name.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parents["/".join(parts[:depth])] = None
    return list(parents)


def write_tar(out: BinaryIO, items: list[Item], owner: Owner | None, lower_stat: Callable[[str], os.stat_result | None],
              mkdir_owner: Owner) -> None:
    """Write the items as a layer tar.

    Directories above them that exist in the image keep their metadata; new
    ones are created with mode 755, owned by ``mkdir_owner``. Files belong to
    ``owner``, or to root (0:0) without one; archives keep their members' owners
    unless ``owner`` is given.
    """
    names = {item.name.strip("/") for item in items if item.kind not in ("archive", "mkdir")}
    new_directories = parent_directories(items)
    new_directories += [item.name.strip("/") for item in items if item.kind in ("archive", "mkdir")]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for parent in dict.fromkeys(new_directories):
            if parent in names or not parent:
                continue
            info = tarfile.TarInfo(parent)
            info.type = tarfile.DIRTYPE
            existing = lower_stat(parent)
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                info.mode, info.uid, info.gid = stat.S_IMODE(existing.st_mode), existing.st_uid, existing.st_gid
                info.mtime = int(existing.st_mtime)
            else:
                info.mode, info.uid, info.gid = NEW_DIRECTORY_MODE, mkdir_owner.uid, mkdir_owner.gid
                info.mtime = 0
            archive.addfile(info)
        for item in items:
            if item.kind == "archive":
                _write_archive_members(archive, item, owner)
                continue
            if item.kind == "mkdir":
                continue
            name = item.name.strip("/")
            if not name:
                continue  # the root directory itself keeps the image's metadata
            info = tarfile.TarInfo(name)
            info.mode = item.mode
            info.mtime = int(item.mtime)
            info.uid, info.gid = (owner.uid, owner.gid) if owner else (0, 0)
            if item.kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif item.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = item.link
                archive.addfile(info)
            elif item.data is not None:
                info.size = len(item.data)
                archive.addfile(info, io.BytesIO(item.data))
            else:
                assert item.path is not None
                with open(item.path, "rb") as file:
                    info.size = os.fstat(file.fileno()).st_size
                    archive.addfile(info, file)


def _write_archive_members(archive: tarfile.TarFile, item: Item, owner: Owner | None) -> None:
    """Copy the members of a local archive into the layer below ``item.name`` (``ADD`` extracting a tar)."""
    assert item.path is not None
    base = item.name.strip("/")
    with open_decompressed(item.path) as stream, tarfile.open(fileobj=stream, mode="r|") as source:
        for member in source:
            cleaned = posixpath.normpath("/" + member.name).lstrip("/")
            if ".." in member.name.split("/"):
                raise BuildError(f"ADD {item.path}: archive member {member.name!r} escapes the destination")
            member.name = posixpath.join(base, cleaned) if cleaned and cleaned != "." else base
            if not member.name:
                continue
            if member.islnk():
                member.linkname = posixpath.join(base, posixpath.normpath("/" + member.linkname).lstrip("/"))
            if owner is not None:
                member.uid, member.gid = owner.uid, owner.gid
                member.uname = member.gname = ""
            data = source.extractfile(member) if member.isreg() else None
            archive.addfile(member, data)


# -- owners --------------------------------------------------------------------------------------


def resolve_owner(spec: str, lowers: list[str], instruction: str) -> Owner:
    """Resolve ``--chown`` (``user``, ``user:group``, names or numbers) in the image's /etc/passwd and /etc/group."""
    from dockyard.image import layer as layer_module

    user, _, group = spec.partition(":")
    paths = [Path(lower) for lower in lowers]

    def table(path: str) -> list[list[str]]:
        data = layer_module.read_file(paths, path) if paths else None
        if data is None:
            return []
        return [line.split(":") for line in data.decode(errors="replace").splitlines() if line and not line.startswith("#")]

    passwd = table("/etc/passwd")
    if user.isdigit():
        uid = int(user)
        primary = next((int(row[3]) for row in passwd if len(row) > 3 and row[2] == user and row[3].isdigit()), None)
    else:
        row = next((row for row in passwd if row and row[0] == user and len(row) > 3), None)
        if row is None:
            raise BuildError(f"{instruction} --chown={spec}: unable to find user {user}: no matching entries in passwd file")
        uid, primary = int(row[2]), int(row[3])
    if not group:
        return Owner(uid, primary if primary is not None else uid)
    if group.isdigit():
        return Owner(uid, int(group))
    groups = table("/etc/group")
    match = next((row for row in groups if row and row[0] == group and len(row) > 2), None)
    if match is None:
        raise BuildError(f"{instruction} --chown={spec}: unable to find group {group}: no matching entries in group file")
    return Owner(uid, int(match[2]))


def parse_chmod(text: str, instruction: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise BuildError(f"{instruction} --chmod={text}: invalid mode: use octal digits such as 755") from None
    if mode > 0o7777:
        raise BuildError(f"{instruction} --chmod={text}: invalid mode: greater than 7777")
    return mode

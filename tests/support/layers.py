"""Build layer tar streams in memory, and fixtures for unpacking them.

Each helper returns a ``tarfile.TarInfo`` plus optional content; ``tar_bytes``
joins them into one uncompressed PAX tar.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

Member = tuple[tarfile.TarInfo, bytes | None]

MTIME = 1_600_000_000


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, mtime: int = MTIME) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.mtime = mtime
    return info


def file(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
         mtime: int = MTIME, xattrs: dict[str, bytes] | None = None) -> Member:
    info = _info(name, tarfile.REGTYPE, mode, uid, gid, mtime)
    info.size = len(data)
    for key, value in (xattrs or {}).items():
        info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    return info, data


def directory(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = MTIME) -> Member:
    return _info(name, tarfile.DIRTYPE, mode, uid, gid, mtime), None


def symlink(name: str, target: str, uid: int = 0, gid: int = 0) -> Member:
    info = _info(name, tarfile.SYMTYPE, 0o777, uid, gid)
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Member:
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return info, None


def chardev(name: str, major: int, minor: int, mode: int = 0o666) -> Member:
    info = _info(name, tarfile.CHRTYPE, mode)
    info.devmajor = major
    info.devminor = minor
    return info, None


def blockdev(name: str, major: int, minor: int, mode: int = 0o660) -> Member:
    info = _info(name, tarfile.BLKTYPE, mode)
    info.devmajor = major
    info.devminor = minor
    return info, None


def fifo(name: str, mode: int = 0o600) -> Member:
    return _info(name, tarfile.FIFOTYPE, mode), None


def whiteout(path: str) -> Member:
    """A whiteout member deleting ``path`` from the lower layers."""
    parent, _, base = path.rpartition("/")
    return file(f"{parent}/.wh.{base}" if parent else f".wh.{base}")


def opaque(directory_path: str) -> Member:
    """The marker that hides the lower layers' contents of ``directory_path``."""
    return file(f"{directory_path.rstrip('/')}/.wh..wh..opq")


def tar_bytes(members: Iterable[Member], trailing: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue() + trailing


def unpack(members: Iterable[Member], target: Path, lowers: Iterable[Path] = (), layer: str = "sha256:test"):
    """Apply a layer built from ``members`` into the new directory ``target``; return the LayerResult."""
    from dockyard.image import layer as layer_module

    target.mkdir(parents=True)
    return layer_module.apply(io.BytesIO(tar_bytes(members)), target, layer, list(lowers))


def is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return (st.st_mode & 0o170000) == 0o020000 and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def tree_state(root: Path) -> dict[str, tuple]:
    """Describe every entry under ``root`` (type, mode, owner, size, mtime, content, link target)."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            content: bytes | str | None = None
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file():
                content = path.read_bytes()
            state[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                                   st.st_rdev, content)
    return state


@pytest.fixture
def overlay_mount(tmp_path: Path) -> Iterator:
    """Mount overlays of snapshot directories; every mount is unmounted at teardown."""
    mounted: list[Path] = []

    def mount(lowers: list[Path]) -> Path:
        point = tmp_path / f"merged{len(mounted)}"
        point.mkdir()
        if len(lowers) == 1:
            # overlayfs needs two layers at least without an upper directory.
            empty = tmp_path / f"empty{len(mounted)}"
            empty.mkdir()
            lowers = [*lowers, empty]
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=" + ":".join(str(p) for p in lowers), str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=True)

"""Modes and owners of unpacked members, where apply skips chown and chmod that would change nothing.

A new inode gets the creator's ids and the requested mode without the umask,
except under a setgid directory or a default ACL. These tests check that the
result is the member's metadata in each of those cases. Tests that give
members another owner than the test process need root.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.image import layer
from tests.support.layers import Member, directory, file, symlink, tar_bytes

UID = os.geteuid()
GID = os.getegid()
OTHER_ID = 1000 if UID != 1000 else 1001
needs_root = pytest.mark.skipif(UID != 0, reason="giving files another owner needs root")

DEFAULT_ACL = "system.posix_acl_default"
# Tags and the "no id" value of the Linux POSIX ACL xattr format (version 2).
ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER = 0x01, 0x04, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF


def acl_xattr(user: int, group: int, other: int) -> bytes:
    """Encode a minimal ACL (owner, group and other entries) as the kernel's xattr value."""
    entries = ((ACL_USER_OBJ, user), (ACL_GROUP_OBJ, group), (ACL_OTHER, other))
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ACL_UNDEFINED_ID) for tag, perm in entries)


def owned(member: Member, uid: int = UID, gid: int = GID) -> Member:
    info, data = member
    info.uid, info.gid = uid, gid
    return info, data


def with_xattr(member: Member, key: str, value: bytes) -> Member:
    info, data = member
    info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    return info, data


def apply_into(target: Path, members: list[Member]) -> None:
    layer.apply(io.BytesIO(tar_bytes(members)), target, "sha256:test")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def set_umask() -> Iterator[Callable[[int], None]]:
    original = os.umask(0o022)
    os.umask(original)
    yield os.umask
    os.umask(original)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "snapshot"
    path.mkdir()
    return path


MODES = {
    "dir-775": (directory, 0o775),
    "dir-555": (directory, 0o555),
    "dir-700": (directory, 0o700),
    "file-644": (file, 0o644),
    "file-666": (file, 0o666),
    "file-600": (file, 0o600),
    "file-000": (file, 0o000),
    "file-757": (file, 0o757),
}


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o000, 0o777])
def test_modes_exact_under_any_umask(target: Path, set_umask: Callable[[int], None], mask: int) -> None:
    set_umask(mask)
    apply_into(target, [owned(make(name, mode=mode)) for name, (make, mode) in MODES.items()])
    for name, (_, mode) in MODES.items():
        assert mode_of(target / name) == mode, name


@pytest.mark.parametrize(("name", "make", "mode"), [
    ("setuid", file, 0o4755),
    ("setgid", file, 0o2711),
    ("sticky-dir", directory, 0o1777),
    ("setgid-dir", directory, 0o2775),
    ("all-bits", file, 0o7777),
])
def test_special_bits_kept(target: Path, name: str, make: Callable[..., Member], mode: int) -> None:
    apply_into(target, [owned(make(name, mode=mode))])
    assert mode_of(target / name) == mode


def test_setuid_file_with_content_keeps_bit(target: Path) -> None:
    # A write to a setuid file can clear the bit, so the order of write and chmod matters.
    apply_into(target, [owned(file("bin/tool", b"\x7fELF" * 1000, mode=0o4755))])
    assert mode_of(target / "bin/tool") == 0o4755
    assert (target / "bin/tool").read_bytes() == b"\x7fELF" * 1000


def test_creator_owner_kept(target: Path) -> None:
    apply_into(target, [owned(directory("d")), owned(file("d/f", b"x")), owned(symlink("d/l", "f"))])
    for name in ("d", "d/f", "d/l"):
        st = os.lstat(target / name)
        assert (st.st_uid, st.st_gid) == (UID, GID), name


@needs_root
def test_other_owner_set(target: Path) -> None:
    apply_into(target, [
        directory("home", uid=OTHER_ID, gid=OTHER_ID),
        file("home/f", b"x", mode=0o640, uid=OTHER_ID, gid=OTHER_ID),
        symlink("home/l", "f", uid=OTHER_ID, gid=OTHER_ID),
        file("home/g", b"y", uid=0, gid=OTHER_ID),
    ])
    for name in ("home", "home/f", "home/l"):
        st = os.lstat(target / name)
        assert (st.st_uid, st.st_gid) == (OTHER_ID, OTHER_ID), name
    g = os.lstat(target / "home/g")
    assert (g.st_uid, g.st_gid) == (0, OTHER_ID)
    assert mode_of(target / "home/f") == 0o640


@needs_root
def test_setgid_directory_passes_on_nothing(target: Path) -> None:
    # Under a setgid directory a new inode takes the directory's group, and a new
    # directory also takes the setgid bit, so both must be set back to the member's.
    apply_into(target, [
        directory("shared", mode=0o2775, gid=OTHER_ID),
        file("shared/f", b"x", gid=0),
        directory("shared/sub", mode=0o755, gid=0),
        file("shared/sub/g", b"y", gid=0),
        symlink("shared/l", "f", gid=0),
    ])
    assert os.lstat(target / "shared").st_gid == OTHER_ID
    for name in ("shared/f", "shared/sub", "shared/sub/g", "shared/l"):
        assert os.lstat(target / name).st_gid == 0, name
    assert mode_of(target / "shared/sub") == 0o755
    assert mode_of(target / "shared") == 0o2775


@needs_root
def test_setgid_directory_listed_after_contents(target: Path) -> None:
    apply_into(target, [
        file("shared/f", b"x", gid=0),
        directory("shared", mode=0o2775, gid=OTHER_ID),
        file("shared/g", b"y", gid=0),
    ])
    assert os.lstat(target / "shared/f").st_gid == 0
    assert os.lstat(target / "shared/g").st_gid == 0


@needs_root
def test_setgid_snapshot_root(target: Path) -> None:
    os.chown(target, -1, OTHER_ID)
    os.chmod(target, 0o2755)
    apply_into(target, [file("f", b"x", gid=0), directory("d", gid=0)])
    assert os.lstat(target / "f").st_gid == 0
    assert os.lstat(target / "d").st_gid == 0
    assert mode_of(target / "d") == 0o755


def test_default_acl_from_layer(target: Path, set_umask: Callable[[int], None]) -> None:
    # The default ACL (owner rwx, group and other nothing) replaces the umask for new inodes.
    set_umask(0o022)
    acl = acl_xattr(7, 0, 0)
    apply_into(target, [
        owned(with_xattr(directory("private", mode=0o755), DEFAULT_ACL, acl)),
        owned(file("private/f", b"x", mode=0o644)),
        owned(directory("private/sub", mode=0o755)),
    ])
    assert os.getxattr(target / "private", DEFAULT_ACL) == acl
    assert mode_of(target / "private/f") == 0o644
    assert mode_of(target / "private/sub") == 0o755


def test_default_acl_on_snapshot_root(target: Path, set_umask: Callable[[int], None]) -> None:
    set_umask(0o022)
    os.setxattr(target, DEFAULT_ACL, acl_xattr(7, 0, 0))
    apply_into(target, [owned(file("f", b"x", mode=0o644)), owned(directory("d", mode=0o755))])
    assert mode_of(target / "f") == 0o644
    assert mode_of(target / "d") == 0o755


def test_hardlink_keeps_file_mode(target: Path) -> None:
    info = tarfile.TarInfo("b")
    info.type = tarfile.LNKTYPE
    info.linkname = "a"
    info.mode = 0o600
    apply_into(target, [owned(file("a", b"x", mode=0o4751)), owned((info, None))])
    assert mode_of(target / "b") == 0o4751
    assert os.lstat(target / "a").st_ino == os.lstat(target / "b").st_ino

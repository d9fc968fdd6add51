"""The container's root filesystem: spec mounts, pivot_root, masked and read-only paths.

All of this runs in the container's init, inside its new mount namespace, so
nothing here is visible on the host. Paths inside the root are resolved with
``resolve_in_root``, which keeps symlinks from pointing a mount outside it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import RuntimeFailure
from dockyard.runtime import libc
from dockyard.runtime.cgroups import Cgroup

log = logging.getLogger(__name__)

# Mount options that set (False) or clear (True) a flag; the rest go to the filesystem as data.
FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "ro": (False, libc.MS_RDONLY),
    "rw": (True, libc.MS_RDONLY),
    "nosuid": (False, libc.MS_NOSUID),
    "suid": (True, libc.MS_NOSUID),
    "nodev": (False, libc.MS_NODEV),
    "dev": (True, libc.MS_NODEV),
    "noexec": (False, libc.MS_NOEXEC),
    "exec": (True, libc.MS_NOEXEC),
    "sync": (False, libc.MS_SYNCHRONOUS),
    "async": (True, libc.MS_SYNCHRONOUS),
    "dirsync": (False, libc.MS_DIRSYNC),
    "remount": (False, libc.MS_REMOUNT),
    "mand": (False, libc.MS_MANDLOCK),
    "nomand": (True, libc.MS_MANDLOCK),
    "atime": (True, libc.MS_NOATIME),
    "noatime": (False, libc.MS_NOATIME),
    "diratime": (True, libc.MS_NODIRATIME),
    "nodiratime": (False, libc.MS_NODIRATIME),
    "relatime": (False, libc.MS_RELATIME),
    "norelatime": (True, libc.MS_RELATIME),
    "strictatime": (False, libc.MS_STRICTATIME),
    "nostrictatime": (True, libc.MS_STRICTATIME),
    "lazytime": (False, libc.MS_LAZYTIME),
    "nolazytime": (True, libc.MS_LAZYTIME),
    "nosymfollow": (False, libc.MS_NOSYMFOLLOW),
    "symfollow": (True, libc.MS_NOSYMFOLLOW),
    "bind": (False, libc.MS_BIND),
    "rbind": (False, libc.MS_BIND | libc.MS_REC),
}

PROPAGATION_OPTIONS = {
    "private": libc.MS_PRIVATE,
    "rprivate": libc.MS_PRIVATE | libc.MS_REC,
    "shared": libc.MS_SHARED,
    "rshared": libc.MS_SHARED | libc.MS_REC,
    "slave": libc.MS_SLAVE,
    "rslave": libc.MS_SLAVE | libc.MS_REC,
    "unbindable": libc.MS_UNBINDABLE,
    "runbindable": libc.MS_UNBINDABLE | libc.MS_REC,
}

# statvfs f_flag bits (ST_*) and the mount flags they report. A remount repeats
# them because in a user namespace the kernel rejects clearing a locked flag.
STATVFS_FLAGS = {
    1: libc.MS_RDONLY,
    2: libc.MS_NOSUID,
    4: libc.MS_NODEV,
    8: libc.MS_NOEXEC,
    16: libc.MS_SYNCHRONOUS,
    64: libc.MS_MANDLOCK,
    1024: libc.MS_NOATIME,
    2048: libc.MS_NODIRATIME,
    4096: libc.MS_RELATIME,
}


@dataclass
class MountOptions:
    flags: int
    propagation: list[int]
    data: str


def parse_options(options: list[str]) -> MountOptions:
    """Split spec mount options into mount flags, propagation changes and filesystem data."""
    flags = 0
    propagation = []
    data = []
    for option in options:
        if option in FLAG_OPTIONS:
            clear, flag = FLAG_OPTIONS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in PROPAGATION_OPTIONS:
            propagation.append(PROPAGATION_OPTIONS[option])
        else:
            data.append(option)
    return MountOptions(flags, propagation, ",".join(data))


def resolve_in_root(root: Path, path: str) -> Path:
    """Return ``path`` inside ``root`` with every symlink resolved as if ``root`` were ``/``.

    ``..`` stops at ``root``, and an absolute symlink target starts again at
    ``root``, so the result never leaves it. Missing components are kept as
    they are, for the caller to create.
    """
    parts = [part for part in path.split("/") if part not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        links += 1
        if links > 255:
            raise RuntimeFailure(f"too many levels of symbolic links resolving {path!r} in {root}")
        if target.startswith("/"):
            resolved = []
        parts = [piece for piece in target.split("/") if piece not in ("", ".")] + parts
    return root.joinpath(*resolved)


def _mkdirs(root: Path, path: Path) -> None:
    """Create the directories of ``path``, each component resolved inside ``root``."""
    current = root
    for part in path.relative_to(root).parts:
        current = resolve_in_root(root, str((current / part).relative_to(root)))
        if not current.exists():
            current.mkdir(mode=0o755)


def make_mountpoint(root: Path, destination: str, is_file: bool) -> Path:
    target = resolve_in_root(root, destination)
    _mkdirs(root, target.parent)
    if is_file:
        if not target.exists():
            target.touch(mode=0o644)
    elif not target.exists():
        target.mkdir(mode=0o755)
    return target


def mount(source: str | None, target: str | Path, fstype: str | None, flags: int, data: str | None = None) -> None:
    log.debug("mount %s on %s type %s flags %#x data %r", source, target, fstype, flags, data)
    libc.mount(source, str(target), fstype, flags, data or None)


def current_flags(path: str | Path) -> int:
    """Return the mount flags of the mount at ``path``, read through statvfs."""
    reported = os.statvfs(path).f_flag
    return sum(flag for bit, flag in STATVFS_FLAGS.items() if reported & bit)


def remount_bind(path: str | Path, flags: int) -> None:
    """Remount a bind mount with ``flags`` added to the ones it has (MS_REMOUNT|MS_BIND)."""
    mount(None, path, None, libc.MS_REMOUNT | libc.MS_BIND | current_flags(path) | flags)


def prepare_root(rootfs: Path, propagation: str | None) -> None:
    """Stop mount events reaching the host, then make the rootfs a mount point of its own.

    The host's mounts are made slave (or the spec's rootfsPropagation) first,
    so nothing this container mounts propagates back. pivot_root needs its new
    root to be a mount point, hence the bind of the rootfs onto itself.
    """
    flag = PROPAGATION_OPTIONS.get(propagation or "rslave")
    if flag is None:
        raise RuntimeFailure(f"invalid linux.rootfsPropagation {propagation!r}")
    if flag & libc.MS_SHARED:
        # pivot_root rejects a shared new root; the shared propagation is set
        # on the new root after pivot_root instead.
        flag = libc.MS_SLAVE | libc.MS_REC
    mount(None, "/", None, flag)
    mount(str(rootfs), rootfs, None, libc.MS_BIND | libc.MS_REC)


def split_cgroup_mounts(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split the spec's mounts into the others and the cgroup filesystems with what lies below them.

    Each part keeps the spec's order, and a mount below a cgroup mount comes
    after it, so the order stays valid when the second part is mounted last.
    """
    cgroup_points = [
        entry.get("destination", "").rstrip("/") for entry in entries if entry.get("type") in ("cgroup", "cgroup2")
    ]

    def below_cgroup(entry: dict[str, Any]) -> bool:
        destination = entry.get("destination", "").rstrip("/")
        return any(destination == point or destination.startswith(point + "/") for point in cgroup_points)

    early = [entry for entry in entries if not below_cgroup(entry)]
    late = [entry for entry in entries if below_cgroup(entry)]
    return early, late


def mount_entry(rootfs: Path, entry: dict[str, Any], cgroup: Cgroup, cgroupns: bool) -> None:
    """Mount one entry of the spec's ``mounts`` below ``rootfs``."""
    destination = entry.get("destination", "")
    if not destination.startswith("/"):
        raise RuntimeFailure(f"mount destination {destination!r} is not an absolute path")
    fstype = entry.get("type") or None
    source = entry.get("source")
    options = parse_options(entry.get("options") or [])
    is_bind = bool(options.flags & libc.MS_BIND) or fstype == "bind"

    if fstype == "cgroup" or fstype == "cgroup2":
        target = make_mountpoint(rootfs, destination, is_file=False)
        mount_cgroups(target, cgroup, options, cgroupns)
        return

    if is_bind:
        if not source or not os.path.exists(source):
            raise RuntimeFailure(f"bind mount source {source!r} for {destination} does not exist")
        target = make_mountpoint(rootfs, destination, is_file=not os.path.isdir(source))
        bind_flags = libc.MS_BIND | (options.flags & libc.MS_REC)
        mount(source, target, None, bind_flags)
        # A bind mount ignores every other flag until it is remounted.
        extra = options.flags & ~(libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT)
        if extra:
            remount_bind(target, extra)
    else:
        target = make_mountpoint(rootfs, destination, is_file=False)
        try:
            mount(source, target, fstype, options.flags, options.data)
        except OSError as error:
            # In a user namespace devpts rejects gid=5 unless gid 5 is mapped.
            if fstype == "devpts" and error.errno == errno.EINVAL and "gid=" in options.data:
                data = ",".join(part for part in options.data.split(",") if not part.startswith("gid="))
                mount(source, target, fstype, options.flags, data)
            else:
                raise
    for flag in options.propagation:
        mount(None, target, None, flag)


def mount_cgroups(target: Path, cgroup: Cgroup, options: MountOptions, cgroupns: bool) -> None:
    """Mount the container's view of every cgroup hierarchy at ``target`` (``/sys/fs/cgroup``).

    With a cgroup namespace, each hierarchy is mounted fresh and shows the
    container's cgroup as its root. Without one, the host's directory of the
    container's cgroup is bound there instead, as runc does.
    """
    read_only = options.flags & libc.MS_RDONLY
    flags = options.flags & ~libc.MS_RDONLY
    if {hierarchy.version for hierarchy, _ in cgroup.directories} == {2}:
        _mount_hierarchy(target, "cgroup2", None, cgroup.directories[0][1], options.flags, cgroupns)
        return
    # v1 and hybrid: a tmpfs with one directory per hierarchy, like the host's /sys/fs/cgroup.
    mount("tmpfs", target, "tmpfs", flags, "mode=755")
    for hierarchy, directory in cgroup.directories:
        if hierarchy.version == 2:
            name = "unified"
            _mount_hierarchy(target / name, "cgroup2", None, directory, options.flags, cgroupns)
            continue
        name = ",".join(hierarchy.controllers)
        _mount_hierarchy(target / name, "cgroup", name, directory, options.flags, cgroupns)
        # Co-mounted controllers (cpu,cpuacct) are also reachable under each name.
        if len(hierarchy.controllers) > 1:
            for controller in hierarchy.controllers:
                link = target / controller
                if not link.exists():
                    link.symlink_to(name)
    if read_only:
        mount(None, target, None, libc.MS_REMOUNT | flags | libc.MS_RDONLY)


def _mount_hierarchy(
    target: Path, fstype: str, data: str | None, host_directory: Path, flags: int, cgroupns: bool
) -> None:
    target.mkdir(exist_ok=True)
    if cgroupns:
        mount(fstype, target, fstype, flags, data)
        return
    mount(str(host_directory), target, None, libc.MS_BIND | libc.MS_REC)
    remount_bind(target, flags & ~(libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT))


def pivot(rootfs: Path) -> None:
    """Make ``rootfs`` the root and detach the old root.

    pivot_root(".", ".") stacks the old root on top of the new one at the
    same place. Unmounting "." then removes the old root, so no directory
    for it is needed inside the container. The old root is made slave first
    so that the unmount does not propagate to the host.
    """
    os.chdir(rootfs)
    log.debug("pivot_root %s", rootfs)
    libc.pivot_root(".", ".")
    mount(None, ".", None, libc.MS_SLAVE | libc.MS_REC)
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/")


def mask_paths(paths: list[str]) -> None:
    """Hide each path: /dev/null bound over files, an empty read-only tmpfs over directories."""
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            mount("tmpfs", path, "tmpfs", libc.MS_RDONLY, None)
        else:
            mount("/dev/null", path, None, libc.MS_BIND)


def readonly_paths(paths: list[str]) -> None:
    """Make each path a read-only bind mount of itself."""
    for path in paths:
        if not os.path.exists(path):
            continue
        mount(path, path, None, libc.MS_BIND | libc.MS_REC)
        remount_bind(path, libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)


def readonly_root() -> None:
    remount_bind("/", libc.MS_RDONLY)

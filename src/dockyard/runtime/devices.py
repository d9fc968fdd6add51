"""Device nodes and the standard symlinks in the container's /dev."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from dockyard.errors import RuntimeFailure
from dockyard.runtime import libc
from dockyard.runtime.mounts import make_mountpoint, mount, resolve_in_root

log = logging.getLogger(__name__)

# Nodes every container gets, as (path, type, major, minor).
DEFAULT_DEVICES = [
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8),
    ("/dev/urandom", "c", 1, 9),
    ("/dev/tty", "c", 5, 0),
]

SYMLINKS = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
]

TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def create(rootfs: Path, spec_devices: list[dict[str, Any]], bind: bool) -> None:
    """Create the default nodes and the spec's ``linux.devices`` below ``rootfs``.

    In a user namespace mknod is not allowed, so each node is a bind mount of
    the host's node instead (``bind``).
    """
    devices = [
        {"path": path, "type": kind, "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0}
        for path, kind, major, minor in DEFAULT_DEVICES
    ]
    requested = {device["path"] for device in spec_devices}
    devices = [device for device in devices if device["path"] not in requested] + list(spec_devices)
    for device in devices:
        if bind:
            _bind_device(rootfs, device)
        else:
            _make_device(rootfs, device)
    for source, link in SYMLINKS:
        path = resolve_in_root(rootfs, link)
        if not path.exists() and not path.is_symlink():
            os.symlink(source, path)
    if os.path.exists("/proc/kcore"):
        path = resolve_in_root(rootfs, "/dev/core")
        if not path.is_symlink() and not path.exists():
            os.symlink("/proc/kcore", path)


def _make_device(rootfs: Path, device: dict[str, Any]) -> None:
    kind = device.get("type", "c")
    if kind not in TYPES:
        raise RuntimeFailure(f"invalid type {kind!r} for device {device.get('path')}")
    path = resolve_in_root(rootfs, device["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    mode = (device.get("fileMode") or 0o666) & 0o7777
    number = os.makedev(device.get("major", 0), device.get("minor", 0))
    log.debug("mknod %s type %s %d:%d", path, kind, device.get("major", 0), device.get("minor", 0))
    os.mknod(path, TYPES[kind] | mode, number)
    # mknod applies the umask; chmod sets the spec's mode exactly.
    os.chmod(path, mode)
    os.chown(path, device.get("uid", 0) or 0, device.get("gid", 0) or 0)


def _bind_device(rootfs: Path, device: dict[str, Any]) -> None:
    source = device["path"]
    if not os.path.exists(source):
        raise RuntimeFailure(f"device {source} does not exist on the host, and a user namespace cannot mknod it")
    target = make_mountpoint(rootfs, device["path"], is_file=True)
    mount(source, target, None, libc.MS_BIND)

"""linux.namespaces: the flags for unshare(2) and joining namespaces by path with setns(2)."""

from __future__ import annotations

import logging
import os
from typing import Any

from dockyard.errors import RuntimeFailure
from dockyard.runtime import libc

log = logging.getLogger(__name__)

FLAGS = {
    "pid": libc.CLONE_NEWPID,
    "network": libc.CLONE_NEWNET,
    "mount": libc.CLONE_NEWNS,
    "ipc": libc.CLONE_NEWIPC,
    "uts": libc.CLONE_NEWUTS,
    "user": libc.CLONE_NEWUSER,
    "cgroup": libc.CLONE_NEWCGROUP,
    "time": libc.CLONE_NEWTIME,
}


class Namespaces:
    """The namespaces a container requests, split into new ones and ones to join."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.new: set[str] = set()
        self.paths: dict[str, str] = {}
        for entry in entries:
            kind = entry.get("type")
            if kind not in FLAGS:
                raise RuntimeFailure(f"unknown namespace type {kind!r} in linux.namespaces")
            if kind in self.new or kind in self.paths:
                raise RuntimeFailure(f"namespace type {kind!r} is listed twice in linux.namespaces")
            if entry.get("path"):
                self.paths[kind] = entry["path"]
            else:
                self.new.add(kind)

    def has(self, kind: str) -> bool:
        return kind in self.new or kind in self.paths

    def unshare_flags(self, exclude: tuple[str, ...] = ()) -> int:
        flags = 0
        for kind in self.new:
            if kind not in exclude:
                flags |= FLAGS[kind]
        return flags

    def open_paths(self) -> list[tuple[str, int]]:
        """Open the namespace files to join, user namespace first.

        They are all opened before joining any, because after joining a mount
        namespace the paths would resolve in the container's filesystem.
        """
        opened = []
        for kind in sorted(self.paths, key=lambda name: name != "user"):
            try:
                opened.append((kind, os.open(self.paths[kind], os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as error:
                raise RuntimeFailure(f"opening {kind} namespace {self.paths[kind]} failed: {error.strerror}") from None
        return opened


def join(kind: str, fd: int) -> None:
    log.debug("setns %s fd %d", kind, fd)
    libc.setns(fd, FLAGS[kind])
    os.close(fd)


def unshare(flags: int) -> None:
    log.debug("unshare %#x", flags)
    libc.unshare(flags)


def write_id_maps(pid: int, uid_mappings: list[dict[str, int]], gid_mappings: list[dict[str, int]]) -> None:
    """Write /proc/PID/uid_map and gid_map for a process that has unshared its user namespace."""
    for name, mappings in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
        text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)
        path = f"/proc/{pid}/{name}"
        log.debug("write %s: %r", path, text)
        try:
            with open(path, "w") as file:
                file.write(text)
        except OSError as error:
            raise RuntimeFailure(f"writing {text.strip()!r} to {path} failed: {error.strerror}") from None

"""A container's cgroup in every mounted hierarchy: v1, v2 (unified) or hybrid.

Hybrid hosts mount v1 hierarchies for the controllers and a cgroup2 tree
(often at ``/sys/fs/cgroup/unified``) that contains few or no controllers. A
container joins every hierarchy, so its processes are also found through
the v2 tree.

``linux.cgroupsPath`` follows runc: an absolute path is taken from the root of
each hierarchy, a relative one from the cgroup of the calling process in that
hierarchy.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import RuntimeFailure
from dockyard.runtime.cgroups import v1, v2
from dockyard.runtime.cgroups.files import read, write

log = logging.getLogger(__name__)

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc")


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: its mount point, version and v1 controllers."""

    mountpoint: Path
    version: int
    controllers: tuple[str, ...] = ()
    root: str = "/"  # the cgroup shown at the mount point, from mountinfo


def hierarchies(mountinfo: str | None = None) -> list[Hierarchy]:
    """Return the cgroup hierarchies from /proc/self/mountinfo (or the given text).

    Named v1 hierarchies without controllers (``name=systemd``) are left out:
    no resource lives there.
    """
    if mountinfo is None:
        with open("/proc/self/mountinfo") as file:
            mountinfo = file.read()
    found: list[Hierarchy] = []
    seen: set[tuple[int, tuple[str, ...]]] = set()
    for line in mountinfo.splitlines():
        # Fields: id parent major:minor root mountpoint options [optional...] - fstype source superoptions
        before, _, after = line.partition(" - ")
        fields = before.split()
        tail = after.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, super_options = tail[0], tail[2].split(",")
        mountpoint = Path(fields[4].replace("\\040", " "))
        if fstype == "cgroup2":
            key: tuple[int, tuple[str, ...]] = (2, ())
            hierarchy = Hierarchy(mountpoint, 2, (), fields[3])
        elif fstype == "cgroup":
            controllers = tuple(sorted(option for option in super_options if option in V1_CONTROLLERS))
            if not controllers:
                continue
            key = (1, controllers)
            hierarchy = Hierarchy(mountpoint, 1, controllers, fields[3])
        else:
            continue
        # The same hierarchy can be mounted twice (bind mounts); the first mount wins.
        if key not in seen:
            seen.add(key)
            found.append(hierarchy)
    return found


def mode(found: list[Hierarchy]) -> str:
    """Return ``v1``, ``v2`` or ``hybrid`` for a list of hierarchies."""
    versions = {hierarchy.version for hierarchy in found}
    if versions == {2}:
        return "v2"
    if versions == {1, 2}:
        return "hybrid"
    if versions == {1}:
        return "v1"
    raise RuntimeFailure("no cgroup hierarchy is mounted (checked /proc/self/mountinfo)")


def supports_blkio_weight(found: list[Hierarchy] | None = None) -> bool:
    """Tell whether this host can weight a cgroup's block I/O (blkio.weight in v1, io.weight in v2).

    v1 has the file only while an I/O scheduler with weights (CFQ or BFQ) is
    in use. For v2 this checks only that the io controller is available.
    """
    found = hierarchies() if found is None else found
    for hierarchy in found:
        if "blkio" in hierarchy.controllers:
            return any((hierarchy.mountpoint / name).exists() for name in ("blkio.weight", "blkio.bfq.weight"))
    for hierarchy in found:
        if hierarchy.version == 2:
            try:
                return "io" in read(hierarchy.mountpoint, "cgroup.controllers").split()
            except RuntimeFailure:
                return False
    return False


def own_cgroups(text: str | None = None) -> dict[tuple[int, tuple[str, ...]], str]:
    """Map (version, controllers) to this process's cgroup path, from /proc/self/cgroup."""
    if text is None:
        with open("/proc/self/cgroup") as file:
            text = file.read()
    result: dict[tuple[int, tuple[str, ...]], str] = {}
    for line in text.splitlines():
        number, controllers, path = line.split(":", 2)
        if number == "0" and controllers == "":
            result[(2, ())] = path
        else:
            names = tuple(sorted(name for name in controllers.split(",") if name in V1_CONTROLLERS))
            if names:
                result[(1, names)] = path
    return result


def start_grace_period(found: list[Hierarchy] | None = None) -> None:
    """Start, in a thread, the RCU grace period that the next move of a process into a cgroup waits for.

    Every move into a cgroup takes the kernel's ``cgroup_threadgroup_rwsem``
    for writing. The first writer after a quiet spell waits for an RCU grace
    period (6 to 20 ms measured on this project's test machine), and writers
    that come within about one more grace period do not wait (``rcu_sync`` in
    Linux's ``kernel/rcu/sync.c``). The thread moves this process into the
    cgroup it is in already, which changes nothing but takes the lock. Started
    while a container is being prepared, it takes part of that wait off the
    start. The kernel waits with ``cgroup_mutex`` taken, and making or removing
    a cgroup directory needs that mutex too, so those should come first.
    Failures only cost the time this would save, so they are logged and ignored.

    ``found`` is the list of mounted hierarchies, when the caller has read it already.
    """
    import threading

    def move_self() -> None:
        try:
            own = own_cgroups()
            for hierarchy in hierarchies() if found is None else found:
                path = own.get((hierarchy.version, hierarchy.controllers))
                if path is None or not path.startswith(hierarchy.root):
                    continue
                directory = hierarchy.mountpoint / path[len(hierarchy.root):].lstrip("/")
                with open(directory / "cgroup.procs", "w") as file:
                    file.write("0")
                return
        except OSError as error:
            log.debug("starting a grace period for the next cgroup move failed: %s", error)

    threading.Thread(target=move_self, name="cgroup grace period", daemon=True).start()


def resolve(hierarchy: Hierarchy, cgroups_path: str, own: dict[tuple[int, tuple[str, ...]], str]) -> Path:
    """Return the directory of ``cgroups_path`` in one hierarchy."""
    if ".." in Path(cgroups_path).parts:
        raise RuntimeFailure(f"linux.cgroupsPath {cgroups_path!r} must not contain '..'")
    if cgroups_path.startswith("/"):
        relative = cgroups_path.lstrip("/")
    else:
        base = own.get((hierarchy.version, hierarchy.controllers), "/")
        # A mount that shows a subtree (root other than "/") starts the path there.
        if base.startswith(hierarchy.root):
            base = base[len(hierarchy.root):]
        relative = os.path.join(base.lstrip("/"), cgroups_path)
    return hierarchy.mountpoint / relative


@dataclass
class Cgroup:
    """A container's cgroup: one directory per hierarchy, and the ones it created."""

    path: str
    directories: list[tuple[Hierarchy, Path]]
    created: list[Path] = field(default_factory=list)

    @classmethod
    def for_path(cls, cgroups_path: str, found: list[Hierarchy] | None = None) -> Cgroup:
        found = hierarchies() if found is None else found
        mode(found)  # raises when there is none
        own = own_cgroups()
        return cls(cgroups_path, [(hierarchy, resolve(hierarchy, cgroups_path, own)) for hierarchy in found])

    def create(self, resources: dict[str, Any], devices: list[dict[str, Any]]) -> None:
        """Make the directories and write the spec's linux.resources; raises RuntimeFailure.

        A leaf that already contains processes belongs to someone else, and
        joining it would let this container's delete kill them, so it is rejected.
        """
        busy = self.pids()
        if busy:
            raise RuntimeFailure(f"cgroup {self.path} is already in use by processes {sorted(busy)[:5]}")
        for hierarchy, directory in self.directories:
            self._make(hierarchy, directory)
        # The init joins next. The kernel waits for the grace period with
        # cgroup_mutex taken, which mkdir needs too, so it starts once the directories exist.
        start_grace_period([hierarchy for hierarchy, _ in self.directories])
        for hierarchy, directory in self.directories:
            if hierarchy.version == 1:
                for controller in hierarchy.controllers:
                    v1.apply(controller, directory, resources, devices)
            else:
                needed = [name for name in v2.needed_controllers(resources) if self._v2_only(name)]
                v2.enable_controllers(hierarchy.mountpoint, directory, needed)
                if needed:
                    v2.apply(directory, resources)

    def update(self, resources: dict[str, Any]) -> None:
        """Write new limits to the cgroup of a created, running or paused container, or raise RuntimeFailure.

        Only the sections present in ``resources`` are written, and the device
        rules are left alone. Each value goes to the one hierarchy whose
        controller enforces it.
        """
        for hierarchy, directory in self.directories:
            if hierarchy.version == 1:
                for controller in hierarchy.controllers:
                    v1.update(controller, directory, resources)
                continue
            needed = [name for name in v2.needed_controllers(resources) if self._v2_only(name)]
            if needed:
                v2.enable_controllers(hierarchy.mountpoint, directory, needed)
                v2.apply(directory, v2.for_controllers(resources, needed))

    def _v2_only(self, controller: str) -> bool:
        # On a hybrid host a controller lives in exactly one version; v1 wins when mounted there.
        return not any(controller in hierarchy.controllers for hierarchy, _ in self.directories)

    def _make(self, hierarchy: Hierarchy, directory: Path) -> None:
        missing = []
        parent = directory
        while not parent.exists() and parent != hierarchy.mountpoint:
            missing.append(parent)
            parent = parent.parent
        for path in reversed(missing):
            log.debug("cgroup mkdir %s", path)
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as error:
                raise RuntimeFailure(f"creating cgroup {path} failed: {error.strerror}") from None
            self.created.append(path)
            if "cpuset" in hierarchy.controllers and path != directory:
                v1.inherit_cpuset(path)

    def join(self, pid: int) -> None:
        """Move a process into the cgroup in every hierarchy."""
        for _, directory in self.directories:
            write(directory, "cgroup.procs", pid)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for _, directory in self.directories:
            try:
                text = (directory / "cgroup.procs").read_text()
            except FileNotFoundError:
                continue
            found.update(int(line) for line in text.split())
        return found

    def kill_all(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Send ``sig`` to every process in the cgroup and, for SIGKILL, wait until none is left."""
        frozen = self.is_frozen()
        for pid in self.pids():
            log.debug("kill %d with signal %d (cgroup %s)", pid, sig, self.path)
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if frozen:
            # A frozen task only acts on SIGKILL once thawed.
            self.thaw()
        if sig != signal.SIGKILL:
            return
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"processes {sorted(self.pids())} in cgroup {self.path} outlived SIGKILL")
            time.sleep(0.01)

    def destroy(self) -> None:
        """Kill what is left, then remove the leaf and the parents this cgroup created.

        A parent that has other children stays; that is not an error.
        """
        self.kill_all()
        leaves = [directory for _, directory in self.directories]
        for path in leaves + sorted(self.created, key=lambda p: len(p.parts), reverse=True):
            self._remove(path, must=path in leaves)

    def remove_created(self) -> None:
        """Remove only the directories this object created, deepest first, killing nothing.

        This undoes a failed create without touching a cgroup that existed before.
        """
        leaves = {directory for _, directory in self.directories}
        for path in sorted(self.created, key=lambda p: len(p.parts), reverse=True):
            self._remove(path, must=path in leaves)

    def _remove(self, path: Path, must: bool) -> None:
        # A v1 cgroup can stay busy for a moment after its last task exited.
        for _attempt in range(100):
            try:
                path.rmdir()
                log.debug("cgroup rmdir %s", path)
                return
            except FileNotFoundError:
                return
            except OSError as error:
                if error.errno == errno.EBUSY and must:
                    time.sleep(0.01)
                    continue
                if error.errno in (errno.EBUSY, errno.ENOTEMPTY) and not must:
                    return
                raise RuntimeFailure(f"removing cgroup {path} failed: {error.strerror}") from None
        raise RuntimeFailure(f"removing cgroup {path} failed: still busy")

    def _freezer(self) -> tuple[int, Path] | None:
        for hierarchy, directory in self.directories:
            if "freezer" in hierarchy.controllers:
                return 1, directory
        for hierarchy, directory in self.directories:
            if hierarchy.version == 2 and (directory / "cgroup.freeze").exists():
                return 2, directory
        return None

    def freeze(self) -> None:
        found = self._freezer()
        if found is None:
            raise RuntimeFailure(f"cgroup {self.path} has no freezer (neither v1 freezer nor cgroup.freeze)")
        (v1 if found[0] == 1 else v2).freeze(found[1])

    def thaw(self) -> None:
        found = self._freezer()
        if found is None:
            raise RuntimeFailure(f"cgroup {self.path} has no freezer (neither v1 freezer nor cgroup.freeze)")
        (v1 if found[0] == 1 else v2).thaw(found[1])

    def is_frozen(self) -> bool:
        found = self._freezer()
        if found is None or not found[1].exists():
            return False
        return (v1 if found[0] == 1 else v2).is_frozen(found[1])

    def to_state(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "directories": [
                {
                    "mountpoint": str(hierarchy.mountpoint),
                    "version": hierarchy.version,
                    "controllers": list(hierarchy.controllers),
                    "root": hierarchy.root,
                    "directory": str(directory),
                }
                for hierarchy, directory in self.directories
            ],
            "created": [str(path) for path in self.created],
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Cgroup:
        directories = [
            (
                Hierarchy(Path(entry["mountpoint"]), entry["version"], tuple(entry["controllers"]), entry["root"]),
                Path(entry["directory"]),
            )
            for entry in data["directories"]
        ]
        return cls(data["path"], directories, [Path(path) for path in data["created"]])


__all__ = ["Cgroup", "Hierarchy", "hierarchies", "mode", "own_cgroups", "resolve", "read", "supports_blkio_weight",
           "write"]

"""Per-container state on disk, and the OCI state derived from it.

Each container has a directory ``<state root>/<id>/`` holding ``state.json``
(written once by create) and ``exec.fifo`` (present until start). The status
is never stored: it is read from the init process and the FIFO, so a
container whose process died shows as stopped.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, ContainerNotFound, RuntimeFailure

DEFAULT_STATE_ROOT = Path("/run/dockyard/runtime")
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

CREATING, CREATED, RUNNING, STOPPED, PAUSED = "creating", "created", "running", "stopped", "paused"


def validate_id(container_id: str) -> str:
    if not ID_PATTERN.match(container_id):
        raise RuntimeFailure(
            f"invalid container ID {container_id!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    return container_id


def process_start_time(pid: int) -> int | None:
    """Return the start time of a process in clock ticks (field 22 of /proc/PID/stat), or None if it is gone.

    A zombie counts as gone. The start time distinguishes a live container init from
    an unrelated process that reused its PID.
    """
    try:
        with open(f"/proc/{pid}/stat") as file:
            text = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses; it ends at the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class ContainerState:
    id: str
    directory: Path
    pid: int
    start_time: int
    bundle: str
    rootfs: str
    created: str
    annotations: dict[str, str] = field(default_factory=dict)
    cgroup: dict[str, Any] = field(default_factory=dict)
    oci_version: str = "1.2.0"

    @property
    def fifo(self) -> Path:
        return self.directory / EXEC_FIFO

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start_time

    def status(self) -> str:
        if not self.alive():
            return STOPPED
        if self.fifo.exists():
            return CREATED
        from dockyard.runtime.cgroups import Cgroup

        if self.cgroup and Cgroup.from_state(self.cgroup).is_frozen():
            return PAUSED
        return RUNNING

    def oci(self) -> dict[str, Any]:
        """Return the state document of the runtime spec."""
        status = self.status()
        return {
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status,
            "pid": self.pid if status != STOPPED else 0,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
        }

    def save(self) -> None:
        data = {
            "ociVersion": self.oci_version,
            "id": self.id,
            "pid": self.pid,
            "startTime": self.start_time,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
            "cgroup": self.cgroup,
        }
        temporary = self.directory / (STATE_FILE + ".tmp")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self.directory / STATE_FILE)


def container_dir(state_root: Path, container_id: str) -> Path:
    return Path(state_root) / validate_id(container_id)


def new_dir(state_root: Path, container_id: str) -> Path:
    directory = container_dir(state_root, container_id)
    Path(state_root).mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        directory.mkdir(mode=0o711)
    except FileExistsError:
        raise Conflict(f"container {container_id!r} already exists in {state_root}") from None
    return directory


def load(state_root: Path, container_id: str) -> ContainerState:
    directory = container_dir(state_root, container_id)
    try:
        data = json.loads((directory / STATE_FILE).read_text())
    except FileNotFoundError:
        raise ContainerNotFound(container_id) from None
    except (OSError, ValueError) as error:
        raise RuntimeFailure(f"reading the state of container {container_id} in {directory} failed: {error}") from None
    return ContainerState(
        id=data["id"],
        directory=directory,
        pid=data["pid"],
        start_time=data["startTime"],
        bundle=data["bundle"],
        rootfs=data["rootfs"],
        created=data["created"],
        annotations=data.get("annotations") or {},
        cgroup=data.get("cgroup") or {},
        oci_version=data.get("ociVersion", "1.2.0"),
    )

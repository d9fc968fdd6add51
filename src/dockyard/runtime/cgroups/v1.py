"""cgroup v1: one hierarchy per controller, each resource written to its controller's directory.

Every function takes the cgroup directory, so unit tests can run on a plain
temporary directory. File names are the kernel's, from
Documentation/admin-guide/cgroup-v1/.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from dockyard.errors import RuntimeFailure
from dockyard.runtime.cgroups.files import read, write

log = logging.getLogger(__name__)

UNLIMITED = -1

# Device nodes every container gets (see runtime/devices.py), allowed in the
# devices controller after the spec's own rules, as runc does.
DEFAULT_ALLOWED_DEVICES = [
    "c 1:3 rwm",  # /dev/null
    "c 1:5 rwm",  # /dev/zero
    "c 1:7 rwm",  # /dev/full
    "c 1:8 rwm",  # /dev/random
    "c 1:9 rwm",  # /dev/urandom
    "c 5:0 rwm",  # /dev/tty
    "c 5:1 rwm",  # /dev/console
    "c 5:2 rwm",  # /dev/ptmx
    "c 136:* rwm",  # /dev/pts/*
]


def write_memory(directory: Path, memory: dict[str, Any]) -> None:
    # The memory limit is written before memory+swap: the kernel requires
    # memory.memsw.limit_in_bytes >= memory.limit_in_bytes at every moment.
    if memory.get("limit") is not None:
        write(directory, "memory.limit_in_bytes", memory["limit"])
    if memory.get("swap") is not None:
        # In v1 the spec's swap value is the memory+swap limit, which is the memsw file's meaning.
        if (directory / "memory.memsw.limit_in_bytes").exists():
            write(directory, "memory.memsw.limit_in_bytes", memory["swap"])
        else:
            log.warning("swap accounting is off in this kernel; memory.swap %s is not enforced", memory["swap"])
    if memory.get("reservation") is not None:
        write(directory, "memory.soft_limit_in_bytes", memory["reservation"])
    if memory.get("swappiness") is not None:
        write(directory, "memory.swappiness", memory["swappiness"])
    if memory.get("disableOOMKiller"):
        write(directory, "memory.oom_control", 1)


def update_memory(directory: Path, memory: dict[str, Any]) -> None:
    """Write new memory limits to a cgroup that may already have some, in an order the kernel accepts.

    A memory limit raised above the current memory+swap limit needs the
    memsw file written first, because the kernel rejects any write that
    would leave memory.memsw.limit_in_bytes below memory.limit_in_bytes.
    """
    limit, swap = memory.get("limit"), memory.get("swap")
    memsw = "memory.memsw.limit_in_bytes"
    if limit is not None and swap is not None and (directory / memsw).exists():
        if limit > int(read(directory, memsw)):
            write(directory, memsw, swap)
            memory = {**memory, "swap": None}
    write_memory(directory, memory)


def write_cpu(directory: Path, cpu: dict[str, Any]) -> None:
    if cpu.get("shares"):
        write(directory, "cpu.shares", cpu["shares"])
    # The period comes first because the kernel checks a new quota against the current period.
    if cpu.get("period"):
        write(directory, "cpu.cfs_period_us", cpu["period"])
    if cpu.get("quota") is not None and cpu["quota"] != 0:
        write(directory, "cpu.cfs_quota_us", cpu["quota"])
    if cpu.get("realtimePeriod"):
        write(directory, "cpu.rt_period_us", cpu["realtimePeriod"])
    if cpu.get("realtimeRuntime"):
        write(directory, "cpu.rt_runtime_us", cpu["realtimeRuntime"])


def inherit_cpuset(directory: Path) -> None:
    """Copy cpuset.cpus and cpuset.mems from the parent when they are empty.

    A new v1 cpuset cgroup starts with both empty, and the kernel rejects a
    task joining a cpuset with no CPUs or memory nodes.
    """
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not read(directory, name):
            write(directory, name, read(directory.parent, name))


def write_cpuset(directory: Path, cpu: dict[str, Any]) -> None:
    if cpu.get("cpus"):
        write(directory, "cpuset.cpus", cpu["cpus"])
    if cpu.get("mems"):
        write(directory, "cpuset.mems", cpu["mems"])


def write_pids(directory: Path, pids: dict[str, Any]) -> None:
    limit = pids.get("limit")
    if limit is not None:
        write(directory, "pids.max", "max" if limit <= 0 else limit)


def device_rule(rule: dict[str, Any]) -> str:
    """Return the devices.allow/deny line of a spec rule, such as ``c 1:3 rwm``."""
    kind = rule.get("type", "a") or "a"
    major = "*" if rule.get("major") in (None, -1) else rule["major"]
    minor = "*" if rule.get("minor") in (None, -1) else rule["minor"]
    access = rule.get("access", "rwm") or "rwm"
    return f"{kind} {major}:{minor} {access}"


def write_devices(directory: Path, rules: list[dict[str, Any]], devices: list[dict[str, Any]]) -> None:
    """Apply the spec's device rules, then allow the default nodes and the spec's linux.devices."""
    for rule in rules:
        write(directory, "devices.allow" if rule.get("allow") else "devices.deny", device_rule(rule))
    if not rules:
        return
    for line in DEFAULT_ALLOWED_DEVICES:
        write(directory, "devices.allow", line)
    for device in devices:
        rule = {"type": device["type"], "major": device["major"], "minor": device["minor"], "access": "rwm"}
        write(directory, "devices.allow", device_rule(rule))


def write_blkio(directory: Path, block_io: dict[str, Any]) -> None:
    if block_io.get("weight"):
        write(directory, "blkio.weight", block_io["weight"])
    for key, name in (
        ("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
        ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
        ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
        ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"),
    ):
        for entry in block_io.get(key, []):
            write(directory, name, f"{entry['major']}:{entry['minor']} {entry['rate']}")


def apply(controller: str, directory: Path, resources: dict[str, Any], devices: list[dict[str, Any]]) -> None:
    """Write the spec's linux.resources that belong to one controller's hierarchy."""
    if controller == "memory" and resources.get("memory"):
        write_memory(directory, resources["memory"])
    elif controller == "cpu" and resources.get("cpu"):
        write_cpu(directory, resources["cpu"])
    elif controller == "cpuset":
        inherit_cpuset(directory)
        if resources.get("cpu"):
            write_cpuset(directory, resources["cpu"])
    elif controller == "pids" and resources.get("pids"):
        write_pids(directory, resources["pids"])
    elif controller == "devices":
        write_devices(directory, resources.get("devices") or [], devices)
    elif controller == "blkio" and resources.get("blockIO"):
        write_blkio(directory, resources["blockIO"])


def update(controller: str, directory: Path, resources: dict[str, Any]) -> None:
    """Write the sections of ``resources`` that belong to one controller to a running container's cgroup.

    Unlike ``apply``, it leaves the device rules and the inherited cpuset
    alone, and orders the memory writes against the limits already set.
    """
    if controller == "memory" and resources.get("memory"):
        update_memory(directory, resources["memory"])
    elif controller == "cpu" and resources.get("cpu"):
        write_cpu(directory, resources["cpu"])
    elif controller == "cpuset" and resources.get("cpu"):
        write_cpuset(directory, resources["cpu"])
    elif controller == "pids" and resources.get("pids"):
        write_pids(directory, resources["pids"])
    elif controller == "blkio" and resources.get("blockIO"):
        write_blkio(directory, resources["blockIO"])


def freeze(directory: Path, timeout: float = 10.0) -> None:
    write(directory, "freezer.state", "FROZEN")
    # FREEZING means some task has not stopped yet; the kernel finishes on its own.
    deadline = time.monotonic() + timeout
    while read(directory, "freezer.state") != "FROZEN":
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"cgroup {directory} did not freeze within {timeout} s")
        time.sleep(0.01)


def thaw(directory: Path) -> None:
    write(directory, "freezer.state", "THAWED")


def is_frozen(directory: Path) -> bool:
    return read(directory, "freezer.state") == "FROZEN"

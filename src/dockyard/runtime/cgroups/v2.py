"""cgroup v2: the unified hierarchy, where a parent enables controllers for its children.

Every function takes the cgroup directory, so unit tests can run on a plain
temporary directory. File names are the kernel's, from
Documentation/admin-guide/cgroup-v2.rst.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from dockyard.errors import RuntimeFailure
from dockyard.runtime.cgroups.files import read, write

log = logging.getLogger(__name__)

# cpu.shares (v1) ranges over [2, 262144]; cpu.weight (v2) over [1, 10000].
SHARES_MIN, SHARES_MAX = 2, 262144
WEIGHT_MIN, WEIGHT_MAX = 1, 10000
DEFAULT_PERIOD_US = 100000
# blkio.weight (v1) ranges over [10, 1000], and io.weight (v2) over [1, 10000].
BLKIO_WEIGHT_MIN, BLKIO_WEIGHT_MAX = 10, 1000


def shares_to_weight(shares: int) -> int:
    """Map cpu.shares linearly onto cpu.weight, so both ranges' ends line up.

    The default share of 1024 lands at weight 39, not at the v2 default 100:
    the two defaults do not sit at the same point of their ranges.
    """
    shares = min(max(shares, SHARES_MIN), SHARES_MAX)
    return WEIGHT_MIN + (shares - SHARES_MIN) * (WEIGHT_MAX - WEIGHT_MIN) // (SHARES_MAX - SHARES_MIN)


def blkio_weight_to_io_weight(weight: int) -> int:
    """Map blkio.weight linearly onto io.weight, as runc does, so both ranges' ends line up."""
    weight = min(max(weight, BLKIO_WEIGHT_MIN), BLKIO_WEIGHT_MAX)
    return WEIGHT_MIN + (weight - BLKIO_WEIGHT_MIN) * (WEIGHT_MAX - WEIGHT_MIN) // (BLKIO_WEIGHT_MAX - BLKIO_WEIGHT_MIN)


def needed_controllers(resources: dict[str, Any]) -> list[str]:
    """Return the v2 controllers that the spec's resources need enabled."""
    needed = []
    memory = resources.get("memory") or {}
    if any(memory.get(key) is not None for key in ("limit", "swap", "reservation")):
        needed.append("memory")
    cpu = resources.get("cpu") or {}
    if cpu.get("shares") or cpu.get("quota") or cpu.get("period"):
        needed.append("cpu")
    if cpu.get("cpus") or cpu.get("mems"):
        needed.append("cpuset")
    if (resources.get("pids") or {}).get("limit") is not None:
        needed.append("pids")
    if (resources.get("blockIO") or {}).get("weight"):
        needed.append("io")
    return needed


def for_controllers(resources: dict[str, Any], controllers: list[str]) -> dict[str, Any]:
    """Return the sections of ``resources`` that the given v2 controllers enforce.

    On a hybrid host the rest belong to v1 hierarchies, and their files do
    not exist in the cgroup2 directory.
    """
    selected: dict[str, Any] = {}
    if "memory" in controllers and resources.get("memory"):
        selected["memory"] = resources["memory"]
    cpu = resources.get("cpu") or {}
    cpu_keys = [*(("shares", "quota", "period") if "cpu" in controllers else ()),
                *(("cpus", "mems") if "cpuset" in controllers else ())]
    cpu_part = {key: cpu[key] for key in cpu_keys if key in cpu}
    if cpu_part:
        selected["cpu"] = cpu_part
    if "pids" in controllers and resources.get("pids"):
        selected["pids"] = resources["pids"]
    if "io" in controllers and resources.get("blockIO"):
        selected["blockIO"] = resources["blockIO"]
    return selected


def enable_controllers(mountpoint: Path, leaf: Path, controllers: list[str]) -> None:
    """Enable controllers in cgroup.subtree_control of every ancestor of ``leaf`` below ``mountpoint``."""
    if not controllers:
        return
    available = set(read(mountpoint, "cgroup.controllers").split())
    missing = [name for name in controllers if name not in available]
    if missing:
        raise RuntimeFailure(f"cgroup v2 controllers {missing} are not available at {mountpoint}")
    line = " ".join(f"+{name}" for name in controllers)
    directory = mountpoint
    for part in leaf.relative_to(mountpoint).parts:
        enabled = set(read(directory, "cgroup.subtree_control").split())
        if not set(controllers) <= enabled:
            write(directory, "cgroup.subtree_control", line)
        directory = directory / part


def write_memory(directory: Path, memory: dict[str, Any]) -> None:
    limit = memory.get("limit")
    if limit is not None:
        write(directory, "memory.max", "max" if limit < 0 else limit)
    swap = memory.get("swap")
    if swap is not None:
        # The spec's swap is memory+swap (a v1 notion); v2's memory.swap.max counts swap alone.
        if swap < 0:
            write(directory, "memory.swap.max", "max")
        elif limit is None or limit < 0:
            raise RuntimeFailure(f"memory.swap {swap} needs a memory.limit on cgroup v2")
        elif swap < limit:
            raise RuntimeFailure(f"memory.swap {swap} is below memory.limit {limit}; it counts memory plus swap")
        else:
            write(directory, "memory.swap.max", swap - limit)
    if memory.get("reservation") is not None:
        write(directory, "memory.low", memory["reservation"])


def write_cpu(directory: Path, cpu: dict[str, Any]) -> None:
    if cpu.get("shares"):
        write(directory, "cpu.weight", shares_to_weight(cpu["shares"]))
    quota, period = cpu.get("quota"), cpu.get("period")
    if quota or period:
        quota_text = "max" if quota is None or quota <= 0 else str(quota)
        write(directory, "cpu.max", f"{quota_text} {period or DEFAULT_PERIOD_US}")
    if cpu.get("cpus"):
        write(directory, "cpuset.cpus", cpu["cpus"])
    if cpu.get("mems"):
        write(directory, "cpuset.mems", cpu["mems"])


def write_pids(directory: Path, pids: dict[str, Any]) -> None:
    limit = pids.get("limit")
    if limit is not None:
        write(directory, "pids.max", "max" if limit <= 0 else limit)


def write_io_weight(directory: Path, weight: int) -> None:
    # With the BFQ scheduler the weight has its own file, in blkio's range. Otherwise io.weight takes it, scaled.
    if (directory / "io.bfq.weight").exists():
        write(directory, "io.bfq.weight", weight)
    else:
        write(directory, "io.weight", f"default {blkio_weight_to_io_weight(weight)}")


def apply(directory: Path, resources: dict[str, Any]) -> None:
    """Write the spec's linux.resources to a v2 cgroup."""
    if resources.get("memory"):
        write_memory(directory, resources["memory"])
    if resources.get("cpu"):
        write_cpu(directory, resources["cpu"])
    if resources.get("pids"):
        write_pids(directory, resources["pids"])
    if (resources.get("blockIO") or {}).get("weight"):
        write_io_weight(directory, resources["blockIO"]["weight"])
    if [rule for rule in resources.get("devices") or [] if rule != {"allow": False, "access": "rwm"}]:
        # NOTE: v2 filters device access with an eBPF program, which dockyard does not attach yet.
        log.warning("cgroup v2: device rules are not enforced: %s", resources["devices"])


def freeze(directory: Path, timeout: float = 10.0) -> None:
    write(directory, "cgroup.freeze", 1)
    deadline = time.monotonic() + timeout
    while not is_frozen(directory):
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"cgroup {directory} did not freeze within {timeout} s")
        time.sleep(0.01)


def thaw(directory: Path) -> None:
    write(directory, "cgroup.freeze", 0)


def is_frozen(directory: Path) -> bool:
    for line in read(directory, "cgroup.events").splitlines():
        key, _, value = line.partition(" ")
        if key == "frozen":
            return value == "1"
    return False

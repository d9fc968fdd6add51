"""Container update: check a ``POST /containers/{id}/update`` body and merge it into a HostConfig.

The body is Docker's ``UpdateConfig``: the fields of the Engine API's
``Resources`` object at the top level, plus ``RestartPolicy``. As in Docker,
a zero, empty or null field leaves its setting unchanged, and so does a
restart policy with an empty name. ``plan`` returns the new HostConfig and
the ``linux.resources`` sections to write to a running container's cgroup.
The checks and their messages follow dockerd's, because clients show them
as they are.

This module only computes; ``ContainerService.update`` applies the result to
the cgroup, the state database, the bundle and the monitor.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, InvalidArgument

log = logging.getLogger(__name__)

# Integer fields of the update body that dockyard applies.
INTEGER_FIELDS = ("BlkioWeight", "CpuShares", "CpuPeriod", "CpuQuota", "NanoCpus", "Memory", "MemorySwap",
                  "MemoryReservation", "PidsLimit")
CPUSET_FIELDS = ("CpusetCpus", "CpusetMems")
UPDATABLE = (*INTEGER_FIELDS, *CPUSET_FIELDS, "RestartPolicy")
# The other fields of the Engine API's Resources object. dockerd ignores them
# in an update, but dockyard rejects a non-empty one, so that no request is
# silently dropped.
NOT_UPDATABLE = (
    "CgroupParent", "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps", "CpuRealtimePeriod", "CpuRealtimeRuntime", "Devices", "DeviceCgroupRules",
    "DeviceRequests", "KernelMemory", "KernelMemoryTCP", "MemorySwappiness", "OomKillDisable", "Init", "Ulimits",
    "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth",
)
# Limits that the kernel's CFS bandwidth control accepts, in microseconds.
CPU_PERIOD_MIN, CPU_PERIOD_MAX = 1000, 1_000_000
CPU_QUOTA_MIN = 1000
BLKIO_WEIGHT_MIN, BLKIO_WEIGHT_MAX = 10, 1000
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
# Docker's warning when the host cannot weight block I/O. The weight is then not recorded.
BLKIO_WEIGHT_WARNING = "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
# Sections of linux.resources that a HostConfig's limits produce (ocispec.resources) and an update replaces.
LIMIT_SECTIONS = ("memory", "cpu", "pids", "blockIO")


@dataclass
class Host:
    """The host's facts that an update is checked against: online CPUs and memory nodes, block I/O weighting."""

    online_cpus: str
    online_mems: str
    blkio_weight: bool

    @classmethod
    def current(cls) -> Host:
        from dockyard.runtime import cgroups

        return cls(_read_list_file("/sys/devices/system/cpu/online", f"0-{(os.cpu_count() or 1) - 1}"),
                   _read_list_file("/sys/devices/system/node/online", "0"),
                   cgroups.supports_blkio_weight())


@dataclass
class Update:
    """The outcome of ``plan``."""

    host_config: dict[str, Any]          # the new HostConfig to record
    resources: dict[str, Any]            # changed linux.resources sections, for a running container's cgroup
    spec_resources: dict[str, Any]       # every limit section of the new HostConfig, for the bundle's config.json
    restart_policy: dict[str, Any] | None = None   # the new RestartPolicy, when the body sets one
    warnings: list[str] = field(default_factory=list)


def plan(host_config: dict[str, Any], body: Any, host: Host) -> Update:
    """Check an update body against a container's HostConfig and merge it in.

    Raises InvalidArgument for an invalid value and Conflict for a value
    that contradicts a setting the container already has.
    """
    from dockyard.engine import ocispec

    if not isinstance(body, dict):
        raise InvalidArgument("invalid update: the request body must be a JSON object")
    _reject_not_updatable(body)
    values = {name: _integer(body, name) for name in INTEGER_FIELDS}
    cpusets = {name: _cpuset(body, name) for name in CPUSET_FIELDS}
    warnings: list[str] = []
    _check_ranges(values)
    _check_cpu_conflicts(host_config, values)
    if values["BlkioWeight"] and not host.blkio_weight:
        warnings.append(BLKIO_WEIGHT_WARNING)
        values["BlkioWeight"] = None
    if cpusets["CpusetCpus"]:
        _check_available(cpusets["CpusetCpus"], host.online_cpus, "CPUs")
    if cpusets["CpusetMems"]:
        _check_available(cpusets["CpusetMems"], host.online_mems, "memory nodes")

    updated = dict(host_config)
    changed: set[str] = set()
    for name, value in [*values.items(), *cpusets.items()]:
        if name != "PidsLimit" and value not in (None, 0, ""):
            updated[name] = value
            changed.add(name)
    limit = values["PidsLimit"]
    if limit is not None:
        # Unlike the other fields, 0 is a value here: 0 and -1 both mean unlimited,
        # which is recorded as null, like a container created without a limit.
        updated["PidsLimit"] = limit if limit > 0 else None
        changed.add("PidsLimit")
    _merge_memory(host_config, updated, values)
    if 0 < (updated.get("Memory") or 0) < (updated.get("MemoryReservation") or 0):
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")

    restart_policy = _restart_policy(body.get("RestartPolicy"), host_config)
    if restart_policy is not None:
        updated["RestartPolicy"] = restart_policy

    # The same conversion that start uses, so the cgroup gets what a restart would give it.
    spec_resources = ocispec.resources(updated)
    if updated.get("BlkioWeight"):
        # NOTE: ocispec.resources has no block I/O weight, so a later start drops it.
        # The monitor's restarts keep it, because they reuse the patched config.json.
        spec_resources["blockIO"] = {"weight": updated["BlkioWeight"]}
    return Update(updated, _changed_sections(changed, updated, spec_resources), spec_resources, restart_policy,
                  warnings)


def _reject_not_updatable(body: dict[str, Any]) -> None:
    rejected = sorted(name for name in NOT_UPDATABLE if body.get(name) not in (None, 0, "", [], {}, False))
    if rejected:
        raise InvalidArgument(f"updating {', '.join(rejected)} is not supported: dockyard can update only "
                              f"{', '.join(UPDATABLE)}")


def _integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"invalid {name} {json.dumps(value)}: expected an integer")
    return value


def _cpuset(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid {name} {json.dumps(value)}: expected a list such as 0-3,5")
    parse_list(value, name)
    return value


def parse_list(text: str, name: str) -> set[int]:
    """Parse a kernel CPU or node list such as ``0-3,5`` into its numbers; raises InvalidArgument naming ``name``."""
    numbers: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise InvalidArgument(f"invalid {name} {text!r}: expected a list such as 0-3,5") from None
        if low < 0 or high < low:
            raise InvalidArgument(f"invalid {name} {text!r}: range {part.strip()!r} is empty or negative")
        numbers.update(range(low, high + 1))
    return numbers


def _check_ranges(values: dict[str, int | None]) -> None:
    """Reject values outside what dockerd accepts, with its messages."""
    for name in ("CpuShares", "NanoCpus", "MemoryReservation"):
        value = values[name]
        if value is not None and value < 0:
            raise InvalidArgument(f"invalid {name} {value}: must not be negative")
    period = values["CpuPeriod"]
    if period and not CPU_PERIOD_MIN <= period <= CPU_PERIOD_MAX:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    quota = values["CpuQuota"]
    if quota and quota != -1 and quota < CPU_QUOTA_MIN:
        raise InvalidArgument(f"CPU cfs quota can not be less than 1ms (i.e. 1000), or -1 for no limit: got {quota}")
    weight = values["BlkioWeight"]
    if weight and not BLKIO_WEIGHT_MIN <= weight <= BLKIO_WEIGHT_MAX:
        raise InvalidArgument(f"Range of blkio weight is from 10 to 1000: got {weight}")
    swap = values["MemorySwap"]
    if swap is not None and swap < -1:
        raise InvalidArgument(f"invalid MemorySwap {swap}: use -1 for unlimited swap or a size in bytes")


def _check_cpu_conflicts(host_config: dict[str, Any], values: dict[str, int | None]) -> None:
    """NanoCpus and CpuPeriod/CpuQuota set the same CFS limit, so a container has one or the other, as in Docker."""
    nano = values["NanoCpus"]
    for name, label in (("CpuPeriod", "CPU Period"), ("CpuQuota", "CPU Quota")):
        if nano and values[name]:
            raise InvalidArgument(f"Conflicting options: Nano CPUs and {label} cannot both be set")
        if nano and (host_config.get(name) or 0) > 0:
            raise Conflict(f"Conflicting options: Nano CPUs cannot be updated as {label} has already been set")
        if values[name] and (host_config.get("NanoCpus") or 0) > 0:
            raise Conflict(f"Conflicting options: {label} cannot be updated as NanoCPUs has already been set")


def _check_available(text: str, online: str, kind: str) -> None:
    requested = parse_list(text, kind)
    missing = requested - parse_list(online, kind)
    if missing:
        raise InvalidArgument(f"Requested {kind} are not available - requested {text}, available: {online}")


def _merge_memory(old: dict[str, Any], updated: dict[str, Any], values: dict[str, int | None]) -> None:
    """Apply dockerd's rules for a memory limit given without a memory+swap limit."""
    memory, swap = values["Memory"], values["MemorySwap"]
    if not memory or swap:
        return
    current_swap = old.get("MemorySwap") or 0
    if current_swap > 0 and memory > current_swap:
        raise Conflict("Memory limit should be smaller than already set memoryswap limit, "
                       "update the memoryswap at the same time")
    if current_swap == 0:
        # A container without a memory limit gets memory plus swap of twice the new limit, as create gives it.
        updated["MemorySwap"] = 2 * memory


def _restart_policy(requested: Any, host_config: dict[str, Any]) -> dict[str, Any] | None:
    """Return the checked new restart policy, or None when the body leaves it unchanged."""
    if requested is None:
        return None
    if not isinstance(requested, dict):
        raise InvalidArgument(f"invalid RestartPolicy {json.dumps(requested)}: expected an object with Name")
    name = requested.get("Name") or ""
    count = requested.get("MaximumRetryCount") or 0
    if name == "" and not count:
        return None
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy {name!r}: use no, always, unless-stopped or on-failure")
    if isinstance(count, bool) or not isinstance(count, int):
        raise InvalidArgument(f"invalid restart policy: maximum retry count {json.dumps(count)} is not an integer")
    if count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if host_config.get("AutoRemove") and name != "no":
        raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the container")
    return {"Name": name, "MaximumRetryCount": count}


def _changed_sections(changed: set[str], updated: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Return the linux.resources sections that the changed fields touch, with values for the whole section."""
    resources: dict[str, Any] = {}
    if changed & {"Memory", "MemorySwap", "MemoryReservation"}:
        resources["memory"] = spec.get("memory") or {}
    cpu = spec.get("cpu") or {}
    cpu_keys: list[str] = []
    if "CpuShares" in changed:
        cpu_keys.append("shares")
    if changed & {"NanoCpus", "CpuPeriod", "CpuQuota"}:
        # cgroup v2 writes quota and period as one value, so both go together.
        cpu_keys += ["period", "quota"]
    if "CpusetCpus" in changed:
        cpu_keys.append("cpus")
    if "CpusetMems" in changed:
        cpu_keys.append("mems")
    cpu_part = {key: cpu[key] for key in cpu_keys if key in cpu}
    if cpu_part:
        resources["cpu"] = cpu_part
    if "PidsLimit" in changed:
        # An explicit -1 lifts a limit that the cgroup still has, which a missing section would leave in place.
        resources["pids"] = {"limit": updated.get("PidsLimit") or -1}
    if "BlkioWeight" in changed:
        resources["blockIO"] = {"weight": updated["BlkioWeight"]}
    return resources


def patch_bundle(bundle: Path, update: Update) -> None:
    """Write the new limits into the bundle's config.json and the restart policy into its monitor.json.

    The monitor's restarts run the runtime on these files as they are, so
    they must carry the new values. A missing file (a bundle never written,
    or gone with the run root at reboot) is left missing: ``start`` writes
    both anew.
    """
    config_path = bundle / "config.json"
    if config_path.exists():
        spec = json.loads(config_path.read_text())
        linux = spec.setdefault("linux", {})
        other_sections = {key: value for key, value in (linux.get("resources") or {}).items()
                          if key not in LIMIT_SECTIONS}
        linux["resources"] = {**other_sections, **update.spec_resources}
        _replace(config_path, json.dumps(spec, indent=1))
    monitor_path = bundle / "monitor.json"
    if update.restart_policy is not None and monitor_path.exists():
        launch = json.loads(monitor_path.read_text())
        launch["restart"] = update.restart_policy
        _replace(monitor_path, json.dumps(launch))


def _replace(path: Path, text: str) -> None:
    """Write a file through a temporary file and a rename, so that a concurrent reader sees the old or the new text."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    log.debug("rewrote %s", path)


def _read_list_file(path: str, default: str) -> str:
    try:
        return Path(path).read_text().strip() or default
    except OSError:
        return default

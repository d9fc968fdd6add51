"""Resource usage of containers (``stats``) from their cgroup, and their processes (``top``) from /proc.

``read_sample`` reads one sample of a container's cgroup into the Engine
API's ``ContainerStatsResponse`` fields, from the cgroup directories of every
hierarchy the container uses: v1 (memory, cpuacct, blkio, pids) or v2 (the
unified ``memory.*``, ``cpu.stat``, ``io.stat`` and ``pids.*`` files). Every
reader takes its directory or the /proc root as an argument, so unit tests
run on temporary directories. File names are the kernel's, from
Documentation/admin-guide/cgroup-v1/ and cgroup-v2.rst.

``StatsService`` finds a running container's cgroup in the runtime's state
and turns two samples into the numbers ``docker stats`` shows.
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, ContainerError

if TYPE_CHECKING:
    from dockyard.engine import Engine

# cgroup v1 reports "no limit" as the largest page-aligned signed 64-bit value.
V1_UNLIMITED = 0x7FFFFFFFFFFFF000
# Seconds between the two samples of a one-shot stats call, as Docker takes them.
SAMPLE_INTERVAL = 1.0
NANOSECONDS = 1_000_000_000


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _key_values(text: str | None) -> dict[str, int]:
    """Parse ``key value`` lines, as in memory.stat and cpu.stat."""
    result: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            result[key] = int(value)
        except ValueError:
            continue
    return result


# -- cgroup v1 ------------------------------------------------------------------------


def v1_memory(directory: Path) -> dict[str, Any]:
    usage = _read_int(directory / "memory.usage_in_bytes") or 0
    limit = _read_int(directory / "memory.limit_in_bytes")
    stats = _key_values(_read(directory / "memory.stat"))
    result: dict[str, Any] = {"usage": usage, "stats": stats}
    if limit is not None and limit < V1_UNLIMITED:
        result["limit"] = limit
    max_usage = _read_int(directory / "memory.max_usage_in_bytes")
    if max_usage is not None:
        result["max_usage"] = max_usage
    failcnt = _read_int(directory / "memory.failcnt")
    if failcnt is not None:
        result["failcnt"] = failcnt
    return result


def v1_cpu(directory: Path) -> dict[str, Any]:
    """Read cpuacct: total and per-CPU usage in nanoseconds, user and system time (converted from ticks)."""
    total = _read_int(directory / "cpuacct.usage") or 0
    percpu_text = _read(directory / "cpuacct.usage_percpu") or ""
    percpu = [int(value) for value in percpu_text.split() if value.isdigit()]
    ticks = _key_values(_read(directory / "cpuacct.stat"))
    to_ns = NANOSECONDS // os.sysconf("SC_CLK_TCK")
    return {
        "total_usage": total,
        "percpu_usage": percpu,
        "usage_in_usermode": ticks.get("user", 0) * to_ns,
        "usage_in_kernelmode": ticks.get("system", 0) * to_ns,
    }


def v1_blkio(directory: Path) -> list[dict[str, Any]]:
    """Read blkio.throttle.io_service_bytes_recursive as the API's ``{major, minor, op, value}`` entries."""
    entries = []
    for line in (_read(directory / "blkio.throttle.io_service_bytes_recursive") or "").splitlines():
        fields = line.split()
        if len(fields) != 3 or ":" not in fields[0]:
            continue  # the "Total N" line
        major, minor = fields[0].split(":")
        entries.append({"major": int(major), "minor": int(minor), "op": fields[1], "value": int(fields[2])})
    return entries


def pids(directory: Path) -> dict[str, Any]:
    """Read pids.current and pids.max, which v1 and v2 spell the same."""
    result: dict[str, Any] = {"current": _read_int(directory / "pids.current") or 0}
    limit = _read_int(directory / "pids.max")
    if limit is not None:
        result["limit"] = limit
    return result


# -- cgroup v2 ------------------------------------------------------------------------


def v2_memory(directory: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "usage": _read_int(directory / "memory.current") or 0,
        "stats": _key_values(_read(directory / "memory.stat")),
    }
    limit = _read_int(directory / "memory.max")
    if limit is not None:
        result["limit"] = limit
    return result


def v2_cpu(directory: Path) -> dict[str, Any]:
    """Read cpu.stat, which counts microseconds, as nanoseconds; v2 has no per-CPU usage."""
    stat = _key_values(_read(directory / "cpu.stat"))
    return {
        "total_usage": stat.get("usage_usec", 0) * 1000,
        "percpu_usage": [],
        "usage_in_usermode": stat.get("user_usec", 0) * 1000,
        "usage_in_kernelmode": stat.get("system_usec", 0) * 1000,
    }


def v2_io(directory: Path) -> list[dict[str, Any]]:
    """Read io.stat (``MAJ:MIN rbytes=N wbytes=N ...``) as v1-style Read and Write entries, as Docker reports them."""
    entries = []
    for line in (_read(directory / "io.stat") or "").splitlines():
        device, *pairs = line.split()
        if ":" not in device:
            continue
        major, minor = (int(part) for part in device.split(":"))
        values = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        for key, op in (("rbytes", "read"), ("wbytes", "write")):
            if key in values:
                entries.append({"major": major, "minor": minor, "op": op, "value": int(values[key])})
    return entries


# -- host and network -------------------------------------------------------------------


def system_cpu_usage(proc: Path = Path("/proc")) -> int:
    """Return the host's total CPU time in nanoseconds, from the first line of /proc/stat."""
    for line in (_read(proc / "stat") or "").splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(value) for value in line.split()[1:8])
            return ticks * (NANOSECONDS // os.sysconf("SC_CLK_TCK"))
    return 0


def online_cpus(proc: Path = Path("/proc")) -> int:
    count = sum(1 for line in (_read(proc / "stat") or "").splitlines() if line.startswith("cpu") and line[3:4].isdigit())
    return count or (os.cpu_count() or 1)


def host_memory(proc: Path = Path("/proc")) -> int:
    for line in (_read(proc / "meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def network(pid: int, proc: Path = Path("/proc")) -> dict[str, dict[str, int]]:
    """Return the counters of every interface but ``lo`` in the network namespace of ``pid``, from /proc/PID/net/dev."""
    names = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")
    result: dict[str, dict[str, int]] = {}
    for line in (_read(proc / str(pid) / "net" / "dev") or "").splitlines()[2:]:
        interface, _, counters = line.partition(":")
        interface = interface.strip()
        if not interface or interface == "lo":
            continue
        values = [int(value) for value in counters.split()]
        if len(values) < 16:
            continue
        # Receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs drop ...
        picked = [values[0], values[1], values[2], values[3], values[8], values[9], values[10], values[11]]
        result[interface] = dict(zip(names, picked))
    return result


# -- one sample -----------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupDirs:
    """The cgroup directories of a container, by what they hold."""

    version: int                       # 1 for v1 or hybrid, 2 for the unified hierarchy
    memory: Path | None = None
    cpu: Path | None = None
    io: Path | None = None
    pids: Path | None = None

    @classmethod
    def from_runtime_state(cls, cgroup_state: dict[str, Any]) -> "CgroupDirs":
        """Pick the directories from the runtime's saved cgroup (``Cgroup.to_state``); v1 controllers win on hybrid hosts."""
        found: dict[str, Path] = {}
        unified: Path | None = None
        for entry in cgroup_state.get("directories") or []:
            directory = Path(entry["directory"])
            if entry["version"] == 2:
                unified = directory
                continue
            for controller in entry["controllers"]:
                found[controller] = directory
        if "memory" in found or "cpuacct" in found:
            return cls(1, found.get("memory"), found.get("cpuacct"), found.get("blkio"), found.get("pids"))
        if unified is None:
            raise ContainerError(f"no cgroup directory in the runtime state of cgroup {cgroup_state.get('path')!r}")
        return cls(2, unified, unified, unified, unified)


def read_sample(dirs: CgroupDirs, pid: int | None, proc: Path = Path("/proc")) -> dict[str, Any]:
    """Return one ``ContainerStatsResponse`` sample (without ``precpu_stats``, ``name`` and ``id``)."""
    if dirs.version == 1:
        memory = v1_memory(dirs.memory) if dirs.memory else {}
        cpu = v1_cpu(dirs.cpu) if dirs.cpu else {}
        block = v1_blkio(dirs.io) if dirs.io else []
    else:
        assert dirs.memory and dirs.cpu and dirs.io
        memory, cpu, block = v2_memory(dirs.memory), v2_cpu(dirs.cpu), v2_io(dirs.io)
    if "limit" not in memory:
        # Docker shows the host's memory as the limit of an unlimited container.
        memory["limit"] = host_memory(proc)
    return {
        "read": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % NANOSECONDS:09d}Z",
        "pids_stats": pids(dirs.pids) if dirs.pids else {},
        "blkio_stats": {"io_service_bytes_recursive": block},
        "cpu_stats": {
            "cpu_usage": cpu,
            "system_cpu_usage": system_cpu_usage(proc),
            "online_cpus": online_cpus(proc),
        },
        "memory_stats": memory,
        "networks": network(pid, proc) if pid else {},
    }


# -- what `docker stats` shows ------------------------------------------------------------


def memory_usage_without_cache(memory: dict[str, Any]) -> int:
    """Return the memory usage minus the inactive page cache, as the docker CLI computes it."""
    usage = int(memory.get("usage") or 0)
    stats = memory.get("stats") or {}
    # v1 hierarchies report total_inactive_file; v2 reports inactive_file.
    inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0))
    return usage - inactive if inactive < usage else usage


def cpu_percent(stats: dict[str, Any]) -> float:
    """Return the CPU use between ``precpu_stats`` and ``cpu_stats`` in percent of one CPU, times the CPUs."""
    current, previous = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = (current.get("cpu_usage") or {}).get("total_usage", 0) - (previous.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = current.get("system_cpu_usage", 0) - previous.get("system_cpu_usage", 0)
    cpus = current.get("online_cpus") or len((current.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if cpu_delta <= 0 or system_delta <= 0:
        return 0.0
    return cpu_delta / system_delta * cpus * 100.0


def block_io(stats: dict[str, Any]) -> tuple[int, int]:
    read = write = 0
    for entry in (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += int(entry.get("value", 0))
        elif op == "write":
            write += int(entry.get("value", 0))
    return read, write


def network_io(stats: dict[str, Any]) -> tuple[int, int]:
    received = sent = 0
    for counters in (stats.get("networks") or {}).values():
        received += counters.get("rx_bytes", 0)
        sent += counters.get("tx_bytes", 0)
    return received, sent


def summary(stats: dict[str, Any]) -> dict[str, Any]:
    """Return the numbers of one ``docker stats`` row: CPU and memory percent, usage, limit, I/O and PIDs."""
    memory = stats.get("memory_stats") or {}
    usage = memory_usage_without_cache(memory)
    limit = int(memory.get("limit") or 0)
    return {
        "cpu_percent": cpu_percent(stats),
        "memory_usage": usage,
        "memory_limit": limit,
        "memory_percent": usage / limit * 100.0 if limit else 0.0,
        "network": network_io(stats),
        "block_io": block_io(stats),
        "pids": int((stats.get("pids_stats") or {}).get("current", 0)),
    }


# -- top ------------------------------------------------------------------------------

TOP_TITLES = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


def _boot_time(proc: Path) -> float:
    for line in (_read(proc / "stat") or "").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _tty_name(tty_nr: int) -> str:
    if tty_nr == 0:
        return "?"
    major, minor = (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}"
    return "?"


def _cpu_time(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{text}" if days else text


def _start_time(started: float, now: float) -> str:
    local = time.localtime(started)
    if now - started < 86400 and time.localtime(now).tm_yday == local.tm_yday:
        return time.strftime("%H:%M", local)
    return time.strftime("%b%d", local)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def process_row(pid: int, proc: Path = Path("/proc"), now: float | None = None) -> list[str] | None:
    """Return the ``ps -ef`` columns of one process, or None when it is gone."""
    stat_text = _read(proc / str(pid) / "stat")
    status_text = _read(proc / str(pid) / "status")
    if stat_text is None or status_text is None:
        return None
    command_name = stat_text[stat_text.index("(") + 1:stat_text.rindex(")")]
    fields = stat_text[stat_text.rindex(")") + 2:].split()
    # Fields after the name: state(0) ppid(1) ... tty_nr(4) ... utime(11) stime(12) ... starttime(19).
    ppid, tty_nr = int(fields[1]), int(fields[4])
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    cpu_seconds = (int(fields[11]) + int(fields[12])) / ticks_per_second
    started = _boot_time(proc) + int(fields[19]) / ticks_per_second
    now = time.time() if now is None else now
    elapsed = max(now - started, 1e-9)
    uid = 0
    for line in status_text.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
            break
    raw_command = _read(proc / str(pid) / "cmdline") or ""
    command = " ".join(part for part in raw_command.split("\0") if part) or f"[{command_name}]"
    return [
        _user_name(uid),
        str(pid),
        str(ppid),
        str(min(int(cpu_seconds * 100 / elapsed), 99)),
        _start_time(started, now),
        _tty_name(tty_nr),
        _cpu_time(int(cpu_seconds)),
        command,
    ]


def top(pids_in_cgroup: set[int], proc: Path = Path("/proc")) -> dict[str, Any]:
    """Return ``ContainerTopResponse``: ``Titles`` and one row per process, by PID."""
    now = time.time()
    rows = [row for pid in sorted(pids_in_cgroup) if (row := process_row(pid, proc, now)) is not None]
    return {"Titles": list(TOP_TITLES), "Processes": rows}


# -- the service ----------------------------------------------------------------------


class StatsService:
    """``top`` and ``stats`` of the containers of one root; reached as ``StatsService(engine)``."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.state_root = Path(engine.config.run_root) / "runtime"

    def _running(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        from dockyard.runtime import state

        info = self.engine.containers.inspect(name)
        if not (info.get("State") or {}).get("Running"):
            raise Conflict(f"container {info['Id']} is not running")
        runtime_state = state.load(self.state_root, info["Id"])
        return info, runtime_state.cgroup

    def top(self, name: str, ps_args: str | None = None) -> dict[str, Any]:
        """Return the container's processes in ``ps -ef`` columns."""
        from dockyard.errors import InvalidArgument
        from dockyard.runtime.cgroups import Cgroup

        if ps_args not in (None, "", "-ef"):
            raise InvalidArgument(f"ps options {ps_args!r} are not supported: dockyard top shows the -ef columns only")
        _, cgroup_state = self._running(name)
        return top(Cgroup.from_state(cgroup_state).pids())

    def sample(self, name: str) -> dict[str, Any]:
        """Return one stats sample with Docker's ``name`` and ``id``, and an empty ``precpu_stats``."""
        info, cgroup_state = self._running(name)
        result = read_sample(CgroupDirs.from_runtime_state(cgroup_state), (info.get("State") or {}).get("Pid"))
        result["name"] = info.get("Name", "")
        result["id"] = info["Id"]
        result["precpu_stats"] = {}
        return result

    def stats(self, name: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return a ``ContainerStatsResponse`` whose ``precpu_stats`` is the previous sample's ``cpu_stats``.

        Without ``previous`` a first sample is taken and the call waits
        ``SAMPLE_INTERVAL`` seconds, as Docker's non-streaming stats does.
        """
        if previous is None:
            previous = self.sample(name)
            time.sleep(SAMPLE_INTERVAL)
        current = self.sample(name)
        current["precpu_stats"] = previous.get("cpu_stats") or {}
        current["preread"] = previous.get("read", "")
        return current

"""Fail the test run when it leaves mounts, cgroups, network interfaces or processes behind.

At session start this plugin records the mount points in ``/proc/self/mountinfo``,
the directories under every cgroup hierarchy's ``dockyard*`` directories, the
interfaces in ``/sys/class/net``, the nftables tables and the processes
already running. At session
end, after session fixtures are torn down, anything new is a leak: the run's
exit status becomes 1 and the summary lists each leaked object.

Parent cgroups directly under a hierarchy may appear during the run and stay:
``<hierarchy>/dockyard`` for containers, ``dockyard-test`` for the runtime's
tests. Any directory below such a parent is a leak.

A process is a leak when it descends from pytest, or when its environment
carries this session's marker variable, which catches daemons that detached
from pytest (the container monitor) but still inherited its environment.

The check sees the whole machine, so another test run or a container started by
hand at the same time shows up too. Disable the plugin with
``-p no:tests.support.leaks`` in that case.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "dockyard"
MARKER_VARIABLE = "DOCKYARD_TEST_SESSION"


@dataclass(frozen=True)
class Snapshot:
    mounts: frozenset[str]
    cgroups: frozenset[str]
    interfaces: frozenset[str]
    nft_tables: frozenset[str]
    processes: frozenset[int]


@dataclass
class LeakReport:
    lines: list[str] = field(default_factory=list)


@dataclass
class Leak:
    """One leaked object, as an entry of the terminal reporter's stats.

    Other plugins (Hypothesis) read every stats entry's ``__dict__``, so the
    entries must be objects, not strings.
    """

    description: str


def mount_points() -> frozenset[str]:
    """Return "mount point (fstype)" for each line of /proc/self/mountinfo."""
    found = set()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            # Field 5 is the mount point; the filesystem type follows the " - " separator.
            separator = fields.index("-")
            found.add(f"{fields[4]} ({fields[separator + 1]})")
    return frozenset(found)


def cgroup_hierarchies() -> list[Path]:
    """Return each mounted hierarchy once: the cgroup2 root, or each v1 and hybrid directory."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    seen: dict[Path, Path] = {}
    try:
        entries = sorted(CGROUP_ROOT.iterdir())
    except OSError:
        return []
    for entry in entries:
        # v1 lists "cpu" and "cpuacct" as symlinks to "cpu,cpuacct".
        if entry.is_dir():
            seen.setdefault(entry.resolve(), entry)
    return list(seen.values())


def dockyard_cgroups() -> frozenset[str]:
    """Return every directory at or below ``<hierarchy>/dockyard*``."""
    found = set()
    for hierarchy in cgroup_hierarchies():
        try:
            tops = [entry for entry in os.scandir(hierarchy) if entry.name.startswith(CGROUP_PARENT) and entry.is_dir()]
        except OSError:
            continue
        for top in tops:
            for directory, _, _ in os.walk(top.path):
                found.add(directory)
    return frozenset(found)


def interfaces() -> frozenset[str]:
    return frozenset(os.listdir("/sys/class/net"))


def nft_tables() -> frozenset[str]:
    """Return "family name" of every nftables table, or nothing where the nft command is missing."""
    import subprocess

    try:
        listing = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(line.split(None, 1)[1] for line in listing.splitlines() if line.startswith("table "))


def parent_pids() -> dict[int, int]:
    """Return pid to parent pid for every process that is still there to read."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue
        # The command name in brackets may contain spaces and ")", so split after the last ")".
        fields = data[data.rindex(b")") + 2 :].split()
        parents[int(name)] = int(fields[1])
    return parents


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def marked_processes(marker: bytes, pids: list[int]) -> set[int]:
    """Return the pids whose environment contains ``marker`` (a NAME=value entry)."""
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if marker in environ.read().split(b"\0"):
                    found.add(pid)
        except OSError:
            continue
    return found


def describe_process(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return f"pid {pid} (exited during the check)"
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
    text = command.decode(errors="replace") or f"[{name}]"
    zombie = ", a zombie that its parent never waited for" if state == "Z" else ""
    return f"pid {pid} (parent {parent}){zombie}: {text[:200]}"


def take_snapshot() -> Snapshot:
    return Snapshot(mount_points(), dockyard_cgroups(), interfaces(), nft_tables(), frozenset(parent_pids()))


def wait_for_flushes(pids: list[int], timeout: float = 60.0) -> None:
    """Wait until the snapshot flushes among ``pids`` end: they end by themselves, once the disk has the data.

    The snapshot store flushes each new snapshot in a detached ``sh -c 'sync -f …'``
    named ``dockyard-flush`` (storage/snapshots.py), which may still run when the
    last test ends.
    """
    flushes = []
    for pid in pids:
        try:
            if b"dockyard-flush" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                flushes.append(pid)
        except OSError:
            continue
    deadline = time.monotonic() + timeout
    while flushes and time.monotonic() < deadline:
        flushes = [pid for pid in flushes if Path(f"/proc/{pid}").exists() and not _reaped_zombie(pid)]
        time.sleep(0.05)


def _reaped_zombie(pid: int) -> bool:
    """Reap ``pid`` if it is this process's exited child; True when it is gone."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


class LeakCheck:
    def __init__(self) -> None:
        self.marker = f"{MARKER_VARIABLE}={secrets.token_hex(8)}"
        name, value = self.marker.split("=", 1)
        os.environ[name] = value
        self.before = take_snapshot()
        self.report = LeakReport()

    def leaked_processes(self) -> list[int]:
        parents = parent_pids()
        own = os.getpid()
        candidates = descendants(own, parents)
        new_pids = [pid for pid in parents if pid not in self.before.processes and pid != own]
        candidates |= marked_processes(self.marker.encode(), new_pids)
        candidates.discard(own)
        return sorted(candidates)

    def check(self) -> list[str]:
        wait_for_flushes(self.leaked_processes())
        after = take_snapshot()
        lines = [f"mount {mount}" for mount in sorted(after.mounts - self.before.mounts)]

        hierarchies = {str(path) for path in cgroup_hierarchies()}
        for path in sorted(after.cgroups - self.before.cgroups):
            # A parent directly under a hierarchy (dockyard, or dockyard-test for
            # the runtime's tests) may stay; a cgroup below one is a leak.
            if os.path.dirname(path) in hierarchies:
                continue
            lines.append(f"cgroup {path}")

        lines += [f"network interface {name}" for name in sorted(after.interfaces - self.before.interfaces)]
        lines += [f"nftables table {name}" for name in sorted(after.nft_tables - self.before.nft_tables)]
        lines += [f"process {describe_process(pid)}" for pid in self.leaked_processes()]
        return lines


_check: LeakCheck | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _check
    _check = LeakCheck()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # trylast: the runner's own pytest_sessionfinish tears down session fixtures first.
    if _check is None:
        return
    _check.report.lines = _check.check()
    if _check.report.lines:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.stats.setdefault("leaked", []).extend(Leak(line) for line in _check.report.lines)
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _check is None or not _check.report.lines:
        return
    terminalreporter.section("leak check: the test run left these behind", red=True, sep="!")
    for line in _check.report.lines:
        terminalreporter.line(line, red=True)
    terminalreporter.line(
        "Remove them by hand (umount, rmdir, ip link del, nft delete table, kill PID) and fix the test or fixture that made them."
    )

"""Benchmark `run --rm IMAGE true` and the memory kept per idle container.

Engines, side by side in one run, all on the same busybox image (built
offline from Debian's busybox-static by tests/support/images.py):

- dockyard, pulling the image from a docker-registry on 127.0.0.1;
- podman 4.3 with crun, with the image copied into its private storage by
  ``skopeo copy ... containers-storage:``;
- docker: Debian's dockerd 20.10 started here privately, with the image
  loaded by ``docker load`` from a docker-archive;
- the floor: bare ``crun run`` on an OCI bundle of the same root filesystem.

1. Time: ``run --rm IMAGE true``, with ``--network none`` and with each
   engine's default network, timed by hyperfine (warmup, then runs) in
   several rounds whose order rotates, so that load from other work on the
   machine spreads over all engines. Reports medians and the ratios to the
   targets: dockyard at most 0.5x podman and at most 0.4x docker.
2. Memory: N containers running ``sleep 3600`` (detached, ``--network none``)
   per engine. Sums VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup)
   of the processes that each engine keeps besides the containers' own
   processes: dockyard's monitor(s) and helpers, podman's conmon, docker's
   containerd-shim-runc-v2. Reports the sums divided by N. Target: dockyard
   at most conmon's.

Run as root: python bench/run.py [--rounds R] [--runs N] [--containers N] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import peers  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402

log = logging.getLogger("bench.run")

DOCKYARD = REPO / ".venv" / "bin" / "dockyard"
NETAVARK = Path("/usr/lib/podman/netavark")   # podman's network backend; Debian installs it off PATH
IMAGE_NAME = "bench/busybox"
PODMAN_TARGET = 0.5   # dockyard's median at most this multiple of podman's
DOCKER_TARGET = 0.4   # and at most this multiple of docker's
DOCKER_BRIDGE = "dybench0"
DOCKER_BRIDGE_ADDRESS = "10.213.0.1/24"
DOCKYARD_BRIDGE = "dybench1"
DOCKYARD_SUBNET = "10.213.1.0/24"
UNSHARED_MARKER = "DOCKYARD_BENCH_UNSHARED"   # set once the script runs in its own mount namespace
NOT_WORKING = "not measured yet: `dockyard run` not working at the time"
DOC_HEADING = "## Run: `run --rm IMAGE true` and memory per idle container"
NETWORK_MODES = ("none", "default")


# ---------------------------------------------------------------------------
# The engines


@dataclass
class Engine:
    """How to run one engine's containers, and how to find the processes it keeps per container."""

    key: str                                   # "dockyard", "podman", "docker", "crun"
    label: str                                 # the row name in the report
    environment: dict[str, str]
    run_commands: dict[str, list[str]]         # network mode to the `run --rm IMAGE true` argv
    start_idle: Callable[[], None] | None = None
    remove_all: Callable[[], None] | None = None
    is_helper: Callable[[Process], bool] | None = None
    # Processes that run for commands, not for containers (dockyard's CLI server).
    is_daemon: Callable[[Process], bool] | None = None
    helper_description: str = ""
    failure: str | None = None                 # why the engine is not measured, when it is not
    memory_failure: str | None = None          # why its memory is not measured, when only that failed


def dockyard_engine(workdir: Path, reference: str) -> Engine:
    # A config file of its own, so that /etc/dockyard/config.toml on this machine changes
    # nothing. Its default network has a bridge, subnet and nftables table that no
    # other dockyard root here uses, and its DNS server forwards to no one.
    config = workdir / "dockyard-config.toml"
    config.write_text(
        "[network]\n"
        f'default_subnet = "{DOCKYARD_SUBNET}"\n'
        f'bridge = "{DOCKYARD_BRIDGE}"\n'
        'nft_table = "dockyard_bench"\n'
        "dns_upstreams = []\n"
    )
    root = workdir / "dockyard-root"
    environment = {
        "DOCKYARD_ROOT": str(root),
        "DOCKYARD_RUN_ROOT": str(workdir / "dockyard-run"),
        "DOCKYARD_CONFIG": str(config),
    }
    full_environment = dict(os.environ, **environment)

    def dockyard(*arguments: str) -> subprocess.CompletedProcess:
        return peers.run([str(DOCKYARD), *arguments], env=full_environment)

    def start_idle() -> None:
        dockyard("run", "--detach", "--network", "none", reference, "sleep", "3600")

    def remove_all() -> None:
        identifiers = dockyard("ps", "--all", "--quiet").stdout.split()
        if identifiers:
            dockyard("rm", "--force", *identifiers)

    def is_dockyard(process: Process) -> bool:
        # The monitor and the CLI server run dockyard's Python code with this
        # root in their command line or their environment.
        if "dockyard" not in " ".join(process.cmdline):
            return False
        return str(root) in " ".join(process.cmdline) or process.environ_value("DOCKYARD_ROOT") == str(root)

    def is_helper(process: Process) -> bool:
        return is_dockyard(process) and not is_cli_server(process)

    def is_daemon(process: Process) -> bool:
        return is_dockyard(process) and is_cli_server(process)

    return Engine(
        key="dockyard",
        label="dockyard",
        environment=environment,
        run_commands={
            "none": [str(DOCKYARD), "run", "--rm", "--network", "none", reference, "true"],
            "default": [str(DOCKYARD), "run", "--rm", reference, "true"],
        },
        start_idle=start_idle,
        remove_all=remove_all,
        is_helper=is_helper,
        is_daemon=is_daemon,
        helper_description="monitor and helpers",
    )


def is_cli_server(process: Process) -> bool:
    """dockyard's CLI server serves commands, not containers, and exits 30 s after the last command.

    Its monitor zygote (engine/zygote.py), which forks monitors and exits with
    the server, counts as part of it.
    """
    return "dockyard.cli.server" in process.cmdline or process.comm == "dockyard-zygote"


def tear_down_dockyard_networks(engine: Engine) -> None:
    """Delete the bridges and nftables rules of dockyard's networks, which outlive its containers."""
    script = ("from dockyard import config; from dockyard.engine import Engine; "
              "Engine(config.load()).networks.teardown()")
    python = DOCKYARD.parent / "python"
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, **engine.environment))
    if result.returncode != 0:
        log.warning("tearing down dockyard's networks failed: %s", result.stderr.strip()[-1000:])


def podman_engine(podman: peers.Podman, name: str) -> Engine:
    def start_idle() -> None:
        podman.podman("run", "--detach", "--network", "none", name, "sleep", "3600")

    def is_helper(process: Process) -> bool:
        return process.comm == "conmon" and str(podman.root) in " ".join(process.cmdline)

    return Engine(
        key="podman",
        label="podman --runtime crun",
        environment=podman.environment,
        run_commands={
            "none": podman.command("run", "--rm", "--network", "none", name, "true"),
            "default": podman.command("run", "--rm", name, "true"),
        },
        start_idle=start_idle,
        remove_all=podman.remove_all_containers,
        is_helper=is_helper,
        helper_description="conmon",
    )


def docker_engine(dockerd: peers.Dockerd, name: str) -> Engine:
    def start_idle() -> None:
        dockerd.docker("run", "--detach", "--network", "none", name, "sleep", "3600")

    def is_helper(process: Process) -> bool:
        # comm is cut to 15 characters: "containerd-shim" for containerd-shim-runc-v2.
        return process.comm.startswith("containerd-shim") and str(dockerd.exec_root) in " ".join(process.cmdline)

    return Engine(
        key="docker",
        label="docker (dockerd 20.10)",
        environment={},
        run_commands={
            "none": dockerd.command("run", "--rm", "--network", "none", name, "true"),
            "default": dockerd.command("run", "--rm", name, "true"),
        },
        start_idle=start_idle,
        remove_all=dockerd.remove_all_containers,
        is_helper=is_helper,
        helper_description="containerd-shim-runc-v2",
    )


def crun_engine(bundle: Path, state: Path) -> Engine:
    # The bundle's config gives a new network namespace with only loopback, so
    # the floor is timed once, as "none"; "default" is there for completeness.
    command = ["crun", "--root", str(state), "run", "--bundle", str(bundle), "bench-floor"]
    return Engine(key="crun", label="floor: crun run", environment={},
                  run_commands={"none": command, "default": command})


# ---------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    """All measured wall times of one engine and network mode, in seconds."""

    engine: Engine
    mode: str
    note: str = ""
    command: list[str] | None = None      # instead of the engine's run command for ``mode``
    times: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.engine.key}, {self.note or 'network ' + self.mode}"

    @property
    def argv(self) -> list[str]:
        return self.command or self.engine.run_commands[self.mode]

    @property
    def label(self) -> str:
        return f"{self.engine.label} ({self.note})" if self.note else self.engine.label

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def quartiles(self) -> tuple[float, float]:
        if len(self.times) < 2:
            return self.times[0], self.times[0]
        lower, _, upper = statistics.quantiles(self.times, n=4)
        return lower, upper


def check_runs(engine: Engine) -> str | None:
    """Run each of the engine's timed commands once; return the failure, or None when all work."""
    environment = dict(os.environ, **engine.environment)
    for mode, command in engine.run_commands.items():
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=environment)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()
            last_line = output[-1] if output else "no output"
            return f"`{shlex.join(command[-4:])}` ({mode} network) failed with exit {result.returncode}: {last_line}"
    return None


def time_engines(timings: list[Timing], rounds: int, runs: int, warmup: int, workdir: Path) -> None:
    """Time every command with hyperfine, ``rounds`` times over, rotating their order each round.

    When a round fails because dockyard's command fails, dockyard is marked as
    not measured, its timings are removed from ``timings``, and the round runs
    again without it. A round that fails with every command working alone
    afterwards runs once more. Any other failure raises RuntimeError.
    """
    environment = dict(os.environ)
    for timing in timings:
        environment.update(timing.engine.environment)
    round_number = 0
    retried = False
    while round_number < rounds and timings:
        shift = round_number % len(timings)
        ordered = timings[shift:] + timings[:shift]
        export = workdir / f"hyperfine-{round_number}.json"
        command = ["hyperfine", "--shell=none", "--style", "basic", "--warmup", str(warmup), "--runs", str(runs),
                   "--export-json", str(export)]
        for timing in ordered:
            command += ["--command-name", timing.name, shlex.join(timing.argv)]
        log.info("round %d of %d: hyperfine with %d commands", round_number + 1, rounds, len(ordered))
        finished = subprocess.run(command, env=environment, stdin=subprocess.DEVNULL, stdout=sys.stderr)
        if finished.returncode == 0:
            results = json.loads(export.read_text())["results"]
            for timing, result in zip(ordered, results, strict=True):
                timing.times.extend(result["times"])
            round_number += 1
            continue

        # hyperfine names the failing command but hides its output: run each once more to show it.
        failed = {timing.engine.key: (timing.engine, failure) for timing in ordered
                  if (failure := check_runs(timing.engine))}
        if "dockyard" in failed:
            engine, failure = failed.pop("dockyard")
            engine.failure = f"{NOT_WORKING} ({failure})"
            log.warning("%s", engine.failure)
            timings[:] = [timing for timing in timings if timing.engine is not engine]
        if failed:
            raise RuntimeError(f"hyperfine failed (exit {finished.returncode}): "
                               + "; ".join(failure for _, failure in failed.values()))
        if not retried and not any(timing.engine.failure for timing in ordered):
            log.warning("round %d failed, but every command works alone: running it again", round_number + 1)
            retried = True
        elif not any(timing.engine.failure for timing in ordered):
            raise RuntimeError(f"hyperfine failed (exit {finished.returncode}) twice, "
                               "but every command works when run alone")


def time_cold_starts(engine: Engine, runs: int) -> Timing:
    """Time ``run --rm --network none IMAGE true`` with no dockyard monitor or CLI server running beforehand.

    dockyard's shared monitor stays up ``DOCKYARD_MONITOR_IDLE_TIMEOUT``
    seconds (default 10) after its last container, and its CLI server
    ``DOCKYARD_CLI_SERVER_IDLE_TIMEOUT`` seconds (default 30) after its last
    command, so the runs that hyperfine times back to back find both running.
    Here both are started with a 1 s idle timeout, and each run waits for the
    previous run's monitor and server to exit first.
    """
    environment = dict(os.environ, **engine.environment, DOCKYARD_MONITOR_IDLE_TIMEOUT="1",
                       DOCKYARD_CLI_SERVER_IDLE_TIMEOUT="1")
    command = engine.run_commands["none"]
    timing = Timing(engine, "none", note="no monitor or CLI server running before each run")
    for _ in range(runs):
        left = wait_for_helpers_to_exit(engine, timeout=30.0, include_daemons=True)
        if left:
            raise RuntimeError(f"{engine.label}: PID {left[0].pid} did not exit within 30 s of going idle")
        start = time.perf_counter()
        peers.run(command, env=environment)
        timing.times.append(time.perf_counter() - start)
    return timing


def default_interfaces(engine: Engine) -> str:
    """Return the names of the network interfaces inside a container on the engine's default network."""
    command = [*engine.run_commands["default"][:-1], "ip", "-o", "link"]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, **engine.environment))
    if result.returncode != 0:
        return f"unknown (`ip -o link` failed with exit {result.returncode})"
    # Lines look like "2: eth0@if8: <BROADCAST,...> ..."; keep the name before any "@".
    names = [line.split(":")[1].strip().split("@")[0] for line in result.stdout.splitlines() if ":" in line]
    return ", ".join(names)


# ---------------------------------------------------------------------------
# Memory


@dataclass
class Process:
    pid: int
    ppid: int
    comm: str
    cmdline: list[str]
    pid_namespace: str

    def environ_value(self, name: str) -> str | None:
        try:
            entries = Path(f"/proc/{self.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return None
        prefix = name.encode() + b"="
        for entry in entries:
            if entry.startswith(prefix):
                return entry[len(prefix):].decode(errors="replace")
        return None


def list_processes() -> dict[int, Process]:
    """Return every process that can be read now, by PID."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            namespace = os.readlink(entry / "ns" / "pid")
        except OSError:
            continue   # exited while being read
        # stat is "PID (COMM) STATE PPID ...", and COMM may contain spaces and parentheses.
        comm = status[status.index("(") + 1 : status.rindex(")")]
        ppid = int(status[status.rindex(")") + 2 :].split()[1])
        found[int(entry.name)] = Process(int(entry.name), ppid, comm,
                                         [part.decode(errors="replace") for part in cmdline], namespace)
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """Return (VmRSS, Pss) of ``pid`` in KiB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


@dataclass
class MemoryResult:
    engine: Engine
    containers: int
    helpers: list[Process]
    rss_kib: int
    pss_kib: int
    daemon_rss_kib: int = 0                    # what is_daemon matched, not counted per container


def idle_processes(engine: Engine, containers: int) -> tuple[list[Process], list[Process]]:
    """Find the engine's idle containers (``sleep 3600``) and the processes it keeps for them.

    The helpers are the processes that ``engine.is_helper`` matches, plus every
    ancestor of a container process below PID 1, so that an intermediate
    process (a runtime init left inside the container, a double-forked
    monitor) is counted too. Raises unless exactly ``containers`` containers
    are found.
    """
    processes = list_processes()
    assert engine.is_helper is not None
    matched = {pid for pid, process in processes.items() if engine.is_helper(process)}
    own_ancestry = set()
    pid = os.getpid()
    while pid in processes:
        own_ancestry.add(pid)
        pid = processes[pid].ppid

    sleepers = []
    helpers = set(matched)
    for process in processes.values():
        if process.cmdline != ["sleep", "3600"]:
            continue
        chain = []
        parent = process.ppid
        while parent in processes and parent != 1 and parent not in own_ancestry:
            chain.append(parent)
            parent = processes[parent].ppid
        if matched & set(chain):
            sleepers.append(process)
            helpers.update(chain)
    if len(sleepers) != containers:
        raise RuntimeError(
            f"{engine.label}: found {len(sleepers)} idle containers below {len(matched)} matching helper "
            f"processes, expected {containers}"
        )
    return sleepers, [processes[pid] for pid in sorted(helpers)]


def measure_memory(engine: Engine, containers: int, settle: float) -> MemoryResult:
    """Start ``containers`` idle containers, measure what the engine keeps for them, remove them."""
    assert engine.start_idle is not None and engine.remove_all is not None
    try:
        for _ in range(containers):
            engine.start_idle()
        # Let start-up work finish and freed memory settle before reading it.
        time.sleep(settle)
        _, helpers = idle_processes(engine, containers)
        rss = pss = 0
        for process in helpers:
            process_rss, process_pss = memory_kib(process.pid)
            rss += process_rss
            pss += process_pss
        daemon_rss = 0
        if engine.is_daemon is not None:
            daemon_rss = sum(memory_kib(pid)[0] for pid, process in list_processes().items() if engine.is_daemon(process))
        return MemoryResult(engine, containers, helpers, rss, pss, daemon_rss)
    finally:
        engine.remove_all()


def wait_for_helpers_to_exit(engine: Engine, timeout: float, include_daemons: bool = False) -> list[Process]:
    """Wait up to ``timeout`` seconds for the engine's helper processes (and daemons) to exit; return those left."""
    assert engine.is_helper is not None
    deadline = time.monotonic() + timeout

    def matches(process: Process) -> bool:
        assert engine.is_helper is not None
        if engine.is_helper(process):
            return True
        return include_daemons and engine.is_daemon is not None and engine.is_daemon(process)

    while True:
        left = [process for process in list_processes().values() if matches(process)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def stop_leftover_helpers(engine: Engine, timeout: float = 15.0) -> None:
    """Wait for the engine's helper processes to exit, then terminate any left, by PID."""
    if engine.is_helper is None:
        return
    for process in wait_for_helpers_to_exit(engine, timeout):
        log.warning("%s: %s (PID %d) still running after its containers were removed; terminating it",
                    engine.label, shlex.join(process.cmdline), process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
    if engine.is_daemon is not None:
        # The CLI server would idle for 30 s more: the bench started it, so it stops it.
        for pid, process in list_processes().items():
            if engine.is_daemon(process):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


# ---------------------------------------------------------------------------
# Report


def versions(dockerd: peers.Dockerd | None) -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        text = (result.stdout or result.stderr).strip()
        return text.splitlines()[0] if text else "not installed"

    found = {
        "python": platform.python_version(),
        "dockyard": first_line([str(DOCKYARD), "--version"]),
        "podman": first_line(["podman", "--version"]),
        "conmon": first_line(["conmon", "--version"]),
        "crun": first_line(["crun", "--version"]),
        "netavark": first_line([str(NETAVARK), "--version"]),
        "containerd": first_line(["containerd", "--version"]),
        "runc": first_line(["runc", "--version"]),
        "hyperfine": first_line(["hyperfine", "--version"]),
    }
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if commit.returncode == 0:
        found["dockyard"] += f", commit {commit.stdout.strip()}"
    if dockerd is not None:
        found["dockerd"] = dockerd.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    return found


def machine() -> str:
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return f"{os.cpu_count()} CPUs, {memory / 1024 / 1024:.1f} GiB memory, Linux {platform.release()}"


def ratio_text(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if value is not None and reference else "-"


def render_times(timings: list[Timing], engines: list[Engine]) -> list[str]:
    medians = {(timing.engine.key, timing.mode): timing.median for timing in timings if timing.times and not timing.note}
    lines = [
        "| engine | network | median (ms) | middle half (ms) | runs | vs podman | vs docker |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for timing in timings:
        if not timing.times:
            continue
        lower, upper = timing.quartiles()
        podman = medians.get(("podman", timing.mode))
        docker = medians.get(("docker", timing.mode))
        lines.append(
            f"| {timing.label} | {timing.mode} | {timing.median * 1000:.0f} | "
            f"{lower * 1000:.0f}–{upper * 1000:.0f} | {len(timing.times)} | "
            f"{ratio_text(timing.median, podman)} | {ratio_text(timing.median, docker)} |"
        )
    for engine in engines:
        if engine.failure is not None:
            lines.append(f"| {engine.label} | - | {engine.failure} | - | - | - | - |")

    lines.append("")
    lines.append(f"Targets: dockyard's median at most {PODMAN_TARGET}x podman's and at most {DOCKER_TARGET}x docker's.")
    for mode in NETWORK_MODES:
        dockyard = medians.get(("dockyard", mode))
        if dockyard is None:
            continue
        verdicts = []
        for peer, target in (("podman", PODMAN_TARGET), ("docker", DOCKER_TARGET)):
            reference = medians.get((peer, mode))
            if reference:
                verdict = "met" if dockyard <= target * reference else "missed"
                verdicts.append(f"{dockyard / reference:.2f}x {peer} ({verdict})")
        lines.append(f"With network {mode}: " + ", ".join(verdicts) + ".")
    return lines


def render_memory(results: list[MemoryResult], engines: list[Engine], daemons: str | None) -> list[str]:
    lines = [
        "| engine | processes counted | count | RSS per container (MiB) | PSS per container (MiB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        per_rss = result.rss_kib / result.containers / 1024
        per_pss = result.pss_kib / result.containers / 1024
        lines.append(f"| {result.engine.label} | {result.engine.helper_description} | {len(result.helpers)} | "
                     f"{per_rss:.2f} | {per_pss:.2f} |")
    for engine in engines:
        failure = engine.failure or engine.memory_failure
        if failure is not None and engine.start_idle is not None:
            lines.append(f"| {engine.label} | {engine.helper_description} | - | {failure} | - |")

    by_key = {result.engine.key: result for result in results}
    lines.append("")
    target = "Target: dockyard at most conmon's figure."
    if "dockyard" in by_key and "podman" in by_key:
        dockyard, podman = by_key["dockyard"], by_key["podman"]
        for metric, mine, theirs in (("RSS", dockyard.rss_kib, podman.rss_kib), ("PSS", dockyard.pss_kib, podman.pss_kib)):
            verdict = "met" if mine / dockyard.containers <= theirs / podman.containers else "missed"
            target += f" {metric}: {mine / dockyard.containers / theirs * podman.containers:.2f}x conmon's ({verdict})."
    lines.append(target)
    for result in results:
        if result.daemon_rss_kib:
            lines.append(f"Not in {result.engine.label}'s row: its CLI server and the server's monitor zygote, "
                         "which serve commands rather than containers and exit 30 s after the last command, had "
                         f"{result.daemon_rss_kib / 1024:.1f} MiB RSS together at the same moment.")
    if daemons:
        lines.append(daemons)
    return lines


def render(results: Measurements, engines: list[Engine], details: dict[str, str], command: str) -> str:
    lines = render_times(results.timings, engines)
    interfaces = results.interfaces
    if interfaces.get("dockyard") == "lo" and any(names != "lo" for names in interfaces.values()):
        lines.append("dockyard's default network gives the container only `lo` at this commit, while the "
                     "peers attach a veth to a bridge, so its default-network row does less work than theirs.")
    if results.memory or any(engine.memory_failure for engine in engines):
        lines += ["", *render_memory(results.memory, engines, results.daemons)]
    lines.append("")
    lines += [f"- {key}: {value}" for key, value in details.items()]
    lines.append(f"- command: `{command}`")
    return "\n".join(lines) + "\n"


def write_doc(report: str, path: Path) -> None:
    """Replace the run section of ``path`` (from its heading to the next ``## ``) with ``report``."""
    paragraphs = [
        "All engines run the same busybox image, built offline from Debian's busybox-static. "
        "Produced by `bench/run.py`, and [bench/README.md](../bench/README.md) describes the method.",
    ]
    bullets = [
        "Time: hyperfine times `run --rm IMAGE true` with `--network none` and with each engine's "
        "default network, in rounds whose order rotates, with warmup runs in every round.",
        "podman runs with `--runtime crun`. docker is a private dockerd 20.10 with runc and no iptables "
        "rules, and its default network is a bridge made by the script, without NAT.",
        "The floor is bare `crun run` on an OCI bundle of the same root filesystem, with `crun spec`'s "
        "default config (no seccomp filter, no network setup).",
        "dockyard's shared monitor outlives its last container by 10 s, and its CLI server (a warm process "
        "that forks a child per command) outlives its last command by 30 s, so runs timed back to back find "
        "both running. The row marked \"no monitor or CLI server running\" times single runs that start them. "
        "The CLI server's monitor zygote forks the monitor when none runs (see README.md).",
        "Memory: idle containers run `sleep 3600` with `--network none`. The figures are the summed VmRSS "
        "and Pss of what each engine keeps besides the containers' own processes, divided by the number "
        "of containers.",
        "crun rejects this hybrid cgroup host while hugetlb is bound only to the cgroup2 mount. Unless "
        "hugetlb is a v1 hierarchy already, the script mounts it as one in its own mount namespace and "
        "unmounts it afterwards. The details below say which.",
        "Other work on the machine during the run adds noise. The load average and the middle half of "
        "the runs show how much.",
    ]
    intro = peers.doc_intro(paragraphs, bullets)
    section = f"{DOC_HEADING}\n\n{intro}\n\n{report}"
    peers.write_doc_section(path, DOC_HEADING, section)


# ---------------------------------------------------------------------------
# Main


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    parser.add_argument("--rounds", type=int, default=3, help="hyperfine rounds, each timing every command (default 3)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command in each round (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per command in each round (default 2)")
    parser.add_argument("--cold-runs", type=int, default=10,
                        help="dockyard runs timed with no monitor or CLI server running before each "
                             "(default 10; 0 leaves them out)")

    parser.add_argument("--containers", type=int, default=20, help="idle containers per engine (default 20)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds between starting the idle containers and reading their memory (default 5)")

    parser.add_argument("--skip", action="append", default=[], choices=["dockyard", "podman", "docker", "crun"],
                        help="leave one engine out (repeatable)")
    parser.add_argument("--skip-memory", action="store_true", help="time the runs only")
    parser.add_argument("--write", nargs="?", const=REPO / "docs" / "benchmarks.md", type=Path, default=None,
                        help="write the report into this markdown file (default docs/benchmarks.md)")
    args = parser.parse_args()

    if os.geteuid() != 0:
        parser.error("run as root: the engines, the cgroup mount and the bridge need it")
    for name in ("rounds", "runs", "containers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    for name in ("warmup", "cold_runs", "settle"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative, not {getattr(args, name)}")

    required = {"hyperfine": "hyperfine", "skopeo": "skopeo", "docker-registry": "docker-registry",
                "busybox": "busybox-static"}
    if "podman" not in args.skip:
        required |= {"podman": "podman", "conmon": "conmon", str(NETAVARK): "netavark"}
    if "podman" not in args.skip or "crun" not in args.skip:
        required["crun"] = "crun"
    if "docker" not in args.skip:
        required |= {str(peers.DOCKERD): "docker.io", str(peers.DOCKER_CLIENT): "docker.io"}
    missing = sorted({package for program, package in required.items() if shutil.which(program) is None})
    if missing:
        parser.error(f"missing packages: {', '.join(missing)} (apt-get install them), or leave an engine out with --skip")
    return args


def set_up_engines(args: argparse.Namespace, workdir: Path, layout: Path, layer_blob: Path,
                   cleanup: contextlib.ExitStack) -> tuple[list[Engine], peers.Dockerd | None]:
    """Give every engine that is not skipped the busybox image; register their cleanup on ``cleanup``."""
    engines: list[Engine] = []
    dockerd = None
    if "dockyard" not in args.skip:
        registry = start_registry(workdir / "registry")
        cleanup.callback(registry.stop)
        images.push_layout(layout, registry.host, IMAGE_NAME)
        reference = f"{registry.host}/{IMAGE_NAME}:latest"
        engine = dockyard_engine(workdir, reference)
        cleanup.callback(tear_down_dockyard_networks, engine)
        cleanup.callback(stop_leftover_helpers, engine)
        cleanup.callback(peers.unmount_below, workdir / "dockyard-root")
        engines.append(engine)
        try:
            peers.run([str(DOCKYARD), "pull", "--quiet", reference], env=dict(os.environ, **engine.environment))
            failure = check_runs(engine)
        except RuntimeError as error:
            failure = str(error).strip().splitlines()[-1]
        if failure:
            engine.failure = f"{NOT_WORKING} ({failure})"

    if "podman" not in args.skip:
        podman = peers.Podman(workdir / "podman")
        cleanup.callback(podman.reset)
        podman.load(layout, f"localhost/{IMAGE_NAME}:latest")
        engines.append(podman_engine(podman, f"localhost/{IMAGE_NAME}:latest"))

    if "docker" not in args.skip:
        bridge = cleanup.enter_context(peers.host_bridge(DOCKER_BRIDGE, DOCKER_BRIDGE_ADDRESS))
        dockerd = peers.Dockerd(workdir / "docker", bridge)
        cleanup.callback(dockerd.stop)
        cleanup.callback(dockerd.remove_all_containers)
        archive = workdir / "busybox-docker-archive.tar"
        peers.run(["skopeo", "copy", "--quiet", f"oci:{layout}:latest", f"docker-archive:{archive}:{IMAGE_NAME}:latest"])
        dockerd.load(archive)
        engines.append(docker_engine(dockerd, f"{IMAGE_NAME}:latest"))

    if "crun" not in args.skip:
        engines.append(crun_engine(peers.make_crun_bundle(workdir / "bundle", layer_blob), workdir / "crun-state"))

    for engine in engines:
        if engine.key != "dockyard":
            failure = check_runs(engine)
            if failure:
                raise RuntimeError(f"{engine.label}: {failure}")
        log.info("%s: %s", engine.label, engine.failure or "runs")
    return engines, dockerd


@dataclass
class Measurements:
    timings: list[Timing]
    memory: list[MemoryResult]
    interfaces: dict[str, str]      # engine label to the interfaces on its default network
    daemons: str | None             # dockerd's and containerd's own memory, as a sentence
    notes: dict[str, str]           # extra report lines, such as a failed optional measurement


def measure(args: argparse.Namespace, engines: list[Engine], dockerd: peers.Dockerd | None,
            workdir: Path) -> Measurements:
    timings: list[Timing] = []
    for engine in engines:
        if engine.failure is None:
            modes = ("none",) if engine.key == "crun" else NETWORK_MODES
            timings.extend(Timing(engine, mode) for mode in modes)
        if engine.key == "dockyard" and engine.failure is None:
            # Context for the run times: what Python and the CLI cost before any container work.
            timings.append(Timing(engine, "-", note="CLI start-up only: `dockyard --version`",
                                  command=[str(DOCKYARD), "--version"]))
    time_engines(timings, args.rounds, args.runs, args.warmup, workdir)

    notes = {}
    for engine in engines:
        if engine.key == "dockyard" and engine.failure is None and args.cold_runs > 0:
            log.info("%s: %d runs, each with no monitor or CLI server running before it", engine.label, args.cold_runs)
            try:
                timings.append(time_cold_starts(engine, args.cold_runs))
            except RuntimeError as error:
                notes["dockyard runs with no monitor or CLI server running"] = f"failed: {str(error).strip().splitlines()[-1]}"
    interfaces = {engine.label: default_interfaces(engine) for engine in engines
                  if engine.key != "crun" and engine.failure is None}

    memory = []
    daemons = None
    if not args.skip_memory:
        for engine in engines:
            if engine.start_idle is None or engine.failure is not None:
                continue
            log.info("%s: starting %d idle containers", engine.label, args.containers)
            try:
                memory.append(measure_memory(engine, args.containers, args.settle))
            except RuntimeError as error:
                if engine.key != "dockyard":
                    raise
                engine.memory_failure = f"{NOT_WORKING} ({str(error).strip().splitlines()[-1]})"
                log.warning("%s", engine.memory_failure)
        if dockerd is not None:
            daemons = daemon_memory(dockerd)
    return Measurements(timings, memory, interfaces, daemons, notes)


def daemon_memory(dockerd: peers.Dockerd) -> str:
    """Describe the RSS of dockerd and its containerd, which run whether or not any container does."""
    processes = list_processes()
    daemon_pids = [dockerd.process.pid]
    daemon_pids += [pid for pid, process in processes.items()
                    if process.ppid == dockerd.process.pid and process.comm == "containerd"]
    rss = sum(memory_kib(pid)[0] for pid in daemon_pids)
    return (f"Not in docker's row: dockerd and its containerd, which run whether or not any container does, "
            f"had {rss / 1024:.1f} MiB RSS together after the idle containers were removed.")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_arguments()
    if os.environ.get(UNSHARED_MARKER) != "1":
        # Run again in a private mount namespace, so that the hugetlb v1 mount,
        # and the engines' own mounts, stay invisible to the rest of the host.
        os.environ[UNSHARED_MARKER] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "--",
                              sys.executable, *sys.argv])

    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-run-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, True)
        cleanup.callback(peers.unmount_below, workdir)

        log.info("building the busybox image in %s", workdir)
        layout = workdir / "layout"
        built = images.build_busybox(layout, images.LayerCache())
        layer_blob = layout / "blobs" / "sha256" / built.layer_digests[0].removeprefix("sha256:")

        cleanup.enter_context(peers.new_cgroups_removed())
        hugetlb_mounted = cleanup.enter_context(peers.hugetlb_v1(workdir / "cgroup-stage"))
        guarded_interface = cleanup.enter_context(peers.forward_guard())

        peers.compile_dockyard()
        engines, dockerd = set_up_engines(args, workdir, layout, layer_blob, cleanup)
        results = measure(args, engines, dockerd, workdir)

        details = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            # Other work on the machine shows up here, and in the spread of the runs.
            "load average (1 min)": f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
            **versions(dockerd),
            "image": f"busybox from Debian's busybox-static, config {built.config_digest}",
            "interfaces in a container on the default network": "; ".join(
                f"{label}: {names}" for label, names in results.interfaces.items()),
            "hugetlb v1 mount": ("mounted at /sys/fs/cgroup/hugetlb in the script's mount namespace for the run, "
                                 "unmounted after" if hugetlb_mounted else "hugetlb was a v1 hierarchy already"),
            "network guard": f"forwarded traffic out of {guarded_interface} dropped during the run",
            **results.notes,
        }
        command = "python bench/run.py " + " ".join(sys.argv[1:])
        report = render(results, engines, details, command.strip())
        print(report)

    # Written only now that the cleanup, which the report describes, has succeeded.
    if args.write:
        write_doc(report, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

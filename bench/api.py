"""Benchmark dockyard's Docker Engine API service against dockerd, through the same docker CLI.

Both servers run side by side in one run, each with the same busybox image
(built offline from Debian's busybox-static by tests/support/images.py and
loaded through each socket with ``docker load``):

- dockyard: ``dockyard system service --host unix://...`` with a private
  root, run root, config file and socket, at its default log level (one
  access-log line per request);
- docker: Debian's dockerd 20.10, started here with a private data root and
  socket (see bench/peers.py).

The docker CLI first on PATH speaks API 1.50 and dockerd 20.10 at most 1.41,
so every client request carries ``DOCKER_API_VERSION=1.41``, and both servers
receive the same requests.

With ``--containers`` containers running ``sleep`` on each server:

1. Latency: hyperfine times ``docker ps`` and ``docker run --rm --pull never
   busybox true`` through each socket, in rounds. Each command gets its own
   hyperfine call per round, with the order of the servers rotating.
2. Throughput: requests per second of ``GET /v1.41/containers/json`` from
   this script's own load generator: N keep-alive connections, each sending
   the next request as soon as the previous response has arrived, for a
   fixed time after an untimed warmup.
3. Memory: VmRSS and Pss of the ``system service`` process right after
   start-up, right after the load, once it has been idle for ``--settle``
   seconds, and after it has removed one running container.

Targets: dockyard's latency at most dockerd's, its throughput at least
dockerd's, and its idle memory at most 40 MiB.

Run as root: python bench/api.py [--rounds R] [--runs N] [--duration S] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import peers  # noqa: E402
from bench import run as run_bench  # noqa: E402
from tests.support import images  # noqa: E402

log = logging.getLogger("bench.api")

DOCKYARD = REPO / ".venv" / "bin" / "dockyard"
API_VERSION = "1.41"   # the newest version dockerd 20.10 serves
IMAGE = "busybox:latest"
LIST_PATH = f"/v{API_VERSION}/containers/json"
MEMORY_TARGET_MIB = 40.0
DOCKER_BRIDGE = "dyapib0"
DOCKER_BRIDGE_ADDRESS = "10.215.0.1/24"
DOCKYARD_BRIDGE = "dyapib1"
DOCKYARD_SUBNET = "10.215.1.0/24"
DOCKYARD_TABLE = "dockyard_apibench"
SERVICE_START_TIMEOUT = 15.0
GROUP_PAUSE = 2.0   # seconds between two hyperfine calls
DOC_HEADING = "## API: the Docker Engine API service against dockerd"


# ---------------------------------------------------------------------------
# The servers


@dataclass
class Server:
    """One API server on a unix socket, and how to reach it with the docker CLI."""

    key: str                         # "dockyard" or "docker"
    label: str                       # the row name in the report
    socket_path: Path
    pid: int                         # the server process whose memory is reported

    def cli(self, *arguments: str) -> list[str]:
        return [docker_cli(), "--host", f"unix://{self.socket_path}", *arguments]


def docker_cli() -> str:
    """Return the path of the docker CLI first on PATH."""
    found = shutil.which("docker")
    if found is None:
        raise RuntimeError("no docker CLI on PATH")
    return found


def client_environment(config_dir: Path) -> dict[str, str]:
    """Return the environment of every docker CLI call: API 1.41 and a private client config."""
    environment = dict(os.environ, DOCKER_API_VERSION=API_VERSION, DOCKER_CONFIG=str(config_dir))
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        environment.pop(name, None)
    return environment


def call(server: Server, environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return peers.run(server.cli(*arguments), env=environment)


def remove_all_containers(server: Server, environment: dict[str, str]) -> None:
    identifiers = call(server, environment, "ps", "--all", "--quiet", "--no-trunc").stdout.split()
    if identifiers:
        call(server, environment, "rm", "--force", *identifiers)


def answers_ping(socket_path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(socket_path))
            probe.sendall(b"GET /_ping HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            return probe.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False


@dataclass
class DockyardService:
    """``dockyard system service`` with a private root, run root, config file and socket."""

    workdir: Path
    process: subprocess.Popen = field(init=False)
    environment: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        config = self.workdir / "dockyard-config.toml"
        # Its default network has a bridge, subnet and nftables table that no
        # other dockyard root here uses, and its DNS server forwards to no one.
        config.write_text(
            "[network]\n"
            f'default_subnet = "{DOCKYARD_SUBNET}"\n'
            f'bridge = "{DOCKYARD_BRIDGE}"\n'
            f'nft_table = "{DOCKYARD_TABLE}"\n'
            "dns_upstreams = []\n"
        )
        self.environment = {
            "DOCKYARD_ROOT": str(self.root),
            "DOCKYARD_RUN_ROOT": str(self.workdir / "dockyard-run"),
            "DOCKYARD_CONFIG": str(config),
        }
        command = [str(DOCKYARD), "system", "service", "--host", f"unix://{self.socket_path}", "--time", "0"]
        with (self.workdir / "dockyard-service.log").open("wb") as output:
            self.process = subprocess.Popen(command, env=dict(os.environ, **self.environment),
                                            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        while not answers_ping(self.socket_path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockyard system service did not respond to GET /_ping within "
                                   f"{SERVICE_START_TIMEOUT} s; its log:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    @property
    def root(self) -> Path:
        return self.workdir / "dockyard-root"

    @property
    def socket_path(self) -> Path:
        return self.workdir / "dockyard.sock"

    def log(self) -> str:
        return (self.workdir / "dockyard-service.log").read_text(errors="replace")

    def cleanup_view(self) -> run_bench.Engine:
        """Return this root as bench/run.py's Engine, for its helpers that find the monitor and remove networks."""
        root = str(self.root)

        def is_helper(process: run_bench.Process) -> bool:
            if process.pid == self.process.pid or "dockyard" not in " ".join(process.cmdline):
                return False
            return root in " ".join(process.cmdline) or process.environ_value("DOCKYARD_ROOT") == root

        return run_bench.Engine(key="dockyard", label="dockyard", environment=self.environment, run_commands={},
                                is_helper=is_helper)

    def stop(self) -> None:
        """Stop the service by its PID with SIGTERM, and wait for it to exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log.warning("dockyard system service (PID %d) ignored SIGTERM for 15 s; killing it",
                            self.process.pid)
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------
# Latency


@dataclass
class Timing:
    """The wall times of one command, in seconds, from every round."""

    server: Server
    name: str                        # "docker ps" or "docker run --rm busybox true"
    argv: list[str]
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def quartiles(self) -> tuple[float, float]:
        if len(self.times) < 2:
            return self.times[0], self.times[0]
        lower, _, upper = statistics.quantiles(self.times, n=4)
        return lower, upper


def time_commands(groups: list[list[Timing]], environment: dict[str, str], args: argparse.Namespace,
                  workdir: Path) -> None:
    """Time every command with hyperfine, ``args.rounds`` times over.

    Each group (one command through each socket) gets its own hyperfine call
    per round, with the order of the servers rotating from round to round.
    So a ``docker ps`` never runs right after a ``docker run``, whose
    container cleanup would still be using the CPU. A pause of
    ``GROUP_PAUSE`` seconds separates the calls for the same reason.
    """
    for round_number in range(args.rounds):
        for group_number, group in enumerate(groups):
            shift = round_number % len(group)
            ordered = group[shift:] + group[:shift]
            export = workdir / f"hyperfine-{round_number}-{group_number}.json"
            command = ["hyperfine", "--shell=none", "--style", "basic", "--warmup", str(args.warmup),
                       "--runs", str(args.runs), "--export-json", str(export)]
            for timing in ordered:
                command += ["--command-name", f"{timing.name}, {timing.server.key}", shlex.join(timing.argv)]
            log.info("latency round %d of %d: %s", round_number + 1, args.rounds, group[0].name)
            time.sleep(GROUP_PAUSE)
            finished = subprocess.run(command, env=environment, stdin=subprocess.DEVNULL, stdout=sys.stderr)
            if finished.returncode != 0:
                raise RuntimeError(f"hyperfine failed (exit {finished.returncode}) in latency round "
                                   f"{round_number + 1} for {group[0].name}")
            results = json.loads(export.read_text())["results"]
            for timing, result in zip(ordered, results, strict=True):
                timing.times.extend(result["times"])


# ---------------------------------------------------------------------------
# Throughput


@dataclass
class LoadResult:
    """One fixed-time load run against one server."""

    server: Server
    concurrency: int
    responses: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.responses / self.seconds


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response with a Content-Length or a chunked body; return its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = head.lower()
    if b"\r\ntransfer-encoding: chunked" in headers:
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)   # the chunk and its CRLF
            if size == 0:
                return status, b"".join(chunks)
            chunks.append(chunk[:-2])
    start = headers.find(b"\r\ncontent-length:")
    if start < 0:
        raise RuntimeError(f"response without Content-Length or chunked encoding: {head[:200]!r}")
    end = headers.index(b"\r\n", start + 2)
    return status, await reader.readexactly(int(headers[start + len(b"\r\ncontent-length:"):end]))


async def _generate_load(socket_path: Path, concurrency: int, warmup: float, duration: float) -> tuple[int, float]:
    """Keep ``concurrency`` connections busy with list requests; return the responses counted and the seconds.

    Each connection sends its next request once the previous response has
    arrived. Responses that arrive during the first ``warmup`` seconds are
    not counted, and the counted time ends ``duration`` seconds later.
    """
    request = f"GET {LIST_PATH} HTTP/1.1\r\nHost: api\r\nUser-Agent: dockyard-bench\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    started = loop.time()
    counting_from = started + warmup
    deadline = counting_from + duration
    counted = 0

    async def client() -> None:
        nonlocal counted
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        try:
            while True:
                writer.write(request)
                status, body = await _read_response(reader)
                if status != 200:
                    raise RuntimeError(f"GET {LIST_PATH} on {socket_path} returned {status}: {body[:300]!r}")
                now = loop.time()
                if now >= deadline:
                    return
                if now >= counting_from:
                    counted += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return counted, duration


def measure_throughput(servers: list[Server], args: argparse.Namespace) -> list[LoadResult]:
    """Load each server in turn, per concurrency and round; the order of the servers alternates per round."""
    results = []
    for concurrency in args.concurrency:
        for round_number in range(args.load_rounds):
            ordered = servers if round_number % 2 == 0 else servers[::-1]
            for server in ordered:
                log.info("load: %s, %d connections, round %d of %d", server.label, concurrency, round_number + 1,
                         args.load_rounds)
                responses, seconds = asyncio.run(_generate_load(server.socket_path, concurrency, args.load_warmup,
                                                                args.duration))
                results.append(LoadResult(server, concurrency, responses, seconds))
    return results


def listed_count(socket_path: Path) -> int:
    """Return the number of containers that ``GET /containers/json`` lists on ``socket_path``."""
    async def fetch() -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        try:
            writer.write(f"GET {LIST_PATH} HTTP/1.1\r\nHost: api\r\n\r\n".encode())
            status, body = await _read_response(reader)
        finally:
            writer.close()
        if status != 200:
            raise RuntimeError(f"GET {LIST_PATH} on {socket_path} returned {status}: {body[:300]!r}")
        return body

    return len(json.loads(asyncio.run(fetch())))


# ---------------------------------------------------------------------------
# Memory


@dataclass
class MemoryReading:
    moment: str
    rss_kib: int
    pss_kib: int


def read_memory(pid: int, moment: str) -> MemoryReading:
    rss, pss = run_bench.memory_kib(pid)
    return MemoryReading(moment, rss, pss)


def daemon_rss_kib(dockerd: peers.Dockerd) -> int:
    """Return the summed VmRSS of dockerd and the containerd it started."""
    processes = run_bench.list_processes()
    pids = [dockerd.process.pid] + [pid for pid, process in processes.items()
                                    if process.ppid == dockerd.process.pid and process.comm == "containerd"]
    return sum(run_bench.memory_kib(pid)[0] for pid in pids)


# ---------------------------------------------------------------------------
# Report


def versions(dockerd: peers.Dockerd, environment: dict[str, str], docker_server: Server) -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        text = (result.stdout or result.stderr).strip()
        return text.splitlines()[0] if text else "not installed"

    import h11

    found = {
        "python": platform.python_version(),
        "dockyard": first_line([str(DOCKYARD), "--version"]) + f", h11 {h11.__version__}",
        "docker CLI": first_line([docker_cli(), "--version"]) + f", with DOCKER_API_VERSION={API_VERSION}",
        "dockerd": call(docker_server, environment, "version", "--format", "{{.Server.Version}}").stdout.strip(),
        "containerd": first_line(["containerd", "--version"]),
        "runc": first_line(["runc", "--version"]),
        "hyperfine": first_line(["hyperfine", "--version"]),
    }
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if commit.returncode == 0:
        found["dockyard"] += f", commit {commit.stdout.strip()}"
    return found


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def render_latency(timings: list[Timing]) -> list[str]:
    lines = [
        "| command | server | median (ms) | middle half (ms) | runs | dockyard / dockerd |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    medians = {(timing.name, timing.server.key): timing.median for timing in timings}
    for timing in timings:
        lower, upper = timing.quartiles()
        ratio = "-"
        if timing.server.key == "dockyard" and (timing.name, "docker") in medians:
            ratio = f"{timing.median / medians[(timing.name, 'docker')]:.2f}x"
        lines.append(f"| `{timing.name}` | {timing.server.label} | {timing.median * 1000:.1f} | "
                     f"{lower * 1000:.1f}–{upper * 1000:.1f} | {len(timing.times)} | {ratio} |")
    lines.append("")
    sentences = []
    for name in dict.fromkeys(timing.name for timing in timings):
        mine, theirs = medians.get((name, "dockyard")), medians.get((name, "docker"))
        if mine is not None and theirs is not None:
            sentences.append(f"`{name}` {mine / theirs:.2f}x ({verdict(mine <= theirs)})")
    lines.append("Target: dockyard's median at most dockerd's. " + ", ".join(sentences) + ".")
    return lines


def render_throughput(results: list[LoadResult], args: argparse.Namespace) -> list[str]:
    lines = [
        "| connections | server | requests/s, median | all rounds (requests/s) | dockyard / dockerd |",
        "| --- | --- | --- | --- | --- |",
    ]
    sentences = []
    for concurrency in args.concurrency:
        medians = {}
        rows = []
        for key in ("dockyard", "docker"):
            runs = [result for result in results if result.concurrency == concurrency and result.server.key == key]
            if not runs:
                continue
            medians[key] = statistics.median(result.rate for result in runs)
            rows.append((runs[0].server.label, key, medians[key], ", ".join(f"{result.rate:.0f}" for result in runs)))
        for label, key, median, rates in rows:
            ratio = f"{median / medians['docker']:.2f}x" if key == "dockyard" and "docker" in medians else "-"
            lines.append(f"| {concurrency} | {label} | {median:.0f} | {rates} | {ratio} |")
        if "dockyard" in medians and "docker" in medians:
            ratio = medians["dockyard"] / medians["docker"]
            sentences.append(f"{concurrency} connections {ratio:.2f}x ({verdict(ratio >= 1.0)})")
    lines.append("")
    lines.append("Target: dockyard's requests per second at least dockerd's. " + ", ".join(sentences) + ".")
    return lines


def render_memory(readings: list[MemoryReading], daemons_kib: int) -> list[str]:
    lines = [
        "| `dockyard system service` | RSS (MiB) | PSS (MiB) |",
        "| --- | --- | --- |",
    ]
    for reading in readings:
        lines.append(f"| {reading.moment} | {reading.rss_kib / 1024:.1f} | {reading.pss_kib / 1024:.1f} |")
    largest_rss = max(reading.rss_kib for reading in readings) / 1024
    largest_pss = max(reading.pss_kib for reading in readings) / 1024
    lines.append("")
    lines.append(f"Target: at most {MEMORY_TARGET_MIB:.0f} MiB. Largest RSS {largest_rss:.1f} MiB "
                 f"({verdict(largest_rss <= MEMORY_TARGET_MIB)}), largest PSS {largest_pss:.1f} MiB "
                 f"({verdict(largest_pss <= MEMORY_TARGET_MIB)}). For comparison, dockerd and its containerd "
                 f"had {daemons_kib / 1024:.1f} MiB RSS together after the load.")
    return lines


def render(timings: list[Timing], loads: list[LoadResult], readings: list[MemoryReading], daemons_kib: int,
           details: dict[str, str], args: argparse.Namespace) -> str:
    lines = [f"Latency, with {args.containers} containers running `sleep` on each server:", ""]
    lines += render_latency(timings)
    lines += ["", f"Throughput of `GET {LIST_PATH}` with those {args.containers} containers, "
              f"{args.duration:g} s per run after {args.load_warmup:g} s of warmup:", ""]
    lines += render_throughput(loads, args)
    lines += ["", "Memory:", ""]
    lines += render_memory(readings, daemons_kib)
    lines.append("")
    lines += [f"- {key}: {value}" for key, value in details.items()]
    lines.append(f"- command: `{('python bench/api.py ' + ' '.join(sys.argv[1:])).strip()}`")
    return "\n".join(lines) + "\n"


def write_doc(report: str, path: Path) -> None:
    """Replace the API section of ``path`` (from its heading to the next ``## ``) with ``report``."""
    paragraph = ("Both servers hold the same busybox image, built offline from Debian's busybox-static and "
                 "loaded through each socket. Produced by `bench/api.py`, and "
                 "[bench/README.md](../bench/README.md) describes the method.")
    bullets = [
        f"Every request comes from the same docker CLI with `DOCKER_API_VERSION={API_VERSION}`, the newest "
        "version dockerd 20.10 serves. docker is a private dockerd 20.10 with runc and no iptables rules, on "
        "a bridge made by the script. dockyard runs on its default bridge network.",
        "Latency: hyperfine times each command through each socket, in rounds with warmup runs. Each "
        "command has its own hyperfine call per round, and the order of the servers rotates.",
        "Throughput: the script's own load generator (Python asyncio, one process) keeps N keep-alive "
        "connections busy, each sending the next request when the previous response has arrived. Rounds "
        "alternate between the servers, and the client runs on the same machine as both servers.",
        "Memory: VmRSS and Pss of the `system service` process, from /proc. The idle reading comes after the "
        "service has returned freed heap memory to the kernel, which it does after 15 s without a request.",
        "Other work on the machine during the run adds noise. The load average and the spread of the runs "
        "show how much.",
    ]
    intro = peers.doc_intro([paragraph], bullets)
    section = f"{DOC_HEADING}\n\n{intro}\n\n{report}"
    peers.write_doc_section(path, DOC_HEADING, section)


# ---------------------------------------------------------------------------
# Main


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=20,
                        help="containers running sleep on each server during all measurements (default 20)")

    parser.add_argument("--rounds", type=int, default=5, help="hyperfine rounds, each timing every command (default 5)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per command in each round (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per command in each round (default 3)")

    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], metavar="N",
                        help="connections of the load generator; one set of runs per value (default 1 8)")
    parser.add_argument("--duration", type=float, default=5.0, help="counted seconds of each load run (default 5)")
    parser.add_argument("--load-warmup", type=float, default=1.0,
                        help="uncounted seconds at the start of each load run (default 1)")
    parser.add_argument("--load-rounds", type=int, default=3,
                        help="load runs per server and concurrency, alternating the servers (default 3)")

    # The service returns freed heap memory to the kernel after 15 s without a request, checked every 5 s.
    parser.add_argument("--settle", type=float, default=25.0,
                        help="idle seconds after the load before the service's memory is read (default 25)")
    parser.add_argument("--write", nargs="?", const=REPO / "docs" / "benchmarks.md", type=Path, default=None,
                        help="write the report into this markdown file (default docs/benchmarks.md)")
    args = parser.parse_args()

    if os.geteuid() != 0:
        parser.error("run as root: dockerd, dockyard's containers and the bridge need it")
    for name in ("containers", "rounds", "runs", "load_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    if any(value < 1 for value in args.concurrency):
        parser.error(f"--concurrency values must be at least 1, not {args.concurrency}")
    if args.duration <= 0:
        parser.error(f"--duration must be positive, not {args.duration:g}")
    for name in ("warmup", "load_warmup", "settle"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative, not {getattr(args, name)}")

    required = {"hyperfine": "hyperfine", "skopeo": "skopeo", "busybox": "busybox-static",
                str(peers.DOCKERD): "docker.io", "docker": "docker.io"}
    missing = sorted({package for program, package in required.items() if shutil.which(program) is None})
    if missing:
        parser.error(f"missing packages: {', '.join(missing)} (apt-get install them)")
    return args


def start_servers(workdir: Path, archive: Path, environment: dict[str, str],
                  cleanup: contextlib.ExitStack) -> tuple[DockyardService, peers.Dockerd, list[Server], MemoryReading]:
    """Start both servers, read the service's memory right after start-up, and load the image into both."""
    service = DockyardService(workdir)
    dockyard = Server("dockyard", "dockyard system service", service.socket_path, service.process.pid)
    view = service.cleanup_view()
    cleanup.callback(peers.unmount_below, service.root)
    cleanup.callback(run_bench.tear_down_dockyard_networks, view)
    cleanup.callback(run_bench.stop_leftover_helpers, view)
    cleanup.callback(service.stop)
    cleanup.callback(remove_all_containers, dockyard, environment)
    started = read_memory(service.process.pid, "after start-up")

    bridge = cleanup.enter_context(peers.host_bridge(DOCKER_BRIDGE, DOCKER_BRIDGE_ADDRESS))
    dockerd = peers.Dockerd(workdir / "docker", bridge)
    cleanup.callback(dockerd.stop)
    docker = Server("docker", "dockerd 20.10", dockerd.socket, dockerd.process.pid)
    cleanup.callback(remove_all_containers, docker, environment)

    servers = [dockyard, docker]
    for server in servers:
        call(server, environment, "load", "--quiet", "--input", str(archive))
        # Once, untimed: any failure shows here with its message, which hyperfine would hide.
        call(server, environment, "run", "--rm", "--pull", "never", IMAGE, "true")
    return service, dockerd, servers, started


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_arguments()
    if os.environ.get(run_bench.UNSHARED_MARKER) != "1":
        # Run again in a private mount namespace, so that the servers' mounts
        # stay invisible to the rest of the host and go away with it.
        os.environ[run_bench.UNSHARED_MARKER] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "--", sys.executable, *sys.argv])

    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-api-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, True)
        cleanup.callback(peers.unmount_below, workdir)

        log.info("building the busybox image in %s", workdir)
        layout = workdir / "layout"
        built = images.build_busybox(layout, images.LayerCache())
        archive = workdir / "busybox-docker-archive.tar"
        peers.run(["skopeo", "copy", "--quiet", f"oci:{layout}:latest", f"docker-archive:{archive}:{IMAGE}"])
        (workdir / "client").mkdir()
        environment = client_environment(workdir / "client")

        cleanup.enter_context(peers.new_cgroups_removed())
        guarded_interface = cleanup.enter_context(peers.forward_guard())
        service, dockerd, servers, started = start_servers(workdir, archive, environment, cleanup)

        for server in servers:
            log.info("%s: starting %d containers", server.label, args.containers)
            for _ in range(args.containers):
                call(server, environment, "run", "--detach", "--pull", "never", IMAGE, "sleep", "3600")
            listed = listed_count(server.socket_path)
            if listed != args.containers:
                raise RuntimeError(f"{server.label} lists {listed} containers, expected {args.containers}")

        groups = []
        for name, arguments in (("docker ps", ["ps"]),
                                ("docker run --rm busybox true", ["run", "--rm", "--pull", "never", IMAGE, "true"])):
            groups.append([Timing(server, name, server.cli(*arguments)) for server in servers])
        time_commands(groups, environment, args, workdir)
        timings = [timing for group in groups for timing in group]

        loads = measure_throughput(servers, args)
        readings = [started, read_memory(service.process.pid, "right after the load")]
        log.info("waiting %g s for the service to go idle", args.settle)
        time.sleep(args.settle)
        readings.append(read_memory(service.process.pid, f"{args.settle:g} s after the load"))
        # Removing a running container releases its network in the service process. The reading
        # shows what the modules imported for that add, once the service is idle again.
        victim = call(servers[0], environment, "ps", "--quiet", "--no-trunc").stdout.split()[0]
        call(servers[0], environment, "rm", "--force", victim)
        time.sleep(args.settle)
        readings.append(read_memory(service.process.pid,
                                    f"then {args.settle:g} s after `docker rm -f` of one running container"))
        daemons_kib = daemon_rss_kib(dockerd)

        details = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": run_bench.machine(),
            # Other work on the machine shows up here, and in the spread of the runs.
            "load average (1 min)": f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
            **versions(dockerd, environment, servers[1]),
            "image": f"busybox from Debian's busybox-static, config {built.config_digest}",
            "network guard": f"forwarded traffic out of {guarded_interface} dropped during the run",
        }
        report = render(timings, loads, readings, daemons_kib, details, args)
        print(report)

    # Written only now that the cleanup, which the report describes, has succeeded.
    if args.write:
        write_doc(report, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

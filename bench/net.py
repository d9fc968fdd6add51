"""Benchmark published ports: time to the first HTTP 200, and throughput under a loopback load.

Engines, side by side in one run, all on the same image: busybox built
offline from Debian's busybox-static, plus a layer with ``/www/index.html``
(a few bytes) and ``/www/large.bin`` (1 MiB).

- dockyard, pulling the image from a docker-registry on 127.0.0.1, on its
  default bridge network (a bridge, subnet and nftables table of its own);
- podman 4.3 with ``--runtime crun`` on a bridge network that the script
  creates (netavark, iptables DNAT also for 127.0.0.1);
- docker: Debian's dockerd 20.10 started here privately, on a bridge that
  the script creates, with its default userland proxy (docker-proxy), which
  carries all loopback traffic to published ports.

1. Time to first 200: ``run -d -p PORT:8080 IMAGE httpd -f -p 8080 -h /www``
   is started, and 127.0.0.1:PORT is polled with ``GET /index.html`` every
   2 ms until the status is 200. The container is removed (untimed) before the next run.
   Each round runs every engine once, in an order that rotates per round.
2. Throughput: per engine and round, one container; ``wrk`` with a fixed
   duration, threads and connections against 127.0.0.1:PORT, once for the
   small file and once for the large one, and the same against the
   container's own address (no NAT, no proxy), which is busybox httpd's own
   limit on this machine.

Targets: dockyard's median time to first 200 at most 0.5x podman's, and its
requests per second through the published port at least docker's.

Run as root: python bench/net.py [--rounds N] [--load-rounds N] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import peers  # noqa: E402
from bench import run as run_bench  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402

log = logging.getLogger("bench.net")

DOCKYARD = REPO / ".venv" / "bin" / "dockyard"
IMAGE_NAME = "bench/httpd"
CONTAINER_PORT = 8080
SERVER_COMMAND = ["httpd", "-f", "-p", str(CONTAINER_PORT), "-h", "/www"]
SMALL_FILE = "/index.html"
LARGE_FILE = "/large.bin"
LARGE_FILE_SIZE = 1024 * 1024
PODMAN_TARGET = 0.5   # dockyard's median time to first 200 at most this multiple of podman's

# Bridges, subnets and the nftables table of this script only, so that it can
# run next to the test suite and the other benchmarks.
DOCKER_BRIDGE = "dynetb0"
DOCKER_BRIDGE_ADDRESS = "10.214.0.1/24"
DOCKYARD_BRIDGE = "dynetb1"
DOCKYARD_SUBNET = "10.214.1.0/24"
DOCKYARD_TABLE = "dockyard_netbench"
PODMAN_NETWORK = "netbench"
PODMAN_SUBNET = "10.214.2.0/24"

POLL_INTERVAL = 0.002     # seconds between two probes of the published port
PROBE_TIMEOUT = 1.0       # seconds a probe waits to connect and for the status line
START_TIMEOUT = 30.0      # seconds a run may take until the status is 200
KEEPALIVE_NAME = "bench-keepalive"
MONITOR_EXIT_TIMEOUT = 30.0   # seconds a dockyard monitor may take to exit after its idle timeout
UNSHARED_MARKER = "DOCKYARD_NET_BENCH_UNSHARED"   # set once the script runs in its own mount namespace
DOC_HEADING = "## Network: time to first HTTP 200 and published-port throughput"


# ---------------------------------------------------------------------------
# The image


def build_image(layout: Path) -> images.BuiltImage:
    """Write busybox plus a ``/www`` layer as an OCI layout at ``layout``; its CMD runs httpd."""
    cache = images.LayerCache()
    base = cache.busybox(images.OCI_LAYER_GZIP)
    # Fixed pseudo-random bytes, so that no layer of compressible zeros makes the file cheap.
    large = bytes((index * 2654435761 >> 13) & 0xFF for index in range(LARGE_FILE_SIZE))
    www = images.make_layer([
        images.directory("www"),
        images.regular("www/index.html", b"hello from the network benchmark\n"),
        images.regular("www/large.bin", large),
    ], images.OCI_LAYER_GZIP)
    architecture, variant = images.host_architecture()
    config = images.image_config(architecture, variant, [base.diff_id, www.diff_id], SERVER_COMMAND,
                                 "busybox and /www")
    config["config"]["ExposedPorts"] = {f"{CONTAINER_PORT}/tcp": {}}
    oci_layout = images.Layout(layout)
    built, descriptor = images.write_image(oci_layout, "httpd", [base, www], config)
    oci_layout.tag(descriptor)
    return built


# ---------------------------------------------------------------------------
# The engines


@dataclass
class Engine:
    """How to start, inspect and remove one engine's published-port containers."""

    key: str                               # "dockyard", "podman", "docker"
    label: str                             # the row name in the report
    cli: Callable[..., list[str]]          # the engine's command line with these arguments appended
    image: str
    environment: dict[str, str] = field(default_factory=dict)
    run_options: list[str] = field(default_factory=list)   # e.g. the network to attach to

    def run_command(self, host_port: int) -> list[str]:
        return self.cli("run", "--detach", "--publish", f"{host_port}:{CONTAINER_PORT}", *self.run_options,
                        self.image, *SERVER_COMMAND)

    def call(self, *arguments: str) -> subprocess.CompletedProcess:
        return peers.run(self.cli(*arguments), env=dict(os.environ, **self.environment))

    def remove(self, container: str) -> None:
        self.call("rm", "--force", container)

    def address(self, container: str) -> str:
        """Return the container's IPv4 address on its (first) network."""
        inspected = json.loads(self.call("inspect", container).stdout)[0]
        for network in (inspected["NetworkSettings"].get("Networks") or {}).values():
            if network.get("IPAddress"):
                return network["IPAddress"]
        raise RuntimeError(f"{self.label}: container {container[:12]} has no IPv4 address in inspect")


def dockyard_engine(workdir: Path, reference: str) -> tuple[Engine, run_bench.Engine]:
    """Return dockyard's engine, and the same root as bench/run.py's Engine for its cleanup helpers."""
    config = workdir / "dockyard-config.toml"
    config.write_text(
        "[network]\n"
        f'default_subnet = "{DOCKYARD_SUBNET}"\n'
        f'bridge = "{DOCKYARD_BRIDGE}"\n'
        f'nft_table = "{DOCKYARD_TABLE}"\n'
        "dns_upstreams = []\n"
    )
    root = workdir / "dockyard-root"
    environment = {
        "DOCKYARD_ROOT": str(root),
        "DOCKYARD_RUN_ROOT": str(workdir / "dockyard-run"),
        "DOCKYARD_CONFIG": str(config),
    }

    def is_dockyard(process: run_bench.Process) -> bool:
        if "dockyard" not in " ".join(process.cmdline):
            return False
        return str(root) in " ".join(process.cmdline) or process.environ_value("DOCKYARD_ROOT") == str(root)

    def is_helper(process: run_bench.Process) -> bool:
        return is_dockyard(process) and not run_bench.is_cli_server(process)

    def is_daemon(process: run_bench.Process) -> bool:
        return is_dockyard(process) and run_bench.is_cli_server(process)

    engine = Engine("dockyard", "dockyard (monitor running)", lambda *arguments: [str(DOCKYARD), *arguments],
                    reference, environment)
    cleanup_view = run_bench.Engine(key="dockyard", label="dockyard", environment=environment, run_commands={},
                                    is_helper=is_helper, is_daemon=is_daemon)
    return engine, cleanup_view


def podman_engine(podman: peers.Podman, name: str) -> Engine:
    return Engine("podman", "podman --runtime crun", podman.command, name, podman.environment,
                  ["--network", PODMAN_NETWORK])


def docker_engine(dockerd: peers.Dockerd, name: str) -> Engine:
    return Engine("docker", "docker (dockerd 20.10, docker-proxy)", dockerd.command, name)


def set_up_engines(args: argparse.Namespace, workdir: Path, layout: Path,
                   cleanup: contextlib.ExitStack) -> tuple[list[Engine], peers.Dockerd | None]:
    """Give every engine that is not skipped the image; register their cleanup on ``cleanup``."""
    engines: list[Engine] = []
    dockerd = None
    if "dockyard" not in args.skip:
        registry = start_registry(workdir / "registry")
        cleanup.callback(registry.stop)
        images.push_layout(layout, registry.host, IMAGE_NAME)
        engine, cleanup_view = dockyard_engine(workdir, f"{registry.host}/{IMAGE_NAME}:latest")
        cleanup.callback(run_bench.tear_down_dockyard_networks, cleanup_view)
        cleanup.callback(run_bench.stop_leftover_helpers, cleanup_view)
        cleanup.callback(peers.unmount_below, workdir / "dockyard-root")
        cleanup.callback(remove_all, engine)
        engine.call("pull", "--quiet", engine.image)
        # An idle container keeps dockyard's shared monitor running, as any running
        # container does; runs with no monitor running are timed apart.
        engine.call("run", "--detach", "--name", KEEPALIVE_NAME, "--network", "none", engine.image, "sleep", "3600")
        engines.append(engine)

    if "podman" not in args.skip:
        podman = peers.Podman(workdir / "podman")
        cleanup.callback(podman.reset)
        name = f"localhost/{IMAGE_NAME}:latest"
        podman.load(layout, name)
        podman.podman("network", "create", "--subnet", PODMAN_SUBNET, "--disable-dns", PODMAN_NETWORK)
        engines.append(podman_engine(podman, name))

    if "docker" not in args.skip:
        bridge = cleanup.enter_context(peers.host_bridge(DOCKER_BRIDGE, DOCKER_BRIDGE_ADDRESS))
        dockerd = peers.Dockerd(workdir / "docker", bridge)
        cleanup.callback(dockerd.stop)
        cleanup.callback(dockerd.remove_all_containers)
        archive = workdir / "httpd-docker-archive.tar"
        peers.run(["skopeo", "copy", "--quiet", f"oci:{layout}:latest",
                   f"docker-archive:{archive}:{IMAGE_NAME}:latest"])
        dockerd.load(archive)
        engines.append(docker_engine(dockerd, f"{IMAGE_NAME}:latest"))
    return engines, dockerd


def remove_all(engine: Engine) -> None:
    identifiers = engine.call("ps", "--all", "--quiet").stdout.split()
    if identifiers:
        engine.call("rm", "--force", *identifiers)


# ---------------------------------------------------------------------------
# Time to first 200


def probe(port: int, path: str = SMALL_FILE) -> int | None:
    """Send ``GET path`` to 127.0.0.1:port; return the response's status code, or None without one."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as connection:
            connection.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head:
                chunk = connection.recv(256)
                if not chunk:
                    return None
                head += chunk
    except OSError:
        return None
    # The status line is "HTTP/1.x CODE REASON".
    parts = head.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def require_port_closed(port: int) -> None:
    """Raise unless connecting to 127.0.0.1:port is refused, so no earlier mapping responds in the next run."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT):
            pass
    except ConnectionRefusedError:
        return
    except OSError as error:
        raise RuntimeError(f"127.0.0.1:{port} neither accepts nor refuses connections ({error}): "
                           "a rule or process of an earlier run is left") from error
    raise RuntimeError(f"127.0.0.1:{port} accepts connections before the run: another program or a "
                       "container of an earlier run holds it; choose another --port or remove it")


@dataclass
class StartTiming:
    """One engine's runs: seconds to the first 200, and seconds until the run command returned."""

    engine: Engine
    first_200: list[float] = field(default_factory=list)
    command_returned: list[float] = field(default_factory=list)


def time_one_start(engine: Engine, port: int) -> tuple[float, float, str]:
    """Start one container and poll until 200; return (first 200, command returned, container ID).

    The container is left running; the caller removes it.
    """
    require_port_closed(port)
    command = engine.run_command(port)
    environment = dict(os.environ, **engine.environment)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               env=environment, text=True)
    # A thread notes when the command returns, while this one probes the port.
    outputs: dict[str, object] = {}

    def wait_for_command() -> None:
        outputs["stdout"], outputs["stderr"] = process.communicate()
        outputs["returned"] = time.perf_counter() - start

    waiter = threading.Thread(target=wait_for_command)
    waiter.start()
    first_200 = None
    try:
        while first_200 is None:
            if process.poll() is not None and process.returncode != 0:
                break
            if time.perf_counter() - start > START_TIMEOUT:
                process.kill()
                raise RuntimeError(f"{engine.label}: no HTTP 200 from 127.0.0.1:{port} within "
                                   f"{START_TIMEOUT:.0f} s of `{shlex.join(command)}`")
            if probe(port) == 200:
                first_200 = time.perf_counter() - start
                break
            time.sleep(POLL_INTERVAL)
    finally:
        waiter.join()
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed (exit {process.returncode}): "
                           f"{str(outputs.get('stderr', '')).strip()[-2000:]}")
    assert first_200 is not None
    return first_200, float(outputs["returned"]), str(outputs["stdout"]).strip().splitlines()[-1]


def time_starts(engines: list[Engine], port: int, rounds: int, warmup: int) -> list[StartTiming]:
    timings = [StartTiming(engine) for engine in engines]
    for round_number in range(-warmup, rounds):
        shift = round_number % len(timings)
        ordered = timings[shift:] + timings[:shift]
        for timing in ordered:
            first_200, returned, container = time_one_start(timing.engine, port)
            timing.engine.remove(container)
            if round_number >= 0:
                timing.first_200.append(first_200)
                timing.command_returned.append(returned)
        if round_number >= 0:
            log.info("round %d of %d: %s", round_number + 1, rounds, ", ".join(
                f"{timing.engine.key} {timing.first_200[-1] * 1000:.0f} ms" for timing in ordered))
    return timings


def monitor_pids(engine: Engine) -> list[int]:
    """Return the PIDs of the dockyard monitors of the engine's root.

    A monitor forked by the CLI server's zygote has the zygote's command line,
    without the root, but the root in its environment.
    """
    root = engine.environment["DOCKYARD_ROOT"]
    return [process.pid for process in run_bench.list_processes().values()
            if "dockyard.engine.monitor" in process.cmdline and process.comm != "dockyard-zygote"
            and (root in process.cmdline or process.environ_value("DOCKYARD_ROOT") == root)]


def time_cold_starts(engine: Engine, port: int, runs: int) -> StartTiming:
    """Time runs that each start dockyard's monitor, with no container of the root left running."""
    engine.remove(KEEPALIVE_NAME)
    cold = Engine(engine.key, "dockyard (no monitor running)", engine.cli, engine.image,
                  # The monitor exits 1 s after its last container instead of 10 s.
                  dict(engine.environment, DOCKYARD_MONITOR_IDLE_TIMEOUT="1"), engine.run_options)
    timing = StartTiming(cold)
    for _ in range(runs):
        deadline = time.monotonic() + MONITOR_EXIT_TIMEOUT
        while monitor_pids(cold):
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockyard's monitor (PIDs {monitor_pids(cold)}) did not exit within "
                                   f"{MONITOR_EXIT_TIMEOUT:.0f} s after its last container")
            time.sleep(0.1)
        first_200, returned, container = time_one_start(cold, port)
        cold.remove(container)
        timing.first_200.append(first_200)
        timing.command_returned.append(returned)
    log.info("no monitor running: %s ms", ", ".join(f"{value * 1000:.0f}" for value in timing.first_200))
    return timing


# ---------------------------------------------------------------------------
# Throughput


@dataclass
class LoadResult:
    """wrk's figures for one run."""

    requests_per_second: float
    bytes_per_second: float
    errors: int          # socket errors plus responses other than 2xx and 3xx


UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def run_wrk(url: str, args: argparse.Namespace) -> LoadResult:
    command = ["wrk", f"--threads={args.threads}", f"--connections={args.connections}",
               f"--duration={args.duration}s", url]
    output = peers.run(command).stdout
    requests = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    transfer = re.search(r"^Transfer/sec:\s+([\d.]+)([KMG]?B)", output, re.MULTILINE)
    if requests is None or transfer is None:
        raise RuntimeError(f"cannot read wrk's output for {url}:\n{output}")
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(value) for value in socket_errors.groups())
    non_success = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_success:
        errors += int(non_success.group(1))
    return LoadResult(float(requests.group(1)), float(transfer.group(1)) * UNITS[transfer.group(2)], errors)


@dataclass
class LoadTiming:
    """One engine's wrk results, by (file, "published" or "direct")."""

    engine: Engine
    results: dict[tuple[str, str], list[LoadResult]] = field(default_factory=dict)

    def median(self, path: str, route: str, attribute: str) -> float | None:
        found = self.results.get((path, route))
        return statistics.median(getattr(result, attribute) for result in found) if found else None


def measure_load(engines: list[Engine], port: int, args: argparse.Namespace) -> list[LoadTiming]:
    """Run wrk against each engine's published port and its container's own address, in rotating rounds."""
    timings = [LoadTiming(engine) for engine in engines]
    for round_number in range(args.load_rounds):
        shift = round_number % len(timings)
        for timing in timings[shift:] + timings[:shift]:
            _, _, container = time_one_start(timing.engine, port)
            try:
                address = timing.engine.address(container)
                for path in (SMALL_FILE, LARGE_FILE):
                    for route, base in (("published", f"http://127.0.0.1:{port}"),
                                        ("direct", f"http://{address}:{CONTAINER_PORT}")):
                        result = run_wrk(base + path, args)
                        timing.results.setdefault((path, route), []).append(result)
                        log.info("load round %d, %s, %s %s: %.0f requests/s, %d errors", round_number + 1,
                                 timing.engine.key, route, path, result.requests_per_second, result.errors)
            finally:
                timing.engine.remove(container)
    return timings


# ---------------------------------------------------------------------------
# Report


def milliseconds(values: list[float]) -> tuple[str, str]:
    """Return the median and the middle half of ``values`` (seconds) as millisecond texts."""
    median = statistics.median(values)
    if len(values) < 2:
        return f"{median * 1000:.0f}", f"{median * 1000:.0f}"
    lower, _, upper = statistics.quantiles(values, n=4)
    return f"{median * 1000:.0f}", f"{lower * 1000:.0f}–{upper * 1000:.0f}"


def render_starts(timings: list[StartTiming]) -> list[str]:
    podman = next((statistics.median(timing.first_200) for timing in timings if timing.engine.key == "podman"), None)
    lines = [
        "| engine | first 200, median (ms) | middle half (ms) | `run -d` returned, median (ms) | runs | vs podman |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for timing in timings:
        median, middle = milliseconds(timing.first_200)
        returned, _ = milliseconds(timing.command_returned)
        ratio = f"{statistics.median(timing.first_200) / podman:.2f}x" if podman else "-"
        lines.append(f"| {timing.engine.label} | {median} | {middle} | {returned} | {len(timing.first_200)} | {ratio} |")
    lines.append("")
    verdicts = []
    for timing in timings:
        if timing.engine.key == "dockyard" and podman:
            ratio = statistics.median(timing.first_200) / podman
            verdicts.append(f"{timing.engine.label} {ratio:.2f}x ({'met' if ratio <= PODMAN_TARGET else 'missed'})")
    if verdicts:
        lines.append(f"Target: dockyard's median at most {PODMAN_TARGET}x podman's. This run: {'; '.join(verdicts)}.")
    return lines


def rate_text(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return f"{value / 1024 / 1024:.1f} MiB/s"
    return f"{value:.0f}"


def render_load(timings: list[LoadTiming], args: argparse.Namespace) -> list[str]:
    lines = [
        "| engine | file | published port (requests/s) | published port (transfer) | errors "
        "| container address (requests/s) | container address (transfer) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for timing in timings:
        for path in (SMALL_FILE, LARGE_FILE):
            published = timing.results.get((path, "published"), [])
            lines.append(
                f"| {timing.engine.label} | {path} | "
                f"{rate_text(timing.median(path, 'published', 'requests_per_second'), 'requests')} | "
                f"{rate_text(timing.median(path, 'published', 'bytes_per_second'), 'bytes')} | "
                f"{sum(result.errors for result in published)} | "
                f"{rate_text(timing.median(path, 'direct', 'requests_per_second'), 'requests')} | "
                f"{rate_text(timing.median(path, 'direct', 'bytes_per_second'), 'bytes')} |"
            )
    lines.append("")
    lines.append(f"Medians of {args.load_rounds} rounds of `wrk --threads={args.threads} "
                 f"--connections={args.connections} --duration={args.duration}s`. \"errors\" sums wrk's socket "
                 "errors and non-2xx responses over all rounds.")
    by_key = {timing.engine.key: timing for timing in timings}
    if "dockyard" in by_key and "docker" in by_key:
        verdicts = []
        for path in (SMALL_FILE, LARGE_FILE):
            mine = by_key["dockyard"].median(path, "published", "requests_per_second")
            theirs = by_key["docker"].median(path, "published", "requests_per_second")
            if mine is not None and theirs:
                verdict = "met" if mine >= theirs else "missed"
                verdicts.append(f"{path}: {mine / theirs:.2f}x docker's ({verdict})")
        lines.append("Target: dockyard's requests per second through the published port at least docker's "
                     "userland proxy's. This run: " + "; ".join(verdicts) + ".")
    return lines


def versions(dockerd: peers.Dockerd | None) -> dict[str, str]:
    found = run_bench.versions(dockerd)
    found.pop("hyperfine", None)
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    found["wrk"] = ((wrk.stdout or wrk.stderr).strip().splitlines() or ["unknown"])[0]
    return found


def render(starts: list[StartTiming], loads: list[LoadTiming], details: dict[str, str], args: argparse.Namespace,
           command: str) -> str:
    lines = ["### Time from `run -d -p` to the first HTTP 200", "", *render_starts(starts)]
    if loads:
        lines += ["", "### Throughput of the published port", "", *render_load(loads, args)]
    lines.append("")
    lines += [f"- {key}: {value}" for key, value in details.items()]
    lines.append(f"- command: `{command}`")
    return "\n".join(lines) + "\n"


def write_doc(report: str, path: Path) -> None:
    """Replace the network section of ``path`` (from its heading to the next ``## ``) with ``report``."""
    paragraph = ("All engines run the same image: busybox from Debian's busybox-static plus a layer with "
                 "`/www/index.html` (33 bytes) and `/www/large.bin` (1 MiB). Produced by `bench/net.py`, and "
                 "[bench/README.md](../bench/README.md) describes the method.")
    bullets = [
        "Time to first 200: `run -d -p PORT:8080 IMAGE httpd -f -p 8080 -h /www`, and from the same moment "
        "`GET /index.html` on 127.0.0.1:PORT every 2 ms, each try with a 1 s timeout, until the status is "
        "200. The container is removed, untimed, before the next run. Every round runs each engine once, in "
        "an order that rotates per round, after one untimed warmup round.",
        "An idle container keeps dockyard's shared monitor running during the rounds, as any running "
        "container does. The row \"no monitor running\" times single runs that start the monitor first: "
        "the CLI server's monitor zygote forks it (see README.md), and the CLI server itself is running.",
        "docker-proxy listens before the container is reachable and accepts the first tries. One of them "
        "then waits for its 1 s timeout, which is most of docker's figure; `run -d` itself returned sooner, "
        "as its column shows.",
        "Throughput: wrk against 127.0.0.1:PORT and, for comparison, against the container's own address, "
        "which has no NAT and no proxy in the way. busybox httpd forks a process per connection and closes "
        "it after one response, so each request costs a new connection.",
        "podman runs with `--runtime crun` on a bridge network made by the script, and netavark DNATs "
        "127.0.0.1 to the container in the kernel. docker is a private dockerd 20.10 with its default "
        "userland proxy: docker-proxy accepts each loopback connection and opens another to the container. "
        "dockyard runs on its default bridge network and DNATs 127.0.0.1 in the kernel too.",
        "Other work on the machine during the run adds noise. The load average and the middle half of the "
        "runs show how much.",
    ]
    intro = peers.doc_intro([paragraph], bullets)
    section = f"{DOC_HEADING}\n\n{intro}\n\n{report}"
    peers.write_doc_section(path, DOC_HEADING, section)


# ---------------------------------------------------------------------------
# Main


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20,
                        help="timed rounds of time to first 200, each running every engine once (default 20)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before them (default 1)")
    parser.add_argument("--cold-runs", type=int, default=10,
                        help="dockyard runs timed with no monitor running before each (default 10; 0 leaves them out)")
    parser.add_argument("--load-rounds", type=int, default=3,
                        help="rounds of wrk runs per engine; 0 leaves the throughput out (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections kept open (default 16)")
    parser.add_argument("--port", type=int, default=8600, help="the published host port (default 8600)")
    parser.add_argument("--skip", action="append", default=[], choices=["dockyard", "podman", "docker"],
                        help="leave one engine out (repeatable)")
    parser.add_argument("--write", nargs="?", const=REPO / "docs" / "benchmarks.md", type=Path, default=None,
                        help="write the report into this markdown file (default docs/benchmarks.md)")
    args = parser.parse_args()

    if os.geteuid() != 0:
        parser.error("run as root: the engines, the bridges and the cgroup mount need it")
    for name in ("rounds", "duration", "threads", "connections"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    for name in ("warmup", "cold_runs", "load_rounds"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative, not {getattr(args, name)}")
    if args.connections < args.threads:
        parser.error(f"--connections ({args.connections}) must be at least --threads ({args.threads}), as wrk requires")
    if len(set(args.skip)) == 3:
        parser.error("every engine is skipped: nothing to measure")

    required = {"skopeo": "skopeo", "docker-registry": "docker-registry", "busybox": "busybox-static"}
    if args.load_rounds:
        required["wrk"] = "wrk"
    if "podman" not in args.skip:
        required |= {"podman": "podman", "conmon": "conmon", "crun": "crun", str(run_bench.NETAVARK): "netavark"}
    if "docker" not in args.skip:
        required |= {str(peers.DOCKERD): "docker.io", str(peers.DOCKER_CLIENT): "docker.io",
                     "docker-proxy": "docker.io"}
    missing = sorted({package for program, package in required.items() if shutil.which(program) is None})
    if missing:
        parser.error(f"missing packages: {', '.join(missing)} (apt-get install them), or leave an engine out with --skip")
    return args


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_arguments()
    if os.environ.get(UNSHARED_MARKER) != "1":
        # Run again in a private mount namespace, so that the hugetlb v1 mount
        # that crun needs, and the engines' own mounts, stay out of the host's view.
        os.environ[UNSHARED_MARKER] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "--", sys.executable, *sys.argv])

    require_port_closed(args.port)
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-net-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, True)
        cleanup.callback(peers.unmount_below, workdir)

        log.info("building the image in %s", workdir)
        layout = workdir / "layout"
        built = build_image(layout)

        cleanup.enter_context(peers.new_cgroups_removed())
        hugetlb_mounted = False
        if "podman" not in args.skip:
            # Freed cgroups can keep the v1 hierarchy alive for over a minute after the last
            # container, so the release gets more time than the default.
            hugetlb_mounted = cleanup.enter_context(peers.hugetlb_v1(workdir / "cgroup-stage"))
        guarded_interface = cleanup.enter_context(peers.forward_guard())

        peers.compile_dockyard()
        engines, dockerd = set_up_engines(args, workdir, layout, cleanup)
        log.info("time to first 200: %d rounds of %s", args.rounds, ", ".join(engine.key for engine in engines))
        starts = time_starts(engines, args.port, args.rounds, args.warmup)
        dockyard = next((engine for engine in engines if engine.key == "dockyard"), None)
        if dockyard is not None and args.cold_runs:
            starts.append(time_cold_starts(dockyard, args.port, args.cold_runs))
        loads = measure_load(engines, args.port, args) if args.load_rounds else []

        details = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": run_bench.machine(),
            # Other work on the machine shows up here, and in the spread of the runs.
            "load average (1 min)": f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
            **versions(dockerd),
            "image": f"busybox from Debian's busybox-static and a /www layer, config {built.config_digest}",
            "published port": f"127.0.0.1:{args.port} to container port {CONTAINER_PORT}",
            "hugetlb v1 mount": ("mounted in the script's mount namespace for crun, unmounted after"
                                 if hugetlb_mounted else "not needed"),
            "network guard": f"forwarded traffic out of {guarded_interface} dropped during the run",
        }
        command = "python bench/net.py " + " ".join(sys.argv[1:])
        report = render(starts, loads, details, args, command.strip())
        print(report)

    # Written only now that the cleanup has succeeded.
    if args.write:
        write_doc(report, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark `build` of a ten-step Dockerfile: a cold build and a fully cached rebuild.

Builders, side by side in one run, all from the same busybox base image
(built offline from Debian's busybox-static by tests/support/images.py):

- dockyard, which pulls the base from a docker-registry on 127.0.0.1;
- docker's legacy builder (``DOCKER_BUILDKIT=0 docker build``) of Debian's
  dockerd 20.10, started here privately, with the base loaded by
  ``docker load`` from ``dockyard save``;
- ``podman build`` (podman 4.3 with runc) with its own storage, with the base
  loaded by ``podman load`` from the same archive.

Cold: ``--no-cache``, with the previous result removed (untimed) before each
run. Cached: one untimed build fills the cache, then every timed build finds
all steps cached. Runs rotate between builders, round by round. Reports
medians and the ratios to the targets: dockyard's cached rebuild at most 0.5x
each peer's, its cold build no slower than either.

Run as root: python bench/build.py [--runs N] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import peers  # noqa: E402
from bench import run as run_bench  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402

log = logging.getLogger("bench.build")

DOCKYARD = REPO / ".venv" / "bin" / "dockyard"
IMAGE_NAME = "bench/busybox"
TAG = "bench/built:latest"
COLD_TARGET = 1.0     # dockyard's cold build at most this multiple of each peer's
CACHED_TARGET = 0.5   # dockyard's cached rebuild at most this multiple of each peer's
UNSHARED_MARKER = "DOCKYARD_BENCH_UNSHARED"
DOC_HEADING = "## Build: a ten-step Dockerfile, cold and cached"

# Ten steps: FROM, then RUN, COPY, ENV and WORKDIR steps that each make a layer or change the config.
DOCKERFILE = """\
FROM {base}
ENV APP_HOME=/app MODE=bench
WORKDIR /app
RUN echo "built by the benchmark" > /build.log
COPY app/ /app/
RUN ls -R /app > /app/listing.txt
ENV STAGE=second
RUN mkdir -p /data && echo ok > /data/ok
COPY config.txt /etc/bench.conf
RUN wc -c /etc/bench.conf > /app/size.txt
"""


def write_context(directory: Path, base: str) -> None:
    """Write the Dockerfile and 40 small source files (about 160 KB) into ``directory``."""
    (directory / "app" / "lib").mkdir(parents=True)
    (directory / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (directory / "config.txt").write_text("mode = bench\n" * 20)
    for number in range(20):
        (directory / "app" / f"module{number:02}.py").write_text(f"# module {number}\n" + "x = 1\n" * 700)
        (directory / "app" / "lib" / f"data{number:02}.txt").write_text(f"data {number}\n" * 500)


@dataclass
class Builder:
    """One builder's commands; ``build`` takes extra flags such as ``--no-cache``."""

    label: str
    build: list[str]
    remove: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    cold: list[float] = field(default_factory=list)
    cached: list[float] = field(default_factory=list)
    failure: str | None = None

    def run_build(self, *flags: str) -> float:
        """Run one build with ``flags`` and return its wall-clock seconds; raises RuntimeError if it fails."""
        command = [*self.build[:-1], *flags, self.build[-1]]
        started = time.perf_counter()
        peers.run(command, env=dict(os.environ, **self.environment))
        return time.perf_counter() - started

    def remove_result(self) -> None:
        subprocess.run(self.remove, env=dict(os.environ, **self.environment), capture_output=True,
                       stdin=subprocess.DEVNULL)


def podman_command(podman: peers.Podman, *arguments: str) -> list[str]:
    """Return a podman command line that uses runc, as docker does.

    crun 1.8 rejects this kind of hybrid cgroup host unless hugetlb is
    remounted as a v1 hierarchy. bench/run.py does that, but the remount
    would disturb other work on the host, and runc does not need it.
    """
    return ["podman", "--root", str(podman.root), "--runroot", str(podman.run_root), "--runtime", "runc", *arguments]


def set_up(workdir: Path, layout: Path, context: Path, cleanup: contextlib.ExitStack,
           skip: list[str]) -> tuple[list[Builder], peers.Dockerd | None]:
    peers.compile_dockyard()
    registry = start_registry(workdir / "registry")
    cleanup.callback(registry.stop)
    images.push_layout(layout, registry.host, IMAGE_NAME)
    reference = f"{registry.host}/{IMAGE_NAME}:latest"
    dockyard_engine = run_bench.dockyard_engine(workdir, reference)
    cleanup.callback(run_bench.tear_down_dockyard_networks, dockyard_engine)
    cleanup.callback(run_bench.stop_leftover_helpers, dockyard_engine)
    cleanup.callback(peers.unmount_below, workdir / "dockyard-root")
    environment = dict(os.environ, **dockyard_engine.environment)
    peers.run([str(DOCKYARD), "pull", "--quiet", reference], env=environment)
    # The peers load the base image from dockyard's own save, under the same name.
    archive = workdir / "base.tar"
    peers.run([str(DOCKYARD), "tag", reference, f"{IMAGE_NAME}:latest"], env=environment)
    peers.run([str(DOCKYARD), "save", "--output", str(archive), f"{IMAGE_NAME}:latest"], env=environment)

    builders: list[Builder] = []
    dockyard_context = workdir / "context-dockyard"
    shutil.copytree(context, dockyard_context)
    (dockyard_context / "Dockerfile").write_text(DOCKERFILE.format(base=reference))
    builders.append(Builder(
        "dockyard build",
        [str(DOCKYARD), "build", "--quiet", "--tag", TAG, str(dockyard_context)],
        [str(DOCKYARD), "rmi", TAG],
        dockyard_engine.environment,
    ))

    dockerd = None
    if "docker" not in skip:
        dockerd = peers.Dockerd(workdir / "docker", "none")
        cleanup.callback(dockerd.stop)
        dockerd.load(archive)
        builders.append(Builder(
            "docker build (legacy builder)",
            dockerd.command("build", "--quiet", "--network", "none", "--tag", TAG, str(context)),
            dockerd.command("rmi", TAG),
            {"DOCKER_BUILDKIT": "0"},
        ))

    if "podman" not in skip:
        podman = peers.Podman(workdir / "podman")
        cleanup.callback(podman.reset)
        podman.podman("load", "--quiet", "--input", str(archive))
        builders.append(Builder(
            "podman build",
            podman_command(podman, "build", "--quiet", "--network", "none", "--tag", TAG, str(context)),
            podman_command(podman, "rmi", TAG),
            podman.environment,
        ))
    return builders, dockerd


def measure(builders: list[Builder], runs: int) -> None:
    """Time ``runs`` cold builds and ``runs`` cached rebuilds per builder, rotating the order every round."""
    for builder in builders:
        try:
            builder.run_build("--no-cache")   # untimed: checks that the builder works, and warms the page cache
            builder.run_build()               # untimed: fills the cache for the cached rounds
        except RuntimeError as error:
            builder.failure = str(error).strip().splitlines()[-1]
            log.warning("%s failed: %s", builder.label, builder.failure)
    working = [builder for builder in builders if builder.failure is None]
    for round_number in range(runs):
        order = working[round_number % len(working):] + working[:round_number % len(working)]
        for builder in order:
            builder.remove_result()
            subprocess.run(["sync"], check=False)
            builder.cold.append(builder.run_build("--no-cache"))
        for builder in order:
            builder.run_build()   # untimed: the cold build wrote no cache for the next cached run
            builder.cached.append(builder.run_build())
        log.info("round %d of %d done", round_number + 1, runs)


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x"


def render(builders: list[Builder], details: dict[str, str], command: str) -> str:
    working = [builder for builder in builders if builder.failure is None]
    lines = ["| builder | cold median (s) | cold runs (s) | cached median (s) | cached runs (s) |",
             "| --- | --- | --- | --- | --- |"]
    for builder in builders:
        if builder.failure:
            lines.append(f"| {builder.label} | failed: {builder.failure} | | | |")
            continue
        lines.append(
            f"| {builder.label} | {statistics.median(builder.cold):.2f} | {', '.join(f'{t:.2f}' for t in builder.cold)} "
            f"| {statistics.median(builder.cached):.3f} | {', '.join(f'{t:.3f}' for t in builder.cached)} |"
        )
    dockyard = next((builder for builder in working if builder.label.startswith("dockyard")), None)
    if dockyard is not None:
        lines.append("")
        cold = statistics.median(dockyard.cold)
        cached = statistics.median(dockyard.cached)
        for peer in working:
            if peer is dockyard:
                continue
            peer_cold = statistics.median(peer.cold)
            peer_cached = statistics.median(peer.cached)
            lines.append(
                f"- vs {peer.label}: cold {ratio(cold, peer_cold)} (target at most {COLD_TARGET:.1f}x, "
                f"{'met' if cold <= COLD_TARGET * peer_cold else 'missed'}), cached {ratio(cached, peer_cached)} "
                f"(target at most {CACHED_TARGET:.1f}x, {'met' if cached <= CACHED_TARGET * peer_cached else 'missed'})"
            )
    lines.append("")
    lines += [f"- {key}: {value}" for key, value in details.items()]
    lines.append(f"- command: `{command}`")
    return "\n".join(lines) + "\n"


def write_doc(report: str, path: Path) -> None:
    """Replace the build section of ``path`` (from its heading to the next ``## ``) with ``report``."""
    intro = textwrap.fill(
        "Each builder builds the same ten-step Dockerfile (FROM the busybox test image, then ENV, "
        "WORKDIR, four RUN and two COPY steps) from a context of 40 small files. Cold: `--no-cache`, "
        "after removing the previous result (untimed). Cached: every step is found in the cache. "
        "The order of the builders rotates from round to round. docker is Debian's dockerd 20.10 "
        "with the legacy builder (`DOCKER_BUILDKIT=0`), run privately with `--bridge none`; docker "
        "and podman build with `--network none`, and dockyard's RUN steps use its default bridge "
        "network. Times are wall-clock seconds with a warm page cache. Produced by `bench/build.py`. "
        "[bench/README.md](../bench/README.md) describes the method.",
        width=78, break_on_hyphens=False,
    )
    section = f"{DOC_HEADING}\n\n{intro}\n\n{report}"
    peers.write_doc_section(path, DOC_HEADING, section)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed cold builds and cached rebuilds per builder (default 5)")
    parser.add_argument("--skip", action="append", default=[], choices=["docker", "podman"],
                        help="leave one peer out (repeatable)")
    parser.add_argument("--note", help="a line for the report, such as other work that ran on the machine meanwhile")
    parser.add_argument("--write", nargs="?", const=REPO / "docs" / "benchmarks.md", type=Path, default=None,
                        help="write the report into this markdown file (default docs/benchmarks.md)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the builders' containers and mounts need it")
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, not {args.runs}")
    required = {"skopeo": "skopeo", "docker-registry": "docker-registry", "busybox": "busybox-static"}
    if "podman" not in args.skip:
        required |= {"podman": "podman", "runc": "runc", "conmon": "conmon"}
    if "docker" not in args.skip:
        required |= {str(peers.DOCKERD): "docker.io", str(peers.DOCKER_CLIENT): "docker.io"}
    missing = sorted({package for program, package in required.items() if shutil.which(program) is None})
    if missing:
        parser.error(f"missing packages: {', '.join(missing)} (apt-get install them), or leave a peer out with --skip")
    return args


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_arguments()
    if os.environ.get(UNSHARED_MARKER) != "1":
        # Run again in a private mount namespace, so that the builders' mounts stay invisible to the host.
        os.environ[UNSHARED_MARKER] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "--", sys.executable, *sys.argv])

    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-build-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, True)
        cleanup.callback(peers.unmount_below, workdir)
        layout = workdir / "layout"
        built = images.build_busybox(layout, images.LayerCache())
        context = workdir / "context"
        context.mkdir()
        write_context(context, f"{IMAGE_NAME}:latest")

        cleanup.enter_context(peers.new_cgroups_removed())
        guarded_interface = cleanup.enter_context(peers.forward_guard())

        builders, dockerd = set_up(workdir, layout, context, cleanup, args.skip)
        measure(builders, args.runs)
        details = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": run_bench.machine(),
            # Other work on the machine shows up here, and in the spread of the runs.
            "load average (1 min)": f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
            **{key: value for key, value in run_bench.versions(dockerd).items()
               if key in ("python", "dockyard", "podman", "runc", "containerd", "dockerd")},
            "base image": f"busybox from Debian's busybox-static, config {built.config_digest}",
            "network guard": f"forwarded traffic out of {guarded_interface} dropped during the run",
        }
        if args.note:
            details["note"] = args.note
        report = render(builders, details, ("python bench/build.py " + " ".join(sys.argv[1:])).strip())
        print(report)

    # Written only now that the cleanup has succeeded.
    if args.write:
        write_doc(report, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

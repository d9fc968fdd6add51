"""Benchmark `dockyard pull` against its floor and against `docker pull`.

The image is a Debian bookworm minbase root filesystem, made with debootstrap
from the machine's configured Debian mirror, packed as one gzip layer into an
OCI layout and pushed to a registry on 127.0.0.1. Each round pulls it once
with each tool, after removing the previous copy:

- floor: `skopeo copy docker://... oci:DIR`, then `gzip -dc | tar -x` of each
  layer: the download and the unpack with no bookkeeping at all.
- dockyard: `dockyard pull` into a fresh DOCKYARD_ROOT.
- docker: `docker pull` (Debian's docker.io 20.10) against a private dockerd
  started here with its own data root, exec root and socket, no bridge and no
  iptables rules. `docker rmi` runs between rounds. dockerd pulls straight from
  127.0.0.1 (an insecure registry), not through a docker.io mirror: a mirror
  that fails makes dockerd fall back to the public Docker Hub, and a
  benchmark must send no traffic off this machine.

The report gives the median wall time of each tool over N rounds and the
ratios against the targets (dockyard at most 2x the floor and at most 0.3x
docker), and writes them as a table to docs/benchmarks.md with --write.

Run as root: python bench/pull.py [--runs N] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import peers  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import Registry, start_registry  # noqa: E402

IMAGE_NAME = "library/bookworm-minbase"
DOCKYARD = REPO / ".venv" / "bin" / "dockyard"
DOCKER_CLIENT = Path("/usr/bin/docker")   # Debian's docker.io client, which matches its dockerd
DOCKERD = Path("/usr/sbin/dockerd")
FLOOR_TARGET = 2.0    # dockyard's time at most this multiple of the floor's
DOCKER_TARGET = 0.3   # and at most this multiple of docker's


def run(command: list[str], **options) -> subprocess.CompletedProcess:
    """Run ``command``; raise with its output if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **options)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result


# ---------------------------------------------------------------------------
# The image


def debian_mirror() -> str:
    """Return the first main Debian archive URI in the apt sources, for debootstrap."""
    sources = Path("/etc/apt")
    candidates = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in candidates:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if path.suffix == ".sources" and words[:1] == ["URIs:"]:
                uris = words[1:]
            elif words[:1] == ["deb"]:
                uris = [word for word in words[1:] if "://" in word][:1]
            else:
                continue
            for uri in uris:
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    raise RuntimeError("no Debian archive (a URI ending in /debian) found in /etc/apt/sources.list*")


def build_rootfs(target: Path) -> None:
    """Run debootstrap into ``target`` unless a finished root filesystem is already there."""
    done = target.parent / "rootfs.done"
    if done.exists():
        return
    if target.exists():
        shutil.rmtree(target)
    mirror = debian_mirror()
    print(f"debootstrap --variant=minbase bookworm {target} {mirror}", file=sys.stderr)
    run(["debootstrap", "--variant=minbase", "bookworm", str(target), mirror])
    done.touch()


# Removed before packing, as Debian's slim images do: package caches and lists,
# documentation, and /dev, which the runtime provides and images do not ship.
TRIMMED = ("var/cache/apt/archives", "var/cache/apt", "var/lib/apt/lists", "usr/share/doc",
           "usr/share/man", "usr/share/locale", "usr/share/info", "dev")


def trim_rootfs(rootfs: Path) -> None:
    """Empty the TRIMMED directories of ``rootfs``, keeping the directories themselves."""
    for relative in TRIMMED:
        directory = rootfs / relative
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                if relative == "var/cache/apt" and entry.name == "archives":
                    continue
                shutil.rmtree(entry)
            else:
                entry.unlink()


def pack_layout(rootfs: Path, layout_dir: Path) -> images.BuiltImage:
    """Pack ``rootfs`` as one gzip layer into an OCI layout, reusing an earlier one if present."""
    record = layout_dir / "built.json"
    if record.exists():
        return images.BuiltImage(**json.loads(record.read_text()))
    if layout_dir.exists():
        shutil.rmtree(layout_dir)
    trim_rootfs(rootfs)
    tar_path = layout_dir.parent / "layer.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(rootfs.iterdir()):
            archive.add(entry, arcname=entry.name)
    data = tar_path.read_bytes()
    tar_path.unlink()
    layer = images.LayerBlob(images.OCI_LAYER_GZIP, images.compress(data, images.OCI_LAYER_GZIP), images.digest_of(data))

    layout = images.Layout(layout_dir)
    architecture, variant = images.host_architecture()
    config = images.image_config(architecture, variant, [layer.diff_id], ["bash"], "debootstrap --variant=minbase bookworm")
    built, descriptor = images.write_image(layout, IMAGE_NAME, [layer], config)
    layout.tag(descriptor)
    record.write_text(json.dumps(built.__dict__))
    return built


# ---------------------------------------------------------------------------
# The three pullers


@dataclass
class Puller:
    name: str
    pull: Callable[[], None]
    remove: Callable[[], None]
    times: list[float] = field(default_factory=list)

    def timed_pull(self) -> float:
        start = time.perf_counter()
        self.pull()
        elapsed = time.perf_counter() - start
        self.times.append(elapsed)
        return elapsed


def floor_puller(reference: str, workdir: Path) -> Puller:
    """Return the floor: skopeo copy to an OCI layout, then ``gzip -dc | tar -x`` of each layer."""
    target = workdir / "floor"

    def pull() -> None:
        layout = target / "layout"
        run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{reference}", f"oci:{layout}:latest"])
        index = json.loads((layout / "index.json").read_text())
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest.removeprefix("sha256:")).read_text())
        rootfs = target / "rootfs"
        rootfs.mkdir()
        for layer in manifest["layers"]:
            blob = layout / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")
            run(["bash", "-c", 'set -o pipefail; gzip -dc "$1" | tar -x -C "$2"', "unpack", str(blob), str(rootfs)])

    def remove() -> None:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()

    return Puller("floor: skopeo copy, gzip -dc, tar -x", pull, remove)


def dockyard_puller(reference: str, workdir: Path) -> Puller:
    root = workdir / "dockyard-root"
    environment = dict(os.environ, DOCKYARD_ROOT=str(root), DOCKYARD_RUN_ROOT=str(workdir / "dockyard-run"))
    # An empty config file, so that /etc/dockyard/config.toml on this machine changes nothing.
    config = workdir / "dockyard-config.toml"
    config.write_text("")
    environment["DOCKYARD_CONFIG"] = str(config)

    def pull() -> None:
        run([str(DOCKYARD), "pull", reference], env=environment)

    def remove() -> None:
        shutil.rmtree(root, ignore_errors=True)

    return Puller("dockyard pull", pull, remove)


class Dockerd:
    """A private dockerd: own data root, exec root, socket and pid file; no bridge, no iptables."""

    def __init__(self, workdir: Path, registry_host: str) -> None:
        self.workdir = workdir
        self.socket = workdir / "docker.sock"
        config = workdir / "daemon.json"
        config.write_text("{}")
        command = [
            str(DOCKERD),
            "--config-file", str(config),
            "--data-root", str(workdir / "data"),
            "--exec-root", str(workdir / "exec"),
            "--pidfile", str(workdir / "dockerd.pid"),
            "--host", f"unix://{self.socket}",
            "--insecure-registry", registry_host,
            "--bridge", "none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--log-level", "error",
        ]
        self.log_path = workdir / "dockerd.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.environment = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}", DOCKER_CONFIG=str(workdir / "client"))
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            probe = subprocess.run(
                [str(DOCKER_CLIENT), "version", "--format", "{{.Server.Version}}"],
                env=self.environment, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dockerd did not start; its log:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def docker(self, *arguments: str) -> subprocess.CompletedProcess:
        return run([str(DOCKER_CLIENT), *arguments], env=self.environment)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def docker_puller(dockerd: Dockerd, reference: str) -> Puller:
    def pull() -> None:
        dockerd.docker("pull", "--quiet", reference)

    def remove() -> None:
        listed = dockerd.docker("images", "--quiet", reference).stdout.split()
        if listed:
            dockerd.docker("rmi", reference)

    return Puller("docker pull (dockerd 20.10)", pull, remove)


# ---------------------------------------------------------------------------
# Report


def versions(dockerd: Dockerd | None) -> dict[str, str]:
    found = {
        "python": platform.python_version(),
        "skopeo": run(["skopeo", "--version"]).stdout.strip(),
        "docker-registry": run(["docker-registry", "--version"]).stdout.strip(),
    }
    dockyard = subprocess.run([str(DOCKYARD), "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    found["dockyard"] = dockyard.stdout.strip() or "not installed"
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if commit.returncode == 0:
        found["dockyard"] += f", commit {commit.stdout.strip()}"
    if dockerd is not None:
        found["dockerd"] = dockerd.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    return found


def machine() -> str:
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return f"{os.cpu_count()} CPUs, {memory_kib / 1024 / 1024:.1f} GiB memory, Linux {platform.release()}"


def render(pullers: list[Puller], skipped: dict[str, str], details: dict[str, str], command: str) -> str:
    medians = {puller.name: statistics.median(puller.times) for puller in pullers if puller.times}
    floor = next((medians[name] for name in medians if name.startswith("floor")), None)
    docker = next((medians[name] for name in medians if name.startswith("docker")), None)

    lines = [
        "| tool | median (s) | runs (s) | vs floor | vs docker |",
        "| --- | --- | --- | --- | --- |",
    ]
    for puller in pullers:
        if not puller.times:
            continue
        median = medians[puller.name]
        runs = ", ".join(f"{elapsed:.2f}" for elapsed in puller.times)
        versus_floor = f"{median / floor:.2f}x" if floor else "-"
        versus_docker = f"{median / docker:.2f}x" if docker else "-"
        lines.append(f"| {puller.name} | {median:.2f} | {runs} | {versus_floor} | {versus_docker} |")
    for name, reason in skipped.items():
        lines.append(f"| {name} | not measured yet | {reason} | - | - |")

    dockyard = medians.get("dockyard pull")
    targets = f"Targets: dockyard at most {FLOOR_TARGET}x the floor and at most {DOCKER_TARGET}x docker."
    if dockyard is not None and floor and docker:
        met_floor = "met" if dockyard <= FLOOR_TARGET * floor else "missed"
        met_docker = "met" if dockyard <= DOCKER_TARGET * docker else "missed"
        targets += f" This run: {dockyard / floor:.2f}x the floor ({met_floor}), {dockyard / docker:.2f}x docker ({met_docker})."

    detail_lines = [f"- {key}: {value}" for key, value in details.items()]
    return "\n".join([*lines, "", targets, "", *detail_lines, f"- command: `{command}`", ""])


def write_doc(table: str, path: Path) -> None:
    """Replace the pull section of ``path`` (from its heading to the next ``## ``) with ``table``."""
    heading = "## Pull: Debian bookworm minbase from a local registry"
    intro = textwrap.fill(
        "Each round first removes every tool's previous copy, calls `sync` and waits 31 s "
        "(on ext4 without a journal, as here, files created within 30 s of a large deletion are "
        "slowed by it), then pulls the same image once with each tool. The image is `debootstrap --variant=minbase bookworm` without package "
        "caches, docs and locales, as one gzip layer, served by `docker-registry` on 127.0.0.1. "
        "The floor is `skopeo copy` to an OCI layout plus `gzip -dc | tar -x` of the layer. "
        "dockyard starts from an empty `DOCKYARD_ROOT` each round. docker is a private dockerd "
        "with its own data root that pulls straight from 127.0.0.1, and `docker rmi` runs between "
        "rounds. Times are wall-clock seconds with a warm page cache. Produced by `bench/pull.py`. "
        "[bench/README.md](../bench/README.md) describes the method.",
        width=78,
    )
    section = f"{heading}\n\n{intro}\n\n{table}"
    peers.write_doc_section(path, heading, section)


# ---------------------------------------------------------------------------
# Main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds per tool (default 5); the report gives the median")
    parser.add_argument("--settle", type=float, default=31.0,
                        help="seconds to wait between removing the previous copies and the round's pulls (default 31)")
    parser.add_argument("--cache", type=Path, default=Path("/var/tmp/dockyard-bench"),
                        help="directory that keeps the debootstrap root and the OCI layout between benchmark runs")
    parser.add_argument("--skip", action="append", default=[], choices=["floor", "dockyard", "docker"],
                        help="leave one tool out (repeatable)")
    parser.add_argument("--write", nargs="?", const=REPO / "docs" / "benchmarks.md", type=Path, default=None,
                        help="write the table into this markdown file (default docs/benchmarks.md)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: debootstrap, tar -x and dockerd need it")
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, not {args.runs}")
    required = {"debootstrap": "debootstrap", "skopeo": "skopeo", "docker-registry": "docker-registry"}
    if "docker" not in args.skip:
        required[str(DOCKERD)] = "docker.io"
    if "dockyard" not in args.skip:
        required[str(DOCKYARD)] = "dockyard (in .venv)"
    missing = [package for program, package in required.items() if shutil.which(program) is None]
    if missing:
        parser.error(f"missing {', '.join(missing)}: run bash scripts/setup.sh --bench, or leave a tool out with --skip")

    args.cache.mkdir(parents=True, exist_ok=True)
    build_rootfs(args.cache / "rootfs")
    built = pack_layout(args.cache / "rootfs", args.cache / "layout")

    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    registry: Registry | None = None
    dockerd: Dockerd | None = None
    skipped: dict[str, str] = {}
    try:
        registry = start_registry(workdir / "registry")
        reference = f"{registry.host}/{IMAGE_NAME}:latest"
        images.push_layout(args.cache / "layout", registry.host, IMAGE_NAME)

        pullers = []
        if "floor" not in args.skip:
            pullers.append(floor_puller(reference, workdir))
        if "dockyard" not in args.skip:
            pullers.append(dockyard_puller(reference, workdir))
        else:
            skipped["dockyard pull"] = "skipped with --skip dockyard"
        if "docker" not in args.skip:
            (workdir / "docker").mkdir()
            dockerd = Dockerd(workdir / "docker", registry.host)
            pullers.append(docker_puller(dockerd, reference))

        peers.compile_dockyard()
        for round_number in range(1, args.runs + 1):
            # Every tool's previous copy is removed before any pull of the round, and the
            # round waits args.settle seconds after that. On ext4 without a journal (this
            # machine's root), creating a file skips every inode freed in the last 30 s,
            # so a pull that follows a large deletion is slowed by it, whichever tool
            # deleted; the wait gives every tool the same clean start.
            for puller in pullers:
                puller.remove()
            os.sync()
            time.sleep(args.settle)
            for puller in pullers:
                elapsed = puller.timed_pull()
                print(f"round {round_number}: {puller.name}: {elapsed:.2f} s", file=sys.stderr)

        details = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            # Other work on the machine shows up here, and in the spread of the runs.
            "load average (1 min)": f"{load_before:.2f} before the rounds, {os.getloadavg()[0]:.2f} after",
            **versions(dockerd),
            "image": f"{reference}, manifest {built.digest}, layer {built.layer_digests[0]}",
            "layer size": f"{(args.cache / 'layout' / 'blobs' / 'sha256' / built.layer_digests[0].removeprefix('sha256:')).stat().st_size / 1e6:.1f} MB gzip",
        }
        command = "python bench/pull.py " + " ".join(sys.argv[1:])
        table = render(pullers, skipped, details, command.strip())
        print(table)
        if args.write:
            write_doc(table, args.write)
    finally:
        if dockerd is not None:
            dockerd.stop()
        if registry is not None:
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

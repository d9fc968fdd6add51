"""Benchmark `dockyard pull` against its floor and against `docker pull`.

The image is a Debian bookworm minbase root filesystem, made with debootstrap
from the machine's configured Debian mirror, packed as one gzip layer into an
OCI layout and pushed to a registry on 127.0.0.1. Each round pulls it once
with each tool, each into new directories, and deletes nothing until the end
(see the comment in main about deleted inodes):

- floor: `skopeo copy docker://... oci:DIR`, then `gzip -dc | tar -x` of each
  layer: the download and the unpack with no bookkeeping at all.
- dockyard: `dockyard --root NEW pull`, run by a warm CLI server, as docker
  pull is run by a running dockerd; and the same in the command's own process
  (`DOCKYARD_CLI_SERVER=0`). The warm one first pulls a small busybox image
  into the new root, untimed, as docker does.
- docker: `docker pull` (Debian's docker.io 20.10) against a private dockerd
  started here with its own data root, exec root and socket, no bridge and no
  iptables rules, a new one with a new data root each round, started and
  warmed with an untimed pull of the busybox image. dockerd pulls straight from 127.0.0.1 (an insecure registry), not
  through a docker.io mirror: a mirror that fails makes dockerd fall back to
  the public Docker Hub, and a benchmark must send no traffic off this
  machine.

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
    """A tool to time: ``prepare(n)`` gives it an empty destination for round n, untimed; ``pull`` is timed."""

    name: str
    prepare: Callable[[int], None]
    pull: Callable[[], None]
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

    def prepare(round_number: int) -> None:
        nonlocal target
        target = workdir / "floor" / f"round-{round_number}"
        target.mkdir(parents=True)

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

    return Puller("floor: skopeo copy, gzip -dc, tar -x", prepare, pull)


def dockyard_puller(reference: str, warm_reference: str, workdir: Path, server: bool) -> Puller:
    """Return ``dockyard pull``, run by a warm CLI server when ``server`` is true, in its own process otherwise.

    Each round pulls into a new root, given with ``--root`` so that the
    environment, which selects the CLI server, stays the same. With the
    server, an untimed pull of ``warm_reference`` into the new root comes
    first, as for docker.
    """
    kind = "server" if server else "no-server"
    environment = dict(os.environ, DOCKYARD_RUN_ROOT=str(workdir / f"dockyard-run-{kind}"),
                       DOCKYARD_CLI_SERVER="1" if server else "0")
    # An empty config file, so that /etc/dockyard/config.toml on this machine changes nothing.
    config = workdir / "dockyard-config.toml"
    config.write_text("")
    environment["DOCKYARD_CONFIG"] = str(config)
    root = workdir / f"dockyard-{kind}"

    def prepare(round_number: int) -> None:
        nonlocal root
        root = workdir / f"dockyard-{kind}" / f"round-{round_number}"
        if server:
            # Untimed: starts the CLI server if it is not running, as dockerd runs before docker pull.
            run([str(DOCKYARD), "--root", str(root), "pull", "--quiet", warm_reference], env=environment)

    def pull() -> None:
        run([str(DOCKYARD), "--root", str(root), "pull", reference], env=environment)

    name = "dockyard pull" if server else "dockyard pull, no CLI server (DOCKYARD_CLI_SERVER=0)"
    return Puller(name, prepare, pull)


def docker_puller(reference: str, warm_reference: str, workdir: Path, registry_host: str,
                  started: list[peers.Dockerd]) -> Puller:
    """Return ``docker pull`` against a private dockerd, a new one with a new data root each round.

    Before the timed pull, the new dockerd pulls ``warm_reference``, an image
    that shares no layer with the timed one, so that its first pull is not
    timed. The dockerds are appended to ``started``, so that the caller stops
    every one of them.
    """

    def prepare(round_number: int) -> None:
        if started:
            started[-1].stop()
        started.append(peers.Dockerd(workdir / "docker" / f"round-{round_number}", "none",
                                     ("--insecure-registry", registry_host)))
        started[-1].docker("pull", "--quiet", warm_reference)

    def pull() -> None:
        started[-1].docker("pull", "--quiet", reference)

    return Puller("docker pull (dockerd 20.10)", prepare, pull)


# ---------------------------------------------------------------------------
# Report


def versions(dockerd: peers.Dockerd | None) -> dict[str, str]:
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

    targets = f"Targets: dockyard at most {FLOOR_TARGET}x the floor and at most {DOCKER_TARGET}x docker."
    for name, median in medians.items():
        if not name.startswith("dockyard") or not (floor and docker):
            continue
        met_floor = "met" if median <= FLOOR_TARGET * floor else "missed"
        met_docker = "met" if median <= DOCKER_TARGET * docker else "missed"
        targets += (f" {name}: {median / floor:.2f}x the floor ({met_floor}), "
                    f"{median / docker:.2f}x docker ({met_docker}).")

    detail_lines = [f"- {key}: {value}" for key, value in details.items()]
    return "\n".join([*lines, "", targets, "", *detail_lines, f"- command: `{command}`", ""])


def write_doc(table: str, path: Path) -> None:
    """Replace the pull section of ``path`` (from its heading to the next ``## ``) with ``table``."""
    heading = "## Pull: Debian bookworm minbase from a local registry"
    intro = textwrap.fill(
        "Each round pulls the same image once with each tool, in an order that rotates, each "
        "into new directories, after `sync`. Nothing is deleted until the last round. On ext4 "
        "without a journal, as here, a file created within 60 s of a large deletion is several "
        "times slower to create, whichever tool deleted (360 s while the inode table is not yet "
        "written back). The image is `debootstrap --variant=minbase bookworm` without "
        "package caches, docs and locales, as one gzip layer, served by `docker-registry` on "
        "127.0.0.1. The floor is `skopeo copy` to an OCI layout plus `gzip -dc | tar -x` of the "
        "layer. dockyard pulls into a new `--root` each round, once through its CLI server and "
        "once in its own process (`DOCKYARD_CLI_SERVER=0`). docker is a private dockerd with a "
        "new data root each round that pulls straight from 127.0.0.1. Before its timed pull, "
        "each round's dockerd and the CLI server pull a small busybox image into their new "
        "store, untimed, so neither times its first pull. Times are wall-clock "
        "seconds with a warm page cache. Produced by `bench/pull.py`. "
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
        required[str(peers.DOCKERD)] = "docker.io"
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
    dockerds: list[peers.Dockerd] = []
    skipped: dict[str, str] = {}
    try:
        registry = start_registry(workdir / "registry")
        reference = f"{registry.host}/{IMAGE_NAME}:latest"
        images.push_layout(args.cache / "layout", registry.host, IMAGE_NAME)
        # A small image that each warm tool pulls untimed into its new store first.
        images.build_busybox(workdir / "busybox-layout", images.LayerCache())
        images.push_layout(workdir / "busybox-layout", registry.host, "library/busybox")
        warm_reference = f"{registry.host}/library/busybox:latest"

        pullers = []
        if "floor" not in args.skip:
            pullers.append(floor_puller(reference, workdir))
        if "dockyard" not in args.skip:
            pullers.append(dockyard_puller(reference, warm_reference, workdir, server=True))
            pullers.append(dockyard_puller(reference, warm_reference, workdir, server=False))
        else:
            skipped["dockyard pull"] = "skipped with --skip dockyard"
        if "docker" not in args.skip:
            pullers.append(docker_puller(reference, warm_reference, workdir, registry.host, dockerds))

        peers.compile_dockyard()
        for round_number in range(1, args.runs + 1):
            # Nothing is deleted until every round is done, and each round pulls into new
            # directories. On ext4 without a journal (this machine's root), creating a file
            # skips every inode freed in the last 60 s, or 360 s while its inode table block
            # is dirty. The kernel checks those inodes again for each new file, so a pull
            # that follows a large deletion is several times slower, whichever tool deleted.
            for puller in pullers:
                puller.prepare(round_number)
            # The order rotates, so that no tool always comes first or last in a round.
            shift = (round_number - 1) % len(pullers)
            for puller in pullers[shift:] + pullers[:shift]:
                # The previous pull's writeback must not land inside this one.
                os.sync()
                elapsed = puller.timed_pull()
                print(f"round {round_number}: {puller.name}: {elapsed:.2f} s", file=sys.stderr)

        details = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            # Other work on the machine shows up here, and in the spread of the runs.
            "load average (1 min)": f"{load_before:.2f} before the rounds, {os.getloadavg()[0]:.2f} after",
            **versions(dockerds[-1] if dockerds else None),
            "image": f"{reference}, manifest {built.digest}, layer {built.layer_digests[0]}",
            "layer size": f"{(args.cache / 'layout' / 'blobs' / 'sha256' / built.layer_digests[0].removeprefix('sha256:')).stat().st_size / 1e6:.1f} MB gzip",
        }
        command = "python bench/pull.py " + " ".join(sys.argv[1:])
        table = render(pullers, skipped, details, command.strip())
        print(table)
        if args.write:
            write_doc(table, args.write)
    finally:
        for dockerd in dockerds:
            dockerd.stop()
        if registry is not None:
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

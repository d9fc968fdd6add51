"""The engines that bench/run.py compares dockyard with, each set up privately.

- ``Dockerd``: Debian's docker.io dockerd 20.10 with its own data root, exec
  root, pid file and unix socket, and no iptables rules, stopped by its PID.
- ``Podman``: podman 4.3 with crun, its storage, run root, temporary files and
  network configuration under one directory, through a private containers.conf
  and storage.conf.
- ``make_crun_bundle``: an OCI bundle for bare ``crun run``, the floor.

And the host changes they need, each undone on exit:

- ``hugetlb_v1``: crun 1.8 rejects a hybrid cgroup host while any controller is
  bound to the cgroup2 mount only. On this kind of host that is hugetlb, so it
  is mounted as a v1 hierarchy for the benchmark, in a private mount
  namespace so that other software on the host does not use it.
- ``new_cgroups_removed``: removes the parent cgroups that docker and podman
  leave in every hierarchy.
- ``host_bridge``: a bridge for dockerd's default network, so that the
  container gets a veth as it would by default, in an address range chosen
  here and without NAT.
- ``forward_guard``: drops forwarded traffic leaving through the uplink, puts
  back ``ip_forward`` (netavark switches it on) and removes the iptables
  chains that netavark leaves behind, and the empty nftables tables that
  iptables-nft leaves.

Nothing here sends traffic off the machine: images are loaded from files,
dockerd runs with ``--iptables=false --ip-forward=false``, and podman's bridge
network is behind the forward guard.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DOCKER_CLIENT = Path("/usr/bin/docker")   # Debian's docker.io client, the same version as its dockerd
DOCKERD = Path("/usr/sbin/dockerd")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def run(command: list[str], **options) -> subprocess.CompletedProcess:
    """Run ``command``; raise with the end of its stderr if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **options)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result


def compile_dockyard() -> None:
    """Compile dockyard's modules to bytecode, as ``pip install`` does.

    An editable install has no bytecode until a run writes it, and
    PYTHONDONTWRITEBYTECODE stops that, so without this every timed command
    could pay for compiling the modules it imports.
    """
    run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parent.parent / "src" / "dockyard")])


def unmount_below(directory: Path) -> list[str]:
    """Unmount every mount point at or below ``directory``, deepest first; return them."""
    prefix = str(directory.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with spaces and backslashes octal-escaped.
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, stdin=subprocess.DEVNULL)
    return points


# ---------------------------------------------------------------------------
# dockerd


class Dockerd:
    """A private dockerd: own data root, exec root, socket and pid file; no iptables rules.

    ``bridge`` names an existing bridge for the default network, or is
    ``"none"`` for no default network. ``options`` are more dockerd flags.
    """

    def __init__(self, workdir: Path, bridge: str, options: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / "docker.sock"
        self.exec_root = workdir / "exec"
        config = workdir / "daemon.json"
        config.write_text("{}")
        command = [
            str(DOCKERD),
            "--config-file", str(config),
            "--data-root", str(workdir / "data"),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(workdir / "dockerd.pid"),
            "--host", f"unix://{self.socket}",
            "--bridge", bridge,
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--log-level", "error",
            *options,
        ]
        self.log_path = workdir / "dockerd.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.client_config = workdir / "client"
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            probe = subprocess.run(self.command("version", "--format", "{{.Server.Version}}"),
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dockerd did not start; its log:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def command(self, *arguments: str) -> list[str]:
        # Flags rather than DOCKER_HOST and DOCKER_CONFIG: the benchmark runs every
        # engine's commands in one environment, and podman 4.3 reads DOCKER_CONFIG
        # for credentials and fails when that directory has no config.json.
        return [str(DOCKER_CLIENT), "--host", f"unix://{self.socket}", "--config", str(self.client_config), *arguments]

    def docker(self, *arguments: str) -> subprocess.CompletedProcess:
        return run(self.command(*arguments))

    def load(self, archive: Path) -> None:
        self.docker("load", "--quiet", "--input", str(archive))

    def remove_all_containers(self) -> None:
        identifiers = self.docker("ps", "--all", "--quiet").stdout.split()
        if identifiers:
            self.docker("rm", "--force", *identifiers)

    def stop(self) -> None:
        """Stop dockerd by its PID and wait for it; dockerd stops the containerd it started."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def host_bridge(name: str, address: str) -> Iterator[str]:
    """Create the bridge ``name`` with ``address`` (CIDR) for the duration; yield its name.

    The address range must not overlap any address already on the host, so
    that the bridge cannot shadow a real route.
    """
    network = ipaddress.ip_interface(address).network
    listed = json.loads(run(["ip", "-json", "-4", "address", "show"]).stdout)
    for link in listed:
        for entry in link.get("addr_info", []):
            existing = ipaddress.ip_interface(f"{entry['local']}/{entry['prefixlen']}").network
            if existing.overlaps(network):
                raise RuntimeError(f"bridge range {network} overlaps {existing} on {link['ifname']}: "
                                   "choose a free range for the bridge")
    run(["ip", "link", "add", name, "type", "bridge"])
    try:
        run(["ip", "address", "add", address, "dev", name])
        run(["ip", "link", "set", name, "up"])
        yield name
    finally:
        subprocess.run(["ip", "link", "delete", name], capture_output=True, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------
# podman


class Podman:
    """podman with crun and every path of its own under ``workdir``.

    The private containers.conf keeps the default ulimits within the hard
    limits, because podman's defaults ask for more than the hard
    ``RLIMIT_NOFILE`` and raising it fails with EPERM without
    CAP_SYS_RESOURCE. It also sets the cgroupfs manager and the file events
    backend, for hosts without systemd and journald.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.run_root = workdir / "runroot"
        for directory in ("net", "tmp", "volumes"):
            (workdir / directory).mkdir(parents=True, exist_ok=True)

        nofile_hard = int(run(["bash", "-c", "ulimit -Hn"]).stdout)
        nproc_hard = run(["bash", "-c", "ulimit -Hu"]).stdout.strip()
        nproc = 32768 if nproc_hard == "unlimited" else min(32768, int(nproc_hard))
        conf = workdir / "containers.conf"
        conf.write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={min(1024, nofile_hard)}:{nofile_hard}", "nproc={nproc}:{nproc}"]\n'
            'log_driver = "k8s-file"\n'
            "\n[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{workdir / "events.log"}"\n'
            'runtime = "crun"\n'
            f'tmp_dir = "{workdir / "tmp"}"\n'
            f'volume_path = "{workdir / "volumes"}"\n'
            "\n[network]\n"
            'network_backend = "netavark"\n'
            f'network_config_dir = "{workdir / "net"}"\n'
        )

        storage = workdir / "storage.conf"
        storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root}"\nrunroot = "{self.run_root}"\n')
        registries = workdir / "registries.conf"
        registries.write_text("unqualified-search-registries = []\n")
        self.environment = {
            "CONTAINERS_CONF": str(conf),
            "CONTAINERS_STORAGE_CONF": str(storage),
            "CONTAINERS_REGISTRIES_CONF": str(registries),
        }

    def command(self, *arguments: str) -> list[str]:
        return ["podman", "--root", str(self.root), "--runroot", str(self.run_root), "--runtime", "crun", *arguments]

    def podman(self, *arguments: str) -> subprocess.CompletedProcess:
        return run(self.command(*arguments), env=dict(os.environ, **self.environment))

    def load(self, layout: Path, name: str) -> None:
        """Copy the OCI layout ``layout`` (tag latest) into this podman's storage as ``name``."""
        destination = f"containers-storage:[overlay@{self.root}+{self.run_root}]{name}"
        run(["skopeo", "copy", "--quiet", f"oci:{layout}:latest", destination], env=dict(os.environ, **self.environment))

    def remove_all_containers(self) -> None:
        self.podman("rm", "--all", "--force", "--time", "0")

    def reset(self) -> None:
        """Remove every container, image and network config of this podman, then its files."""
        with contextlib.suppress(RuntimeError):
            self.remove_all_containers()
        with contextlib.suppress(RuntimeError):
            self.podman("system", "reset", "--force")
        unmount_below(self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# crun


def make_crun_bundle(bundle: Path, layer: Path) -> Path:
    """Write an OCI bundle in ``bundle`` that runs ``true`` in the gzip layer ``layer``.

    config.json is ``crun spec``'s default (new PID, network, IPC, UTS and mount
    namespaces, no seccomp filter, no cgroup limits) with ``args`` set to
    ``true`` and no terminal.
    """
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    with tarfile.open(layer, "r:gz") as archive:
        archive.extractall(rootfs, filter="fully_trusted")
    run(["crun", "spec"], cwd=bundle)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["args"] = ["true"]
    config["process"]["terminal"] = False
    config_path.write_text(json.dumps(config, indent=2))
    return bundle


# ---------------------------------------------------------------------------
# Host changes


def _is_mount_point(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _hierarchy_id(controller: str) -> int:
    """Return the hierarchy ID of ``controller`` from /proc/cgroups; 0 means it is on cgroup2."""
    for line in Path("/proc/cgroups").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == controller:
            return int(fields[1])
    raise RuntimeError(f"controller {controller} not listed in /proc/cgroups")


def _remove_empty_cgroups(top: Path) -> list[Path]:
    """Remove the cgroups below ``top`` that have no processes, deepest first; return those left."""
    children = sorted((path for path in top.rglob("*") if path.is_dir()), key=lambda path: len(path.parts),
                      reverse=True)
    for child in children:
        with contextlib.suppress(OSError):   # EBUSY: it still has processes or children
            child.rmdir()
    return [child for child in children if child.exists()]


def in_private_mount_namespace() -> bool:
    """Return whether this process has a mount namespace other than PID 1's.

    Where PID 1's namespace links cannot be read (a sandboxed PID 1 denies
    it even to root), the parent process is compared instead. The scripts
    here exec into ``unshare --mount`` without forking, so their parent is
    the shell that started them, in the host's namespace.
    """
    try:
        reference = os.readlink("/proc/1/ns/mnt")
    except PermissionError:
        reference = os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    return os.readlink("/proc/self/ns/mnt") != reference


@contextlib.contextmanager
def hugetlb_v1(stage: Path, release_timeout: float = 60.0) -> Iterator[bool]:
    """Mount the hugetlb controller as a cgroup v1 hierarchy, visible in this mount namespace only.

    The caller must run in a private mount namespace (``unshare --mount
    --propagation private``). A new tmpfs at ``stage`` gets a bind mount of
    every hierarchy under /sys/fs/cgroup plus a hugetlb v1 mount, and is then
    moved over /sys/fs/cgroup. Other namespaces keep their view, so runtimes
    outside this process tree create no cgroups in the hugetlb hierarchy. The
    controller itself leaves cgroup2 for the whole host until exit, because
    the kernel binds each controller to one hierarchy.

    Yields False, and changes nothing, when hugetlb is a v1 hierarchy already.
    On exit this waits up to ``release_timeout`` seconds for the cgroups below
    the hugetlb mount to empty, then unmounts the tree. A v1 hierarchy that is
    unmounted while it still has child cgroups, even ones being freed, stays
    alive in the kernel. So the last step checks in /proc/cgroups that
    hugetlb is back on cgroup2.
    """
    if _hierarchy_id("hugetlb") != 0:
        yield False
        return
    if not in_private_mount_namespace():
        raise RuntimeError("hugetlb_v1 must run in a private mount namespace: start with unshare --mount")
    stage.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", "mode=755", "cgroup-stage", str(stage)])
    try:
        for hierarchy in sorted(CGROUP_ROOT.iterdir()):
            if hierarchy.is_dir() and _is_mount_point(hierarchy):
                (stage / hierarchy.name).mkdir()
                run(["mount", "--bind", str(hierarchy), str(stage / hierarchy.name)])
        (stage / "hugetlb").mkdir()
        run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(stage / "hugetlb")])
        run(["mount", "--move", str(stage), str(CGROUP_ROOT)])
    except BaseException:
        run(["umount", "--recursive", "--lazy", str(stage)])
        raise
    try:
        yield True
    finally:
        _release_hugetlb(CGROUP_ROOT / "hugetlb", release_timeout)


def _release_hugetlb(mount_point: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while left := _remove_empty_cgroups(mount_point):
        if time.monotonic() > deadline:
            raise RuntimeError(f"cgroups still in use below {mount_point}: {', '.join(map(str, left))}; "
                               f"hugetlb stays a v1 hierarchy until they are gone and {CGROUP_ROOT} is unmounted")
        time.sleep(1.0)
    # The staged tree: the hugetlb mount, the bind mounts below it, and the tmpfs itself.
    run(["umount", "--recursive", str(CGROUP_ROOT)])
    deadline = time.monotonic() + timeout
    while _hierarchy_id("hugetlb") != 0:
        if time.monotonic() > deadline:
            # The measurements are complete by now, so this only warns: the
            # kernel frees the hierarchy once its last removed cgroup is freed.
            logging.getLogger("bench.peers").warning(
                "hugetlb did not return to cgroup2 within %.0f s of unmounting its v1 hierarchy; if it stays, "
                "mount it (-t cgroup -o hugetlb) and unmount it again later", timeout)
            return
        time.sleep(2.0)
        # The hierarchy outlived the unmount because a removed cgroup was still
        # being freed. Mounting it again reattaches it, and an unmount without
        # children then frees it. The mount is in this process's private mount
        # namespace, so nothing else on the host sees it.
        with tempfile.TemporaryDirectory(prefix="hugetlb-") as directory:
            run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", directory])
            _remove_empty_cgroups(Path(directory))
            run(["umount", directory])


@contextlib.contextmanager
def new_cgroups_removed(timeout: float = 15.0) -> Iterator[None]:
    """Remove, on exit, the empty top-level cgroups (and their empty children) created meanwhile.

    docker and podman leave their parent cgroups (``docker``, ``libpod_parent``)
    in every hierarchy after their last container is gone.
    """
    hierarchies = [path for path in CGROUP_ROOT.iterdir() if path.is_dir() and path.name != "hugetlb"]
    before = {hierarchy: {child.name for child in hierarchy.iterdir() if child.is_dir()} for hierarchy in hierarchies}
    try:
        yield
    finally:
        # The last conmon and shim processes exit a moment after their engine's
        # command returns, so a cgroup that is still busy gets a few more tries.
        deadline = time.monotonic() + timeout
        while True:
            left = []
            for hierarchy in hierarchies:
                for child in hierarchy.iterdir():
                    if child.is_dir() and child.name not in before[hierarchy]:
                        left += _remove_empty_cgroups(child)
                        with contextlib.suppress(OSError):
                            child.rmdir()
                        if child.exists():
                            left.append(child)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)


def uplink() -> str:
    """Return the interface of the IPv4 default route."""
    routes = json.loads(run(["ip", "-json", "-4", "route", "show", "default"]).stdout)
    if not routes:
        raise RuntimeError("no IPv4 default route: cannot tell which interface to guard")
    return routes[0]["dev"]


def _iptables_chains(tool: str, table: str) -> set[str]:
    listing = run([tool, "-t", table, "-S"]).stdout.splitlines()
    return {line.split()[1] for line in listing if line.startswith("-N ")}


GUARDED_TABLES = ("filter", "nat", "mangle")


@contextlib.contextmanager
def forward_guard() -> Iterator[str]:
    """Drop forwarded traffic that would leave through the uplink while the block runs.

    netavark (podman's bridge network) switches on ``net.ipv4.ip_forward`` and
    adds NAT rules. This inserts a DROP rule in the mangle FORWARD chain for
    the uplink, for IPv4 and IPv6, and on exit deletes it, puts back the
    forwarding switches as they were, and removes the NETAVARK chains that
    did not exist before. Yields the uplink's name.
    """
    interface = uplink()
    forwarding = {
        path: path.read_text()
        for path in (Path("/proc/sys/net/ipv4/ip_forward"), Path("/proc/sys/net/ipv6/conf/all/forwarding"))
    }
    chains_before = {table: _iptables_chains("iptables", table) for table in GUARDED_TABLES}
    nft_tables_before = _nft_tables()
    rule = ["-t", "mangle", "-I", "FORWARD", "-o", interface, "-j", "DROP"]
    run(["iptables", *rule])
    run(["ip6tables", *rule])
    try:
        yield interface
    finally:
        for path, value in forwarding.items():
            path.write_text(value)
        for table in GUARDED_TABLES:
            _remove_new_chains(table, chains_before[table])
        delete = ["-t", "mangle", "-D", "FORWARD", "-o", interface, "-j", "DROP"]
        run(["iptables", *delete])
        run(["ip6tables", *delete])
        _remove_new_empty_nft_tables(nft_tables_before)


def _nft_tables() -> set[str]:
    """Return the nftables tables, as "FAMILY NAME"."""
    listing = run(["nft", "list", "tables"]).stdout.splitlines()
    return {line.removeprefix("table ").strip() for line in listing if line.startswith("table ")}


def _remove_new_empty_nft_tables(before: set[str]) -> None:
    """Delete the tables created since ``before`` that contain no rules.

    iptables-nft creates a table (``ip mangle``, ``ip6 mangle``, ``ip nat``...)
    with its base chains on first use, and leaves it when its last rule goes.
    """
    for table in _nft_tables() - before:
        listing = run(["nft", "list", "table", *table.split()]).stdout
        body = [line.strip() for line in listing.splitlines()]
        # An empty table lists only its header, its chains, their "type ..." lines and braces.
        if all(line == "" or line == "}" or line.startswith(("table ", "chain ", "type ")) for line in body):
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True, stdin=subprocess.DEVNULL)


def _remove_new_chains(table: str, before: set[str]) -> None:
    """Remove the NETAVARK chains of ``table`` not in ``before``, and the rules that jump to them."""
    new = {chain for chain in _iptables_chains("iptables", table) - before if chain.startswith("NETAVARK")}
    if not new:
        return
    for line in run(["iptables", "-t", table, "-S"]).stdout.splitlines():
        # -S prints each rule in iptables' own syntax, with shell quoting, so -D accepts it back.
        words = shlex.split(line)
        if words[0] == "-A" and "-j" in words and words[words.index("-j") + 1] in new and words[1] not in new:
            subprocess.run(["iptables", "-t", table, "-D", *words[1:]], capture_output=True, stdin=subprocess.DEVNULL)
    for chain in new:
        subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True, stdin=subprocess.DEVNULL)
    for chain in new:
        subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True, stdin=subprocess.DEVNULL)


def write_doc_section(path: Path, heading: str, section: str) -> None:
    """Put ``section``, which starts with ``heading``, in place of that heading's section of ``path``.

    A section runs to the next ``## `` heading. Without one, the section is
    appended, and a missing file is created with the document's title.
    """
    text = path.read_text() if path.exists() else (
        "# Benchmarks\n\nMeasured numbers only; each section names the script that produced it.\n\n")
    if heading in text:
        before, rest = text.split(heading, 1)
        after = rest[rest.find("\n## ") + 1 :] if "\n## " in rest else ""
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def doc_intro(paragraphs: list[str], bullets: list[str]) -> str:
    """Wrap a section's opening paragraphs and bullet list to 78 columns."""
    text = "\n\n".join(textwrap.fill(paragraph, width=78, break_on_hyphens=False) for paragraph in paragraphs)
    return text + "\n\n" + "\n".join(
        textwrap.fill(bullet, width=78, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False)
        for bullet in bullets
    )

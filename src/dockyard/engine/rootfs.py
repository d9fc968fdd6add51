"""A container's files: its writable layer, the overlay root, and /etc/hosts, hostname, resolv.conf.

Paths of container ``<id>``:

- ``<root>/containers/<id>/``: kept across reboots. ``diff/`` is the upper
  (writable) directory of the overlay, ``work/`` its work directory, and
  ``hosts``, ``hostname``, ``resolv.conf`` and ``<id>-json.log`` (with its
  rotated files) sit beside them.
- ``<run root>/containers/<id>/``: the OCI bundle, gone at reboot.
  ``config.json``, the ``rootfs/`` mount point, ``monitor.json`` (what the
  monitor needs to start the container) and the console socket.

The overlay is mounted in the host's mount namespace when the container
starts and unmounted when it exits. To the runtime it is an ordinary
directory. This module is imported by the monitor, so it stays small.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dockyard.errors import RuntimeFailure

log = logging.getLogger(__name__)

# The mount data of an overlay must fit in one page (4096 bytes on x86-64);
# longer lowerdir lists fail with EINVAL.
MAX_MOUNT_DATA = 4095


def container_dir(root: Path, container_id: str) -> Path:
    return Path(root) / "containers" / container_id


def bundle_dir(run_root: Path, container_id: str) -> Path:
    return Path(run_root) / "containers" / container_id


def log_path(root: Path, container_id: str) -> Path:
    return container_dir(root, container_id) / f"{container_id}-json.log"


def prepare(root: Path, run_root: Path, container_id: str) -> None:
    """Create the container's upper, work and bundle directories."""
    directory = container_dir(root, container_id)
    for path in (directory / "diff", directory / "work", bundle_dir(run_root, container_id) / "rootfs"):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The upper directory becomes the container's "/" and must be searchable by every user.
    (directory / "diff").chmod(0o755)
    (directory / "empty").mkdir(exist_ok=True, mode=0o755)


def is_mounted(target: Path) -> bool:
    """Tell whether the overlay root is mounted at ``target``.

    An overlay mount has a device number of its own, so comparing it with the
    parent's (``os.path.ismount``) is enough, and cheaper than reading
    /proc/self/mountinfo, which is long on a busy host.
    """
    return os.path.ismount(target)


def mount(root: Path, run_root: Path, container_id: str, lowers: list[str]) -> Path:
    """Mount the overlay of the image's snapshots (topmost first) and the upper directory; return the target."""
    from dockyard.runtime import libc

    directory = container_dir(root, container_id)
    target = bundle_dir(run_root, container_id) / "rootfs"
    target.mkdir(parents=True, exist_ok=True)
    if is_mounted(target):
        return target
    # An image without layers still needs a lower directory.
    lower = ":".join(lowers) if lowers else str(directory / "empty")
    data = f"lowerdir={lower},upperdir={directory / 'diff'},workdir={directory / 'work'}"
    if len(data) > MAX_MOUNT_DATA:
        raise RuntimeFailure(
            f"container {container_id}: overlay mount options are {len(data)} bytes, more than the kernel's "
            f"{MAX_MOUNT_DATA}; the image has too many layers ({len(lowers)}) for its root path {root}"
        )
    log.debug("mounting overlay at %s: %s", target, data)
    try:
        libc.mount("overlay", str(target), "overlay", 0, data)
    except OSError as error:
        raise RuntimeFailure(f"container {container_id}: mounting the overlay root at {target} failed: {error}") from None
    return target


def unmount(run_root: Path, container_id: str) -> None:
    """Unmount the container's overlay root, if mounted."""
    from dockyard.runtime import libc

    target = bundle_dir(run_root, container_id) / "rootfs"
    if not target.exists() or not is_mounted(target):
        return
    log.debug("unmounting %s", target)
    try:
        libc.umount2(str(target), 0)
    except OSError:
        # Busy (a process still has a file open there): detach it, and the
        # kernel frees it once unused.
        libc.umount2(str(target), libc.MNT_DETACH)


def copy_up(rootfs_path: Path, source: str, target: Path) -> None:
    """Fill an empty volume directory with the image's content at ``source``, keeping owners and modes.

    Nothing is copied when the volume has content already, or when the path
    is not a directory in the container's root.
    """
    target = Path(target)
    if any(target.iterdir()):
        return
    from dockyard.runtime.mounts import resolve_in_root

    origin = resolve_in_root(Path(rootfs_path), source)
    if not origin.is_dir() or origin.is_symlink():
        return
    log.debug("copying %s of the image into the volume %s", source, target)
    import shutil

    shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True, copy_function=shutil.copy2)
    for directory, names, files in os.walk(origin):
        relative = os.path.relpath(directory, origin)
        for name in [".", *names, *files]:
            path = os.path.normpath(os.path.join(directory, name))
            info = os.lstat(path)
            os.lchown(os.path.normpath(os.path.join(target, relative, name)), info.st_uid, info.st_gid)
    info = os.stat(origin)
    os.chmod(target, info.st_mode & 0o7777)


def write_etc_files(root: Path, container_id: str, hostname: str, host_network: bool) -> dict[str, Path]:
    """Write the container's /etc/hostname, /etc/hosts and /etc/resolv.conf; return their host paths."""
    directory = container_dir(root, container_id)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in ("hostname", "hosts", "resolv.conf")}
    paths["hostname"].write_text(hostname + "\n")
    if host_network:
        hosts = _read_host_file("/etc/hosts", "127.0.0.1\tlocalhost\n")
    else:
        hosts = (
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\n"
            "ff00::0\tip6-mcastprefix\n"
            "ff02::1\tip6-allnodes\n"
            "ff02::2\tip6-allrouters\n"
        )
    paths["hosts"].write_text(hosts)
    paths["resolv.conf"].write_text(_resolv_conf(host_network))
    return paths


def _read_host_file(path: str, fallback: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return fallback


# The file in which systemd-resolved lists the upstream servers it forwards to, while
# /etc/resolv.conf names only its own stub listener on 127.0.0.53.
SYSTEMD_RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"


def _resolv_conf(host_network: bool) -> str:
    if host_network:
        return _read_host_file("/etc/resolv.conf", "")
    return container_resolv_text()


def container_resolv_text() -> str:
    """Return the host's resolv.conf as a container with its own network namespace can use it."""
    return container_resolv_conf(_read_host_file("/etc/resolv.conf", ""), _read_host_file(SYSTEMD_RESOLVED_UPSTREAM, ""))


def container_resolv_conf(host_text: str, upstream_text: str) -> str:
    """Return the resolv.conf for a container with its own network namespace.

    A name server on 127.0.0.0/8 or ::1 is a resolver on the host's loopback,
    which the container cannot reach, so it is dropped. When that leaves no name
    server, the upstream servers of systemd-resolved (``upstream_text``) take
    its place, as Docker does. Search and options lines are kept.
    """
    lines = [
        line for line in host_text.splitlines()
        if not (_is_nameserver(line) and _is_loopback_server(line.split()[1:2]))
    ]
    if not any(_is_nameserver(line) for line in lines):
        upstream = [
            line for line in upstream_text.splitlines()
            if _is_nameserver(line) and not _is_loopback_server(line.split()[1:2])
        ]
        lines = upstream + [line for line in lines if not _is_nameserver(line)]
    return "\n".join(lines) + "\n" if lines else ""


def _is_nameserver(line: str) -> bool:
    return line.split()[:1] == ["nameserver"]


def _is_loopback_server(fields: list[str]) -> bool:
    if not fields:
        return False
    address = fields[0]
    return address.startswith("127.") or address == "::1"


def hostname() -> str:
    import socket

    return socket.gethostname()


def remove_files(root: Path, run_root: Path, container_id: str) -> None:
    """Delete everything of the container on disk: bundle, upper directory, log, etc files."""
    unmount(run_root, container_id)
    for directory in (bundle_dir(run_root, container_id), container_dir(root, container_id)):
        if directory.exists():
            log.debug("removing %s", directory)
            import shutil

            shutil.rmtree(directory, onerror=_raise_remove_error)

    from dockyard.engine.execs import remove_exec_records

    remove_exec_records(run_root, container_id)


def _raise_remove_error(function: object, path: str, info: tuple) -> None:
    error = info[1]
    raise RuntimeFailure(f"removing {path} failed: {error}")


def directory_size(path: Path) -> int:
    """Sum the sizes of the regular files below ``path``, each hardlinked file once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if key not in seen:
                seen.add(key)
                total += info.st_size
    return total

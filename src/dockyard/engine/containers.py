"""The container service: create, start, stop, inspect and remove containers.

The CLI and the API describe a container with the body of the Engine API's
``POST /containers/create``. ``create`` merges it with the image's config
(``ocispec.merge_config``), resolves the user in the image's /etc/passwd,
creates the volumes it names, records the container in state.db and writes
its OCI bundle. Everything that must outlive the calling command (starting
the runtime, holding the output pipes, writing the log, reaping, restarting)
is done by the shared monitor (``engine/monitor.py``), which this service
starts on demand and talks to over its control socket.

Container states are Docker's: ``created``, ``running``, ``paused``,
``restarting``, ``exited``, ``dead``. The monitor writes ``running``,
``restarting`` and ``exited``; this service writes the rest. Before it reads
state, the service checks that the monitor of every running container is
alive (``_check_monitors``): a container whose monitor died is adopted by a
new monitor if its process still runs, and marked exited with an error
otherwise.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import signal as signals
import threading
import time
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from dockyard.engine import monitor, ocispec, rootfs
from dockyard.engine.logs import LogEntry, format_time, log_options, parse_time
from dockyard.errors import Conflict, ContainerError, ContainerNotFound, DockyardError, InvalidArgument, NotFound
from dockyard.humanize import human_duration

if TYPE_CHECKING:
    import socket

    from dockyard.config import Config
    from dockyard.engine.images import ImageService
    from dockyard.engine.state import State
    from dockyard.engine.volumes import VolumeService
    from dockyard.network.service import NetworkService

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
DEFAULT_STOP_TIMEOUT = 10
# Docker's zero time, shown for a container that never started or finished.
ZERO_TIME = "0001-01-01T00:00:00Z"
ACTIVE = ("running", "paused", "restarting")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
# The OCI runtime that runs containers unless HostConfig.Runtime names another (runc, crun).
DEFAULT_RUNTIME = "dockyard"
# HostConfig fields that configure a container's own network; a container
# that joins another one's network namespace (container:<name>) cannot set them.
OWN_NETWORK_FIELDS = ("PortBindings", "PublishAllPorts", "ExtraHosts", "Dns", "DnsSearch", "DnsOptions")
# Socket timeout for monitor requests that return at once.
REQUEST_TIMEOUT = 120.0
# A monitor that is exiting after its idle timeout may accept a connection and
# then drop it. The request then goes to a new monitor, up to this many attempts.
MONITOR_ATTEMPTS = 3

ADJECTIVES = (
    "amber", "bold", "brave", "breezy", "calm", "clever", "cosmic", "crisp", "daring", "eager", "fearless",
    "gentle", "glowing", "happy", "humble", "jolly", "keen", "lively", "lucid", "mellow", "nimble", "patient",
    "placid", "quiet", "rapid", "serene", "sharp", "steady", "sunny", "swift", "tidy", "vivid", "wise", "zesty",
)
# Scientists and engineers, in the spirit of Docker's default names.
SURNAMES = (
    "agnesi", "babbage", "bohr", "boole", "cannon", "curie", "darwin", "dijkstra", "euler", "faraday", "fermat",
    "feynman", "galois", "gauss", "hamilton", "hopper", "hypatia", "kepler", "knuth", "lamarr", "lovelace",
    "maxwell", "meitner", "noether", "pascal", "planck", "ritchie", "shannon", "somerville", "tesla", "thompson",
    "turing", "volta", "wozniak",
)


class Attachment:
    """A connection to a container's stdio through the monitor.

    Without a TTY, what ``recv`` returns is stdcopy-framed (an 8-byte header:
    stream, three zero bytes, big-endian length). With a TTY it is raw.
    """

    def __init__(self, sock: "socket.socket", tty: bool, container_id: str, monitor_dir: Path,
                 pending: bytes = b"") -> None:
        self.sock = sock
        self.tty = tty
        self.container_id = container_id
        self.monitor_dir = monitor_dir
        self.pending = pending

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int = 65536) -> bytes:
        """Return the next output bytes; b"" once the container's output has ended."""
        if self.pending:
            data, self.pending = self.pending[:size], self.pending[size:]
            return data
        return self.sock.recv(size)

    def write(self, data: bytes) -> None:
        """Send bytes to the container's stdin."""
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        """End the container's input; with StdinOnce its stdin is closed."""
        import socket

        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop_reading(self) -> None:
        """Shut the connection down both ways, so that a thread blocked reading output from it wakes up.

        ``close`` alone does not wake such a thread.
        """
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def resize(self, height: int, width: int) -> None:
        monitor.call(self.monitor_dir, {"op": "resize", "id": self.container_id, "height": height, "width": width})

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Attachment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _now() -> str:
    return format_time(time.time_ns())


# A container's timestamps do not change once written, and a listing parses
# two of them per container, so the parsed values are kept.
_parse_time = lru_cache(maxsize=4096)(parse_time)


def _since(timestamp: str) -> float:
    if not timestamp or timestamp.startswith("0001"):
        return 0.0
    return max(0.0, time.time() - _parse_time(timestamp))


class ContainerService:
    """Containers in one dockyard root; reached as ``Engine(config).containers``."""

    def __init__(self, config: "Config", state: "State", images: "ImageService", volumes: "VolumeService",
                 networks: "Callable[[], NetworkService] | None" = None) -> None:
        self.config = config
        self.root = Path(config.root)
        self.run_root = Path(config.run_root)
        self.state = state
        self.images = images
        self.volumes = volumes
        self.monitor_dir = monitor.monitor_dir(self.root, self.run_root)
        self._network_factory = networks
        # The decoded ``config`` column of the containers in the last listing, by ID, with the
        # text it was decoded from. Listing is the API's most frequent request, and decoding
        # the JSON was a fifth of its time.
        self._listed_records: dict[str, tuple[str, dict]] = {}
        # The last listing of each thread (``_Listing``), reused while the state database is unchanged.
        self._listings = threading.local()
        self._monitors = _MonitorWatch()

    @cached_property
    def networks(self) -> "NetworkService":
        """The network service, imported on first use: most container commands never need it."""
        if self._network_factory is not None:
            return self._network_factory()
        from dockyard.network.service import NetworkService

        return NetworkService(self.config, self.state)

    # -- names -------------------------------------------------------------------

    def resolve(self, name: str) -> str:
        """Return the full ID for a full ID, a name (with or without "/") or a unique ID prefix."""
        if self.state.container(name) is not None:
            return name
        found = self.state.container_id_for_name(name.removeprefix("/"))
        if found is not None:
            return found
        matches = self.state.container_ids_with_prefix(name)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {name}")
        raise ContainerNotFound(name)

    def _row(self, name: str) -> dict[str, Any]:
        self._check_monitors()
        container_id = self.resolve(name)
        row = self.state.container(container_id)
        if row is None:
            raise ContainerNotFound(name)
        return row

    def _new_name(self) -> str:
        for attempt in range(100):
            name = f"{_pick(ADJECTIVES)}_{_pick(SURNAMES)}"
            if attempt >= 10:
                name += str(_pick(range(10)))
            if self.state.container_id_for_name(name) is None:
                return name
        return f"container_{os.urandom(4).hex()}"

    # -- create --------------------------------------------------------------------

    def create(self, body: dict, name: str | None = None) -> str:
        """Create a container from a ``POST /containers/create`` body; returns its full ID."""
        from dockyard.engine.locks import gc_lock

        if name is not None:
            name = name.removeprefix("/")
            if not NAME_PATTERN.fullmatch(name):
                raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            holder = self.state.container_id_for_name(name)
            if holder is not None:
                from dockyard.engine.state import name_conflict

                raise name_conflict(name, holder)
        image_name = body.get("Image")
        if not image_name:
            raise InvalidArgument("no image given: the create body needs Image")
        container_id = os.urandom(32).hex()
        host_config = self._host_config(body.get("HostConfig") or {})

        # Shared GC lock: image garbage collection must not delete the
        # image's snapshots between resolving them and recording the container.
        with gc_lock(self.root, exclusive=False):
            image_id = self.images.resolve(image_name)
            image = self.state.image(image_id)
            if image is None:
                from dockyard.errors import ImageNotFound

                raise ImageNotFound(image_name)
            image_config = json.loads(image.config).get("config") or {}
            layers = self.state.image_layers(image_id)
            lowers = [str(path) for path in self.images.snapshots.lowers(layers[-1].chain_id)] if layers else []
            config = ocispec.merge_config(body, image_config, container_id)
            user = self._resolve_user(config["User"], lowers, host_config.get("GroupAdd"))
            mounts, mount_points, anonymous, copy_up = self._mounts(container_id, config, host_config)
            record = {
                "Config": config,
                "HostConfig": host_config,
                "Mounts": mount_points,
                "OciMounts": mounts,
                "AnonymousVolumes": anonymous,
                "CopyUp": copy_up,
                "Lowers": lowers,
                "User": user,
                # Kept for the network service, which reads them from a create body at every start.
                "NetworkingConfig": body.get("NetworkingConfig") or {},
                "MacAddress": body.get("MacAddress") or "",
            }
            # Generating the spec now reports invalid options at create time, as Docker does.
            rootfs.prepare(self.root, self.run_root, container_id)
            name = name or self._new_name()
            recorded = False
            try:
                self._write_bundle(container_id, record)
                self.state.add_container({
                    "id": container_id,
                    "name": name,
                    "image": image_name,
                    "image_id": image_id,
                    "created": _now(),
                    "config": json.dumps(record),
                })
                recorded = True
                if ocispec.network_mode(host_config) == "bridge":
                    self._allocate_network(container_id, name, record)
            except BaseException:
                if recorded:
                    self._release_network(container_id, host_config)
                    self.state.delete_container(container_id)
                rootfs.remove_files(self.root, self.run_root, container_id)
                for volume in anonymous:
                    self.volumes.delete(volume)
                raise
        log.debug("created container %s from image %s", container_id, image_id)
        return container_id

    def _allocate_network(self, container_id: str, name: str, record: dict) -> None:
        """Allocate the container's endpoints and write its /etc/hosts and resolv.conf for them."""
        body = network_body(record)
        self.networks.allocate(container_id, name, body)
        hosts_text, resolv_text = self.networks.etc_files(container_id, body, rootfs.container_resolv_text())
        directory = rootfs.container_dir(self.root, container_id)
        (directory / "hosts").write_text(hosts_text)
        (directory / "resolv.conf").write_text(resolv_text)

    def _release_network(self, container_id: str, host_config: dict) -> None:
        if ocispec.network_mode(host_config) == "bridge":
            self.networks.release(container_id)

    def _host_config(self, requested: dict[str, Any]) -> dict[str, Any]:
        """Return the HostConfig with Docker's defaults filled in, after checking what dockyard supports."""
        host_config = dict(requested)
        mode = ocispec.network_mode(host_config)
        host_config.setdefault("NetworkMode", "default")
        if mode == "container":
            for field in OWN_NETWORK_FIELDS:
                if host_config.get(field):
                    raise InvalidArgument(
                        f"conflicting options: HostConfig.{field} cannot be used with network mode "
                        f"{host_config['NetworkMode']}, which shares another container's network"
                    )
            self.resolve(host_config["NetworkMode"].removeprefix("container:"))
        if mode in ("host", "none") and (host_config.get("PortBindings") or host_config.get("PublishAllPorts")):
            # Docker also accepts these and publishes nothing.
            log.warning("published ports are discarded in network mode %s", mode)
        from dockyard.engine import runtimes

        host_config["Runtime"] = runtimes.validate(host_config.get("Runtime") or DEFAULT_RUNTIME)

        policy = dict(host_config.get("RestartPolicy") or {})
        policy.setdefault("Name", "no")
        policy.setdefault("MaximumRetryCount", 0)
        if policy["Name"] not in RESTART_POLICIES:
            raise InvalidArgument(f"invalid restart policy {policy['Name']!r}: use no, always, unless-stopped or on-failure")
        if policy["MaximumRetryCount"] and policy["Name"] != "on-failure":
            raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
        if policy["MaximumRetryCount"] < 0:
            raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
        if policy["Name"] == "":
            policy["Name"] = "no"
        host_config["RestartPolicy"] = policy
        if host_config.get("AutoRemove") and policy["Name"] != "no":
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")

        log_config = dict(host_config.get("LogConfig") or {})
        log_config["Type"] = log_config.get("Type") or "json-file"
        log_config["Config"] = dict(log_config.get("Config") or {})
        if log_config["Type"] != "json-file":
            raise InvalidArgument(f"log driver {log_config['Type']!r} is not supported: only json-file is")
        log_options(log_config["Config"])
        host_config["LogConfig"] = log_config

        # Docker records a memory limit without a swap limit as memory plus
        # swap of twice the limit, which is also what the cgroup gets.
        if (host_config.get("Memory") or 0) > 0 and not host_config.get("MemorySwap"):
            host_config["MemorySwap"] = 2 * host_config["Memory"]

        if host_config.get("Init") and ocispec.find_init_binary() is None:
            raise InvalidArgument("--init needs docker-init or tini-static installed on the host; neither was found")
        for unsupported in ("Links", "VolumesFrom", "Devices"):
            if host_config.get(unsupported):
                raise InvalidArgument(f"HostConfig.{unsupported} is not supported yet")
        return host_config

    def _resolve_user(self, user: str, lowers: builtins.list[str], group_add: builtins.list[str] | None) -> dict:
        from dockyard.image import layer

        paths = [Path(path) for path in lowers]
        passwd = layer.read_file(paths, "/etc/passwd") if paths else None
        group = layer.read_file(paths, "/etc/group") if paths else None
        return ocispec.resolve_user(
            user,
            passwd.decode(errors="replace") if passwd is not None else None,
            group.decode(errors="replace") if group is not None else None,
            group_add,
        )

    def _mounts(self, container_id: str, config: dict, host_config: dict) -> tuple[builtins.list, ...]:
        """Resolve Binds, Mounts, Tmpfs and the image's Volumes.

        Returns the OCI mounts, Docker's mount points for ``inspect``, the
        names of the anonymous volumes created, and the volumes to fill from
        the image on start.
        """
        oci: builtins.list[dict] = []
        points: builtins.list[dict] = []
        anonymous: builtins.list[str] = []
        copy_up: builtins.list[dict] = []
        taken: set[str] = set()

        def add_volume(name: str | None, destination: str, readonly: bool, copy: bool = True, mode: str = "") -> None:
            volume = self.volumes.create(name, anonymous=name is None)
            if name is None:
                anonymous.append(volume["Name"])
            oci.append(ocispec.bind_mount(volume["Mountpoint"], destination, readonly))
            if copy:
                # As in Docker, an empty volume is filled with what the image has at its destination.
                copy_up.append({"source": destination, "target": volume["Mountpoint"]})
            points.append({"Type": "volume", "Name": volume["Name"], "Source": volume["Mountpoint"],
                           "Destination": destination, "Driver": "local", "Mode": mode or ("ro" if readonly else ""),
                           "RW": not readonly, "Propagation": ""})
            taken.add(destination)

        def add_bind(source: str, destination: str, readonly: bool, mode: str = "") -> None:
            oci.append(ocispec.bind_mount(source, destination, readonly))
            points.append({"Type": "bind", "Source": source, "Destination": destination,
                           "Mode": mode or ("ro" if readonly else ""),
                           "RW": not readonly, "Propagation": "rprivate"})
            taken.add(destination)

        for text in host_config.get("Binds") or []:
            bind = ocispec.parse_bind(text)
            if bind["volume"]:
                # Docker shows the options as given, and "z" for a named volume given without any.
                add_volume(bind["source"], bind["destination"], bind["readonly"], not bind["nocopy"], bind["mode"] or "z")
            else:
                # Like Docker's -v, a missing host directory is created; an existing
                # file or directory is bound as it is.
                if not os.path.lexists(bind["source"]):
                    Path(bind["source"]).mkdir(parents=True)
                add_bind(bind["source"], bind["destination"], bind["readonly"], bind["mode"])
        for mount in host_config.get("Mounts") or []:
            kind = mount.get("Type")
            target = mount.get("Target") or ""
            if not target.startswith("/"):
                raise InvalidArgument(f"invalid mount config: target {target!r} is not an absolute path")
            readonly = bool(mount.get("ReadOnly"))
            if kind == "bind":
                source = mount.get("Source") or ""
                if not Path(source).exists():
                    raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: {source}')
                add_bind(source, target, readonly)
            elif kind == "volume":
                nocopy = bool((mount.get("VolumeOptions") or {}).get("NoCopy"))
                add_volume(mount.get("Source") or None, target, readonly, not nocopy)
            elif kind == "tmpfs":
                options = mount.get("TmpfsOptions") or {}
                text = ",".join(
                    ([f"size={options['SizeBytes']}"] if options.get("SizeBytes") else [])
                    + ([f"mode={options['Mode']:o}"] if options.get("Mode") else [])
                    + (["ro"] if readonly else [])
                )
                oci.append(ocispec.tmpfs_mount(target, text))
                points.append({"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": not readonly,
                               "Propagation": ""})
                taken.add(target)
            else:
                raise InvalidArgument(f"invalid mount config: mount type {kind!r} is not supported")
        for destination, options in (host_config.get("Tmpfs") or {}).items():
            oci.append(ocispec.tmpfs_mount(destination, options or ""))
            taken.add(destination)
        for destination in config.get("Volumes") or {}:
            if destination not in taken:
                add_volume(None, destination, False)

        mode = ocispec.network_mode(host_config)
        host_network = mode == "host"
        hostname = rootfs.hostname() if host_network else config["Hostname"]
        files = rootfs.write_etc_files(self.root, container_id, hostname, host_network)
        if mode == "container":
            # As in Docker, the container gets the /etc/hosts and resolv.conf of the container whose network it joins.
            other = rootfs.container_dir(self.root, self.resolve(host_config["NetworkMode"].removeprefix("container:")))
            files["hosts"] = other / "hosts"
            files["resolv.conf"] = other / "resolv.conf"
        for name, path in files.items():
            destination = f"/etc/{name}"
            if destination not in taken:
                oci.append(ocispec.bind_mount(str(path), destination, readonly=bool(host_config.get("ReadonlyRootfs"))))
        # Parents first: a mount at /a/b must come after the one at /a.
        oci.sort(key=lambda entry: entry["destination"].rstrip("/").count("/"))
        return oci, points, anonymous, copy_up

    def _write_bundle(self, container_id: str, record: dict, starting: bool = False) -> None:
        """Write config.json and monitor.json into the container's bundle directory.

        ``starting`` is set by ``start``: a container in ``container:<name>``
        network mode then gets that container's network namespace, which
        exists only while it runs.
        """
        bundle = rootfs.bundle_dir(self.run_root, container_id)
        rootfs.prepare(self.root, self.run_root, container_id)
        host_config = record["HostConfig"]
        mode = ocispec.network_mode(host_config)
        spec = ocispec.generate(
            record["Config"], host_config,
            container_id=container_id,
            rootfs=str(bundle / "rootfs"),
            user=record["User"],
            mounts=record["OciMounts"],
            init_binary=ocispec.find_init_binary() if host_config.get("Init") else None,
            host_hostname=rootfs.hostname(),
            network_namespace=self._joined_namespace(host_config["NetworkMode"]) if starting and mode == "container" else None,
        )
        max_size, max_file = log_options(host_config["LogConfig"]["Config"])
        config = record["Config"]
        launch = {
            "id": container_id,
            "lowers": record["Lowers"],
            "tty": config["Tty"],
            "open_stdin": config["OpenStdin"],
            "stdin_once": config["StdinOnce"],
            "log_path": str(rootfs.log_path(self.root, container_id)),
            "log_max_size": max_size,
            "log_max_file": max_file,
            "restart": host_config["RestartPolicy"],
            "auto_remove": bool(host_config.get("AutoRemove")),
            "anonymous_volumes": record["AnonymousVolumes"],
            "copy_up": record.get("CopyUp") or [],
            # The monitor sets up the network of a bridge-mode container with the
            # network service of this configuration file.
            "network": mode == "bridge",
            "network_body": network_body(record) if mode == "bridge" else None,
            "config_path": str(self.config.path) if self.config.path else None,
            "runtime": host_config.get("Runtime") or DEFAULT_RUNTIME,
        }
        # Compact: with indent, json uses its pure-Python encoder, and the
        # seccomp profile makes this document large.
        (bundle / "config.json").write_text(json.dumps(spec))
        (bundle / "monitor.json").write_text(json.dumps(launch))

    def _joined_namespace(self, network_mode: str) -> str:
        """Return the network namespace path of the running container that ``container:<name>`` names."""
        name = network_mode.removeprefix("container:")
        row = self.state.container(self.resolve(name))
        if row is None or row["status"] not in ("running", "paused") or not row["pid"]:
            raise Conflict(f"cannot join network namespace of a non running container: {name}")
        return f"/proc/{row['pid']}/ns/net"

    # -- the monitor --------------------------------------------------------------

    def _call(self, request: dict, timeout: float | None = REQUEST_TIMEOUT, start: bool = True) -> dict:
        """Send a request to the monitor, starting it first if needed; retried if the monitor was just exiting."""
        for attempt in range(MONITOR_ATTEMPTS):
            if start:
                monitor.ensure_running(self.root, self.run_root)
            try:
                return monitor.call(self.monitor_dir, request, timeout)
            except (ConnectionError, FileNotFoundError) as error:
                if attempt == MONITOR_ATTEMPTS - 1 or not start:
                    raise ContainerError(f"the container monitor in {self.monitor_dir} failed: {error}") from error
                log.debug("monitor request %s failed (%s); retrying", request.get("op"), error)
        raise AssertionError("unreachable")

    def _monitor_alive(self) -> bool:
        return monitor.is_monitor_process(monitor.read_pidfile(self.monitor_dir))

    def _check_monitors(self, rows: builtins.list[dict] | None = None) -> bool:
        """Adopt or mark exited every active container whose monitor is gone; return whether there was one.

        ``rows`` are the container rows to check, all of them when None.
        Containers share a monitor, so each monitor PID is checked once.
        """
        alive: dict[int, bool] = {}
        found = False
        for row in self.state.containers() if rows is None else rows:
            if row["status"] not in ACTIVE:
                continue
            pid = row["monitor_pid"]
            if pid not in alive:
                alive[pid] = self._monitors.running(pid)
            if alive[pid]:
                continue
            found = True
            container_id = row["id"]
            try:
                runtime_state = self._runtime(row).state(container_id)
            except DockyardError as error:
                log.warning("reading the runtime state of container %s failed: %s", container_id, error)
                runtime_state = None
            if runtime_state is not None and runtime_state.alive():
                try:
                    self._call({"op": "adopt", "id": container_id, "pid": runtime_state.pid,
                                "start_time": runtime_state.start_time})
                    log.warning("container %s: its monitor (pid %d) died; a new monitor adopted it",
                                container_id, row["monitor_pid"])
                    continue
                except ContainerError as error:
                    log.warning("adopting container %s failed: %s", container_id, error)
            self._mark_lost(row, runtime_state is not None)
        return found

    def _runtime(self, row: dict) -> Any:
        """Return the OCI runtime a container was created with."""
        from dockyard.engine import runtimes

        host_config = json.loads(row["config"]).get("HostConfig") or {}
        return runtimes.get(host_config.get("Runtime") or DEFAULT_RUNTIME, self.run_root)

    def _mark_lost(self, row: dict, has_runtime_state: bool) -> None:
        container_id = row["id"]
        message = (f"the container monitor (pid {row['monitor_pid']}) exited while the container was "
                   f"{row['status']}, and the container's process is gone; its exit code is unknown")
        log.warning("container %s: %s", container_id, message)
        if has_runtime_state:
            try:
                self._runtime(row).delete(container_id, force=True)
            except Exception as error:  # noqa: BLE001 - cleanup continues with the other steps
                log.error("deleting the runtime state of container %s failed: %s", container_id, error)
        rootfs.unmount(self.run_root, container_id)
        if self.state.sandbox(container_id) is not None:
            # The proxy and DNS server outlived the monitor that started them.
            self.networks.stop(container_id)
        self.state.update_container(container_id, status="exited", pid=0, exit_code=monitor.UNKNOWN_EXIT_CODE,
                                    error=message, finished_at=_now())

    # -- lifecycle -----------------------------------------------------------------

    def prepare_monitor(self) -> None:
        """Start the monitor in a thread unless it runs, so that it boots while the caller creates a container.

        ``start`` then waits for it on the monitor's start lock. A failure is
        only logged here: ``start`` meets it again and reports it.
        """

        def ensure() -> None:
            try:
                monitor.ensure_running(self.root, self.run_root)
            except DockyardError as error:
                log.debug("starting the monitor ahead of the container start failed: %s", error)

        threading.Thread(target=ensure, name="monitor start", daemon=True).start()

    def start(self, name: str) -> None:
        """Start a created or exited container; starting a running one does nothing, as in Docker."""
        row = self._row(name)
        container_id = row["id"]
        if row["status"] == "running":
            return
        if row["status"] == "paused":
            raise Conflict("cannot start a paused container, try unpause instead")
        record = json.loads(row["config"])
        self._write_bundle(container_id, record, starting=True)
        try:
            self._call({"op": "start", "id": container_id})
        except Exception as error:
            # Docker records a failed start as exit code 128 with the reason.
            self.state.update_container(container_id, error=str(error), exit_code=128)
            raise

    def stop(self, name: str, timeout: int | None = None, signal: str | None = None) -> None:
        """Send the stop signal, then SIGKILL after ``timeout`` seconds (-1 waits forever); returns once it exited."""
        row = self._row(name)
        if row["status"] not in ACTIVE:
            return
        config = json.loads(row["config"])["Config"]
        number = ocispec.parse_signal(signal or config.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = config.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        socket_timeout = None if timeout < 0 else timeout + REQUEST_TIMEOUT
        self._call({"op": "stop", "id": row["id"], "signal": number, "timeout": timeout}, socket_timeout)

    def kill(self, name: str, signal: str = "KILL") -> None:
        row = self._row(name)
        number = ocispec.parse_signal(signal)
        if row["status"] not in ("running", "paused"):
            raise Conflict(f"cannot kill container: {name}: container {row['id']} is not running")
        config = json.loads(row["config"])["Config"]
        stop_number = ocispec.parse_signal(config.get("StopSignal") or "SIGTERM")
        # As in Docker, killing with SIGKILL or the stop signal counts as a
        # manual stop, so the restart policy does not bring it back.
        manual = number in (signals.SIGKILL, stop_number)
        if number == signals.SIGKILL:
            # As in Docker, SIGKILL returns only once the container has stopped,
            # so an inspect right after shows it exited. The monitor's stop
            # request also thaws a paused container, which SIGKILL alone leaves frozen.
            self._call({"op": "stop", "id": row["id"], "signal": number, "timeout": None})
            return
        self._call({"op": "kill", "id": row["id"], "signal": number, "manual": manual})

    def restart(self, name: str, timeout: int | None = None) -> None:
        self.stop(name, timeout)
        self.start(name)

    def pause(self, name: str) -> None:
        row = self._row(name)
        if row["status"] == "paused":
            raise Conflict(f"Container {row['id']} is already paused")
        if row["status"] != "running":
            raise Conflict(f"Container {row['id']} is not running")
        self._runtime(row).pause(row["id"])
        self.state.update_container(row["id"], status="paused")

    def unpause(self, name: str) -> None:
        row = self._row(name)
        if row["status"] != "paused":
            raise Conflict(f"Container {row['id']} is not paused")
        self._runtime(row).resume(row["id"])
        self.state.update_container(row["id"], status="running")

    def resize(self, name: str, height: int, width: int) -> None:
        """Set the size of the container's TTY; raises ContainerError for a container without one."""
        row = self._row(name)
        if row["status"] not in ("running", "paused"):
            raise Conflict(f"Container {row['id']} is not running")
        self._call({"op": "resize", "id": row["id"], "height": height, "width": width}, start=False)

    def rename(self, name: str, new_name: str) -> None:
        row = self._row(name)
        new_name = new_name.removeprefix("/")
        if not NAME_PATTERN.fullmatch(new_name):
            raise InvalidArgument(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if new_name == row["name"]:
            raise Conflict(f"Renaming a container with the same name as its current name: {new_name}")
        self.state.rename_container(row["id"], new_name)
        for endpoint in self.state.endpoints(container_id=row["id"]):
            self.state.update_endpoint(endpoint["id"], container_name=new_name)
            network = self.state.network(endpoint["network_id"])
            if network is not None:
                # The embedded DNS servers of user-defined networks answer from
                # this name file, which now has the new name instead of the old.
                # NOTE: a private method of the network service, which has no public one for this yet.
                self.networks._refresh_names(network)

    def update(self, name: str, body: dict) -> builtins.list[str]:
        """Change a container's limits and restart policy from a ``POST /containers/{id}/update`` body.

        A running or paused container gets the new limits in its cgroup at
        once. Every container gets them in its recorded HostConfig and in its
        bundle, so inspect shows them and later starts and restarts keep them.
        Returns Docker's warnings, such as for a discarded block I/O weight.
        """
        from dockyard.engine import updates

        row = self._row(name)
        container_id = row["id"]
        record = json.loads(row["config"])
        change = updates.plan(record["HostConfig"], body, updates.Host.current())
        if change.resources and row["status"] in ("running", "paused"):
            try:
                self._runtime(row).update(container_id, change.resources)
            except DockyardError:
                current = self.state.container(container_id)
                if current is not None and current["status"] in ("running", "paused"):
                    raise
                # The container exited meanwhile, so its cgroup is gone and the record is all there is to change.
                log.debug("container %s stopped during its update; recording the new limits only", container_id)
        record["HostConfig"] = change.host_config
        self.state.set_container_config(container_id, json.dumps(record))
        updates.patch_bundle(rootfs.bundle_dir(self.run_root, container_id), change)
        if change.restart_policy is not None and row["status"] in ACTIVE:
            # The monitor decides about a restart when the container exits, with the policy in its memory.
            self._call({"op": "update", "id": container_id, "restart": change.restart_policy}, start=False)
        log.debug("updated container %s: %s", container_id, change.resources or "record only")
        return change.warnings

    def wait(self, name: str, condition: str = "not-running") -> dict:
        """Block until the container reaches ``condition`` (not-running, next-exit, removed); returns its exit code."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid wait condition {condition!r}: use not-running, next-exit or removed")
        row = self._row(name)
        container_id = row["id"]
        if condition == "not-running" and row["status"] not in ACTIVE:
            return {"StatusCode": row["exit_code"], "Error": None}
        if condition == "removed" and row["status"] not in ACTIVE and not self._monitor_alive():
            return self._wait_removed(container_id, row["exit_code"])
        try:
            reply = self._call({"op": "wait", "id": container_id, "condition": condition}, timeout=None)
        except ContainerError:
            self._check_monitors()
            reply = {}
        if reply.get("StatusCode") is not None:
            if condition == "removed" and not reply.get("removed") and self.state.container(container_id) is not None:
                return self._wait_removed(container_id, reply["StatusCode"])
            return {"StatusCode": reply["StatusCode"], "Error": None}
        current = self.state.container(container_id)
        if current is None:
            return {"StatusCode": row["exit_code"], "Error": None}
        if condition == "removed":
            return self._wait_removed(container_id, current["exit_code"])
        if condition == "next-exit" and current["status"] in ACTIVE:
            return self.wait(container_id, condition)
        return {"StatusCode": current["exit_code"], "Error": None}

    def _wait_removed(self, container_id: str, exit_code: int) -> dict:
        while True:
            row = self.state.container(container_id)
            if row is None:
                return {"StatusCode": exit_code, "Error": None}
            exit_code = row["exit_code"]
            time.sleep(0.1)

    def remove(self, name: str, force: bool = False, volumes: bool = False) -> None:
        """Remove a container and everything it has on disk; ``force`` kills a running one first."""
        row = self._row(name)
        container_id = row["id"]
        if row["status"] in ACTIVE:
            if not force:
                raise Conflict(
                    f"You cannot remove a {row['status']} container {container_id}. "
                    "Stop the container before attempting removal or force remove"
                )
            self._call({"op": "stop", "id": container_id, "signal": int(signals.SIGKILL), "timeout": 0})
        if self._monitor_alive():
            self._call({"op": "forget", "id": container_id}, start=False)
        try:
            runtime = self._runtime(row)
        except DockyardError as error:
            # An uninstalled runtime must not keep the container from being removed; its state stays behind.
            log.warning("container %s: skipping its runtime state: %s", container_id, error)
        else:
            if runtime.exists(container_id):
                runtime.delete(container_id, force=True)
        record = json.loads(row["config"])
        if self.state.endpoints(container_id=container_id) or self.state.sandbox(container_id) is not None:
            self.networks.release(container_id)
        rootfs.remove_files(self.root, self.run_root, container_id)
        self.state.delete_container(container_id)
        for volume in record.get("AnonymousVolumes") or []:
            if volumes and self.state.volume(volume) is not None and not self.volumes.used_volumes().get(volume):
                self.volumes.delete(volume)
        log.debug("removed container %s", container_id)

    def prune(self, filters: dict | None = None) -> dict:
        """Remove every stopped container matching the filters (``until``, ``label``)."""
        filters = dict(filters or {})
        until = filters.pop("until", None)
        for key in filters:
            if key not in ("label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        deleted = []
        reclaimed = 0
        self._check_monitors()
        for row in self.state.containers():
            if row["status"] in ACTIVE:
                continue
            record = json.loads(row["config"])
            if until and parse_time(row["created"]) >= _time_filter(until[-1]):
                continue
            if not _labels_match(record["Config"].get("Labels") or {}, filters.get("label"), filters.get("label!")):
                continue
            reclaimed += rootfs.directory_size(rootfs.container_dir(self.root, row["id"]) / "diff")
            self.remove(row["id"])
            deleted.append(row["id"])
        return {"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}

    # -- queries ----------------------------------------------------------------------

    def list(self, all: bool = False, filters: dict | None = None, limit: int | None = None,
             size: bool = False) -> builtins.list[dict]:
        """Return ContainerSummary objects, the most recently created first; ``size`` adds SizeRw and SizeRootFs.

        Without ``size``, a listing with the same arguments as this thread's
        previous one, while nothing has been committed to the state database,
        reuses that listing's summaries with a fresh ``Status``.
        Every summary is a new dict, but the values inside it (``Labels``,
        ``Ports``, ``NetworkSettings``...) may be shared with later listings,
        so callers must not change them.
        """
        filters = {key: builtins.list(values) for key, values in (filters or {}).items()}
        for key in filters:
            if key not in ("status", "name", "id", "label", "ancestor", "exited", "before", "since"):
                raise InvalidArgument(f"invalid filter '{key}'")
        for status in filters.get("status", []):
            if status not in STATUSES:
                raise InvalidArgument(f"invalid filter 'status={status}'")

        # Read before the rows, so that a write that lands in between makes the next listing rebuild.
        version = self.state.change_marker()
        arguments = (all, limit, repr(sorted(filters.items())))
        previous: _Listing | None = getattr(self._listings, "last", None)
        if (not size and previous is not None and previous.arguments == arguments and previous.version == version
                and not self._check_monitors(previous.rows)):
            return [dict(summary, Status=self.status_text(row)) for summary, row in previous.summaries]
        self._listings.last = None

        rows = self.state.containers()
        if self._check_monitors(rows):
            rows = self.state.containers()
        all_rows = rows

        if limit is not None and limit > 0:
            rows = rows[:limit]
            all = True
        if filters.get("status") or filters.get("exited"):
            all = True
        ancestors = self._ancestor_ids(filters.get("ancestor"))
        before = self._created_of(filters.get("before"))
        since = self._created_of(filters.get("since"))
        if before is not None or since is not None:
            all = True

        # One query per table for the whole listing, instead of several per container.
        networking = _Networking(self.state)
        records = self._listed_records
        decoded: dict[str, tuple[str, dict]] = {}
        summaries: builtins.list[tuple[dict, dict]] = []
        for row in rows:
            if not all and row["status"] not in ACTIVE:
                continue
            if before is not None and row["created"] >= before:
                continue
            if since is not None and row["created"] <= since:
                continue
            cached = records.get(row["id"])
            record = cached[1] if cached is not None and cached[0] == row["config"] else json.loads(row["config"])
            decoded[row["id"]] = (row["config"], record)
            if not self._matches(row, record, filters, ancestors):
                continue
            summary = self._summary(row, record, networking)
            if size:
                summary.update(self._sizes(row))
            summaries.append((summary, row))
        self._listed_records = decoded
        if not size:
            self._listings.last = _Listing(arguments, version, all_rows, summaries)
        return [dict(summary) for summary, _ in summaries]

    def _sizes(self, row: dict) -> dict[str, int]:
        """Return SizeRw (the files in the writable layer) and SizeRootFs (that plus the image), in bytes."""
        written = rootfs.directory_size(rootfs.container_dir(self.root, row["id"]) / "diff")
        image = self.state.image(row["image_id"])
        return {"SizeRw": written, "SizeRootFs": written + (image.size if image is not None else 0)}

    def _created_of(self, values: builtins.list[str] | None) -> str | None:
        """Return the creation time of the container a ``before`` or ``since`` filter names."""
        if not values:
            return None
        row = self.state.container(self.resolve(values[-1]))
        return row["created"] if row is not None else None

    def _ancestor_ids(self, values: builtins.list[str] | None) -> set[str] | None:
        if not values:
            return None
        found = set()
        for value in values:
            try:
                found.add(self.images.resolve(value))
            except NotFound:
                continue
        return found

    def _matches(self, row: dict, record: dict, filters: dict, ancestors: set[str] | None) -> bool:
        if filters.get("status") and row["status"] not in filters["status"]:
            return False
        if filters.get("id") and not any(row["id"].startswith(value) for value in filters["id"]):
            return False
        if filters.get("name") and not any(re.search(value.removeprefix("/"), row["name"]) for value in filters["name"]):
            return False
        if filters.get("exited"):
            if row["status"] != "exited" or str(row["exit_code"]) not in filters["exited"]:
                return False
        if ancestors is not None and row["image_id"] not in ancestors:
            return False
        if not _labels_match(record["Config"].get("Labels") or {}, filters.get("label"), None):
            return False
        return True

    def status_text(self, row: dict) -> str:
        """Return Docker's human status: "Up 3 seconds", "Exited (0) 5 seconds ago", "Created", ..."""
        status = row["status"]
        if status == "running":
            return f"Up {human_duration(_since(row['started_at']))}"
        if status == "paused":
            return f"Up {human_duration(_since(row['started_at']))} (Paused)"
        if status == "restarting":
            return f"Restarting ({row['exit_code']}) {human_duration(_since(row['finished_at']))} ago"
        if status == "exited":
            if not row["finished_at"]:
                return f"Exited ({row['exit_code']})"
            return f"Exited ({row['exit_code']}) {human_duration(_since(row['finished_at']))} ago"
        if status == "removing":
            return "Removal In Progress"
        if status == "dead":
            return "Dead"
        return "Created"

    def _summary(self, row: dict, record: dict, networking: "_Networking") -> dict:
        config = record["Config"]
        # As in Docker, the command is the user's even with --init: the init
        # binary appears only in the OCI spec.
        args = ocispec.command_args(config)
        return {
            "Id": row["id"],
            "Names": [f"/{row['name']}"],
            "Image": row["image"],
            "ImageID": row["image_id"],
            "Command": " ".join(args),
            "Created": int(_parse_time(row["created"])),
            "Ports": summary_ports(config.get("ExposedPorts"), self._published_ports(row, networking)),
            # Copies, because ``record`` may be the cached one of an earlier listing.
            "Labels": dict(config.get("Labels") or {}),
            "State": row["status"],
            "Status": self.status_text(row),
            "HostConfig": {"NetworkMode": _shown_network_mode(record["HostConfig"])},
            "NetworkSettings": {"Networks": self._networks_setting(row, record, networking)},
            "Mounts": [dict(mount) for mount in record.get("Mounts") or []],
        }

    def _published_ports(self, row: dict, networking: "_Networking | None" = None) -> builtins.list[dict]:
        if row["status"] not in ("running", "paused"):
            return []
        if networking is not None:
            sandbox = networking.sandboxes.get(row["id"])
            if sandbox is None or sandbox["ports"] == "[]":
                return []
            return json.loads(sandbox["ports"])
        if self.state.sandbox(row["id"]) is None:
            return []
        return self.networks.published_ports(row["id"])

    def _networks_setting(self, row: dict, record: dict, networking: "_Networking | None" = None) -> dict[str, dict]:
        """Return ``NetworkSettings.Networks``; addresses are shown only while the container runs, as in Docker."""
        mode = record["HostConfig"].get("NetworkMode") or "default"
        kind = ocispec.network_mode(record["HostConfig"])
        if kind in ("host", "none"):
            return {mode: _empty_endpoint()}
        if kind == "container":
            return {}
        if networking is not None:
            endpoints = networking.endpoints.get(row["id"])
            if not endpoints:
                return {}
            networks = self.networks.endpoints(row["id"], endpoint_rows=endpoints,
                                               network_rows=networking.networks())
        elif self.state.endpoints(container_id=row["id"]):
            networks = self.networks.endpoints(row["id"])
        else:
            return {}
        if row["status"] not in ("running", "paused"):
            for settings in networks.values():
                settings.update(IPAddress="", IPPrefixLen=0, Gateway="", MacAddress="")
        return networks

    def _network_settings(self, row: dict, record: dict) -> dict:
        """Return the inspect object's ``NetworkSettings``, with Docker's top-level fields of the default bridge."""
        from dockyard.network import ports

        networks = self._networks_setting(row, record)
        sandbox = self.state.sandbox(row["id"]) if row["status"] in ("running", "paused") else None
        published = self._published_ports(row)
        bridge = networks.get("bridge") or {}
        return {
            "Bridge": "",
            "SandboxID": row["id"] if sandbox else "",
            "SandboxKey": sandbox["netns"] if sandbox else "",
            "Ports": ports.ports_setting(record["Config"].get("ExposedPorts"), published),
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "EndpointID": bridge.get("EndpointID", ""),
            "Gateway": bridge.get("Gateway", ""),
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": bridge.get("IPAddress", ""),
            "IPPrefixLen": bridge.get("IPPrefixLen", 0),
            "IPv6Gateway": "",
            "MacAddress": bridge.get("MacAddress", ""),
            "Networks": networks,
        }

    def inspect(self, name: str, size: bool = False) -> dict:
        """Return the ContainerInspectResponse object; ``size`` adds SizeRw and SizeRootFs."""
        row = self._row(name)
        record = json.loads(row["config"])
        config = record["Config"]
        args = ocispec.command_args(config)
        directory = rootfs.container_dir(self.root, row["id"])
        status = row["status"]
        result = {
            "Id": row["id"],
            "Created": row["created"],
            "Path": args[0],
            "Args": args[1:],
            "State": {
                "Status": status,
                "Running": status in ("running", "paused"),
                "Paused": status == "paused",
                "Restarting": status == "restarting",
                "OOMKilled": bool(row["oom_killed"]),
                "Dead": status == "dead",
                "Pid": row["pid"] if status in ("running", "paused") else 0,
                "ExitCode": row["exit_code"],
                "Error": row["error"],
                "StartedAt": row["started_at"] or ZERO_TIME,
                "FinishedAt": row["finished_at"] or ZERO_TIME,
            },
            "Image": row["image_id"],
            "ResolvConfPath": str(directory / "resolv.conf"),
            "HostnamePath": str(directory / "hostname"),
            "HostsPath": str(directory / "hosts"),
            "LogPath": str(rootfs.log_path(self.root, row["id"])),
            "Name": f"/{row['name']}",
            "RestartCount": row["restart_count"],
            "Driver": "overlay",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": inspect_host_config(record["HostConfig"]),
            "GraphDriver": {
                "Name": "overlay",
                "Data": {
                    "LowerDir": ":".join(record["Lowers"]),
                    "UpperDir": str(directory / "diff"),
                    "WorkDir": str(directory / "work"),
                    "MergedDir": str(rootfs.bundle_dir(self.run_root, row["id"]) / "rootfs"),
                },
            },
            "Mounts": record.get("Mounts") or [],
            "Config": config,
            "NetworkSettings": self._network_settings(row, record),
        }
        if size:
            result.update(self._sizes(row))
        return result

    # -- output -------------------------------------------------------------------------

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None, since: float | None = None,
             until: float | None = None, stdout: bool = True, stderr: bool = True) -> Iterator[LogEntry]:
        """Yield the container's log lines; with ``follow``, until the container stops."""
        from dockyard.engine import logs

        row = self._row(name)
        container_id = row["id"]
        streams = tuple(stream for stream, wanted in (("stdout", stdout), ("stderr", stderr)) if wanted)

        def running() -> bool:
            current = self.state.container(container_id)
            return current is not None and current["status"] in ACTIVE

        return logs.read(rootfs.log_path(self.root, container_id), tail=tail, since=since, until=until,
                         streams=streams, follow=follow, running=running)

    def attach(self, name: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool = False) -> Attachment:
        """Connect to the container's stdio through the monitor; works before ``start`` too, so no output is lost."""
        row = self._row(name)
        container_id = row["id"]
        record = json.loads(row["config"])
        if not (rootfs.bundle_dir(self.run_root, container_id) / "monitor.json").exists():
            self._write_bundle(container_id, record)
        request = {"op": "attach", "id": container_id, "stdin": stdin, "stdout": stdout, "stderr": stderr}
        for attempt in range(MONITOR_ATTEMPTS):
            monitor.ensure_running(self.root, self.run_root)
            try:
                sock = monitor.connect(self.monitor_dir, timeout=None)
            except (FileNotFoundError, ConnectionRefusedError) as error:
                if attempt == MONITOR_ATTEMPTS - 1:
                    raise ContainerError(f"the container monitor in {self.monitor_dir} failed: {error}") from error
                continue
            try:
                sock.sendall(json.dumps(request).encode() + b"\n")
                line, rest = monitor.read_line(sock)
                monitor.raise_for(json.loads(line))
                break
            except ConnectionError as error:
                # The monitor was exiting when it accepted; a new one is started.
                sock.close()
                if attempt == MONITOR_ATTEMPTS - 1:
                    raise ContainerError(f"the container monitor in {self.monitor_dir} failed: {error}") from error
            except BaseException:
                sock.close()
                raise
        tty = bool(record["Config"].get("Tty"))
        replay = b""
        if logs:
            for entry in self.logs(container_id, stdout=stdout, stderr=stderr):
                number = 1 if entry.stream == "stdout" else 2
                replay += entry.data if tty else _frame(number, entry.data)
        return Attachment(sock, tty, container_id, self.monitor_dir, replay + rest)

    def shutdown_monitor(self, timeout: float = 10.0) -> None:
        """Ask an idle monitor to exit now and wait until it has (for tests and ``system`` commands)."""
        pid = monitor.read_pidfile(self.monitor_dir)
        if not monitor.is_monitor_process(pid):
            return
        self._call({"op": "shutdown"}, start=False)
        deadline = time.monotonic() + timeout
        while monitor.is_monitor_process(pid):
            if time.monotonic() > deadline:
                raise ContainerError(f"the container monitor (pid {pid}) did not exit within {timeout} s")
            time.sleep(0.02)


class _MonitorWatch:
    """Liveness checks of monitor processes, with a pidfd for each monitor seen running.

    ``monitor.is_monitor_process`` reads two /proc files, about 18 system
    calls, and every listing and lifecycle call checks the monitors. A pidfd
    refers to one process for as long as it is open, so a PID that the kernel
    reuses cannot fool it, and a poll with no timeout shows whether that
    process has exited, in one system call.
    """

    def __init__(self) -> None:
        self._pidfds: dict[int, int] = {}
        self._lock = threading.Lock()

    def running(self, pid: int) -> bool:
        with self._lock:
            pidfd = self._pidfds.get(pid)
        if pidfd is not None:
            if not _has_exited(pidfd):
                return True
            with self._lock:
                if self._pidfds.get(pid) == pidfd:
                    del self._pidfds[pid]
                    os.close(pidfd)
            return monitor.is_monitor_process(pid)
        if not monitor.is_monitor_process(pid):
            return False
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return True   # it was running a moment ago; the next call checks /proc again
        # The PID might have passed to another process between the two calls, so the process that
        # the pidfd refers to is checked once more: alive, and still a monitor.
        if _has_exited(pidfd) or not monitor.is_monitor_process(pid):
            os.close(pidfd)
            return monitor.is_monitor_process(pid)
        with self._lock:
            if pid in self._pidfds:
                os.close(pidfd)
            else:
                self._pidfds[pid] = pidfd
        return True


def _has_exited(pidfd: int) -> bool:
    """Tell whether the process of ``pidfd`` has exited: a pidfd becomes readable then, zombie or not."""
    import select

    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


@dataclass
class _Listing:
    """One thread's last listing without sizes: its arguments, the state it was built from, and the result."""

    arguments: tuple
    version: tuple[int, int, int]                        # the state's change marker from before it was read
    rows: builtins.list[dict]                            # every container row, for the check of the monitors
    summaries: builtins.list[tuple[dict, dict]]          # each summary with the row it was built from


class _Networking:
    """The sandbox, endpoint and network rows of all containers, read once for a listing."""

    def __init__(self, state: "State") -> None:
        self._state = state
        self.sandboxes = {row["container_id"]: row for row in state.sandboxes()}
        self.endpoints: dict[str, builtins.list[dict]] = {}
        for endpoint in state.endpoints():
            self.endpoints.setdefault(endpoint["container_id"], []).append(endpoint)
        self._networks: dict[str, dict] | None = None

    def networks(self) -> dict[str, dict]:
        """Return the network rows by ID, read on first use: a listing without endpoints needs none."""
        if self._networks is None:
            self._networks = {row["id"]: row for row in self._state.networks()}
        return self._networks


def network_body(record: dict) -> dict:
    """Return the create body the network service reads, rebuilt from a container's stored record."""
    return {
        **record["Config"],
        "MacAddress": record.get("MacAddress") or "",
        "HostConfig": record["HostConfig"],
        "NetworkingConfig": record.get("NetworkingConfig") or {},
    }


# Docker's ``inspect`` values for the HostConfig fields that a create body
# left out. Lists that Docker fills with [] are [] here, and pointers it leaves
# unset are None. MaskedPaths, ReadonlyPaths, NetworkMode and Runtime depend on
# the other fields and are filled in by ``inspect_host_config``.
# NOTE: written from Docker 28's output on a cgroup v1 host, as remembered, and
# not compared with a running dockerd here.
HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
    "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "Annotations": None,
    "CapAdd": None, "CapDrop": None,
    # dockyard gives every container its own cgroup and IPC namespaces.
    "CgroupnsMode": "private", "IpcMode": "private",
    "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
    "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
    "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "StorageOpt": None,
    "Tmpfs": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 64 * 1024 * 1024, "Sysctls": None,
    "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemoryTCP": 0,
    "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": False,
    "Init": False, "PidsLimit": None, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
    "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "Mounts": None,
}


def _shown_network_mode(host_config: dict) -> str:
    """Return the NetworkMode that Docker shows: ``bridge`` for the default network."""
    mode = host_config.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def inspect_host_config(recorded: dict) -> dict:
    """Return the inspect object's ``HostConfig``: the recorded fields over Docker's defaults for the others."""
    from dockyard.runtime.spec import MASKED_PATHS, READONLY_PATHS

    host_config = json.loads(json.dumps(HOST_CONFIG_DEFAULTS))
    host_config.update(recorded)
    host_config["NetworkMode"] = _shown_network_mode(recorded)
    host_config["Runtime"] = recorded.get("Runtime") or DEFAULT_RUNTIME
    # A privileged container masks nothing, and Docker shows null for both lists then.
    privileged = bool(recorded.get("Privileged"))
    host_config.setdefault("MaskedPaths", None if privileged else builtins.list(MASKED_PATHS))
    host_config.setdefault("ReadonlyPaths", None if privileged else builtins.list(READONLY_PATHS))
    return host_config


def _empty_endpoint() -> dict:
    """Return the EndpointSettings Docker shows for the host and none modes, which have no addresses of their own."""
    return {
        "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None, "GwPriority": 0,
        "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None,
    }


def summary_ports(exposed: dict | None, published: builtins.list[dict]) -> builtins.list[dict]:
    """Return ContainerSummary ``Ports``: each published mapping, and each exposed port that has none."""
    found = []
    mapped = set()
    for mapping in published:
        mapped.add((mapping["ContainerPort"], mapping["Protocol"]))
        found.append({
            "IP": mapping["HostIp"] or "0.0.0.0", "PrivatePort": mapping["ContainerPort"],
            "PublicPort": mapping["HostPort"], "Type": mapping["Protocol"],
        })
    for key in exposed or {}:
        number, _, protocol = key.partition("/")
        protocol = protocol or "tcp"
        if number.isdigit() and (int(number), protocol) not in mapped:
            found.append({"PrivatePort": int(number), "Type": protocol})
    return found


def _pick(choices: Any) -> Any:
    # os.urandom instead of the secrets module, whose import costs the CLI a few milliseconds.
    return choices[int.from_bytes(os.urandom(4), "big") % len(choices)]


def _frame(stream: int, data: bytes) -> bytes:
    import struct

    return struct.pack(">BxxxL", stream, len(data)) + data


def _labels_match(labels: dict, wanted: builtins.list[str] | None, unwanted: builtins.list[str] | None) -> bool:
    for value in wanted or []:
        key, separator, expected = value.partition("=")
        if key not in labels or (separator and labels[key] != expected):
            return False
    for value in unwanted or []:
        key, separator, expected = value.partition("=")
        if key in labels and (not separator or labels[key] == expected):
            return False
    return True


def _time_filter(value: str) -> float:
    """Parse an ``until`` filter: a Unix time, a duration such as ``10m`` or ``2h``, or an RFC 3339 time."""
    units = {"s": 1, "m": 60, "h": 3600}
    if value and value[-1] in units and value[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(value[:-1]) * units[value[-1]]
    try:
        return float(value)
    except ValueError:
        return parse_time(value)

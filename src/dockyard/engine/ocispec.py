"""From a container's create body and its image's config to an OCI runtime ``config.json``.

Two steps, both pure functions so unit tests can run them:

- ``merge_config`` combines the body of ``POST /containers/create`` with the
  image's config the way Docker does (Cmd, Entrypoint, Env, Labels, ...).
  The result is what ``inspect`` shows as ``Config``.
- ``generate`` turns that ``Config``, the ``HostConfig`` and the paths the
  engine prepared (root filesystem, mounts, the resolved user) into the
  runtime spec, starting from the runtime's Docker defaults.

User and group names are resolved by ``resolve_user`` from the image's own
/etc/passwd and /etc/group, which the caller reads.
"""

from __future__ import annotations

import json
import os
import re
import signal as signals
from typing import Any

from dockyard.errors import InvalidArgument

# The runtime's modules load ctypes, so they are imported inside the functions
# that need them: this module is on the path of every container command.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's defaults for --tmpfs mounts without options, and for /dev/shm.
TMPFS_DEFAULT_OPTIONS = ["noexec", "nosuid", "nodev"]
CPU_PERIOD = 100_000  # microseconds; NanoCpus becomes a quota per this period, as in Docker
# The path of the init binary (tini) inside the container, as in Docker.
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"


# -- Config --------------------------------------------------------------------


def _string_list(value: Any, field: str) -> list[str] | None:
    """Normalise a strslice field: None stays None, a string becomes a one-element list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidArgument(f"invalid {field} {value!r}: expected a string or a list of strings")


def merge_env(image_env: list[str], body_env: list[str]) -> list[str]:
    """Return the image's Env overridden by the body's, by variable name, in first-seen order.

    Only the first ``=`` separates name from value, so ``A=b=c`` sets A to ``b=c``.
    """
    merged: dict[str, str] = {}
    for entry in [*image_env, *body_env]:
        name = entry.split("=", 1)[0]
        if not name:
            raise InvalidArgument(f"invalid environment variable {entry!r}: the name is empty")
        merged[name] = entry
    return list(merged.values())


def merge_config(body: dict[str, Any], image_config: dict[str, Any], container_id: str) -> dict[str, Any]:
    """Return the container's ``Config`` from the create body and the image's ``config`` object."""
    image = image_config or {}
    entrypoint = _string_list(body.get("Entrypoint"), "Entrypoint")
    if entrypoint == [""]:
        # The docker CLI sends [""] for --entrypoint "", meaning no entrypoint.
        entrypoint = []
    cmd = _string_list(body.get("Cmd"), "Cmd")
    # Docker's rule: an Entrypoint in the body replaces the image's Entrypoint
    # and Cmd together. An empty one (--entrypoint "") clears only the image's
    # Entrypoint, and the image's Cmd stays unless the body gives one.
    if not entrypoint:
        if not cmd:
            cmd = _string_list(image.get("Cmd"), "image Cmd")
        if entrypoint is None:
            entrypoint = _string_list(image.get("Entrypoint"), "image Entrypoint")
    if not (entrypoint or []) + (cmd or []):
        raise InvalidArgument("No command specified: the image has no Cmd or Entrypoint, and none was given")

    working_dir = body.get("WorkingDir") or image.get("WorkingDir") or ""
    if working_dir and not working_dir.startswith("/"):
        raise InvalidArgument(f"the working directory {working_dir!r} is invalid, it needs to be an absolute path")

    env = merge_env(image.get("Env") or [], body.get("Env") or [])
    if not any(entry.startswith("PATH=") for entry in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")

    labels = dict(image.get("Labels") or {})
    labels.update(body.get("Labels") or {})
    volumes = dict(image.get("Volumes") or {})
    volumes.update(body.get("Volumes") or {})
    exposed = dict(image.get("ExposedPorts") or {})
    exposed.update(body.get("ExposedPorts") or {})
    stop_signal = body.get("StopSignal") or image.get("StopSignal") or ""
    if stop_signal:
        parse_signal(stop_signal)

    config = {
        "Hostname": body.get("Hostname") or container_id[:12],
        "Domainname": body.get("Domainname") or "",
        # The docker CLI always sends "User": "", which means the image's user, as in Docker.
        "User": body.get("User") or image.get("User") or "",
        "AttachStdin": bool(body.get("AttachStdin")),
        "AttachStdout": bool(body.get("AttachStdout")),
        "AttachStderr": bool(body.get("AttachStderr")),
        "ExposedPorts": exposed or None,
        "Tty": bool(body.get("Tty")),
        "OpenStdin": bool(body.get("OpenStdin")),
        "StdinOnce": bool(body.get("StdinOnce")),
        "Env": env,
        "Cmd": cmd,
        "Image": body.get("Image") or "",
        "Volumes": volumes or None,
        "WorkingDir": working_dir,
        "Entrypoint": entrypoint,
        "OnBuild": image.get("OnBuild"),
        "Labels": labels,
        "StopSignal": stop_signal or None,
        "StopTimeout": body.get("StopTimeout"),
    }
    # Fields Docker shows only when set, taken from the image as Docker's
    # daemon does: ArgsEscaped goes with the image's Cmd, and the body's
    # Healthcheck overrides the image's one field by field.
    if cmd and not body.get("Cmd") and not body.get("Entrypoint") and image.get("ArgsEscaped"):
        config["ArgsEscaped"] = True
    healthcheck = {**(image.get("Healthcheck") or {}), **(body.get("Healthcheck") or {})}
    if healthcheck:
        # NOTE: dockyard records the healthcheck but does not run it, so State.Health never appears.
        config["Healthcheck"] = healthcheck
    shell = _string_list(body.get("Shell"), "Shell") or _string_list(image.get("Shell"), "image Shell")
    if shell:
        config["Shell"] = shell
    return config


def command_args(config: dict[str, Any]) -> list[str]:
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


def parse_signal(value: str | int) -> int:
    """Return the number of a signal given as ``9``, ``KILL`` or ``SIGKILL``; raises InvalidArgument."""
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        if number not in {int(sig) for sig in signals.valid_signals()} or number == 0:
            raise InvalidArgument(f"invalid signal: {value}")
        return number
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {value}") from None


# -- users -----------------------------------------------------------------------


def _entries(text: str | None) -> list[list[str]]:
    if not text:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(user: str, passwd: str | None, group: str | None, group_add: list[str] | None = None) -> dict[str, Any]:
    """Resolve ``name|uid[:gid|group]`` against an image's /etc/passwd and /etc/group texts.

    Returns the OCI ``process.user`` object. As in runc: a numeric uid without
    a passwd entry runs with gid 0; supplementary groups are the /etc/group
    groups that list the user, unless a group was given, plus ``group_add``.
    """
    user_part, _, group_part = (user or "").partition(":")
    users = _entries(passwd)
    groups = [entry for entry in _entries(group) if len(entry) >= 3]
    name = ""
    uid = 0
    gid = 0
    found = None
    if not user_part:
        found = next((entry for entry in users if len(entry) >= 4 and entry[2] == "0"), None)
    elif user_part.isdigit():
        uid = int(user_part)
        found = next((entry for entry in users if len(entry) >= 4 and entry[2] == user_part), None)
    else:
        found = next((entry for entry in users if len(entry) >= 4 and entry[0] == user_part), None)
        if found is None:
            raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")
    if found is not None:
        name = found[0]
        uid = int(found[2])
        gid = int(found[3]) if found[3].isdigit() else 0

    additional: list[int] = []
    if group_part:
        gid = _group_id(group_part, groups)
    elif name:
        for entry in groups:
            members = entry[3].split(",") if len(entry) > 3 else []
            if name in members and entry[2].isdigit():
                additional.append(int(entry[2]))
    for extra in group_add or []:
        additional.append(_group_id(extra, groups))
    unique = list(dict.fromkeys(number for number in additional))
    result: dict[str, Any] = {"uid": uid, "gid": gid}
    if unique:
        result["additionalGids"] = unique
    return result


def _group_id(text: str, groups: list[list[str]]) -> int:
    if text.isdigit():
        return int(text)
    for entry in groups:
        if entry[0] == text and entry[2].isdigit():
            return int(entry[2])
    raise InvalidArgument(f"unable to find group {text}: no matching entries in group file")


# -- mounts ------------------------------------------------------------------------


def parse_bind(text: str) -> dict[str, Any]:
    """Parse a ``Binds`` entry ``source:destination[:options]``.

    Returns ``{"source", "destination", "readonly", "volume", "nocopy", "mode"}``.
    ``volume`` is True when the source is a volume name rather than a host path.
    ``mode`` is the options text as given ("" without options), which
    ``inspect`` shows as the mount point's ``Mode``.
    """
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid bind mount spec {text!r}: expected SOURCE:DESTINATION[:ro|rw]")
    source, destination = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    if not destination.startswith("/"):
        raise InvalidArgument(f"invalid bind mount spec {text!r}: the destination {destination!r} is not an absolute path")
    readonly = False
    nocopy = False
    for option in options:
        if option == "ro":
            readonly = True
        elif option == "nocopy":
            nocopy = True
        elif option in ("rw", "z", "Z", "private", "rprivate", "consistent", "cached", "delegated", ""):
            continue
        else:
            raise InvalidArgument(f"invalid bind mount spec {text!r}: unknown option {option!r}")
    is_volume = not source.startswith("/")
    if is_volume and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", source):
        raise InvalidArgument(
            f"invalid bind mount spec {text!r}: {source!r} is neither an absolute host path nor a valid volume name"
        )
    return {"source": source, "destination": destination, "readonly": readonly, "volume": is_volume, "nocopy": nocopy,
            "mode": parts[2] if len(parts) == 3 else ""}


def bind_mount(source: str, destination: str, readonly: bool = False) -> dict[str, Any]:
    options = ["rbind", "rprivate"]
    if readonly:
        options.append("ro")
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def tmpfs_mount(destination: str, options: str = "") -> dict[str, Any]:
    """Return a tmpfs mount for a ``Tmpfs`` entry; its options are mount options such as ``size=64m,mode=1777``."""
    if not destination.startswith("/"):
        raise InvalidArgument(f"invalid tmpfs destination {destination!r}: not an absolute path")
    requested = [option for option in options.split(",") if option] if options else []
    flags = {"exec": "noexec", "suid": "nosuid", "dev": "nodev"}
    result = []
    for default in TMPFS_DEFAULT_OPTIONS:
        # An explicit "exec" (or suid, dev) cancels the matching default.
        if not any(flags.get(option) == default for option in requested):
            result.append(default)
    result.extend(requested)
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": result}


# -- capabilities and seccomp ------------------------------------------------------------


def _capability_name(text: str) -> str:
    from dockyard.runtime.capabilities import CAPABILITIES

    name = text.strip().upper()
    if name == "ALL":
        return name
    name = name if name.startswith("CAP_") else "CAP_" + name
    if name not in CAPABILITIES:
        raise InvalidArgument(f"unknown capability: {text!r}")
    return name


def host_bounding_set() -> list[str]:
    """Return the capabilities in this process's bounding set: a container can get no others."""
    from dockyard.runtime.capabilities import CAPABILITIES

    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return [name for name, number in CAPABILITIES.items() if mask & (1 << number)]
    return list(CAPABILITIES)


def capabilities(cap_add: list[str] | None, cap_drop: list[str] | None, privileged: bool) -> list[str]:
    """Return the container's capability set: Docker's defaults, plus CapAdd, minus CapDrop (``ALL`` allowed)."""
    from dockyard.runtime.capabilities import CAPABILITIES, DEFAULT_CAPABILITIES

    available = host_bounding_set()
    if privileged:
        return available
    added = [_capability_name(name) for name in cap_add or []]
    dropped = [_capability_name(name) for name in cap_drop or []]
    result = [] if "ALL" in dropped else list(DEFAULT_CAPABILITIES)
    for name in (list(CAPABILITIES) if "ALL" in added else added):
        if name not in result:
            result.append(name)
    result = [name for name in result if name not in dropped]
    unavailable = [name for name in added if name != "ALL" and name not in available]
    if unavailable:
        raise InvalidArgument(
            f"cannot add {', '.join(unavailable)}: not in the capability bounding set of the dockyard process"
        )
    return [name for name in result if name in available]


def seccomp_from_docker_profile(text: str, granted: list[str]) -> dict[str, Any]:
    """Convert a Docker seccomp profile (JSON, as ``--security-opt seccomp=FILE`` sends it) to ``linux.seccomp``.

    Rules whose ``includes``/``excludes`` name capabilities or architectures are
    kept or dropped for this container, and ``archMap`` gives the architectures
    for the host's machine.
    """
    try:
        profile = json.loads(text)
    except ValueError as error:
        raise InvalidArgument(f"invalid seccomp profile: {error}") from None
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise InvalidArgument("invalid seccomp profile: expected a JSON object with defaultAction")
    machine = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(os.uname().machine, "")
    architectures = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == machine:
            architectures = [machine, *(entry.get("subArchitectures") or [])]
    granted_set = set(granted)

    def applies(rule: dict[str, Any]) -> bool:
        includes = rule.get("includes") or {}
        excludes = rule.get("excludes") or {}
        if includes.get("caps") and not set(includes["caps"]) <= granted_set:
            return False
        if includes.get("arches") and machine not in _arch_names(includes["arches"]):
            return False
        if excludes.get("caps") and set(excludes["caps"]) & granted_set:
            return False
        if excludes.get("arches") and machine in _arch_names(excludes["arches"]):
            return False
        return True

    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not applies(rule):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        converted: dict[str, Any] = {"names": names, "action": rule["action"]}
        for key in ("args", "errnoRet"):
            if rule.get(key) is not None:
                converted[key] = rule[key]
        syscalls.append(converted)
    result: dict[str, Any] = {"defaultAction": profile["defaultAction"], "syscalls": syscalls}
    if architectures:
        result["architectures"] = architectures
    if profile.get("defaultErrnoRet") is not None:
        result["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return result


def _arch_names(values: list[str]) -> set[str]:
    # Docker's profile names architectures by Go's GOARCH ("amd64"); the spec by libseccomp's.
    names = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "386": "SCMP_ARCH_X86"}
    return {names.get(value, value) for value in values}


def security_options(options: list[str] | None) -> dict[str, Any]:
    """Parse SecurityOpt entries into ``{"no_new_privileges": bool, "seccomp": None | "unconfined" | profile}``."""
    result: dict[str, Any] = {"no_new_privileges": False, "seccomp": None}
    for option in options or []:
        key, separator, value = option.partition("=")
        if not separator:
            key, separator, value = option.partition(":")
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise InvalidArgument(f"invalid --security-opt {option!r}: no-new-privileges takes true or false")
            result["no_new_privileges"] = value != "false"
        elif key == "seccomp":
            if not value:
                raise InvalidArgument(f"invalid --security-opt {option!r}: seccomp needs a value")
            result["seccomp"] = "unconfined" if value == "unconfined" else value
        elif key in ("apparmor", "label"):
            raise InvalidArgument(f"--security-opt {option!r} is not supported: dockyard has no AppArmor or SELinux support")
        else:
            raise InvalidArgument(f"invalid --security-opt {option!r}")
    return result


# -- resources -------------------------------------------------------------------------


RLIMIT_NAMES = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE",
    "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}


def rlimits(ulimits: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Return ``process.rlimits`` from HostConfig.Ulimits, over the default of 1024 open files."""
    limits = {"RLIMIT_NOFILE": {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}}
    for entry in ulimits or []:
        name = RLIMIT_NAMES.get(str(entry.get("Name", "")).lower())
        if name is None:
            raise InvalidArgument(f"invalid ulimit {entry.get('Name')!r}: unknown resource")
        soft, hard = int(entry.get("Soft", 0)), int(entry.get("Hard", 0))
        if soft > hard:
            raise InvalidArgument(f"invalid ulimit {entry['Name']}: soft limit {soft} is above hard limit {hard}")
        limits[name] = {"type": name, "hard": hard if hard >= 0 else 2**64 - 1, "soft": soft if soft >= 0 else 2**64 - 1}
    return list(limits.values())


def resources(host_config: dict[str, Any]) -> dict[str, Any]:
    """Return ``linux.resources`` (without devices) from the HostConfig's limits."""
    result: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    limit = host_config.get("Memory") or 0
    swap = host_config.get("MemorySwap") or 0
    if limit < 0:
        raise InvalidArgument(f"invalid memory limit {limit}: must not be negative")
    if limit:
        if limit < 6 * 1024 * 1024:
            raise InvalidArgument(f"Minimum memory limit allowed is 6MB, got {limit} bytes")
        memory["limit"] = limit
        # Docker's default: swap (memory plus swap) is twice the memory limit.
        if swap == 0:
            memory["swap"] = 2 * limit
        elif swap == -1:
            memory["swap"] = -1
        elif swap < limit:
            raise InvalidArgument(f"Minimum memoryswap limit should be larger than memory limit: {swap} < {limit}")
        else:
            memory["swap"] = swap
    elif swap > 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit")
    if host_config.get("MemoryReservation"):
        memory["reservation"] = host_config["MemoryReservation"]
    if memory:
        result["memory"] = memory

    cpu: dict[str, Any] = {}
    nano = host_config.get("NanoCpus") or 0
    if nano:
        if nano < 0 or nano > (os.cpu_count() or 1) * 1_000_000_000:
            raise InvalidArgument(
                f"Range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are only {os.cpu_count()} CPUs available"
            )
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = nano * CPU_PERIOD // 1_000_000_000
    if host_config.get("CpuShares"):
        cpu["shares"] = host_config["CpuShares"]
    if host_config.get("CpuPeriod"):
        cpu["period"] = host_config["CpuPeriod"]
    if host_config.get("CpuQuota"):
        cpu["quota"] = host_config["CpuQuota"]
    if host_config.get("CpusetCpus"):
        cpu["cpus"] = host_config["CpusetCpus"]
    if host_config.get("CpusetMems"):
        cpu["mems"] = host_config["CpusetMems"]
    if cpu:
        result["cpu"] = cpu
    pids = host_config.get("PidsLimit")
    if pids and pids > 0:
        result["pids"] = {"limit": pids}
    return result


def host_devices() -> list[dict[str, Any]]:
    """Return the host's character and block devices directly under /dev, for privileged containers."""
    import stat

    found = []
    for name in sorted(os.listdir("/dev")):
        path = f"/dev/{name}"
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISCHR(info.st_mode):
            kind = "c"
        elif stat.S_ISBLK(info.st_mode):
            kind = "b"
        else:
            continue
        if name in ("console", "ptmx", "tty") or name.startswith("tty"):
            # The container gets its own console, ptmx and tty.
            continue
        found.append({
            "path": path, "type": kind, "major": os.major(info.st_rdev), "minor": os.minor(info.st_rdev),
            "fileMode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid,
        })
    return found


# -- the spec ----------------------------------------------------------------------------


def network_mode(host_config: dict[str, Any]) -> str:
    """Return the kind of network a ``NetworkMode`` gives: ``none``, ``host``, ``container`` or ``bridge``.

    ``bridge`` covers ``default``, ``bridge`` and user-defined network names:
    the container gets its own network namespace, which the network service
    plugs into the network. ``container:<name or ID>`` joins another
    container's namespace.
    """
    mode = host_config.get("NetworkMode") or "default"
    if mode in ("none", "host"):
        return mode
    if mode.startswith("container:"):
        if not mode.removeprefix("container:"):
            raise InvalidArgument(f"invalid network mode {mode!r}: container: needs a container name or ID")
        return "container"
    return "bridge"


def generate(
    config: dict[str, Any],
    host_config: dict[str, Any],
    *,
    container_id: str,
    rootfs: str,
    user: dict[str, Any],
    mounts: list[dict[str, Any]],
    init_binary: str | None = None,
    host_hostname: str = "",
    network_namespace: str | None = None,
) -> dict[str, Any]:
    """Return the OCI runtime spec for a container; ``mounts`` are added after the default ones, in order.

    ``network_namespace`` is the path of a network namespace to join
    (``/proc/<pid>/ns/net`` of another container) instead of a new one.
    """
    from dockyard.runtime import spec as runtime_spec

    privileged = bool(host_config.get("Privileged"))
    security = security_options(host_config.get("SecurityOpt"))
    caps = capabilities(host_config.get("CapAdd"), host_config.get("CapDrop"), privileged)
    host_network = network_mode(host_config) == "host"

    spec = runtime_spec.default_spec(args=command_args(config), terminal=bool(config.get("Tty")), rootfs=rootfs)
    process = spec["process"]
    env = list(config.get("Env") or [])
    hostname = host_hostname if host_network else config.get("Hostname") or container_id[:12]
    if not any(entry.startswith("HOSTNAME=") for entry in env):
        env.append(f"HOSTNAME={hostname}")
    if config.get("Tty") and not any(entry.startswith("TERM=") for entry in env):
        env.append("TERM=xterm")
    process["env"] = env
    process["cwd"] = config.get("WorkingDir") or "/"
    process["user"] = user
    process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    process["rlimits"] = rlimits(host_config.get("Ulimits"))
    process["noNewPrivileges"] = security["no_new_privileges"]
    if config.get("Tty") and host_config.get("ConsoleSize"):
        height, width = host_config["ConsoleSize"][:2]
        if height and width:
            process["consoleSize"] = {"height": int(height), "width": int(width)}
    if host_config.get("OomScoreAdj"):
        process["oomScoreAdj"] = host_config["OomScoreAdj"]
    if host_config.get("Init"):
        if not init_binary:
            raise InvalidArgument("--init needs docker-init or tini-static installed on the host; neither was found")
        process["args"] = [INIT_PATH_IN_CONTAINER, "--", *process["args"]]
        mounts = [*mounts, bind_mount(init_binary, INIT_PATH_IN_CONTAINER, readonly=True)]

    spec["hostname"] = "" if host_network else hostname
    if config.get("Domainname") and not host_network:
        spec["domainname"] = config["Domainname"]
    spec["root"]["readonly"] = bool(host_config.get("ReadonlyRootfs"))

    linux = spec["linux"]
    linux["cgroupsPath"] = f"/dockyard/{container_id}"
    linux["resources"] = {**resources(host_config), "devices": [{"allow": False, "access": "rwm"}]}
    if host_config.get("ShmSize"):
        for entry in spec["mounts"]:
            if entry["destination"] == "/dev/shm":
                entry["options"] = [option for option in entry["options"] if not option.startswith("size=")]
                entry["options"].append(f"size={int(host_config['ShmSize']) // 1024}k")
    if host_network:
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "uts")]
        # A new sysfs needs CAP_SYS_ADMIN in the network namespace it shows,
        # which is the host's here, so /sys is a bind mount of the host's /sys.
        spec["mounts"] = [
            bind_mount("/sys", "/sys", readonly=not privileged) if entry["destination"] == "/sys" else entry
            for entry in spec["mounts"]
        ]
    elif network_namespace:
        for entry in linux["namespaces"]:
            if entry["type"] == "network":
                entry["path"] = network_namespace
    if privileged:
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        linux.pop("seccomp", None)
        linux["devices"] = host_devices()
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        for entry in spec["mounts"]:
            if entry["destination"] in ("/sys", "/sys/fs/cgroup"):
                entry["options"] = [option for option in entry["options"] if option != "ro"]
    else:
        seccomp = security["seccomp"]
        if seccomp == "unconfined":
            linux.pop("seccomp", None)
        elif seccomp is not None:
            linux["seccomp"] = seccomp_from_docker_profile(seccomp, caps)
        else:
            linux["seccomp"] = runtime_spec.seccomp_profile(caps)
    for entry in host_config.get("Sysctls") or {}:
        linux.setdefault("sysctl", {})[entry] = str(host_config["Sysctls"][entry])

    # Later mounts cover earlier ones at the same destination, so a user's
    # --tmpfs /dev/shm replaces the default.
    destinations = {entry["destination"] for entry in mounts}
    spec["mounts"] = [entry for entry in spec["mounts"] if entry["destination"] not in destinations] + mounts
    return spec


def find_init_binary() -> str | None:
    """Return a statically linked tini on the host (docker-init, tini-static), or None.

    The binary is bind-mounted into images that may have no C library, so a
    dynamically linked tini does not qualify.
    """
    for candidate in ("/usr/bin/docker-init", "/usr/bin/tini-static", "/usr/local/bin/docker-init", "/usr/bin/tini"):
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and _is_static(real):
            return real
    return None


def _is_static(path: str) -> bool:
    """Tell whether an ELF file has no program interpreter (PT_INTERP), that is, is statically linked."""
    import struct

    try:
        with open(path, "rb") as file:
            header = file.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2:
                return False
            program_offset, = struct.unpack_from("<Q", header, 0x20)
            entry_size, count = struct.unpack_from("<HH", header, 0x36)
            file.seek(program_offset)
            table = file.read(entry_size * count)
    except OSError:
        return False
    for index in range(count):
        kind, = struct.unpack_from("<I", table, index * entry_size)
        if kind == 3:  # PT_INTERP
            return False
    return True

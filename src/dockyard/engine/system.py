"""Engine and host facts for ``version`` and ``info``, in the Engine API's shapes.

``version(engine)`` returns a ``SystemVersion`` object, ``info(engine)`` a
``SystemInfo`` object and ``disk_usage(engine)`` a ``SystemDataUsageResponse``.
The CLI's ``version`` and ``info`` and the API's ``/version``, ``/info`` and
``/system/df`` render them.
"""

from __future__ import annotations

import os
import platform as stdlib_platform
import socket
from typing import TYPE_CHECKING, Any

from dockyard import __version__

if TYPE_CHECKING:
    from dockyard.engine import Engine

MIN_API_VERSION = "1.40"
API_VERSION = "1.50"
STORAGE_DRIVER = "overlay2"
DEFAULT_RUNTIME = "dockyard"
LOGGING_DRIVER = "json-file"
DOCKER_HUB_INDEX = "https://index.docker.io/v1/"


def _kernel_version() -> str:
    return stdlib_platform.release()


def _operating_system() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as file:
            for line in file:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _memory_total() -> int:
    from dockyard.engine.stats import host_memory

    return host_memory()


def cgroup_version() -> str:
    """Return "2" on a pure cgroup v2 host and "1" on a v1 or hybrid one, as Docker reports it."""
    from dockyard.errors import RuntimeFailure
    from dockyard.runtime import cgroups

    try:
        return "2" if cgroups.mode(cgroups.hierarchies()) == "v2" else "1"
    except RuntimeFailure:
        return ""


def version(engine: "Engine") -> dict[str, Any]:
    """Return the ``SystemVersion`` object of ``GET /version``."""
    from dockyard.image import platform

    host = platform.host()
    details = {
        "ApiVersion": API_VERSION,
        "Arch": host.architecture,
        "KernelVersion": _kernel_version(),
        "MinAPIVersion": MIN_API_VERSION,
        "Os": host.os,
    }
    return {
        "Platform": {"Name": f"dockyard {__version__}"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": host.os,
        "Arch": host.architecture,
        "KernelVersion": _kernel_version(),
        "BuildTime": "",
    }


def info(engine: "Engine") -> dict[str, Any]:
    """Return the ``SystemInfo`` object of ``GET /info``: counts from the state database and host facts."""
    containers = engine.containers.list(all=True)
    states = [summary["State"] for summary in containers]
    running = states.count("running") + states.count("restarting")
    paused = states.count("paused")
    images = engine.images.list()
    cgroups = cgroup_version()
    registries = {
        domain: {"Name": domain, "Mirrors": list(settings.mirrors), "Secure": not settings.insecure, "Official": False}
        for domain, settings in engine.config.registries.items()
    }
    return {
        "ID": "",
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": len(images),
        "Driver": STORAGE_DRIVER,
        "DriverStatus": [["Backing Filesystem", "overlayfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": [LOGGING_DRIVER]},
        "MemoryLimit": True,
        "SwapLimit": True,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": _read_flag("/proc/sys/net/ipv4/ip_forward"),
        "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": _now(),
        "LoggingDriver": LOGGING_DRIVER,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroups,
        "NEventsListener": 0,
        "KernelVersion": _kernel_version(),
        "OperatingSystem": _operating_system(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": stdlib_platform.machine(),
        "IndexServerAddress": DOCKER_HUB_INDEX,
        "RegistryConfig": {"IndexConfigs": registries, "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
                           "Mirrors": list(engine.config.registry("docker.io").mirrors)},
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _memory_total(),
        "DockerRootDir": str(engine.config.root),
        "HttpProxy": os.environ.get("HTTP_PROXY", ""),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
        "NoProxy": os.environ.get("NO_PROXY", ""),
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": _runtimes(),
        "DefaultRuntime": DEFAULT_RUNTIME,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": False,
        "Isolation": "",
        "InitBinary": "docker-init",
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
    }


def disk_usage(engine: "Engine") -> dict[str, Any]:
    """Return the ``SystemDataUsageResponse`` of ``GET /system/df``: images, containers and volumes with sizes."""
    from dockyard.engine.rootfs import directory_size
    from dockyard.engine.volumes import volume_path

    images = engine.images.list()
    containers = engine.containers.list(all=True, size=True)
    used = engine.volumes.used_volumes()
    volumes = []
    for volume in engine.volumes.list():
        size = directory_size(volume_path(engine.config.root, volume["Name"]))
        volumes.append({**volume, "UsageData": {"Size": size, "RefCount": len(used.get(volume["Name"], []))}})
    return {
        # Layers shared by several images are counted once per image here, so this may exceed the disk used.
        "LayersSize": sum(image["Size"] for image in images),
        "Images": images,
        "Containers": containers,
        "Volumes": volumes,
        "BuildCache": [],
    }


def _runtimes() -> dict[str, dict[str, str]]:
    """Return the OCI runtimes found on this host: the built-in one, and runc and crun where installed."""
    from dockyard.engine import runtimes

    return runtimes.found()


def _read_flag(path: str) -> bool:
    try:
        with open(path, encoding="ascii") as file:
            return file.read().strip() == "1"
    except OSError:
        return False


def _now() -> str:
    import time

    from dockyard.engine.logs import format_time

    return format_time(time.time_ns())

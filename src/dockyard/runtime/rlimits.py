"""process.rlimits: resource limits set in the container's init before exec."""

from __future__ import annotations

import logging
import resource
from typing import Any

from dockyard.errors import RuntimeFailure

log = logging.getLogger(__name__)

# Spec names to the resource module's constants, where this Python has them.
LIMITS = {
    name: getattr(resource, name)
    for name in (
        "RLIMIT_AS",
        "RLIMIT_CORE",
        "RLIMIT_CPU",
        "RLIMIT_DATA",
        "RLIMIT_FSIZE",
        "RLIMIT_LOCKS",
        "RLIMIT_MEMLOCK",
        "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE",
        "RLIMIT_NOFILE",
        "RLIMIT_NPROC",
        "RLIMIT_RSS",
        "RLIMIT_RTPRIO",
        "RLIMIT_RTTIME",
        "RLIMIT_SIGPENDING",
        "RLIMIT_STACK",
    )
    if hasattr(resource, name)
}

# The spec writes "unlimited" as the largest uint64; the resource module wants RLIM_INFINITY.
_UNLIMITED = 2**64 - 1


def _value(number: int) -> int:
    return resource.RLIM_INFINITY if number >= _UNLIMITED or number < 0 else number


def _show(number: int) -> str:
    return "unlimited" if number == resource.RLIM_INFINITY else str(number)


def check(rlimits: list[dict[str, Any]]) -> None:
    """Raise RuntimeFailure for an unknown limit type or a soft limit above its hard limit."""
    for entry in rlimits:
        name = entry.get("type")
        if name not in LIMITS:
            raise RuntimeFailure(f"unknown rlimit type {name!r} in process.rlimits")
        soft, hard = _value(entry.get("soft", 0)), _value(entry.get("hard", 0))
        if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
            raise RuntimeFailure(f"{name}: soft limit {_show(soft)} is above the hard limit {_show(hard)}")


def apply(rlimits: list[dict[str, Any]]) -> None:
    """Set each limit; raising a hard limit needs CAP_SYS_RESOURCE, and its absence is reported clearly."""
    check(rlimits)
    for entry in rlimits:
        name = entry["type"]
        soft, hard = _value(entry.get("soft", 0)), _value(entry.get("hard", 0))
        log.debug("setrlimit %s soft=%s hard=%s", name, _show(soft), _show(hard))
        try:
            resource.setrlimit(LIMITS[name], (soft, hard))
        except (ValueError, OSError) as error:
            _current_soft, current_hard = resource.getrlimit(LIMITS[name])
            if hard == resource.RLIM_INFINITY or (current_hard != resource.RLIM_INFINITY and hard > current_hard):
                raise RuntimeFailure(
                    f"{name}: the requested hard limit {_show(hard)} is above the current hard limit "
                    f"{_show(current_hard)}, and raising it needs CAP_SYS_RESOURCE"
                ) from None
            raise RuntimeFailure(f"{name}: setrlimit(soft={_show(soft)}, hard={_show(hard)}) failed: {error}") from None

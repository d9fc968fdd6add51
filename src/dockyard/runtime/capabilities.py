"""Linux capability names and the five capability sets of a process.

Names are spelled as the runtime spec spells them (``CAP_NET_RAW``); numbers
are the kernel's, from <linux/capability.h>.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from dockyard.errors import RuntimeFailure
from dockyard.runtime import libc

log = logging.getLogger(__name__)

CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_DAC_READ_SEARCH",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_IPC_LOCK",
            "CAP_IPC_OWNER",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN",
            "CAP_SYS_BOOT",
            "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE",
            "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG",
            "CAP_MKNOD",
            "CAP_LEASE",
            "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE",
            "CAP_MAC_ADMIN",
            "CAP_SYSLOG",
            "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND",
            "CAP_AUDIT_READ",
            "CAP_PERFMON",
            "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        ]
    )
}

# The capabilities Docker grants a container by default.
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def last_cap() -> int:
    """Return the highest capability number the running kernel supports."""
    with open("/proc/sys/kernel/cap_last_cap") as file:
        return int(file.read())


def mask(names: Iterable[str]) -> int:
    """Return the bit mask of capability names; raises RuntimeFailure on an unknown name."""
    result = 0
    for name in names:
        try:
            result |= 1 << CAPABILITIES[name]
        except KeyError:
            raise RuntimeFailure(f"unknown capability {name!r} in process.capabilities") from None
    return result


def drop_bounding(keep: int) -> None:
    """Drop every capability outside ``keep`` from the bounding set; needs CAP_SETPCAP."""
    for number in range(last_cap() + 1):
        if keep & (1 << number):
            continue
        if libc.prctl(libc.PR_CAPBSET_READ, number):
            libc.prctl(libc.PR_CAPBSET_DROP, number)


def apply(spec_capabilities: dict[str, Any] | None) -> None:
    """Set the effective, permitted, inheritable and ambient sets from process.capabilities.

    The bounding set is dropped separately and earlier (``drop_bounding``),
    while the process is still root with CAP_SETPCAP.
    """
    sets = spec_capabilities or {}
    known = (1 << (last_cap() + 1)) - 1
    effective = mask(sets.get("effective", [])) & known
    permitted = mask(sets.get("permitted", [])) & known
    inheritable = mask(sets.get("inheritable", [])) & known
    log.debug("capset effective=%#x permitted=%#x inheritable=%#x", effective, permitted, inheritable)
    libc.capset(effective, permitted, inheritable)

    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in sets.get("ambient", []):
        number = mask([name]).bit_length() - 1
        if number > last_cap():
            continue
        # The kernel accepts an ambient capability only when it is both
        # permitted and inheritable; runc skips the others the same way.
        if not (permitted & inheritable) & (1 << number):
            log.debug("ambient %s skipped: not in both permitted and inheritable", name)
            continue
        libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, number)

"""OCI runtime-spec ``config.json``: loading a bundle's and generating Docker's defaults.

``default_spec`` produces what ``runc spec`` produces, adjusted to Docker's
defaults: 14 capabilities, Docker's masked and read-only paths, and a seccomp
profile in the spec's ``linux.seccomp`` format. ``seccomp_profile`` builds
that profile for a given capability set, so the engine can pass
``--cap-add`` through to the filter.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

from dockyard.errors import RuntimeFailure
from dockyard.runtime.capabilities import DEFAULT_CAPABILITIES

OCI_VERSION = "1.2.0"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]

READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]


def default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]


# Syscalls that Docker's default seccomp profile blocks for every container,
# whatever its capabilities, as listed in Docker's seccomp documentation.
ALWAYS_BLOCKED = [
    "add_key",
    "create_module",
    "get_kernel_syms",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "nfsservctl",
    "query_module",
    "request_key",
    "swapon",
    "swapoff",
    "sysfs",
    "_sysctl",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
]

# Syscalls that Docker's default profile blocks unless the container has the
# capability that guards them in the kernel.
BLOCKED_UNLESS_CAPABILITY: dict[str, list[str]] = {
    "CAP_SYS_ADMIN": [
        "bpf",
        "lookup_dcookie",
        "mount",
        "name_to_handle_at",
        "perf_event_open",
        "pivot_root",
        "quotactl",
        "setns",
        "umount",
        "umount2",
        "unshare",
    ],
    "CAP_SYS_PTRACE": ["kcmp", "process_vm_readv", "process_vm_writev", "ptrace"],
    "CAP_SYS_MODULE": ["delete_module", "finit_module", "init_module"],
    "CAP_SYS_BOOT": ["reboot"],
    "CAP_SYS_TIME": ["clock_adjtime", "clock_settime", "settimeofday", "stime"],
    "CAP_SYS_RAWIO": ["ioperm", "iopl"],
    "CAP_SYS_NICE": ["get_mempolicy", "mbind", "move_pages", "set_mempolicy"],
    "CAP_SYS_PACCT": ["acct"],
    "CAP_DAC_READ_SEARCH": ["open_by_handle_at"],
}

# clone(2) flags that create namespaces; clone with any of them needs CAP_SYS_ADMIN.
NAMESPACE_CLONE_FLAGS = [
    0x00000080,  # CLONE_NEWTIME
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
]

# Execution domains the profile keeps: PER_LINUX, PER_LINUX32, UNAME26 and PER_LINUX32|UNAME26.
ALLOWED_PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008]


def _errno_rule(names: list[str], code: int = errno.EPERM, args: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": code}
    if args:
        rule["args"] = args
    return rule


def _personality_rules() -> list[dict[str, Any]]:
    # libseccomp allows one comparison per argument in a rule, and rules are
    # ORed, so "any value but the allowed ones" is written as: above the
    # largest allowed value, or any bit set that no allowed value has.
    # NOTE: this also blocks the query personality(0xffffffff), which Docker's
    # allowlist profile permits.
    largest = max(ALLOWED_PERSONALITIES)
    allowed_bits = 0
    for value in ALLOWED_PERSONALITIES:
        allowed_bits |= value
    rules = [_errno_rule(["personality"], args=[{"index": 0, "value": largest, "op": "SCMP_CMP_GT"}])]
    for bit in range(largest.bit_length()):
        flag = 1 << bit
        if flag & allowed_bits:
            continue
        rules.append(
            _errno_rule(["personality"], args=[{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}])
        )
    return rules


def seccomp_profile(capabilities: list[str] | None = None) -> dict[str, Any]:
    """Build Docker's default seccomp restrictions as a blocklist for a container's bounding set.

    The result allows every syscall except those Docker's documentation lists
    as blocked by its default profile, which return EPERM. Capabilities in
    ``capabilities`` lift the blocks that the kernel guards with them (with
    CAP_SYS_ADMIN, ``mount`` and namespace-creating ``clone`` are allowed).
    """
    granted = set(DEFAULT_CAPABILITIES if capabilities is None else capabilities)
    blocked = list(ALWAYS_BLOCKED)
    for capability, names in BLOCKED_UNLESS_CAPABILITY.items():
        if capability not in granted:
            blocked.extend(names)
    rules = [_errno_rule(sorted(blocked))]
    if "CAP_SYS_ADMIN" not in granted:
        for flag in NAMESPACE_CLONE_FLAGS:
            rules.append(
                _errno_rule(["clone"], args=[{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}])
            )
        # clone3 passes its flags in a struct that seccomp cannot read, so it
        # fails with ENOSYS and the C library falls back to clone.
        rules.append(_errno_rule(["clone3"], errno.ENOSYS))
    rules.extend(_personality_rules())
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    }


def default_spec(args: list[str] | None = None, terminal: bool = False, rootfs: str = "rootfs") -> dict[str, Any]:
    """Return a ``config.json`` document with Docker's defaults, as ``runc spec`` writes one."""
    capabilities = list(DEFAULT_CAPABILITIES)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": "dockyard",
        "mounts": default_mounts(),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"},
            ],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": seccomp_profile(capabilities),
        },
    }


def load(bundle: Path) -> dict[str, Any]:
    """Read and check ``config.json`` in a bundle; raises RuntimeFailure naming the problem."""
    path = Path(bundle) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise RuntimeFailure(f"bundle {bundle} has no config.json") from None
    except (OSError, ValueError) as error:
        raise RuntimeFailure(f"cannot read {path}: {error}") from None
    if not isinstance(config, dict):
        raise RuntimeFailure(f"{path}: expected a JSON object")

    version = config.get("ociVersion", "")
    if not isinstance(version, str) or not version.startswith("1."):
        raise RuntimeFailure(f"{path}: unsupported ociVersion {version!r}, expected 1.x")
    process = config.get("process")
    if not isinstance(process, dict) or not process.get("args"):
        raise RuntimeFailure(f"{path}: process.args is missing or empty")
    if not process.get("cwd", "/").startswith("/"):
        raise RuntimeFailure(f"{path}: process.cwd {process['cwd']!r} is not an absolute path")
    if "root" not in config or not config["root"].get("path"):
        raise RuntimeFailure(f"{path}: root.path is missing")

    for name in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"):
        if config.get("hooks", {}).get(name):
            raise RuntimeFailure(f"{path}: hooks.{name} is not supported by dockyard-runtime")
    linux = config.get("linux", {})
    for key in ("apparmorProfile", "selinuxLabel"):
        if config.get("process", {}).get(key):
            raise RuntimeFailure(f"{path}: process.{key} is not supported by dockyard-runtime")
    if linux.get("mountLabel"):
        raise RuntimeFailure(f"{path}: linux.mountLabel is not supported by dockyard-runtime")
    return config


def rootfs_path(bundle: Path, config: dict[str, Any]) -> Path:
    """Return the absolute root filesystem path; root.path is relative to the bundle unless absolute."""
    root = Path(config["root"]["path"])
    return root if root.is_absolute() else (Path(bundle) / root).resolve()

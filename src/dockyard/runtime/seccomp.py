"""Load a ``linux.seccomp`` filter from the runtime spec through libseccomp.

libseccomp (``libseccomp.so.2``) compiles the rules to BPF for every listed
architecture. Action and comparison values are those of <seccomp.h> in
libseccomp 2.5.
"""

from __future__ import annotations

import ctypes
import errno
import logging
from typing import Any

from dockyard.errors import RuntimeFailure

log = logging.getLogger(__name__)

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def _trace_action(code: int) -> int:
    return 0x7FF00000 | (code & 0xFFFF)


COMPARISONS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr: whether seccomp_load also sets no_new_privs.
SCMP_FLTATR_CTL_NNP = 3


class ArgComparison(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


_library: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """Load libseccomp.so.2 once and declare the functions used here."""
    global _library
    if _library is None:
        try:
            loaded = ctypes.CDLL("libseccomp.so.2")
        except OSError as error:
            raise RuntimeFailure(f"linux.seccomp needs libseccomp.so.2, which failed to load: {error}") from None
        loaded.seccomp_init.restype = ctypes.c_void_p
        loaded.seccomp_init.argtypes = [ctypes.c_uint32]
        loaded.seccomp_release.argtypes = [ctypes.c_void_p]
        loaded.seccomp_load.argtypes = [ctypes.c_void_p]
        loaded.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        loaded.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        loaded.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        loaded.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        loaded.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        loaded.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(ArgComparison),
        ]
        _library = loaded
    return _library


def action_value(name: str, errno_ret: int | None, default_errno: int | None = None) -> int:
    """Return libseccomp's value for a spec action name such as ``SCMP_ACT_ERRNO``."""
    if name == "SCMP_ACT_ALLOW":
        return SCMP_ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return _errno_action(errno_ret if errno_ret is not None else (default_errno or errno.EPERM))
    if name == "SCMP_ACT_TRACE":
        return _trace_action(errno_ret if errno_ret is not None else (default_errno or errno.EPERM))
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return SCMP_ACT_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return SCMP_ACT_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return SCMP_ACT_TRAP
    if name == "SCMP_ACT_LOG":
        return SCMP_ACT_LOG
    raise RuntimeFailure(f"unsupported seccomp action {name!r} in linux.seccomp")


def load(config: dict[str, Any]) -> None:
    """Build the filter described by a spec's ``linux.seccomp`` and load it into this thread.

    libseccomp's CTL_NNP attribute is cleared so that it does not set
    no_new_privs itself, which stays under ``process.noNewPrivileges``. Loading without no_new_privs
    needs CAP_SYS_ADMIN, so the caller loads the filter before dropping it.
    Syscall names this libseccomp does not know are skipped, as runc does.
    """
    if config.get("listenerPath") or "SCMP_ACT_NOTIFY" in str(config):
        raise RuntimeFailure("seccomp user notification (SCMP_ACT_NOTIFY, listenerPath) is not supported")
    if config.get("flags"):
        raise RuntimeFailure(f"seccomp flags {config['flags']} are not supported")
    lib = library()
    default_errno = config.get("defaultErrnoRet")
    default_action = action_value(config.get("defaultAction", "SCMP_ACT_ALLOW"), default_errno)
    context = lib.seccomp_init(default_action)
    if not context:
        raise RuntimeFailure(f"seccomp_init failed for defaultAction {config.get('defaultAction')!r}")
    try:
        result = lib.seccomp_attr_set(context, SCMP_FLTATR_CTL_NNP, 0)
        if result < 0:
            raise RuntimeFailure(f"seccomp_attr_set(CTL_NNP) failed: {errno.errorcode.get(-result, result)}")
        for arch in config.get("architectures", []):
            token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token == 0:
                raise RuntimeFailure(f"unknown seccomp architecture {arch!r} in linux.seccomp.architectures")
            result = lib.seccomp_arch_add(context, token)
            if result < 0 and -result != errno.EEXIST:
                raise RuntimeFailure(f"seccomp_arch_add({arch}) failed: {errno.errorcode.get(-result, result)}")
        for rule in config.get("syscalls", []):
            _add_rule(lib, context, rule, default_action, default_errno)
        log.debug("seccomp_load with default action %#x", default_action)
        result = lib.seccomp_load(context)
        if result < 0:
            raise RuntimeFailure(f"seccomp_load failed: {errno.errorcode.get(-result, result)}")
    finally:
        lib.seccomp_release(context)


def _add_rule(
    lib: ctypes.CDLL, context: int, rule: dict[str, Any], default_action: int, default_errno: int | None
) -> None:
    action = action_value(rule["action"], rule.get("errnoRet"), default_errno)
    if action == default_action:
        # libseccomp rejects a rule whose action equals the default; it would change nothing.
        return
    comparisons = rule.get("args") or []
    array = (ArgComparison * max(len(comparisons), 1))()
    for index, comparison in enumerate(comparisons):
        try:
            op = COMPARISONS[comparison["op"]]
        except KeyError:
            raise RuntimeFailure(f"unknown seccomp comparison {comparison.get('op')!r} in linux.seccomp") from None
        array[index] = ArgComparison(comparison["index"], op, comparison["value"], comparison.get("valueTwo", 0))
    for name in rule.get("names", []):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number == -1:  # __NR_SCMP_ERROR: unknown to this libseccomp
            log.debug("seccomp: skipping unknown syscall %s", name)
            continue
        result = lib.seccomp_rule_add_array(context, action, number, len(comparisons), array)
        if result < 0:
            reason = errno.errorcode.get(-result, str(result))
            raise RuntimeFailure(f"seccomp rule for {name} ({rule['action']}, args {comparisons}) failed: {reason}")

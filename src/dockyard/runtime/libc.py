"""ctypes bindings for the libc calls and syscalls that the runtime needs.

Python 3.11's ``os`` module has no ``unshare``, ``setns``, ``mount`` or
``pivot_root``, so they are called here through libc. Each wrapper raises
``OSError`` with the errno and the arguments that failed; the bring-up turns
that into a ``RuntimeFailure`` naming its step.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

# The C library is loaded in every Python process already: its symbols are in the
# global namespace, so no search for the file (ctypes.util.find_library runs ldconfig) is needed.
_libc = ctypes.CDLL(None, use_errno=True)

# Namespace flags for clone(2), unshare(2) and setns(2), from <linux/sched.h>.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags, from <linux/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2

# prctl(2) options, from <linux/prctl.h>.
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# Syscalls without a glibc wrapper, by machine.
_SYSCALL_NUMBERS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91},
}


def _check(result: int, call: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{call}: {os.strerror(code)}")
    return result


def _syscall_number(name: str) -> int:
    machine = platform.machine()
    try:
        return _SYSCALL_NUMBERS[machine][name]
    except KeyError:
        raise OSError(errno.ENOSYS, f"no syscall number for {name} on {machine}") from None


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({fd}, {nstype:#x})")


def _encode(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = _libc.mount(
        _encode(source), _encode(target), _encode(fstype), ctypes.c_ulong(flags), _encode(data)
    )
    _check(result, f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x}, {data!r})")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_encode(target), ctypes.c_int(flags)), f"umount2({target!r}, {flags})")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _syscall_number("pivot_root")
    result = _libc.syscall(ctypes.c_long(number), _encode(new_root), _encode(put_old))
    _check(result, f"pivot_root({new_root!r}, {put_old!r})")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname({name!r})")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), f"setdomainname({name!r})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    args = [ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5)]
    return _check(_libc.prctl(ctypes.c_int(option), *args), f"prctl({option}, {arg2}, {arg3})")


def set_process_name(name: bytes) -> None:
    """Set the calling thread's name, which /proc/PID/comm shows (15 bytes at most; the kernel copies it)."""
    buffer = ctypes.create_string_buffer(name[:15])
    _check(_libc.prctl(ctypes.c_int(PR_SET_NAME), ctypes.cast(buffer, ctypes.c_void_p), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl(PR_SET_NAME, {name!r})")


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


# _LINUX_CAPABILITY_VERSION_3: 64-bit sets split into two 32-bit words.
CAPABILITY_VERSION_3 = 0x20080522


def capget() -> tuple[int, int, int]:
    """Return this thread's (effective, permitted, inheritable) capability masks."""
    header = CapHeader(CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    number = _syscall_number("capget")
    _check(_libc.syscall(ctypes.c_long(number), ctypes.byref(header), data), "capget")
    return tuple(  # type: ignore[return-value]
        getattr(data[0], name) | (getattr(data[1], name) << 32)
        for name in ("effective", "permitted", "inheritable")
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = CapHeader(CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    for word in (0, 1):
        shift = 32 * word
        data[word].effective = (effective >> shift) & 0xFFFFFFFF
        data[word].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[word].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    number = _syscall_number("capset")
    result = _libc.syscall(ctypes.c_long(number), ctypes.byref(header), data)
    _check(result, f"capset(effective={effective:#x}, permitted={permitted:#x}, inheritable={inheritable:#x})")

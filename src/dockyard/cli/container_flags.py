"""The flags of ``run`` and ``create``, and their conversion into a container create body.

``add_create_flags`` declares Docker's flags on an argparse parser, keeping
every value as the string the user typed. ``build_create_request`` then turns
the parsed namespace into a dict shaped like the body of the Engine API's
``POST /containers/create`` (``ContainerCreateRequest``: ``ContainerConfig``
fields at the top level, ``HostConfig`` inside), with Docker's field names
and units. Converting after parsing, instead of with argparse ``type=``
functions, lets every bad value raise ``FlagError`` with Docker's wording:
``invalid argument "12q" for "-m, --memory" flag: invalid size: '12q'``.

The ``parse_*`` functions are pure: a string in, a value out, or
``InvalidArgument`` with the reason. Each follows the parser the Docker CLI
uses for that flag (go-units for sizes and ulimits, go-connections for port
specs, the CLI's own ``opts`` package for env files, mounts and volumes).

Only the standard library is imported at module level, because every
``dockyard`` command imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from dockyard.errors import InvalidArgument


class FlagError(InvalidArgument):
    """A flag value that does not parse, worded as the Docker CLI words it."""

    def __init__(self, flag: str, value: str, reason: str) -> None:
        super().__init__(f'invalid argument "{value}" for "{flag}" flag: {reason}')
        self.flag = flag
        self.value = value
        self.reason = reason


# -- sizes, CPUs and limits ----------------------------------------------------------

# go-units RAMInBytes: a decimal number, an optional space, then an optional
# binary unit prefix, an optional "i" and an optional "b" ("512m", "1.5GiB", "10b").
_RAM_SIZE = re.compile(r"(\d+(?:\.\d+)*) ?([kmgtp])?i?b?", re.IGNORECASE)
_BINARY_MULTIPLIERS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_memory_size(text: str) -> int:
    """Parse a size with binary units (``b k m g t p``, any case) into bytes, as ``--memory`` does."""
    match = _RAM_SIZE.fullmatch(text)
    if not match:
        raise InvalidArgument(f"invalid size: '{text}'")
    number, unit = match.groups()
    try:
        value = float(number)
    except ValueError:
        raise InvalidArgument(f"invalid size: '{text}'") from None
    # Go converts the float product to int64, truncating toward zero.
    return int(value * _BINARY_MULTIPLIERS[(unit or "").lower()])


def parse_memory_swap(text: str) -> int:
    """Parse ``--memory-swap``: ``-1`` for unlimited swap, otherwise a size as for ``--memory``."""
    if text == "-1":
        return -1
    return parse_memory_size(text)


def parse_nano_cpus(text: str) -> int:
    """Parse ``--cpus`` (a decimal number of CPUs) into nano-CPUs, rejecting more than 9 decimals."""
    from fractions import Fraction

    try:
        cpus = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise InvalidArgument(f"failed to parse {text} as a rational number") from None
    nano = cpus * 1_000_000_000
    if nano.denominator != 1:
        raise InvalidArgument("value is too precise")
    if nano < 0:
        raise InvalidArgument(f"CPU count must not be negative: {text}")
    return int(nano)


def parse_cpu_set(text: str) -> str:
    """Check a cpuset list such as ``0-3,5`` (CPUs or memory nodes) and return it unchanged."""
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", text):
        raise InvalidArgument(f"invalid list {text!r}: use numbers and ranges such as 0-3,5")
    return text


def parse_oom_score_adj(text: str) -> int:
    value = parse_int(text)
    if not -1000 <= value <= 1000:
        raise InvalidArgument(f"invalid value {value}, range for oom score adj is [-1000, 1000]")
    return value


def parse_sysctl(text: str) -> tuple[str, str]:
    """Parse ``--sysctl name=value`` (dots or slashes in the name, as sysctl(8) accepts)."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise InvalidArgument(f"sysctl '{text}' is not allowed: use NAME=VALUE")
    return name, value


def parse_int(text: str) -> int:
    """Parse a decimal integer as Go's ``strconv.ParseInt`` does (an optional sign, then digits)."""
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise InvalidArgument(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    return int(text)


# The resource names of setrlimit(2), as Docker spells them in --ulimit.
ULIMIT_NAMES = frozenset({
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
    "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
})


def parse_ulimit(text: str) -> dict[str, Any]:
    """Parse ``name=soft[:hard]`` into the Engine API's ``{"Name", "Soft", "Hard"}``; hard defaults to soft."""
    name, equals, limits = text.partition("=")
    if not equals:
        raise InvalidArgument(f"invalid ulimit argument: {text}")
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    soft_text, colon, hard_text = limits.partition(":")
    if colon and ":" in hard_text:
        raise InvalidArgument(f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`")
    soft = parse_int(soft_text)
    hard = parse_int(hard_text) if colon else soft
    if soft > hard:
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Soft": soft, "Hard": hard}


# -- environment and labels -------------------------------------------------------------

_WHITESPACE = " \t\n\v\f\r"


def parse_env(text: str, environ: Mapping[str, str]) -> str | None:
    """Resolve one ``-e`` value: ``NAME=value`` as given, bare ``NAME`` from ``environ``, None when unset there."""
    name, equals, _ = text.partition("=")
    if not name:
        raise InvalidArgument(f"invalid environment variable: {text}")
    if equals:
        return text
    if name in environ:
        return f"{name}={environ[name]}"
    return None


def parse_key_value_file(data: bytes, filename: str, environ: Mapping[str, str] | None) -> list[str]:
    """Parse an env file or label file into ``NAME=value`` strings, in file order.

    Leading whitespace is dropped from each line; blank lines and lines that
    start with ``#`` are skipped. The value is everything after the first
    ``=`` (``A=b=c`` sets ``A`` to ``b=c``) and keeps trailing whitespace. A
    bare ``NAME`` takes its value from ``environ`` and is skipped when unset
    there; with ``environ`` None (label files) it becomes ``NAME=``.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    entries: list[str] = []
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(f"{filename} contains invalid utf8 bytes at line {number}: {raw_line!r}") from None
        line = line.rstrip("\r").lstrip(_WHITESPACE)
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not name:
            raise InvalidArgument(f"no variable name on line '{line}' of {filename}")
        if any(character in _WHITESPACE for character in name):
            raise InvalidArgument(f"variable '{name}' contains whitespaces in {filename}")
        if equals:
            entries.append(f"{name}={value}")
        elif environ is None:
            entries.append(f"{name}=")
        elif name in environ:
            entries.append(f"{name}={environ[name]}")
    return entries


def read_key_value_file(path: str, flag: str, environ: Mapping[str, str] | None) -> list[str]:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise FlagError(flag, path, f"open {path}: {error.strerror.lower() if error.strerror else error}") from None
    try:
        return parse_key_value_file(data, path, environ)
    except InvalidArgument as error:
        raise FlagError(flag, path, str(error)) from None


def labels_to_dict(entries: Iterable[str]) -> dict[str, str]:
    """Turn ``key=value`` and bare ``key`` strings into a dict; a later key wins, as in Docker."""
    labels: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        labels[key] = value
    return labels


# -- ports ------------------------------------------------------------------------------------

PORT_PROTOCOLS = ("tcp", "udp", "sctp")


def parse_port_range(text: str) -> tuple[int, int]:
    """Parse ``80`` or ``8000-8010`` into the first and last port."""
    if not text:
        raise InvalidArgument("empty string specified for ports")
    start_text, dash, end_text = text.partition("-")
    numbers = []
    for part in (start_text, end_text) if dash else (start_text,):
        if not part.isdigit() or not part.isascii() or int(part) > 65535:
            raise InvalidArgument(f"invalid port value: {text}")
        numbers.append(int(part))
    start, end = numbers[0], numbers[-1]
    if end < start:
        raise InvalidArgument(f"invalid range specified for port: {text}")
    return start, end


def _valid_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_port_spec(text: str) -> list[tuple[str, dict[str, str]]]:
    """Parse one ``-p`` value into ``("8080/tcp", {"HostIp": ..., "HostPort": ...})`` pairs, one per container port.

    The forms are go-connections' ``[[ip:]host_port:]container_port[/proto]``,
    where either port may be a range (``8000-8010:80-90``) and an IPv6
    address is written in brackets (``[::1]:8600:8080``). A host range with a
    single container port (``8000-8010:80``) is kept as a range, for the
    engine to pick one free port from.
    """
    parts = text.split(":")
    container_part = parts[-1]
    if len(parts) == 1:
        ip, host_part = "", ""
    elif len(parts) == 2:
        ip, host_part = "", parts[0]
    else:
        ip, host_part = ":".join(parts[:-2]), parts[-2]
    container_part, slash, protocol = container_part.partition("/")
    protocol = protocol.lower() if slash else "tcp"
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip and not _valid_ip(ip):
        raise InvalidArgument(f"invalid IP address: {ip}")
    if not container_part:
        raise InvalidArgument(f"no port specified: {text}<empty>")
    try:
        start, end = parse_port_range(container_part)
    except InvalidArgument:
        raise InvalidArgument(f"invalid containerPort: {container_part}") from None
    host_start = host_end = 0
    if host_part:
        try:
            host_start, host_end = parse_port_range(host_part)
        except InvalidArgument:
            raise InvalidArgument(f"invalid hostPort: {host_part}") from None
        if end - start != host_end - host_start and end != start:
            raise InvalidArgument(
                f"invalid ranges specified for container and host Ports: {container_part} and {host_part}"
            )
    if protocol not in PORT_PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {protocol}")

    mappings = []
    for offset in range(end - start + 1):
        host_port = str(host_start + offset) if host_part else ""
        if host_part and start == end and host_start != host_end:
            host_port = f"{host_start}-{host_end}"
        mappings.append((f"{start + offset}/{protocol}", {"HostIp": ip, "HostPort": host_port}))
    return mappings


def parse_expose(text: str) -> list[tuple[str, dict[str, str]]]:
    """Parse ``--expose PORT[-END][/PROTOCOL]``: container ports only, never a host port or address."""
    if ":" in text:
        raise InvalidArgument(f"invalid port format for --expose: {text}")
    return parse_port_spec(text)


def parse_ports(specs: Iterable[str]) -> tuple[dict[str, dict], dict[str, list[dict[str, str]]]]:
    """Parse every ``-p`` value into ``ExposedPorts`` and ``PortBindings``."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        for port, binding in parse_port_spec(spec):
            exposed[port] = {}
            bindings.setdefault(port, []).append(binding)
    return exposed, bindings


# -- volumes and mounts --------------------------------------------------------------

VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
PROPAGATION_MODES = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


@dataclass(frozen=True)
class VolumeSpec:
    """One parsed ``-v`` value. ``kind`` is ``bind``, ``volume`` (named) or ``anonymous``."""

    kind: str
    source: str
    target: str
    mode: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.mode.split(",")

    def bind_string(self) -> str:
        """Return the ``HostConfig.Binds`` form, ``source:target[:mode]``."""
        text = f"{self.source}:{self.target}"
        return f"{text}:{self.mode}" if self.mode else text


def _check_volume_mode(mode: str, spec: str, kind: str) -> None:
    counts = {"access": 0, "label": 0, "propagation": 0, "copy": 0}
    for option in mode.split(","):
        if option in ("ro", "rw"):
            counts["access"] += 1
        elif option in ("z", "Z"):
            counts["label"] += 1
        elif option in PROPAGATION_MODES:
            counts["propagation"] += 1
        elif option == "nocopy" and kind != "bind":
            counts["copy"] += 1
        else:
            raise InvalidArgument(f"invalid mode: {mode}")
    if any(count > 1 for count in counts.values()):
        raise InvalidArgument(f"invalid mode: {mode}")


def _check_target(target: str, kind: str) -> None:
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' mount path must be absolute")
    if os.path.normpath(target) == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")


def parse_volume(text: str, cwd: str | None = None) -> VolumeSpec:
    """Parse one ``-v`` value: ``/ctr`` (anonymous), ``name:/ctr[:mode]`` or ``/host:/ctr[:mode]``.

    A host path that starts with ``.`` is made absolute against ``cwd``, as
    recent Docker CLIs do. The mode is a comma-separated list
    of ``ro``/``rw``, a propagation mode, ``z``/``Z`` and, for volumes, ``nocopy``.
    """
    parts = text.split(":")
    if len(parts) > 3 or any(not part for part in parts):
        raise InvalidArgument(f"invalid volume specification: '{text}'")
    if len(parts) == 1:
        _check_target(parts[0], "volume")
        return VolumeSpec("anonymous", "", parts[0], "")
    if len(parts) == 2 and parts[0].startswith("/") and _is_mode(parts[1]):
        # "/data:ro": an anonymous volume cannot carry a mode.
        raise InvalidArgument(f"invalid volume specification: '{text}'")

    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    if source.startswith("."):
        source = os.path.abspath(os.path.join(cwd or os.getcwd(), source))
    kind = "bind" if source.startswith("/") else "volume"
    if kind == "volume" and not VOLUME_NAME.fullmatch(source):
        raise InvalidArgument(
            f'create {source}: "{source}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
        )
    _check_target(target, kind)
    if mode:
        _check_volume_mode(mode, text, kind)
    return VolumeSpec(kind, source, target, mode)


def _is_mode(text: str) -> bool:
    try:
        _check_volume_mode(text, text, "volume")
    except InvalidArgument:
        return False
    return True


def _parse_bool(text: str, key: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "t"):
        return True
    if lowered in ("0", "false", "f"):
        return False
    raise InvalidArgument(f"invalid value for {key}: {text}")


def parse_mount(text: str) -> dict[str, Any]:
    """Parse one ``--mount`` value (CSV ``key=value`` fields) into an Engine API ``Mount`` object.

    ``type`` is ``bind``, ``volume`` (the default) or ``tmpfs``. A ``readonly``
    or ``ro`` field without a value means true. Options of one type
    (``bind-*``, ``volume-*``, ``tmpfs-*``) are rejected on a mount of another.
    """
    import csv

    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as error:
        raise InvalidArgument(f"invalid mount specification: {error}") from None
    mount: dict[str, Any] = {"Type": "volume"}
    bind_options: dict[str, Any] = {}
    volume_options: dict[str, Any] = {}
    tmpfs_options: dict[str, Any] = {}
    for field_text in fields:
        key, equals, value = field_text.partition("=")
        key = key.strip().lower()
        if not equals:
            if key in ("readonly", "ro"):
                mount["ReadOnly"] = True
                continue
            if key == "volume-nocopy":
                volume_options["NoCopy"] = True
                continue
            if key == "bind-nonrecursive":
                bind_options["NonRecursive"] = True
                continue
            raise InvalidArgument(f"invalid field '{field_text}' must be a key=value pair")
        if key == "type":
            mount["Type"] = value.lower()
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "destination", "dst"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = _parse_bool(value, key)
        elif key == "consistency":
            mount["Consistency"] = value
        elif key == "bind-propagation":
            if value not in PROPAGATION_MODES:
                raise InvalidArgument(f"invalid bind-propagation: {value}")
            bind_options["Propagation"] = value
        elif key == "bind-nonrecursive":
            bind_options["NonRecursive"] = _parse_bool(value, key)
        elif key == "bind-create-mountpoint":
            bind_options["CreateMountpoint"] = _parse_bool(value, key)
        elif key == "volume-nocopy":
            volume_options["NoCopy"] = _parse_bool(value, key)
        elif key == "volume-label":
            label, _, label_value = value.partition("=")
            volume_options.setdefault("Labels", {})[label] = label_value
        elif key == "volume-driver":
            volume_options.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            option, option_equals, option_value = value.partition("=")
            if not option_equals:
                raise InvalidArgument(f"invalid volume-opt '{value}': use NAME=VALUE")
            volume_options.setdefault("DriverConfig", {}).setdefault("Options", {})[option] = option_value
        elif key == "volume-subpath":
            volume_options["Subpath"] = value
        elif key == "tmpfs-size":
            tmpfs_options["SizeBytes"] = parse_memory_size(value)
        elif key == "tmpfs-mode":
            try:
                tmpfs_options["Mode"] = int(value, 8)
            except ValueError:
                raise InvalidArgument(f"invalid tmpfs-mode: {value}: use an octal mode such as 1777") from None
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{field_text}'")

    kind = mount["Type"]
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f"mount type {kind!r} is not supported: use bind, volume or tmpfs")
    for options, name in ((bind_options, "bind"), (volume_options, "volume"), (tmpfs_options, "tmpfs")):
        if options and name != kind:
            raise InvalidArgument(f"cannot mix '{name}-*' options with mount type '{kind}'")
    target = mount.get("Target")
    if not target:
        raise InvalidArgument("target is required")
    _check_target(target, kind)
    if kind == "bind" and not mount.get("Source"):
        raise InvalidArgument('invalid mount config for type "bind": field Source must not be empty')
    if kind == "bind" and not mount["Source"].startswith("/"):
        raise InvalidArgument(f'invalid mount config for type "bind": invalid mount path: \'{mount["Source"]}\' mount path must be absolute')
    if kind == "tmpfs" and mount.get("Source"):
        raise InvalidArgument('invalid mount config for type "tmpfs": field Source must not be specified')
    if bind_options:
        mount["BindOptions"] = bind_options
    if volume_options:
        mount["VolumeOptions"] = volume_options
    if tmpfs_options:
        mount["TmpfsOptions"] = tmpfs_options
    return mount


def parse_tmpfs(text: str) -> tuple[str, str]:
    """Parse ``--tmpfs /path[:options]`` into the path and its mount options (``size=64m,mode=1777``)."""
    path, _, options = text.partition(":")
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{path}' mount path must be absolute")
    return path, options


# -- policies, security and logging ---------------------------------------------------------

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")


def parse_restart_policy(text: str) -> dict[str, Any]:
    """Parse ``no``, ``always``, ``unless-stopped`` or ``on-failure[:N]`` into a ``RestartPolicy`` object."""
    name, colon, count_text = text.partition(":")
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy '{name}': use no, always, unless-stopped or on-failure[:max-retries]")
    if not colon:
        return {"Name": name, "MaximumRetryCount": 0}
    if name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    if not count_text.isdigit():
        raise InvalidArgument(f"maximum retry count must be a non-negative integer: {count_text!r}")
    return {"Name": name, "MaximumRetryCount": int(count_text)}


def parse_security_opt(text: str) -> str:
    """Normalise one ``--security-opt`` value; ``seccomp=FILE`` becomes ``seccomp=<the file's compact JSON>``.

    The Docker CLI reads the profile on the client side, so the engine (and a
    remote API server) never opens a path named by the caller.
    """
    if text in ("no-new-privileges", "systempaths=unconfined"):
        return text
    if "=" in text:
        key, _, value = text.partition("=")
    elif ":" in text:
        # The old form, "seccomp:FILE" and "apparmor:PROFILE".
        key, _, value = text.partition(":")
    else:
        raise InvalidArgument(f"invalid --security-opt: {text!r}")
    if key == "no-new-privileges":
        return f"no-new-privileges={str(_parse_bool(value, key)).lower()}"
    if key != "seccomp" or value in ("unconfined", "builtin"):
        return f"{key}={value}"
    import json

    try:
        with open(value, "rb") as file:
            data = file.read()
    except OSError as error:
        raise InvalidArgument(f"opening seccomp profile ({value}) failed: {error.strerror or error}") from None
    try:
        profile = json.loads(data)
    except ValueError as error:
        raise InvalidArgument(f"compacting json for seccomp profile ({value}) failed: {error}") from None
    return "seccomp=" + json.dumps(profile, separators=(",", ":"))


LOG_DRIVER = "json-file"
LOG_OPTIONS = ("max-size", "max-file")


def parse_log_opt(text: str) -> tuple[str, str]:
    """Parse one ``--log-opt`` value; only json-file's ``max-size`` and ``max-file`` are supported."""
    key, equals, value = text.partition("=")
    if not equals:
        raise InvalidArgument(f"invalid log option {text!r}: use KEY=VALUE")
    if key not in LOG_OPTIONS:
        raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver: supported are max-size and max-file")
    if key == "max-size":
        if value != "-1":
            parse_memory_size(value)
    else:
        if not value.isdigit() or int(value) < 1:
            raise InvalidArgument(f"max-file must be a positive integer: {value!r}")
    return key, value


def normalize_capability(text: str) -> str:
    """Return a capability as the engine expects it: ``ALL``, or upper case with the ``CAP_`` prefix."""
    name = text.strip().upper()
    if name == "ALL" or name.startswith("CAP_"):
        return name
    return "CAP_" + name


PULL_POLICIES = ("missing", "always", "never")

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
# Control characters that ``ctrl-X`` names besides ctrl-a to ctrl-z (1 to 26).
_CONTROL_SYMBOLS = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str) -> bytes:
    """Parse a detach sequence such as ``ctrl-p,ctrl-q`` or ``a,ctrl-x`` into the bytes a terminal sends for it."""
    sequence = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            sequence.append(ord(key))
            continue
        name = key.removeprefix("ctrl-").lower() if key.lower().startswith("ctrl-") else None
        if name is not None and len(name) == 1 and "a" <= name <= "z":
            sequence.append(ord(name) - ord("a") + 1)
        elif name is not None and name in _CONTROL_SYMBOLS:
            sequence.append(_CONTROL_SYMBOLS[name])
        else:
            raise InvalidArgument(f"unknown key '{key}': use single characters or ctrl-a to ctrl-z, ctrl-@, ctrl-[, "
                                  "ctrl-\\, ctrl-], ctrl-^, ctrl-_, separated by commas")
    if not sequence or not sequence.isascii():
        raise InvalidArgument(f"invalid detach keys {text!r}")
    return bytes(sequence)


# -- the argparse flags ----------------------------------------------------------------------


def _append(parser: argparse.ArgumentParser, *names: str, help: str, metavar: str | None = None) -> None:
    parser.add_argument(*names, action="append", default=[], help=help, metavar=metavar)


def add_create_flags(parser: argparse.ArgumentParser, run: bool) -> None:
    """Declare Docker's ``create`` flags, ``-d`` and ``--sig-proxy`` for ``run``, and the IMAGE [COMMAND] positionals."""
    parser.add_argument("--help", action="help", help="show this help message and exit")
    if run:
        parser.add_argument("-d", "--detach", action="store_true", help="run the container in the background and print its ID")
        parser.add_argument("--sig-proxy", default="true", choices=["true", "false"],
                            help="forward signals the command receives to the container (default true, foreground only)")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin open and forward it to the container")
    if run:
        add_detach_keys_flag(parser)
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")

    parser.add_argument("--name", help="assign a name to the container")
    _append(parser, "-e", "--env", help="set an environment variable; a bare NAME takes this command's value", metavar="NAME[=VALUE]")
    _append(parser, "--env-file", help="read environment variables from a file of NAME=VALUE lines", metavar="FILE")
    parser.add_argument("-w", "--workdir", help="working directory inside the container")
    parser.add_argument("-u", "--user", help="user name or UID, with an optional group: NAME|UID[:GROUP|GID]")
    parser.add_argument("--entrypoint", help="override the image's ENTRYPOINT; an empty string resets it")
    parser.add_argument("-h", "--hostname", help="container host name")
    parser.add_argument("--domainname", help="container NIS domain name")
    _append(parser, "--group-add", help="add a supplementary group, by name or GID", metavar="GROUP")
    parser.add_argument("--cidfile", help="write the container ID to this file, which must not exist yet")

    parser.add_argument("-m", "--memory", help="memory limit, with a unit b, k, m or g (binary: 1k = 1024 bytes)")
    parser.add_argument("--memory-swap", help="memory plus swap limit, with a unit; -1 for unlimited swap")
    parser.add_argument("--memory-reservation", help="memory soft limit, with a unit")
    parser.add_argument("--shm-size", help="size of /dev/shm, with a unit (default 64m)")
    parser.add_argument("--oom-score-adj", help="OOM killer preference, from -1000 to 1000")
    parser.add_argument("--cpus", help="number of CPUs, such as 1.5")
    parser.add_argument("-c", "--cpu-shares", help="relative CPU weight (default 1024)")
    parser.add_argument("--cpu-period", help="CFS scheduler period in microseconds")
    parser.add_argument("--cpu-quota", help="CFS scheduler quota in microseconds per period")
    parser.add_argument("--cpuset-cpus", help="CPUs the container may run on, such as 0-3 or 0,1")
    parser.add_argument("--cpuset-mems", help="memory nodes the container may use, such as 0-1")
    parser.add_argument("--pids-limit", help="maximum number of processes; -1 for unlimited")
    _append(parser, "--ulimit", help="resource limit such as nofile=1024:2048", metavar="NAME=SOFT[:HARD]")
    parser.add_argument("--read-only", action="store_true", help="mount the container's root filesystem read-only")

    _append(parser, "--tmpfs", help="mount a tmpfs at PATH, with mount options such as size=64m", metavar="PATH[:OPTIONS]")
    _append(parser, "-v", "--volume", help="bind mount a host path, mount a named volume, or create an anonymous volume",
            metavar="[SOURCE:]TARGET[:MODE]")
    _append(parser, "--mount", help="attach a mount: type=bind|volume|tmpfs,source=...,target=...[,readonly]", metavar="SPEC")

    _append(parser, "--cap-add", help="add a Linux capability, or ALL", metavar="CAPABILITY")
    _append(parser, "--cap-drop", help="drop a Linux capability, or ALL", metavar="CAPABILITY")
    parser.add_argument("--privileged", action="store_true", help="give the container all capabilities and host devices, without seccomp")
    _append(parser, "--security-opt", help="no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json", metavar="OPTION")
    parser.add_argument("--init", action="store_true", help="run an init process as PID 1 that forwards signals and reaps zombies")
    _append(parser, "--sysctl", help="set a namespaced kernel parameter, such as net.ipv4.ip_forward=1", metavar="NAME=VALUE")

    parser.add_argument("--restart", help="restart policy: no, on-failure[:max-retries], always or unless-stopped")
    parser.add_argument("--stop-signal", help="signal that stops the container (default SIGTERM)")
    parser.add_argument("--stop-timeout", help="seconds to wait after the stop signal before killing the container")
    parser.add_argument("--log-driver", help="logging driver; only json-file is supported")
    _append(parser, "--log-opt", help="log driver option: max-size=SIZE or max-file=COUNT", metavar="KEY=VALUE")
    _append(parser, "-l", "--label", help="set a label on the container", metavar="KEY[=VALUE]")
    _append(parser, "--label-file", help="read labels from a file of KEY=VALUE lines", metavar="FILE")

    parser.add_argument("--network", "--net",
                        help="network to connect the container to: bridge (default), a network name, host, none or container:NAME")
    _append(parser, "--network-alias", "--net-alias", help="add a network-scoped DNS alias for the container", metavar="ALIAS")
    parser.add_argument("--ip", help="IPv4 address of the container on its user-defined network")
    parser.add_argument("--mac-address", help="MAC address of the container's interface, such as 02:42:ac:11:00:02")
    _append(parser, "--add-host", help="add a line to /etc/hosts; IP may be host-gateway", metavar="HOST:IP")
    _append(parser, "--dns", help="set a DNS server the container uses", metavar="IP")
    _append(parser, "--dns-search", help="set a DNS search domain", metavar="DOMAIN")
    _append(parser, "--dns-option", "--dns-opt", help="set a resolv.conf option, such as ndots:2", metavar="OPTION")
    _append(parser, "--expose", help="expose a port or range without publishing it", metavar="PORT[/PROTOCOL]")
    _append(parser, "-p", "--publish", help="publish a container port: [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]", metavar="SPEC")
    parser.add_argument("-P", "--publish-all", action="store_true", help="publish every exposed port to a random host port")
    parser.add_argument("--platform", help="platform of the image to pull and run (os/arch[/variant])")
    parser.add_argument("--pull", default="missing", help="pull the image before creating: missing (default), always or never")
    parser.add_argument("--runtime", help="OCI runtime that runs the container (default: dockyard's built-in runtime)")

    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="[COMMAND] [ARG...]")


def detach_sequence(text: str) -> bytes:
    """Return the bytes of a ``--detach-keys`` value; raises FlagError naming the flag."""
    return _convert("--detach-keys", text, parse_detach_keys)


def add_detach_keys_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detach-keys", default=DEFAULT_DETACH_KEYS,
                        help="keys that detach from a container with -i and -t, leaving it running (default ctrl-p,ctrl-q)")


# -- the create body ------------------------------------------------------------------------------


@dataclass
class CreateRequest:
    """The create body for the engine, with the name, platform and pull policy that ``run`` and ``create`` use."""

    body: dict[str, Any]
    name: str | None
    platform: str | None
    pull: str


def _convert(flag: str, value: str, parse: Any, *extra: Any) -> Any:
    try:
        return parse(value, *extra)
    except InvalidArgument as error:
        raise FlagError(flag, value, str(error)) from None


def build_create_request(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
                         cwd: str | None = None) -> CreateRequest:
    """Convert parsed ``run``/``create`` flags into the engine's create body; raises FlagError on a bad value."""
    environ = os.environ if environ is None else environ
    detach = getattr(args, "detach", False)
    config: dict[str, Any] = {"Image": args.image}
    host: dict[str, Any] = {}

    # Stdio: a foreground run attaches stdout and stderr, and stdin with -i.
    foreground = not detach
    config["AttachStdin"] = foreground and args.interactive
    config["AttachStdout"] = foreground
    config["AttachStderr"] = foreground
    config["Tty"] = args.tty
    config["OpenStdin"] = args.interactive
    config["StdinOnce"] = foreground and args.interactive

    if args.command:
        config["Cmd"] = list(args.command)
    if args.entrypoint is not None:
        # The Docker CLI sends [""] for --entrypoint "": the engine clears the image's ENTRYPOINT.
        config["Entrypoint"] = [args.entrypoint]
    if args.hostname:
        config["Hostname"] = args.hostname
    if args.domainname:
        config["Domainname"] = args.domainname
    if args.user:
        config["User"] = args.user
    if args.workdir:
        if not args.workdir.startswith("/"):
            raise FlagError("-w, --workdir", args.workdir, "the working directory must be an absolute path")
        config["WorkingDir"] = args.workdir

    # Env files come first and -e after, so that -e overrides a file.
    env: list[str] = []
    for path in args.env_file:
        env.extend(read_key_value_file(path, "--env-file", environ))
    for value in args.env:
        resolved = _convert("-e, --env", value, parse_env, environ)
        if resolved is not None:
            env.append(resolved)
    if env:
        config["Env"] = env

    label_entries: list[str] = []
    for path in args.label_file:
        label_entries.extend(read_key_value_file(path, "--label-file", None))
    label_entries.extend(args.label)
    if label_entries:
        config["Labels"] = labels_to_dict(label_entries)

    if args.stop_signal:
        config["StopSignal"] = args.stop_signal
    if args.stop_timeout is not None:
        config["StopTimeout"] = _convert("--stop-timeout", args.stop_timeout, parse_int)

    _add_resources(args, host)
    _add_storage(args, config, host, cwd)
    _add_security(args, host)
    _add_lifecycle(args, host)

    _add_network(args, config, host)
    exposed: dict[str, dict] = {}
    for value in args.expose:
        for port, _ in _convert("--expose", value, parse_expose):
            exposed[port] = {}
    if args.publish:
        bindings: dict[str, list[dict[str, str]]] = {}
        for spec in args.publish:
            spec_exposed, spec_bindings = _convert("-p, --publish", spec, lambda text: parse_ports([text]))
            exposed.update(spec_exposed)
            for port, port_bindings in spec_bindings.items():
                bindings.setdefault(port, []).extend(port_bindings)
        host["PortBindings"] = bindings
    if exposed:
        config["ExposedPorts"] = exposed
    if args.publish_all:
        host["PublishAllPorts"] = True

    if args.pull not in PULL_POLICIES:
        raise FlagError("--pull", args.pull, 'must be one of "always", "missing" or "never"')

    config["HostConfig"] = host
    return CreateRequest(body=config, name=args.name, platform=args.platform, pull=args.pull)


def _add_network(args: argparse.Namespace, config: dict[str, Any], host: dict[str, Any]) -> None:
    if args.network:
        host["NetworkMode"] = args.network
    endpoint: dict[str, Any] = {}
    if args.network_alias:
        endpoint["Aliases"] = list(args.network_alias)
    if args.ip:
        endpoint["IPAMConfig"] = {"IPv4Address": args.ip}
    if args.mac_address:
        endpoint["MacAddress"] = args.mac_address
    if endpoint:
        config["NetworkingConfig"] = {"EndpointsConfig": {args.network or "default": endpoint}}
    if args.add_host:
        host["ExtraHosts"] = list(args.add_host)
    if args.dns:
        host["Dns"] = list(args.dns)
    if args.dns_search:
        host["DnsSearch"] = list(args.dns_search)
    if args.dns_option:
        host["DnsOptions"] = list(args.dns_option)
    if args.runtime:
        host["Runtime"] = args.runtime


def _add_resources(args: argparse.Namespace, host: dict[str, Any]) -> None:
    if args.memory is not None:
        host["Memory"] = _convert("-m, --memory", args.memory, parse_memory_size)
    if args.memory_swap is not None:
        host["MemorySwap"] = _convert("--memory-swap", args.memory_swap, parse_memory_swap)
    if args.cpus is not None:
        host["NanoCpus"] = _convert("--cpus", args.cpus, parse_nano_cpus)
    if args.memory_reservation is not None:
        host["MemoryReservation"] = _convert("--memory-reservation", args.memory_reservation, parse_memory_size)
    if args.shm_size is not None:
        host["ShmSize"] = _convert("--shm-size", args.shm_size, parse_memory_size)
    if args.oom_score_adj is not None:
        host["OomScoreAdj"] = _convert("--oom-score-adj", args.oom_score_adj, parse_oom_score_adj)
    if args.cpu_shares is not None:
        host["CpuShares"] = _convert("-c, --cpu-shares", args.cpu_shares, parse_int)
    if args.cpu_period is not None:
        host["CpuPeriod"] = _convert("--cpu-period", args.cpu_period, parse_int)
    if args.cpu_quota is not None:
        host["CpuQuota"] = _convert("--cpu-quota", args.cpu_quota, parse_int)
    if args.cpuset_cpus:
        host["CpusetCpus"] = _convert("--cpuset-cpus", args.cpuset_cpus, parse_cpu_set)
    if args.cpuset_mems:
        host["CpusetMems"] = _convert("--cpuset-mems", args.cpuset_mems, parse_cpu_set)
    if args.pids_limit is not None:
        limit = _convert("--pids-limit", args.pids_limit, parse_int)
        # Docker sends no limit for 0, which means "unset" in its flag.
        if limit != 0:
            host["PidsLimit"] = limit
    if args.ulimit:
        ulimits: dict[str, dict[str, Any]] = {}
        for value in args.ulimit:
            ulimit = _convert("--ulimit", value, parse_ulimit)
            ulimits[ulimit["Name"]] = ulimit
        host["Ulimits"] = list(ulimits.values())


def _add_storage(args: argparse.Namespace, config: dict[str, Any], host: dict[str, Any], cwd: str | None) -> None:
    binds: list[str] = []
    mounts: list[dict[str, Any]] = []
    anonymous: dict[str, dict] = {}
    for value in args.volume:
        spec = _convert("-v, --volume", value, parse_volume, cwd)
        if spec.kind == "anonymous":
            anonymous[spec.target] = {}
        else:
            binds.append(spec.bind_string())
    for value in args.mount:
        mounts.append(_convert("--mount", value, parse_mount))
    tmpfs: dict[str, str] = {}
    for value in args.tmpfs:
        path, options = _convert("--tmpfs", value, parse_tmpfs)
        tmpfs[path] = options
    if binds:
        host["Binds"] = binds
    if mounts:
        host["Mounts"] = mounts
    if tmpfs:
        host["Tmpfs"] = tmpfs
    if anonymous:
        config["Volumes"] = anonymous
    if args.read_only:
        host["ReadonlyRootfs"] = True


def _add_security(args: argparse.Namespace, host: dict[str, Any]) -> None:
    if args.cap_add:
        host["CapAdd"] = [normalize_capability(value) for value in args.cap_add]
    if args.cap_drop:
        host["CapDrop"] = [normalize_capability(value) for value in args.cap_drop]
    if args.privileged:
        host["Privileged"] = True
    if args.security_opt:
        host["SecurityOpt"] = [_convert("--security-opt", value, parse_security_opt) for value in args.security_opt]
    if args.init:
        host["Init"] = True
    if args.group_add:
        host["GroupAdd"] = list(args.group_add)
    if args.sysctl:
        host["Sysctls"] = dict(_convert("--sysctl", value, parse_sysctl) for value in args.sysctl)


def _add_lifecycle(args: argparse.Namespace, host: dict[str, Any]) -> None:
    if args.restart:
        policy = _convert("--restart", args.restart, parse_restart_policy)
        if args.rm and policy["Name"] != "no":
            raise InvalidArgument("Conflicting options: cannot specify both --restart and --rm")
        host["RestartPolicy"] = policy
    if args.rm:
        host["AutoRemove"] = True
    if args.log_driver is not None and args.log_driver != LOG_DRIVER:
        raise FlagError("--log-driver", args.log_driver, "only the json-file log driver is supported")
    if args.log_driver or args.log_opt:
        options = dict(_convert("--log-opt", value, parse_log_opt) for value in args.log_opt)
        host["LogConfig"] = {"Type": LOG_DRIVER, "Config": options}


# -- times for logs --since and --until ---------------------------------------------------

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DATE_TIME = re.compile(
    r"(\d{4}-\d\d-\d\d)(?:T(\d\d:\d\d(?::\d\d)?)(\.\d{1,9})?)?(Z|[+-]\d\d:\d\d)?"
)


def parse_go_duration(text: str) -> float:
    """Parse a Go duration such as ``10m``, ``1h30m`` or ``1.5s`` into seconds (an optional sign first)."""
    sign = 1.0
    body = text
    if body[:1] in "+-" and body:
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise InvalidArgument(f'time: invalid duration "{text}"')
    return sign * total


def parse_log_time(text: str, now: float) -> float:
    """Parse ``--since``/``--until``: a Go duration before ``now``, an RFC 3339 date or time, or Unix seconds.

    A date or time without a zone is local time, as in the Docker CLI.
    """
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d{1,9})?", value):
        return float(value)
    try:
        return now - parse_go_duration(value)
    except InvalidArgument:
        pass
    match = _DATE_TIME.fullmatch(value)
    if not match:
        raise InvalidArgument(f'failed to parse value as time or duration: "{text}"')
    from datetime import datetime, timezone

    date, clock, fraction, zone = match.groups()
    clock = clock or "00:00:00"
    if clock.count(":") == 1:
        clock += ":00"
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}")
    except ValueError:
        raise InvalidArgument(f'failed to parse value as time or duration: "{text}"') from None
    if zone == "Z":
        moment = moment.replace(tzinfo=timezone.utc)
    elif zone:
        moment = datetime.fromisoformat(f"{date}T{clock}{zone}")
    return moment.timestamp() + (float(fraction) if fraction else 0.0)

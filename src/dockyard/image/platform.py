"""Image platforms (``os/architecture[/variant]``) and how they match.

Names and normalisation follow containerd's ``platforms`` package, which Docker
uses: Go's GOOS and GOARCH names (``amd64``, ``arm64``, ``386``), an ``arm``
platform without a variant means ``v7``, and ``arm64`` without a variant means
``v8``.
"""

from __future__ import annotations

import platform as _stdlib_platform
from dataclasses import dataclass

from dockyard.errors import InvalidArgument, InvalidManifest

# Operating systems that Go (and so the OCI image spec) names.
KNOWN_OS = frozenset({
    "aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js",
    "linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows",
})

# uname machine names and common aliases, mapped to (architecture, variant).
_MACHINE_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "amd64": ("amd64", None),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "386": ("386", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armhf": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv6": ("arm", "v6"),
    "armel": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5tejl": ("arm", "v5"),
    "arm": ("arm", None),
    "ppc64le": ("ppc64le", None),
    "ppc64": ("ppc64", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64", None),
    "mips64el": ("mips64le", None),
    "mips64le": ("mips64le", None),
    "loongarch64": ("loong64", None),
    "loong64": ("loong64", None),
}

# Variants that a machine of a given (architecture, variant) runs, best first.
# Index.select() falls back to them when an index has no exact match.
_COMPATIBLE_VARIANTS: dict[tuple[str, str | None], tuple[str | None, ...]] = {
    ("arm", "v8"): ("v8", "v7", "v6", "v5"),
    ("arm", "v7"): ("v7", "v6", "v5"),
    ("arm", "v6"): ("v6", "v5"),
    ("amd64", "v4"): ("v4", "v3", "v2", None),
    ("amd64", "v3"): ("v3", "v2", None),
    ("amd64", "v2"): ("v2", None),
    ("arm64", "v9"): ("v9", None),
}


@dataclass(frozen=True)
class Platform:
    """The platform an image or manifest is built for, with OCI field meanings."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    def __str__(self) -> str:
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)

    def normalized(self) -> Platform:
        """Return the canonical spelling: lowercase, Go names, and Docker's default variants dropped or filled in."""
        os_name = self.os.lower()
        if os_name == "macos":
            os_name = "darwin"
        architecture, variant = _normalize_architecture(self.architecture, self.variant)
        return Platform(os_name, architecture, variant, self.os_version)

    def matches(self, other: Platform) -> bool:
        """Tell whether both are the same platform after normalisation, ignoring ``os_version``."""
        mine = self.normalized()
        theirs = other.normalized()
        return (mine.os, mine.architecture, mine.variant) == (theirs.os, theirs.architecture, theirs.variant)

    def compatible(self) -> list[Platform]:
        """Return the platforms a machine of this platform runs, best first, starting with itself."""
        mine = self.normalized()
        variants = _COMPATIBLE_VARIANTS.get((mine.architecture, mine.variant), (mine.variant,))
        return [Platform(mine.os, mine.architecture, variant) for variant in variants]

    def to_dict(self) -> dict[str, str]:
        """Return the platform as an OCI descriptor's ``platform`` object."""
        result = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            result["os.version"] = self.os_version
        if self.variant:
            result["variant"] = self.variant
        return result


def _normalize_architecture(architecture: str, variant: str | None) -> tuple[str, str | None]:
    architecture = architecture.lower()
    variant = variant.lower() if variant else None
    if architecture in ("i386", "i686"):
        return "386", None
    if architecture in ("x86_64", "x86-64", "amd64"):
        return "amd64", None if variant == "v1" else variant
    if architecture in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = None
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if architecture == "armhf":
        return "arm", "v7"
    if architecture == "armel":
        return "arm", "v6"
    if architecture == "arm":
        if variant in (None, "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = f"v{variant}"
        return "arm", variant
    return architecture, variant


def host() -> Platform:
    """Return the platform of this machine, from ``platform.system()`` and ``platform.machine()``."""
    return from_machine(_stdlib_platform.machine(), _stdlib_platform.system().lower() or "linux")


def from_machine(machine: str, os_name: str = "linux") -> Platform:
    """Return the platform for a ``uname -m`` machine name: ``x86_64`` gives ``linux/amd64``.

    Unknown machine names are kept as the architecture, lowercased.
    """
    machine = machine.lower()
    architecture, variant = _MACHINE_ALIASES.get(machine, (machine, None))
    return Platform(os_name, architecture, variant)


def parse(text: str) -> Platform:
    """Parse ``os/architecture[/variant]``. A bare OS name means that OS on this machine's architecture.

    Raises InvalidArgument naming the text.
    """
    parts = text.split("/")
    if len(parts) > 3 or any(not part or part != part.strip() for part in parts):
        raise InvalidArgument(
            f'invalid platform "{text}": expected os/architecture[/variant], such as linux/arm64 or linux/arm/v7'
        )
    os_name = parts[0].lower()
    if os_name not in KNOWN_OS:
        raise InvalidArgument(
            f'invalid platform "{text}": unknown operating system {parts[0]!r} '
            "(expected os/architecture[/variant], such as linux/amd64)"
        )
    if len(parts) == 1:
        local = host()
        return Platform(os_name, local.architecture, local.variant)
    architecture, variant = _MACHINE_ALIASES.get(parts[1].lower(), (parts[1].lower(), None))
    if len(parts) == 3:
        variant = parts[2].lower()
    return Platform(os_name, architecture, variant)


def from_dict(data: object, where: str) -> Platform:
    """Build a Platform from an OCI ``platform`` object. ``where`` names the document in error messages.

    Raises InvalidManifest when ``os`` or ``architecture`` is missing or not a string.
    """
    if not isinstance(data, dict):
        raise InvalidManifest(f"{where}: platform must be a JSON object, not {type(data).__name__}")
    os_name = data.get("os")
    architecture = data.get("architecture")
    variant = data.get("variant")
    os_version = data.get("os.version")
    if not isinstance(os_name, str) or not isinstance(architecture, str):
        raise InvalidManifest(f"{where}: platform needs string fields os and architecture, got {data!r}")
    if variant is not None and not isinstance(variant, str):
        raise InvalidManifest(f"{where}: platform variant must be a string, got {variant!r}")
    if os_version is not None and not isinstance(os_version, str):
        raise InvalidManifest(f"{where}: platform os.version must be a string, got {os_version!r}")
    return Platform(os_name, architecture, variant or None, os_version or None)

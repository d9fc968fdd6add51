"""Platform names, parsing and Docker's matching rules."""

from __future__ import annotations

import platform as stdlib_platform

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image.platform import Platform, from_machine, host, parse


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64"),
        ("arm64", "linux/arm64"),
        ("armv7l", "linux/arm/v7"),
        ("armv6l", "linux/arm/v6"),
        ("armv5tel", "linux/arm/v5"),
        ("i686", "linux/386"),
        ("ppc64le", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
        ("loongarch64", "linux/loong64"),
        ("mips64", "linux/mips64"),
        ("SomethingNew", "linux/somethingnew"),
    ],
)
def test_from_machine(machine: str, expected: str) -> None:
    assert str(from_machine(machine)) == expected


def test_host_uses_this_machine() -> None:
    assert host() == from_machine(stdlib_platform.machine(), stdlib_platform.system().lower())
    assert host().os == "linux"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("windows/amd64", Platform("windows", "amd64")),
    ],
)
def test_parse_valid(text: str, expected: Platform) -> None:
    assert parse(text) == expected


def test_parse_os_only_uses_host_architecture() -> None:
    parsed = parse("linux")
    assert parsed.os == "linux"
    assert parsed.architecture == host().architecture


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected os/architecture"),
        ("linux/", "expected os/architecture"),
        ("/amd64", "expected os/architecture"),
        ("linux/arm/v7/extra", "expected os/architecture"),
        ("linux//v7", "expected os/architecture"),
        ("linux/ amd64", "expected os/architecture"),
        ("amd64", "unknown operating system 'amd64'"),
        ("plan10/amd64", "unknown operating system 'plan10'"),
    ],
)
def test_parse_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(text)
    assert reason in str(caught.value)
    assert f'"{text}"' in str(caught.value)


def test_str_omits_missing_variant() -> None:
    assert str(Platform("linux", "amd64")) == "linux/amd64"
    assert str(Platform("linux", "arm", "v6")) == "linux/arm/v6"


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (Platform("linux", "arm"), Platform("linux", "arm", "v7")),
        (Platform("linux", "arm", "7"), Platform("linux", "arm", "v7")),
        (Platform("linux", "arm64"), Platform("linux", "arm64", "v8")),
        (Platform("linux", "aarch64"), Platform("linux", "arm64")),
        (Platform("linux", "x86_64"), Platform("linux", "amd64")),
        (Platform("linux", "amd64", "v1"), Platform("linux", "amd64")),
        (Platform("Linux", "AMD64"), Platform("linux", "amd64")),
        (Platform("linux", "armhf"), Platform("linux", "arm", "v7")),
        (Platform("macos", "arm64"), Platform("darwin", "arm64")),
        (Platform("linux", "amd64", os_version="1"), Platform("linux", "amd64")),
    ],
)
def test_matches_after_normalisation(left: Platform, right: Platform) -> None:
    assert left.matches(right)
    assert right.matches(left)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (Platform("linux", "arm", "v6"), Platform("linux", "arm", "v7")),
        (Platform("linux", "arm"), Platform("linux", "arm64")),
        (Platform("linux", "arm64", "v9"), Platform("linux", "arm64")),
        (Platform("linux", "amd64"), Platform("windows", "amd64")),
        (Platform("linux", "amd64", "v3"), Platform("linux", "amd64")),
    ],
)
def test_different_platforms_do_not_match(left: Platform, right: Platform) -> None:
    assert not left.matches(right)


def test_compatible_lists_lower_variants() -> None:
    assert [str(item) for item in Platform("linux", "arm").compatible()] == [
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]
    assert [str(item) for item in Platform("linux", "amd64", "v3").compatible()] == [
        "linux/amd64/v3",
        "linux/amd64/v2",
        "linux/amd64",
    ]
    assert Platform("linux", "amd64").compatible() == [Platform("linux", "amd64")]


def test_to_dict_uses_oci_field_names() -> None:
    assert Platform("windows", "amd64", None, "10.0.20348").to_dict() == {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.20348",
    }
    assert Platform("linux", "arm", "v7").to_dict() == {"architecture": "arm", "os": "linux", "variant": "v7"}

"""The shape of ``inspect`` that needs no container: HostConfig defaults, Config fields, cp and volume formats."""

from __future__ import annotations

import re

from dockyard.cli.container_tools import copied_message, decimal_size
from dockyard.engine import ocispec, volumes
from dockyard.engine.containers import HOST_CONFIG_DEFAULTS, inspect_host_config
from tests.support.apispec import properties


def test_host_config_has_every_spec_field():
    shown = inspect_host_config({"NetworkMode": "default", "Runtime": "dockyard"})
    assert set(shown) == set(properties("HostConfig"))


def test_host_config_defaults_match_docker():
    shown = inspect_host_config({"NetworkMode": "default"})
    assert shown["Privileged"] is False
    assert shown["Memory"] == 0
    assert shown["CpuShares"] == 0
    assert shown["CapAdd"] is None
    assert shown["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert shown["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert shown["NetworkMode"] == "bridge"
    assert shown["Runtime"] == "dockyard"
    assert "/proc/kcore" in shown["MaskedPaths"]
    assert "/proc/sys" in shown["ReadonlyPaths"]


def test_host_config_keeps_recorded_values():
    shown = inspect_host_config({"NetworkMode": "appnet", "Memory": 1024, "Privileged": True, "CapAdd": ["NET_ADMIN"]})
    assert shown["NetworkMode"] == "appnet"
    assert shown["Memory"] == 1024
    assert shown["CapAdd"] == ["NET_ADMIN"]
    assert shown["MaskedPaths"] is None
    assert shown["ReadonlyPaths"] is None


def test_host_config_defaults_are_not_shared():
    inspect_host_config({})["LogConfig"]["Config"]["max-size"] = "1k"
    assert HOST_CONFIG_DEFAULTS["LogConfig"]["Config"] == {}


def test_default_field_types_match_spec():
    types = {"integer": int, "boolean": bool, "string": str, "array": list, "object": dict}
    for field, value in inspect_host_config({}).items():
        expected = types.get(properties("HostConfig")[field].get("type", "object"))
        if value is not None and expected is not None:
            assert isinstance(value, expected), f"HostConfig.{field} = {value!r}"


def test_config_fields_from_image():
    image = {"Cmd": ["run.exe"], "ArgsEscaped": True, "Shell": ["/bin/bash", "-c"],
             "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30_000_000_000}}
    config = ocispec.merge_config({"Healthcheck": {"Retries": 2}}, image, "c" * 64)
    assert config["ArgsEscaped"] is True
    assert config["Shell"] == ["/bin/bash", "-c"]
    assert config["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 30_000_000_000, "Retries": 2}
    assert set(config) <= set(properties("ContainerConfig"))


def test_config_args_escaped_only_with_image_cmd():
    image = {"Cmd": ["run.exe"], "ArgsEscaped": True}
    assert "ArgsEscaped" not in ocispec.merge_config({"Cmd": ["other"]}, image, "c" * 64)
    assert "ArgsEscaped" not in ocispec.merge_config({}, {"Cmd": ["sh"]}, "c" * 64)
    assert "Shell" not in ocispec.merge_config({}, {"Cmd": ["sh"]}, "c" * 64)
    assert "Healthcheck" not in ocispec.merge_config({}, {"Cmd": ["sh"]}, "c" * 64)


def test_decimal_size_like_go_units():
    assert decimal_size(2048) == "2.05kB"
    assert decimal_size(512) == "512B"
    assert decimal_size(1000) == "1kB"
    assert decimal_size(10_752) == "10.8kB"
    assert decimal_size(3_500_000) == "3.5MB"


def test_cp_message_wording():
    assert copied_message(2048, "web:/tmp/x") == "Successfully copied 2.05kB to web:/tmp/x"


def test_volume_created_at_in_whole_seconds():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", volumes._now())
    assert volumes._whole_seconds("2026-12-04T21:50:00.123456Z") == "2026-12-04T21:50:00Z"
    assert volumes._whole_seconds("2026-12-04T21:50:00Z") == "2026-12-04T21:50:00Z"

"""Container update without a container: the body checks, the bundle patch and the CLI flags.

The cgroup writes run on temporary directories that stand for cgroup hierarchies.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dockyard.engine import updates
from dockyard.errors import Conflict, InvalidArgument
from dockyard.runtime.cgroups import Cgroup, Hierarchy, v1, v2

MIB = 1024 * 1024
HOST = updates.Host(online_cpus="0-1", online_mems="0", blkio_weight=False)
# What the docker CLI 28.2 sends for `docker update --memory 64m`: every Resources field, most of them zero.
DOCKER_CLI_BODY = {
    "CpuShares": 0, "Memory": 64 * MIB, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": None, "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None,
    "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": None,
    "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
    "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None, "Ulimits": None, "CpuCount": 0,
    "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
}


def plan(body: dict, host_config: dict | None = None, host: updates.Host = HOST) -> updates.Update:
    return updates.plan(host_config if host_config is not None else {"NetworkMode": "default"}, body, host)


# -- memory ------------------------------------------------------------------------------


def test_docker_cli_body_changes_only_memory() -> None:
    result = plan(DOCKER_CLI_BODY, {"NetworkMode": "default", "CpuShares": 512,
                                    "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}})
    assert result.host_config["Memory"] == 64 * MIB
    assert result.host_config["CpuShares"] == 512
    assert result.host_config["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert result.restart_policy is None
    assert set(result.resources) == {"memory"}
    assert result.warnings == []


def test_memory_without_limit_gets_double_swap() -> None:
    result = plan({"Memory": 64 * MIB})
    assert result.host_config["MemorySwap"] == 128 * MIB
    assert result.resources == {"memory": {"limit": 64 * MIB, "swap": 128 * MIB}}


def test_memory_below_existing_swap_keeps_swap() -> None:
    result = plan({"Memory": 100 * MIB}, {"Memory": 64 * MIB, "MemorySwap": 128 * MIB})
    assert result.host_config["MemorySwap"] == 128 * MIB
    assert result.resources["memory"] == {"limit": 100 * MIB, "swap": 128 * MIB}


def test_memory_above_existing_swap_is_conflict() -> None:
    with pytest.raises(Conflict, match="update the memoryswap at the same time"):
        plan({"Memory": 256 * MIB}, {"Memory": 64 * MIB, "MemorySwap": 128 * MIB})


def test_memory_with_swap_and_unlimited_swap() -> None:
    assert plan({"Memory": 256 * MIB, "MemorySwap": 512 * MIB},
                {"Memory": 64 * MIB, "MemorySwap": 128 * MIB}).resources["memory"]["swap"] == 512 * MIB
    result = plan({"MemorySwap": -1}, {"Memory": 64 * MIB, "MemorySwap": 128 * MIB})
    assert result.host_config["MemorySwap"] == -1
    assert result.resources["memory"] == {"limit": 64 * MIB, "swap": -1}


def test_memory_limits_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        plan({"Memory": 1024})
    with pytest.raises(InvalidArgument, match="larger than memory limit"):
        plan({"Memory": 64 * MIB, "MemorySwap": 32 * MIB})
    with pytest.raises(InvalidArgument, match="memory reservation"):
        plan({"MemoryReservation": 128 * MIB}, {"Memory": 64 * MIB, "MemorySwap": 128 * MIB})
    with pytest.raises(InvalidArgument, match="MemorySwap -2"):
        plan({"MemorySwap": -2})


# -- CPU -------------------------------------------------------------------------------


def test_nano_cpus_become_quota_and_period() -> None:
    result = plan({"NanoCpus": 500_000_000})
    assert result.resources == {"cpu": {"period": 100_000, "quota": 50_000}}
    assert result.host_config["NanoCpus"] == 500_000_000


def test_nano_cpus_conflict_with_quota() -> None:
    with pytest.raises(Conflict, match="Nano CPUs cannot be updated as CPU Quota has already been set"):
        plan({"NanoCpus": 500_000_000}, {"CpuQuota": 20_000})
    with pytest.raises(Conflict, match="CPU Period cannot be updated as NanoCPUs has already been set"):
        plan({"CpuPeriod": 50_000}, {"NanoCpus": 500_000_000})
    with pytest.raises(InvalidArgument, match="Nano CPUs and CPU Quota cannot both be set"):
        plan({"NanoCpus": 500_000_000, "CpuQuota": 20_000})


def test_period_change_keeps_quota() -> None:
    result = plan({"CpuPeriod": 50_000}, {"CpuQuota": 20_000})
    assert result.resources == {"cpu": {"period": 50_000, "quota": 20_000}}


def test_cpu_ranges_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="CPU cfs period"):
        plan({"CpuPeriod": 10})
    with pytest.raises(InvalidArgument, match="CPU cfs quota"):
        plan({"CpuQuota": 10})
    with pytest.raises(InvalidArgument, match="CpuShares -5"):
        plan({"CpuShares": -5})
    with pytest.raises(InvalidArgument, match="Range of CPUs"):
        plan({"NanoCpus": 1000 * 1_000_000_000})


def test_quota_minus_one_lifts_the_limit() -> None:
    result = plan({"CpuQuota": -1}, {"CpuQuota": 20_000})
    assert result.host_config["CpuQuota"] == -1
    assert result.resources["cpu"]["quota"] == -1


def test_shares_and_cpusets() -> None:
    result = plan({"CpuShares": 512, "CpusetCpus": "1", "CpusetMems": "0"})
    assert result.resources == {"cpu": {"shares": 512, "cpus": "1", "mems": "0"}}


def test_cpuset_must_be_online() -> None:
    with pytest.raises(InvalidArgument, match="Requested CPUs are not available - requested 0-7, available: 0-1"):
        plan({"CpusetCpus": "0-7"})
    with pytest.raises(InvalidArgument, match="Requested memory nodes are not available"):
        plan({"CpusetMems": "1"})
    with pytest.raises(InvalidArgument, match="invalid CpusetCpus 'x'"):
        plan({"CpusetCpus": "x"})


# -- pids, block I/O --------------------------------------------------------------------


@pytest.mark.parametrize(("given", "recorded", "written"), [(50, 50, 50), (-1, None, -1), (0, None, -1)])
def test_pids_limit_values(given: int, recorded: int | None, written: int) -> None:
    result = plan({"PidsLimit": given}, {"PidsLimit": 20})
    assert result.host_config["PidsLimit"] == recorded
    assert result.resources == {"pids": {"limit": written}}


def test_pids_limit_null_leaves_limit() -> None:
    result = plan({"PidsLimit": None}, {"PidsLimit": 20})
    assert result.host_config["PidsLimit"] == 20
    assert result.resources == {}


def test_blkio_weight_discarded_without_kernel_support() -> None:
    result = plan({"BlkioWeight": 300})
    assert result.warnings == [updates.BLKIO_WEIGHT_WARNING]
    assert "BlkioWeight" not in result.host_config
    assert result.resources == {}


def test_blkio_weight_applied_with_kernel_support() -> None:
    supported = updates.Host(online_cpus="0-1", online_mems="0", blkio_weight=True)
    result = plan({"BlkioWeight": 300}, host=supported)
    assert result.host_config["BlkioWeight"] == 300
    assert result.resources == {"blockIO": {"weight": 300}}
    with pytest.raises(InvalidArgument, match="Range of blkio weight is from 10 to 1000"):
        plan({"BlkioWeight": 5}, host=supported)


# -- what is rejected -----------------------------------------------------------------------


def test_not_updatable_field_is_named() -> None:
    with pytest.raises(InvalidArgument, match="updating Ulimits is not supported"):
        plan({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 10}]})
    with pytest.raises(InvalidArgument, match="updating OomKillDisable is not supported"):
        plan({"OomKillDisable": True})


def test_wrong_types_name_the_field() -> None:
    with pytest.raises(InvalidArgument, match='invalid Memory "lots": expected an integer'):
        plan({"Memory": "lots"})
    with pytest.raises(InvalidArgument, match="invalid PidsLimit true"):
        plan({"PidsLimit": True})
    with pytest.raises(InvalidArgument, match="JSON object"):
        plan(["Memory"])  # type: ignore[arg-type]


def test_unknown_fields_are_ignored() -> None:
    assert plan({"SomethingNew": 5}).resources == {}


# -- restart policy ----------------------------------------------------------------------


def test_restart_policy_update() -> None:
    result = plan({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}})
    assert result.restart_policy == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert result.host_config["RestartPolicy"] == result.restart_policy
    assert result.resources == {}


@pytest.mark.parametrize(("policy", "message"), [
    ({"Name": "sometimes"}, "invalid restart policy 'sometimes'"),
    ({"Name": "always", "MaximumRetryCount": 2}, "can only be used with 'on-failure'"),
    ({"Name": "on-failure", "MaximumRetryCount": -1}, "cannot be negative"),
    ("always", "expected an object"),
])
def test_invalid_restart_policy(policy: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        plan({"RestartPolicy": policy})


def test_restart_policy_with_auto_remove() -> None:
    with pytest.raises(InvalidArgument, match="AutoRemove is enabled"):
        plan({"RestartPolicy": {"Name": "always"}}, {"AutoRemove": True})
    assert plan({"RestartPolicy": {"Name": "no"}}, {"AutoRemove": True}).restart_policy == {
        "Name": "no", "MaximumRetryCount": 0}


# -- the bundle --------------------------------------------------------------------------


def test_patch_bundle_replaces_limits_keeps_devices(tmp_path: Path) -> None:
    devices = [{"allow": False, "access": "rwm"}]
    (tmp_path / "config.json").write_text(json.dumps({"linux": {"resources": {
        "devices": devices, "memory": {"limit": 64 * MIB, "swap": 128 * MIB}, "pids": {"limit": 20}}}}))
    (tmp_path / "monitor.json").write_text(json.dumps({"id": "x", "restart": {"Name": "no", "MaximumRetryCount": 0}}))
    result = plan({"NanoCpus": 1_000_000_000, "PidsLimit": -1,
                   "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}},
                  {"Memory": 64 * MIB, "MemorySwap": 128 * MIB, "PidsLimit": 20})
    updates.patch_bundle(tmp_path, result)
    resources = json.loads((tmp_path / "config.json").read_text())["linux"]["resources"]
    assert resources["devices"] == devices
    assert resources["memory"] == {"limit": 64 * MIB, "swap": 128 * MIB}
    assert resources["cpu"] == {"period": 100_000, "quota": 100_000}
    assert "pids" not in resources
    assert json.loads((tmp_path / "monitor.json").read_text())["restart"]["Name"] == "always"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "monitor.json"]


def test_patch_bundle_without_files(tmp_path: Path) -> None:
    updates.patch_bundle(tmp_path, plan({"Memory": 64 * MIB}))
    assert list(tmp_path.iterdir()) == []


# -- cgroup writes on temporary directories -----------------------------------------------------


def _writes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage().split("/")[-1] for record in caplog.records
            if record.name == "dockyard.runtime.cgroups.files"]


def test_v1_raised_memory_writes_memsw_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "memory.limit_in_bytes").write_text(str(64 * MIB))
    (tmp_path / "memory.memsw.limit_in_bytes").write_text(str(128 * MIB))
    caplog.set_level(logging.DEBUG, logger="dockyard.runtime.cgroups.files")
    v1.update_memory(tmp_path, {"limit": 256 * MIB, "swap": 512 * MIB})
    assert _writes(caplog) == [f"memory.memsw.limit_in_bytes = {512 * MIB}", f"memory.limit_in_bytes = {256 * MIB}"]


def test_v1_lowered_memory_writes_limit_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "memory.limit_in_bytes").write_text(str(256 * MIB))
    (tmp_path / "memory.memsw.limit_in_bytes").write_text(str(512 * MIB))
    caplog.set_level(logging.DEBUG, logger="dockyard.runtime.cgroups.files")
    v1.update_memory(tmp_path, {"limit": 64 * MIB, "swap": 128 * MIB, "reservation": 32 * MIB})
    assert _writes(caplog) == [f"memory.limit_in_bytes = {64 * MIB}", f"memory.memsw.limit_in_bytes = {128 * MIB}",
                               f"memory.soft_limit_in_bytes = {32 * MIB}"]


def test_cgroup_update_writes_each_controller(tmp_path: Path) -> None:
    directories = []
    for controller in ("memory", "cpu", "cpuset", "pids", "devices"):
        directory = tmp_path / controller / "dockyard" / "c1"
        directory.mkdir(parents=True)
        directories.append((Hierarchy(tmp_path / controller, 1, (controller,)), directory))
    (tmp_path / "devices/dockyard/c1/devices.allow").write_text("untouched")
    Cgroup("dockyard/c1", directories).update({
        "memory": {"limit": 64 * MIB, "swap": 128 * MIB},
        "cpu": {"shares": 512, "period": 100_000, "quota": 50_000, "cpus": "1"},
        "pids": {"limit": -1},
    })
    assert (tmp_path / "memory/dockyard/c1/memory.limit_in_bytes").read_text() == str(64 * MIB)
    assert (tmp_path / "cpu/dockyard/c1/cpu.shares").read_text() == "512"
    assert (tmp_path / "cpu/dockyard/c1/cpu.cfs_quota_us").read_text() == "50000"
    assert (tmp_path / "cpuset/dockyard/c1/cpuset.cpus").read_text() == "1"
    assert not (tmp_path / "cpuset/dockyard/c1/cpuset.mems").exists()
    assert (tmp_path / "pids/dockyard/c1/pids.max").read_text() == "max"
    assert (tmp_path / "devices/dockyard/c1/devices.allow").read_text() == "untouched"


def test_cgroup_update_v2_writes_only_v2_controllers(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    leaf = unified / "dockyard" / "c1"
    leaf.mkdir(parents=True)
    (unified / "cgroup.controllers").write_text("cpu io memory pids")
    for directory in (unified, unified / "dockyard"):
        (directory / "cgroup.subtree_control").write_text("")
    memory_v1 = tmp_path / "memory" / "dockyard" / "c1"
    memory_v1.mkdir(parents=True)
    directories = [(Hierarchy(tmp_path / "memory", 1, ("memory",)), memory_v1), (Hierarchy(unified, 2), leaf)]
    Cgroup("dockyard/c1", directories).update({
        "memory": {"limit": 64 * MIB}, "cpu": {"period": 100_000, "quota": 50_000}, "blockIO": {"weight": 1000},
    })
    assert (memory_v1 / "memory.limit_in_bytes").read_text() == str(64 * MIB)
    assert not (leaf / "memory.max").exists()
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert (leaf / "io.weight").read_text() == "default 10000"


def test_v2_for_controllers_selects_sections() -> None:
    resources = {"memory": {"limit": 1}, "cpu": {"shares": 2, "cpus": "0"}, "pids": {"limit": 3}}
    assert v2.for_controllers(resources, ["cpuset", "pids"]) == {"cpu": {"cpus": "0"}, "pids": {"limit": 3}}


@pytest.mark.parametrize(("weight", "expected"), [(10, 1), (1000, 10000), (500, 4950)])
def test_blkio_weight_to_io_weight(weight: int, expected: int) -> None:
    assert v2.blkio_weight_to_io_weight(weight) == expected


# -- the CLI's flags -----------------------------------------------------------------------


def _update_args(*words: str):  # type: ignore[no-untyped-def]
    from dockyard.cli.main import build_parser

    argv = ["update", *words]
    return build_parser(argv).parse_args(argv)


def test_update_flags_become_body() -> None:
    from dockyard.cli.container_tools import build_update_body

    body = build_update_body(_update_args("-m", "64m", "--cpus", "0.5", "--pids-limit", "50", "-c", "512",
                                          "--memory-swap", "-1", "--restart", "on-failure:3", "web"))
    assert body == {"Memory": 64 * MIB, "NanoCpus": 500_000_000, "PidsLimit": 50, "CpuShares": 512,
                    "MemorySwap": -1, "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}


def test_update_flags_errors() -> None:
    from dockyard.cli.container_flags import FlagError
    from dockyard.cli.container_tools import build_update_body

    with pytest.raises(FlagError, match='invalid argument "lots" for "-m, --memory" flag'):
        build_update_body(_update_args("-m", "lots", "web"))
    with pytest.raises(InvalidArgument, match="you must provide one or more flags"):
        build_update_body(_update_args("web"))
    assert build_update_body(_update_args("--pids-limit", "0", "web")) == {}

"""Unit tests of the runtime's pure parts: spec generation, seccomp profile, mount options,
path resolution in the root, and the cgroup writers on temporary directories."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.errors import ContainerNotFound, RuntimeFailure
from dockyard.runtime import container, libc, rlimits, spec, state
from dockyard.runtime.capabilities import CAPABILITIES, DEFAULT_CAPABILITIES, mask
from dockyard.runtime.cgroups import Cgroup, Hierarchy, hierarchies, mode, own_cgroups, resolve, v1, v2
from dockyard.runtime.mounts import parse_options, resolve_in_root


def blocked_names(profile: dict) -> set[str]:
    return {name for rule in profile["syscalls"] if not rule.get("args") for name in rule["names"]}


# --- spec ---------------------------------------------------------------------------------


def test_default_spec_capabilities():
    config = spec.default_spec(["sh"])
    capabilities = config["process"]["capabilities"]
    assert len(DEFAULT_CAPABILITIES) == 14
    for name in ("bounding", "effective", "permitted"):
        assert capabilities[name] == DEFAULT_CAPABILITIES
    # Docker's default bounding set, as /proc/PID/status shows it in a container.
    assert mask(DEFAULT_CAPABILITIES) == 0xA80425FB


def test_default_spec_paths_and_mounts():
    config = spec.default_spec(["sh"])
    assert "/proc/kcore" in config["linux"]["maskedPaths"]
    assert "/sys/firmware" in config["linux"]["maskedPaths"]
    assert "/proc/sys" in config["linux"]["readonlyPaths"]
    destinations = [entry["destination"] for entry in config["mounts"]]
    assert destinations == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    devpts = config["mounts"][2]
    assert "ptmxmode=0666" in devpts["options"]
    assert "newinstance" in devpts["options"]
    assert {ns["type"] for ns in config["linux"]["namespaces"]} == {"pid", "network", "ipc", "uts", "mount", "cgroup"}


def test_seccomp_profile_blocks_documented_syscalls():
    profile = spec.seccomp_profile()
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    blocked = blocked_names(profile)
    for name in ("mount", "umount2", "unshare", "setns", "ptrace", "bpf", "keyctl", "reboot", "kexec_load", "pivot_root"):
        assert name in blocked, name
    for rule in profile["syscalls"]:
        assert rule["action"] == "SCMP_ACT_ERRNO"
    errnos = {rule["errnoRet"] for rule in profile["syscalls"] if rule["names"] != ["clone3"]}
    assert errnos == {errno.EPERM}


def test_seccomp_profile_clone_namespace_flags():
    profile = spec.seccomp_profile()
    clone_rules = [rule for rule in profile["syscalls"] if rule["names"] == ["clone"]]
    flags = {rule["args"][0]["value"] for rule in clone_rules}
    assert libc.CLONE_NEWNS in flags
    assert libc.CLONE_NEWUSER in flags
    assert all(rule["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" for rule in clone_rules)


def test_seccomp_profile_relaxed_by_capabilities():
    profile = spec.seccomp_profile(DEFAULT_CAPABILITIES + ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])
    blocked = blocked_names(profile)
    assert "mount" not in blocked
    assert "unshare" not in blocked
    assert "ptrace" not in blocked
    assert "reboot" in blocked
    assert not [rule for rule in profile["syscalls"] if rule["names"] == ["clone"]]


def personality_blocked(value: int) -> bool:
    """Evaluate the profile's personality rules the way the kernel filter does."""
    for rule in spec.seccomp_profile()["syscalls"]:
        if rule["names"] != ["personality"]:
            continue
        comparison = rule["args"][0]
        if comparison["op"] == "SCMP_CMP_GT" and value > comparison["value"]:
            return True
        if comparison["op"] == "SCMP_CMP_MASKED_EQ" and value & comparison["value"] == comparison["valueTwo"]:
            return True
    return False


@given(st.integers(min_value=0, max_value=0x20008))
def test_personality_rules_allow_only_standard_values(value):
    assert personality_blocked(value) == (value not in spec.ALLOWED_PERSONALITIES)


def test_load_rejects_bad_config(tmp_path):
    with pytest.raises(RuntimeFailure, match="no config.json"):
        spec.load(tmp_path)
    (tmp_path / "config.json").write_text('{"ociVersion": "2.0.0", "process": {"args": ["sh"]}, "root": {"path": "r"}}')
    with pytest.raises(RuntimeFailure, match="ociVersion"):
        spec.load(tmp_path)
    (tmp_path / "config.json").write_text('{"ociVersion": "1.0.2", "process": {"args": []}, "root": {"path": "r"}}')
    with pytest.raises(RuntimeFailure, match="process.args"):
        spec.load(tmp_path)


# --- mounts -------------------------------------------------------------------------------


def test_parse_options_splits_flags_propagation_data():
    options = parse_options(["nosuid", "ro", "rbind", "rprivate", "mode=755", "size=65536k"])
    assert options.flags == libc.MS_NOSUID | libc.MS_RDONLY | libc.MS_BIND | libc.MS_REC
    assert options.propagation == [libc.MS_PRIVATE | libc.MS_REC]
    assert options.data == "mode=755,size=65536k"


def test_parse_options_later_option_clears():
    assert parse_options(["ro", "rw"]).flags == 0
    assert parse_options(["noexec", "exec", "nodev"]).flags == libc.MS_NODEV


def test_resolve_in_root_keeps_symlinks_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    (root / "up").symlink_to("../../../..")
    assert resolve_in_root(root, "/escape/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/up/etc") == root / "etc"
    assert resolve_in_root(root, "/../../x") == root / "x"


def test_resolve_in_root_symlink_loop(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(RuntimeFailure, match="too many levels"):
        resolve_in_root(tmp_path, "/a/x")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "a", "link", "abs", "b"]), max_size=8))
def test_resolve_in_root_never_leaves_root(tmp_path_factory, parts):
    root = tmp_path_factory.mktemp("root")
    (root / "a").mkdir()
    (root / "link").symlink_to("../..")
    (root / "abs").symlink_to("/a/../..")
    resolved = resolve_in_root(root, "/".join(parts))
    assert resolved == root or root in resolved.parents


# --- cgroups ------------------------------------------------------------------------------

MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_hierarchies_hybrid():
    found = hierarchies(MOUNTINFO)
    assert [h.controllers for h in found] == [("cpu", "cpuacct"), ("memory",), ()]
    assert mode(found) == "hybrid"
    assert mode([h for h in found if h.version == 1]) == "v1"
    assert mode([h for h in found if h.version == 2]) == "v2"
    with pytest.raises(RuntimeFailure):
        mode([])


def test_resolve_absolute_and_relative():
    memory = Hierarchy(Path("/sys/fs/cgroup/memory"), 1, ("memory",))
    own = own_cgroups("4:memory:/session/abc\n0::/\n")
    assert resolve(memory, "/dockyard/c1", own) == Path("/sys/fs/cgroup/memory/dockyard/c1")
    assert resolve(memory, "dockyard/c1", own) == Path("/sys/fs/cgroup/memory/session/abc/dockyard/c1")
    with pytest.raises(RuntimeFailure, match=r"\.\."):
        resolve(memory, "/dockyard/../escape", own)


def test_v1_memory_and_swap(tmp_path):
    (tmp_path / "memory.memsw.limit_in_bytes").write_text("")
    v1.write_memory(tmp_path, {"limit": 1048576, "swap": 2097152, "reservation": 524288})
    assert (tmp_path / "memory.limit_in_bytes").read_text() == "1048576"
    assert (tmp_path / "memory.memsw.limit_in_bytes").read_text() == "2097152"
    assert (tmp_path / "memory.soft_limit_in_bytes").read_text() == "524288"


def test_v1_cpu_pids_devices(tmp_path):
    v1.write_cpu(tmp_path, {"shares": 512, "quota": 50000, "period": 100000})
    v1.write_pids(tmp_path, {"limit": 0})
    assert (tmp_path / "cpu.shares").read_text() == "512"
    assert (tmp_path / "cpu.cfs_quota_us").read_text() == "50000"
    assert (tmp_path / "cpu.cfs_period_us").read_text() == "100000"
    assert (tmp_path / "pids.max").read_text() == "max"
    assert v1.device_rule({"allow": False, "access": "rwm"}) == "a *:* rwm"
    assert v1.device_rule({"type": "c", "major": 10, "minor": 200, "access": "rw"}) == "c 10:200 rw"


def test_v1_cpuset_inherits_parent(tmp_path):
    child = tmp_path / "child"
    child.mkdir()
    (tmp_path / "cpuset.cpus").write_text("0-3\n")
    (tmp_path / "cpuset.mems").write_text("0\n")
    (child / "cpuset.cpus").write_text("")
    (child / "cpuset.mems").write_text("")
    v1.inherit_cpuset(child)
    assert (child / "cpuset.cpus").read_text() == "0-3"
    assert (child / "cpuset.mems").read_text() == "0"


def test_v2_writers(tmp_path):
    v2.write_memory(tmp_path, {"limit": 1000, "swap": 3000})
    v2.write_cpu(tmp_path, {"shares": 1024, "quota": 20000, "cpus": "1"})
    v2.write_pids(tmp_path, {"limit": 7})
    assert (tmp_path / "memory.max").read_text() == "1000"
    assert (tmp_path / "memory.swap.max").read_text() == "2000"
    assert (tmp_path / "cpu.max").read_text() == "20000 100000"
    assert (tmp_path / "cpu.weight").read_text() == str(v2.shares_to_weight(1024))
    assert (tmp_path / "cpuset.cpus").read_text() == "1"
    assert (tmp_path / "pids.max").read_text() == "7"


def test_v2_swap_below_limit_rejected(tmp_path):
    with pytest.raises(RuntimeFailure, match="memory.swap 500"):
        v2.write_memory(tmp_path, {"limit": 1000, "swap": 500})


def test_shares_to_weight_range():
    assert v2.shares_to_weight(2) == 1
    assert v2.shares_to_weight(262144) == 10000
    assert v2.shares_to_weight(1) == 1
    assert v2.shares_to_weight(10**7) == 10000
    assert v2.shares_to_weight(1024) == 39


@given(st.integers(min_value=2, max_value=262143))
def test_shares_to_weight_monotonic(shares):
    assert v2.shares_to_weight(shares) <= v2.shares_to_weight(shares + 1)


def test_v2_enable_controllers(tmp_path):
    leaf = tmp_path / "a" / "b"
    leaf.mkdir(parents=True)
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    for directory in (tmp_path, tmp_path / "a"):
        (directory / "cgroup.subtree_control").write_text("")
    v2.enable_controllers(tmp_path, leaf, ["memory", "pids"])
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (tmp_path / "a" / "cgroup.subtree_control").read_text() == "+memory +pids"
    with pytest.raises(RuntimeFailure, match="hugetlb"):
        v2.enable_controllers(tmp_path, leaf, ["hugetlb"])


def test_cgroup_state_round_trip(tmp_path):
    cgroup = Cgroup("/dockyard/x", [(Hierarchy(tmp_path, 2), tmp_path / "x")], [tmp_path / "x"])
    assert Cgroup.from_state(cgroup.to_state()) == cgroup


def test_cgroup_write_error_names_file(tmp_path):
    with pytest.raises(RuntimeFailure, match="pids.max"):
        v1.write_pids(tmp_path / "missing", {"limit": 5})


# --- limits, signals, state -----------------------------------------------------------------


def test_rlimits_check():
    rlimits.check([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}])
    with pytest.raises(RuntimeFailure, match="RLIMIT_BOGUS"):
        rlimits.check([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}])
    with pytest.raises(RuntimeFailure, match="soft limit 30 is above the hard limit 20"):
        rlimits.check([{"type": "RLIMIT_NOFILE", "soft": 30, "hard": 20}])


def test_parse_signal():
    assert container.parse_signal("KILL") == signal.SIGKILL
    assert container.parse_signal("SIGTERM") == signal.SIGTERM
    assert container.parse_signal("9") == 9
    with pytest.raises(RuntimeFailure, match="SIGNOPE"):
        container.parse_signal("SIGNOPE")


def test_exit_code():
    assert container.exit_code(3 << 8) == 3
    assert container.exit_code(signal.SIGKILL) == 137


def test_container_ids():
    assert state.validate_id("abc-1.2_3") == "abc-1.2_3"
    for bad in ("", "../x", "a/b", "-x"):
        with pytest.raises(RuntimeFailure):
            state.validate_id(bad)


def test_state_of_unknown_container(tmp_path):
    with pytest.raises(ContainerNotFound):
        container.oci_state("missing", tmp_path)


def test_state_stopped_when_process_gone(tmp_path):
    directory = state.new_dir(tmp_path, "gone")
    record = state.ContainerState(
        id="gone", directory=directory, pid=os.getpid(), start_time=-1, bundle="/b", rootfs="/b/rootfs", created="now"
    )
    record.save()
    loaded = state.load(tmp_path, "gone")
    assert loaded.oci()["status"] == "stopped"
    assert loaded.oci()["pid"] == 0
    (directory / state.EXEC_FIFO).touch()
    loaded.start_time = state.process_start_time(os.getpid()) or 0
    assert loaded.status() == "created"


def test_capability_names_match_kernel_numbers():
    assert CAPABILITIES["CAP_CHOWN"] == 0
    assert CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert CAPABILITIES["CAP_SYS_RESOURCE"] == 24
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    with pytest.raises(RuntimeFailure, match="CAP_NOPE"):
        mask(["CAP_NOPE"])

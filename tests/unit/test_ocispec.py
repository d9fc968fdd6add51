"""Container config merging and OCI spec generation, without running anything."""

from __future__ import annotations

import json

import pytest

from dockyard.engine import ocispec
from dockyard.errors import InvalidArgument
from dockyard.runtime.capabilities import DEFAULT_CAPABILITIES

CONTAINER_ID = "0123456789ab" + "c" * 52
PASSWD = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
GROUP = "root:x:0:\nwheel:x:10:root,user\naudio:x:29:user\nuser:x:1000:\n"


def merge(body: dict, image: dict | None = None) -> dict:
    return ocispec.merge_config(body, image or {}, CONTAINER_ID)


# -- merge_config ----------------------------------------------------------------


def test_image_cmd_used_when_body_has_none():
    config = merge({"Image": "x"}, {"Cmd": ["sh"], "Entrypoint": ["/init"]})
    assert config["Entrypoint"] == ["/init"]
    assert config["Cmd"] == ["sh"]


def test_body_cmd_replaces_image_cmd_and_keeps_entrypoint():
    config = merge({"Cmd": ["ls"]}, {"Cmd": ["sh"], "Entrypoint": ["/init"]})
    assert ocispec.command_args(config) == ["/init", "ls"]


def test_body_entrypoint_clears_image_cmd():
    config = merge({"Entrypoint": ["/bin/echo"]}, {"Cmd": ["sh"], "Entrypoint": ["/init"]})
    assert ocispec.command_args(config) == ["/bin/echo"]


def test_body_entrypoint_with_cmd_uses_both():
    config = merge({"Entrypoint": ["/bin/echo"], "Cmd": ["hi"]}, {"Cmd": ["sh"]})
    assert ocispec.command_args(config) == ["/bin/echo", "hi"]


def test_empty_entrypoint_clears_image_entrypoint_only():
    config = merge({"Entrypoint": []}, {"Cmd": ["sh"], "Entrypoint": ["/init"]})
    assert ocispec.command_args(config) == ["sh"]


def test_entrypoint_of_one_empty_string_means_none():
    config = merge({"Entrypoint": [""], "Cmd": ["echo", "x"]}, {"Cmd": ["sh"], "Entrypoint": ["/init"]})
    assert ocispec.command_args(config) == ["echo", "x"]


def test_shell_form_entrypoint_from_image():
    image = {"Entrypoint": ["/bin/sh", "-c", "echo hi"], "Cmd": ["ignored"]}
    assert ocispec.command_args(merge({}, image)) == ["/bin/sh", "-c", "echo hi", "ignored"]


def test_string_cmd_becomes_one_element_list():
    assert merge({"Cmd": "ls"})["Cmd"] == ["ls"]


def test_no_command_is_an_error():
    with pytest.raises(InvalidArgument, match="No command specified"):
        merge({}, {})


def test_env_merge_by_name():
    config = merge({"Cmd": ["x"], "Env": ["A=b=c", "PATH=/bin"]}, {"Env": ["PATH=/usr/bin", "B=1", "A=old"]})
    assert config["Env"] == ["PATH=/bin", "B=1", "A=b=c"]


def test_env_gets_default_path():
    config = merge({"Cmd": ["x"]}, {})
    assert config["Env"][0].startswith("PATH=/usr/local/sbin")


def test_relative_working_dir_is_rejected():
    with pytest.raises(InvalidArgument, match="absolute path"):
        merge({"Cmd": ["x"], "WorkingDir": "relative"})


def test_hostname_defaults_to_short_id_and_labels_merge():
    config = merge({"Cmd": ["x"], "Labels": {"b": "2"}}, {"Labels": {"a": "1", "b": "1"}})
    assert config["Hostname"] == CONTAINER_ID[:12]
    assert config["Labels"] == {"a": "1", "b": "2"}


def test_invalid_stop_signal_is_rejected():
    with pytest.raises(InvalidArgument, match="invalid signal"):
        merge({"Cmd": ["x"], "StopSignal": "SIGNOPE"})


@pytest.mark.parametrize("text, number", [("9", 9), ("KILL", 9), ("SIGTERM", 15), ("usr1", 10)])
def test_parse_signal(text, number):
    assert ocispec.parse_signal(text) == number


# -- resolve_user -------------------------------------------------------------------


def test_empty_user_is_root_with_its_groups():
    assert ocispec.resolve_user("", PASSWD, GROUP) == {"uid": 0, "gid": 0, "additionalGids": [10]}


def test_user_by_name_groups():
    assert ocispec.resolve_user("user", PASSWD, GROUP) == {"uid": 1000, "gid": 1000, "additionalGids": [10, 29]}


def test_numeric_user_without_entry_has_gid_0():
    assert ocispec.resolve_user("1234", PASSWD, GROUP) == {"uid": 1234, "gid": 0}


def test_numeric_user_without_passwd_file():
    assert ocispec.resolve_user("1000", None, None) == {"uid": 1000, "gid": 0}


def test_explicit_group_skips_supplementary_groups():
    assert ocispec.resolve_user("user:audio", PASSWD, GROUP) == {"uid": 1000, "gid": 29}
    assert ocispec.resolve_user("user:55", PASSWD, GROUP) == {"uid": 1000, "gid": 55}


def test_group_add_is_appended():
    assert ocispec.resolve_user("1234", PASSWD, GROUP, ["audio", "77"]) == {
        "uid": 1234, "gid": 0, "additionalGids": [29, 77],
    }


def test_unknown_user_and_group_names_fail():
    with pytest.raises(InvalidArgument, match="unable to find user nobody"):
        ocispec.resolve_user("nobody", PASSWD, GROUP)
    with pytest.raises(InvalidArgument, match="unable to find group nogroup"):
        ocispec.resolve_user("user:nogroup", PASSWD, GROUP)


# -- mounts ------------------------------------------------------------------------


def test_parse_bind_host_path_and_volume():
    assert ocispec.parse_bind("/src:/dst:ro") == {
        "source": "/src", "destination": "/dst", "readonly": True, "volume": False, "nocopy": False, "mode": "ro",
    }
    assert ocispec.parse_bind("data:/dst:nocopy") == {
        "source": "data", "destination": "/dst", "readonly": False, "volume": True, "nocopy": True,
        "mode": "nocopy",
    }
    assert ocispec.parse_bind("data:/dst")["mode"] == ""


@pytest.mark.parametrize("text", ["/src", "/src:relative", "/a:/b:bogus", "bad name:/x", ":/x"])
def test_parse_bind_rejects_malformed(text):
    with pytest.raises(InvalidArgument):
        ocispec.parse_bind(text)


def test_tmpfs_defaults_and_exec_override():
    assert ocispec.tmpfs_mount("/t")["options"] == ["noexec", "nosuid", "nodev"]
    assert ocispec.tmpfs_mount("/t", "exec,size=1m")["options"] == ["nosuid", "nodev", "exec", "size=1m"]


# -- capabilities, security, resources ----------------------------------------------------


def test_capabilities_default_add_drop():
    caps = ocispec.capabilities(["NET_ADMIN"], ["CHOWN"], False)
    assert "CAP_NET_ADMIN" in caps
    assert "CAP_CHOWN" not in caps
    assert set(caps) - {"CAP_NET_ADMIN"} == set(DEFAULT_CAPABILITIES) - {"CAP_CHOWN"}


def test_capabilities_drop_all_then_add_one():
    assert ocispec.capabilities(["cap_kill"], ["ALL"], False) == ["CAP_KILL"]


def test_unknown_capability_is_rejected():
    with pytest.raises(InvalidArgument, match="unknown capability"):
        ocispec.capabilities(["NOT_A_CAP"], None, False)


def test_security_options():
    assert ocispec.security_options(["no-new-privileges"]) == {"no_new_privileges": True, "seccomp": None}
    assert ocispec.security_options(["no-new-privileges:false"])["no_new_privileges"] is False
    assert ocispec.security_options(["seccomp=unconfined"])["seccomp"] == "unconfined"
    with pytest.raises(InvalidArgument):
        ocispec.security_options(["apparmor=x"])
    with pytest.raises(InvalidArgument):
        ocispec.security_options(["what"])


def test_docker_seccomp_profile_is_filtered_by_capabilities():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["chown"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        ],
    }
    converted = ocispec.seccomp_from_docker_profile(json.dumps(profile), ["CAP_CHOWN"])
    names = [rule["names"] for rule in converted["syscalls"]]
    assert names == [["read", "write"], ["chown"]]
    assert converted["defaultErrnoRet"] == 1


def test_invalid_seccomp_profile_is_rejected():
    with pytest.raises(InvalidArgument, match="seccomp"):
        ocispec.seccomp_from_docker_profile("{not json", [])


def test_resources_memory_swap_default_and_cpus():
    result = ocispec.resources({"Memory": 64 << 20, "NanoCpus": 1_500_000_000, "CpuShares": 512, "PidsLimit": 10})
    assert result["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert result["cpu"] == {"period": 100_000, "quota": 150_000, "shares": 512}
    assert result["pids"] == {"limit": 10}


def test_resources_reject_swap_below_memory():
    with pytest.raises(InvalidArgument):
        ocispec.resources({"Memory": 64 << 20, "MemorySwap": 32 << 20})


def test_rlimits_from_ulimits():
    limits = ocispec.rlimits([{"Name": "nproc", "Soft": 10, "Hard": 20}])
    assert {"type": "RLIMIT_NPROC", "soft": 10, "hard": 20} in limits
    with pytest.raises(InvalidArgument):
        ocispec.rlimits([{"Name": "bogus", "Soft": 1, "Hard": 1}])


# -- generate ---------------------------------------------------------------------


def generate(body: dict, host_config: dict | None = None, **kwargs: object) -> dict:
    config = merge(body, {"Cmd": ["sh"]})
    return ocispec.generate(config, host_config or {}, container_id=CONTAINER_ID, rootfs="/r",
                            user={"uid": 0, "gid": 0}, mounts=[], **kwargs)


def test_generate_defaults():
    spec = generate({"Env": ["A=1"]})
    assert spec["process"]["args"] == ["sh"]
    assert "HOSTNAME=" + CONTAINER_ID[:12] in spec["process"]["env"]
    assert spec["hostname"] == CONTAINER_ID[:12]
    assert spec["process"]["noNewPrivileges"] is False
    assert spec["linux"]["cgroupsPath"] == f"/dockyard/{CONTAINER_ID}"
    assert "seccomp" in spec["linux"]
    assert {"type": "network"} in spec["linux"]["namespaces"]


def test_generate_tty_sets_term_and_console_size():
    spec = generate({"Tty": True}, {"ConsoleSize": [30, 100]})
    assert spec["process"]["terminal"] is True
    assert "TERM=xterm" in spec["process"]["env"]
    assert spec["process"]["consoleSize"] == {"height": 30, "width": 100}


def test_generate_host_network_drops_namespaces():
    spec = generate({}, {"NetworkMode": "host"}, host_hostname="machine")
    kinds = [entry["type"] for entry in spec["linux"]["namespaces"]]
    assert "network" not in kinds
    assert "uts" not in kinds
    assert "HOSTNAME=machine" in spec["process"]["env"]


def test_generate_privileged_lifts_restrictions():
    spec = generate({}, {"Privileged": True})
    assert "seccomp" not in spec["linux"]
    assert spec["linux"]["maskedPaths"] == []
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]


def test_generate_unconfined_seccomp_and_no_new_privileges():
    spec = generate({}, {"SecurityOpt": ["seccomp=unconfined", "no-new-privileges"]})
    assert "seccomp" not in spec["linux"]
    assert spec["process"]["noNewPrivileges"] is True


def test_generate_init_wraps_the_command():
    spec = generate({"Cmd": ["sleep", "1"]}, {"Init": True}, init_binary="/usr/bin/tini-static")
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "sleep", "1"]
    assert spec["mounts"][-1]["source"] == "/usr/bin/tini-static"


def test_generate_init_without_binary_fails():
    with pytest.raises(InvalidArgument, match="--init"):
        generate({}, {"Init": True})


@pytest.mark.parametrize(("mode", "kind"), [
    ("", "bridge"), ("default", "bridge"), ("bridge", "bridge"), ("mynet", "bridge"),
    ("host", "host"), ("none", "none"), ("container:abc", "container"),
])
def test_network_mode_kinds(mode, kind):
    assert ocispec.network_mode({"NetworkMode": mode}) == kind


def test_network_mode_container_without_name_fails():
    with pytest.raises(InvalidArgument, match="container:"):
        ocispec.network_mode({"NetworkMode": "container:"})


@pytest.mark.parametrize("mode", ["bridge", "mynet"])
def test_generate_bridge_modes_keep_network_namespace(mode):
    spec = generate({}, {"NetworkMode": mode})
    assert {"type": "network"} in spec["linux"]["namespaces"]


def test_generate_joins_given_network_namespace():
    spec = ocispec.generate(merge({}, {"Cmd": ["sh"]}), {"NetworkMode": "container:abc"}, container_id=CONTAINER_ID,
                            rootfs="/r", user={"uid": 0, "gid": 0}, mounts=[], network_namespace="/proc/42/ns/net")
    assert {"type": "network", "path": "/proc/42/ns/net"} in spec["linux"]["namespaces"]


def test_user_tmpfs_replaces_default_dev_shm():
    config = merge({}, {"Cmd": ["sh"]})
    spec = ocispec.generate(config, {}, container_id=CONTAINER_ID, rootfs="/r", user={"uid": 0, "gid": 0},
                            mounts=[ocispec.tmpfs_mount("/dev/shm", "size=1m")])
    shm = [entry for entry in spec["mounts"] if entry["destination"] == "/dev/shm"]
    assert len(shm) == 1
    assert "size=1m" in shm[0]["options"]


def test_empty_user_in_body_keeps_image_user():
    config = merge({"User": "", "Cmd": ["id"]}, {"User": "mario"})
    assert config["User"] == "mario"

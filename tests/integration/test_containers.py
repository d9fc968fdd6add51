"""The container service on the real kernel: lifecycle, logs, users, exit codes, restart policies, cleanup.

Every test runs containers from the ``busybox`` test image, pulled once per
module into a private root and run root, through the engine's API. The module
fixture removes every container and stops the monitor at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from dockyard.config import Config
from dockyard.engine import Engine, monitor
from dockyard.errors import Conflict, ContainerNotFound, DockyardError, InvalidArgument
from tests.support.images import ImageSet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(test_images: ImageSet) -> Iterator[Engine]:
    base = Path(tempfile.mkdtemp(prefix="dockyard-containers-"))
    instance = Engine(Config(root=base / "root", run_root=base / "run"))
    instance.images.pull(test_images.busybox)
    try:
        yield instance
    finally:
        for summary in instance.containers.list(all=True):
            instance.containers.remove(summary["Id"], force=True, volumes=True)
        instance.containers.shutdown_monitor()
        instance.close()
        shutil.rmtree(base)


@pytest.fixture
def containers(engine: Engine) -> Iterator:
    """The container service; containers a test leaves behind are removed after it."""
    before = {summary["Id"] for summary in engine.containers.list(all=True)}
    yield engine.containers
    for summary in engine.containers.list(all=True):
        if summary["Id"] not in before:
            engine.containers.remove(summary["Id"], force=True, volumes=True)


def body(image: str, *cmd: str, **fields: object) -> dict:
    result: dict = {"Image": image, "Cmd": list(cmd), "HostConfig": {"NetworkMode": "none"}}
    host_config = fields.pop("HostConfig", None)
    if host_config:
        result["HostConfig"].update(host_config)
    result.update(fields)
    return result


def run(containers, image: str, *cmd: str, **fields: object) -> tuple[str, int, str]:
    """Create, start and wait for a container; return its ID, exit code and stdout."""
    container_id = containers.create(body(image, *cmd, **fields))
    containers.start(container_id)
    code = containers.wait(container_id)["StatusCode"]
    output = "".join(entry.data.decode() for entry in containers.logs(container_id, stderr=False))
    return container_id, code, output


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def read_frames(attachment) -> dict[int, bytes]:
    """Read a stdcopy-framed attach stream to its end; return the bytes per stream."""
    data = b""
    while chunk := attachment.recv(65536):
        data += chunk
    streams: dict[int, bytes] = {1: b"", 2: b""}
    while data:
        stream, length = struct.unpack(">BxxxL", data[:8])
        streams[stream] += data[8 : 8 + length]
        data = data[8 + length :]
    return streams


def mounts_text() -> str:
    return Path("/proc/self/mountinfo").read_text()


# -- lifecycle ------------------------------------------------------------------


def test_detached_sleep_keeps_running(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sleep", "100"), name="sleeper")
    containers.start(container_id)
    time.sleep(0.3)
    state = containers.inspect("sleeper")["State"]
    assert state["Status"] == "running"
    assert state["Running"] is True
    assert state["Pid"] > 0
    assert Path(f"/proc/{state['Pid']}").exists()
    summary = containers.list(filters={"name": ["sleeper"]})
    assert [item["Id"] for item in summary] == [container_id]
    assert summary[0]["Status"].startswith("Up ")
    assert summary[0]["Names"] == ["/sleeper"]
    assert summary[0]["Command"] == "sleep 100"


def test_stop_kills_term_ignoring_process_after_timeout(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", 'trap "" TERM; sleep 100'))
    containers.start(container_id)
    time.sleep(0.3)
    started = time.monotonic()
    containers.stop(container_id, timeout=2)
    elapsed = time.monotonic() - started
    state = containers.inspect(container_id)["State"]
    assert 1.8 <= elapsed < 5
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 137
    assert container_id not in mounts_text()
    assert containers.list(filters={"id": [container_id]}) == []
    assert containers.list(all=True, filters={"exited": ["137"], "id": [container_id]})[0]["Status"].startswith(
        "Exited (137)"
    )


def test_stop_with_sigterm_exits_143(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sleep", "100"))
    containers.start(container_id)
    time.sleep(0.3)
    started = time.monotonic()
    containers.stop(container_id, timeout=10)
    # busybox sleep as PID 1 ignores SIGTERM (no handler, PID 1), so it is killed after the timeout
    # unless it exits on TERM; either is Docker's behaviour.
    assert containers.inspect(container_id)["State"]["ExitCode"] in (143, 137)
    assert time.monotonic() - started < 12


def test_exit_codes_are_recorded(containers, test_images: ImageSet):
    _, code, _ = run(containers, test_images.busybox, "sh", "-c", "exit 3")
    assert code == 3


def test_command_not_found_exits_127(containers, test_images: ImageSet):
    container_id, code, _ = run(containers, test_images.busybox, "no-such-program")
    errors = "".join(entry.data.decode() for entry in containers.logs(container_id, stdout=False))
    assert code == 127
    assert "no-such-program" in errors


def test_command_not_executable_exits_126(containers, test_images: ImageSet):
    _, code, _ = run(containers, test_images.busybox, "/etc/passwd")
    assert code == 126


def test_invalid_options_raise_with_exit_code_125(containers, test_images: ImageSet):
    with pytest.raises(InvalidArgument) as caught:
        containers.create(body(test_images.busybox, "true", HostConfig={"Runtime": "no-such-runtime"}))
    assert caught.value.exit_code == 125
    assert "no-such-runtime" in str(caught.value)


def test_name_conflict_uses_docker_wording(containers, test_images: ImageSet):
    first = containers.create(body(test_images.busybox, "true"), name="taken")
    with pytest.raises(Conflict) as caught:
        containers.create(body(test_images.busybox, "true"), name="taken")
    assert str(caught.value) == (
        f'Conflict. The container name "/taken" is already in use by container "{first}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )


def test_invalid_name_is_rejected(containers, test_images: ImageSet):
    with pytest.raises(InvalidArgument):
        containers.create(body(test_images.busybox, "true"), name="-bad")


def test_default_name_and_hostname(containers, test_images: ImageSet):
    container_id, code, output = run(containers, test_images.busybox, "hostname")
    info = containers.inspect(container_id)
    assert code == 0
    assert output == container_id[:12] + "\n"
    assert info["Name"].startswith("/")
    assert "_" in info["Name"]


def test_rename_and_resolve_by_prefix(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "true"), name="before")
    containers.rename("before", "after")
    assert containers.resolve("after") == container_id
    assert containers.resolve(container_id[:10]) == container_id
    with pytest.raises(ContainerNotFound):
        containers.resolve("before")


def test_pause_and_unpause(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sleep", "100"))
    containers.start(container_id)
    containers.pause(container_id)
    assert containers.inspect(container_id)["State"]["Paused"] is True
    assert containers.list(filters={"id": [container_id]})[0]["Status"].endswith("(Paused)")
    with pytest.raises(Conflict):
        containers.pause(container_id)
    containers.unpause(container_id)
    assert containers.inspect(container_id)["State"]["Status"] == "running"


def test_kill_with_signal(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sleep", "100"))
    containers.start(container_id)
    containers.kill(container_id, "KILL")
    assert containers.wait(container_id)["StatusCode"] == 137
    with pytest.raises(Conflict):
        containers.kill(container_id)


def test_kill_returns_once_exited(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sleep", "100"))
    containers.start(container_id)
    containers.kill(container_id, "KILL")
    state = containers.inspect(container_id)["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 137


def test_kill_of_paused_container_returns_once_exited(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sleep", "100"))
    containers.start(container_id)
    containers.pause(container_id)
    containers.kill(container_id, "KILL")
    assert containers.inspect(container_id)["State"]["Status"] == "exited"


def test_restart_runs_again(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "echo run; sleep 100"))
    containers.start(container_id)
    assert wait_for(lambda: len(list(containers.logs(container_id))) == 1)
    containers.restart(container_id, timeout=0)
    assert containers.inspect(container_id)["State"]["Running"] is True
    assert wait_for(lambda: len(list(containers.logs(container_id))) == 2)


def test_start_after_exit_reuses_the_container(containers, test_images: ImageSet):
    container_id, _, _ = run(containers, test_images.busybox, "sh", "-c", "echo again")
    containers.start(container_id)
    containers.wait(container_id)
    lines = [entry.data for entry in containers.logs(container_id)]
    assert lines == [b"again\n", b"again\n"]


def test_remove_running_needs_force(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sleep", "100"))
    containers.start(container_id)
    with pytest.raises(Conflict):
        containers.remove(container_id)
    containers.remove(container_id, force=True)
    with pytest.raises(ContainerNotFound):
        containers.inspect(container_id)


def test_remove_leaves_nothing_behind(engine, containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "echo x > /file; sleep 100",
                                          Volumes={"/data": {}}))
    containers.start(container_id)
    pid = containers.inspect(container_id)["State"]["Pid"]
    volumes = [mount["Name"] for mount in containers.inspect(container_id)["Mounts"]]
    assert len(volumes) == 1
    assert container_id in mounts_text()
    containers.remove(container_id, force=True, volumes=True)
    root, run_root = engine.config.root, engine.config.run_root
    assert container_id not in mounts_text()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    assert not (root / "containers" / container_id).exists()
    assert not (run_root / "containers" / container_id).exists()
    assert not (run_root / "runtime" / container_id).exists()
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        assert not (hierarchy / "dockyard" / container_id).exists()
    assert engine.state.volume(volumes[0]) is None
    assert not (root / "volumes" / volumes[0]).exists()


def test_wait_conditions(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "sleep 0.5; exit 4"))
    with pytest.raises(InvalidArgument):
        containers.wait(container_id, "sometime")
    containers.start(container_id)
    assert containers.wait(container_id, "next-exit") == {"StatusCode": 4, "Error": None}
    assert containers.wait(container_id, "not-running") == {"StatusCode": 4, "Error": None}


def test_sizes_of_writable_layer(engine, containers, test_images: ImageSet):
    container_id, _, _ = run(containers, test_images.busybox, "sh", "-c", "head -c 5000 /dev/zero > /file")
    [summary] = containers.list(all=True, filters={"id": [container_id]}, size=True)
    image_size = engine.state.image(summary["ImageID"]).size
    assert summary["SizeRw"] == 5000
    assert summary["SizeRootFs"] == 5000 + image_size
    assert containers.inspect(container_id, size=True)["SizeRw"] == 5000
    assert "SizeRw" not in containers.inspect(container_id)


def test_prune_removes_stopped_containers(containers, test_images: ImageSet):
    stopped, _, _ = run(containers, test_images.busybox, "true")
    running = containers.create(body(test_images.busybox, "sleep", "100"))
    containers.start(running)
    result = containers.prune()
    assert stopped in result["ContainersDeleted"]
    assert running not in result["ContainersDeleted"]
    assert containers.inspect(running)["State"]["Running"]


# -- configuration ---------------------------------------------------------------------


def test_user_without_passwd_entry_runs_with_gid_0(containers, test_images: ImageSet):
    _, code, output = run(containers, test_images.busybox, "id", User="1000")
    assert code == 0
    assert output.startswith("uid=1000 gid=0(root)")


def test_user_by_name_from_image_passwd(containers, test_images: ImageSet):
    _, code, output = run(containers, test_images.busybox, "sh", "-c", "id -u; id -g", User="root:1234")
    assert output.split() == ["0", "1234"]


def test_unknown_user_name_is_an_error(containers, test_images: ImageSet):
    with pytest.raises(InvalidArgument, match="unable to find user nobody-here"):
        containers.create(body(test_images.busybox, "true", User="nobody-here"))


def test_missing_workdir_is_created(containers, test_images: ImageSet):
    _, code, output = run(containers, test_images.busybox, "pwd", WorkingDir="/does/not/exist")
    assert code == 0
    assert output == "/does/not/exist\n"


def test_env_value_keeps_everything_after_first_equals(containers, test_images: ImageSet):
    _, _, output = run(containers, test_images.busybox, "sh", "-c", 'echo "$A"', Env=["A=b=c"])
    assert output == "b=c\n"


def test_shell_form_entrypoint_ignores_cmd(containers, test_images: ImageSet):
    _, code, output = run(containers, test_images.busybox, "ignored", Entrypoint=["/bin/sh", "-c", "echo from-entrypoint"])
    assert code == 0
    assert output == "from-entrypoint\n"


def test_readonly_rootfs_and_tmpfs(containers, test_images: ImageSet):
    script = "touch /x 2>/dev/null && echo root-writable; touch /scratch/y && echo tmpfs-writable"
    _, _, output = run(containers, test_images.busybox, "sh", "-c", script,
                       HostConfig={"ReadonlyRootfs": True, "Tmpfs": {"/scratch": "size=1m"}})
    assert output == "tmpfs-writable\n"


def test_bind_mount_and_named_volume(engine, containers, test_images: ImageSet, tmp_path: Path):
    (tmp_path / "in.txt").write_text("from host\n")
    _, code, output = run(containers, test_images.busybox, "sh", "-c", "cat /host/in.txt; echo kept > /vol/file",
                          HostConfig={"Binds": [f"{tmp_path}:/host:ro", "testvol:/vol"]})
    assert code == 0
    assert output == "from host\n"
    assert (engine.config.root / "volumes" / "testvol" / "_data" / "file").read_text() == "kept\n"
    for summary in containers.list(all=True):
        containers.remove(summary["Id"])
    engine.volumes.remove("testvol")


def test_memory_and_pids_limits_reach_the_cgroup(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sleep", "100",
                                          HostConfig={"Memory": 64 * 1024 * 1024, "PidsLimit": 50}))
    containers.start(container_id)
    memory = Path(f"/sys/fs/cgroup/memory/dockyard/{container_id}/memory.limit_in_bytes")
    pids = Path(f"/sys/fs/cgroup/pids/dockyard/{container_id}/pids.max")
    assert memory.read_text().strip() == str(64 * 1024 * 1024)
    assert pids.read_text().strip() == "50"


def test_cap_drop_all_removes_capabilities(containers, test_images: ImageSet):
    _, _, output = run(containers, test_images.busybox, "sh", "-c", "grep CapEff /proc/self/status",
                       HostConfig={"CapDrop": ["ALL"]})
    assert output.split() == ["CapEff:", "0000000000000000"]


def test_init_runs_tini_as_pid_1(containers, test_images: ImageSet):
    _, code, output = run(containers, test_images.busybox, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '",
                          HostConfig={"Init": True})
    assert code == 0
    assert output.startswith("/sbin/docker-init -- sh")


def test_init_keeps_user_command_in_inspect_and_list(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sleep", "100", HostConfig={"Init": True}))
    info = containers.inspect(container_id)
    assert info["Path"] == "sleep"
    assert info["Args"] == ["100"]
    assert info["HostConfig"]["Init"] is True
    [summary] = containers.list(all=True, filters={"id": [container_id]})
    assert summary["Command"] == "sleep 100"


def test_seccomp_profile_from_security_opt(containers, test_images: ImageSet):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    script = "mkdir /made 2>/dev/null && echo made || echo blocked"
    _, _, output = run(containers, test_images.busybox, "sh", "-c", script,
                       HostConfig={"SecurityOpt": [f"seccomp={json.dumps(profile)}"]})
    _, _, unconfined = run(containers, test_images.busybox, "sh", "-c", script,
                           HostConfig={"SecurityOpt": ["seccomp=unconfined"]})
    assert output == "blocked\n"
    assert unconfined == "made\n"


def test_no_new_privileges_sets_the_flag(containers, test_images: ImageSet):
    script = "grep NoNewPrivs /proc/self/status"
    _, _, default = run(containers, test_images.busybox, "sh", "-c", script)
    _, _, hardened = run(containers, test_images.busybox, "sh", "-c", script,
                         HostConfig={"SecurityOpt": ["no-new-privileges"]})
    assert default.split() == ["NoNewPrivs:", "0"]
    assert hardened.split() == ["NoNewPrivs:", "1"]


def test_privileged_gets_all_capabilities_and_devices(containers, test_images: ImageSet):
    script = "grep CapEff /proc/self/status; ls /dev | grep -c . ; mkdir -p /mnt; mount -t tmpfs none /mnt && echo mounted"
    _, code, output = run(containers, test_images.busybox, "sh", "-c", script, HostConfig={"Privileged": True})
    capabilities, device_count, mounted = output.split("\n")[:3]
    assert code == 0
    assert int(capabilities.split()[1], 16) > 0x3FFFFF
    assert int(device_count) > 10
    assert mounted == "mounted"


def test_cpu_limit_and_ulimit(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "ulimit -n; sleep 100",
                                          HostConfig={"NanoCpus": 500_000_000, "CpuShares": 512,
                                                      "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}]}))
    containers.start(container_id)
    quota = Path(f"/sys/fs/cgroup/cpu/dockyard/{container_id}/cpu.cfs_quota_us")
    shares = Path(f"/sys/fs/cgroup/cpu/dockyard/{container_id}/cpu.shares")
    assert quota.read_text().strip() == "50000"
    assert shares.read_text().strip() == "512"
    assert wait_for(lambda: [entry.data for entry in containers.logs(container_id)] == [b"100\n"])


def test_image_volume_becomes_anonymous_volume(engine, containers, test_images: ImageSet):
    container_id, _, _ = run(containers, test_images.busybox, "sh", "-c", "echo v > /cache/file", Volumes={"/cache": {}})
    mounts = containers.inspect(container_id)["Mounts"]
    assert len(mounts) == 1
    assert mounts[0]["Type"] == "volume"
    assert mounts[0]["Destination"] == "/cache"
    assert (Path(mounts[0]["Source"]) / "file").read_text() == "v\n"
    labels = engine.volumes.inspect(mounts[0]["Name"])["Labels"]
    assert "com.docker.volume.anonymous" in labels


def test_new_volume_is_filled_from_image(engine, containers, test_images: ImageSet):
    container_id, _, output = run(containers, test_images.busybox, "/bin/busybox", "ls", "/usr/bin",
                                  Volumes={"/usr/bin": {}})
    source = Path(containers.inspect(container_id)["Mounts"][0]["Source"])
    assert "wget" in output.split()
    assert (source / "wget").is_symlink()


def test_nocopy_volume_stays_empty(engine, containers, test_images: ImageSet):
    _, _, output = run(containers, test_images.busybox, "/bin/busybox", "ls", "/usr/bin",
                       HostConfig={"Binds": ["emptyvol:/usr/bin:nocopy"]})
    assert output == ""
    for summary in containers.list(all=True):
        containers.remove(summary["Id"])
    engine.volumes.remove("emptyvol")


def test_list_before_and_since_filters(containers, test_images: ImageSet):
    first = containers.create(body(test_images.busybox, "true"))
    second = containers.create(body(test_images.busybox, "true"))
    third = containers.create(body(test_images.busybox, "true"))
    assert [item["Id"] for item in containers.list(filters={"since": [first], "before": [third]})] == [second]


def test_host_network_sees_host_interfaces(containers, test_images: ImageSet):
    _, _, output = run(containers, test_images.busybox, "ls", "/sys/class/net", HostConfig={"NetworkMode": "host"})
    assert set(output.split()) == set(os.listdir("/sys/class/net"))


def test_none_network_has_only_lo_up(containers, test_images: ImageSet):
    _, _, output = run(containers, test_images.busybox, "cat", "/sys/class/net/lo/operstate")
    _, _, names = run(containers, test_images.busybox, "ls", "/sys/class/net")
    assert names.split() == ["lo"]
    assert output.strip() in ("unknown", "up")


def test_inspect_shape(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "true", Labels={"a": "b"}), name="shape")
    info = containers.inspect(container_id)
    assert info["Name"] == "/shape"
    assert info["State"]["Status"] == "created"
    assert info["State"]["StartedAt"] == "0001-01-01T00:00:00Z"
    assert info["Config"]["Labels"] == {"a": "b"}
    assert info["Config"]["Cmd"] == ["true"]
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert info["LogPath"].endswith(f"{container_id}-json.log")
    assert info["Image"].startswith("sha256:")
    assert containers.list(all=True, filters={"label": ["a=b"]})[0]["Id"] == container_id
    assert containers.list(all=True, filters={"ancestor": [test_images.busybox], "id": [container_id]})
    assert containers.list(all=True, filters={"status": ["created"], "id": [container_id]})
    assert containers.list(all=True, filters={"status": ["running"], "id": [container_id]}) == []


def test_inspect_keys_match_engine_api_spec(engine, containers, test_images: ImageSet):
    from tests.support.apispec import properties

    container_id = containers.create(body(test_images.busybox, "sleep", "100", HostConfig={
        "Memory": 32 * 1024 * 1024, "Binds": ["specvol:/data"],
    }))
    try:
        containers.start(container_id)
        info = containers.inspect(container_id)
        # Docker too leaves these out unless asked for sizes or the image came from a manifest it kept.
        optional = {"SizeRw", "SizeRootFs", "ImageManifestDescriptor"}
        assert set(info) == set(properties("ContainerInspectResponse")) - optional
        assert set(info["HostConfig"]) == set(properties("HostConfig"))
        # Health appears only for a container with a healthcheck.
        assert set(info["State"]) == set(properties("ContainerState")) - {"Health"}
        assert set(info["NetworkSettings"]) == set(properties("NetworkSettings"))
        assert set(info["Config"]) <= set(properties("ContainerConfig"))
        assert info["HostConfig"]["Privileged"] is False
        assert info["HostConfig"]["MemorySwap"] == 64 * 1024 * 1024
        assert info["HostConfig"]["NetworkMode"] == "none"
        [mount] = info["Mounts"]
        assert mount["Mode"] == "z"
    finally:
        containers.remove(container_id, force=True)
        engine.volumes.remove("specvol")


# -- logs -------------------------------------------------------------------------


def test_logs_long_line_and_missing_final_newline(containers, test_images: ImageSet):
    script = "head -c 20480 /dev/zero | tr '\\0' x; echo; echo err >&2; printf last"
    container_id, code, _ = run(containers, test_images.busybox, "sh", "-c", script)
    entries = list(containers.logs(container_id))
    stdout = [entry.data for entry in entries if entry.stream == "stdout"]
    assert code == 0
    assert stdout == [b"x" * 20480 + b"\n", b"last"]
    assert [entry.data for entry in entries if entry.stream == "stderr"] == [b"err\n"]
    assert [entry.data for entry in containers.logs(container_id, tail=1, stderr=False)] == [b"last"]
    raw = Path(containers.inspect(container_id)["LogPath"]).read_text().splitlines()
    first = json.loads(raw[0])
    assert first["stream"] == "stdout"
    assert len(first["log"]) == 16 * 1024
    assert first["time"].endswith("Z")


def test_logs_follow_ends_when_container_exits(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"))
    containers.start(container_id)
    lines = [entry.data for entry in containers.logs(container_id, follow=True)]
    assert lines == [b"1\n", b"2\n", b"3\n"]


def test_log_rotation_keeps_max_file(containers, test_images: ImageSet):
    script = "i=0; while [ $i -lt 400 ]; do echo line-$i-padding-padding-padding-padding; i=$((i+1)); done"
    container_id, _, output = run(containers, test_images.busybox, "sh", "-c", script,
                                  HostConfig={"LogConfig": {"Type": "json-file", "Config": {"max-size": "4k", "max-file": "2"}}})
    log_path = Path(containers.inspect(container_id)["LogPath"])
    assert log_path.stat().st_size <= 4096
    assert log_path.with_name(log_path.name + ".1").exists()
    assert not log_path.with_name(log_path.name + ".2").exists()
    assert output.splitlines()[-1].startswith("line-399-")


# -- attach ---------------------------------------------------------------------


def test_attach_before_start_gets_all_output_and_stdin(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "cat; echo done >&2",
                                          OpenStdin=True, StdinOnce=True, AttachStdin=True))
    attachment = containers.attach(container_id, stdin=True, stdout=True, stderr=True)
    containers.start(container_id)
    attachment.write(b"hello\n")
    attachment.close_stdin()
    streams = read_frames(attachment)
    attachment.close()
    assert streams[1] == b"hello\n"
    assert streams[2] == b"done\n"
    assert containers.wait(container_id)["StatusCode"] == 0


def test_attach_with_tty_is_raw(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "tty; echo out", Tty=True))
    attachment = containers.attach(container_id, stdin=False, stdout=True, stderr=True)
    containers.start(container_id)
    data = b""
    while chunk := attachment.recv(65536):
        data += chunk
    attachment.close()
    assert attachment.tty is True
    assert b"/dev/pts/0\r\nout\r\n" == data


# -- restart policies and AutoRemove -------------------------------------------------


def test_on_failure_restarts_exactly_max_times(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "echo run; exit 1",
                                          HostConfig={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}))
    containers.start(container_id)
    assert wait_for(lambda: containers.inspect(container_id)["State"]["Status"] == "exited"
                    and containers.inspect(container_id)["RestartCount"] == 2, timeout=15)
    time.sleep(1)
    info = containers.inspect(container_id)
    assert info["RestartCount"] == 2
    assert info["State"]["ExitCode"] == 1
    assert [entry.data for entry in containers.logs(container_id)] == [b"run\n"] * 3


def test_always_restarts_until_stopped(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "exit 0",
                                          HostConfig={"RestartPolicy": {"Name": "always"}}))
    containers.start(container_id)
    assert wait_for(lambda: containers.inspect(container_id)["RestartCount"] >= 2)
    containers.stop(container_id, timeout=1)
    count = containers.inspect(container_id)["RestartCount"]
    time.sleep(1)
    assert containers.inspect(container_id)["RestartCount"] == count
    assert containers.inspect(container_id)["State"]["Status"] == "exited"


def test_restart_backoff_doubles(containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "true", HostConfig={"RestartPolicy": {"Name": "always"}}))
    containers.start(container_id)
    time.sleep(2)
    count = containers.inspect(container_id)["RestartCount"]
    containers.stop(container_id, timeout=1)
    # Delays of 0.1, 0.2, 0.4 and 0.8 s add up to 1.5 s: about four restarts
    # in two seconds, where restarting without a delay would make dozens.
    assert 2 <= count <= 6


def test_oom_kill_is_reported(containers, test_images: ImageSet):
    script = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"
    container_id, code, output = run(containers, test_images.busybox, "sh", "-c", script,
                                     HostConfig={"Memory": 16 * 1024 * 1024, "MemorySwap": 16 * 1024 * 1024})
    state = containers.inspect(container_id)["State"]
    assert output == ""
    assert state["OOMKilled"] is True
    assert code == 137


def test_auto_remove_after_exit(engine, containers, test_images: ImageSet):
    container_id = containers.create(body(test_images.busybox, "sh", "-c", "exit 2", HostConfig={"AutoRemove": True}))
    containers.start(container_id)
    assert containers.wait(container_id, "removed") == {"StatusCode": 2, "Error": None}
    with pytest.raises(ContainerNotFound):
        containers.inspect(container_id)
    assert not (engine.config.root / "containers" / container_id).exists()
    assert container_id not in mounts_text()


def test_auto_remove_conflicts_with_restart_policy(containers, test_images: ImageSet):
    with pytest.raises(InvalidArgument):
        containers.create(body(test_images.busybox, "true",
                               HostConfig={"AutoRemove": True, "RestartPolicy": {"Name": "always"}}))


def test_image_in_use_cannot_be_removed(engine, containers, test_images: ImageSet):
    containers.create(body(test_images.busybox, "true"))
    with pytest.raises(DockyardError):
        engine.images.remove(test_images.busybox)

"""The installed docker CLI (API 1.50) against ``dockyard system service`` on a unix socket."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.support.api import DOCKER_CLI, ApiService
from tests.support.containers import wait_until
from tests.support.registry import Registry

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(DOCKER_CLI is None, reason="the docker CLI is not installed"),
]


def test_version_reports_api_150(docker_api: ApiService) -> None:
    result = docker_api.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}")
    assert result.stdout.strip() == "1.50 linux"


def test_info_fields(docker_api: ApiService) -> None:
    result = docker_api.docker("info", "--format", "{{json .}}")
    info = json.loads(result.stdout)
    assert info["Driver"] == "overlay2"
    assert info["OSType"] == "linux"
    assert info["NCPU"] >= 1
    assert info["MemTotal"] > 0
    assert info["CgroupVersion"] in ("1", "2")
    assert info["DockerRootDir"] == str(docker_api.root)


def test_pull_through_mirror_and_list(docker_api: ApiService) -> None:
    pulled = docker_api.docker("pull", "busybox")
    assert "Status: " in pulled.stdout
    assert "docker.io/library/busybox:latest" in pulled.stdout
    listed = docker_api.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert "busybox:latest" in listed.stdout.split()


def test_pull_missing_never_reaches_docker_hub(docker_api: ApiService) -> None:
    result = docker_api.docker("pull", "dockyard-test/does-not-exist", check=False)
    assert result.returncode != 0
    assert docker_api.registry_host in result.stderr
    assert "registry-1.docker.io" not in result.stderr
    assert "registry-1.docker.io" not in docker_api.log()


def test_run_foreground_prints_output(docker_api: ApiService) -> None:
    result = docker_api.docker("run", "--rm", "busybox", "echo", "hi")
    assert result.stdout == "hi\n"
    assert docker_api.docker("ps", "-aq").stdout == ""


def test_run_foreground_exit_code(docker_api: ApiService) -> None:
    result = docker_api.docker("run", "--rm", "busybox", "sh", "-c", "echo to-stderr >&2; exit 7", check=False)
    assert result.returncode == 7
    assert result.stderr == "to-stderr\n"


def test_run_without_rm_keeps_exit_code(docker_api: ApiService) -> None:
    result = docker_api.docker("run", "--name", "kept", "busybox", "sh", "-c", "exit 5", check=False)
    assert result.returncode == 5
    status = docker_api.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "kept")
    assert status.stdout.strip() == "exited 5"


def test_run_interactive_stdin(docker_api: ApiService) -> None:
    result = docker_api.docker("run", "-i", "--rm", "busybox", "cat", input="hello stdin\n")
    assert result.stdout == "hello stdin\n"


def test_run_with_tty(docker_api: ApiService) -> None:
    result = docker_api.docker("run", "--rm", "-t", "busybox", "tty")
    assert result.stdout.strip() == "/dev/pts/0"


def test_detached_container_lifecycle(docker_api: ApiService) -> None:
    container_id = docker_api.docker(
        "run", "-d", "--name", "sleeper", "busybox", "sh", "-c", "echo started; exec sleep 300").stdout.strip()
    assert len(container_id) == 64

    listed = docker_api.docker("ps", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}")
    assert f"{container_id} sleeper running" in listed.stdout.splitlines()

    logs = docker_api.docker("logs", "sleeper")
    assert logs.stdout == "started\n"

    executed = docker_api.docker("exec", "sleeper", "sh", "-c", "echo from-exec; exit 3", check=False)
    assert executed.returncode == 3
    assert executed.stdout == "from-exec\n"

    inspected = json.loads(docker_api.docker("inspect", "sleeper").stdout)
    assert inspected[0]["Id"] == container_id
    assert inspected[0]["State"]["Running"] is True

    stats = docker_api.docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "sleeper")
    assert stats.stdout.split() == ["sleeper", "1"]

    docker_api.docker("stop", "-t", "1", "sleeper")
    state = docker_api.docker("inspect", "-f", "{{.State.Status}}", "sleeper")
    assert state.stdout.strip() == "exited"

    docker_api.docker("rm", "sleeper")
    assert docker_api.docker("ps", "-aq").stdout == ""


def test_exec_missing_program_exit_127(docker_api: ApiService) -> None:
    docker_api.docker("run", "-d", "--name", "target", "busybox", "sleep", "300")
    result = docker_api.docker("exec", "target", "no-such-program", check=False)
    assert result.returncode == 127
    assert "no-such-program" in result.stdout + result.stderr


def test_exec_interactive_stdin(docker_api: ApiService) -> None:
    docker_api.docker("run", "-d", "--name", "target", "busybox", "sleep", "300")
    result = docker_api.docker("exec", "-i", "target", "tr", "a-z", "A-Z", input="shout\n")
    assert result.stdout == "SHOUT\n"


def test_volume_commands(docker_api: ApiService) -> None:
    assert docker_api.docker("volume", "create", "data1").stdout.strip() == "data1"
    listed = docker_api.docker("volume", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert "data1 local" in listed.stdout.splitlines()
    inspected = json.loads(docker_api.docker("volume", "inspect", "data1").stdout)
    assert inspected[0]["Mountpoint"] == str(docker_api.root / "volumes" / "data1" / "_data")
    docker_api.docker("run", "--rm", "-v", "data1:/data", "busybox", "sh", "-c", "echo kept > /data/file")
    result = docker_api.docker("run", "--rm", "-v", "data1:/data", "busybox", "cat", "/data/file")
    assert result.stdout == "kept\n"
    docker_api.docker("volume", "rm", "data1")
    assert docker_api.docker("volume", "ls", "-q").stdout == ""


def test_cp_both_directions(docker_api: ApiService, tmp_path: Path) -> None:
    docker_api.docker("run", "-d", "--name", "files", "busybox", "sleep", "300")
    source = tmp_path / "in.txt"
    source.write_text("into the container\n")
    docker_api.docker("cp", str(source), "files:/tmp/in.txt")
    assert docker_api.docker("exec", "files", "cat", "/tmp/in.txt").stdout == "into the container\n"

    docker_api.docker("exec", "files", "sh", "-c", "mkdir /out && echo back > /out/b.txt")
    docker_api.docker("cp", "files:/out", str(tmp_path / "copied"))
    assert (tmp_path / "copied" / "b.txt").read_text() == "back\n"

    missing = docker_api.docker("cp", "files:/no/such/path", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0
    assert "Could not find the file /no/such/path" in missing.stderr


def test_export_is_a_tar_of_the_root(docker_api: ApiService, tmp_path: Path) -> None:
    docker_api.docker("create", "--name", "exported", "busybox")
    archive = tmp_path / "root.tar"
    docker_api.docker("export", "-o", str(archive), "exported")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "bin/busybox" in names


def test_error_messages_use_docker_wording(docker_api: ApiService) -> None:
    missing = docker_api.docker("rm", "no-such-container", check=False)
    assert missing.returncode == 1
    assert "No such container: no-such-container" in missing.stderr

    container_id = docker_api.docker("run", "-d", "--name", "busy", "busybox", "sleep", "300").stdout.strip()
    running = docker_api.docker("rm", "busy", check=False)
    assert running.returncode == 1
    assert f"You cannot remove a running container {container_id}" in running.stderr

    name_in_use = docker_api.docker("create", "--name", "busy", "busybox", check=False)
    assert name_in_use.returncode != 0
    assert 'Conflict. The container name "/busy" is already in use by container' in name_in_use.stderr


def test_pause_unpause_and_rename(docker_api: ApiService) -> None:
    docker_api.docker("run", "-d", "--name", "first", "busybox", "sleep", "300")
    docker_api.docker("pause", "first")
    assert docker_api.docker("inspect", "-f", "{{.State.Status}}", "first").stdout.strip() == "paused"
    docker_api.docker("unpause", "first")
    docker_api.docker("rename", "first", "second")
    assert docker_api.docker("inspect", "-f", "{{.Name}}", "second").stdout.strip() == "/second"


def test_service_exits_when_idle(tmp_path: Path) -> None:
    import stat

    from tests.support.api import remove_networks, start_service

    # No pull happens, so the mirror address is never contacted.
    service = start_service(tmp_path, "127.0.0.1:9", extra_args=("--time", "1"))
    try:
        assert stat.S_IMODE(service.socket_path.stat().st_mode) == 0o660
        assert service.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.50"
        service.process.wait(timeout=10)
        assert service.process.returncode == 0
        assert not service.socket_path.exists()
        assert "no request for 1 s: stopping" in service.log()
    finally:
        service.stop()
        remove_networks(service)


def test_service_rejects_second_server_on_socket(docker_api: ApiService, tmp_path: Path) -> None:
    import subprocess

    from tests.support.api import DOCKYARD

    result = subprocess.run(
        [str(DOCKYARD), "system", "service", "--host", docker_api.url, "--time", "0"],
        env={"DOCKYARD_ROOT": str(tmp_path / "root"), "DOCKYARD_RUN_ROOT": str(tmp_path / "run"),
             "DOCKYARD_CONFIG": str(tmp_path / "none.toml"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 125
    assert f"another server is already listening on {docker_api.socket_path}" in result.stderr
    assert docker_api.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.50"


def test_logs_tail_timestamps_follow(docker_api: ApiService) -> None:
    docker_api.docker("run", "--name", "counter", "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; done")
    assert docker_api.docker("logs", "--tail", "2", "counter").stdout == "line2\nline3\n"
    stamped = docker_api.docker("logs", "-t", "--tail", "1", "counter").stdout
    timestamp, _, text = stamped.partition(" ")
    assert text == "line3\n"
    assert timestamp.endswith("Z")
    # The container has exited, so following ends at once with the whole log.
    assert docker_api.docker("logs", "-f", "counter", timeout=30).stdout == "line1\nline2\nline3\n"


def test_kill_and_restart(docker_api: ApiService) -> None:
    docker_api.docker("run", "-d", "--name", "victim", "busybox", "sleep", "300")
    docker_api.docker("kill", "victim")
    # The engine's kill returns once the signal is sent, before the monitor has recorded the exit.
    killed = wait_until(lambda: docker_api.docker(
        "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "victim").stdout.strip() == "exited 137")
    assert killed
    docker_api.docker("restart", "victim")
    assert docker_api.docker("inspect", "-f", "{{.State.Status}}", "victim").stdout.strip() == "running"


def test_save_load_roundtrip(docker_api: ApiService, tmp_path: Path) -> None:
    docker_api.docker("pull", "busybox")
    image_id = docker_api.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    docker_api.docker("tag", "busybox", "saved/copy:1")
    archive = tmp_path / "images.tar"
    docker_api.docker("save", "-o", str(archive), "saved/copy:1")
    docker_api.docker("rmi", "saved/copy:1")
    loaded = docker_api.docker("load", "-i", str(archive))
    assert "Loaded image: saved/copy:1" in loaded.stdout
    assert docker_api.docker("image", "inspect", "-f", "{{.Id}}", "saved/copy:1").stdout.strip() == image_id
    docker_api.docker("rmi", "saved/copy:1")


def test_system_df_counts(docker_api: ApiService) -> None:
    docker_api.docker("run", "-d", "--name", "user", "-v", "dfvolume:/data", "busybox", "sleep", "300")
    usage = docker_api.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}").stdout
    lines = usage.splitlines()
    assert "Containers 1 1" in lines
    assert "Local Volumes 1 1" in lines


def test_commit_makes_image(docker_api: ApiService) -> None:
    docker_api.docker("run", "--name", "source", "busybox", "sh", "-c", "echo committed > /marker")
    docker_api.docker("commit", "-c", "ENV FOO=bar", "-m", "a message", "source", "mine/committed:v1")
    result = docker_api.docker("run", "--rm", "mine/committed:v1", "sh", "-c", 'cat /marker; echo "$FOO"')
    assert result.stdout == "committed\nbar\n"
    comment = docker_api.docker("image", "inspect", "-f", "{{.Comment}}", "mine/committed:v1")
    assert comment.stdout.strip() == "a message"
    docker_api.docker("rm", "source")
    docker_api.docker("rmi", "mine/committed:v1")


def test_login_checks_credentials(docker_api: ApiService, basic_registry: Registry) -> None:
    rejected = docker_api.docker("login", "-u", "alice", "--password-stdin", basic_registry.host,
                                 input="wrong\n", check=False)
    assert rejected.returncode != 0
    assert f"login to {basic_registry.host} as alice failed" in rejected.stderr
    accepted = docker_api.docker("login", "-u", "alice", "--password-stdin", basic_registry.host, input="wonderland\n")
    assert "Login Succeeded" in accepted.stdout
    # The docker CLI stores the credentials in its own config and sends them with each push.
    docker_api.docker("pull", "busybox")
    docker_api.docker("tag", "busybox", f"{basic_registry.host}/cli/pushed:1")
    pushed = docker_api.docker("push", f"{basic_registry.host}/cli/pushed:1")
    assert "digest: sha256:" in pushed.stdout
    docker_api.docker("logout", basic_registry.host)
    docker_api.docker("rmi", f"{basic_registry.host}/cli/pushed:1")


def test_classic_build_streams_steps(docker_api: ApiService, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nARG GREETING=unset\nCOPY message.txt /message.txt\n"
        'RUN echo "$GREETING" > /greeting.txt\nCMD ["cat", "/message.txt", "/greeting.txt"]\n')
    (tmp_path / "message.txt").write_text("from the context\n")
    legacy = {"DOCKER_BUILDKIT": "0"}
    built = docker_api.docker("build", "-t", "built/app:1", "--build-arg", "GREETING=hello", "--label", "stage=test",
                              str(tmp_path), env=legacy)
    # The --label becomes a sixth step, a LABEL instruction after the last one, as in dockerd.
    assert "Step 1/6 : FROM busybox" in built.stdout
    assert "Successfully tagged built/app:1" in built.stdout
    result = docker_api.docker("run", "--rm", "built/app:1")
    assert result.stdout == "from the context\nhello\n"
    label = docker_api.docker("image", "inspect", "-f", '{{index .Config.Labels "stage"}}', "built/app:1")
    assert label.stdout.strip() == "test"
    quiet = docker_api.docker("build", "-q", str(tmp_path), env=legacy)
    assert quiet.stdout.strip().startswith("sha256:")
    piped = docker_api.docker("build", "-t", "built/piped:1", "-", input='FROM busybox\nCMD ["echo", "piped"]\n',
                              env=legacy)
    assert "Successfully tagged built/piped:1" in piped.stdout
    assert docker_api.docker("run", "--rm", "built/piped:1").stdout == "piped\n"
    docker_api.docker("rmi", "built/piped:1")
    docker_api.docker("rmi", "built/app:1")


def test_classic_build_failure_reports_step(docker_api: ApiService, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
    failed = docker_api.docker("build", "-t", "built/broken:1", str(tmp_path), env={"DOCKER_BUILDKIT": "0"},
                               check=False)
    assert failed.returncode != 0
    assert "returned a non-zero code: 3" in failed.stderr
    missing = docker_api.docker("image", "inspect", "built/broken:1", check=False)
    assert missing.returncode != 0

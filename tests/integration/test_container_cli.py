"""The container commands through the installed ``dockyard`` CLI, on the real kernel.

Every test runs in a private root (the ``dockyard`` fixture) with the busybox
test image from the loopback registry. The ``containers`` fixture removes,
with ``rm -f``, every container a test leaves, so that no process, mount or
cgroup outlives the test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.support.cli import DOCKYARD, Dockyard
from tests.support.images import ImageSet

pytestmark = pytest.mark.integration

FULL_ID = re.compile(r"[0-9a-f]{64}")


# Seconds the container monitor lingers after its last container; short, so that it is gone after each test.
MONITOR_IDLE_SECONDS = "0.5"


@pytest.fixture
def containers(dockyard: Dockyard, test_images: ImageSet, monkeypatch: pytest.MonkeyPatch):
    """The ``dockyard`` fixture with the busybox image pulled; every container and the monitor are gone afterwards."""
    monkeypatch.setenv("DOCKYARD_MONITOR_IDLE_TIMEOUT", MONITOR_IDLE_SECONDS)
    dockyard.run("pull", "-q", test_images.busybox)
    yield dockyard
    leftover = dockyard.run("ps", "-a", "-q", "--no-trunc", check=False).stdout.split()
    if leftover:
        dockyard.run("rm", "-f", *leftover, check=False)
    stop_monitor(dockyard)
    mounts = [line for line in open("/proc/self/mountinfo") if str(dockyard.root) in line]
    assert mounts == [], f"container mounts left behind: {mounts}"


def stop_monitor(dockyard: Dockyard) -> None:
    """Wait for the root's monitor to exit on its idle timeout, and kill it by PID if it does not."""
    from dockyard import config
    from dockyard.engine import monitor

    run_root = config.load(path=dockyard.config_path, root=dockyard.root).run_root
    directory = monitor.monitor_dir(dockyard.root, run_root)
    pid = monitor.read_pidfile(directory)
    if not wait_for(lambda: not monitor.is_monitor_process(pid), timeout=15):
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not monitor.is_monitor_process(pid), timeout=5)
        pytest.fail(f"the container monitor {pid} did not exit after its last container was removed")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


def read_until(fd: int, expected: bytes, timeout: float = 30.0) -> bytes:
    """Read from a pseudo-terminal until ``expected`` appears or the timeout passes; return what was read."""
    import select

    output = b""
    deadline = time.monotonic() + timeout
    while expected not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    return output


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def status_of(dockyard: Dockyard, name: str) -> str:
    return dockyard.run("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Status}}").stdout.strip()


# -- run in the foreground -----------------------------------------------------------------------


def test_run_foreground_streams_and_exits_with_code(containers, test_images):
    result = containers.run("run", "--rm", test_images.busybox, "sh", "-c", "echo out; echo err >&2; exit 3",
                            check=False)
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr
    assert containers.run("ps", "-a", "-q").stdout == ""


def test_run_keeps_stopped_container_without_rm(containers, test_images):
    result = containers.run("run", "--name", "kept", test_images.busybox, "true", check=False)
    assert result.returncode == 0
    assert status_of(containers, "kept").startswith("Exited (0)")


def test_run_forwards_stdin(containers, test_images):
    result = containers.run("run", "-i", "--rm", test_images.busybox, "sh", "-c", "cat; echo done",
                            input="line one\nline two\n", check=False)
    assert result.returncode == 0
    assert result.stdout == "line one\nline two\ndone\n"


def test_run_pulls_missing_image(dockyard, test_images):
    result = dockyard.run("run", "--rm", test_images.busybox, "echo", "pulled", check=False)
    assert result.returncode == 0
    assert f"Unable to find image '{test_images.busybox}' locally" in result.stderr
    assert "Status: Downloaded newer image" in result.stderr
    assert result.stdout == "pulled\n"


def test_run_pull_never_fails_with_125(dockyard, test_images):
    result = dockyard.run("run", "--pull", "never", test_images.busybox, "true", check=False)
    assert result.returncode == 125
    assert "No such image" in result.stderr
    assert "Unable to find image" not in result.stderr


def test_run_command_not_found_exits_127(containers, test_images):
    result = containers.run("run", "--rm", test_images.busybox, "no-such-command", check=False)
    assert result.returncode == 127


def test_run_command_not_executable_exits_126(containers, test_images):
    result = containers.run("run", "--rm", test_images.busybox, "/etc/passwd", check=False)
    assert result.returncode == 126


def test_run_bad_flag_exits_125(containers, test_images):
    result = containers.run("run", "-m", "12q", test_images.busybox, check=False)
    assert result.returncode == 125
    assert 'invalid argument "12q" for "-m, --memory" flag: invalid size: \'12q\'' in result.stderr
    assert containers.run("ps", "-a", "-q").stdout == ""


def test_run_applies_env_workdir_user(containers, test_images, tmp_path):
    env_file = tmp_path / "env.list"
    env_file.write_text("# comment\nFROM_FILE=a=b\n")
    result = containers.run(
        "run", "--rm", "-e", "GREETING=hi there", "--env-file", str(env_file), "-w", "/tmp", "-u", "65534",
        "--hostname", "box", test_images.busybox,
        "sh", "-c", 'echo "$GREETING|$FROM_FILE|$(pwd)|$(id -u)|$(hostname)"',
    )
    assert result.stdout == "hi there|a=b|/tmp|65534|box\n"


def test_run_sig_proxy_forwards_term(containers, test_images):
    script = 'trap "echo got TERM; exit 7" TERM; echo ready; while true; do sleep 0.1; done'
    process = containers.popen("run", "--rm", test_images.busybox, "sh", "-c", script)
    try:
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 7
    assert stdout == b"got TERM\n"


# -- detached containers, ps, logs, stop, rm ------------------------------------------------------


def test_detached_lifecycle(containers, test_images):
    started = containers.run("run", "-d", "--name", "web", test_images.busybox,
                             "sh", "-c", "echo hello; echo oops >&2; exec sleep 300")
    container_id = started.stdout.strip()
    assert FULL_ID.fullmatch(container_id)

    lines = containers.run("ps").stdout.splitlines()
    assert columns(lines[0]) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert len(lines) == 2
    assert lines[1].startswith(container_id[:12] + " ")
    assert lines[1].rstrip().endswith("web")
    assert "Up " in lines[1]
    assert re.search(r'"sh -c [^"]{13}…"', lines[1])

    assert wait_for(lambda: containers.run("logs", "web").stdout == "hello\n")
    both = containers.run("logs", "web")
    assert both.stderr == "oops\n"

    stopped = containers.run("stop", "-t", "1", "web")
    assert stopped.stdout == "web\n"
    assert containers.run("ps", "-q").stdout == ""
    assert re.match(r"Exited \(\d+\) ", status_of(containers, "web"))

    removed = containers.run("rm", "web")
    assert removed.stdout == "web\n"
    assert containers.run("ps", "-a", "-q").stdout == ""


def test_stop_timeout_kills_with_137(containers, test_images):
    containers.run("run", "-d", "--name", "stubborn", test_images.busybox,
                   "sh", "-c", 'trap "" TERM; while true; do sleep 0.1; done')
    began = time.monotonic()
    containers.run("stop", "-t", "2", "stubborn")
    elapsed = time.monotonic() - began
    assert 1.5 < elapsed < 10
    assert containers.run("wait", "stubborn").stdout == "137\n"


def test_ps_quiet_latest_last_and_no_trunc(containers, test_images):
    first = containers.run("create", "--name", "first", test_images.busybox, "true").stdout.strip()
    second = containers.run("create", "--name", "second", test_images.busybox, "true").stdout.strip()
    assert containers.run("ps", "-q").stdout == ""
    assert set(containers.run("ps", "-a", "-q").stdout.split()) == {first[:12], second[:12]}
    assert containers.run("ps", "-l", "-q", "--no-trunc").stdout == second + "\n"
    assert containers.run("ps", "-n", "2", "-q").stdout.split() == [second[:12], first[:12]]
    assert status_of(containers, "first") == "Created"


def test_ps_format_and_filters(containers, test_images):
    containers.run("create", "--name", "labelled", "-l", "tier=web", test_images.busybox, "true")
    containers.run("create", "--name", "plain", test_images.busybox, "true")
    names = containers.run("ps", "-a", "--filter", "label=tier=web", "--format", "{{.Names}}").stdout
    assert names == "labelled\n"
    rows = [json.loads(line) for line in containers.run("ps", "-a", "--format", "json").stdout.splitlines()]
    assert sorted(row["Names"] for row in rows) == ["labelled", "plain"]
    assert {row["State"] for row in rows} == {"created"}
    assert all(row["Command"] == '"true"' for row in rows)
    table = containers.run("ps", "-a", "--format", "table {{.Names}}\\t{{.Status}}").stdout.splitlines()
    assert columns(table[0]) == ["NAMES", "STATUS"]
    assert containers.run("ps", "-a", "--filter", "status=exited", "-q").stdout == ""


def test_logs_tail_timestamps_and_since(containers, test_images):
    containers.run("run", "--name", "counter", test_images.busybox, "sh", "-c", "for i in 1 2 3 4; do echo $i; done")
    assert containers.run("logs", "counter").stdout == "1\n2\n3\n4\n"
    assert containers.run("logs", "--tail", "2", "counter").stdout == "3\n4\n"
    stamped = containers.run("logs", "-t", "-n", "1", "counter").stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z 4\n", stamped)
    assert containers.run("logs", "--since", "1h", "counter").stdout == "1\n2\n3\n4\n"
    assert containers.run("logs", "--until", "1h", "counter").stdout == ""
    bad = containers.run("logs", "--since", "yesterday", "counter", check=False)
    assert bad.returncode != 0
    assert 'failed to parse value as time or duration: "yesterday"' in bad.stderr


def test_logs_follow_ends_with_container(containers, test_images):
    containers.run("run", "-d", "--name", "talker", test_images.busybox,
                   "sh", "-c", "echo a; sleep 1; echo b")
    result = containers.run("logs", "-f", "talker")
    assert result.stdout == "a\nb\n"


def test_wait_prints_exit_codes(containers, test_images):
    containers.run("run", "-d", "--name", "five", test_images.busybox, "sh", "-c", "sleep 0.5; exit 5")
    containers.run("run", "-d", "--name", "zero", test_images.busybox, "true")
    assert containers.run("wait", "five", "zero").stdout == "5\n0\n"


def test_several_containers_report_each_error(containers, test_images):
    containers.run("run", "-d", "--name", "alive", test_images.busybox, "sleep", "300")
    result = containers.run("kill", "alive", "missing", check=False)
    assert result.returncode == 1
    assert result.stdout == "alive\n"
    assert "No such container: missing" in result.stderr
    assert containers.run("wait", "alive").stdout == "137\n"
    removed = containers.run("rm", "missing", "alive", check=False)
    assert removed.returncode == 1
    assert removed.stdout == "alive\n"


def test_rename(containers, test_images):
    containers.run("create", "--name", "before", test_images.busybox, "true")
    assert containers.run("rename", "before", "after").stdout == ""
    assert containers.run("ps", "-a", "--format", "{{.Names}}").stdout == "after\n"
    assert containers.run("rename", "before", "again", check=False).returncode == 1


def test_name_in_use_is_a_conflict(containers, test_images):
    containers.run("create", "--name", "taken", test_images.busybox, "true")
    result = containers.run("create", "--name", "taken", test_images.busybox, "true", check=False)
    assert result.returncode == 125
    assert 'The container name "/taken" is already in use' in result.stderr


def test_pause_and_unpause(containers, test_images):
    containers.run("run", "-d", "--name", "sleeper", test_images.busybox, "sleep", "300")
    assert containers.run("pause", "sleeper").stdout == "sleeper\n"
    assert status_of(containers, "sleeper").endswith("(Paused)")
    assert containers.run("unpause", "sleeper").stdout == "sleeper\n"
    assert not status_of(containers, "sleeper").endswith("(Paused)")
    assert containers.run("rm", "-f", "sleeper").stdout == "sleeper\n"


def test_restart_and_start(containers, test_images):
    containers.run("create", "--name", "again", test_images.busybox, "sh", "-c", "echo run")
    assert containers.run("start", "again").stdout == "again\n"
    assert containers.run("wait", "again").stdout == "0\n"
    attached = containers.run("start", "-a", "again", check=False)
    assert attached.returncode == 0
    assert attached.stdout == "run\n"
    assert containers.run("restart", "again").stdout == "again\n"
    containers.run("wait", "again")
    assert containers.run("logs", "again").stdout == "run\nrun\nrun\n"


def test_inspect_finds_containers_then_images(containers, test_images):
    container_id = containers.run("create", "--name", "looked-at", test_images.busybox, "true").stdout.strip()
    [found] = json.loads(containers.run("inspect", "looked-at").stdout)
    assert found["Id"] == container_id
    assert found["Name"] == "/looked-at"
    assert containers.run("inspect", "-f", "{{.State.Status}}", "looked-at").stdout == "created\n"
    assert containers.run("container", "inspect", "-f", "{{.Name}}", container_id[:12]).stdout == "/looked-at\n"
    sized = containers.run("inspect", "-s", "-f", "{{.SizeRw}} {{.SizeRootFs}}", "looked-at").stdout.split()
    assert sized[0] == "0"
    assert int(sized[1]) > 0
    [image] = json.loads(containers.run("inspect", test_images.busybox).stdout)
    assert image["Id"] == test_images.built["busybox"].config_digest
    missing = containers.run("inspect", "--type", "image", "looked-at", check=False)
    assert missing.returncode == 1
    assert "No such image" in missing.stderr
    nothing = containers.run("inspect", "nothing-here", check=False)
    assert nothing.returncode == 1
    assert "No such image: nothing-here" in nothing.stderr
    no_container = containers.run("inspect", "--type", "container", test_images.busybox, check=False)
    assert no_container.returncode == 1
    assert f"No such container: {test_images.busybox}" in no_container.stderr


def test_container_group_aliases_and_prune(containers, test_images):
    containers.run("container", "create", "--name", "old", test_images.busybox, "true")
    assert containers.run("container", "ls", "-a", "--format", "{{.Names}}").stdout == "old\n"
    assert containers.run("container", "list", "-a", "-q").stdout.strip() != ""
    declined = containers.run("container", "prune", input="n\n")
    assert "WARNING! This will remove all stopped containers." in declined.stdout
    assert containers.run("ps", "-a", "-q").stdout.strip() != ""
    pruned = containers.run("container", "prune", "-f")
    assert "Deleted Containers:" in pruned.stdout
    assert "Total reclaimed space:" in pruned.stdout
    assert containers.run("ps", "-a", "-q").stdout == ""


def test_volume_commands(containers, test_images):
    assert containers.run("volume", "create", "data").stdout == "data\n"
    lines = containers.run("volume", "ls").stdout.splitlines()
    assert columns(lines[0]) == ["DRIVER", "VOLUME NAME"]
    assert columns(lines[1]) == ["local", "data"]
    containers.run("run", "--rm", "-v", "data:/data", test_images.busybox, "sh", "-c", "echo kept > /data/file")
    shown = containers.run("run", "--rm", "-v", "data:/data:ro", test_images.busybox, "cat", "/data/file")
    assert shown.stdout == "kept\n"
    [volume] = json.loads(containers.run("volume", "inspect", "data").stdout)
    assert volume["Name"] == "data"
    assert containers.run("volume", "rm", "data").stdout == "data\n"
    assert containers.run("volume", "ls", "-q").stdout == ""


def test_tty_run_through_a_pseudo_terminal(containers, test_images):
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(DOCKYARD), "run", "--rm", "-t", test_images.busybox, "sh", "-c", "tty; exit 4"],
        env=containers.env(), stdin=follower, stdout=follower, stderr=follower,
    )
    os.close(follower)
    try:
        output = read_until(leader, b"\n")
        process.wait(timeout=30)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 4
    assert b"/dev/pts/" in output or b"/dev/console" in output


def test_interactive_tty_session(containers, test_images):
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(DOCKYARD), "run", "-it", "--rm", test_images.busybox, "sh"],
        env=containers.env(), stdin=follower, stdout=follower, stderr=follower,
    )
    os.close(follower)
    try:
        assert b"# " in read_until(leader, b"# ")
        os.write(leader, b"echo $((6 * 7)); exit 3\r")
        output = read_until(leader, b"42")
        process.wait(timeout=30)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert b"42" in output
    assert process.returncode == 3
    assert containers.run("ps", "-a", "-q").stdout == ""


def test_attach_to_running_container(containers, test_images):
    containers.run("run", "-d", "--name", "later", test_images.busybox,
                   "sh", "-c", "sleep 1; echo late; echo also >&2; exit 2")
    result = containers.run("attach", "later", check=False)
    assert result.returncode == 2
    assert result.stdout == "late\n"
    assert result.stderr == "also\n"
    stopped = containers.run("attach", "later", check=False)
    assert stopped.returncode == 1
    assert "You cannot attach to a stopped container" in stopped.stderr


def test_start_attach_interactive(containers, test_images):
    containers.run("create", "-i", "--name", "reader", test_images.busybox, "sh", "-c", "read line; echo got $line")
    result = containers.run("start", "-a", "-i", "reader", input="hello\n", check=False)
    assert result.returncode == 0
    assert result.stdout == "got hello\n"


def test_ps_size_column(containers, test_images):
    containers.run("run", "--name", "writer", test_images.busybox, "sh", "-c", "head -c 5000 /dev/zero > /file")
    lines = containers.run("ps", "-a", "-s").stdout.splitlines()
    assert columns(lines[0])[-1] == "SIZE"
    assert re.fullmatch(r"5(\.\d+)?kB \(virtual [\d.]+[kM]B\)", columns(lines[1])[-1])


def set_terminal_size(fd: int, rows: int, columns: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def take_controlling_terminal() -> None:
    """Make stdin the controlling terminal of a new session, so that size changes send SIGWINCH."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_tty_size_follows_terminal(containers, test_images):
    import pty

    leader, follower = pty.openpty()
    set_terminal_size(follower, 33, 111)
    script = 'stty size; trap "stty size; exit 0" WINCH; echo waiting; while true; do sleep 0.1; done'
    process = subprocess.Popen(
        [str(DOCKYARD), "run", "--rm", "-t", test_images.busybox, "sh", "-c", script],
        env=containers.env(), stdin=follower, stdout=follower, stderr=follower,
        preexec_fn=take_controlling_terminal,
    )
    try:
        output = read_until(leader, b"waiting")
        set_terminal_size(follower, 40, 120)
        output += read_until(leader, b"40 120")
        process.wait(timeout=30)
    finally:
        os.close(follower)
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert b"33 111" in output
    assert b"40 120" in output
    assert process.returncode == 0


def test_detached_rm_removes_after_exit(containers, test_images):
    containers.run("run", "-d", "--rm", "--name", "brief", test_images.busybox, "sh", "-c", "sleep 0.5")
    assert wait_for(lambda: containers.run("ps", "-a", "-q").stdout == "", timeout=20)


def test_run_pull_always_pulls_again(containers, test_images):
    result = containers.run("run", "--rm", "--pull", "always", test_images.busybox, "true")
    assert "Status: Image is up to date" in result.stderr
    assert "Unable to find image" not in result.stderr


def test_bind_mounts_and_tmpfs(containers, test_images, tmp_path):
    (tmp_path / "in.txt").write_text("from host\n")
    result = containers.run(
        "run", "--rm", "-v", f"{tmp_path}:/host:ro",
        "--mount", f"type=bind,source={tmp_path},target=/writable",
        "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m",
        test_images.busybox, "sh", "-c",
        "cat /host/in.txt; touch /host/x 2>/dev/null || echo read-only; echo out > /writable/out.txt; "
        "df /scratch | tail -1",
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "from host"
    assert lines[1] == "read-only"
    assert lines[2].startswith("tmpfs")
    assert (tmp_path / "out.txt").read_text() == "out\n"


def test_cidfile_written_once(containers, test_images, tmp_path):
    cidfile = tmp_path / "cid"
    container_id = containers.run("create", "--cidfile", str(cidfile), test_images.busybox, "true").stdout.strip()
    assert cidfile.read_text() == container_id
    again = containers.run("run", "--cidfile", str(cidfile), test_images.busybox, "true", check=False)
    assert again.returncode == 125
    assert "container ID file found" in again.stderr
    assert containers.run("ps", "-a", "-q", "--no-trunc").stdout == container_id + "\n"


def test_detach_keys_leave_container_running(containers, test_images):
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(DOCKYARD), "run", "-it", "--name", "detachable", test_images.busybox, "sh"],
        env=containers.env(), stdin=follower, stdout=follower, stderr=follower,
    )
    os.close(follower)
    try:
        assert b"# " in read_until(leader, b"# ")
        os.write(leader, b"\x10\x11")
        process.wait(timeout=30)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert status_of(containers, "detachable").startswith("Up ")
    assert containers.run("rm", "-f", "detachable").stdout == "detachable\n"


def test_seccomp_profile_file_is_sent(containers, test_images, tmp_path):
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }, indent=2))
    result = containers.run("run", "--rm", "--security-opt", f"seccomp={profile}", test_images.busybox,
                            "sh", "-c", "mkdir /tmp/blocked || echo denied", check=False)
    assert result.returncode == 0
    assert result.stdout == "denied\n"
    allowed = containers.run("run", "--rm", "--security-opt", "seccomp=unconfined", test_images.busybox,
                             "sh", "-c", "mkdir /tmp/made && echo made")
    assert allowed.stdout == "made\n"


def test_restart_policy_on_failure(containers, test_images):
    containers.run("run", "-d", "--name", "flaky", "--restart", "on-failure:2", test_images.busybox,
                   "sh", "-c", "echo attempt; exit 1")
    assert wait_for(lambda: containers.run("logs", "flaky").stdout == "attempt\n" * 3, timeout=30)
    assert wait_for(lambda: status_of(containers, "flaky").startswith("Exited (1)"), timeout=30)
    assert containers.run("inspect", "-f", "{{.RestartCount}}", "flaky").stdout == "2\n"


def test_run_binds_a_host_file(containers, test_images, tmp_path):
    source = tmp_path / "settings.env"
    source.write_text("A=1\n")
    result = containers.run("run", "--rm", "-v", f"{source}:/etc/settings.env:ro", test_images.busybox,
                            "cat", "/etc/settings.env")
    assert result.stdout == "A=1\n"


def test_run_with_empty_entrypoint_runs_the_command(containers, test_images):
    result = containers.run("run", "--rm", "--entrypoint", "", test_images.busybox, "echo", "x")
    assert result.stdout == "x\n"


def test_rm_drops_exec_records(containers, test_images, dockyard):
    import json

    from dockyard import config

    container_id = containers.run("run", "-d", test_images.busybox, "sleep", "60").stdout.strip()
    containers.run("exec", container_id, "true")
    execs = config.load(path=dockyard.config_path, root=dockyard.root).run_root / "execs"

    def records() -> list[str]:
        return [path.name for path in execs.glob("*.json")
                if json.loads(path.read_text()).get("ContainerID") == container_id]

    assert len(records()) == 1
    containers.run("rm", "-f", container_id)
    assert records() == []

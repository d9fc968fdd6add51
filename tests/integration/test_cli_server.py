"""The CLI server: commands run in its forked children with the client's streams, directory, environment and signals."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import time

import pytest

from dockyard.cli import client
from tests.support.cli import DOCKYARD, Dockyard
from tests.support.cliserver import server_for
from tests.support.containers import start_busybox, wait_until
from tests.support.images import ImageSet

pytestmark = pytest.mark.integration


def processes() -> list[tuple[int, bytes, int]]:
    """Every process that is still there to read, as (pid, process name, parent pid)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                data = file.read()
        except OSError:
            continue
        found.append((int(name), data[data.index(b"(") + 1 : data.rindex(b")")],
                      int(data[data.rindex(b")") + 2:].split()[1])))
    return found


def children_of(pid: int) -> list[int]:
    """The command processes the server ``pid`` forked: its children but its monitor zygote."""
    return [child for child, name, parent in processes() if parent == pid and name != b"dockyard-zygote"]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def running_server(dockyard: Dockyard) -> int:
    """Run a command so that the root's environment has a server, and return the server's pid."""
    address = client.server_address(dockyard.env())
    dockyard.run("--version")
    pid = wait_until(lambda: server_for(address) and _answers(address) and server_for(address), timeout=30)
    assert pid, f"no CLI server came up on {address[1:]}"
    return int(pid)


def _answers(address: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


def test_server_runs_command_in_child(busybox_dockyard: Dockyard, test_images: ImageSet) -> None:
    server = running_server(busybox_dockyard)
    process = busybox_dockyard.popen("run", "--rm", "--network", "none", test_images.busybox, "sleep", "2")
    try:
        # The child forks from the server, so it shows the server's command line.
        assert wait_until(lambda: children_of(server), timeout=10), "no command process appeared under the server"
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert server_for(client.server_address(busybox_dockyard.env())) == server


def test_server_matches_in_process_run(busybox_dockyard: Dockyard, test_images: ImageSet) -> None:
    running_server(busybox_dockyard)
    script = "read line; echo out:$line; echo err >&2; exit 3"
    results = []
    for setting in ("1", "0"):
        env = {**busybox_dockyard.env(), "DOCKYARD_CLI_SERVER": setting}
        results.append(subprocess.run(
            [str(DOCKYARD), "run", "-i", "--rm", "--network", "none", test_images.busybox, "sh", "-c", script],
            env=env, input="hello\n", capture_output=True, text=True, timeout=60,
        ))
    served, here = results
    assert (served.returncode, served.stdout, served.stderr) == (3, "out:hello\n", "err\n")
    assert (here.returncode, here.stdout, here.stderr) == (served.returncode, served.stdout, served.stderr)


def test_server_keeps_usage_exit_codes(dockyard: Dockyard) -> None:
    running_server(dockyard)
    unknown_flag = dockyard.run("ps", "--no-such-flag", check=False)
    assert unknown_flag.returncode == 125
    assert "--no-such-flag" in unknown_flag.stderr
    missing = dockyard.run("no-such-command", check=False)
    assert missing.returncode == 1
    assert "no-such-command" in missing.stderr


def test_client_directory_and_environment_apply(busybox_dockyard: Dockyard, test_images: ImageSet, tmp_path) -> None:
    server = running_server(busybox_dockyard)
    (tmp_path / "vars.env").write_text("# a comment\nFROM_FILE=file-value\nBARE\n")
    for value in ("first", "second"):
        # BARE is not one of the server's variables: the same server runs the command, with the new value.
        result = subprocess.run(
            [str(DOCKYARD), "run", "--rm", "--network", "none", "--env-file", "vars.env", test_images.busybox,
             "sh", "-c", "echo $FROM_FILE $BARE"],
            env={**busybox_dockyard.env(), "BARE": value}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"file-value {value}\n"
    assert server_for(client.server_address(busybox_dockyard.env())) == server


def test_client_forwards_ctrl_c(busybox_dockyard: Dockyard, test_images: ImageSet) -> None:
    running_server(busybox_dockyard)
    container = start_busybox(busybox_dockyard, test_images.busybox, "--network", "none",
                              command=("sh", "-c", "echo ready; sleep 300"))
    process = busybox_dockyard.popen("logs", "-f", container)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready and process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_command_dies_with_killed_client(busybox_dockyard: Dockyard, test_images: ImageSet) -> None:
    server = running_server(busybox_dockyard)
    container = start_busybox(busybox_dockyard, test_images.busybox, "--network", "none")
    process = busybox_dockyard.popen("logs", "-f", container)
    try:
        commands = wait_until(lambda: children_of(server), timeout=10)
        assert commands, "no command process appeared under the server"
    finally:
        process.kill()
        process.wait()
    assert wait_until(lambda: not any(alive(pid) for pid in commands), timeout=10), \
        "the command process outlived its killed client"


def test_client_passes_terminal(busybox_dockyard: Dockyard, test_images: ImageSet) -> None:
    running_server(busybox_dockyard)
    pid, terminal = pty.fork()
    if pid == 0:
        os.execve(str(DOCKYARD), [str(DOCKYARD), "run", "-t", "--rm", "--network", "none", test_images.busybox,
                                  "sh", "-c", "tty; stty size"], busybox_dockyard.env())
    output = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(terminal, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert b"/dev/pts/0" in output


def test_server_rejects_other_users(dockyard: Dockyard) -> None:
    server = running_server(dockyard)
    address = client.server_address(dockyard.env())
    probe = subprocess.run(
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c",
         "import socket, sys\n"
         "s = socket.socket(socket.AF_UNIX)\n"
         f"s.connect({address!r})\n"
         "try:\n"
         "    s.sendall(b'x' * 64)\n"
         "    print(repr(s.recv(16)))\n"
         "except ConnectionResetError:\n"
         "    print('reset')\n"],
        capture_output=True, text=True, timeout=30,
    )
    assert probe.returncode == 0, probe.stderr
    # The server closes the connection without a reply or a fork.
    assert probe.stdout.strip() in ("b''", "reset")
    assert server_for(address) == server


def test_server_exits_when_idle(dockyard: Dockyard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_CLI_SERVER_IDLE_TIMEOUT", "1")
    server = running_server(dockyard)
    assert wait_until(lambda: not alive(server), timeout=15), "the idle server did not exit"


def zygote_of(server: int) -> int | None:
    """The pid of the monitor zygote that the server ``server`` started, once it listens."""
    for pid, name, parent in processes():
        if parent == server and name == b"dockyard-zygote" and _listens(pid):
            return pid
    return None


def _listens(zygote: int) -> bool:
    """Whether the zygote ``zygote`` has bound its abstract socket, whose name ends with its server's pid."""
    try:
        with open(f"/proc/{zygote}/cmdline", "rb") as file:
            address = file.read().split(b"\0")[5].decode()
    except OSError:
        return False
    with open("/proc/net/unix") as table:
        return any(line.rstrip().endswith(" @" + address) for line in table)


def monitor_pid(dockyard: Dockyard) -> int:
    from dockyard import config
    from dockyard.engine import monitor

    run_root = config.load(path=dockyard.config_path, root=dockyard.root).run_root
    return monitor.read_pidfile(monitor.monitor_dir(dockyard.root, run_root))


def process_name(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as file:
        return file.read().strip()


def test_zygote_forks_monitor(busybox_dockyard: Dockyard, test_images: ImageSet) -> None:
    server = running_server(busybox_dockyard)
    zygote = wait_until(lambda: zygote_of(server), timeout=30)
    assert zygote, f"the CLI server {server} started no monitor zygote"
    container = start_busybox(busybox_dockyard, test_images.busybox, "--network", "none",
                              command=("sh", "-c", "echo from-forked-monitor; sleep 300"))
    monitor = monitor_pid(busybox_dockyard)
    assert process_name(monitor) == "dockyard-mon", "the monitor was not forked by the zygote"
    with open(f"/proc/{monitor}/environ", "rb") as file:
        assert f"DOCKYARD_ROOT={busybox_dockyard.root}".encode() in file.read().split(b"\0")
    assert wait_until(lambda: busybox_dockyard.run("logs", container).stdout == "from-forked-monitor\n", timeout=10)
    result = busybox_dockyard.run("stop", "-t", "1", container, check=False)
    assert result.returncode == 0, result.stderr
    assert busybox_dockyard.run("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip() == "137"


def test_monitor_starts_without_zygote(busybox_dockyard: Dockyard, test_images: ImageSet) -> None:
    server = running_server(busybox_dockyard)
    zygote = wait_until(lambda: zygote_of(server), timeout=30)
    assert zygote, f"the CLI server {server} started no monitor zygote"
    os.kill(zygote, signal.SIGKILL)
    assert wait_until(lambda: not alive(zygote), timeout=10)
    result = busybox_dockyard.run("run", "--rm", "--network", "none", test_images.busybox, "echo", "exec-path",
                                  check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "exec-path\n"
    monitor = monitor_pid(busybox_dockyard)
    assert alive(monitor)
    assert process_name(monitor) != "dockyard-mon", "the monitor was forked, not started with exec"


def test_zygote_exits_with_server(busybox_dockyard: Dockyard) -> None:
    server = running_server(busybox_dockyard)
    zygote = wait_until(lambda: zygote_of(server), timeout=30)
    assert zygote, f"the CLI server {server} started no monitor zygote"
    os.kill(server, signal.SIGTERM)
    assert wait_until(lambda: not alive(server), timeout=10), "the CLI server did not exit on SIGTERM"
    assert wait_until(lambda: not alive(zygote), timeout=10), "the monitor zygote outlived its CLI server"

"""The cgroup and /proc readers behind ``stats`` and ``top``, on files written to temporary directories."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dockyard.engine import stats


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A /proc with /proc/stat (2 CPUs), /proc/meminfo (2 GiB) and one container process, PID 42."""
    ticks = os.sysconf("SC_CLK_TCK")
    boot = int(time.time()) - 1000
    write(tmp_path / "proc", {
        "stat": (
            "cpu  100 0 50 800 50 0 0 0 0 0\n"
            "cpu0 50 0 25 400 25 0 0 0 0 0\n"
            "cpu1 50 0 25 400 25 0 0 0 0 0\n"
            f"btime {boot}\n"
        ),
        "meminfo": "MemTotal:        2097152 kB\nMemFree:          100000 kB\n",
        # Started 900 s after boot (100 s ago), 5 s of user and 5 s of system time, on /dev/pts/3.
        "42/stat": f"42 (sleep) S 7 42 42 {(136 << 8) | 3} -1 0 0 0 0 0 {5 * ticks} {5 * ticks} 0 0 20 0 1 0 "
                   f"{900 * ticks} 0 0\n",
        "42/status": "Name:\tsleep\nUid:\t65534\t65534\t65534\t65534\n",
        "42/cmdline": "sleep\x00300\x00",
        "42/net/dev": (
            "Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
            "    lo:    500       5    0    0    0     0          0         0      500       5    0    0    0     0       0          0\n"
            "  eth0:   1500      10    1    2    0     0          0         0     2500      20    3    4    0     0       0          0\n"
        ),
    })
    return tmp_path / "proc"


def test_v1_memory_reads_usage_limit_and_stat(tmp_path):
    directory = write(tmp_path / "memory", {
        "memory.usage_in_bytes": "10485760\n",
        "memory.limit_in_bytes": "67108864\n",
        "memory.stat": "cache 4096\ntotal_inactive_file 2097152\n",
        "memory.max_usage_in_bytes": "20000000\n",
    })
    memory = stats.v1_memory(directory)
    assert memory["usage"] == 10485760
    assert memory["limit"] == 67108864
    assert memory["max_usage"] == 20000000
    assert memory["stats"]["total_inactive_file"] == 2097152
    assert stats.memory_usage_without_cache(memory) == 10485760 - 2097152


def test_v1_memory_unlimited_has_no_limit(tmp_path):
    directory = write(tmp_path / "memory", {
        "memory.usage_in_bytes": "100\n",
        "memory.limit_in_bytes": f"{stats.V1_UNLIMITED}\n",
        "memory.stat": "",
    })
    assert "limit" not in stats.v1_memory(directory)


def test_v1_cpu_and_blkio(tmp_path):
    ticks = os.sysconf("SC_CLK_TCK")
    directory = write(tmp_path / "cpuacct", {
        "cpuacct.usage": "3000000000\n",
        "cpuacct.usage_percpu": "1000000000 2000000000 \n",
        "cpuacct.stat": f"user {2 * ticks}\nsystem {ticks}\n",
    })
    cpu = stats.v1_cpu(directory)
    assert cpu["total_usage"] == 3_000_000_000
    assert cpu["percpu_usage"] == [1_000_000_000, 2_000_000_000]
    assert cpu["usage_in_usermode"] == 2_000_000_000
    assert cpu["usage_in_kernelmode"] == 1_000_000_000

    blkio = write(tmp_path / "blkio", {
        "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\nTotal 12288\n",
    })
    entries = stats.v1_blkio(blkio)
    assert {"major": 8, "minor": 0, "op": "Read", "value": 4096} in entries
    assert len(entries) == 3
    assert stats.block_io({"blkio_stats": {"io_service_bytes_recursive": entries}}) == (4096, 8192)


def test_v2_files(tmp_path):
    directory = write(tmp_path / "unified", {
        "memory.current": "5000\n",
        "memory.max": "max\n",
        "memory.stat": "anon 3000\ninactive_file 1000\n",
        "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        "io.stat": "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n",
        "pids.current": "3\n",
        "pids.max": "max\n",
    })
    memory = stats.v2_memory(directory)
    assert memory["usage"] == 5000
    assert "limit" not in memory
    assert stats.memory_usage_without_cache(memory) == 4000
    assert stats.v2_cpu(directory)["total_usage"] == 1_500_000
    assert stats.v2_io(directory) == [
        {"major": 8, "minor": 0, "op": "read", "value": 100},
        {"major": 8, "minor": 0, "op": "write", "value": 200},
    ]
    assert stats.pids(directory) == {"current": 3}


def test_cgroup_dirs_prefer_v1_on_hybrid_hosts(tmp_path):
    state = {"path": "dockyard/x", "directories": [
        {"directory": str(tmp_path / "memory"), "version": 1, "controllers": ["memory"], "mountpoint": "", "root": "/"},
        {"directory": str(tmp_path / "cpu"), "version": 1, "controllers": ["cpu", "cpuacct"], "mountpoint": "", "root": "/"},
        {"directory": str(tmp_path / "pids"), "version": 1, "controllers": ["pids"], "mountpoint": "", "root": "/"},
        {"directory": str(tmp_path / "unified"), "version": 2, "controllers": [], "mountpoint": "", "root": "/"},
    ]}
    dirs = stats.CgroupDirs.from_runtime_state(state)
    assert dirs.version == 1
    assert dirs.memory == tmp_path / "memory"
    assert dirs.cpu == tmp_path / "cpu"
    assert dirs.io is None

    only_v2 = stats.CgroupDirs.from_runtime_state({"directories": [state["directories"][-1]]})
    assert only_v2.version == 2
    assert only_v2.memory == tmp_path / "unified"


def test_read_sample_uses_host_memory_without_limit(tmp_path, proc):
    memory = write(tmp_path / "memory", {
        "memory.usage_in_bytes": "1048576\n",
        "memory.limit_in_bytes": f"{stats.V1_UNLIMITED}\n",
        "memory.stat": "total_inactive_file 0\n",
    })
    pids = write(tmp_path / "pids", {"pids.current": "2\n", "pids.max": "100\n"})
    sample = stats.read_sample(stats.CgroupDirs(1, memory=memory, pids=pids), 42, proc)
    assert sample["memory_stats"]["limit"] == 2 * 1024**3
    assert sample["pids_stats"] == {"current": 2, "limit": 100}
    assert sample["cpu_stats"]["online_cpus"] == 2
    assert sample["networks"] == {"eth0": {
        "rx_bytes": 1500, "rx_packets": 10, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 2500, "tx_packets": 20, "tx_errors": 3, "tx_dropped": 4,
    }}
    summary = stats.summary(sample)
    assert summary["network"] == (1500, 2500)
    assert summary["memory_percent"] == pytest.approx(1 / 2048 * 100)


def test_cpu_percent_from_two_samples():
    sample = {
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 20_000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
    }
    # 2000 of 10000 ns of all CPUs, times two CPUs: 40 % of one CPU.
    assert stats.cpu_percent(sample) == pytest.approx(40.0)
    assert stats.cpu_percent({"cpu_stats": sample["cpu_stats"], "precpu_stats": {}}) == pytest.approx(30.0)
    assert stats.cpu_percent({"cpu_stats": {}, "precpu_stats": {}}) == 0.0


def test_process_row_columns(proc):
    boot = next(int(line.split()[1]) for line in (proc / "stat").read_text().splitlines() if line.startswith("btime"))
    row = stats.process_row(42, proc, now=boot + 1000)
    assert row is not None
    user, pid, ppid, cpu, _started, tty, cpu_time, command = row
    assert user == "nobody" or user == "65534"
    assert (pid, ppid) == ("42", "7")
    assert cpu == "10"  # 10 s of CPU in 100 s
    assert tty == "pts/3"
    assert cpu_time == "00:00:10"
    assert command == "sleep 300"


def test_top_skips_processes_that_exited(proc):
    result = stats.top({42, 4242}, proc)
    assert result["Titles"] == stats.TOP_TITLES
    assert [row[1] for row in result["Processes"]] == ["42"]

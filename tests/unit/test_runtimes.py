"""The runtime adapter's pure parts: choosing a runtime, reading its errors, and crun's host check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.engine import runtimes
from dockyard.errors import InvalidArgument

HYBRID_MOUNTINFO = """\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTINFO = "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"


def test_validate_unknown_name() -> None:
    with pytest.raises(InvalidArgument, match="unknown or invalid runtime name: nosuch"):
        runtimes.validate("nosuch")


def test_validate_builtin() -> None:
    assert runtimes.validate("dockyard") == "dockyard"


def test_found_includes_builtin() -> None:
    assert runtimes.found()["dockyard"] == {"path": "dockyard-runtime"}


def test_crun_problem_hybrid_v2_only_controller() -> None:
    reason = runtimes.crun_host_problem(HYBRID_MOUNTINFO, "hugetlb\n")
    assert reason is not None
    assert "hugetlb" in reason
    assert "/sys/fs/cgroup/unified" in reason


def test_crun_problem_hybrid_empty_v2() -> None:
    assert runtimes.crun_host_problem(HYBRID_MOUNTINFO, "\n") is None


def test_crun_problem_controller_also_v1() -> None:
    assert runtimes.crun_host_problem(HYBRID_MOUNTINFO, "memory\n") is None


def test_crun_problem_pure_v2() -> None:
    assert runtimes.crun_host_problem(V2_MOUNTINFO, "cpu memory pids\n") is None


def test_error_message_from_json_log(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    entries = [
        {"level": "warning", "msg": "ignored"},
        {"level": "error", "msg": "container does not exist"},
        {"level": "error", "msg": "container does not exist"},
    ]
    log.write_text("".join(json.dumps(entry) + "\n" for entry in entries) + "not json\n")
    assert runtimes._error_message(log, b"stderr text\n") == "container does not exist"


def test_error_message_falls_back_to_stderr(tmp_path: Path) -> None:
    assert runtimes._error_message(tmp_path / "missing", b"\nboom\n") == "boom"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ('runc exec of container c failed (exit status 255): exec failed: unable to start container process: '
         'exec: "nope": executable file not found in $PATH', 127),
        ("crun exec of container c failed (exit status 1): open `/x`: No such file or directory", 127),
        ('runc exec of container c failed (exit status 255): exec failed: unable to start container process: '
         'exec: "/etc": permission denied', 126),
    ],
)
def test_exec_failure_exit_codes(message: str, code: int) -> None:
    failure = runtimes._exec_failure(message, "c")
    assert failure.exit_code == code
    assert "exec failed: unable to start container process: exec" not in failure.reason

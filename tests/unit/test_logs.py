"""The json-file log writer and reader: line splitting, partial lines, rotation, tail, since/until, follow."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from dockyard.engine import logs
from dockyard.errors import InvalidArgument


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writer_splits_at_newlines(tmp_path: Path):
    path = tmp_path / "c.log"
    writer = logs.LogWriter(path)
    writer.write("stdout", b"a\nb")
    writer.write("stdout", b"c\n")
    writer.write("stderr", b"e\n")
    writer.close()
    records = lines(path)
    assert [(record["stream"], record["log"]) for record in records] == [
        ("stdout", "a\n"), ("stdout", "bc\n"), ("stderr", "e\n"),
    ]
    assert records[0]["time"].endswith("Z")
    assert len(records[0]["time"].split(".")[1]) == 10


def test_long_line_split_and_joined(tmp_path: Path):
    path = tmp_path / "c.log"
    writer = logs.LogWriter(path)
    writer.write("stdout", b"x" * 20480 + b"\nlast")
    writer.close()
    records = lines(path)
    assert [len(record["log"]) for record in records] == [16384, 4097, 4]
    entries = list(logs.read(path))
    assert [entry.data for entry in entries] == [b"x" * 20480 + b"\n", b"last"]


def test_tail_returns_whole_last_line(tmp_path: Path):
    path = tmp_path / "c.log"
    writer = logs.LogWriter(path)
    writer.write("stdout", b"one\ntwo\n" + b"y" * 40000)
    writer.close()
    assert [entry.data for entry in logs.read(path, tail=1)] == [b"y" * 40000]
    assert [entry.data for entry in logs.read(path, tail=2)] == [b"two\n", b"y" * 40000]
    assert list(logs.read(path, tail=0)) == []


def test_partial_lines_of_two_streams_do_not_mix(tmp_path: Path):
    path = tmp_path / "c.log"
    writer = logs.LogWriter(path)
    writer.write("stdout", b"o" * 20000)
    writer.write("stderr", b"err\n")
    writer.write("stdout", b"\n")
    writer.close()
    entries = list(logs.read(path))
    assert [(entry.stream, entry.data) for entry in entries] == [("stderr", b"err\n"), ("stdout", b"o" * 20000 + b"\n")]


def test_stream_filter(tmp_path: Path):
    path = tmp_path / "c.log"
    writer = logs.LogWriter(path)
    writer.write("stdout", b"out\n")
    writer.write("stderr", b"err\n")
    writer.close()
    assert [entry.data for entry in logs.read(path, streams=("stderr",))] == [b"err\n"]


def test_rotation_keeps_max_file_files(tmp_path: Path):
    path = tmp_path / "c.log"
    writer = logs.LogWriter(path, max_size=1000, max_file=3)
    for number in range(100):
        writer.write("stdout", f"line {number:03d}\n".encode())
    writer.close()
    files = logs.log_files(path)
    assert files == [tmp_path / "c.log.2", tmp_path / "c.log.1", path]
    assert all(file.stat().st_size <= 1000 for file in files)
    data = [entry.data for entry in logs.read(path)]
    assert data[-1] == b"line 099\n"
    assert data == sorted(data)
    assert len(data) < 100


def test_rotation_with_one_file_truncates(tmp_path: Path):
    path = tmp_path / "c.log"
    writer = logs.LogWriter(path, max_size=500, max_file=1)
    for number in range(50):
        writer.write("stdout", f"line {number}\n".encode())
    writer.close()
    assert logs.log_files(path) == [path]
    assert path.stat().st_size <= 500


def test_since_and_until(tmp_path: Path):
    path = tmp_path / "c.log"
    records = [
        {"log": "old\n", "stream": "stdout", "time": "2026-01-01T00:00:00.000000001Z"},
        {"log": "mid\n", "stream": "stdout", "time": "2026-01-02T00:00:00.5Z"},
        {"log": "new\n", "stream": "stdout", "time": "2026-01-03T00:00:00Z"},
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    day2 = logs.parse_time("2026-01-02T00:00:00Z")
    assert [entry.data for entry in logs.read(path, since=day2)] == [b"mid\n", b"new\n"]
    assert [entry.data for entry in logs.read(path, until=day2 + 1)] == [b"old\n", b"mid\n"]


def test_follow_returns_new_lines_until_not_running(tmp_path: Path):
    path = tmp_path / "c.log"
    writer = logs.LogWriter(path, max_size=1000, max_file=2)
    writer.write("stdout", b"before\n")
    running = threading.Event()
    running.set()

    def produce() -> None:
        for number in range(20):
            writer.write("stdout", f"after {number:02d}\n".encode())
            time.sleep(0.01)
        writer.write("stdout", b"end")
        writer.close()
        running.clear()

    thread = threading.Thread(target=produce)
    reader = logs.read(path, follow=True, running=running.is_set)
    first = next(reader)
    thread.start()
    rest = [entry.data for entry in reader]
    thread.join()
    assert first.data == b"before\n"
    assert rest[-1] == b"end"
    assert rest[:-1] == [f"after {number:02d}\n".encode() for number in range(20)]


@pytest.mark.parametrize("text, size", [("10m", 10 << 20), ("512k", 512 << 10), ("1g", 1 << 30), ("100", 100), ("-1", -1)])
def test_parse_size(text, size):
    assert logs.parse_size(text) == size


def test_log_options_validation():
    assert logs.log_options({}) == (logs.DEFAULT_MAX_SIZE, logs.DEFAULT_MAX_FILE)
    assert logs.log_options({"max-size": "1m", "max-file": "5"}) == (1 << 20, 5)
    with pytest.raises(InvalidArgument):
        logs.log_options({"max-file": "0"})
    with pytest.raises(InvalidArgument):
        logs.log_options({"max-size": "lots"})
    with pytest.raises(InvalidArgument, match="compress"):
        logs.log_options({"compress": "true"})


def test_time_round_trip():
    text = logs.format_time(1_700_000_000_123_456_789)
    assert text == "2023-11-14T22:13:20.123456789Z"
    assert logs.parse_time(text) == pytest.approx(1_700_000_000.123456789)

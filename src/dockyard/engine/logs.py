"""Container logs in Docker's json-file format: a rotating writer and a reader.

Each line of the log file is one JSON object::

    {"log": "hello\\n", "stream": "stdout", "time": "2026-12-04T21:00:00.123456789Z"}

The writer splits output at newlines. A line longer than ``PARTIAL_SIZE``
(16 KiB, as Docker's log copier does) is written as several entries, and
every entry but the last has no trailing newline. Output that ends without
a newline is written as such an entry when the stream closes. The reader
joins consecutive entries of one stream until one ends with a newline, so
``tail`` counts lines as the program wrote them.

Rotation: when an entry would make the file exceed ``max-size``, the file is
renamed to ``<name>.1`` (older files shift to ``.2`` and so on) and the oldest
beyond ``max-file`` is deleted. Docker's json-file driver does not rotate
unless told to; dockyard rotates by default at 10 MiB with 3 files, so a
chatty container never fills the disk.

This module is imported by the monitor, so it imports only the standard
library modules the monitor already has.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from dockyard.errors import InvalidArgument, StoreError

PARTIAL_SIZE = 16 * 1024
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILE = 3
FOLLOW_INTERVAL = 0.1

STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class LogEntry:
    stream: str  # "stdout" or "stderr"
    data: bytes  # one line as written, with its newline unless it was the last output
    time: str  # RFC 3339 with nanoseconds, UTC: "2026-12-04T21:00:00.123456789Z"

    @property
    def timestamp(self) -> float:
        """The time as seconds since the epoch."""
        return parse_time(self.time)


def format_time(nanoseconds: int) -> str:
    """Format nanoseconds since the epoch as RFC 3339 with nine fractional digits, in UTC."""
    seconds, fraction = divmod(nanoseconds, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def parse_time(text: str) -> float:
    """Parse a timestamp written by ``format_time`` (any fraction length, ``Z`` or no zone)."""
    import calendar

    main, _, fraction = text.rstrip("Z").partition(".")
    try:
        seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        raise InvalidArgument(f"invalid log timestamp {text!r}: expected RFC 3339 in UTC") from None
    return seconds + (float("0." + fraction) if fraction.isdigit() else 0.0)


def parse_size(text: str | int) -> int:
    """Parse a ``max-size`` value such as ``10m``, ``512k`` or ``1g`` (binary units) into bytes."""
    if isinstance(text, int):
        return text
    value = text.strip().lower().removesuffix("b")
    if value == "-1":
        return -1
    multipliers = {"k": 1024, "m": 1024**2, "g": 1024**3}
    multiplier = 1
    if value and value[-1] in multipliers:
        multiplier = multipliers[value[-1]]
        value = value[:-1]
    try:
        size = int(float(value) * multiplier)
    except ValueError:
        raise InvalidArgument(f"invalid log max-size {text!r}: expected a size such as 10m or 512k") from None
    if size <= 0:
        raise InvalidArgument(f"invalid log max-size {text!r}: must be positive, or -1 for no limit")
    return size


def log_options(config: dict[str, str] | None) -> tuple[int, int]:
    """Return ``(max_size, max_file)`` from LogConfig.Config; max_size -1 turns rotation off."""
    options = dict(config or {})
    max_size = parse_size(options.pop("max-size", DEFAULT_MAX_SIZE))
    max_file_text = options.pop("max-file", str(DEFAULT_MAX_FILE))
    try:
        max_file = int(max_file_text)
    except ValueError:
        raise InvalidArgument(f"invalid log max-file {max_file_text!r}: expected a whole number") from None
    if max_file < 1:
        raise InvalidArgument(f"invalid log max-file {max_file_text!r}: must be at least 1")
    # Other json-file options of Docker (compress, labels, env, tag) are not implemented.
    if options:
        raise InvalidArgument(f"unsupported json-file log options: {', '.join(sorted(options))}")
    return max_size, max_file


class LogWriter:
    """Writes one container's output to its json-file log, splitting lines and rotating files."""

    def __init__(self, path: Path, max_size: int = DEFAULT_MAX_SIZE, max_file: int = DEFAULT_MAX_FILE) -> None:
        self.path = Path(path)
        self.max_size = max_size
        self.max_file = max_file
        self._pending = {stream: b"" for stream in STREAMS}
        self._file = open(self.path, "ab")
        self._size = self._file.tell()

    def write(self, stream: str, data: bytes) -> None:
        """Add output of one stream; complete lines and 16 KiB pieces are written at once."""
        buffer = self._pending[stream] + data
        while True:
            newline = buffer.find(b"\n", 0, PARTIAL_SIZE)
            if newline >= 0:
                self._entry(stream, buffer[: newline + 1])
                buffer = buffer[newline + 1 :]
            elif len(buffer) >= PARTIAL_SIZE:
                self._entry(stream, buffer[:PARTIAL_SIZE])
                buffer = buffer[PARTIAL_SIZE:]
            else:
                break
        self._pending[stream] = buffer
        self._file.flush()

    def close_stream(self, stream: str) -> None:
        """Write what is left of a stream that ended without a newline."""
        if self._pending[stream]:
            self._entry(stream, self._pending[stream])
            self._pending[stream] = b""
            self._file.flush()

    def close(self) -> None:
        for stream in STREAMS:
            self.close_stream(stream)
        self._file.close()

    def _entry(self, stream: str, data: bytes) -> None:
        record = {"log": data.decode("utf-8", errors="replace"), "stream": stream, "time": format_time(time.time_ns())}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        if self.max_size > 0 and self._size > 0 and self._size + len(line) > self.max_size:
            self._rotate()
        self._file.write(line)
        self._size += len(line)

    def _rotate(self) -> None:
        self._file.close()
        if self.max_file <= 1:
            os.truncate(self.path, 0)
        else:
            for number in range(self.max_file - 1, 0, -1):
                older = rotated_path(self.path, number)
                if number == self.max_file - 1:
                    older.unlink(missing_ok=True)
                source = self.path if number == 1 else rotated_path(self.path, number - 1)
                if source.exists():
                    os.replace(source, older)
        self._file = open(self.path, "ab")
        self._size = 0


def rotated_path(path: Path, number: int) -> Path:
    return path.with_name(f"{path.name}.{number}")


def log_files(path: Path) -> list[Path]:
    """Return the log file and its rotated files, oldest first."""
    files = []
    number = 1
    while rotated_path(path, number).exists():
        files.append(rotated_path(path, number))
        number += 1
    files.reverse()
    if path.exists():
        files.append(path)
    return files


def _collect(file: BinaryIO, joiner: "_Joiner", entries: list[LogEntry]) -> None:
    """Add the complete lines of ``file`` to ``entries``, leaving the file positioned after the last one."""
    for line in file:
        if not line.endswith(b"\n"):
            # Half-written by the writer: read it again later.
            file.seek(-len(line), os.SEEK_CUR)
            break
        parsed = _parse_line(line)
        if parsed is not None:
            joined = joiner.add(parsed)
            if joined is not None:
                entries.append(joined)


def _parse_line(line: bytes) -> LogEntry | None:
    if not line.strip():
        return None
    try:
        record = json.loads(line)
        return LogEntry(record["stream"], record["log"].encode(), record["time"])
    except (ValueError, KeyError, TypeError, AttributeError):
        # A half-written last line (the writer is mid-write) or foreign content: skip it.
        return None


class _Joiner:
    """Joins partial entries of each stream into whole lines."""

    def __init__(self) -> None:
        self.pending: dict[str, LogEntry] = {}

    def add(self, entry: LogEntry) -> LogEntry | None:
        previous = self.pending.pop(entry.stream, None)
        if previous is not None:
            entry = LogEntry(entry.stream, previous.data + entry.data, previous.time)
        if entry.data.endswith(b"\n"):
            return entry
        self.pending[entry.stream] = entry
        return None

    def flush(self) -> list[LogEntry]:
        entries = sorted(self.pending.values(), key=lambda entry: entry.time)
        self.pending.clear()
        return entries


def read(
    path: Path,
    *,
    tail: int | None = None,
    since: float | None = None,
    until: float | None = None,
    streams: tuple[str, ...] = STREAMS,
    follow: bool = False,
    running: Callable[[], bool] | None = None,
) -> Iterator[LogEntry]:
    """Yield log entries, oldest first, with partial entries joined into lines.

    ``tail`` keeps the last N lines; ``since`` and ``until`` are seconds since
    the epoch. With ``follow``, the reader keeps returning new entries, across
    rotations, until ``running()`` returns False and the file has no more.
    """
    path = Path(path)
    joiner = _Joiner()

    def wanted(entry: LogEntry) -> bool:
        if entry.stream not in streams:
            return False
        if since is not None or until is not None:
            stamp = entry.timestamp
            if since is not None and stamp < since:
                return False
            if until is not None and stamp > until:
                return False
        return True

    # In follow mode the current file is opened first, so that nothing
    # written while the history is read falls between history and follow.
    file = None
    if follow:
        try:
            file = open(path, "rb")
        except FileNotFoundError:
            file = None
    entries: list[LogEntry] = []
    files = log_files(path)
    if file is not None and files and files[-1] == path:
        files = files[:-1]
    for file_path in files:
        try:
            with open(file_path, "rb") as handle:
                _collect(handle, joiner, entries)
        except FileNotFoundError:
            # Rotated away between listing and opening.
            continue
    if file is not None:
        _collect(file, joiner, entries)
    if not follow:
        entries.extend(joiner.flush())
    selected = [entry for entry in entries if wanted(entry)]
    if tail is not None and tail >= 0:
        selected = selected[-tail:] if tail else []
    yield from selected
    if file is None:
        return

    # Follow: continue where the history ended; a rotation shows as a new
    # inode at the path, whose content is then read from the start.
    try:
        inode = os.fstat(file.fileno()).st_ino
        buffer = b""
        while True:
            chunk = file.read()
            if chunk:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    parsed = _parse_line(line + b"\n")
                    if parsed is None:
                        continue
                    joined = joiner.add(parsed)
                    if joined is not None and wanted(joined):
                        yield joined
                continue
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = inode
            if current != inode:
                # The open file is the rotated one now. The read above
                # emptied it, unless the writer added more before rotating.
                if file.read(1):
                    file.seek(-1, os.SEEK_CUR)
                    continue
                # NOTE: a file rotated twice between two polls (100 ms) is skipped.
                file.close()
                file = open(path, "rb")
                inode = os.fstat(file.fileno()).st_ino
                buffer = b""
                continue
            if running is not None and not running():
                # One more read: the writer may have flushed between the check and now.
                chunk = file.read()
                if chunk:
                    file.seek(-len(chunk), os.SEEK_CUR)
                    continue
                for entry in joiner.flush():
                    if wanted(entry):
                        yield entry
                return
            time.sleep(FOLLOW_INTERVAL)
    except OSError as error:
        raise StoreError(f"reading log {path} failed: {error}") from error
    finally:
        file.close()

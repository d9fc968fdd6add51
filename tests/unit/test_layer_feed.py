"""The feed that lets a pull unpack a layer while it downloads: waiting, end of file, restarts, failures."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dockyard.engine.pull import _FeedInterrupted, _LayerFeed


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "ingest"
    path.write_bytes(b"")
    return path


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def test_read_waits_for_written_bytes(blob: Path) -> None:
    feed = _LayerFeed("sha256:test")
    feed.attach(os.open(blob, os.O_RDONLY), 0)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(feed.read(100)))
    reader.start()
    append(blob, b"hello")
    feed.advance(5, 0)
    reader.join(timeout=5)
    feed.close()
    assert got == [b"hello"]


def test_end_of_file_only_after_finish(blob: Path) -> None:
    append(blob, b"abc")
    feed = _LayerFeed("sha256:test")
    feed.attach(os.open(blob, os.O_RDONLY), 3)
    assert feed.read(10) == b"abc"
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(feed.read(10)))
    reader.start()
    reader.join(timeout=0.2)
    assert reader.is_alive()  # all written bytes are read, but the download has not finished
    feed.finish()
    reader.join(timeout=5)
    feed.close()
    assert got == [b""]


def test_restart_after_reading_interrupts(blob: Path) -> None:
    append(blob, b"abc")
    feed = _LayerFeed("sha256:test")
    feed.attach(os.open(blob, os.O_RDONLY), 3)
    assert feed.read(2) == b"ab"
    feed.advance(1, 1)  # the ingest was reset and has one new byte
    with pytest.raises(_FeedInterrupted, match="started over"):
        feed.read(10)
    feed.close()


def test_restart_before_reading_is_harmless(blob: Path) -> None:
    feed = _LayerFeed("sha256:test")
    feed.attach(os.open(blob, os.O_RDONLY), 0)
    append(blob, b"xyz")
    feed.advance(3, 1)
    feed.finish()
    assert feed.read(10) == b"xyz"
    assert feed.read(10) == b""
    feed.close()


def test_failed_download_interrupts_reader(blob: Path) -> None:
    feed = _LayerFeed("sha256:test")
    feed.attach(os.open(blob, os.O_RDONLY), 0)
    feed.finish(OSError("connection reset"))
    with pytest.raises(_FeedInterrupted, match="connection reset"):
        feed.read(10)
    feed.close()


def test_failure_before_attach_interrupts_reader() -> None:
    feed = _LayerFeed("sha256:test")
    feed.finish(OSError("refused"))
    with pytest.raises(_FeedInterrupted):
        feed.read(10)
    feed.close()


def test_close_releases_descriptors(blob: Path) -> None:
    before = open_fds()
    feed = _LayerFeed("sha256:test")
    feed.attach(os.open(blob, os.O_RDONLY), 0)
    feed.close()
    assert open_fds() == before
    # A download that attaches after the unpack gave up must not leak its descriptor either.
    late = _LayerFeed("sha256:late")
    late.close()
    late.attach(os.open(blob, os.O_RDONLY), 0)
    assert open_fds() == before
    with pytest.raises(ValueError, match="closed"):
        late.read(1)

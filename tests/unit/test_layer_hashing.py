"""The diff ID that apply computes in its hashing thread, for plain and prefetched streams, and the thread's end."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from dockyard.errors import ImageError
from dockyard.image import layer
from tests.support.layers import Member, file, tar_bytes

# Bytes after the end-of-archive marker, which the diff ID covers too.
TRAILING = b"\0" * 4096 + b"trailing"


def layer_members() -> list[Member]:
    members = [file(f"f{index}", os.urandom(index * 1000)) for index in range(40)]
    members.append(file("big", os.urandom(3 << 20)))
    for info, _ in members:
        info.uid, info.gid = os.geteuid(), os.getegid()
    return members


def hashing_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name in ("layer-hash", "layer-decompress")]


@pytest.fixture
def plain() -> bytes:
    return tar_bytes(layer_members(), TRAILING)


def test_plain_stream_diff_id(tmp_path: Path, plain: bytes) -> None:
    stream = io.BytesIO(plain)
    result = layer.apply(stream, tmp_path, "sha256:test")
    assert result.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert not stream.closed  # the caller's stream stays the caller's to close
    assert hashing_threads() == []


def test_prefetched_gzip_diff_id(tmp_path: Path, plain: bytes) -> None:
    stream = layer.decompressed(io.BytesIO(gzip.compress(plain)), None, prefetch=True)
    try:
        result = layer.apply(stream, tmp_path, "sha256:test")
    finally:
        stream.close()
    assert result.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert (tmp_path / "big").stat().st_size == 3 << 20
    assert hashing_threads() == []


def test_failed_apply_stops_hashing_thread(tmp_path: Path, plain: bytes) -> None:
    truncated = gzip.compress(plain)[: 1 << 20]
    target = tmp_path / "s"
    target.mkdir()
    stream = layer.decompressed(io.BytesIO(truncated), None, prefetch=True)
    try:
        with pytest.raises(ImageError):
            layer.apply(stream, target, "sha256:test")
    finally:
        stream.close()
    assert not target.exists()
    assert hashing_threads() == []

"""``layer.decompressed(..., prefetch=True)``: the same bytes and errors as without the thread, and a clean stop."""

from __future__ import annotations

import gzip
import io
import os
import threading
import zlib

import pytest
import zstandard

from dockyard.errors import ImageError
from dockyard.image import layer

PLAIN = os.urandom(300_000) + bytes(3_000_000)


def compressed(kind: str) -> bytes:
    return gzip.compress(PLAIN) if kind == "gzip" else zstandard.ZstdCompressor(write_checksum=True).compress(PLAIN)


def decompress_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "layer-decompress"]


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_prefetch_returns_same_bytes(kind: str) -> None:
    stream = layer.decompressed(io.BytesIO(compressed(kind)), None, prefetch=True)
    try:
        parts = []
        while chunk := stream.read(10_240):
            parts.append(chunk)
    finally:
        stream.close()
    assert b"".join(parts) == PLAIN


def test_prefetch_concatenated_gzip_members() -> None:
    data = gzip.compress(PLAIN[:1000]) + gzip.compress(PLAIN[1000:])
    stream = layer.decompressed(io.BytesIO(data), None, prefetch=True)
    try:
        assert stream.read(-1) == PLAIN
    finally:
        stream.close()


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_prefetch_truncated_stream_raises(kind: str) -> None:
    data = compressed(kind)
    stream = layer.decompressed(io.BytesIO(data[: len(data) // 2]), None, prefetch=True)
    try:
        with pytest.raises((EOFError, ImageError)):
            while stream.read(1 << 20):
                pass
        # The error stays: a second read raises it again rather than returning end of file.
        with pytest.raises((EOFError, ImageError)):
            stream.read(1)
    finally:
        stream.close()


def test_prefetch_corrupt_gzip_raises() -> None:
    data = bytearray(compressed("gzip"))
    data[len(data) // 3] ^= 0xFF
    stream = layer.decompressed(io.BytesIO(bytes(data)), None, prefetch=True)
    try:
        with pytest.raises((zlib.error, gzip.BadGzipFile, EOFError)):
            while stream.read(1 << 20):
                pass
    finally:
        stream.close()


def test_close_stops_thread_before_end() -> None:
    before = len(decompress_threads())
    source = io.BytesIO(compressed("gzip"))
    stream = layer.decompressed(source, None, prefetch=True)
    assert stream.read(100) == PLAIN[:100]
    stream.close()
    assert len(decompress_threads()) == before
    assert not source.closed  # the caller's file stays the caller's to close


def test_plain_tar_gets_no_thread() -> None:
    before = len(decompress_threads())
    stream = layer.decompressed(io.BytesIO(PLAIN), None, prefetch=True)
    assert len(decompress_threads()) == before
    assert stream.read() == PLAIN

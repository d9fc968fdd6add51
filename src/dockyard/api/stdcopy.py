"""Docker's multiplexed stream format ("stdcopy") for attach, exec and logs without a TTY.

Each frame is an 8-byte header followed by the payload: the stream number
(0 stdin, 1 stdout, 2 stderr, 3 a system error), three zero bytes, and the
payload length as a big-endian unsigned 32-bit integer. A TTY stream is not
framed at all.
"""

from __future__ import annotations

import struct

STDIN, STDOUT, STDERR, SYSTEM_ERROR = 0, 1, 2, 3
STREAM_NUMBERS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR}
HEADER = struct.Struct(">BxxxL")
# The largest payload of one frame; longer data is split over several frames.
MAX_PAYLOAD = 0xFFFFFFFF


def frame(stream: int, data: bytes) -> bytes:
    """Return ``data`` framed for ``stream``; empty data gives no frame."""
    parts = []
    for offset in range(0, len(data), MAX_PAYLOAD):
        chunk = data[offset:offset + MAX_PAYLOAD]
        parts.append(HEADER.pack(stream, len(chunk)) + chunk)
    return b"".join(parts)


def parse(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split complete frames off ``data``; returns them and the bytes of an incomplete last frame."""
    frames = []
    offset = 0
    while len(data) - offset >= HEADER.size:
        stream, length = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if end > len(data):
            break
        frames.append((stream, data[offset + HEADER.size:end]))
        offset = end
    return frames, data[offset:]

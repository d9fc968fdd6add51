"""Streaming between the caller's terminal and an attached container.

``pump`` copies the container's output from an engine ``Attachment`` to this
process's stdout and stderr until the output ends, and forwards stdin to the
container when asked. Without a TTY the output is stdcopy-framed (see
``StdcopyDecoder``). With a TTY it is the raw terminal stream, so the
caller's terminal is put in raw mode (``raw_terminal``) and its size changes
are sent as resizes. ``SignalProxy`` forwards the signals this
command receives to the container, as ``docker run --sig-proxy`` does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import struct
import sys
import threading
from typing import Any, BinaryIO, Callable, Iterator

from dockyard.errors import DockyardError

log = logging.getLogger(__name__)

# stdcopy stream numbers in the first byte of each frame header.
STDIN, STDOUT, STDERR, SYSTEM_ERROR = 0, 1, 2, 3
HEADER_SIZE = 8
CHUNK_SIZE = 65536


class StdcopyDecoder:
    """Split Docker's multiplexed stream into ``(stream, payload)`` frames.

    Each frame is an 8-byte header (stream number, three zero bytes, the
    payload length as a big-endian uint32) and the payload. ``feed`` accepts
    any split of the byte stream and returns the frames completed so far.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER_SIZE:
            stream = self._buffer[0]
            (length,) = struct.unpack(">I", self._buffer[4:HEADER_SIZE])
            if len(self._buffer) < HEADER_SIZE + length:
                break
            payload = bytes(self._buffer[HEADER_SIZE:HEADER_SIZE + length])
            del self._buffer[:HEADER_SIZE + length]
            frames.append((stream, payload))
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buffer)


class EscapeScanner:
    """Find the detach key sequence in the input stream, holding back bytes that may start it.

    ``feed`` returns the bytes to forward and whether the sequence was
    completed. Input after a completed sequence is not for the container. A
    partial match that then differs is forwarded in full.
    """

    def __init__(self, sequence: bytes) -> None:
        self.sequence = sequence
        self.matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        forward = bytearray()
        for byte in data:
            if byte == self.sequence[self.matched]:
                self.matched += 1
                if self.matched == len(self.sequence):
                    self.matched = 0
                    return bytes(forward), True
                continue
            if self.matched:
                forward += self.sequence[:self.matched]
                self.matched = 0
                if byte == self.sequence[0]:
                    self.matched = 1
                    continue
            forward.append(byte)
        return bytes(forward), False


def _receive(attachment: Any, size: int) -> bytes:
    if hasattr(attachment, "recv"):
        return attachment.recv(size)
    return attachment.read(size)


def pump(attachment: Any, *, tty: bool, stdin: BinaryIO | None, stdout: BinaryIO, stderr: BinaryIO,
         on_wakeup: Callable[[], None] | None = None, wakeup_fd: int | None = None,
         detach_keys: bytes | None = None) -> bool:
    """Copy the container's output to ``stdout``/``stderr`` until it ends; forward ``stdin`` if given.

    Stdin is copied by a daemon thread, because it may be a regular file
    (which ``select`` cannot wait on) or a terminal that never reaches end of
    file. At its end the container's stdin is closed. ``wakeup_fd`` is a pipe
    whose readability makes the loop call ``on_wakeup`` (signal forwarding,
    terminal resizes) between reads. Typing ``detach_keys`` on stdin ends the
    copy early; the return value is True in that case.
    """
    import selectors

    detached = threading.Event()
    detach_read, detach_write = os.pipe2(os.O_CLOEXEC)
    if stdin is not None:
        scanner = EscapeScanner(detach_keys) if detach_keys else None

        def on_detach() -> None:
            detached.set()
            os.write(detach_write, b"\0")

        threading.Thread(target=_copy_stdin, args=(stdin, attachment, scanner, on_detach),
                         daemon=True, name="stdin").start()

    decoder = None if tty else StdcopyDecoder()
    targets = {STDOUT: stdout, STDERR: stderr, SYSTEM_ERROR: stderr}
    selector = selectors.DefaultSelector()
    selector.register(attachment.fileno(), selectors.EVENT_READ, "output")
    selector.register(detach_read, selectors.EVENT_READ, "detach")
    if wakeup_fd is not None:
        selector.register(wakeup_fd, selectors.EVENT_READ, "wakeup")

    def write(data: bytes) -> None:
        if decoder is None:
            stdout.write(data)
            stdout.flush()
            return
        for stream, payload in decoder.feed(data):
            target = targets.get(stream)
            if target is None:
                log.debug("dropping %d bytes of unknown stdcopy stream %d", len(payload), stream)
                continue
            target.write(payload)
            target.flush()

    try:
        # Output the attachment read ahead of its socket (replayed logs, the
        # bytes after the attach reply) never makes the socket readable.
        while getattr(attachment, "pending", b""):
            write(_receive(attachment, CHUNK_SIZE))
        while True:
            for key, _ in selector.select():
                if key.data == "detach":
                    return True
                if key.data == "wakeup":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wakeup_fd, 512)  # type: ignore[arg-type]
                    if on_wakeup is not None:
                        on_wakeup()
                    continue
                data = _receive(attachment, CHUNK_SIZE)
                if not data:
                    return detached.is_set()
                write(data)
    finally:
        selector.close()
        os.close(detach_read)
        # A stdin thread may still be blocked in read() and write to the pipe
        # later, so its write end stays open until the process exits.
        if stdin is None:
            os.close(detach_write)


def _copy_stdin(stdin: BinaryIO, attachment: Any, scanner: EscapeScanner | None,
                on_detach: Callable[[], None]) -> None:
    fd = stdin.fileno()
    try:
        while True:
            data = os.read(fd, CHUNK_SIZE)
            if not data:
                break
            if scanner is not None:
                data, detach = scanner.feed(data)
                if data:
                    attachment.write(data)
                if detach:
                    on_detach()
                    return
                continue
            attachment.write(data)
        attachment.close_stdin()
    except OSError as error:
        # The container went away while we were still writing: its output loop ends on its own.
        log.debug("stopped forwarding stdin: %s", error)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put the terminal on ``fd`` in raw mode for the duration, so keys reach the container unprocessed."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# Signals a container cannot sensibly receive from its client: child status,
# broken pipes, urgent data, window changes (sent as resizes instead), and
# the ones no process can catch.
NOT_FORWARDED = frozenset({"SIGCHLD", "SIGPIPE", "SIGURG", "SIGWINCH", "SIGKILL", "SIGSTOP"})


class WakeupPipe:
    """A non-blocking pipe that signal handlers write to, so the main loop handles signals outside the handler."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.pending: list[int] = []

    def notify(self, signum: int) -> None:
        self.pending.append(signum)
        with contextlib.suppress(BlockingIOError):
            os.write(self.write_fd, b"\0")

    def take(self) -> list[int]:
        taken, self.pending = self.pending, []
        return taken

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class SignalProxy:
    """Forward this process's signals to a container, and terminal size changes as resizes.

    Use as a context manager around ``pump``: the handlers only record the
    signal, and ``handle`` (called from the pump loop) makes the engine call.
    """

    def __init__(self, forward: Callable[[str], None] | None, resize: Callable[[], None] | None) -> None:
        self.forward = forward
        self.resize = resize
        self.pipe = WakeupPipe()
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> "SignalProxy":
        if self.forward is not None:
            for number in signal.valid_signals():
                try:
                    name = signal.Signals(number).name
                except ValueError:
                    continue  # real-time signals have no name in the enum
                if name in NOT_FORWARDED:
                    continue
                self._install(number)
        if self.resize is not None:
            self._install(signal.SIGWINCH)
        return self

    def _install(self, number: int) -> None:
        try:
            self._saved[number] = signal.signal(number, lambda signum, frame: self.pipe.notify(signum))
        except (OSError, ValueError):
            pass

    def handle(self) -> None:
        for signum in self.pipe.take():
            if signum == signal.SIGWINCH:
                if self.resize is not None:
                    self.resize()
                continue
            if self.forward is None:
                continue
            name = signal.Signals(signum).name.removeprefix("SIG")
            log.debug("forwarding signal %s to the container", name)
            try:
                self.forward(name)
            except DockyardError as error:
                # Usually the container exited between the signal and the forward; its output ends soon.
                log.debug("forwarding signal %s to the container failed: %s", name, error)

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._saved.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(number, handler)
        self.pipe.close()


def terminal_size(fd: int) -> tuple[int, int] | None:
    """Return the (height, width) of the terminal on ``fd``, or None when it is not a terminal."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


def binary_stdio() -> tuple[BinaryIO, BinaryIO, BinaryIO]:
    """Return this process's stdin, stdout and stderr as binary streams, flushing the text layers first."""
    sys.stdout.flush()
    sys.stderr.flush()
    return sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer

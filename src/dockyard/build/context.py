"""The build context: a directory, or a tar stream on standard input, filtered by ``.dockerignore``.

``.dockerignore`` follows Docker's rules. Each non-empty line that does not
start with ``#`` is a pattern, cleaned like a path (``./a`` and ``/a`` are
``a``). ``*`` and ``?`` match within one path component, ``**`` matches any
number of components, including none. A pattern that starts with ``!`` is an
exception. The last pattern that matches a path decides, and a pattern that
matches a directory also matches everything below it.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard.errors import BuildError

log = logging.getLogger(__name__)

IGNORE_FILE = ".dockerignore"
DEFAULT_DOCKERFILE = "Dockerfile"


@dataclass(frozen=True)
class IgnorePattern:
    text: str           # the cleaned pattern, without its "!"
    exception: bool
    regex: re.Pattern[str]


class IgnoreRules:
    """The patterns of a ``.dockerignore`` file, in file order."""

    def __init__(self, lines: list[str]) -> None:
        self.patterns: list[IgnorePattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
                if not line:
                    raise BuildError("invalid .dockerignore pattern: '!' must be followed by a pattern")
            cleaned = posixpath.normpath(line)
            if len(cleaned) > 1 and cleaned.startswith("/"):
                cleaned = cleaned.lstrip("/")
            if cleaned in ("/", "."):
                cleaned = "."
            self.patterns.append(IgnorePattern(cleaned, exception, _compile(cleaned)))

    @classmethod
    def read(cls, directory: Path) -> "IgnoreRules":
        try:
            text = (directory / IGNORE_FILE).read_text()
        except FileNotFoundError:
            return cls([])
        return cls(text.splitlines())

    def excludes(self, path: str) -> bool:
        """Return whether the context-relative ``path`` is excluded from the context."""
        path = posixpath.normpath(path.lstrip("/"))
        candidates = [path]
        parent = posixpath.dirname(path)
        while parent:
            candidates.append(parent)
            parent = posixpath.dirname(parent)
        excluded = False
        for pattern in self.patterns:
            if any(pattern.regex.fullmatch(candidate) for candidate in candidates):
                excluded = not pattern.exception
        return excluded


def _compile(pattern: str) -> re.Pattern[str]:
    """Translate a ``.dockerignore`` pattern into a regular expression over slash-separated paths."""
    if pattern == ".":
        return re.compile(r".*", re.DOTALL)
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            index += 2
            if pattern.startswith("/", index):
                parts.append(r"(?:.*/)?")  # "**/" matches zero or more whole directories
                index += 1
            else:
                parts.append(r".*")
            continue
        if char == "*":
            parts.append(r"[^/]*")
        elif char == "?":
            parts.append(r"[^/]")
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                raise BuildError(f"invalid .dockerignore pattern {pattern!r}: '[' without ']'")
            body = pattern[index + 1:end]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            parts.append("[" + body.replace("\\", "\\\\") + "]")
            index = end
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            parts.append(re.escape(pattern[index]))
        else:
            parts.append(re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


class BuildContext:
    """A context directory on disk with its ignore rules; ``close`` removes a directory made from a tar."""

    def __init__(self, directory: Path, owned: bool = False) -> None:
        self.directory = Path(directory)
        self.owned = owned
        self.ignore = IgnoreRules.read(self.directory)

    @classmethod
    def from_directory(cls, path: str | Path) -> "BuildContext":
        directory = Path(path)
        if not directory.is_dir():
            raise BuildError(f"unable to prepare context: path {str(path)!r} not found or not a directory")
        return cls(directory.resolve())

    @classmethod
    def from_tar(cls, stream: BinaryIO, work_dir: Path) -> "BuildContext":
        """Unpack a context tar (plain, gzip, bzip2 or xz) into a private directory under ``work_dir``."""
        work_dir.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="build-context-", dir=work_dir))
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as archive:
                # The "tar" filter rejects absolute paths, ".." and links leaving the directory.
                archive.extractall(directory, filter="tar")
        except (tarfile.TarError, OSError) as error:
            shutil.rmtree(directory, ignore_errors=True)
            raise BuildError(f"unable to read the build context from the tar stream: {error}") from error
        log.debug("unpacked build context into %s", directory)
        return cls(directory, owned=True)

    @classmethod
    def empty(cls, work_dir: Path) -> "BuildContext":
        work_dir.mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix="build-context-", dir=work_dir)), owned=True)

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "BuildContext":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def walk(self, relative: str) -> list[tuple[str, os.DirEntry[str]]]:
        """Return the entries below the context-relative directory ``relative`` that are not excluded, parents first."""
        found: list[tuple[str, os.DirEntry[str]]] = []
        start = self.directory / relative if relative else self.directory

        def visit(directory: Path, prefix: str) -> None:
            with os.scandir(directory) as entries:
                for entry in sorted(entries, key=lambda item: item.name):
                    path = f"{prefix}/{entry.name}" if prefix else entry.name
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if self.ignore.excludes(path):
                        # An exception pattern may still include something below an excluded directory.
                        if is_dir and any(pattern.exception for pattern in self.ignore.patterns):
                            visit(Path(entry.path), path)
                        continue
                    found.append((path, entry))
                    if is_dir:
                        visit(Path(entry.path), path)

        if start.is_dir():
            visit(start, relative.strip("/"))
        return found

    def tar_size(self) -> int:
        """Return the size in bytes of the context as a tar of its files that are not excluded.

        This is what the legacy Docker client sends to the daemon and reports
        in "Sending build context": a 512-byte header per entry, file data
        padded to 512 bytes, and the 1024-byte end marker. Names longer than
        100 bytes would add extension headers, which this count leaves out.
        """
        size = 1024
        for _path, entry in self.walk(""):
            size += 512
            if entry.is_file(follow_symlinks=False):
                size += -(-entry.stat(follow_symlinks=False).st_size // 512) * 512
        return size


def human_size(size: float) -> str:
    """Format a byte count as Docker's ``units.HumanSize`` does: four significant digits, decimal units."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    index = 0
    while size >= 1000 and index < len(units) - 1:
        size /= 1000
        index += 1
    return f"{size:.4g}{units[index]}"


def read_dockerfile(context: BuildContext, name: str | None) -> str:
    """Return the Dockerfile's text: ``name`` as a host path, or inside a context from a tar, or ``Dockerfile`` in the context.

    As with ``docker build -f``, a relative ``name`` is relative to the
    current directory, unless the context came as a tar, which must then
    contain it.
    """
    if name is None:
        path = context.directory / DEFAULT_DOCKERFILE
    elif context.owned:
        path = context.directory / posixpath.normpath("/" + name).lstrip("/")
    else:
        path = Path(name)
    try:
        return path.read_text()
    except FileNotFoundError:
        shown = name or str(path)
        raise BuildError(f"unable to prepare context: the Dockerfile {shown} does not exist") from None
    except OSError as error:
        raise BuildError(f"failed to read the Dockerfile {path}: {error}") from error


def looks_like_tar(head: bytes) -> bool:
    """Return whether ``head`` (the first 512 or more bytes of standard input) starts a tar stream, compressed or not."""
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def peekable(stream: BinaryIO, size: int = 512) -> tuple[bytes, BinaryIO]:
    """Read ``size`` bytes off ``stream`` and return them with a stream that yields them again."""
    head = stream.read(size)
    return head, io.BufferedReader(_Chain(head, stream))


class _Chain(io.RawIOBase):
    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        if self.head:
            count = min(len(buffer), len(self.head))
            buffer[:count] = self.head[:count]
            self.head = self.head[count:]
            return count
        data = self.rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

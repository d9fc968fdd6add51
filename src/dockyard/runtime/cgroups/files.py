"""Reading and writing cgroup interface files, with the value in every error."""

from __future__ import annotations

import logging
from pathlib import Path

from dockyard.errors import RuntimeFailure

log = logging.getLogger(__name__)


def write(directory: Path, name: str, value: str | int) -> None:
    path = directory / name
    log.debug("cgroup write %s = %s", path, value)
    try:
        path.write_text(str(value))
    except OSError as error:
        raise RuntimeFailure(f"writing {value!r} to {path} failed: {error.strerror or error}") from None


def read(directory: Path, name: str) -> str:
    path = directory / name
    try:
        return path.read_text().strip()
    except OSError as error:
        raise RuntimeFailure(f"reading {path} failed: {error.strerror or error}") from None

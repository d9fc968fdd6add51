"""The build cache: which image a step made from a parent image, one JSON file per step under the root.

A step's key is the SHA-256 of its parent image ID, its instruction text after
variable substitution (for ``RUN``, the command with the build arguments it
sees) and, for ``COPY`` and ``ADD``, a digest of the files it copies. The
entry, ``root/build/cache/<key>.json``, holds the resulting image config and
layers, so that a hit gives the same image ID as the first build. Layers are
not kept alive by the cache: garbage collection removes those no image uses,
and the builder treats an entry whose layers are gone as a miss and removes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def step_key(parent_id: str, instruction: str, files_digest: str | None = None) -> str:
    """Return the cache key of a step."""
    material = json.dumps([parent_id, instruction, files_digest or ""])
    return hashlib.sha256(material.encode()).hexdigest()


class BuildCache:
    """Entries ``{"config": text, "layers": [...]}`` in ``root/build/cache``, one file per key."""

    def __init__(self, root: Path) -> None:
        self.directory = Path(root) / "build" / "cache"

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = json.loads(self._path(key).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("ignoring the unreadable build cache entry %s", self._path(key))
            return None
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store an entry; it is written to a temporary file and renamed, so a reader never sees half of it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".entry-")
        try:
            with os.fdopen(descriptor, "w") as file:
                json.dump(entry, file)
            os.replace(temporary, self._path(key))
        except BaseException:
            os.unlink(temporary)
            raise
        log.debug("stored build cache entry %s", key)

    def remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        log.debug("removed stale build cache entry %s", key)

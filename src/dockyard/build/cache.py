"""The build cache: which image a step made from a parent image, kept as a JSON index under the root.

A step's key is the SHA-256 of its parent image ID, its instruction text after
variable substitution (for ``RUN``, the command with the build arguments it
sees) and, for ``COPY`` and ``ADD``, a digest of the files it copies. The value
is the resulting image config and layers, so that a hit gives the same image
ID as the first build. Layers are not kept alive by the cache: garbage
collection removes those no image uses, and the builder treats an entry whose
layers are gone as a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from dockyard.engine import locks

log = logging.getLogger(__name__)

# Oldest entries are dropped beyond this many; each holds one image config (a few KiB).
MAX_ENTRIES = 2000


def step_key(parent_id: str, instruction: str, files_digest: str | None = None) -> str:
    """Return the cache key of a step."""
    material = json.dumps([parent_id, instruction, files_digest or ""])
    return hashlib.sha256(material.encode()).hexdigest()


class BuildCache:
    """``root/build/cache.json``: step keys to ``{"config": text, "layers": [...]}``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / "build" / "cache.json"

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("ignoring the unreadable build cache %s", self.path)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._load().get(key)
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Add an entry; the file is replaced atomically under a lock, so concurrent builds lose no entry."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locks.file_lock(self.root / "locks" / "build-cache"):
            data = self._load()
            data.pop(key, None)
            data[key] = entry
            while len(data) > MAX_ENTRIES:
                data.pop(next(iter(data)))
            descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".cache-")
            try:
                with os.fdopen(descriptor, "w") as file:
                    json.dump(data, file)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        log.debug("stored build cache entry %s", key)

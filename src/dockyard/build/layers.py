"""Layers made by a build: tar streams written in Python, stored as gzip blobs and unpacked into snapshots.

``ImageState`` is the image a build stage has reached: its config document
and layer records. ``Layering.add`` turns a function that writes a tar stream
into a new layer on top of it. ``Layering.record`` stores an image in the
state database so that containers (for ``RUN``) and users can see it.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Sequence

from dockyard.errors import BuildError

if TYPE_CHECKING:
    from dockyard.engine.images import ImageService
    from dockyard.engine.state import LayerRecord

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"


@dataclass
class ImageState:
    """An image as a build stage has made it so far."""

    config: dict[str, Any]
    layers: list["LayerRecord"] = field(default_factory=list)
    # The config exactly as stored, for an image read from the store or the
    # cache: its ID is the digest of these bytes, which re-encoding may change.
    raw: bytes | None = None

    @property
    def config_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.config, separators=(",", ":")).encode()

    @property
    def image_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config_bytes).hexdigest()

    @property
    def container_config(self) -> dict[str, Any]:
        """The ``config`` object (Env, Cmd, WorkingDir, ...), created on first use."""
        return self.config.setdefault("config", {})

    def copy(self) -> "ImageState":
        """Return a copy to change; it has no ``raw`` bytes, so its ID follows its config."""
        return ImageState(copy.deepcopy(self.config), list(self.layers))

    def with_history(self, created_by: str, empty_layer: bool) -> None:
        """Stamp the config with a new ``created`` time and a history entry, as a step finishes."""
        created = now_rfc3339()
        self.config["created"] = created
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if empty_layer:
            entry["empty_layer"] = True
        self.config.setdefault("history", []).append(entry)


def scratch_config(os_name: str, architecture: str, variant: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"architecture": architecture, "os": os_name}
    if variant:
        config["variant"] = variant
    config.update({"config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []})
    return config


class _HashingWriter:
    """A write-only file that hashes and counts the bytes passing through to ``raw``."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


class Layering:
    """The layer writer and image recorder of one root; callers hold the shared GC lock while they use it."""

    def __init__(self, images: "ImageService") -> None:
        self.images = images

    def lowers(self, image: ImageState) -> list[str]:
        """Return the snapshot directories of the image, topmost first."""
        if not image.layers:
            return []
        return [str(path) for path in self.images.snapshots.lowers(image.layers[-1].chain_id)]

    def add(self, image: ImageState, write_tar: Callable[[BinaryIO], None]) -> "LayerRecord":
        """Write a layer with ``write_tar`` (an uncompressed tar stream), store it gzip-compressed and unpack it on ``image``."""
        from dockyard.engine.pull import unpack_layer
        from dockyard.engine.state import LayerRecord
        from dockyard.image import layer as layer_module
        from dockyard.image import mediatypes
        from dockyard.image.manifest import Descriptor

        tmp_dir = self.images.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=tmp_dir) as compressed:
            hashing = _HashingWriter(compressed)
            gzipped = gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0)  # type: ignore[arg-type]
            uncompressed = _HashingWriter(gzipped)
            write_tar(uncompressed)  # type: ignore[arg-type]
            gzipped.close()
            digest, size, diff_id = hashing.digest(), hashing.size, uncompressed.digest()
            if not self.images.store.has(digest):
                with self.images.store.ingest(digest, size) as ingest:
                    compressed.seek(ingest.offset)
                    while chunk := compressed.read(CHUNK_SIZE):
                        ingest.write(chunk)
                    ingest.commit()
        diff_ids = [layer.diff_id for layer in image.layers] + [diff_id]
        chain_id = layer_module.chain_ids(diff_ids)[-1]
        parent = image.layers[-1].chain_id if image.layers else None
        descriptor = Descriptor(mediatypes.OCI_LAYER_GZIP, digest, size)
        unpacked = unpack_layer(self.images, descriptor, diff_id, chain_id, parent, lambda *args, **kwargs: None)
        record = LayerRecord(chain_id, diff_id, parent, digest, mediatypes.OCI_LAYER_GZIP, size, unpacked)
        image.layers.append(record)
        image.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"] = diff_ids
        log.debug("built layer %s (diff ID %s, %d bytes) as snapshot %s", digest, diff_id, size, chain_id)
        return record

    def is_complete(self, layers: list["LayerRecord"]) -> bool:
        """Return whether every layer's snapshot and blob is still on disk (a cache entry may outlive them)."""
        for layer in layers:
            if self.images.snapshots.get(layer.chain_id) is None:
                return False
            if layer.blob_digest and not self.images.store.has(layer.blob_digest):
                return False
        return True

    def record(self, image: ImageState, tags: Sequence[str] = ()) -> str:
        """Store the image (config blob, layers, tags) in the state database; returns its ID."""
        from dockyard.engine.state import ImageRecord
        from dockyard.image import reference as references

        data = image.config_bytes
        image_id = self.images.store.put(data)
        state = self.images.state
        state.record_image(
            ImageRecord(
                id=image_id,
                config=data,
                created=image.config.get("created"),
                size=sum(layer.size for layer in image.layers),
                os=image.config.get("os", "linux"),
                architecture=image.config.get("architecture", ""),
                variant=image.config.get("variant"),
            ),
            list(image.layers),
            blobs=[image_id, *(layer.blob_digest for layer in image.layers if layer.blob_digest)],
            tags=[str(references.parse_repository(tag)) for tag in tags],
        )
        log.debug("recorded image %s with tags %s", image_id, list(tags))
        return image_id


def layer_to_json(layer: "LayerRecord") -> list[Any]:
    return [layer.chain_id, layer.diff_id, layer.parent, layer.blob_digest, layer.media_type, layer.blob_size, layer.size]


def layer_from_json(values: list[Any]) -> "LayerRecord":
    from dockyard.engine.state import LayerRecord

    if len(values) != 7:
        raise BuildError(f"malformed layer in the build cache: {values!r}")
    return LayerRecord(*values)

"""``import``: make a one-layer image from a root filesystem tarball or directory.

The layer is written by the build's ``Layering`` (stored gzip-compressed,
unpacked into a snapshot through the same checks as a pulled layer), so an
imported image is stored exactly like a built one. The CLI's ``import``
command and the Engine API's ``POST /images/create?fromSrc=`` both call
``import_image``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Sequence

from dockyard.errors import BuildError

if TYPE_CHECKING:
    from dockyard.engine import Engine

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20


def import_image(engine: "Engine", source: BinaryIO | Path, reference: str | None = None, *,
                 changes: Sequence[str] = (), message: str = "", source_name: str = "-") -> str:
    """Import ``source`` (a tar stream: plain, gzip or zstd; or a directory) as a new image; returns its ID.

    ``changes`` are Dockerfile instructions (CMD, ENTRYPOINT, ENV, EXPOSE,
    LABEL, USER, WORKDIR, VOLUME, ONBUILD, STOPSIGNAL) applied to the empty
    config. ``message`` becomes the history comment, by default
    "Imported from ``source_name``". Raises BuildError for a stream that is
    not a tar archive, and InvalidArgument for an invalid change.
    """
    from dockyard.build.layers import ImageState, Layering, now_rfc3339, scratch_config
    from dockyard.engine import locks
    from dockyard.engine.filesystem import apply_changes
    from dockyard.image import platform as platforms
    from dockyard.image import reference as references

    tags = [str(references.parse_repository(reference))] if reference else []
    host = platforms.host()
    image = ImageState(scratch_config(host.os, host.architecture, host.variant))
    image.config["config"] = apply_changes({}, list(changes))
    created = now_rfc3339()
    image.config["created"] = created
    comment = message or f"Imported from {source_name}"
    if message:
        image.config["comment"] = message
    image.config["history"] = [{"created": created, "created_by": "", "comment": comment}]

    layering = Layering(engine.images)
    with locks.gc_lock(engine.root, exclusive=False):
        if isinstance(source, Path):
            layering.add(image, lambda out: _write_directory(source, out))
        else:
            layering.add(image, lambda out: _copy_tar(source, out, source_name))
        image_id = layering.record(image, tags)
    log.debug("imported %s as image %s", source_name, image_id)
    return image_id


def _copy_tar(source: BinaryIO, out: BinaryIO, source_name: str) -> None:
    """Copy the uncompressed tar inside ``source`` to ``out``, after checking that it starts like a tar."""
    from dockyard.image import layer

    stream = layer.decompressed(source, None)
    head = stream.read(512)
    # A POSIX or GNU tar header has "ustar" at offset 257; an empty archive is all zeros.
    if len(head) < 512 or (head[257:262] != b"ustar" and head.strip(b"\0")):
        raise BuildError(f"import {source_name}: not a tar archive (plain, gzip or zstd)")
    out.write(head)
    shutil.copyfileobj(stream, out, CHUNK_SIZE)


def _write_directory(directory: Path, out: BinaryIO) -> None:
    """Write the contents of ``directory`` as a tar stream, keeping owners, modes and hard links."""
    if not directory.is_dir():
        raise BuildError(f"import {directory}: not a directory")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(os.listdir(directory)):
            archive.add(directory / name, arcname=name, recursive=True)

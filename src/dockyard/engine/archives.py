"""``save`` and ``load``: images to and from tar archives, through ``image/archive.py``.

Loading first puts every blob into the content store, and ``archive.read``
removes them again if the archive is bad. Then each layer is unpacked into a
snapshot and its diff ID checked. Each image and its tags are recorded last,
so a load that fails records no image.

``save`` writes the manifest an image was pulled as, byte for byte, so
``load`` can record that manifest's digest as the repository digest of each
loaded tag, and a save and load round trip keeps ``RepoDigests``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, BinaryIO, Sequence

from dockyard.engine import locks
from dockyard.engine.images import ImageService, Progress
from dockyard.engine.pull import existing_layer_size, unpack_layer
from dockyard.engine.state import ImageRecord, LayerRecord, ManifestRecord
from dockyard.errors import ArchiveError, InvalidReference

if TYPE_CHECKING:
    from dockyard.image.archive import LoadedImage

log = logging.getLogger(__name__)


def save(service: ImageService, names: Sequence[str], out: BinaryIO) -> None:
    """Write the named images, with the tags they were named by, as one archive to ``out``.

    An image named by its ID, full or short, is saved without tags, as Docker
    saves it, so loading the archive prints ``Loaded image ID:``.
    """
    from dockyard.image import archive

    tags_by_manifest: dict[str, list] = {}
    with locks.gc_lock(service.root, exclusive=False):
        for name in names:
            image_id = service.resolve(name)
            digest, *_ = service.manifest_for(image_id, f"save {name}")
            tags = tags_by_manifest.setdefault(digest, [])
            ref = _as_tag(name, image_id, service)
            if ref is not None and ref not in tags:
                tags.append(ref)
        images = [archive.ArchiveImage(digest, tags) for digest, tags in tags_by_manifest.items()]
        archive.write(out, images, service.store)


def _as_tag(name: str, image_id: str, service: ImageService):  # type: ignore[no-untyped-def]
    """Return ``name`` as a tag reference if it names the image as ``repository[:tag]``, else None."""
    from dockyard.image import reference as references

    try:
        ref = references.parse(name)
    except InvalidReference:
        return None
    if ref.digest is not None or service.state.image_for_tag(str(ref)) != image_id:
        return None
    return ref


def load(service: ImageService, fileobj: BinaryIO, progress: Progress) -> list[str]:
    """Load every image in the archive; returns the familiar tags loaded, or the image ID of an untagged one."""
    from dockyard.image import archive

    names: list[str] = []
    with locks.gc_lock(service.root, exclusive=False):
        try:
            loaded = archive.read(fileobj, service.store, tmp_dir=service.root / "tmp")
        except ArchiveError as error:
            source = getattr(fileobj, "name", None)
            if not isinstance(source, str) or source == "<stdin>":
                source = "standard input"
            raise ArchiveError(f"cannot load images from {source}: {error}") from error
        for image in loaded:
            names += _record_loaded(service, image, progress)
    return names


def _record_loaded(service: ImageService, image: "LoadedImage", progress: Progress) -> list[str]:
    from dockyard.image import layer as layers_module

    config_bytes = service.store.read(image.config_digest)
    try:
        config = json.loads(config_bytes)
        diff_ids = list(config["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError) as error:
        raise ArchiveError(f"image config {image.config_digest} in the archive has no rootfs.diff_ids") from error
    if len(diff_ids) != len(image.layers):
        raise ArchiveError(
            f"image {image.config_digest} in the archive has {len(image.layers)} layers "
            f"but its config lists {len(diff_ids)} diff IDs"
        )
    chain_ids = layers_module.chain_ids(diff_ids)

    def emit(status: str, layer: str | None = None, **detail: int) -> None:
        event: dict = {"status": status}
        if layer is not None:
            event["id"] = layer
        if detail:
            event["progressDetail"] = detail
        progress(event)

    records: list[LayerRecord] = []
    parent = None
    for descriptor, diff_id, chain_id in zip(image.layers, diff_ids, chain_ids):
        if service.snapshots.get(chain_id) is not None:
            size = existing_layer_size(service, chain_id)
        elif not service.store.has(descriptor.digest):
            raise ArchiveError(
                f"layer {descriptor.digest} of image {image.config_digest} is not in the archive "
                "(a foreign layer) and not unpacked locally"
            )
        else:
            size = unpack_layer(service, descriptor, diff_id, chain_id, parent, emit)
        records.append(LayerRecord(chain_id, diff_id, parent, descriptor.digest, descriptor.media_type,
                                   descriptor.size, size))
        parent = chain_id

    record = ImageRecord(
        id=image.config_digest,
        config=config_bytes,
        created=config.get("created"),
        size=sum(layer.size for layer in records),
        os=config.get("os", ""),
        architecture=config.get("architecture", ""),
        variant=config.get("variant"),
        manifest_digest=image.manifest_digest,
    )
    blobs = [image.manifest_digest, image.config_digest, *(d.digest for d in image.layers)]
    tags = [str(tag) for tag in image.tags]
    repository_manifests = _repository_manifests(service, image)
    service.state.record_image(record, records, blobs=blobs, tags=tags,
                               manifest=repository_manifests[0] if repository_manifests else None)
    for manifest in repository_manifests[1:]:
        service.state.record_manifest(image.config_digest, manifest)
    log.debug("loaded image %s with tags %s", image.config_digest, tags)
    if not image.tags:
        return [image.config_digest]
    return [tag.familiar() for tag in image.tags]


def _repository_manifests(service: ImageService, image: "LoadedImage") -> list[ManifestRecord]:
    """Return a repository digest record for each repository the loaded image is tagged in.

    Only a manifest that the archive carries as a blob counts. One that
    ``archive.read`` synthesised for a legacy docker-archive, or that dockyard
    built itself, was never served by a registry, so its digest is no
    repository digest.
    """
    # NOTE: a synthesised manifest is recognised by its bytes being exactly
    # Manifest.encode() of the parsed manifest; archive.read does not say so.
    data = service.store.read(image.manifest_digest)
    if data == image.manifest.encode():
        return []
    repositories = dict.fromkeys(tag.repository for tag in image.tags)
    return [
        ManifestRecord(repository, image.manifest_digest, image.manifest_digest, image.manifest.media_type)
        for repository in repositories
    ]

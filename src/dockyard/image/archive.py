"""Image archives for ``save`` and ``load``: docker-archive and OCI image layout tars.

``write()`` produces what ``docker save`` produces since Docker 25: one tar
that is both an OCI image layout and a docker-archive. The layout part is
``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>``. The docker-archive
part is ``manifest.json`` and ``repositories``, whose paths point into
``blobs/``. Older Docker engines, skopeo and OCI tools can all read it.

``read()`` accepts that format, the legacy docker-archive written by Docker
before 25 (``<id>/layer.tar``, ``<id>.json``, layers plain or compressed,
duplicates stored as symlinks), and plain OCI image layouts, each of them
plain or compressed with gzip, zstd, bzip2 or xz. The tar is first unpacked into a private temporary
directory, because ``manifest.json`` and ``index.json`` usually come after the
blobs they name and the input may be a pipe. Every blob then goes into the
content store through a verifying write. When anything fails, the blobs added
so far are deleted again, so a failed load leaves the store as it was.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Sequence

from dockyard.errors import ArchiveError, DigestMismatch, DockyardError, ImageError, InvalidReference, NotFound
from dockyard.image import digest as digests
from dockyard.image import manifest as manifests
from dockyard.image import mediatypes
from dockyard.image import reference as references
from dockyard.image.manifest import Descriptor, Index, Manifest
from dockyard.image.platform import Platform
from dockyard.image.reference import Reference

if TYPE_CHECKING:
    from dockyard.image.store import ContentStore

log = logging.getLogger(__name__)

OCI_LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
BLOBS_DIRECTORY = "blobs"
OCI_LAYOUT_VERSION = "1.0.0"

# The OCI annotation for a reference name in an image layout. It may hold a
# full reference or only a tag; Docker 25+ writes only the tag here.
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# containerd's annotation for the full image name, written by Docker 25+ and containerd.
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"

# Largest JSON document (manifest, index, config, manifest.json) read into
# memory. Registries commonly cap manifests at 4 MiB; configs of images with
# very long histories are bigger, so this limit is higher.
MAX_DOCUMENT_SIZE = 32 * 1024 * 1024

# Most link hops followed when resolving a symlink or hardlink member.
MAX_LINK_HOPS = 40

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class ArchiveImage:
    """An image to save: its manifest in the content store and the names to record for it."""

    manifest_digest: str
    tags: Sequence[Reference] = ()


@dataclass
class LoadedImage:
    """An image read from an archive, with all its blobs now in the content store.

    ``manifest`` is synthesised (OCI types, compact JSON) for legacy
    docker-archives, which carry no manifest. ``layers`` are the manifest's
    layer descriptors, bottom first; foreign layers that the archive leaves out
    are listed but not stored. ``ref_names`` holds OCI reference names that
    are bare tags (``latest``, ``v1``) with no repository to attach them to.
    """

    manifest: Manifest
    manifest_digest: str
    config_digest: str
    layers: list[Descriptor]
    tags: list[Reference] = field(default_factory=list)
    ref_names: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Writing


def write(out: BinaryIO, images: Sequence[ArchiveImage], content: ContentStore) -> None:
    """Write ``images`` to ``out`` as one tar that is an OCI image layout and a docker-archive.

    ``out`` may be a pipe; it is written once, front to back, and not closed.
    Every blob is checked to be in the store before the first byte is
    written. Raises ArchiveError when a manifest or non-foreign layer is
    missing from the store.
    """
    plan = _plan_archive(images, content)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_file(tar, OCI_LAYOUT_FILE, _json_bytes({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
        _add_directory(tar, f"{BLOBS_DIRECTORY}/")
        _add_directory(tar, f"{BLOBS_DIRECTORY}/sha256/")
        for digest, size in plan.blobs.items():
            _add_blob(tar, digest, size, content)
        _add_file(tar, INDEX_FILE, _json_bytes(plan.index.to_dict()))
        _add_file(tar, MANIFEST_FILE, _json_bytes(plan.docker_manifest))
        _add_file(tar, REPOSITORIES_FILE, _json_bytes(plan.repositories))
    log.debug("wrote archive with %d images and %d blobs", len(images), len(plan.blobs))


@dataclass
class _ArchivePlan:
    blobs: dict[str, int]
    index: Index
    docker_manifest: list[dict[str, Any]]
    repositories: dict[str, dict[str, str]]


def _plan_archive(images: Sequence[ArchiveImage], content: ContentStore) -> _ArchivePlan:
    """Read every image's manifest and config and work out the archive's contents."""
    blobs: dict[str, int] = {}
    index_entries: list[Descriptor] = []
    docker_manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}

    for image in images:
        manifest_data = _read_stored(content, image.manifest_digest, f"manifest {image.manifest_digest}")
        image_manifest = manifests.parse_manifest(manifest_data)
        config_digest = image_manifest.config.digest
        config = manifests.parse_config(_read_stored(content, config_digest, f"config {config_digest}"))

        layer_paths: list[str] = []
        layer_sources: dict[str, dict[str, Any]] = {}
        for number, layer in enumerate(image_manifest.layers):
            layer_paths.append(_blob_member(layer.digest))
            if content.has(layer.digest):
                blobs[layer.digest] = layer.size
            elif mediatypes.is_foreign_layer(layer.media_type) and number < len(config.diff_ids):
                layer_sources[config.diff_ids[number]] = layer.to_dict()
            else:
                raise ArchiveError(
                    f"cannot save image {image.manifest_digest}: layer {layer.digest} is missing from the content store"
                )
        blobs[config_digest] = image_manifest.config.size
        blobs[image.manifest_digest] = len(manifest_data)

        descriptor = Descriptor(image_manifest.media_type, image.manifest_digest, len(manifest_data))
        repo_tags: list[str] = []
        for tag in image.tags:
            annotations = {IMAGE_NAME_ANNOTATION: str(tag)}
            if tag.tag is not None:
                annotations[REF_NAME_ANNOTATION] = tag.tag
            index_entries.append(
                Descriptor(descriptor.media_type, descriptor.digest, descriptor.size, annotations=annotations)
            )
            if tag.tag is not None and tag.digest is None:
                repo_tags.append(tag.familiar())
                if image_manifest.layers:
                    top_layer = digests.hex_part(image_manifest.layers[-1].digest)
                    repositories.setdefault(tag.familiar_repository(), {})[tag.tag] = top_layer
        if not image.tags:
            index_entries.append(descriptor)

        entry: dict[str, Any] = {
            "Config": _blob_member(config_digest),
            "RepoTags": repo_tags or None,
            "Layers": layer_paths,
        }
        if layer_sources:
            entry["LayerSources"] = layer_sources
        docker_manifest.append(entry)

    index = Index(mediatypes.OCI_INDEX, index_entries)
    return _ArchivePlan(blobs, index, docker_manifest, repositories)


def _read_stored(content: ContentStore, digest: str, description: str) -> bytes:
    try:
        return content.read(digest)
    except NotFound:
        raise ArchiveError(f"cannot save: {description} is missing from the content store") from None


def _add_blob(tar: tarfile.TarFile, digest: str, size: int, content: ContentStore) -> None:
    actual_size = content.path(digest).stat().st_size
    if actual_size != size:
        raise ArchiveError(
            f"cannot save blob {digest}: its descriptor gives {size} bytes but the stored blob has {actual_size}"
        )
    info = _member_info(_blob_member(digest), size)
    with content.open(digest) as blob:
        tar.addfile(info, blob)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    tar.addfile(_member_info(name, len(data)), io.BytesIO(data))


def _add_directory(tar: tarfile.TarFile, name: str) -> None:
    info = _member_info(name, 0)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _member_info(name: str, size: int) -> tarfile.TarInfo:
    # Fixed owner, mode and time, so that saving the same images twice gives the same bytes.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _blob_member(digest: str) -> str:
    algorithm, _, encoded = digests.validate(digest).partition(":")
    return f"{BLOBS_DIRECTORY}/{algorithm}/{encoded}"


def _json_bytes(document: object) -> bytes:
    import json

    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


# ---------------------------------------------------------------------------
# Reading


def read(
    fileobj: BinaryIO,
    content: ContentStore,
    platform: Platform | None = None,
    tmp_dir: Path | None = None,
) -> list[LoadedImage]:
    """Load every image in an archive into ``content`` and describe each one.

    ``platform`` picks the manifest when an index in the archive contains several
    (default: this machine's). ``tmp_dir`` is where the archive is unpacked
    first (default: the system temporary directory). Pass a directory on the
    store's file system, because the unpacked archive is as large as the
    uncompressed archive and /tmp may be small.

    Raises ArchiveError for a malformed archive, DigestMismatch for a blob
    that does not hash to its name, InvalidManifest for a malformed document
    and NoMatchingPlatform when a multi-platform index has no entry for
    ``platform``. In every case the store is left without the blobs this call
    added.
    """
    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dockyard-load-", dir=tmp_dir))
    importer = _Importer(content)
    try:
        tree = _unpack(fileobj, work)
        images = _load_tree(tree, importer, platform)
    except BaseException:
        importer.roll_back()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.debug("loaded %d images, %d new blobs", len(images), len(importer.added))
    return images


class _Tree:
    """The regular files of an unpacked archive, with its symlinks and hardlinks resolved by name."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.links: dict[str, str] = {}

    def find(self, name: str) -> Path | None:
        """Return the file stored for archive path ``name``, following links; None if there is none."""
        current = _normalise_member_name(name)
        for _ in range(MAX_LINK_HOPS):
            if current in self.files:
                return self.files[current]
            if current not in self.links:
                return None
            current = self.links[current]
        raise ArchiveError(f"too many levels of links resolving archive member {name!r}")

    def require(self, name: str, description: str) -> Path:
        path = self.find(name)
        if path is None:
            raise ArchiveError(f"archive member {name!r} ({description}) is missing")
        return path

    def read_document(self, name: str, description: str) -> bytes:
        path = self.require(name, description)
        size = path.stat().st_size
        if size > MAX_DOCUMENT_SIZE:
            raise ArchiveError(
                f"archive member {name!r} ({description}) is {size} bytes, "
                f"more than the {MAX_DOCUMENT_SIZE} allowed for a JSON document"
            )
        return path.read_bytes()


def _unpack(fileobj: BinaryIO, work: Path) -> _Tree:
    """Unpack the tar into ``work`` as numbered files, recording names and links; reject unsafe names."""
    from dockyard.image import layer

    tree = _Tree()
    try:
        # layer.decompressed() undoes gzip and zstd, and tarfile's "r|*" mode
        # then undoes bzip2 and xz. Both read the input front to back only.
        stream = layer.decompressed(fileobj, None)
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for number, member in enumerate(tar):
                _unpack_member(tar, member, number, work, tree)
    except (tarfile.TarError, EOFError) as error:
        raise ArchiveError(f"not a valid tar archive: {error}") from None
    except ArchiveError:
        raise
    except ImageError as error:
        # layer.decompressed() reports corrupt zstd data as a layer error.
        raise ArchiveError(f"cannot decompress the archive: {error}") from error
    except OSError as error:
        raise ArchiveError(f"cannot read or unpack the archive: {error}") from error
    return tree


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, number: int, work: Path, tree: _Tree) -> None:
    name = _normalise_member_name(member.name)
    if not name or member.isdir():
        return
    if member.isfile():
        source = tar.extractfile(member)
        if source is None:
            raise ArchiveError(f"cannot read archive member {member.name!r}")
        target = work / str(number)
        with source, open(target, "xb") as output:
            shutil.copyfileobj(source, output, _CHUNK)
        tree.files[name] = target
        tree.links.pop(name, None)
    elif member.issym():
        tree.links[name] = _resolve_symlink(name, member.linkname)
        tree.files.pop(name, None)
    elif member.islnk():
        tree.links[name] = _normalise_member_name(member.linkname)
        tree.files.pop(name, None)
    else:
        raise ArchiveError(f"archive member {member.name!r} is not a file, directory or link")


def _normalise_member_name(name: str) -> str:
    """Return ``name`` without ``.`` and empty components; reject absolute names and ``..``."""
    if name.startswith("/"):
        raise ArchiveError(f"archive member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r} contains '..'")
    return "/".join(parts)


def _resolve_symlink(name: str, target: str) -> str:
    """Return the archive path a relative symlink at ``name`` points to; reject targets outside the archive."""
    if target.startswith("/"):
        raise ArchiveError(f"archive symlink {name!r} has an absolute target {target!r}")
    parts = name.split("/")[:-1]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ArchiveError(f"archive symlink {name!r} points outside the archive: {target!r}")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


class _Importer:
    """Puts verified blobs into the content store and remembers the new ones, to delete them on failure."""

    def __init__(self, content: ContentStore) -> None:
        self.content = content
        self.added: list[str] = []

    def put_document(self, data: bytes, digest: str, description: str) -> None:
        digests.verify(data, digest, description)
        if self.content.has(digest):
            return
        self.content.put(data, digest)
        self.added.append(digest)
        log.debug("stored %s as %s", description, digest)

    def put_file(self, path: Path, digest: str, size: int | None, description: str) -> None:
        if self.content.has(digest):
            return
        try:
            with self.content.ingest(digest, size) as ingest, open(path, "rb") as source:
                if ingest.offset:
                    ingest.reset()
                while chunk := source.read(_CHUNK):
                    ingest.write(chunk)
                ingest.commit()
        except DigestMismatch as error:
            raise DigestMismatch(description, error.expected, error.actual) from None
        self.added.append(digest)
        log.debug("stored %s as %s", description, digest)

    def roll_back(self) -> None:
        for digest in reversed(self.added):
            try:
                self.content.delete(digest)
            except NotFound:
                pass
            except DockyardError as error:
                log.warning("cannot remove blob %s after a failed load: %s", digest, error)
        self.added.clear()


def _load_tree(tree: _Tree, importer: _Importer, platform: Platform | None) -> list[LoadedImage]:
    has_index = tree.find(INDEX_FILE) is not None
    has_docker_manifest = tree.find(MANIFEST_FILE) is not None
    if not has_index and not has_docker_manifest:
        raise ArchiveError(
            f"archive has neither {MANIFEST_FILE} nor {INDEX_FILE}: it is not a docker-archive or an OCI image layout"
        )

    images: list[LoadedImage] = []
    if has_index:
        _check_layout_file(tree)
        images = _load_oci_layout(tree, importer, platform)

    if has_docker_manifest:
        by_config = {image.config_digest: image for image in images}
        for number, entry in enumerate(_read_docker_manifest(tree)):
            config_name = entry["Config"]
            config_digest = digests.of(tree.read_document(config_name, f"{MANIFEST_FILE} entry {number} Config"))
            tags = _parse_repo_tags(entry.get("RepoTags"), number)
            known = by_config.get(config_digest)
            if known is not None:
                _merge_tags(known, tags)
                continue
            image = _load_legacy_image(tree, importer, entry, number)
            _merge_tags(image, tags)
            by_config[image.config_digest] = image
            images.append(image)
    return images


def _check_layout_file(tree: _Tree) -> None:
    """Check the version in ``oci-layout``. The OCI spec requires the file, but a layout without it is accepted."""
    import json

    if tree.find(OCI_LAYOUT_FILE) is None:
        return
    data = tree.read_document(OCI_LAYOUT_FILE, "OCI layout header")
    try:
        version = json.loads(data).get("imageLayoutVersion")
    except (ValueError, AttributeError):
        version = None
    if not isinstance(version, str) or not version.startswith("1."):
        raise ArchiveError(f"{OCI_LAYOUT_FILE}: unsupported or missing imageLayoutVersion in {data[:200]!r}")


def _load_oci_layout(tree: _Tree, importer: _Importer, platform: Platform | None) -> list[LoadedImage]:
    index = manifests.parse_index(tree.read_document(INDEX_FILE, "OCI image index"))
    by_digest: dict[str, LoadedImage] = {}
    for number, entry in enumerate(index.manifests):
        tags, ref_names = _names_from_annotations(entry.annotations, number)
        manifest_entry = _resolve_entry(tree, entry, platform)
        image = by_digest.get(manifest_entry.digest)
        if image is None:
            image = _load_oci_image(tree, importer, manifest_entry)
            by_digest[manifest_entry.digest] = image
        _merge_tags(image, tags)
        for ref_name in ref_names:
            if ref_name not in image.ref_names:
                image.ref_names.append(ref_name)
    return list(by_digest.values())


def _resolve_entry(tree: _Tree, entry: Descriptor, platform: Platform | None) -> Descriptor:
    """Follow nested indexes down to one manifest whose blob the archive holds."""
    seen: set[str] = set()
    while mediatypes.is_index(entry.media_type):
        if entry.digest in seen:
            raise ArchiveError(f"index {entry.digest} contains itself")
        seen.add(entry.digest)
        data = _read_blob_document(tree, entry, "image index")
        nested = manifests.parse_index(data, entry.media_type)
        present = [item for item in nested.manifests if tree.find(_blob_member(item.digest)) is not None]
        if not present:
            raise ArchiveError(f"index {entry.digest} lists no manifest whose blob is in the archive")
        if len(present) == 1:
            entry = present[0]
        else:
            entry = Index(nested.media_type, present).select(platform)
    if not mediatypes.is_manifest(entry.media_type):
        raise ArchiveError(f"index entry {entry.digest} has unsupported media type {entry.media_type!r}")
    return entry


def _load_oci_image(tree: _Tree, importer: _Importer, entry: Descriptor) -> LoadedImage:
    manifest_data = _read_blob_document(tree, entry, "manifest")
    image_manifest = manifests.parse_manifest(manifest_data, entry.media_type)
    config_data = _read_blob_document(tree, image_manifest.config, f"config of manifest {entry.digest}")
    config = manifests.parse_config(config_data)
    if len(config.diff_ids) != len(image_manifest.layers):
        raise ArchiveError(
            f"manifest {entry.digest} has {len(image_manifest.layers)} layers "
            f"but its config lists {len(config.diff_ids)} diff_ids"
        )

    # Layers first and the manifest last, as a pull stores them: a manifest
    # in the store means its blobs are there too.
    for layer in image_manifest.layers:
        member = _blob_member(layer.digest)
        path = tree.find(member)
        if path is None:
            if mediatypes.is_foreign_layer(layer.media_type):
                log.debug("foreign layer %s is not in the archive, skipping it", layer.digest)
                continue
            raise ArchiveError(f"layer {layer.digest} of manifest {entry.digest} is missing from the archive")
        importer.put_file(path, layer.digest, layer.size, f"archive member {member}")
    config_member = _blob_member(image_manifest.config.digest)
    importer.put_document(config_data, image_manifest.config.digest, f"archive member {config_member}")
    importer.put_document(manifest_data, entry.digest, f"archive member {_blob_member(entry.digest)}")
    return LoadedImage(
        manifest=image_manifest,
        manifest_digest=entry.digest,
        config_digest=image_manifest.config.digest,
        layers=list(image_manifest.layers),
    )


def _read_blob_document(tree: _Tree, descriptor: Descriptor, description: str) -> bytes:
    """Read a JSON blob named by ``descriptor`` and check its digest and size."""
    member = _blob_member(descriptor.digest)
    data = tree.read_document(member, description)
    digests.verify(data, descriptor.digest, f"archive member {member}")
    if len(data) != descriptor.size:
        raise ArchiveError(
            f"archive member {member} ({description}) is {len(data)} bytes, but its descriptor gives {descriptor.size}"
        )
    return data


def _names_from_annotations(annotations: dict[str, str] | None, number: int) -> tuple[list[Reference], list[str]]:
    """Return the references and bare tags that an ``index.json`` entry's annotations name."""
    if not annotations:
        return [], []
    full_name = annotations.get(IMAGE_NAME_ANNOTATION)
    ref_name = annotations.get(REF_NAME_ANNOTATION)
    where = f"{INDEX_FILE} manifests[{number}]"
    if full_name:
        return [_parse_name(full_name, f"{where} annotation {IMAGE_NAME_ANNOTATION}")], []
    if not ref_name:
        return [], []
    # A tag cannot contain "/" or ":", so either one marks a full reference.
    if "/" in ref_name or ":" in ref_name:
        return [_parse_name(ref_name, f"{where} annotation {REF_NAME_ANNOTATION}")], []
    return [], [ref_name]


def _parse_name(text: str, where: str) -> Reference:
    try:
        return references.parse(text)
    except InvalidReference as error:
        raise ArchiveError(f"{where}: {error}") from None


def _merge_tags(image: LoadedImage, tags: list[Reference]) -> None:
    for tag in tags:
        if tag not in image.tags:
            image.tags.append(tag)


def _read_docker_manifest(tree: _Tree) -> list[dict[str, Any]]:
    import json

    data = tree.read_document(MANIFEST_FILE, "docker-archive manifest")
    try:
        entries = json.loads(data)
    except ValueError as error:
        raise ArchiveError(f"{MANIFEST_FILE} is not valid JSON: {error}") from None
    if not isinstance(entries, list):
        raise ArchiveError(f"{MANIFEST_FILE} must be a JSON list, got {type(entries).__name__}")
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ArchiveError(f"{MANIFEST_FILE} entry {number} has no Config path")
        layers = entry.get("Layers")
        if not isinstance(layers, list) or not all(isinstance(layer, str) for layer in layers):
            raise ArchiveError(f"{MANIFEST_FILE} entry {number}: Layers must be a list of paths, got {layers!r}")
        sources = entry.get("LayerSources")
        if sources is not None and not isinstance(sources, dict):
            raise ArchiveError(f"{MANIFEST_FILE} entry {number}: LayerSources must be an object")
    return entries


def _parse_repo_tags(value: object, number: int) -> list[Reference]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ArchiveError(f"{MANIFEST_FILE} entry {number}: RepoTags must be a list of strings, got {value!r}")
    return [_parse_name(tag, f"{MANIFEST_FILE} entry {number} RepoTags") for tag in value]


def _load_legacy_image(tree: _Tree, importer: _Importer, entry: dict[str, Any], number: int) -> LoadedImage:
    """Load a ``manifest.json`` entry and synthesise an OCI manifest for it."""
    config_name = entry["Config"]
    config_data = tree.read_document(config_name, f"{MANIFEST_FILE} entry {number} Config")
    config = manifests.parse_config(config_data)
    layer_names: list[str] = entry["Layers"]
    if len(layer_names) != len(config.diff_ids):
        raise ArchiveError(
            f"{MANIFEST_FILE} entry {number} lists {len(layer_names)} layers "
            f"but its config {config_name!r} lists {len(config.diff_ids)} diff_ids"
        )
    layer_sources = entry.get("LayerSources") or {}

    layers: list[Descriptor] = []
    for layer_name, diff_id in zip(layer_names, config.diff_ids):
        path = tree.find(layer_name)
        if path is None:
            if diff_id in layer_sources:
                layers.append(manifests.descriptor_from_dict(layer_sources[diff_id], f"{MANIFEST_FILE} LayerSources"))
                continue
            raise ArchiveError(f"archive member {layer_name!r} (a layer of {MANIFEST_FILE} entry {number}) is missing")
        layer_digest, size, media_type = _describe_layer(path, layer_name)
        if media_type == mediatypes.OCI_LAYER_TAR and layer_digest != diff_id:
            raise DigestMismatch(f"uncompressed layer {layer_name!r}", diff_id, layer_digest)
        importer.put_file(path, layer_digest, size, f"archive member {layer_name}")
        layers.append(Descriptor(media_type, layer_digest, size))

    config_digest = digests.of(config_data)
    config_descriptor = Descriptor(mediatypes.OCI_CONFIG, config_digest, len(config_data))
    image_manifest = Manifest(mediatypes.OCI_MANIFEST, config_descriptor, layers)
    manifest_data = image_manifest.encode()
    manifest_digest = digests.of(manifest_data)
    importer.put_document(config_data, config_digest, f"archive member {config_name}")
    importer.put_document(manifest_data, manifest_digest, f"manifest synthesised for {MANIFEST_FILE} entry {number}")
    return LoadedImage(
        manifest=image_manifest,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        layers=layers,
    )


def _describe_layer(path: Path, name: str) -> tuple[str, int, str]:
    """Hash a layer file and tell its media type from its first bytes: gzip, zstd or plain tar."""
    import hashlib

    hash_object = hashlib.sha256()
    size = 0
    with open(path, "rb") as source:
        head = source.read(8)
        hash_object.update(head)
        size += len(head)
        while chunk := source.read(_CHUNK):
            hash_object.update(chunk)
            size += len(chunk)
    if head.startswith(_GZIP_MAGIC):
        media_type = mediatypes.OCI_LAYER_GZIP
    elif head.startswith(_ZSTD_MAGIC):
        media_type = mediatypes.OCI_LAYER_ZSTD
    elif head.startswith(_BZIP2_MAGIC) or head.startswith(_XZ_MAGIC):
        raise ArchiveError(
            f"layer {name!r} is compressed with bzip2 or xz, which OCI images cannot describe; "
            "recompress it with gzip or zstd"
        )
    else:
        media_type = mediatypes.OCI_LAYER_TAR
    return f"sha256:{hash_object.hexdigest()}", size, media_type

"""Image archives: writing the Docker 25+ combined format and reading every supported format.

The content store is the real ``ContentStore`` on a temporary directory.
skopeo, when installed, checks the written archives independently and
converts them to the legacy docker-archive and a plain OCI layout.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import ArchiveError, DigestMismatch, NoMatchingPlatform
from dockyard.image import archive, mediatypes
from dockyard.image.archive import ArchiveImage, LoadedImage
from dockyard.image.manifest import Descriptor, Manifest, parse_manifest
from dockyard.image.platform import Platform
from dockyard.image.reference import parse
from dockyard.image.store import ContentStore
from tests.support.schemas import schema_validator

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    """Return an uncompressed layer tar holding ``files``, with fixed metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@dataclass
class StoredImage:
    manifest_digest: str
    manifest: Manifest
    config_data: bytes
    layer_blobs: list[bytes]


def store_image(
    store: ContentStore,
    layers: list[bytes],
    compressed: bool = True,
    architecture: str = "amd64",
    docker_types: bool = False,
) -> StoredImage:
    """Put an image with the given uncompressed layers into ``store`` and describe it."""
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        "history": [{"created_by": f"layer {number}"} for number in range(len(layers))],
    }
    config_data = json.dumps(config).encode()
    if docker_types:
        manifest_type, config_type, layer_type = (
            mediatypes.DOCKER_MANIFEST,
            mediatypes.DOCKER_CONFIG,
            mediatypes.DOCKER_LAYER_GZIP if compressed else mediatypes.DOCKER_LAYER_TAR,
        )
    else:
        manifest_type, config_type, layer_type = (
            mediatypes.OCI_MANIFEST,
            mediatypes.OCI_CONFIG,
            mediatypes.OCI_LAYER_GZIP if compressed else mediatypes.OCI_LAYER_TAR,
        )
    blobs = [gzipped(layer) if compressed else layer for layer in layers]
    descriptors = [Descriptor(layer_type, store.put(blob), len(blob)) for blob in blobs]
    config_descriptor = Descriptor(config_type, store.put(config_data), len(config_data))
    manifest = Manifest(manifest_type, config_descriptor, descriptors)
    manifest_digest = store.put(manifest.encode())
    return StoredImage(manifest_digest, manifest, config_data, blobs)


def tar_of(members: dict[str, bytes], links: dict[str, str] | None = None, compress: bool = False) -> bytes:
    """Return a tar of regular files ``members`` and symlinks ``links`` (name to target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def members_of(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        result = {}
        for member in tar:
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                result[member.name] = extracted.read()
        return result


def load(data: bytes, store: ContentStore, **options: Any) -> list[LoadedImage]:
    return archive.read(io.BytesIO(data), store, **options)


@pytest.fixture
def source(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "source")


@pytest.fixture
def target(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "target")


@pytest.fixture
def busybox(source: ContentStore) -> StoredImage:
    return store_image(source, [layer_tar({"bin/sh": b"#!shell"}), layer_tar({"etc/motd": b"hello\n"})])


def save(images: list[ArchiveImage], store: ContentStore) -> bytes:
    output = io.BytesIO()
    archive.write(output, images, store)
    return output.getvalue()


# ---------------------------------------------------------------------------
# Writing


def test_write_layout_and_docker_archive(source: ContentStore, busybox: StoredImage) -> None:
    data = save([ArchiveImage(busybox.manifest_digest, [parse("busybox:1.36"), parse("localhost:5000/a/b:t")])], source)
    members = members_of(data)

    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for digest in [busybox.manifest_digest, busybox.manifest.config.digest] + [
        layer.digest for layer in busybox.manifest.layers
    ]:
        assert members[f"blobs/sha256/{digest.removeprefix('sha256:')}"] == source.read(digest)

    index = json.loads(members["index.json"])
    assert index["mediaType"] == mediatypes.OCI_INDEX
    assert [entry["annotations"] for entry in index["manifests"]] == [
        {
            "io.containerd.image.name": "docker.io/library/busybox:1.36",
            "org.opencontainers.image.ref.name": "1.36",
        },
        {
            "io.containerd.image.name": "localhost:5000/a/b:t",
            "org.opencontainers.image.ref.name": "t",
        },
    ]
    assert {entry["digest"] for entry in index["manifests"]} == {busybox.manifest_digest}

    docker_manifest = json.loads(members["manifest.json"])
    config_hex = busybox.manifest.config.digest.removeprefix("sha256:")
    layer_paths = [f"blobs/sha256/{layer.digest.removeprefix('sha256:')}" for layer in busybox.manifest.layers]
    assert docker_manifest == [
        {"Config": f"blobs/sha256/{config_hex}", "RepoTags": ["busybox:1.36", "localhost:5000/a/b:t"], "Layers": layer_paths}
    ]
    top_layer = busybox.manifest.layers[-1].digest.removeprefix("sha256:")
    assert json.loads(members["repositories"]) == {"busybox": {"1.36": top_layer}, "localhost:5000/a/b": {"t": top_layer}}


def test_written_layout_fits_oci_schemas(source: ContentStore, busybox: StoredImage) -> None:
    members = members_of(save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source))
    layout_errors = list(schema_validator("image-layout-schema.json").iter_errors(json.loads(members["oci-layout"])))
    index_errors = list(schema_validator("image-index-schema.json").iter_errors(json.loads(members["index.json"])))
    assert layout_errors == []
    assert index_errors == []


def test_write_is_deterministic(source: ContentStore, busybox: StoredImage) -> None:
    images = [ArchiveImage(busybox.manifest_digest, [parse("busybox")])]
    assert save(images, source) == save(images, source)


def test_write_untagged_image(source: ContentStore, busybox: StoredImage) -> None:
    members = members_of(save([ArchiveImage(busybox.manifest_digest)], source))
    index = json.loads(members["index.json"])
    assert index["manifests"] == [
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": busybox.manifest_digest, "size": len(busybox.manifest.encode())}
    ]
    assert json.loads(members["manifest.json"])[0]["RepoTags"] is None
    assert json.loads(members["repositories"]) == {}


def test_write_shares_blobs_between_images(source: ContentStore, busybox: StoredImage) -> None:
    other = store_image(source, [layer_tar({"bin/sh": b"#!shell"}), layer_tar({"other": b"x"})])
    data = save(
        [ArchiveImage(busybox.manifest_digest, [parse("one")]), ArchiveImage(other.manifest_digest, [parse("two")])],
        source,
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert len(names) == len(set(names))
    # Two manifests, two configs and three distinct layers.
    assert len([name for name in names if name.startswith("blobs/sha256/")]) == 2 + 2 + 3


def test_write_missing_layer_writes_nothing(source: ContentStore, busybox: StoredImage) -> None:
    source.delete(busybox.manifest.layers[0].digest)
    output = io.BytesIO()
    with pytest.raises(ArchiveError) as caught:
        archive.write(output, [ArchiveImage(busybox.manifest_digest)], source)
    assert busybox.manifest.layers[0].digest in str(caught.value)
    assert output.getvalue() == b""


def test_write_missing_manifest(source: ContentStore) -> None:
    missing = sha256(b"no such manifest")
    with pytest.raises(ArchiveError, match=missing):
        archive.write(io.BytesIO(), [ArchiveImage(missing)], source)


def test_write_to_unseekable_stream(source: ContentStore, busybox: StoredImage, tmp_path: Path) -> None:
    class WriteOnly(io.RawIOBase):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            self.chunks.append(bytes(data))
            return len(data)

    sink = WriteOnly()
    archive.write(sink, [ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source)  # type: ignore[arg-type]
    assert b"".join(sink.chunks) == save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source)


# ---------------------------------------------------------------------------
# Reading what write() produced


def test_round_trip(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    tags = [parse("busybox:1.36"), parse("localhost:5000/a/b:t")]
    images = load(save([ArchiveImage(busybox.manifest_digest, tags)], source), target)

    assert len(images) == 1
    image = images[0]
    assert image.manifest_digest == busybox.manifest_digest
    assert image.manifest == busybox.manifest
    assert image.config_digest == busybox.manifest.config.digest
    assert image.layers == busybox.manifest.layers
    assert image.tags == tags
    assert image.ref_names == []
    assert sorted(target.digests()) == sorted(source.digests())


def test_round_trip_docker_media_types(source: ContentStore, target: ContentStore) -> None:
    stored = store_image(source, [layer_tar({"a": b"a"})], docker_types=True)
    images = load(save([ArchiveImage(stored.manifest_digest, [parse("app:v1")])], source), target)
    assert images[0].manifest.media_type == mediatypes.DOCKER_MANIFEST
    assert images[0].manifest_digest == stored.manifest_digest
    assert target.read(stored.manifest_digest) == source.read(stored.manifest_digest)


def test_round_trip_several_images(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    other = store_image(source, [layer_tar({"x": b"x"})], compressed=False)
    data = save(
        [
            ArchiveImage(busybox.manifest_digest, [parse("busybox")]),
            ArchiveImage(other.manifest_digest, [parse("other:1"), parse("other:2")]),
        ],
        source,
    )
    images = load(data, target)
    assert [image.manifest_digest for image in images] == [busybox.manifest_digest, other.manifest_digest]
    assert images[1].tags == [parse("other:1"), parse("other:2")]


def test_read_from_unseekable_gzip_stream(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    class ReadOnly(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.source = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            chunk = self.source.read(min(len(buffer), 1000))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    data = gzipped(save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source))
    images = archive.read(ReadOnly(data), target)  # type: ignore[arg-type]
    assert images[0].manifest_digest == busybox.manifest_digest


@pytest.mark.parametrize("compression", ["zstd", "bz2", "xz"])
def test_read_compressed_archive(
    source: ContentStore, target: ContentStore, busybox: StoredImage, compression: str
) -> None:
    data = save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source)
    if compression == "zstd":
        import zstandard

        compressed = zstandard.ZstdCompressor().compress(data)
    elif compression == "bz2":
        import bz2

        compressed = bz2.compress(data)
    else:
        import lzma

        compressed = lzma.compress(data)
    images = load(compressed, target)
    assert images[0].manifest_digest == busybox.manifest_digest


def test_read_twice_adds_nothing(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    data = save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source)
    first = load(data, target)
    before = {digest: target.path(digest).stat().st_ino for digest in target.digests()}
    second = load(data, target)
    assert second == first
    assert {digest: target.path(digest).stat().st_ino for digest in target.digests()} == before


def test_read_uses_tmp_dir_and_removes_it(
    source: ContentStore, target: ContentStore, busybox: StoredImage, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    load(save([ArchiveImage(busybox.manifest_digest)], source), target, tmp_dir=work)
    assert work.is_dir()
    assert list(work.iterdir()) == []


# ---------------------------------------------------------------------------
# Legacy docker-archive and plain OCI layouts, built by hand


def legacy_archive(layers: list[bytes], config_layers: list[bytes] | None = None, repo_tags: Any = ("app:legacy",)) -> bytes:
    """Return a docker-archive as Docker before 25 wrote it: ``<id>/layer.tar`` and ``<id>.json``.

    A layer repeated in ``layers`` is stored once and linked by a relative symlink, as Docker does.
    """
    config_layers = layers if config_layers is None else config_layers
    diff_ids = []
    for layer in config_layers:
        uncompressed = gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer
        diff_ids.append(sha256(uncompressed))
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config_data = json.dumps(config).encode()
    config_name = f"{hashlib.sha256(config_data).hexdigest()}.json"
    members = {config_name: config_data}
    links: dict[str, str] = {}
    paths: list[str] = []
    first_path: dict[bytes, str] = {}
    for number, layer in enumerate(layers):
        directory = hashlib.sha256(f"layer {number}".encode()).hexdigest()
        path = f"{directory}/layer.tar"
        if layer in first_path:
            links[path] = f"../{first_path[layer]}"
        else:
            members[path] = layer
            first_path[layer] = path
        paths.append(path)
    entry = {"Config": config_name, "RepoTags": list(repo_tags) if repo_tags is not None else None, "Layers": paths}
    members["manifest.json"] = json.dumps([entry]).encode()
    members["repositories"] = b"{}"
    return tar_of(members, links)


def test_read_legacy_docker_archive(target: ContentStore) -> None:
    base = layer_tar({"bin/sh": b"#!shell"})
    compressed = gzipped(layer_tar({"etc/motd": b"hi"}))
    data = legacy_archive([base, compressed, base])
    images = load(data, target)

    assert len(images) == 1
    image = images[0]
    assert image.tags == [parse("app:legacy")]
    assert [layer.media_type for layer in image.layers] == [
        mediatypes.OCI_LAYER_TAR,
        mediatypes.OCI_LAYER_GZIP,
        mediatypes.OCI_LAYER_TAR,
    ]
    assert [layer.digest for layer in image.layers] == [sha256(base), sha256(compressed), sha256(base)]
    # The synthesised manifest is stored and parses back to what read() returned.
    assert parse_manifest(target.read(image.manifest_digest)) == image.manifest
    assert sha256(target.read(image.manifest_digest)) == image.manifest_digest
    assert image.manifest.config.digest == image.config_digest
    manifest_document = json.loads(target.read(image.manifest_digest))
    assert list(schema_validator("image-manifest-schema.json").iter_errors(manifest_document)) == []
    assert target.read(sha256(compressed)) == compressed
    assert len(list(target.digests())) == 4


def test_read_legacy_uncompressed_layer_checked_against_diff_id(target: ContentStore) -> None:
    data = legacy_archive([layer_tar({"a": b"a"})], config_layers=[layer_tar({"a": b"b"})])
    with pytest.raises(DigestMismatch, match="layer.tar"):
        load(data, target)
    assert list(target.digests()) == []


def test_read_legacy_layer_count_mismatch(target: ContentStore) -> None:
    data = legacy_archive([layer_tar({"a": b"a"})], config_layers=[])
    with pytest.raises(ArchiveError, match="lists 1 layers but its config"):
        load(data, target)


def test_read_legacy_untagged(target: ContentStore) -> None:
    images = load(legacy_archive([layer_tar({"a": b"a"})], repo_tags=None), target)
    assert images[0].tags == []


def test_read_legacy_bad_repo_tag(target: ContentStore) -> None:
    with pytest.raises(ArchiveError, match="RepoTags"):
        load(legacy_archive([layer_tar({"a": b"a"})], repo_tags=["Bad:tag"]), target)
    assert list(target.digests()) == []


def oci_layout(
    source: ContentStore, manifests: list[str], index_entries: list[dict[str, Any]], extra: dict[str, bytes] | None = None
) -> bytes:
    """Return a plain OCI layout tar holding the blobs of ``manifests`` (and any nested indexes in ``extra``)."""
    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    for manifest_digest in manifests:
        manifest = parse_manifest(source.read(manifest_digest))
        for digest in [manifest_digest, manifest.config.digest] + [layer.digest for layer in manifest.layers]:
            members[f"blobs/sha256/{digest.removeprefix('sha256:')}"] = source.read(digest)
    members.update(extra or {})
    members["index.json"] = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": index_entries}
    ).encode()
    return tar_of(members)


def entry_for(
    stored: StoredImage, annotations: dict[str, str] | None = None, platform: dict[str, str] | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "mediaType": stored.manifest.media_type,
        "digest": stored.manifest_digest,
        "size": len(stored.manifest.encode()),
    }
    if annotations:
        entry["annotations"] = annotations
    if platform:
        entry["platform"] = platform
    return entry


@pytest.mark.parametrize(
    ("annotations", "tags", "ref_names"),
    [
        ({"org.opencontainers.image.ref.name": "v1"}, [], ["v1"]),
        ({"org.opencontainers.image.ref.name": "registry.example/app:v1"}, ["registry.example/app:v1"], []),
        ({"io.containerd.image.name": "app:2", "org.opencontainers.image.ref.name": "2"}, ["app:2"], []),
        ({}, [], []),
    ],
)
def test_read_oci_layout_names(
    source: ContentStore,
    target: ContentStore,
    busybox: StoredImage,
    annotations: dict[str, str],
    tags: list[str],
    ref_names: list[str],
) -> None:
    data = oci_layout(source, [busybox.manifest_digest], [entry_for(busybox, annotations)])
    images = load(data, target)
    assert images[0].tags == [parse(tag) for tag in tags]
    assert images[0].ref_names == ref_names


def test_read_oci_layout_bad_name(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    entry = entry_for(busybox, {"io.containerd.image.name": "UPPER/case"})
    with pytest.raises(ArchiveError, match="io.containerd.image.name"):
        load(oci_layout(source, [busybox.manifest_digest], [entry]), target)


def nested_index(images: list[tuple[StoredImage, dict[str, str]]]) -> tuple[bytes, dict[str, Any]]:
    """Return an OCI index over ``images`` (with their platforms) and the descriptor that names it."""
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [entry_for(stored, platform=platform) for stored, platform in images],
    }
    data = json.dumps(document).encode()
    return data, {"mediaType": mediatypes.OCI_INDEX, "digest": sha256(data), "size": len(data)}


def test_read_nested_index_selects_platform(source: ContentStore, target: ContentStore) -> None:
    amd64 = store_image(source, [layer_tar({"p": b"amd64"})], architecture="amd64")
    arm64 = store_image(source, [layer_tar({"p": b"arm64"})], architecture="arm64")
    index_data, descriptor = nested_index(
        [(amd64, {"os": "linux", "architecture": "amd64"}), (arm64, {"os": "linux", "architecture": "arm64"})]
    )
    descriptor["annotations"] = {"io.containerd.image.name": "docker.io/library/multi:latest"}
    extra = {f"blobs/sha256/{descriptor['digest'].removeprefix('sha256:')}": index_data}
    data = oci_layout(source, [amd64.manifest_digest, arm64.manifest_digest], [descriptor], extra)

    images = load(data, target, platform=Platform("linux", "arm64"))
    assert [image.manifest_digest for image in images] == [arm64.manifest_digest]
    assert images[0].tags == [parse("multi")]
    # Only the chosen platform's blobs are stored.
    assert not target.has(amd64.manifest_digest)
    assert not target.has(amd64.manifest.layers[0].digest)


def test_read_nested_index_with_one_platform_present(source: ContentStore, target: ContentStore) -> None:
    amd64 = store_image(source, [layer_tar({"p": b"amd64"})], architecture="amd64")
    arm64 = store_image(source, [layer_tar({"p": b"arm64"})], architecture="arm64")
    index_data, descriptor = nested_index(
        [(amd64, {"os": "linux", "architecture": "amd64"}), (arm64, {"os": "linux", "architecture": "arm64"})]
    )
    extra = {f"blobs/sha256/{descriptor['digest'].removeprefix('sha256:')}": index_data}
    data = oci_layout(source, [arm64.manifest_digest], [descriptor], extra)
    images = load(data, target, platform=Platform("linux", "amd64"))
    assert [image.manifest_digest for image in images] == [arm64.manifest_digest]


def test_read_nested_index_no_matching_platform(source: ContentStore, target: ContentStore) -> None:
    amd64 = store_image(source, [layer_tar({"p": b"amd64"})], architecture="amd64")
    arm64 = store_image(source, [layer_tar({"p": b"arm64"})], architecture="arm64")
    index_data, descriptor = nested_index(
        [(amd64, {"os": "linux", "architecture": "amd64"}), (arm64, {"os": "linux", "architecture": "arm64"})]
    )
    extra = {f"blobs/sha256/{descriptor['digest'].removeprefix('sha256:')}": index_data}
    data = oci_layout(source, [amd64.manifest_digest, arm64.manifest_digest], [descriptor], extra)
    with pytest.raises(NoMatchingPlatform, match="linux/amd64, linux/arm64"):
        load(data, target, platform=Platform("linux", "s390x"))
    assert list(target.digests()) == []


def test_read_combined_merges_repo_tags(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    members = members_of(save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source))
    docker_manifest = json.loads(members["manifest.json"])
    docker_manifest[0]["RepoTags"].append("extra:tag")
    members["manifest.json"] = json.dumps(docker_manifest).encode()
    images = load(tar_of(members), target)
    assert images[0].tags == [parse("busybox"), parse("extra:tag")]


def test_read_docker_manifest_only_with_blob_paths(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    # What Docker 25+ reads when index.json is removed: the docker-archive half alone.
    members = members_of(save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source))
    del members["index.json"]
    images = load(tar_of(members), target)
    assert images[0].config_digest == busybox.manifest.config.digest
    assert [layer.digest for layer in images[0].layers] == [layer.digest for layer in busybox.manifest.layers]
    assert images[0].tags == [parse("busybox")]


# ---------------------------------------------------------------------------
# Malformed archives leave nothing in the store


def test_read_rejects_archive_without_index_or_manifest(target: ContentStore) -> None:
    with pytest.raises(ArchiveError, match="neither manifest.json nor index.json"):
        load(tar_of({"repositories": b"{}", "blobs/sha256/00": b"x"}), target)
    assert list(target.digests()) == []


def test_read_rejects_non_tar(target: ContentStore) -> None:
    with pytest.raises(ArchiveError, match="not a valid tar archive"):
        load(b"this is not a tar archive" * 100, target)


@pytest.mark.parametrize(
    "magic",
    [b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh9", b"\xfd7zXZ\x00"],
    ids=["gzip", "zstd", "bzip2", "xz"],
)
def test_read_rejects_corrupt_compression(target: ContentStore, magic: bytes) -> None:
    with pytest.raises(ArchiveError):
        load(magic + b"garbage" * 100, target)


def test_read_rejects_corrupt_config(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    members = members_of(save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source))
    config_member = f"blobs/sha256/{busybox.manifest.config.digest.removeprefix('sha256:')}"
    members[config_member] = members[config_member].replace(b'"sh"', b'"ls"')
    del members["manifest.json"]
    with pytest.raises(DigestMismatch) as caught:
        load(tar_of(members), target)
    assert config_member in str(caught.value)
    assert list(target.digests()) == []


def test_read_rejects_corrupt_layer_and_rolls_back(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    members = members_of(save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source))
    layer_member = f"blobs/sha256/{busybox.manifest.layers[1].digest.removeprefix('sha256:')}"
    members[layer_member] = gzipped(layer_tar({"etc/motd": b"HELLO\n"}))
    with pytest.raises(DigestMismatch) as caught:
        load(tar_of(members), target)
    assert layer_member in str(caught.value)
    # The first layer was stored before the second failed, and is gone again.
    assert list(target.digests()) == []


def test_failed_read_keeps_blobs_that_were_already_stored(
    source: ContentStore, target: ContentStore, busybox: StoredImage
) -> None:
    load(save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source), target)
    before = sorted(target.digests())
    # A second image shares busybox's first layer and adds two of its own, the last one corrupt.
    other = store_image(
        source, [layer_tar({"bin/sh": b"#!shell"}), layer_tar({"new": b"layer"}), layer_tar({"last": b"layer"})]
    )
    members = members_of(
        save(
            [ArchiveImage(busybox.manifest_digest, [parse("busybox")]), ArchiveImage(other.manifest_digest, [parse("other")])],
            source,
        )
    )
    layer_member = f"blobs/sha256/{other.manifest.layers[2].digest.removeprefix('sha256:')}"
    members[layer_member] = gzipped(layer_tar({"last": b"LAYER"}))
    del members["manifest.json"]

    with pytest.raises(DigestMismatch, match=layer_member):
        load(tar_of(members), target)
    assert sorted(target.digests()) == before


@pytest.mark.parametrize(
    ("members", "links", "message"),
    [
        ({"../escape": b"x", "manifest.json": b"[]"}, {}, "contains '..'"),
        ({"blobs/../../escape": b"x", "manifest.json": b"[]"}, {}, "contains '..'"),
        ({"/etc/passwd": b"x", "manifest.json": b"[]"}, {}, "absolute path"),
        ({"manifest.json": b"[]"}, {"link": "../../outside"}, "points outside the archive"),
        ({"manifest.json": b"[]"}, {"link": "/etc/passwd"}, "absolute target"),
    ],
)
def test_read_rejects_unsafe_member(
    target: ContentStore, members: dict[str, bytes], links: dict[str, str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ArchiveError, match=message):
        load(tar_of(members, links), target, tmp_dir=tmp_path / "work")
    assert list(target.digests()) == []
    assert not (tmp_path / "escape").exists()
    assert list((tmp_path / "work").iterdir()) == []


def test_read_rejects_device_member(target: ContentStore) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("dev")
        info.type = tarfile.CHRTYPE
        tar.addfile(info)
    with pytest.raises(ArchiveError, match="not a file, directory or link"):
        load(buffer.getvalue(), target)


def test_read_rejects_manifest_json_path_with_dotdot(target: ContentStore) -> None:
    manifest_json = json.dumps([{"Config": "../config.json", "RepoTags": None, "Layers": []}]).encode()
    with pytest.raises(ArchiveError, match="contains '..'"):
        load(tar_of({"manifest.json": manifest_json}), target)


def test_read_rejects_missing_layer(source: ContentStore, target: ContentStore, busybox: StoredImage) -> None:
    members = members_of(save([ArchiveImage(busybox.manifest_digest, [parse("busybox")])], source))
    del members[f"blobs/sha256/{busybox.manifest.layers[0].digest.removeprefix('sha256:')}"]
    del members["manifest.json"]
    with pytest.raises(ArchiveError, match="is missing from the archive"):
        load(tar_of(members), target)
    assert list(target.digests()) == []


def test_read_rejects_symlink_loop(target: ContentStore) -> None:
    manifest_json = json.dumps([{"Config": "a", "RepoTags": None, "Layers": []}]).encode()
    with pytest.raises(ArchiveError, match="too many levels of links"):
        load(tar_of({"manifest.json": manifest_json}, {"a": "b", "b": "a"}), target)


# ---------------------------------------------------------------------------
# Independent checks with skopeo


def run_skopeo(*arguments: str, tmp_path: Path) -> str:
    assert SKOPEO is not None
    result = subprocess.run(
        [SKOPEO, "--insecure-policy", "--tmpdir", str(tmp_path), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_skopeo
def test_skopeo_reads_written_archive_both_ways(source: ContentStore, busybox: StoredImage, tmp_path: Path) -> None:
    path = tmp_path / "saved.tar"
    path.write_bytes(save([ArchiveImage(busybox.manifest_digest, [parse("busybox:1.36")])], source))

    raw = run_skopeo("inspect", "--raw", f"oci-archive:{path}", tmp_path=tmp_path)
    assert sha256(raw.encode()) == busybox.manifest_digest

    inspected = json.loads(run_skopeo("inspect", "--config", f"docker-archive:{path}", tmp_path=tmp_path))
    assert inspected["rootfs"]["diff_ids"] == json.loads(busybox.config_data)["rootfs"]["diff_ids"]


@needs_skopeo
def test_read_skopeo_docker_archive(source: ContentStore, target: ContentStore, busybox: StoredImage, tmp_path: Path) -> None:
    saved = tmp_path / "saved.tar"
    saved.write_bytes(save([ArchiveImage(busybox.manifest_digest)], source))
    legacy = tmp_path / "legacy.tar"
    run_skopeo("copy", f"oci-archive:{saved}", f"docker-archive:{legacy}:example/app:1", tmp_path=tmp_path)

    with open(legacy, "rb") as stream:
        images = archive.read(stream, target)
    assert len(images) == 1
    assert images[0].tags == [parse("example/app:1")]
    assert images[0].config_digest == busybox.manifest.config.digest
    # skopeo stores the layers uncompressed, so their digests are the diff_ids.
    assert [layer.digest for layer in images[0].layers] == json.loads(busybox.config_data)["rootfs"]["diff_ids"]


@needs_skopeo
def test_read_skopeo_oci_layout(source: ContentStore, target: ContentStore, busybox: StoredImage, tmp_path: Path) -> None:
    saved = tmp_path / "saved.tar"
    saved.write_bytes(save([ArchiveImage(busybox.manifest_digest)], source))
    layout = tmp_path / "layout"
    run_skopeo("copy", f"oci-archive:{saved}", f"oci:{layout}:v2", tmp_path=tmp_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(layout, arcname=".")

    images = load(buffer.getvalue(), target)
    assert [image.manifest_digest for image in images] == [busybox.manifest_digest]
    assert images[0].ref_names == ["v2"]
    assert images[0].tags == []

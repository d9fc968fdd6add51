"""Offline test images, built with the standard library and pushed with skopeo.

The builders here use no dockyard code, so that the images they make are an
independent check of dockyard's own image handling. Each image is written as
an OCI image layout and pushed to a registry on loopback with
``skopeo copy --preserve-digests``, so the digests computed here are the
digests the registry serves.

Images (repository ``test/<name>``, tag ``latest``):

- ``busybox``: one gzip layer with Debian's static busybox, a symlink per
  applet, and /etc/passwd and /etc/group; Cmd ``["sh"]``.
- ``busybox-docker``: the same layer and config under Docker's schema 2 media
  types.
- ``layered``: the busybox layer plus two layers full of hard cases for layer
  unpacking (whiteouts, opaque directories, type changes, hardlinks, a file
  capability). ``LAYERED_EXPECTED`` lists the resulting filesystem.
- ``multiarch``: an OCI index with linux/amd64, linux/arm64 and linux/arm/v7
  images, each with its own config and one layer whose ``/platform.txt``
  contains the platform and a newline (``"linux/arm/v7\n"``).
- ``zstd`` and ``plain``: the busybox layer plus a second layer with
  ``/etc/image-name`` (``"zstd\n"``, ``"plain\n"``), both layers
  zstd-compressed or uncompressed.

The session fixture ``test_images`` builds and pushes all of them once per
session and returns an ``ImageSet``. ``python -m tests.support.images push
HOST`` does the same for scripts (the demo and the benchmark).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import platform
import shutil
import struct
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pytest

from tests.support.registry import Registry

log = logging.getLogger(__name__)

BUSYBOX_BINARY = Path("/bin/busybox")

# Every member and config carries this fixed time, so that a rebuild on the
# same machine gives the same digests.
EPOCH = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"

# security.capability value granting cap_net_raw (bit 13) as permitted and
# effective: struct vfs_cap_data, revision 2 (0x02000000) with the effective
# flag (0x1), then permitted and inheritable words for caps 0-31 and 32-63.
CAP_NET_RAW_XATTR = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)

MULTIARCH_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")

IMAGE_NAMES = ("busybox", "busybox-docker", "layered", "multiarch", "zstd", "plain")


# ---------------------------------------------------------------------------
# Tar members and layers


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


@dataclass
class Member:
    """One tar member: the header and, for a regular file, its content."""

    info: tarfile.TarInfo
    data: bytes | None = None


def directory(name: str, mode: int = 0o755) -> Member:
    return Member(_info(name, tarfile.DIRTYPE, mode))


def regular(name: str, data: bytes, mode: int = 0o644, xattrs: dict[str, bytes] | None = None) -> Member:
    info = _info(name, tarfile.REGTYPE, mode)
    info.size = len(data)
    if xattrs:
        # PAX records are text in tarfile's API. surrogateescape round-trips
        # any bytes, and tarfile adds hdrcharset=BINARY when a value is not
        # valid UTF-8.
        info.pax_headers = {
            f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape") for key, value in xattrs.items()
        }
    return Member(info, data)


def symlink(name: str, target: str) -> Member:
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return Member(info)


def hardlink(name: str, target: str) -> Member:
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return Member(info)


def whiteout(directory_path: str, name: str) -> Member:
    """Return the whiteout member that deletes ``name`` of a lower layer."""
    prefix = f"{directory_path}/" if directory_path else ""
    return regular(f"{prefix}.wh.{name}", b"", mode=0o600)


def opaque_marker(directory_path: str) -> Member:
    return regular(f"{directory_path}/.wh..wh..opq", b"", mode=0o600)


def tar_bytes(members: Iterable[Member]) -> bytes:
    """Write ``members`` in the given order as an uncompressed PAX tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            archive.addfile(member.info, io.BytesIO(member.data) if member.data is not None else None)
    return buffer.getvalue()


def compress(data: bytes, media_type: str) -> bytes:
    if media_type in (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP):
        # mtime=0 keeps the gzip header, and so the digest, stable.
        return gzip.compress(data, compresslevel=6, mtime=0)
    if media_type == OCI_LAYER_ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    if media_type == OCI_LAYER_TAR:
        return data
    raise ValueError(f"no compression known for layer media type {media_type}")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# The busybox root filesystem


def busybox_applets() -> list[str]:
    """Return the applet paths of the host's busybox, such as ``bin/sh``, without ``bin/busybox``."""
    if not BUSYBOX_BINARY.exists():
        raise FileNotFoundError(f"{BUSYBOX_BINARY} is missing: install Debian's busybox-static package")
    output = subprocess.run(
        [str(BUSYBOX_BINARY), "--list-full"], check=True, capture_output=True, text=True
    ).stdout
    return sorted(path for path in output.split() if path != "bin/busybox")


def busybox_members() -> list[Member]:
    """Return the members of a busybox root filesystem, parents before children."""
    applets = busybox_applets()
    top_directories = ["bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var"]
    members = [directory(name, 0o700 if name == "root" else 0o755) for name in top_directories]
    members.append(directory("tmp", 0o1777))
    members.append(regular("bin/busybox", BUSYBOX_BINARY.read_bytes(), mode=0o755))
    members.extend(symlink(path, "/bin/busybox") for path in applets)
    members.append(regular("etc/passwd", PASSWD))
    members.append(regular("etc/group", GROUP))
    return members


def host_architecture() -> tuple[str, str | None]:
    """Return the host's OCI architecture and variant, such as ``("amd64", None)``."""
    machine = platform.machine()
    known = {
        "x86_64": ("amd64", None),
        "aarch64": ("arm64", None),
        "armv7l": ("arm", "v7"),
        "ppc64le": ("ppc64le", None),
        "s390x": ("s390x", None),
        "riscv64": ("riscv64", None),
    }
    if machine not in known:
        raise ValueError(f"no OCI architecture known for machine type {machine}")
    return known[machine]


# ---------------------------------------------------------------------------
# OCI image layouts


@dataclass
class LayerBlob:
    media_type: str
    blob: bytes
    diff_id: str

    @property
    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": digest_of(self.blob), "size": len(self.blob)}


def make_layer(members: Iterable[Member], media_type: str) -> LayerBlob:
    tar = tar_bytes(members)
    return LayerBlob(media_type, compress(tar, media_type), digest_of(tar))


@dataclass
class BuiltImage:
    """One image as written to a layout: the digests a test can compare against."""

    name: str
    media_type: str
    digest: str                 # of the manifest, or of the index for multiarch
    config_digest: str | None   # None for an index
    layer_digests: list[str]
    diff_ids: list[str]
    # For an index: "os/arch[/variant]" to (manifest digest, config digest).
    platforms: dict[str, tuple[str, str]] = field(default_factory=dict)


class Layout:
    """An OCI image layout directory being written: ``oci-layout``, ``index.json``, ``blobs/sha256``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def put(self, data: bytes) -> str:
        digest = digest_of(data)
        blob_path = self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")
        if not blob_path.exists():
            blob_path.write_bytes(data)
        return digest

    def put_json(self, document: dict) -> tuple[str, int]:
        data = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
        return self.put(data), len(data)

    def tag(self, descriptor: dict, tag: str = "latest") -> None:
        entry = dict(descriptor)
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        (self.path / "index.json").write_text(json.dumps(index, indent=2))


class DirLayout(Layout):
    """A skopeo ``dir:`` directory: blobs named by hex digest and one ``manifest.json``.

    skopeo's OCI layout reader accepts only OCI media types in ``index.json``, so
    the image with Docker's media types is written in this format instead.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        (path / "version").write_text("Directory Transport Version: 1.1\n")

    def put(self, data: bytes) -> str:
        digest = digest_of(data)
        blob_path = self.path / digest.removeprefix("sha256:")
        if not blob_path.exists():
            blob_path.write_bytes(data)
        return digest

    def tag(self, descriptor: dict, tag: str = "latest") -> None:
        manifest = self.path / descriptor["digest"].removeprefix("sha256:")
        shutil.copyfile(manifest, self.path / "manifest.json")


def image_config(architecture: str, variant: str | None, diff_ids: list[str], cmd: list[str], comment: str) -> dict:
    config: dict = {
        "created": CREATED,
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": [DEFAULT_PATH], "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": comment} for _ in diff_ids],
    }
    if variant:
        config["variant"] = variant
    return config


def write_image(
    layout: Layout,
    name: str,
    layers: list[LayerBlob],
    config: dict,
    docker_types: bool = False,
) -> tuple[BuiltImage, dict]:
    """Write the blobs, config and manifest of one image; return it and its manifest descriptor."""
    for layer in layers:
        layout.put(layer.blob)
    config_digest, config_size = layout.put_json(config)
    manifest_type = DOCKER_MANIFEST if docker_types else OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": DOCKER_CONFIG if docker_types else OCI_CONFIG,
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [layer.descriptor for layer in layers],
    }
    manifest_digest, manifest_size = layout.put_json(manifest)
    built = BuiltImage(
        name=name,
        media_type=manifest_type,
        digest=manifest_digest,
        config_digest=config_digest,
        layer_digests=[digest_of(layer.blob) for layer in layers],
        diff_ids=[layer.diff_id for layer in layers],
    )
    descriptor = {"mediaType": manifest_type, "digest": manifest_digest, "size": manifest_size}
    return built, descriptor


# ---------------------------------------------------------------------------
# The images


class LayerCache:
    """Builds the busybox layer once per media type; it is the base of most images."""

    def __init__(self) -> None:
        self._members: list[Member] | None = None
        self._layers: dict[str, LayerBlob] = {}

    def busybox(self, media_type: str) -> LayerBlob:
        if media_type not in self._layers:
            if self._members is None:
                self._members = busybox_members()
            self._layers[media_type] = make_layer(self._members, media_type)
        return self._layers[media_type]


def build_busybox(path: Path, cache: LayerCache, docker_types: bool = False) -> BuiltImage:
    """Build busybox as an OCI layout, or with Docker's media types as a skopeo ``dir:`` directory."""
    layout: Layout | DirLayout = DirLayout(path) if docker_types else Layout(path)
    layer = cache.busybox(DOCKER_LAYER_GZIP if docker_types else OCI_LAYER_GZIP)
    architecture, variant = host_architecture()
    config = image_config(architecture, variant, [layer.diff_id], ["sh"], "busybox root filesystem")
    name = "busybox-docker" if docker_types else "busybox"
    built, descriptor = write_image(layout, name, [layer], config, docker_types)
    layout.tag(descriptor)
    return built


def build_with_extra_layer(path: Path, cache: LayerCache, name: str, media_type: str) -> BuiltImage:
    """Build busybox plus a layer with ``/etc/image-name``, both in ``media_type``."""
    layout = Layout(path)
    base = cache.busybox(media_type)
    extra = make_layer([directory("etc"), regular("etc/image-name", f"{name}\n".encode())], media_type)
    architecture, variant = host_architecture()
    config = image_config(architecture, variant, [base.diff_id, extra.diff_id], ["sh"], f"{name} layers")
    built, descriptor = write_image(layout, name, [base, extra], config)
    layout.tag(descriptor)
    return built


def build_multiarch(path: Path) -> BuiltImage:
    layout = Layout(path)
    entries = []
    platforms: dict[str, tuple[str, str]] = {}
    for platform_text in MULTIARCH_PLATFORMS:
        _, architecture, *rest = platform_text.split("/")
        variant = rest[0] if rest else None
        layer = make_layer([regular("platform.txt", f"{platform_text}\n".encode())], OCI_LAYER_GZIP)
        config = image_config(architecture, variant, [layer.diff_id], ["cat", "/platform.txt"], platform_text)
        built, descriptor = write_image(layout, f"multiarch {platform_text}", [layer], config)
        descriptor["platform"] = {"os": "linux", "architecture": architecture}
        if variant:
            descriptor["platform"]["variant"] = variant
        entries.append(descriptor)
        assert built.config_digest is not None
        platforms[platform_text] = (built.digest, built.config_digest)

    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    index_digest, index_size = layout.put_json(index)
    layout.tag({"mediaType": OCI_INDEX, "digest": index_digest, "size": index_size})
    return BuiltImage(
        name="multiarch",
        media_type=OCI_INDEX,
        digest=index_digest,
        config_digest=None,
        layer_digests=[],
        diff_ids=[],
        platforms=platforms,
    )


# ---------------------------------------------------------------------------
# The layered image: hard cases for layer unpacking

# Layer 2 ("seed") fills directories that layer 3 ("changes") then modifies.
# It starts with a "./" member, as layers from some tools do.
LAYERED_SEED = [
    directory("."),
    directory("data"),
    regular("data/keep.txt", b"keep\n"),
    regular("data/gone-before.txt", b"deleted by a whiteout placed before its siblings\n"),
    regular("data/gone-after.txt", b"deleted by a whiteout placed after its siblings\n"),
    directory("data/gone-dir"),
    regular("data/gone-dir/inner.txt", b"deleted with its directory\n"),
    directory("opaque"),
    regular("opaque/old.txt", b"hidden by the opaque marker\n"),
    directory("opaque/sub"),
    regular("opaque/sub/old.txt", b"hidden by the opaque marker\n"),
    directory("dir-to-file"),
    regular("dir-to-file/child.txt", b"gone when the directory becomes a file\n"),
    regular("file-to-dir", b"a file that becomes a directory\n"),
    regular("lower-target.txt", b"content of a lower-layer file\n"),
]

# Whiteouts come both before and after their siblings, and the opaque marker
# after the directory's new file: per the OCI image spec a whiteout applies
# only to lower layers, so entries of this same layer must survive it.
LAYERED_CHANGES = [
    directory("data"),
    whiteout("data", "gone-before.txt"),
    regular("data/added.txt", b"added\n"),
    regular("data/zz-added.txt", b"added last\n"),
    whiteout("data", "gone-after.txt"),
    whiteout("data", "gone-dir"),
    directory("opaque"),
    regular("opaque/new.txt", b"new in the opaque directory\n"),
    opaque_marker("opaque"),
    regular("dir-to-file", b"a directory that became a file\n"),
    directory("file-to-dir"),
    regular("file-to-dir/child.txt", b"inside the new directory\n"),
    directory("links"),
    regular("links/original.txt", b"linked within one layer\n"),
    hardlink("links/same-layer.txt", "links/original.txt"),
    hardlink("links/to-lower.txt", "lower-target.txt"),
    directory("caps"),
    regular("caps/netraw", b"#!/bin/sh\necho netraw\n", mode=0o755, xattrs={"security.capability": CAP_NET_RAW_XATTR}),
    directory("usr"),
    directory("usr/bin"),
    whiteout("usr/bin", "wget"),
]


@dataclass(frozen=True)
class LayeredExpected:
    """The merged filesystem of the ``layered`` image, as paths relative to its root."""

    files: dict[str, bytes]                 # regular files and their content
    directories: tuple[str, ...]
    absent: tuple[str, ...]                 # must not exist, not even as a whiteout
    hardlinks: tuple[tuple[str, str], ...]  # (path, path): same content; same inode within one snapshot
    xattrs: dict[str, dict[str, bytes]]     # path to {xattr name: value}
    modes: dict[str, int]                   # permission bits of selected files


LAYERED_EXPECTED = LayeredExpected(
    files={
        "data/keep.txt": b"keep\n",
        "data/added.txt": b"added\n",
        "data/zz-added.txt": b"added last\n",
        "opaque/new.txt": b"new in the opaque directory\n",
        "dir-to-file": b"a directory that became a file\n",
        "file-to-dir/child.txt": b"inside the new directory\n",
        "lower-target.txt": b"content of a lower-layer file\n",
        "links/original.txt": b"linked within one layer\n",
        "links/same-layer.txt": b"linked within one layer\n",
        "links/to-lower.txt": b"content of a lower-layer file\n",
        "caps/netraw": b"#!/bin/sh\necho netraw\n",
        "etc/passwd": PASSWD,
    },
    directories=("data", "opaque", "file-to-dir", "links", "caps", "bin", "etc", "tmp"),
    absent=(
        "data/gone-before.txt",
        "data/gone-after.txt",
        "data/gone-dir",
        "data/.wh.gone-before.txt",
        "data/.wh.gone-after.txt",
        "data/.wh.gone-dir",
        "opaque/old.txt",
        "opaque/sub",
        "opaque/.wh..wh..opq",
        "dir-to-file/child.txt",
        "usr/bin/wget",
        "usr/bin/.wh.wget",
    ),
    hardlinks=(("links/original.txt", "links/same-layer.txt"),),
    xattrs={"caps/netraw": {"security.capability": CAP_NET_RAW_XATTR}},
    modes={"caps/netraw": 0o755, "tmp": 0o1777, "bin/busybox": 0o755},
)


def build_layered(path: Path, cache: LayerCache) -> BuiltImage:
    layout = Layout(path)
    base = cache.busybox(OCI_LAYER_GZIP)
    seed = make_layer(LAYERED_SEED, OCI_LAYER_GZIP)
    changes = make_layer(LAYERED_CHANGES, OCI_LAYER_GZIP)
    architecture, variant = host_architecture()
    diff_ids = [base.diff_id, seed.diff_id, changes.diff_id]
    config = image_config(architecture, variant, diff_ids, ["sh"], "layered test image")
    built, descriptor = write_image(layout, "layered", [base, seed, changes], config)
    layout.tag(descriptor)
    return built


# ---------------------------------------------------------------------------
# Building and pushing


def build_all(workdir: Path) -> dict[str, tuple[Path, BuiltImage]]:
    """Write every test image as an OCI layout under ``workdir``; return name to (layout, image)."""
    cache = LayerCache()
    builders: dict[str, Callable[[Path], BuiltImage]] = {
        "busybox": lambda path: build_busybox(path, cache),
        "busybox-docker": lambda path: build_busybox(path, cache, docker_types=True),
        "layered": lambda path: build_layered(path, cache),
        "multiarch": build_multiarch,
        "zstd": lambda path: build_with_extra_layer(path, cache, "zstd", OCI_LAYER_ZSTD),
        "plain": lambda path: build_with_extra_layer(path, cache, "plain", OCI_LAYER_TAR),
    }
    built = {}
    for name, builder in builders.items():
        path = workdir / name
        built[name] = (path, builder(path))
        log.debug("built test image %s in %s", name, path)
    return built


def push_layout(layout: Path, host: str, name: str, tag: str = "latest", index: bool = False) -> str:
    """Push the OCI layout or skopeo ``dir:`` directory ``layout`` to ``HOST/NAME:TAG`` over plain HTTP."""
    reference = f"{host}/{name}:{tag}"
    command = ["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"]
    if index:
        command.append("--all")
    source = f"oci:{layout}:{tag}" if (layout / "oci-layout").exists() else f"dir:{layout}"
    command += [source, f"docker://{reference}"]
    log.debug("pushing %s: %s", reference, " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy to {reference} failed (exit {result.returncode}): {result.stderr.strip()}")
    return reference


@dataclass
class ImageSet:
    """The pushed test images: full references, what was built, and what to expect inside."""

    host: str
    busybox: str
    busybox_docker: str
    layered: str
    multiarch: str
    zstd: str
    plain: str
    built: dict[str, BuiltImage]
    layouts: dict[str, Path]
    layered_expected: LayeredExpected = LAYERED_EXPECTED
    busybox_applets: tuple[str, ...] = ()

    def multiarch_config(self, platform_text: str) -> str:
        """Return the config digest of the multiarch image for ``os/arch[/variant]``."""
        return self.built["multiarch"].platforms[platform_text][1]


def push_all(built: dict[str, tuple[Path, BuiltImage]], host: str) -> ImageSet:
    references = {}
    for name, (path, image) in built.items():
        references[name] = push_layout(path, host, f"test/{name}", index=image.media_type == OCI_INDEX)
    return ImageSet(
        host=host,
        busybox=references["busybox"],
        busybox_docker=references["busybox-docker"],
        layered=references["layered"],
        multiarch=references["multiarch"],
        zstd=references["zstd"],
        plain=references["plain"],
        built={name: image for name, (_, image) in built.items()},
        layouts={name: path for name, (path, _) in built.items()},
        busybox_applets=tuple(busybox_applets()),
    )


# ---------------------------------------------------------------------------
# The pytest fixture


@pytest.fixture(scope="session")
def test_images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """Build every test image once per session and push it to the session's registry."""
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is missing: run scripts/setup.sh")
    built = build_all(tmp_path_factory.mktemp("image-layouts"))
    return push_all(built, registry.host)


# ---------------------------------------------------------------------------
# Command line, for scripts


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.support.images", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the test images into DIR: OCI layouts, and busybox-docker as a skopeo dir: directory")
    build.add_argument("dir", type=Path)
    push = commands.add_parser("push", help="build the test images and push them to the registry HOST:PORT")
    push.add_argument("host")
    push.add_argument("names", nargs="*", help=f"images to push (default: all of {', '.join(IMAGE_NAMES)})")
    args = parser.parse_args(argv)

    if args.command == "build":
        for name, (path, image) in build_all(args.dir).items():
            print(f"{name}\t{image.digest}\t{path}")
        return 0

    import tempfile

    with tempfile.TemporaryDirectory(prefix="dockyard-images-") as workdir:
        built = build_all(Path(workdir))
        for name in args.names or IMAGE_NAMES:
            if name not in built:
                parser.error(f"unknown image {name}; known: {', '.join(IMAGE_NAMES)}")
            path, image = built[name]
            reference = push_layout(path, args.host, f"test/{name}", index=image.media_type == OCI_INDEX)
            print(f"{reference}\t{image.digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

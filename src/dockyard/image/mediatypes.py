"""Media types of image documents and layers, spelled as the specs spell them.

Sources: the OCI image spec v1.1 (``media-types.md``) and Docker's image
manifest v2 schema 2. Compare media types only for equality with these
constants (or membership in the sets below), never by substring: a type such
as ``…layer.nondistributable.v1.tar+gzip`` contains ``tar+gzip`` too.
"""

from __future__ import annotations

from dockyard.errors import InvalidManifest

# OCI image spec.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
# Deprecated by OCI image spec v1.1, but still found in older images.
OCI_NONDISTRIBUTABLE_LAYER_TAR = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDISTRIBUTABLE_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_NONDISTRIBUTABLE_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# Docker image manifest v2, schema 2.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Uncompressed Docker layers are not in the schema 2 text, but containerd and
# BuildKit write them.
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
# Layers that registries do not store, fetched from the descriptor's ``urls``
# (Windows base layers).
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_TAR = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"

# Docker image manifest v2, schema 1: recognised only to reject it clearly.
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST})

GZIP_LAYER_TYPES = frozenset({
    OCI_LAYER_GZIP,
    OCI_NONDISTRIBUTABLE_LAYER_GZIP,
    DOCKER_LAYER_GZIP,
    DOCKER_FOREIGN_LAYER_GZIP,
})
ZSTD_LAYER_TYPES = frozenset({OCI_LAYER_ZSTD, OCI_NONDISTRIBUTABLE_LAYER_ZSTD})
TAR_LAYER_TYPES = frozenset({
    OCI_LAYER_TAR,
    OCI_NONDISTRIBUTABLE_LAYER_TAR,
    DOCKER_LAYER_TAR,
    DOCKER_FOREIGN_LAYER_TAR,
})
LAYER_TYPES = GZIP_LAYER_TYPES | ZSTD_LAYER_TYPES | TAR_LAYER_TYPES

# Layers that may be missing from registries and archives, because their
# descriptors point elsewhere (``urls``) or their licence forbids copying.
FOREIGN_LAYER_TYPES = frozenset({
    DOCKER_FOREIGN_LAYER_GZIP,
    DOCKER_FOREIGN_LAYER_TAR,
    OCI_NONDISTRIBUTABLE_LAYER_TAR,
    OCI_NONDISTRIBUTABLE_LAYER_GZIP,
    OCI_NONDISTRIBUTABLE_LAYER_ZSTD,
})

# The Accept header for manifest requests, preferred types first.
MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)


def is_manifest(media_type: str | None) -> bool:
    """Tell whether ``media_type`` is a single-platform image manifest."""
    return media_type in MANIFEST_TYPES


def is_index(media_type: str | None) -> bool:
    """Tell whether ``media_type`` is an OCI index or a Docker manifest list."""
    return media_type in INDEX_TYPES


def is_layer(media_type: str | None) -> bool:
    """Tell whether ``media_type`` is a filesystem layer of any compression."""
    return media_type in LAYER_TYPES


def is_foreign_layer(media_type: str | None) -> bool:
    """Tell whether a layer of ``media_type`` may legitimately be absent from a registry or archive."""
    return media_type in FOREIGN_LAYER_TYPES


def layer_compression(media_type: str) -> str | None:
    """Return ``"gzip"``, ``"zstd"`` or None (plain tar) for a layer media type.

    Raises InvalidManifest for a type that is not a known layer type, because
    guessing would hide a wrong descriptor.
    """
    if media_type in GZIP_LAYER_TYPES:
        return "gzip"
    if media_type in ZSTD_LAYER_TYPES:
        return "zstd"
    if media_type in TAR_LAYER_TYPES:
        return None
    raise InvalidManifest(f"unsupported layer media type {media_type!r}")


def essence(content_type: str) -> str:
    """Return an HTTP Content-Type without parameters, lowercased: ``"A/B; charset=x"`` gives ``"a/b"``."""
    return content_type.split(";", 1)[0].strip().lower()

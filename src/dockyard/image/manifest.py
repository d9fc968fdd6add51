"""Image manifests, indexes and configs: Docker schema 2 and OCI image spec v1.

``parse()`` accepts the documents a registry or an archive serves and checks
that the HTTP Content-Type, the document's own ``mediaType`` and its shape
agree before anything reads its fields. Docker schema 1 manifests are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidManifest, NoMatchingPlatform
from dockyard.image import digest as digests
from dockyard.image import mediatypes
from dockyard.image.platform import Platform, from_dict as platform_from_dict, host

# Content types that mean only "some JSON" or "some bytes". Registries and file
# servers send them for manifests, so they do not contradict the document's
# own mediaType.
GENERIC_CONTENT_TYPES = frozenset({"application/json", "application/octet-stream", "text/plain"})

# Annotation that BuildKit puts on index entries holding attestations (SBOM,
# provenance) rather than runnable images; their platform is unknown/unknown.
REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type"
ATTESTATION_MANIFEST = "attestation-manifest"


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a blob is, its digest and size, and optional platform, annotations and URLs."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] | None = None
    urls: list[str] | None = None
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the descriptor as a JSON object with the OCI field names."""
        result: dict[str, Any] = {"mediaType": self.media_type}
        if self.artifact_type:
            result["artifactType"] = self.artifact_type
        result["digest"] = self.digest
        result["size"] = self.size
        if self.urls:
            result["urls"] = list(self.urls)
        if self.annotations:
            result["annotations"] = dict(self.annotations)
        if self.platform is not None:
            result["platform"] = self.platform.to_dict()
        return result


@dataclass(frozen=True)
class Manifest:
    """A single-platform image manifest: one config blob and the layers, bottom first."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as a JSON object with the spec's field names."""
        result: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            result["artifactType"] = self.artifact_type
        result["config"] = self.config.to_dict()
        result["layers"] = [layer.to_dict() for layer in self.layers]
        if self.subject is not None:
            result["subject"] = self.subject.to_dict()
        if self.annotations:
            result["annotations"] = dict(self.annotations)
        return result

    def encode(self) -> bytes:
        """Serialise the manifest as compact JSON; its digest is the digest of these bytes."""
        return _encode(self.to_dict())


@dataclass(frozen=True)
class Index:
    """An OCI image index or Docker manifest list: one manifest descriptor per platform."""

    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def platforms(self) -> list[Platform]:
        """Return the platforms of the runnable entries, skipping attestations and entries without one."""
        return [
            entry.platform
            for entry in self.manifests
            if entry.platform is not None and not _is_attestation(entry)
        ]

    def select(self, platform: Platform | None = None) -> Descriptor:
        """Return the entry to pull for ``platform`` (default: this machine's).

        An exact match wins, then a compatible lower variant (``linux/arm/v6``
        on an arm/v7 machine). An entry without a platform is chosen only when
        no entry matches: the caller then checks the platform in its config,
        as containerd does. Raises NoMatchingPlatform listing the platforms
        the index offers.
        """
        requested = platform if platform is not None else host()
        runnable = [
            entry
            for entry in self.manifests
            if (mediatypes.is_manifest(entry.media_type) or mediatypes.is_index(entry.media_type))
            and not _is_attestation(entry)
        ]
        for candidate in requested.compatible():
            for entry in runnable:
                if entry.platform is not None and entry.platform.matches(candidate):
                    return entry
        for entry in runnable:
            if entry.platform is None:
                return entry
        available = ", ".join(sorted({str(found) for found in self.platforms()})) or "none"
        raise NoMatchingPlatform(
            f"no matching manifest for {requested} in the image index; available platforms: {available}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the index as a JSON object with the spec's field names."""
        result: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            result["artifactType"] = self.artifact_type
        result["manifests"] = [entry.to_dict() for entry in self.manifests]
        if self.subject is not None:
            result["subject"] = self.subject.to_dict()
        if self.annotations:
            result["annotations"] = dict(self.annotations)
        return result

    def encode(self) -> bytes:
        """Serialise the index as compact JSON; its digest is the digest of these bytes."""
        return _encode(self.to_dict())


@dataclass(frozen=True)
class HistoryEntry:
    """One step of an image's build history, as ``docker history`` shows it."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config blob that the engine reads; ``raw`` keeps the whole document."""

    os: str
    architecture: str
    variant: str | None
    os_version: str | None
    diff_ids: list[str]
    history: list[HistoryEntry]
    config: dict[str, Any]
    created: str | None
    author: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def platform(self) -> Platform:
        """The platform that the config declares."""
        return Platform(self.os, self.architecture, self.variant, self.os_version)

    def layer_history(self) -> list[HistoryEntry]:
        """Return the history entries that created a layer, in the order of ``diff_ids``."""
        return [entry for entry in self.history if not entry.empty_layer]


def parse(data: bytes, content_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index document.

    ``content_type`` is the HTTP Content-Type it came with, if any. Raises
    InvalidManifest when the document is not JSON, is Docker schema 1, has a
    type other than a known manifest or index type, has a Content-Type and
    ``mediaType`` that disagree, or has fields of the wrong shape.
    """
    document = _load_object(data, "manifest")
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifest(f"manifest mediaType must be a string, got {declared!r}")
    header = mediatypes.essence(content_type) if content_type else None
    if header in GENERIC_CONTENT_TYPES:
        header = None

    schema_version = document.get("schemaVersion")
    if isinstance(schema_version, bool):
        raise InvalidManifest(f"manifest schemaVersion must be an integer, got {schema_version!r}")
    if schema_version == 1 or header in mediatypes.SCHEMA1_TYPES or declared in mediatypes.SCHEMA1_TYPES:
        raise InvalidManifest(
            "Docker image manifest v2 schema 1 is not supported: it was deprecated in 2017. "
            "Push the image again with a current client to store it as schema 2 or OCI"
        )
    if header and declared and header != declared:
        raise InvalidManifest(f"manifest Content-Type {header!r} does not match its mediaType {declared!r}")

    media_type = declared or header or _guess_media_type(document)
    if media_type not in mediatypes.MANIFEST_TYPES and media_type not in mediatypes.INDEX_TYPES:
        raise InvalidManifest(f"unsupported manifest media type {media_type!r}")
    if schema_version != 2:
        raise InvalidManifest(f"unsupported manifest schemaVersion {schema_version!r} (expected 2)")

    if media_type in mediatypes.INDEX_TYPES:
        if "config" in document or "layers" in document or "manifests" not in document:
            raise InvalidManifest(f"document of type {media_type!r} does not have the fields of an index")
        return _index_from_dict(document, media_type)
    if "manifests" in document or "config" not in document:
        raise InvalidManifest(f"document of type {media_type!r} does not have the fields of a manifest")
    return _manifest_from_dict(document, media_type)


def parse_manifest(data: bytes, content_type: str | None = None) -> Manifest:
    """Parse a document that must be a single-platform manifest; raise InvalidManifest otherwise."""
    parsed = parse(data, content_type)
    if not isinstance(parsed, Manifest):
        raise InvalidManifest(f"expected an image manifest, got an index of type {parsed.media_type!r}")
    return parsed


def parse_index(data: bytes, content_type: str | None = None) -> Index:
    """Parse a document that must be an index or manifest list; raise InvalidManifest otherwise."""
    parsed = parse(data, content_type)
    if not isinstance(parsed, Index):
        raise InvalidManifest(f"expected an image index, got a manifest of type {parsed.media_type!r}")
    return parsed


def parse_config(data: bytes) -> ImageConfig:
    """Parse an image config blob (Docker or OCI; both share the same fields).

    Raises InvalidManifest when ``os``, ``architecture`` or ``rootfs`` is
    missing or malformed.
    """
    document = _load_object(data, "image config")
    os_name = document.get("os")
    architecture = document.get("architecture")
    if not isinstance(os_name, str) or not os_name:
        raise InvalidManifest(f"image config: os must be a non-empty string, got {os_name!r}")
    if not isinstance(architecture, str) or not architecture:
        raise InvalidManifest(f"image config: architecture must be a non-empty string, got {architecture!r}")

    rootfs = document.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidManifest(f'image config: rootfs must be an object with type "layers", got {rootfs!r}')
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise InvalidManifest(f"image config: rootfs.diff_ids must be a list, got {diff_ids!r}")
    for diff_id in diff_ids:
        _check_digest(diff_id, "image config rootfs.diff_ids")

    history_data = document.get("history")
    if history_data is None:
        history_data = []
    if not isinstance(history_data, list):
        raise InvalidManifest(f"image config: history must be a list, got {history_data!r}")
    history = [_history_entry(item) for item in history_data]

    container_config = document.get("config")
    if container_config is None:
        container_config = {}
    if not isinstance(container_config, dict):
        raise InvalidManifest(f"image config: config must be an object, got {container_config!r}")

    return ImageConfig(
        os=os_name,
        architecture=architecture,
        variant=_optional_string(document, "variant", "image config"),
        os_version=_optional_string(document, "os.version", "image config"),
        diff_ids=list(diff_ids),
        history=history,
        config=container_config,
        created=_optional_string(document, "created", "image config"),
        author=_optional_string(document, "author", "image config"),
        raw=document,
    )


def descriptor_from_dict(data: object, where: str) -> Descriptor:
    """Build a Descriptor from its JSON object; ``where`` names the field for error messages."""
    if not isinstance(data, dict):
        raise InvalidManifest(f"{where}: a descriptor must be a JSON object, got {data!r}")
    media_type = data.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest(f"{where}: descriptor mediaType must be a non-empty string, got {media_type!r}")
    digest = _check_digest(data.get("digest"), where)
    size = data.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{where}: descriptor size must be a non-negative integer, got {size!r}")

    urls = data.get("urls")
    if urls is not None and (not isinstance(urls, list) or not all(isinstance(url, str) for url in urls)):
        raise InvalidManifest(f"{where}: descriptor urls must be a list of strings, got {urls!r}")
    annotations = _annotations(data.get("annotations"), where)
    platform_data = data.get("platform")
    platform = platform_from_dict(platform_data, where) if platform_data is not None else None
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=platform,
        annotations=annotations,
        urls=list(urls) if urls else None,
        artifact_type=_optional_string(data, "artifactType", where),
    )


def _guess_media_type(document: dict[str, Any]) -> str:
    """Tell an OCI manifest from an OCI index by its fields, when neither header nor mediaType gives the type."""
    has_manifests = "manifests" in document
    has_manifest_fields = "config" in document or "layers" in document
    if has_manifests and not has_manifest_fields:
        return mediatypes.OCI_INDEX
    if has_manifest_fields and not has_manifests:
        return mediatypes.OCI_MANIFEST
    raise InvalidManifest("document has no mediaType and its fields fit neither a manifest nor an index")


def _manifest_from_dict(document: dict[str, Any], media_type: str) -> Manifest:
    config = descriptor_from_dict(document.get("config"), "manifest config")
    layers_data = document.get("layers", [])
    if not isinstance(layers_data, list):
        raise InvalidManifest(f"manifest layers must be a list, got {layers_data!r}")
    layers = [descriptor_from_dict(item, f"manifest layers[{number}]") for number, item in enumerate(layers_data)]
    return Manifest(
        media_type=media_type,
        config=config,
        layers=layers,
        annotations=_annotations(document.get("annotations"), "manifest"),
        subject=_optional_descriptor(document, "manifest subject"),
        artifact_type=_optional_string(document, "artifactType", "manifest"),
    )


def _index_from_dict(document: dict[str, Any], media_type: str) -> Index:
    entries = document.get("manifests")
    if not isinstance(entries, list):
        raise InvalidManifest(f"index manifests must be a list, got {entries!r}")
    manifests = [descriptor_from_dict(item, f"index manifests[{number}]") for number, item in enumerate(entries)]
    return Index(
        media_type=media_type,
        manifests=manifests,
        annotations=_annotations(document.get("annotations"), "index"),
        subject=_optional_descriptor(document, "index subject"),
        artifact_type=_optional_string(document, "artifactType", "index"),
    )


def _optional_descriptor(document: dict[str, Any], where: str) -> Descriptor | None:
    value = document.get("subject")
    return descriptor_from_dict(value, where) if value is not None else None


def _history_entry(item: object) -> HistoryEntry:
    if not isinstance(item, dict):
        raise InvalidManifest(f"image config: history entries must be objects, got {item!r}")
    empty_layer = item.get("empty_layer", False)
    if not isinstance(empty_layer, bool):
        raise InvalidManifest(f"image config: history empty_layer must be a boolean, got {empty_layer!r}")
    return HistoryEntry(
        created=_optional_string(item, "created", "image config history"),
        created_by=_optional_string(item, "created_by", "image config history"),
        author=_optional_string(item, "author", "image config history"),
        comment=_optional_string(item, "comment", "image config history"),
        empty_layer=empty_layer,
    )


def _is_attestation(entry: Descriptor) -> bool:
    if not entry.annotations:
        return False
    return entry.annotations.get(REFERENCE_TYPE_ANNOTATION) == ATTESTATION_MANIFEST


def _check_digest(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidManifest(f"{where}: digest must be a string, got {value!r}")
    reason = digests.problem(value)
    if reason is not None:
        raise InvalidManifest(f"{where}: invalid digest {value!r}: {reason}")
    return value


def _annotations(value: object, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(text, str) for key, text in value.items()
    ):
        raise InvalidManifest(f"{where}: annotations must map strings to strings, got {value!r}")
    return dict(value) or None


def _optional_string(document: dict[str, Any], key: str, where: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidManifest(f"{where}: {key} must be a string, got {value!r}")
    return value or None


def _load_object(data: bytes, kind: str) -> dict[str, Any]:
    import json

    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidManifest(f"{kind} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidManifest(f"{kind} must be a JSON object, got {type(document).__name__}")
    return document


def _encode(document: dict[str, Any]) -> bytes:
    import json

    return json.dumps(document, separators=(",", ":")).encode()

"""Manifest, index and config parsing, with output checked against the OCI JSON schemas."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import DigestMismatch, InvalidArgument, InvalidManifest, NoMatchingPlatform
from dockyard.image import digest as digests
from dockyard.image import mediatypes
from dockyard.image.manifest import (
    Descriptor,
    Index,
    Manifest,
    parse,
    parse_config,
    parse_index,
    parse_manifest,
)
from dockyard.image.platform import Platform
from tests.support.schemas import schema_validator

CONFIG_DIGEST = digests.of(b"config")
LAYER_DIGEST = digests.of(b"layer")

def oci_manifest_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": CONFIG_DIGEST, "size": 6},
        "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": LAYER_DIGEST, "size": 5}],
    }
    document.update(changes)
    return document


def index_document(platforms: list[dict[str, Any] | None], media_type: str = mediatypes.OCI_INDEX) -> dict[str, Any]:
    entries = []
    for number, platform in enumerate(platforms):
        entry: dict[str, Any] = {
            "mediaType": mediatypes.OCI_MANIFEST,
            "digest": digests.of(f"manifest {number}".encode()),
            "size": 100 + number,
        }
        if platform is not None:
            entry["platform"] = platform
        entries.append(entry)
    return {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def test_parse_oci_manifest() -> None:
    parsed = parse(encode(oci_manifest_document()), mediatypes.OCI_MANIFEST)
    assert isinstance(parsed, Manifest)
    assert parsed.media_type == mediatypes.OCI_MANIFEST
    assert parsed.config == Descriptor(mediatypes.OCI_CONFIG, CONFIG_DIGEST, 6)
    assert parsed.layers == [Descriptor(mediatypes.OCI_LAYER_GZIP, LAYER_DIGEST, 5)]


def test_parse_docker_manifest() -> None:
    document = oci_manifest_document(
        mediaType=mediatypes.DOCKER_MANIFEST,
        config={"mediaType": mediatypes.DOCKER_CONFIG, "digest": CONFIG_DIGEST, "size": 6},
        layers=[
            {"mediaType": mediatypes.DOCKER_LAYER_GZIP, "digest": LAYER_DIGEST, "size": 5},
            {
                "mediaType": mediatypes.DOCKER_FOREIGN_LAYER_GZIP,
                "digest": LAYER_DIGEST,
                "size": 5,
                "urls": ["https://example.invalid/layer"],
            },
        ],
    )
    parsed = parse_manifest(encode(document), f"{mediatypes.DOCKER_MANIFEST}; charset=utf-8")
    assert parsed.media_type == mediatypes.DOCKER_MANIFEST
    assert parsed.layers[1].urls == ["https://example.invalid/layer"]
    assert mediatypes.is_foreign_layer(parsed.layers[1].media_type)


def test_parse_without_content_type() -> None:
    assert isinstance(parse(encode(oci_manifest_document())), Manifest)


def test_generic_content_type_defers_to_document() -> None:
    parsed = parse(encode(index_document([{"os": "linux", "architecture": "amd64"}])), "application/json")
    assert isinstance(parsed, Index)


def test_content_type_mismatch_rejected() -> None:
    with pytest.raises(InvalidManifest) as caught:
        parse(encode(oci_manifest_document()), mediatypes.DOCKER_MANIFEST)
    assert mediatypes.DOCKER_MANIFEST in str(caught.value)
    assert mediatypes.OCI_MANIFEST in str(caught.value)


def test_content_type_gives_type_when_document_has_none() -> None:
    document = oci_manifest_document()
    del document["mediaType"]
    parsed = parse(encode(document), mediatypes.OCI_MANIFEST)
    assert parsed.media_type == mediatypes.OCI_MANIFEST


def test_missing_media_type_guessed_from_fields() -> None:
    manifest_document = oci_manifest_document()
    del manifest_document["mediaType"]
    index = index_document([None])
    del index["mediaType"]
    assert parse(encode(manifest_document)).media_type == mediatypes.OCI_MANIFEST
    assert parse(encode(index)).media_type == mediatypes.OCI_INDEX


def test_ambiguous_document_rejected() -> None:
    document = oci_manifest_document(manifests=[])
    del document["mediaType"]
    with pytest.raises(InvalidManifest, match="neither a manifest nor an index"):
        parse(encode(document))


def test_index_type_with_manifest_fields_rejected() -> None:
    document = oci_manifest_document(mediaType=mediatypes.OCI_INDEX)
    with pytest.raises(InvalidManifest, match="fields of an index"):
        parse(encode(document))


def test_manifest_type_with_index_fields_rejected() -> None:
    document = index_document([None], media_type=mediatypes.OCI_MANIFEST)
    with pytest.raises(InvalidManifest, match="fields of a manifest"):
        parse(encode(document))


@pytest.mark.parametrize(
    ("document", "content_type"),
    [
        ({"schemaVersion": 1, "name": "library/busybox", "tag": "latest", "fsLayers": []}, None),
        ({"schemaVersion": 1, "name": "library/busybox"}, mediatypes.DOCKER_SCHEMA1_SIGNED_MANIFEST),
        ({"schemaVersion": 2, "config": {}}, mediatypes.DOCKER_SCHEMA1_MANIFEST),
    ],
)
def test_schema1_rejected(document: dict[str, Any], content_type: str | None) -> None:
    with pytest.raises(InvalidManifest, match="schema 1 is not supported"):
        parse(encode(document), content_type)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (encode(oci_manifest_document(mediaType="application/vnd.example+json")), "unsupported manifest media type"),
        (encode(oci_manifest_document(mediaType=7)), "mediaType must be a string"),
        (encode(oci_manifest_document(schemaVersion=3)), "schemaVersion 3"),
        (encode(oci_manifest_document(schemaVersion=True)), "schemaVersion must be an integer"),
        (encode(oci_manifest_document(layers={})), "layers must be a list"),
        (encode(oci_manifest_document(config="x")), "must be a JSON object"),
        (
            encode(oci_manifest_document(config={"mediaType": mediatypes.OCI_CONFIG, "digest": "sha256:abc", "size": 1})),
            "invalid digest 'sha256:abc'",
        ),
        (
            encode(oci_manifest_document(config={"mediaType": mediatypes.OCI_CONFIG, "digest": CONFIG_DIGEST, "size": -1})),
            "size must be a non-negative integer",
        ),
        (
            encode(oci_manifest_document(config={"mediaType": "", "digest": CONFIG_DIGEST, "size": 1})),
            "mediaType must be a non-empty string",
        ),
        (encode(oci_manifest_document(annotations={"a": 1})), "annotations must map strings to strings"),
    ],
)
def test_malformed_documents_rejected(data: bytes, message: str) -> None:
    with pytest.raises(InvalidManifest) as caught:
        parse(data)
    assert message in str(caught.value)


def test_platform_of_index_entry_checked() -> None:
    with pytest.raises(InvalidManifest, match="os and architecture"):
        parse(encode(index_document([{"os": "linux"}])))


def test_parse_docker_manifest_list() -> None:
    document = index_document(
        [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm", "variant": "v7"}],
        media_type=mediatypes.DOCKER_MANIFEST_LIST,
    )
    parsed = parse_index(encode(document), mediatypes.DOCKER_MANIFEST_LIST)
    assert parsed.media_type == mediatypes.DOCKER_MANIFEST_LIST
    assert parsed.platforms() == [Platform("linux", "amd64"), Platform("linux", "arm", "v7")]


def test_parse_manifest_rejects_index() -> None:
    with pytest.raises(InvalidManifest, match="expected an image manifest"):
        parse_manifest(encode(index_document([None])))


def test_parse_index_rejects_manifest() -> None:
    with pytest.raises(InvalidManifest, match="expected an image index"):
        parse_index(encode(oci_manifest_document()))


MULTI_PLATFORM = [
    {"os": "linux", "architecture": "amd64"},
    {"os": "linux", "architecture": "arm64", "variant": "v8"},
    {"os": "linux", "architecture": "arm", "variant": "v6"},
    {"os": "linux", "architecture": "arm"},
    {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.1"},
]


@pytest.mark.parametrize(
    ("wanted", "entry_number"),
    [
        (Platform("linux", "amd64"), 0),
        (Platform("linux", "arm64"), 1),
        (Platform("linux", "aarch64", "v8"), 1),
        (Platform("linux", "arm", "v7"), 3),
        (Platform("linux", "arm", "v6"), 2),
        (Platform("linux", "arm", "v8"), 3),
        (Platform("windows", "amd64"), 4),
    ],
)
def test_index_select(wanted: Platform, entry_number: int) -> None:
    index = parse_index(encode(index_document(MULTI_PLATFORM)))
    assert index.select(wanted) == index.manifests[entry_number]


def test_index_select_no_match_lists_platforms() -> None:
    index = parse_index(encode(index_document(MULTI_PLATFORM)))
    with pytest.raises(NoMatchingPlatform) as caught:
        index.select(Platform("linux", "s390x"))
    message = str(caught.value)
    assert "linux/s390x" in message
    for name in ("linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm", "windows/amd64"):
        assert name in message


def test_index_select_defaults_to_host() -> None:
    from dockyard.image.platform import host

    local = host()
    document = index_document([{"os": "plan9", "architecture": "386"}, local.to_dict()])
    index = parse_index(encode(document))
    assert index.select() == index.manifests[1]


def test_index_select_skips_attestations() -> None:
    document = index_document([{"os": "unknown", "architecture": "unknown"}, {"os": "linux", "architecture": "amd64"}])
    document["manifests"][0]["annotations"] = {"vnd.docker.reference.type": "attestation-manifest"}
    index = parse_index(encode(document))
    assert index.platforms() == [Platform("linux", "amd64")]
    with pytest.raises(NoMatchingPlatform) as caught:
        index.select(Platform("linux", "arm64"))
    assert "unknown" not in str(caught.value)


def test_index_select_falls_back_to_entry_without_platform() -> None:
    index = parse_index(encode(index_document([{"os": "linux", "architecture": "s390x"}, None])))
    assert index.select(Platform("linux", "amd64")) == index.manifests[1]


def test_manifest_encode_round_trip_and_schema() -> None:
    manifest = Manifest(
        mediatypes.OCI_MANIFEST,
        Descriptor(mediatypes.OCI_CONFIG, CONFIG_DIGEST, 6),
        [Descriptor(mediatypes.OCI_LAYER_ZSTD, LAYER_DIGEST, 5, annotations={"org.example": "x"})],
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    )
    data = manifest.encode()
    assert parse(data, mediatypes.OCI_MANIFEST) == manifest
    errors = list(schema_validator("image-manifest-schema.json").iter_errors(json.loads(data)))
    assert errors == []


def test_index_encode_round_trip_and_schema() -> None:
    index = parse_index(encode(index_document(MULTI_PLATFORM)))
    data = index.encode()
    assert parse(data) == index
    errors = list(schema_validator("image-index-schema.json").iter_errors(json.loads(data)))
    assert errors == []


def test_schema_validator_rejects_bad_manifest() -> None:
    # Guards the validation tests above: a broken schema setup would accept anything.
    bad = oci_manifest_document(config={"mediaType": mediatypes.OCI_CONFIG, "digest": "nope", "size": 1})
    assert list(schema_validator("image-manifest-schema.json").iter_errors(bad))


CONFIG_DOCUMENT = {
    "created": "2024-01-01T00:00:00Z",
    "architecture": "arm",
    "variant": "v7",
    "os": "linux",
    "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
    "rootfs": {"type": "layers", "diff_ids": [LAYER_DIGEST, CONFIG_DIGEST]},
    "history": [
        {"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs.tar /"},
        {"created_by": "ENV PATH=/bin", "empty_layer": True},
        {"created_by": "RUN touch /x", "comment": "buildkit"},
    ],
}


def test_parse_config() -> None:
    config = parse_config(encode(CONFIG_DOCUMENT))
    assert config.platform == Platform("linux", "arm", "v7")
    assert config.diff_ids == [LAYER_DIGEST, CONFIG_DIGEST]
    assert config.config["Cmd"] == ["sh"]
    assert config.created == "2024-01-01T00:00:00Z"
    assert [entry.created_by for entry in config.layer_history()] == ["ADD rootfs.tar /", "RUN touch /x"]
    assert config.history[1].empty_layer is True
    assert config.raw == CONFIG_DOCUMENT


def test_config_document_fits_oci_schema() -> None:
    # Guards the test data: the config parsed above is a valid OCI config.
    assert list(schema_validator("config-schema.json").iter_errors(CONFIG_DOCUMENT)) == []


def test_parse_config_without_history_or_config() -> None:
    document = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    config = parse_config(encode(document))
    assert config.history == []
    assert config.config == {}
    assert config.created is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"os": None}, "os must be a non-empty string"),
        ({"architecture": 5}, "architecture must be a non-empty string"),
        ({"rootfs": None}, 'rootfs must be an object with type "layers"'),
        ({"rootfs": {"type": "other", "diff_ids": []}}, 'rootfs must be an object with type "layers"'),
        ({"rootfs": {"type": "layers"}}, "rootfs.diff_ids must be a list"),
        ({"rootfs": {"type": "layers", "diff_ids": ["sha256:xyz"]}}, "invalid digest 'sha256:xyz'"),
        ({"history": {}}, "history must be a list"),
        ({"history": [{"empty_layer": "yes"}]}, "empty_layer must be a boolean"),
        ({"config": []}, "config must be an object"),
        ({"created": 5}, "created must be a string"),
    ],
)
def test_parse_config_rejects_malformed(change: dict[str, Any], message: str) -> None:
    document = dict(CONFIG_DOCUMENT, **change)
    with pytest.raises(InvalidManifest) as caught:
        parse_config(encode(document))
    assert message in str(caught.value)


def test_layer_compression_by_exact_type() -> None:
    assert mediatypes.layer_compression(mediatypes.OCI_LAYER_GZIP) == "gzip"
    assert mediatypes.layer_compression(mediatypes.DOCKER_LAYER_GZIP) == "gzip"
    assert mediatypes.layer_compression(mediatypes.OCI_NONDISTRIBUTABLE_LAYER_ZSTD) == "zstd"
    assert mediatypes.layer_compression(mediatypes.OCI_LAYER_TAR) is None
    with pytest.raises(InvalidManifest, match="unsupported layer media type"):
        mediatypes.layer_compression("application/vnd.example.layer.tar+gzip")


def test_media_type_sets_are_exact() -> None:
    assert not mediatypes.is_manifest(mediatypes.OCI_MANIFEST + "x")
    assert not mediatypes.is_layer("tar+gzip")
    assert mediatypes.is_index(mediatypes.DOCKER_MANIFEST_LIST)
    assert mediatypes.is_layer(mediatypes.DOCKER_FOREIGN_LAYER_GZIP)
    assert not mediatypes.is_foreign_layer(mediatypes.OCI_LAYER_GZIP)


@pytest.mark.parametrize(
    "text",
    [f"sha256:{'a' * 64}", f"sha384:{'b' * 96}", f"sha512:{'c' * 128}"],
)
def test_digest_validate_accepts(text: str) -> None:
    assert digests.validate(text) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sha256", "<algorithm>:<hex>"),
        (":abc", "<algorithm>:<hex>"),
        (f"md5:{'a' * 32}", "unsupported digest algorithm 'md5'"),
        (f"sha256:{'A' * 64}", "lowercase hex"),
        (f"sha256:{'a' * 63}", "64 lowercase hex digits, not 63"),
        (f"sha512:{'a' * 64}", "128 lowercase hex digits, not 64"),
    ],
)
def test_digest_validate_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        digests.validate(text)
    assert reason in str(caught.value)
    assert text in str(caught.value)


def test_digest_of_and_verify() -> None:
    assert digests.of(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    digests.verify(b"", digests.of(b""), "empty blob")
    with pytest.raises(DigestMismatch) as caught:
        digests.verify(b"x", digests.of(b""), "empty blob")
    assert "empty blob" in str(caught.value)
    assert caught.value.actual == digests.of(b"x")

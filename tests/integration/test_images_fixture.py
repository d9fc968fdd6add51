"""Check the offline test images with tools other than dockyard: skopeo and umoci.

If these pass, a failure elsewhere that uses ``test_images`` is dockyard's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import images

pytestmark = pytest.mark.integration


def skopeo_inspect(reference: str, *options: str) -> bytes:
    command = ["skopeo", "inspect", "--tls-verify=false", *options, f"docker://{reference}"]
    result = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def raw_manifest(reference: str) -> tuple[dict, str]:
    data = skopeo_inspect(reference, "--raw")
    return json.loads(data), "sha256:" + hashlib.sha256(data).hexdigest()


def test_busybox_manifest_as_built(test_images: images.ImageSet) -> None:
    manifest, digest = raw_manifest(test_images.busybox)
    built = test_images.built["busybox"]

    assert test_images.busybox == f"{test_images.host}/test/busybox:latest"
    assert digest == built.digest
    assert manifest["mediaType"] == images.OCI_MANIFEST
    assert manifest["config"]["digest"] == built.config_digest
    assert [layer["digest"] for layer in manifest["layers"]] == built.layer_digests
    assert [layer["mediaType"] for layer in manifest["layers"]] == [images.OCI_LAYER_GZIP]


def test_busybox_config_runs_sh(test_images: images.ImageSet) -> None:
    config = json.loads(skopeo_inspect(test_images.busybox, "--config"))
    architecture, _ = images.host_architecture()

    assert config["config"]["Cmd"] == ["sh"]
    assert config["architecture"] == architecture
    assert config["rootfs"]["diff_ids"] == test_images.built["busybox"].diff_ids
    assert "bin/sh" in test_images.busybox_applets


def test_busybox_docker_media_types(test_images: images.ImageSet) -> None:
    manifest, digest = raw_manifest(test_images.busybox_docker)

    assert digest == test_images.built["busybox-docker"].digest
    assert manifest["mediaType"] == images.DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == images.DOCKER_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [images.DOCKER_LAYER_GZIP]
    # Same layer bytes as the OCI variant: only the media types differ.
    assert manifest["layers"][0]["digest"] == test_images.built["busybox"].layer_digests[0]


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("zstd", images.OCI_LAYER_ZSTD), ("plain", images.OCI_LAYER_TAR), ("layered", images.OCI_LAYER_GZIP)],
)
def test_layer_media_types(test_images: images.ImageSet, name: str, media_type: str) -> None:
    manifest, digest = raw_manifest(getattr(test_images, name))

    assert digest == test_images.built[name].digest
    assert len(manifest["layers"]) >= 2
    assert {layer["mediaType"] for layer in manifest["layers"]} == {media_type}


def test_multiarch_index_platforms(test_images: images.ImageSet) -> None:
    index, digest = raw_manifest(test_images.multiarch)
    built = test_images.built["multiarch"]

    assert digest == built.digest
    assert index["mediaType"] == images.OCI_INDEX
    listed = {}
    for entry in index["manifests"]:
        platform = entry["platform"]
        text = "/".join(filter(None, [platform["os"], platform["architecture"], platform.get("variant")]))
        listed[text] = entry["digest"]
    assert listed == {text: manifest for text, (manifest, _) in built.platforms.items()}


@pytest.mark.parametrize("platform_text", images.MULTIARCH_PLATFORMS)
def test_multiarch_config_per_platform(test_images: images.ImageSet, platform_text: str) -> None:
    _, architecture, *variant = platform_text.split("/")
    options = ["--override-os", "linux", "--override-arch", architecture]
    if variant:
        options += ["--override-variant", variant[0]]
    config = json.loads(skopeo_inspect(test_images.multiarch, *options, "--config"))
    # skopeo re-encodes the config it prints, so compare documents, not digests.
    config_digest = test_images.multiarch_config(platform_text)
    blob = test_images.layouts["multiarch"] / "blobs" / "sha256" / config_digest.removeprefix("sha256:")

    assert config == json.loads(blob.read_bytes())
    assert config["architecture"] == architecture


def test_configs_distinct_per_platform(test_images: images.ImageSet) -> None:
    configs = [test_images.multiarch_config(text) for text in images.MULTIARCH_PLATFORMS]

    assert len(set(configs)) == len(images.MULTIARCH_PLATFORMS)


@pytest.fixture(scope="module")
def layered_rootfs(test_images: images.ImageSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copy the pushed layered image back with skopeo and unpack it with umoci."""
    if shutil.which("umoci") is None:
        pytest.fail("umoci is missing: run scripts/setup.sh")
    workdir = tmp_path_factory.mktemp("layered-umoci")
    layout = workdir / "layout"
    copy = subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{test_images.layered}", f"oci:{layout}:latest"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert copy.returncode == 0, copy.stderr
    unpack = subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:latest", str(workdir / "bundle")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert unpack.returncode == 0, unpack.stderr
    return workdir / "bundle" / "rootfs"


def test_layered_files_per_umoci(layered_rootfs: Path) -> None:
    expected = images.LAYERED_EXPECTED
    for path, content in expected.files.items():
        assert (layered_rootfs / path).read_bytes() == content, path
    for path in expected.directories:
        assert (layered_rootfs / path).is_dir(), path


def test_layered_deletions_per_umoci(layered_rootfs: Path) -> None:
    for path in images.LAYERED_EXPECTED.absent:
        assert not os.path.lexists(layered_rootfs / path), path


def test_layered_links_and_xattrs(layered_rootfs: Path) -> None:
    expected = images.LAYERED_EXPECTED
    for first, second in expected.hardlinks:
        assert (layered_rootfs / first).stat().st_ino == (layered_rootfs / second).stat().st_ino
    for path, xattrs in expected.xattrs.items():
        for name, value in xattrs.items():
            assert os.getxattr(layered_rootfs / path, name) == value
    for path, mode in expected.modes.items():
        assert (layered_rootfs / path).stat().st_mode & 0o7777 == mode, path

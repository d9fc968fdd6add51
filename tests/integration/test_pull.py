"""``dockyard pull`` against a real registry on loopback: layers, platforms, concurrency and every failure.

Each failure test checks three things: the command exits non-zero, stderr has
one ``Error:`` line naming the reference, registry or digest, and the store
records no image or tag afterwards.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.images import ImageSet, push_layout
from tests.support.registry import free_port, start_registry

pytestmark = pytest.mark.integration


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def recorded_tags(root: Path) -> list[str]:
    """Read the tags straight from the state database, as a second view next to the CLI's."""
    database = root / "state.db"
    if not database.exists():
        return []
    connection = sqlite3.connect(database)
    try:
        return [row[0] for row in connection.execute("SELECT reference FROM tags")]
    finally:
        connection.close()


def assert_nothing_recorded(dockyard) -> None:
    assert dockyard.image_ids() == []
    assert recorded_tags(dockyard.root) == []


def test_pull_busybox_prints_docker_progress(dockyard, test_images: ImageSet):
    result = dockyard.run("pull", test_images.busybox)
    built = test_images.built["busybox"]
    layer_id = built.layer_digests[0].split(":")[1][:12]
    lines = result.stdout.splitlines()
    assert lines[0] == "latest: Pulling from test/busybox"
    assert f"{layer_id}: Pulling fs layer" in lines
    assert f"{layer_id}: Download complete" in lines
    assert f"{layer_id}: Pull complete" in lines
    assert f"Digest: {built.digest}" in lines
    assert f"Status: Downloaded newer image for {test_images.busybox}" in lines
    assert lines[-1] == test_images.busybox
    assert dockyard.image_ids() == [built.config_digest]


def test_pull_default_tag_is_announced(dockyard, test_images: ImageSet):
    untagged = test_images.busybox.rsplit(":", 1)[0]
    result = dockyard.run("pull", untagged)
    assert result.stdout.splitlines()[0] == "Using default tag: latest"
    assert result.stdout.splitlines()[-1] == test_images.busybox


def test_second_pull_is_up_to_date(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    blobs_before = dockyard.blobs()
    result = dockyard.run("pull", test_images.busybox)
    assert f"Status: Image is up to date for {test_images.busybox}" in result.stdout
    assert "Pull complete" not in result.stdout
    assert dockyard.blobs() == blobs_before


def test_pull_quiet_prints_only_reference(dockyard, test_images: ImageSet):
    result = dockyard.run("pull", "-q", test_images.busybox)
    assert result.stdout == test_images.busybox + "\n"


def test_pull_stores_blobs_and_snapshots(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.layered)
    built = test_images.built["layered"]
    assert {built.digest, built.config_digest, *built.layer_digests} <= dockyard.blobs()
    assert len(dockyard.snapshots()) == len(built.layer_digests)
    assert not list((dockyard.root / "ingest").glob("*"))


def test_pull_unpacks_layered_image(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.layered)
    expected = test_images.layered_expected
    snapshots = dockyard.root / "snapshots"
    tops = [path / "fs" for path in snapshots.iterdir()]
    # Every file of the merged image is in the snapshot of some layer, with its content.
    for relative, content in expected.files.items():
        found = [top / relative for top in tops if (top / relative).is_file()]
        assert found, f"{relative} is in no snapshot"
        assert any(path.read_bytes() == content for path in found), relative


def test_shared_base_layer_already_exists(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    result = dockyard.run("pull", test_images.layered)
    base = test_images.built["busybox"].layer_digests[0].split(":")[1][:12]
    assert f"{base}: Already exists" in result.stdout
    assert f"{base}: Pulling fs layer" not in result.stdout
    assert len(dockyard.snapshots()) == len(test_images.built["layered"].layer_digests)


@pytest.mark.parametrize("name", ["zstd", "plain", "busybox_docker"])
def test_pull_other_layer_formats(dockyard, test_images: ImageSet, name: str):
    reference = getattr(test_images, name)
    dockyard.run("pull", reference)
    built = test_images.built[name.replace("_", "-")]
    inspected = json.loads(dockyard.run("inspect", reference).stdout)[0]
    assert inspected["Id"] == built.config_digest
    assert inspected["RootFS"]["Layers"] == built.diff_ids


@pytest.mark.parametrize(
    "platform, recorded",
    [
        ("linux/arm64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/amd64", "linux/amd64"),
    ],
)
def test_pull_platform_from_index(dockyard, test_images: ImageSet, platform: str, recorded: str):
    dockyard.run("pull", "--platform", platform, test_images.multiarch)
    expected_config = test_images.multiarch_config(recorded)
    assert dockyard.image_ids() == [expected_config]
    template = "{{.Os}}/{{.Architecture}}{{if .Variant}}/{{.Variant}}{{end}}"
    shown = dockyard.run("inspect", "--format", template, test_images.multiarch).stdout.strip()
    assert shown == recorded
    digests = json.loads(dockyard.run("inspect", test_images.multiarch).stdout)[0]["RepoDigests"]
    assert digests == [f"{test_images.multiarch.rsplit(':', 1)[0]}@{test_images.built['multiarch'].digest}"]


def test_pull_no_matching_platform(dockyard, test_images: ImageSet):
    result = dockyard.run("pull", "--platform", "linux/s390x", test_images.multiarch, check=False)
    assert result.returncode != 0
    errors = error_lines(result.stderr)
    assert len(errors) == 1
    assert "linux/s390x" in errors[0]
    assert "test/multiarch" in errors[0]
    assert_nothing_recorded(dockyard)
    assert dockyard.snapshots() == set()


def test_pull_platform_mismatch_on_single_manifest(dockyard, test_images: ImageSet):
    result = dockyard.run("pull", "--platform", "linux/s390x", test_images.busybox, check=False)
    assert result.returncode != 0
    errors = error_lines(result.stderr)
    assert len(errors) == 1
    assert "linux/s390x" in errors[0]
    assert_nothing_recorded(dockyard)


def test_pull_tag_not_found(dockyard, test_images: ImageSet):
    missing = test_images.busybox.rsplit(":", 1)[0] + ":no-such-tag"
    result = dockyard.run("pull", missing, check=False)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1
    assert missing in errors[0]
    assert_nothing_recorded(dockyard)


def test_pull_unknown_digest(dockyard, test_images: ImageSet):
    missing = test_images.busybox.rsplit(":", 1)[0] + "@sha256:" + "0" * 64
    result = dockyard.run("pull", missing, check=False)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1
    assert "0" * 64 in errors[0]
    assert_nothing_recorded(dockyard)


def test_pull_by_digest_records_no_tag(dockyard, test_images: ImageSet):
    built = test_images.built["busybox"]
    by_digest = test_images.busybox.rsplit(":", 1)[0] + "@" + built.digest
    dockyard.run("pull", by_digest)
    assert recorded_tags(dockyard.root) == []
    assert dockyard.image_ids() == [built.config_digest]
    listed = dockyard.run("images", "--digests", "--format", "{{.Tag}} {{.Digest}}").stdout.split()
    assert listed == ["<none>", built.digest]


def test_pull_registry_unreachable(dockyard):
    host = f"127.0.0.1:{free_port()}"
    result = dockyard.run("pull", f"{host}/test/busybox:latest", check=False)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1
    assert host in errors[0]
    assert_nothing_recorded(dockyard)


def test_pull_unauthorized(dockyard, basic_registry, test_images: ImageSet):
    reference = f"{basic_registry.host}/test/busybox:latest"
    result = dockyard.run("pull", reference, check=False)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1
    assert basic_registry.host in errors[0]
    assert_nothing_recorded(dockyard)


@pytest.fixture
def corrupt_registry(tmp_path, test_images: ImageSet):
    """A private registry holding the busybox image with one byte of its layer blob changed on disk."""
    registry = start_registry(tmp_path / "corrupt-registry")
    try:
        reference = push_layout(test_images.layouts["busybox"], registry.host, "test/busybox")
        layer = test_images.built["busybox"].layer_digests[0].split(":")[1]
        data = registry.storage / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
        content = bytearray(data.read_bytes())
        content[len(content) // 2] ^= 0xFF
        data.write_bytes(bytes(content))
        yield reference
    finally:
        registry.stop()


def test_pull_digest_mismatch(dockyard, corrupt_registry: str, test_images: ImageSet):
    layer = test_images.built["busybox"].layer_digests[0]
    result = dockyard.run("pull", corrupt_registry, check=False)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1
    assert layer in errors[0]
    assert_nothing_recorded(dockyard)
    assert layer not in dockyard.blobs()
    assert dockyard.snapshots() == set()


def test_concurrent_pulls_store_one_copy(dockyard, test_images: ImageSet):
    processes = [dockyard.popen("pull", test_images.layered) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr.decode()
    built = test_images.built["layered"]
    assert dockyard.image_ids() == [built.config_digest]
    assert len(dockyard.snapshots()) == len(built.layer_digests)
    assert dockyard.blobs() == {built.digest, built.config_digest, *built.layer_digests}
    leftovers = [path for path in (dockyard.root / "tmp").glob("*")] if (dockyard.root / "tmp").exists() else []
    assert leftovers == []
    assert recorded_tags(dockyard.root) == [test_images.layered]

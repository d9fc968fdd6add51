"""docker-py (the ``docker`` package) against ``dockyard system service`` on a unix socket."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.api import ApiService
from tests.support.registry import Registry

docker = pytest.importorskip("docker")

pytestmark = pytest.mark.integration


@pytest.fixture
def client(docker_api: ApiService) -> Iterator["docker.DockerClient"]:
    client = docker.DockerClient(base_url=docker_api.url, version="auto", timeout=60)
    try:
        yield client
    finally:
        client.close()


def test_version_negotiation(client: "docker.DockerClient") -> None:
    assert client.version()["ApiVersion"] == "1.50"
    assert client.ping() is True


def test_images_pull_and_list(client: "docker.DockerClient") -> None:
    image = client.images.pull("busybox", tag="latest")
    assert "busybox:latest" in image.tags
    assert image.id in [each.id for each in client.images.list()]


def test_image_not_found_is_classified(client: "docker.DockerClient") -> None:
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("no-such-image:1")


def test_containers_run_foreground_output(client: "docker.DockerClient") -> None:
    output = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], remove=True, stderr=True)
    assert sorted(output.split()) == [b"err", b"out"]


def test_container_exit_code_raises(client: "docker.DockerClient") -> None:
    with pytest.raises(docker.errors.ContainerError) as raised:
        client.containers.run("busybox", ["sh", "-c", "exit 4"], remove=True)
    assert raised.value.exit_status == 4


def test_detached_logs_exec_stop_remove(client: "docker.DockerClient") -> None:
    container = client.containers.run("busybox", ["sh", "-c", "echo ready; exec sleep 300"], detach=True,
                                      name="pysleeper")
    try:
        for _ in range(100):
            if container.logs() == b"ready\n":
                break
            import time

            time.sleep(0.05)
        assert container.logs() == b"ready\n"

        result = container.exec_run(["sh", "-c", "echo in-exec; exit 2"])
        assert result.exit_code == 2
        assert result.output == b"in-exec\n"

        container.reload()
        assert container.status == "running"
        container.stop(timeout=1)
        container.reload()
        assert container.status == "exited"
    finally:
        container.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("pysleeper")


def test_wait_returns_status_code(client: "docker.DockerClient") -> None:
    container = client.containers.create("busybox", ["sh", "-c", "exit 9"])
    container.start()
    assert container.wait(timeout=30)["StatusCode"] == 9
    container.remove()


def test_volumes_create_list_remove(client: "docker.DockerClient") -> None:
    volume = client.volumes.create("pyvolume", labels={"purpose": "test"})
    assert volume.attrs["Labels"] == {"purpose": "test"}
    assert "pyvolume" in [each.name for each in client.volumes.list()]
    volume.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("pyvolume")


def test_put_and_get_archive(client: "docker.DockerClient") -> None:
    import io
    import tarfile

    container = client.containers.run("busybox", ["sleep", "300"], detach=True)
    try:
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            member = tarfile.TarInfo("hello.txt")
            member.size = 6
            tar.addfile(member, io.BytesIO(b"hello\n"))
        assert container.put_archive("/tmp", data.getvalue()) is True

        chunks, stat = container.get_archive("/tmp/hello.txt")
        assert stat["name"] == "hello.txt"
        assert stat["size"] == 6
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            extracted = tar.extractfile("hello.txt")
            assert extracted is not None
            assert extracted.read() == b"hello\n"
    finally:
        container.remove(force=True)


def test_push_and_pull_with_registry_auth(client: "docker.DockerClient", basic_registry: Registry) -> None:
    credentials = {"username": "alice", "password": "wonderland", "serveraddress": basic_registry.host}
    target = f"{basic_registry.host}/test/authed"
    image = client.images.pull("busybox", tag="latest")
    assert image.tag(target, tag="v1") is True

    # As with dockerd, a push that fails after it began reports the error inside the stream.
    rejected = list(client.images.push(target, tag="v1", auth_config={"username": "alice", "password": "wrong"},
                                       stream=True, decode=True))
    assert "error" in rejected[-1]
    lines = list(client.images.push(target, tag="v1", auth_config=credentials, stream=True, decode=True))
    assert not [line for line in lines if "error" in line]
    assert any("digest: sha256:" in line.get("status", "") for line in lines)

    client.images.remove(f"{target}:v1")
    with pytest.raises(docker.errors.APIError):
        client.images.pull(target, tag="v1")
    pulled = client.images.pull(target, tag="v1", auth_config=credentials)
    assert pulled.id == image.id


def test_images_build_from_fileobj_and_path(client: "docker.DockerClient", tmp_path) -> None:
    import io

    dockerfile = io.BytesIO(b'FROM busybox\nENV ANSWER=42\nCMD ["sh", "-c", "echo $ANSWER"]\n')
    image, logs = client.images.build(fileobj=dockerfile, tag="pybuilt/env:1", rm=True, forcerm=True)
    lines = [entry.get("stream", "") for entry in logs]
    assert any(line.startswith("Step 1/3 : FROM busybox") for line in lines)
    assert "pybuilt/env:1" in image.tags
    assert client.containers.run("pybuilt/env:1", remove=True) == b"42\n"

    # The classic builder runs every stage up to the target, so only a stage after it may fail unseen.
    (tmp_path / "Dockerfile.custom").write_text(
        "FROM busybox AS final\nCOPY data /data\nFROM busybox AS broken\nRUN false\n")
    (tmp_path / "data").write_text("payload\n")
    target, _ = client.images.build(path=str(tmp_path), dockerfile="Dockerfile.custom", target="final",
                                    tag="pybuilt/target:1", nocache=True)
    assert client.containers.run(target.id, ["cat", "/data"], remove=True) == b"payload\n"

    with pytest.raises(docker.errors.BuildError, match="returned a non-zero code: 1"):
        client.images.build(path=str(tmp_path), dockerfile="Dockerfile.custom", target="broken")
    client.images.remove("pybuilt/env:1")
    client.images.remove("pybuilt/target:1")

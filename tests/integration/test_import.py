"""``dockyard import`` through the installed CLI: root filesystem tarballs and directories become one-layer images.

The root filesystem is the busybox test image's layer, taken from its OCI
layout and stored plain, gzip- or zstd-compressed, or unpacked into a
directory. Each imported image must run.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import tarfile
import threading
from pathlib import Path

import pytest

from tests.support.cli import Dockyard
from tests.support.containers import MONITOR_IDLE_SECONDS
from tests.support.images import ImageSet

pytestmark = pytest.mark.integration


@pytest.fixture
def rootfs_tar(test_images: ImageSet, tmp_path: Path) -> Path:
    """The busybox root filesystem as a plain tar."""
    layer_digest = test_images.built["busybox"].layer_digests[0]
    blob = test_images.layouts["busybox"] / "blobs" / "sha256" / layer_digest.removeprefix("sha256:")
    path = tmp_path / "rootfs.tar"
    path.write_bytes(gzip.decompress(blob.read_bytes()))
    return path


@pytest.fixture
def importer(dockyard: Dockyard, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKYARD_MONITOR_IDLE_TIMEOUT", MONITOR_IDLE_SECONDS)
    yield dockyard
    from tests.integration.test_container_cli import stop_monitor

    stop_monitor(dockyard)
    mounts = [line for line in open("/proc/self/mountinfo") if str(dockyard.root) in line]
    assert mounts == [], f"mounts left behind: {mounts}"


def inspect(dockyard: Dockyard, name: str) -> dict:
    return json.loads(dockyard.run("image", "inspect", name).stdout)[0]


def compress(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


@pytest.mark.parametrize("kind", ["plain", "gzip", "zstd"])
def test_import_tarball_runs(importer, rootfs_tar, tmp_path, kind):
    archive = tmp_path / f"rootfs.{kind}"
    archive.write_bytes(compress(kind, rootfs_tar.read_bytes()))
    image_id = importer.run("import", str(archive), f"imported:{kind}").stdout.strip()
    assert image_id.startswith("sha256:")
    assert len(image_id) == len("sha256:") + 64
    details = inspect(importer, f"imported:{kind}")
    assert details["Id"] == image_id
    assert len(details["RootFS"]["Layers"]) == 1
    assert importer.run("run", "--rm", f"imported:{kind}", "echo", "hello").stdout == "hello\n"


def test_import_stdin_with_changes_and_message(importer, rootfs_tar):
    changes = [
        'CMD ["echo", "from cmd"]',
        "ENV GREETING=hi OTHER=two",
        "EXPOSE 8080",
        "LABEL origin=import",
        "USER 1000",
        "WORKDIR /tmp",
        "VOLUME /data",
    ]
    flags = [part for change in changes for part in ("--change", change)]
    importer.run("import", *flags, "-m", "a root filesystem", "-", "changed", input=rootfs_tar.read_bytes())
    details = inspect(importer, "changed")
    config = details["Config"]
    assert config["Cmd"] == ["echo", "from cmd"]
    assert "GREETING=hi" in config["Env"]
    assert "OTHER=two" in config["Env"]
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Labels"] == {"origin": "import"}
    assert config["User"] == "1000"
    assert config["WorkingDir"] == "/tmp"
    assert config["Volumes"] == {"/data": {}}
    assert details["Comment"] == "a root filesystem"
    history = json.loads(importer.run("history", "--format", "{{json .}}", "--no-trunc", "changed").stdout.splitlines()[0])
    assert history["Comment"] == "a root filesystem"
    assert importer.run("run", "--rm", "-u", "0", "changed").stdout == "from cmd\n"


def test_import_directory(importer, rootfs_tar, tmp_path):
    directory = tmp_path / "tree"
    directory.mkdir()
    with tarfile.open(rootfs_tar) as archive:
        archive.extractall(directory, filter="tar")
    (directory / "marker.txt").write_text("from a directory\n")
    importer.run("image", "import", "-c", "ENTRYPOINT /bin/cat /marker.txt", str(directory), "fromdir")
    assert importer.run("run", "--rm", "fromdir").stdout == "from a directory\n"


def test_import_rejects_bad_input(importer, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is no tar archive\n" * 40)
    result = importer.run("import", str(junk), "junk", check=False)
    assert result.returncode == 1
    assert "not a tar archive" in result.stderr

    result = importer.run("import", "--change", "RUN true", str(junk), check=False)
    assert result.returncode == 1
    assert "RUN is not a valid change command" in result.stderr

    result = importer.run("import", str(tmp_path / "missing.tar"), check=False)
    assert result.returncode == 1
    assert "missing.tar" in result.stderr
    assert importer.image_ids() == []


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_import_from_url(importer, rootfs_tar):
    handler = functools.partial(QuietHandler, directory=str(rootfs_tar.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{rootfs_tar.name}"
        importer.run("import", url, "fromurl")
        missing = importer.run("import", url + ".missing", check=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert importer.run("run", "--rm", "fromurl", "echo", "downloaded").stdout == "downloaded\n"
    history = json.loads(importer.run("history", "--format", "{{json .}}", "--no-trunc", "fromurl").stdout.splitlines()[0])
    assert history["Comment"] == f"Imported from {url}"
    assert missing.returncode == 1
    assert "HTTP status 404" in missing.stderr
    assert not any(importer.root.joinpath("tmp").glob("build-download-*"))

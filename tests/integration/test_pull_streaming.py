"""``dockyard pull`` unpacks layers while they download: resumed, restarted and partial downloads.

The busybox layer is the only blob fetched in these tests: its config is put
into the content store first, so that the proxy's one cut lands in the layer.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import pytest

from dockyard.image.store import ContentStore
from tests.support.images import ImageSet
from tests.support.proxy import Proxy

pytestmark = pytest.mark.integration

BUSYBOX = Path("/bin/busybox")


def layout_blob(test_images: ImageSet, digest: str) -> bytes:
    return (test_images.layouts["busybox"] / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def store_config(dockyard, test_images: ImageSet) -> None:
    config = test_images.built["busybox"].config_digest
    assert config is not None
    ContentStore(dockyard.root).put(layout_blob(test_images, config), config)


def snapshot_busybox(dockyard, test_images: ImageSet) -> Path:
    chain_id = test_images.built["busybox"].diff_ids[0]
    return dockyard.root / "snapshots" / chain_id.split(":", 1)[1] / "fs" / "bin" / "busybox"


class RangeStripper:
    """A loopback TCP relay that removes the ``Range`` header from requests, as a registry that ignores it would."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.stripped = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        host, port = self.target.rsplit(":", 1)
        with client, socket.create_connection((host, int(port)), timeout=30) as upstream:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            kept = [line for line in lines if not line.lower().startswith(b"range:")]
            if len(kept) != len(lines):
                self.stripped += 1
            # One request per connection keeps the relay simple.
            kept = [line for line in kept if not line.lower().startswith(b"connection:")] + [b"Connection: close"]
            upstream.sendall(b"\r\n".join(kept) + b"\r\n\r\n" + rest)
            while data := upstream.recv(65536):
                client.sendall(data)

    def stop(self) -> None:
        self._listener.close()
        self._accepter.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


def test_pull_resumes_cut_layer_while_unpacking(dockyard, test_images: ImageSet):
    store_config(dockyard, test_images)
    layer = test_images.built["busybox"].layer_digests[0]
    proxy = Proxy(test_images.host, cut_after=200_000)
    try:
        reference = test_images.busybox.replace(test_images.host, proxy.host)
        dockyard.run("pull", reference)
        layer_gets = [r for r in proxy.requests if r.is_blob_get and layer in r.path]
        ranges = [r.headers.get("range") for r in layer_gets]
    finally:
        proxy.stop()
    assert proxy.cuts == 1
    assert ranges[0] is None
    assert ranges[1] is not None and ranges[1].startswith("bytes=")
    assert snapshot_busybox(dockyard, test_images).read_bytes() == BUSYBOX.read_bytes()
    assert dockyard.image_ids() == [test_images.built["busybox"].config_digest]


def test_pull_restarts_layer_when_range_is_ignored(dockyard, test_images: ImageSet):
    store_config(dockyard, test_images)
    built = test_images.built["busybox"]
    layer = built.layer_digests[0]
    blob = layout_blob(test_images, layer)
    # An earlier attempt left this much, so the pull requests the rest with a Range header.
    with ContentStore(dockyard.root).ingest(layer, len(blob)) as ingest:
        ingest.write(blob[:300_000])
    relay = RangeStripper(test_images.host)
    try:
        dockyard.run("pull", test_images.busybox.replace(test_images.host, relay.host))
    finally:
        relay.stop()
    assert relay.stripped == 1
    assert snapshot_busybox(dockyard, test_images).read_bytes() == BUSYBOX.read_bytes()
    stored = (dockyard.root / "blobs" / "sha256" / layer.split(":", 1)[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(stored).hexdigest() == layer
    assert dockyard.image_ids() == [built.config_digest]


def test_pull_rejects_wrong_partial_ingest(dockyard, test_images: ImageSet):
    store_config(dockyard, test_images)
    built = test_images.built["busybox"]
    layer = built.layer_digests[0]
    blob = layout_blob(test_images, layer)
    # Bytes kept from an earlier attempt that are not the blob's: the resumed download fails its digest check.
    with ContentStore(dockyard.root).ingest(layer, len(blob)) as ingest:
        ingest.write(bytes(300_000))
    result = dockyard.run("pull", test_images.busybox, check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert layer in errors[0]
    assert dockyard.image_ids() == []
    assert dockyard.snapshots() == set()
    assert layer not in dockyard.blobs()

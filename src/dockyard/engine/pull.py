"""Pulling an image: manifest, config and layers from a registry into the local stores.

Order of work, and why:

1. Fetch the manifest for the reference (the registry client tries mirrors
   first) and, for an index, the manifest for the requested platform.
2. Download the config and the missing layers in a thread pool of
   ``MAX_CONCURRENT_DOWNLOADS``. Each blob is verified against its digest when
   the ingest commits, and a per-digest file lock keeps two pulls from writing
   the same ingest file.
3. Unpack layers in order in the calling thread while they download: the
   unpacker reads each layer's ingest file as the download writes it (see
   ``_LayerFeed``), so download, decompression and unpacking overlap. A
   snapshot is renamed into place only after its layer's diff ID matched the
   config's ``rootfs.diff_ids`` and its blob's digest was verified. Otherwise
   the snapshot is discarded.
4. Record the image, its manifest digest and its tag in one transaction.

Nothing reaches the state database before step 4, so a failure leaves no image
or tag behind. The shared GC lock is held from step 1 to step 4, so garbage
collection cannot remove blobs or snapshots that are not recorded yet.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, cast

from dockyard.engine import locks
from dockyard.engine.images import ImageService, Progress, PullResult, directory_size
from dockyard.engine.state import ImageRecord, LayerRecord, ManifestRecord
from dockyard.errors import DigestMismatch, InvalidManifest, NoMatchingPlatform

if TYPE_CHECKING:
    from dockyard.image.manifest import Descriptor, Manifest
    from dockyard.image.reference import Reference

log = logging.getLogger(__name__)

MAX_CONCURRENT_DOWNLOADS = 4
# Emit an "Extracting" event at most once per this many bytes read from a layer.
EXTRACT_PROGRESS_STEP = 512 * 1024


def short(digest: str) -> str:
    """Return the 12-hex ID Docker's progress output uses for a layer."""
    return digest.split(":", 1)[-1][:12]


def platform_text(platform: Any) -> str:
    text = f"{platform.os}/{platform.architecture}"
    return f"{text}/{platform.variant}" if platform.variant else text


class Transfer:
    """Base of a pull or a push: the image service it works for, credentials and progress events."""

    def __init__(self, service: ImageService, progress: Progress, auth: dict[str, str] | None = None) -> None:
        self.service = service
        self.auth = auth
        self.store = service.store
        self.state = service.state
        self._progress = progress
        self._progress_lock = threading.Lock()

    def emit(self, status: str, layer: str | None = None, **detail: int) -> None:
        """Send one progress event; transfer threads call this too."""
        event: dict[str, Any] = {"status": status}
        if layer is not None:
            event["id"] = layer
        if detail:
            event["progressDetail"] = detail
        with self._progress_lock:
            self._progress(event)


class Puller(Transfer):
    def pull(self, name: str, platform: str | None) -> PullResult:
        from dockyard.image import manifest as manifests
        from dockyard.image import platform as platforms
        from dockyard.image import reference as references

        ref = references.parse(name)
        requested = platforms.parse(platform) if platform else platforms.host()
        client = self.service.registry_client(self.auth, ref.domain)

        with locks.gc_lock(self.service.root, exclusive=False):
            top = client.get_manifest(ref)
            document = manifests.parse(top.data, top.media_type)
            self.emit(f"Pulling from {ref.path}", ref.digest or ref.tag)
            self.store.put(top.data, top.digest)

            if isinstance(document, manifests.Index):
                try:
                    chosen = document.select(requested)
                except NoMatchingPlatform as error:
                    raise NoMatchingPlatform(
                        f"no matching manifest for {platform_text(requested)} in the manifest list entries of "
                        f"{ref.familiar()}"
                    ) from error
                fetched = client.get_manifest(ref.with_digest(chosen.digest))
                image_manifest = manifests.parse(fetched.data, fetched.media_type)
                if not isinstance(image_manifest, manifests.Manifest):
                    raise InvalidManifest(
                        f"{ref.familiar()}: index entry {chosen.digest} is {fetched.media_type}, not an image manifest"
                    )
                self.store.put(fetched.data, fetched.digest)
                manifest_digest, manifest_media_type = fetched.digest, fetched.media_type
            else:
                image_manifest = document
                manifest_digest, manifest_media_type = top.digest, top.media_type

            image_id, up_to_date = self._pull_image(client, ref, image_manifest, requested if platform else None,
                                                    [top.digest, manifest_digest],
                                                    ManifestRecord(ref.repository, top.digest, manifest_digest,
                                                                   manifest_media_type))

        self.emit(f"Digest: {top.digest}")
        shown = ref.familiar()
        if up_to_date:
            self.emit(f"Status: Image is up to date for {shown}")
        else:
            self.emit(f"Status: Downloaded newer image for {shown}")
        return PullResult(reference=str(ref), image_id=image_id, digest=top.digest, up_to_date=up_to_date)

    def _pull_image(
        self,
        client: Any,
        ref: "Reference",
        image_manifest: "Manifest",
        requested_platform: Any,
        manifest_blobs: list[str],
        manifest_record: ManifestRecord,
    ) -> tuple[str, bool]:
        from dockyard.image import layer as layers_module

        config_descriptor = image_manifest.config
        layer_descriptors = list(image_manifest.layers)
        tags = [str(ref)] if ref.digest is None else []
        sources = [(descriptor.digest, ref.repository) for descriptor in [config_descriptor, *layer_descriptors]]

        with ThreadPoolExecutor(max_workers=MAX_CONCURRENT_DOWNLOADS, thread_name_prefix="pull") as pool:
            config_future = pool.submit(self._download, client, ref, config_descriptor, None)
            try:
                config_bytes = self._wait(config_future)
                config = _parse_config(config_bytes, config_descriptor.digest)
                diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
                if len(diff_ids) != len(layer_descriptors):
                    raise InvalidManifest(
                        f"{ref.familiar()}: config {config_descriptor.digest} lists {len(diff_ids)} diff IDs "
                        f"but the manifest has {len(layer_descriptors)} layers"
                    )
                if requested_platform is not None:
                    self._check_platform(ref, config, requested_platform)
                chain_ids = layers_module.chain_ids(diff_ids)
                image_id = config_descriptor.digest

                existing = self.state.image(image_id)
                if existing is not None and all(self.service.snapshots.get(c) for c in chain_ids):
                    self.state.record_image(
                        existing, self.state.image_layers(image_id),
                        blobs=manifest_blobs, manifest=manifest_record, tags=tags, blob_sources=sources,
                    )
                    return image_id, True

                present = [self.service.snapshots.get(chain_id) is not None for chain_id in chain_ids]
                needed = [index for index, found in enumerate(present) if not found]
                for index, descriptor in enumerate(layer_descriptors):
                    self.emit("Already exists" if present[index] else "Pulling fs layer", short(descriptor.digest))
                for index in needed[MAX_CONCURRENT_DOWNLOADS:]:
                    self.emit("Waiting", short(layer_descriptors[index].digest))
                futures: list[Future | None] = [None] * len(layer_descriptors)
                feeds: list[_LayerFeed | None] = [None] * len(layer_descriptors)
                for index in needed:
                    descriptor = layer_descriptors[index]
                    feed = feeds[index] = _LayerFeed(descriptor.digest)
                    futures[index] = pool.submit(
                        self._download, client, ref, descriptor, short(descriptor.digest), feed
                    )

                try:
                    records = self._unpack_all(layer_descriptors, diff_ids, chain_ids, futures, feeds)
                finally:
                    for opened_feed in feeds:
                        if opened_feed is not None:
                            opened_feed.close()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

        image = ImageRecord(
            id=image_id,
            config=config_bytes,
            created=config.get("created"),
            size=sum(record.size for record in records),
            os=config.get("os", ""),
            architecture=config.get("architecture", ""),
            variant=config.get("variant"),
            manifest_digest=manifest_record.manifest_digest,
        )
        blobs = [*manifest_blobs, config_descriptor.digest, *(d.digest for d in layer_descriptors)]
        self.state.record_image(image, records, blobs=blobs, manifest=manifest_record, tags=tags, blob_sources=sources)
        log.debug("recorded image %s as %s", image_id, ref)
        return image_id, False

    @staticmethod
    def _wait(future: Future) -> Any:
        return future.result()

    def _check_platform(self, ref: "Reference", config: dict, requested: Any) -> None:
        from dockyard.image import platform as platforms

        actual = platforms.Platform(
            os=config.get("os", ""), architecture=config.get("architecture", ""), variant=config.get("variant")
        )
        if not requested.matches(actual):
            raise NoMatchingPlatform(
                f"image {ref.familiar()} is for {platform_text(actual)}, not the requested platform "
                f"{platform_text(requested)}"
            )

    def _download(
        self,
        client: Any,
        ref: "Reference",
        descriptor: "Descriptor",
        layer_id: str | None,
        feed: _LayerFeed | None = None,
    ) -> bytes | None:
        """Fetch one blob into the content store unless it is there; returns the data of a config.

        ``feed``, given for a layer, gets the blob's bytes as they are written,
        and its end only once the blob is committed, that is verified.
        """
        try:
            data = self._download_blob(client, ref, descriptor, layer_id, feed)
        except BaseException as error:
            if feed is not None:
                feed.finish(error)
            raise
        if feed is not None:
            feed.finish()
        return data

    def _download_blob(
        self,
        client: Any,
        ref: "Reference",
        descriptor: "Descriptor",
        layer_id: str | None,
        feed: _LayerFeed | None,
    ) -> bytes | None:
        digest = descriptor.digest
        with locks.blob_lock(self.service.root, digest):
            if not self.store.has(digest):
                total = descriptor.size

                with self.store.ingest(digest, descriptor.size) as ingest:

                    def report(current: int) -> None:
                        if feed is not None:
                            feed.advance(current, ingest.restarts)
                        if layer_id is not None:
                            self.emit("Downloading", layer_id, current=current, total=total)

                    if feed is not None:
                        feed.attach(ingest.dup_fd(), ingest.offset)
                    if layer_id is not None:
                        self.emit("Downloading", layer_id, current=ingest.offset, total=total)
                    client.fetch_blob(ref, descriptor, ingest, progress=report)
                if layer_id is not None:
                    self.emit("Verifying Checksum", layer_id)
            else:
                if feed is not None:
                    with self.store.open(digest) as blob:
                        fd = os.dup(blob.fileno())
                    feed.attach(fd, os.fstat(fd).st_size)
                if layer_id is not None:
                    log.debug("blob %s is already in the content store", digest)
        if layer_id is not None:
            self.emit("Download complete", layer_id)
            return None
        return self.store.read(digest)

    def _unpack_all(
        self,
        descriptors: list["Descriptor"],
        diff_ids: list[str],
        chain_ids: list[str],
        futures: list[Future | None],
        feeds: list[_LayerFeed | None],
    ) -> list[LayerRecord]:
        records = []
        parent: str | None = None
        for index, descriptor in enumerate(descriptors):
            chain_id = chain_ids[index]
            future = futures[index]
            feed = feeds[index]
            if future is None or feed is None:
                size = self._existing_size(chain_id)
            else:
                size = self._unpack_streamed(descriptor, diff_ids[index], chain_id, parent, future, feed)
                self.emit("Pull complete", short(descriptor.digest))
            records.append(LayerRecord(
                chain_id=chain_id,
                diff_id=diff_ids[index],
                parent=parent,
                blob_digest=descriptor.digest,
                media_type=descriptor.media_type,
                blob_size=descriptor.size,
                size=size,
            ))
            parent = chain_id
        return records

    def _existing_size(self, chain_id: str) -> int:
        return existing_layer_size(self.service, chain_id)

    def _unpack_streamed(
        self,
        descriptor: "Descriptor",
        diff_id: str,
        chain_id: str,
        parent: str | None,
        future: Future,
        feed: _LayerFeed,
    ) -> int:
        """Unpack a layer from its download as it arrives; from the content store if the download starts over."""
        try:
            size = unpack_layer(
                self.service, descriptor, diff_id, chain_id, parent, self.emit,
                open_blob=lambda: feed, verified=future.result,
            )
        except _FeedInterrupted:
            # Raises the download's own error, if it failed.
            future.result()
        except Exception as error:
            # Bytes that fail to unpack may be bytes that fail the digest check
            # too, and the download's error then names the cause.
            download_error = future.exception()
            if download_error is not None and download_error is not error:
                raise download_error from error
            raise
        else:
            # Also when another pull made the snapshot first, so that this one's fill did not run.
            future.result()
            return size
        log.debug("download of %s started over while unpacking it; unpacking it from the content store", descriptor.digest)
        return unpack_layer(self.service, descriptor, diff_id, chain_id, parent, self.emit)


def existing_layer_size(service: ImageService, chain_id: str) -> int:
    """Return the unpacked size of a snapshot that exists: from its layer record, else by walking it."""
    record = service.state.layer(chain_id)
    if record is not None:
        return record.size
    path = service.snapshots.get(chain_id)
    return directory_size(path) if path is not None else 0


def unpack_layer(
    service: ImageService,
    descriptor: "Descriptor",
    diff_id: str,
    chain_id: str,
    parent: str | None,
    emit: Any,
    open_blob: Callable[[], Any] | None = None,
    verified: Callable[[], Any] | None = None,
) -> int:
    """Unpack a layer blob into the snapshot ``chain_id``; returns its unpacked size.

    The blob comes from the content store, or from ``open_blob`` when it is
    given. The diff ID is checked inside the snapshot's fill function, and
    then ``verified`` is called, which must raise unless the blob passed its
    digest check. So a layer whose content does not match the config or the
    manifest never becomes a snapshot.
    """
    from dockyard.image import layer as layers_module

    layer_id = short(descriptor.digest)
    sizes: list[int] = []

    def fill(target: Path, lowers: list[Path]) -> None:
        opened = open_blob() if open_blob is not None else service.store.open(descriptor.digest)
        with opened as blob:
            counted = _CountingReader(blob, lambda n: emit("Extracting", layer_id, current=n, total=descriptor.size))
            stream = layers_module.decompressed(cast(BinaryIO, counted), descriptor.media_type, prefetch=True)
            try:
                result = layers_module.apply(stream, target, descriptor.digest, lowers)
            finally:
                stream.close()
        if result.diff_id != diff_id:
            raise DigestMismatch(f"layer {descriptor.digest} (uncompressed)", diff_id, result.diff_id)
        if verified is not None:
            verified()
        sizes.append(result.size)

    emit("Extracting", layer_id, current=0, total=descriptor.size)
    service.snapshots.create(chain_id, parent, fill)
    log.debug("unpacked layer %s into snapshot %s", descriptor.digest, chain_id)
    # A concurrent pull may have created the snapshot first; fill then never ran here.
    return sizes[0] if sizes else existing_layer_size(service, chain_id)


class _CountingReader:
    """A read-only file wrapper that reports how many bytes were read, every ``EXTRACT_PROGRESS_STEP``."""

    def __init__(self, raw: BinaryIO, report: Any) -> None:
        self.raw = raw
        self.report = report
        self.count = 0
        self._next_report = EXTRACT_PROGRESS_STEP

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        if self.count >= self._next_report:
            self.report(self.count)
            self._next_report = self.count + EXTRACT_PROGRESS_STEP
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False


class _FeedInterrupted(Exception):
    """The download under a ``_LayerFeed`` failed or started over, so its bytes cannot be read on."""


class _LayerFeed:
    """A layer blob as its download writes it, for unpacking while it downloads.

    The download thread calls ``attach`` with a descriptor of the ingest file
    (or of the blob, when it is already stored), ``advance`` after each chunk
    and ``finish`` at the end. ``read`` waits until bytes past the reader's
    position are on disk. It returns end of file only after ``finish`` without
    an error, which the download calls after the content store committed the
    blob, that is after its digest was verified. When the download fails, or
    discards what it wrote to start over, ``read`` raises _FeedInterrupted.
    """

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self._condition = threading.Condition()
        self._fd = -1
        self._written = 0
        self._restarts = 0
        self._position = 0
        self._finished = False
        self._error: BaseException | None = None
        self._closed = False

    def attach(self, fd: int, written: int) -> None:
        with self._condition:
            if self._closed or self._fd >= 0:
                os.close(fd)
                return
            self._fd = fd
            self._written = written
            self._condition.notify_all()

    def advance(self, written: int, restarts: int) -> None:
        with self._condition:
            if restarts != self._restarts:
                self._restarts = restarts
                if self._position:
                    self._error = _FeedInterrupted(f"download of {self.digest} started over")
            self._written = written
            self._condition.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self._condition:
            self._finished = True
            if error is not None and self._error is None:
                self._error = _FeedInterrupted(f"download of {self.digest} failed: {error}")
            self._condition.notify_all()

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        with self._condition:
            while True:
                if self._closed:
                    raise ValueError(f"read from the closed download feed of {self.digest}")
                if self._error is not None:
                    raise self._error
                if self._fd >= 0 and (self._position < self._written or self._finished):
                    break
                if self._finished:  # failed before it had a file to attach
                    raise _FeedInterrupted(f"download of {self.digest} ended without data")
                self._condition.wait()
            available = self._written - self._position
            if available <= 0:
                return b""
            count = available if size is None or size < 0 else min(size, available)
            # Read under the lock, so that close cannot close the fd in between.
            data = os.pread(self._fd, count, self._position)
            if not data:
                # The file became shorter than what was reported written: a reset raced this read.
                self._error = _FeedInterrupted(f"download of {self.digest} started over")
                raise self._error
            self._position += len(data)
            return data

    def close(self) -> None:
        with self._condition:
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._condition.notify_all()

    def __enter__(self) -> _LayerFeed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Left open here, because Puller closes every feed after the unpack.
        pass


def _parse_config(data: bytes, digest: str) -> dict:
    try:
        config = json.loads(data)
    except ValueError as error:
        raise InvalidManifest(f"image config {digest} is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise InvalidManifest(f"image config {digest} is not a JSON object")
    return config

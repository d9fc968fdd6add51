"""Pushing a local tag to its registry: layers, then the config, then the manifest.

For each blob the registry is asked first (HEAD) and a blob it has is
skipped. A blob that was pulled from, or pushed to, another repository of the
same registry is mounted from there (a cross-repository mount), which costs
one request instead of an upload. Everything else is uploaded. The manifest
goes last, because a registry rejects a manifest whose blobs it lacks.

The manifest pushed is the one the image was pulled or loaded as, when its
blobs are all in the content store, so the digest stays the same
(``ImageService.manifest_for``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dockyard.engine.images import PushResult
from dockyard.engine.pull import Transfer, short
from dockyard.engine.state import ManifestRecord
from dockyard.errors import ImageNotFound

if TYPE_CHECKING:
    from dockyard.image.manifest import Descriptor
    from dockyard.image.reference import Reference

log = logging.getLogger(__name__)


class Pusher(Transfer):
    def push(self, name: str) -> PushResult:
        from dockyard.engine import locks
        from dockyard.image import reference as references

        ref = references.parse(name)
        image_id = self.service._lookup_reference(ref)
        if image_id is None:
            raise ImageNotFound(f"{ref.familiar()} (an image does not exist locally with this tag)")
        client = self.service.registry_client(self.auth, ref.domain)

        # Shared GC lock: a concurrent rmi must not delete the blobs being read.
        with locks.gc_lock(self.service.root, exclusive=False):
            self.emit(f"The push refers to repository [{ref.repository}]")
            _, data, media_type, config, layers = self.service.manifest_for(image_id, ref.familiar())

            for descriptor in layers:
                self.emit("Preparing", short(descriptor.digest))
            for descriptor in layers:
                self._push_blob(client, ref, descriptor, short(descriptor.digest))
            self._push_blob(client, ref, config, None)

            digest = client.put_manifest(ref, data, media_type)
            sources = [(d.digest, ref.repository) for d in [config, *layers]]
            self.state.record_manifest(image_id, ManifestRecord(ref.repository, digest, digest, media_type), sources)
        self.emit(f"{ref.tag or ref.digest}: digest: {digest} size: {len(data)}")
        return PushResult(reference=str(ref), digest=digest, size=len(data))

    def _push_blob(self, client: Any, ref: "Reference", descriptor: "Descriptor", layer_id: str | None) -> None:
        from dockyard.image import reference as references

        digest = descriptor.digest
        if client.has_blob(ref, digest):
            if layer_id:
                self.emit("Layer already exists", layer_id)
            return
        for source in self.state.blob_sources(digest):
            source_ref = references.parse(source)
            if source_ref.domain != ref.domain or source_ref.repository == ref.repository:
                continue
            if client.mount_blob(ref, digest, source_ref):
                log.debug("mounted blob %s from %s into %s", digest, source, ref.repository)
                if layer_id:
                    self.emit(f"Mounted from {source_ref.path}", layer_id)
                return

        def report(current: int) -> None:
            if layer_id:
                self.emit("Pushing", layer_id, current=current, total=descriptor.size)

        if layer_id:
            self.emit("Pushing", layer_id, current=0, total=descriptor.size)
        client.upload_blob(ref, descriptor, lambda: self.store.open(digest), progress=report)
        if layer_id:
            self.emit("Pushed", layer_id)

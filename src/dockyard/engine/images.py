"""The image service: pull, push, list, inspect, history, tag, remove, prune, save and load.

The service ties the content store (blobs), the snapshot store (unpacked
layers) and the state database (images, tags, layers) together. Blobs and
snapshots are written first and the state database last, in one transaction,
so an operation that fails partway records nothing. At worst it leaves
complete, verified blobs and snapshots, which the next garbage collection
removes, and partial downloads in ``ingest/``, which the next pull resumes.

Pulling and pushing live in ``pull.py`` and ``push.py``; this module holds
the service object, name resolution and the local operations.
"""

from __future__ import annotations

import builtins
import fnmatch
import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Sequence

from dockyard.engine import locks
from dockyard.engine.state import State
from dockyard.errors import Conflict, ImageNotFound, InvalidArgument, InvalidReference, StoreError

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.image.manifest import Descriptor
    from dockyard.image.reference import Reference
    from dockyard.image.store import ContentStore
    from dockyard.storage.snapshots import SnapshotStore

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]

# The ``LastTagTime`` Docker reports for an image that was never tagged locally.
ZERO_TIME = "0001-01-01T00:00:00Z"

# Keys of the Engine API's ``ImageConfig``, in the order the API documents them.
IMAGE_CONFIG_KEYS = (
    "User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Volumes",
    "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell",
)

SUPPORTED_FILTERS = ("dangling", "reference", "label", "before", "since")


@dataclass(frozen=True)
class PullResult:
    reference: str       # the full reference pulled: "docker.io/library/busybox:latest"
    image_id: str
    digest: str          # of the manifest or index the reference resolved to
    up_to_date: bool


@dataclass(frozen=True)
class PushResult:
    reference: str
    digest: str
    size: int


@dataclass(frozen=True)
class PruneResult:
    deleted: list[dict]  # {"Untagged": ...} and {"Deleted": ...} entries, as the Engine API returns them
    space_reclaimed: int


def no_progress(event: dict) -> None:
    """Ignore a progress event."""


class ImageService:
    """Images in one dockyard root; reached as ``Engine(config).images``."""

    def __init__(self, config: "Config", state: State) -> None:
        self.config = config
        self.root: Path = config.root
        self.state = state

    @cached_property
    def store(self) -> "ContentStore":
        from dockyard.image.store import ContentStore

        return ContentStore(self.root)

    @cached_property
    def snapshots(self) -> "SnapshotStore":
        from dockyard.storage.snapshots import SnapshotStore

        return SnapshotStore(self.root)

    def registry_client(self, auth: dict[str, str] | None = None, domain: str | None = None) -> Any:
        """Return a registry client; ``auth`` (the API's X-Registry-Auth for ``domain``) replaces the stored credentials."""
        from dockyard.registry.client import RegistryClient
        from dockyard.registry.credentials import Credentials

        credentials = Credentials.load()
        if auth:
            # Kept in memory only: the client reads credentials and never stores them.
            server = auth.get("serveraddress") or domain or "docker.io"
            if auth.get("identitytoken"):
                entry = {"identitytoken": auth["identitytoken"]}
            else:
                entry = {"username": auth.get("username", ""), "password": auth.get("password", "")}
            credentials = Credentials(credentials.path, {"auths": {server: entry}})
        return RegistryClient(self.config, credentials)

    # -- transfers ------------------------------------------------------------

    def pull(self, name: str, platform: str | None = None, progress: Progress | None = None,
             auth: dict[str, str] | None = None) -> PullResult:
        """Pull an image from its registry (mirrors first) and record it under ``name``.

        ``auth`` has the keys of the API's X-Registry-Auth (username, password,
        serveraddress, identitytoken) and replaces the stored credentials.
        """
        from dockyard.engine.pull import Puller

        return Puller(self, progress or no_progress, auth).pull(name, platform)

    def pull_all_tags(self, name: str, platform: str | None = None,
                      progress: Progress | None = None) -> builtins.list[PullResult]:
        """Pull every tag that the registry lists for the repository ``name`` (``pull --all-tags``).

        ``name`` must carry no tag or digest. The tags are pulled one after the
        other, in the registry's order. The per-tag ``Status:`` lines are
        replaced by one for the whole repository at the end, as Docker prints it.
        """
        from dockyard.engine.pull import Puller
        from dockyard.image import reference as references

        ref = _name_only(name, "pull")
        client = self.registry_client()
        try:
            tags = client.list_tags(ref)
        finally:
            client.close()
        if not tags:
            raise ImageNotFound(f"{ref.familiar_repository()} (the registry lists no tags for this repository)")
        forward = progress or no_progress

        def without_status(event: dict) -> None:
            if not str(event.get("status", "")).startswith("Status: "):
                forward(event)

        results = []
        for tag in tags:
            try:
                tagged = ref.with_tag(tag)
            except InvalidReference:
                log.warning("skipping tag %r of %s: not a valid tag", tag, ref.repository)
                continue
            results.append(Puller(self, without_status).pull(str(tagged), platform))
        shown = references.parse(ref.repository).familiar_repository()
        if all(result.up_to_date for result in results):
            forward({"status": f"Status: Image is up to date for {shown}"})
        else:
            forward({"status": f"Status: Downloaded newer image for {shown}"})
        return results

    def push(self, name: str, progress: Progress | None = None, auth: dict[str, str] | None = None) -> PushResult:
        """Push a local tag to its registry, skipping or mounting blobs the registry has; ``auth`` as for ``pull``."""
        from dockyard.engine.push import Pusher

        return Pusher(self, progress or no_progress, auth).push(name)

    def push_all_tags(self, name: str, progress: Progress | None = None) -> builtins.list[PushResult]:
        """Push every local tag of the repository ``name`` (``push --all-tags``), in tag order.

        ``name`` must carry no tag or digest. The ``The push refers to
        repository`` line is sent once, not once per tag.
        """
        from dockyard.engine.push import Pusher
        from dockyard.image import reference as references

        ref = _name_only(name, "push")
        tags = [tag for tag, _ in self.state.tags() if references.parse(tag).repository == ref.repository]
        if not tags:
            raise ImageNotFound(f"{ref.familiar_repository()} (no local image is tagged in this repository)")
        forward = progress or no_progress
        announced = False

        def announce_once(event: dict) -> None:
            nonlocal announced
            if str(event.get("status", "")).startswith("The push refers to repository"):
                if announced:
                    return
                announced = True
            forward(event)

        return [Pusher(self, announce_once).push(tag) for tag in tags]

    def login(self, server: str, user: str, password: str) -> str:
        """Check the credentials against the registry and store them; returns the registry's domain."""
        from dockyard import registry

        return registry.login(self.config, server, user, password)

    def check_login(self, server: str, user: str, password: str) -> str:
        """Check the credentials against the registry without storing them (the API's ``/auth``); returns its domain."""
        from dockyard.registry.login import check

        return check(self.config, server, user, password)

    def unencrypted_credentials_path(self, server: str) -> Path | None:
        """Return the ``config.json`` that keeps ``server``'s password base64-encoded, or None when a credential helper keeps it."""
        from dockyard.registry.credentials import Credentials

        credentials = Credentials.load()
        if credentials.helper_for(server) is not None:
            return None
        return credentials.path

    def logout(self, server: str) -> bool:
        """Erase the stored credentials for a registry; returns whether there were any."""
        from dockyard import registry

        return registry.logout(server)

    # -- name resolution --------------------------------------------------------

    def resolve(self, name: str) -> str:
        """Return the image ID for a full or short ID, ``name``, ``name:tag`` or ``name@digest``.

        A name is tried as a reference first and then as a short ID, because a
        short hex string such as ``cafe`` is also a valid repository name.
        Raises ImageNotFound, or InvalidArgument for a short ID that matches
        more than one image.
        """
        from dockyard.image import reference as references

        bare = name.removeprefix("sha256:")
        if name.startswith("sha256:") or (len(bare) == 64 and references.looks_like_image_id(bare)):
            return self._resolve_id(name, bare)
        try:
            ref = references.parse(name)
        except InvalidReference:
            if references.looks_like_image_id(name):
                return self._resolve_id(name, bare)
            raise
        found = self._lookup_reference(ref)
        if found is not None:
            return found
        if references.looks_like_image_id(name):
            try:
                return self._resolve_id(name, bare)
            except ImageNotFound:
                pass
        # Docker names the reference with its default tag filled in: "No such image: busybox:latest".
        raise ImageNotFound(ref.familiar())

    def _lookup_reference(self, ref: "Reference") -> str | None:
        if ref.digest is not None:
            return self.state.image_for_digest(ref.repository, ref.digest)
        return self.state.image_for_tag(str(ref))

    def _resolve_id(self, name: str, hex_prefix: str) -> str:
        matches = self.state.image_ids_with_prefix(hex_prefix.lower())
        if not matches:
            raise ImageNotFound(name)
        if len(matches) > 1:
            raise InvalidArgument(f"short image ID {name!r} is ambiguous: it matches {len(matches)} images")
        return matches[0]

    # -- queries -------------------------------------------------------------

    def repo_tags(self, image_id: str) -> builtins.list[str]:
        from dockyard.image import reference as references

        return [references.parse(tag).familiar() for tag, _ in self.state.tags(image_id)]

    def repo_digests(self, image_id: str) -> builtins.list[str]:
        from dockyard.image import reference as references

        result = []
        for manifest in self.state.manifests(image_id):
            repository = references.parse(manifest.repository).familiar_repository()
            result.append(f"{repository}@{manifest.digest}")
        return result

    def list(self, all: bool = False, filters: dict[str, builtins.list[str]] | None = None) -> builtins.list[dict]:
        """Return ``ImageSummary`` dicts, newest first, matching every filter.

        ``all`` would add intermediate build images; dockyard stores none, so
        the list is the same either way.
        """
        from dockyard.cli.render import parse_timestamp

        filters = {key: list(values) for key, values in (filters or {}).items()}
        for key in filters:
            if key not in SUPPORTED_FILTERS:
                raise InvalidArgument(
                    f"invalid filter '{key}': supported filters are {', '.join(SUPPORTED_FILTERS)}"
                )
        before = self._created_bound(filters.get("before"))
        since = self._created_bound(filters.get("since"))
        summaries = []
        for image in self.state.images():
            config = json.loads(image.config)
            created = parse_timestamp(image.created)
            tags = self.repo_tags(image.id)
            if not _matches_dangling(filters.get("dangling"), tags):
                continue
            if "reference" in filters:
                tags = [tag for tag in tags if _matches_reference(filters["reference"], tag)]
                if not tags:
                    continue
            labels = (config.get("config") or {}).get("Labels") or {}
            if not _matches_labels(filters.get("label"), labels):
                continue
            if before is not None and (created or 0) >= before:
                continue
            if since is not None and (created or 0) <= since:
                continue
            summaries.append({
                "Id": image.id,
                "ParentId": "",
                "RepoTags": tags,
                "RepoDigests": self.repo_digests(image.id),
                "Created": int(created or 0),
                "Size": image.size,
                "SharedSize": -1,
                "Labels": labels,
                "Containers": len(self.state.containers_using(image.id)),
            })
        return summaries

    def _created_bound(self, values: builtins.list[str] | None) -> float | None:
        from dockyard.cli.render import parse_timestamp

        if not values:
            return None
        image = self.state.image(self.resolve(values[-1]))
        assert image is not None
        return parse_timestamp(image.created) or 0.0

    def inspect(self, name: str) -> dict:
        """Return the image in the Engine API's ``ImageInspect`` shape."""
        image_id = self.resolve(name)
        image = self.state.image(image_id)
        if image is None:
            raise ImageNotFound(name)
        config = json.loads(image.config)
        container_config = config.get("config") or {}
        layers = self.state.image_layers(image_id)
        lowers = ":".join(str(self.root / "snapshots" / _hex(layer.chain_id) / "fs") for layer in reversed(layers))

        result: dict[str, Any] = {
            "Id": image.id,
            "RepoTags": self.repo_tags(image_id),
            "RepoDigests": self.repo_digests(image_id),
            "Parent": "",
            "Comment": config.get("comment", ""),
            "Created": image.created,
            "DockerVersion": config.get("docker_version", ""),
            "Author": config.get("author", ""),
            "Config": {key: container_config[key] for key in IMAGE_CONFIG_KEYS if key in container_config},
            "Architecture": image.architecture,
            "Os": image.os,
            "Size": image.size,
            "GraphDriver": {"Name": "overlayfs", "Data": {"LowerDir": lowers} if lowers else None},
            "RootFS": {"Type": "layers", "Layers": list((config.get("rootfs") or {}).get("diff_ids") or [])},
            "Metadata": {"LastTagTime": ZERO_TIME},
        }

        if image.variant:
            result["Variant"] = image.variant
        if config.get("os.version"):
            result["OsVersion"] = config["os.version"]
        return result

    def history(self, name: str) -> builtins.list[dict]:
        """Return the image's history, newest first, in the shape of the Engine API's history items.

        Entries that created a layer get that layer's size. Only the newest
        entry carries the image ID; the others are ``<missing>``, as in Docker
        for pulled images, whose intermediate images do not exist locally.
        """
        from dockyard.cli.render import parse_timestamp

        image_id = self.resolve(name)
        image = self.state.image(image_id)
        assert image is not None
        config = json.loads(image.config)
        layers = self.state.image_layers(image_id)
        history = config.get("history") or [{"created": config.get("created")} for _ in layers]
        sizes = iter(layer.size for layer in layers)
        items = []
        for entry in history:
            size = 0 if entry.get("empty_layer") else next(sizes, 0)
            items.append({
                "Id": "<missing>",
                "Created": int(parse_timestamp(entry.get("created")) or 0),
                "CreatedBy": entry.get("created_by", ""),
                "Tags": None,
                "Size": size,
                "Comment": entry.get("comment", ""),
            })
        items.reverse()
        if items:
            items[0]["Id"] = image_id
            items[0]["Tags"] = self.repo_tags(image_id) or None
        return items

    # -- tags and removal ----------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        """Point the tag ``target`` at the image ``source`` names."""
        from dockyard.image import reference as references

        image_id = self.resolve(source)
        ref = references.parse_repository(target)
        self.state.set_tag(str(ref), image_id)
        log.debug("tagged %s as %s", image_id, ref)

    def remove(self, name: str, force: bool = False) -> builtins.list[dict]:
        """Remove a tag, and the image once no tag is left; then drop what nothing uses.

        Returns ``{"Untagged": ...}`` and ``{"Deleted": ...}`` entries in the
        order Docker prints them. Raises Conflict for an image that a
        container uses, or, given by ID, that is tagged in more than one
        repository, unless ``force``.
        """
        from dockyard.image import reference as references

        image_id = self.resolve(name)
        ref = None
        if not name.startswith("sha256:"):
            try:
                ref = references.parse(name)
            except InvalidReference:
                ref = None
            if ref is not None and self._lookup_reference(ref) != image_id:
                ref = None  # the name matched as a short ID, not as a reference
        containers = self.state.containers_using(image_id)
        short = _hex(image_id)[:12]
        entries: builtins.list[dict] = []

        if ref is not None:
            if containers and not force:
                raise Conflict(
                    f'conflict: unable to remove repository reference "{name}" (must force) - '
                    f"container {containers[0][:12]} is using its referenced image {short}"
                )
            entries += self._untag(image_id, ref)
            if self.state.tags(image_id) or containers:
                return entries
        else:
            tags = self.state.tags(image_id)
            repositories = {references.parse(tag).repository for tag, _ in tags}
            if len(repositories) > 1 and not force:
                raise Conflict(
                    f"conflict: unable to delete {short} (must be forced) - "
                    "image is referenced in multiple repositories"
                )
            if containers and not force:
                raise Conflict(
                    f"conflict: unable to delete {short} (must be forced) - "
                    f"image is being used by container {containers[0][:12]}"
                )
            for tag, _ in tags:
                entries += self._untag(image_id, references.parse(tag))
            if containers:
                # Forced while a container uses it: keep the image for the container, untagged.
                return entries

        entries += self._untag_digests(image_id)
        entries += self._delete(image_id)
        return entries

    def _untag(self, image_id: str, ref: "Reference") -> builtins.list[dict]:
        if ref.digest is not None:
            known = [
                manifest for manifest in self.state.manifests(image_id)
                if manifest.repository == ref.repository and ref.digest in (manifest.digest, manifest.manifest_digest)
            ]
            if not known:
                return []
            self.state.remove_manifest(ref.repository, ref.digest)
            return [{"Untagged": ref.familiar()}]
        self.state.remove_tag(str(ref))
        return [{"Untagged": ref.familiar()}]

    def _untag_digests(self, image_id: str) -> builtins.list[dict]:
        from dockyard.image import reference as references

        entries = []
        for manifest in self.state.manifests(image_id):
            familiar = references.parse(manifest.repository).familiar_repository()
            entries.append({"Untagged": f"{familiar}@{manifest.digest}"})
        return entries

    def _delete(self, image_id: str) -> builtins.list[dict]:
        """Delete the image record, then collect the layers and blobs no image uses any more."""
        self.state.delete_image(image_id)
        log.debug("deleted image %s", image_id)
        removed_layers, _ = self.collect_garbage()
        return [{"Deleted": image_id}] + [{"Deleted": chain_id} for chain_id in removed_layers]

    def collect_garbage(self) -> tuple[builtins.list[str], int]:
        """Remove snapshots and blobs that no recorded image uses; returns the removed chain IDs and bytes freed.

        Holds the exclusive GC lock, so it waits for pulls and loads in
        progress, whose blobs and snapshots are not recorded yet.
        """
        freed = 0
        removed: builtins.list[str] = []
        with locks.gc_lock(self.root, exclusive=True):
            for chain_id in self.state.unused_layers():
                layer = self.state.layer(chain_id)
                self.snapshots.remove(chain_id)
                self.state.delete_layer(chain_id)
                freed += layer.size if layer else 0
                removed.append(chain_id)
                log.debug("removed snapshot %s", chain_id)
            used_chain_ids = self.state.used_chain_ids()
            for chain_id in list(self.snapshots.chain_ids()):
                if chain_id not in used_chain_ids:
                    # Left by a pull that failed after unpacking: nothing records it.
                    self.snapshots.remove(chain_id)
                    log.debug("removed unrecorded snapshot %s", chain_id)
            used_blobs = self.state.used_blobs()
            deleted_blobs = []
            for digest in list(self.store.digests()):
                if digest in used_blobs:
                    continue
                try:
                    freed += self.store.path(digest).stat().st_size
                except OSError:
                    pass
                self.store.delete(digest)
                deleted_blobs.append(digest)
                log.debug("deleted blob %s", digest)
            if deleted_blobs:
                self.state.forget_blob_sources(deleted_blobs)
            # Blob locks remove their own files; this removes those left by a process that crashed.
            locks.remove_unused_blob_locks(self.root)
        return removed, freed

    def prune(self, all: bool = False) -> PruneResult:
        """Remove dangling images (no tag), or with ``all`` every image no container uses."""
        deleted: builtins.list[dict] = []
        for image in self.state.images():
            if self.state.containers_using(image.id):
                continue
            tags = self.state.tags(image.id)
            if tags and not all:
                continue
            from dockyard.image import reference as references

            for tag, _ in tags:
                deleted += self._untag(image.id, references.parse(tag))
            deleted += self._untag_digests(image.id)
            self.state.delete_image(image.id)
            deleted.append({"Deleted": image.id})
        removed_layers, freed = self.collect_garbage()
        deleted += [{"Deleted": chain_id} for chain_id in removed_layers]
        return PruneResult(deleted=deleted, space_reclaimed=freed)

    def manifest_for(self, image_id: str, purpose: str) -> tuple[str, bytes, str, "Descriptor", builtins.list["Descriptor"]]:
        """Return the digest, bytes, media type, config and layer descriptors of a manifest for the image.

        The manifest the image was pulled or loaded as is used when it and all
        its blobs are in the content store, so that its digest stays the same.
        Otherwise an OCI manifest is built from the layer blobs and stored.
        ``purpose`` names the operation in errors, such as ``push busybox:latest``.
        """
        from dockyard.image import manifest as manifests

        image = self.state.image(image_id)
        if image is None:
            raise ImageNotFound(image_id)
        candidates = [image.manifest_digest] + [m.manifest_digest for m in self.state.manifests(image_id)]
        for digest in dict.fromkeys(candidate for candidate in candidates if candidate):
            if not self.store.has(digest):
                continue
            data = self.store.read(digest)
            parsed = manifests.parse(data)
            if not isinstance(parsed, manifests.Manifest) or parsed.config.digest != image_id:
                continue
            if all(self.store.has(descriptor.digest) for descriptor in [parsed.config, *parsed.layers]):
                return digest, data, parsed.media_type, parsed.config, list(parsed.layers)
        return self._build_manifest(image, purpose)

    def _build_manifest(self, image: Any, purpose: str) -> tuple[str, bytes, str, "Descriptor", builtins.list["Descriptor"]]:
        from dockyard.image import mediatypes
        from dockyard.image.manifest import Descriptor, Manifest

        if not self.store.has(image.id):
            self.store.put(image.config, image.id)
        config = Descriptor(mediatypes.OCI_CONFIG, image.id, len(image.config))
        layers = []
        for layer in self.state.image_layers(image.id):
            if layer.blob_digest is None or not self.store.has(layer.blob_digest):
                raise StoreError(
                    f"cannot {purpose}: the blob of layer {layer.diff_id} is not in the local content store; "
                    "pull the image again and retry"
                )
            media_type = layer.media_type or mediatypes.OCI_LAYER_TAR
            size = layer.blob_size
            if size is None:
                size = self.store.path(layer.blob_digest).stat().st_size
            layers.append(Descriptor(media_type, layer.blob_digest, size))
        built = Manifest(mediatypes.OCI_MANIFEST, config, layers)
        data = built.encode()
        digest = self.store.put(data)
        self.state.add_image_blobs(image.id, [digest, image.id])
        log.debug("built manifest %s for image %s", digest, image.id)
        return digest, data, mediatypes.OCI_MANIFEST, config, layers

    # -- archives ------------------------------------------------------------

    def save(self, names: Sequence[str], out: BinaryIO) -> None:
        """Write the images as one docker-archive tar (which is also an OCI image layout) to ``out``."""
        from dockyard.engine.archives import save

        save(self, names, out)

    def load(self, fileobj: BinaryIO, progress: Progress | None = None) -> builtins.list[str]:
        """Load the images of a docker-archive or OCI-layout tar; returns the names loaded."""
        from dockyard.engine.archives import load

        return load(self, fileobj, progress or no_progress)


def _name_only(name: str, command: str) -> "Reference":
    """Parse ``name`` for ``--all-tags``, which takes a repository without a tag or digest."""
    from dockyard.image import reference as references

    if not references.is_name_only(name):
        raise InvalidArgument(f"{command} --all-tags takes a repository name without a tag or digest, not {name!r}")
    return references.parse(name).without_tag_or_digest()


def _hex(digest: str) -> str:
    return digest.split(":", 1)[-1]


def _matches_dangling(values: list[str] | None, tags: list[str]) -> bool:
    if not values:
        return True
    wanted = values[-1].lower()
    if wanted not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"invalid filter 'dangling={values[-1]}': use true or false")
    return (not tags) == (wanted in ("true", "1"))


def _matches_reference(patterns: list[str], familiar_tag: str) -> bool:
    repository = familiar_tag.rsplit(":", 1)[0] if ":" in familiar_tag.rsplit("/", 1)[-1] else familiar_tag
    for pattern in patterns:
        if ":" in pattern.rsplit("/", 1)[-1]:
            if fnmatch.fnmatchcase(familiar_tag, pattern):
                return True
        elif fnmatch.fnmatchcase(repository, pattern):
            return True
    return False


def _matches_labels(values: list[str] | None, labels: dict) -> bool:
    for value in values or []:
        key, equals, expected = value.partition("=")
        if key not in labels:
            return False
        if equals and labels[key] != expected:
            return False
    return True


def directory_size(path: Path) -> int:
    """Return the bytes of the regular files under ``path``, each hardlinked inode counted once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += info.st_size
    return total

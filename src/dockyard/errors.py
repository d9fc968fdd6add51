"""The exception tree of dockyard.

Library code raises these and never prints. The CLI turns them into one line on
stderr and an exit code (``cli/main.py``); the API server maps them to HTTP
statuses. Every message names the value that failed (a reference, digest, path
or option) and, where there is one, what to do next.

    DockyardError
    ├── InvalidArgument            bad user input: a flag value, a spec string
    ├── NotFound                   base for "no such ..." errors (HTTP 404)
    ├── Conflict                   name in use, image in use (HTTP 409)
    ├── ImageError
    │   ├── InvalidReference
    │   ├── ImageNotFound (also NotFound)
    │   ├── NoMatchingPlatform
    │   ├── InvalidManifest
    │   ├── DigestMismatch
    │   ├── UnsafeLayer            a layer member escaping its snapshot
    │   └── ArchiveError           save/load archives
    ├── RegistryError
    │   ├── RegistryUnreachable
    │   ├── Unauthorized
    │   └── ManifestUnknown (also NotFound)
    ├── StoreError                 the local store (disk full, corrupt)
    ├── ContainerError
    │   ├── ContainerNotFound (also NotFound)
    │   └── VolumeNotFound (also NotFound)
    ├── RuntimeFailure             the OCI runtime could not set up or start
    │   └── ExecFailed             a process could not be started in a running container
    ├── NetworkError
    │   └── NetworkNotFound (also NotFound)
    └── BuildError
"""

from __future__ import annotations


class DockyardError(Exception):
    """Root of every error dockyard raises on purpose."""

    # The exit code the CLI uses: 125 is Docker's "the engine failed".
    exit_code = 125


class InvalidArgument(DockyardError):
    """A value given by the user is malformed or out of range."""


class NotFound(DockyardError):
    """Base for errors that mean an object does not exist."""


class Conflict(DockyardError):
    """The request clashes with the current state, such as a name in use."""


class ImageError(DockyardError):
    """Base for errors about images, manifests and layers."""


class InvalidReference(ImageError, InvalidArgument):
    """An image reference that does not parse."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f'invalid reference format "{reference}": {reason}')
        self.reference = reference
        self.reason = reason


class ImageNotFound(ImageError, NotFound):
    """No local image matches a reference or ID."""

    def __init__(self, reference: str) -> None:
        super().__init__(f"No such image: {reference}")
        self.reference = reference


class NoMatchingPlatform(ImageError):
    """An image index has no manifest for the requested platform."""


class InvalidManifest(ImageError):
    """A manifest, index or config document is malformed or of an unexpected type."""


class DigestMismatch(ImageError):
    """Content does not hash to the digest that names it."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class UnsafeLayer(ImageError):
    """A layer member would create or change something outside its snapshot."""

    def __init__(self, layer: str, member: str, reason: str) -> None:
        super().__init__(f"layer {layer}: unsafe member {member!r}: {reason}")
        self.layer = layer
        self.member = member


class ArchiveError(ImageError):
    """An image archive (docker-archive or OCI layout) is malformed."""


class RegistryError(DockyardError):
    """Base for errors talking to a registry."""


class RegistryUnreachable(RegistryError):
    """The registry did not answer: connection refused, DNS failure, timeout."""


class Unauthorized(RegistryError):
    """The registry rejected the credentials, or asked for some and none were given."""


class ManifestUnknown(RegistryError, NotFound):
    """The registry has no manifest for that tag or digest."""


class StoreError(DockyardError):
    """The local store failed: disk full, permission denied, corrupt metadata."""


class ContainerError(DockyardError):
    """Base for errors about containers."""


class ContainerNotFound(ContainerError, NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No such container: {name}")
        self.name = name


class VolumeNotFound(ContainerError, NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"get {name}: no such volume")
        self.name = name


class RuntimeFailure(DockyardError):
    """The OCI runtime could not set up or start a container."""


class ExecFailed(RuntimeFailure):
    """A process could not be started inside a running container (``exec``).

    The exit code is Docker's: 127 when the program is not found, 126 for
    any other failure to start it.
    """

    def __init__(self, reason: str, exit_code: int = 126, container_id: str | None = None) -> None:
        super().__init__(f"OCI runtime exec failed: exec failed: unable to start container process: {reason}")
        self.reason = reason
        self.exit_code = exit_code
        self.container_id = container_id


class NetworkError(DockyardError):
    """Base for errors about networks, addresses and published ports."""


class NetworkNotFound(NetworkError, NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"network {name} not found")
        self.name = name


class BuildError(DockyardError):
    """Base for errors while building an image from a Dockerfile."""

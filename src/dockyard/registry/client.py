"""A client for the OCI distribution API (``/v2/``), as registries and mirrors serve it.

One ``RegistryClient`` keeps a connection pool per endpoint and a token cache for its
lifetime. It is safe to share between the threads of a parallel pull. Pulls try the
configured mirrors, then the registry itself (see ``endpoints``); a mirror that fails
or lacks the content is skipped with a warning. Authentication follows ``auth``.

The protocol is the OCI distribution specification v1.1 (``spec.md``): manifests at
``/v2/NAME/manifests/REF``, blobs at ``/v2/NAME/blobs/DIGEST``, uploads through
``/v2/NAME/blobs/uploads/``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Sequence, TypeVar

from dockyard.errors import (
    DigestMismatch,
    InvalidManifest,
    ManifestUnknown,
    RegistryError,
    RegistryUnreachable,
    Unauthorized,
)
from dockyard.registry import auth
from dockyard.registry.endpoints import Endpoint, pull_endpoints, push_endpoints
from dockyard.registry.transport import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    Transport,
    add_query,
    parse_retry_after,
    release,
    resolve_location,
    same_origin,
)

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

    from dockyard.config import Config
    from dockyard.image.manifest import Descriptor
    from dockyard.image.reference import Reference
    from dockyard.image.store import Ingest
    from dockyard.registry.credentials import Credentials

log = logging.getLogger(__name__)

T = TypeVar("T")

# Larger manifests are rejected before they are read whole, as containerd does (4 MiB).
MAX_MANIFEST_SIZE = 4 << 20
READ_CHUNK = 1 << 20  # bytes per read while streaming a blob
# Blobs up to this size go in one PUT; larger ones in PATCH chunks of UPLOAD_CHUNK bytes.
MONOLITHIC_UPLOAD_MAX = 16 << 20
UPLOAD_CHUNK = 16 << 20
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class Fetched:
    """A manifest or index as the registry returned it, with its verified digest."""

    data: bytes
    media_type: str
    digest: str


def _default_accept() -> tuple[str, ...]:
    from dockyard.image import mediatypes

    return mediatypes.MANIFEST_ACCEPT


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """Return ``ALGORITHM:HEX`` of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class _Interrupted(Exception):
    """A blob download stopped before its end in a way that a retry may fix."""


class RegistryClient:
    """Pull and push manifests and blobs over the distribution API."""

    def __init__(
        self,
        config: Config,
        credentials: Credentials | None = None,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.retry = retry or RetryPolicy()
        self.monolithic_upload_max = MONOLITHIC_UPLOAD_MAX
        self.upload_chunk = UPLOAD_CHUNK
        self._credentials = credentials
        self._credentials_lock = threading.Lock()
        self._sleep = sleep
        self._transport = Transport()
        self._auth = auth.Authenticator(self._lookup_login, self._fetch_token)
        # Endpoints that refused a connection: later pulls skip them, except the last resort.
        self._down: set[str] = set()
        # Upload sessions that a failed mount opened (the registry responded 202), by endpoint, name and digest.
        self._pending_uploads: dict[tuple[str, str, str], str] = {}

    # -- public API ----------------------------------------------------------------

    def get_manifest(self, ref: Reference, accept: Sequence[str] | None = None) -> Fetched:
        """Fetch the manifest or index that ``ref`` names, verifying its digest.

        Raises ManifestUnknown when no endpoint has it, InvalidManifest for an
        unexpected media type, and DigestMismatch when the bytes do not hash to the
        reference's digest or to the registry's ``Docker-Content-Digest``.
        """
        accepted = tuple(accept) if accept else _default_accept()
        target = ref.digest or ref.tag or "latest"
        path = f"/v2/{ref.path}/manifests/{target}"

        def fetch(endpoint: Endpoint) -> Fetched:
            response = self._send(
                endpoint, "GET", path, auth.pull_scopes(ref.path), ref.repository,
                headers={"Accept": ", ".join(accepted)},
            )
            if response.status == 404:
                detail = auth.error_detail(release(response)) or "not found"
                raise ManifestUnknown(f"manifest for {ref} not found on {endpoint}: {detail}")
            self._check_status(response, endpoint, "GET", path, ref.repository, (200,))
            data = self._read_manifest(response, ref, endpoint)
            return self._verify_manifest(ref, data, response.headers, accepted, endpoint)

        return self._try_pull_endpoints(ref.domain, f"manifest {ref}", fetch)

    def list_tags(self, repository: Reference) -> list[str]:
        """Return the tags the registry lists for ``repository`` (``GET /v2/NAME/tags/list``), in its order.

        Follows the ``Link: <…>; rel="next"`` header through every page. Pulls try the
        mirrors first, as for manifests. Raises ManifestUnknown when the repository
        does not exist.
        """
        import json

        path = f"/v2/{repository.path}/tags/list"

        def fetch(endpoint: Endpoint) -> list[str]:
            tags: list[str] = []
            target: str | None = path
            visited: set[str] = set()
            while target is not None and target not in visited:
                visited.add(target)
                response = self._send(endpoint, "GET", target, auth.pull_scopes(repository.path), repository.repository)
                if response.status == 404:
                    detail = auth.error_detail(release(response)) or "not found"
                    raise ManifestUnknown(f"repository {repository.repository} not found on {endpoint}: {detail}")
                self._check_status(response, endpoint, "GET", target, repository.repository, (200,))
                next_link = _next_link(response.headers.get("Link"))
                body = release(response, limit=MAX_MANIFEST_SIZE)
                try:
                    page = json.loads(body).get("tags") or []
                except (ValueError, AttributeError) as error:
                    raise RegistryError(
                        f"tag list of {repository.repository} from {endpoint} is not a JSON object: {error}"
                    ) from error
                tags += [tag for tag in page if isinstance(tag, str)]
                target = resolve_location(endpoint.url + path, next_link) if next_link else None
            return tags

        return self._try_pull_endpoints(repository.domain, f"tag list of {repository.repository}", fetch)

    def fetch_blob(
        self,
        repository: Reference,
        descriptor: Descriptor,
        ingest: Ingest,
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Download a blob into ``ingest`` and commit it; return its digest.

        Resumes from ``ingest.offset`` with a Range request, retries with backoff on
        connection errors, 429 and 5xx, and follows redirects itself, sending the
        Authorization header only to the registry's own origin. ``progress`` gets the
        number of bytes in the ingest so far after each chunk.
        """
        path = f"/v2/{repository.path}/blobs/{descriptor.digest}"

        def fetch(endpoint: Endpoint) -> str:
            self._download(endpoint, path, repository, descriptor, ingest, progress)
            return ingest.commit()

        return self._try_pull_endpoints(repository.domain, f"blob {descriptor.digest}", fetch, resumable=True)

    def has_blob(self, repository: Reference, digest: str) -> bool:
        """Tell whether the registry (not a mirror) has the blob in ``repository``."""
        path = f"/v2/{repository.path}/blobs/{digest}"

        def check(endpoint: Endpoint) -> bool:
            response = self._send(endpoint, "HEAD", path, auth.push_scopes(repository.path), repository.repository)
            if response.status == 404:
                release(response)
                return False
            self._check_status(response, endpoint, "HEAD", path, repository.repository, (200,))
            release(response)
            return True

        return self._try_push_endpoints(repository.domain, check)

    def mount_blob(self, repository: Reference, digest: str, source: Reference) -> bool:
        """Ask the registry to link a blob from ``source`` into ``repository`` without uploading it.

        Returns True when the registry mounted it (201). Returns False when it opened an
        upload instead (202), which the next ``upload_blob`` of that digest then uses,
        and also when ``source`` is on another registry.
        """
        if source.domain != repository.domain:
            return False
        path = add_query(f"/v2/{repository.path}/blobs/uploads/", {"mount": digest, "from": source.path})
        scopes = auth.push_scopes(repository.path, mount_from=source.path)

        def mount(endpoint: Endpoint) -> bool:
            response = self._send(
                endpoint, "POST", path, scopes, repository.repository, headers={"Content-Length": "0"}, body=b""
            )
            self._check_status(response, endpoint, "POST", path, repository.repository, (201, 202))
            location = response.headers.get("Location")
            release(response)
            if response.status == 201:
                log.debug("mounted %s into %s from %s", digest, repository.repository, source.path)
                return True
            if location:
                url = resolve_location(endpoint.url + path, location)
                self._pending_uploads[(endpoint.url, repository.path, digest)] = url
            log.debug("registry did not mount %s from %s; it will be uploaded", digest, source.path)
            return False

        return self._try_push_endpoints(repository.domain, mount)

    def upload_blob(
        self,
        repository: Reference,
        descriptor: Descriptor,
        open_blob: Callable[[], BinaryIO],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Upload a blob: in one PUT up to ``monolithic_upload_max`` bytes, else in PATCH chunks.

        ``open_blob`` is called once per attempt, because a failed attempt starts over in a
        new upload session. ``progress`` gets the number of bytes sent so far.
        """

        def upload(endpoint: Endpoint) -> None:
            failures = 0
            while True:
                try:
                    self._upload_once(endpoint, repository, descriptor, open_blob, progress)
                    return
                except _Interrupted as error:
                    failures += 1
                    if failures >= self.retry.attempts:
                        raise RegistryUnreachable(
                            f"upload of blob {descriptor.digest} to {repository.repository} at {endpoint} "
                            f"failed {failures} times: {error}"
                        ) from error
                    delay = self.retry.delay(failures)
                    log.warning("upload of %s to %s failed (%s); retrying in %.1f s",
                                descriptor.digest, endpoint, error, delay)
                    self._sleep(delay)

        self._try_push_endpoints(repository.domain, upload)

    def put_manifest(self, ref: Reference, data: bytes, media_type: str) -> str:
        """Upload a manifest under ``ref``'s tag (or its digest when it has no tag); return the digest."""
        algorithm = ref.digest.split(":", 1)[0] if ref.digest else "sha256"
        digest = compute_digest(data, algorithm)
        if ref.digest and digest != ref.digest:
            raise DigestMismatch(f"manifest for {ref}", ref.digest, digest)
        target = ref.tag or digest
        path = f"/v2/{ref.path}/manifests/{target}"

        def put(endpoint: Endpoint) -> str:
            response = self._send(
                endpoint, "PUT", path, auth.push_scopes(ref.path), ref.repository,
                headers={"Content-Type": media_type}, body=data,
            )
            self._check_status(response, endpoint, "PUT", path, ref.repository, (200, 201))
            reported = response.headers.get("Docker-Content-Digest")
            release(response)
            if reported and reported.startswith(f"{algorithm}:") and reported != digest:
                raise DigestMismatch(f"manifest pushed to {ref} (Docker-Content-Digest)", digest, reported)
            return digest

        return self._try_push_endpoints(ref.domain, put)

    def ping(self, domain: str) -> None:
        """Check that the registry responds to ``/v2/`` and accepts the credentials configured for it."""

        def check(endpoint: Endpoint) -> None:
            response = self._send(endpoint, "GET", "/v2/", (), None)
            self._check_status(response, endpoint, "GET", "/v2/", None, (200,))
            release(response)

        self._try_push_endpoints(domain, check)

    def close(self) -> None:
        """Close the pooled connections."""
        self._transport.close()

    @property
    def tokens_fetched(self) -> int:
        """How many tokens this client requested from token servers."""
        return self._auth.tokens_fetched

    # -- endpoints -----------------------------------------------------------------

    def _try_pull_endpoints(self, domain: str, what: str, operation: Callable[[Endpoint], T],
                            resumable: bool = False) -> T:
        """Run ``operation`` on each pull endpoint in turn until one succeeds.

        A failure on any endpoint but the last is logged as a warning and the next one is
        tried. A DigestMismatch during a blob download (``resumable``) is raised at once,
        because the content store has already discarded the ingest.
        """
        endpoints = pull_endpoints(self.config, domain)
        candidates = [e for e in endpoints[:-1] if e.url not in self._down] + endpoints[-1:]
        # What each endpoint that failed before the last one returned, for the final error.
        earlier_failures: list[str] = []
        for index, endpoint in enumerate(candidates):
            last = index == len(candidates) - 1
            try:
                return operation(endpoint)
            except DigestMismatch as error:
                if last or resumable:
                    _add_earlier_failures(error, earlier_failures)
                    raise
                log.warning("%s from %s failed its digest check; trying %s", what, endpoint, candidates[index + 1])
                earlier_failures.append(f"{endpoint}: {error}")
            except RegistryError as error:
                if last:
                    _add_earlier_failures(error, earlier_failures)
                    raise
                if isinstance(error, RegistryUnreachable):
                    self._down.add(endpoint.url)
                log.warning("%s: %s failed (%s); trying %s", what, endpoint, error, candidates[index + 1])
                earlier_failures.append(str(error))
        raise AssertionError("unreachable: the last endpoint returns or raises")

    def _try_push_endpoints(self, domain: str, operation: Callable[[Endpoint], T]) -> T:
        """Run ``operation`` on the registry's endpoints, moving on only when one is unreachable."""
        endpoints = push_endpoints(self.config, domain)
        for index, endpoint in enumerate(endpoints):
            try:
                return operation(endpoint)
            except RegistryUnreachable as error:
                if index == len(endpoints) - 1:
                    raise
                log.warning("%s is unreachable (%s); trying %s", endpoint, error, endpoints[index + 1])
        raise AssertionError("unreachable: the last endpoint returns or raises")

    # -- requests ------------------------------------------------------------------

    def _lookup_login(self, server: str) -> auth.Login | None:
        with self._credentials_lock:
            if self._credentials is None:
                from dockyard.registry.credentials import Credentials

                self._credentials = Credentials.load()
        login = self._credentials.get(server)
        if login is None:
            return None
        return auth.Login(*login)

    def _fetch_token(self, request: auth.TokenRequest) -> tuple[int, bytes]:
        import urllib3

        failures = 0
        while True:
            try:
                response = self._transport.send(request.method, request.url, request.headers, body=request.body)
            except (urllib3.exceptions.HTTPError, OSError) as error:
                failures += 1
                if failures >= self.retry.attempts or isinstance(error, urllib3.exceptions.SSLError):
                    raise RegistryUnreachable(
                        f"token server {request.url.split('?', 1)[0]} is unreachable: {_reason(error)}"
                    ) from error
                self._sleep(self.retry.delay(failures))
                continue
            if response.status in RETRYABLE_STATUSES and failures + 1 < self.retry.attempts:
                failures += 1
                wait = self.retry.delay(failures, parse_retry_after(response.headers.get("Retry-After")))
                release(response)
                self._sleep(wait)
                continue
            return response.status, release(response, limit=1 << 20)

    def _send(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        scopes: Sequence[str],
        repository: str | None,
        headers: dict[str, str] | None = None,
        body: bytes | Callable[[], Any] | None = None,
        retry: bool = True,
    ) -> BaseHTTPResponse:
        """Send a request to ``endpoint`` with authentication and retries; return the response unread.

        ``target`` is a path under the endpoint or an absolute URL (an upload Location).
        After a 401, the request is sent once more with fresh credentials. With ``retry``, connection errors,
        429 and 5xx are retried with backoff; ``body`` may be a function returning a new
        body for each attempt. Without ``retry``, a failed connection raises _Interrupted
        for the caller's own retry loop. A TLS failure, or a mirror that refuses the
        connection, raises RegistryUnreachable at once.
        The caller must release the response.
        """
        import urllib3

        url = target if "://" in target else endpoint.url + target
        send_credentials = same_origin(url, endpoint.url)
        answered = False
        failures = 0
        while True:
            request_headers = dict(headers or {})
            if send_credentials:
                authorization = self._auth.authorization(endpoint.url, endpoint.credentials_key, scopes, repository)
                if authorization:
                    request_headers["Authorization"] = authorization
            payload = body() if callable(body) else body
            try:
                response = self._transport.send(method, url, request_headers, body=payload, verify_tls=endpoint.verify_tls)
            except (urllib3.exceptions.HTTPError, OSError) as error:
                refused = isinstance(error, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
                # A mirror that refuses connections is skipped at once rather than waited for.
                permanent = isinstance(error, urllib3.exceptions.SSLError) or (endpoint.mirror and refused)
                if permanent:
                    raise self._unreachable(endpoint, error) from error
                if not retry:
                    raise _Interrupted(_reason(error)) from error
                failures += 1
                if failures >= self.retry.attempts:
                    raise self._unreachable(endpoint, error) from error
                delay = self.retry.delay(failures)
                log.info("%s %s failed (%s); retrying in %.1f s", method, endpoint, _reason(error), delay)
                self._sleep(delay)
                continue

            if response.status == 401 and send_credentials and not answered:
                answered = True
                challenges = response.headers.getlist("WWW-Authenticate")
                release(response)
                self._auth.respond_to_challenge(endpoint.url, endpoint.credentials_key, challenges, scopes, repository)
                continue
            if retry and response.status in RETRYABLE_STATUSES and failures + 1 < self.retry.attempts:
                failures += 1
                delay = self.retry.delay(failures, parse_retry_after(response.headers.get("Retry-After")))
                log.info("%s %s returned HTTP %d; retrying in %.1f s", method, endpoint, response.status, delay)
                release(response)
                self._sleep(delay)
                continue
            return response

    def _check_status(
        self,
        response: BaseHTTPResponse,
        endpoint: Endpoint,
        method: str,
        target: str,
        repository: str | None,
        expected: Iterable[int],
    ) -> None:
        """Raise the error that fits an unexpected status, with the registry's own error text."""
        if response.status in expected:
            return
        detail = auth.error_detail(release(response))
        if response.status in (401, 403):
            reason = detail or f"HTTP {response.status}"
            raise Unauthorized(auth.unauthorized_message(endpoint.credentials_key, repository, reason))
        where = target.split("?", 1)[0] if "://" not in target else "the upload location"
        message = f"{method} {where} on {endpoint} failed with HTTP {response.status}"
        raise RegistryError(f"{message}: {detail}" if detail else message)

    def _unreachable(self, endpoint: Endpoint, error: BaseException) -> RegistryUnreachable:
        if endpoint.mirror:
            return RegistryUnreachable(f"mirror {endpoint} of registry {endpoint.domain} is unreachable: {_reason(error)}")
        return RegistryUnreachable(f"registry {endpoint.domain} is unreachable at {endpoint}: {_reason(error)}")

    # -- manifests -----------------------------------------------------------------

    def _read_manifest(self, response: BaseHTTPResponse, ref: Reference, endpoint: Endpoint) -> bytes:
        import urllib3

        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
            release(response, limit=0)
            raise InvalidManifest(f"manifest for {ref} from {endpoint} is {length} bytes, more than the {MAX_MANIFEST_SIZE} allowed")
        try:
            data = response.read(MAX_MANIFEST_SIZE + 1, decode_content=True) or b""
        except (urllib3.exceptions.HTTPError, OSError) as error:
            response.close()
            raise self._unreachable(endpoint, error) from error
        finally:
            response.release_conn()
        if len(data) > MAX_MANIFEST_SIZE:
            response.close()
            raise InvalidManifest(f"manifest for {ref} from {endpoint} is larger than the {MAX_MANIFEST_SIZE} bytes allowed")
        return data

    def _verify_manifest(
        self, ref: Reference, data: bytes, headers: Any, accepted: Sequence[str], endpoint: Endpoint
    ) -> Fetched:
        from dockyard.image.mediatypes import essence

        media_type = essence(headers.get("Content-Type") or "")
        if media_type not in accepted:
            # Some registries send application/json or nothing; the document's own mediaType then decides.
            declared = _declared_media_type(data)
            if declared is None or declared not in accepted:
                raise InvalidManifest(
                    f"manifest for {ref} from {endpoint} has media type {media_type or 'none'!r}"
                    f" (document says {declared or 'none'!r}); expected one of: {', '.join(accepted)}"
                )
            media_type = declared

        if ref.digest:
            algorithm = ref.digest.split(":", 1)[0]
            actual = compute_digest(data, algorithm)
            if actual != ref.digest:
                raise DigestMismatch(f"manifest {ref} from {endpoint}", ref.digest, actual)
        else:
            actual = compute_digest(data)
        reported = headers.get("Docker-Content-Digest")
        if reported and ":" in reported:
            algorithm = reported.split(":", 1)[0]
            if algorithm in hashlib.algorithms_available:
                check = actual if actual.startswith(f"{algorithm}:") else compute_digest(data, algorithm)
                if check != reported:
                    raise DigestMismatch(f"manifest {ref} from {endpoint} (Docker-Content-Digest)", reported, check)
        return Fetched(data, media_type, actual)

    # -- blob downloads ------------------------------------------------------------

    def _download(
        self,
        endpoint: Endpoint,
        path: str,
        repository: Reference,
        descriptor: Descriptor,
        ingest: Ingest,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Stream the blob into ``ingest`` until it contains ``descriptor.size`` bytes, resuming after cuts."""
        failures = 0
        while True:
            if descriptor.size is not None and ingest.offset == descriptor.size:
                return
            try:
                self._download_once(endpoint, path, repository, descriptor, ingest, progress)
                return
            except _Interrupted as error:
                failures += 1
                if failures >= self.retry.attempts:
                    raise RegistryUnreachable(
                        f"download of blob {descriptor.digest} from {endpoint} failed {failures} times,"
                        f" last at byte {ingest.offset}: {error}"
                    ) from error
                delay = self.retry.delay(failures, getattr(error, "retry_after", None))
                log.info("download of %s from %s stopped at byte %d (%s); resuming in %.1f s",
                            descriptor.digest, endpoint, ingest.offset, error, delay)
                self._sleep(delay)

    def _download_once(
        self,
        endpoint: Endpoint,
        path: str,
        repository: Reference,
        descriptor: Descriptor,
        ingest: Ingest,
        progress: Callable[[int], None] | None,
    ) -> None:
        import urllib3

        offset = ingest.offset
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._open_blob(endpoint, path, repository, headers)
        try:
            if response.status == 206:
                start = _content_range_start(response.headers.get("Content-Range"))
                if start != offset:
                    log.warning("registry returned %r for Range bytes=%d-; downloading %s again from the start",
                                response.headers.get("Content-Range"), offset, descriptor.digest)
                    ingest.reset()
                    raise _Interrupted(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
            elif response.status == 200:
                if offset:
                    log.debug("registry ignored the Range request for %s; starting over", descriptor.digest)
                    ingest.reset()
            elif response.status == 416 and offset:
                ingest.reset()
                raise _Interrupted(f"registry rejected Range bytes={offset}-")
            elif response.status in RETRYABLE_STATUSES:
                interrupted = _Interrupted(f"HTTP {response.status}")
                interrupted.retry_after = parse_retry_after(response.headers.get("Retry-After"))  # type: ignore[attr-defined]
                raise interrupted
            elif response.status == 404:
                detail = auth.error_detail(release(response)) or "not found"
                raise RegistryError(f"blob {descriptor.digest} not found in {repository.repository} on {endpoint}: {detail}")
            else:
                self._check_status(response, endpoint, "GET", path, repository.repository, (200, 206))

            try:
                for chunk in response.stream(READ_CHUNK, decode_content=False):
                    ingest.write(chunk)
                    if progress is not None:
                        progress(ingest.offset)
            except (urllib3.exceptions.HTTPError, OSError) as error:
                raise _Interrupted(_reason(error)) from error
            if descriptor.size is not None and ingest.offset < descriptor.size:
                raise _Interrupted(f"the body ended after {ingest.offset} of {descriptor.size} bytes")
        except BaseException:
            response.close()
            raise
        finally:
            response.release_conn()

    def _open_blob(self, endpoint: Endpoint, path: str, repository: Reference, headers: dict[str, str]) -> BaseHTTPResponse:
        """GET a blob, following redirects; credentials go only to the endpoint's own origin."""
        import urllib3

        scopes = auth.pull_scopes(repository.path)
        # No retries here: _download retries the whole request, resuming at the ingest's offset.
        response = self._send(endpoint, "GET", path, scopes, repository.repository, headers=headers, retry=False)
        url = endpoint.url + path
        for _ in range(MAX_REDIRECTS):
            if response.status not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            release(response)
            if not location:
                raise RegistryError(f"{endpoint} redirected GET {path} without a Location")
            url = resolve_location(url, location)
            hop_headers = dict(headers)
            if same_origin(url, endpoint.url):
                authorization = self._auth.authorization(endpoint.url, endpoint.credentials_key, scopes, repository.repository)
                if authorization:
                    hop_headers["Authorization"] = authorization
            verify = endpoint.verify_tls if same_origin(url, endpoint.url) else True
            try:
                response = self._transport.send("GET", url, hop_headers, verify_tls=verify)
            except (urllib3.exceptions.HTTPError, OSError) as error:
                raise _Interrupted(f"redirect target unreachable: {_reason(error)}") from error
        release(response)
        raise RegistryError(f"{endpoint} redirected GET {path} more than {MAX_REDIRECTS} times")

    # -- blob uploads --------------------------------------------------------------

    def _upload_once(
        self,
        endpoint: Endpoint,
        repository: Reference,
        descriptor: Descriptor,
        open_blob: Callable[[], BinaryIO],
        progress: Callable[[int], None] | None,
    ) -> None:
        name = repository.repository
        scopes = auth.push_scopes(repository.path)
        location = self._pending_uploads.pop((endpoint.url, repository.path, descriptor.digest), None)
        if location is None:
            location = self._start_upload(endpoint, repository, scopes)

        with open_blob() as blob:
            if descriptor.size <= self.monolithic_upload_max:

                def rewound() -> BinaryIO:
                    # After a 401, _send sends the body a second time with a fresh token.
                    blob.seek(0)
                    return blob

                target = add_query(location, {"digest": descriptor.digest})
                response = self._send(
                    endpoint, "PUT", target, scopes, name,
                    headers={"Content-Type": OCTET_STREAM, "Content-Length": str(descriptor.size)},
                    body=rewound, retry=False,
                )
                self._check_upload_done(response, endpoint, repository, descriptor)
                if progress is not None:
                    progress(descriptor.size)
                return

            sent = 0
            while chunk := blob.read(self.upload_chunk):
                response = self._send(
                    endpoint, "PATCH", location, scopes, name,
                    headers={
                        "Content-Type": OCTET_STREAM,
                        "Content-Length": str(len(chunk)),
                        "Content-Range": f"{sent}-{sent + len(chunk) - 1}",
                    },
                    body=chunk, retry=False,
                )
                self._check_status(response, endpoint, "PATCH", location, name, (202,))
                next_location = response.headers.get("Location")
                release(response)
                if next_location:
                    location = resolve_location(location, next_location)
                sent += len(chunk)
                if progress is not None:
                    progress(sent)
            if sent != descriptor.size:
                raise RegistryError(
                    f"blob {descriptor.digest} has {sent} bytes to upload, but its descriptor has size {descriptor.size}"
                )

        response = self._send(
            endpoint, "PUT", add_query(location, {"digest": descriptor.digest}), scopes, name,
            headers={"Content-Length": "0"}, body=b"", retry=False,
        )
        self._check_upload_done(response, endpoint, repository, descriptor)

    def _start_upload(self, endpoint: Endpoint, repository: Reference, scopes: Sequence[str]) -> str:
        path = f"/v2/{repository.path}/blobs/uploads/"
        response = self._send(
            endpoint, "POST", path, scopes, repository.repository, headers={"Content-Length": "0"}, body=b""
        )
        self._check_status(response, endpoint, "POST", path, repository.repository, (202,))
        location = response.headers.get("Location")
        release(response)
        if not location:
            raise RegistryError(f"{endpoint} opened an upload for {repository.repository} without a Location")
        return resolve_location(endpoint.url + path, location)

    def _check_upload_done(self, response: BaseHTTPResponse, endpoint: Endpoint, repository: Reference,
                           descriptor: Descriptor) -> None:
        if response.status in RETRYABLE_STATUSES:
            release(response)
            raise _Interrupted(f"HTTP {response.status}")
        self._check_status(response, endpoint, "PUT", "the upload location", repository.repository, (201, 204))
        reported = response.headers.get("Docker-Content-Digest")
        release(response)
        if reported and reported != descriptor.digest:
            raise DigestMismatch(f"blob uploaded to {repository.repository}", descriptor.digest, reported)


def _declared_media_type(data: bytes) -> str | None:
    import json

    try:
        document = json.loads(data)
    except ValueError:
        return None
    value = document.get("mediaType") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


def _add_earlier_failures(error: Exception, failures: list[str]) -> None:
    """Append what the mirrors tried before the final endpoint returned to ``error``'s message."""
    if failures:
        error.args = (f"{error} (mirrors tried first: {'; '.join(failures)})", *error.args[1:])


def _next_link(value: str | None) -> str | None:
    """Return the target of a ``Link: <URL>; rel="next"`` header (RFC 8288), or None."""
    if not value:
        return None
    for link in value.split(","):
        target, _, parameters = link.partition(";")
        target = target.strip()
        relations = [part.strip() for part in parameters.split(";")]
        if target.startswith("<") and target.endswith(">") and ('rel="next"' in relations or "rel=next" in relations):
            return target[1:-1]
    return None


def _content_range_start(value: str | None) -> int | None:
    """Return the first byte of a ``Content-Range: bytes START-END/TOTAL`` header, or None."""
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    if unit.lower() != "bytes":
        return None
    start, dash, _ = spec.partition("-")
    return int(start) if dash and start.isdigit() else None


def _reason(error: BaseException) -> str:
    """Return the most specific reason for a connection failure, such as ``Connection refused``."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    # urllib3's exceptions carry their message as the first argument, and a tuple or a
    # connection repr around it in str().
    text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    if text.startswith(("HTTPConnection(", "HTTPSConnection(")) and ": " in text:
        text = text.split(": ", 1)[1]
    return text

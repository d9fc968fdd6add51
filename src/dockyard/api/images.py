"""Image routes: pull (``/images/create``), list, inspect, history, tag, push, remove, prune, save, load and commit."""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
from typing import Any, Callable, Iterator

from dockyard.api.errors import not_implemented
from dockyard.api.server import Api, Request, Response, Stream, json_response
from dockyard.errors import InvalidArgument

log = logging.getLogger(__name__)

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def progress_stream(run: Callable[[Callable[[dict], None]], Any],
                    finish: Callable[[Any], list[dict]] | None = None) -> Iterator[bytes]:
    """Turn a blocking engine call that reports progress into Docker's JSON progress stream.

    ``run(progress)`` runs in its own thread, and each event it reports
    becomes one line of JSON. An error before the first event is raised, so
    it becomes an HTTP error response. An error after it becomes Docker's
    ``{"errorDetail": {"message": ...}, "error": ...}`` line, which clients
    print. ``finish(result)`` may add lines after the call returns.
    """
    events: queue.Queue[Any] = queue.Queue()

    def target() -> None:
        try:
            result = run(events.put)
        except BaseException as error:  # noqa: BLE001 - handed to the generator
            events.put(_Failure(error))
        else:
            for event in finish(result) if finish is not None else []:
                events.put(event)
            events.put(_DONE)

    threading.Thread(target=target, daemon=True, name="progress").start()
    sent = False
    while True:
        item = events.get()
        if item is _DONE:
            return
        if isinstance(item, _Failure):
            if not sent:
                raise item.error
            log.info("progress stream failed: %s", item.error)
            message = str(item.error)
            yield json.dumps({"errorDetail": {"message": message}, "error": message}).encode() + b"\r\n"
            return
        sent = True
        yield json.dumps(item).encode() + b"\r\n"


def registry_auth(request: Request) -> dict[str, str] | None:
    """Decode the ``X-Registry-Auth`` header: base64url JSON with username, password, serveraddress or identitytoken."""
    header = request.headers.get("x-registry-auth", "").strip()
    if not header:
        return None
    try:
        padded = header + "=" * (-len(header) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        raise InvalidArgument("invalid X-Registry-Auth header: expected base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("invalid X-Registry-Auth header: expected a JSON object")
    auth = {key: str(value) for key, value in data.items() if value}
    if not (auth.get("username") or auth.get("identitytoken")):
        return None
    return auth


def _reference(image: str, tag: str | None) -> str:
    """Join ``fromImage`` and ``tag`` as Docker does: a digest tag with "@", a tag with ":"."""
    if not tag:
        return image
    if tag.startswith("sha256:"):
        return f"{image}@{tag}"
    return f"{image}:{tag}"


def create(api: Api, request: Request) -> Stream:
    """``POST /images/create``: pull ``fromImage`` (``fromSrc`` import is not implemented)."""
    if request.arg("fromSrc"):
        raise not_implemented("importing an image from a tarball or URL (fromSrc)")
    image = request.arg("fromImage")
    if not image:
        raise InvalidArgument("fromImage is required: POST /images/create?fromImage=NAME&tag=TAG")
    name = _reference(image, request.arg("tag"))
    platform = request.arg("platform") or None
    auth = registry_auth(request)
    images = api.engine.images
    return Stream(chunks=progress_stream(lambda progress: images.pull(name, platform=platform, progress=progress,
                                                                      auth=auth)))


def push(api: Api, request: Request) -> Stream:
    name = _reference(request.params["name"], request.arg("tag"))
    auth = registry_auth(request)
    images = api.engine.images
    return Stream(chunks=progress_stream(lambda progress: images.push(name, progress=progress, auth=auth)))


def list_images(api: Api, request: Request) -> Response:
    return json_response(api.engine.images.list(all=request.flag("all"), filters=request.filters()))


def inspect(api: Api, request: Request) -> Response:
    return json_response(api.engine.images.inspect(request.params["name"]))


def history(api: Api, request: Request) -> Response:
    return json_response(api.engine.images.history(request.params["name"]))


def tag(api: Api, request: Request) -> Response:
    repository = request.arg("repo")
    if not repository:
        raise InvalidArgument("repo is required: POST /images/{name}/tag?repo=REPOSITORY&tag=TAG")
    api.engine.images.tag(request.params["name"], _reference(repository, request.arg("tag")))
    return Response(201, b"", None)


def remove(api: Api, request: Request) -> Response:
    return json_response(api.engine.images.remove(request.params["name"], force=request.flag("force")))


def prune(api: Api, request: Request) -> Response:
    filters = request.filters()
    unknown = sorted(set(filters) - {"dangling"})
    if unknown:
        raise InvalidArgument(f"invalid filter '{unknown[0]}': image prune supports only dangling here")
    dangling = filters.get("dangling", ["true"])[-1].lower() not in ("false", "0")
    result = api.engine.images.prune(all=not dangling)
    return json_response({"ImagesDeleted": result.deleted or None, "SpaceReclaimed": result.space_reclaimed})


def save(api: Api, request: Request) -> Stream:
    names = [request.params["name"]] if "name" in request.params else request.query.get("names", [])
    if not names:
        raise InvalidArgument("names is required: GET /images/get?names=NAME")
    images = api.engine.images
    for name in names:
        images.resolve(name)
    return Stream(write=lambda out: images.save(names, out), content_type="application/x-tar")


def load(api: Api, request: Request) -> Stream:
    quiet = request.flag("quiet")
    images = api.engine.images

    def run(progress: Callable[[dict], None]) -> list[str]:
        return images.load(request.body, progress=None if quiet else progress)

    def finish(names: list[str]) -> list[dict]:
        return [{"stream": f"Loaded image{' ID' if name.startswith('sha256:') else ''}: {name}\n"} for name in names]

    return Stream(chunks=progress_stream(run, finish))


def commit(api: Api, request: Request) -> Response:
    """``POST /commit``: make an image from a container's changes, tagged ``repo:tag`` when given."""
    from dockyard.engine.filesystem import FilesystemService

    container = request.arg("container")
    if not container:
        raise InvalidArgument("container is required: POST /commit?container=NAME&repo=REPOSITORY&tag=TAG")
    repository = request.arg("repo")
    reference = _reference(repository, request.arg("tag")) if repository else None
    body = request.json()
    image_id = FilesystemService(api.engine).commit(
        container, reference, changes_text=request.query.get("changes") or [], comment=request.arg("comment") or "",
        author=request.arg("author") or "", pause=request.flag("pause", default=True),
        config=body if isinstance(body, dict) and body else None,
    )
    return json_response({"Id": image_id}, status=201)


def search(api: Api, request: Request) -> Response:
    raise not_implemented("searching a registry (GET /images/search)")


ROUTES = [
    ("GET", "/images/json", list_images),
    ("POST", "/images/create", create),
    ("POST", "/images/load", load),
    ("GET", "/images/get", save),
    ("POST", "/images/prune", prune),
    ("GET", "/images/search", search),
    ("POST", "/commit", commit),
    ("GET", "/images/{name:path}/json", inspect),
    ("GET", "/images/{name:path}/history", history),
    ("GET", "/images/{name:path}/get", save),
    ("POST", "/images/{name:path}/tag", tag),
    ("POST", "/images/{name:path}/push", push),
    ("DELETE", "/images/{name:path}", remove),
]

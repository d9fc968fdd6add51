"""``POST /build``: the classic (non-BuildKit) builder, as used by ``DOCKER_BUILDKIT=0 docker build`` and docker-compose.

The request body is the build context as a tar stream (plain or
compressed), or a bare Dockerfile for a build without a context. The response streams the builder's text output as
``{"stream": "..."}`` lines, then ``{"aux": {"ID": "sha256:..."}}``. A failure
after the first line becomes an ``{"errorDetail": ..., "error": ...}`` line;
one before it (an unreadable context, a missing Dockerfile) an HTTP error.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from dockyard.api.errors import not_implemented
from dockyard.api.images import progress_stream
from dockyard.api.server import Api, Request, Stream
from dockyard.errors import InvalidArgument

log = logging.getLogger(__name__)

# Query parameters whose non-empty values request something this classic builder does not do.
UNSUPPORTED_PARAMETERS = {
    "remote": "building from a remote context (remote)",
    "extrahosts": "extra hosts for RUN steps (extrahosts)",
    "squash": "squashing the image's layers (squash)",
    "outputs": "build outputs (outputs)",
    "cachefrom": "external cache sources (cachefrom)",
    "platform": "building for another platform (platform)",
}
# Values of such parameters that clients send when the option is not set.
DEFAULT_VALUES = ("", "0", "false", "[]", "null")


def _json_map(request: Request, name: str) -> dict[str, str]:
    """Parse a query parameter that contains a JSON object of strings.

    A null value (``--build-arg KEY`` with KEY unset on the client) drops the
    key, so the Dockerfile's default applies.
    """
    text = request.arg(name)
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as error:
        raise InvalidArgument(f"invalid {name} {text!r}: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid {name} {text!r}: expected a JSON object")
    return {str(key): str(value) for key, value in data.items() if value is not None}


def _check_supported(request: Request) -> None:
    for name, feature in UNSUPPORTED_PARAMETERS.items():
        value = request.arg(name)
        if value is not None and value.strip().lower() not in DEFAULT_VALUES:
            raise not_implemented(feature)
    # version=2 requests BuildKit, which talks gRPC over a /session connection, a different protocol.
    if request.arg("version") not in (None, "", "1"):
        raise not_implemented(f"builder version {request.arg('version')} (BuildKit); use the classic builder")


def options_from_query(request: Request) -> Any:
    """Return the ``BuildOptions`` that the query parameters of ``POST /build`` request."""
    from dockyard.build.builder import BuildOptions

    return BuildOptions(
        tags=[tag for tag in request.query.get("t", []) if tag],
        build_args=_json_map(request, "buildargs"),
        target=request.arg("target") or None,
        no_cache=request.flag("nocache"),
        pull=request.flag("pull"),
        labels=_json_map(request, "labels"),
    )


def build(api: Api, request: Request) -> Stream:
    """Build an image from the context tar in the body.

    ``rm`` and ``forcerm`` are accepted and need nothing, because the builder
    always removes its intermediate containers.

    NOTE: resource limits for ``RUN`` steps (``memory``, ``cpushares``,
    ``shmsize`` and the like) are ignored, so the steps run without them.
    """
    from dockyard.build.builder import Builder
    from dockyard.build.context import BuildContext, looks_like_tar, read_dockerfile

    _check_supported(request)
    options = options_from_query(request)
    dockerfile_name = request.arg("dockerfile") or None
    quiet = request.flag("q")
    engine = api.engine
    body = request.body

    def run(progress: Callable[[dict], None]) -> str:
        def output(text: str) -> None:
            if not quiet:
                progress({"stream": text})

        body.seek(0)
        head = body.read(512)
        body.seek(0)
        work_dir = engine.root / "tmp"
        # "docker build - < Dockerfile" sends the Dockerfile itself as the body, with no context.
        is_tar = looks_like_tar(head)
        context = BuildContext.from_tar(body, work_dir) if is_tar else BuildContext.empty(work_dir)
        with context:
            if is_tar or not head:
                dockerfile_text = read_dockerfile(context, dockerfile_name)
            else:
                dockerfile_text = body.read().decode()
            log.debug("building %s with tags %s", dockerfile_name or "Dockerfile", options.tags)
            result = Builder(engine, output).build(context, dockerfile_text, options)
        return result.image_id

    def finish(image_id: str) -> list[dict]:
        lines: list[dict] = [{"aux": {"ID": image_id}}]
        if quiet:
            # docker build -q prints what the stream carries, which is only the ID.
            lines.append({"stream": f"{image_id}\n"})
        return lines

    return Stream(chunks=progress_stream(run, finish))


ROUTES = [
    ("POST", "/build", build),
]

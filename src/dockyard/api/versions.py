"""API version negotiation: the ``/v1.NN`` prefix of a request path.

dockyard serves API versions 1.40 to 1.50. A path without a prefix is
served at the newest version, as Docker does. A version outside the range
is rejected with Docker's wording, so that clients that negotiate (the
docker CLI, docker-py with ``version="auto"``) retry with ``/version``'s
``ApiVersion``.
"""

from __future__ import annotations

import re

from dockyard.errors import InvalidArgument

MIN_VERSION = (1, 40)
MAX_VERSION = (1, 50)
VERSION_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(?=/)")


def text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def split_version(path: str) -> tuple[tuple[int, int], str]:
    """Split ``/v1.45/containers/json`` into ``((1, 45), "/containers/json")``.

    Raises InvalidArgument for a version outside ``MIN_VERSION``..``MAX_VERSION``.
    """
    match = VERSION_PREFIX.match(path)
    if match is None:
        return MAX_VERSION, path
    version = (int(match.group(1)), int(match.group(2)))
    if version < MIN_VERSION:
        raise InvalidArgument(
            f"client version {text(version)} is too old. Minimum supported API version is {text(MIN_VERSION)}, "
            "please upgrade your client to a newer version"
        )
    if version > MAX_VERSION:
        raise InvalidArgument(
            f"client version {text(version)} is too new. Maximum supported API version is {text(MAX_VERSION)}"
        )
    return version, path[match.end():]

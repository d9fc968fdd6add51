"""The one mapping from dockyard's errors to HTTP statuses and Docker's JSON error body.

Clients match on both: the docker CLI on the status (a 404 from container
create makes it pull the image), docker-py on the status and the message
text (``No such image`` turns a 404 into ``ImageNotFound``). The messages
themselves come from the engine, which uses Docker's wording.
"""

from __future__ import annotations

import json

from dockyard import errors

# Most specific first: the first class an error is an instance of decides.
STATUS_BY_ERROR: tuple[tuple[type[errors.DockyardError], int], ...] = (
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.InvalidArgument, 400),
    (errors.Unauthorized, 401),
)
INTERNAL_ERROR = 500


class ApiError(errors.DockyardError):
    """An error that belongs to the HTTP layer itself: an unknown path, a method not allowed, a feature not implemented."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def status_for(error: BaseException) -> int:
    """Return the HTTP status for an error; anything unexpected is a 500."""
    if isinstance(error, ApiError):
        return error.status
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return INTERNAL_ERROR


def body_for(error: BaseException) -> bytes:
    """Return Docker's error body, ``{"message": "..."}``, followed by a newline as dockerd writes it."""
    message = str(error) or type(error).__name__
    return json.dumps({"message": message}).encode() + b"\n"


def not_implemented(feature: str) -> ApiError:
    return ApiError(501, f"{feature} is not implemented in dockyard")

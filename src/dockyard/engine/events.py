"""Container events in the Engine API's ``EventMessage`` shape, found by polling the container list.

dockyard is daemonless, so no single process observes every change as it
happens. ``watch`` compares the containers of the state database once per
``POLL_INTERVAL`` and reports what changed: ``create``, ``start``, ``die``
(with ``exitCode``), ``pause``, ``unpause`` and ``destroy``.

NOTE: a change that is undone within one interval (a container that starts
and exits in less than a second) can be missed, and past events are not
stored, so ``since`` only sets where the stream starts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from dockyard.engine import Engine

# Seconds between two looks at the container list.
POLL_INTERVAL = 0.5
ACTIVE = ("running", "restarting")
SUPPORTED_FILTERS = {"type", "event", "container", "image", "label"}


def _event(action: str, summary: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, Any]:
    now = time.time_ns()
    attributes = {"name": summary["Names"][0].removeprefix("/"), "image": summary["Image"]}
    attributes.update(summary.get("Labels") or {})
    attributes.update(extra or {})
    return {
        "status": action,
        "id": summary["Id"],
        "from": summary["Image"],
        "Type": "container",
        "Action": action,
        "Actor": {"ID": summary["Id"], "Attributes": attributes},
        "scope": "local",
        "time": now // 1_000_000_000,
        "timeNano": now,
    }


def _transition(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Return the events that take a container from one listed state to the next; None means absent."""
    if before is None and after is None:
        return []
    if after is None:
        assert before is not None
        events = [_event("die", before, {"exitCode": "0"})] if before["State"] in ACTIVE else []
        return events + [_event("destroy", before)]
    old = before["State"] if before is not None else None
    new = after["State"]
    events = [_event("create", after)] if before is None else []
    if old == new:
        return events
    if new == "paused":
        return events + [_event("pause", after)]
    if old == "paused" and new in ACTIVE:
        return events + [_event("unpause", after)]
    if new in ACTIVE:
        return events + [_event("start", after)]
    if old in ACTIVE or old == "paused":
        code = _exit_code(after["Status"])
        return events + [_event("die", after, {"exitCode": code})]
    return events


def _exit_code(status: str) -> str:
    """Read the exit code from Docker's status text, such as ``Exited (137) 2 seconds ago``."""
    if status.startswith("Exited (") and ")" in status:
        return status[len("Exited ("):status.index(")")]
    return "0"


def _matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    if filters.get("type") and "container" not in filters["type"]:
        return False
    if filters.get("event") and event["Action"] not in filters["event"]:
        return False
    attributes = event["Actor"]["Attributes"]
    if filters.get("container"):
        name = attributes["name"]
        if not any(event["id"].startswith(value) or value.removeprefix("/") == name for value in filters["container"]):
            return False
    if filters.get("image") and attributes["image"] not in filters["image"]:
        return False
    # Every label filter must match, as in dockerd: "KEY" needs the label, "KEY=VALUE" also its value.
    for label in filters.get("label", []):
        key, equals, value = label.partition("=")
        if key not in attributes or (equals and attributes[key] != value):
            return False
    return True


def watch(engine: "Engine", until: float | None = None,
          filters: dict[str, list[str]] | None = None) -> Iterator[dict[str, Any] | None]:
    """Yield container events as they are seen, until the Unix time ``until`` (forever without it).

    After each look at the container list it also yields None, so that a
    consumer can stop between two events, for example when its client left.
    """
    filters = filters or {}
    unknown = sorted(set(filters) - SUPPORTED_FILTERS)
    if unknown:
        from dockyard.errors import InvalidArgument

        raise InvalidArgument(f"invalid filter '{unknown[0]}': events support {', '.join(sorted(SUPPORTED_FILTERS))}")
    known = {summary["Id"]: summary for summary in engine.containers.list(all=True)}
    while until is None or time.time() < until:
        time.sleep(POLL_INTERVAL)
        current = {summary["Id"]: summary for summary in engine.containers.list(all=True)}
        for container_id in [*known, *(each for each in current if each not in known)]:
            for event in _transition(known.get(container_id), current.get(container_id)):
                if _matches(event, filters):
                    yield event
        known = current
        yield None

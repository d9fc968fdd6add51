"""Named and anonymous volumes of the ``local`` driver.

A volume is a directory ``<root>/volumes/<name>/_data`` that containers
bind-mount, with a row in the ``volumes`` table. Anonymous volumes (from an
image's ``VOLUME`` or ``-v /path``) get a random 64-hex name and the label
``com.docker.volume.anonymous``, as in Docker. ``rm -v`` and ``--rm`` remove
them with their container.
"""

from __future__ import annotations

import builtins
import datetime
import json
import logging
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, InvalidArgument, StoreError, VolumeNotFound

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.engine.state import State

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
DRIVER = "local"


def volume_path(root: Path, name: str) -> Path:
    return Path(root) / "volumes" / name / "_data"


def _now() -> str:
    """Return the time as Docker shows a volume's CreatedAt: RFC 3339 in whole seconds, in UTC."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _whole_seconds(text: str) -> str:
    """Drop the fraction of a CreatedAt that an earlier version stored with microseconds."""
    main, dot, _ = text.partition(".")
    return f"{main}Z" if dot else text


class VolumeService:
    """Volumes in one dockyard root; reached as ``Engine(config).volumes``."""

    def __init__(self, config: "Config", state: "State") -> None:
        self.root = Path(config.root)
        self.state = state

    def create(self, name: str | None = None, driver: str = DRIVER, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, anonymous: bool = False) -> dict[str, Any]:
        """Create a volume, or return the existing one of that name (as Docker does); returns the Volume object."""
        if driver not in ("", DRIVER):
            raise InvalidArgument(f"volume driver {driver!r} is not supported: only {DRIVER!r} is")
        if options:
            raise InvalidArgument(f"volume options {sorted(options)} are not supported yet by the local driver")
        if name is None:
            name = secrets.token_hex(32)
            anonymous = True
        if not NAME_PATTERN.fullmatch(name):
            raise InvalidArgument(
                f'"{name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'
            )
        labels = dict(labels or {})
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        path = volume_path(self.root, name)
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
        row = {"name": name, "driver": DRIVER, "created": _now(), "labels": json.dumps(labels),
               "options": json.dumps(options or {}), "anonymous": int(anonymous)}
        if self.state.add_volume(row):
            log.debug("created volume %s at %s", name, path)
        return self.inspect(name)

    def inspect(self, name: str) -> dict[str, Any]:
        row = self.state.volume(name)
        if row is None:
            raise VolumeNotFound(name)
        return self._render(row)

    def _render(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "CreatedAt": _whole_seconds(row["created"]),
            "Driver": row["driver"],
            "Labels": json.loads(row["labels"]) or None,
            "Mountpoint": str(volume_path(self.root, row["name"])),
            "Name": row["name"],
            "Options": json.loads(row["options"]) or None,
            "Scope": "local",
        }

    def list(self, filters: dict[str, builtins.list[str]] | None = None) -> builtins.list[dict[str, Any]]:
        """Return Volume objects; filters ``name``, ``label``, ``dangling``, ``driver``."""
        filters = filters or {}
        used = self.used_volumes()
        result = []
        for row in self.state.volumes():
            volume = self._render(row)
            if not _matches(volume, filters, row["name"] in used):
                continue
            result.append(volume)
        return result

    def used_volumes(self) -> dict[str, builtins.list[str]]:
        """Return volume name to the IDs of the containers that mount it."""
        used: dict[str, builtins.list[str]] = {}
        for row in self.state.containers():
            for name in volume_names(row):
                used.setdefault(name, []).append(row["id"])
        return used

    def remove(self, name: str, force: bool = False) -> None:
        """Delete a volume and its data; raises Conflict while a container uses it."""
        if self.state.volume(name) is None:
            if force:
                return
            raise VolumeNotFound(name)
        users = self.used_volumes().get(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self.delete(name)

    def delete(self, name: str) -> None:
        """Delete a volume without checking for users (the caller knows it has none)."""
        directory = volume_path(self.root, name).parent
        if directory.exists():
            log.debug("removing volume directory %s", directory)
            try:
                shutil.rmtree(directory)
            except OSError as error:
                raise StoreError(f"removing volume {name} at {directory} failed: {error}") from error
        self.state.delete_volume(name)

    def prune(self, filters: dict[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        """Delete unused volumes: anonymous ones only, unless the filter ``all=true`` is given, as in Docker 23+."""
        filters = dict(filters or {})
        everything = filters.pop("all", ["false"])[-1] in ("1", "true")
        used = self.used_volumes()
        deleted = []
        reclaimed = 0
        for row in self.state.volumes():
            if row["name"] in used or not (everything or row["anonymous"]):
                continue
            if not _matches(self._render(row), filters, False):
                continue
            from dockyard.engine.rootfs import directory_size

            reclaimed += directory_size(volume_path(self.root, row["name"]))
            self.delete(row["name"])
            deleted.append(row["name"])
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}


def volume_names(container_row: dict[str, Any]) -> list[str]:
    """Return the names of the volumes a container row mounts."""
    record = json.loads(container_row["config"])
    return [mount["Name"] for mount in record.get("Mounts", []) if mount.get("Type") == "volume"]


def _matches(volume: dict[str, Any], filters: dict[str, list[str]], in_use: bool) -> bool:
    for key, values in filters.items():
        if key == "name":
            if not any(value in volume["Name"] for value in values):
                return False
        elif key == "driver":
            if volume["Driver"] not in values:
                return False
        elif key == "dangling":
            wanted = values[-1] in ("1", "true")
            if wanted == in_use:
                return False
        elif key == "label":
            labels = volume["Labels"] or {}
            for value in values:
                label, separator, expected = value.partition("=")
                if label not in labels or (separator and labels[label] != expected):
                    return False
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True

"""The Docker Engine API v1.50 swagger document, for checking the shape of what dockyard returns."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]
SPEC_PATH = Path(os.environ.get("DOCKYARD_ENGINE_API_SPEC", PROJECT.parent / "shared" / "specs" / "docker-engine-api-v1.50.yaml"))


@functools.cache
def _definitions() -> dict[str, Any]:
    if not SPEC_PATH.is_file():
        pytest.skip(f"the Engine API spec is not at {SPEC_PATH} (set DOCKYARD_ENGINE_API_SPEC)")
    import yaml

    return yaml.safe_load(SPEC_PATH.read_text())["definitions"]


def properties(name: str) -> dict[str, Any]:
    """Return the properties of a definition, with those of the definitions it extends through ``allOf``."""
    definition = _definitions()[name]
    found: dict[str, Any] = {}
    for part in definition.get("allOf", [definition]):
        if "$ref" in part:
            found.update(properties(part["$ref"].rsplit("/", 1)[-1]))
        else:
            found.update(part.get("properties", {}))
    return found

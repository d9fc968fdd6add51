"""The OCI image-spec JSON Schemas, for validating documents dockyard writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# The schema/ directory of OCI image-spec v1.1.1, kept in shared/specs beside the project checkout.
PROJECT = Path(__file__).resolve().parents[2]
SCHEMA_DIRECTORY = Path(
    os.environ.get("DOCKYARD_OCI_SCHEMAS", PROJECT.parent / "shared" / "specs" / "oci-image-spec-v1.1.1")
)


def schema_validator(name: str) -> Any:
    """Return a jsonschema validator for one OCI schema file, resolving its relative $refs locally."""
    if not (SCHEMA_DIRECTORY / name).is_file():
        pytest.skip(f"OCI schema {name} not found in {SCHEMA_DIRECTORY} (set DOCKYARD_OCI_SCHEMAS)")
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    def retrieve(uri: str) -> Resource:
        # The schemas name each other by relative path under differing base
        # URIs, so the last path component identifies the file.
        local = SCHEMA_DIRECTORY / uri.rstrip("/").rsplit("/", 1)[-1]
        return Resource.from_contents(json.loads(local.read_text()), default_specification=DRAFT4)

    schema = json.loads((SCHEMA_DIRECTORY / name).read_text())
    return Draft4Validator(schema, registry=Registry(retrieve=retrieve))



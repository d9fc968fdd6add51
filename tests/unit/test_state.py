"""Tests of the SQLite state database, on a real file in a temporary directory."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from dockyard.engine.state import (
    SCHEMA_VERSION,
    ImageRecord,
    LayerRecord,
    ManifestRecord,
    State,
)
from dockyard.errors import StoreError


def digest(char: str) -> str:
    return "sha256:" + char * 64


def image(char: str, created: str = "2024-01-01T00:00:00Z") -> ImageRecord:
    return ImageRecord(
        id=digest(char), config=b"{}", created=created, size=100, os="linux", architecture="amd64"
    )


def layers(*chars: str) -> list[LayerRecord]:
    result = []
    parent = None
    for char in chars:
        result.append(LayerRecord(
            chain_id=digest(char), diff_id=digest(char), parent=parent,
            blob_digest=digest(char.upper() if char.isalpha() else char), media_type="x", blob_size=10, size=50,
        ))
        parent = digest(char)
    return result


@pytest.fixture
def state(tmp_path):
    db = State(tmp_path / "state.db")
    yield db
    db.close()


def test_new_database_has_schema_version(state):
    assert state.schema_version() == SCHEMA_VERSION


def test_database_uses_wal(state, tmp_path):
    connection = sqlite3.connect(tmp_path / "state.db")
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


def test_reopen_keeps_data(tmp_path):
    first = State(tmp_path / "state.db")
    first.record_image(image("a"), layers("1"), blobs=[digest("a")], tags=["docker.io/library/x:latest"])
    first.close()
    second = State(tmp_path / "state.db")
    assert second.image_for_tag("docker.io/library/x:latest") == digest("a")
    assert second.schema_version() == SCHEMA_VERSION
    second.close()


def test_newer_schema_is_rejected(tmp_path):
    path = tmp_path / "state.db"
    State(path).close()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match="newer than this dockyard supports"):
        State(path)


def test_record_and_read_image(state):
    manifest = ManifestRecord("docker.io/library/x", digest("9"), digest("8"), "application/vnd.oci.image.index.v1+json")
    state.record_image(
        image("a"), layers("1", "2"), blobs=[digest("a"), digest("1")], manifest=manifest,
        tags=["docker.io/library/x:latest"], blob_sources=[(digest("1"), "docker.io/library/x")],
    )
    record = state.image(digest("a"))
    assert record is not None
    assert record.architecture == "amd64"
    assert record.added > 0
    assert [layer.chain_id for layer in state.image_layers(digest("a"))] == [digest("1"), digest("2")]
    assert state.manifests(digest("a")) == [manifest]
    assert state.image_for_digest("docker.io/library/x", digest("9")) == digest("a")
    assert state.image_for_digest("docker.io/library/x", digest("8")) == digest("a")
    assert state.image_for_digest("docker.io/library/y", digest("9")) is None
    assert state.blob_sources(digest("1")) == ["docker.io/library/x"]
    assert {digest("a"), digest("1"), digest("9"), digest("8")} <= state.used_blobs()


def test_record_twice_is_idempotent(state):
    state.record_image(image("a"), layers("1"), blobs=[digest("a")], tags=["r:1"])
    first_added = state.image(digest("a")).added
    state.record_image(image("a"), layers("1"), blobs=[digest("a")], tags=["r:1"])
    assert len(state.images()) == 1
    assert state.image(digest("a")).added == first_added
    assert state.tags(digest("a")) == [("r:1", digest("a"))]


def test_tag_moves_between_images(state):
    state.record_image(image("a"), layers("1"), blobs=[], tags=["r:latest"])
    displaced = state.record_image(image("b"), layers("1", "2"), blobs=[], tags=["r:latest"])
    assert displaced == [digest("a")]
    assert state.image_for_tag("r:latest") == digest("b")
    assert state.tags(digest("a")) == []


def test_set_tag_rejects_unknown_image(state):
    with pytest.raises(StoreError, match="not in the state database"):
        state.set_tag("r:latest", digest("f"))


def test_image_ids_with_prefix(state):
    state.record_image(image("a"), [], blobs=[])
    state.record_image(image("b"), [], blobs=[])
    assert state.image_ids_with_prefix("aaaa") == [digest("a")]
    assert state.image_ids_with_prefix("c") == []
    assert state.image_ids_with_prefix("%") == []
    assert state.image_ids_with_prefix("") == []


def test_delete_image_leaves_shared_layers(state):
    state.record_image(image("a"), layers("1"), blobs=[digest("1")], tags=["r:a"])
    state.record_image(image("b"), layers("1", "2"), blobs=[digest("1"), digest("2")], tags=["r:b"])
    state.delete_image(digest("b"))
    assert state.image(digest("b")) is None
    assert state.image_for_tag("r:b") is None
    assert state.unused_layers() == [digest("2")]
    assert digest("1") in state.used_chain_ids()
    assert digest("2") not in state.used_blobs()
    assert digest("1") in state.used_blobs()


def test_unused_layers_children_first(state):
    state.record_image(image("a"), layers("1", "2", "3"), blobs=[])
    state.delete_image(digest("a"))
    assert state.unused_layers() == [digest("3"), digest("2"), digest("1")]
    for chain_id in state.unused_layers():
        state.delete_layer(chain_id)
    assert state.layer(digest("1")) is None


def test_delete_layer_in_use_fails(state):
    state.record_image(image("a"), layers("1"), blobs=[])
    with pytest.raises(StoreError, match="still uses it"):
        state.delete_layer(digest("1"))


def test_failed_transaction_rolls_back(state):
    state.record_image(image("a"), [], blobs=[])
    with pytest.raises(RuntimeError):
        with state.transaction() as db:
            db.execute("INSERT INTO tags (reference, image_id) VALUES ('r:x', ?)", (digest("a"),))
            raise RuntimeError("stop")
    assert state.tags() == []


def test_constraint_error_becomes_store_error(state):
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        with state.transaction() as db:
            db.execute("INSERT INTO tags (reference, image_id) VALUES ('r:x', 'missing')")
    assert state.tags() == []


def test_containers_table_blocks_image(state):
    state.record_image(image("a"), [], blobs=[])
    assert state.containers_using(digest("a")) == []
    state.add_container(
        {"id": "c1", "name": "c1", "image": "a", "image_id": digest("a"), "created": "2026-01-01T00:00:00Z", "config": "{}"}
    )
    assert state.containers_using(digest("a")) == ["c1"]


def test_remove_manifests_per_repository(state):
    state.record_image(image("a"), [], blobs=[], manifest=ManifestRecord("r1", digest("1"), digest("1"), "m"))
    state.record_manifest(digest("a"), ManifestRecord("r2", digest("2"), digest("2"), "m"))
    assert state.remove_manifests(digest("a"), "r1") == [digest("1")]
    assert [m.repository for m in state.manifests(digest("a"))] == ["r2"]


def test_concurrent_writers_from_threads(tmp_path):
    path = tmp_path / "state.db"
    errors: list[BaseException] = []

    def write(char: str) -> None:
        db = None
        try:
            # Opening a new database from several threads at once is part of the test.
            db = State(path)
            for number in range(20):
                db.record_image(image(char), layers("1"), blobs=[digest("1")], tags=[f"r:{char}{number}"])
        except BaseException as error:  # collected and asserted below
            errors.append(error)
        finally:
            if db is not None:
                db.close()

    threads = [threading.Thread(target=write, args=(char,)) for char in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = State(path)
    assert len(db.images()) == 4
    assert len(db.tags()) == 80
    db.close()

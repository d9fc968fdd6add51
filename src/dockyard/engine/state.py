"""The state database: images, tags, layers and the blobs they use, in SQLite.

This module is the only code that writes ``root/state.db``. The database runs
in WAL mode, so readers never block the one writer. Every write runs in a
``BEGIN IMMEDIATE`` transaction. Two dockyard processes that write at the same
time therefore queue on the write lock (for up to ``BUSY_TIMEOUT_MS``) instead
of failing with "database is locked".

Tables:

- ``images``: one row per image; the ID is the digest of its config JSON.
- ``image_layers``: the image's layers bottom-up, as chain IDs.
- ``layers``: one row per unpacked layer (snapshot), keyed by chain ID.
- ``image_blobs``: every blob an image needs (index, manifest, config, layers);
  garbage collection keeps a blob while some image lists it.
- ``image_manifests``: the manifests an image was pulled or pushed as, per
  repository; these give ``RepoDigests``.
- ``tags``: full reference (``docker.io/library/busybox:latest``) to image ID.
- ``blob_sources``: repositories a blob was pulled from or pushed to, so a push
  to another repository of the same registry can mount it instead of uploading.

Schema version 2 adds the container and volume tables:

- ``containers``: one row per container. The create body, merged with the
  image's config, is stored as JSON in ``config``; the lifecycle fields
  (``status``, ``pid``, ``exit_code``, ...) are columns because the monitor
  updates them on every start and exit. ``image_id`` keeps the image from
  being removed while the container exists.
- ``volumes``: named and anonymous volumes of the ``local`` driver.

Schema version 3 adds the network tables, written by the network service:

- ``networks``: one row per bridge network, the default one included, with
  its bridge interface, subnet and gateway.
- ``endpoints``: a container's attachment to a network, from ``create`` (or
  ``network connect``) to ``rm``, so its IP address and MAC address survive
  restarts. ``UNIQUE (network_id, ip)`` keeps an address from being handed out
  twice. ``interface`` and ``host_veth`` are set while the veth pair exists.
- ``sandboxes``: what a running container's network namespace has set up
  beyond its endpoints: the published ports, the PIDs of its userland proxy
  and embedded DNS server.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from dockyard.errors import Conflict, StoreError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 3

# Each entry migrates the schema from version N (its index) to N + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        config BLOB NOT NULL,
        created TEXT,
        size INTEGER NOT NULL,
        os TEXT NOT NULL DEFAULT '',
        architecture TEXT NOT NULL DEFAULT '',
        variant TEXT,
        manifest_digest TEXT,
        added REAL NOT NULL
    );
    CREATE TABLE layers (
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        parent TEXT REFERENCES layers(chain_id),
        blob_digest TEXT,
        media_type TEXT,
        blob_size INTEGER,
        size INTEGER NOT NULL
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        chain_id TEXT NOT NULL REFERENCES layers(chain_id),
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_chain_id ON image_layers(chain_id);
    CREATE TABLE image_blobs (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        PRIMARY KEY (image_id, digest)
    );
    CREATE INDEX image_blobs_digest ON image_blobs(digest);
    CREATE TABLE image_manifests (
        repository TEXT NOT NULL,
        digest TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        manifest_digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        PRIMARY KEY (repository, digest)
    );
    CREATE INDEX image_manifests_image_id ON image_manifests(image_id);
    CREATE TABLE tags (
        reference TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX tags_image_id ON tags(image_id);
    CREATE TABLE blob_sources (
        digest TEXT NOT NULL,
        repository TEXT NOT NULL,
        PRIMARY KEY (digest, repository)
    );
    """,
    """
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image TEXT NOT NULL,
        image_id TEXT NOT NULL,
        created TEXT NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'created',
        pid INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL DEFAULT '',
        finished_at TEXT NOT NULL DEFAULT '',
        oom_killed INTEGER NOT NULL DEFAULT 0,
        restart_count INTEGER NOT NULL DEFAULT 0,
        manually_stopped INTEGER NOT NULL DEFAULT 0,
        monitor_pid INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX containers_image_id ON containers(image_id);
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        created TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        anonymous INTEGER NOT NULL DEFAULT 0
    );
    """,
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        bridge TEXT NOT NULL UNIQUE,
        subnet TEXT NOT NULL,
        gateway TEXT NOT NULL,
        internal INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL
    );
    CREATE TABLE endpoints (
        id TEXT PRIMARY KEY,
        network_id TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL,
        container_name TEXT NOT NULL,
        ip TEXT NOT NULL,
        mac TEXT NOT NULL,
        aliases TEXT NOT NULL DEFAULT '[]',
        interface TEXT NOT NULL DEFAULT '',
        host_veth TEXT NOT NULL DEFAULT '',
        UNIQUE (network_id, ip),
        UNIQUE (network_id, container_id)
    );
    CREATE INDEX endpoints_container_id ON endpoints(container_id);
    CREATE TABLE sandboxes (
        container_id TEXT PRIMARY KEY,
        netns TEXT NOT NULL DEFAULT '',
        ports TEXT NOT NULL DEFAULT '[]',
        proxy_pid INTEGER NOT NULL DEFAULT 0,
        dns_pid INTEGER NOT NULL DEFAULT 0
    );
    """,
)

# Columns of ``endpoints`` and ``sandboxes`` that the network service may change.
ENDPOINT_COLUMNS = frozenset({"interface", "host_veth", "aliases", "container_name"})
SANDBOX_COLUMNS = frozenset({"netns", "ports", "proxy_pid", "dns_pid"})

# Columns of ``containers`` that ``update_container`` may change.
CONTAINER_STATE_COLUMNS = frozenset({
    "status", "pid", "exit_code", "error", "started_at", "finished_at", "oom_killed",
    "restart_count", "manually_stopped", "monitor_pid",
})


@dataclass(frozen=True)
class ImageRecord:
    id: str
    config: bytes
    created: str | None
    size: int
    os: str
    architecture: str
    variant: str | None = None
    # The platform manifest the image was pulled or loaded as, used by push and save.
    manifest_digest: str | None = None
    added: float = 0.0


@dataclass(frozen=True)
class LayerRecord:
    chain_id: str
    diff_id: str
    parent: str | None
    blob_digest: str | None
    media_type: str | None
    blob_size: int | None
    size: int


@dataclass(frozen=True)
class ManifestRecord:
    """A manifest an image is known by in one repository.

    ``digest`` is what the reference resolved to (an index or a manifest) and
    is what ``RepoDigests`` shows; ``manifest_digest`` is the platform
    manifest itself, the document a push or save uses.
    """

    repository: str
    digest: str
    manifest_digest: str
    media_type: str


def _enable_wal(connection: sqlite3.Connection) -> None:
    """Switch the database to WAL mode, which stays set in the file once switched.

    The switch needs an exclusive lock, and SQLite returns "database is
    locked" at once, without calling the busy handler, when another
    connection holds a lock. Two commands opening a new state root at the
    same moment hit that, so the switch is retried for up to BUSY_TIMEOUT_MS.
    """
    if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# Numbers the connections of this process, for ``State.change_marker``.
_connection_serials = itertools.count(1)


class State:
    """A connection per thread to ``root/state.db``, creating and migrating it on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._migrate()

    # -- connections and transactions -------------------------------------

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                # isolation_level=None: this module issues BEGIN and COMMIT itself.
                connection = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
                connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                _enable_wal(connection)
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as error:
                raise StoreError(f"cannot open state database {self.path}: {error}") from error
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
            self._local.serial = next(_connection_serials)
            self._local.commits = 0
        return connection

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block as one write transaction; roll back if it raises."""
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise StoreError(f"cannot start a transaction on {self.path}: {error}") from error
        try:
            yield connection
        except sqlite3.Error as error:
            connection.execute("ROLLBACK")
            raise StoreError(f"write to {self.path} failed: {error}") from error
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            connection.execute("ROLLBACK")
            raise StoreError(f"cannot commit to {self.path}: {error}") from error
        finally:
            # Counted even when COMMIT failed, because a miscounted change only costs a rebuilt cache.
            self._local.commits += 1

    def _query(self, sql: str, parameters: Iterable = ()) -> list[sqlite3.Row]:
        try:
            return self._connection().execute(sql, tuple(parameters)).fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"query on {self.path} failed: {error}") from error

    def _query_dicts(self, sql: str, parameters: Iterable = ()) -> list[dict]:
        """Return the rows of ``sql`` as dicts by column name.

        Faster than ``dict(row)`` over ``sqlite3.Row`` objects, which matters
        for the queries that return every row of a table.
        """
        try:
            cursor = self._connection().cursor()
            cursor.row_factory = None
            cursor.execute(sql, tuple(parameters))
            rows = cursor.fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"query on {self.path} failed: {error}") from error
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in rows]

    def _migrate(self) -> None:
        # A database at the current version needs only this read. The write
        # transaction below would make every command wait for the write lock.
        try:
            rows = self._connection().execute("SELECT version FROM schema_version").fetchall()
        except sqlite3.OperationalError:
            rows = []
        if len(rows) == 1 and rows[0][0] == SCHEMA_VERSION:
            return
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"state database {self.path} has schema version {version}, newer than this dockyard "
                    f"supports ({SCHEMA_VERSION}); upgrade dockyard"
                )
            for number in range(version, SCHEMA_VERSION):
                log.debug("migrating %s from schema version %d", self.path, number)
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            else:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def change_marker(self) -> tuple[int, int, int]:
        """Return a value that differs from the previous call's on this thread if the database may have changed.

        It combines SQLite's data version, which changes when another
        connection (in this process or another) commits, with the count of
        commits through this thread's own connection, which the data version
        does not see, and a number for the connection itself.
        """
        version = int(self._query("PRAGMA data_version")[0][0])
        return self._local.serial, version, self._local.commits

    def schema_version(self) -> int:
        return int(self._query("SELECT version FROM schema_version")[0][0])

    # -- images ----------------------------------------------------------

    def record_image(
        self,
        image: ImageRecord,
        layers: list[LayerRecord],
        blobs: Iterable[str],
        manifest: ManifestRecord | None = None,
        tags: Iterable[str] = (),
        blob_sources: Iterable[tuple[str, str]] = (),
    ) -> list[str]:
        """Store an image with its layers, blobs, manifest and tags in one transaction.

        Recording an image that exists already keeps its first ``added`` time
        and adds the new manifest and tags. Returns the image IDs that lost a
        tag to this image.
        """
        added = image.added or time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO images (id, config, created, size, os, architecture, variant, manifest_digest, added)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " manifest_digest = coalesce(images.manifest_digest, excluded.manifest_digest)",
                (image.id, image.config, image.created, image.size, image.os, image.architecture, image.variant,
                 image.manifest_digest, added),
            )
            for layer in layers:
                db.execute(
                    "INSERT INTO layers (chain_id, diff_id, parent, blob_digest, media_type, blob_size, size)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(chain_id) DO UPDATE SET"
                    " blob_digest = coalesce(layers.blob_digest, excluded.blob_digest),"
                    " media_type = coalesce(layers.media_type, excluded.media_type),"
                    " blob_size = coalesce(layers.blob_size, excluded.blob_size)",
                    (layer.chain_id, layer.diff_id, layer.parent, layer.blob_digest, layer.media_type,
                     layer.blob_size, layer.size),
                )
            db.execute("DELETE FROM image_layers WHERE image_id = ?", (image.id,))
            db.executemany(
                "INSERT INTO image_layers (image_id, position, chain_id) VALUES (?, ?, ?)",
                [(image.id, position, layer.chain_id) for position, layer in enumerate(layers)],
            )
            db.executemany(
                "INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?, ?)",
                [(image.id, digest) for digest in blobs],
            )
            if manifest is not None:
                self._record_manifest(db, image.id, manifest)
            db.executemany(
                "INSERT OR IGNORE INTO blob_sources (digest, repository) VALUES (?, ?)", list(blob_sources)
            )
            return [displaced for tag in tags if (displaced := self._set_tag(db, tag, image.id))]

    @staticmethod
    def _record_manifest(db: sqlite3.Connection, image_id: str, manifest: ManifestRecord) -> None:
        db.execute(
            "INSERT INTO image_manifests (repository, digest, image_id, manifest_digest, media_type)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(repository, digest) DO UPDATE SET"
            " image_id = excluded.image_id, manifest_digest = excluded.manifest_digest,"
            " media_type = excluded.media_type",
            (manifest.repository, manifest.digest, image_id, manifest.manifest_digest, manifest.media_type),
        )
        for digest in {manifest.digest, manifest.manifest_digest}:
            db.execute("INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?, ?)", (image_id, digest))

    def record_manifest(self, image_id: str, manifest: ManifestRecord, blob_sources: Iterable[tuple[str, str]] = ()) -> None:
        """Add a manifest an existing image is known by, such as the one a push created."""
        with self.transaction() as db:
            self._record_manifest(db, image_id, manifest)
            db.executemany(
                "INSERT OR IGNORE INTO blob_sources (digest, repository) VALUES (?, ?)", list(blob_sources)
            )

    def image(self, image_id: str) -> ImageRecord | None:
        rows = self._query("SELECT * FROM images WHERE id = ?", (image_id,))
        return _image_record(rows[0]) if rows else None

    def images(self) -> list[ImageRecord]:
        """Return every image, the most recently created first."""
        return [_image_record(row) for row in self._query("SELECT * FROM images ORDER BY created DESC, added DESC")]

    def image_ids_with_prefix(self, hex_prefix: str) -> list[str]:
        """Return the IDs that start with ``sha256:<hex_prefix>``."""
        if not hex_prefix or any(char not in "0123456789abcdef" for char in hex_prefix):
            return []
        pattern = "sha256:" + hex_prefix + "%"
        return [row[0] for row in self._query("SELECT id FROM images WHERE id LIKE ?", (pattern,))]

    def delete_image(self, image_id: str) -> None:
        """Delete an image and its tags, manifests and blob list; layers stay until ``delete_layer``."""
        with self.transaction() as db:
            for table in ("tags", "image_manifests", "image_blobs", "image_layers"):
                db.execute(f"DELETE FROM {table} WHERE image_id = ?", (image_id,))
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))

    def containers_using(self, image_id: str) -> list[str]:
        """Return the IDs of containers made from the image, or none while no ``containers`` table exists."""
        exists = self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'containers'")
        if not exists:
            return []
        return [row[0] for row in self._query("SELECT id FROM containers WHERE image_id = ?", (image_id,))]

    # -- tags and manifests ------------------------------------------------

    @staticmethod
    def _set_tag(db: sqlite3.Connection, reference: str, image_id: str) -> str | None:
        row = db.execute("SELECT image_id FROM tags WHERE reference = ?", (reference,)).fetchone()
        db.execute(
            "INSERT INTO tags (reference, image_id) VALUES (?, ?)"
            " ON CONFLICT(reference) DO UPDATE SET image_id = excluded.image_id",
            (reference, image_id),
        )
        if row is not None and row[0] != image_id:
            return str(row[0])
        return None

    def set_tag(self, reference: str, image_id: str) -> str | None:
        """Point ``reference`` at the image; returns the image ID it pointed at before, if another."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                raise StoreError(f"cannot tag {reference}: image {image_id} is not in the state database")
            return self._set_tag(db, reference, image_id)

    def remove_tag(self, reference: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM tags WHERE reference = ?", (reference,))

    def remove_manifests(self, image_id: str, repository: str) -> list[str]:
        """Forget the digests the image has in one repository; returns those digests."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT digest FROM image_manifests WHERE image_id = ? AND repository = ? ORDER BY digest",
                (image_id, repository),
            ).fetchall()
            db.execute("DELETE FROM image_manifests WHERE image_id = ? AND repository = ?", (image_id, repository))
            return [row[0] for row in rows]

    def remove_manifest(self, repository: str, digest: str) -> None:
        """Forget one digest of a repository, matched as the resolved digest or the platform manifest's."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM image_manifests WHERE repository = ? AND (digest = ? OR manifest_digest = ?)",
                (repository, digest, digest),
            )

    def image_for_tag(self, reference: str) -> str | None:
        rows = self._query("SELECT image_id FROM tags WHERE reference = ?", (reference,))
        return rows[0][0] if rows else None

    def image_for_digest(self, repository: str, digest: str) -> str | None:
        """Find the image a repository's manifest or index digest stands for."""
        rows = self._query(
            "SELECT image_id FROM image_manifests WHERE repository = ? AND (digest = ? OR manifest_digest = ?)",
            (repository, digest, digest),
        )
        return rows[0][0] if rows else None

    def tags(self, image_id: str | None = None) -> list[tuple[str, str]]:
        """Return ``(reference, image_id)`` pairs sorted by reference, for one image or all."""
        if image_id is None:
            rows = self._query("SELECT reference, image_id FROM tags ORDER BY reference")
        else:
            rows = self._query("SELECT reference, image_id FROM tags WHERE image_id = ? ORDER BY reference", (image_id,))
        return [(row[0], row[1]) for row in rows]

    def manifests(self, image_id: str) -> list[ManifestRecord]:
        rows = self._query(
            "SELECT repository, digest, manifest_digest, media_type FROM image_manifests"
            " WHERE image_id = ? ORDER BY repository, digest",
            (image_id,),
        )
        return [ManifestRecord(row[0], row[1], row[2], row[3]) for row in rows]

    # -- layers and blobs --------------------------------------------------

    def layer(self, chain_id: str) -> LayerRecord | None:
        rows = self._query("SELECT * FROM layers WHERE chain_id = ?", (chain_id,))
        return _layer_record(rows[0]) if rows else None

    def image_layers(self, image_id: str) -> list[LayerRecord]:
        """Return the image's layers bottom-up."""
        rows = self._query(
            "SELECT layers.* FROM image_layers JOIN layers USING (chain_id)"
            " WHERE image_layers.image_id = ? ORDER BY image_layers.position",
            (image_id,),
        )
        return [_layer_record(row) for row in rows]

    def unused_layers(self) -> list[str]:
        """Return chain IDs no image uses, topmost first, so children go before parents."""
        rows = self._query(
            "SELECT chain_id FROM layers WHERE chain_id NOT IN (SELECT chain_id FROM image_layers)"
        )
        unused = {row[0] for row in rows}
        parents = {
            row[0]: row[1] for row in self._query("SELECT chain_id, parent FROM layers") if row[0] in unused
        }
        ordered: list[str] = []
        # A layer is emitted once no unused layer above it still names it as parent.
        remaining = dict(parents)
        while remaining:
            parent_ids = set(remaining.values())
            leaves = sorted(chain_id for chain_id in remaining if chain_id not in parent_ids)
            if not leaves:
                leaves = sorted(remaining)
            for chain_id in leaves:
                ordered.append(chain_id)
                del remaining[chain_id]
        return ordered

    def used_chain_ids(self) -> set[str]:
        """Return the chain IDs some image uses, with every parent below them."""
        used = {row[0] for row in self._query("SELECT DISTINCT chain_id FROM image_layers")}
        parents = {row[0]: row[1] for row in self._query("SELECT chain_id, parent FROM layers")}
        for chain_id in list(used):
            parent = parents.get(chain_id)
            while parent and parent not in used:
                used.add(parent)
                parent = parents.get(parent)
        return used

    def delete_layer(self, chain_id: str) -> None:
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM image_layers WHERE chain_id = ?", (chain_id,)).fetchone():
                raise StoreError(f"cannot delete layer {chain_id}: an image still uses it")
            db.execute("UPDATE layers SET parent = NULL WHERE parent = ?", (chain_id,))
            db.execute("DELETE FROM layers WHERE chain_id = ?", (chain_id,))

    def used_blobs(self) -> set[str]:
        """Return every blob digest some image lists."""
        return {row[0] for row in self._query("SELECT DISTINCT digest FROM image_blobs")}

    def add_image_blobs(self, image_id: str, digests: Iterable[str]) -> None:
        """List more blobs as used by an image, such as a manifest built for a push or save."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?, ?)",
                [(image_id, digest) for digest in digests],
            )

    def blob_sources(self, digest: str) -> list[str]:
        """Return the repositories the blob was pulled from or pushed to."""
        rows = self._query("SELECT repository FROM blob_sources WHERE digest = ? ORDER BY repository", (digest,))
        return [row[0] for row in rows]

    def forget_blob_sources(self, digests: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM blob_sources WHERE digest = ?", [(digest,) for digest in digests])

    # -- containers --------------------------------------------------------

    def add_container(self, row: dict) -> None:
        """Insert a container row; raises Conflict with Docker's wording when the name is taken."""
        with self.transaction() as db:
            holder = db.execute("SELECT id FROM containers WHERE name = ?", (row["name"],)).fetchone()
            if holder is not None:
                raise name_conflict(row["name"], holder[0])
            columns = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            db.execute(f"INSERT INTO containers ({columns}) VALUES ({marks})", tuple(row.values()))

    def container(self, container_id: str) -> dict | None:
        rows = self._query("SELECT * FROM containers WHERE id = ?", (container_id,))
        return dict(rows[0]) if rows else None

    def containers(self) -> list[dict]:
        """Return every container row, the most recently created first."""
        return self._query_dicts("SELECT * FROM containers ORDER BY created DESC")

    def container_id_for_name(self, name: str) -> str | None:
        rows = self._query("SELECT id FROM containers WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def container_ids_with_prefix(self, prefix: str) -> list[str]:
        if not prefix or any(char not in "0123456789abcdef" for char in prefix):
            return []
        return [row[0] for row in self._query("SELECT id FROM containers WHERE id LIKE ?", (prefix + "%",))]

    def update_container(self, container_id: str, **fields: object) -> None:
        """Change lifecycle columns of one container; a missing row is left missing."""
        unknown = set(fields) - CONTAINER_STATE_COLUMNS
        if unknown:
            raise StoreError(f"cannot update container columns {sorted(unknown)}: not lifecycle columns")
        if not fields:
            return
        assignments = ", ".join(f"{column} = ?" for column in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE containers SET {assignments} WHERE id = ?", (*fields.values(), container_id))

    def set_container_config(self, container_id: str, config: str) -> None:
        """Replace a container's recorded create record (JSON), as ``update`` does with new limits."""
        with self.transaction() as db:
            db.execute("UPDATE containers SET config = ? WHERE id = ?", (config, container_id))

    def rename_container(self, container_id: str, name: str) -> None:
        with self.transaction() as db:
            holder = db.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
            if holder is not None and holder[0] != container_id:
                raise name_conflict(name, holder[0])
            db.execute("UPDATE containers SET name = ? WHERE id = ?", (name, container_id))

    def delete_container(self, container_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (container_id,))

    # -- volumes -----------------------------------------------------------

    def add_volume(self, row: dict) -> bool:
        """Insert a volume row unless one with that name exists; returns whether it was inserted."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO volumes (name, driver, created, labels, options, anonymous)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (row["name"], row["driver"], row["created"], row["labels"], row["options"], row["anonymous"]),
            )
            return cursor.rowcount == 1

    def volume(self, name: str) -> dict | None:
        rows = self._query("SELECT * FROM volumes WHERE name = ?", (name,))
        return dict(rows[0]) if rows else None

    def volumes(self) -> list[dict]:
        return [dict(row) for row in self._query("SELECT * FROM volumes ORDER BY name")]

    def delete_volume(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM volumes WHERE name = ?", (name,))

    # -- networks ----------------------------------------------------------

    def add_network(self, row: dict) -> None:
        """Insert a network row; raise Conflict when the name or the bridge is taken."""
        with self.transaction() as db:
            holder = db.execute("SELECT id FROM networks WHERE name = ?", (row["name"],)).fetchone()
            if holder is not None:
                raise Conflict(f"network with name {row['name']} already exists")
            db.execute(
                "INSERT INTO networks (id, name, driver, bridge, subnet, gateway, internal, labels, options, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row["id"], row["name"], row["driver"], row["bridge"], row["subnet"], row["gateway"],
                 int(row["internal"]), row["labels"], row["options"], row["created"]),
            )

    def network(self, network_id: str) -> dict | None:
        rows = self._query("SELECT * FROM networks WHERE id = ?", (network_id,))
        return dict(rows[0]) if rows else None

    def network_by_name(self, name: str) -> dict | None:
        rows = self._query("SELECT * FROM networks WHERE name = ?", (name,))
        return dict(rows[0]) if rows else None

    def network_ids_with_prefix(self, prefix: str) -> list[str]:
        if not prefix or any(char not in "0123456789abcdef" for char in prefix):
            return []
        return [row[0] for row in self._query("SELECT id FROM networks WHERE id LIKE ?", (prefix + "%",))]

    def networks(self) -> list[dict]:
        return self._query_dicts("SELECT * FROM networks ORDER BY created, name")

    def delete_network(self, network_id: str) -> None:
        """Delete a network row; raise Conflict while endpoints still use it."""
        with self.transaction() as db:
            count = db.execute("SELECT count(*) FROM endpoints WHERE network_id = ?", (network_id,)).fetchone()[0]
            if count:
                raise Conflict(f"network {network_id} has active endpoints")
            db.execute("DELETE FROM networks WHERE id = ?", (network_id,))

    # -- endpoints and sandboxes ---------------------------------------------

    def add_endpoint(self, row: dict, pick: Callable[[list[str]], tuple[str, str]]) -> dict:
        """Insert an endpoint whose ``ip`` and ``mac`` are ``pick(addresses in use on the network)``; return the row.

        The addresses are read and the row written in one transaction, so two
        processes never get the same address. Raises Conflict when the
        container is on the network already.
        """
        with self.transaction() as db:
            existing = db.execute(
                "SELECT id FROM endpoints WHERE network_id = ? AND container_id = ?",
                (row["network_id"], row["container_id"]),
            ).fetchone()
            if existing is not None:
                raise Conflict(f"container {row['container_id']} is already attached to network {row['network_id']}")
            used = [each[0] for each in db.execute("SELECT ip FROM endpoints WHERE network_id = ?", (row["network_id"],))]
            ip, mac = pick(used)
            row = {**row, "ip": ip, "mac": mac}
            db.execute(
                "INSERT INTO endpoints (id, network_id, container_id, container_name, ip, mac, aliases)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row["id"], row["network_id"], row["container_id"], row["container_name"], row["ip"], row["mac"],
                 row["aliases"]),
            )
        return row

    def endpoints(self, network_id: str | None = None, container_id: str | None = None) -> list[dict]:
        clauses, values = [], []
        if network_id is not None:
            clauses.append("network_id = ?")
            values.append(network_id)
        if container_id is not None:
            clauses.append("container_id = ?")
            values.append(container_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._query_dicts(f"SELECT * FROM endpoints{where} ORDER BY rowid", values)

    def update_endpoint(self, endpoint_id: str, **fields: object) -> None:
        unknown = set(fields) - ENDPOINT_COLUMNS
        if unknown:
            raise StoreError(f"cannot update endpoint columns {sorted(unknown)}")
        if fields:
            assignments = ", ".join(f"{column} = ?" for column in fields)
            with self.transaction() as db:
                db.execute(f"UPDATE endpoints SET {assignments} WHERE id = ?", (*fields.values(), endpoint_id))

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))

    def sandbox(self, container_id: str) -> dict | None:
        rows = self._query("SELECT * FROM sandboxes WHERE container_id = ?", (container_id,))
        return dict(rows[0]) if rows else None

    def sandboxes(self) -> list[dict]:
        return self._query_dicts("SELECT * FROM sandboxes")

    def set_sandbox(self, container_id: str, **fields: object) -> None:
        """Create or change the sandbox row of a container."""
        unknown = set(fields) - SANDBOX_COLUMNS
        if unknown:
            raise StoreError(f"cannot update sandbox columns {sorted(unknown)}")
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO sandboxes (container_id) VALUES (?)", (container_id,))
            if fields:
                assignments = ", ".join(f"{column} = ?" for column in fields)
                db.execute(f"UPDATE sandboxes SET {assignments} WHERE container_id = ?", (*fields.values(), container_id))

    def delete_sandbox(self, container_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sandboxes WHERE container_id = ?", (container_id,))


def name_conflict(name: str, holder: str) -> Conflict:
    """Return Docker's error for a container name that another container holds."""
    return Conflict(
        f'Conflict. The container name "/{name}" is already in use by container "{holder}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )


def _image_record(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        id=row["id"],
        config=bytes(row["config"]),
        created=row["created"],
        size=row["size"],
        os=row["os"],
        architecture=row["architecture"],
        variant=row["variant"],
        manifest_digest=row["manifest_digest"],
        added=row["added"],
    )


def _layer_record(row: sqlite3.Row) -> LayerRecord:
    return LayerRecord(
        chain_id=row["chain_id"],
        diff_id=row["diff_id"],
        parent=row["parent"],
        blob_digest=row["blob_digest"],
        media_type=row["media_type"],
        blob_size=row["blob_size"],
        size=row["size"],
    )

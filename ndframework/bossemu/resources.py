"""The BOSS's resource tree: collections, coordinate frames, experiments and channels, their
JSON, and their storage in SQLite.

Each behaviour follows jhuapl-boss/boss, cited where it is reproduced:

- fields, defaults and choices: ``django/bosscore/models.py``;
- validation and JSON: ``django/bosscore/serializers.py`` (Django REST framework 3.11);
- what create, get, update, delete and list do: ``django/bosscore/views/views_resource.py``;
- how the data services (cutout, reserve, meta) find a channel: ``django/bosscore/request.py``;
- lookup keys ``collection_id&experiment_id&channel_id``: ``views_resource.py``/``lookup.py``;
- id counters: spdb's ``ObjectIndices.reserve_ids`` (spdb/spatialdb/object_indices.py);
- what finally removes soft-deleted rows: boss-tools ``activities/delete_cuboid.py``.

The tree answers as the BOSS's views do: a dict that is the JSON body, or a
`~ndframework.bossemu.errors.BossError` (or `~ndframework.bossemu.errors.ServerError` where
the BOSS's view raises). Permissions are the caller's: every method acts as the one user.
Paths are `ndframework.bossemu.paths`; the tables and the rows' JSON are in ``_schema``, and
the checks of a create or an update in ``_writes``.

>>> tree = ResourceTree.open(None)
>>> tree.create(ResourcePath(collection="col1"), {"description": "demo"})
{'name': 'col1', 'public': False, 'description': 'demo', 'experiments': [], 'creator': 'bossadmin'}
>>> tree.create(ResourcePath(collection="col1"), {})
Traceback (most recent call last):
...
ndframework.bossemu.errors.BossError: {'name': [ErrorDetail(string='collection with this Name of the Collection already exists.', code='unique')]}
>>> tree.close()
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from . import _writes, errors
from ._schema import SCHEMA, TABLE, column, live_names, one, resource_json, rows_along
from ._serializers import (
    CHANNEL_TYPES,
    DATATYPES,
    DOWNSAMPLE_STATUSES,
    HIERARCHY_METHODS,
    NAME_PATTERN,
    STORAGE_TYPES,
    TIME_STEP_UNITS,
    VOXEL_UNITS,
)
from .errors import BossError, ServerError
from .paths import Resolved, ResourcePath

__all__ = [
    "NAME_PATTERN",
    "DATATYPES",
    "CHANNEL_TYPES",
    "VOXEL_UNITS",
    "HIERARCHY_METHODS",
    "TIME_STEP_UNITS",
    "DOWNSAMPLE_STATUSES",
    "STORAGE_TYPES",
    "ResourceTree",
]

_KINDS = ("collection", "coord", "experiment", "channel")
_DEFAULT_USER = "bossadmin"  # ADMIN_USER, bosscore/constants.py


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class ResourceTree:
    """The BOSS's resource tree in one SQLite database, safe for many threads.

    Open it with `open`. Every call is one transaction under one lock: the views' own
    ``@transaction.atomic``. Methods take a `ResourcePath` and a request body (a mapping, as
    decoded from JSON) and return the response body.
    """

    def __init__(
        self, connection: sqlite3.Connection, *, annotation_requires_source: bool = False
    ) -> None:
        self._db = connection
        self._lock = threading.RLock()
        self.on_create: list[Callable[[sqlite3.Connection, str, int, str], None]] = []
        """Called in a create's transaction with the connection, the kind, the new row's id and
        its creator: where the BOSS's views then grant permissions (`ndframework.bossemu.
        accounts`)."""
        self.annotation_requires_source = annotation_requires_source
        """Refuse an annotation channel without sources, as the BOSS once did (the check is
        commented out in views_resource.py, ``ChannelDetail.post``, but intern's
        int_test_project_v1.py still expects it)."""

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None, *, annotation_requires_source: bool = False
    ) -> ResourceTree:
        """Open (creating if needed) the tree stored at `path`, in WAL mode; in memory if None."""
        db = sqlite3.connect(
            ":memory:" if path is None else os.fspath(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=30.0,
        )
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        if path is not None:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(SCHEMA)
        return cls(db, annotation_requires_source=annotation_requires_source)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResourceTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def connection(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The database under the tree's lock, in one transaction if `write`: for the modules
        that keep their own tables beside the tree's (`ndframework.bossemu.accounts`)."""
        if write:
            with self._transaction() as db:
                yield db
        else:
            with self._lock:
                yield self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- the four verbs and the lists ---------------------------------------------------------

    def get(self, path: ResourcePath) -> dict[str, Any]:
        """GET a resource: its JSON (200), 404/4000 if missing, 404/4005 if soft-deleted.

        Only the resource itself is checked for deletion, not its parents (views_resource.py,
        each ``get``).
        """
        with self._lock:
            row = rows_along(self._db, path)[-1]
            if row["to_be_deleted"] is not None:
                raise errors.marked_for_deletion()
            return resource_json(self._db, path.kind, row)

    def create(
        self,
        path: ResourcePath,
        data: Mapping[str, Any],
        *,
        creator: str = _DEFAULT_USER,
        admin: bool = True,
    ) -> dict[str, Any]:
        """POST a new resource: its JSON (201), or the BOSS's error.

        The name comes from the path. A name already used, even by a soft-deleted resource,
        is a 400 with code 1003 (serializer validation, views_resource.py); the parents may be
        soft-deleted (the views do not check). `admin` is whether the user may set a channel's
        ``bucket`` or ``cv_path``.
        """
        body = dict(data)
        body["name"] = path.name
        with self._transaction() as db:
            kind = path.kind
            if kind in ("collection", "coord"):
                created = _writes.create_top(db, kind, body, creator)
            elif kind == "experiment":
                created = _writes.create_experiment(db, path, body, creator)
            else:
                created = _writes.create_channel(
                    db, path, body, creator, admin, self.annotation_requires_source
                )
            row_id = rows_along(self._db, path)[-1]["id"]
            for hook in self.on_create:
                hook(db, kind, row_id, creator)
            return created

    def update(
        self, path: ResourcePath, data: Mapping[str, Any], *, admin: bool = True
    ) -> dict[str, Any]:
        """PUT changes to a resource: its new JSON (200), or the BOSS's error.

        Which fields may change follows the update serializers: a collection ignores unknown
        keys; a frame, an experiment or a channel refuses them (400, 1003). Soft-deleted
        resources may be updated (the views do not check). Renaming an experiment or a channel
        onto a sibling's name raises `ServerError`: the BOSS's update serializers lack the
        parent field, so only the database's unique constraint sees it. A channel update
        replaces its sources and related channels with those given, none if absent
        (``ChannelDetail.put``).
        """
        with self._transaction() as db:
            return _writes.update_resource(db, path, data, admin=admin)

    def delete(self, path: ResourcePath) -> None:
        """DELETE a resource: a soft delete (204), its ``to_be_deleted`` set to now.

        Refused (400, 4003, `errors.in_use`) while live experiments use a collection or a frame,
        live channels an experiment, or live channels derive from a channel. Deleting a
        soft-deleted resource succeeds again and restarts its clock (views_resource.py, each
        ``delete``). The rows stay, names included, until `purge`.
        """
        with self._transaction() as db:
            row, kind = rows_along(self._db, path)[-1], path.kind
            live = " AND to_be_deleted IS NULL"
            users = {
                "collection": "SELECT 1 FROM experiment WHERE collection_id = ?" + live,
                "coord": "SELECT 1 FROM experiment WHERE coord_frame_id = ?" + live,
                "experiment": "SELECT 1 FROM channel WHERE experiment_id = ?" + live,
                "channel": "SELECT 1 FROM channel_source AS s JOIN channel AS c"
                " ON c.id = s.derived_id WHERE s.source_id = ? AND c.to_be_deleted IS NULL",
            }[kind]
            if one(self._db, users, row["id"]) is not None:
                raise errors.in_use(kind, path.name)
            db.execute(
                f"UPDATE {TABLE[kind]} SET to_be_deleted = ? WHERE id = ?", (_now(), row["id"])
            )

    def list(
        self, kind: str, parent: ResourcePath | None = None, *, creator: str | None = None
    ) -> dict[str, Any]:
        """The names of one kind of resource, as the list views answer them.

        `kind` is ``'collection'``, ``'coord'``, ``'experiment'`` or ``'channel'``; `parent`
        names the collection (or experiment) for the last two. Soft-deleted resources are
        left out, except public collections (``CollectionList``'s union with the public
        ones does not exclude them). A missing parent raises `ServerError`
        (``ExperimentList``/``ChannelList`` do not catch ``DoesNotExist``). `creator` keeps
        the frames one user made (``?owner=True``).

        >>> with ResourceTree.open(None) as tree:
        ...     tree.list("collection")
        {'collections': []}
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        with self._lock:
            if kind == "collection":
                names = column(
                    self._db,
                    "SELECT name FROM collection WHERE to_be_deleted IS NULL OR public ORDER BY id"
                )
                return {"collections": names}
            if kind == "coord":
                sql = "SELECT name FROM coordinate_frame WHERE to_be_deleted IS NULL"
                args: tuple[Any, ...] = ()
                if creator is not None:
                    sql, args = sql + " AND creator = ?", (creator,)
                return {"coords": column(self._db, sql + " ORDER BY id", *args)}
            wanted = "collection" if kind == "experiment" else "experiment"
            if parent is None or parent.kind != wanted:
                raise ValueError(f"listing {kind}s needs the path of their {wanted}, got {parent}")
            try:
                rows = rows_along(self._db, parent)
            except BossError as err:
                raise ServerError(f"DoesNotExist: {err.message}") from err
            if kind == "experiment":
                names = live_names(self._db, "experiment", "collection_id", rows[0]["id"])
                return {"experiments": names}
            return {"channels": live_names(self._db, "channel", "experiment_id", rows[1]["id"])}

    # -- a channel's downsample status ------------------------------------------------------

    def set_downsample_status(
        self, channel_id: int, status: str, *, only_from: tuple[str, ...] | None = None
    ) -> bool:
        """Set a channel's ``downsample_status``; whether it changed anything.

        With `only_from`, only a channel in one of those statuses changes: the compare-and-set
        of ``enqueue_job`` (boss django/bossspatialdb/downsample.py, an ``UPDATE`` filtered on
        the status). Leaving a status clears ``downsample_arn``, as the views do.
        """
        if status not in DOWNSAMPLE_STATUSES:
            raise ValueError(f"status must be one of {DOWNSAMPLE_STATUSES}, got {status!r}")
        sql, args = "UPDATE channel SET downsample_status = ?, downsample_arn = '' WHERE id = ?", [
            status,
            channel_id,
        ]
        if only_from is not None:
            sql += f" AND downsample_status IN ({', '.join('?' for _ in only_from)})"
            args += list(only_from)
        with self._transaction() as db:
            return db.execute(sql, args).rowcount > 0

    def downsample_status(self, channel_id: int) -> str:
        """A channel's ``downsample_status``."""
        with self._lock:
            row = one(self._db, "SELECT downsample_status FROM channel WHERE id = ?", channel_id)
            if row is None:
                raise KeyError(channel_id)
            return row[0]  # type: ignore[no-any-return]

    def channels_in_status(self, *statuses: str) -> list[ResourcePath]:
        """The live channels whose ``downsample_status`` is one of `statuses`."""
        marks = ", ".join("?" for _ in statuses)
        with self._lock:
            rows = self._db.execute(
                "SELECT co.name, e.name, ch.name FROM channel AS ch"
                " JOIN experiment AS e ON e.id = ch.experiment_id"
                " JOIN collection AS co ON co.id = e.collection_id"
                f" WHERE ch.downsample_status IN ({marks}) AND ch.to_be_deleted IS NULL"
                " ORDER BY ch.id",
                statuses,
            ).fetchall()
        return [ResourcePath(collection=c, experiment=e, channel=ch) for c, e, ch in rows]

    # -- the data services' view -------------------------------------------------------------

    def resolve(self, path: ResourcePath) -> Resolved:
        """The live rows along `path` for a data service (cutout, reserve, meta, downsample).

        Unlike the resource views, every level is checked: ``'Collection c not found'``
        (404, 4000) or ``'Invalid Request. This resource c has been marked for deletion'``
        (404, 4005) (``BossRequest.set_collection``/``set_experiment``/``set_channel``,
        bosscore/request.py).
        """
        if path.kind == "coord":
            raise ValueError("coordinate frames have no data services")
        with self._lock:
            found: list[dict[str, Any]] = []
            steps = (
                ("collection", "Collection", None),
                ("experiment", "Experiment", "collection_id"),
                ("channel", "Channel", "experiment_id"),
            )
            for kind, label, parent_column in steps:
                name = getattr(path, kind)
                if name is None:
                    break
                sql, args = f"SELECT * FROM {kind} WHERE name = ?", [name]
                if parent_column is not None:
                    sql, args = sql + f" AND {parent_column} = ?", [name, found[-1]["id"]]
                row = one(self._db, sql, *args)
                if row is None:
                    raise errors.data_resource_not_found(label, name)
                if row["to_be_deleted"] is not None:
                    raise errors.data_marked_for_deletion(name)
                found.append(dict(row))
            frame = None
            if len(found) > 1:
                frame = dict(
                    one(
                        self._db,
                        "SELECT * FROM coordinate_frame WHERE id = ?",
                        found[1]["coord_frame_id"],
                    )
                )
            found += [None] * (3 - len(found))  # type: ignore[list-item]
            return Resolved(found[0], found[1], frame, found[2])

    def reserve_ids(self, lookup_key: str, count: int, version: int = 0) -> int:
        """Reserve `count` consecutive annotation ids for a channel; return the first.

        The counter per (lookup key, version) starts at 1 and only grows (spdb's
        ``ObjectIndices.reserve_ids``). Checking the channel's type is the caller's.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._transaction() as db:
            row = one(
                self._db,
                "SELECT next_id FROM id_counter WHERE lookup_key = ? AND version = ?",
                lookup_key,
                version,
            )
            first = 1 if row is None else row[0]
            if first + count > 2**63:
                raise OverflowError(
                    f"reserving {count} ids from {first} passes the counter's range"
                )
            db.execute(
                "INSERT OR REPLACE INTO id_counter VALUES (?, ?, ?)",
                (lookup_key, version, first + count),
            )
            return first  # type: ignore[no-any-return]

    # -- metadata (key/value per lookup key) --------------------------------------------------

    def meta_get(self, lookup_key: str, key: str) -> str | None:
        """The value stored under `key` for a resource, or None."""
        with self._lock:
            row = one(
                self._db,
                "SELECT value FROM metadata WHERE lookup_key = ? AND key = ?",
                lookup_key,
                key,
            )
            return None if row is None else row[0]

    def meta_set(self, lookup_key: str, key: str, value: str) -> None:
        """Store `value` under `key` for a resource, replacing any."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO metadata VALUES (?, ?, ?)", (lookup_key, key, value))

    def meta_delete(self, lookup_key: str, key: str) -> bool:
        """Remove `key` of a resource; whether it was there."""
        with self._transaction() as db:
            return (
                db.execute(
                    "DELETE FROM metadata WHERE lookup_key = ? AND key = ?", (lookup_key, key)
                ).rowcount
                > 0
            )

    def meta_keys(self, lookup_key: str) -> list[str]:
        """The keys stored for a resource, sorted."""
        with self._lock:
            return column(
                self._db, "SELECT key FROM metadata WHERE lookup_key = ? ORDER BY key", lookup_key
            )

    # -- what the BOSS's delete step functions do later --------------------------------------

    def purge(self, older_than: datetime.timedelta = datetime.timedelta(0)) -> list[str]:
        """Remove the rows soft-deleted more than `older_than` ago; return their lookup keys.

        The BOSS does this 1.5 days after a delete (boss-tools activities/delete_cuboid.py:
        ``to_be_deleted < now - 1 day 12 h``), removing with a channel its source and related
        links, its lookup key and metadata; only then can a name be used again. Ids are never
        reused (AUTOINCREMENT, as MySQL's), so a new channel's cuboids never meet old ones.
        The caller drops the cuboids filed under the returned keys.
        """
        cutoff = (datetime.datetime.now(datetime.timezone.utc) - older_than).isoformat()
        purged: list[str] = []
        with self._transaction() as db:
            for row in db.execute(
                "SELECT ch.id, e.id, e.collection_id FROM channel AS ch"
                " JOIN experiment AS e ON e.id = ch.experiment_id "
                "WHERE ch.to_be_deleted IS NOT NULL AND ch.to_be_deleted <= ?",
                (cutoff,),
            ).fetchall():
                channel_id = row[0]
                purged.append(f"{row[2]}&{row[1]}&{channel_id}")
                db.execute(
                    "DELETE FROM channel_source WHERE derived_id = ? OR source_id = ?",
                    (channel_id, channel_id),
                )
                db.execute(
                    "DELETE FROM channel_related WHERE from_id = ? OR to_id = ?",
                    (channel_id, channel_id),
                )
                db.execute("DELETE FROM channel WHERE id = ?", (channel_id,))
            gone = "to_be_deleted IS NOT NULL AND to_be_deleted <= ?"
            for row in db.execute(
                f"SELECT id, collection_id FROM experiment WHERE {gone} "
                "AND NOT EXISTS (SELECT 1 FROM channel WHERE experiment_id = experiment.id)",
                (cutoff,),
            ).fetchall():
                purged.append(f"{row[1]}&{row[0]}")
                db.execute("DELETE FROM experiment WHERE id = ?", (row[0],))
            for table, child in (
                ("collection", "collection_id"),
                ("coordinate_frame", "coord_frame_id"),
            ):
                for (row_id,) in db.execute(
                    f"SELECT id FROM {table} WHERE {gone} "
                    f"AND NOT EXISTS (SELECT 1 FROM experiment WHERE {child} = {table}.id)",
                    (cutoff,),
                ).fetchall():
                    if table == "collection":
                        purged.append(str(row_id))
                    db.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,))
            for key in purged:
                db.execute("DELETE FROM metadata WHERE lookup_key = ?", (key,))
                db.execute("DELETE FROM id_counter WHERE lookup_key = ?", (key,))
        return purged

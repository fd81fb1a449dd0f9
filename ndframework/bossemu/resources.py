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

import attrs

from . import _serializers as serializers
from . import errors
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
from .errors import BossError, ErrorCodes, FieldError, ServerError

__all__ = [
    "NAME_PATTERN",
    "DATATYPES",
    "CHANNEL_TYPES",
    "VOXEL_UNITS",
    "HIERARCHY_METHODS",
    "TIME_STEP_UNITS",
    "DOWNSAMPLE_STATUSES",
    "STORAGE_TYPES",
    "ResourcePath",
    "Resolved",
    "ResourceTree",
]

_KINDS = ("collection", "coord", "experiment", "channel")
_DEFAULT_USER = "bossadmin"  # ADMIN_USER, bosscore/constants.py


@attrs.frozen
class ResourcePath:
    """Where a resource lives: the names in its URL. Its keywords are those of intern's
    ``get_dict_route()``, so ``ResourcePath(**resource.get_dict_route())`` works.

    >>> ResourcePath(collection="c", experiment="e", channel="ch").kind
    'channel'
    >>> ResourcePath(coord="cf").name
    'cf'
    """

    collection: str | None = None
    """The collection's name."""
    experiment: str | None = None
    """The experiment's name, within `collection`."""
    channel: str | None = None
    """The channel's name, within `experiment`."""
    coord: str | None = None
    """A coordinate frame's name; given alone."""

    def __attrs_post_init__(self) -> None:
        given = (self.collection, self.experiment, self.channel)
        if self.coord is not None and any(n is not None for n in given):
            raise ValueError(f"a coordinate frame path names nothing else, got {self}")
        if self.coord is None and (
            self.collection is None or (self.channel is not None and self.experiment is None)
        ):
            raise ValueError(
                f"a path names a collection, then an experiment, then a channel, got {self}"
            )

    @property
    def kind(self) -> str:
        """``'collection'``, ``'coord'``, ``'experiment'`` or ``'channel'``."""
        if self.coord is not None:
            return "coord"
        if self.channel is not None:
            return "channel"
        return "experiment" if self.experiment is not None else "collection"

    @property
    def name(self) -> str:
        """The name of the resource itself (the last in the path)."""
        return getattr(self, self.kind)  # type: ignore[no-any-return]


@attrs.frozen
class Resolved:
    """A live channel (or experiment, or collection) as the data services see it.

    Rows are dicts of the stored fields (the model's names, plus ``id``).
    """

    collection: Mapping[str, Any]
    """The collection's row."""
    experiment: Mapping[str, Any] | None = None
    """The experiment's row, if the path names one."""
    coord_frame: Mapping[str, Any] | None = None
    """The experiment's coordinate frame's row."""
    channel: Mapping[str, Any] | None = None
    """The channel's row, if the path names one."""

    @property
    def lookup_key(self) -> str:
        """``"coll_id"``, ``"coll_id&exp_id"`` or ``"coll_id&exp_id&chan_id"``: the key the BOSS
        files metadata, id counters and cuboids under (views_resource.py, each ``post``)."""
        rows = (self.collection, self.experiment, self.channel)
        return "&".join(str(row["id"]) for row in rows if row is not None)


# -- storage -------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collection (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL, creator TEXT NOT NULL, public INTEGER NOT NULL,
    to_be_deleted TEXT, deleted_status TEXT);
CREATE TABLE IF NOT EXISTS coordinate_frame (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL, creator TEXT NOT NULL,
    x_start INTEGER NOT NULL, x_stop INTEGER NOT NULL, y_start INTEGER NOT NULL,
    y_stop INTEGER NOT NULL, z_start INTEGER NOT NULL, z_stop INTEGER NOT NULL,
    x_voxel_size REAL NOT NULL, y_voxel_size REAL NOT NULL, z_voxel_size REAL NOT NULL,
    voxel_unit TEXT NOT NULL, to_be_deleted TEXT, deleted_status TEXT);
CREATE TABLE IF NOT EXISTS experiment (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collection(id),
    name TEXT NOT NULL, description TEXT NOT NULL, creator TEXT NOT NULL,
    coord_frame_id INTEGER NOT NULL REFERENCES coordinate_frame(id),
    num_hierarchy_levels INTEGER NOT NULL, hierarchy_method TEXT NOT NULL,
    num_time_samples INTEGER NOT NULL, time_step INTEGER, time_step_unit TEXT,
    public INTEGER NOT NULL, to_be_deleted TEXT, deleted_status TEXT,
    UNIQUE (collection_id, name));
CREATE TABLE IF NOT EXISTS channel (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id INTEGER NOT NULL REFERENCES experiment(id),
    name TEXT NOT NULL, description TEXT NOT NULL, creator TEXT NOT NULL,
    base_resolution INTEGER NOT NULL, default_time_sample INTEGER NOT NULL,
    type TEXT NOT NULL, datatype TEXT NOT NULL, downsample_status TEXT NOT NULL,
    downsample_arn TEXT, public INTEGER NOT NULL, storage_type TEXT NOT NULL,
    bucket TEXT, cv_path TEXT, to_be_deleted TEXT, deleted_status TEXT,
    UNIQUE (experiment_id, name));
CREATE TABLE IF NOT EXISTS channel_source (
    derived_id INTEGER NOT NULL REFERENCES channel(id),
    source_id INTEGER NOT NULL REFERENCES channel(id), PRIMARY KEY (derived_id, source_id));
CREATE TABLE IF NOT EXISTS channel_related (
    from_id INTEGER NOT NULL REFERENCES channel(id),
    to_id INTEGER NOT NULL REFERENCES channel(id), PRIMARY KEY (from_id, to_id));
CREATE TABLE IF NOT EXISTS id_counter (
    lookup_key TEXT NOT NULL, version INTEGER NOT NULL, next_id INTEGER NOT NULL,
    PRIMARY KEY (lookup_key, version));
CREATE TABLE IF NOT EXISTS metadata (
    lookup_key TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (lookup_key, key));
"""

_TABLE = {
    "collection": "collection",
    "coord": "coordinate_frame",
    "experiment": "experiment",
    "channel": "channel",
}


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
        db.executescript(_SCHEMA)
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

    # -- rows ----------------------------------------------------------------------------------

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        return self._db.execute(sql, args).fetchone()  # type: ignore[no-any-return]

    def _column(self, sql: str, *args: Any) -> list[Any]:
        return [row[0] for row in self._db.execute(sql, args)]

    def _rows(self, path: ResourcePath) -> list[sqlite3.Row]:
        """The rows along `path`, soft-deleted or not, as the views' ``objects.get`` find them;
        the first name missing is answered ``BossResourceNotFoundError``."""
        if path.kind == "coord":
            row = self._one("SELECT * FROM coordinate_frame WHERE name = ?", path.coord)
            if row is None:
                raise errors.resource_not_found(path.coord)  # type: ignore[arg-type]
            return [row]
        found: list[sqlite3.Row] = []
        steps = (
            ("collection", None),
            ("experiment", "collection_id"),
            ("channel", "experiment_id"),
        )
        for kind, parent_column in steps:
            name = getattr(path, kind)
            if name is None:
                break
            if parent_column is None:
                row = self._one("SELECT * FROM collection WHERE name = ?", name)
            else:
                row = self._one(
                    f"SELECT * FROM {kind} WHERE name = ? AND {parent_column} = ?",
                    name,
                    found[-1]["id"],
                )
            if row is None:
                raise errors.resource_not_found(name)
            found.append(row)
        return found

    def _live_names(self, table: str, column: str, parent_id: int) -> list[str]:
        return self._column(
            f"SELECT name FROM {table} WHERE {column} = ? AND to_be_deleted IS NULL ORDER BY id",
            parent_id,
        )

    # -- JSON, as the serializers render it ---------------------------------------------------

    def _json(self, kind: str, row: sqlite3.Row) -> dict[str, Any]:
        if kind == "collection":  # CollectionSerializer
            return {
                "name": row["name"],
                "public": bool(row["public"]),
                "description": row["description"],
                "experiments": self._live_names("experiment", "collection_id", row["id"]),
                "creator": row["creator"],
            }
        if kind == "coord":  # CoordinateFrameSerializer: no creator
            keys = ["name", "description"] + [f"{a}_{e}" for a in "xyz" for e in ("start", "stop")]
            body = {key: row[key] for key in keys}
            body.update({f"{a}_voxel_size": float(row[f"{a}_voxel_size"]) for a in "xyz"})
            body["voxel_unit"] = row["voxel_unit"]
            return body
        if kind == "experiment":  # ExperimentReadSerializer
            return {
                "channels": self._live_names("channel", "experiment_id", row["id"]),
                "name": row["name"],
                "public": bool(row["public"]),
                "description": row["description"],
                "collection": self._one(
                    "SELECT name FROM collection WHERE id = ?", row["collection_id"]
                )[0],
                "coord_frame": self._one(
                    "SELECT name FROM coordinate_frame WHERE id = ?", row["coord_frame_id"]
                )[0],
                "num_hierarchy_levels": row["num_hierarchy_levels"],
                "hierarchy_method": row["hierarchy_method"],
                "num_time_samples": row["num_time_samples"],
                "time_step": row["time_step"],
                "time_step_unit": row["time_step_unit"],
                "creator": row["creator"],
            }
        # ChannelReadSerializer; sources and related leave out soft-deleted channels
        linked = (
            "SELECT c.name FROM {table} AS l JOIN channel AS c ON c.id = l.{other} "
            "WHERE l.{this} = ? AND c.to_be_deleted IS NULL ORDER BY c.id"
        )
        return {
            "name": row["name"],
            "public": bool(row["public"]),
            "description": row["description"],
            "experiment": self._one(
                "SELECT name FROM experiment WHERE id = ?", row["experiment_id"]
            )[0],
            "default_time_sample": row["default_time_sample"],
            "type": row["type"],
            "base_resolution": row["base_resolution"],
            "datatype": row["datatype"],
            "creator": row["creator"],
            "sources": self._column(
                linked.format(table="channel_source", this="derived_id", other="source_id"),
                row["id"],
            ),
            "downsample_status": row["downsample_status"],
            "related": self._column(
                linked.format(table="channel_related", this="from_id", other="to_id"), row["id"]
            ),
            "storage_type": row["storage_type"],
            "bucket": row["bucket"],
            "cv_path": row["cv_path"],
        }

    # -- the four verbs and the lists ---------------------------------------------------------

    def get(self, path: ResourcePath) -> dict[str, Any]:
        """GET a resource: its JSON (200), 404/4000 if missing, 404/4005 if soft-deleted.

        Only the resource itself is checked for deletion, not its parents (views_resource.py,
        each ``get``).
        """
        with self._lock:
            row = self._rows(path)[-1]
            if row["to_be_deleted"] is not None:
                raise errors.marked_for_deletion()
            return self._json(path.kind, row)

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
                created = self._create_top(kind, body, creator)
            elif kind == "experiment":
                created = self._create_experiment(path, body, creator)
            else:
                created = self._create_channel(path, body, creator, admin)
            row_id = self._rows(path)[-1]["id"]
            for hook in self.on_create:
                hook(db, kind, row_id, creator)
            return created

    def _create_top(self, kind: str, body: dict[str, Any], creator: str) -> dict[str, Any]:
        table = _TABLE[kind]
        label = (
            "collection with this Name of the Collection"
            if kind == "collection"
            else ("coordinate frame with this Name of the Coordinate reference frame")
        )
        taken = serializers.taken(
            f"{label} already exists.",
            lambda n: self._one(f"SELECT 1 FROM {table} WHERE name = ?", n) is not None,
        )
        values, problems = serializers.validate(
            serializers.COLLECTION if kind == "collection" else serializers.COORD,
            body,
            partial=False,
            taken=taken,
        )
        if problems:
            raise errors.validation_error(problems)
        values["creator"] = creator
        self._insert(table, values)
        return self._json(kind, self._one(f"SELECT * FROM {table} WHERE name = ?", values["name"]))

    def _create_experiment(
        self, path: ResourcePath, body: dict[str, Any], creator: str
    ) -> dict[str, Any]:
        (collection,) = self._rows(ResourcePath(collection=path.collection))
        if "coord_frame" not in body:
            raise BossError(
                ErrorCodes.INVALID_POST_ARGUMENT, "This request requires a valid coordinate frame"
            )
        frame = self._one("SELECT * FROM coordinate_frame WHERE name = ?", str(body["coord_frame"]))
        if frame is None:
            raise errors.resource_not_found(str(body["coord_frame"]))
        values, problems = serializers.validate(serializers.EXPERIMENT, body, partial=False)
        if not problems and self._one(
            "SELECT 1 FROM experiment WHERE collection_id = ? AND name = ?",
            collection["id"],
            values["name"],
        ):
            problems["non_field_errors"] = [
                FieldError("The fields collection, name must make a unique set.", "unique")
            ]
        if problems:
            raise errors.validation_error(problems)
        values.update(collection_id=collection["id"], coord_frame_id=frame["id"], creator=creator)
        row_id = self._insert("experiment", values)
        return self._json("experiment", self._one("SELECT * FROM experiment WHERE id = ?", row_id))

    def _create_channel(
        self, path: ResourcePath, body: dict[str, Any], creator: str, admin: bool
    ) -> dict[str, Any]:
        if body.get("bucket") and not admin:
            raise errors.admin_only("set bucket name")
        if body.get("cv_path") and not admin:
            raise errors.admin_only("set cv_path")
        collection, experiment = self._rows(
            ResourcePath(collection=path.collection, experiment=path.experiment)
        )
        if body.get("storage_type") == "cloudvol":
            if body.get("cv_path") in (None, ""):
                body["cv_path"] = f"/{path.collection}/{path.experiment}/{path.channel}"
            body["downsample_status"] = "DOWNSAMPLED"  # cloudvolume channels come downsampled
        sources = serializers.names(body.pop("sources", []))
        related = serializers.names(body.pop("related", []))
        if self.annotation_requires_source and body.get("type") == "annotation" and not sources:
            raise BossError(
                ErrorCodes.INVALID_POST_ARGUMENT,
                "Annotation channels require the source channel to be set. "
                "Specify a valid source channel in the post",
            )
        source_ids, related_ids = self._source_related(experiment["id"], sources, related)
        values, problems = serializers.validate(serializers.CHANNEL, body, partial=False)
        if not problems and self._one(
            "SELECT 1 FROM channel WHERE experiment_id = ? AND name = ?",
            experiment["id"],
            values["name"],
        ):
            problems["non_field_errors"] = [
                FieldError("The fields experiment, name must make a unique set.", "unique")
            ]
        if not problems:  # ChannelSerializer.validate, only on what was given
            extra: dict[str, list[Any]] = {}
            given_sample = values["default_time_sample"] if "default_time_sample" in body else None
            if given_sample is not None and given_sample >= experiment["num_time_samples"]:
                extra["default_time_sample"] = [
                    FieldError(
                        "Ensure this value is less that the experiments num_time_samples "
                        f"{experiment['num_time_samples']}.",
                        "invalid",
                    )
                ]
            cloudvol = values["storage_type"] == "cloudvol" and "storage_type" in body
            if not cloudvol and "cv_path" in body and values["cv_path"] not in (None, ""):
                extra["storage_type"] = [
                    FieldError("Must be set to cloudvol, if setting cv_path", "invalid")
                ]
            if cloudvol and values["downsample_status"] != "DOWNSAMPLED":
                extra["downsample_status"] = [
                    FieldError("cloudvol channels must be already downsampled.", "invalid")
                ]
            problems = extra
        if problems:
            raise errors.validation_error(problems)
        values.update(experiment_id=experiment["id"], creator=creator)
        row_id = self._insert("channel", values)
        self._link(row_id, source_ids, related_ids)
        return self._json("channel", self._one("SELECT * FROM channel WHERE id = ?", row_id))

    def _source_related(
        self, experiment_id: int, sources: list[str], related: list[str]
    ) -> tuple[list[int], list[int]]:
        """``ChannelDetail.validate_source_related_channels``: names in the experiment, soft-deleted
        or not, and none both a source and related."""
        if set(sources) & set(related):
            raise BossError(
                ErrorCodes.INVALID_POST_ARGUMENT,
                "Related channels have to be different from source channels",
            )
        ids: list[list[int]] = [[], []]
        for names, out in ((sources, ids[0]), (related, ids[1])):
            for name in names:
                row = self._one(
                    "SELECT id FROM channel WHERE experiment_id = ? AND name = ?",
                    experiment_id,
                    name,
                )
                if row is None:
                    raise BossError(
                        ErrorCodes.INVALID_POST_ARGUMENT,
                        f"Invalid channel names {name} in the list of source/related channels"
                        " channels ",
                    )
                out.append(row["id"])
        return ids[0], ids[1]

    def _link(self, channel_id: int, source_ids: list[int], related_ids: list[int]) -> None:
        """Replace a channel's sources and related channels; related is symmetric
        (``ManyToManyField('self')``, bosscore/models.py), sources are not."""
        self._db.execute("DELETE FROM channel_source WHERE derived_id = ?", (channel_id,))
        self._db.execute(
            "DELETE FROM channel_related WHERE from_id = ? OR to_id = ?", (channel_id, channel_id)
        )
        for source_id in source_ids:
            self._db.execute(
                "INSERT OR IGNORE INTO channel_source VALUES (?, ?)", (channel_id, source_id)
            )
        for other in related_ids:
            self._db.execute(
                "INSERT OR IGNORE INTO channel_related VALUES (?, ?), (?, ?)",
                (channel_id, other, other, channel_id),
            )

    def _insert(self, table: str, values: Mapping[str, Any]) -> int:
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cursor = self._db.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values())
        )
        return cursor.lastrowid  # type: ignore[return-value]

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
        body = dict(data)
        with self._transaction():
            rows = self._rows(path)
            row, kind = rows[-1], path.kind
            table = _TABLE[kind]
            taken = None
            if kind in ("collection", "coord"):
                label = (
                    "collection with this Name of the Collection"
                    if kind == "collection"
                    else ("coordinate frame with this Name of the Coordinate reference frame")
                )
                taken = serializers.taken(
                    f"{label} already exists.",
                    lambda n: self._one(
                        f"SELECT 1 FROM {table} WHERE name = ? AND id != ?", n, row["id"]
                    )
                    is not None,
                )
            source_ids: list[int] | None = None
            related_ids: list[int] = []
            if kind == "channel":
                if "storage_type" in body and not admin:
                    raise errors.admin_only("change storage_type after creation")
                if body.get("bucket") and not admin:
                    raise errors.admin_only("set bucket name")
                if body.get("cv_path") and not admin:
                    raise errors.admin_only("set cv_path")
                sources = serializers.names(body.pop("sources", []))
                related = serializers.names(body.pop("related", []))
                try:
                    source_ids, related_ids = self._source_related(rows[1]["id"], sources, related)
                except BossError as err:  # ChannelDetail.put does not catch it
                    raise ServerError(err.message) from err
            fields = {
                "collection": serializers.COLLECTION,
                "coord": serializers.COORD_UPDATE,
                "experiment": serializers.EXPERIMENT_UPDATE,
                "channel": serializers.CHANNEL_UPDATE,
            }[kind]
            values, problems = serializers.validate(
                fields, body, partial=True, taken=taken, readonly_check=kind != "collection"
            )
            if problems:
                raise errors.validation_error(problems)
            if values:
                assignments = ", ".join(f"{key} = ?" for key in values)
                try:
                    self._db.execute(
                        f"UPDATE {table} SET {assignments} WHERE id = ?",
                        (*values.values(), row["id"]),
                    )
                except sqlite3.IntegrityError as err:
                    raise ServerError(f"IntegrityError: {err}") from err
            if source_ids is not None:
                self._link(row["id"], source_ids, related_ids)
            return self._json(kind, self._one(f"SELECT * FROM {table} WHERE id = ?", row["id"]))

    def delete(self, path: ResourcePath) -> None:
        """DELETE a resource: a soft delete (204), its ``to_be_deleted`` set to now.

        Refused (400, 4003, `errors.in_use`) while live experiments use a collection or a frame,
        live channels an experiment, or live channels derive from a channel. Deleting a
        soft-deleted resource succeeds again and restarts its clock (views_resource.py, each
        ``delete``). The rows stay, names included, until `purge`.
        """
        with self._transaction() as db:
            row, kind = self._rows(path)[-1], path.kind
            live = " AND to_be_deleted IS NULL"
            users = {
                "collection": "SELECT 1 FROM experiment WHERE collection_id = ?" + live,
                "coord": "SELECT 1 FROM experiment WHERE coord_frame_id = ?" + live,
                "experiment": "SELECT 1 FROM channel WHERE experiment_id = ?" + live,
                "channel": "SELECT 1 FROM channel_source AS s JOIN channel AS c"
                " ON c.id = s.derived_id WHERE s.source_id = ? AND c.to_be_deleted IS NULL",
            }[kind]
            if self._one(users, row["id"]) is not None:
                raise errors.in_use(kind, path.name)
            db.execute(
                f"UPDATE {_TABLE[kind]} SET to_be_deleted = ? WHERE id = ?", (_now(), row["id"])
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
                names = self._column(
                    "SELECT name FROM collection WHERE to_be_deleted IS NULL OR public ORDER BY id"
                )
                return {"collections": names}
            if kind == "coord":
                sql = "SELECT name FROM coordinate_frame WHERE to_be_deleted IS NULL"
                args: tuple[Any, ...] = ()
                if creator is not None:
                    sql, args = sql + " AND creator = ?", (creator,)
                return {"coords": self._column(sql + " ORDER BY id", *args)}
            wanted = "collection" if kind == "experiment" else "experiment"
            if parent is None or parent.kind != wanted:
                raise ValueError(f"listing {kind}s needs the path of their {wanted}, got {parent}")
            try:
                rows = self._rows(parent)
            except BossError as err:
                raise ServerError(f"DoesNotExist: {err.message}") from err
            if kind == "experiment":
                return {
                    "experiments": self._live_names("experiment", "collection_id", rows[0]["id"])
                }
            return {"channels": self._live_names("channel", "experiment_id", rows[1]["id"])}

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
            row = self._one("SELECT downsample_status FROM channel WHERE id = ?", channel_id)
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
                row = self._one(sql, *args)
                if row is None:
                    raise errors.data_resource_not_found(label, name)
                if row["to_be_deleted"] is not None:
                    raise errors.data_marked_for_deletion(name)
                found.append(dict(row))
            frame = None
            if len(found) > 1:
                frame = dict(
                    self._one(
                        "SELECT * FROM coordinate_frame WHERE id = ?", found[1]["coord_frame_id"]
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
            row = self._one(
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
            row = self._one(
                "SELECT value FROM metadata WHERE lookup_key = ? AND key = ?", lookup_key, key
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
            return self._column(
                "SELECT key FROM metadata WHERE lookup_key = ? ORDER BY key", lookup_key
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

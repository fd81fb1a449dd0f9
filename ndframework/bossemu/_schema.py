"""The resource tree's tables in SQLite, the lookups every part of the tree makes on them,
and its rows rendered as the BOSS's serializers render them (boss
django/bosscore/serializers.py: ``CollectionSerializer``, ``CoordinateFrameSerializer``,
``ExperimentReadSerializer``, ``ChannelReadSerializer``).

Used by `ndframework.bossemu.resources`; each function takes the open connection and leaves
locking and transactions to the caller.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from . import errors
from .paths import ResourcePath

__all__ = ["SCHEMA", "TABLE", "one", "column", "rows_along", "live_names", "resource_json"]

SCHEMA = """
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

TABLE = {
    "collection": "collection",
    "coord": "coordinate_frame",
    "experiment": "experiment",
    "channel": "channel",
}


# -- lookups ---------------------------------------------------------------------------------


def one(db: sqlite3.Connection, sql: str, *args: Any) -> sqlite3.Row | None:
    """The first row `sql` finds, or None."""
    return db.execute(sql, args).fetchone()  # type: ignore[no-any-return]


def column(db: sqlite3.Connection, sql: str, *args: Any) -> list[Any]:
    """The first column of every row `sql` finds."""
    return [row[0] for row in db.execute(sql, args)]


def rows_along(db: sqlite3.Connection, path: ResourcePath) -> list[sqlite3.Row]:
    """The rows along `path`, soft-deleted or not, as the views' ``objects.get`` find them;
    the first name missing is answered ``BossResourceNotFoundError``."""
    if path.kind == "coord":
        row = one(db, "SELECT * FROM coordinate_frame WHERE name = ?", path.coord)
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
            row = one(db, "SELECT * FROM collection WHERE name = ?", name)
        else:
            row = one(
                db,
                f"SELECT * FROM {kind} WHERE name = ? AND {parent_column} = ?",
                name,
                found[-1]["id"],
            )
        if row is None:
            raise errors.resource_not_found(name)
        found.append(row)
    return found


def live_names(
    db: sqlite3.Connection, table: str, parent_column: str, parent_id: int
) -> list[str]:
    """The names of a parent's children not soft-deleted, in the order they were made."""
    return column(
        db,
        f"SELECT name FROM {table} WHERE {parent_column} = ?"
        " AND to_be_deleted IS NULL ORDER BY id",
        parent_id,
    )


# -- JSON, as the serializers render it ---------------------------------------------------


def resource_json(db: sqlite3.Connection, kind: str, row: sqlite3.Row) -> dict[str, Any]:
    """A row's JSON as the BOSS's serializers render a resource of `kind`."""
    if kind == "collection":  # CollectionSerializer
        return {
            "name": row["name"],
            "public": bool(row["public"]),
            "description": row["description"],
            "experiments": live_names(db, "experiment", "collection_id", row["id"]),
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
            "channels": live_names(db, "channel", "experiment_id", row["id"]),
            "name": row["name"],
            "public": bool(row["public"]),
            "description": row["description"],
            "collection": one(
                db, "SELECT name FROM collection WHERE id = ?", row["collection_id"]
            )[0],
            "coord_frame": one(
                db, "SELECT name FROM coordinate_frame WHERE id = ?", row["coord_frame_id"]
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
        "experiment": one(db, "SELECT name FROM experiment WHERE id = ?", row["experiment_id"])[0],
        "default_time_sample": row["default_time_sample"],
        "type": row["type"],
        "base_resolution": row["base_resolution"],
        "datatype": row["datatype"],
        "creator": row["creator"],
        "sources": column(
            db,
            linked.format(table="channel_source", this="derived_id", other="source_id"),
            row["id"],
        ),
        "downsample_status": row["downsample_status"],
        "related": column(
            db,
            linked.format(table="channel_related", this="from_id", other="to_id"),
            row["id"],
        ),
        "storage_type": row["storage_type"],
        "bucket": row["bucket"],
        "cv_path": row["cv_path"],
    }

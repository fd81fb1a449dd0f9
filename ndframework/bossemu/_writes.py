"""Creating and updating resources as the BOSS does: the checks of its serializers (boss
django/bosscore/serializers.py, through `ndframework.bossemu._serializers`) and of its views
(django/bosscore/views/views_resource.py, each ``post`` and ``put``), then the rows written.

Used by `ndframework.bossemu.resources`, whose `ResourceTree.create` and `ResourceTree.update`
hold the transaction these run in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from . import _serializers as serializers
from . import errors
from ._schema import TABLE, one, resource_json, rows_along
from .errors import BossError, ErrorCodes, FieldError, ServerError
from .paths import ResourcePath

__all__ = ["create_top", "create_experiment", "create_channel", "update_resource"]


def create_top(
    db: sqlite3.Connection, kind: str, body: dict[str, Any], creator: str
) -> dict[str, Any]:
    """Create a collection or a coordinate frame (`kind`); its JSON."""
    table = TABLE[kind]
    taken = _top_name_taken(db, kind)
    values, problems = serializers.validate(
        serializers.COLLECTION if kind == "collection" else serializers.COORD,
        body,
        partial=False,
        taken=taken,
    )
    if problems:
        raise errors.validation_error(problems)
    values["creator"] = creator
    _insert(db, table, values)
    created = one(db, f"SELECT * FROM {table} WHERE name = ?", values["name"])
    return resource_json(db, kind, created)


def _top_name_taken(db: sqlite3.Connection, kind: str, other_than: int | None = None) -> Any:
    """The check that a collection or coordinate frame name (`kind`) is free, as Django's
    unique-name validator words it; ``other_than`` is the id of the row being renamed."""
    table = TABLE[kind]
    label = (
        "collection with this Name of the Collection"
        if kind == "collection"
        else "coordinate frame with this Name of the Coordinate reference frame"
    )
    return serializers.taken(
        f"{label} already exists.",
        lambda n: one(db, f"SELECT 1 FROM {table} WHERE name = ? AND id IS NOT ?", n,
                      other_than) is not None,
    )


def create_experiment(
    db: sqlite3.Connection, path: ResourcePath, body: dict[str, Any], creator: str
) -> dict[str, Any]:
    """Create the experiment `path` names; its JSON."""
    (collection,) = rows_along(db, ResourcePath(collection=path.collection))
    if "coord_frame" not in body:
        raise BossError(
            ErrorCodes.INVALID_POST_ARGUMENT, "This request requires a valid coordinate frame"
        )
    frame = one(db, "SELECT * FROM coordinate_frame WHERE name = ?", str(body["coord_frame"]))
    if frame is None:
        raise errors.resource_not_found(str(body["coord_frame"]))
    values, problems = serializers.validate(serializers.EXPERIMENT, body, partial=False)
    if not problems:
        _check_unique_in(db, "experiment", "collection", collection["id"], values, problems)
    if problems:
        raise errors.validation_error(problems)
    values.update(collection_id=collection["id"], coord_frame_id=frame["id"], creator=creator)
    row_id = _insert(db, "experiment", values)
    created = one(db, "SELECT * FROM experiment WHERE id = ?", row_id)
    return resource_json(db, "experiment", created)


def create_channel(
    db: sqlite3.Connection,
    path: ResourcePath,
    body: dict[str, Any],
    creator: str,
    admin: bool,
    annotation_requires_source: bool,
) -> dict[str, Any]:
    """Create the channel `path` names, with its sources and related channels; its JSON.
    `annotation_requires_source` is `ResourceTree.annotation_requires_source`."""
    if body.get("bucket") and not admin:
        raise errors.admin_only("set bucket name")
    if body.get("cv_path") and not admin:
        raise errors.admin_only("set cv_path")
    collection, experiment = rows_along(
        db, ResourcePath(collection=path.collection, experiment=path.experiment)
    )
    if body.get("storage_type") == "cloudvol":
        if body.get("cv_path") in (None, ""):
            body["cv_path"] = f"/{path.collection}/{path.experiment}/{path.channel}"
        body["downsample_status"] = "DOWNSAMPLED"  # cloudvolume channels come downsampled
    sources = serializers.names(body.pop("sources", []))
    related = serializers.names(body.pop("related", []))
    if annotation_requires_source and body.get("type") == "annotation" and not sources:
        raise BossError(
            ErrorCodes.INVALID_POST_ARGUMENT,
            "Annotation channels require the source channel to be set. "
            "Specify a valid source channel in the post",
        )
    source_ids, related_ids = _source_related(db, experiment["id"], sources, related)
    values, problems = serializers.validate(serializers.CHANNEL, body, partial=False)
    if not problems:
        _check_unique_in(db, "channel", "experiment", experiment["id"], values, problems)
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
    row_id = _insert(db, "channel", values)
    _link(db, row_id, source_ids, related_ids)
    return resource_json(db, "channel", one(db, "SELECT * FROM channel WHERE id = ?", row_id))


def _check_unique_in(
    db: sqlite3.Connection,
    table: str,
    parent: str,
    parent_id: int,
    values: Mapping[str, Any],
    problems: dict[str, list[Any]],
) -> None:
    """The serializer's ``UniqueTogetherValidator`` on (parent, name): adds DRF's
    ``non_field_errors`` to ``problems`` if a sibling, deleted or not, has the name."""
    sql = f"SELECT 1 FROM {table} WHERE {parent}_id = ? AND name = ?"
    if one(db, sql, parent_id, values["name"]):
        problems["non_field_errors"] = [
            FieldError(f"The fields {parent}, name must make a unique set.", "unique")
        ]


def _source_related(
    db: sqlite3.Connection, experiment_id: int, sources: list[str], related: list[str]
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
            row = one(
                db,
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


def _link(
    db: sqlite3.Connection, channel_id: int, source_ids: list[int], related_ids: list[int]
) -> None:
    """Replace a channel's sources and related channels; related is symmetric
    (``ManyToManyField('self')``, bosscore/models.py), sources are not."""
    db.execute("DELETE FROM channel_source WHERE derived_id = ?", (channel_id,))
    db.execute(
        "DELETE FROM channel_related WHERE from_id = ? OR to_id = ?", (channel_id, channel_id)
    )
    for source_id in source_ids:
        db.execute("INSERT OR IGNORE INTO channel_source VALUES (?, ?)", (channel_id, source_id))
    for other in related_ids:
        db.execute(
            "INSERT OR IGNORE INTO channel_related VALUES (?, ?), (?, ?)",
            (channel_id, other, other, channel_id),
        )


def _insert(db: sqlite3.Connection, table: str, values: Mapping[str, Any]) -> int:
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    cursor = db.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values())
    )
    return cursor.lastrowid  # type: ignore[return-value]


def update_resource(
    db: sqlite3.Connection, path: ResourcePath, data: Mapping[str, Any], *, admin: bool
) -> dict[str, Any]:
    """`ResourceTree.update`'s checks and change, in the caller's transaction."""
    body = dict(data)
    rows = rows_along(db, path)
    row, kind = rows[-1], path.kind
    table = TABLE[kind]
    taken = _top_name_taken(db, kind, row["id"]) if kind in ("collection", "coord") else None
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
            source_ids, related_ids = _source_related(db, rows[1]["id"], sources, related)
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
            db.execute(
                f"UPDATE {table} SET {assignments} WHERE id = ?",
                (*values.values(), row["id"]),
            )
        except sqlite3.IntegrityError as err:
            raise ServerError(f"IntegrityError: {err}") from err
    if source_ids is not None:
        _link(db, row["id"], source_ids, related_ids)
    return resource_json(db, kind, one(db, f"SELECT * FROM {table} WHERE id = ?", row["id"]))

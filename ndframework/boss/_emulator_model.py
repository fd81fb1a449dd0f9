"""The BOSS emulator's data model: error codes, resource records and their JSON.

Records are frozen; an update makes a changed copy. The JSON field names are those that
intern's ``ProjectService_1`` sends (``_get_*_params``) and parses (``_get_collection``,
``_get_experiment``, ...), so every value rendered here must pass intern's own validation
(e.g. ``time_step_unit`` must be a string, never ``null``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ..geometry import Box

__all__ = [
    "ApiError",
    "ErrorCode",
    "CollectionRecord",
    "CoordFrameRecord",
    "ExperimentRecord",
    "ChannelRecord",
    "DATATYPES",
    "check_name",
    "parse_collection",
    "parse_coord_frame",
    "parse_experiment",
    "parse_channel",
    "update_collection",
    "update_coord_frame",
    "update_experiment",
    "update_channel",
]

DATATYPES = ("uint8", "uint16", "uint64")
CHANNEL_TYPES = ("image", "annotation")
VOXEL_UNITS = ("nanometers", "micrometers", "millimeters", "centimeters")
HIERARCHY_METHODS = ("anisotropic", "isotropic")
TIME_STEP_UNITS = ("", "nanoseconds", "microseconds", "milliseconds", "seconds")
DOWNSAMPLE_STATUSES = ("NOT_DOWNSAMPLED", "IN_PROGRESS", "DOWNSAMPLED", "FAILED", "QUEUED")

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_REQUIRED: Any = object()


class ErrorCode(enum.IntEnum):
    """The ``code`` of an error body: BOSS's own numbers (``bosscore.error.ErrorCodes``).

    ``UNAUTHENTICATED`` and ``INJECTED_FAULT`` are the emulator's: the real BOSS answers a
    bad token from Django REST framework (no BOSS code) and a 503 from its load balancer.
    """

    INVALID_URL = 1000
    INVALID_CUTOUT_ARGS = 1001
    TYPE_ERROR = 1002
    INVALID_POST_ARGUMENT = 1003
    INVALID_ARGUMENT = 1005
    REQUEST_TOO_LARGE = 2000
    DATA_DIMENSION_MISMATCH = 2002
    DATATYPE_NOT_SUPPORTED = 2003
    UNAUTHENTICATED = 3003
    RESOURCE_NOT_FOUND = 4000
    INTEGRITY_ERROR = 4003
    IO_ERROR = 5000
    UNSUPPORTED_TRANSPORT_FORMAT = 5001
    DESERIALIZATION_ERROR = 5003
    RESOURCE_EXISTS = 6002
    UNHANDLED_EXCEPTION = 9002
    INJECTED_FAULT = 9100


class ApiError(Exception):
    """An error answered to the client as ``{"status": ..., "code": ..., "message": ...}``."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON error body, in the BOSS's shape."""
        return {"status": self.status, "code": int(self.code), "message": self.message}

    @classmethod
    def bad_value(cls, key: str, value: Any, valid: str) -> ApiError:
        """A 400 for a request field holding ``value`` where ``valid`` was expected."""
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return cls(
            400, ErrorCode.INVALID_POST_ARGUMENT, f"Invalid {key!r}: got {shown}, expected {valid}."
        )

    @classmethod
    def not_found(cls, what: str) -> ApiError:
        """A 404 saying which resource does not exist."""
        return cls(404, ErrorCode.RESOURCE_NOT_FOUND, f"{what} not found.")


def check_name(name: str, kind: str) -> str:
    """Return ``name`` if it is a valid BOSS resource name, else raise a 400 naming it."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ApiError(
            400,
            ErrorCode.INVALID_ARGUMENT,
            f"Invalid {kind} name {name!r}: use letters, digits, '_' and '-' only.",
        )
    return name


# -- request-body fields ---------------------------------------------------------------------


def _get(body: Mapping[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ApiError(400, ErrorCode.INVALID_POST_ARGUMENT, f"Missing required field {key!r}.")
        return default
    return value


def _text(body: Mapping[str, Any], key: str, default: Any = "") -> str:
    value = _get(body, key, default)
    if not isinstance(value, str):
        raise ApiError.bad_value(key, value, "a string")
    return value


def _integer(body: Mapping[str, Any], key: str, default: Any, minimum: int = 0) -> int:
    value = _get(body, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ApiError.bad_value(key, value, f"an integer >= {minimum}")
    return value


def _positive_number(body: Mapping[str, Any], key: str, default: Any) -> float:
    value = _get(body, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ApiError.bad_value(key, value, "a positive number")
    return value


def _choice(
    body: Mapping[str, Any],
    key: str,
    default: Any,
    choices: Sequence[str],
    normalise: Callable[[str], str] = str.lower,
) -> str:
    value = _get(body, key, default)
    if not isinstance(value, str) or normalise(value) not in choices:
        raise ApiError.bad_value(key, value, "one of " + ", ".join(repr(c) for c in choices))
    return normalise(value)


def _names(body: Mapping[str, Any], key: str, default: Any = ()) -> tuple[str, ...]:
    value = _get(body, key, default)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ApiError.bad_value(key, value, "a list of channel names")
    return tuple(value)


def _boolean(body: Mapping[str, Any], key: str, default: Any = False) -> bool:
    value = _get(body, key, default)
    if not isinstance(value, bool):
        raise ApiError.bad_value(key, value, "true or false")
    return value


def _renamed(body: Mapping[str, Any], current: str, kind: str) -> str:
    return check_name(_text(body, "name", current), kind)


# -- records -------------------------------------------------------------------------------


@attrs.frozen
class CollectionRecord:
    """A collection: the top of the BOSS's resource tree."""

    name: str
    """Collection name."""
    description: str = ""
    """Free text."""
    public: bool = False
    """Whether the collection is publicly visible."""

    def to_json(self, creator: str, experiments: Sequence[str]) -> dict[str, Any]:
        """The collection as the BOSS renders it."""
        return {
            "name": self.name,
            "description": self.description,
            "experiments": list(experiments),
            "creator": creator,
            "public": self.public,
        }


@attrs.frozen
class CoordFrameRecord:
    """A coordinate frame: the half-open voxel extent that experiments share."""

    name: str
    """Coordinate frame name."""
    description: str
    """Free text."""
    x_start: int
    """First valid x."""
    x_stop: int
    """One past the last valid x."""
    y_start: int
    """First valid y."""
    y_stop: int
    """One past the last valid y."""
    z_start: int
    """First valid z."""
    z_stop: int
    """One past the last valid z."""
    x_voxel_size: float = 1
    """Voxel size along x, in ``voxel_unit``."""
    y_voxel_size: float = 1
    """Voxel size along y, in ``voxel_unit``."""
    z_voxel_size: float = 1
    """Voxel size along z, in ``voxel_unit``."""
    voxel_unit: str = "nanometers"
    """Unit of the voxel sizes."""
    public: bool = False
    """Whether the frame is publicly visible."""

    @property
    def box(self) -> Box:
        """The frame's extent as a ZYX box."""
        return Box(
            (self.z_start, self.y_start, self.x_start), (self.z_stop, self.y_stop, self.x_stop)
        )

    def to_json(self, creator: str) -> dict[str, Any]:
        """The coordinate frame as the BOSS renders it."""
        data = attrs.asdict(self)
        data["creator"] = creator
        return data


@attrs.frozen
class ExperimentRecord:
    """An experiment: a set of channels in one coordinate frame, with a time axis."""

    name: str
    """Experiment name."""
    coord_frame: str
    """Name of its coordinate frame."""
    description: str = ""
    """Free text."""
    num_hierarchy_levels: int = 1
    """Number of resolution levels."""
    hierarchy_method: str = "anisotropic"
    """How lower resolutions are made: 'anisotropic' or 'isotropic'."""
    num_time_samples: int = 1
    """Length of the time axis of every channel."""
    time_step: int = 0
    """Time between samples, in ``time_step_unit``."""
    time_step_unit: str = "seconds"
    """Unit of ``time_step``."""
    public: bool = False
    """Whether the experiment is publicly visible."""

    def to_json(self, creator: str, collection: str, channels: Sequence[str]) -> dict[str, Any]:
        """The experiment as the BOSS renders it."""
        data = attrs.asdict(self)
        data.update(collection=collection, channels=list(channels), creator=creator)
        return data


@attrs.frozen
class ChannelRecord:
    """A channel: one dtype of voxel data over its experiment's frame and time axis."""

    name: str
    """Channel name."""
    datatype: str
    """Voxel type: 'uint8', 'uint16' or 'uint64'."""
    type: str = "image"
    """'image' or 'annotation'."""
    description: str = ""
    """Free text."""
    base_resolution: int = 0
    """Resolution level at which the data was uploaded."""
    default_time_sample: int = 0
    """Time sample a cutout without a time range reads."""
    sources: tuple[str, ...] = ()
    """Channels (of the same experiment) this one was derived from."""
    related: tuple[str, ...] = ()
    """Channels (of the same experiment) related to this one."""
    downsample_status: str = "NOT_DOWNSAMPLED"
    """Downsampling state; the emulator never downsamples."""
    public: bool = False
    """Whether the channel is publicly visible."""

    def to_json(self, creator: str, experiment: str) -> dict[str, Any]:
        """The channel as the BOSS renders it."""
        data = attrs.asdict(self)
        data.update(
            sources=list(self.sources),
            related=list(self.related),
            experiment=experiment,
            creator=creator,
        )
        return data


# -- parsing request bodies -------------------------------------------------------------------


def parse_collection(name: str, body: Mapping[str, Any]) -> CollectionRecord:
    """The collection a POST body describes (the URL names it)."""
    return CollectionRecord(
        name=check_name(name, "collection"),
        description=_text(body, "description"),
        public=_boolean(body, "public"),
    )


def parse_coord_frame(name: str, body: Mapping[str, Any]) -> CoordFrameRecord:
    """The coordinate frame a POST body describes; every start/stop is required."""
    extent = {
        key: _integer(body, key, _REQUIRED)
        for axis in "xyz"
        for key in (f"{axis}_start", f"{axis}_stop")
    }
    for axis in "xyz":
        if extent[f"{axis}_stop"] <= extent[f"{axis}_start"]:
            raise ApiError(
                400,
                ErrorCode.INVALID_POST_ARGUMENT,
                f"Invalid coordinate frame: {axis}_stop must be greater than {axis}_start, got "
                f"{axis}_start={extent[f'{axis}_start']}, {axis}_stop={extent[f'{axis}_stop']}.",
            )
    return CoordFrameRecord(
        name=check_name(name, "coordinate frame"),
        description=_text(body, "description"),
        x_voxel_size=_positive_number(body, "x_voxel_size", 1),
        y_voxel_size=_positive_number(body, "y_voxel_size", 1),
        z_voxel_size=_positive_number(body, "z_voxel_size", 1),
        voxel_unit=_choice(body, "voxel_unit", "nanometers", VOXEL_UNITS),
        public=_boolean(body, "public"),
        **extent,
    )


def parse_experiment(name: str, body: Mapping[str, Any]) -> ExperimentRecord:
    """The experiment a POST body describes; the caller checks that its frame exists."""
    return ExperimentRecord(
        name=check_name(name, "experiment"),
        coord_frame=_text(body, "coord_frame", _REQUIRED),
        description=_text(body, "description"),
        num_hierarchy_levels=_integer(body, "num_hierarchy_levels", 1, minimum=1),
        hierarchy_method=_choice(body, "hierarchy_method", "anisotropic", HIERARCHY_METHODS),
        num_time_samples=_integer(body, "num_time_samples", 1, minimum=1),
        time_step=_integer(body, "time_step", 0),
        time_step_unit=_choice(body, "time_step_unit", "seconds", TIME_STEP_UNITS),
        public=_boolean(body, "public"),
    )


def parse_channel(name: str, body: Mapping[str, Any]) -> ChannelRecord:
    """The channel a POST body describes; the caller checks its sources and related."""
    return ChannelRecord(
        name=check_name(name, "channel"),
        datatype=_choice(body, "datatype", "uint8", DATATYPES),
        type=_choice(body, "type", "image", CHANNEL_TYPES),
        description=_text(body, "description"),
        base_resolution=_integer(body, "base_resolution", 0),
        default_time_sample=_integer(body, "default_time_sample", 0),
        sources=_names(body, "sources"),
        related=_names(body, "related"),
        downsample_status=_choice(
            body, "downsample_status", "NOT_DOWNSAMPLED", DOWNSAMPLE_STATUSES, str.upper
        ),
        public=_boolean(body, "public"),
    )


# -- updates: only the fields the BOSS lets change --------------------------------------------


def _renamable(record: Any, body: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The fields every kind of resource lets a PUT body change: name, description and
    visibility."""
    return {
        "name": _renamed(body, record.name, kind),
        "description": _text(body, "description", record.description),
        "public": _boolean(body, "public", record.public),
    }


def update_collection(record: CollectionRecord, body: Mapping[str, Any]) -> CollectionRecord:
    """``record`` with the name, description and visibility a PUT body sets."""
    return attrs.evolve(record, **_renamable(record, body, "collection"))


def update_coord_frame(record: CoordFrameRecord, body: Mapping[str, Any]) -> CoordFrameRecord:
    """``record`` with the name, description and visibility a PUT body sets (extents stay)."""
    return attrs.evolve(record, **_renamable(record, body, "coordinate frame"))


def update_experiment(record: ExperimentRecord, body: Mapping[str, Any]) -> ExperimentRecord:
    """``record`` with the fields a PUT body may change (not its frame nor its time axis)."""
    return attrs.evolve(
        record,
        **_renamable(record, body, "experiment"),
        num_hierarchy_levels=_integer(
            body, "num_hierarchy_levels", record.num_hierarchy_levels, minimum=1
        ),
        hierarchy_method=_choice(
            body, "hierarchy_method", record.hierarchy_method, HIERARCHY_METHODS
        ),
    )


def update_channel(record: ChannelRecord, body: Mapping[str, Any]) -> ChannelRecord:
    """``record`` with the fields a PUT body may change (not its type nor datatype)."""
    return attrs.evolve(
        record,
        **_renamable(record, body, "channel"),
        base_resolution=_integer(body, "base_resolution", record.base_resolution),
        sources=_names(body, "sources", record.sources),
        related=_names(body, "related", record.related),
    )

"""The BOSS's serializers as they validate a create or an update: each field's type,
default, length and choices (boss django/bosscore/serializers.py over the models of
django/bosscore/models.py, with Django REST framework 3.11's field rules), and the error dict
a refusal carries (`ndframework.bossemu.errors.validation_error`).

Used by `ndframework.bossemu._writes`; the choices are re-exported by
`ndframework.bossemu.resources`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .errors import FieldError, ServerError

__all__ = [
    "NAME_PATTERN",
    "DATATYPES",
    "CHANNEL_TYPES",
    "VOXEL_UNITS",
    "HIERARCHY_METHODS",
    "TIME_STEP_UNITS",
    "DOWNSAMPLE_STATUSES",
    "STORAGE_TYPES",
    "COLLECTION",
    "COORD",
    "COORD_UPDATE",
    "EXPERIMENT",
    "EXPERIMENT_UPDATE",
    "CHANNEL",
    "CHANNEL_UPDATE",
    "validate",
    "taken",
    "names",
]

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]*$")
"""Valid resource names (``NameValidator``, bosscore/models.py); a name is also non-blank
and at most 255 characters."""
DATATYPES = ("uint8", "uint16", "uint32", "uint64")
"""Channel datatypes the BOSS stores (``Channel.DATATYPE_CHOICES``). Neither type restricts
them: an annotation channel of uint8 is accepted (bosscore/test/test_resource_views.py), and
intern 1.4.2 rejects uint32 when it parses a channel."""
CHANNEL_TYPES = ("image", "annotation")
"""``Channel.TYPE_CHOICES``."""
VOXEL_UNITS = ("nanometers", "micrometers", "millimeters", "centimeters")
"""``CoordinateFrame.VOXEL_UNIT_CHOICES``."""
HIERARCHY_METHODS = ("anisotropic", "isotropic")
"""``Experiment.HIERARCHY_METHOD_CHOICES``."""
TIME_STEP_UNITS = ("nanoseconds", "microseconds", "milliseconds", "seconds")
"""``Experiment.TIMESTEP_UNIT_CHOICES``; the field may also be blank or null."""
DOWNSAMPLE_STATUSES = ("NOT_DOWNSAMPLED", "QUEUED", "IN_PROGRESS", "DOWNSAMPLED", "FAILED")
"""``Channel.DOWNSAMPLE_STATUS_CHOICES``."""
STORAGE_TYPES = ("spdb", "cloudvol")
"""``Channel.STORAGE_TYPE_CHOICES``."""

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1  # MySQL INT, the range DRF's IntegerField gets

# -- Django REST framework's field validation, as the BOSS's serializers configure it ---------


@attrs.frozen
class _Field:
    kind: str  # "char", "choice", "int", "float" or "bool"
    required: bool = False
    default: Any = None
    allow_null: bool = False
    allow_blank: bool = False
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    is_name: bool = False


_NAME = _Field("char", required=True, max_length=255, is_name=True)
_PUBLIC = _Field("bool", default=False)
_DESCRIPTION = _Field("char", default="", allow_blank=True, max_length=4096)
_REQ_INT = _Field("int", required=True)
_REQ_FLOAT = _Field("float", required=True)

COLLECTION = {"name": _NAME, "public": _PUBLIC, "description": _DESCRIPTION}
COORD = {
    "name": _NAME,
    "description": _DESCRIPTION,
    **{f"{axis}_{end}": _REQ_INT for axis in "xyz" for end in ("start", "stop")},
    **{f"{axis}_voxel_size": _REQ_FLOAT for axis in "xyz"},
    "voxel_unit": _Field("choice", required=True, choices=VOXEL_UNITS),
}
COORD_UPDATE = {"name": _NAME, "description": _DESCRIPTION}
EXPERIMENT = {
    "name": _NAME,
    "public": _PUBLIC,
    "description": _DESCRIPTION,
    "num_hierarchy_levels": _Field("int", default=1),
    "hierarchy_method": _Field("choice", default="anisotropic", choices=HIERARCHY_METHODS),
    "num_time_samples": _Field("int", default=1),
    "time_step": _Field("int", allow_null=True),
    "time_step_unit": _Field("choice", allow_null=True, allow_blank=True, choices=TIME_STEP_UNITS),
}
CHANNEL = {
    "name": _NAME,
    "public": _PUBLIC,
    "description": _DESCRIPTION,
    "default_time_sample": _Field("int", default=0),
    "type": _Field("choice", required=True, choices=CHANNEL_TYPES),
    "base_resolution": _Field("int", default=0),
    "datatype": _Field("choice", required=True, choices=DATATYPES),
    "downsample_status": _Field("choice", default="NOT_DOWNSAMPLED", choices=DOWNSAMPLE_STATUSES),
    "storage_type": _Field("choice", default="spdb", choices=STORAGE_TYPES),
    "bucket": _Field("char", allow_null=True, max_length=64),
    "cv_path": _Field("char", allow_null=True, allow_blank=True, max_length=2000),
}
CHANNEL_UPDATE = {
    key: CHANNEL[key]
    for key in "name public description default_time_sample base_resolution bucket cv_path "
    "storage_type".split()
}
# ChannelUpdateSerializer also lists sources and related, which the view pops first.
EXPERIMENT_UPDATE = EXPERIMENT  # ExperimentUpdateSerializer: the same writable fields

# DRF BooleanField.TRUE_VALUES and FALSE_VALUES
_TRUE = {"t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE"}
_TRUE |= {"on", "On", "ON", "1", 1, True}
_FALSE = {"f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE"}
_FALSE |= {"off", "Off", "OFF", "0", 0, 0.0, False}
_TRAILING_ZEROS = re.compile(r"\.0*\s*$")


def _check_field(
    field: _Field, value: Any, taken: Callable[[str], bool] | None
) -> tuple[Any, list[FieldError]]:
    """One field's DRF ``run_validation``: its value, or its errors."""
    if value is None:
        return None, (
            [] if field.allow_null else [FieldError("This field may not be null.", "null")]
        )
    if field.kind == "char":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return None, [FieldError("Not a valid string.", "invalid")]
        text = str(value).strip()  # CharField trims whitespace by default
        if text == "":
            return "", (
                [] if field.allow_blank else [FieldError("This field may not be blank.", "blank")]
            )
        problems = []
        if field.is_name and not NAME_PATTERN.match(text):
            problems.append(FieldError("Invalid Name.", "invalid"))
        if taken is not None and taken(text):
            problems.append(FieldError(taken.message, "unique"))  # type: ignore[attr-defined]
        if field.max_length is not None and len(text) > field.max_length:
            problems.append(
                FieldError(
                    f"Ensure this field has no more than {field.max_length} characters.",
                    "max_length",
                )
            )
        return text, problems
    if field.kind == "choice":
        if value == "" and field.allow_blank:
            return "", []
        if str(value) in field.choices:
            return str(value), []
        return None, [FieldError(f'"{value}" is not a valid choice.', "invalid_choice")]
    if isinstance(value, str) and len(value) > 1000:
        return None, [FieldError("String value too large.", "max_string_length")]
    if field.kind == "int":
        try:
            number = int(_TRAILING_ZEROS.sub("", str(value)))
        except (TypeError, ValueError):
            return None, [FieldError("A valid integer is required.", "invalid")]
        if number > _INT_MAX:
            return None, [
                FieldError(f"Ensure this value is less than or equal to {_INT_MAX}.", "max_value")
            ]
        if number < _INT_MIN:
            return None, [
                FieldError(
                    f"Ensure this value is greater than or equal to {_INT_MIN}.", "min_value"
                )
            ]
        return number, []
    if field.kind == "float":
        try:
            return float(value), []
        except (TypeError, ValueError):
            return None, [FieldError("A valid number is required.", "invalid")]
    try:  # bool
        if value in _TRUE:
            return True, []
        if value in _FALSE:
            return False, []
    except TypeError:
        pass
    return None, [FieldError("Must be a valid boolean.", "invalid")]


def validate(
    fields: Mapping[str, _Field],
    data: Mapping[str, Any],
    *,
    partial: bool,
    taken: Callable[[str], bool] | None = None,
    readonly_check: bool = False,
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """A serializer's ``is_valid``: the values given (and, on create, the defaults), and the
    errors by field in the serializer's field order (bosscore/serializers.py)."""
    values: dict[str, Any] = {}
    problems: dict[str, list[Any]] = {}
    for key, field in fields.items():
        if key not in data:
            if field.required and not partial:
                problems[key] = [FieldError("This field is required.", "required")]
            elif not partial:
                values[key] = field.default
            continue
        value, found = _check_field(field, data[key], taken if key == "name" else None)
        if found:
            problems[key] = found
        else:
            values[key] = value
    if readonly_check:  # the *UpdateSerializer.is_valid overrides
        extra = [key for key in data if key not in fields]
        if extra:
            problems["fields"] = [f"Cannot update the following readonly fields:{extra}."]
    return values, problems


def taken(message: str, test: Callable[[str], bool]) -> Callable[[str], bool]:
    """A uniqueness test for the ``name`` field, carrying DRF's message."""

    def check(name: str) -> bool:
        return test(name)

    check.message = message  # type: ignore[attr-defined]
    return check


def names(value: Any) -> list[str]:
    """A channel's ``sources`` or ``related`` names, as ``ChannelDetail`` reads them."""
    # The view iterates whatever JSON gave: a string is iterated by character.
    try:
        return [str(item) for item in value]
    except TypeError as err:
        raise ServerError(f"sources/related is not a list: {value!r}") from err

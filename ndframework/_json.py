"""Values made JSON-ready for reports: reduced values and per-block values, whatever their
type."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

__all__ = ["json_ready"]

MAX_ARRAY_ITEMS = 10_000
"""Arrays up to this size are written out as nested lists; larger ones as a summary."""


def json_ready(value: Any) -> Any:
    """``value`` as data `json.dumps` writes as standard JSON: numbers, text, lists and
    objects, with numpy scalars and small arrays converted, mappings keyed by text,
    non-finite floats as text, large arrays summarised, and anything else as its repr.

    >>> json_ready({"count": np.int64(3), (0, 1): np.arange(3), "mean": float("nan")})
    {'count': 3, '(0, 1)': [0, 1, 2], 'mean': 'nan'}
    >>> json_ready(np.zeros((100, 100, 2), np.uint8))["array"]
    {'shape': [100, 100, 2], 'dtype': 'uint8', 'min': 0, 'max': 0, 'sum': 0}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        if value.size <= MAX_ARRAY_ITEMS and value.dtype.kind in "biuf":
            return json_ready(value.tolist())
        return {"array": _array_summary(value)}
    if isinstance(value, Mapping):
        return {_key(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(item) for item in value]
    return repr(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(key)


def _array_summary(array: np.ndarray) -> dict[str, Any]:
    summary: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if array.size and array.dtype.kind in "biuf":
        summary.update(min=json_ready(array.min()), max=json_ready(array.max()),
                       sum=json_ready(array.sum()))
    return summary

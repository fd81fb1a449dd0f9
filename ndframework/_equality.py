"""Equality of values that may hold numpy arrays: arrays are equal when their shapes, dtypes
and contents are, so that value objects holding them compare by content instead of raising
numpy's "truth value of an array is ambiguous"."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["same"]


def same(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are equal, arrays compared by shape, dtype and content (NaN
    equal to NaN), inside mappings, lists and tuples too.

    >>> same({"x": np.arange(3)}, {"x": np.arange(3)}), same(np.arange(3), np.arange(3.0))
    (True, False)
    >>> same([1, np.float32("nan")], [1, np.float32("nan")])
    True
    """
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.shape == b.shape and a.dtype == b.dtype
                and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating)):
        return bool(a == b or (np.isnan(a) and np.isnan(b)))
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # an object whose == gives no single truth value
        return a is b

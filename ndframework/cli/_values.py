"""Values made short enough for a terminal: the reduced value ``run`` prints, and the
per-block values ``status`` lists. ``--report`` and the journal keep the values whole."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["short_value", "REDUCED_CHARACTERS", "SHOWN_ENTRIES"]

REDUCED_CHARACTERS = 300
"""Most characters of a value's repr printed as it is; a longer one is summarised."""
SHOWN_ENTRIES = 5
"""Entries of a large mapping or sequence that the summary shows."""
ENTRY_CHARACTERS = 60
"""Most characters of each entry shown in the summary of a mapping or sequence."""


def short_value(value: Any, limit: int = REDUCED_CHARACTERS) -> str:
    """``repr(value)`` when it is at most ``limit`` characters; else a summary: a numpy
    array's shape, dtype, minimum, maximum and sum; a mapping's number of entries and its
    first few; a sequence's length and first items; text cut, with its total length.

    >>> short_value(np.arange(1000).reshape(10, 100))
    'array of shape (10, 100), dtype int64: min 0, max 999, sum 499,500'
    >>> short_value({f"block{i}": i for i in range(100)}, limit=40)
    "mapping of 100 entries: {'block0': 0, 'block1': 1, 'block2': 2, 'block3': 3, 'block4': 4, ...}"
    >>> short_value("x" * 1000, limit=10)
    "'xxxxxxxx... (1,000 characters)"
    """
    if isinstance(value, np.ndarray):
        return _array(value, limit)
    if isinstance(value, Mapping):
        return _mapping(value, limit)
    if isinstance(value, (list, tuple)):
        return _sequence(value, limit)
    return _cut(value, limit)


def _cut(value: Any, limit: int) -> str:
    text = repr(value)
    if len(text) <= limit:
        return text
    length = len(value) if isinstance(value, str) else len(text)
    return f"{text[:limit - 1]}... ({length:,} characters)"


def _array(array: np.ndarray, limit: int) -> str:
    if array.size <= 20:
        text = repr(array)
        if len(text) <= limit:
            return text
    shape = f"array of shape {array.shape}, dtype {array.dtype}"
    if array.size == 0 or array.dtype.kind not in "biuf":
        return shape + (", empty" if array.size == 0 else "")
    with np.errstate(all="ignore"):
        low, high, total = array.min(), array.max(), array.sum(dtype=_sum_dtype(array))
    return f"{shape}: min {_number(low)}, max {_number(high)}, sum {_number(total)}"


def _sum_dtype(array: np.ndarray) -> Any:
    """Sum integers as 64-bit (numpy's default for smaller types, kept here for every type)."""
    if array.dtype.kind == "u":
        return np.uint64
    if array.dtype.kind in "bi":
        return np.int64
    return None


def _number(value: Any) -> str:
    if isinstance(value, (np.bool_, bool)):
        return str(bool(value))
    if isinstance(value, (np.integer, int)):
        return f"{int(value):,}"
    return f"{float(value):.6g}"


def _mapping(mapping: Mapping[Any, Any], limit: int) -> str:
    count = len(mapping)
    if count <= SHOWN_ENTRIES:
        text = repr(dict(mapping))
        if len(text) <= limit:
            return text
    shown = itertools.islice(mapping.items(), SHOWN_ENTRIES)
    entries = ", ".join(f"{key!r}: {short_value(item, ENTRY_CHARACTERS)}" for key, item in shown)
    more = ", ..." if count > SHOWN_ENTRIES else ""
    return f"mapping of {count:,} entries: {{{entries}{more}}}"


def _sequence(sequence: list[Any] | tuple[Any, ...], limit: int) -> str:
    text = repr(sequence)
    if len(text) <= limit:
        return text
    shown = ", ".join(short_value(item, ENTRY_CHARACTERS) for item in sequence[:SHOWN_ENTRIES])
    more = ", ..." if len(sequence) > SHOWN_ENTRIES else ""
    brackets = "[]" if isinstance(sequence, list) else "()"
    return (f"{type(sequence).__name__} of {len(sequence):,} items: "
            f"{brackets[0]}{shown}{more}{brackets[1]}")

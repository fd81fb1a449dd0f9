"""Checking the arguments `BossSource` and `BossSink` take, before any I/O."""

from __future__ import annotations

from ..errors import ConfigError
from ..geometry import Box

__all__ = ["as_timeout", "as_box"]


def as_timeout(value: object) -> tuple[float, float]:
    """``(connect, read)`` seconds from one number or a pair; a `ConfigError` otherwise."""
    pair = value if isinstance(value, (tuple, list)) else (value, value)
    try:
        connect, read = (float(v) for v in pair)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        connect = read = -1.0
    if not (connect > 0 and read > 0 and len(pair) == 2):
        raise ConfigError(
            f"timeout must be a positive number of seconds or a (connect, read) pair of them, "
            f"got {value!r}",
            value,
        )
    return connect, read


def as_box(bounds: object) -> Box | None:
    """``bounds`` as a `Box` (or None) from a Box or a (start, stop) pair of ZYX triples."""
    if bounds is None or isinstance(bounds, Box):
        return bounds
    try:
        start, stop = bounds  # type: ignore[misc]
        return Box(start, stop)  # type: ignore[has-type]
    except (TypeError, ValueError):
        raise ConfigError(
            f"bounds must be a Box, ((z, y, x) start, (z, y, x) stop) or None, got {bounds!r}",
            bounds,
        ) from None

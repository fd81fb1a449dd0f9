"""Checking the whole numbers that settings hold: counts of workers and tries, sizes in bytes.

One check for every such setting, so that each refuses the same values with the same words.
Numpy integers count as integers (a count computed with numpy is still a count) and come back
as Python ints; ``True`` and ``False`` do not (``workers=True`` is a mistake, not 1).
"""

from __future__ import annotations

import numbers
from typing import overload

from .errors import ConfigError

__all__ = ["as_int", "is_integer", "minimum_words"]


def is_integer(value: object) -> bool:
    """True for ints and numpy integers; False for bools, floats and the rest.

    >>> is_integer(3), is_integer(True), is_integer(3.0)
    (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def minimum_words(minimum: int) -> str:
    """How a message says "at least ``minimum``": ``'positive'`` for 1, ``'non-negative'``
    for 0, ``'at least 2'`` for 2."""
    return {0: "non-negative", 1: "positive"}.get(minimum, f"at least {minimum}")


@overload
def as_int(value: object, name: str, *, minimum: int, zero: str | None = None) -> int: ...


@overload
def as_int(
    value: object, name: str, *, minimum: int, zero: str | None = None, none: str
) -> int | None: ...


def as_int(
    value: object,
    name: str,
    *,
    minimum: int,
    zero: str | None = None,
    none: str | None = None,
) -> int | None:
    """``value`` as a Python int of at least ``minimum``, or a `ConfigError` naming ``name``,
    the bad value and what is valid.

    Parameters
    ----------
    value:
        The setting's value: an int or a numpy integer; not a bool.
    name:
        The setting, as the message names it.
    minimum:
        The smallest valid value: 1 for counts, 0 for limits where 0 means something.
    zero:
        What 0 means, for the message, when it is valid: ``"no limit"``.
    none:
        What None means, when it is valid (it is then returned as it is): ``"for no cap"``.

    Examples
    --------
    >>> as_int(4, "workers", minimum=1)
    4
    >>> as_int(0, "workers", minimum=1)
    Traceback (most recent call last):
    ...
    ndframework.errors.ConfigError: workers must be a positive integer, got 0
    >>> as_int(-1, "max_failures", minimum=0, zero="no limit", none="for the default")
    Traceback (most recent call last):
    ...
    ndframework.errors.ConfigError: max_failures must be a non-negative integer (0: no \
limit) or None for the default, got -1
    """
    if value is None and none is not None:
        return None
    if is_integer(value) and value >= minimum:  # type: ignore[operator]
        return int(value)  # type: ignore[call-overload]
    words = minimum_words(minimum)
    valid = f"a {words} integer" if minimum in (0, 1) else f"an integer of {words}"
    if zero is not None:
        valid += f" (0: {zero})"
    if none is not None:
        valid += f" or None {none}"
    raise ConfigError(f"{name} must be {valid}, got {value!r}", value)

"""A run's fingerprint: what defines its blocks and their meaning, as text.

Two runs with the same fingerprint make the same blocks and mean the same by them, so the
second may skip what the first recorded done. The fingerprint names the source, the bounds,
the channels, the tiling (its blocks, halo and halo mode), the processor's class and
parameters, and the sink; not the executor, the plugins or the number of workers, which never
change a result, nor the processor's code, so that a rerun after a bug fix resumes.

It is kept in the journal, so it holds no secret: sources and sinks by their own
secret-free ``describe()``, and the processor's parameters other than numbers as digests.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import types
from typing import Any, Mapping

import numpy as np

from .geometry import Box, Halo
from .tiling import CuboidTiler, RegularTiler, Tiler

__all__ = ["fingerprint", "digest", "stable_repr", "processor_parameters", "tiler_text"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def stable_repr(value: Any, depth: int = 0) -> str:
    """``value`` as text that is the same in every process and session: arrays by shape,
    dtype and a digest of their bytes, containers item by item, functions by name, other
    objects by their class and attributes, never by memory address."""
    if depth > 4:
        return "..."
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return (f"array(shape={data.shape}, dtype={data.dtype}, "
                f"sha1={hashlib.sha1(data.view(np.uint8).ravel()).hexdigest()[:16]})")
    if isinstance(value, (str, bytes, int, float, bool, complex, type(None), np.generic)):
        return repr(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        inner = ", ".join(stable_repr(item, depth + 1) for item in items)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{stable_repr(k, depth + 1)}: {stable_repr(v, depth + 1)}"
                          for k, v in sorted(value.items(), key=lambda kv: repr(kv[0])))
        return "{" + inner + "}"
    if isinstance(value, functools.partial):
        return (f"partial({stable_repr(value.func, depth + 1)}, "
                f"{stable_repr(value.args, depth + 1)}, {stable_repr(value.keywords, depth + 1)})")
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, (types.FunctionType, types.MethodType)):
        return _function_repr(value, depth)
    if callable(value) and hasattr(value, "__qualname__"):  # builtins
        return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    describe = getattr(value, "describe", None)
    if callable(describe) and not isinstance(value, type):
        # sources, sinks, processors, executors: their own secret-free description
        return f"{name}({describe()})"
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        return f"{name}({stable_repr(attributes, depth + 1)})"
    return _ADDRESS.sub("", repr(value))


def _function_repr(function: Any, depth: int) -> str:
    """A function by name and by what it was given: its defaults and the values its
    closure holds (so ``lambda d: d > level`` with another ``level`` differs), not by its
    code: a rerun after a fix to the code resumes."""
    if isinstance(function, types.MethodType):
        return (f"method({stable_repr(function.__self__, depth + 1)}."
                f"{function.__func__.__name__})")
    cells = []
    for cell in function.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # an empty cell
            cells.append(None)
    given = (function.__defaults__, function.__kwdefaults__, cells)
    return (f"{function.__module__}.{function.__qualname__}"
            f"{stable_repr(given, depth + 1)}")


def _shown(value: Any) -> str:
    """A parameter as kept in the journal: numbers as they are, anything else (which may
    be or hold a secret) as a digest of its stable text."""
    if _numeric(value):
        return repr(value)
    return "sha1:" + hashlib.sha1(stable_repr(value).encode()).hexdigest()[:16]


def _numeric(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return len(value) <= 8 and all(_numeric(item) for item in value)
    return type(value) in (bool, int, float, type(None))


def processor_parameters(processor: Any) -> dict[str, Any]:
    """What the processor was given: its public attributes, from the class attributes
    along its classes (``halo_cval = 7``, ``threshold = 100``) up to the instance's own
    (set in ``__init__``), which take precedence. Methods and properties are not
    parameters."""
    parameters: dict[str, Any] = {}
    for cls in reversed(type(processor).__mro__):
        for name, value in vars(cls).items():
            if name.startswith("_") or isinstance(
                value, (types.FunctionType, property, classmethod, staticmethod,
                        functools.cached_property)
            ):
                continue
            parameters[name] = value
    parameters.update((name, value) for name, value in vars(processor).items()
                      if not name.startswith("_"))
    return parameters


def fingerprint(*, source: Any, bounds: Any, channels: tuple[str, ...], tiler: Any,
                halo_mode: str, processor: Any, sink: Any) -> dict[str, str]:
    """The fingerprint of a run, one line of text per part; the processor's parameters
    one line each (``processor.threshold``), numbers shown, other values as digests."""
    cls = type(processor)
    parts = {
        "source": source.describe(),
        "source_bounds": str(source.bounds),
        "bounds": str(bounds),
        "channels": ",".join(channels),
        "tiler": tiler_text(tiler, bounds),
        "halo_mode": halo_mode,
        "processor": f"{cls.__module__}.{cls.__qualname__}",
        "sink": "none" if sink is None else sink.describe(),
    }
    for name, value in sorted(processor_parameters(processor).items()):
        parts[f"processor.{name}"] = _shown(value)
    return parts


_NAMED_BY_REPR = (RegularTiler, CuboidTiler)
"""Tilers whose ``repr`` holds everything their blocks depend on (not their subclasses,
which may override ``blocks``)."""


def tiler_text(tiler: Tiler, bounds: Box) -> str:
    """The tiling of ``bounds`` as the fingerprint names it.

    `RegularTiler` and `CuboidTiler` are named by their ``repr``, which the plots rebuild
    the grid from. Any other tiler's ``repr`` may not tell its tilings apart (object's
    default names the class only; an attrs class summarises a large mask array) or may
    show a secret, so it is named by its class and halo, and by the number of its blocks
    and a digest of their indices and boxes, walked once. Read boxes follow from the boxes,
    the halo and the halo mode, which the fingerprint names as well.

    >>> bounds = Box((0, 0, 0), (8, 8, 8))
    >>> tiler_text(RegularTiler(4, halo=1), bounds)
    'RegularTiler(block_shape=(4, 4, 4), halo=Halo(before=(1, 1, 1), after=(1, 1, 1)), origin=(0, 0, 0))'
    >>> class Reversed(RegularTiler):
    ...     def blocks(self, bounds, *, within=None):
    ...         return reversed(list(super().blocks(bounds, within=within)))
    >>> tiler_text(Reversed(4, halo=1), bounds)  # doctest: +ELLIPSIS
    '...Reversed(halo=Halo(before=(1, 1, 1), after=(1, 1, 1))); 8 blocks, sha1:...'
    """
    if type(tiler) in _NAMED_BY_REPR:
        return _ADDRESS.sub("", repr(tiler))
    blocks = hashlib.sha1()
    count = 0
    for block in tiler.blocks(bounds):
        # str() of each number: the same text for Python's and numpy's integers
        numbers = (*block.index, *block.box.start, *block.box.stop)
        blocks.update((",".join(map(str, numbers)) + ";").encode())
        count += 1
    cls = type(tiler)
    return (f"{cls.__module__}.{cls.__qualname__}(halo={Halo.of(tiler.halo)!r}); "
            f"{count} blocks, sha1:{blocks.hexdigest()[:16]}")


def digest(parts: Mapping[str, str]) -> str:
    """A short, stable id for a fingerprint: the run's identity.

    >>> digest({"source": "a"}) == digest({"source": "a"}) != digest({"source": "b"})
    True
    """
    text = json.dumps(dict(parts), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]

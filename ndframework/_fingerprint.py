"""A run's fingerprint: what defines its blocks and their meaning, as text.

Two runs with the same fingerprint make the same blocks and mean the same by them, so the
second may skip what the first recorded done. The fingerprint names the source, the bounds,
the channels, the tiling (grid, halo and halo mode), the processor's class and parameters,
and the sink; not the executor, the plugins or the number of workers, which never change a
result.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

import numpy as np

__all__ = ["fingerprint", "digest", "stable_repr"]

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
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
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


def processor_identity(processor: Any) -> str:
    """The processor's class and parameters (its attributes as constructed)."""
    cls = type(processor)
    attributes = {name: value for name, value in vars(processor).items()
                  if not name.startswith("_")}
    return f"{cls.__module__}.{cls.__qualname__}({stable_repr(attributes)[1:-1]})"


def fingerprint(*, source: Any, bounds: Any, channels: tuple[str, ...], tiler: Any,
                halo_mode: str, processor: Any, sink: Any) -> dict[str, str]:
    """The fingerprint of a run, one line of text per part."""
    return {
        "source": source.describe(),
        "source_bounds": str(source.bounds),
        "bounds": str(bounds),
        "channels": ",".join(channels),
        "tiler": _ADDRESS.sub("", repr(tiler)),
        "halo_mode": halo_mode,
        "processor": processor_identity(processor),
        "sink": "none" if sink is None else sink.describe(),
    }


def digest(parts: Mapping[str, str]) -> str:
    """A short, stable id for a fingerprint: the run's identity.

    >>> digest({"source": "a"}) == digest({"source": "a"}) != digest({"source": "b"})
    True
    """
    text = json.dumps(dict(parts), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]

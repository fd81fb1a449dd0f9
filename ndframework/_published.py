"""What other packages publish for ndframework in entry-point groups (plugins, executors):
each group read once per process, and again only if ``sys.path`` changes, where packages
may have been added."""

from __future__ import annotations

import sys
import threading
from importlib.metadata import EntryPoint, entry_points

__all__ = ["published"]

_read: dict[str, tuple[tuple[str, ...], tuple[EntryPoint, ...]]] = {}
"""Per group: the ``sys.path`` it was read on, and its entry points."""
_lock = threading.Lock()


def published(group: str) -> tuple[EntryPoint, ...]:
    """The entry points of ``group`` in the installed packages, not loaded."""
    path = tuple(sys.path)
    with _lock:
        found = _read.get(group)
        if found is None or found[0] != path:
            found = _read[group] = (path, tuple(entry_points(group=group)))
        return found[1]

"""What the benchmark scripts share."""

from __future__ import annotations

import time
from typing import Any, Callable


def best_of(repeat: int, function: Callable[[], Any]) -> float:
    """Smallest wall-clock seconds of ``repeat`` calls of ``function``: the run least
    disturbed by the rest of the machine."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)

"""Runs blocks in a pool of threads: for processors that release the GIL (numpy, scipy)."""

from __future__ import annotations

from concurrent import futures
from typing import Any, Callable

import attrs

from ._base import Executor, check_workers

__all__ = ["ThreadExecutor"]


@attrs.frozen
class ThreadExecutor(Executor):
    """``workers`` threads in this process, each with its own copy of the processor.

    Parameters
    ----------
    workers:
        Number of threads; default: the CPU count minus one, at least one.
    """

    name = "threads"
    shares_memory = True
    workers: int = attrs.field(default=None, converter=check_workers)
    """Number of worker threads."""

    def start(
        self, initializer: Callable[..., None], initargs: tuple[Any, ...]
    ) -> futures.Executor:
        return futures.ThreadPoolExecutor(
            self.workers,
            thread_name_prefix="ndframework",
            initializer=initializer,
            initargs=initargs,
        )

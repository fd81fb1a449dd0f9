"""Executors run blocks: serially, in threads, in processes, or on a Dask cluster; chosen by
name too. Dask itself is imported only when a `DaskExecutor` connects."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ._base import Executor, WorkerLifecycle, default_workers
from ._board import WorkerBoard, worker_processes
from ._dask import DaskExecutor
from ._processes import ProcessExecutor
from ._serial import SerialExecutor
from ._threads import ThreadExecutor

__all__ = [
    "Executor",
    "WorkerLifecycle",
    "WorkerBoard",
    "worker_processes",
    "SerialExecutor",
    "ThreadExecutor",
    "ProcessExecutor",
    "DaskExecutor",
    "get_executor",
    "default_workers",
    "EXECUTORS",
]

EXECUTORS: dict[str, type[Executor]] = {
    SerialExecutor.name: SerialExecutor,
    ThreadExecutor.name: ThreadExecutor,
    ProcessExecutor.name: ProcessExecutor,
    DaskExecutor.name: DaskExecutor,
}
"""Executors by name."""


def get_executor(name: str | Executor, **options: Any) -> Executor:
    """The executor called ``name``, built with ``options`` (e.g. ``workers=4``).

    >>> get_executor("threads", workers=2)
    ThreadExecutor(workers=2)
    >>> get_executor("gpu")
    Traceback (most recent call last):
    ...
    ndframework.errors.ConfigError: unknown executor 'gpu'; valid executors: 'serial', 'threads', 'processes', 'dask'
    """
    if isinstance(name, Executor):
        return name
    try:
        cls = EXECUTORS[name]
    except (KeyError, TypeError):
        valid = ", ".join(map(repr, EXECUTORS))
        raise ConfigError(f"unknown executor {name!r}; valid executors: {valid}", name) from None
    if cls is SerialExecutor and options.get("workers", 1) in (None, 1):
        options.pop("workers", None)
    try:
        return cls(**options)
    except TypeError as error:
        raise ConfigError(f"bad options for the {name!r} executor: {error}", options) from error

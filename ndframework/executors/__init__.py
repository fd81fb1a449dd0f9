"""Executors run blocks: serially, in threads, in processes, or on a Dask cluster; chosen by
name too, from the built-in executors, those registered with `register_executor`, and those
other packages publish in the ``ndframework.executors`` entry-point group. Dask itself is
imported only when a `DaskExecutor` connects."""

from __future__ import annotations

import threading
from importlib import metadata
from typing import Any, Callable

from .._published import published
from ..errors import ConfigError
from ._base import Executor, default_workers
from ._board import WorkerBoard, worker_processes
from ._dask import DaskExecutor
from ._processes import ProcessExecutor
from ._serial import SerialExecutor
from ._session import WorkerSession
from ._threads import ThreadExecutor

__all__ = [
    "Executor",
    "WorkerSession",
    "WorkerBoard",
    "worker_processes",
    "SerialExecutor",
    "ThreadExecutor",
    "ProcessExecutor",
    "DaskExecutor",
    "get_executor",
    "register_executor",
    "executor_names",
    "end_worker",
    "default_workers",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "ndframework.executors"
"""The entry-point group in which a package publishes executors: each entry point's name is
the executor's name, its object a factory (an `Executor` class, say)."""

_factories: dict[str, Callable[..., Executor]] = {
    SerialExecutor.name: SerialExecutor,
    ThreadExecutor.name: ThreadExecutor,
    ProcessExecutor.name: ProcessExecutor,
    DaskExecutor.name: DaskExecutor,
}
"""Executor factories by name: the built-in ones and those registered."""
_lock = threading.RLock()


def register_executor(name: str, factory: Callable[..., Executor], *,
                      replace: bool = False) -> None:
    """Make ``factory`` the executor called ``name`` in this process: ``get_executor(name,
    **options)`` and ``Pipeline(executor=name)`` then call ``factory(**options)``, which
    returns an `Executor`. (The command line, a process of its own, finds executors that a
    package publishes in the `ENTRY_POINT_GROUP`.) A name already taken is refused unless
    ``replace``.

    >>> register_executor("threads", ProcessExecutor)
    Traceback (most recent call last):
    ...
    ndframework.errors.ConfigError: an executor called 'threads' exists already (ThreadExecutor); pass replace=True to replace it
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(
            f"an executor's name must be an identifier such as 'slurm_gpu', got {name!r}", name)
    if not callable(factory):
        raise ConfigError(
            f"the factory of executor {name!r} must be callable (an Executor class, say), "
            f"got {factory!r}", factory)
    with _lock:
        taken = _factories.get(name)
        if taken is not None and not replace and taken is not factory:
            raise ConfigError(
                f"an executor called {name!r} exists already "
                f"({getattr(taken, '__qualname__', repr(taken))}); pass replace=True to "
                f"replace it", name)
        _factories[name] = factory


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {point.name: point for point in published(ENTRY_POINT_GROUP)}


def executor_names() -> tuple[str, ...]:
    """The names `get_executor` knows: built-in, registered and published, sorted."""
    with _lock:
        return tuple(sorted(set(_factories) | set(_entry_points())))


def _factory(name: str) -> Callable[..., Executor] | None:
    with _lock:
        factory = _factories.get(name)
        point = None if factory is not None else _entry_points().get(name)
    if point is None:
        return factory
    try:
        loaded = point.load()
    except Exception as error:
        raise ConfigError(
            f"the executor {name!r} published by entry point {point.value!r} (group "
            f"{ENTRY_POINT_GROUP!r}) cannot be loaded: {type(error).__name__}: {error}",
            name) from error
    with _lock:
        return _factories.setdefault(name, loaded)


def get_executor(name: str | Executor, **options: Any) -> Executor:
    """The executor called ``name``, built with ``options`` (e.g. ``workers=4``).

    >>> get_executor("threads", workers=2)
    ThreadExecutor(workers=2)
    >>> get_executor("gpu")
    Traceback (most recent call last):
    ...
    ndframework.errors.ConfigError: unknown executor 'gpu'; valid executors: 'dask', 'processes', 'serial', 'threads'
    """
    if isinstance(name, Executor):
        return name
    factory = _factory(name) if isinstance(name, str) else None
    if factory is None:
        valid = ", ".join(map(repr, executor_names()))
        raise ConfigError(f"unknown executor {name!r}; valid executors: {valid}", name)
    if factory is SerialExecutor and options.get("workers", 1) in (None, 1):
        options.pop("workers", None)
    try:
        executor = factory(**options)
    except TypeError as error:
        raise ConfigError(f"bad options for the {name!r} executor: {error}", options) from error
    if not isinstance(executor, Executor):
        raise ConfigError(
            f"the factory of executor {name!r} returned {executor!r}, not an Executor", name)
    return executor


def end_worker(session: str | None = None) -> None:
    """Tear down this thread's worker for run session ``session`` (every session's when
    None): the processor's ``teardown`` runs here, in the thread that ran its ``setup``.
    A pool that can run code in each worker thread as it stops calls this there."""
    from .._worker import end_worker as end

    end(session)

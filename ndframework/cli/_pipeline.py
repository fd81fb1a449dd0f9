"""From the arguments of ``plan`` and ``run`` to a `Pipeline`, every argument checked before
anything is created on disk."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigError
from ..executors import get_executor
from ..pipeline import Pipeline
from ..storage import DataSink, ZarrSource
from ..tiling import RegularTiler
from ._outputs import PlannedStore, declared_outputs, output_sink
from ._processor import load_processor

__all__ = ["Setup", "build", "executor_of", "progress_plugins", "check_plot"]

@attrs.define
class Setup:
    """A pipeline made from the command's arguments, and what it takes to make it again."""

    pipeline: Pipeline
    """The pipeline; its sink is a `PlannedStore` when ``--output`` is still to create."""
    parts: dict[str, Any]
    """The pipeline's arguments, for `with_sink`."""

    @property
    def planned(self) -> PlannedStore | None:
        """The store ``--output`` names, when it does not exist yet."""
        sink = self.pipeline.sink
        return sink if isinstance(sink, PlannedStore) else None

    def with_sink(self, sink: DataSink) -> Pipeline:
        """The same pipeline, writing to ``sink``."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # printed once already, by `build`
            return Pipeline(**{**self.parts, "sink": sink})


def executor_of(args: argparse.Namespace) -> Any:
    """The executor ``--executor`` and ``--workers`` choose."""
    options = {} if args.workers is None or args.executor == "serial" else {
        "workers": args.workers}
    return get_executor(args.executor, **options)


def progress_plugins(args: argparse.Namespace) -> list[Any]:
    """The progress display and event log that ``--no-progress``, ``--progress-interval``
    and ``--events`` ask for."""
    from ..plugins import EventLog, ProgressBar

    plugins: list[Any] = []
    if not args.no_progress:
        plugins.append(ProgressBar() if args.progress_interval is None
                       else ProgressBar(interval=args.progress_interval))
    if args.events is not None:
        _check_folder("--events", args.events)
        plugins.append(EventLog(args.events))
    return plugins


def check_plot(path: str | None) -> None:
    """``--plot``, before any work: matplotlib is installed, the file's folder exists and
    its suffix names an image format."""
    if path is None:
        return
    from ..plots import output_path

    try:
        output_path(path)
    except ConfigError as error:  # PlotDependencyError too: it says what to install
        raise ConfigError(f"--plot: {error}", path) from error


def _check_folder(option: str, path: str) -> None:
    """``path`` can be a file the command writes: its folder exists, it is no folder, and
    it can be opened for writing (it is not created here)."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise ConfigError(f"{option} {path!r}: its folder {str(folder)!r} does not exist", path)
    if Path(path).is_dir():
        raise ConfigError(f"{option} {path!r} is a folder; give a file's path", path)
    if not os.access(path if Path(path).exists() else folder, os.W_OK):
        where = "it" if Path(path).exists() else f"its folder {str(folder)!r}"
        raise ConfigError(f"{option} {path!r}: {where} cannot be written to", path)


def _source(path: str) -> Any:
    """A `BossSource` for a ``neurodata.cfg`` file, a `ZarrSource` for anything else."""
    if Path(path).is_file():
        from ..boss import BossSource

        return BossSource.from_config(path)
    return ZarrSource(path)


def build(args: argparse.Namespace) -> Setup:
    """The pipeline of a ``plan`` or ``run`` command; `ConfigError` for any bad argument.

    Nothing is created: a ``--output`` store that does not exist is a `PlannedStore`.
    """
    if args.output_channel and args.output is None:
        raise ConfigError("--output-channel needs --output PATH", args.output_channel)
    names = [name for name, _ in args.output_channel]
    for name in names:
        if names.count(name) > 1:
            given = " and ".join(f"{n}:{dtype}" for n, dtype in args.output_channel
                                 if n == name)
            raise ConfigError(f"--output-channel names {name!r} more than once ({given}); "
                              f"give each channel once", name)
    running = args.command == "run"
    if running:
        if args.restart and args.journal is None:
            raise ConfigError("--restart needs --journal PATH", args.restart)
        for option, path in (("--report", args.report), ("--journal", args.journal)):
            if path is not None:
                _check_folder(option, path)
    check_plot(getattr(args, "plot", None))
    source = _source(args.source)
    processor = load_processor(args.processor)
    tiler = None
    if args.block_shape is not None:
        tiler = RegularTiler(args.block_shape, halo=args.halo or 0, origin=source.bounds.start)
    elif args.halo is not None:
        raise ConfigError("--halo needs --block-shape", args.halo)
    declared = declared_outputs(processor)
    if declared and args.output is None:
        names = ", ".join(f"{name}:{dtype}" for name, dtype in declared.items())
        raise ConfigError(
            f"--processor {args.processor} writes outputs ({names}) and there is nowhere to "
            f"write them: give --output PATH (a zarr store, created with those channels)",
            args.output)
    sink = None
    if args.output is not None:
        sink = output_sink(args.output, dict(args.output_channel), declared, source, tiler)
    options: dict[str, Any] = {}
    if running:
        options = dict(journal=args.journal, restart=args.restart,
                       max_attempts=args.max_attempts, max_failures=args.max_failures,
                       block_timeout=args.block_timeout, plugins=progress_plugins(args))
    parts = dict(source=source, processor=processor, tiler=tiler, executor=executor_of(args),
                 sink=sink, channels=args.channels.split(",") if args.channels else None,
                 bounds=args.bounds, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline = Pipeline(**parts)  # type: ignore[arg-type]
    for warning in caught:  # e.g. a --block-timeout the executor cannot enforce
        print(f"ndframework {args.command}: warning: {warning.message}", file=sys.stderr)
    return Setup(pipeline, parts)

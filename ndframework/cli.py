"""The ``ndframework`` command: ``demo``, ``plan``, ``run``, ``status`` and ``boss-emulator``.

Exit status: 0 when every block is done; 1 when blocks failed or were not run (a run stopped
by its failure limit or by a data-access, setup or worker error); 2 for bad input, reported
in one line without a traceback; 130 or 143 when SIGINT or SIGTERM interrupted the run. A
run with ``--journal`` keeps what it computed: started again with the same journal it skips
the blocks recorded done. ``status`` exits 0 when the journal records no failed block, 1
when it does, 2 when the path is not a journal.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._status import failed_traceback, format_status, status_report
from .errors import (
    ConfigError, DataAccessError, NDFrameworkError, RunInterrupted, WorkerError,
)
from .executors import EXECUTORS, get_executor
from .geometry import Box, as_triple
from .journal import Journal
from .pipeline import Pipeline
from .plugins import ProgressBar
from .processor import BlockProcessor
from .result import RunResult
from .storage import ZarrSink, ZarrSource
from .tiling import RegularTiler

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

REDUCED_CHARACTERS = 300
"""How much of the reduced value's repr ``run`` prints (``--report`` keeps all of it)."""


def _triple(text: str) -> tuple[int, int, int]:
    """``z,y,x`` (or one number for all three) as a triple."""
    try:
        values = [int(part) for part in text.split(",")]
        return as_triple(values[0] if len(values) == 1 else values, "value")
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"expected three integers z,y,x, got {text!r}") from None


def _bounds(text: str) -> Box:
    """``z0:z1,y0:y1,x0:x1`` as a box."""
    try:
        ranges = [tuple(int(v) for v in part.split(":")) for part in text.split(",")]
        (z0, z1), (y0, y1), (x0, x1) = ranges  # type: ignore[misc]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected z0:z1,y0:y1,x0:x1, got {text!r}") from None
    try:
        return Box((z0, y0, x0), (z1, y1, x1))
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0: no limit), got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _output_channel(text: str) -> tuple[str, str]:
    name, sep, dtype = text.partition(":")
    if not sep or not name or not dtype:
        raise argparse.ArgumentTypeError(f"expected NAME:DTYPE, e.g. labels:uint16, got {text!r}")
    return name, dtype


def load_processor(spec: str) -> BlockProcessor | Any:
    """The processor named by ``module:attribute`` or ``path/to/file.py:attribute``.

    A `BlockProcessor` subclass is instantiated without arguments; an instance or a plain
    function is used as it is.
    """
    target, sep, attribute = spec.rpartition(":")
    if not sep or not target or not attribute:
        raise ConfigError(
            f"--processor must be MODULE:NAME or FILE.py:NAME, got {spec!r}", spec
        )
    try:  # the user's module may fail in any way as it is imported
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ConfigError(f"--processor file {target!r} does not exist", spec)
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(
            f"--processor: cannot import {target!r}: {type(error).__name__}: {error}", spec
        ) from error
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise ConfigError(
            f"--processor: {target!r} has no attribute {attribute!r}", spec
        ) from None
    if isinstance(found, type) and issubclass(found, BlockProcessor):
        return found()
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ndframework",
        description="Run your code over every block of a large 3-D volume, in parallel.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run the demo: a synthetic volume in a local BOSS emulator, read "
                     "through neurodata.cfg and BossSource in worker processes")
    _executor_options(demo, default_workers=2)
    demo.add_argument("--source", choices=("boss", "zarr"), default="boss",
                      help="where the synthetic volume lives (default: boss, the emulator)")
    demo.add_argument("--shape", type=_triple, default=(64, 256, 256),
                      help="volume shape z,y,x (default: 64,256,256)")
    demo.add_argument("--workdir", help="keep the demo's zarr stores here (default: a "
                                        "temporary folder)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    for name, text in (("plan", "describe a run without running it"),
                       ("run", "run a processor over every block of a volume")):
        command = commands.add_parser(name, help=text)
        command.add_argument("source", help="a zarr group (one 3-D array per channel), or a "
                                            "neurodata.cfg file naming a BOSS volume")
        command.add_argument("--processor", required=True,
                             help="MODULE:NAME or FILE.py:NAME of a BlockProcessor subclass, "
                                  "an instance, or a function of the data dict")
        command.add_argument("--block-shape", type=_triple,
                             help="block shape z,y,x (default: whole chunks, ~32 MiB)")
        command.add_argument("--halo", type=_triple,
                             help="halo z,y,x (the larger of this and the processor's own)")
        command.add_argument("--channels", help="comma-separated channels to read")
        command.add_argument("--bounds", type=_bounds, help="region z0:z1,y0:y1,x0:x1")
        command.add_argument("--output", help="zarr group to write outputs to; created "
                                              "by run, over the whole source, when it does "
                                              "not exist")
        command.add_argument("--output-channel", type=_output_channel, action="append",
                             default=[], metavar="NAME:DTYPE",
                             help="an output channel to create, e.g. labels:uint16")
        _executor_options(command)
        if name == "run":
            _run_options(command)

    status = commands.add_parser(
        "status", help="what a run's journal records: counts, sessions, failures, timings")
    status.add_argument("journal", metavar="JOURNAL", help="the --journal file of a run")
    show = status.add_mutually_exclusive_group()
    show.add_argument("--json", action="store_true", help="print it as JSON, for scripts")
    show.add_argument("--traceback", metavar="KEY",
                        help="print the full traceback of the failed block KEY (z_y_x)")

    # Listed for --help; main() hands its arguments to the emulator's own parser.
    commands.add_parser(
        "boss-emulator", add_help=False,
        help="serve the local BOSS API emulator (see: ndframework boss-emulator --help)",
    )
    return parser


def _run_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--journal", metavar="PATH",
                         help="keep the run's ledger in this SQLite file (created when "
                              "missing); a rerun with the same journal skips the blocks it "
                              "records done")
    command.add_argument("--restart", action="store_true",
                         help="discard what --journal records and start over (needed when "
                              "the journal records another run)")
    command.add_argument("--max-attempts", type=int, default=3,
                         help="tries for a block whose worker died or that timed out "
                              "(default: 3)")
    command.add_argument("--max-failures", type=_non_negative, metavar="N",
                         help="stop handing out blocks once N have failed; 0: no limit "
                              "(default: with --journal, stop after 10 failures while they "
                              "are at least half the blocks finished; else no limit)")
    command.add_argument("--block-timeout", type=_seconds, metavar="SECONDS",
                         help="stop a block that runs longer (its worker is ended; "
                              "processes executor only)")
    command.add_argument("--report", metavar="FILE.json",
                         help="write the result as JSON: counts, stop reason, reduced "
                              "value, and every block's record")
    command.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _executor_options(command: argparse.ArgumentParser, default_workers: int | None = None) -> None:
    command.add_argument("--executor", default="processes", choices=sorted(EXECUTORS),
                         help="how blocks run (default: processes)")
    command.add_argument("--workers", type=int, default=default_workers,
                         help="worker threads or processes (default: CPUs minus one"
                              f"{'' if default_workers is None else f'; demo: {default_workers}'})")


def _executor(args: argparse.Namespace) -> Any:
    options = {} if args.workers is None or args.executor == "serial" else {
        "workers": args.workers}
    return get_executor(args.executor, **options)


def _source(path: str) -> Any:
    """A `BossSource` for a ``neurodata.cfg`` file, a `ZarrSource` for anything else."""
    if Path(path).is_file():
        from .boss import BossSource

        return BossSource.from_config(path)
    return ZarrSource(path)


def _pipeline(args: argparse.Namespace) -> Pipeline:
    source = _source(args.source)
    processor = load_processor(args.processor)
    tiler = None
    if args.block_shape is not None:
        tiler = RegularTiler(args.block_shape, halo=args.halo or 0, origin=source.bounds.start)
    elif args.halo is not None:
        raise ConfigError("--halo needs --block-shape", args.halo)
    if args.output_channel and args.output is None:
        raise ConfigError("--output-channel needs --output PATH", args.output_channel)
    sink = None
    if args.output is not None and (Path(args.output).exists() or args.command == "run"):
        sink = _output_sink(args, source, tiler)
    options: dict[str, Any] = {}
    if args.command == "run":
        if args.restart and args.journal is None:
            raise ConfigError("--restart needs --journal PATH", args.restart)
        if args.report is not None and not Path(args.report).parent.is_dir():
            raise ConfigError(f"--report {args.report!r}: its folder does not exist",
                              args.report)
        options = dict(journal=args.journal, restart=args.restart,
                       max_attempts=args.max_attempts, max_failures=args.max_failures,
                       block_timeout=args.block_timeout,
                       plugins=[] if args.no_progress else [ProgressBar()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline = Pipeline(
            source, processor, tiler=tiler, executor=_executor(args), sink=sink,
            channels=args.channels.split(",") if args.channels else None, bounds=args.bounds,
            **options,
        )
    for warning in caught:  # e.g. a --block-timeout the executor cannot enforce
        print(f"ndframework {args.command}: warning: {warning.message}", file=sys.stderr)
    return pipeline


def _output_sink(args: argparse.Namespace, source: Any, tiler: Any) -> ZarrSink:
    """The ``--output`` store: opened when it exists (its channels must match any
    ``--output-channel``), else created over the whole source, chunked like the blocks."""
    wanted = dict(args.output_channel)
    if Path(args.output).exists():
        sink = ZarrSink(args.output)
        for name, dtype in wanted.items():
            if name not in sink.channels or sink.dtype(name) != np.dtype(dtype):
                have = ", ".join(f"{n}:{sink.dtype(n)}" for n in sink.channels)
                raise ConfigError(
                    f"--output {args.output!r} exists with channels {have}, not "
                    f"{name}:{dtype}; choose another --output path",
                    args.output,
                )
        return sink
    if not wanted:
        raise ConfigError(
            f"--output {args.output!r} does not exist; give --output-channel NAME:DTYPE to "
            f"create it",
            args.output,
        )
    chunks = getattr(tiler or source.default_tiler(), "block_shape", None) or source.chunk_shape
    # over the whole source, on the grid the blocks follow, so that any --bounds fits it
    return ZarrSink.create(args.output, wanted, source.bounds, chunk_shape=chunks)


# -- run ---------------------------------------------------------------------------------

def _run(pipeline: Pipeline, args: argparse.Namespace) -> int:
    """Run, print what happened, write ``--report``; the exit status."""
    try:
        result = pipeline.run()
    except RunInterrupted as interrupt:
        resume = (f"rerun with the same --journal {args.journal} to resume it"
                  if args.journal else "it kept no --journal, so a rerun starts over")
        _error(args, f"interrupted by {signal.Signals(interrupt.signal).name}; {resume}")
        return _finish(pipeline, interrupt.result, args, interrupt.exit_status)
    except (DataAccessError, WorkerError) as error:  # SetupError is a WorkerError
        _error(args, error)
        return _finish(pipeline, error.result, args, EXIT_FAILED)
    except BaseException:
        _close(pipeline.journal)
        raise
    return _finish(pipeline, result, args, EXIT_OK if result.ok else EXIT_FAILED)


def _finish(pipeline: Pipeline, result: RunResult | None, args: argparse.Namespace,
            status: int) -> int:
    """Show ``result`` (when there is one) and close the journal; the exit status."""
    try:
        return status if result is None else _show_result(result, args, status)
    finally:
        _close(pipeline.journal if result is None else result.journal)


def _show_result(result: RunResult, args: argparse.Namespace, status: int) -> int:
    """Print the summary and the reduced value, write the report; the exit status, made 1
    when the report cannot be written."""
    print(result.summary())
    if result.reduced is not None:
        partial = "" if result.ok else (
            f" (over the {result.counts.done + result.counts.skipped} blocks done only)")
        print(f"reduced{partial}: {_short_repr(result.reduced)}")
    if not result.ok and args.journal:
        print(f"journal: {args.journal} keeps what was done; rerun with the same --journal to "
              f"run the blocks not done, `ndframework status {args.journal}` to see why")
    if args.report is not None:
        try:
            Path(args.report).write_text(result.to_json())
        except OSError as error:
            _error(args, f"cannot write --report {args.report!r}: {error}")
            return status or EXIT_FAILED
    return status


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) <= REDUCED_CHARACTERS:
        return text
    return f"{text[:REDUCED_CHARACTERS]}... ({len(text):,} characters; --report keeps it all)"


def _close(journal: Journal | None) -> None:
    if journal is not None:  # None: the run keeps no journal
        journal.close()


def _error(args: argparse.Namespace, message: object) -> None:
    print(f"ndframework {args.command}: error: {message}", file=sys.stderr)


# -- status ------------------------------------------------------------------------------

def _status(args: argparse.Namespace) -> int:
    journal = Journal.read(args.journal)
    try:
        if args.traceback is not None:
            print(failed_traceback(journal, args.traceback))
            return EXIT_OK
        report = status_report(journal)
        print(json.dumps(report, indent=2) if args.json else format_status(report))
        return EXIT_FAILED if report["counts"]["failed"] else EXIT_OK
    finally:
        journal.close()


# -- the command -------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ndframework`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["boss-emulator"]:
        from .bossemu import main as emulator_main

        return emulator_main(argv[1:], prog="ndframework boss-emulator")
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            result, matches = run_demo(_executor(args), source=args.source, shape=args.shape,
                                       workdir=args.workdir, progress=not args.no_progress)
            return EXIT_OK if result.ok and matches else EXIT_FAILED
        if args.command == "status":
            return _status(args)
        pipeline = _pipeline(args)
        if args.command == "plan":
            print(pipeline.plan())
            return EXIT_OK
        return _run(pipeline, args)
    except (NDFrameworkError, ValueError, OSError) as error:
        # a JournalMismatchError is a ConfigError: it names what differs and --restart
        _error(args, error)
        return EXIT_USAGE if isinstance(error, ValueError) else EXIT_FAILED
    except KeyboardInterrupt:
        print(f"ndframework {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

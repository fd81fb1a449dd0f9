"""``ndframework run``: check everything, create the output store, run, say what happened,
write the report; the exit status."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path

from ..errors import DataAccessError, RunInterrupted, WorkerError
from ..journal import Journal
from ..pipeline import Pipeline
from ..result import RunResult
from ._outputs import remove_store
from ._pipeline import Setup
from ._values import short_value

__all__ = ["run_command", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def run_command(setup: Setup, args: argparse.Namespace) -> int:
    """Run ``setup``'s pipeline; the exit status.

    A ``--output`` store that does not exist is created only once the run has passed every
    check that `Pipeline.plan` makes; when the command then fails before any block is done
    (a journal of another run, a processor that cannot be sent to the workers, a failing
    ``setup()``, an interrupt), the store is removed again. A store that existed before is
    never removed.
    """
    planned = setup.planned
    pipeline = setup.pipeline
    if planned is not None:
        pipeline.plan()  # refuses what run() would, before the store exists
    created = done = False
    try:
        if planned is not None:
            created = True  # the path did not exist: whatever is there now, this made
            pipeline = setup.with_sink(planned.create())
        status, done = _run(pipeline, args)
        return status
    finally:
        if created and not done:
            remove_store(planned.path)  # type: ignore[union-attr]


def _run(pipeline: Pipeline, args: argparse.Namespace) -> tuple[int, bool]:
    """Run, print what happened, write ``--report``; the exit status, and whether any
    block is done."""
    try:
        result = pipeline.run()
    except RunInterrupted as interrupt:
        resume = (f"rerun with the same --journal {args.journal} to resume it"
                  if args.journal else "it kept no --journal, so a rerun starts over")
        error(args, f"interrupted by {signal.Signals(interrupt.signal).name}; {resume}")
        return (_finish(pipeline, interrupt.result, args, interrupt.exit_status),
                _any_done(interrupt.result))
    except (DataAccessError, WorkerError) as failure:  # SetupError is a WorkerError
        error(args, failure)
        return _finish(pipeline, failure.result, args, EXIT_FAILED), _any_done(failure.result)
    except BaseException:
        _close(pipeline.journal)
        raise
    status = EXIT_OK if result.ok else EXIT_FAILED
    return _finish(pipeline, result, args, status), _any_done(result)


def _any_done(result: RunResult | None) -> bool:
    return result is not None and result.counts.done + result.counts.skipped > 0


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
        print(f"reduced{partial}: {short_value(result.reduced)}")
    if not result.ok and args.journal:
        print(f"journal: {args.journal} keeps what was done; rerun with the same --journal to "
              f"run the blocks not done, `ndframework status {args.journal}` to see why")
    if args.report is not None:
        try:
            Path(args.report).write_text(result.to_json())
        except OSError as failure:
            error(args, f"cannot write --report {args.report!r}: {failure}")
            return status or EXIT_FAILED
    return status


def _close(journal: Journal | None) -> None:
    if journal is not None:  # None: the run keeps no journal
        journal.close()


def error(args: argparse.Namespace, message: object) -> None:
    """Print ``message`` as the command's error, after its traceback with ``--debug``."""
    if getattr(args, "debug", False) and isinstance(message, BaseException):
        traceback.print_exception(message, file=sys.stderr)
    print(f"ndframework {args.command}: error: {message}", file=sys.stderr)

"""``ndframework run``: check everything, create the output store, run, say what happened,
write the report; the exit status."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path
from typing import Mapping

from ..errors import (
    ConfigError, DataAccessError, JournalMismatchError, OutputError, ReduceError,
    RunInterrupted, WorkerError,
)
from ..journal import Journal
from ..pipeline import Pipeline
from ..result import BlockStatus, RunResult
from ..storage import ZarrSink
from ._outputs import remove_store
from ._pipeline import Setup
from ._values import short_value

__all__ = ["run_command", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def run_command(setup: Setup, args: argparse.Namespace) -> int:
    """Run ``setup``'s pipeline; the exit status.

    A ``--output`` store that does not exist is created only once the run has passed every
    check that `Pipeline.plan` makes; when the command then fails and its result shows no
    block done (a journal of another run, a processor that cannot be sent to the workers, a
    failing ``setup()``, an interrupt), the store is removed again. A store that existed
    before, or one a run may have written to, is never removed.
    """
    planned = setup.planned
    pipeline = setup.pipeline
    if planned is not None:
        pipeline.plan()  # refuses what run() would, before the store exists
        _check_journal_has_no_outputs_elsewhere(args, planned.path)
    created = nothing_done = False
    try:
        if planned is not None:
            created = True  # the path did not exist: whatever is there now, this made
            pipeline = setup.with_sink(planned.create())
        status, nothing_done = _run(pipeline, args)
        return status
    except JournalMismatchError:
        nothing_done = True  # refused as the run opened its journal, before any block
        raise
    finally:
        # Only a run known to have done no block leaves nothing worth keeping: after an
        # unexpected error, blocks may have been written (and recorded done) already.
        if created and nothing_done:
            remove_store(planned.path)  # type: ignore[union-attr]


def _check_journal_has_no_outputs_elsewhere(args: argparse.Namespace, output: str) -> None:
    """Refuse to create ``--output`` anew for a ``--journal`` that records blocks done: a
    rerun would skip them, and their outputs, written to the store that was there, would
    be missing from the new one."""
    if args.journal is None or args.restart or not Path(args.journal).is_file():
        return
    journal = Journal.read(args.journal)
    try:
        wrote_there = journal.fingerprint().get("sink") == ZarrSink(output).describe()
        done = journal.count(status=BlockStatus.DONE) if wrote_there else 0
    finally:
        journal.close()
    if done:  # (a journal of another run is refused by the run itself)
        raise ConfigError(
            f"--output {str(output)!r} does not exist, but --journal {args.journal} records "
            f"{done} block(s) done, whose outputs were written there; restore the store, or "
            f"give --restart to run every block again", output)


def _run(pipeline: Pipeline, args: argparse.Namespace) -> tuple[int, bool]:
    """Run, print what happened, write ``--report``; the exit status, and whether the
    result shows that no block was done."""
    try:
        result = pipeline.run()
    except RunInterrupted as interrupt:
        resume = (f"rerun with the same --journal {args.journal} to resume it"
                  if args.journal else "it kept no --journal, so a rerun starts over")
        error(args, f"interrupted by {signal.Signals(interrupt.signal).name}; {resume}")
        return (_finish(pipeline, interrupt.result, args, interrupt.exit_status),
                _none_done(interrupt.result))
    except (DataAccessError, WorkerError, ReduceError, OutputError) as failure:
        # SetupError is a WorkerError; an OutputError here: arrays with no sink, a usage error
        error(args, failure)
        status = EXIT_USAGE if isinstance(failure, OutputError) else EXIT_FAILED
        return _finish(pipeline, failure.result, args, status), _none_done(failure.result)
    except BaseException:
        _close(pipeline.journal)
        raise
    status = EXIT_OK if result.ok else EXIT_FAILED
    return _finish(pipeline, result, args, status), _none_done(result)


def _none_done(result: RunResult | None) -> bool:
    """Whether ``result`` shows that no block was done, in this run or before it."""
    return result is not None and result.counts.done + result.counts.skipped == 0


def _finish(pipeline: Pipeline, result: RunResult | None, args: argparse.Namespace,
            status: int) -> int:
    """Show ``result`` (when there is one) and close the journal; the exit status."""
    try:
        return status if result is None else _show_result(result, args, status)
    finally:
        _close(pipeline.journal if result is None else result.journal)


def _only_nones(reduced: object) -> bool:
    """Whether ``reduced`` is the default reduce's mapping of blocks that returned nothing
    (a run that only writes outputs): not worth a line."""
    return isinstance(reduced, Mapping) and all(value is None for value in reduced.values())


def _show_result(result: RunResult, args: argparse.Namespace, status: int) -> int:
    """Print the summary and the reduced value, write the report; the exit status, made 1
    when the report cannot be written."""
    print(result.summary())
    if result.reduced is not None and not _only_nones(result.reduced):
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

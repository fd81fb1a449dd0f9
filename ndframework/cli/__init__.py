"""The ``ndframework`` command: ``demo``, ``plan``, ``run``, ``status`` and ``boss-emulator``.

Exit status: 0 when every block is done; 1 when blocks failed or were not run (a run stopped
by its failure limit or by a data-access, setup or worker error); 2 for bad input, reported
in one or two lines without a traceback (``--debug`` adds it); 130 or 143 when SIGINT or
SIGTERM interrupted the run. A run with ``--journal`` keeps what it computed: started again
with the same journal it skips the blocks recorded done. ``status`` exits 0 when the journal
records every block done, 1 when blocks failed or were never tried, 2 when the path is not a
journal.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Iterator, Sequence

from ..errors import NDFrameworkError
from ._arguments import _log_level, build_parser
from ._commands import (
    demo_command, emulator_command, plan_command, split_log_level, status_command,
)
from ._pipeline import build
from ._processor import import_paths_kept, load_processor
from ._run import EXIT_FAILED, EXIT_USAGE, error, run_command

__all__ = ["main", "load_processor"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""How ``--log-level`` shows a log record on standard error."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ndframework`` command: run it with ``argv`` (default: the
    process's arguments) and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["boss-emulator"]:
        rest, level = split_log_level(argv[1:])
        try:
            numeric = logging.WARNING if level is None else _log_level(level)
        except argparse.ArgumentTypeError as problem:
            print(f"ndframework boss-emulator: error: argument --log-level: {problem}\n"
                  f"(see: ndframework boss-emulator --help)", file=sys.stderr)
            return EXIT_USAGE
        with _logging_to_stderr(numeric):
            return emulator_command(rest)
    args = build_parser().parse_args(argv)
    with import_paths_kept(), _logging_to_stderr(args.log_level):
        try:
            return _dispatch(args)
        except BrokenPipeError:  # `ndframework status run.sqlite | head`: nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILED
        except (NDFrameworkError, ValueError, OSError) as problem:
            # a JournalMismatchError is a ConfigError: it names what differs and --restart
            error(args, problem)
            return EXIT_USAGE if isinstance(problem, ValueError) else EXIT_FAILED
        except KeyboardInterrupt:
            print(f"ndframework {args.command}: interrupted", file=sys.stderr)
            return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return demo_command(args)
    if args.command == "status":
        return status_command(args)
    setup = build(args)
    if args.command == "plan":
        return plan_command(setup, args)
    return run_command(setup, args)


@contextlib.contextmanager
def _logging_to_stderr(level: int) -> Iterator[None]:
    """Show the records of the ``ndframework`` loggers at ``level`` and above on standard
    error while the command runs (worker processes show them at the same level)."""
    logger = logging.getLogger("ndframework")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)

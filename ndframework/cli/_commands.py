"""``ndframework demo``, ``plan``, ``status`` and ``boss-emulator``; ``run`` is in `_run`."""

from __future__ import annotations

import argparse
import json
import os
from typing import Sequence

from .._status import failed_traceback, format_status, status_report, unreadable_values
from ..errors import NDFrameworkError
from ..journal import Journal
from ._arguments import EMULATOR_EXAMPLES
from ._pipeline import Setup, check_plot, executor_of, progress_plugins
from ._processor import add_import_path
from ._run import EXIT_FAILED, EXIT_OK
from ._values import short_value

__all__ = ["demo_command", "plan_command", "status_command", "emulator_command"]

VALUE_CHARACTERS = 200
"""Most characters of a value that ``status --values`` prints."""


def demo_command(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    plugins = progress_plugins(args)
    result, matches = run_demo(executor_of(args), source=args.source, shape=args.shape,
                               workdir=args.workdir, progress=False, plugins=plugins)
    return EXIT_OK if result.ok and matches else EXIT_FAILED


def plan_command(setup: Setup, args: argparse.Namespace) -> int:
    print(setup.pipeline.plan())
    if args.plot is not None:
        from ..plots import plot_plan

        print(f"plot:        {plot_plan(setup.pipeline, args.plot)}")
    return EXIT_OK


def status_command(args: argparse.Namespace) -> int:
    check_plot(args.plot)
    # values pickled by reference to the processor's module import it from here, as run did
    add_import_path(os.getcwd())
    journal = Journal.read(args.journal)
    try:
        if args.traceback is not None:
            print(failed_traceback(journal, args.traceback))
            return EXIT_OK
        if args.values:
            return _values(journal)
        report = status_report(journal)
        print(json.dumps(report, indent=2) if args.json else format_status(report))
        if args.plot is not None:
            from ..plots import plot_status

            print(f"plot:       {plot_status(journal, args.plot)}")
        unfinished = report["counts"]["failed"] or report["never_tried"]
        return EXIT_FAILED if unfinished else EXIT_OK
    finally:
        journal.close()


def _values(journal: Journal) -> int:
    """Print ``KEY VALUE`` for every block done; the exit status (1 when the journal
    records failed blocks, as for ``status``)."""
    try:
        for key, value in journal.values():
            print(f"{key}  {short_value(value, VALUE_CHARACTERS)}")
    except Exception as error:  # a value's class cannot be imported here
        raise _Unreadable(unreadable_values(error)) from error
    return EXIT_FAILED if journal.counts()["failed"] else EXIT_OK


class _Unreadable(NDFrameworkError):
    """The journal's values cannot be read in this process (exit status 1)."""


def emulator_command(argv: Sequence[str]) -> int:
    """``boss-emulator``: the emulator's own command, with this command's ``--log-level``
    taken out (and applied by the caller) and its examples added to ``--help``."""
    from ..bossemu import main as emulator_main
    from ..bossemu.command import _parser as emulator_parser

    prog = "ndframework boss-emulator"
    if "-h" in argv or "--help" in argv:
        parser = emulator_parser(prog)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = EMULATOR_EXAMPLES
        parser.add_argument("--log-level", metavar="LEVEL",
                            help="log ndframework's records at this level and above to "
                                 "standard error: DEBUG, INFO, WARNING, ERROR (default: "
                                 "WARNING)")
        parser.print_help()
        return EXIT_OK
    return emulator_main(list(argv), prog=prog)


def split_log_level(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """``argv`` without ``--log-level LEVEL`` (or ``--log-level=LEVEL``), and LEVEL."""
    rest, level = [], None
    items = iter(argv)
    for item in items:
        if item == "--log-level":
            level = next(items, "")
        elif item.startswith("--log-level="):
            level = item.partition("=")[2]
        else:
            rest.append(item)
    return rest, level

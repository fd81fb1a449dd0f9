"""The command's arguments: their parsers, and the help of every subcommand."""

from __future__ import annotations

import argparse
import logging
from typing import NoReturn

from .._numbers import as_int
from ..errors import ConfigError
from ..executors import executor_names
from ..geometry import Box, as_triple
from ..processor import output_dtype

__all__ = ["build_parser", "LOG_LEVELS", "EMULATOR_EXAMPLES"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
"""What ``--log-level`` takes."""

DEMO_EXAMPLES = """\
examples:
  ndframework demo
  ndframework demo --source zarr --executor threads --shape 32,128,128
  ndframework demo --workdir demo-files --events demo-events.jsonl
"""
PLAN_EXAMPLES = """\
examples:
  ndframework plan volume.zarr --processor analysis.py:segment --block-shape 64,512,512
  ndframework plan neurodata.cfg --processor mymodule:CountBright --halo 1,2,2 \\
      --block-shape 16,1024,1024 --plot plan.png
  ndframework plan volume.zarr --processor analysis.py:Double --output out.zarr \\
      --output-channel double:uint16 --executor serial
"""
RUN_EXAMPLES = """\
examples:
  ndframework run volume.zarr --processor analysis.py:CountBright --journal count.sqlite
  ndframework run volume.zarr --processor analysis.py:segment --output labels.zarr \\
      --output-channel labels:uint32 --executor processes --workers 8 --report report.json
  ndframework run neurodata.cfg --processor mymodule:Segment --output labels.zarr \\
      --journal run.sqlite --events events.jsonl --progress-interval 60

--processor MODULE:NAME imports MODULE from the current folder (or the Python path);
--processor path/to/FILE.py:NAME loads the file, whose folder is put on the Python path of
the command and of its workers. A BlockProcessor subclass is made with no arguments; for
one that needs some, define an instance in the file (segment = Segment(threshold=3)) and
give --processor FILE.py:segment.
"""
STATUS_EXAMPLES = """\
examples:
  ndframework status run.sqlite
  ndframework status run.sqlite --traceback 0_512_1024
  ndframework status run.sqlite --values
  ndframework status run.sqlite --json > status.json
  ndframework status run.sqlite --plot status.png
"""
EMULATOR_EXAMPLES = """\
examples:
  ndframework boss-emulator --port 8000 --token T --demo
  ndframework boss-emulator --port 0 --token T --store boss-data
  ndframework boss-emulator --token T --error-rate 0.1 --latency 0.05 --log-level DEBUG
"""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are two lines: the error, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(see: {self.prog} --help)\n")


# -- argument types ----------------------------------------------------------------------

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
        return as_int(int(text), "value", minimum=0)
    except ValueError:  # not an integer, or a ConfigError
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0 (0: no limit), got {text!r}") from None


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
    try:
        return name, str(output_dtype(dtype, f"channel {name!r}"))
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _log_level(text: str) -> int:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return int(getattr(logging, level))


# -- the parser ----------------------------------------------------------------------------

def _common() -> argparse.ArgumentParser:
    """The options every subcommand has."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", type=_log_level, default=logging.WARNING,
                        metavar="LEVEL",
                        help="log records of ndframework's loggers at this level and above "
                             f"to standard error: {', '.join(LOG_LEVELS)} (default: WARNING)")
    common.add_argument("--debug", action="store_true",
                        help="print the full traceback of an error as well")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``ndframework`` command's parser, with its subcommands."""
    parser = Parser(
        prog="ndframework",
        description="Run your code over every block of a large 3-D volume, in parallel.",
        epilog="`ndframework COMMAND --help` shows a command's options and examples.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()

    def command(name: str, short: str, description: str, examples: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=short, description=description, epilog=examples, parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter)

    demo = command(
        "demo", "run the demo on a synthetic volume, read through the BOSS emulator",
        "Run the demo: a synthetic two-channel volume served by a local BOSS emulator, read "
        "through neurodata.cfg and BossSource in worker processes, smoothed and thresholded "
        "into a zarr sink, and checked against numpy.", DEMO_EXAMPLES)
    _executor_options(demo, default_workers=2)
    demo.add_argument("--source", choices=("boss", "zarr"), default="boss",
                      help="where the synthetic volume lives (default: boss, the emulator)")
    demo.add_argument("--shape", type=_triple, default=(64, 256, 256),
                      help="volume shape z,y,x (default: 64,256,256)")
    demo.add_argument("--workdir", help="keep the demo's files here (default: a temporary "
                                        "folder)")
    _progress_options(demo)

    plan = command(
        "plan", "describe a run without running it",
        "Describe a run without running it: blocks, bytes read per block and in all with "
        "the halo overhead, requests to the source, memory per worker, and warnings. Reads "
        "metadata only and creates nothing, but for --plot's picture and the slice it "
        "draws.", PLAN_EXAMPLES)
    _volume_options(plan)
    _executor_options(plan)
    plan.add_argument("--plot", metavar="FILE.png",
                      help="also draw the blocks and halos over a slice of the volume "
                           "(needs matplotlib: pip install \"ndframework[plot]\")")

    run = command(
        "run", "run a processor over every block of a volume",
        "Run a processor over every block of a volume; print what happened and the reduced "
        "value. Exit status: 0 every block done, 1 blocks failed or not run, 2 bad input, "
        "130/143 interrupted by SIGINT/SIGTERM.", RUN_EXAMPLES)
    _volume_options(run)
    _executor_options(run)
    _run_options(run)
    _progress_options(run)

    status = command(
        "status", "what a run's journal records: counts, sessions, failures, timings",
        "Show what a run's journal records: the run, counts, sessions, failed blocks with "
        "their errors, the slowest blocks, and the first values. Exit status: 0 every block "
        "done, 1 blocks failed or never tried, 2 not a journal.", STATUS_EXAMPLES)
    status.add_argument("journal", metavar="JOURNAL", help="the --journal file of a run")
    show = status.add_mutually_exclusive_group()
    show.add_argument("--json", action="store_true", help="print it as JSON, for scripts")
    show.add_argument("--traceback", metavar="KEY",
                      help="print the full traceback of the failed block KEY (z_y_x)")
    show.add_argument("--values", action="store_true",
                      help="print the value of every block done, one `KEY VALUE` a line")
    status.add_argument("--plot", metavar="FILE.png",
                        help="also draw which blocks are done, failed or pending (needs "
                             "matplotlib: pip install \"ndframework[plot]\")")

    # Listed for the command's --help; main() hands its arguments to the emulator's parser.
    commands.add_parser(
        "boss-emulator", add_help=False,
        help="serve the local BOSS API emulator (see: ndframework boss-emulator --help)")
    return parser


def _volume_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("source", metavar="VOLUME",
                         help="a zarr group (one 3-D array per channel), or a neurodata.cfg "
                              "file naming a BOSS volume")
    command.add_argument("--processor", required=True, metavar="SPEC",
                         help="MODULE:NAME or FILE.py:NAME of a BlockProcessor subclass (made "
                              "with no arguments), an instance, or a function of the data dict")
    command.add_argument("--block-shape", type=_triple, metavar="Z,Y,X",
                         help="block shape (default: whole storage chunks, about 32 MiB)")
    command.add_argument("--halo", type=_triple, metavar="Z,Y,X",
                         help="halo (the larger of this and the processor's own, per axis)")
    command.add_argument("--channels", metavar="A,B", help="channels to read (default: the "
                                                           "processor's, else all)")
    command.add_argument("--bounds", type=_bounds, metavar="Z0:Z1,Y0:Y1,X0:X1",
                         help="the region to process (default: the whole volume)")
    command.add_argument("--output", metavar="PATH",
                         help="zarr group to write outputs to; run creates it, over the whole "
                              "volume, when it does not exist")
    command.add_argument("--output-channel", type=_output_channel, action="append",
                         default=[], metavar="NAME:DTYPE",
                         help="an output channel to create, e.g. labels:uint16 (repeatable; "
                              "default: the processor's declared outputs)")


def _executor_options(command: argparse.ArgumentParser, default_workers: int | None = None) -> None:
    command.add_argument("--executor", default="processes", choices=executor_names(),
                         help="how blocks run (default: processes)")
    command.add_argument("--workers", type=int, default=default_workers, metavar="N",
                         help="worker threads or processes (default: every CPU this "
                              "process may use"
                              f"{'' if default_workers is None else f'; demo: {default_workers}'})")


def _progress_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--no-progress", action="store_true", help="show no progress")
    command.add_argument("--progress-interval", type=_seconds, metavar="SECONDS",
                         help="where standard error is not a terminal, write a progress line "
                              "at most every SECONDS (default: 30)")
    command.add_argument("--events", metavar="FILE.jsonl",
                         help="append the run's events to FILE as JSON lines: run start, "
                              "each block done or failed with its timings, run end")


def _run_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--journal", metavar="PATH",
                         help="keep the run's ledger in this SQLite file (created when "
                              "missing); a rerun with the same journal skips the blocks it "
                              "records done")
    command.add_argument("--restart", action="store_true",
                         help="discard what --journal records and start over (needed when "
                              "the journal records another run)")
    command.add_argument("--max-attempts", type=int, default=3, metavar="N",
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

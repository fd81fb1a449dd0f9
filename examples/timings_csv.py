"""A plugin that writes one CSV row per block: how it ended and where its time went.

`TimingsCSV` implements four of ndframework's hooks. ``ndf_before_run`` opens the file and
writes the header; ``ndf_after_block`` and ``ndf_on_block_error`` write a row as each block
ends (flushed at once, so ``tail -f`` follows a long run, and the rows so far survive a crash);
``ndf_after_run`` closes the file.
The columns:

=========  ====================================================================
key        the block's ``"z_y_x"`` key
status     ``done`` or ``failed`` (or ``data_error``, ``setup_error``: the run stopped)
attempts   tries of the block in this run (retries and workers that died included)
read       seconds reading the block (with its halo) from the source, in the worker
process    seconds in the processor's ``process``
write      seconds writing its outputs to the sink
total      read + process + write
worker     the worker that ran the last try: ``pid``, or ``pid/thread`` for threads
=========  ====================================================================

Blocks appear in the order they end. Blocks that an earlier session of a resumed run did
are skipped, so they have no row; nor do blocks a stopped run never ran.

Use it::

    import ndframework as ndf
    from timings_csv import TimingsCSV

    ndf.Pipeline(source, processor, plugins=[TimingsCSV("timings.csv")]).run()

The path may name the run: ``TimingsCSV("timings-{run_id}.csv")`` writes one file per run
(``{session}`` is there too, one per start or resume).

Publish it for every run: put this module in a package of your own (here
``mylab_ndf_plugins/timings_csv.py``), make an instance at its end::

    plugin = TimingsCSV("ndf-timings-{run_id}.csv")

and declare that instance in the ``ndframework`` entry-point group of the package's
``setup.cfg``::

    [options.entry_points]
    ndframework =
        timings_csv = mylab_ndf_plugins.timings_csv:plugin

Once the package is installed (``pip install -e .``), every ``Pipeline`` and every
``ndframework run`` loads it (unless ``load_entrypoints=False``).

Run this file to see it on a small in-memory volume, one of whose blocks fails::

    python examples/timings_csv.py [--csv timings.csv]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

import ndframework as ndf

__all__ = ["TimingsCSV", "COLUMNS", "main"]

COLUMNS = ("key", "status", "attempts", "read", "process", "write", "total", "worker")
"""The CSV's header."""


class TimingsCSV:
    """Write each block's status, attempts, timings and worker to a CSV file as the run
    goes.

    Parameters
    ----------
    path:
        The file to write, replaced at each run; ``{run_id}`` and ``{session}`` in it are
        filled in from the run.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path_template = os.fspath(path)
        self.path: Path | None = None
        """The file the current or last run wrote."""
        self._file: IO[str] | None = None
        self._writer: Any = None

    def __repr__(self) -> str:
        return f"TimingsCSV({self.path_template!r})"

    @ndf.hookimpl
    def ndf_before_run(self, run: ndf.RunInfo) -> None:
        self.path = Path(self.path_template.format(run_id=run.run_id, session=run.session))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)
        self._file.flush()

    @ndf.hookimpl
    def ndf_after_block(self, run: ndf.RunInfo, block: ndf.Block,
                        outcome: ndf.BlockOutcome) -> None:
        self._row(outcome)

    @ndf.hookimpl
    def ndf_on_block_error(self, run: ndf.RunInfo, block: ndf.Block,
                           outcome: ndf.BlockOutcome) -> None:
        self._row(outcome)

    @ndf.hookimpl
    def ndf_after_run(self, run: ndf.RunInfo, result: ndf.RunResult) -> None:
        if self._file is None:
            return
        self._file.close()
        self._file = self._writer = None

    def _row(self, outcome: ndf.BlockOutcome) -> None:
        if self._writer is None:
            return
        timings = outcome.timings
        # str() of a float is its shortest exact form: the CSV holds the very numbers
        self._writer.writerow([
            outcome.key, str(outcome.status), outcome.attempts,  # tries, retries included
            timings.read, timings.process, timings.write, timings.total, outcome.worker,
        ])
        self._file.flush()  # type: ignore[union-attr]


# -- a small run to show it ----------------------------------------------------------------


class MeanIntensity(ndf.BlockProcessor):
    """Each block's mean intensity; refuses blocks with saturated voxels."""

    channels = ("em",)

    def process(self, data: dict[str, np.ndarray], block: ndf.Block) -> float:
        em = block.crop(data["em"])
        if (em == 255).any():
            raise ValueError(f"{int((em == 255).sum())} saturated voxels in block {block.key}")
        return float(em.mean())


def main(argv: Sequence[str] | None = None) -> int:
    """Run `MeanIntensity` over a 32 × 64 × 64 volume in 8 blocks, one of them saturated,
    with a `TimingsCSV`; print the CSV and the slowest block."""
    parser = argparse.ArgumentParser(description="Per-block timings in a CSV file.")
    parser.add_argument("--csv", default="block-timings.csv", help="where to write the CSV "
                                                                   "(default: block-timings.csv)")
    parser.add_argument("--executor", default="threads", choices=ndf.executor_names())
    args = parser.parse_args(argv)

    volume = np.random.default_rng(0).integers(0, 200, (32, 64, 64), dtype=np.uint8)
    volume[20, 40, 10] = 255  # one saturated voxel: its block fails
    timings = TimingsCSV(args.csv)
    result = ndf.Pipeline(ndf.InMemorySource({"em": volume}), MeanIntensity(),
                          tiler=ndf.RegularTiler((16, 32, 32)), executor=args.executor,
                          plugins=[timings]).run()
    print(result.summary())
    print(f"\n{timings.path}:")
    with open(timings.path, newline="") as rows:  # type: ignore[arg-type]
        table = list(csv.DictReader(rows))
    print(Path(timings.path).read_text(), end="")  # type: ignore[arg-type]
    slowest = max(table, key=lambda row: float(row["total"]))
    print(f"\nslowest block: {slowest['key']}, {float(slowest['total']) * 1000:.2f} ms "
          f"(read {float(slowest['read']) * 1000:.2f} ms) on worker {slowest['worker']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

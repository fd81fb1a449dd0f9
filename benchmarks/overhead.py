"""The framework's cost per block, beside a plain loop and dask, measured in one run.

Part 1: a no-op processor over thousands of small blocks of an `InMemorySource`, on every
executor, beside a plain Python loop over the same numpy slices and beside
``dask.array.map_blocks`` over the same chunks (synchronous and threaded schedulers). Printed
as µs per block, as overhead per block over the plain loop, and as ratios.

Part 2: a compute-bound processor (about 50 ms of CPU a block) on `SerialExecutor`,
`ThreadExecutor(2)` and `ProcessExecutor(2)`: the speed-up over serial. A worker pool's
start-up is part of the measured run, as it is for a user's one run per script.

Part 3: the run journal's cost per block. Every run records each block's outcome in a
journal (an SQLite file: the user's, or a temporary one). Measured alone (recording N
outcomes with a small value, committed in batches, as the coordinator does) and end to end
(the serial no-op run with a journal file beside the same run with its temporary journal).

Run:  python benchmarks/overhead.py [--blocks-per-axis 16] [--compute-blocks 80] [--repeat 3]
Needs the ``dask`` extra (dask[array]). Timings are the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import ndframework as ndf
from _timing import best_of




def noop(data):
    return None


def spin(data, seconds=0.05):
    """Burn ``seconds`` of this thread's CPU time, holding the GIL: a stand-in for a
    compute-bound filter in pure Python."""
    deadline = time.thread_time() + seconds
    total = 0
    while time.thread_time() < deadline:
        total += 1
    return total > 0


def plain_loop(arrays, boxes):
    for box in boxes:
        noop({name: array[box.slices()] for name, array in arrays.items()})


def dask_map_blocks(arrays, block_shape, scheduler):
    import dask.array as da

    def tiny(*blocks):
        return np.zeros((1, 1, 1), np.uint8)

    stacked = [da.from_array(array, chunks=block_shape) for array in arrays.values()]
    result = da.map_blocks(tiny, *stacked, chunks=(1, 1, 1), dtype=np.uint8)
    return result.compute(scheduler=scheduler)


def pipeline_run(source, processor, block_shape, executor):
    result = ndf.Pipeline(source, processor, tiler=ndf.RegularTiler(block_shape),
                          executor=executor, load_entrypoints=False).run()
    assert result.ok, result.summary()
    return result


def part_overhead(blocks_per_axis, repeat):
    block_shape = (4, 8, 8)
    shape = tuple(b * blocks_per_axis for b in block_shape)
    rng = np.random.default_rng(0)
    arrays = {"em": rng.integers(0, 255, shape, dtype=np.uint8),
              "mask": rng.integers(0, 9, shape, dtype=np.uint16)}
    source = ndf.InMemorySource(arrays)
    tiler = ndf.RegularTiler(block_shape)
    boxes = [block.box for block in tiler.blocks(source.bounds)]
    count = len(boxes)
    print(f"Part 1: no-op processor, {count:,} blocks of {block_shape} (z, y, x), "
          f"2 channels (uint8, uint16), best of {repeat}")

    rows = {"plain loop over numpy slices": best_of(repeat, lambda: plain_loop(arrays, boxes))}
    for scheduler in ("synchronous", "threads"):
        rows[f"dask.array.map_blocks ({scheduler})"] = best_of(
            repeat, lambda: dask_map_blocks(arrays, block_shape, scheduler))
    for executor in (ndf.SerialExecutor(), ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)):
        rows[f"ndframework {executor.describe()}"] = best_of(
            repeat, lambda: pipeline_run(source, noop, block_shape, executor))

    loop = rows["plain loop over numpy slices"]
    print(f"  {'':44s} {'µs/block':>10s} {'overhead µs/block':>18s}")
    for name, seconds in rows.items():
        per_block = seconds / count * 1e6
        overhead = (seconds - loop) / count * 1e6
        print(f"  {name:44s} {per_block:10.1f} {overhead:18.1f}")
    serial = rows["ndframework serial (1 worker)"] - loop
    dask_sync = rows["dask.array.map_blocks (synchronous)"] - loop
    print(f"  serial overhead / dask synchronous overhead: {serial / dask_sync:.3f} "
          f"(aim: at most 0.25)")
    print(f"  serial per block / dask synchronous per block: "
          f"{rows['ndframework serial (1 worker)'] / rows['dask.array.map_blocks (synchronous)']:.3f}")
    return rows


def part_compute(blocks, repeat):
    block_shape = (4, 8, 8)
    source = ndf.InMemorySource({"em": np.zeros((4 * blocks, 8, 8), np.uint8)})
    print(f"\nPart 2: compute-bound processor, {blocks} blocks of ~50 ms CPU each, "
          f"best of {repeat}, on {len(os.sched_getaffinity(0))} CPUs")
    rows = {}
    for executor in (ndf.SerialExecutor(), ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)):
        rows[executor.describe()] = best_of(
            repeat, lambda: pipeline_run(source, spin, block_shape, executor))
    serial = rows["serial (1 worker)"]
    for name, seconds in rows.items():
        print(f"  {name:28s} {seconds:7.2f} s   {seconds / blocks * 1e3:7.1f} ms/block   "
              f"speed-up over serial {serial / seconds:5.2f}x")
    print(f"  processes (2 workers) speed-up: {serial / rows['processes (2 workers)']:.2f}x "
          f"(aim: at least 1.7x)")
    return rows


def record_outcomes(count, path):
    """What the coordinator does per block for the journal: pickle the value, buffer the
    record, commit in batches; then close."""
    from ndframework.journal import Journal, dumps_value

    journal = Journal(path)
    journal.open({"benchmark": "journal"})
    timings = ndf.BlockTimings(0.001, 0.002, 0.0)
    for ordinal in range(count):
        outcome = ndf.BlockOutcome(f"{ordinal}_0_0", ndf.BlockStatus.DONE, value=ordinal,
                                   timings=timings, worker="1234/MainThread")
        journal.finished(ordinal, outcome, 1, dumps_value(outcome.value))
    journal.close()


def part_journal(blocks_per_axis, repeat, directory):
    count = blocks_per_axis ** 3 * 4
    print(f"\nPart 3: the run journal, best of {repeat}")
    paths = iter(os.path.join(directory, f"journal-{n}.sqlite") for n in range(10 ** 6))
    alone = best_of(repeat, lambda: record_outcomes(count, next(paths)))
    print(f"  recording {count:,} outcomes alone: {alone / count * 1e6:.2f} µs per block "
          f"(aim: at most 10 µs added per block)")
    block_shape = (4, 8, 8)
    shape = tuple(b * blocks_per_axis for b in block_shape)
    source = ndf.InMemorySource({"em": np.zeros(shape, np.uint8)})
    tiler = ndf.RegularTiler(block_shape)
    blocks = tiler.count(source.bounds)

    def run(journal):
        result = ndf.Pipeline(source, noop, tiler=tiler, executor="serial",
                              load_entrypoints=False, journal=journal).run()
        assert result.ok and result.counts.done == blocks

    temporary = best_of(repeat, lambda: run(None))
    on_file = best_of(repeat, lambda: run(next(paths)))
    print(f"  serial no-op run, {blocks:,} blocks, temporary journal: "
          f"{temporary / blocks * 1e6:.1f} µs/block; journal file: "
          f"{on_file / blocks * 1e6:.1f} µs/block")
    return alone / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks-per-axis", type=int, default=16,
                        help="part 1 uses this many blocks along each axis (default 16: 4,096)")
    parser.add_argument("--compute-blocks", type=int, default=80,
                        help="blocks in part 2 (default 80)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    args = parser.parse_args()
    part_overhead(args.blocks_per_axis, args.repeat)
    part_compute(args.compute_blocks, args.repeat)
    with tempfile.TemporaryDirectory() as directory:
        part_journal(args.blocks_per_axis, args.repeat, directory)


if __name__ == "__main__":
    main()

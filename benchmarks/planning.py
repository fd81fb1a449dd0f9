"""How long planning takes, and how much memory, as the number of blocks grows.

Each case plans a run (``Pipeline.plan()``: block count, bytes read, halo overhead, storage
chunks decoded, and the sink's chunk-alignment check) over a uint8 volume in BOSS cuboids
(16, 512, 512 in z, y, x) with a halo of 8 voxels, reading from a source that is never read
and writing to a sink that is never written, in a fresh Python process so that its peak
resident memory (``ru_maxrss``) is its own. It also times the first block of the tiler.

Run:  python benchmarks/planning.py [--blocks 38416 24010000] [--tiler cuboid regular]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

PLAN = """
import math, resource, sys, time
import numpy as np
import ndframework as ndf

blocks, tiler_name = int(sys.argv[1]), sys.argv[2]
cuboid = ndf.BOSS_CUBOID
side = round(math.sqrt(min(blocks, 38416)))          # y and x: blocks per axis
depth = max(1, blocks // side ** 2)                  # z: blocks along it
shape = (depth * cuboid[0], side * 512 - 352, side * 512 - 352)  # ragged at the far edges


class Never(ndf.DataSource):
    channels = ("em",)
    bounds = ndf.Box((0, 0, 0), shape)
    chunk_shape = cuboid

    def dtype(self, channel):
        return np.dtype("uint8")

    def read_box(self, box, channels):
        raise AssertionError("planning read voxels")


class NeverSink(ndf.DataSink):
    channels = ("out",)
    bounds = Never.bounds
    chunk_shape = cuboid

    def dtype(self, channel):
        return np.dtype("uint8")

    def write_box(self, box, arrays):
        raise AssertionError("planning wrote voxels")


Tiler = {"cuboid": ndf.CuboidTiler, "regular": ndf.RegularTiler}[tiler_name]
tiler = Tiler(cuboid, halo=(0, 8, 8))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
first = next(iter(tiler.blocks(Never.bounds)))
first_block = time.perf_counter() - started
pipeline = ndf.Pipeline(Never(), lambda data: None, tiler=tiler, sink=NeverSink(),
                        executor=ndf.ThreadExecutor(2), load_entrypoints=False)
started = time.perf_counter()
plan = pipeline.plan()
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(plan.block_count, elapsed, first_block, before / 1024, (peak - before) / 1024)
"""


def measure(blocks: int, tiler: str) -> list[str]:
    """Blocks planned, seconds to plan, seconds to the first block, resident MiB before
    planning and MiB the peak grew by while planning."""
    return subprocess.run([sys.executable, "-c", PLAN, str(blocks), tiler], check=True,
                          capture_output=True, text=True).stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[38416, 24010000])
    parser.add_argument("--tiler", nargs="+", default=["cuboid", "regular"],
                        choices=["cuboid", "regular"])
    options = parser.parse_args()
    print(f"{'tiler':<8} {'blocks':>12} {'plan s':>9} {'first block ms':>15} "
          f"{'RSS before MiB':>15} {'peak growth MiB':>16}")
    for tiler in options.tiler:
        for blocks in options.blocks:
            count, seconds, first, rss, growth = measure(blocks, tiler)
            print(f"{tiler:<8} {int(count):>12,} {float(seconds):>9.3f} "
                  f"{float(first) * 1000:>15.2f} {float(rss):>15.1f} {float(growth):>16.1f}")


if __name__ == "__main__":
    main()

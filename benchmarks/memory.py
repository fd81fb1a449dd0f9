"""The coordinator's peak memory against the number of blocks: it must not grow with them.

Each run is a no-op function (with the default ``reduce``, which gives every block's value)
over a cube of one-voxel blocks with the serial executor,
in a fresh Python process so that its peak resident memory (``ru_maxrss``) is its own. The
per-block records go to the run's (temporary) journal, not to the coordinator's memory.

Run:  python benchmarks/memory.py [--blocks 1000 1000000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

RUN = """
import resource, sys, time
import numpy as np
import ndframework as ndf

side = round(int(sys.argv[1]) ** (1 / 3))
source = ndf.InMemorySource({"em": np.zeros((side, side, side), np.uint8)})
started = time.perf_counter()
result = ndf.Pipeline(source, lambda data: None, tiler=ndf.RegularTiler((1, 1, 1)),
                      executor="serial", load_entrypoints=False).run()
elapsed = time.perf_counter() - started
assert result.ok and len(result.reduced) == side ** 3  # the default reduce: every value
print(side ** 3, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, elapsed)
"""


def peak(blocks: int) -> tuple[int, float, float]:
    """Blocks run, peak resident MiB and seconds of a no-op run over about ``blocks``."""
    output = subprocess.run([sys.executable, "-c", RUN, str(blocks)], check=True,
                            capture_output=True, text=True).stdout.split()
    return int(output[0]), int(output[1]) / 1024, float(output[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1000, 1000000])
    args = parser.parse_args()
    rows = [peak(blocks) for blocks in args.blocks]
    print(f"{'blocks':>10s} {'peak MiB':>10s} {'seconds':>9s} {'µs/block':>9s}")
    for blocks, mib, seconds in rows:
        print(f"{blocks:10,d} {mib:10.1f} {seconds:9.1f} {seconds / blocks * 1e6:9.1f}")
    print(f"peak memory of the largest run minus the smallest: {rows[-1][1] - rows[0][1]:.1f} "
          f"MiB (aim: a few tens of MiB at most)")


if __name__ == "__main__":
    main()

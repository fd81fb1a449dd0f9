"""Peak memory of the halo filter against the volume's size: ndframework's
`ProcessExecutor(2)` beside ``dask.array.map_overlap`` on the threaded scheduler.

The filter, volume, blocks and checks are those of ``halo_filter.py`` (run through its
``--child`` mode): for each ``--sizes`` GiB a volume is generated, both peers run once in
fresh child processes while the parent samples the summed resident memory of each child's
process tree every 50 ms, and their outputs must be equal voxel for voxel.

Run:  python benchmarks/halo_memory.py [--sizes 0.25 0.5 1 2] [--block 64,256,256]
      [--chunk-cache-mib M]
Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import halo_filter
from _peers import mib, print_table

PEERS = ("ndf-processes", "dask-threads")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.25, 0.5, 1, 2],
                        help="GiB of uint8 (default 0.25 0.5 1 2)")
    parser.add_argument("--block", default="64,256,256")
    parser.add_argument("--chunk-cache-mib", type=float, default=None,
                        help="ndframework's chunk cache per process, MiB (default: 80 MiB "
                             "per run, divided among worker processes)")
    parser.add_argument("--peers", nargs="+", default=list(PEERS),
                        choices=list(halo_filter.PEERS))
    options = parser.parse_args()
    block = halo_filter.parse_triple(options.block)
    rows = []
    figures_by_size = {}
    for size in options.sizes:
        with tempfile.TemporaryDirectory() as workdir:
            halo_filter.prepare(workdir, size, block)
            figures = halo_filter.measure(workdir, size, block, options.peers,
                                          options.peers[0], options.chunk_cache_mib)
            shutil.rmtree(os.path.join(workdir, "volume.zarr"))
        figures_by_size[size] = figures
        row = [f"{size:g}"]
        for name in options.peers:
            row += [f"{mib(figures[name]['peak_bytes']):.0f}",
                    f"{figures[name]['seconds']:.1f}"]
        first, second = (figures[name]["peak_bytes"] for name in options.peers[:2])
        row += [f"{first / second:.2f}",
                "yes" if all(f["agrees"] for f in figures.values()) else "NO"]
        rows.append(row)

    print(f"gaussian_filter(sigma={halo_filter.SIGMA}, truncate={halo_filter.TRUNCATE}), halo "
          f"{halo_filter.HALO}, blocks and chunks {block}, {halo_filter.WORKERS} workers, "
          f"ndframework chunk cache {halo_filter.cache_text(options.chunk_cache_mib)}; "
          f"peak = summed RSS of the peer's process tree")
    headers = ["GiB"]
    for name in options.peers:
        headers += [f"{halo_filter.PEERS[name]} peak MiB", "s"]
    headers += ["peak ratio", "outputs agree"]
    print_table(headers, rows)
    for name in options.peers:
        peaks = [figures_by_size[s][name]["peak_bytes"] for s in options.sizes]
        print(f"  {halo_filter.PEERS[name]}: peak grows {mib(max(peaks) - min(peaks)):.0f} MiB "
              f"from {min(options.sizes):g} to {max(options.sizes):g} GiB")
    if not all(f["agrees"] for figures in figures_by_size.values() for f in figures.values()):
        sys.exit("the peers' outputs differ")


if __name__ == "__main__":
    main()

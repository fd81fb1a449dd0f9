"""Per-block overhead beside the peers: ndframework's executors, dask.array.map_blocks and
daisy 2, a near no-op block function over about 10,000 small blocks, in one run.

Every peer reads each block of the same uint8 volume (blocks of 4 × 8 × 8 voxels, default
22 blocks along each axis: 10,648 blocks) and gives back one value per block, the block's
first voxel, so that the outputs can be checked against numpy (``volume[::4, ::8, ::8]``):

- a plain Python loop over numpy slices (the floor);
- ndframework `Pipeline` over an `InMemorySource`: `SerialExecutor`, `ThreadExecutor(2)`,
  `ProcessExecutor(2)`, `DaskExecutor(workers=2)` (values through ``result.reduced``);
- ``dask.array.map_blocks`` over ``da.from_array`` chunks of the block shape, each block
  giving a 1 × 1 × 1 array: the synchronous scheduler, the threaded scheduler with 2 workers,
  and ``distributed`` on a ``LocalCluster`` of 2 single-threaded worker processes;
- daisy 2 ``run_blockwise`` of a block function that reads the block from a memory-mapped
  ``.npy`` and writes its value into another: ``multiprocessing=False`` (serial) and
  2 worker processes.

Each peer runs in a fresh child process (``--child``) while the parent samples the summed
resident memory of the child's whole process tree every 50 ms. Within a child the time is
the best of ``--repeat`` runs. Process pools (ndframework's, daisy's) start inside every
timed run, as they do for a user's run; the two Dask clusters start before timing (and get
one untimed warm-up run), as for a user who keeps a cluster.

Run:  python benchmarks/peers_overhead.py [--blocks-per-axis 22] [--repeat 3]
Needs the ``bench`` extra: ``pip install -e ".[bench]"`` (dask, distributed, daisy, psutil).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from _peers import Stopwatch, mib, print_table, report, run_child

BLOCK = (4, 8, 8)

PEERS = {
    "loop": "plain loop over numpy slices",
    "ndf-serial": "ndframework SerialExecutor",
    "ndf-threads": "ndframework ThreadExecutor(2)",
    "ndf-processes": "ndframework ProcessExecutor(2)",
    "ndf-dask": "ndframework DaskExecutor(workers=2)",
    "dask-sync": "dask map_blocks, synchronous",
    "dask-threads": "dask map_blocks, threads (2)",
    "dask-distributed": "dask map_blocks, distributed (2 workers)",
    "daisy-serial": "daisy 2, serial",
    "daisy-2": "daisy 2, 2 workers",
}


# -- the peers, each in its own child process -------------------------------------------


def best(repeat, run):
    """Smallest seconds of ``repeat`` calls of ``run()``, and the last call's values."""
    seconds, values = float("inf"), None
    for _ in range(repeat):
        with Stopwatch() as watch:
            values = run()
        seconds = min(seconds, watch.seconds)
    return seconds, values


def grid_of(shape):
    return tuple(s // b for s, b in zip(shape, BLOCK))


def run_loop(volume, repeat):
    def run():
        values = np.zeros(grid_of(volume.shape), np.uint8)
        bz, by, bx = BLOCK
        for iz in range(values.shape[0]):
            for iy in range(values.shape[1]):
                for ix in range(values.shape[2]):
                    block = volume[iz * bz:(iz + 1) * bz, iy * by:(iy + 1) * by,
                                   ix * bx:(ix + 1) * bx].copy()
                    values[iz, iy, ix] = block[0, 0, 0]
        return values
    return best(repeat, run)


def first_voxel(data):
    return int(data["em"][0, 0, 0])


def run_ndframework(volume, repeat, name):
    import ndframework as ndf

    source = ndf.InMemorySource({"em": volume})
    tiler = ndf.RegularTiler(BLOCK)

    def run_with(executor):
        result = ndf.Pipeline(source, first_voxel, tiler=tiler, executor=executor,
                              load_entrypoints=False).run()
        assert result.ok, result.summary()
        values = np.zeros(grid_of(volume.shape), np.uint8)
        for key, value in result.reduced.items():
            z, y, x = (int(v) for v in key.split("_"))
            values[z // BLOCK[0], y // BLOCK[1], x // BLOCK[2]] = value
        return values

    if name == "ndf-dask":
        with ndf.DaskExecutor(workers=2) as executor:
            run_with(executor)  # warm-up: the cluster starts and the workers import
            return best(repeat, lambda: run_with(executor))
    executor = {"ndf-serial": ndf.SerialExecutor, "ndf-threads": lambda: ndf.ThreadExecutor(2),
                "ndf-processes": lambda: ndf.ProcessExecutor(2)}[name]()
    return best(repeat, lambda: run_with(executor))


def one_value(block):
    return np.full((1, 1, 1), block[0, 0, 0], block.dtype)


def run_dask(volume, repeat, name):
    import dask
    import dask.array as da

    array = da.from_array(volume, chunks=BLOCK)

    def run():
        values = da.map_blocks(one_value, array, chunks=(1, 1, 1), dtype=volume.dtype)
        return values.compute()

    if name == "dask-distributed":
        from dask.distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster):
            run()  # warm-up
            return best(repeat, run)
    options = ({"scheduler": "synchronous"} if name == "dask-sync"
               else {"scheduler": "threads", "num_workers": 2})
    with dask.config.set(**options):
        return best(repeat, run)


_MAPS: dict = {}


def daisy_block(block):
    """daisy's block function: read the block (a copy, as the others get), record its first
    voxel. The memory maps open once per worker process."""
    if not _MAPS:
        _MAPS["in"] = np.load(os.environ["PEERS_VOLUME"], mmap_mode="r")
        _MAPS["out"] = np.load(os.environ["PEERS_VALUES"], mmap_mode="r+")
    z, y, x = block.write_roi.offset
    bz, by, bx = BLOCK
    data = np.array(_MAPS["in"][z:z + bz, y:y + by, x:x + bx])
    _MAPS["out"][z // bz, y // by, x // bx] = data[0, 0, 0]


def run_daisy(volume, repeat, name, workdir):
    import daisy
    from funlib.geometry import Roi

    values_path = os.path.join(workdir, "daisy-values.npy")
    os.environ["PEERS_VALUES"] = values_path  # daisy's worker processes inherit it

    def run():
        values = np.lib.format.open_memmap(values_path, "w+", np.uint8, grid_of(volume.shape))
        del values
        _MAPS.clear()
        task = daisy.Task("noop", total_roi=Roi((0, 0, 0), volume.shape),
                          read_roi=Roi((0, 0, 0), BLOCK), write_roi=Roi((0, 0, 0), BLOCK),
                          process_function=daisy_block, read_write_conflict=False,
                          max_workers=1 if name == "daisy-serial" else 2, max_retries=0)
        ok = daisy.run_blockwise([task], multiprocessing=name != "daisy-serial",
                                 progress=False, summary=False, host="127.0.0.1")
        assert ok
        _MAPS.clear()
        return np.load(values_path)

    return best(repeat, run)


def child(options):
    volume_path = os.path.join(options.workdir, "volume.npy")
    os.environ["PEERS_VOLUME"] = volume_path
    volume = np.load(volume_path)
    name = options.child
    if name == "loop":
        seconds, values = run_loop(volume, options.repeat)
    elif name.startswith("ndf-"):
        seconds, values = run_ndframework(volume, options.repeat, name)
    elif name.startswith("dask-"):
        seconds, values = run_dask(volume, options.repeat, name)
    else:
        seconds, values = run_daisy(volume, options.repeat, name, options.workdir)
    np.save(os.path.join(options.workdir, f"values-{name}.npy"), values)
    report({"seconds": seconds, "blocks": int(np.prod(grid_of(volume.shape)))})


# -- the parent ------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks-per-axis", type=int, default=22,
                        help="blocks along each axis (default 22: 10,648 blocks)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per peer (best)")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--child", choices=list(PEERS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        return child(options)

    shape = tuple(b * options.blocks_per_axis for b in BLOCK)
    count = options.blocks_per_axis ** 3
    print(f"no-op-like block function over {count:,} blocks of {BLOCK} voxels (uint8 volume "
          f"{shape}), best of {options.repeat}, {len(os.sched_getaffinity(0))} CPUs; "
          f"peak = summed RSS of the peer's process tree")
    with tempfile.TemporaryDirectory() as workdir:
        volume = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        np.save(os.path.join(workdir, "volume.npy"), volume)
        expected = volume[::BLOCK[0], ::BLOCK[1], ::BLOCK[2]]
        figures = {}
        for name in options.peers:
            print(f"  running {PEERS[name]} ...", file=sys.stderr, flush=True)
            figures[name] = run_child(__file__, ["--child", name, "--workdir", workdir,
                                                 "--repeat", str(options.repeat)])
            values = np.load(os.path.join(workdir, f"values-{name}.npy"))
            figures[name]["agrees"] = bool(np.array_equal(values, expected))

    def per_block(name):
        return figures[name]["seconds"] / count * 1e6

    reference = "daisy-serial" if "daisy-serial" in figures else options.peers[0]
    rows = [[PEERS[name], f"{figures[name]['seconds']:.2f}", f"{per_block(name):.1f}",
             f"{per_block(name) / per_block(reference):.2f}",
             f"{mib(figures[name]['peak_bytes']):.0f}", figures[name]["peak_processes"],
             "yes" if figures[name]["agrees"] else "NO"]
            for name in options.peers]
    print_table(["peer", "s", "µs/block", f"× {PEERS[reference]}", "peak MiB", "processes",
                 "output = numpy"], rows)

    def ratio(name, against, aim, text):
        if name in figures and against in figures:
            value = per_block(name) / per_block(against)
            print(f"  {text}: {value:.2f} (target: at most {aim}; "
                  f"{'met' if value <= aim else 'missed'})")

    ratio("ndf-serial", "daisy-serial", 1, "ndframework serial / daisy 2 serial, µs per block")
    ratio("ndf-processes", "daisy-2", 1,
          "ndframework ProcessExecutor(2) / daisy 2 with 2 workers, µs per block")
    ratio("ndf-dask", "dask-distributed", 0.25,
          "ndframework DaskExecutor / dask distributed map_blocks, µs per block")
    if not all(f["agrees"] for f in figures.values()):
        sys.exit("some peer's values differ from numpy's")


if __name__ == "__main__":
    main()

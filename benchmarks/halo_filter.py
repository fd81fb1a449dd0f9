"""A compute-bound halo filter over a zarr volume beside the peers, in one run: ndframework,
dask.array.map_overlap and daisy 2, each against a plain serial numpy loop.

The filter is ``scipy.ndimage.gaussian_filter(sigma=1, truncate=4)``, whose radius is 4
voxels, so every peer reads each block with a halo of 4 and pads beyond the volume's edge as
scipy's ``mode="reflect"`` does: the result equals the filter of the whole volume. The input
is a synthetic uint8 volume of ``--size`` GiB (``size * 1024`` × 1024 × 1024, zarr's default
zstd codec, chunks ``--block``, default 64 × 256 × 256), generated once per run in a
temporary directory (or kept in ``--workdir``); every peer writes a uint8 zarr array
chunked like the input, and its output must equal the loop's, voxel for voxel.

- loop: for each block, read block + halo from zarr (clipped to the volume), pad the rest
  (``np.pad(mode="symmetric")``, scipy's "reflect"), filter, crop, write.
- ndframework `Pipeline`, `ZarrSource` → `ZarrSink`, `FunctionProcessor(halo=4,
  halo_mode="reflect")`, tiler blocks = ``--block``: `ProcessExecutor(2)`,
  `ThreadExecutor(2)`, `DaskExecutor(workers=2)` (its local cluster's start included).
- ``da.from_zarr(...).map_overlap(depth=4, boundary="reflect")`` then ``to_zarr``: the
  threaded scheduler with 2 workers, and ``distributed`` on a ``LocalCluster`` of 2
  single-threaded worker processes (its start included).
- daisy 2 ``run_blockwise`` with 2 worker processes, read/write ROIs of block + halo and
  block, the loop's block function.

Each peer runs once in a fresh child process; the parent samples the summed resident memory
of the child's process tree every 50 ms. Wall time covers the whole run, pools and clusters
starting included; the comparison of outputs is not timed.

Run:  python benchmarks/halo_filter.py [--size 1] [--block 64,256,256] [--peers ...]
      [--chunk-cache-mib M]
Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

from _peers import Stopwatch, mib, print_table, report, run_child

SIGMA = 1.0
HALO = 4
TRUNCATE = HALO / SIGMA  # scipy's radius: int(truncate * sigma + 0.5) = 4
WORKERS = 2

PEERS = {
    "loop": "serial numpy loop",
    "ndf-processes": "ndframework ProcessExecutor(2)",
    "ndf-threads": "ndframework ThreadExecutor(2)",
    "ndf-dask": "ndframework DaskExecutor(workers=2)",
    "dask-threads": "dask map_overlap, threads (2)",
    "dask-distributed": "dask map_overlap, distributed (2 workers)",
    "daisy-2": "daisy 2, 2 workers",
}


def smooth(array):
    import scipy.ndimage as ndi

    return ndi.gaussian_filter(array, SIGMA, truncate=TRUNCATE, mode="reflect")


# -- the volume --------------------------------------------------------------------------


def volume_shape(size_gib):
    return (max(1, round(size_gib * 1024)), 1024, 1024)


def generate(path, shape, chunks):
    """A uint8 volume with edges and noise, written slab by slab."""
    import zarr

    from ndframework.storage._zarr import create_array

    group = zarr.open_group(path, mode="w")
    array = create_array(group, "em", shape, chunks, np.uint8)
    yy, xx = np.ogrid[:shape[1], :shape[2]]
    rng = np.random.default_rng(0)
    for z0 in range(0, shape[0], chunks[0]):
        z1 = min(shape[0], z0 + chunks[0])
        zz = np.arange(z0, z1)[:, None, None]
        cells = ((zz // 24 + yy // 24 + xx // 24) % 3 * 80).astype(np.uint8)
        noise = rng.integers(0, 48, (z1 - z0, shape[1], shape[2]), dtype=np.uint8)
        array[z0:z1] = cells + noise


def create_output(path, shape, chunks):
    import zarr

    from ndframework.storage._zarr import create_array

    group = zarr.open_group(path, mode="w")
    return create_array(group, "out", shape, chunks, np.uint8)


def blocks(shape, block):
    """Start and stop of every block of ``block`` tiling ``shape``, edge blocks clipped."""
    for z in range(0, shape[0], block[0]):
        for y in range(0, shape[1], block[1]):
            for x in range(0, shape[2], block[2]):
                start = (z, y, x)
                yield start, tuple(min(s + b, n) for s, b, n in zip(start, block, shape))


def filter_block(source, target, start, stop):
    """The loop's (and daisy's) block: read start..stop grown by the halo from ``source``,
    pad beyond the volume as scipy's "reflect", filter, crop, write to ``target``."""
    shape = source.shape
    read_start = [max(0, s - HALO) for s in start]
    read_stop = [min(n, s + HALO) for s, n in zip(stop, shape)]
    data = np.asarray(source[tuple(slice(a, b) for a, b in zip(read_start, read_stop))])
    padding = [(HALO - (s - a), HALO - (b - t)) for s, t, a, b
               in zip(start, stop, read_start, read_stop)]
    if any(before or after for before, after in padding):
        data = np.pad(data, padding, mode="symmetric")
    result = smooth(data)
    inner = tuple(slice(HALO, HALO + (t - s)) for s, t in zip(start, stop))
    target[tuple(slice(s, t) for s, t in zip(start, stop))] = result[inner]


def self_check():
    """The loop's block function gives scipy's filter of the whole volume (a small one)."""
    volume = np.random.default_rng(1).integers(0, 256, (21, 40, 37), dtype=np.uint8)
    out = np.zeros_like(volume)
    for start, stop in blocks(volume.shape, (8, 16, 16)):
        filter_block(volume, out, start, stop)
    assert np.array_equal(out, smooth(volume)), "block-wise filter differs from scipy's"


# -- the peers, each in its own child process -------------------------------------------


def smooth_block(data, block):
    return {"out": block.crop(smooth(data["em"]))}


def run_loop(source_path, out_path, block):
    import zarr

    source = zarr.open_group(source_path, mode="r")["em"]
    target = create_output(out_path, source.shape, block)
    for start, stop in blocks(source.shape, block):
        filter_block(source, target, start, stop)


def run_ndframework(source_path, out_path, block, name, cache_mib):
    import ndframework as ndf

    source = ndf.ZarrSource(source_path) if cache_mib is None else ndf.ZarrSource(
        source_path, chunk_cache_bytes=int(cache_mib * 2**20))
    sink = ndf.ZarrSink.create(out_path, {"out": "uint8"}, source.bounds, chunk_shape=block,
                               overwrite=True)
    processor = ndf.FunctionProcessor(smooth_block, halo=HALO, halo_mode="reflect",
                                      pass_block=True)
    if name == "ndf-dask":
        executor = ndf.DaskExecutor(workers=WORKERS)
    elif name == "ndf-threads":
        executor = ndf.ThreadExecutor(WORKERS)
    else:
        executor = ndf.ProcessExecutor(WORKERS)
    try:
        result = ndf.Pipeline(source, processor, tiler=ndf.RegularTiler(block), sink=sink,
                              executor=executor, load_entrypoints=False).run()
    finally:
        if name == "ndf-dask":
            executor.close()
    assert result.ok, result.summary()


def run_dask(source_path, out_path, name):
    import dask
    import dask.array as da

    def compute():
        array = da.from_zarr(source_path, component="em")
        smoothed = array.map_overlap(smooth, depth=HALO, boundary="reflect", dtype=np.uint8)
        da.to_zarr(smoothed, out_path, component="out", overwrite=True)

    if name == "dask-distributed":
        from dask.distributed import Client, LocalCluster

        with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster):
            compute()
    else:
        with dask.config.set(scheduler="threads", num_workers=WORKERS):
            compute()


_ARRAYS: dict = {}


def daisy_block(block):
    """daisy's block function: the loop's, on arrays opened once per worker process."""
    import zarr

    if not _ARRAYS:
        _ARRAYS["in"] = zarr.open_group(os.environ["HALO_SOURCE"], mode="r")["em"]
        _ARRAYS["out"] = zarr.open_group(os.environ["HALO_OUTPUT"], mode="r+")["out"]
    start = tuple(block.write_roi.begin)
    stop = tuple(block.write_roi.end)
    filter_block(_ARRAYS["in"], _ARRAYS["out"], start, stop)


def run_daisy(source_path, out_path, block):
    import daisy
    import zarr
    from funlib.geometry import Roi

    shape = zarr.open_group(source_path, mode="r")["em"].shape
    create_output(out_path, shape, block)
    os.environ["HALO_SOURCE"], os.environ["HALO_OUTPUT"] = source_path, out_path
    task = daisy.Task(
        "smooth",
        total_roi=Roi((-HALO,) * 3, tuple(s + 2 * HALO for s in shape)),
        read_roi=Roi((0, 0, 0), tuple(b + 2 * HALO for b in block)),
        write_roi=Roi((HALO,) * 3, block),
        process_function=daisy_block, read_write_conflict=False, fit="shrink",
        max_workers=WORKERS, max_retries=0)
    ok = daisy.run_blockwise([task], multiprocessing=True, progress=False, summary=False,
                             host="127.0.0.1")
    assert ok, "daisy reported failed blocks"


def child(options):
    block = parse_triple(options.block)
    source_path = os.path.join(options.workdir, "volume.zarr")
    out_path = os.path.join(options.workdir, f"out-{options.child}.zarr")
    name = options.child
    with Stopwatch() as watch:
        if name == "loop":
            run_loop(source_path, out_path, block)
        elif name.startswith("ndf-"):
            run_ndframework(source_path, out_path, block, name, options.chunk_cache_mib)
        elif name.startswith("dask-"):
            run_dask(source_path, out_path, name)
        else:
            run_daisy(source_path, out_path, block)
    report({"seconds": watch.seconds})


# -- the parent ------------------------------------------------------------------------


def parse_triple(text):
    values = tuple(int(v) for v in str(text).split(","))
    if len(values) != 3 or min(values) < 1:
        raise SystemExit(f"--block must be three positive integers z,y,x, got {text!r}")
    return values


def cache_text(cache_mib):
    return ("default (80 MiB per run, shared by worker processes)" if cache_mib is None
            else f"{cache_mib:g} MiB per process")


def same_output(workdir, name, reference, slab=64):
    """Whether peer ``name`` wrote the same voxels as ``reference``, compared slab by slab."""
    import zarr

    ours = zarr.open_group(os.path.join(workdir, f"out-{name}.zarr"), mode="r")["out"]
    theirs = zarr.open_group(os.path.join(workdir, f"out-{reference}.zarr"), mode="r")["out"]
    if ours.shape != theirs.shape:
        return False
    return all(np.array_equal(ours[z:z + slab], theirs[z:z + slab])
               for z in range(0, ours.shape[0], slab))


def prepare(workdir, size_gib, block):
    """The input volume in ``workdir`` (made unless one of that shape is already there)."""
    import zarr

    path = os.path.join(workdir, "volume.zarr")
    shape = volume_shape(size_gib)
    try:
        existing = zarr.open_group(path, mode="r")["em"]
        if existing.shape == shape and tuple(existing.chunks) == block:
            return shape
    except Exception:
        pass
    print(f"  generating {shape} uint8 in {path} ...", file=sys.stderr, flush=True)
    generate(path, shape, block)
    return shape


def measure(workdir, size_gib, block, peers, reference, cache_mib=None):
    """Run every peer once over the volume in ``workdir`` and check it against
    ``reference``'s output; figures by peer."""
    figures = {}
    extra = [] if cache_mib is None else ["--chunk-cache-mib", str(cache_mib)]
    for name in peers:
        print(f"  {size_gib:g} GiB: running {PEERS[name]} ...", file=sys.stderr, flush=True)
        figures[name] = run_child(__file__, ["--child", name, "--workdir", workdir,
                                             "--block", ",".join(map(str, block)), *extra])
    for name in peers:
        figures[name]["agrees"] = name == reference or same_output(workdir, name, reference)
    for name in peers:
        shutil.rmtree(os.path.join(workdir, f"out-{name}.zarr"), ignore_errors=True)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=1.0, help="GiB of uint8 (default 1)")
    parser.add_argument("--block", default="64,256,256",
                        help="block shape and zarr chunks, z,y,x (default 64,256,256)")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--workdir", help="keep the volume here (default: a temporary "
                                          "directory, removed at the end)")
    parser.add_argument("--chunk-cache-mib", type=float, default=None,
                        help="ndframework's ZarrSource chunk_cache_bytes in MiB per process "
                             "(default: its own default, 80 MiB per run, divided among "
                             "worker processes)")
    parser.add_argument("--child", choices=list(PEERS), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        return child(options)

    block = parse_triple(options.block)
    self_check()
    peers = ["loop"] + [p for p in options.peers if p != "loop"]
    temporary = None if options.workdir else tempfile.TemporaryDirectory()
    workdir = options.workdir or temporary.name
    os.makedirs(workdir, exist_ok=True)
    try:
        shape = prepare(workdir, options.size, block)
        figures = measure(workdir, options.size, block, peers, "loop", options.chunk_cache_mib)
    finally:
        if temporary is not None:
            temporary.cleanup()

    count = sum(1 for _ in blocks(shape, block))
    print(f"gaussian_filter(sigma={SIGMA}, truncate={TRUNCATE}), halo {HALO}, "
          f"{shape} uint8 ({options.size:g} GiB), {count} blocks of {block}, {WORKERS} "
          f"workers, ndframework chunk cache {cache_text(options.chunk_cache_mib)}, "
          f"{len(os.sched_getaffinity(0))} CPUs; peak = summed RSS of the peer's process tree")
    loop = figures["loop"]["seconds"]
    rows = [[PEERS[name], f"{figures[name]['seconds']:.1f}",
             f"{loop / figures[name]['seconds']:.2f}",
             f"{mib(figures[name]['peak_bytes']):.0f}", figures[name]["peak_processes"],
             "yes" if figures[name]["agrees"] else "NO"]
            for name in peers]
    print_table(["peer", "s", "speed-up over the loop", "peak MiB", "processes",
                 "output = loop's"], rows)
    ours = [n for n in peers if n.startswith("ndf-")]
    theirs = [n for n in peers if n not in ours and n != "loop"]
    if ours:
        fastest = min(ours, key=lambda n: figures[n]["seconds"])
        speed_up = loop / figures[fastest]["seconds"]
        print(f"  fastest ndframework ({PEERS[fastest]}): {speed_up:.2f}× the loop "
              f"(target: at least 1.8×; {'met' if speed_up >= 1.8 else 'missed'})")
        if theirs:
            peer = min(theirs, key=lambda n: figures[n]["seconds"])
            ratio = figures[peer]["seconds"] / figures[fastest]["seconds"]
            print(f"  against the fastest peer ({PEERS[peer]}): {ratio:.2f}× as fast "
                  f"(target: above 1; {'met' if ratio > 1 else 'missed'})")
    if not all(f["agrees"] for f in figures.values()):
        sys.exit("some peer's output differs from the loop's")


if __name__ == "__main__":
    main()

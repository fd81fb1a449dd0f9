"""Block reads from a `ZarrSource` beside plain zarr reads of the same slices, in one run.

The volume is a synthetic uint8 image (default 64 × 512 × 512, chunks 8 × 32 × 32, zarr's
default zstd codec) in a temporary zarr group on local disk.

Part 1, blocks = chunks, no halo: ``array[slices]`` over an array opened once, against
``ZarrSource.read`` of the same boxes with its chunk cache and without, each block read by
all three in turn (medians and means, µs per block); then a plain loop over all blocks
against a serial pipeline run of a no-op processor over the same blocks (best of
``--repeat`` each, and the spread of their ratio over pairs run one after the other).

Part 2, blocks = chunks with a one-voxel halo, serial no-op runs: the source with its chunk
cache and with ``chunk_cache_bytes=0``, and the plain loop over the same read boxes. Chunks
decoded are counted as the chunk files read from the store (a counting wrapper around
``LocalStore.get``, this process only).

Run:  python benchmarks/zarr_reads.py [--shape 64,512,512] [--chunks 8,32,32] [--repeat 3]
Part 2 runs each once.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import zarr
import zarr.storage

import ndframework as ndf
from _timing import best_of
from ndframework.storage._zarr import create_array
from ndframework.synthetic import demo_volume


class ChunkReads:
    """Counts the chunk files read through every `LocalStore` of this process."""

    def __init__(self) -> None:
        self.count = 0
        self._original = zarr.storage.LocalStore.get
        original, counter = self._original, self

        async def get(store, key, *args, **kwargs):  # type: ignore[no-untyped-def]
            if "/c/" in key or key.startswith("c/"):
                counter.count += 1
            return await original(store, key, *args, **kwargs)

        zarr.storage.LocalStore.get = get  # type: ignore[method-assign]

    def close(self) -> None:
        zarr.storage.LocalStore.get = self._original  # type: ignore[method-assign]


def noop(data):
    return None


def write_volume(path, shape, chunks):
    image = demo_volume(shape, cells=max(4, shape[1] // 16), seed=0)["em"]
    group = zarr.open_group(path, mode="w")
    create_array(group, "em", shape, chunks, image.dtype)[...] = image
    return image


def plain_loop(array, boxes):
    for box in boxes:
        np.asarray(array[box.slices()])


def source_loop(source, boxes):
    for box in boxes:
        source.read(box, ["em"])


def pipeline_run(path, chunks, halo, cache_bytes):
    source = ndf.ZarrSource(path, chunk_cache_bytes=cache_bytes)
    tiler = ndf.RegularTiler(chunks, halo=halo)
    result = ndf.Pipeline(source, ndf.FunctionProcessor(noop), tiler=tiler,
                          executor="serial").run()
    assert result.ok, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,512,512")
    parser.add_argument("--chunks", default="8,32,32")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    chunks = tuple(int(v) for v in args.chunks.split(","))

    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/volume.zarr"
        write_volume(path, shape, chunks)
        array = zarr.open_group(path, mode="r")["em"]
        bounds = ndf.Box.from_shape(shape)
        blocks = list(ndf.RegularTiler(chunks).blocks(bounds))
        boxes = [block.box for block in blocks]
        count = len(boxes)
        print(f"volume {shape} uint8, chunks {chunks}, {count} blocks of one chunk")

        print("\nPart 1: no halo, each block read three ways in turn (µs per block)")
        cached = ndf.ZarrSource(path)
        uncached = ndf.ZarrSource(path, chunk_cache_bytes=0)
        cached.read(boxes[0]), uncached.read(boxes[0])  # open both before timing
        readers = {
            "plain zarr array[slices]": lambda box: np.asarray(array[box.slices()]),
            "ZarrSource.read, cache": lambda box: cached.read(box, ["em"]),
            "ZarrSource.read, no cache": lambda box: uncached.read(box, ["em"]),
        }
        # Each block is read by every reader in turn (in a rotating order), so that a
        # shared, noisy machine disturbs them alike; medians are robust to the rest.
        times = {name: [] for name in readers}
        names = list(readers)
        clock = time.perf_counter
        for _ in range(args.repeat):
            cached.chunk_cache.clear()  # every read a miss, as in a run
            for number, box in enumerate(boxes):
                for name in names[number % 3:] + names[:number % 3]:
                    started = clock()
                    readers[name](box)
                    times[name].append(clock() - started)
        base = statistics.median(times[names[0]])
        for name in names:
            median, mean = statistics.median(times[name]), statistics.mean(times[name])
            print(f"  {name:28s} median {median * 1e6:5.0f}  mean {mean * 1e6:5.0f}  "
                  f"median ×{median / base:.2f}")
        plains, runs = [], []
        for _ in range(args.repeat):  # in pairs, so that each pair meets the same load
            plains.append(best_of(1, lambda: plain_loop(array, boxes)))
            runs.append(best_of(1, lambda: pipeline_run(path, chunks, 0, None)))
        plain, run = min(plains), min(runs)
        ratios = sorted(r / p for p, r in zip(plains, runs))
        print(f"  {'plain loop, whole pass':28s} {plain / count * 1e6:5.0f}")
        print(f"  {'serial pipeline run, cache':28s} {run / count * 1e6:5.0f}  "
              f"×{run / plain:.2f}  (pairs ×{ratios[0]:.2f} to ×{ratios[-1]:.2f})")

        print("\nPart 2: halo 1, serial no-op runs (chunks decoded, time)")
        grown = [block.read_box for block in ndf.RegularTiler(chunks, halo=1).blocks(bounds)]
        chunk_count = int(np.prod([-(-s // c) for s, c in zip(shape, chunks)]))
        runs = (
            ("plain zarr loop", lambda: plain_loop(array, grown)),
            ("pipeline, default cache", lambda: pipeline_run(path, chunks, 1, None)),
            ("pipeline, no cache", lambda: pipeline_run(path, chunks, 1, 0)),
        )
        for name, run in runs:
            counter = ChunkReads()
            try:
                started = time.perf_counter()
                run()
                first = time.perf_counter() - started
                decoded = counter.count
            finally:
                counter.close()
            seconds = first
            print(f"  {name:28s} {decoded:7d} chunks decoded ({decoded / chunk_count:5.2f} "
                  f"per chunk)  {seconds:6.2f} s  {seconds / count * 1e6:7.0f} µs/block")


if __name__ == "__main__":
    main()

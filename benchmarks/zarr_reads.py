"""Block reads from a `ZarrSource` beside plain zarr reads of the same slices, in one run.

The volume is a synthetic uint8 image (default 64 × 512 × 512, chunks 8 × 32 × 32, zarr's
default zstd codec) in a temporary zarr group on local disk.

Part 1, blocks = chunks, no halo: a plain loop of ``array[slices]`` over an array opened
once, against ``ZarrSource.read`` of the same boxes (with its chunk cache and without) and a
serial pipeline run of a no-op processor over the same blocks. Printed as µs per block and
as ratios to the plain loop.

Part 2, blocks = chunks with a one-voxel halo, serial no-op runs: the source with its chunk
cache and with ``chunk_cache_bytes=0``, and the plain loop over the same read boxes. Chunks
decoded are counted as the chunk files read from the store (a counting wrapper around
``LocalStore.get``, this process only).

Run:  python benchmarks/zarr_reads.py [--shape 64,512,512] [--chunks 8,32,32] [--repeat 3]
Timings are the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
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

        print("\nPart 1: no halo (µs per block, ratio to the plain loop)")
        cached = ndf.ZarrSource(path)
        uncached = ndf.ZarrSource(path, chunk_cache_bytes=0)
        cached.read(boxes[0]), uncached.read(boxes[0])  # open both before timing
        figures = {}
        # Interleave the measurements so that a noisy machine disturbs all of them alike.
        for _ in range(args.repeat):
            for name, run in (
                ("plain zarr loop", lambda: plain_loop(array, boxes)),
                ("ZarrSource.read, cache", lambda: (cached.chunk_cache.clear(),
                                                     source_loop(cached, boxes))),
                ("ZarrSource.read, no cache", lambda: source_loop(uncached, boxes)),
                ("serial pipeline run, cache", lambda: pipeline_run(path, chunks, 0, 2**28)),
            ):
                figures[name] = min(figures.get(name, float("inf")), best_of(1, run))
        base = figures["plain zarr loop"]
        for name, seconds in figures.items():
            print(f"  {name:28s} {seconds / count * 1e6:8.0f} µs/block  ×{seconds / base:.2f}")

        print("\nPart 2: halo 1, serial no-op runs (chunks decoded, time)")
        grown = [block.read_box for block in ndf.RegularTiler(chunks, halo=1).blocks(bounds)]
        chunk_count = int(np.prod([-(-s // c) for s, c in zip(shape, chunks)]))
        runs = (
            ("plain zarr loop", lambda: plain_loop(array, grown)),
            ("pipeline, cache 256 MiB", lambda: pipeline_run(path, chunks, 1, 2**28)),
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
            seconds = min(first, best_of(max(0, args.repeat - 1), run)) if args.repeat > 1 \
                else first
            print(f"  {name:28s} {decoded:7d} chunks decoded ({decoded / chunk_count:5.2f} "
                  f"per chunk)  {seconds:6.2f} s  {seconds / count * 1e6:7.0f} µs/block")


if __name__ == "__main__":
    main()

"""Read throughput from a BOSS, in the same run: a `BossSource` pipeline against intern's own
``get_cutout(..., parallel=True)`` over the same region.

The BOSS is the project's emulator, serving a synthetic two-channel volume from a process of
its own on 127.0.0.1, so that every client below pays the same server. It keeps the voxels
as blosc-compressed cuboids in memory (``--store memory``) or in a temporary directory
removed at the end (``--store disk``). Each client reads every voxel of both channels once
per measurement:

- intern ``get_cutout(parallel=True)``: one call per channel; intern splits the region into
  512 × 512 × 96 pieces and downloads them with a ``multiprocessing`` pool of one process per
  CPU;
- intern ``get_cutout(parallel=False)``: one call per channel, pieces one after another;
- ndframework: a pipeline with a no-op processor over a `BossSource` (reads only), with
  `ProcessExecutor` and `ThreadExecutor`, blocks from the default `CuboidTiler`.

Printed as MB/s of voxel data (10^6 bytes, uncompressed) and as ratios to intern's parallel
read. Run:  python benchmarks/boss_reads.py [--shape 64,1024,1024] [--repeat 3]
[--store memory|disk]
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import socket
import tempfile
import time

import ndframework as ndf
from _timing import best_of

COLLECTION, EXPERIMENT = "bench", "reads"


def serve(port, token, shape, store, ready):
    """Run the emulator with the volume until killed (in a process of its own); ``store`` is
    None for memory or the directory to keep the voxels in."""
    from ndframework.bossemu import BossEmulator
    from ndframework.synthetic import demo_volume

    volume = demo_volume(shape, cells=max(4, shape[1] // 8), seed=0)
    with BossEmulator(token=token, port=port, store=store) as boss:
        boss.create_volume(COLLECTION, EXPERIMENT, volume)
        ready.set()
        while True:
            time.sleep(3600)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def intern_reads(remote, bounds, parallel):
    (z0, y0, x0), (z1, y1, x1) = bounds.start, bounds.stop
    for name in ("em", "mask"):
        channel = remote.get_channel(name, COLLECTION, EXPERIMENT)
        data = remote.get_cutout(channel, 0, [x0, x1], [y0, y1], [z0, z1], parallel=parallel)
        assert data.shape == bounds.shape


def noop(data):
    return None


def pipeline_reads(source, executor):
    result = ndf.Pipeline(source, noop, executor=executor, load_entrypoints=False).run()
    assert result.ok, result.summary()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,1024,1024", help="volume z,y,x")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--store", choices=("memory", "disk"), default="memory",
                        help="where the emulator keeps the voxels (disk: a temporary directory)")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    temporary = tempfile.TemporaryDirectory(prefix="boss-reads-") if args.store == "disk" else None
    store = None if temporary is None else temporary.name
    token, port = secrets.token_hex(16), free_port()
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    server = context.Process(target=serve, args=(port, token, shape, store, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(300):
            raise SystemExit("the emulator did not start")
        host = f"127.0.0.1:{port}"
        from intern.remote.boss import BossRemote

        remote = BossRemote({"protocol": "http", "host": host, "token": token})
        source = ndf.BossSource(host, token, COLLECTION, EXPERIMENT, ["em", "mask"],
                                protocol="http").validate()
        bounds = source.bounds
        megabytes = bounds.size * (1 + 2) / 1e6
        tiler = source.default_tiler()
        print(f"BOSS reads: {bounds.shape} voxels (z, y, x), em uint8 + mask uint16 = "
              f"{megabytes:,.0f} MB per pass; emulator in its own process")
        where = "memory" if store is None else f"disk, in {store}"
        print(f"emulator store: {where} (blosc-compressed cuboids); best of {args.repeat}; "
              f"{multiprocessing.cpu_count()} CPUs")
        print(f"ndframework blocks: {tiler.count(bounds)} of {tiler.block_shape} (z, y, x)")
        rows = {
            "intern get_cutout(parallel=True)": best_of(
                args.repeat, lambda: intern_reads(remote, bounds, True)),
            "intern get_cutout(parallel=False)": best_of(
                args.repeat, lambda: intern_reads(remote, bounds, False)),
        }
        for executor in (ndf.ProcessExecutor(2), ndf.ThreadExecutor(2), ndf.SerialExecutor()):
            rows[f"ndframework BossSource, {executor.describe()}"] = best_of(
                args.repeat, lambda: pipeline_reads(source, executor))
        reference = rows["intern get_cutout(parallel=True)"]
        print(f"  {'':48s} {'seconds':>8s} {'MB/s':>8s} {'vs intern parallel':>19s}")
        for name, seconds in rows.items():
            print(f"  {name:48s} {seconds:8.2f} {megabytes / seconds:8.1f} "
                  f"{reference / seconds:18.2f}x")
    finally:
        server.kill()
        server.join()
        if temporary is not None:
            temporary.cleanup()


if __name__ == "__main__":
    main()

"""The emulator at connectomics scale: a 100000 x 100000 x 10000 frame (10^14 voxels a channel),
uint8 and uint64 channels, 10 time samples, written in scattered cuboids.

The emulator runs as its command starts it (``python -m ndframework.bossemu``), in a process of
its own whose resident memory is read from /proc. Storage follows spdb: 512 x 512 x 16 cuboids
keyed by Morton index, only the ones written kept (spdb spdb/spatialdb/spatialdb.py,
``write_cuboid``; a missing cuboid reads as zeros, ``cutout``). So memory and disk grow with the
bytes written, never with the frame: a dense channel here would be 100 TB (uint8) or 800 TB.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import numpy as np
import pytest
from bossapi_calls import EmulatorProcess
from intern.remote.boss import BossRemote
from intern.resource.boss.resource import (
    ChannelResource,
    CollectionResource,
    CoordinateFrameResource,
    ExperimentResource,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="resident memory is read from /proc"
)]

TOKEN = "bossemu-scale-test-token-5d2e"
FRAME = (10_000, 100_000, 100_000)  # z, y, x
CUBOID = (16, 512, 512)
MIB = 2**20
CHANNELS = (("em", "image", "uint8"), ("seg", "annotation", "uint64"))


class Emulator(EmulatorProcess):
    """``python -m ndframework.bossemu [--store DIR]`` in a process of its own."""

    def __init__(self, store: Path | None, log: Path):
        where = ["--store", str(store)] if store is not None else []
        super().__init__(*where, token=TOKEN, log=log)
        self.remote = BossRemote({"protocol": "http", "host": self.host, "token": TOKEN})

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def channel(name: str, kind: str, dtype: str) -> ChannelResource:
    return ChannelResource(name, "scale", "big", kind, datatype=dtype)


def scattered_cuboids(count: int, seed: int) -> list[tuple[int, int, int]]:
    """`count` distinct cuboid-aligned corners (z, y, x) spread over the whole frame, the last
    cuboid of each axis (cut short by the frame's edge) among them."""
    rng = np.random.default_rng(seed)
    grid = [-(-n // c) for n, c in zip(FRAME, CUBOID)]
    corners = {tuple(g - 1 for g in grid)}
    while len(corners) < count:
        corners.add(tuple(int(rng.integers(g)) for g in grid))
    return [tuple(i * c for i, c in zip(corner, CUBOID)) for corner in sorted(corners)]


def block(corner, dtype, seed: int) -> np.ndarray:
    """The data written at `corner`: a whole cuboid, or what of it lies inside the frame."""
    shape = tuple(min(c, n - s) for c, n, s in zip(CUBOID, FRAME, corner))
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:  # image noise, about incompressible; no zeros (POST skips zeros)
        return rng.integers(1, 256, size=shape, dtype=np.uint8)
    labels = rng.integers(1, 2**40, size=8, dtype=np.uint64)  # a few large labels, as EM has
    return labels[np.arange(np.prod(shape)).reshape(shape) // 4096 % 8]


def extent(corner, data):
    return [[s, s + n] for s, n in zip(corner, data.shape)][::-1]  # x, y, z for intern


def create_and_write(remote) -> dict:
    """The frame, its uint8 and uint64 channels, and scattered writes to them; returns the data
    written by (channel name, time sample, corner)."""
    remote.create_project(CollectionResource("scale"))
    remote.create_project(CoordinateFrameResource(
        "huge", "", 0, FRAME[2], 0, FRAME[1], 0, FRAME[0], 4, 4, 40, "nanometers"
    ))
    remote.create_project(ExperimentResource(
        "big", "scale", "huge", num_hierarchy_levels=7, num_time_samples=10
    ))
    em = remote.create_project(channel("em", "image", "uint8"))
    seg = remote.create_project(channel("seg", "annotation", "uint64"))
    written = {}
    for i, corner in enumerate(scattered_cuboids(24, seed=1)):
        data = block(corner, np.uint8, seed=i)
        remote.create_cutout(em, 0, *extent(corner, data), data)
        written["em", 0, corner] = data
    for i, corner in enumerate(scattered_cuboids(8, seed=2)):
        t = i % 10
        data = block(corner, np.uint64, seed=i)
        remote.create_cutout(seg, 0, *extent(corner, data), data[None], time_range=[t, t + 1])
        written["seg", t, corner] = data
    return written


def assert_reads_back(remote, written: dict) -> None:
    em, seg = (remote.get_project(channel(n, k, d)) for n, k, d in CHANNELS)
    for (name, t, corner), data in written.items():
        chan = em if name == "em" else seg
        read = remote.get_cutout(chan, 0, *extent(corner, data), time_range=[t, t + 1])
        np.testing.assert_array_equal(read.reshape(data.shape), data, err_msg=str(corner))


def test_in_memory_the_emulator_grows_by_the_compressed_bytes_written(tmp_path):
    """The in-memory store keeps blosc-compressed cuboids, as spdb's cache and S3 do: the noise
    (96 MiB, incompressible) costs about its size, the labels (224 MiB) almost nothing."""
    emulator = Emulator(None, tmp_path / "memory.log")
    try:
        before = emulator.rss_mib()
        written = create_and_write(emulator.remote)
        growth = emulator.rss_mib() - before
        noise = sum(data.nbytes for (name, _, _), data in written.items() if name == "em")
        assert 92 < noise / MIB <= 96
        assert growth < noise / MIB + 100, growth
        assert_reads_back(emulator.remote, written)
    finally:
        emulator.stop()


def test_scattered_writes_to_a_huge_frame_cost_what_they_write_and_survive_a_crash(tmp_path):
    store = tmp_path / "store"
    emulator = Emulator(store, tmp_path / "first.log")
    remote = emulator.remote
    try:
        before = emulator.rss_mib()
        written = create_and_write(remote)
        em, seg = (remote.get_project(channel(n, k, d)) for n, k, d in CHANNELS)
        nbytes = sum(data.nbytes for data in written.values())
        growth = emulator.rss_mib() - before
        stored = sum(path.stat().st_size for path in store.rglob("*.blosc"))
        cuboid_files = len(list(store.rglob("*.blosc")))

        # the cuboids written, and no others, are on disk, compressed
        assert cuboid_files == len(written)
        assert stored < nbytes
        # about 350 MiB went through the emulator; its memory holds none of it for long
        assert nbytes > 300 * MIB
        assert growth < 120, (before, growth, nbytes / MIB)

        # a region across written and unwritten cuboids, off the grid: zeros where none written
        (name, t, corner), data = next((k, v) for k, v in written.items() if k[0] == "em")
        z, y, x = corner
        around = remote.get_cutout(em, 0, [x - 100, x + 612], [y - 7, y + 505], [z + 3, z + 19])
        expected = np.zeros((16, 512, 712), np.uint8)
        expected[:13, 7:, 100:612] = data[3:16, :505, :512]
        np.testing.assert_array_equal(around, expected)
    finally:
        emulator.stop(signal.SIGKILL)  # a crash, not a clean stop

    emulator = Emulator(store, tmp_path / "second.log")
    remote = emulator.remote
    try:
        em, seg = (remote.get_project(channel(n, k, d)) for n, k, d in CHANNELS)
        assert (em.datatype, seg.datatype) == ("uint8", "uint64")
        assert_reads_back(remote, written)
        (name, t, corner), data = next((k, v) for k, v in written.items() if k[0] == "seg")
        other_t = (t + 1) % 10
        read = remote.get_cutout(seg, 0, *extent(corner, data), time_range=[other_t, other_t + 1])
        assert not read.any()  # the other time samples of that cuboid were never written
    finally:
        emulator.stop()

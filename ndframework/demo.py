"""The demo: the main job end to end, the way a BOSS user runs it, checked against numpy.

The local BOSS API emulator starts on a free port of 127.0.0.1 and is loaded with a
synthetic two-channel volume (``em`` uint8 with bright "cells", ``mask`` uint16 labels); a
``neurodata.cfg`` names it, and a `BossSource` reads it through the real intern client in
worker processes. `BrightVoxels` smooths ``em`` over each voxel's 3×3×3 neighbourhood (a halo
of one voxel), thresholds it, writes the binary mask to a local zarr sink, and counts the
bright voxels per block and how many of them lie in labelled cells of ``mask``. Then the
whole output is compared with numpy on the whole volume. No BOSS account or network is
needed. ``source="zarr"`` runs the same job on a local zarr store instead.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import ConfigError
from .executors import Executor
from .geometry import Block, Box
from .pipeline import Pipeline
from .plugins import ProgressBar
from .processor import BlockOutput, BlockProcessor
from .result import RunResult
from .storage import DataSource, ZarrSink, ZarrSource
from .synthetic import demo_volume
from .tiling import RegularTiler

__all__ = ["BrightVoxels", "neighbourhood_mean", "run_demo"]


def neighbourhood_mean(array: np.ndarray) -> np.ndarray:
    """Mean over each voxel's 3×3×3 neighbourhood, counting only voxels inside the array."""
    values = np.pad(array.astype(np.float32), 1)
    ones = np.pad(np.ones(array.shape, np.float32), 1)
    total = np.zeros(array.shape, np.float32)
    count = np.zeros(array.shape, np.float32)
    z, y, x = array.shape
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                window = (slice(dz, dz + z), slice(dy, dy + y), slice(dx, dx + x))
                total += values[window]
                count += ones[window]
    return total / count


class BrightVoxels(BlockProcessor):
    """Marks voxels whose neighbourhood mean of ``em`` exceeds ``threshold``; counts them,
    in all and inside the labelled cells of ``mask``."""

    halo = 1
    channels = ("em", "mask")

    def __init__(self, threshold: float = 150.0) -> None:
        self.threshold = threshold

    def process(self, data: dict[str, np.ndarray], block: Block) -> BlockOutput:
        bright = block.crop(neighbourhood_mean(data["em"]) > self.threshold)
        in_cells = bright & (block.crop(data["mask"]) > 0)
        return BlockOutput({"bright": bright.astype(np.uint8)},
                           value=(int(bright.sum()), int(in_cells.sum())))

    def reduce(self, results: Mapping[str, Any]) -> tuple[int, int]:
        """Bright voxels in all, and inside cells."""
        return (sum(total for total, _ in results.values()),
                sum(inside for _, inside in results.values()))


def run_demo(
    executor: Executor | str,
    *,
    source: str = "boss",
    shape: tuple[int, int, int] = (64, 256, 256),
    block_shape: tuple[int, int, int] = (32, 128, 128),
    workdir: str | Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    plugins: Sequence[Any] = (),
) -> tuple[RunResult, bool]:
    """Run the demo on a BOSS emulator (``source="boss"``) or a zarr store (``"zarr"``);
    return the result and whether the output equals numpy's. ``plugins`` are added to the
    run's (a `ProgressBar` too, with ``progress``)."""
    if source not in ("boss", "zarr"):
        raise ConfigError(f"the demo's source must be 'boss' or 'zarr', got {source!r}", source)
    volume = demo_volume(shape, cells=max(4, shape[1] // 8), seed=1)
    with tempfile.TemporaryDirectory(prefix="ndframework-demo-") as scratch:
        folder = Path(workdir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        echo(f"synthetic volume: {shape} voxels (z, y, x), channels em (uint8), mask (uint16)")
        with contextlib.ExitStack() as stack:
            if source == "boss":
                data_source = _boss_source(stack, volume, folder, echo)
            else:
                data_source = ZarrSource(_write_volume(folder / "volume.zarr", volume,
                                                       block_shape))
                echo(f"zarr store: {data_source.path}")
            extra = [ProgressBar()] if progress else []
            outcome = _run(data_source, volume, executor, block_shape, folder,
                           [*extra, *plugins], echo)
    if workdir is None:
        echo("(the demo's files were in a temporary folder; --workdir DIR keeps them)")
    return outcome


def _boss_source(stack: contextlib.ExitStack, volume: dict[str, np.ndarray], folder: Path,
                 echo: Callable[[str], None]) -> Any:
    """Start the emulator, load ``volume``, write a neurodata.cfg; the source it names."""
    from .boss import BossSource
    from .bossemu import BossEmulator

    boss = stack.enter_context(BossEmulator(token=secrets.token_hex(16)))
    boss.create_volume("demo", "synthetic", volume)
    config = folder / "neurodata.cfg"
    config.touch(mode=0o600)
    config.write_text(
        f"[Default]\nprotocol = {boss.protocol}\nhost = {boss.host}\ntoken = {boss.token}\n\n"
        f"[Parallel]\ncollection = demo\nexperiment = synthetic\nchannels = em, mask\n"
    )
    echo(f"BOSS emulator: {boss.url} (collection demo, experiment synthetic); "
         f"config: {config}")
    return BossSource.from_config(config)


def _run(
    source: DataSource,
    volume: dict[str, np.ndarray],
    executor: Executor | str,
    block_shape: tuple[int, int, int],
    folder: Path,
    plugins: Sequence[Any],
    echo: Callable[[str], None],
) -> tuple[RunResult, bool]:
    output_path = folder / "bright.zarr"
    sink = ZarrSink.create(output_path, {"bright": "uint8"}, source.bounds,
                           chunk_shape=block_shape, overwrite=True)
    pipeline = Pipeline(
        source, BrightVoxels(), executor=executor, sink=sink,
        tiler=RegularTiler(block_shape, origin=source.bounds.start),
        plugins=plugins,
    )
    echo(str(pipeline.plan()))
    result = pipeline.run()
    echo(result.summary())
    expected = neighbourhood_mean(volume["em"]) > BrightVoxels().threshold
    counts = (int(expected.sum()), int((expected & (volume["mask"] > 0)).sum()))
    written = _read_channel(output_path, "bright")
    matches = bool(np.array_equal(written, expected)) and result.reduced == counts
    if result.reduced is not None:
        echo(f"bright voxels: {result.reduced[0]:,} of {expected.size:,}, "
             f"{result.reduced[1]:,} of them in labelled cells; output in {output_path}")
    echo(f"output and counts equal numpy's on the whole volume: {'yes' if matches else 'NO'}")
    return result, matches


def _write_volume(path: Path, volume: dict[str, np.ndarray], chunks: tuple[int, int, int]) -> Path:
    bounds = Box.from_shape(next(iter(volume.values())).shape)
    sink = ZarrSink.create(path, {name: a.dtype for name, a in volume.items()}, bounds,
                           chunk_shape=chunks, overwrite=True)
    sink.write(bounds, volume)
    return path


def _read_channel(path: Path, channel: str) -> np.ndarray:
    source = ZarrSource(path)
    return source.read(source.bounds, [channel])[channel]

"""Nd-Multicore's example pipeline, as ndframework processors: count the objects where two
channels are bright together.

The steps, as Nd-Multicore ran them on each block: z-score each of two channels, multiply
the z-scores into a covariance map (high where both channels are bright), threshold it with
Otsu's method, label its connected components, remove the small ones, and count the rest.

Run block by block, those steps give a different answer from the whole volume: each block
would z-score and threshold against its own statistics, and every object cut by a block edge
would be counted once per block it touches (and perhaps removed as small in each). So the
pipeline here runs three passes over the volume, and its total equals the count on the whole
array, voxel for voxel:

1. `ChannelStatistics` folds every block's voxel count, sum, sum of squares, minimum and
   maximum into each channel's global mean and standard deviation (exact integer sums for
   uint8 and uint16 channels, as the BOSS serves them).
2. `CovarianceHistogram` z-scores with those global statistics, and folds the histogram of
   the covariance map over a fixed range (the products of the channels' extreme z-scores,
   so every value falls inside); `otsu_threshold` picks the global threshold from it.
3. `CountObjects` reads each block with a halo, thresholds, labels with `scipy.ndimage`, and
   counts an object only in the block that owns its *anchor*, its first voxel in ZYX order,
   measuring its size on the halo-extended block.

The assumption: **no object is larger than the halo**: each spans at most ``halo`` voxels
along each axis. Then an object that reaches into a block's owned box lies wholly inside the
block's read box, so its size is exact and only the block owning its anchor counts it. A
block where an object reaching into its owned box touches the edge of the read box where the
volume goes on (so the object may go on beyond it) fails with `ObjectTooLarge`, naming the
object and the halo: the run then reports that block as failed instead of a wrong count.
Rerun with a larger ``--halo``.

Run it on a synthetic volume in a local BOSS emulator (no account or network needed; the
output ends with the block-by-block total beside the whole-volume count, and the exit status
is 0 only when they agree)::

    python examples/ndmulticore_pipeline.py
    python examples/ndmulticore_pipeline.py --shape 32,256,256 --block-shape 16,64,64 \\
        --executor processes --workers 4

or on a BOSS volume that a ``neurodata.cfg`` names (the first two channels it lists, or
``--channels``)::

    python examples/ndmulticore_pipeline.py --config neurodata.cfg --channels synapsin,psd95

It needs scipy (``pip install scipy``) beside ndframework, and ``blob_volume.py`` (the
synthetic volume) beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import attrs
import numpy as np
import scipy.ndimage as ndi

import ndframework as ndf
from blob_volume import CHANNELS, blob_volume

__all__ = [
    "ChannelStats", "ObjectCount", "ObjectTooLarge", "PipelineReport",
    "ChannelStatistics", "CovarianceHistogram", "CountObjects",
    "zscore", "covariance_map", "covariance_range", "otsu_threshold",
    "run_pipeline", "whole_volume_count", "main",
]


# -- values ---------------------------------------------------------------------------------


@attrs.frozen
class ChannelStats:
    """One channel's statistics over the whole region."""

    voxels: int
    """Voxels counted."""
    mean: float
    """Mean intensity."""
    std: float
    """Standard deviation (of the population, as ``numpy.std``)."""
    minimum: float
    """Smallest intensity."""
    maximum: float
    """Largest intensity."""


@attrs.frozen
class ObjectCount:
    """What the counting pass found."""

    objects: int
    """Objects of at least ``min_size`` voxels."""
    voxels: int
    """Voxels in those objects."""
    removed: int
    """Objects removed for being smaller than ``min_size`` voxels."""


class ObjectTooLarge(ValueError):
    """An object reaching into a block's owned box may go on beyond the block's read box:
    the halo is smaller than the object, and the block's count could be wrong."""


# -- the steps, on arrays -------------------------------------------------------------------


def zscore(array: np.ndarray, stats: ChannelStats) -> np.ndarray:
    """``array`` in standard deviations from the mean, as float64.

    The same arithmetic on every voxel, whatever block it is read in, so a voxel's z-score
    does not depend on the blocking.

    >>> zscore(np.array([1, 3], np.uint8), ChannelStats(2, 2.0, 1.0, 1.0, 3.0))
    array([-1.,  1.])
    """
    return (array.astype(np.float64) - stats.mean) / stats.std


def covariance_map(data: Mapping[str, np.ndarray], channels: Sequence[str],
                   stats: Mapping[str, ChannelStats]) -> np.ndarray:
    """The product of the two channels' z-scores: large where both are bright together."""
    first, second = channels
    return zscore(data[first], stats[first]) * zscore(data[second], stats[second])


def covariance_range(first: ChannelStats, second: ChannelStats) -> tuple[float, float]:
    """The smallest and largest value the covariance map of two channels can take: the
    products of their extreme z-scores, computed as `zscore` computes every voxel's.

    >>> covariance_range(ChannelStats(2, 2.0, 1.0, 1.0, 3.0), ChannelStats(2, 0.0, 2.0, -2.0, 4.0))
    (-2.0, 2.0)
    """
    first_z = [(np.float64(value) - first.mean) / first.std
               for value in (first.minimum, first.maximum)]
    second_z = [(np.float64(value) - second.mean) / second.std
                for value in (second.minimum, second.maximum)]
    products = [a * b for a in first_z for b in second_z]
    return float(min(products)), float(max(products))


def otsu_threshold(counts: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold of a histogram: the bin edge that splits it into the two classes of
    largest between-class variance. Voxels at or above it are foreground (``value >=
    threshold`` picks exactly the bins above the split, as ``numpy.histogram`` bins).

    >>> counts, edges = np.histogram([0, 0, 1, 1, 1, 9, 10, 10], bins=10, range=(0, 10))
    >>> otsu_threshold(counts, edges)
    2.0
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1]
    above = counts.sum() - below
    sum_below = np.cumsum(counts * centres)[:-1]
    sum_above = (counts * centres).sum() - sum_below
    with np.errstate(divide="ignore", invalid="ignore"):
        between = below * above * (sum_below / below - sum_above / above) ** 2
    between[(below == 0) | (above == 0)] = -1.0  # an empty class splits nothing
    if between.max() < 0:
        raise ValueError("the histogram has all its values in one bin: there is nothing to "
                         "threshold")
    return float(edges[int(np.argmax(between)) + 1])


def _moments(array: np.ndarray) -> tuple[Any, ...]:
    """Voxels, sum, sum of squares, minimum and maximum: exact Python integers for 8- and
    16-bit integer data (what the BOSS serves), so the statistics do not depend on the
    blocking; float64 sums otherwise, accurate but rounded block by block."""
    if array.dtype.kind in "ui" and array.dtype.itemsize <= 2:
        wide = array.astype(np.int64)
        return (array.size, int(wide.sum()), int((wide * wide).sum()),
                int(array.min()), int(array.max()))
    wide = array.astype(np.float64)
    return (array.size, float(wide.sum()), float((wide * wide).sum()),
            float(array.min()), float(array.max()))


def _stats(voxels: int, total: Any, squares: Any, minimum: Any, maximum: Any) -> ChannelStats:
    # integers divide exactly here: (n * squares - total**2) / n**2 is rounded once
    variance = (voxels * squares - total * total) / (voxels * voxels)
    return ChannelStats(voxels, total / voxels, math.sqrt(max(variance, 0.0)),
                        float(minimum), float(maximum))


# -- pass 1: each channel's mean and standard deviation --------------------------------------


class ChannelStatistics(ndf.BlockProcessor):
    """Pass 1: each channel's voxels, sum, sum of squares, minimum and maximum per block,
    folded into `ChannelStats` for the whole region."""

    initial: dict[str, tuple[Any, ...]] = {}

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = tuple(channels)  # type: ignore[misc]

    def process(self, data: dict[str, np.ndarray], block: ndf.Block) -> dict[str, tuple]:
        return {name: _moments(data[name]) for name in self.channels}

    def fold(self, accumulator: dict[str, tuple], key: str,
             value: dict[str, tuple]) -> dict[str, tuple]:
        for name, (voxels, total, squares, minimum, maximum) in value.items():
            if name not in accumulator:
                accumulator[name] = (voxels, total, squares, minimum, maximum)
                continue
            v, t, s, lo, hi = accumulator[name]
            accumulator[name] = (v + voxels, t + total, s + squares,
                                 min(lo, minimum), max(hi, maximum))
        return accumulator

    @staticmethod
    def finish(folded: Mapping[str, tuple]) -> dict[str, ChannelStats]:
        """The run's folded value as `ChannelStats` per channel."""
        stats = {name: _stats(*moments) for name, moments in folded.items()}
        for name, channel in stats.items():
            if channel.std == 0:
                raise ValueError(f"channel {name!r} holds the one value {channel.mean:g} "
                                 f"everywhere: its z-scores are undefined")
        return stats


# -- pass 2: the histogram of the covariance map, for Otsu's threshold -----------------------


class CovarianceHistogram(ndf.BlockProcessor):
    """Pass 2: the histogram of each block's covariance map, over the range the map can
    take (`covariance_range`), summed over the blocks. ``edges`` are its bin edges."""

    initial = None

    def __init__(self, channels: Sequence[str], stats: Mapping[str, ChannelStats],
                 bins: int = 256) -> None:
        self.channels = tuple(channels)  # type: ignore[misc]
        self.stats = dict(stats)
        self.bins = bins
        self.range = covariance_range(*(self.stats[name] for name in self.channels))
        self.edges = np.histogram_bin_edges(np.empty(0), bins, range=self.range)

    def process(self, data: dict[str, np.ndarray], block: ndf.Block) -> np.ndarray:
        covariance = covariance_map(data, self.channels, self.stats)
        counts, _ = np.histogram(covariance, self.bins, range=self.range)
        return counts

    def fold(self, accumulator: np.ndarray | None, key: str, value: np.ndarray) -> np.ndarray:
        return value.copy() if accumulator is None else accumulator + value


# -- pass 3: objects, each counted in the one block that owns its anchor ---------------------


class CountObjects(ndf.BlockProcessor):
    """Pass 3: threshold the covariance map, label its connected components, and count,
    of the objects whose anchor (first voxel in ZYX order) lies in the block's owned box,
    those of at least ``min_size`` voxels.

    Exact as long as every object spans at most ``halo`` voxels along each axis; a block
    where an object reaching into its owned box touches the read box's edge inside
    ``source_bounds`` fails with `ObjectTooLarge` (see the module's docstring).

    Parameters
    ----------
    channels, stats:
        The two channels, and their whole-region statistics from pass 1.
    threshold:
        The covariance map's foreground threshold (``value >= threshold``), from pass 2.
    source_bounds:
        The source's bounds: where the volume ends, so that an object touching the read
        box's edge there is known to end there.
    halo:
        Context read around each block (z, y, x): at least as many voxels as any object
        spans along each axis.
    min_size:
        Objects of fewer voxels are removed.
    connectivity:
        Which neighbours join voxels into one object: 1 faces, 2 faces and edges, 3 faces,
        edges and corners (``scipy.ndimage.generate_binary_structure``'s meaning).
    """

    initial = (0, 0, 0)

    def __init__(self, channels: Sequence[str], stats: Mapping[str, ChannelStats],
                 threshold: float, *, source_bounds: ndf.Box,
                 halo: int | Sequence[int] = (4, 8, 8), min_size: int = 10,
                 connectivity: int = 3) -> None:
        if connectivity not in (1, 2, 3):
            raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity!r}")
        self.channels = tuple(channels)  # type: ignore[misc]
        self.stats = dict(stats)
        self.threshold = float(threshold)
        self.source_bounds = source_bounds
        self.halo = ndf.Halo.of(halo)  # type: ignore[misc]
        self.min_size = int(min_size)
        self.connectivity = connectivity

    def process(self, data: dict[str, np.ndarray], block: ndf.Block) -> tuple[int, int, int]:
        foreground = covariance_map(data, self.channels, self.stats) >= self.threshold
        structure = ndi.generate_binary_structure(3, self.connectivity)
        labels, count = ndi.label(foreground, structure=structure)
        if count == 0:
            return (0, 0, 0)
        self._check_halo(labels, block)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        flat = np.flatnonzero(labels)
        ids, first = np.unique(labels.ravel()[flat], return_index=True)
        anchors = np.unravel_index(flat[first], labels.shape)
        owned = block.box.relative_to(block.read_box)
        anchored = np.ones(ids.size, dtype=bool)
        for axis in range(3):
            anchored &= (anchors[axis] >= owned.start[axis]) & (anchors[axis] < owned.stop[axis])
        mine = sizes[ids[anchored]]
        kept = mine >= self.min_size
        return (int(kept.sum()), int(mine[kept].sum()), int((~kept).sum()))

    def _check_halo(self, labels: np.ndarray, block: ndf.Block) -> None:
        """Fail when an object reaching into the owned box touches a face of the read box
        beyond which the source goes on."""
        inside = np.unique(block.crop(labels))
        read, bounds = block.read_box, self.source_bounds
        for axis in range(3):
            for side, open_side in ((0, read.start[axis] > bounds.start[axis]),
                                    (-1, read.stop[axis] < bounds.stop[axis])):
                if not open_side:
                    continue
                face = np.take(labels, side, axis=axis)
                cut = np.intersect1d(np.unique(face), inside)
                cut = cut[cut != 0]
                if cut.size:
                    where = np.argwhere(labels == cut[0])[0] + np.asarray(read.start)
                    raise ObjectTooLarge(
                        f"block {block.key}: an object (one voxel at z, y, x = "
                        f"{tuple(int(v) for v in where)}) reaches the edge of the block's "
                        f"read box {read} where the volume goes on, so it may be larger than "
                        f"the halo {self.halo.before} (z, y, x) and cannot be counted exactly "
                        f"here; rerun with a halo at least as large as the largest object"
                    )

    def fold(self, accumulator: tuple[int, int, int], key: str,
             value: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(a + b for a, b in zip(accumulator, value))  # type: ignore[return-value]


# -- the three passes -----------------------------------------------------------------------


@attrs.frozen
class PipelineReport:
    """What the three passes found, and how each run went."""

    stats: Mapping[str, ChannelStats] | None
    """Each channel's statistics (pass 1), or None if the pass failed."""
    threshold: float | None
    """The covariance map's Otsu threshold (pass 2), or None."""
    count: ObjectCount | None
    """The objects counted (pass 3), or None."""
    results: tuple[ndf.RunResult, ...]
    """The runs, one per pass that ran."""

    @property
    def ok(self) -> bool:
        """True when all three passes ran every block."""
        return self.count is not None and all(result.ok for result in self.results)


def run_pipeline(
    source: ndf.DataSource,
    channels: Sequence[str],
    *,
    tiler: ndf.Tiler,
    executor: ndf.Executor | str | None = None,
    halo: int | Sequence[int] = (4, 8, 8),
    min_size: int = 10,
    connectivity: int = 3,
    bins: int = 256,
    echo: Callable[[str], None] = print,
) -> PipelineReport:
    """Run the three passes over ``source`` and report; a pass with failed blocks ends it.

    ``executor`` is the pipelines' (default: `ndf.ProcessExecutor`); ``echo`` is given each
    pass's summary and findings, line by line.

    >>> volume = blob_volume((8, 32, 32), seed=3)
    >>> report = run_pipeline(ndf.InMemorySource(volume), CHANNELS, executor="serial",
    ...                       tiler=ndf.RegularTiler((8, 16, 16)), echo=lambda line: None)
    >>> report.count == whole_volume_count(volume, CHANNELS)
    True
    """
    channels = tuple(channels)
    if len(channels) != 2:
        raise ValueError(f"the covariance map needs two channels, got {channels!r}")
    results: list[ndf.RunResult] = []

    def run(step: str, processor: ndf.BlockProcessor) -> ndf.RunResult | None:
        echo(f"-- {step}")
        result = ndf.Pipeline(source, processor, tiler=tiler, executor=executor).run()
        results.append(result)
        echo(result.summary())
        return result if result.ok else None

    moments = run("pass 1 of 3: each channel's mean and standard deviation",
                  ChannelStatistics(channels))
    if moments is None:
        return PipelineReport(None, None, None, tuple(results))
    stats = ChannelStatistics.finish(moments.reduced)
    for name in channels:
        channel = stats[name]
        echo(f"{name}: mean {channel.mean:.3f}, std {channel.std:.3f}, "
             f"range {channel.minimum:g} to {channel.maximum:g}")

    histogram = CovarianceHistogram(channels, stats, bins)
    covariance = run("pass 2 of 3: the covariance map's histogram, for Otsu's threshold",
                     histogram)
    if covariance is None:
        return PipelineReport(stats, None, None, tuple(results))
    threshold = otsu_threshold(covariance.reduced, histogram.edges)
    above = int(covariance.reduced[np.searchsorted(histogram.edges, threshold) :].sum())
    echo(f"covariance map from {histogram.range[0]:.3f} to {histogram.range[1]:.3f} in {bins} "
         f"bins; Otsu's threshold {threshold:.4f}: {above:,} voxels at or above it")

    counter = CountObjects(channels, stats, threshold, source_bounds=source.bounds, halo=halo,
                           min_size=min_size, connectivity=connectivity)
    counted = run(f"pass 3 of 3: objects, counted in the block that owns their first voxel "
                  f"(halo {counter.halo.before}, z, y, x)", counter)
    if counted is None:
        return PipelineReport(stats, threshold, None, tuple(results))
    count = ObjectCount(*counted.reduced)
    echo(f"objects: {count.objects:,} of at least {min_size} voxels ({count.voxels:,} voxels "
         f"in all); {count.removed:,} smaller ones removed")
    return PipelineReport(stats, threshold, count, tuple(results))


# -- the count on the whole array ----------------------------------------------------------


def whole_volume_count(volume: Mapping[str, np.ndarray], channels: Sequence[str], *,
                       bins: int = 256, min_size: int = 10,
                       connectivity: int = 3) -> ObjectCount:
    """The same steps on the whole arrays at once, with numpy and ``scipy.ndimage``: what
    the block-by-block passes must equal."""
    first, second = (volume[name].astype(np.float64) for name in channels)
    first_z = (first - first.mean()) / first.std()
    second_z = (second - second.mean()) / second.std()
    covariance = first_z * second_z
    extremes = [a * b for a in (first_z.min(), first_z.max())
                for b in (second_z.min(), second_z.max())]
    counts, edges = np.histogram(covariance, bins, range=(min(extremes), max(extremes)))
    foreground = covariance >= otsu_threshold(counts, edges)
    labels, _ = ndi.label(foreground, ndi.generate_binary_structure(3, connectivity))
    sizes = np.bincount(labels.ravel())[1:]
    kept = sizes >= min_size
    return ObjectCount(int(kept.sum()), int(sizes[kept].sum()), int((~kept).sum()))


# -- running it -----------------------------------------------------------------------------


def _emulated_boss(stack: contextlib.ExitStack, volume: Mapping[str, np.ndarray],
                   folder: Path, echo: Callable[[str], None]) -> ndf.DataSource:
    """Start the BOSS emulator on 127.0.0.1, load ``volume``, write a ``neurodata.cfg``
    naming it; the source it describes."""
    from ndframework.bossemu import BossEmulator

    boss = stack.enter_context(BossEmulator(token=secrets.token_hex(16)))
    boss.create_volume("examples", "blobs", volume)
    config = folder / "neurodata.cfg"
    config.touch(mode=0o600)  # it holds the token
    config.write_text(
        f"[Default]\nprotocol = {boss.protocol}\nhost = {boss.host}\ntoken = {boss.token}\n\n"
        f"[Parallel]\ncollection = examples\nexperiment = blobs\n"
        f"channels = {', '.join(volume)}\n"
    )
    echo(f"BOSS emulator at {boss.url}: collection examples, experiment blobs; config "
         f"{config}")
    return ndf.BossSource.from_config(config)


def _triple(text: str) -> tuple[int, int, int]:
    values = tuple(int(part) for part in text.split(","))
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected z,y,x or one number, got {text!r}")
    return values  # type: ignore[return-value]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Count the objects where two channels are bright together, block by "
                    "block, and check the total against the whole volume.")
    parser.add_argument("--config", metavar="FILE",
                        help="a neurodata.cfg naming a BOSS volume (default: a synthetic "
                             "volume in a local BOSS emulator)")
    parser.add_argument("--channels", help="the two channels, a,b (default: the config's "
                                           "first two)")
    parser.add_argument("--shape", type=_triple,
                        help="the synthetic volume's shape z,y,x (default: 32,256,256)")
    parser.add_argument("--seed", type=int, help="the synthetic volume's seed (default: 0)")
    parser.add_argument("--block-shape", type=_triple, default=(16, 128, 128),
                        help="blocks z,y,x (default: 16,128,128)")
    parser.add_argument("--halo", type=_triple, default=(4, 8, 8),
                        help="halo z,y,x, at least as large as any object (default: 4,8,8)")
    parser.add_argument("--min-size", type=int, default=10,
                        help="objects of fewer voxels are removed (default: 10)")
    parser.add_argument("--connectivity", type=int, choices=(1, 2, 3), default=3,
                        help="neighbours that join voxels: 1 faces, 2 and edges, 3 and "
                             "corners (default: 3)")
    parser.add_argument("--bins", type=int, default=256,
                        help="histogram bins for Otsu's threshold (default: 256)")
    parser.add_argument("--executor", default="processes", choices=ndf.executor_names(),
                        help="how blocks run (default: processes)")
    parser.add_argument("--workers", type=int, default=2, help="workers (default: 2)")
    return parser


def main(argv: Sequence[str] | None = None, echo: Callable[[str], None] = print) -> int:
    """Run the example; 0 when every block is done (and, on the synthetic volume, the total
    equals the whole-volume count), 1 otherwise, 2 for a config, channel or shape that the
    BOSS or the pipeline refuses."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.config and (args.shape or args.seed is not None):
        parser.error("--shape and --seed describe the synthetic volume; with --config, the "
                     "config's ranges give the region")
    shape = args.shape or (32, 256, 256)
    seed = args.seed or 0
    chosen = tuple(name.strip() for name in args.channels.split(",")) if args.channels else None
    if chosen is not None and len(chosen) != 2:
        parser.error(f"--channels: the covariance map needs two channels, got {chosen}")
    options = {} if args.executor == "serial" else {"workers": args.workers}
    executor = ndf.get_executor(args.executor, **options)
    with tempfile.TemporaryDirectory(prefix="ndmulticore-example-") as scratch, \
            contextlib.ExitStack() as stack:
        volume = None
        try:
            if args.config:
                source = ndf.BossSource.from_config(args.config)
            else:
                volume = blob_volume(shape, seed)
                echo(f"synthetic volume: {shape} voxels (z, y, x), channels "
                     f"{', '.join(volume)} (uint8), seed {seed}")
                source = _emulated_boss(stack, volume, Path(scratch), echo)
            channels = chosen or tuple(source.channels[:2])
            if len(channels) != 2:
                raise ndf.ConfigError(f"the covariance map needs two channels; the volume "
                                      f"has {channels}")
            tiler = ndf.RegularTiler(args.block_shape, origin=source.bounds.start)
            echo(f"region {source.bounds} (z, y, x), {tiler.count(source.bounds)} blocks of "
                 f"{args.block_shape}, channels {', '.join(channels)}, {executor.describe()}")
            report = run_pipeline(source, channels, tiler=tiler, executor=executor,
                                  halo=args.halo, min_size=args.min_size,
                                  connectivity=args.connectivity, bins=args.bins, echo=echo)
        except ndf.ConfigError as error:  # a config, channel or shape the run refuses
            echo(f"error: {error}")
            return 2
    if report.count is None:
        echo("the pipeline did not finish: blocks failed (see above)")
        return 1
    echo(f"total, block by block: {report.count.objects} objects")
    if volume is None:
        return 0
    expected = whole_volume_count(volume, channels, bins=args.bins, min_size=args.min_size,
                                  connectivity=args.connectivity)
    agree = expected == report.count
    echo(f"whole volume, scipy.ndimage: {expected.objects} objects ({expected.voxels:,} "
         f"voxels; {expected.removed:,} removed); agree: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

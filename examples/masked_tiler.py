"""A tiler that skips the blocks a coarse mask marks empty: sparse data, processed where it is.

Neurites fill a few percent of an EM volume, and most blocks of a regular tiling hold
nothing worth processing. A mask at a coarse resolution says where there is something: a
segmentation or tissue mask read from one of the BOSS's lower resolution levels, or a
downsampled zarr array, small enough to hold in memory whole. `MaskedTiler` wraps any
tiler and yields only its blocks whose owned box holds a voxel the mask marks; it keeps
their order, indices, keys and halo. The blocks it skips are never read, processed or
written (a sink keeps what it held there), nor counted in the run.

It is a plain subclass of ``ndf.Tiler``: ``blocks``, ``count``, ``halo`` and ``with_halo``,
nothing else, and works in every part of a run (a processor's halo, the sink alignment
check, ``plan()``, the journal and resuming).

Use it::

    import ndframework as ndf
    from masked_tiler import MaskedTiler

    # the segmentation at resolution 3 of an anisotropic hierarchy: x and y an eighth
    coarse = ndf.BossSource("api.bossdb.io", token, "lab", "brain", "neurites", resolution=3)
    tiler = MaskedTiler.from_source(ndf.CuboidTiler(), coarse, "neurites", scale=(1, 8, 8))
    ndf.Pipeline(source, processor, tiler=tiler, sink=sink).run()

Run this file to see it on a small synthetic volume (a few neurites, their mask at an
eighth of the resolution in y and x)::

    python examples/masked_tiler.py [--seed 0] [--executor threads]
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterator, Sequence

import numpy as np

import ndframework as ndf

__all__ = ["MaskedTiler", "Foreground", "sparse_volume", "downsample", "main"]


class MaskedTiler(ndf.Tiler):
    """The blocks of ``tiler`` whose owned box holds a voxel that ``mask`` marks.

    Parameters
    ----------
    tiler:
        Any tiler; its blocks are yielded in its order, with its indices and halo.
    mask:
        A ZYX array at a coarse resolution; a voxel other than 0 marks a region holding
        data. Beyond the mask is empty.
    scale:
        Full-resolution voxels per mask voxel, (z, y, x): the mask voxel ``(i, j, k)``
        stands for the box of shape ``scale`` starting at ``origin + (i, j, k) * scale``.
    origin:
        Where the mask voxel ``(0, 0, 0)`` starts, in full-resolution voxels (z, y, x).

    Examples
    --------
    >>> mask = np.zeros((1, 2, 2), bool)
    >>> mask[0, 1, 0] = True            # the region y 8..16, x 0..8
    >>> tiler = MaskedTiler(ndf.RegularTiler((4, 4, 4)), mask, scale=(4, 8, 8))
    >>> bounds = ndf.Box((0, 0, 0), (4, 16, 16))
    >>> [block.key for block in tiler.blocks(bounds)], tiler.count(bounds)
    (['0_8_0', '0_8_4', '0_12_0', '0_12_4'], 4)
    """

    def __init__(self, tiler: ndf.Tiler, mask: np.ndarray, scale: Sequence[int] = (1, 1, 1),
                 origin: Sequence[int] = (0, 0, 0)) -> None:
        mask = np.asarray(mask)
        if mask.ndim != 3:
            raise ValueError(f"mask must be a ZYX array, got one of shape {mask.shape}")
        if len(scale) != 3 or min(scale) < 1:
            raise ValueError(f"scale must be three positive integers (z, y, x), got {scale!r}")
        self.tiler = tiler
        self.mask = mask != 0
        self.scale = tuple(int(step) for step in scale)
        self.origin = tuple(int(start) for start in origin)

    @classmethod
    def from_source(cls, tiler: ndf.Tiler, source: ndf.DataSource, channel: str,
                    scale: Sequence[int]) -> "MaskedTiler":
        """The mask ``channel`` of ``source``, a coarse level of the volume read whole,
        whose voxel at ``p`` stands for the full-resolution box at ``p * scale``."""
        mask = source.read(source.bounds, [channel])[channel]
        origin = [start * step for start, step in zip(source.bounds.start, scale)]
        return cls(tiler, mask, scale, origin)

    @property
    def halo(self) -> ndf.Halo:
        return self.tiler.halo

    def with_halo(self, halo: ndf.Halo) -> "MaskedTiler":
        return MaskedTiler(self.tiler.with_halo(halo), self.mask, self.scale, self.origin)

    def blocks(self, bounds: ndf.Box, *, within: ndf.Box | None = None) -> Iterator[ndf.Block]:
        return (block for block in self.tiler.blocks(bounds, within=within)
                if self.marks(block.box))

    def count(self, bounds: ndf.Box) -> int:
        return sum(1 for _ in self.blocks(bounds))

    def marks(self, box: ndf.Box) -> bool:
        """True when the mask marks a voxel of ``box`` (in full-resolution voxels)."""
        if box.empty:
            return False
        region = []
        for start, stop, origin, step, size in zip(box.start, box.stop, self.origin,
                                                   self.scale, self.mask.shape):
            low = max((start - origin) // step, 0)
            high = min(-(-(stop - origin) // step), size)  # the mask voxel holding stop - 1, + 1
            if low >= high:
                return False
            region.append(slice(low, high))
        return bool(self.mask[tuple(region)].any())


class Foreground(ndf.BlockProcessor):
    """Marks the voxels brighter than ``threshold`` in the sink's ``foreground`` channel;
    a block's value is how many it marked."""

    channels = ("em",)
    outputs = {"foreground": "uint8"}

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    def process(self, data, block):  # type: ignore[no-untyped-def]
        bright = data["em"] > self.threshold
        return ndf.BlockOutput({"foreground": bright.astype(np.uint8)}, value=int(bright.sum()))

    def reduce(self, results):  # type: ignore[no-untyped-def]
        return sum(results.values())


def sparse_volume(shape: Sequence[int] = (16, 256, 256), neurites: int = 3,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """A dark EM channel ``em`` (uint8) crossed by a few bright neurites (tubes of radius 2
    along straight lines from one side of the volume to the other, in y or in x), and
    their labels ``neurites`` (uint8, 1 on a neurite). The same arguments give the same
    arrays.

    >>> volume = sparse_volume((4, 32, 32), neurites=1)
    >>> volume["em"].shape, int(volume["em"][volume["neurites"] == 0].max()) < 100
    ((4, 32, 32), True)
    """
    rng = np.random.default_rng(seed)
    points = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    labels = np.zeros(len(points), np.uint8)
    for _ in range(neurites):
        across = int(rng.integers(1, 3))  # the axis it crosses: y or x
        start, stop = rng.uniform(0, shape), rng.uniform(0, shape)
        start[across], stop[across] = 0, shape[across] - 1
        direction = stop - start
        along = np.clip((points - start) @ direction / (direction @ direction), 0, 1)
        distance = np.linalg.norm(points - start - along[:, None] * direction, axis=1)
        labels[distance <= 2] = 1
    labels = labels.reshape(shape)
    em = rng.integers(10, 40, shape) + 150 * labels
    return {"em": em.astype(np.uint8), "neurites": labels}


def downsample(labels: np.ndarray, scale: Sequence[int]) -> np.ndarray:
    """``labels`` at a coarser resolution: each voxel the largest of the ``scale`` block
    it stands for, as a mask keeps anything marked. The shape must divide by ``scale``."""
    (z, y, x), (sz, sy, sx) = labels.shape, scale
    return labels.reshape(z // sz, sz, y // sy, sy, x // sx, sx).max(axis=(1, 3, 5))


def main(argv: Sequence[str] | None = None) -> int:
    """Mark the bright voxels of a sparse volume over the blocks its coarse mask marks,
    and compare them with the whole volume's."""
    parser = argparse.ArgumentParser(description="Process the blocks a coarse mask marks.")
    parser.add_argument("--seed", type=int, default=0, help="of the synthetic volume")
    parser.add_argument("--executor", default="threads", choices=("serial", "threads"),
                        help="one that shares this process's memory, for the in-memory sink")
    args = parser.parse_args(argv)

    volume = sparse_volume(seed=args.seed)
    source = ndf.InMemorySource({"em": volume["em"]})
    scale = (1, 8, 8)
    coarse = ndf.InMemorySource({"neurites": downsample(volume["neurites"], scale)})
    regular = ndf.RegularTiler((8, 32, 32))
    tiler = MaskedTiler.from_source(regular, coarse, "neurites", scale)
    sink = ndf.InMemorySink.zeros({"foreground": "uint8"}, source.bounds)
    result = ndf.Pipeline(source, Foreground(100), tiler=tiler, sink=sink,
                          executor=args.executor).run()

    every, done = regular.count(source.bounds), len(result.done)
    expected = volume["em"] > 100
    agree = result.ok and np.array_equal(sink.arrays["foreground"], expected) \
        and result.reduced == int(expected.sum())
    print(f"volume {source.bounds.shape} (z, y, x), neurites in "
          f"{volume['neurites'].mean():.1%} of its voxels; mask {tiler.mask.shape} marked "
          f"in {tiler.mask.mean():.1%}")
    print(f"blocks: {done} of {every} processed ({done / every:.0%}), "
          f"{every - done} skipped as empty")
    print(f"foreground voxels: {result.reduced}; the whole volume's: {int(expected.sum())}; "
          f"the same voxels: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

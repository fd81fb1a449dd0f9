"""A synthetic two-channel volume for the pipeline example: small bright blobs, some in
both channels, over a noisy background. Pure numpy."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["CHANNELS", "blob_volume"]

CHANNELS = ("synapsin", "psd95")
"""The channels: two markers whose bright spots coincide."""


def blob_volume(shape: Sequence[int] = (32, 256, 256), seed: int = 0,
                sites: int | None = None) -> dict[str, np.ndarray]:
    """Two uint8 channels, ``synapsin`` and ``psd95``, ZYX, with small bright blobs.

    Each of ``sites`` random places (default: one per 4096 voxels), at least one voxel
    apart, holds a blob in both channels (the second one voxel further along x, as a pre-
    and a postsynaptic marker sit side by side), a blob in one channel only, a single bright
    voxel in both (noise that ``min_size`` removes), or nothing; over a noisy background
    that brightens along x. Blobs are ellipsoids 3 voxels high and 1 to 3 voxels in radius,
    so every object of the covariance map spans at most 3 voxels in z and 8 in y and x: no
    more than the default halo (4, 8, 8). Sites fall anywhere, so blocks cut through
    objects. The same arguments give the same arrays.

    >>> volume = blob_volume((8, 32, 32))
    >>> sorted(volume), volume["psd95"].dtype, volume["psd95"].shape
    (['psd95', 'synapsin'], dtype('uint8'), (8, 32, 32))
    """
    shape = tuple(int(n) for n in shape)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 12, shape[2], dtype=np.float64)[None, None, :]
    images = {name: level + ramp + rng.normal(0, 6, shape)
              for name, level in zip(CHANNELS, (30.0, 40.0))}
    wanted = max(1, math.prod(shape) // 4096) if sites is None else sites
    # a blob reaches 1 voxel along z, 3 along y, 3 back and 4 on along x (the shifted
    # channel): centres this far apart along some axis leave a gap of a voxel between them
    apart = np.array([4, 8, 9])
    centres = np.empty((0, 3), dtype=np.int64)
    for _ in range(20 * wanted):
        if len(centres) == wanted:
            break
        centre = rng.integers(0, shape)
        if not np.any(np.all(np.abs(centres - centre) < apart, axis=1)):
            centres = np.vstack([centres, centre])
    for centre in centres:
        kind = rng.choice(["both", "synapsin", "psd95", "speck", "none"],
                          p=[0.55, 0.12, 0.12, 0.11, 0.10])
        radius = int(rng.integers(1, 4))
        if kind == "speck":
            for image in images.values():
                image[tuple(centre)] = rng.uniform(180, 230)
            continue
        for offset, name in enumerate(CHANNELS):
            if kind in ("both", name):
                _paint(images[name], centre + (0, 0, offset), radius, rng.uniform(150, 230))
    return {name: np.clip(np.rint(image), 0, 255).astype(np.uint8)
            for name, image in images.items()}


def _paint(image: np.ndarray, centre: np.ndarray, radius: int, brightness: float) -> None:
    """Set an ellipsoid of semi-axes 1.5 (z) and ``radius`` (y, x) at ``centre`` to
    ``brightness``, clipped to ``image``."""
    lo = [max(0, c - r) for c, r in zip(centre, (1, radius, radius))]
    hi = [min(n, c + r + 1) for c, r, n in zip(centre, (1, radius, radius), image.shape)]
    if any(a >= b for a, b in zip(lo, hi)):
        return
    z, y, x = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    inside = ((z - centre[0]) ** 2 / 1.5 ** 2
              + ((y - centre[1]) ** 2 + (x - centre[2]) ** 2) / radius ** 2) <= 1
    image[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside] = brightness

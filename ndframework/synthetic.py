"""Synthetic volumes for demos, tests and benchmarks: pure numpy, no I/O."""

from __future__ import annotations

import numpy as np

from .geometry import as_triple

__all__ = ["demo_volume"]


def demo_volume(
    shape: tuple[int, int, int] = (100, 300, 300), cells: int = 40, seed: int = 0
) -> dict[str, np.ndarray]:
    """Synthetic "cells": an ``em`` uint8 image and a ``mask`` uint16 label channel, ZYX.

    The mask labels ``cells`` balls 1, 2, ...; the image is brighter inside them, over a
    smooth texture and noise. The same arguments give the same arrays.

    >>> volume = demo_volume((8, 32, 32), cells=3)
    >>> volume["em"].dtype, volume["mask"].dtype, volume["mask"].shape
    (dtype('uint8'), dtype('uint16'), (8, 32, 32))
    >>> int(volume["mask"].max())
    3
    """
    shape = as_triple(shape, "shape", minimum=1)
    rng = np.random.default_rng(seed)
    z, y, x = (np.arange(n, dtype=np.float32) for n in shape)
    texture = (
        60 * np.sin(x / 7.0)[None, None, :] * np.cos(y / 9.0)[None, :, None]
        + 30 * np.sin(z / 5.0)[:, None, None]
    )
    mask = np.zeros(shape, dtype=np.uint16)
    radius_limit = max(2, min(shape) // 4)
    for label in range(1, cells + 1):
        radius = int(rng.integers(max(1, radius_limit // 2), radius_limit + 1))
        centre = [int(rng.integers(0, n)) for n in shape]
        lo = [max(0, c - radius) for c in centre]
        hi = [min(n, c + radius + 1) for c, n in zip(centre, shape, strict=True)]
        zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        ball = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][ball] = label
    image = 90 + texture + 80 * (mask > 0) + rng.normal(0, 8, shape).astype(np.float32)
    return {"em": np.clip(image, 0, 255).astype(np.uint8), "mask": mask}

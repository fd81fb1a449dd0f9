"""Pillow's bilinear resize along one axis, reproduced to the last bit (Pillow
src/libImaging/Resample.c), for `ndframework.bossemu.downsample_blocks`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bilinear_coefficients", "resample_last_axis"]

_PRECISION_BITS = 32 - 8 - 2  # Pillow Resample.c: fixed point of the 8-bit passes


def bilinear_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """First input index and the weights, one row per output index, of Pillow's bilinear
    filter for ``in_size -> out_size`` (``precompute_coeffs``, Pillow Resample.c).

    Rows have as many weights as the widest one; unused weights are 0. Values are computed
    in the same double-precision operations as Pillow, so they match to the last bit.

    >>> first, weights = bilinear_coefficients(8, 4)
    >>> first.tolist(), (weights * 56).round(6).tolist()[:2]
    ([0, 1, 3, 5], [[24.0, 24.0, 8.0, 0.0, 0.0], [7.0, 21.0, 21.0, 7.0, 0.0]])
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # bilinear support is 1
    ksize = int(np.ceil(support)) * 2 + 1
    first = np.zeros(out_size, dtype=np.intp)
    weights = np.zeros((out_size, ksize), dtype=np.float64)
    for out_index in range(out_size):
        center = (out_index + 0.5) * scale
        low = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero
        high = min(int(center + support + 0.5), in_size)
        # Pillow's operation order, (index - center + 0.5) * (1 / filterscale), keeps
        # the doubles bit-identical.
        taps = [
            max(0.0, 1.0 - abs((index - center + 0.5) * (1.0 / filterscale)))
            for index in range(low, high)
        ]
        total = 0.0
        for tap in taps:
            total += tap
        if total != 0.0:
            taps = [tap / total for tap in taps]
        first[out_index] = low
        weights[out_index, : len(taps)] = taps
    return first, weights


def resample_last_axis(data: np.ndarray, out_size: int) -> np.ndarray:
    """Pillow's bilinear pass along the last axis of uint8 or uint16 ``data``
    (``ImagingResampleHorizontal_8bpc`` / ``_16bpc``, Pillow Resample.c)."""
    in_size = data.shape[-1]
    first, weights = bilinear_coefficients(in_size, out_size)
    index = np.minimum(first[:, None] + np.arange(weights.shape[1]), in_size - 1)
    if data.dtype == np.uint8:
        # Pillow sums in a C int: 255 * 2**22 and the rounding half fit in 32 bits.
        fixed = (0.5 + weights * (1 << _PRECISION_BITS)).astype(np.int32)  # (int) truncates
        total = np.full(data.shape[:-1] + (out_size,), 1 << (_PRECISION_BITS - 1), np.int32)
        for tap in range(weights.shape[1]):
            total += data[..., index[:, tap]].astype(np.int32) * fixed[:, tap]
        return np.clip(total >> _PRECISION_BITS, 0, 255).astype(np.uint8)
    # 16-bit: doubles summed tap by tap in Pillow's order, then ROUND_UP (+0.5, truncate).
    total = np.zeros(data.shape[:-1] + (out_size,), np.float64)
    for tap in range(weights.shape[1]):
        total += data[..., index[:, tap]].astype(np.float64) * weights[:, tap]
    rounded = (total + 0.5).astype(np.int64)
    # Pillow stores the low byte and the clipped high byte separately.
    return (np.minimum(rounded >> 8, 255) * 256 + rounded % 256).astype(np.uint16)

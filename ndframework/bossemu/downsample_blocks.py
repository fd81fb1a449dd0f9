"""One block of boss-tools' downsampling: ``step`` cuboids of level ``r`` reduced to one
cuboid of level ``r + 1`` (boss-tools lambda/downsample_volume.py ``downsample_cube``).

Sources, all read from the BOSS's own code:

- images: Pillow's ``Image.resize(..., Image.BILINEAR)`` (Pillow src/libImaging/Resample.c),
  which that lambda calls on each z-slice;
- annotations: spdb spdb/c_lib/c_version/addData.c ``addAnnotationData`` and
  ``getAnnValue64``.

Images (uint8, uint16): for each output z-slice ``z`` the lambda takes input slice
``z * step_z`` alone (an isotropic step *drops* the odd slices, it does not average them)
and resizes it to half width and height with Pillow's bilinear filter. Reducing by 2, that
filter weighs four inputs ``1, 3, 3, 1`` (over 8) per axis, centred on each input pair, and
at the block's first and last output ``3, 3, 1`` and ``1, 3, 3`` (over 7). x is filtered
first, then y, rounding to the image's integer type after each pass. uint8 runs in Pillow's
22-bit fixed point; uint16 in double precision, rounded half up. Voxels past the frame's
stop inside a block are zeros and are blended into the edge voxels.

Annotations (uint64): each 2x2 patch ``a b / c d`` (``a`` at even y and x, ``b`` its x
neighbour, ``c`` its y neighbour) becomes `annotation_label`; an isotropic step uses the
patch in slice ``2z``, and the one in ``2z + 1`` only when the first gives 0.
"""

from __future__ import annotations

import numpy as np

from ._bilinear import resample_last_axis
from .hierarchy import XYZ

__all__ = [
    "annotation_label",
    "downsample_annotation_block",
    "downsample_image_block",
    "downsample_block",
]


# --------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------


def annotation_label(a, b, c, d):
    """The label of a 2x2 patch ``a b / c d`` at the next level (spdb ``getAnnValue64``,
    spdb/c_lib/c_version/addData.c), elementwise over numpy arrays or on scalars.

    Start from ``a``, or ``b`` if ``a`` is 0. A non-zero ``c`` replaces a 0 so far, or
    wins if it equals ``a`` or ``b``. A non-zero ``d`` wins if it equals ``a``, ``b`` or
    ``c``; but where everything so far is 0 the C code assigns ``c`` (itself 0), so a
    label found in ``d`` alone is lost.

    >>> patches = [(1, 2, 3, 4), (1, 2, 2, 5), (1, 2, 3, 3), (0, 5, 7, 7)]
    >>> [int(annotation_label(*p)) for p in patches]
    [1, 2, 3, 7]
    >>> patches = [(0, 0, 0, 9), (0, 0, 4, 0), (0, 6, 0, 0), (8, 0, 0, 0)]
    >>> [int(annotation_label(*p)) for p in patches]
    [0, 4, 6, 8]
    """
    a, b, c, d = (np.asarray(v) for v in (a, b, c, d))
    value = np.where(a != 0, a, b)
    value = np.where(
        c != 0, np.where(value == 0, c, np.where((c == a) | (c == b), c, value)), value
    )
    value = np.where(
        d != 0,
        np.where(value == 0, c, np.where((d == a) | (d == b) | (d == c), d, value)),
        value,
    )
    return value


def _patch_labels(plane: np.ndarray) -> np.ndarray:
    """`annotation_label` of every 2x2 patch of a (..., 2h, 2w) array."""
    return annotation_label(
        plane[..., 0::2, 0::2],
        plane[..., 0::2, 1::2],
        plane[..., 1::2, 0::2],
        plane[..., 1::2, 1::2],
    )


def downsample_annotation_block(volume: np.ndarray, step_z: int) -> np.ndarray:
    """Reduce a ZYX uint64 block of ``(step_z * d, 2h, 2w)`` voxels to ``(d, h, w)``
    (spdb ``addAnnotationData``, spdb/c_lib/c_version/addData.c).

    With ``step_z == 2`` output slice ``z`` takes the labels of input slice ``2z``, and
    those of ``2z + 1`` where the first give 0.

    >>> block = np.zeros((2, 2, 2), np.uint64); block[1, 0, 1] = 5
    >>> downsample_annotation_block(block, 2).tolist()
    [[[5]]]
    """
    _check_block(volume, step_z)
    labels = _patch_labels(volume[0::step_z])
    if step_z == 2:
        labels = np.where(labels == 0, _patch_labels(volume[1::2]), labels)
    return labels.astype(volume.dtype, copy=False)


# --------------------------------------------------------------------------------------
# Images, as Pillow's bilinear resize computes them
# --------------------------------------------------------------------------------------


def downsample_image_block(volume: np.ndarray, step_z: int) -> np.ndarray:
    """Reduce a ZYX uint8 or uint16 block of ``(step_z * d, 2h, 2w)`` voxels to
    ``(d, h, w)`` as boss-tools does (``downsample_cube``, lambda/downsample_volume.py):
    output slice ``z`` is input slice ``z * step_z`` resized by Pillow's bilinear filter,
    x first, then y.

    uint16 gives what Pillow 11 and later compute. The BOSS's lambda ran on Python 3.7,
    whose newest Pillow (9.5) refuses a bilinear resize of a 16-bit image ("image has
    wrong mode"), so there a uint16 downsample failed.

    >>> slice_ = np.array([[0, 0, 80, 80], [0, 0, 80, 80]], np.uint8)[None]
    >>> downsample_image_block(slice_, 1).tolist()     # weights 3,3,1 / 7 and 1,3,3 / 7
    [[[11, 69]]]
    """
    _check_block(volume, step_z)
    if volume.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"Unsupported type for image downsampling '{volume.dtype}'")
    slices = volume[0::step_z]
    out_y, out_x = volume.shape[1] // 2, volume.shape[2] // 2
    across_x = resample_last_axis(slices, out_x)
    across_y = resample_last_axis(np.swapaxes(across_x, -1, -2), out_y)
    return np.ascontiguousarray(np.swapaxes(across_y, -1, -2))


def _check_block(volume: np.ndarray, step_z: int) -> None:
    if step_z not in (1, 2):
        raise ValueError(f"step_z must be 1 or 2, got {step_z}")
    if volume.ndim != 3 or volume.shape[0] % step_z or volume.shape[1] % 2 or volume.shape[2] % 2:
        raise ValueError(
            f"a block must be ZYX with z divisible by step_z={step_z} and even y and x, "
            f"got shape {volume.shape}"
        )


def downsample_block(volume: np.ndarray, step_xyz: XYZ, is_annotation: bool) -> np.ndarray:
    """One output cuboid from a block of ``step`` input cuboids (ZYX array of ``step *
    cuboid`` voxels): `downsample_annotation_block` for annotation channels,
    `downsample_image_block` otherwise."""
    if tuple(step_xyz[:2]) != (2, 2):
        raise ValueError(f"step_xyz must be (2, 2, 1) or (2, 2, 2), got {tuple(step_xyz)}")
    if is_annotation:
        return downsample_annotation_block(volume, step_xyz[2])
    return downsample_image_block(volume, step_xyz[2])

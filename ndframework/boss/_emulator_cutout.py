"""Cutouts: a cutout URL's region, and reading, writing and zeroing it.

The wire format is the BOSS's ``application/blosc``: the voxels as C-ordered bytes, (Z, Y, X)
or (T, Z, Y, X) when the URL has a time range (the bytes are the same), blosc-compressed.
intern decompresses with ``blosc.decompress`` and reshapes with the ranges it asked for.

Writes follow the BOSS: a POST merges only the non-zero voxels it carries into what is
stored (zeros leave stored voxels alone), and only the to-black PUT sets voxels to zero.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs
import blosc
import numpy as np

from ..geometry import Box
from ._emulator_model import ApiError, ErrorCode
from ._emulator_store import CutoutTarget, Store

if TYPE_CHECKING:
    from ._emulator_api import Request

__all__ = ["Region", "parse_region", "read_cutout", "write_cutout", "delete_region"]

_BLOSC_TYPES = ("application/blosc", "application/*", "*/*")


@attrs.frozen
class Region:
    """The voxels a cutout request addresses."""

    target: CutoutTarget
    """The channel, its experiment, frame and volume."""
    times: range
    """Time samples: the URL's range, or the channel's default time sample."""
    box: Box
    """Spatial region, ZYX."""
    url: str
    """The URL's region part, e.g. '0/0:64/0:64/0:16', for messages."""

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, Z, Y, X)."""
        return (len(self.times), *self.box.shape)

    @property
    def nbytes(self) -> int:
        """Size of the region's voxels, uncompressed."""
        return math.prod(self.shape) * self.target.volume.dtype.itemsize

    def check_size(self, max_bytes: int) -> None:
        """Raise a 413 if the region is larger than ``max_bytes`` uncompressed."""
        if self.nbytes > max_bytes:
            raise ApiError(
                413,
                ErrorCode.REQUEST_TOO_LARGE,
                f"Cutout {self.url} is {self.nbytes} bytes uncompressed, over the limit of "
                f"{max_bytes} bytes. Reduce the cutout dimensions.",
            )


def _bad_args(url: str, why: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_CUTOUT_ARGS, f"Incorrect cutout arguments {url}: {why}.")


def _parse_range(text: str, axis: str, url: str) -> tuple[int, int]:
    start, sep, stop = text.partition(":")
    try:
        if sep:
            return int(start), int(stop)
    except ValueError:
        pass
    raise ApiError(
        400,
        ErrorCode.TYPE_ERROR,
        f"Type error in cutout argument {url}: {axis} range {text!r} is not 'start:stop'.",
    )


def _check_range(bounds: tuple[int, int], valid: tuple[int, int], axis: str, url: str) -> None:
    (start, stop), (valid_start, valid_stop) = bounds, valid
    if start >= stop:
        raise _bad_args(url, f"{axis} range {start}:{stop} is empty, start must be below stop")
    if start < valid_start or stop > valid_stop:
        raise _bad_args(
            url,
            f"{axis} range {start}:{stop} lies outside the valid range {valid_start}:{valid_stop}",
        )


def _check_resolution(text: str, target: CutoutTarget, url: str) -> None:
    try:
        resolution = int(text)
    except ValueError:
        raise ApiError(400, ErrorCode.TYPE_ERROR, f"Type error in resolution {text!r}.") from None
    base = target.channel.base_resolution
    levels = range(base, base + target.experiment.num_hierarchy_levels)
    if resolution not in levels:
        raise ApiError(
            400,
            ErrorCode.TYPE_ERROR,
            f"Invalid resolution {resolution}. The resolution has to be within {levels.start} "
            f"and {levels.stop}.",
        )
    if resolution != 0:
        raise _bad_args(url, f"the emulator stores resolution 0 only, got resolution {resolution}")


def parse_region(store: Store, request: Request) -> Region:
    """The region a cutout URL names, validated against its channel's frame and time axis."""
    params = request.params
    target = store.cutout_target(params["collection"], params["experiment"], params["channel"])
    parts = [params["resolution"], params["x"], params["y"], params["z"]]
    if "t" in params:
        parts.append(params["t"])
    url = "/".join(parts)
    _check_resolution(params["resolution"], target, url)
    frame = target.frame
    ranges = {}
    for axis in "xyz":
        ranges[axis] = _parse_range(params[axis], axis, url)
        valid = (getattr(frame, f"{axis}_start"), getattr(frame, f"{axis}_stop"))
        _check_range(ranges[axis], valid, axis, url)
    if "t" in params:
        t_range = _parse_range(params["t"], "t", url)
        _check_range(t_range, (0, target.experiment.num_time_samples), "t", url)
        times = range(*t_range)
    else:
        default = target.channel.default_time_sample
        times = range(default, default + 1)
    (x0, x1), (y0, y1), (z0, z1) = ranges["x"], ranges["y"], ranges["z"]
    return Region(target, times, Box((z0, y0, x0), (z1, y1, x1)), url)


def _check_accept(request: Request) -> None:
    accept = request.headers.get("Accept") or "*/*"
    offered = {item.split(";")[0].strip().lower() for item in accept.split(",")}
    if offered.isdisjoint(_BLOSC_TYPES):
        raise ApiError(
            406,
            ErrorCode.UNSUPPORTED_TRANSPORT_FORMAT,
            f"Cannot render a cutout as {accept!r}; the emulator serves 'application/blosc'.",
        )


def _filter_ids(request: Request, region: Region) -> np.ndarray | None:
    values = request.query.get("filter")
    if not values:
        return None
    if region.target.channel.type != "annotation":
        raise ApiError(
            400,
            ErrorCode.DATATYPE_NOT_SUPPORTED,
            f"Filtering by ids needs an annotation channel; {region.target.channel.name!r} is "
            f"an {region.target.channel.type} channel.",
        )
    try:
        return np.array([int(v) for v in ",".join(values).split(",") if v], dtype=np.uint64)
    except ValueError:
        raise _bad_args(
            region.url, f"filter {','.join(values)!r} is not a list of integer ids"
        ) from None


def read_cutout(store: Store, request: Request, max_bytes: int) -> bytes:
    """The blosc-compressed voxels of a GET cutout request."""
    _check_accept(request)
    region = parse_region(store, request)
    region.check_size(max_bytes)
    data = region.target.volume.read(region.times, region.box)
    ids = _filter_ids(request, region)
    if ids is not None:
        data = np.where(np.isin(data, ids), data, 0).astype(data.dtype, copy=False)
    return blosc.compress(np.ascontiguousarray(data), typesize=data.dtype.itemsize)


def write_cutout(store: Store, request: Request, max_bytes: int) -> None:
    """Merge the blosc-compressed voxels of a POST cutout request into the channel.

    As on the BOSS, only non-zero voxels are written; a zero leaves the stored voxel as it
    was (see `Volume.merge` for the spdb and boss-tools code this follows). A POST can
    therefore never clear data: that takes the to-black PUT (`delete_region`).
    """
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/blosc":
        raise ApiError(
            415,
            ErrorCode.UNSUPPORTED_TRANSPORT_FORMAT,
            f"Unsupported Content-Type {content_type!r} for a cutout; send 'application/blosc'.",
        )
    region = parse_region(store, request)
    region.check_size(max_bytes)
    dtype = region.target.volume.dtype
    declared, _, _ = blosc.get_cbuffer_sizes(request.body) if request.body else (0, 0, 0)
    if declared != region.nbytes:
        raise ApiError(
            400,
            ErrorCode.DATA_DIMENSION_MISMATCH,
            f"The body holds {declared} bytes uncompressed, but cutout {region.url} of a {dtype} "
            f"channel needs {region.nbytes} bytes (T, Z, Y, X = {region.shape}).",
        )
    try:
        raw = blosc.decompress(request.body)
    except Exception as error:
        raise ApiError(
            400, ErrorCode.DESERIALIZATION_ERROR, f"The body is not blosc-compressed data: {error}"
        ) from None
    values = np.frombuffer(raw, dtype=dtype).reshape(region.shape)
    region.target.volume.merge(region.times, region.box, values)


def delete_region(store: Store, request: Request, max_bytes: int) -> None:
    """Set the voxels of a to-black PUT request to zero, as the BOSS does.

    The BOSS's ``CutoutToBlack.put`` (boss ``django/bossspatialdb/views.py``) refuses a
    region over its cutout size limit (``is_too_large``, ``parsers.py``: HTTP 413), builds
    a mask of ones over exactly the URL's region and hands it to ``SpatialDB.write_cuboid``
    (spdb ``spdb/spatialdb/spatialdb.py``) with ``to_black=True``. That pads the mask with
    zeros to whole cuboids, and the page-out (boss-tools ``lambda/s3_flush_lambda.py``)
    applies ``Cube.overwrite_to_black`` (spdb ``spdb/spatialdb/cube.py``), which zeroes
    stored voxels only where the mask is 1. So exactly the requested voxels are cleared,
    whether or not the region is cuboid-aligned, and nothing around them; the resolution
    is checked like any cutout's (``write_cuboid`` takes the channel's base resolution or
    the one above; the emulator stores resolution 0 only).

    Time: without a time range the channel's default time sample is cleared (bosscore
    ``request.py``, ``BossRequest``). With one, the view makes a 4-D mask only when the
    range holds more than two samples (``if len(req.get_time()) > 2``); a 3-D mask gets a
    time axis of one, at the range's start. So a time range of exactly two samples clears
    the first of them only: the emulator reproduces that.
    """
    region = parse_region(store, request)
    region.check_size(max_bytes)
    times = region.times[:1] if len(region.times) == 2 else region.times
    region.target.volume.write(times, region.box, 0)

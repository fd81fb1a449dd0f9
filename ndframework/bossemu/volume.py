"""The volume service: cutouts (GET, POST), cutout to black (PUT), and the object service
(reserve ids, ids in a region, bounding boxes), over the sparse cuboid store.

Views follow boss django/bossspatialdb/views.py (``Cutout``, ``CutoutToBlack``),
django/bossspatialdb/parsers.py and renderers.py, and django/bossobject/views.py
(``Reserve``, ``Ids``, ``BoundingBox``); storage follows spdb spdb/spatialdb/spatialdb.py.

- A cutout is rendered as the client's ``Accept`` asks: blosc, blosc-python, npygz, or a
  JPEG of the z-slices stacked along y (uint8, no time range; needs Pillow, else 406). JSON
  is offered too but cannot serialize the data: Django's 500, as on the BOSS.
- Reads work at every readable resolution (``range(base, base + num_hierarchy_levels)``),
  with ``?iso=true`` selecting the isotropic copy where spdb keys one apart
  (`ndframework.bossemu.hierarchy.Hierarchy.uses_iso_keys`). Levels never downsampled read
  as zeros, as cuboids never written do.
- Writes (POST, to black) take the base resolution or the one above only (``write_cuboid``,
  spdb spatialdb.py); another is 400, code 9001 (POST) or 1006 (to black), with the text of
  spdb's ``SpdbError``. A write that succeeds makes a DOWNSAMPLED channel NOT_DOWNSAMPLED.
- The to-black PUT clears every sample of its time range only when the range holds more
  than two; otherwise the first alone (``len(req.get_time()) > 2`` in ``CutoutToBlack.put``;
  `Quirks.to_black_first_sample`).
- Ids and bounding boxes: spdb answers from an object index in DynamoDB that the BOSS no
  longer fills (``ObjectIndices.update_id_indices`` is commented out, spdb
  spdb/spatialdb/object_indices.py). So, by default as on the BOSS, ``/v1/boundingbox`` finds
  no id (404, 4004) and ``/v1/ids`` finds only the ids in the parts of the region outside
  whole cuboids, which spdb reads by cutout (``AWSObjectStore.get_ids_in_region``, spdb
  spdb/spatialdb/object.py, with ``Region``, spdb/spatialdb/region.py). ``Ids`` passes no time
  range to spdb, so time sample 0 is searched whatever the URL says. With
  ``Backend.exact_id_index`` both answer from the stored cuboids, as a filled index would.
"""

from __future__ import annotations

import io

import numpy as np

from ..geometry import Box
from . import cuboids
from .cuboid_format import CUBOID_SHAPE, decode_cuboid
from .datarequest import Backend, ChannelRequest, CutoutArgs, channel_request, cutout_args
from .downsample_status import DownsampleEvent, next_status
from .errors import BossError, ErrorCodes, ServerError
from .http import ARRAY_MEDIA_TYPES, DRFError, Request, Response, decode_array, encode_array
from .http import media_type

__all__ = [
    "get_cutout",
    "post_cutout",
    "cutout_to_black",
    "reserve_ids",
    "ids_in_region",
    "bounding_box",
    "after_write",
]

_TOO_LARGE = "Cutout request is over 500MB when uncompressed. Reduce cutout dimensions."


def _iso(request: Request) -> bool:
    return (request.query_value("iso") or "").lower() == "true"


def _storage_iso(channel: ChannelRequest, resolution: int, iso: bool) -> bool:
    return iso and channel.hierarchy.uses_iso_keys(resolution, iso)


def _read(backend: Backend, channel: ChannelRequest, args: CutoutArgs, iso: bool) -> np.ndarray:
    if not args.times:
        return np.zeros(args.shape, channel.dtype)
    return cuboids.read(
        backend.cuboids,
        channel.lookup_key,
        args.resolution,
        args.box,
        channel.dtype,
        time_range=(args.times.start, args.times.stop),
        iso=_storage_iso(channel, args.resolution, iso),
    )


def _check_writable(channel: ChannelRequest, resolution: int, code: ErrorCodes) -> None:
    """``write_cuboid``'s resolution check, answered as the views wrap ``SpdbError``."""
    base = channel.channel["base_resolution"]
    if resolution in (base, base + 1):
        return
    text = (
        "You can only write data to a channel's base resolution or one resolution above it. "
        f"Base Resolution: {base}, Request Resolution: {resolution}"
    )
    # str() of SpdbError('Resolution Mismatch', text, ErrorCodes.RESOLUTION_MISMATCH)
    spdb_error = f"({'Resolution Mismatch'!r}, {text!r}, <ErrorCodes.RESOLUTION_MISMATCH: 109>)"
    raise BossError(code, f"Error during write_cuboid: {spdb_error}")


def after_write(backend: Backend, channel: ChannelRequest) -> None:
    """A write's effect on the channel's downsample status (``Cutout.post``,
    ``CutoutToBlack.put``: DOWNSAMPLED becomes NOT_DOWNSAMPLED)."""
    status = channel.channel["downsample_status"]
    after = next_status(status, DownsampleEvent.WRITE).status
    if after != status.upper():
        backend.resources.set_downsample_status(
            channel.channel["id"], after, only_from=(status,)
        )


# -- cutouts -----------------------------------------------------------------------------------


def get_cutout(backend: Backend, request: Request) -> Response:
    """``GET /v1/cutout/...``: the region in the format the client accepts."""
    iso = _iso(request)
    channel = channel_request(backend, request.params)
    filter_text = request.query_value("filter")
    filter_ids = None
    if filter_text is not None:
        if not channel.is_annotation:
            raise BossError(
                ErrorCodes.DATATYPE_NOT_SUPPORTED,
                f"The channel in request has type {channel.channel['type']}. Filter is only "
                "valid for annotation channels",
            )
        try:
            filter_ids = np.array(
                [int(v) for v in filter_text.split(",") if v.strip()], dtype=np.uint64
            )
        except (ValueError, OverflowError) as error:
            raise BossError(
                ErrorCodes.INVALID_CUTOUT_ARGS,
                f"Invalid id in list of filter ids {filter_text}. {error}",
            ) from None
    args = cutout_args(channel, request.params, backend.quirks)
    if args.too_large(channel.dtype, backend.max_cutout_bytes):
        raise BossError(ErrorCodes.REQUEST_TOO_LARGE, _TOO_LARGE)
    data = _read(backend, channel, args, iso)
    if filter_ids is not None:
        data = np.where(np.isin(data, filter_ids), data, 0).astype(data.dtype, copy=False)
    return _render(request.accepted, data, args.time_request)


def _render(media: str, data: np.ndarray, time_request: bool) -> Response:
    """The cutout renderers (django/bossspatialdb/renderers.py)."""
    if media in ARRAY_MEDIA_TYPES:
        return Response(200, encode_array(media, data if time_request else data[0]), media)
    if media == "image/jpeg":
        return _render_jpeg(data, time_request)
    # JSONRenderer and the browsable API cannot serialize spdb's Cube: Django's 500.
    raise ServerError("TypeError: Object of type Cube is not JSON serializable")


def _render_jpeg(data: np.ndarray, time_request: bool) -> Response:
    """``JpegRenderer``: z-slices stacked along y, uint8 images only, quality 85."""
    if time_request:
        return Response.json(400, {"status": 400, "code": 2005, "message":
                                   "The cutout service JPEG interface does not support 4D cutouts"})
    if data.dtype != np.uint8:
        return Response.json(400, {"status": 400, "code": 2001, "message":
                                   "The cutout service JPEG interface only supports uint8 image "
                                   "data"})
    try:
        from PIL import Image
    except ImportError:  # Pillow is no dependency of ndframework
        raise DRFError(406, "Could not satisfy the request Accept header.") from None
    z, y, x = data.shape[1:]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(data[0].reshape(z * y, x))).save(
        buffer, "JPEG", quality=85
    )
    return Response(200, buffer.getvalue(), "image/jpeg")


def _parse_body(
    request: Request, channel: ChannelRequest, args: CutoutArgs, max_bytes: int
) -> np.ndarray:
    """The posted array, as the cutout parsers read it (parsers.py)."""
    media = media_type(request.headers.get("Content-Type"))
    if args.too_large(channel.dtype, max_bytes):
        raise BossError(ErrorCodes.REQUEST_TOO_LARGE, _TOO_LARGE)
    if media == "application/blosc":
        try:
            flat = decode_array(media, request.body, channel.dtype)
        except ValueError:
            raise BossError(
                ErrorCodes.DATATYPE_DOES_NOT_MATCH,
                "Failed to decompress data. Verify the datatype/bitdepth of your data "
                "matches the channel.",
            ) from None
        shape = args.shape if args.time_request else args.shape[1:]
        if flat.size != np.prod(shape):
            raise BossError(
                ErrorCodes.DATA_DIMENSION_MISMATCH,
                "Failed to unpack data. Verify the datatype of your POSTed data and xyz "
                "dimensions used in the POST URL.",
            )
        return flat.reshape(shape)
    try:
        return decode_array(media, request.body, channel.dtype)
    except (ValueError, EOFError):
        raise BossError(
            ErrorCodes.DATA_DIMENSION_MISMATCH,
            "Failed to unpack data. Verify the datatype of your POSTed data and xyz "
            "dimensions used in the POST URL.",
        ) from None


def post_cutout(backend: Backend, request: Request) -> Response:
    """``POST /v1/cutout/...``: merge the posted non-zero voxels into the channel."""
    media = media_type(request.headers.get("Content-Type"))
    if media not in ARRAY_MEDIA_TYPES:  # DRF: no parser for the body
        raise DRFError(415, f'Unsupported media type "{media}" in request.')
    iso = _iso(request)
    channel = channel_request(backend, request.params)
    args = cutout_args(channel, request.params, backend.quirks)
    data = _parse_body(request, channel, args, backend.max_cutout_bytes)
    if data.dtype != channel.dtype:
        raise BossError(ErrorCodes.DATATYPE_DOES_NOT_MATCH, "Datatype does not match channel")
    expected = args.shape if data.ndim == 4 else args.shape[1:]
    if data.shape != expected:
        raise BossError(
            ErrorCodes.DATA_DIMENSION_MISMATCH, "Data dimensions in URL do not match POSTed data."
        )
    _check_writable(channel, args.resolution, ErrorCodes.BOSS_SYSTEM_ERROR)
    if data.size:
        cuboids.write(
            backend.cuboids,
            channel.lookup_key,
            args.resolution,
            args.box,
            data,
            time_start=args.times.start,
            iso=_storage_iso(channel, args.resolution, iso),
        )
    after_write(backend, channel)
    return Response(201)


def cutout_to_black(backend: Backend, request: Request) -> Response:
    """``PUT /v1/cutout/to_black/...``: zero the region's stored voxels."""
    iso = _iso(request)
    channel = channel_request(backend, request.params)
    args = cutout_args(channel, request.params, backend.quirks)
    if args.too_large(channel.dtype, backend.max_cutout_bytes):
        raise BossError(
            ErrorCodes.REQUEST_TOO_LARGE,
            "Cutout overwrite is over 500MB when uncompressed. Reduce overwrite dimensions.",
        )
    first_only = backend.quirks.to_black_first_sample and len(args.times) <= 2
    times = args.times[:1] if first_only else args.times
    _check_writable(channel, args.resolution, ErrorCodes.BAD_REQUEST)
    if times:
        cuboids.to_black(
            backend.cuboids,
            channel.lookup_key,
            args.resolution,
            args.box,
            time_range=(times.start, times.stop),
            iso=_storage_iso(channel, args.resolution, iso),
        )
    after_write(backend, channel)
    return Response(200)


# -- the object service ------------------------------------------------------------------------


def reserve_ids(backend: Backend, request: Request) -> Response:
    """``GET /v1/reserve/.../{num_ids}``: ``{"start_id": first, "count": "<num_ids>"}`` (the
    count is the URL's text, as the view echoes it)."""
    channel = channel_request(backend, request.params)
    if not channel.is_annotation:
        # validate_reserve_service raises with ErrorCodes.ErrorCodes...: an AttributeError.
        raise ServerError("AttributeError: type object 'ErrorCodes' has no attribute 'ErrorCodes'")
    num_ids = request.params["num_ids"]
    try:
        start = backend.resources.reserve_ids(channel.lookup_key, int(num_ids))
    except (TypeError, ValueError) as error:
        raise BossError(
            ErrorCodes.TYPE_ERROR, f"Type error in the reserve id view. {error}"
        ) from None
    return Response.json(200, {"start_id": start, "count": num_ids})


def _aligned_interior(box: Box) -> Box:
    """The part of ``box`` made of whole cuboids (``Region.get_cuboid_aligned_sub_region``),
    possibly empty."""
    start = tuple(-(-s // c) * c for s, c in zip(box.start, CUBOID_SHAPE))
    stop = tuple((s // c) * c for s, c in zip(box.stop, CUBOID_SHAPE))
    stop = tuple(max(a, b) for a, b in zip(start, stop))
    return Box(start, stop)


def ids_in_region(backend: Backend, request: Request) -> Response:
    """``GET /v1/ids/...``: ``{"ids": ["1", "4"]}``, the non-zero ids found (see the module
    docstring for which parts of the region are searched)."""
    channel = channel_request(backend, request.params)
    channel.check_annotation("Can only reserve IDs for annotation channels")
    args = cutout_args(channel, request.params, backend.quirks)
    first = CutoutArgs(args.resolution, args.box, range(0, 1), False)
    data = _read(backend, channel, first, iso=False)[0]
    if not backend.exact_id_index:
        interior = _aligned_interior(args.box)
        if all(n > 0 for n in interior.shape):
            mask = np.ones(data.shape, bool)
            mask[interior.relative_to(args.box).slices()] = False
            data = data[mask]
    ids = np.unique(data)
    return Response.json(200, {"ids": [str(int(i)) for i in ids if i != 0]})


def bounding_box(backend: Backend, request: Request) -> Response:
    """``GET /v1/boundingbox/.../{resolution}/{id}/?type=loose|tight``."""
    bb_type = request.query_value("type") or "loose"
    if bb_type not in ("loose", "tight"):
        raise BossError(
            ErrorCodes.INVALID_ARGUMENT,
            f"Invalid option for bounding box type {bb_type}. The valid options are : loose "
            "or tight",
        )
    channel = channel_request(backend, request.params)
    channel.check_annotation("Can only perform bounding box operations on annotation channels")
    object_id = int(request.params["id"])
    resolution = channel.check_resolution(request.params["resolution"])
    found = _find(backend, channel, resolution, object_id, tight=bb_type == "tight")
    if found is None:
        raise BossError(ErrorCodes.OBJECT_NOT_FOUND, f"The id does not exist. {object_id}")
    (z0, y0, x0), (z1, y1, x1) = found.start, found.stop
    return Response.json(
        200,
        {"x_range": [x0, x1], "y_range": [y0, y1], "z_range": [z0, z1], "t_range": [0, 1]},
    )


def _find(
    backend: Backend, channel: ChannelRequest, resolution: int, object_id: int, tight: bool
) -> Box | None:
    """The box of ``object_id`` at time sample 0: the cuboids holding it (loose) or its
    voxels (tight); None if not found or if there is no id index."""
    if not backend.exact_id_index:
        return None
    starts, stops = [], []
    keys = backend.cuboids.keys_in(channel.lookup_key, resolution, iso=False, time_samples=[0])
    for key in keys:
        data = backend.cuboids.get(key)
        if data is None:
            continue
        hits = decode_cuboid(data, channel.dtype) == np.uint64(object_id)
        if not hits.any():
            continue
        origin = key.box.start
        if tight:
            where = np.nonzero(hits)
            starts.append(tuple(o + int(w.min()) for o, w in zip(origin, where)))
            stops.append(tuple(o + int(w.max()) + 1 for o, w in zip(origin, where)))
        else:
            starts.append(origin)
            stops.append(key.box.stop)
    if not starts:
        return None
    return Box(tuple(map(min, zip(*starts))), tuple(map(max, zip(*stops))))

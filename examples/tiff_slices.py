"""A source for a folder of TIFF slices: one folder per channel, one 2-D TIFF per z slice.

This is how light-microscopy labs often keep a volume (what a microscope, Fiji's "Image
Sequence" export or a stitcher writes)::

    volume/
        dapi/    z00000.tif  z00001.tif  ...
        gfp/     z00000.tif  z00001.tif  ...

`TiffSlices` reads it block by block with ``tifffile``, opening only the slices a block
covers and reading only the rows it needs: an uncompressed slice is memory-mapped and the
part is copied out; a compressed one (zlib, LZW, ...) decodes only its strips or tiles that
cross the block. Its files are ordered by the numbers in their names (``z2.tif`` before
``z10.tif``); their z is their place in that order. Each channel's slices must share one
shape and dtype.

It implements what a `ndframework.DataSource` asks for: ``channels``, ``bounds``,
``dtype`` and ``read_box``, with ``chunk_shape`` from the files' strips or tiles, so that
the default tiler cuts blocks on them. It keeps no open file between reads, so it pickles
as its folder and the metadata read once, and worker threads share it without a lock.
``ndframework.testing.SourceConformance`` checks it (``tests/test_tiff_slices.py``).

Use it::

    import ndframework as ndf
    from tiff_slices import TiffSlices

    source = TiffSlices("volume")            # the layout above
    result = ndf.Pipeline(source, processor, executor=ndf.ProcessExecutor(8)).run()

    TiffSlices.from_arrays("copy", source.read(source.bounds))   # and back to TIFFs

Run this file to write a small synthetic volume as TIFF slices, filter it block by block in
two worker processes, and compare with ``scipy.ndimage`` on the whole volume (or give a
folder of your own to see what the source finds there)::

    python examples/tiff_slices.py [FOLDER]

Needs ``tifffile`` (and ``scipy`` for the demonstration): ``pip install tifffile scipy``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import tifffile

import ndframework as ndf

SUFFIXES = (".tif", ".tiff")


def _natural_key(path: Path) -> list[Any]:
    """Sort key that orders the numbers in a name by value: ``z2.tif`` before ``z10.tif``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def slice_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The TIFF files of one channel's folder, in z order."""
    files = [path for path in Path(folder).iterdir() if path.suffix.lower() in SUFFIXES]
    return sorted(files, key=_natural_key)


class TiffSlices(ndf.DataSource):
    """A folder holding one sub-folder per channel, each holding one 2-D TIFF per z slice.

    Parameters
    ----------
    folder:
        The folder of channel folders.
    origin:
        The (z, y, x) coordinates of the first voxel of the first slice (default 0, 0, 0).
    """

    def __init__(self, folder: str | os.PathLike[str], origin: Sequence[int] = (0, 0, 0)):
        self.folder = os.fspath(folder)
        self.origin = tuple(int(value) for value in origin)
        # Read on first use, then pickled along with the source, so that workers do not
        # list the folders again: (channels, bounds, {channel: dtype}, chunk shape,
        # {channel: [file name per z]}).
        self._metadata: tuple[Any, ...] | None = None

    @classmethod
    def from_arrays(
        cls,
        folder: str | os.PathLike[str],
        arrays: Mapping[str, np.ndarray],
        origin: Sequence[int] = (0, 0, 0),
        **imwrite: Any,
    ) -> "TiffSlices":
        """Write ``{channel: ZYX array}`` as ``FOLDER/CHANNEL/z00000.tif``, ... and return
        the source that reads them. Keyword arguments go to ``tifffile.imwrite``, e.g.
        ``compression="zlib"``, ``rowsperstrip=64`` or ``tile=(256, 256)``."""
        for name, array in arrays.items():
            channel = Path(folder) / name
            channel.mkdir(parents=True, exist_ok=True)
            for z, plane in enumerate(np.asarray(array)):
                tifffile.imwrite(channel / f"z{z:05d}.tif", plane, **imwrite)
        return cls(folder, origin)

    # -- what the pipeline asks of a source -----------------------------------------------

    @property
    def channels(self) -> tuple[str, ...]:
        return self._read_metadata()[0]

    @property
    def bounds(self) -> ndf.Box:
        return self._read_metadata()[1]

    def dtype(self, channel: str) -> np.dtype:
        self.check_channels([channel])
        return self._read_metadata()[2][channel]

    @property
    def chunk_shape(self) -> tuple[int, int, int]:
        """One slice deep, and as wide as the first file's strips or tiles."""
        return self._read_metadata()[3]

    def describe(self) -> str:
        return f"TiffSlices({self.folder!r}, origin {self.origin})"

    def read_box(self, box: ndf.Box, channels: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Read ``box`` slice by slice; `read` has checked ``box`` and ``channels``."""
        local = box.relative_to(self.bounds)
        (z0, y0, x0), (z1, y1, x1) = local.start, local.stop
        rows, columns = slice(y0, y1), slice(x0, x1)
        files = self._read_metadata()[4]
        arrays = {}
        for name in channels:
            array = np.empty(box.shape, self.dtype(name))  # the caller's own
            for i, z in enumerate(range(z0, z1)):
                path = os.path.join(self.folder, name, files[name][z])
                array[i] = _read_part(path, rows, columns, self.bounds.shape[1:])
            arrays[name] = array
        return arrays

    # -- the folder's layout ----------------------------------------------------------------

    def _read_metadata(self) -> tuple[Any, ...]:
        if self._metadata is None:
            self._metadata = _scan(self.folder, self.origin)
        return self._metadata


def _scan(folder: str, origin: tuple[int, ...]) -> tuple[Any, ...]:
    """The metadata of a folder of channel folders, from its listings and each channel's
    first file; `ndf.ConfigError` naming what does not fit."""
    if not os.path.isdir(folder):
        raise ndf.ConfigError(f"no folder of TIFF slices at {folder!r}", folder)
    channels = tuple(sorted(entry.name for entry in os.scandir(folder) if entry.is_dir()))
    if not channels:
        raise ndf.ConfigError(f"{folder!r} holds no channel folder", folder)
    files, dtypes, shapes, chunks = {}, {}, {}, None
    for name in channels:
        paths = slice_files(os.path.join(folder, name))
        if not paths:
            raise ndf.ConfigError(f"channel folder {os.path.join(folder, name)!r} holds no "
                                  f".tif or .tiff file", name)
        with tifffile.TiffFile(paths[0]) as tif:
            page = tif.pages.first
            if page.ndim != 2 or len(tif.pages) != 1:
                raise ndf.ConfigError(
                    f"{paths[0]} holds {len(tif.pages)} image(s), the first of shape "
                    f"{page.shape}; each slice must be one 2-D (y, x) image of one sample "
                    f"per pixel", str(paths[0]))
            dtypes[name] = page.dtype.newbyteorder("=")
            shapes[name] = (len(paths), *page.shape)
            chunks = chunks or (1, *page.chunks)
        files[name] = [path.name for path in paths]
    if len(set(shapes.values())) != 1:
        found = ", ".join(f"{name!r}: {shape}" for name, shape in shapes.items())
        raise ndf.ConfigError(f"the channels of {folder!r} must have one shape (slices, y, "
                              f"x), got {found}", shapes)
    bounds = ndf.Box.from_shape(shapes[channels[0]], origin)
    return channels, bounds, dtypes, chunks, files


def _read_part(
    path: str, rows: slice, columns: slice, plane_shape: tuple[int, ...]
) -> np.ndarray:
    """``rows`` × ``columns`` of the image in ``path``, reading no more of the file than
    they need; `ndf.DataAccessError` naming the file when it cannot be read."""
    # Opened for each read and closed at once: nothing stays open to pickle, to guard
    # between threads or to leak, and opening reads only the header and the first IFD.
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if page.shape != tuple(plane_shape):
                raise ValueError(f"its image has shape {page.shape}, the volume's slices "
                                 f"{tuple(plane_shape)}")
            if page.is_memmappable:  # uncompressed and contiguous: map it, copy the part
                return np.array(page.asarray(out="memmap")[rows, columns])
            return _decode_part(page, rows, columns)
    except Exception as error:  # a missing file, a broken header, a strip that fails to decode
        raise ndf.DataAccessError(f"cannot read {path}: {error}") from error


def _decode_part(page: Any, rows: slice, columns: slice) -> np.ndarray:
    """``rows`` × ``columns`` of a compressed page, decoding only the strips or tiles that
    cross them (a strip is a tile as wide as the image)."""
    y0, x0 = rows.start, columns.start
    part = np.zeros((rows.stop - y0, columns.stop - x0), page.dtype)
    if part.size == 0:
        return part
    tile_rows, tile_columns = page.chunks
    across = page.chunked[-1]  # tiles in a row of tiles
    tiles_y = range(y0 // tile_rows, (rows.stop - 1) // tile_rows + 1)
    tiles_x = range(x0 // tile_columns, (columns.stop - 1) // tile_columns + 1)
    handle = page.parent.filehandle
    for tile_y in tiles_y:
        for tile_x in tiles_x:
            index = tile_y * across + tile_x
            data = None  # an empty tile holds zeros
            if page.databytecounts[index]:
                handle.seek(page.dataoffsets[index])
                data = handle.read(page.databytecounts[index])
            tile, (_, _, y, x, _), _ = page.decode(data, index, jpegtables=page.jpegtables)
            if tile is None:
                continue
            tile = tile[0, :, :, 0]  # (depth, length, width, samples) → (length, width)
            top, bottom = max(y, y0), min(y + tile.shape[0], rows.stop)
            left, right = max(x, x0), min(x + tile.shape[1], columns.stop)
            part[top - y0:bottom - y0, left - x0:right - x0] = tile[top - y:bottom - y,
                                                                    left - x:right - x]
    return part


# -- the demonstration ----------------------------------------------------------------------


class MaximumFilter(ndf.BlockProcessor):
    """The maximum over a (3, 5, 5) neighbourhood of each voxel: each block reads a halo of
    (1, 2, 2), and its owned part equals ``scipy.ndimage.maximum_filter`` of the whole
    volume with ``mode="nearest"``."""

    halo = (1, 2, 2)
    size = (3, 5, 5)

    def __init__(self, channel: str) -> None:
        self.channels = (channel,)
        self.outputs = {"maximum": "uint8"}

    def process(self, data: dict[str, np.ndarray], block: ndf.Block) -> dict[str, np.ndarray]:
        from scipy import ndimage

        (image,) = data.values()
        return {"maximum": block.crop(ndimage.maximum_filter(image, self.size, mode="nearest"))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Read a folder of TIFF slices block by block.")
    parser.add_argument("folder", nargs="?",
                        help="a folder of channel folders of TIFF slices (default: write a "
                             "small synthetic one and filter it)")
    args = parser.parse_args(argv)
    if args.folder is not None:
        try:
            source = TiffSlices(args.folder)
            print(f"{source.describe()}: channels {', '.join(source.channels)}; "
                  f"region {source.bounds}; chunks {source.chunk_shape}")
            print(source.default_tiler().count(source.bounds), "blocks by default")
        except ndf.ConfigError as error:
            print(f"error: {error}")
            return 2
        return 0

    from scipy import ndimage

    rng = np.random.default_rng(0)
    volume = {"dapi": rng.integers(0, 200, (12, 40, 36), dtype=np.uint8),
              "gfp": rng.integers(0, 50, (12, 40, 36), dtype=np.uint8)}
    with tempfile.TemporaryDirectory() as scratch:
        source = TiffSlices.from_arrays(Path(scratch, "volume"), volume, compression="zlib",
                                        rowsperstrip=8)
        print(f"wrote {source.describe()}: channels {', '.join(source.channels)}; region "
              f"{source.bounds}; chunks {source.chunk_shape}")
        sink = ndf.ZarrSink.create(Path(scratch, "maximum.zarr"), {"maximum": "uint8"},
                                   source.bounds, chunk_shape=(4, 16, 16))
        result = ndf.Pipeline(source, MaximumFilter("dapi"), sink=sink,
                              tiler=ndf.RegularTiler((4, 16, 16)),
                              executor=ndf.ProcessExecutor(2)).run()
        print(result.summary())
        maximum = ndf.ZarrSource(sink.path).read(source.bounds)["maximum"]
        expected = ndimage.maximum_filter(volume["dapi"], MaximumFilter.size, mode="nearest")
        agree = bool(np.array_equal(maximum, expected))
        print(f"block by block equals scipy.ndimage on the whole volume: "
              f"{'yes' if agree else 'NO'}")
    return 0 if result.ok and agree else 1


if __name__ == "__main__":
    sys.exit(main())

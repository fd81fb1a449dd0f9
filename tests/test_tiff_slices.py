"""The example source for a folder of TIFF slices (``examples/tiff_slices.py``): the
conformance kit on uncompressed, strip-compressed and tile-compressed slices, a filter
with a halo run over it in two worker processes against ``scipy.ndimage``, and the files it
does not need left unread."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile

import ndframework as ndf
from ndframework.testing import SourceConformance

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

from tiff_slices import MaximumFilter, TiffSlices, main, slice_files  # noqa: E402


class TestUncompressedTiffSlices(SourceConformance):
    def make_source(self, arrays, origin, directory):
        return TiffSlices.from_arrays(directory / "volume", arrays, origin)


class TestCompressedTiffSlices(SourceConformance):
    def make_source(self, arrays, origin, directory):
        return TiffSlices.from_arrays(directory / "volume", arrays, origin,
                                      compression="zlib", rowsperstrip=2)


@pytest.mark.parametrize("options, chunks", [
    ({}, (1, 37, 29)),
    ({"compression": "zlib", "rowsperstrip": 8}, (1, 8, 29)),
    ({"compression": "zlib", "tile": (16, 16)}, (1, 16, 16)),
    ({"compression": "zlib", "predictor": True, "tile": (16, 32)}, (1, 16, 32)),
])
def test_any_box_of_strips_or_tiles_reads_what_numpy_slices(tmp_path, options, chunks):
    volume = np.random.default_rng(1).integers(0, 2**16, (3, 37, 29), dtype=np.uint16)
    source = TiffSlices.from_arrays(tmp_path / "v", {"em": volume}, (0, 5, -7), **options)
    assert source.chunk_shape == chunks
    rng = np.random.default_rng(2)
    for _ in range(25):
        start = rng.integers(0, volume.shape)
        stop = [rng.integers(low, high + 1) for low, high in zip(start, volume.shape)]
        box = ndf.Box(start, stop)
        read = source.read(box.shift(source.bounds.start))["em"]
        np.testing.assert_array_equal(read, volume[box.slices()])


def test_a_halo_filter_in_two_processes_equals_scipy_and_resumes_from_its_journal(tmp_path):
    rng = np.random.default_rng(3)
    volume = {"dapi": rng.integers(0, 256, (9, 30, 26), dtype=np.uint8),
              "gfp": rng.integers(0, 9, (9, 30, 26), dtype=np.uint8)}
    source = TiffSlices.from_arrays(tmp_path / "volume", volume, (4, 0, 100),
                                    compression="zlib", rowsperstrip=8)
    sink = ndf.ZarrSink.create(tmp_path / "max.zarr", {"maximum": "uint8"}, source.bounds,
                               chunk_shape=(3, 8, 13))
    tiler = ndf.RegularTiler((3, 8, 13), origin=source.bounds.start)
    def pipeline():
        return ndf.Pipeline(source, MaximumFilter("dapi"), sink=sink, tiler=tiler,
                            executor=ndf.ProcessExecutor(2), journal=tmp_path / "run.sqlite")

    result = pipeline().run()
    assert result.ok and len(result.done) == 3 * 4 * 2
    again = pipeline().run()  # the journal has every block done
    assert again.ok and again.done == () and len(again.skipped) == 3 * 4 * 2
    maximum = ndf.ZarrSource(sink.path).read(source.bounds)["maximum"]
    expected = ndi.maximum_filter(volume["dapi"], (3, 5, 5), mode="nearest")
    np.testing.assert_array_equal(maximum, expected)
    assert (maximum != volume["dapi"]).any()  # the filter changed the data


def test_only_the_slices_and_strips_a_box_needs_are_read(tmp_path):
    volume = np.arange(4 * 32 * 8, dtype=np.uint16).reshape(4, 32, 8)
    source = TiffSlices.from_arrays(tmp_path / "v", {"em": volume}, compression="zlib",
                                    rowsperstrip=8)
    first, second, *_ = slice_files(tmp_path / "v" / "em")
    second.write_bytes(b"not a TIFF")
    with tifffile.TiffFile(first) as tif:  # spoil the last strip of the first slice
        offset = tif.pages.first.dataoffsets[-1]
    with open(first, "r+b") as file:
        file.seek(offset)
        file.write(b"\0" * 16)

    top = ndf.Box((0, 0, 0), (1, 24, 8))  # the first slice, its first three strips
    np.testing.assert_array_equal(source.read(top)["em"], volume[top.slices()])
    others = ndf.Box((2, 0, 0), (4, 32, 8))
    np.testing.assert_array_equal(source.read(others)["em"], volume[others.slices()])
    with pytest.raises(ndf.DataAccessError, match=rf"cannot read {first}: "):
        source.read(ndf.Box((0, 24, 0), (1, 25, 8)))
    with pytest.raises(ndf.DataAccessError, match=rf"cannot read {second}: "):
        source.read(ndf.Box((1, 0, 0), (2, 1, 1)))


def test_slices_are_ordered_by_the_numbers_in_their_names(tmp_path):
    folder = tmp_path / "v" / "em"
    folder.mkdir(parents=True)
    for z in (10, 2, 1):
        tifffile.imwrite(folder / f"slice_{z}.tif", np.full((2, 3), z, np.uint8))
    (folder / "notes.txt").write_text("not a slice")
    source = TiffSlices(tmp_path / "v")
    assert source.read(source.bounds)["em"][:, 0, 0].tolist() == [1, 2, 10]


@pytest.mark.parametrize("make, message", [
    (lambda root: None, r"no folder of TIFF slices at '.*missing'"),
    (lambda root: (root / "em").mkdir(parents=True), r"channel folder '.*em' holds no .tif"),
    (lambda root: TiffSlices.from_arrays(root, {"a": np.zeros((2, 3, 3), np.uint8),
                                                "b": np.zeros((3, 3, 3), np.uint8)}),
     r"must have one shape \(slices, y, x\), got 'a': \(2, 3, 3\), 'b': \(3, 3, 3\)"),
    (lambda root: (root / "rgb").mkdir(parents=True) or tifffile.imwrite(
        root / "rgb" / "z0.tif", np.zeros((4, 4, 3), np.uint8)),
     r"z0.tif holds 1 image\(s\), the first of shape \(4, 4, 3\); each slice must be one 2-D"),
])
def test_a_folder_that_is_not_a_volume_is_refused_naming_what_is_wrong(tmp_path, make,
                                                                       message):
    root = tmp_path / "missing"
    make(root)
    with pytest.raises(ndf.ConfigError, match=message):
        TiffSlices(root).bounds


def test_the_script_filters_its_synthetic_volume_and_describes_a_folder(tmp_path, capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "OK: 27 done, 0 failed" in out
    assert "equals scipy.ndimage on the whole volume: yes" in out
    TiffSlices.from_arrays(tmp_path / "v", {"em": np.zeros((4, 6, 5), np.uint8)})
    assert main([str(tmp_path / "v")]) == 0
    assert "channels em; region [0:4, 0:6, 0:5]; chunks (1, 6, 5)" in capsys.readouterr().out
    assert main([str(tmp_path / "nothing")]) == 2

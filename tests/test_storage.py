"""Sources and sinks: the conformance kit on each, and their own constructors' errors."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import ndframework as ndf
from ndframework.storage._zarr import ORIGIN_ATTRIBUTE, create_array
from ndframework.testing import SinkConformance, SourceConformance


def write_zarr(path, arrays, origin, chunks=(4, 4, 4)):
    group = zarr.open_group(str(path), mode="w")
    group.attrs[ORIGIN_ATTRIBUTE] = list(origin)
    for name, array in arrays.items():
        create_array(group, name, array.shape, chunks, array.dtype)
        group[name][...] = array
    return path


class TestInMemorySource(SourceConformance):
    def make_source(self, arrays, origin, directory):
        return ndf.InMemorySource(arrays, origin=origin)


class TestZarrSource(SourceConformance):
    def make_source(self, arrays, origin, directory):
        return ndf.ZarrSource(write_zarr(directory / "volume.zarr", arrays, origin))


class TestZarrSourceFromAGroup(SourceConformance):
    def make_source(self, arrays, origin, directory):
        path = write_zarr(directory / "volume.zarr", arrays, origin)
        return ndf.ZarrSource(zarr.open_group(str(path), mode="r"))


class TestInMemorySink(SinkConformance):
    def make_sink(self, dtypes, bounds, directory):
        return ndf.InMemorySink.zeros(dtypes, bounds)

    def read_back(self, sink):
        return sink.arrays


class TestZarrSink(SinkConformance):
    def make_sink(self, dtypes, bounds, directory):
        return ndf.ZarrSink.create(directory / "out.zarr", dtypes, bounds, chunk_shape=(3, 4, 5))

    def read_back(self, sink):
        group = zarr.open_group(sink.path, mode="r")
        return {name: group[name][...] for name in sink.channels}


def test_in_memory_source_refuses_arrays_of_different_shapes():
    with pytest.raises(ndf.ConfigError, match=r"one shape.*'a': \(2, 2, 2\).*'b': \(2, 2, 3\)"):
        ndf.InMemorySource({"a": np.zeros((2, 2, 2)), "b": np.zeros((2, 2, 3))})


def test_in_memory_source_refuses_arrays_that_are_not_3d():
    with pytest.raises(ndf.ConfigError, match=r"'a' must be a 3-D .* got 2-D with shape \(2, 2\)"):
        ndf.InMemorySource({"a": np.zeros((2, 2))})


def test_in_memory_source_needs_a_channel():
    with pytest.raises(ndf.ConfigError, match="at least one channel"):
        ndf.InMemorySource({})


def test_zarr_source_opens_nothing_until_used(tmp_path):
    source = ndf.ZarrSource(tmp_path / "missing.zarr")  # no error: no I/O yet
    with pytest.raises(ndf.ConfigError, match=r"no zarr store at '.*missing\.zarr'"):
        source.channels


def test_zarr_source_unknown_array_lists_the_arrays(tmp_path):
    path = write_zarr(tmp_path / "v.zarr", {"em": np.zeros((2, 2, 2), np.uint8)}, (0, 0, 0))
    with pytest.raises(ndf.ConfigError, match=r"no array 'raw'; arrays: 'em'"):
        ndf.ZarrSource(path, channels=["raw"]).bounds


def test_zarr_source_refuses_arrays_of_different_shapes(tmp_path):
    arrays = {"a": np.zeros((2, 2, 2), np.uint8)}
    path = write_zarr(tmp_path / "v.zarr", arrays, (0, 0, 0))
    group = zarr.open_group(str(path), mode="r+")
    create_array(group, "b", (3, 2, 2), (1, 1, 1), "uint8")
    with pytest.raises(ndf.ConfigError, match=r"one shape, got 'a': \(2, 2, 2\), 'b': \(3, 2, 2\)"):
        ndf.ZarrSource(path).bounds


def test_zarr_source_reports_its_chunk_shape(tmp_path):
    path = write_zarr(tmp_path / "v.zarr", {"em": np.zeros((8, 8, 8), np.uint8)}, (0, 0, 0),
                      chunks=(2, 4, 8))
    assert ndf.ZarrSource(path).chunk_shape == (2, 4, 8)


def test_zarr_sink_create_refuses_to_overwrite(tmp_path):
    bounds = ndf.Box((0, 0, 0), (2, 2, 2))
    ndf.ZarrSink.create(tmp_path / "o.zarr", {"a": "uint8"}, bounds)
    with pytest.raises(ndf.ConfigError, match=r"already exists.*overwrite=True"):
        ndf.ZarrSink.create(tmp_path / "o.zarr", {"a": "uint8"}, bounds)
    sink = ndf.ZarrSink.create(tmp_path / "o.zarr", {"b": "uint16"}, bounds, overwrite=True)
    assert sink.channels == ("b",)


def test_in_memory_sink_reports_no_chunks_and_in_process_only():
    sink = ndf.InMemorySink.zeros({"a": "uint8"}, (2, 2, 2))
    assert sink.chunk_shape is None and sink.in_process_only


# -- extension points: read_box / write_box, or read / write themselves -------------------

class RampSource(ndf.DataSource):
    """Overrides read() itself, as the design's contract describes a source."""

    channels = ("ramp",)
    bounds = ndf.Box((0, 0, 0), (4, 6, 8))

    def dtype(self, channel):
        return np.dtype("uint16")

    def read(self, box, channels=None):
        grid = np.indices(self.bounds.shape).sum(axis=0).astype("uint16")
        return {"ramp": grid[box.slices()].copy()}


class ListSink(ndf.DataSink):
    """Overrides write() itself."""

    channels = ("out",)
    bounds = ndf.Box((0, 0, 0), (4, 6, 8))
    in_process_only = True

    def __init__(self):
        self.written = []

    def dtype(self, channel):
        return np.dtype("uint16")

    def write(self, box, arrays):
        self.written.append((box, arrays["out"].sum()))


def test_a_source_and_sink_may_override_read_and_write_instead_of_the_box_primitives():
    source, sink = RampSource(), ListSink()
    result = ndf.Pipeline(source, lambda data: {"out": data["ramp"]}, sink=sink,
                          tiler=ndf.RegularTiler((2, 6, 8)), executor="serial").run()
    assert result.ok
    expected = np.indices((4, 6, 8)).sum(axis=0)
    assert sorted((b.start[0], int(total)) for b, total in sink.written) == [
        (0, int(expected[:2].sum())), (2, int(expected[2:].sum()))]
    # the primitives still exist and go through the overrides
    box = ndf.Box((1, 0, 0), (2, 1, 2))
    np.testing.assert_array_equal(source.read_box(box, ("ramp",))["ramp"], expected[1:2, :1, :2])


def test_a_source_without_read_or_read_box_cannot_be_made():
    class Empty(ndf.DataSource):
        channels = ("a",)
        bounds = ndf.Box((0, 0, 0), (1, 1, 1))

        def dtype(self, channel):
            return np.dtype("uint8")

    with pytest.raises(TypeError, match="abstract method"):
        Empty()


def test_an_in_memory_source_of_a_bare_array_says_how_to_name_its_channel():
    with pytest.raises(ndf.ConfigError, match=r"InMemorySource takes \{channel: ZYX array\}, "
                                              r"got an array of shape \(2, 3, 4\); name its "
                                              r"channel, e.g. InMemorySource\(\{'em': array\}\)"):
        ndf.InMemorySource(np.zeros((2, 3, 4)))


def test_in_memory_sink_zeros_takes_the_arguments_of_zarr_sink_create(tmp_path):
    bounds = ndf.Box((2, 0, 0), (4, 3, 5))
    memory = ndf.InMemorySink.zeros({"labels": "uint32"}, bounds)
    zarr_sink = ndf.ZarrSink.create(tmp_path / "out.zarr", {"labels": "uint32"}, bounds,
                                    chunk_shape=(1, 3, 5))
    assert memory.bounds == zarr_sink.bounds == bounds
    assert memory.dtype("labels") == zarr_sink.dtype("labels") == np.dtype("uint32")
    assert ndf.InMemorySink.zeros({"a": "uint8"}, (1, 2, 3)).bounds == ndf.Box((0, 0, 0),
                                                                            (1, 2, 3))
    with pytest.raises(ndf.ConfigError, match=r"takes \{channel: dtype\} first, as "
                                              r"ZarrSink.create\(path, dtypes, bounds\) does; "
                                              r"got \(1, 2, 3\)"):
        ndf.InMemorySink.zeros((1, 2, 3), {"a": "uint8"})


def test_a_read_override_that_calls_the_base_read_is_told_to_implement_read_box():
    class Logged(RampSource):
        def read(self, box, channels=None):
            return ndf.DataSource.read(self, box, channels)  # no read_box to reach

    with pytest.raises(TypeError, match=r"Logged.read\(\) calls the base class's read\(\), "
                                        r"which calls read_box\(box, channels\): implement "
                                        r"read_box\(box, channels\) in Logged"):
        Logged().read(ndf.Box((0, 0, 0), (1, 1, 1)))
    # and the source is usable again afterwards for a proper call path
    assert RampSource().read(ndf.Box((0, 0, 0), (1, 1, 2)))["ramp"].tolist() == [[[0, 1]]]


def test_a_write_override_that_calls_the_base_write_is_told_to_implement_write_box():
    class Logged(ListSink):
        def write(self, box, arrays):
            ndf.DataSink.write(self, box, arrays)  # no write_box to reach

    box = ndf.Box((0, 0, 0), (1, 1, 1))
    with pytest.raises(TypeError, match=r"Logged.write\(\) calls the base class's write\(\), "
                                        r"which calls write_box\(box, arrays\): implement "
                                        r"write_box\(box, arrays\) in Logged"):
        Logged().write(box, {"out": np.zeros((1, 1, 1), np.uint16)})


def test_in_memory_sink_zeros_names_a_bad_dtype():
    with pytest.raises(ndf.ConfigError, match=r"'uint77' of channel 'labels' is not a numpy "
                                              r"dtype"):
        ndf.InMemorySink.zeros({"labels": "uint77"}, (1, 2, 3))

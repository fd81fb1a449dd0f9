"""Conformance tests that every source and sink passes.

Subclass `SourceConformance` (or `SinkConformance`) in a pytest module and implement its
factory method; pytest then runs every test of the kit against your class::

    from ndframework.testing import SourceConformance

    class TestMySource(SourceConformance):
        def make_source(self, arrays, origin, directory):
            return MySource.from_arrays(directory / "vol", arrays, origin)

Numpy is the oracle: every read must equal numpy slicing of the arrays the source was built
from.
"""

from __future__ import annotations

import abc
import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..errors import ChannelError, OutOfBoundsError, OutputError
from ..geometry import Box
from ..storage import DataSink, DataSource
from ..tiling import RegularTiler
from .strategies import halos

__all__ = ["SourceConformance", "SinkConformance", "sample_arrays"]

ORIGIN = (3, -2, 5)
SHAPE = (6, 7, 8)


@st.composite
def _block_shapes(draw) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """Block shapes of at least 2 voxels except along one axis, which may be 1: the edge
    cases of thin blocks, while an example stays under about 100 reads for stores with a
    cost per request."""
    thin_axis = draw(st.integers(0, 2))
    return tuple(  # type: ignore[return-value]
        draw(st.integers(1 if axis == thin_axis else 2, 9)) for axis in range(3)
    )


def sample_arrays(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> dict[str, np.ndarray]:
    """Two channels of random data (uint8 and uint16) of ``shape``."""
    rng = np.random.default_rng(seed)
    return {
        "em": rng.integers(0, 256, shape, dtype=np.uint8),
        "mask": rng.integers(0, 2**16, shape, dtype=np.uint16),
    }


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Random values over the whole range of ``dtype`` (in [0, 1) for floats)."""
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _read_in_child(source: DataSource, box: Box) -> dict[str, np.ndarray]:
    return source.read(box)


# The fixtures are read-only across examples (function_scoped_fixture), and every subclass
# runs the same test method on its own source (differing_executors): both are intended.
_shared_settings = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)


class SourceConformance(abc.ABC):
    """The behaviour every `DataSource` must show. Subclass and implement `make_source`;
    set ``origin`` where a store cannot hold the default (e.g. no negative coordinates)."""

    origin: tuple[int, int, int] = ORIGIN
    """Where the kit places the first voxel of its arrays, (z, y, x)."""

    @abc.abstractmethod
    def make_source(
        self, arrays: dict[str, np.ndarray], origin: tuple[int, int, int], directory: Path
    ) -> DataSource:
        """A source holding ``arrays`` with their first voxel at ``origin``; ``directory`` is
        an empty folder for sources that live on disk."""

    @pytest.fixture
    def arrays(self) -> dict[str, np.ndarray]:
        return sample_arrays()

    @pytest.fixture
    def source(self, arrays: dict[str, np.ndarray], tmp_path: Path) -> DataSource:
        return self.make_source(arrays, self.origin, tmp_path)

    def test_metadata(self, source: DataSource, arrays: dict[str, np.ndarray]) -> None:
        assert sorted(source.channels) == sorted(arrays)
        assert source.bounds == Box.from_shape(arrays["em"].shape, self.origin)
        for name, array in arrays.items():
            assert source.dtype(name) == array.dtype
        chunks = source.chunk_shape
        assert chunks is None or (len(chunks) == 3 and min(chunks) >= 1)

    @_shared_settings
    @given(block_shape=_block_shapes(), halo=halos(4), channel_count=st.integers(1, 2))
    def test_every_block_read_equals_numpy(
        self, source: DataSource, arrays: dict[str, np.ndarray], block_shape, halo, channel_count
    ) -> None:
        channels = tuple(sorted(arrays))[:channel_count]
        tiler = RegularTiler(block_shape, halo=halo)
        for block in tiler.blocks(source.bounds):
            data = source.read(block.read_box, channels)
            assert sorted(data) == sorted(channels)
            local = block.read_box.relative_to(source.bounds).slices()
            for name in channels:
                assert data[name].dtype == arrays[name].dtype
                np.testing.assert_array_equal(data[name], arrays[name][local])

    def test_read_gives_writable_arrays_of_the_callers_own(self, source: DataSource) -> None:
        box = Box.from_shape((2, 3, 4), source.bounds.start)
        first = source.read(box)
        before = {name: array.copy() for name, array in first.items()}
        for array in first.values():
            assert array.flags.writeable
            array[...] = 1
        second = source.read(box)
        for name, array in second.items():
            np.testing.assert_array_equal(array, before[name])

    def test_empty_box_reads_empty_arrays(self, source: DataSource) -> None:
        box = Box(source.bounds.start, source.bounds.start)
        for name, array in source.read(box).items():
            assert array.shape == (0, 0, 0)
            assert array.dtype == source.dtype(name)

    def test_pickle_round_trip_before_and_after_use(
        self, source: DataSource, arrays: dict[str, np.ndarray]
    ) -> None:
        fresh = pickle.loads(pickle.dumps(source))
        box = source.bounds
        np.testing.assert_array_equal(fresh.read(box)["em"], arrays["em"])
        used = pickle.loads(pickle.dumps(fresh))
        np.testing.assert_array_equal(used.read(box)["mask"], arrays["mask"])

    def test_reads_in_a_worker_process(
        self, source: DataSource, arrays: dict[str, np.ndarray]
    ) -> None:
        source.read(source.bounds)  # open it here first: the child must open its own
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            data = pool.submit(_read_in_child, source, source.bounds).result(timeout=60)
        np.testing.assert_array_equal(data["em"], arrays["em"])

    def test_read_outside_the_bounds_names_the_region(self, source: DataSource) -> None:
        outside = source.bounds.grow((0, 0, 0), (0, 0, 1))
        with pytest.raises(OutOfBoundsError, match=r"outside the bounds") as info:
            source.read(outside)
        assert str(outside) in str(info.value)

    def test_unknown_channel_names_it_and_the_valid_ones(self, source: DataSource) -> None:
        with pytest.raises(ChannelError, match=r"unknown channel 'nope'.*'em'"):
            source.read(source.bounds, ["em", "nope"])


class SinkConformance(abc.ABC):
    """The behaviour every `DataSink` must show. Subclass and implement both methods."""

    @abc.abstractmethod
    def make_sink(
        self, dtypes: dict[str, str], bounds: Box, directory: Path
    ) -> DataSink:
        """An empty (zero-filled) sink with ``{channel: dtype}`` over ``bounds``."""

    @abc.abstractmethod
    def read_back(self, sink: DataSink) -> dict[str, np.ndarray]:
        """Everything ``sink`` holds, as ``{channel: ZYX array}`` over its bounds."""

    bounds = Box.from_shape(SHAPE, ORIGIN)
    """The region the kit's sinks cover."""
    dtypes = {"labels": "uint16", "prob": "float32"}
    """The kit's output channels. Keep a uint16 ``labels``; set the other to a dtype the
    store holds."""

    @pytest.fixture
    def sink(self, tmp_path: Path) -> DataSink:
        return self.make_sink(dict(self.dtypes), self.bounds, tmp_path)

    def test_metadata(self, sink: DataSink) -> None:
        assert sorted(sink.channels) == sorted(self.dtypes)
        assert sink.bounds == self.bounds
        for name, dtype in self.dtypes.items():
            assert sink.dtype(name) == np.dtype(dtype)

    @_shared_settings
    @given(block_shape=_block_shapes(), seed=st.integers(0, 2**16))
    def test_writing_every_block_round_trips(self, sink: DataSink, block_shape, seed) -> None:
        rng = np.random.default_rng(seed)
        expected = {
            name: _random(rng, self.bounds.shape, np.dtype(dtype))
            for name, dtype in self.dtypes.items()
        }
        tiler = RegularTiler(block_shape)
        for block in tiler.blocks(self.bounds):
            local = block.box.relative_to(self.bounds).slices()
            sink.write(block.box, {name: array[local] for name, array in expected.items()})
        stored = self.read_back(sink)
        for name, array in expected.items():
            np.testing.assert_array_equal(stored[name], array)

    def test_an_all_zero_write_overwrites(self, sink: DataSink) -> None:
        box = Box.from_shape((2, 3, 4), self.bounds.start)
        sink.write(box, {"labels": np.full(box.shape, 7, np.uint16)})
        sink.write(box, {"labels": np.zeros(box.shape, np.uint16)})
        assert not self.read_back(sink)["labels"].any()

    def test_pickle_round_trip(self, sink: DataSink) -> None:
        copy = pickle.loads(pickle.dumps(sink))
        assert copy.channels == sink.channels and copy.bounds == sink.bounds
        box = Box.from_shape((1, 2, 2), self.bounds.start)
        copy.write(box, {"labels": np.full(box.shape, 5, np.uint16)})
        assert self.read_back(copy)["labels"][0, 0, 0] == 5
        if not sink.in_process_only:  # both name the same storage; in memory, each its own
            assert self.read_back(sink)["labels"][0, 0, 0] == 5

    def test_wrong_shape_names_both_shapes(self, sink: DataSink) -> None:
        box = Box.from_shape((2, 3, 4), self.bounds.start)
        with pytest.raises(OutputError, match=r"shape \(2, 3, 3\).*\(2, 3, 4\)"):
            sink.write(box, {"labels": np.zeros((2, 3, 3), np.uint16)})

    def test_values_that_do_not_fit_the_dtype_are_refused(self, sink: DataSink) -> None:
        box = Box.from_shape((1, 1, 2), self.bounds.start)
        with pytest.raises(OutputError, match=r"70000.*0\.\.65535"):
            sink.write(box, {"labels": np.array([[[1, 70000]]], np.int64)})
        with pytest.raises(OutputError, match=r"float64.*uint16"):
            sink.write(box, {"labels": np.zeros(box.shape, np.float64)})

    def test_wider_integers_that_fit_are_stored(self, sink: DataSink) -> None:
        box = Box.from_shape((1, 1, 2), self.bounds.start)
        sink.write(box, {"labels": np.array([[[3, 65535]]], np.int64)})
        assert self.read_back(sink)["labels"][0, 0, :2].tolist() == [3, 65535]

    def test_unknown_channel_and_out_of_bounds(self, sink: DataSink) -> None:
        box = Box.from_shape((1, 1, 1), self.bounds.start)
        with pytest.raises(ChannelError, match=r"unknown channel 'nope'"):
            sink.write(box, {"nope": np.zeros(box.shape, np.uint16)})
        outside = box.shift((-1, 0, 0))
        with pytest.raises(OutOfBoundsError, match=r"outside the bounds"):
            sink.write(outside, {"labels": np.zeros(outside.shape, np.uint16)})

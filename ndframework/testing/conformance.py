"""Conformance tests that every source and sink passes.

What a source implements is ``read_box(box, channels)``, a sink's ``write_box(box,
arrays)``, besides ``channels``, ``bounds`` and ``dtype``: the pipeline calls the public
``read`` and ``write``, which check their arguments (a channel the store lacks is a
`ChannelError` naming the valid ones, a box outside the bounds an `OutOfBoundsError`, an
output of the wrong shape or with values its channel cannot hold an `OutputError`) and
then call the primitive with arguments it may trust. The kit calls ``read`` and ``write``
as the pipeline does, so it checks both the primitive and what it leaves to them. A store
that overrides ``read`` or ``write`` instead passes the same tests.

What the primitives must do, and the kit checks:

- ``read_box`` returns ``{channel: ZYX array}`` for exactly the channels asked, each
  equal to numpy slicing of the data, of the channel's dtype, **writable and the caller's
  own**: a new array, never a view of a cache, of the stored data, of another channel's
  array or of a buffer the next read reuses, since a processor may change it in place.
- ``write_box`` stores what it is given, zeros included, casting to the channel's dtype
  (a wider integer array whose values fit is passed on as it is).
- **Pickling for worker processes**: a store pickles before and after use, the copy reads
  (or writes) the same data, a spawned process reads with a copy of it, and its
  ``describe()``, which a run's journal records, is the same text for the copy.
- **Threads**: reads from several threads at once, from the very first, and writes of
  separate chunks at once, give what one thread would.

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
import itertools
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Sequence, TypeVar

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
CHANNELS = ("em", "mask")
"""The channels of `sample_arrays`."""
THREADS = 4

T = TypeVar("T")
R = TypeVar("R")


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


def _at_once(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``function`` of each item, from `THREADS` threads that start together (so that a
    store's first use, when it opens what it needs, happens in all of them at once)."""
    start = threading.Barrier(THREADS)

    def share(first: int) -> list[R]:
        start.wait(timeout=60)
        return [function(item) for item in items[first::THREADS]]

    with ThreadPoolExecutor(THREADS) as pool:
        shares = [pool.submit(share, first) for first in range(THREADS)]
        results = [share.result(timeout=120) for share in shares]
    return [results[i % THREADS][i // THREADS] for i in range(len(items))]


# The fixtures are read-only across examples (function_scoped_fixture), and every subclass
# runs the same test method on its own source (differing_executors): both are intended.
_shared_settings = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)


class SourceConformance(abc.ABC):
    """The behaviour every `DataSource` must show. Subclass and implement `make_source`;
    set ``origin`` where a store cannot hold the default (e.g. no negative coordinates).

    The source under test implements ``channels``, ``bounds``, ``dtype`` and
    ``read_box(box, channels)``; `DataSource.read` checks the box and channels before it
    calls ``read_box``. The kit reads through ``read``: every block (any shape, any halo,
    one channel or both) equals numpy slicing, in the channel's dtype, as does a read of
    any choice and order of channels; the
    arrays are writable and the caller's own; empty boxes read empty arrays; the source
    pickles before and after use, describes itself alike once copied, and reads in a
    spawned process; threads read it at once from its first use; and reading outside the
    bounds or an unknown channel is refused with the error ``read`` promises.
    """

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
        assert sorted(source.channels) == sorted(arrays), (
            f"channels {source.channels}, expected {tuple(arrays)}")
        expected = Box.from_shape(arrays["em"].shape, self.origin)
        assert source.bounds == expected, f"bounds {source.bounds}, expected {expected}"
        for name, array in arrays.items():
            assert source.dtype(name) == array.dtype, (
                f"dtype({name!r}) is {source.dtype(name)}, expected {array.dtype}")
        chunks = source.chunk_shape
        assert chunks is None or (len(chunks) == 3 and min(chunks) >= 1), (
            f"chunk_shape must be None or three positive integers (z, y, x), got {chunks!r}")

    @_shared_settings
    @given(block_shape=_block_shapes(), halo=halos(4), channel_count=st.integers(1, 2))
    def test_every_block_read_equals_numpy(
        self, source: DataSource, arrays: dict[str, np.ndarray], block_shape, halo, channel_count
    ) -> None:
        channels = tuple(sorted(arrays))[:channel_count]
        tiler = RegularTiler(block_shape, halo=halo)
        for block in tiler.blocks(source.bounds):
            data = source.read(block.read_box, channels)
            assert sorted(data) == sorted(channels), (
                f"read({block.read_box}, {channels}) gave the channels {sorted(data)}: "
                f"read_box must return exactly the channels asked for")
            local = block.read_box.relative_to(source.bounds).slices()
            for name in channels:
                assert data[name].dtype == arrays[name].dtype, (
                    f"read_box gave {name!r} as {data[name].dtype}; the channel is "
                    f"{arrays[name].dtype}")
                np.testing.assert_array_equal(
                    data[name], arrays[name][local],
                    err_msg=f"channel {name!r} of {block.read_box} (channels {channels})")

    def test_any_choice_and_order_of_channels_reads_those_channels(
        self, source: DataSource, arrays: dict[str, np.ndarray]
    ) -> None:
        box = source.bounds
        for channels in (CHANNELS[1:], CHANNELS[::-1]):
            data = source.read(box, channels)
            assert sorted(data) == sorted(channels), (
                f"read(box, {channels}) gave the channels {sorted(data)}")
            for name in channels:
                assert data[name].dtype == arrays[name].dtype, (
                    f"read(box, {channels}) gave {name!r} as {data[name].dtype}; the "
                    f"channel is {arrays[name].dtype}")
                np.testing.assert_array_equal(
                    data[name], arrays[name],
                    err_msg=f"channel {name!r} read with the channels {channels}")

    def test_read_gives_writable_arrays_of_the_callers_own(self, source: DataSource) -> None:
        box = Box.from_shape((2, 3, 4), source.bounds.start)
        first = source.read(box)
        before = {name: array.copy() for name, array in first.items()}
        for name, array in first.items():
            assert array.flags.writeable, (
                f"read_box gave a read-only array for {name!r}: return a copy the caller "
                f"may change")
            array[...] = 1
        for (name, array), (other, other_array) in itertools.combinations(first.items(), 2):
            assert not np.shares_memory(array, other_array), (
                f"read_box gave {name!r} and {other!r} in one memory")
        second = source.read(box)
        for name, array in second.items():
            np.testing.assert_array_equal(
                array, before[name], err_msg=f"a change to the array read for {name!r} "
                f"reached the source: read_box must return copies, not views of its data")
        for name, array in first.items():
            assert (array == 1).all(), (
                f"reading again changed the array read before for {name!r}: read_box must "
                f"not hand out a buffer it reuses")

    def test_empty_box_reads_empty_arrays(self, source: DataSource) -> None:
        box = Box(source.bounds.start, source.bounds.start)
        for name, array in source.read(box).items():
            assert array.shape == (0, 0, 0), f"an empty box read {name!r} as {array.shape}"
            assert array.dtype == source.dtype(name), (
                f"an empty box read {name!r} as {array.dtype}; the channel is "
                f"{source.dtype(name)}")

    def test_pickle_round_trip_before_and_after_use(
        self, source: DataSource, arrays: dict[str, np.ndarray]
    ) -> None:
        fresh = pickle.loads(pickle.dumps(source))
        box = source.bounds
        np.testing.assert_array_equal(fresh.read(box)["em"], arrays["em"])
        used = pickle.loads(pickle.dumps(fresh))
        np.testing.assert_array_equal(used.read(box)["mask"], arrays["mask"])
        assert fresh.describe() == used.describe() == source.describe(), (
            "describe() must be the same text for the same data, pickled or not, before "
            "and after reads: a run's journal recognises the run by it")

    def test_reads_from_several_threads_at_once_equal_numpy(
        self, source: DataSource, arrays: dict[str, np.ndarray]
    ) -> None:
        boxes = [block.read_box for block in RegularTiler((2, 3, 3), halo=1).blocks(
            source.bounds)]
        for box, data in zip(boxes, _at_once(source.read, boxes)):
            local = box.relative_to(source.bounds).slices()
            for name, array in arrays.items():
                np.testing.assert_array_equal(
                    data[name], array[local],
                    err_msg=f"channel {name!r} of {box}, read by one of {THREADS} threads "
                    f"at once: worker threads share one source")

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
    """The behaviour every `DataSink` must show. Subclass and implement both methods.

    The sink under test implements ``channels``, ``bounds``, ``dtype`` and
    ``write_box(box, arrays)``, and declares ``chunk_shape``; `DataSink.write` checks the
    box, the channels, the arrays' shapes and that their values fit before it calls
    ``write_box``. The kit writes through ``write``: every block written round-trips, an
    all-zero write overwrites, wider integers whose values fit are stored, threads write
    separate chunks at once, a pickled copy writes to the same storage (unless
    ``in_process_only``), and bad writes are refused with the error ``write`` promises.
    """

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

    def test_writes_of_separate_chunks_from_several_threads_at_once(self, sink: DataSink) -> None:
        rng = np.random.default_rng(7)
        expected = {
            name: _random(rng, self.bounds.shape, np.dtype(dtype))
            for name, dtype in self.dtypes.items()
        }
        tiler = RegularTiler(sink.chunk_shape or (2, 3, 4), origin=sink.chunk_origin)

        def write(box: Box) -> None:
            local = box.relative_to(self.bounds).slices()
            sink.write(box, {name: array[local] for name, array in expected.items()})

        _at_once(write, [block.box for block in tiler.blocks(self.bounds)])
        stored = self.read_back(sink)
        for name, array in expected.items():
            np.testing.assert_array_equal(
                stored[name], array, err_msg=f"channel {name!r} after {THREADS} threads "
                f"wrote separate chunks at once: worker threads share one sink")

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

"""The conformance kit fails the sources and sinks that break the contract the docs state:
each store here implements its primitive wrongly in one way, and the kit's test for it
fails (numpy as the oracle of what a correct store returns)."""

from __future__ import annotations

import inspect
import time

import numpy as np
import pytest

import ndframework as ndf
from ndframework.testing import SinkConformance, SourceConformance, sample_arrays

ORIGIN = (3, -2, 5)
SHAPE = (2, 3, 4)  # the smallest volume the kit's tests read: failing examples shrink fast


class Stored(ndf.DataSource):
    """A correct source over numpy arrays; the broken ones below change one thing."""

    def __init__(self, arrays, origin=ORIGIN):
        self.arrays = {name: np.array(array) for name, array in arrays.items()}
        self._bounds = ndf.Box.from_shape(next(iter(self.arrays.values())).shape, origin)

    channels = property(lambda self: tuple(self.arrays))
    bounds = property(lambda self: self._bounds)

    def dtype(self, channel):
        return self.arrays[channel].dtype

    def part(self, name, box):
        return self.arrays[name][box.relative_to(self.bounds).slices()]

    def read_box(self, box, channels):
        return {name: self.part(name, box).copy() for name in channels}


class ViewsOfItsArrays(Stored):
    def read_box(self, box, channels):
        return {name: self.part(name, box) for name in channels}


class ReusesABuffer(Stored):
    """Copies into one buffer per channel, which the next read overwrites."""

    def read_box(self, box, channels):
        buffers = self.__dict__.setdefault("buffers", {})
        out = {}
        for name in channels:
            buffer = buffers.get((name, box.shape))
            if buffer is None:
                buffer = buffers[(name, box.shape)] = np.empty(box.shape, self.dtype(name))
            buffer[...] = self.part(name, box)
            out[name] = buffer
        return out


class ReadOnly(Stored):
    def read_box(self, box, channels):
        return {name: np.broadcast_to(self.part(name, box), box.shape) for name in channels}


class OneArrayForBoth(Stored):
    """Returns one array under every name when every channel holds the same values."""

    def read_box(self, box, channels):
        shared = self.part(channels[0], box).copy()
        return {name: shared for name in channels}


class NativeDtype(Stored):
    def read_box(self, box, channels):
        return {name: self.part(name, box).astype(np.int64) for name in channels}


class ChannelsByPosition(Stored):
    """Gives the first channels' data under the names asked for."""

    def read_box(self, box, channels):
        return {name: self.part(stored, box).copy()
                for name, stored in zip(channels, self.channels)}


class OpensUnguarded(Stored):
    """Opens its channels one by one on first use, visible before it is done: a second
    thread finds the table and misses the channels not yet opened."""

    opened = None

    def read_box(self, box, channels):
        if self.opened is None:
            self.opened = {}
            for name in self.channels:
                time.sleep(0.005)  # opening a file
                self.opened[name] = self.arrays[name]
        return {name: self.opened[name][box.relative_to(self.bounds).slices()].copy()
                for name in channels}


class DescribesItsReads(Stored):
    reads = 0

    def read_box(self, box, channels):
        self.reads += 1
        return super().read_box(box, channels)

    def describe(self):
        return f"Stored after {self.reads} reads"


class SourceKit(SourceConformance):
    """The kit, given a store class (not named Test*: pytest would run it on its own)."""

    def __init__(self, kind):
        self.kind = kind

    def make_source(self, arrays, origin, directory):
        return self.kind(arrays, origin)

    def run(self, test):
        """Run the kit's ``test`` as pytest would, with its fixtures."""
        method = getattr(self, test)
        arrays = sample_arrays(SHAPE)
        fixtures = {"source": self.make_source(arrays, self.origin, None), "arrays": arrays}
        wanted = inspect.signature(method).parameters
        method(**{name: value for name, value in fixtures.items() if name in wanted})


def test_the_kit_passes_a_correct_source():
    kit = SourceKit(Stored)
    for test in ("test_every_block_read_equals_numpy",
                 "test_any_choice_and_order_of_channels_reads_those_channels",
                 "test_read_gives_writable_arrays_of_the_callers_own",
                 "test_pickle_round_trip_before_and_after_use",
                 "test_reads_from_several_threads_at_once_equal_numpy"):
        kit.run(test)


@pytest.mark.parametrize("kind, test, message", [
    (ViewsOfItsArrays, "test_read_gives_writable_arrays_of_the_callers_own",
     "reached the source: read_box must return copies"),
    (ReusesABuffer, "test_read_gives_writable_arrays_of_the_callers_own",
     "reading again changed the array read before for 'em'"),
    (ReadOnly, "test_read_gives_writable_arrays_of_the_callers_own",
     "read_box gave a read-only array for 'em'"),
    (OneArrayForBoth, "test_read_gives_writable_arrays_of_the_callers_own",
     "read_box gave 'em' and 'mask' in one memory"),
    (NativeDtype, "test_empty_box_reads_empty_arrays", "an empty box read 'em' as int64"),
    (ChannelsByPosition, "test_any_choice_and_order_of_channels_reads_those_channels",
     r"read\(box, \('mask',\)\) gave 'mask' as uint8; the channel is uint16"),
    (DescribesItsReads, "test_pickle_round_trip_before_and_after_use",
     "describe\\(\\) must be the same text"),
])
def test_the_kit_fails_a_source_that_breaks_the_contract(kind, test, message):
    with pytest.raises(AssertionError, match=message):
        SourceKit(kind).run(test)


def test_the_kit_fails_a_source_that_threads_cannot_share():
    with pytest.raises(KeyError):
        SourceKit(OpensUnguarded).run("test_reads_from_several_threads_at_once_equal_numpy")
    SourceKit(OpensUnguarded).run("test_every_block_read_equals_numpy")  # alone, it reads


class ReplacesItsArrays(ndf.DataSink):
    """Writes by copying the whole channel, changing the copy and putting it back: two
    writes at once lose one of them."""

    in_process_only = True

    def __init__(self, dtypes, bounds):
        self.arrays = {name: np.zeros(bounds.shape, dtype) for name, dtype in dtypes.items()}
        self._bounds = bounds

    channels = property(lambda self: tuple(self.arrays))
    bounds = property(lambda self: self._bounds)

    def dtype(self, channel):
        return self.arrays[channel].dtype

    def write_box(self, box, arrays):
        for name, array in arrays.items():
            changed = self.arrays[name].copy()
            time.sleep(0.005)  # reading the file
            changed[box.relative_to(self.bounds).slices()] = array
            self.arrays[name] = changed


class SinkKit(SinkConformance):
    def make_sink(self, dtypes, bounds, directory):
        return ReplacesItsArrays(dtypes, bounds)

    def read_back(self, sink):
        return sink.arrays


def test_the_kit_fails_a_sink_that_threads_cannot_share():
    kit = SinkKit()
    kit.test_an_all_zero_write_overwrites(sink=kit.make_sink(kit.dtypes, kit.bounds, None))
    with pytest.raises(AssertionError, match="threads wrote separate chunks at once"):
        kit.test_writes_of_separate_chunks_from_several_threads_at_once(
            sink=kit.make_sink(kit.dtypes, kit.bounds, None))

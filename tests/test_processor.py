"""What users write: a `BlockProcessor` subclass or a plain function, its halo, its declared
outputs and what it may return, each refused with a clear error when it cannot work."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest

import ndframework as ndf
from ndframework.processor import takes_block


class Labels(ndf.BlockProcessor):
    outputs = {"labels": "uint16"}

    def process(self, data, block):
        return {"labels": block.crop(data["em"]).astype(np.uint16)}


class Sum(ndf.BlockProcessor):
    def process(self, data, block):
        return int(data["em"].sum())


# -- BlockProcessor and BlockOutput -------------------------------------------------------

def test_a_processor_must_define_process():
    class Nothing(ndf.BlockProcessor):
        pass

    with pytest.raises(TypeError, match=r"abstract method '?process"):
        Nothing()


def test_a_block_output_equals_another_with_the_same_arrays_and_value_and_does_not_hash():
    arrays = {"labels": np.arange(8).reshape(2, 2, 2)}
    assert ndf.BlockOutput(arrays, 3) == ndf.BlockOutput({"labels": np.arange(8).reshape(
        2, 2, 2)}, 3)
    assert ndf.BlockOutput(arrays, 3) != ndf.BlockOutput(arrays, 4)
    assert ndf.BlockOutput(arrays) != ndf.BlockOutput({"labels": np.zeros((2, 2, 2))})
    assert ndf.BlockOutput() == ndf.BlockOutput({}, None)
    with pytest.raises(TypeError, match="unhashable"):
        hash(ndf.BlockOutput(arrays))


def test_reduce_returns_the_values_and_a_fold_starts_from_a_copy_of_initial():
    values = {"0_0_0": 2, "0_0_4": 5}
    assert Sum().reduce_values(values) is values and not Sum().folds

    class Collect(Sum):
        initial = []

        def fold(self, accumulator, key, value):
            accumulator.append((key, value))
            return accumulator

    assert Collect().folds
    assert Collect().reduce_values(values) == [("0_0_0", 2), ("0_0_4", 5)]
    assert Collect().reduce_values(values) == [("0_0_0", 2), ("0_0_4", 5)]  # not appended to
    assert Collect.initial == []


# -- halo ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("halo", "before", "after"), [
    (2, (2, 2, 2), (2, 2, 2)),
    ((0, 1, 2), (0, 1, 2), (0, 1, 2)),
    (((1, 0, 0), (0, 0, 3)), (1, 0, 0), (0, 0, 3)),
])
def test_a_halo_setting_becomes_a_halo(halo, before, after):
    class Filter(Sum):
        pass

    Filter.halo = halo
    assert Filter().effective_halo == ndf.Halo(before, after)
    assert ndf.FunctionProcessor(len, halo=halo).halo == ndf.Halo(before, after)
    assert Sum().effective_halo.is_zero and ndf.FunctionProcessor(len).halo.is_zero


def test_a_bad_halo_is_refused_before_work_starts(source):
    with pytest.raises(ndf.GeometryError, match=r"halo must be non-negative"):
        ndf.FunctionProcessor(len, halo=-1)

    calls = []

    class Negative(ndf.BlockProcessor):
        halo = (0, -1, 0)

        def process(self, data, block):
            calls.append(block.key)

    with pytest.raises(ndf.GeometryError, match=r"halo must be non-negative"):
        ndf.Pipeline(source, Negative(), tiler=ndf.RegularTiler(5), executor="serial").run()
    assert calls == []


# -- FunctionProcessor --------------------------------------------------------------------

def test_a_plain_function_is_wrapped(source):
    result = ndf.Pipeline(source, lambda data: sorted(data), executor="threads",
                          tiler=ndf.RegularTiler((10, 24, 20), origin=(0, 100, 200))).run()
    assert result.reduced == {"0_100_200": ["em", "mask"]}


def test_a_function_of_data_and_block_gets_the_block(source):
    result = ndf.Pipeline(source, lambda data, block: (block.key, data["em"].shape),
                          executor="serial",
                          tiler=ndf.RegularTiler((5, 24, 20), origin=(0, 100, 200))).run()
    assert dict(result.values) == {"0_100_200": ("0_100_200", (5, 24, 20)),
                                   "5_100_200": ("5_100_200", (5, 24, 20))}


def test_function_processor_needs_a_callable():
    with pytest.raises(ndf.ConfigError, match=r"FunctionProcessor needs a callable, got 3"):
        ndf.FunctionProcessor(3)


def test_whether_a_function_takes_the_block_is_read_from_its_signature():
    def data_only(data, threshold=3):
        return 0

    def data_and_block(data, block, *, threshold=3):
        return 0

    class Method:
        def process(self, data, block):
            return 0

    assert not takes_block(data_only) and takes_block(data_and_block)
    assert takes_block(Method().process)
    assert takes_block(functools.partial(lambda data, block, scale: 0, scale=2))
    assert not takes_block(len)  # a builtin's signature says nothing: function(data)
    assert not takes_block(lambda *arrays: 0)
    assert ndf.FunctionProcessor(data_and_block).pass_block
    assert not ndf.FunctionProcessor(data_and_block, pass_block=False).pass_block
    assert ndf.FunctionProcessor(lambda *a: a, pass_block=True).process({}, "b") == ({}, "b")


def test_a_function_that_needs_more_than_data_and_block_is_refused_naming_its_signature(source):
    def segment(data, block, threshold):
        return 0

    with pytest.raises(ndf.ConfigError, match=re.escape(
            "segment(data, block, threshold) cannot be called on a block: it is called as "
            "function(data) or function(data, block); give the other parameters defaults, "
            "or bind them with functools.partial")):
        ndf.Pipeline(source, segment)
    assert ndf.FunctionProcessor(functools.partial(segment, threshold=3)).pass_block


def test_a_function_with_a_required_keyword_parameter_is_refused(source):
    def segment(data, *, threshold):
        return 0

    with pytest.raises(ndf.ConfigError, match=re.escape(
            "segment(data, *, threshold) cannot be called on a block")):
        ndf.FunctionProcessor(segment)


def test_retry_on_is_validated():
    with pytest.raises(ndf.ConfigError, match=r"retry_on must be exception classes.*'oops'"):
        ndf.FunctionProcessor(len, retry_on=("oops",))
    assert ndf.FunctionProcessor(len, retry_on=OSError).retry_on == (OSError,)


# -- outputs: declared, or returned without a sink ----------------------------------------

def test_a_processor_that_declares_outputs_needs_a_sink_before_the_run(source):
    with pytest.raises(ndf.ConfigError, match=r"Labels writes outputs \(labels:uint16\) but "
                                              r"the pipeline has no sink: give sink="):
        ndf.Pipeline(source, Labels(), executor="serial").run()


def test_declared_outputs_must_be_channels_the_sink_can_hold(source):
    narrow = ndf.InMemorySink.zeros({"labels": "uint8"}, source.bounds)
    with pytest.raises(ndf.ConfigError, match=r"writes 'labels' as uint16, which the sink's "
                                              r"uint8 cannot hold"):
        ndf.Pipeline(source, Labels(), executor="serial", sink=narrow).plan()
    other = ndf.InMemorySink.zeros({"seg": "uint16"}, source.bounds)
    with pytest.raises(ndf.ConfigError, match=r"writes channel 'labels', which the sink .* "
                                              r"lacks; its channels: 'seg'"):
        ndf.Pipeline(source, Labels(), executor="serial", sink=other).plan()
    sink = ndf.InMemorySink.zeros({"labels": "uint32"}, source.bounds)
    assert ndf.Pipeline(source, Labels(), executor="serial", sink=sink).run().ok
    np.testing.assert_array_equal(sink.arrays["labels"], source.read(source.bounds)["em"])


@pytest.mark.parametrize("outputs, message", [
    ({"labels": "uint77"}, r"outputs: channel 'labels': 'uint77' is not a numpy dtype; "
                           r"valid: uint8, uint16"),
    ({"labels": None}, r"outputs: channel 'labels': 'None' is not a numpy dtype"),
    ({"labels": "U10"}, r"outputs: channel 'labels': <U10 is not a number type an output "
                        r"channel can store"),
    ({}, r"outputs must be a non-empty \{channel: dtype\} mapping"),
    ({"": "uint8"}, r"channel names must be non-empty strings, got ''"),
])
def test_bad_declared_outputs_are_named(source, outputs, message):
    with pytest.raises(ndf.ConfigError, match=message):
        ndf.FunctionProcessor(lambda data: None, outputs=outputs)


def test_declared_outputs_become_numpy_dtypes():
    assert Labels().effective_outputs == {"labels": np.dtype("uint16")}
    assert ndf.FunctionProcessor(len, outputs={"a": "f4", "b": bool}).outputs == {
        "a": np.dtype("float32"), "b": np.dtype("bool")}
    assert Sum().effective_outputs is None

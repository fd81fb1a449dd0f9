"""Value classes of results and outputs compare by content and hash where they can."""

from __future__ import annotations

import numpy as np
import pytest

import ndframework as ndf
from ndframework._equality import same


def test_block_outputs_compare_their_arrays_and_values_by_content():
    labels = np.arange(8, dtype=np.uint32).reshape(2, 2, 2)
    output = ndf.BlockOutput({"labels": labels}, value={"count": np.int64(3)})
    assert output == ndf.BlockOutput({"labels": labels.copy()}, value={"count": 3})
    assert output != ndf.BlockOutput({"labels": labels + 1}, value={"count": 3})
    assert output != ndf.BlockOutput({"labels": labels.astype(np.uint16)}, value={"count": 3})
    assert output != ndf.BlockOutput({"labels": labels}, value={"count": 4})
    with pytest.raises(TypeError, match="unhashable"):
        hash(output)


def test_block_outcomes_compare_values_by_content_and_hash_without_them():
    first = ndf.BlockOutcome("0_0_0", "done", value=np.zeros(3))
    again = ndf.BlockOutcome("0_0_0", "done", value=np.zeros(3))
    other = ndf.BlockOutcome("0_0_0", "done", value=np.ones(3))
    assert first == again and first != other
    assert hash(first) == hash(again) == hash(other)  # equal outcomes hash alike
    assert len({first, again}) == 1


def test_results_hash_by_identity():
    source = ndf.InMemorySource({"em": np.zeros((2, 2, 2), np.uint8)})
    result = ndf.Pipeline(source, lambda data: 1, executor="serial").run()
    assert {result: "kept"}[result] == "kept" and result == result


@pytest.mark.parametrize("a, b, equal", [
    (np.arange(3), np.arange(3), True),
    (np.arange(3), np.arange(3.0), False),  # dtypes differ
    (np.zeros((2, 1)), np.zeros((1, 2)), False),
    (np.array([np.nan]), np.array([np.nan]), True),
    ({"a": [1, (2, np.ones(2))]}, {"a": [1, (2, np.ones(2))]}, True),
    ({"a": 1}, {"b": 1}, False),
    ([1, 2], (1, 2), False),
    (float("nan"), float("nan"), True),
    (np.arange(2), [0, 1], False),
])
def test_same_compares_nested_arrays_by_content(a, b, equal):
    assert same(a, b) is equal and same(b, a) is equal


def test_the_version_is_the_installed_distribution_s():
    from importlib.metadata import version

    assert ndf.__version__ == version("ndframework")


def test_errors_are_made_with_their_context():
    error = ndf.DataAccessError("the BOSS is down", key="0_0_0", traceback="Traceback ...")
    assert (error.key, error.result, error.traceback) == ("0_0_0", None, "Traceback ...")
    with_result = error.with_result("the result")
    assert type(with_result) is ndf.DataAccessError and str(with_result) == "the BOSS is down"
    assert (with_result.key, with_result.result, with_result.traceback) == (
        "0_0_0", "the result", "Traceback ...")
    config = ndf.ConfigError("bad block shape", (0, 1, 1), result="r")
    assert (config.value, config.result) == ((0, 1, 1), "r")
    assert config.with_result("s").value == (0, 1, 1)


def test_a_stopped_run_raises_an_error_made_with_its_result_and_the_worker_traceback():
    class Broken(ndf.BlockProcessor):
        def setup(self):
            raise FileNotFoundError("model.pt")

        def process(self, data, block):
            return 1

    source = ndf.InMemorySource({"em": np.zeros((2, 2, 2), np.uint8)})
    with pytest.raises(ndf.SetupError) as caught:
        ndf.Pipeline(source, Broken(), executor="serial").run()
    assert caught.value.result is not None and caught.value.result.counts.failed == 1
    assert "FileNotFoundError: model.pt" in caught.value.traceback

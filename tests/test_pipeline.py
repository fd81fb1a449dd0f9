"""The pipeline: results equal numpy on every executor, failures are honest, bad input is
refused before work starts."""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings

import ndframework as ndf
from ndframework.testing.strategies import halos, triples, volumes
from conftest import all_executors
from processors import (
    BrokenSource,
    CrashOn,
    FailOn,
    Identity,
    NeighbourhoodSum,
    RecordWorkers,
    Rendezvous,
    neighbourhood_sum,
)


def read_zarr(sink):
    group = zarr.open_group(sink.path, mode="r")
    return {name: group[name][...] for name in sink.channels}


def test_halo_processor_output_equals_numpy_on_every_executor(executor, source, volume,
                                                              tmp_path):
    sink = ndf.ZarrSink.create(tmp_path / "out.zarr", {"total": "uint32"}, source.bounds,
                               chunk_shape=(4, 8, 8))
    pipeline = ndf.Pipeline(source, NeighbourhoodSum(), tiler=ndf.RegularTiler(
        (4, 8, 8), origin=source.bounds.start), executor=executor, sink=sink)
    result = pipeline.run()
    assert result.ok, result.summary()
    assert len(result.done) == 3 * 3 * 3 == result.run.block_count
    np.testing.assert_array_equal(read_zarr(sink)["total"], neighbourhood_sum(volume["em"]))
    assert result.reduced == int(volume["em"].astype(np.int64).sum())
    assert set(result.timings) == set(result.done)
    assert all(result.attempts[key] == 1 for key in result.done)


def run_everywhere(arrays, block_shape, halo, workdir):
    """Run an identity processor and a halo processor on every executor; return results."""
    source = ndf.InMemorySource(arrays, origin=(1, -3, 2))
    outcomes = []
    for number, executor in enumerate(all_executors()):
        sink = ndf.ZarrSink.create(
            Path(workdir, f"out{number}.zarr"),
            {name: array.dtype for name, array in arrays.items()},
            source.bounds, chunk_shape=block_shape,
        )
        tiler = ndf.RegularTiler(block_shape, halo=halo, origin=source.bounds.start)
        identity = ndf.Pipeline(source, Identity(), tiler=tiler, executor=executor, sink=sink)
        sums = ndf.Pipeline(source, lambda data: {k: float(v.sum()) for k, v in data.items()},
                            tiler=tiler, executor=executor)
        outcomes.append((identity.run(), read_zarr(sink), sums.run()))
    return outcomes


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(arrays=volumes(max_extent=9, dtypes=("uint8", "uint16", "float32")),
       block_shape=triples(2, 5), halo=halos(3))
def test_every_executor_gives_identical_results(arrays, block_shape, halo):
    with tempfile.TemporaryDirectory() as workdir:
        outcomes = run_everywhere(arrays, block_shape, halo, workdir)
    first_identity, _, first_sums = outcomes[0]
    for identity, written, sums in outcomes:
        assert identity.ok and sums.ok
        for name, array in arrays.items():  # numpy is the oracle
            np.testing.assert_array_equal(written[name], array)
        assert identity.done == first_identity.done
        assert sums.done == first_sums.done
        assert sums.values == first_sums.values
        assert sums.reduced == first_sums.reduced


def test_a_failing_block_is_recorded_and_the_rest_complete(executor, source):
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    keys = [block.key for block in tiler.blocks(source.bounds)]
    bad = {keys[1], keys[5]}
    result = ndf.Pipeline(source, FailOn(bad), tiler=tiler, executor=executor).run()
    assert not result.ok
    assert set(result.failed) == bad
    assert result.done == tuple(key for key in keys if key not in bad)
    for key in bad:
        failure = result.failed[key]
        assert failure.error == f"ValueError: cannot handle block {key}"
        assert "raise ValueError" in failure.traceback and "processors.py" in failure.traceback
        assert failure.attempts == 1
    assert result.not_run == () and result.stopped is None
    assert set(result.reduced) == set(result.done)
    assert "2 failed" in result.summary()


def test_a_data_access_error_stops_the_run_and_names_the_block(volume):
    bad_box = ndf.Box((5, 0, 0), (6, 1, 1))
    source = BrokenSource(volume, bad_box)
    tiler = ndf.RegularTiler((5, 12, 10))
    with pytest.raises(ndf.DataAccessError) as info:
        ndf.Pipeline(source, lambda data: 1, tiler=tiler, executor="serial").run()
    error = info.value
    assert error.key == "5_0_0"
    assert "data access failed for block 5_0_0" in str(error)
    assert "ConnectionResetError: connection reset while reading [5:10, 0:12, 0:10]" in str(error)
    result = error.result
    assert result.done == ("0_0_0", "0_0_10", "0_12_0", "0_12_10")
    assert list(result.failed) == ["5_0_0"]
    assert result.not_run == ("5_0_10", "5_12_0", "5_12_10")
    assert not result.ok and result.stopped and result.reduced is None


def test_a_data_access_error_in_a_worker_process_stops_the_run(volume):
    source = BrokenSource(volume, ndf.Box((5, 12, 10), (6, 13, 11)))
    tiler = ndf.RegularTiler((1, 6, 5))
    with pytest.raises(ndf.DataAccessError, match="data access failed for block 5_12_10") as info:
        ndf.Pipeline(source, lambda data: 1, tiler=tiler,
                     executor=ndf.ProcessExecutor(2)).run()
    result = info.value.result
    assert result.not_run, "the run stopped before the end"
    assert len(result.done) + len(result.failed) + len(result.not_run) == tiler.count(
        source.bounds)


def test_blocks_in_flight_are_bounded(source):
    in_flight = []

    class Watch:
        count = 0

        @ndf.hookimpl
        def ndf_before_block(self, run, block):
            Watch.count += 1
            in_flight.append(Watch.count)

        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            Watch.count -= 1

    tiler = ndf.RegularTiler((1, 4, 4))
    pipeline = ndf.Pipeline(source, lambda data: None, tiler=tiler,
                            executor=ndf.ProcessExecutor(2), plugins=[Watch()])
    assert pipeline.max_in_flight == 4
    result = pipeline.run()
    assert result.ok and len(result.done) == 10 * 6 * 5
    # four tasks in flight, each a batch of blocks sized from their durations, and no
    # batch larger than a share of the blocks left
    assert 4 < max(in_flight) <= 4 * 300 // (2 * 2)


def test_setup_runs_once_per_worker_and_teardown_once_too(executor, source, tmp_path):
    tiler = ndf.RegularTiler((2, 6, 5), origin=source.bounds.start)
    result = ndf.Pipeline(source, RecordWorkers(tmp_path), tiler=tiler,
                          executor=executor).run()
    assert result.ok and len(result.done) == 5 * 4 * 4
    setups = (tmp_path / "setup").read_text().split()
    teardowns = (tmp_path / "teardown").read_text().split()
    processed = (tmp_path / "process").read_text().split()
    assert len(processed) == 80
    assert 1 <= len(setups) <= executor.workers
    assert len(set(setups)) == len(setups), "each worker sets up once"
    assert sorted(teardowns) == sorted(setups)
    assert set(processed) <= set(setups), "every block ran in a worker that was set up"


def test_a_failing_setup_stops_the_run_with_its_message(executor, source, tmp_path):
    processor = RecordWorkers(tmp_path, setup_error="model file missing")
    with pytest.raises(ndf.SetupError, match="setup\\(\\) failed.*model file missing"):
        ndf.Pipeline(source, processor, tiler=ndf.RegularTiler(5), executor=executor).run()


def test_workers_really_run_in_parallel(tmp_path, source):
    for executor in (ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)):
        folder = tmp_path / executor.name
        folder.mkdir()
        tiler = ndf.RegularTiler((5, 24, 20), origin=source.bounds.start)  # two blocks
        result = ndf.Pipeline(source, Rendezvous(folder, parties=2), tiler=tiler,
                              executor=executor).run()
        assert result.ok, result.summary()


@pytest.mark.timeout(120)
def test_a_dead_worker_is_replaced_and_its_block_retried(source, tmp_path):
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    keys = [block.key for block in tiler.blocks(source.bounds)]
    processor = CrashOn(tmp_path, once=[keys[2]], always=[keys[6]])
    result = ndf.Pipeline(source, processor, tiler=tiler,
                          executor=ndf.ProcessExecutor(2), max_attempts=3).run()
    assert list(result.failed) == [keys[6]]
    assert "worker process running block" in result.failed[keys[6]].error
    assert result.failed[keys[6]].attempts == 3
    assert result.done == tuple(key for key in keys if key != keys[6])
    assert result.values[keys[2]] == keys[2]
    assert result.attempts[keys[2]] >= 2


def test_plan_counts_blocks_and_bytes_with_the_halo(source, volume):
    pipeline = ndf.Pipeline(source, NeighbourhoodSum(), executor="serial",
                            tiler=ndf.RegularTiler((5, 12, 10), origin=source.bounds.start))
    plan = pipeline.plan()
    assert plan.block_count == 8 and plan.block_shape == (5, 12, 10)
    assert plan.halo == ndf.Halo.of(1)
    assert plan.dtypes == {"em": "uint8"}
    assert plan.owned_bytes == volume["em"].nbytes
    # each block reads one extra voxel on each inner side: (6, 13, 11) voxels of uint8
    assert plan.read_bytes == 8 * 6 * 13 * 11
    assert plan.largest_block_bytes == 6 * 13 * 11
    assert plan.halo_overhead == pytest.approx(8 * 6 * 13 * 11 / volume["em"].nbytes - 1)
    text = str(plan)
    assert "blocks:      8 of shape (5, 12, 10)" in text and "halo overhead" in text


def test_the_default_tiler_uses_whole_chunks(tmp_path, volume):
    from test_storage import write_zarr

    path = write_zarr(tmp_path / "v.zarr", volume, (0, 0, 0), chunks=(2, 4, 4))
    plan = ndf.Pipeline(ndf.ZarrSource(path), lambda d: None, executor="serial").plan()
    assert all(b % c == 0 for b, c in zip(plan.block_shape, (2, 4, 4)))


def test_bounds_restrict_the_run_and_halos_read_beyond_them(source, volume):
    bounds = ndf.Box((2, 104, 204), (6, 112, 214))
    def neighbourhood(data, block):
        return int(block.crop(neighbourhood_sum(data["em"])).sum())

    pipeline = ndf.Pipeline(source, ndf.FunctionProcessor(neighbourhood, halo=1, pass_block=True),
                            executor="serial", tiler=ndf.RegularTiler((2, 4, 5)), bounds=bounds)
    result = pipeline.run()
    expected = neighbourhood_sum(volume["em"])[2:6, 4:12, 4:14]
    assert result.ok and sum(result.values.values()) == int(expected.sum())
    assert result.run.block_count == 2 * 2 * 3  # x edges: 204, 205, 210, 214


def test_a_plain_function_is_wrapped(source):
    result = ndf.Pipeline(source, lambda data: sorted(data), executor="threads",
                          tiler=ndf.RegularTiler((10, 24, 20), origin=(0, 100, 200))).run()
    assert result.reduced == {"0_100_200": ["em", "mask"]}


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("shape", r"output 'total' has shape \(2, 4, 4\); the box .* needs shape \(2, 4, 5\)"),
        ("dtype", r"output 'total' has dtype float64.*uint32"),
        ("name", r"unknown channel 'other'.*valid channels: 'total'"),
        ("scalar", r"with a sink, process\(\) must return \{channel: array\} or a BlockOutput, got int"),
    ],
)
def test_bad_outputs_fail_their_block_with_a_clear_error(source, tmp_path, returned, message):
    def process(data):
        shape = data["em"].shape
        return {
            "shape": {"total": np.zeros((2, 4, 4), np.uint32)},
            "dtype": {"total": np.zeros(shape, np.float64)},
            "name": {"other": np.zeros(shape, np.uint32)},
            "scalar": 3,
        }[returned]

    sink = ndf.ZarrSink.create(tmp_path / "o.zarr", {"total": "uint32"}, source.bounds,
                               chunk_shape=(2, 4, 5))
    result = ndf.Pipeline(source, process, tiler=ndf.RegularTiler((2, 4, 5), origin=(0, 100, 200)),
                          sink=sink, executor="serial").run()
    assert not result.done and len(result.failed) == result.run.block_count
    assert all(__import__("re").search(message, f.error) for f in result.failed.values())


def test_a_block_output_with_arrays_and_no_sink_stops_the_run(source):
    with pytest.raises(ndf.OutputError, match="no sink to write them to") as caught:
        ndf.Pipeline(source, lambda d: ndf.BlockOutput({"x": d["em"]}),
                     tiler=ndf.RegularTiler((10, 24, 20), origin=(0, 100, 200)),
                     executor="serial").run()
    (failure,) = caught.value.result.failed.values()
    assert "no sink to write them to" in failure.error


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"channels": ["em", "dapi"]}, ndf.ChannelError,
         r"unknown channel 'dapi' .* valid channels: 'em', 'mask'"),
        ({"bounds": ((0, 0, 0), (5, 5, 5))}, ndf.OutOfBoundsError,
         r"bounds \[0:5, 0:5, 0:5\] lie outside the source bounds \[0:10, 100:124, 200:220\]"),
        ({"bounds": (1, 2, 3)}, ndf.GeometryError, r"bounds must be a Box or"),
        ({"executor": "gpu"}, ndf.ConfigError,
         r"unknown executor 'gpu'; valid executors: 'dask', 'processes', 'serial', 'threads'"),
        ({"max_attempts": 0}, ndf.ConfigError, r"max_attempts must be a positive integer, got 0"),
        ({"tiler": (4, 4, 4)}, ndf.ConfigError, r"tiler must be a Tiler or None, got \(4, 4, 4\)"),
    ],
)
def test_bad_pipeline_arguments_are_refused_before_work_starts(source, change, error, message):
    calls = []
    arguments = dict(tiler=ndf.RegularTiler(5), executor="serial")
    arguments.update(change)
    with pytest.raises(error, match=message):
        ndf.Pipeline(source, lambda d: calls.append(1), **arguments).run()
    assert not calls


def test_a_processor_class_instead_of_an_instance_is_refused(source):
    with pytest.raises(ndf.ConfigError, match=r"pass an instance of Identity, not the class"):
        ndf.Pipeline(source, Identity)


def test_an_in_memory_sink_is_refused_with_worker_processes(source):
    sink = ndf.InMemorySink.zeros({"em": "uint8"}, source.bounds)
    with pytest.raises(ndf.ConfigError, match=r"writes made by the 'processes' executor's worker"):
        ndf.Pipeline(source, Identity(), sink=sink, channels=["em"],
                     executor=ndf.ProcessExecutor(2)).plan()
    result = ndf.Pipeline(source, Identity(), sink=sink, channels=["em"], executor="threads",
                          tiler=ndf.RegularTiler((3, 7, 5))).run()
    assert result.ok
    np.testing.assert_array_equal(sink.arrays["em"], source.read(source.bounds)["em"])


def test_blocks_that_would_share_sink_chunks_are_refused_before_the_run(source, tmp_path):
    sink = ndf.ZarrSink.create(tmp_path / "o.zarr", {"em": "uint8"}, source.bounds,
                               chunk_shape=(4, 8, 8))
    pipeline = ndf.Pipeline(source, Identity(), sink=sink, channels=["em"],
                            tiler=ndf.RegularTiler((4, 8, 6), origin=source.bounds.start),
                            executor=ndf.ThreadExecutor(2))
    with pytest.raises(ndf.ConfigError,
                       match=r"block 0_100_200 ends at x=206, inside a chunk of the sink "
                             r"\(chunk shape \(4, 8, 8\)"):
        pipeline.run()
    serial = ndf.Pipeline(source, Identity(), sink=sink, channels=["em"],
                          tiler=ndf.RegularTiler((4, 8, 6)), executor="serial")
    assert serial.run().ok  # one worker writes one block at a time: nothing is shared


def test_a_sink_that_does_not_cover_the_bounds_is_refused(source, tmp_path):
    small = ndf.Box(source.bounds.start, (5, 124, 220))
    sink = ndf.ZarrSink.create(tmp_path / "o.zarr", {"em": "uint8"}, small)
    with pytest.raises(ndf.OutOfBoundsError, match=r"covers \[0:5, 100:124, 200:220\]"):
        ndf.Pipeline(source, Identity(), sink=sink, channels=["em"]).plan()


def test_results_of_an_empty_region_are_ok_and_empty(source):
    bounds = ndf.Box((0, 100, 200), (0, 124, 220))
    result = ndf.Pipeline(source, lambda d: 1, bounds=bounds, executor="serial").run()
    assert result.ok and result.done == () and result.reduced == {}


# -- outputs: declared, or returned without a sink ----------------------------------------

class Labels(ndf.BlockProcessor):
    outputs = {"labels": "uint16"}

    def process(self, data, block):
        return {"labels": block.crop(data["em"]).astype(np.uint16)}


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


@pytest.mark.parametrize("function, what", [
    (lambda data: {"copy": data["em"]}, "3-D arrays ('copy': (5, 24, 20))"),
    (lambda data: data["em"] + 1, "a 3-D array of shape (5, 24, 20)"),
    (lambda data: {"copy": data["em"], "n": 3}, "3-D arrays ('copy': (5, 24, 20))"),
])
def test_arrays_returned_without_a_sink_stop_the_run_instead_of_being_dropped(source, function,
                                                                            what):
    tiler = ndf.RegularTiler((5, 24, 20), origin=(0, 100, 200))
    with pytest.raises(ndf.OutputError, match=r"block 0_100_200: OutputError: process\(\) "
                                              rf"returned {re.escape(what)} of the block's "
                                              r"shape but the pipeline has no sink") as caught:
        ndf.Pipeline(source, function, executor="serial", tiler=tiler).run()
    result = caught.value.result
    assert not result.ok and list(result.failed) == ["0_100_200"]
    assert result.counts.not_run == 1  # stopped at the first block
    # small values, and arrays sent back on purpose, are values
    kept = ndf.Pipeline(source, lambda data: ndf.BlockOutput(value={"copy": data["em"]}),
                        executor="serial", tiler=tiler).run()
    assert kept.ok and kept.values["0_100_200"]["copy"].shape == (5, 24, 20)
    small = ndf.Pipeline(source, lambda data: data["em"].max(axis=0), executor="serial",
                         tiler=tiler).run()
    assert small.ok and small.values["0_100_200"].shape == (24, 20)


def test_a_function_of_data_and_block_gets_the_block(source):
    result = ndf.Pipeline(source, lambda data, block: (block.key, data["em"].shape),
                          executor="serial",
                        tiler=ndf.RegularTiler((5, 24, 20), origin=(0, 100, 200))).run()
    assert dict(result.values) == {"0_100_200": ("0_100_200", (5, 24, 20)),
                                   "5_100_200": ("5_100_200", (5, 24, 20))}


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

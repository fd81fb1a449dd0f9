"""The pipeline as a whole: results equal numpy on every executor, blocks run in parallel,
plans say what a run will do, bad input is refused before work starts, and a plugin that
raises costs a report, not the run."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings

import ndframework as ndf
from ndframework.testing.strategies import halos, triples, volumes
from conftest import all_executors
from processors import Identity, NeighbourhoodSum, Rendezvous, neighbourhood_sum


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


@pytest.mark.timeout(60)
def test_workers_really_run_in_parallel(tmp_path, source):
    tiler = ndf.RegularTiler((5, 24, 20), origin=source.bounds.start)  # two blocks
    meeting = tmp_path / "meeting"
    os.mkfifo(meeting)
    for executor in (ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)):
        result = ndf.Pipeline(source, Rendezvous(meeting, "0_100_200", "5_100_200"),
                              tiler=tiler, executor=executor).run()
        assert result.ok, result.summary()


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
        ({"channels": []}, ndf.ChannelError, r"no channel chosen; valid channels: 'em', 'mask'"),
        ({"max_attempts": True}, ndf.ConfigError, r"max_attempts must be a positive integer"),
        ({"max_attempts": None}, ndf.ConfigError,
         r"max_attempts must be a positive integer, got None"),
        ({"max_in_flight": 0}, ndf.ConfigError,
         r"max_in_flight must be a positive integer or None for the default, got 0"),
        ({"max_failures": -1}, ndf.ConfigError,
         r"max_failures must be a non-negative integer \(0: no limit\) or None for the default, "
         r"got -1"),
        ({"max_failures": 2.5}, ndf.ConfigError, r"max_failures must be .* got 2.5"),
    ],
)
def test_bad_pipeline_arguments_are_refused_before_work_starts(source, change, error, message):
    calls = []
    arguments = dict(tiler=ndf.RegularTiler(5), executor="serial")
    arguments.update(change)
    with pytest.raises(error, match=message):
        ndf.Pipeline(source, lambda d: calls.append(1), **arguments).run()
    assert not calls


def test_a_single_channel_name_may_be_a_string(source):
    result = ndf.Pipeline(source, lambda d: sorted(d), channels="em", executor="serial").run()
    assert set(map(tuple, result.values.values())) == {("em",)}


def test_a_source_or_sink_of_the_wrong_type_is_named(source):
    with pytest.raises(ndf.ConfigError, match=r"source must be a DataSource, got \{'em': 1\}"):
        ndf.Pipeline({"em": 1}, lambda d: 1)
    with pytest.raises(ndf.ConfigError, match=r"sink must be a DataSink or None, got 'out.zarr'"):
        ndf.Pipeline(source, lambda d: 1, sink="out.zarr")


def test_a_processor_class_instead_of_an_instance_is_refused(source):
    with pytest.raises(ndf.ConfigError, match=r"pass an instance of Identity, not the class"):
        ndf.Pipeline(source, Identity)


def test_an_unpicklable_processor_is_refused_before_work_starts(source):
    class HoldsALock(ndf.BlockProcessor):
        def __init__(self):
            self.lock = threading.Lock()

        def process(self, data, block):
            return 1

    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    for executor in ("serial", ndf.ProcessExecutor(2)):
        with pytest.raises(ndf.ConfigError, match=r"processor .*HoldsALock cannot be copied "
                                                  r"to the workers .*create .* in setup\(\)"):
            ndf.Pipeline(source, HoldsALock(), tiler=tiler, executor=executor).run()


def test_an_unpicklable_source_is_refused_for_worker_processes(volume):
    class LockedSource(ndf.InMemorySource):
        def __init__(self, arrays):
            super().__init__(arrays)
            self.lock = threading.Lock()

    source = LockedSource(volume)
    with pytest.raises(ndf.ConfigError, match=r"source or sink cannot be sent to worker "
                                              r"processes .*'threads' or 'serial'"):
        ndf.Pipeline(source, lambda d: 1, executor=ndf.ProcessExecutor(2)).run()
    assert ndf.Pipeline(source, lambda d: 1, executor="threads").run().ok


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


def test_a_plugin_that_raises_is_reported_once_and_the_run_goes_on(executor, source, caplog):
    calls = []

    class Broken:
        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            raise RuntimeError("plugin bug")

    class Counting:
        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            calls.append(block.key)

    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    with caplog.at_level(logging.ERROR, logger="ndframework.plugins"):
        result = ndf.Pipeline(source, lambda d: 1, tiler=tiler, executor=executor,
                              plugins=[Broken(), Counting()]).run()
    assert result.ok and len(result.done) == 8 and len(calls) == 8
    reports = [r for r in caplog.records if r.name == "ndframework.plugins"]
    assert len(reports) == 1 and "plugin bug" in reports[0].getMessage()
    assert reports[0].exc_info is not None
    (line,) = result.plugin_errors
    assert re.fullmatch(r"Broken-[0-9a-f]+ raised in ndf_after_block 8 time\(s\)",
                        line), line  # named by its class, not by pluggy's bare number
    assert "plugin error" in result.summary()

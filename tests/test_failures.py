"""Failures at the edges of a run: setup, teardown, pickling, dying workers, bad outputs,
failing sinks, interrupts and nested runs. Each is reported for what it is."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

import ndframework as ndf
from processors import (
    BrokenSink,
    DieInSetup,
    FailingTeardown,
    NestedRun,
    RecordWorkers,
    ThreadBoundResource,
)


@pytest.fixture
def tiler(source):
    return ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)


def test_a_failed_setup_fails_its_block_stops_the_run_and_keeps_the_hook_contract(
    executor, source, tiler, tmp_path
):
    seen = []

    class Watch:
        @ndf.hookimpl
        def ndf_before_block(self, run, block):
            seen.append(("before", block.key))

        @ndf.hookimpl
        def ndf_on_block_error(self, run, block, outcome):
            seen.append(("error", block.key))

    with pytest.raises(ndf.SetupError) as info:
        ndf.Pipeline(source, RecordWorkers(tmp_path, setup_error="model file missing"),
                     tiler=tiler, executor=executor, plugins=[Watch()]).run()
    error = info.value
    assert "setup() failed in worker" in str(error) and "model file missing" in str(error)
    assert "Traceback" not in str(error)
    assert "raise RuntimeError(self.setup_error)" in error.traceback
    result = error.result
    assert not result.ok and result.stopped and result.done == ()
    assert set(result.failed) | set(result.not_run) == {b.key for b in tiler.blocks(source.bounds)}
    befores = [key for what, key in seen if what == "before"]
    errors = [key for what, key in seen if what == "error"]
    assert sorted(errors) == sorted(result.failed)
    # blocks handed out but not started when the run stopped were taken back: not run
    assert set(befores) - set(errors) <= set(result.not_run)
    assert set(errors) <= set(befores)


def test_an_unpicklable_processor_is_refused_before_work_starts(source, tiler):
    class HoldsALock(ndf.BlockProcessor):
        def __init__(self):
            self.lock = threading.Lock()

        def process(self, data, block):
            return 1

    for executor in ("serial", ndf.ProcessExecutor(2)):
        with pytest.raises(ndf.ConfigError, match=r"processor .*HoldsALock cannot be copied "
                                                  r"to the workers .*create .* in setup\(\)"):
            ndf.Pipeline(source, HoldsALock(), tiler=tiler, executor=executor).run()


def test_an_unpicklable_source_is_refused_for_worker_processes(volume, tiler):
    class LockedSource(ndf.InMemorySource):
        def __init__(self, arrays):
            super().__init__(arrays)
            self.lock = threading.Lock()

    source = LockedSource(volume)
    with pytest.raises(ndf.ConfigError, match=r"source or sink cannot be sent to worker "
                                              r"processes .*'threads' or 'serial'"):
        ndf.Pipeline(source, lambda d: 1, executor=ndf.ProcessExecutor(2)).run()
    assert ndf.Pipeline(source, lambda d: 1, executor="threads").run().ok


def test_setup_and_teardown_run_in_the_same_worker_thread(executor, source, tiler):
    result = ndf.Pipeline(source, ThreadBoundResource(), tiler=tiler, executor=executor).run()
    assert result.ok and set(result.values.values()) == {1}


def test_a_failing_teardown_is_logged_and_the_run_stands(source, tiler, caplog):
    caplog.set_level(logging.WARNING, logger="ndframework.worker")
    for executor in ("serial", ndf.ThreadExecutor(2)):
        result = ndf.Pipeline(source, FailingTeardown(), tiler=tiler, executor=executor).run()
        assert result.ok
    failures = [r for r in caplog.records if "teardown() failed" in r.getMessage()]
    assert 1 + 1 <= len(failures) <= 1 + 2
    assert all("could not release the model" in r.exc_text for r in failures)


@pytest.mark.timeout(180)
def test_workers_that_die_whatever_they_run_stop_the_run(source, tiler):
    with pytest.raises(ndf.WorkerError, match=r"died 5 times in a row without finishing a "
                                              r"block") as info:
        ndf.Pipeline(source, DieInSetup(), tiler=tiler, executor=ndf.ProcessExecutor(2),
                     max_attempts=2).run()
    result = info.value.result
    assert result.done == () and not result.ok
    assert all("worker process running block" in f.error for f in result.failed.values())


def test_a_ragged_output_fails_its_block_not_the_run(source, tiler, tmp_path):
    sink = ndf.ZarrSink.create(tmp_path / "o.zarr", {"out": "uint8"}, source.bounds,
                               chunk_shape=(5, 12, 10))
    result = ndf.Pipeline(source, lambda d: {"out": [[1, 2], [3]]}, tiler=tiler, sink=sink,
                          executor="serial").run()
    assert result.stopped is None and result.not_run == ()
    assert len(result.failed) == 8
    assert all(f.error.startswith("OutputError: output 'out' cannot be made into an array")
               for f in result.failed.values())


def test_a_sink_that_cannot_be_written_stops_the_run(source, tiler):
    sink = BrokenSink({"em": np.zeros(source.bounds.shape, np.uint8)}, origin=source.bounds.start)
    with pytest.raises(ndf.DataAccessError, match=r"data access failed for block 0_100_200 .*"
                                                  r"No space left on device") as info:
        ndf.Pipeline(source, lambda d: {"em": d["em"]}, tiler=tiler, sink=sink,
                     channels=["em"], executor="serial").run()
    assert info.value.key == "0_100_200"
    assert len(info.value.result.not_run) == 7


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit, lambda: SystemExit(3)])
def test_an_interrupt_or_exit_raised_inside_process_fails_that_block_only(
    executor, source, tiler, raised
):
    def interrupt(data, block):
        if block.index == (0, 1, 0):
            raise raised()
        return 1

    ended = []

    class Watch:
        @ndf.hookimpl
        def ndf_after_run(self, run, result):
            ended.append(result)

    result = ndf.Pipeline(source, ndf.FunctionProcessor(interrupt, pass_block=True),
                          tiler=tiler, executor=executor, plugins=[Watch()]).run()
    assert ended == [result]
    assert result.stopped is None and not result.ok
    assert list(result.failed) == ["0_112_200"]
    error = result.failed["0_112_200"].error
    assert error.startswith(("KeyboardInterrupt", "SystemExit"))
    assert len(result.done) == 7 and result.not_run == ()


def test_a_pipeline_run_inside_a_processor_leaves_the_outer_run_alone(source, tiler, volume):
    for executor in ("serial", ndf.ThreadExecutor(2)):
        result = ndf.Pipeline(source, NestedRun(), tiler=tiler, executor=executor).run()
        assert result.ok
        for block in tiler.blocks(source.bounds):
            owned = volume["em"][block.box.relative_to(source.bounds).slices()]
            assert result.values[block.key] == ("outer", int(owned.astype(np.int64).sum()),
                                                {"0_0_0": 8})


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
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
def test_more_bad_pipeline_arguments(source, arguments, error, message):
    with pytest.raises(error, match=message):
        ndf.Pipeline(source, lambda d: 1, executor="serial", **arguments).run()


def test_a_single_channel_name_may_be_a_string(source):
    result = ndf.Pipeline(source, lambda d: sorted(d), channels="em", executor="serial").run()
    assert set(map(tuple, result.values.values())) == {("em",)}


def test_function_processor_needs_a_callable():
    with pytest.raises(ndf.ConfigError, match=r"FunctionProcessor needs a callable, got 3"):
        ndf.FunctionProcessor(3)


def test_a_source_or_sink_of_the_wrong_type_is_named(source):
    with pytest.raises(ndf.ConfigError, match=r"source must be a DataSource, got \{'em': 1\}"):
        ndf.Pipeline({"em": 1}, lambda d: 1)
    with pytest.raises(ndf.ConfigError, match=r"sink must be a DataSink or None, got 'out.zarr'"):
        ndf.Pipeline(source, lambda d: 1, sink="out.zarr")


def test_the_demo_names_a_bad_source():
    from ndframework.demo import run_demo

    with pytest.raises(ndf.ConfigError, match=r"source must be 'boss' or 'zarr', got 'dvid'"):
        run_demo("serial", source="dvid")

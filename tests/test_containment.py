"""Containment of failures: timeouts, dying workers, poison blocks, fail-fast, retries of
named exceptions, and plugins that raise. Each costs the blocks it concerns, not the run."""

from __future__ import annotations

import logging
import re
import time
import warnings

import numpy as np
import pytest

import ndframework as ndf
from processors import AlwaysFails, DieOnce, FlakyOnce, SleepForever


@pytest.fixture
def tiler(source):
    return ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)


@pytest.fixture(scope="module")
def processes():
    return ndf.ProcessExecutor(2)


def _sums(volume, source, tiler):
    return {block.key: int(volume["em"][block.box.relative_to(source.bounds).slices()]
                           .astype(np.int64).sum()) for block in tiler.blocks(source.bounds)}


@pytest.mark.timeout(60)
def test_a_block_that_sleeps_forever_times_out_and_the_run_ends(source, volume, tiler,
                                                                 processes):
    result = ndf.Pipeline(source, SleepForever({"0_112_200"}), tiler=tiler,
                          executor=processes, block_timeout=1.0, max_attempts=2).run()
    assert result.stopped is None and not result.ok
    assert list(result.failed) == ["0_112_200"]
    failure = result.failed["0_112_200"]
    assert failure.error.startswith("BlockTimeout: block 0_112_200 timed out after 1 s")
    assert failure.attempts == 2
    (record,) = [r for r in result.records() if r.key == "0_112_200"]
    assert record.worker.isdigit()  # the pid of the worker that was ended
    expected = _sums(volume, source, tiler)
    del expected["0_112_200"]
    assert dict(result.values) == expected
    # the other blocks in flight with it were not charged
    assert {key: n for key, n in result.attempts.items() if n != 1} == {"0_112_200": 2}


def test_block_timeout_on_an_executor_that_cannot_stop_a_block_warns(source):
    for executor in ("serial", ndf.ThreadExecutor(2)):
        with pytest.warns(UserWarning, match=r"block_timeout=5 cannot be enforced by the "
                                             r"'(serial|threads)' executor.*ProcessExecutor"):
            ndf.Pipeline(source, lambda d: 1, executor=executor, block_timeout=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ndf.Pipeline(source, lambda d: 1, executor=ndf.ProcessExecutor(2), block_timeout=5)


@pytest.mark.parametrize("value", [0, -1, "10", True])
def test_a_bad_block_timeout_is_refused(source, value):
    with pytest.raises(ndf.ConfigError, match=r"block_timeout must be a positive number"):
        ndf.Pipeline(source, lambda d: 1, executor="serial", block_timeout=value)


@pytest.mark.timeout(60)
def test_a_block_that_kills_its_worker_once_completes_on_its_second_try(
    source, volume, tiler, processes, tmp_path
):
    result = ndf.Pipeline(source, DieOnce(tmp_path, {"5_100_210"}), tiler=tiler,
                          executor=processes).run()
    assert result.ok, result.summary()
    assert dict(result.values) == _sums(volume, source, tiler)
    assert result.attempts["5_100_210"] == 2
    assert all(n == 1 for key, n in result.attempts.items() if key != "5_100_210")


@pytest.mark.timeout(60)
def test_a_worker_death_does_not_blame_the_blocks_beside_it(source, volume, tiler, processes,
                                                            tmp_path):
    # every try of the block kills its worker; with one attempt allowed, only it fails
    result = ndf.Pipeline(source, DieOnce(tmp_path, {"0_112_210"}, always=True), tiler=tiler,
                          executor=processes, max_attempts=1).run()
    assert list(result.failed) == ["0_112_210"]
    assert "worker process running block 0_112_210 died" in result.failed["0_112_210"].error
    expected = _sums(volume, source, tiler)
    del expected["0_112_210"]
    assert dict(result.values) == expected and result.not_run == ()


def test_a_poison_block_fails_with_its_traceback_and_the_rest_complete(executor, source,
                                                                       volume, tiler):
    result = ndf.Pipeline(source, AlwaysFails({"5_112_200"}), tiler=tiler,
                          executor=executor).run()
    assert list(result.failed) == ["5_112_200"]
    failure = result.failed["5_112_200"]
    assert failure.error == "ValueError: poison in block 5_112_200" and failure.attempts == 1
    assert 'raise ValueError(f"poison in block {block.key}")' in failure.traceback
    assert len(result.done) == 7


@pytest.mark.parametrize("limit", [1, 3])
def test_max_failures_stops_a_run_where_every_block_fails(executor, volume, limit):
    source = ndf.InMemorySource(volume)
    tiler = ndf.RegularTiler((1, 6, 5))  # 160 blocks
    result = ndf.Pipeline(source, AlwaysFails(None), tiler=tiler, executor=executor,
                          max_failures=limit).run()
    assert result.stopped == (f"max_failures={limit} reached: {limit} blocks had failed, so "
                              f"no more were handed out")
    # blocks already in flight finish: at most max_in_flight more
    assert limit <= len(result.failed) <= limit + 2 * executor.workers
    assert result.counts.not_run == 160 - len(result.failed) and not result.ok
    assert result.reduced is None


def test_with_a_journal_a_systematic_bug_stops_after_about_ten_blocks(volume, tmp_path):
    source = ndf.InMemorySource(volume)
    tiler = ndf.RegularTiler((1, 6, 5))  # 160 blocks
    result = ndf.Pipeline(source, AlwaysFails(None), tiler=tiler, executor="serial",
                          journal=tmp_path / "j.sqlite").run()
    assert len(result.failed) == 10 and "fails on most blocks" in result.stopped
    # scattered failures never stop it; without a journal there is no limit
    bad = {block.key for block in list(tiler.blocks(source.bounds))[::4]}
    result = ndf.Pipeline(source, AlwaysFails(bad), tiler=tiler, executor="serial",
                          journal=tmp_path / "k.sqlite").run()
    assert result.stopped is None and len(result.failed) == 40
    result = ndf.Pipeline(source, AlwaysFails(None), tiler=tiler, executor="serial").run()
    assert result.stopped is None and len(result.failed) == 160


def test_a_stopped_run_resumes_where_it_stopped(volume, tmp_path):
    source = ndf.InMemorySource(volume)
    tiler = ndf.RegularTiler((5, 12, 10))
    journal = tmp_path / "j.sqlite"
    first = ndf.Pipeline(source, AlwaysFails({"0_0_0", "0_0_10"}), tiler=tiler,
                         executor="serial", journal=journal, max_failures=2).run()
    assert first.stopped and len(first.done) == 0 and len(first.not_run) == 6
    second = ndf.Pipeline(source, AlwaysFails({"0_0_0", "0_0_10"}), tiler=tiler,
                          executor="serial", journal=journal, max_failures=0).run()
    # the blocks that failed before come last; the others are done first
    assert second.stopped is None and len(second.done) == 6
    assert set(second.failed) == {"0_0_0", "0_0_10"}


def test_exceptions_named_in_retry_on_are_retried_others_are_not(executor, source, volume,
                                                                 tiler, tmp_path):
    retries = []

    class Watch:
        @ndf.hookimpl
        def ndf_on_block_retry(self, run, block, outcome, attempt):
            retries.append((block.key, attempt, outcome.error))

    flaky = {"0_100_200", "5_112_210"}
    result = ndf.Pipeline(source, FlakyOnce(tmp_path, flaky, TimeoutError), tiler=tiler,
                          executor=executor, plugins=[Watch()]).run()
    assert result.ok and dict(result.values) == _sums(volume, source, tiler)
    assert {key: n for key, n in result.attempts.items() if n > 1} == {k: 2 for k in flaky}
    assert sorted(retries) == [(key, 1, "TimeoutError: first try of " + key)
                               for key in sorted(flaky)]
    # an exception not named is deterministic: not retried
    other = tmp_path / "other"
    other.mkdir()
    result = ndf.Pipeline(source, FlakyOnce(other, flaky, ConnectionError), tiler=tiler,
                          executor=executor).run()
    assert set(result.failed) == flaky
    assert all(f.attempts == 1 for f in result.failed.values())


def test_retry_on_is_validated():
    with pytest.raises(ndf.ConfigError, match=r"retry_on must be exception classes.*'oops'"):
        ndf.FunctionProcessor(len, retry_on=("oops",))
    assert ndf.FunctionProcessor(len, retry_on=OSError).retry_on == (OSError,)


def test_a_plugin_that_raises_is_reported_once_and_the_run_goes_on(executor, source, tiler,
                                                                   caplog):
    calls = []

    class Broken:
        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            raise RuntimeError("plugin bug")

    class Counting:
        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            calls.append(block.key)

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


def test_a_stop_takes_back_the_blocks_handed_out_but_not_started(volume):
    source = ndf.InMemorySource(volume)
    def slow_failure(data):
        time.sleep(0.2)
        raise ValueError("poison")

    result = ndf.Pipeline(source, slow_failure, tiler=ndf.RegularTiler((1, 6, 5)),
                          executor=ndf.ThreadExecutor(1), max_in_flight=6,
                          max_failures=1).run()
    # one worker: the first block fails; the worker may have started the next one, but
    # the four queued behind them are taken back and never started
    assert len(result.failed) <= 2 and result.counts.not_run == 160 - len(result.failed)


@pytest.mark.timeout(60)
def test_blocks_that_time_out_one_after_another_are_no_dying_workers(source, tiler):
    hanging = {"0_100_200", "0_100_210", "0_112_200"}
    result = ndf.Pipeline(source, SleepForever(hanging), tiler=tiler,
                          executor=ndf.ProcessExecutor(1), block_timeout=0.5,
                          max_attempts=2).run()
    assert result.stopped is None and set(result.failed) == hanging
    assert all("timed out after 0.5 s" in f.error for f in result.failed.values())
    assert len(result.done) == 5


def test_a_resumed_run_left_with_known_failures_is_not_stopped_as_failing(volume, tmp_path):
    source = ndf.InMemorySource(volume)
    tiler = ndf.RegularTiler((1, 6, 5))  # 160 blocks
    bad = {block.key for block in list(tiler.blocks(source.bounds))[::10]}  # 16 of them
    journal = tmp_path / "j.sqlite"
    first = ndf.Pipeline(source, AlwaysFails(bad), tiler=tiler, executor="serial",
                         journal=journal).run()
    assert first.stopped is None and len(first.failed) == 16
    again = ndf.Pipeline(source, AlwaysFails(bad), tiler=tiler, executor="serial",
                         journal=journal).run()
    # only the 16 known failures are run, and fail again: 144 done before count as done
    assert again.stopped is None and set(again.failed) == bad and again.counts.skipped == 144


def test_a_reduce_that_raises_is_reported_with_the_result(source, tiler):
    class BadReduce(ndf.BlockProcessor):
        def process(self, data, block):
            return 1

        def reduce(self, results):
            raise ValueError("cannot combine")

    with pytest.raises(ndf.ReduceError, match=r"reduce\(\) raised ValueError: cannot "
                                              r"combine") as info:
        ndf.Pipeline(source, BadReduce(), tiler=tiler, executor="serial").run()
    result = info.value.result
    assert result.counts.done == 8 and result.reduced is None
    assert dict(result.values) == {key: 1 for key in result.done}
    assert "raise ValueError" in info.value.traceback


def test_in_a_batch_a_failing_block_fails_alone_and_the_rest_are_done(volume, processes):
    source = ndf.InMemorySource(volume)
    tiler = ndf.RegularTiler((1, 4, 4))  # 300 tiny blocks: the process executor batches them
    keys = [block.key for block in tiler.blocks(source.bounds)]
    poison = {keys[40], keys[41], keys[200]}
    halo_mode_processor = ndf.FunctionProcessor(
        lambda data, block: poison.isdisjoint({block.key}) or 1 / 0, pass_block=True,
        halo=1, halo_mode="reflect")
    result = ndf.Pipeline(source, halo_mode_processor, tiler=tiler, executor=processes).run()
    assert set(result.failed) == poison
    assert all(f.error.startswith("ZeroDivisionError") and f.attempts == 1
               for f in result.failed.values())
    assert len(result.done) == 297 and result.not_run == ()
    assert all(n == 1 for n in result.attempts.values())

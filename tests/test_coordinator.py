"""The coordinator: blocks handed out in bounded batches; failures recorded, retried when
worth it, and contained to the blocks they concern; dead workers judged; blocks that run
too long ended; and a run stopped, by an error or a failure limit, with what it did
recorded."""

from __future__ import annotations

import threading
from concurrent import futures
import warnings

import attrs
import numpy as np
import pytest

import ndframework as ndf
from ndframework._run import FailureLimit
from processors import (
    AlwaysFails,
    BrokenSink,
    BrokenSource,
    CrashOn,
    DieInSetup,
    DieOnce,
    FailOn,
    FlakyOnce,
    RecordWorkers,
    SleepForever,
)


@pytest.fixture
def tiler(source):
    return ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)


@pytest.fixture(scope="module")
def processes():
    return ndf.ProcessExecutor(2)


def _sums(volume, source, tiler):
    return {block.key: int(volume["em"][block.box.relative_to(source.bounds).slices()]
                           .astype(np.int64).sum()) for block in tiler.blocks(source.bounds)}


# -- batches --------------------------------------------------------------------------------

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


# -- failures and retries -------------------------------------------------------------------

def test_a_failing_block_is_recorded_with_its_traceback_and_the_rest_complete(executor,
                                                                              source):
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
        assert 'raise ValueError(f"cannot handle block {block.key}")' in failure.traceback
        assert "processors.py" in failure.traceback
        assert failure.attempts == 1
    assert result.not_run == () and result.stopped is None
    assert set(result.reduced) == set(result.done)
    assert "2 failed" in result.summary()


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


# -- dead workers ---------------------------------------------------------------------------

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


@pytest.mark.timeout(60)
def test_a_block_that_kills_its_worker_once_completes_on_its_second_try(
    source, volume, tiler, processes, tmp_path
):
    # the block after it in the tiling runs beside it, until it dies
    result = ndf.Pipeline(source, DieOnce(tmp_path, "5_100_210", beside="5_112_200"),
                          tiler=tiler, executor=processes).run()
    assert result.ok, result.summary()
    assert dict(result.values) == _sums(volume, source, tiler)
    assert result.attempts["5_100_210"] == 2
    assert all(n == 1 for key, n in result.attempts.items() if key != "5_100_210")


@pytest.mark.timeout(60)
def test_a_worker_death_does_not_blame_the_blocks_beside_it(source, volume, tiler, processes,
                                                            tmp_path):
    # every try of the block kills its worker; with one attempt allowed, only it fails,
    # not the block that ran beside it until it died
    result = ndf.Pipeline(source, DieOnce(tmp_path, "0_112_210", always=True,
                                          beside="5_100_200"),
                          tiler=tiler, executor=processes, max_attempts=1).run()
    assert list(result.failed) == ["0_112_210"]
    assert "worker process running block 0_112_210 died" in result.failed["0_112_210"].error
    expected = _sums(volume, source, tiler)
    del expected["0_112_210"]
    assert dict(result.values) == expected and result.not_run == ()
    assert all(n == 1 for key, n in result.attempts.items() if key != "0_112_210")


@pytest.mark.timeout(180)
def test_workers_that_die_whatever_they_run_stop_the_run(source, tiler):
    with pytest.raises(ndf.WorkerError, match=r"died 5 times in a row without finishing a "
                                              r"block") as info:
        ndf.Pipeline(source, DieInSetup(), tiler=tiler, executor=ndf.ProcessExecutor(2),
                     max_attempts=2).run()
    result = info.value.result
    assert result.done == () and not result.ok
    assert all("worker process running block" in f.error for f in result.failed.values())


# -- block timeouts -------------------------------------------------------------------------

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


@pytest.mark.timeout(60)
def test_blocks_that_time_out_one_after_another_are_no_dying_workers(source, tiler):
    hanging = {"0_100_200", "0_100_210", "0_112_200"}
    result = ndf.Pipeline(source, SleepForever(hanging), tiler=tiler,
                          executor=ndf.ProcessExecutor(1), block_timeout=0.5,
                          max_attempts=2).run()
    assert result.stopped is None and set(result.failed) == hanging
    assert all("timed out after 0.5 s" in f.error for f in result.failed.values())
    assert len(result.done) == 5


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


# -- failure limits -------------------------------------------------------------------------

def test_a_failure_limit_is_reached_at_its_count_and_with_a_ratio_only_while_most_fail():
    assert not FailureLimit(3).reached(failed=2, done=0)
    assert FailureLimit(3).reached(failed=3, done=1000)
    half = FailureLimit(10, ratio=0.5)
    assert not half.reached(failed=9, done=0)
    assert half.reached(failed=10, done=10) and not half.reached(failed=10, done=11)
    assert half.reached(failed=40, done=30)
    assert FailureLimit(3).describe(3, 5) == ("max_failures=3 reached: 3 blocks had failed, "
                                              "so no more were handed out")
    assert half.describe(10, 2).startswith("10 blocks failed and only 2 were done: the "
                                           "processor fails on most blocks")


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


# -- stopping -------------------------------------------------------------------------------

_six_handed_out, _first_failure_settled = threading.Event(), threading.Event()
_started: list[str] = []


def _fail_in_turn(data, block):
    """Fails the first block once the coordinator has handed out six, and any other once
    it has settled the first failure (module-level, so that the processor is copied to the
    workers by reference)."""
    _started.append(block.key)
    if not (_first_failure_settled if _started[1:] else _six_handed_out).wait(30):
        raise TimeoutError("the coordinator did not get there")
    raise ValueError("poison")


def test_a_stop_takes_back_the_blocks_handed_out_but_not_started(volume):
    _six_handed_out.clear()
    _first_failure_settled.clear()
    _started.clear()

    class Watch:
        count = 0

        @ndf.hookimpl
        def ndf_before_block(self, run, block):
            Watch.count += 1
            if Watch.count == 6:
                _six_handed_out.set()

        @ndf.hookimpl
        def ndf_on_block_error(self, run, block, outcome):
            _first_failure_settled.set()  # the run stopped before this is called

    source = ndf.InMemorySource(volume)
    processor = ndf.FunctionProcessor(_fail_in_turn, pass_block=True)
    result = ndf.Pipeline(source, processor, tiler=ndf.RegularTiler((1, 6, 5)),
                          executor=ndf.ThreadExecutor(1), max_in_flight=6, max_failures=1,
                          plugins=[Watch()]).run()
    # one worker: the first block fails; the worker may have started the next one, but
    # the four queued behind them are taken back and never started
    assert set(_started) == set(result.failed) and 1 <= len(result.failed) <= 2
    assert all(f.error == "ValueError: poison" for f in result.failed.values())
    assert result.counts.not_run == 160 - len(result.failed)


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


def test_a_sink_that_cannot_be_written_stops_the_run(source, tiler):
    sink = BrokenSink({"em": np.zeros(source.bounds.shape, np.uint8)}, origin=source.bounds.start)
    with pytest.raises(ndf.DataAccessError, match=r"data access failed for block 0_100_200 .*"
                                                  r"No space left on device") as info:
        ndf.Pipeline(source, lambda d: {"em": d["em"]}, tiler=tiler, sink=sink,
                     channels=["em"], executor="serial").run()
    assert info.value.key == "0_100_200"
    assert len(info.value.result.not_run) == 7


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

    with pytest.raises(ndf.SetupError, match="setup\\(\\) failed.*model file missing") as info:
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


# -- executors of other makers ---------------------------------------------------------------


class _OldPool(futures.Executor):
    """A pool as written before Python 3.9: ``shutdown`` has no ``cancel_futures``. It runs
    each task at once; a task for a block in ``lost`` (as a ``(block, ticket)`` pair in its
    arguments) is lost with its worker, a `BrokenExecutor`, the first ``deaths`` times."""

    def __init__(self, lost, deaths):
        self.lost, self.deaths, self.batches = set(lost), deaths, []

    def submit(self, fn, /, *args, **kwargs):
        future = futures.Future()
        keys = [block.key for block, _ in args[1]]
        self.batches.append(keys)
        if self.lost & set(keys) and self.deaths[0] > 0:
            self.deaths[0] -= 1
            future.set_exception(futures.BrokenExecutor("the worker was lost"))
        else:
            future.set_result(fn(*args, **kwargs))
        return future

    def shutdown(self, wait=True):  # noqa: D401 - the old signature, on purpose
        pass


@attrs.define
class _OldExecutor(ndf.Executor):
    """An executor with no board: it cannot say which block ran on a worker it lost."""

    name = "old"
    shares_memory = True
    lost: tuple = ()
    deaths: int = 0
    workers: int = 2
    pools: list = attrs.field(factory=list)

    def start(self, session):
        self._deaths = getattr(self, "_deaths", [self.deaths])
        self.pools.append(_OldPool(self.lost, self._deaths))
        return self.pools[-1]


def test_a_lost_worker_of_an_executor_without_a_board_makes_each_of_its_blocks_a_suspect(
        source, volume):
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    keys = [block.key for block in tiler.blocks(source.bounds)]
    retried = []

    class Retries:
        @ndf.hookimpl
        def ndf_on_block_retry(self, block, reason):
            retried.append((block.key, reason))

    # a block lost once: run again, alone; a block that kills every worker: fails alone
    executor = _OldExecutor(lost=(keys[1],), deaths=1)
    result = ndf.Pipeline(source, FailOn([]), tiler=tiler, executor=executor,
                          plugins=[Retries()], max_in_flight=1).run()
    assert result.ok and sorted(result.done) == sorted(keys)
    assert [key for key, reason in retried] == executor.pools[0].batches[-1]
    assert {reason for _, reason in retried} == {"worker_died"}
    assert len(executor.pools) == 2  # the broken pool replaced, with its old shutdown
    executor = _OldExecutor(lost=(keys[2],), deaths=10)
    result = ndf.Pipeline(source, FailOn([]), tiler=tiler, executor=executor,
                          max_attempts=2).run()
    assert list(result.failed) == [keys[2]] and "WorkerError" in result.failed[keys[2]].error
    assert sorted(result.done) == sorted(set(keys) - {keys[2]})

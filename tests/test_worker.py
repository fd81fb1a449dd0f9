"""The worker: set up by the first task a thread runs for a run session, one per thread and
session; it reads a block, processes it, writes its outputs and reports a small outcome;
it is torn down once, in the thread that set it up."""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import threading
import uuid

import numpy as np
import pytest

import ndframework as ndf
from ndframework import _worker
from ndframework._worker import WorkerContext
from ndframework.executors import WorkerSession
from processors import (
    BrokenSink,
    BrokenSource,
    FailingTeardown,
    NestedRun,
    RecordWorkers,
    ThreadBoundResource,
)

DONE, FAILED = ndf.BlockStatus.DONE, ndf.BlockStatus.FAILED


class Events(list):
    """What the copies of a processor did, in order: each worker deep-copies its processor,
    and every copy notes here."""

    def __deepcopy__(self, memo):
        return self


class Lifecycle(ndf.BlockProcessor):
    """Notes ``(what, thread ident, copy)`` at setup, at each block and at teardown (the
    ident: a thread that ends is no longer `threading.current_thread`); its value is
    the em sum over the read box. Raises in setup with ``setup_error``, and on the blocks
    in ``fail``."""

    def __init__(self, events, setup_error=None, fail=()):
        self.events = events
        self.setup_error = setup_error
        self.fail = set(fail)

    def _note(self, what):
        self.events.append((what, threading.get_ident(), id(self)))

    def setup(self):
        self._note("setup")
        if self.setup_error:
            raise RuntimeError(self.setup_error)

    def process(self, data, block):
        self._note(block.key)
        if block.key in self.fail:
            raise ValueError(f"cannot handle block {block.key}")
        return int(data["em"].astype(np.int64).sum())

    def teardown(self):
        self._note("teardown")


@pytest.fixture
def tiler(source):
    return ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)


@pytest.fixture
def blocks(source):
    return list(ndf.RegularTiler((5, 12, 10), halo=1, origin=source.bounds.start).blocks(
        source.bounds))


@pytest.fixture
def block(blocks):
    """A block whose read box (the halo, clipped to the source) differs from its box."""
    assert blocks[0].read_box.shape == (6, 13, 11) != blocks[0].box.shape
    return blocks[0]


@pytest.fixture
def sessions():
    """Makes run sessions; afterwards, tears down the workers they left in this thread."""
    made = []

    def make(processor, source, sink=None, board=None):
        context = WorkerContext(source, tuple(source.channels), sink)
        session = WorkerSession(f"test-{uuid.uuid4().hex}", processor, context, board=board)
        made.append(session.id)
        return session

    yield make
    for session in made:
        _worker.end_worker(session)


def tasks(blocks):
    return [(block, 0) for block in blocks]


def read_box_sum(volume, source, block):
    """numpy's em sum over ``block``'s read box: the oracle of `Lifecycle`'s values."""
    return int(volume["em"][block.read_box.relative_to(source.bounds).slices()]
               .astype(np.int64).sum())


def owned(volume, source, block):
    return volume["em"][block.box.relative_to(source.bounds).slices()]


def what(events, name):
    """The ``(thread, copy)`` of each event called ``name``."""
    return [(thread, copy) for event, thread, copy in events if event == name]


# -- one worker per thread and per run session ---------------------------------------------

def test_the_first_task_sets_up_the_threads_worker_and_end_worker_tears_it_down_there_once(
        source, volume, blocks, sessions):
    events = Events()
    processor = Lifecycle(events)
    session = sessions(processor, source)
    outcomes = (_worker.run_blocks(session, tasks(blocks[:3]))
                + _worker.run_blocks(session, tasks(blocks[3:])))
    assert [outcome.key for outcome in outcomes] == [block.key for block in blocks]
    assert all(outcome.status is DONE for outcome in outcomes)
    assert [outcome.value for outcome in outcomes] == [read_box_sum(volume, source, block)
                                                       for block in blocks]
    name = threading.current_thread().name
    assert {outcome.worker for outcome in outcomes} == {f"{os.getpid()}/{name}"}
    here = threading.get_ident()
    [(thread, copy)] = what(events, "setup")
    assert thread == here and copy != id(processor)  # the worker's own copy
    assert [event for event, _, _ in events[1:]] == [block.key for block in blocks]
    assert {copy for _, _, copy in events} == {copy}
    _worker.end_worker(session.id)
    _worker.end_worker(session.id)
    _worker.end_session(session.id)
    assert what(events, "teardown") == [(here, copy)]


def test_each_thread_has_a_worker_of_its_own(source, blocks, sessions):
    events = Events()
    session = sessions(Lifecycle(events), source)
    both_set_up = threading.Barrier(2, timeout=30)

    def work(share):
        _worker.run_blocks(session, tasks(share))
        both_set_up.wait()  # each thread's worker is there while the other's is
        _worker.end_worker(session.id)

    threads = [threading.Thread(target=work, args=(blocks[number::2],)) for number in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    setups = what(events, "setup")
    copies = dict(setups)
    assert sorted(copies) == sorted(thread.ident for thread in threads)
    assert len(set(copies.values())) == 2
    for number, block in enumerate(blocks):  # each block ran in its thread's own worker
        thread = threads[number % 2].ident
        assert what(events, block.key) == [(thread, copies[thread])]
    assert sorted(what(events, "teardown")) == sorted(setups)


class Nesting(ndf.BlockProcessor):
    """Runs each block again through an ``inner`` run session, in the same thread, and
    ends the inner worker each time; its value is ``("outer", the inner value)``."""

    def __init__(self, events, inner):
        self.events = events
        self.inner = inner

    def setup(self):
        self.events.append(("setup", threading.get_ident(), id(self)))

    def process(self, data, block):
        (outcome,) = _worker.run_blocks(self.inner, [(block, 0)])
        _worker.end_worker(self.inner.id)
        return "outer", outcome.value

    def teardown(self):
        self.events.append(("teardown", threading.get_ident(), id(self)))


def test_a_session_run_inside_a_block_leaves_the_outer_worker_alone(source, volume, blocks,
                                                                     sessions):
    outer_events, inner_events = Events(), Events()
    inner = sessions(Lifecycle(inner_events), source)
    outer = sessions(Nesting(outer_events, inner), source)
    outcomes = _worker.run_blocks(outer, tasks(blocks[:4]))
    assert [outcome.value for outcome in outcomes] == [
        ("outer", read_box_sum(volume, source, block)) for block in blocks[:4]]
    assert len(what(outer_events, "setup")) == 1 and not what(outer_events, "teardown")
    # an inner worker for each block, each torn down before the outer block ended
    assert len(what(inner_events, "setup")) == len(what(inner_events, "teardown")) == 4
    assert _worker.run_blocks(outer, tasks(blocks[4:5]))[0].ok
    assert len(what(outer_events, "setup")) == 1
    _worker.end_worker(outer.id)
    assert len(what(outer_events, "teardown")) == 1


def test_end_worker_without_a_session_tears_down_every_worker_of_the_thread(source, blocks,
                                                                            sessions):
    first, second = Events(), Events()
    for events in (first, second):
        _worker.run_blocks(sessions(Lifecycle(events), source), tasks(blocks[:1]))
    here = threading.get_ident()
    _worker.end_worker()
    assert [thread for thread, _ in what(first, "teardown") + what(second, "teardown")] == [
        here, here]


def test_a_thread_that_ends_without_end_worker_tears_its_worker_down_as_it_ends(
        source, blocks, sessions):
    events = Events()
    session = sessions(Lifecycle(events), source)
    thread = threading.Thread(target=_worker.run_blocks, args=(session, tasks(blocks[:2])))
    thread.start()
    thread.join()
    [setup] = what(events, "setup")
    assert what(events, "teardown") == [setup] and setup[0] == thread.ident
    _worker.end_session(session.id)  # nothing left to end
    assert len(what(events, "teardown")) == 1


def test_end_session_tears_down_the_workers_of_threads_that_ended_and_only_those(
        source, blocks, sessions):
    events = Events()
    session = sessions(Lifecycle(events), source)
    # a thread whose workers outlive it (something holds them), as a pool's threads may
    # where the interpreter does not clear a thread's locals as it ends
    held = []

    def ends_holding_its_workers():
        _worker.run_blocks(session, tasks(blocks[:1]))
        held.append(_worker._workers())

    ended = threading.Thread(target=ends_holding_its_workers)
    ended.start()
    ended.join()
    set_up, release = threading.Event(), threading.Event()

    def lives_on():
        _worker.run_blocks(session, tasks(blocks[1:2]))
        set_up.set()
        release.wait(30)

    living = threading.Thread(target=lives_on)
    living.start()
    try:
        assert set_up.wait(30)
        assert not what(events, "teardown")
        _worker.end_session(session.id)
        here = threading.get_ident()
        ended_copy = what(events, "setup")[0][1]
        assert what(events, "teardown") == [(here, ended_copy)]  # the thread is gone
    finally:
        release.set()
        living.join()
    held.clear()  # its workers go at last: torn down already, not again
    assert [thread for thread, _ in what(events, "teardown")] == [here, living.ident]


# -- setup, and batches that end early ------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="waits on a pidfd (Linux)")
def test_a_process_forked_while_another_thread_sets_up_a_worker_sets_up_its_own(
        source, blocks, sessions):
    """Regression: a lock that another thread of the parent held at the fork stayed held in
    the child, whose first worker then waited for it for ever."""
    session = sessions(Lifecycle(Events()), source)
    _worker.run_blocks(session, tasks(blocks[:1]))  # the parent has a worker
    held, release = threading.Event(), threading.Event()

    def holder():  # as a thread setting up its worker does
        with _worker._every_lock:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: a worker of its own, for a run session of its own
        status = 1
        try:
            other = sessions(Lifecycle(Events()), source)
            outcome, = _worker.run_blocks(other, tasks(blocks[:1]))
            _worker.end_worker()
            status = 0 if outcome.status is DONE else 2
        finally:
            os._exit(status)
    release.set()
    thread.join()
    exited = os.pidfd_open(pid)
    try:
        ended, _, _ = select.select([exited], [], [], 30)
    finally:
        os.close(exited)
    if not ended:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert ended, "the forked child hung setting up its worker"
    assert os.waitstatus_to_exitcode(status) == 0
    _worker.end_worker(session.id)


def test_a_setup_that_raises_gives_setup_error_outcomes_and_no_teardown(source, blocks,
                                                                        sessions):
    events = Events()
    session = sessions(Lifecycle(events, setup_error="model file missing"), source)
    first = _worker.run_blocks(session, tasks(blocks[:3]))
    assert first[1:] == [None, None]  # the batch ended after its first block
    outcome = first[0]
    assert outcome.status is ndf.BlockStatus.SETUP_ERROR and outcome.key == blocks[0].key
    assert outcome.error == "RuntimeError: model file missing"
    assert "raise RuntimeError(self.setup_error)" in outcome.traceback
    (again,) = _worker.run_blocks(session, tasks(blocks[3:4]))
    assert again.status is ndf.BlockStatus.SETUP_ERROR and again.key == blocks[3].key
    _worker.end_worker(session.id)
    assert [event for event, _, _ in events] == ["setup"]  # once; no block, no teardown


def test_a_batch_ends_after_a_block_that_is_not_done(source, volume, blocks, sessions):
    events = Events()
    session = sessions(Lifecycle(events, fail=[blocks[1].key]), source)
    outcomes = _worker.run_blocks(session, tasks(blocks[:4]))
    assert [outcome and outcome.status for outcome in outcomes] == [DONE, FAILED, None, None]
    assert outcomes[0].value == read_box_sum(volume, source, blocks[0])
    assert outcomes[1].error == f"ValueError: cannot handle block {blocks[1].key}"
    assert [event for event, _, _ in events] == ["setup", blocks[0].key, blocks[1].key]
    # the blocks given back run in the next batch
    assert all(outcome.ok for outcome in _worker.run_blocks(session, tasks(blocks[2:4])))


def test_a_halted_board_starts_no_more_blocks_of_a_batch(source, blocks, sessions):
    board = ndf.SerialExecutor().make_board()
    ran = []

    def halt_at_the_second(data, block):
        ran.append(block.key)
        if len(ran) == 2:
            board.halt()  # as the coordinator does when the run stops
        return len(ran)

    processor = ndf.FunctionProcessor(halt_at_the_second, pass_block=True)
    session = sessions(processor, source, board=board)
    outcomes = _worker.run_blocks(session, tasks(blocks[:5]))
    assert [outcome and outcome.value for outcome in outcomes] == [1, 2, None, None, None]
    assert _worker.run_blocks(session, tasks(blocks[5:])) == [None] * 3
    assert ran == [block.key for block in blocks[:2]]


def test_a_task_may_carry_only_the_id_of_a_session_opened_in_its_process(source, block,
                                                                         sessions):
    session = sessions(ndf.FunctionProcessor(lambda data: 1), source)
    with pytest.raises(ndf.WorkerError, match=rf"run session {session.id} was never opened "
                                              rf"in worker process {os.getpid()}: an executor "
                                              rf"with opens_sessions = True must call "
                                              rf"session.open\(\)"):
        _worker.run_blocks(session.id, tasks([block]))
    session.open()
    try:
        assert _worker.run_block(session.id, block).value == 1
    finally:
        session.close()


# -- reads, writes, and what a block's try reports -------------------------------------------

def test_a_failed_read_or_write_is_a_data_error_and_an_output_the_sink_refuses_a_failure(
        source, volume, block, sessions):
    broken = BrokenSource(volume, block.box, origin=source.bounds.start)
    outcome = _worker.run_block(sessions(ndf.FunctionProcessor(len), broken), block)
    assert outcome.status is ndf.BlockStatus.DATA_ERROR
    assert outcome.error == (f"ConnectionResetError: connection reset while reading "
                             f"{block.read_box}")
    copy = ndf.FunctionProcessor(lambda data, block: {"em": block.crop(data["em"])},
                                 pass_block=True)
    full = BrokenSink({"em": np.zeros(source.bounds.shape, np.uint8)},
                      origin=source.bounds.start)
    outcome = _worker.run_block(sessions(copy, source, full), block)
    assert outcome.status is ndf.BlockStatus.DATA_ERROR
    assert outcome.error == "OSError: [Errno 28] No space left on device"
    narrow = ndf.InMemorySink.zeros({"em": "int8"}, source.bounds)
    outcome = _worker.run_block(sessions(copy, source, narrow), block)
    assert outcome.status is FAILED and outcome.error == (
        "OutputError: output 'em' holds values from 0 to 255, outside the range -128..127 "
        "of channel 'em' (int8)")
    assert not narrow.arrays["em"].any()


def test_an_error_named_in_retry_on_is_worth_another_try_and_others_are_not(source, block,
                                                                           sessions):
    def raise_(error):
        def process(data):
            raise error
        return process

    flaky = ndf.FunctionProcessor(raise_(TimeoutError("slow service")), retry_on=OSError)
    outcome = _worker.run_block(sessions(flaky, source), block)
    assert outcome.status is FAILED and outcome.retryable
    assert outcome.error == "TimeoutError: slow service"
    buggy = ndf.FunctionProcessor(raise_(ValueError("bug")), retry_on=OSError)
    assert not _worker.run_block(sessions(buggy, source), block).retryable
    # an interrupt inside a block fails it; a second Ctrl-C of the coordinator goes through
    interrupted = _worker.run_block(sessions(ndf.FunctionProcessor(raise_(
        KeyboardInterrupt())), source), block)
    assert interrupted.status is FAILED and interrupted.error == "KeyboardInterrupt: "
    with pytest.raises(_worker.ForcedInterrupt):
        _worker.run_block(sessions(ndf.FunctionProcessor(raise_(
            _worker.ForcedInterrupt("again"))), source), block)


def double(data, block):
    return block.crop(data["em"]).astype(np.uint16) * 2


@pytest.mark.parametrize(("returns", "value", "written"), [
    (lambda data, block: ndf.BlockOutput({"out": double(data, block)}, value=7), 7, True),
    (lambda data, block: {"out": double(data, block)}, None, True),
    (lambda data, block: None, None, False),
], ids=["block output", "arrays", "nothing"])
def test_with_a_sink_what_process_returns_is_split_into_sink_arrays_and_a_value(
        source, volume, block, sessions, returns, value, written):
    sink = ndf.InMemorySink.zeros({"out": "uint16"}, source.bounds)
    processor = ndf.FunctionProcessor(returns, pass_block=True)
    outcome = _worker.run_block(sessions(processor, source, sink), block)
    assert outcome.status is DONE and outcome.value == value
    expected = np.zeros(source.bounds.shape, np.uint16)
    if written:
        expected[block.box.relative_to(source.bounds).slices()] = owned(
            volume, source, block).astype(np.uint16) * 2
    np.testing.assert_array_equal(sink.arrays["out"], expected)


def test_with_a_sink_a_value_alone_fails_its_block(source, block, sessions):
    sink = ndf.InMemorySink.zeros({"out": "uint16"}, source.bounds)
    outcome = _worker.run_block(sessions(ndf.FunctionProcessor(lambda data: 3), source, sink),
                                block)
    assert outcome.status is FAILED and not outcome.stops_run
    assert outcome.error == ("OutputError: with a sink, process() must return "
                             "{channel: array} or a BlockOutput, got int")
    assert not sink.arrays["out"].any()


@pytest.mark.parametrize(("returns", "expected"), [
    (lambda data, block: 3, lambda owned: 3),
    (lambda data, block: block.crop(data["em"]).max(axis=0), lambda owned: owned.max(axis=0)),
    (lambda data, block: ndf.BlockOutput(value=block.crop(data["em"])), lambda owned: owned),
    (lambda data, block: [block.crop(data["em"])], lambda owned: [owned]),
], ids=["number", "2-D array", "block output", "list"])
def test_without_a_sink_what_process_returns_is_the_value(source, volume, block, sessions,
                                                         returns, expected):
    processor = ndf.FunctionProcessor(returns, pass_block=True)
    outcome = _worker.run_block(sessions(processor, source), block)
    assert outcome.status is DONE
    np.testing.assert_equal(outcome.value, expected(owned(volume, source, block)))


@pytest.mark.parametrize(("returns", "message"), [
    (lambda data, block: block.crop(data["em"]),
     "process() returned a 3-D array of shape (5, 12, 10) of the block's shape but the "
     "pipeline has no sink to write them to: give the pipeline a sink (ndframework run: "
     "--output PATH), or return BlockOutput(value=...) to send them back as the block's "
     "value"),
    (lambda data, block: data["em"], "process() returned a 3-D array of shape (6, 13, 11)"),
    (lambda data, block: {"copy": block.crop(data["em"]), "n": 3},
     "process() returned 3-D arrays ('copy': (5, 12, 10)) of the block's shape"),
    (lambda data, block: ndf.BlockOutput({"copy": block.crop(data["em"])}),
     "the processor returned arrays ['copy'] but the pipeline has no sink to write them to"),
], ids=["owned array", "read array", "dict of arrays", "block output"])
def test_without_a_sink_arrays_of_the_blocks_shape_are_an_output_error_that_stops_the_run(
        source, block, sessions, returns, message):
    processor = ndf.FunctionProcessor(returns, pass_block=True)
    outcome = _worker.run_block(sessions(processor, source), block)
    assert outcome.status is FAILED and outcome.stops_run and not outcome.retryable
    assert outcome.error.startswith(f"OutputError: {message}")


# -- the same, through a pipeline -------------------------------------------------------------

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


def test_a_pipeline_run_inside_a_processor_leaves_the_outer_run_alone(source, tiler, volume):
    for executor in ("serial", ndf.ThreadExecutor(2)):
        result = ndf.Pipeline(source, NestedRun(), tiler=tiler, executor=executor).run()
        assert result.ok
        for block in tiler.blocks(source.bounds):
            owned = volume["em"][block.box.relative_to(source.bounds).slices()]
            assert result.values[block.key] == ("outer", int(owned.astype(np.int64).sum()),
                                                {"0_0_0": 8})


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
    assert all(re.search(message, f.error) for f in result.failed.values())


def test_a_ragged_output_fails_its_block_not_the_run(source, tiler, tmp_path):
    sink = ndf.ZarrSink.create(tmp_path / "o.zarr", {"out": "uint8"}, source.bounds,
                               chunk_shape=(5, 12, 10))
    result = ndf.Pipeline(source, lambda d: {"out": [[1, 2], [3]]}, tiler=tiler, sink=sink,
                          executor="serial").run()
    assert result.stopped is None and result.not_run == ()
    assert len(result.failed) == 8
    assert all(f.error.startswith("OutputError: output 'out' cannot be made into an array")
               for f in result.failed.values())


def test_a_block_output_with_arrays_and_no_sink_stops_the_run(source):
    with pytest.raises(ndf.OutputError, match="no sink to write them to") as caught:
        ndf.Pipeline(source, lambda d: ndf.BlockOutput({"x": d["em"]}),
                     tiler=ndf.RegularTiler((10, 24, 20), origin=(0, 100, 200)),
                     executor="serial").run()
    (failure,) = caught.value.result.failed.values()
    assert "no sink to write them to" in failure.error


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

"""The coordinator of one run session: hands blocks to workers, collects their outcomes,
records them in the journal, calls the hooks, stops blocks that run too long, replaces a
pool whose worker died, and stops cleanly when asked to. Voxel data never pass through here,
and its memory does not grow with the number of blocks: every outcome goes to the journal.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import signal
import threading
import time
import traceback
from concurrent import futures
from typing import Any, Callable, Iterator

import attrs

from . import _worker
from ._hooks import Hooks
from ._views import KeyList
from .errors import (
    DataAccessError, NDFrameworkError, OutputError, ReduceError, SetupError, WorkerError,
)
from .executors import Executor, WorkerSession, worker_processes
from .geometry import Block
from .hookspecs import RetryReason
from .journal import HEARTBEAT, BlockState, Journal, dumps_value
from .processor import BlockProcessor
from .result import BlockOutcome, BlockStatus, RunCounts, RunInfo, RunResult

__all__ = ["Run", "FailureLimit"]

_POLL = 0.25
"""Seconds between two looks at timeouts, signals and the journal while blocks run."""

MAX_BATCH = 256
"""Most blocks in one batch."""

MAX_CLAIM = 1024
"""Most blocks claimed in the journal at once, ahead of those handed out."""


@attrs.define
class _Task:
    """A block on its way through the run, with what its tries taught."""

    ordinal: int
    block: Block
    attempts: int = 0
    deaths: int = 0
    alone: bool = False
    """Suspected of killing its worker: runs with no other block in flight."""
    single: bool = False
    """Runs in a batch of its own (its batch failed as a whole)."""
    unseen: int = 0
    """Times it was lost with a worker before the board showed it running."""
    ticket: int = 0


@attrs.frozen
class FailureLimit:
    """When to stop handing out blocks because too many failed.

    ``count`` blocks failed in this session; with ``ratio``, only while they are also at
    least that fraction of the blocks finished (so a systematic bug stops the run after
    ``count`` blocks, sparse failures over a large volume never do).
    """

    count: int
    """Failed blocks at which the run stops."""
    ratio: float | None = None
    """With it, stop only while failures are at least this fraction of the blocks
    finished (done blocks of earlier sessions included)."""

    def reached(self, failed: int, done: int) -> bool:
        if failed < self.count:
            return False
        return self.ratio is None or failed >= self.ratio * (failed + done)

    def describe(self, failed: int, done: int) -> str:
        if self.ratio is None:
            return (f"max_failures={self.count} reached: {failed} blocks had failed, so no "
                    f"more were handed out")
        return (f"{failed} blocks failed and only {done} were done: the processor fails "
                f"on most blocks (the default limit for runs with a journal; pass "
                f"max_failures= or --max-failures to change it)")


def _unseen(broken: list[_Task]) -> dict[int, tuple[Any, float]]:
    """What a board would show of ``broken``'s blocks, for an executor that has none: each
    may have been running when its worker died, so each is a suspect, tried again alone."""
    return {task.ticket: ("a worker", 0.0) for task in broken}


class Run:
    """The coordinator's bookkeeping for one session of a pipeline's run."""

    def __init__(
        self,
        info: RunInfo,
        *,
        blocks: Callable[[], Iterator[Block]],
        executor: Executor,
        processor: BlockProcessor,
        session: WorkerSession,
        hooks: Hooks,
        journal: Journal,
        max_attempts: int,
        max_in_flight: int,
        failure_limit: FailureLimit | None = None,
        block_timeout: float | None = None,
    ) -> None:
        self.info = info
        self.blocks = blocks
        self.executor = executor
        self.processor = processor
        self.session = session
        self.task_session: WorkerSession | str = session
        self.hooks = hooks
        self.journal = journal
        self.max_attempts = max_attempts
        self.max_in_flight = max_in_flight
        self.failure_limit = failure_limit
        self.block_timeout = block_timeout
        self.todo = self._candidates()
        self.retry: collections.deque[_Task] = collections.deque()
        self.in_flight: dict[futures.Future, list[_Task]] = {}
        self.block_seconds: float | None = None  # a moving average of blocks' durations
        self.handed_out = 0
        self.tickets = itertools.count(1)
        self.timed_out: dict[int, tuple[float, int]] = {}
        self.board: Any = None
        self.done = self.failed = self.skipped = 0
        self.stop_error: NDFrameworkError | None = None
        self.reduce_error: ReduceError | None = None
        self.stopped: str | None = None
        self.interrupted: int | None = None
        self.deaths_in_a_row = 0
        self.unseen_in_a_row = 0
        """Batches lost with their worker before it showed any of them running."""
        self.started = time.perf_counter()

    # -- the loop ------------------------------------------------------------------------

    def execute(self) -> RunResult:
        """Run every block not yet done; return what happened (see `result`)."""
        self._announce_skipped()
        with _Signals(self):
            pool = self._start_pool()
            try:
                while True:
                    pool = self._fill(pool)
                    if not self.in_flight:
                        break
                    finished, _ = futures.wait(self.in_flight, timeout=self._wait(),
                                               return_when=futures.FIRST_COMPLETED)
                    broken: list[_Task] = []
                    for future in finished:
                        tasks = self.in_flight.pop(future)
                        if not self._collect(tasks, future):
                            broken.extend(tasks)
                    if self.interrupted is not None:
                        break
                    self._check_timeouts()
                    if broken and self.executor.breaks_whole:
                        pool = self._restart(pool, broken)
                    elif broken:
                        self._lost(broken)
                    if self.journal.due() == 0.0:
                        self.journal.flush()
                    self.journal.keep_alive()
                if self.interrupted is None:
                    self._shut(pool, wait=True)
                else:  # also when nothing was in flight as the signal came
                    self._drain()
                    self._abandon(pool)
            except BaseException:  # a second signal while draining, a bug, ...
                self._abandon(pool)
                raise
            finally:
                self.session.close()  # if a pool opened it in this process
        return self.result()

    def _wait(self) -> float:
        due = self.journal.due()
        longest = _POLL if self.block_timeout is not None or _Signals.active(self) \
            else HEARTBEAT
        return longest if due is None else min(due, longest)

    def _start_pool(self) -> futures.Executor:
        self.board = self.executor.make_board()
        session = attrs.evolve(self.session, board=self.board)
        self.task_session = session.id if self.executor.opens_sessions else session
        return self.executor.start(session)

    def _shut(self, pool: futures.Executor, *, wait: bool, cancel: bool = False) -> None:
        """Shut ``pool`` down (with ``cancel``, its tasks not started are cancelled first,
        also for a pool whose ``shutdown`` predates ``cancel_futures``), and tear down the
        workers it left in this thread and in the threads of this process that ended."""
        try:
            if cancel:
                for future in self.in_flight:
                    future.cancel()
            if cancel and "cancel_futures" in inspect.signature(pool.shutdown).parameters:
                pool.shutdown(wait=wait, cancel_futures=True)
            else:
                pool.shutdown(wait=wait)
        finally:
            _worker.end_worker(self.session.id)  # a pool that ran tasks in this thread
            _worker.end_session(self.session.id)

    def stop(self, error: NDFrameworkError | None, reason: str) -> None:
        """Hand out no more blocks; the run ends once those running are in (blocks handed
        out but not started are taken back: they are left not run)."""
        if self.stopped is None:
            self.stopped = reason
            if error is not None:
                self.stop_error = error
            for future in self.in_flight:
                future.cancel()
            if self.board is not None:
                self.board.halt()

    # -- handing out ---------------------------------------------------------------------

    def _announce_skipped(self) -> None:
        """Tell the plugins of the blocks that earlier sessions recorded done, which this
        session skips (their keys read from the journal as a plugin iterates them)."""
        journal = self.journal
        query: dict[str, Any] = dict(status=BlockStatus.DONE, session=self.info.session,
                                     other_sessions=True)
        if journal.count(**query):
            keys = KeyList(lambda: (record.key for record in journal.records(**query)),
                           lambda: journal.count(**query))
            self.hooks.on_blocks_skipped(run=self.info, keys=keys)

    def _candidates(self) -> Iterator[_Task]:
        """The blocks to run in this session, in two passes over the tiling: first those
        never tried (or not done), then those that failed in an earlier session, so that a
        resumed run makes progress before it meets known trouble. Blocks recorded done are
        skipped; blocks another live session has claimed are left to it. Claims go a few
        batches ahead of the workers (at most `MAX_CLAIM` blocks), so that sessions sharing
        the journal share the work."""
        def batch() -> int:
            return min(MAX_CLAIM, max(16, 2 * self.max_in_flight * self._batch_size()))
        failed_before = 0
        for ordinal, block, state in self.journal.pending(self.blocks(), claim=True,
                                                          batch=batch):
            if state is BlockState.NEW:
                yield _Task(ordinal, block)
            elif state is BlockState.DONE:
                self.skipped += 1  # for the failure limit: done blocks met so far
            elif state is BlockState.FAILED_BEFORE:
                failed_before += 1
        if failed_before:
            for ordinal, block, state in self.journal.pending(self.blocks(), claim=True,
                                                              batch=batch):
                if state is BlockState.FAILED_BEFORE:
                    yield _Task(ordinal, block)

    def _next_task(self) -> _Task | None:
        """The next block never handed out in this session, its hook called."""
        task = next(self.todo, None)
        if task is not None:
            self.hooks.before_block(run=self.info, block=task.block)
        return task

    def _fill(self, pool: futures.Executor) -> futures.Executor:
        """Hand batches of blocks to workers until ``max_in_flight`` batches are out. A
        block suspected of killing its worker runs alone, so that the next death is surely
        its own."""
        while self.stopped is None and len(self.in_flight) < self.max_in_flight:
            tasks = self._next_batch()
            if not tasks:
                return pool
            for task in tasks:
                task.attempts += 1
                task.ticket = next(self.tickets)
            try:
                future = pool.submit(_worker.run_blocks, self.task_session,
                                     [(task.block, task.ticket) for task in tasks])
            except Exception as error:
                if not self.executor.is_worker_death(error):
                    raise
                for task in reversed(tasks):
                    task.attempts -= 1
                    self.retry.appendleft(task)
                pool = self._restart(pool, [])
            else:
                self.in_flight[future] = tasks
                if tasks[0].alone:
                    return pool
        return pool

    def _next_batch(self) -> list[_Task]:
        """The blocks to hand out together: blocks to try again first, else new ones in
        tiling order (neighbours, so that a worker's reads stay local)."""
        if self.retry:
            if self.retry[0].alone:
                return [] if self.in_flight else [self.retry.popleft()]
            if self.retry[0].single:
                return [self.retry.popleft()]
            tasks = []
            while (self.retry and not self.retry[0].alone and not self.retry[0].single
                   and len(tasks) < self._batch_size()):
                tasks.append(self.retry.popleft())
            return tasks
        size = self._batch_size()
        tasks = []
        while len(tasks) < size and (task := self._next_task()) is not None:
            tasks.append(task)
        self.handed_out += len(tasks)
        return tasks

    def _batch_size(self) -> int:
        """Blocks per batch: about the executor's ``batch_seconds`` of work by the blocks'
        measured durations, for executors that batch; never so many that workers would be
        left idle at the end (each batch at most a share of the blocks left)."""
        if not self.executor.batches or self.block_seconds is None:
            return 1
        wanted = int(self.executor.batch_seconds / max(self.block_seconds, 1e-6))
        left = self.info.block_count - self.handed_out
        share = left // (2 * self.executor.workers)
        return max(1, min(wanted, MAX_BATCH, share))

    def _measured(self, outcome: BlockOutcome) -> None:
        seconds = outcome.timings.total
        if self.block_seconds is None:
            self.block_seconds = seconds
        else:
            self.block_seconds += 0.2 * (seconds - self.block_seconds)

    # -- collecting ----------------------------------------------------------------------

    def _collect(self, tasks: list[_Task], future: futures.Future) -> bool:
        """Settle a finished batch; False when it reports a broken pool."""
        try:
            outcomes = future.result()
        except futures.CancelledError:  # taken back by stop(); else lost by the executor
            return self.stopped is not None
        except Exception as error:  # e.g. a value that cannot be pickled back
            if self.executor.is_worker_death(error):
                return False
            if len(tasks) > 1:  # find out which block, each on its own: none is charged
                for task in tasks:
                    task.attempts -= 1
                    task.single = True
                self.retry.extend(tasks)
                return True
            outcomes = [BlockOutcome(tasks[0].block.key, BlockStatus.FAILED,
                                     error=f"{type(error).__name__}: {error}")]
        given_back = []
        for task, outcome in zip(tasks, outcomes):
            if outcome is None:  # given back unrun: the batch ended early
                task.attempts -= 1
                given_back.append(task)
                continue
            self._measured(outcome)
            self._settle(task, outcome)
        self.retry.extendleft(reversed(given_back))  # next, in their order
        return True

    def _settle(self, task: _Task, outcome: BlockOutcome) -> None:
        block = task.block
        if outcome.attempts != task.attempts:  # for plugins: only the coordinator counts tries
            outcome = attrs.evolve(outcome, attempts=task.attempts)
        if outcome.ok:
            try:
                value = dumps_value(outcome.value)
            except Exception as error:
                outcome = BlockOutcome(
                    block.key, BlockStatus.FAILED, timings=outcome.timings,
                    worker=outcome.worker, attempts=task.attempts,
                    error=(f"the block's value cannot be stored in the journal "
                           f"({type(error).__name__}: {error}); return picklable values"),
                )
            else:
                self.journal.finished(task.ordinal, outcome, task.attempts, value)
                self.done += 1
                self.deaths_in_a_row = self.unseen_in_a_row = 0
                self.hooks.after_block(run=self.info, block=block, outcome=outcome)
                return
        if outcome.retryable and task.attempts < self.max_attempts:
            self.hooks.on_block_retry(run=self.info, block=block, outcome=outcome,
                                      attempt=task.attempts, reason="retry_on")
            self.retry.append(task)
            return
        self.journal.finished(task.ordinal, outcome, task.attempts)
        self.failed += 1
        if outcome.status is BlockStatus.DATA_ERROR:
            self.stop(DataAccessError(
                f"data access failed for block {block.key} (box {block.box}, read box "
                f"{block.read_box}): {outcome.error}",
                key=block.key, traceback=outcome.traceback,
            ), f"data access failed for block {block.key}")
        elif outcome.status is BlockStatus.SETUP_ERROR:
            self.stop(SetupError(
                f"the processor's setup() failed in worker {outcome.worker}: {outcome.error}",
                traceback=outcome.traceback,
            ), "the processor's setup() failed")
        elif outcome.stops_run:  # every block would fail the same way
            self.stop(OutputError(f"block {block.key}: {outcome.error}",
                                  traceback=outcome.traceback),
                      f"block {block.key} returned arrays with no sink to write them to")
        elif self.failure_limit is not None and \
                self.failure_limit.reached(self.failed, self.done + self.skipped):
            # blocks done by earlier sessions count as done: a resumed run whose only
            # blocks left are known failures is not "failing on most blocks"
            self.stop(None, self.failure_limit.describe(self.failed, self.done + self.skipped))
        self.hooks.on_block_error(run=self.info, block=block, outcome=outcome)

    def _fail(self, task: _Task, error: str, worker: str = "") -> None:
        self._settle(task, BlockOutcome(task.block.key, BlockStatus.FAILED, error=error,
                                        worker=worker))

    # -- timeouts, dead workers, interrupts ---------------------------------------------

    def _check_timeouts(self) -> None:
        if self.block_timeout is None or self.board is None:
            return
        now = time.monotonic()
        for ticket, (pid, started) in self.board.running().items():
            if ticket not in self.timed_out and now - started > self.block_timeout:
                self.timed_out[ticket] = (now - started, pid)
                self.executor.stop_worker(pid)

    def _restart(self, pool: futures.Executor, broken: list[_Task]) -> futures.Executor:
        """Replace a broken pool (a process pool breaks whole when one worker dies) and
        judge the blocks it held (see `_judge`)."""
        running = None if self.board is None else self.board.running()
        processes = None if self.board is None else worker_processes(pool)
        lost = list(broken)  # of these, the blocks that were running
        self._shut(pool, wait=True, cancel=True)
        for future, tasks in list(self.in_flight.items()):  # settled by the shutdown
            del self.in_flight[future]
            if not self._collect(tasks, future):
                broken.extend(tasks)
                if not future.cancelled():  # lost with the pool, not taken back unstarted
                    lost.extend(tasks)
        if running is None:
            running = _unseen(lost)
        dead = None
        if processes is not None:
            dead = {pid for pid, process in processes.items()
                    if process.exitcode not in (None, 0, -signal.SIGTERM)}
        self._judge(broken, running, dead)
        self.timed_out.clear()  # the new pool's workers start afresh
        return self._start_pool()

    def _lost(self, broken: list[_Task]) -> None:
        """Judge the blocks of batches whose worker was lost, where the pool goes on
        without it (see `Executor.breaks_whole`): the block each was running, by the board,
        is the suspect; the worker named there is the one that died."""
        if self.board is None:
            self._judge(broken, _unseen(broken), None)
            return
        running = self.board.running()
        dead = {running[task.ticket][0] for task in broken if task.ticket in running}
        self.board.forget([task.ticket for task in broken])
        if not dead and not any(task.ticket in self.timed_out for task in broken):
            # A block running alone was the one in flight: its worker died of it (or of
            # setup()), whether the board heard of it or not.
            if any(task.alone for task in broken):
                self._judge(broken, _unseen(broken), None)
                return
            # Queued on a worker lost meanwhile, or lost before it showed a block running
            # (dying in setup(), or too soon for the board to hear): given back as never
            # tried, the death counted; lost so a second time, each is a suspect, alone.
            for task in reversed(broken):
                task.attempts -= 1
                task.unseen += 1
                task.alone = task.alone or task.unseen >= 2
                self.retry.appendleft(task)
            # Counted apart from the deaths `_judge` counts: a batch only queued on a worker
            # that a running block killed is the same death, met again.
            self.unseen_in_a_row += 1
            if self.unseen_in_a_row > 2 * (self.max_attempts + self.executor.workers):
                self.stop(WorkerError(
                    f"worker processes died {self.unseen_in_a_row} times in a row before "
                    f"starting a block (killed, crashed or out of memory, or in the "
                    f"processor's setup())"
                ), "worker processes kept dying")
            return
        self._judge(broken, running, dead)

    def _judge(self, broken: list[_Task], running: dict[int, tuple[Any, float]],
               dead: set[Any] | None) -> None:
        """Of blocks whose worker was lost: one that ran past its timeout is charged a
        try; one that was running on a worker that died is the suspect; blocks that were
        merely queued, or running on workers ended because of it, go back to be handed out
        again as if never tried. ``dead``: the workers (as the board names them) that died,
        or None when the executor cannot tell."""
        # a worker ended for a timeout may have moved on to another block meanwhile
        ended = {pid for _, pid in self.timed_out.values()}
        suspects = [task for task in broken if task.ticket in running
                    and task.ticket not in self.timed_out
                    and running[task.ticket][0] not in ended
                    and (dead is None or running[task.ticket][0] in dead)]
        # each suspect's own worker died when the executor tells which did; otherwise
        # only a block that was running alone is surely the one that killed its worker
        certain = dead is not None or len(suspects) == 1
        timeouts_only = not suspects and any(task.ticket in self.timed_out for task in broken)
        for task in broken:
            if task.ticket in self.timed_out:
                self._timed_out(task)
            elif task in suspects:
                self._worker_died(task, certain=certain, worker=str(running[task.ticket][0]))
            else:
                task.attempts -= 1
                self.retry.appendleft(task)
        # Two blocks that each kill their worker cost 2 * max_attempts deaths; more in a row
        # without a block done means workers die whatever they run (memory, a broken setup).
        # A worker ended only because a block ran past its timeout is no death.
        if not timeouts_only:
            self._count_death()

    def _count_death(self) -> None:
        self.deaths_in_a_row += 1
        if self.deaths_in_a_row > 2 * self.max_attempts:
            self.stop(WorkerError(
                f"worker processes died {self.deaths_in_a_row} times in a row without "
                f"finishing a block (killed, crashed or out of memory)"
            ), "worker processes kept dying")

    def _timed_out(self, task: _Task) -> None:
        seconds, pid = self.timed_out.pop(task.ticket)
        error = (f"BlockTimeout: block {task.block.key} timed out after "
                 f"{self.block_timeout:g} s (ran {seconds:.1f} s; its worker was ended)")
        if task.attempts < self.max_attempts:
            self._retried(task, error, str(pid), "timeout")
            return
        self._fail(task, f"{error}, {task.attempts} time(s)", worker=str(pid))

    def _worker_died(self, task: _Task, *, certain: bool, worker: str) -> None:
        """``task`` was running on a worker that died. Certain: it was the only one, so it
        is charged a death and tried again alone until ``max_attempts``; else it is one of
        several suspects, each tried again alone, uncharged."""
        if certain:
            task.deaths += 1
        error = (f"WorkerError: the worker process running block {task.block.key} died "
                 f"(killed, crashed or out of memory)")
        if task.deaths >= self.max_attempts:
            self._fail(task, f"{error}, {task.deaths} times")
            return
        task.alone = True
        self._retried(task, error, worker, "worker_died")

    def _retried(self, task: _Task, error: str, worker: str, reason: RetryReason) -> None:
        """``task``'s try ended with its worker (``reason``): tell the plugins, and queue
        the block to be tried again."""
        outcome = BlockOutcome(task.block.key, BlockStatus.FAILED, error=error, worker=worker,
                               attempts=task.attempts)
        self.hooks.on_block_retry(run=self.info, block=task.block, outcome=outcome,
                                  attempt=task.attempts, reason=reason)
        self.retry.append(task)

    def _drain(self) -> None:
        """Workers in this process cannot be ended, and end their batches after the block
        they run (the board is halted): wait for them and record what they did, so that a
        block done is not run again on resuming. A second signal stops the wait."""
        if self.board is None or not getattr(self.board, "in_process", False):
            return
        while self.in_flight:
            finished, _ = futures.wait(self.in_flight, timeout=HEARTBEAT,
                                       return_when=futures.FIRST_COMPLETED)
            for future in finished:
                self._collect(self.in_flight.pop(future), future)
            self.journal.keep_alive()

    def _abandon(self, pool: futures.Executor) -> None:
        """Stop at once: end the workers; blocks in flight are left not run."""
        if self.board is not None:
            for pid, _ in self.board.running().values():
                self.executor.stop_worker(pid)
        processes = worker_processes(pool)
        for process in (processes or {}).values():
            try:
                process.kill()
            except Exception:  # already gone
                pass
        self._shut(pool, wait=processes is not None, cancel=True)
        self.in_flight.clear()

    def interrupt(self, signum: int) -> None:
        """Called on SIGINT or SIGTERM: stop handing out blocks and end the workers."""
        self.interrupted = signum
        self.stop(None, f"interrupted by {signal.Signals(signum).name}")

    # -- the result ----------------------------------------------------------------------

    def result(self) -> RunResult:
        """What happened in this session; the journal is committed first."""
        journal, session = self.journal, self.info.session
        journal.end_session(self.stopped)
        # From the records, not this session's counters: where sessions share the journal,
        # a block two of them ran belongs to the one that recorded it last. Every block
        # recorded done by another session is one this session need not run.
        done = journal.count(status=BlockStatus.DONE, session=session)
        failed = journal.count(status=BlockStatus.FAILED, session=session)
        skipped = journal.count(status=BlockStatus.DONE, session=session, other_sessions=True)
        not_run = max(0, self.info.block_count - done - failed - skipped)
        counts = RunCounts(done, failed, skipped, not_run)
        reduced = None
        if self.stopped is None:
            values = RunResult(self.info, counts, None, 0.0, journal=journal).values
            try:
                reduced = self.processor.reduce_values(values)
            except Exception as error:
                self.reduce_error = ReduceError(
                    f"the processor's {'fold' if self.processor.folds else 'reduce'}() "
                    f"raised {type(error).__name__}: {error}",
                    traceback="".join(traceback.format_exception(error)))
        return RunResult(
            run=self.info,
            counts=counts,
            reduced=reduced,
            elapsed=time.perf_counter() - self.started,
            stopped=self.stopped,
            journal=self.journal,
            blocks=self.blocks,
            plugin_errors=self.hooks.errors(),
        )


class _Signals:
    """SIGINT and SIGTERM, while a run goes on in the main thread, stop it cleanly: the
    run hands out no more blocks, ends its workers and commits its journal. A second
    signal of either kind raises `KeyboardInterrupt` at once, as Python does by default
    for SIGINT."""

    _running: set[int] = set()

    def __init__(self, run: Run) -> None:
        self.run = run
        self.previous: dict[int, Any] = {}

    @classmethod
    def active(cls, run: Run) -> bool:
        return id(run) in cls._running

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except (ValueError, OSError):  # not allowed here
                pass
        _Signals._running.add(id(self.run))
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.run.interrupted is not None:  # a second Ctrl-C, or SIGTERM again
            raise _worker.ForcedInterrupt("interrupted again: stopping at once")
        self.run.interrupt(signum)

    def __exit__(self, *exc: object) -> None:
        _Signals._running.discard(id(self.run))
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

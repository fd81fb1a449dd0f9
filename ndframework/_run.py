"""The coordinator of one run session: hands blocks to workers, collects their outcomes,
records them in the journal, calls the hooks, stops blocks that run too long, replaces a
pool whose worker died, and stops cleanly when asked to. Voxel data never pass through here,
and its memory does not grow with the number of blocks: every outcome goes to the journal.
"""

from __future__ import annotations

import collections
import itertools
import signal
import threading
import time
from concurrent import futures
from typing import Any, Callable, Iterator

import attrs

from . import _worker
from ._hooks import Hooks
from .errors import DataAccessError, NDFrameworkError, SetupError, WorkerError
from .executors import Executor, WorkerLifecycle, exit_codes
from .geometry import Block
from .journal import Journal, dumps_value
from .processor import BlockProcessor
from .result import BlockOutcome, BlockStatus, RunCounts, RunInfo, RunResult

__all__ = ["Run", "FailureLimit"]

_POLL = 0.25
"""Seconds between two looks at timeouts, signals and the journal while blocks run."""


@attrs.define
class _Task:
    """A block on its way through the run, with what its tries taught."""

    ordinal: int
    block: Block
    attempts: int = 0
    deaths: int = 0
    alone: bool = False
    ticket: int = 0


@attrs.frozen
class FailureLimit:
    """When to stop handing out blocks because too many failed.

    ``count`` blocks failed in this session; with ``ratio``, only while they are also at
    least that fraction of the blocks finished (so a systematic bug stops the run after
    ``count`` blocks, sparse failures over a large volume never do).
    """

    count: int
    ratio: float | None = None

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


class Run:
    """The coordinator's bookkeeping for one session of a pipeline's run."""

    def __init__(
        self,
        info: RunInfo,
        *,
        blocks: Callable[[], Iterator[Block]],
        executor: Executor,
        processor: BlockProcessor,
        lifecycle: Callable[[Any], WorkerLifecycle],
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
        self.lifecycle = lifecycle
        self.hooks = hooks
        self.journal = journal
        self.max_attempts = max_attempts
        self.max_in_flight = max_in_flight
        self.failure_limit = failure_limit
        self.block_timeout = block_timeout
        self.todo = journal.pending(blocks())
        self.deferred: collections.deque[_Task] = collections.deque()
        self.retry: collections.deque[_Task] = collections.deque()
        self.in_flight: dict[futures.Future, _Task] = {}
        self.tickets = itertools.count(1)
        self.timed_out: dict[int, tuple[float, int]] = {}
        self.board: Any = None
        self.done = self.failed = self.skipped = 0
        self.stop_error: NDFrameworkError | None = None
        self.stopped: str | None = None
        self.interrupted: int | None = None
        self.deaths_in_a_row = 0
        self.started = time.perf_counter()

    # -- the loop ------------------------------------------------------------------------

    def execute(self) -> RunResult:
        """Run every block not yet done; return what happened (see `result`)."""
        with _Signals(self):
            pool = self._start_pool()
            try:
                while True:
                    pool = self._fill(pool)
                    if not self.in_flight:
                        break
                    finished, _ = futures.wait(self.in_flight, timeout=self._wait(),
                                               return_when=futures.FIRST_COMPLETED)
                    broken = []
                    for future in finished:
                        task = self.in_flight.pop(future)
                        if not self._collect(task, future):
                            broken.append(task)
                    if self.interrupted is not None:
                        self._abandon(pool)
                        break
                    self._check_timeouts()
                    if broken:
                        pool = self._restart(pool, broken)
                    if self.journal.due() == 0.0:
                        self.journal.flush()
            except BaseException:
                self._abandon(pool)
                raise
            if self.interrupted is None:
                pool.shutdown(wait=True)
        return self.result()

    def _wait(self) -> float | None:
        due = self.journal.due()
        if self.block_timeout is not None or _Signals.active(self):
            return _POLL if due is None else min(due, _POLL)
        return due

    def _start_pool(self) -> futures.Executor:
        self.board = self.executor.make_board() if self.block_timeout or \
            self.executor.can_stop_blocks else None
        return self.executor.start(self.lifecycle(self.board))

    def _stop(self, error: NDFrameworkError | None, reason: str,
              traceback: str | None = None) -> None:
        """Hand out no more blocks; the run ends once those running are in (blocks handed
        out but not started are taken back: they are left not run)."""
        if self.stopped is None:
            self.stopped = reason
            if error is not None:
                error.traceback = traceback
                self.stop_error = error
            for future in self.in_flight:
                future.cancel()

    # -- handing out ---------------------------------------------------------------------

    def _next_task(self) -> _Task | None:
        """The next block never tried in this session; those that failed in an earlier
        session come last, so that a resumed run makes progress first."""
        for ordinal, block, failed_before in self.todo:
            if block is None:
                continue
            task = _Task(ordinal, block)
            if failed_before:
                self.deferred.append(task)
                continue
            self.hooks.call("ndf_before_block", run=self.info, block=block)
            return task
        if self.deferred:
            task = self.deferred.popleft()
            self.hooks.call("ndf_before_block", run=self.info, block=task.block)
            return task
        return None

    def _fill(self, pool: futures.Executor) -> futures.Executor:
        """Hand blocks to workers until ``max_in_flight`` are out. A block suspected of
        killing its worker runs alone, so that the next death is surely its own."""
        limit = self.max_in_flight
        while self.stopped is None and self.interrupted is None and len(self.in_flight) < limit:
            if self.retry:
                if self.retry[0].alone:
                    if self.in_flight:
                        return pool
                    limit = 1
                task = self.retry.popleft()
            else:
                next_task = self._next_task()
                if next_task is None:
                    return pool
                task = next_task
            task.attempts += 1
            task.ticket = next(self.tickets)
            try:
                future = pool.submit(_worker.run_block, self.info.session, task.block,
                                     task.ticket)
            except futures.BrokenExecutor:
                task.attempts -= 1
                self.retry.appendleft(task)
                pool = self._restart(pool, [])
            else:
                self.in_flight[future] = task
        return pool

    # -- collecting ----------------------------------------------------------------------

    def _collect(self, task: _Task, future: futures.Future) -> bool:
        """Settle a finished future; False when it reports a broken pool."""
        try:
            outcome = future.result()
        except futures.BrokenExecutor:
            return False
        except futures.CancelledError:
            return True
        except Exception as error:  # e.g. a value that cannot be pickled back
            outcome = BlockOutcome(task.block.key, BlockStatus.FAILED,
                                   error=f"{type(error).__name__}: {error}")
        self._settle(task, outcome)
        return True

    def _settle(self, task: _Task, outcome: BlockOutcome) -> None:
        block = task.block
        if outcome.ok:
            try:
                value = dumps_value(outcome.value)
            except Exception as error:
                outcome = BlockOutcome(
                    block.key, BlockStatus.FAILED, timings=outcome.timings,
                    worker=outcome.worker,
                    error=(f"the block's value cannot be stored in the journal "
                           f"({type(error).__name__}: {error}); return picklable values"),
                )
            else:
                self.journal.finished(task.ordinal, outcome, task.attempts, value)
                self.done += 1
                self.deaths_in_a_row = 0
                self.hooks.call("ndf_after_block", run=self.info, block=block, outcome=outcome)
                return
        if outcome.retryable and task.attempts < self.max_attempts:
            self.hooks.call("ndf_on_block_retry", run=self.info, block=block,
                            outcome=outcome, attempt=task.attempts)
            self.retry.append(task)
            return
        self.journal.finished(task.ordinal, outcome, task.attempts)
        self.failed += 1
        if outcome.status is BlockStatus.DATA_ERROR:
            self._stop(DataAccessError(
                f"data access failed for block {block.key} (box {block.box}, read box "
                f"{block.read_box}): {outcome.error}",
                key=block.key,
            ), f"data access failed for block {block.key}", outcome.traceback)
        elif outcome.status is BlockStatus.SETUP_ERROR:
            self._stop(SetupError(
                f"the processor's setup() failed in worker {outcome.worker}: {outcome.error}"
            ), "the processor's setup() failed", outcome.traceback)
        elif self.failure_limit is not None and \
                self.failure_limit.reached(self.failed, self.done):
            self._stop(None, self.failure_limit.describe(self.failed, self.done))
        self.hooks.call("ndf_on_block_error", run=self.info, block=block, outcome=outcome)

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
        """Replace a broken pool. Of the blocks it held, one that ran past its timeout is
        charged a try; one that was running on the worker that died is the suspect; blocks
        that were merely queued, or running on workers the pool ended because of it, go
        back to be handed out again as if never tried."""
        running = {} if self.board is None else self.board.running()
        processes = exit_codes(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        for future, task in list(self.in_flight.items()):  # settled by the shutdown
            del self.in_flight[future]
            if not self._collect(task, future):
                broken.append(task)
        dead = None
        if processes is not None:
            dead = {pid for pid, process in processes.items()
                    if process.exitcode not in (None, 0, -signal.SIGTERM)}
        suspects = [task for task in broken if task.ticket in running
                    and task.ticket not in self.timed_out
                    and (dead is None or running[task.ticket][0] in dead)]
        # each suspect's own worker died when the pool tells which did; otherwise only a
        # block that was running alone is surely the one that killed its worker
        certain = dead is not None or len(suspects) == 1
        for task in broken:
            if task.ticket in self.timed_out:
                self._timed_out(task)
            elif task in suspects:
                self._worker_died(task, certain=certain)
            else:
                task.attempts -= 1
                self.retry.appendleft(task)
        # Two blocks that each kill their worker cost 2 * max_attempts deaths; more in a row
        # without a block done means workers die whatever they run (memory, a broken setup).
        self.deaths_in_a_row += 1
        if self.deaths_in_a_row > 2 * self.max_attempts:
            self._stop(WorkerError(
                f"worker processes died {self.deaths_in_a_row} times in a row without "
                f"finishing a block (killed, crashed or out of memory)"
            ), "worker processes kept dying")
        return self._start_pool()

    def _timed_out(self, task: _Task) -> None:
        seconds, pid = self.timed_out.pop(task.ticket)
        if task.attempts < self.max_attempts:
            self.retry.append(task)
            return
        self._fail(task, f"BlockTimeout: block {task.block.key} timed out after "
                         f"{self.block_timeout:g} s (ran {seconds:.1f} s; its worker was "
                         f"ended), {task.attempts} time(s)", worker=str(pid))

    def _worker_died(self, task: _Task, *, certain: bool) -> None:
        """``task`` was running on a worker that died. Certain: it was the only one, so it
        is charged a death and tried again alone until ``max_attempts``; else it is one of
        several suspects, each tried again alone, uncharged."""
        if certain:
            task.deaths += 1
        if task.deaths >= self.max_attempts:
            self._fail(task, f"WorkerError: the worker process running block {task.block.key} "
                             f"died (killed, crashed or out of memory), {task.deaths} times")
            return
        task.alone = True
        self.retry.append(task)

    def _abandon(self, pool: futures.Executor) -> None:
        """Stop at once: end the workers; blocks in flight are left not run."""
        if self.board is not None:
            for pid, _ in self.board.running().values():
                self.executor.stop_worker(pid)
        processes = exit_codes(pool)
        for process in (processes or {}).values():
            try:
                process.kill()
            except Exception:  # already gone
                pass
        pool.shutdown(wait=processes is not None, cancel_futures=True)
        self.in_flight.clear()

    def interrupt(self, signum: int) -> None:
        """Called on SIGINT or SIGTERM: stop handing out blocks and end the workers."""
        self.interrupted = signum
        self._stop(None, f"interrupted by {signal.Signals(signum).name}")

    # -- the result ----------------------------------------------------------------------

    def result(self) -> RunResult:
        """What happened in this session; the journal is committed first."""
        self.journal.end_session(self.stopped)
        # every block recorded done by another session is one this session need not run
        self.skipped = self.journal.count(status=BlockStatus.DONE, session=self.info.session,
                                          other_sessions=True)
        not_run = self.info.block_count - self.done - self.failed - self.skipped
        counts = RunCounts(self.done, self.failed, self.skipped, not_run)
        reduced = None
        if self.stopped is None:
            result = RunResult(self.info, counts, None, 0.0, journal=self.journal)
            reduced = self.processor.reduce_values(result.values)
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
    SIGINT raises `KeyboardInterrupt` at once, as Python does by default."""

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
        if self.run.interrupted is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.run.interrupt(signum)

    def __exit__(self, *exc: object) -> None:
        _Signals._running.discard(id(self.run))
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

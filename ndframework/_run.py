"""The coordinator of one run: hands blocks to workers, collects their outcomes, calls the
hooks, and replaces a pool whose worker died. Voxel data never pass through here."""

from __future__ import annotations

import collections
import time
from concurrent import futures
from typing import Iterator

from . import _worker
from ._hooks import Hooks
from ._worker import BlockOutcome
from .errors import DataAccessError, NDFrameworkError, SetupError, WorkerError
from .executors import Executor, WorkerLifecycle
from .geometry import Block
from .processor import BlockProcessor
from .result import BlockFailure, RunInfo, RunResult

__all__ = ["Run"]


class Run:
    """The coordinator's bookkeeping for one run of a pipeline."""

    def __init__(
        self,
        info: RunInfo,
        *,
        blocks: Iterator[Block],
        executor: Executor,
        processor: BlockProcessor,
        lifecycle: WorkerLifecycle,
        hooks: Hooks,
        max_attempts: int,
        max_in_flight: int,
    ) -> None:
        self.info = info
        self.blocks = blocks
        self.executor = executor
        self.processor = processor
        self.lifecycle = lifecycle
        self.hooks = hooks
        self.max_attempts = max_attempts
        self.max_in_flight = max_in_flight
        self.order: list[str] = []
        self.outcomes: dict[str, BlockOutcome] = {}
        self.attempts: collections.Counter[str] = collections.Counter()
        self.failures: dict[str, BlockFailure] = {}
        self.retry: collections.deque[Block] = collections.deque()
        self.stop_error: NDFrameworkError | None = None
        self.deaths_in_a_row = 0
        self.started = time.perf_counter()

    def _start_pool(self) -> futures.Executor:
        return self.executor.start(self.lifecycle)

    def _stop(self, error: NDFrameworkError, traceback: str | None = None) -> None:
        """Hand out no more blocks; the run ends with ``error`` once those in flight are in."""
        if self.stop_error is None:
            error.traceback = traceback  # type: ignore[attr-defined]
            self.stop_error = error

    def execute(self) -> RunResult:
        pending: dict[futures.Future, Block] = {}
        pool = self._start_pool()
        try:
            while True:
                pool = self._fill(pool, pending)
                if not pending:
                    break
                finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                broken = False
                for future in finished:
                    block = pending.pop(future)
                    broken |= self._collect(block, future)
                if broken:
                    pool = self._restart(pool, pending)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return self.result(None if self.stop_error is None else str(self.stop_error))

    def _fill(
        self, pool: futures.Executor, pending: dict[futures.Future, Block]
    ) -> futures.Executor:
        """Hand blocks to workers until ``max_in_flight`` are out. A block retried after its
        worker died runs alone, so that a block that kills its worker is found for sure."""
        limit = self.max_in_flight
        while self.stop_error is None and len(pending) < limit:
            if self.retry:
                if pending:
                    return pool
                block = self.retry.popleft()
                limit = 1
            else:
                block = next(self.blocks, None)  # type: ignore[arg-type]
                if block is None:
                    return pool
                self.order.append(block.key)
                self.hooks.call("ndf_before_block", run=self.info, block=block)
            self.attempts[block.key] += 1
            try:
                future = pool.submit(_worker.run_block, self.info.run_id, block)
            except futures.BrokenExecutor:
                self.attempts[block.key] -= 1
                self.retry.appendleft(block)
                pool = self._restart(pool, pending)
            else:
                pending[future] = block
        return pool

    def _collect(self, block: Block, future: futures.Future) -> bool:
        """Record a finished future; True when it reports a broken pool."""
        try:
            outcome = future.result()
        except futures.BrokenExecutor:
            self._worker_died(block)
            return True
        except Exception as error:  # e.g. a value that cannot be pickled back
            outcome = BlockOutcome(
                block.key, _worker.FAILED, error=f"{type(error).__name__}: {error}",
                traceback=None,
            )
        self._record(block, outcome)
        return False

    def _worker_died(self, block: Block) -> None:
        if self.attempts[block.key] < self.max_attempts:
            self.retry.append(block)
            return
        self._record(block, BlockOutcome(
            block.key, _worker.FAILED,
            error=(f"WorkerError: the worker process running block {block.key} died "
                   f"(killed, crashed or out of memory), {self.attempts[block.key]} times"),
        ))

    def _restart(
        self, pool: futures.Executor, pending: dict[futures.Future, Block]
    ) -> futures.Executor:
        """Replace a broken pool; every block it held becomes a suspect to retry alone."""
        for future, block in list(pending.items()):
            del pending[future]
            self._worker_died(block)
        pool.shutdown(wait=True, cancel_futures=True)
        # Two blocks that each kill their worker cost 2 * max_attempts deaths; more in a row
        # without a block done means workers die whatever they run (memory, a broken setup).
        self.deaths_in_a_row += 1
        if self.deaths_in_a_row > 2 * self.max_attempts:
            self._stop(WorkerError(
                f"worker processes died {self.deaths_in_a_row} times in a row without "
                f"finishing a block (killed, crashed or out of memory)"
            ))
        return self._start_pool()

    def _record(self, block: Block, outcome: BlockOutcome) -> None:
        self.outcomes[block.key] = outcome
        if outcome.ok:
            self.deaths_in_a_row = 0
            self.hooks.call("ndf_after_block", run=self.info, block=block, outcome=outcome)
            return
        self.failures[block.key] = BlockFailure(
            outcome.error or "unknown error", outcome.traceback, self.attempts[block.key]
        )
        if outcome.status == _worker.DATA_ERROR:
            self._stop(DataAccessError(
                f"data access failed for block {block.key} (box {block.box}, read box "
                f"{block.read_box}): {outcome.error}",
                key=block.key,
            ), outcome.traceback)
        elif outcome.status == _worker.SETUP_ERROR:
            self._stop(SetupError(
                f"the processor's setup() failed in worker {outcome.worker}: {outcome.error}"
            ), outcome.traceback)
        self.hooks.call("ndf_on_block_error", run=self.info, block=block, outcome=outcome)

    def result(self, stopped: str | None) -> RunResult:
        """What happened so far; ``stopped`` says why the run ended early, if it did."""
        not_run = [key for key in self.order if key not in self.outcomes]
        not_run += [block.key for block in self.blocks]
        done = tuple(key for key in self.order if key in self.outcomes and self.outcomes[key].ok)
        values = {key: self.outcomes[key].value for key in done}
        return RunResult(
            run=self.info,
            done=done,
            failed={key: self.failures[key] for key in self.order if key in self.failures},
            skipped=(),
            not_run=tuple(not_run),
            attempts={key: self.attempts[key] for key in self.order if self.attempts[key]},
            timings={key: self.outcomes[key].timings for key in self.order
                     if key in self.outcomes},
            values=values,
            reduced=None if stopped else self.processor.reduce(values),
            elapsed=time.perf_counter() - self.started,
            stopped=stopped,
        )

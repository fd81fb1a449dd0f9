"""The conformance kit for executors: what every `Executor` must do, checked by running real
pipelines on it.

Subclass `ExecutorConformance` in a pytest module and implement `make_executor`; pytest
then runs the kit against your executor::

    from ndframework.testing import ExecutorConformance

    class TestMyExecutor(ExecutorConformance):
        def make_executor(self):
            return MyExecutor(workers=2)

The executor must be registered by its name (`ndframework.register_executor`, or the
``ndframework.executors`` entry-point group). One run over a small volume, with a halo, a
zarr sink, a journal and a block that fails, is shared by most tests of a class; numpy is
the oracle.
"""

from __future__ import annotations

import abc
import multiprocessing
import os
import sys
import threading
import uuid
from concurrent import futures
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from ..executors import Executor, WorkerSession, executor_names
from ..geometry import Block, Box
from ..journal import Journal
from ..pipeline import Pipeline
from ..processor import BlockOutput, BlockProcessor
from ..result import RunResult
from ..storage import InMemorySource, ZarrSink, ZarrSource
from ..tiling import RegularTiler

__all__ = ["ExecutorConformance", "neighbourhood_sum"]

SHAPE = (12, 20, 20)
BLOCK = (4, 8, 8)
FAILING = "4_8_8"
"""The block the kit's processor fails, in the middle of the volume."""
EXITING = "8_16_16"
"""The block that ends its worker (see `_Neighbourhood`), at a corner."""


def _blocks() -> dict[str, Block]:
    """The kit's blocks by key."""
    return {block.key: block for block in RegularTiler(BLOCK).blocks(Box.from_shape(SHAPE))}


def neighbourhood_sum(array: np.ndarray) -> np.ndarray:
    """Each voxel's sum over its 3 × 3 × 3 neighbourhood, zero beyond the array."""
    padded = np.pad(array.astype(np.int64), 1)
    total = np.zeros(array.shape, np.int64)
    z, y, x = array.shape
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                total += padded[dz:dz + z, dy:dy + y, dx:dx + x]
    return total


class _Neighbourhood(BlockProcessor):
    """Writes each block's neighbourhood sum (a halo of 1, zero beyond the volume) and sends
    back its voxel sum. Fails block ``fail`` while ``folder`` holds a file ``failing``.
    Ends the worker running block ``exit``, the first time (or every time, with ``always``):
    ``os._exit`` in a process of its own; in the coordinator's, ``sys.exit``, which must
    fail that block alone. Each worker notes its ``setup`` and ``teardown`` in ``folder``:
    which process and thread ran them; every exit is noted in ``exits``."""

    halo = 1
    halo_mode = "constant"
    outputs = {"total": "uint32"}

    def __init__(self, folder: Path, fail: str | None = None, exit: str | None = None,
                 always: bool = False) -> None:
        self.folder = folder
        self.fail = fail
        self.exit = exit
        self.always = always
        self.tag = ""

    def _note(self, event: str) -> None:
        with open(self.folder / f"{self.tag}.{event}", "a") as file:  # twice shows
            file.write(f"{os.getpid()} {threading.get_ident()}\n")

    def setup(self) -> None:
        self.tag = uuid.uuid4().hex
        self._note("setup")

    def teardown(self) -> None:
        self._note("teardown")

    def process(self, data: dict[str, np.ndarray], block: Block) -> Any:
        if block.key == self.fail and (self.folder / "failing").exists():
            raise ValueError(f"block {block.key} fails")
        if block.key == self.exit:
            exits = self.folder / "exits"
            if self.always or not exits.exists():
                in_coordinator = self.folder.joinpath("coordinator").read_text() == str(
                    os.getpid())
                with open(exits, "a") as file:
                    file.write("coordinator\n" if in_coordinator else "worker process\n")
                if in_coordinator:
                    sys.exit(3)
                os._exit(3)
        total = block.crop(neighbourhood_sum(data["em"])).astype(np.uint32)
        return BlockOutput({"total": total}, value=int(block.crop(data["em"]).sum()))


@attrs.frozen
class _Run:
    volume: np.ndarray
    folder: Path
    sink: ZarrSource
    journal: Path
    result: RunResult


class ExecutorConformance(abc.ABC):
    """The behaviour every `Executor` must show. Subclass and implement `make_executor`."""

    @abc.abstractmethod
    def make_executor(self) -> Executor:
        """The executor to check, with two workers where it has a count."""

    # -- one shared run ------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def executor(cls) -> Executor:
        return cls().make_executor()

    @pytest.fixture(scope="class")
    @classmethod
    def volume(cls) -> np.ndarray:
        return np.random.default_rng(7).integers(0, 256, SHAPE, dtype=np.uint8)

    @staticmethod
    def _pipeline(executor: Executor, volume: np.ndarray, folder: Path,
                  **processor: Any) -> tuple[Pipeline, ZarrSource, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        folder.joinpath("coordinator").write_text(str(os.getpid()))
        source = InMemorySource({"em": volume})
        sink_path, journal = folder / "out.zarr", folder / "journal.sqlite"
        sink = (ZarrSink(sink_path) if sink_path.exists()
                else ZarrSink.create(sink_path, {"total": "uint32"}, source.bounds,
                                     chunk_shape=BLOCK))
        pipeline = Pipeline(source, _Neighbourhood(folder, **processor), sink=sink,
                            tiler=RegularTiler(BLOCK), executor=executor,
                            journal=Journal(journal), max_attempts=2)
        return pipeline, ZarrSource(sink_path), journal

    @pytest.fixture(scope="class")
    @classmethod
    def run(cls, executor: Executor, volume: np.ndarray,
            tmp_path_factory: pytest.TempPathFactory) -> _Run:
        folder = tmp_path_factory.mktemp("executor-kit")
        (folder / "failing").touch()
        pipeline, sink, journal = cls._pipeline(executor, volume, folder, fail=FAILING)
        return _Run(volume, folder, sink, journal, pipeline.run())

    # -- the tests -------------------------------------------------------------------------

    def test_it_is_an_executor_known_by_its_name(self, executor: Executor) -> None:
        assert isinstance(executor, Executor)
        assert executor.name in executor_names(), (
            f"register the executor: ndframework.register_executor({executor.name!r}, ...)")
        assert isinstance(executor.workers, int) and executor.workers >= 1
        assert executor.name in executor.describe()
        assert executor.is_worker_death(futures.BrokenExecutor("lost"))
        assert not executor.is_worker_death(ValueError("a block's own error"))

    def test_its_pool_is_a_futures_executor(self, executor: Executor) -> None:
        pool = executor.start(WorkerSession(f"kit-{uuid.uuid4().hex}", None, None))
        try:
            assert isinstance(pool, futures.Executor)
            assert pool.submit(pow, 3, 3).result(timeout=120) == 27
            assert isinstance(pool.submit(divmod, 1, 0).exception(timeout=120),
                              ZeroDivisionError)
        finally:
            pool.shutdown(wait=True)
            executor.close()

    def test_every_block_but_the_failing_one_is_written_as_numpy_computes_it(
            self, run: _Run) -> None:
        result, expected, blocks = run.result, neighbourhood_sum(run.volume), _blocks()
        assert list(result.failed) == [FAILING]
        assert "ValueError: block 4_8_8 fails" in result.failed[FAILING].error
        assert sorted(result.done) == sorted(key for key in blocks if key != FAILING)
        written = run.sink.read(run.sink.bounds)["total"]
        for key in result.done:
            box = blocks[key].box
            np.testing.assert_array_equal(written[box.slices()], expected[box.slices()])
            assert result.values[key] == int(run.volume[box.slices()].sum())
        assert not written[blocks[FAILING].box.slices()].any()

    def test_every_setup_is_torn_down_once_in_its_own_thread(self, run: _Run) -> None:
        setups = {path.stem: path.read_text() for path in run.folder.glob("*.setup")}
        teardowns = {path.stem: path.read_text() for path in run.folder.glob("*.teardown")}
        assert setups, "no worker ran setup()"
        assert teardowns == setups, (
            "each worker's teardown() must run once, in the process and thread that ran its "
            "setup(): the pool calls ndframework.executors.end_worker() as a worker thread "
            "stops, or the worker is torn down as its process exits")
        assert len(setups) <= max(run.result.run.block_count, 1)

    def test_no_process_or_worker_thread_is_left_behind(self, run: _Run) -> None:
        assert multiprocessing.active_children() == []
        left = [thread.name for thread in threading.enumerate()
                if thread.name.startswith("ndframework-worker")]
        assert left == []

    def test_a_rerun_with_the_journal_runs_only_the_failed_block(
            self, executor: Executor, run: _Run) -> None:
        (run.folder / "failing").unlink()  # what failed the block is fixed
        pipeline, sink, _ = self._pipeline(executor, run.volume, run.folder, fail=FAILING)
        second = pipeline.run()
        assert second.ok and list(second.done) == [FAILING]
        assert sorted(second.skipped) == sorted(key for key in _blocks() if key != FAILING)
        np.testing.assert_array_equal(sink.read(sink.bounds)["total"],
                                      neighbourhood_sum(run.volume))

    def test_a_block_that_ends_its_worker_costs_no_other_block(
            self, executor: Executor, volume: np.ndarray, tmp_path: Path) -> None:
        result, exits = self._exiting_run(executor, volume, tmp_path, always=False)
        if exits == ["coordinator"]:  # the worker was a thread: sys.exit() failed the block
            assert list(result.failed) == [EXITING]
            assert "SystemExit" in result.failed[EXITING].error
        else:  # the worker process died: recognised, the block run again (a try charged
            # when the executor saw it running there, as a board shows)
            assert exits == ["worker process"]
            assert EXITING in result.done and result.attempts[EXITING] in (1, 2)

    def test_a_block_that_always_ends_its_worker_fails_alone(
            self, executor: Executor, volume: np.ndarray, tmp_path: Path) -> None:
        result, exits = self._exiting_run(executor, volume, tmp_path, always=True)
        assert list(result.failed) == [EXITING]
        if exits == ["coordinator"]:
            assert "SystemExit" in result.failed[EXITING].error
        else:  # tried again, alone, until max_attempts (2) deaths were its own
            assert set(exits) == {"worker process"} and len(exits) >= 2
            assert "WorkerError" in result.failed[EXITING].error

    def _exiting_run(self, executor: Executor, volume: np.ndarray, folder: Path,
                     always: bool) -> tuple[RunResult, list[str]]:
        """A run whose block `EXITING` ends its worker: every other block must be done and
        written as numpy computes it."""
        pipeline, sink, _ = self._pipeline(executor, volume, folder, exit=EXITING,
                                           always=always)
        result = pipeline.run()
        blocks = _blocks()
        exits = (folder / "exits").read_text().splitlines()
        assert sorted(set(result.done) - {EXITING}) == sorted(set(blocks) - {EXITING})
        expected = neighbourhood_sum(volume)
        written = sink.read(sink.bounds)["total"]
        for key in result.done:
            box = blocks[key].box
            np.testing.assert_array_equal(written[box.slices()], expected[box.slices()])
        return result, exits

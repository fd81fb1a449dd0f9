"""A plugin written the way a third party writes one: outside the package, on the public API
alone (``import ndframework as ndf``), implementing every hook and checking what each
promises, through full pipeline runs with a halo, a sink and a journal: one with a retry and a
failure, its resumption, and a run stopped early."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ndframework as ndf

KEYS = ["0_0_0", "0_0_10", "0_12_0", "0_12_10", "4_0_0", "4_0_10", "4_12_0", "4_12_10"]
FLAKY, FRAGILE = "0_12_10", "4_0_0"


class NeighbourhoodMax(ndf.BlockProcessor):
    """Writes the maximum of each voxel's 3×3×3 neighbourhood; its value is the block's sum.
    The block ``FLAKY`` fails its first try with an error worth retrying; ``FRAGILE`` fails
    while the file ``broken`` is in ``folder``."""

    halo = 1
    retry_on = (TimeoutError,)

    def __init__(self, folder):
        self.folder = str(folder)

    def process(self, data, block):
        tried = Path(self.folder, f"tried-{block.key}")
        if block.key == FLAKY and not tried.exists():
            tried.touch()
            raise TimeoutError("the store is busy")
        if block.key == FRAGILE and Path(self.folder, "broken").exists():
            raise ValueError("a broken block")
        return ndf.BlockOutput({"max": block.crop(neighbourhood_max(data["em"]))},
                               value=int(block.crop(data["em"]).astype(np.int64).sum()))

    def reduce(self, results):
        return sum(results.values())


def neighbourhood_max(array):
    """The 3×3×3 neighbourhood maximum, clipped to the array (zeros never win)."""
    padded = np.pad(array, 1)
    z, y, x = array.shape
    return np.max([padded[dz:dz + z, dy:dy + y, dx:dx + x]
                   for dz in range(3) for dy in range(3) for dx in range(3)], axis=0)


class Audit:
    """Implements every hook, checks the types and the order each promises (a check that
    fails is a plugin error of the run), and keeps a record of the calls: ``(hook, key or
    details)``."""

    def __init__(self):
        self.calls = []
        self.run = None
        self.open = set()  # blocks handed out, with no outcome yet

    @ndf.hookimpl
    def ndf_before_run(self, run):
        assert isinstance(run, ndf.RunInfo) and self.run is None
        self.run = run
        self.calls.append(("before_run", run.block_count))

    @ndf.hookimpl
    def ndf_on_blocks_skipped(self, run, keys):
        assert run is self.run and self.calls == [("before_run", 8)]
        self.calls.append(("blocks_skipped", tuple(keys)))
        assert len(keys) == len(self.calls[-1][1])

    @ndf.hookimpl
    def ndf_before_block(self, run, block):
        assert run is self.run and isinstance(block, ndf.Block)
        assert block.key not in self.open
        assert block.read_box.contains(block.box)
        assert block.read_box == block.box.grow((1, 1, 1)).intersect(run.bounds)
        self.open.add(block.key)
        self.calls.append(("before_block", block.key))

    @ndf.hookimpl
    def ndf_on_block_retry(self, run, block, outcome, attempt, reason):
        assert run is self.run and block.key in self.open
        assert isinstance(outcome, ndf.BlockOutcome) and not outcome.ok
        self.calls.append(("block_retry", block.key, attempt, reason, outcome.error))

    @ndf.hookimpl
    def ndf_after_block(self, run, block, outcome):
        assert run is self.run and outcome.ok and outcome.key == block.key
        assert outcome.status is ndf.BlockStatus.DONE and outcome.timings.total >= 0
        self.open.remove(block.key)
        self.calls.append(("after_block", block.key, outcome.attempts))

    @ndf.hookimpl
    def ndf_on_block_error(self, run, block, outcome):
        assert run is self.run and outcome.status is ndf.BlockStatus.FAILED
        self.open.remove(block.key)
        self.calls.append(("block_error", block.key, outcome.error))

    @ndf.hookimpl
    def ndf_on_run_stopped(self, run, result, reason, error):
        assert run is self.run and isinstance(result, ndf.RunResult)
        assert reason == result.stopped
        self.calls.append(("run_stopped", reason, error))

    @ndf.hookimpl
    def ndf_after_run(self, run, result):
        assert run is self.run and isinstance(result, ndf.RunResult)
        assert self.open <= set(result.not_run), "a block without an outcome was not run"
        self.calls.append(("after_run", result.counts))

    def names(self):
        return [call[0] for call in self.calls]

    def of(self, key):
        return [call[0] for call in self.calls if call[1:2] == (key,)]


@pytest.fixture
def em():
    return np.random.default_rng(7).integers(0, 200, (8, 24, 20), dtype=np.uint8)


def pipeline(em, folder, journal, audit, **options):
    source = ndf.InMemorySource({"em": em})
    sink = ndf.InMemorySink.zeros({"max": "uint8"}, source.bounds)
    return ndf.Pipeline(source, NeighbourhoodMax(folder), tiler=ndf.RegularTiler((4, 12, 10)),
                        executor=ndf.ThreadExecutor(2), sink=sink, journal=journal,
                        plugins=[audit], **options), sink


def test_a_third_party_plugin_follows_a_run_its_resumption_and_a_stop(em, tmp_path):
    (tmp_path / "broken").touch()
    journal = tmp_path / "run.sqlite"
    expected = neighbourhood_max(em)

    audit = Audit()
    run, sink = pipeline(em, tmp_path, journal, audit, max_failures=0)
    result = run.run()
    assert not result.plugin_errors, "a check in a hook failed"
    assert set(result.failed) == {FRAGILE} and result.stopped is None
    assert audit.calls[0] == ("before_run", 8) and audit.names()[-1] == "after_run"
    assert "blocks_skipped" not in audit.names() and "run_stopped" not in audit.names()
    for key in KEYS:
        ending = "block_error" if key == FRAGILE else "after_block"
        retried = ["block_retry"] if key == FLAKY else []
        assert audit.of(key) == ["before_block", *retried, ending], key
    assert ("block_retry", FLAKY, 1, "retry_on", "TimeoutError: the store is busy") \
        in audit.calls
    assert ("after_block", FLAKY, 2) in audit.calls
    assert ("block_error", FRAGILE, "ValueError: a broken block") in audit.calls
    written = sink.arrays["max"]
    fragile = (slice(4, 8), slice(0, 12), slice(0, 10))
    assert not written[fragile].any()
    written[fragile] = expected[fragile]
    assert np.array_equal(written, expected)

    # resumed with the journal, the block fixed: the others are skipped, and said to be
    (tmp_path / "broken").unlink()
    audit = Audit()
    run, sink = pipeline(em, tmp_path, journal, audit)
    result = run.run()
    assert result.ok and not result.plugin_errors
    assert result.reduced == int(em.astype(np.int64).sum())
    done_before = tuple(key for key in KEYS if key != FRAGILE)
    assert audit.calls == [
        ("before_run", 8), ("blocks_skipped", done_before), ("before_block", FRAGILE),
        ("after_block", FRAGILE, 1), ("after_run", ndf.RunCounts(1, 0, 7, 0))]
    assert tuple(result.skipped) == done_before
    assert np.array_equal(sink.arrays["max"][fragile], expected[fragile])

    # a new run that stops at its first failure: told why, with nothing raised
    (tmp_path / "broken").touch()
    audit = Audit()
    run, sink = pipeline(em, tmp_path, tmp_path / "stops.sqlite", audit, max_failures=1,
                         max_in_flight=1)
    result = run.run()
    assert not result.plugin_errors
    assert result.stopped == ("max_failures=1 reached: 1 blocks had failed, so no more "
                              "were handed out")
    assert audit.calls[-2:] == [("run_stopped", result.stopped, None),
                                ("after_run", result.counts)]
    assert audit.names().count("run_stopped") == 1
    assert result.counts.not_run == len(KEYS) - result.counts.done - 1 > 0

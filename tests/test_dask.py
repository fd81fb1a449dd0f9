"""The Dask executor on a two-worker `LocalCluster`, started once for the module."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import ndframework as ndf
from processors import CountCalls, CrashOn, DieInSetup, NeighbourhoodSum, RecordWorkers

pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def dask_executor():
    with ndf.DaskExecutor(workers=2) as executor:
        yield executor


@pytest.fixture
def em():
    return np.random.default_rng(3).integers(0, 256, (8, 16, 16), dtype=np.uint8)


def _run(executor, em, processor, tmp_path, name, **options):
    sink = ndf.ZarrSink.create(tmp_path / f"{name}.zarr", {"total": "uint32"},
                               ndf.Box((0, 0, 0), em.shape), chunk_shape=(2, 8, 8))
    result = ndf.Pipeline(ndf.InMemorySource({"em": em}), processor,
                          tiler=ndf.RegularTiler((2, 8, 8)), executor=executor, sink=sink,
                          journal=tmp_path / f"{name}.sqlite", load_entrypoints=False,
                          **options).run()
    written = ndf.ZarrSource(tmp_path / f"{name}.zarr").read(ndf.Box((0, 0, 0), em.shape))
    return result, written["total"]


def test_results_equal_the_serial_executors(dask_executor, em, tmp_path):
    serial, expected = _run("serial", em, NeighbourhoodSum(), tmp_path, "serial")
    result, written = _run(dask_executor, em, NeighbourhoodSum(), tmp_path, "dask")
    assert result.ok and result.counts.done == 16
    assert result.reduced == serial.reduced == int(em.astype(np.int64).sum())
    np.testing.assert_array_equal(written, expected)
    assert set(result.done) == set(serial.done)


def test_setup_runs_once_per_worker_process_and_teardown_when_the_run_ends(dask_executor, em,
                                                                      tmp_path):
    source = ndf.InMemorySource({"em": em})
    result = ndf.Pipeline(source, RecordWorkers(tmp_path), tiler=ndf.RegularTiler((1, 8, 8)),
                          executor=dask_executor, load_entrypoints=False).run()
    assert result.ok and result.counts.done == 32
    setups = (tmp_path / "setup").read_text().split()
    processed = set((tmp_path / "process").read_text().split())
    assert len(setups) == len(set(setups)) == len({line.split("-")[0] for line in setups})
    assert processed <= set(setups)
    assert os.getpid() not in {int(line.split("-")[0]) for line in setups}
    # the run's end closed it: each worker tore its processor down, and the cluster, held
    # by the fixture's with block, stays up for the next test
    assert sorted((tmp_path / "teardown").read_text().split()) == sorted(setups)


def test_a_killed_worker_is_replaced_and_its_block_retried(dask_executor, em, tmp_path):
    keys = ["2_0_0", "4_8_8"]
    source = ndf.InMemorySource({"em": em})
    result = ndf.Pipeline(source, CrashOn(tmp_path, once=keys),
                          tiler=ndf.RegularTiler((2, 8, 8)), executor=dask_executor,
                          journal=tmp_path / "run.sqlite", load_entrypoints=False).run()
    assert result.ok, (result.counts, {k: result.failed[k].error for k in result.failed})
    assert result.counts.done == 16 and result.reduced[keys[0]] == keys[0]
    assert all(Path(tmp_path, f"crashed-{key}").exists() for key in keys)


def test_a_lost_worker_costs_its_own_batch_only(dask_executor, em, tmp_path):
    # blocks of 50 ms, so that the other worker is running a block when one dies
    crash = "4_8_0"
    result = ndf.Pipeline(ndf.InMemorySource({"em": em}),
                          CountCalls(tmp_path, seconds=0.05, crash=crash),
                          tiler=ndf.RegularTiler((1, 8, 8)), executor=dask_executor,
                          journal=tmp_path / "run.sqlite", load_entrypoints=False).run()
    assert result.ok and result.counts.done == 32
    dead = int((tmp_path / f"crashed-{crash}").read_text())
    calls = CountCalls.calls(tmp_path)
    assert sorted(calls) == sorted(result.done)
    # the block running on the worker that died is charged that try
    assert result.attempts[crash] == 2 and dead in calls[crash]
    # no block was run twice by a worker that lived: the batches of the other worker, the
    # one it was running included, went on undisturbed
    twice = {key: pids for key, pids in calls.items()
             if len([pid for pid in pids if pid != dead]) > 1}
    assert not twice
    assert all(result.attempts[key] == 1 for key in result.done if key != crash)


def test_a_block_that_kills_every_worker_it_meets_fails_alone(dask_executor, em, tmp_path):
    # every try kills the worker running it (each worker is replaced by its nanny): the
    # run still ends, with that block failed after max_attempts deaths and the rest done
    crash = "2_8_0"
    result = ndf.Pipeline(ndf.InMemorySource({"em": em}), CrashOn(tmp_path, always=[crash]),
                          tiler=ndf.RegularTiler((2, 8, 8)), executor=dask_executor,
                          max_attempts=2, load_entrypoints=False).run()
    assert result.counts.done == 15 and list(result.failed) == [crash]
    assert "died" in result.failed[crash].error and "2 times" in result.failed[crash].error


def test_a_running_scheduler_and_a_users_client_are_used_and_left_running(dask_executor, em,
                                                                          tmp_path):
    from distributed import Client

    cluster = dask_executor.connect()  # the module's cluster,
    cluster.wait_for_workers(2, timeout=30)  # whose workers earlier tests killed are back
    address = cluster.scheduler.address
    expected = int(em.astype(np.int64).sum())
    by_address = ndf.DaskExecutor(address=address)
    result, _ = _run(by_address, em, NeighbourhoodSum(), tmp_path, "address")
    assert result.ok and result.reduced == expected
    assert by_address.workers == 2 and by_address.describe() == f"dask (scheduler {address})"
    with Client(address, set_as_default=False) as client:
        result, _ = _run(ndf.DaskExecutor(client=client), em, NeighbourhoodSum(), tmp_path,
                         "client")
        assert result.ok and result.reduced == expected
        assert client.status == "running"  # the user's client is left open
        assert len(client.scheduler_info()["workers"]) == 2
    # and the cluster of the executor that started it still runs
    result, _ = _run(dask_executor, em, NeighbourhoodSum(), tmp_path, "again")
    assert result.ok and result.reduced == expected


def test_the_local_clusters_workers_share_the_default_chunk_cache(dask_executor, em):
    from ndframework.storage import _chunk_cache

    def budget(data):
        return _chunk_cache.default_chunk_cache_bytes()

    result = ndf.Pipeline(ndf.InMemorySource({"em": em}), budget,
                          tiler=ndf.RegularTiler((2, 8, 8)), executor=dask_executor,
                          load_entrypoints=False).run()
    assert result.ok
    assert set(result.reduced.values()) == {_chunk_cache.DEFAULT_CHUNK_CACHE_BYTES // 2}


def test_workers_that_die_in_setup_stop_the_run_instead_of_looping(dask_executor, em):
    # each worker dies before it shows a block running: the deaths still count, and blocks
    # lost so twice run alone, where a death is theirs (or their worker's setup's)
    with pytest.raises(ndf.WorkerError, match=r"worker processes died \d+ times in a row "
                                              r"(before starting a block|without finishing "
                                              r"a block)") as raised:
        ndf.Pipeline(ndf.InMemorySource({"em": em}), DieInSetup(),
                     tiler=ndf.RegularTiler((2, 8, 8)), executor=dask_executor,
                     max_attempts=2, load_entrypoints=False).run()
    result = raised.value.result
    assert result.stopped == "worker processes kept dying"
    assert result.counts.done == 0 and result.counts.failed <= 2
    assert result.counts.failed + result.counts.not_run == 16


class _Count:
    def __init__(self):
        self.before, self.after, self.pids = [], [], set()

    @ndf.hookimpl
    def ndf_before_block(self, run, block):
        self.before.append(block.key)
        self.pids.add(os.getpid())

    @ndf.hookimpl
    def ndf_after_block(self, run, block, outcome):
        self.after.append(block.key)
        self.pids.add(os.getpid())


def test_hooks_run_in_the_coordinator_once_per_block(dask_executor, em):
    hooks = _Count()
    result = ndf.Pipeline(ndf.InMemorySource({"em": em}), lambda data: 1,
                          tiler=ndf.RegularTiler((2, 8, 8)), executor=dask_executor,
                          plugins=[hooks], load_entrypoints=False).run()
    assert result.ok
    assert sorted(hooks.before) == sorted(hooks.after) == sorted(result.done)
    assert len(hooks.after) == 16 and hooks.pids == {os.getpid()}


def test_the_registry_and_the_cli_know_dask():
    assert isinstance(ndf.get_executor("dask", workers=2), ndf.DaskExecutor)
    assert "dask" in ndf.executor_names()
    with pytest.raises(ndf.ConfigError, match="not both"):
        ndf.DaskExecutor(address="tcp://x:1", client=object())
    with pytest.raises(ndf.ConfigError, match="workers=2 applies to the local cluster"):
        ndf.DaskExecutor(workers=2, address="tcp://x:1")


def test_a_missing_dask_extra_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(ndf.ConfigError, match=r'pip install "ndframework\[dask\]"'):
        ndf.get_executor("dask")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_no_process_is_left_once_the_run_ends(em):
    from test_orphans import _descendants, _running, _wait_until

    before = _descendants(os.getpid())
    started: dict[int, int] = {}

    class Watch:  # in the coordinator, while the cluster runs
        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            started.update((pid, since) for pid, since in _descendants(os.getpid()).items()
                           if pid not in before)

    result = ndf.Pipeline(ndf.InMemorySource({"em": em}), lambda data: 1,
                          tiler=ndf.RegularTiler((4, 16, 16)),
                          executor=ndf.DaskExecutor(workers=1), plugins=[Watch()],
                          load_entrypoints=False).run()
    assert result.ok
    assert started, "the local cluster started no process"
    # the run's end closed the cluster the executor had started
    _wait_until(lambda: not _running(started), 10)
    assert not _running(started)


def test_without_the_dask_extra_the_error_says_how_to_install_it(monkeypatch, em):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(ndf.ConfigError, match=r'pip install "ndframework\[dask\]"'):
        ndf.Pipeline(ndf.InMemorySource({"em": em}), lambda data: 1,
                     executor=ndf.DaskExecutor(workers=1), load_entrypoints=False).run()

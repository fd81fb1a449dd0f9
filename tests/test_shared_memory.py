"""An `InMemorySource` reaches worker processes through shared memory: one copy of its
arrays in RAM however many workers read them, and no segment left behind in /dev/shm, also
when the coordinator is killed (storage/_shared.py)."""

from __future__ import annotations

import gc
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import ndframework as ndf
from test_orphans import _descendants, _environment, _running, _wait_until

pytestmark = pytest.mark.skipif(
    not Path("/dev/shm").is_dir() or not Path("/proc/self/smaps_rollup").exists(),
    reason="needs /dev/shm and /proc",
)



def segment_names(source: ndf.InMemorySource) -> list[str]:
    """The names of the segments that a pickle of ``source`` refers to (sharing it)."""
    shared = source.__getstate__()["_arrays"]
    return [item.name for item in shared.values() if not isinstance(item, np.ndarray)]


def existing(names: list[str]) -> list[str]:
    return [name for name in names if Path("/dev/shm", name).exists()]


def _memory(field_prefixes: tuple[str, ...]) -> int:
    """Bytes of this process's memory whose smaps_rollup fields start with the prefixes."""
    total = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(field_prefixes):
            total += int(line.split()[1]) * 1024
    return total


def _shared_memory_resident() -> int:
    """Bytes of this process's mappings of shared memory segments that are in RAM."""
    total, counting = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            counting = len(fields) >= 6 and fields[5].startswith("/dev/shm/psm_")
        elif counting and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


class Invert(ndf.BlockProcessor):
    def process(self, data, block):
        em = data["em"]
        em ^= 0xFF  # data is the worker's own and writable
        return ndf.BlockOutput({"em": block.crop(em)},
                               value=int(data["mask"].astype(np.int64).sum()))

    def reduce(self, results):
        return sum(results.values())


@pytest.mark.timeout(60)
def test_a_process_run_over_shared_arrays_equals_numpy(tmp_path, volume):
    source = ndf.InMemorySource(volume, origin=(0, 100, 200))
    tiler = ndf.RegularTiler((5, 8, 10), halo=1, origin=source.bounds.start)
    masks = [volume["mask"][block.read_box.relative_to(source.bounds).slices()]
             for block in tiler.blocks(source.bounds)]
    for executor in (ndf.SerialExecutor(), ndf.ProcessExecutor(2)):
        path = tmp_path / f"{executor.name}.zarr"
        sink = ndf.ZarrSink.create(path, {"em": "uint8"}, source.bounds,
                                   chunk_shape=(5, 8, 10))
        result = ndf.Pipeline(source, Invert(), tiler=tiler, executor=executor,
                              sink=sink).run()
        assert result.ok
        assert result.reduced == sum(int(mask.astype(np.int64).sum()) for mask in masks)
        np.testing.assert_array_equal(zarr.open_group(str(path), mode="r")["em"][...],
                                      volume["em"] ^ 0xFF)
    assert existing(segment_names(source))


class MemoryReport(ndf.BlockProcessor):
    """Each block's value: the worker's anonymous memory (its heap, where an unpickled copy
    would live; "Private" would also count segment pages that only this worker touched) and
    its resident shared memory."""

    def process(self, data, block):
        return ndf.BlockOutput({}, value={"anonymous": _memory(("Anonymous:",)),
                                          "shared": _shared_memory_resident()})

    def reduce(self, results):
        return {key: max(value[key] for value in results.values())
                for key in ("anonymous", "shared")}


@pytest.mark.timeout(60)
def test_worker_processes_map_the_arrays_instead_of_copying_them():
    size = 256 * 2**20
    source = ndf.InMemorySource({"em": np.ones((256, 1024, 1024), np.uint8)})
    # Blocks of 4 MiB, so that a worker holds little of its own beyond its interpreter.
    result = ndf.Pipeline(source, MemoryReport(), tiler=ndf.RegularTiler((4, 1024, 1024)),
                          executor=ndf.ProcessExecutor(2)).run()
    assert result.ok
    # A worker with a copy of its own would hold all of it as anonymous memory (about
    # 550 MiB with the pickled bytes, against about 45 MiB here).
    assert result.reduced["anonymous"] < size / 2, result.reduced
    assert result.reduced["shared"] > size / 4, result.reduced  # it read from the segment


def test_reads_are_the_callers_own_in_the_owner_and_in_copies(volume):
    source = ndf.InMemorySource(volume)
    copy = pickle.loads(pickle.dumps(source))
    box = ndf.Box((1, 2, 3), (4, 5, 6))
    for reader in (source, copy):  # the owner reads the segments too, once shared
        data = reader.read(box)
        assert all(array.flags.writeable for array in data.values())
        data["em"][...] = 0
        np.testing.assert_array_equal(reader.read(box)["em"], volume["em"][box.slices()])
    assert copy.describe() == source.describe()
    assert segment_names(copy) == segment_names(source)  # a copy pickles as the same segments


def test_no_segment_outlives_its_source(volume):
    source = ndf.InMemorySource(volume)
    result = ndf.Pipeline(source, lambda data: None, tiler=ndf.RegularTiler((5, 12, 10)),
                          executor=ndf.ProcessExecutor(2)).run()
    assert result.ok
    names = segment_names(source)
    assert len(names) == 2 and existing(names) == names
    assert segment_names(source) == names  # made once
    del source, result
    gc.collect()
    assert not existing(names)


def test_closing_a_source_removes_its_segments_and_it_shares_anew(volume):
    source = ndf.InMemorySource(volume)
    names = segment_names(source)
    source.close()
    assert not existing(names)
    np.testing.assert_array_equal(source.read(source.bounds)["em"], volume["em"])
    again = segment_names(source)
    assert existing(again) == again and set(again).isdisjoint(names)
    copy = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(copy.read(copy.bounds)["mask"], volume["mask"])
    source.close()
    source.close()  # twice is fine
    assert not existing(again)


def test_a_pickle_that_outlives_its_source_cannot_be_loaded(volume):
    pickled = pickle.dumps(ndf.InMemorySource(volume))  # the source is collected at once
    with pytest.raises(FileNotFoundError, match=r"segment 'psm_\w+' of an InMemorySource is "
                                                r"gone: the source .* closed or collected"):
        pickle.loads(pickled)


def test_empty_arrays_travel_inside_the_pickle():
    source = ndf.InMemorySource({"em": np.zeros((0, 4, 4), np.uint8)})
    assert segment_names(source) == []
    assert pickle.loads(pickle.dumps(source)).bounds == source.bounds


READER = """
import pickle, sys
source = pickle.load(open(sys.argv[1], "rb"))
print(int(source.read(source.bounds)["em"].sum()))
"""


@pytest.mark.timeout(60)
def test_a_process_that_unpickles_the_source_does_not_remove_the_segments(tmp_path, volume):
    # A process with a resource tracker of its own (not a worker of ours): attaching with
    # SharedMemory(name) before Python 3.13 would register the segment with that tracker,
    # which would unlink it when the process ends (gh-82300).
    source = ndf.InMemorySource(volume)
    pickled = tmp_path / "source.pickle"
    pickled.write_bytes(pickle.dumps(source))
    reader = subprocess.run([sys.executable, "-c", READER, str(pickled)], env=_environment(),
                            capture_output=True, text=True, timeout=30)
    assert reader.stdout.strip() == str(int(volume["em"].sum())), reader.stderr
    assert "leaked" not in reader.stderr
    names = segment_names(source)
    assert existing(names) == names
    np.testing.assert_array_equal(pickle.loads(pickled.read_bytes()).read(source.bounds)["em"],
                                  volume["em"])


COORDINATOR = """
import os, sys, time
import numpy as np
import ndframework as ndf

class Sleepy(ndf.BlockProcessor):
    def __init__(self, directory):
        self.directory = directory

    def process(self, data, block):
        with open(os.path.join(self.directory, f"{os.getpid()}.pid"), "w") as file:
            file.write("running")
        time.sleep(0.5)
        return 1

if __name__ == "__main__":
    directory, start_method = sys.argv[1], sys.argv[2]
    source = ndf.InMemorySource({"em": np.ones((64, 32, 32), np.uint8),
                                 "mask": np.zeros((64, 32, 32), np.uint16)})
    shared = source.__getstate__()["_arrays"]
    print(" ".join(item.name for item in shared.values()), flush=True)
    ndf.Pipeline(source, Sleepy(directory), tiler=ndf.RegularTiler((1, 32, 32)),
                 executor=ndf.ProcessExecutor(2, start_method=start_method)).run()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_no_segment_outlives_a_coordinator_killed_with_sigkill(tmp_path, start_method):
    script = tmp_path / "coordinator.py"
    script.write_text(COORDINATOR)
    pids = tmp_path / "pids"
    pids.mkdir()
    coordinator = subprocess.Popen([sys.executable, str(script), str(pids), start_method],
                                   env=_environment(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    helpers: dict[int, int] = {}
    try:
        names = coordinator.stdout.readline().split()
        assert len(names) == 2, coordinator.stderr.read()
        assert _wait_until(lambda: len(list(pids.iterdir())) >= 2
                           or coordinator.poll() is not None, 30)
        assert coordinator.poll() is None, coordinator.stderr.read()
        assert existing(names) == names
        helpers = _descendants(coordinator.pid)  # workers, forkserver, resource tracker
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait()
        # The workers end within moments, then the resource tracker unlinks what the
        # coordinator registered and did not unlink (it warns of "leaked" segments).
        assert _wait_until(lambda: not existing(names), 20), existing(names)
        assert "leaked shared_memory" in coordinator.stderr.read()
    finally:
        coordinator.kill()
        coordinator.wait()
        for pid in _running(helpers):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class LabelledSource(ndf.InMemorySource):
    def __init__(self, arrays, label):
        super().__init__(arrays)
        self.label = label


def test_a_subclass_pickles_as_itself_with_its_attributes(volume):
    source = LabelledSource(volume, "cells")
    copy = pickle.loads(pickle.dumps(source))
    assert type(copy) is LabelledSource and copy.label == "cells"
    np.testing.assert_array_equal(copy.read(copy.bounds)["em"], volume["em"])


def test_without_room_in_shared_memory_the_arrays_travel_in_the_pickle(volume, monkeypatch):
    from ndframework.storage import _shared

    made = []

    def full(name, size):
        made.append(name)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_shared, "_reserve", full)
    source = ndf.InMemorySource(volume)
    with pytest.warns(RuntimeWarning, match=r"copy for each.*No space left.*--shm-size"):
        copy = pickle.loads(pickle.dumps(source))
    assert made and not existing(made)  # the segment made before the error is gone
    assert segment_names(source) == []
    np.testing.assert_array_equal(copy.read(copy.bounds)["em"], volume["em"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["copy", "deepcopy"])
def test_a_copy_outlives_the_source_it_was_made_from(volume, how):
    import copy

    def make():
        source = ndf.InMemorySource(volume)
        pickle.dumps(source)  # the original shares its arrays: it owns the segments
        return getattr(copy, how)(source)

    copied = make()
    gc.collect()  # the original is gone, and its segments with it
    result = ndf.Pipeline(copied, lambda data: int(data["em"].astype(np.int64).sum()),
                          tiler=ndf.RegularTiler((5, 12, 10)),
                          executor=ndf.ProcessExecutor(2)).run()
    assert result.ok and sum(dict(result.reduced).values()) == int(
        volume["em"].astype(np.int64).sum())
    copied.close()

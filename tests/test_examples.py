"""The examples in ``examples/``: Nd-Multicore's pipeline redone as block processors counts
exactly what the whole volume holds, and the timings plugin writes what the run recorded."""

from __future__ import annotations

import csv
import doctest
import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi

import ndframework as ndf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import blob_volume  # noqa: E402
import ndmulticore_pipeline as pipeline_example  # noqa: E402
import timings_csv  # noqa: E402

CHANNELS = ("synapsin", "psd95")


# -- an oracle written apart from the example ----------------------------------------------


def reference_count(volume, *, bins=256, min_size=10, connectivity=3):
    """Objects, their voxels and the small ones removed, on the whole arrays: numpy
    z-scores, their product, Otsu's split of its histogram (written out, split by split),
    ``scipy.ndimage.label``. Also the labels of the objects kept."""
    first, second = (volume[name].astype(np.float64) for name in CHANNELS)
    first_z = (first - first.mean()) / first.std()
    second_z = (second - second.mean()) / second.std()
    covariance = first_z * second_z
    corners = [a * b for a in (first_z.min(), first_z.max())
               for b in (second_z.min(), second_z.max())]
    counts, edges = np.histogram(covariance, bins, range=(min(corners), max(corners)))
    centres = (edges[:-1] + edges[1:]) / 2
    best, split = -1.0, None
    for k in range(1, bins):  # class 0: bins below k; class 1: bins k and above
        below, above = counts[:k].sum(), counts[k:].sum()
        if below == 0 or above == 0:
            continue
        mean_below = (counts[:k] * centres[:k]).sum() / below
        mean_above = (counts[k:] * centres[k:]).sum() / above
        variance = below * above * (mean_below - mean_above) ** 2
        if variance > best:
            best, split = variance, k
    labels, _ = ndi.label(covariance >= edges[split],
                          ndi.generate_binary_structure(3, connectivity))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    kept = sizes >= min_size
    kept[0] = False
    removed = int(((sizes > 0) & ~kept).sum())
    labels[~kept[labels]] = 0
    return (int(kept.sum()), int(sizes[kept].sum()), removed), labels


def cut_objects(labels, block_shape):
    """How many labelled objects span more than one block of ``block_shape``."""
    return sum(
        any(part.start // step != (part.stop - 1) // step
            for part, step in zip(box, block_shape))
        for box in ndi.find_objects(labels) if box is not None
    )


# -- the pipeline, as a researcher runs it -------------------------------------------------


def test_the_pipeline_script_counts_what_the_whole_volume_holds(tmp_path):
    shape, block_shape, seed = (16, 96, 96), (8, 24, 24), 5
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "ndmulticore_pipeline.py"),
         "--shape", ",".join(map(str, shape)), "--block-shape", ",".join(map(str, block_shape)),
         "--seed", str(seed), "--workers", "2"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert out.count("OK: 32 done, 0 failed") == 3, out  # three passes, every block
    assert "BOSS emulator at http://127.0.0.1:" in out
    total = int(re.search(r"total, block by block: (\d+) objects", out).group(1))
    found = re.search(r"objects: (\d+) of at least 10 voxels \(([\d,]+) voxels in all\); "
                      r"([\d,]+) smaller ones removed", out)
    counted = tuple(int(group.replace(",", "")) for group in found.groups())

    expected, labels = reference_count(blob_volume.blob_volume(shape, seed))
    assert counted == expected and total == expected[0] > 10
    assert re.search(rf"whole volume, scipy.ndimage: {total} objects .* agree: yes", out)
    assert cut_objects(labels, block_shape) >= 5  # the blocks cut through objects
    assert "neurodata.cfg" in out and completed.stderr.count("Traceback") == 0


def test_the_pipeline_script_runs_on_the_volume_a_config_names(tmp_path, capsys):
    from ndframework.bossemu import BossEmulator

    volume = blob_volume.blob_volume((16, 64, 64), seed=4)
    expected, _ = reference_count(volume)
    # a third channel, listed first: --channels picks the two
    volume = {"dapi": volume["psd95"] // 2, **volume}
    with BossEmulator(token="example-token") as boss:
        boss.create_volume("lab", "sample", volume, origin=(0, 0, 100))
        config = tmp_path / "neurodata.cfg"
        config.write_text(
            f"[Default]\nprotocol = {boss.protocol}\nhost = {boss.host}\n"
            f"token = {boss.token}\n\n[Parallel]\ncollection = lab\nexperiment = sample\n"
            f"channels = dapi, psd95, synapsin\n")
        status = pipeline_example.main(
            ["--config", str(config), "--channels", "synapsin, psd95", "--block-shape",
             "8,32,32", "--executor", "threads", "--workers", "2"])
        out = capsys.readouterr().out
        assert status == 0, out
        assert "region [0:16, 0:64, 100:164]" in out and "channels synapsin, psd95" in out
        assert f"total, block by block: {expected[0]} objects" in out
        assert "whole volume" not in out  # no whole array to compare with here
        assert boss.token not in out

        with pytest.raises(SystemExit) as refused:  # --shape is the synthetic volume's
            pipeline_example.main(["--config", str(config), "--shape", "8,8,8"])
        assert refused.value.code == 2
        assert pipeline_example.main(["--config", str(config), "--channels", "synapsin,gfp",
                                      "--executor", "serial"]) == 2
        assert "gfp" in capsys.readouterr().out
        config.write_text(config.read_text().replace("sample", "absent"))
        assert pipeline_example.main(["--config", str(config)]) == 2
        assert "absent" in capsys.readouterr().out


@pytest.mark.parametrize("block_shape", [(8, 16, 16), (5, 13, 11), (16, 64, 7)])
def test_the_three_passes_equal_the_whole_volume_on_any_blocking(block_shape):
    volume = blob_volume.blob_volume((16, 64, 64), seed=2)
    expected, labels = reference_count(volume)
    assert cut_objects(labels, block_shape) >= 1
    source = ndf.InMemorySource(volume, origin=(3, 40, 500))
    report = pipeline_example.run_pipeline(
        source, CHANNELS, tiler=ndf.RegularTiler(block_shape, origin=source.bounds.start),
        executor="serial", echo=lambda line: None)
    assert report.ok
    count = report.count
    assert (count.objects, count.voxels, count.removed) == expected
    assert expected[0] > 3 and expected[2] > 0  # objects kept, and small ones removed
    # the first pass's statistics are numpy's on the whole array
    for name in CHANNELS:
        assert report.stats[name].mean == volume[name].mean()
        assert report.stats[name].std == pytest.approx(volume[name].std(), rel=1e-12)


# -- the counting pass on its own: objects across block edges and corners -------------------


def planted_volume(shape, block_shape, seed):
    """Two channels bright exactly in ``planted``: random pieces of 3 × 5 × 5 boxes, one
    centred on every corner of the block grid (so cut by up to eight blocks), clipped at
    the volume's edges."""
    rng = np.random.default_rng(seed)
    planted = np.zeros(shape, dtype=bool)
    for corner in itertools.product(*(range(0, n + 1, step)
                                      for n, step in zip(shape, block_shape))):
        piece = rng.random((3, 5, 5)) < 0.4
        piece[1, 2, 2] = True
        lo = [c - r for c, r in zip(corner, (1, 2, 2))]
        region = tuple(slice(max(0, a), min(n, a + size))
                       for a, n, size in zip(lo, shape, piece.shape))
        inner = tuple(slice(r.start - a, r.stop - a) for r, a in zip(region, lo))
        planted[region] |= piece[inner]
    noise = rng.integers(20, 40, shape)
    volume = {CHANNELS[0]: np.where(planted, 200, noise).astype(np.uint8),
              CHANNELS[1]: np.where(planted, 180, noise + 10).astype(np.uint8)}
    return volume, planted


def numpy_stats(volume):
    return {name: pipeline_example.ChannelStats(
        a.size, float(a.mean()), float(a.std()), float(a.min()), float(a.max()))
        for name, a in volume.items()}


@pytest.mark.parametrize("connectivity", [1, 3])
@pytest.mark.parametrize("block_shape, origin", [
    ((4, 6, 6), (0, 0, 0)),
    ((5, 7, 9), (2, 30, 1000)),
    ((6, 10, 8), (0, 0, 0)),
    ((4, 12, 6), (7, 0, 3)),
])
def test_objects_cut_by_blocks_are_counted_once(block_shape, origin, connectivity):
    shape, min_size = (13, 30, 31), 6
    volume, planted = planted_volume(shape, block_shape, seed=sum(block_shape) + connectivity)
    stats = numpy_stats(volume)
    covariance = pipeline_example.covariance_map(volume, CHANNELS, stats)
    threshold = (covariance[planted].min() + covariance[~planted].max()) / 2
    assert np.array_equal(covariance >= threshold, planted)

    labels, _ = ndi.label(planted, ndi.generate_binary_structure(3, connectivity))
    sizes = np.bincount(labels.ravel())[1:]
    kept = sizes >= min_size
    expected = (int(kept.sum()), int(sizes[kept].sum()), int((~kept).sum()))
    assert expected[0] > 10 and expected[2] > 0
    assert cut_objects(labels, block_shape) > 10

    source = ndf.InMemorySource(volume, origin=origin)
    counter = pipeline_example.CountObjects(
        CHANNELS, stats, threshold, source_bounds=source.bounds, halo=(3, 5, 5),
        min_size=min_size, connectivity=connectivity)
    result = ndf.Pipeline(source, counter, tiler=ndf.RegularTiler(block_shape, origin=origin),
                          executor="serial").run()
    assert result.ok, result.summary()
    assert result.reduced == expected


def test_an_object_larger_than_the_halo_fails_its_blocks_instead_of_miscounting():
    shape, block_shape = (8, 16, 32), (8, 16, 16)
    planted = np.zeros(shape, dtype=bool)
    planted[4, 8, 10:22] = True  # 12 voxels along x across the edge at x = 16: halo is 5
    planted[2, 3, 3:5] = True    # a small one, well inside the first block
    noise = np.random.default_rng(0).integers(20, 40, shape)
    volume = {name: np.where(planted, 200, noise).astype(np.uint8) for name in CHANNELS}
    stats = numpy_stats(volume)
    covariance = pipeline_example.covariance_map(volume, CHANNELS, stats)
    threshold = (covariance[planted].min() + covariance[~planted].max()) / 2
    source = ndf.InMemorySource(volume)
    counter = pipeline_example.CountObjects(CHANNELS, stats, threshold,
                                            source_bounds=source.bounds, halo=(3, 5, 5),
                                            min_size=1)
    result = ndf.Pipeline(source, counter, tiler=ndf.RegularTiler(block_shape),
                          executor="serial").run()
    assert not result.ok and result.counts.failed == 2
    failed = dict(result.failed)
    assert set(failed) == {"0_0_0", "0_0_16"}
    for failure in failed.values():
        assert failure.error.startswith("ObjectTooLarge: ")
        assert "larger than the halo (3, 5, 5)" in failure.error
    # a halo larger than the object counts both objects, once each
    wide = pipeline_example.CountObjects(CHANNELS, stats, threshold,
                                         source_bounds=source.bounds, halo=(3, 12, 12),
                                         min_size=1)
    result = ndf.Pipeline(source, wide, tiler=ndf.RegularTiler(block_shape),
                          executor="serial").run()
    assert result.ok and result.reduced == (2, 14, 0)


def test_otsu_threshold_splits_where_the_between_class_variance_peaks():
    counts, edges = np.histogram([1, 1, 2, 2, 2, 7, 8, 8], bins=8, range=(0, 8))
    assert pipeline_example.otsu_threshold(counts, edges) == 3.0  # {1, 2} | {7, 8}
    with pytest.raises(ValueError, match="one bin"):
        pipeline_example.otsu_threshold(*np.histogram([3, 3, 3], bins=4, range=(0, 8)))


def test_the_examples_docstrings_run():
    for module, examples in ((pipeline_example, 5), (blob_volume, 2)):
        outcome = doctest.testmod(module)
        assert outcome.failed == 0 and outcome.attempted >= examples


# -- the timings plugin -------------------------------------------------------------------


class Brightest(ndf.BlockProcessor):
    """Fails on the block holding a saturated voxel; the first try of block 0_0_8 (in any
    worker) times out."""

    channels = ("em",)
    retry_on = (TimeoutError,)

    def __init__(self, marker):
        self.marker = marker

    def process(self, data, block):
        em = block.crop(data["em"])
        if block.key == "0_0_8" and not self.marker.exists():
            self.marker.touch()
            raise TimeoutError("a slow service, the first time")
        if (em == 255).any():
            raise ValueError(f"saturated voxels in block {block.key}")
        return int(em.max())


@pytest.mark.parametrize("executor", ["serial", "threads"])
def test_the_timings_plugin_writes_one_row_per_block_as_the_run_recorded_it(tmp_path, executor):
    volume = np.random.default_rng(0).integers(0, 200, (8, 16, 24), dtype=np.uint8)
    volume[5, 9, 17] = 255  # block 4_8_16 fails
    plugin = timings_csv.TimingsCSV(tmp_path / "runs" / "timings-{run_id}.csv")
    source = ndf.InMemorySource({"em": volume})
    tiler = ndf.RegularTiler((4, 8, 8))
    result = ndf.Pipeline(source, Brightest(tmp_path / "tried"), tiler=tiler, executor=executor,
                          plugins=[plugin]).run()
    assert plugin.path == tmp_path / "runs" / f"timings-{result.run.run_id}.csv"

    with plugin.path.open(newline="") as rows:
        reader = csv.reader(rows)
        header = next(reader)
        table = {row[0]: dict(zip(header, row)) for row in reader}
    assert tuple(header) == timings_csv.COLUMNS
    keys = [block.key for block in tiler.blocks(source.bounds)]
    assert sorted(table) == sorted(keys) and len(keys) == 12

    assert {key for key, row in table.items() if row["status"] == "failed"} == {"4_8_16"}
    assert all(row["status"] == "done" for key, row in table.items() if key != "4_8_16")
    records = {record.key: record for record in result.records()}
    for key, row in table.items():
        record = records[key]
        assert row["status"] == str(record.status)
        assert int(row["attempts"]) == record.attempts == result.attempts[key]
        timings = result.timings[key]
        assert [float(row[name]) for name in ("read", "process", "write", "total")] == [
            timings.read, timings.process, timings.write, timings.total]
        assert row["worker"] == record.worker != ""
    assert table["0_0_8"]["attempts"] == "2" and table["0_0_0"]["attempts"] == "1"
    assert not list(plugin.path.parent.glob("*.tmp"))


def test_the_timings_script_runs(tmp_path, capsys):
    assert timings_csv.main(["--csv", str(tmp_path / "t.csv"), "--executor", "serial"]) == 0
    out = capsys.readouterr().out
    assert "7 done, 1 failed" in out and "slowest block:" in out
    with (tmp_path / "t.csv").open(newline="") as rows:
        statuses = sorted(row["status"] for row in csv.DictReader(rows))
    assert statuses == ["done"] * 7 + ["failed"]

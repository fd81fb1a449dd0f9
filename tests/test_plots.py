"""Pictures of a plan and of a journal's status: real pipelines, sources, journals and the
BOSS emulator; the PNGs are read back and checked for their size and colours."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.image
import numpy as np
import pytest
from matplotlib.colors import to_rgb

import ndframework as ndf
from ndframework.geometry import Block, Box
from ndframework.plots import (
    DPI,
    MAX_IMAGE_PIXELS,
    MAX_PANELS,
    PLAN_FIGURE_SIZE,
    STATUS_FIGURE_SIZE,
    PlotDependencyError,
    output_path,
    plot_plan,
    plot_status,
)
from ndframework.plots import _plan, _status
from ndframework.plots._grid import parse_tiler, recorded_grid

pytestmark = pytest.mark.timeout(60)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path, figure_size):
    """The picture at ``path`` as RGB floats, after checking it is a PNG of the pixel size
    that ``figure_size`` (inches) at `DPI` gives."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    width, height = figure_size
    assert image.shape[:2] == (round(height * DPI), round(width * DPI))
    return image[..., :3]


def share_of(image, colour, tolerance=0.03):
    """Fraction of the picture's pixels within ``tolerance`` of ``colour``."""
    close = np.abs(image - np.array(to_rgb(colour))).max(axis=-1) <= tolerance
    return close.mean()


def waves(shape):
    z, y, x = (np.arange(n, dtype=np.float32) for n in shape)
    plane = np.sin(x / 9)[None, :] * np.cos(y / 7)[:, None] * 100 + 128
    return (plane[None] + z[:, None, None]).astype(np.uint8)


class FailOn(ndf.BlockProcessor):
    """Fails the blocks whose keys it is given."""

    def __init__(self, keys):
        self.keys = tuple(keys)

    def process(self, data, block):
        if block.key in self.keys:
            raise ValueError(f"block {block.key} fails on purpose")
        return 1


class Walked(ndf.Tiler):
    """A tiler of the user's own: a regular tiler's blocks, with no grid to say so."""

    def __init__(self, inner):
        self.inner = inner
        self.halo = inner.halo

    def with_halo(self, halo):
        return Walked(self.inner.with_halo(halo))

    def blocks(self, bounds, *, within=None) -> Iterator[Block]:
        return self.inner.blocks(bounds, within=within)

    def count(self, bounds):
        return self.inner.count(bounds)


# -- plot_plan -------------------------------------------------------------------------------


def test_plan_picture_shows_blocks_and_the_middle_blocks_halo(tmp_path):
    source = ndf.InMemorySource({"em": waves((12, 96, 128))})
    pipeline = ndf.Pipeline(source, lambda data: None, executor="serial",
                            tiler=ndf.RegularTiler((4, 32, 32), halo=(1, 4, 4)))
    path = plot_plan(pipeline, tmp_path / "plan.png")
    assert path == tmp_path / "plan.png"
    image = read_png(path, PLAN_FIGURE_SIZE)
    assert share_of(image, _plan.BLOCK_COLOUR) > 0.002
    assert share_of(image, _plan.MIDDLE_COLOUR) > 0.001
    assert share_of(image, _plan.NEIGHBOUR_COLOUR, tolerance=0.15) > 0.001  # thin, dashed


def test_plan_without_halo_draws_no_read_boxes(tmp_path):
    source = ndf.InMemorySource({"em": waves((4, 64, 64))})
    pipeline = ndf.Pipeline(source, lambda data: None, executor="serial",
                            tiler=ndf.RegularTiler((4, 16, 16)))
    image = read_png(plot_plan(pipeline, tmp_path / "plan.png"), PLAN_FIGURE_SIZE)
    assert share_of(image, _plan.NEIGHBOUR_COLOUR, tolerance=0.15) < 0.0002  # none
    assert share_of(image, _plan.MIDDLE_COLOUR) > 0.0005  # the middle block, still


def test_plan_of_a_grid_equals_the_blocks_walked():
    tiler = ndf.RegularTiler((4, 30, 20), halo=((1, 2, 3), (0, 5, 1)), origin=(1, 7, 3))
    bounds, within = Box((2, 5, 1), (13, 100, 90)), Box((0, 0, 0), (20, 120, 100))
    for z in (2, 5, 12):
        grid = _plan._Layer.of(tiler, bounds, within, z)
        walked = _plan._Layer.of(Walked(tiler), bounds, within, z)
        assert grid.edges is not None and walked.edges is None
        assert grid.count == walked.count == len(walked.boxes)
        assert grid.middle.box == walked.middle.box
        assert grid.middle.read_box == walked.middle.read_box
        assert sorted(b.read_box for b in grid.neighbours) == \
            sorted(b.read_box for b in walked.neighbours)
        assert len(grid.neighbours) == 8
        y_edges, x_edges = grid.edges
        assert {box.start[1] for box in walked.boxes} | {bounds.stop[1]} == set(y_edges)
        assert {box.start[2] for box in walked.boxes} | {bounds.stop[2]} == set(x_edges)


def test_a_halo_too_thin_to_see_gets_a_zoom_on_a_corner():
    bounds = Box((0, 0, 0), (16, 6000, 8000))
    thin = _plan._Layer.of(ndf.RegularTiler((16, 1024, 1024), halo=(0, 8, 4)), bounds,
                           bounds, 3)
    assert thin.middle.box == Box((0, 2048, 3072), (16, 3072, 4096))  # holds the centre
    zoom = _plan._zoom_region(thin, ndf.Halo.of((0, 8, 4)), bounds)
    assert zoom == Box((0, 2048 - 32, 3072 - 32), (16, 2048 + 32, 3072 + 32))
    wide = _plan._Layer.of(ndf.RegularTiler((16, 1024, 1024), halo=(0, 64, 64)), bounds,
                           bounds, 3)
    assert _plan._zoom_region(wide, ndf.Halo.of((0, 64, 64)), bounds) is None
    assert _plan._zoom_region(thin, ndf.Halo.of(0), bounds) is None
    single = _plan._Layer.of(ndf.RegularTiler((16, 6000, 8000), halo=2), bounds, bounds, 3)
    assert _plan._zoom_region(single, ndf.Halo.of(2), bounds) is None  # no corner shared


def test_plan_with_a_tiler_of_ones_own(tmp_path):
    source = ndf.InMemorySource({"em": waves((8, 64, 64))})
    pipeline = ndf.Pipeline(source, lambda data: None, executor="serial",
                            tiler=Walked(ndf.RegularTiler((4, 16, 16), halo=2)))
    read_png(plot_plan(pipeline, tmp_path / "plan.png", z=7), PLAN_FIGURE_SIZE)


class RecordingSource(ndf.InMemorySource):
    """An in-memory source that keeps the boxes it is asked to read."""

    def __init__(self, arrays):
        super().__init__(arrays)
        self.reads = []

    def read(self, box, channels=None):
        self.reads.append(box)
        return super().read(box, channels)


def test_plan_reads_one_slice_and_never_a_large_one(tmp_path, monkeypatch):
    monkeypatch.setattr(_plan, "MAX_IMAGE_PIXELS", 64 * 64)
    source = RecordingSource({"em": waves((4, 64, 64)), "mask": np.zeros((4, 64, 64), "u2")})
    pipeline = ndf.Pipeline(source, lambda data: None, executor="serial", channels=["mask", "em"],
                            tiler=ndf.RegularTiler((2, 16, 16), halo=(0, 2, 2)))
    plot_plan(pipeline, tmp_path / "whole.png", z=3)
    assert source.reads == [Box((3, 0, 0), (4, 64, 64))]

    source.reads.clear()
    monkeypatch.setattr(_plan, "MAX_IMAGE_PIXELS", 64 * 64 - 1)  # the middle block's only
    plot_plan(pipeline, tmp_path / "middle.png", z=1)
    assert source.reads == [Box((1, 30, 30), (2, 50, 50))]  # (y, x) 32:48 and the halo

    source.reads.clear()
    monkeypatch.setattr(_plan, "MAX_IMAGE_PIXELS", 19 * 19)  # not even that: no image
    plot_plan(pipeline, tmp_path / "none.png")
    assert source.reads == []
    read_png(tmp_path / "none.png", PLAN_FIGURE_SIZE)
    assert MAX_IMAGE_PIXELS == 4 * 2**20


def test_plan_draws_the_zarr_chunk_grid(tmp_path):
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(tmp_path / "volume.zarr"), mode="w")
    array = group.create_array("em", shape=(8, 96, 96), chunks=(4, 24, 24), dtype="uint8")
    array[:] = waves((8, 96, 96))
    source = ndf.ZarrSource(str(tmp_path / "volume.zarr"))
    assert _plan._chunk_grid(source) == ((4, 24, 24), (0, 0, 0), False)
    pipeline = ndf.Pipeline(source, lambda data: None, executor="serial",
                            tiler=ndf.RegularTiler((4, 48, 48), halo=3))
    image = read_png(plot_plan(pipeline, tmp_path / "plan.png"), PLAN_FIGURE_SIZE)
    in_memory = ndf.Pipeline(ndf.InMemorySource({"em": waves((8, 96, 96))}), lambda data: None,
                             executor="serial", tiler=ndf.RegularTiler((4, 48, 48), halo=3))
    unchunked = read_png(plot_plan(in_memory, tmp_path / "plain.png"), PLAN_FIGURE_SIZE)
    chunk_lines = share_of(image, _plan.CHUNK_COLOUR, tolerance=0.2)
    assert chunk_lines > 0.001
    assert chunk_lines > 5 * share_of(unchunked, _plan.CHUNK_COLOUR, tolerance=0.2)


def test_plan_over_the_boss_with_cuboid_blocks(tmp_path):
    from ndframework.boss import BossSource
    from ndframework.bossemu import BossEmulator

    volume = waves((20, 600, 700))
    with BossEmulator(token="plot-token") as boss:
        boss.create_volume("coll", "exp", {"em": volume})
        source = BossSource(boss.host, "plot-token", "coll", "exp", "em",
                            protocol=boss.protocol, bounds=Box((0, 100, 300), (20, 600, 700)))
        # the cuboid grid is the BOSS's, from 0, not from the bounds' start
        assert _plan._chunk_grid(source) == ((16, 512, 512), (0, 0, 0), True)
        pipeline = ndf.Pipeline(source, lambda data: None, executor="serial",
                                tiler=ndf.CuboidTiler((16, 512, 512), halo=(0, 20, 20)))
        image = read_png(plot_plan(pipeline, tmp_path / "plan.png", z=18), PLAN_FIGURE_SIZE)
    assert share_of(image, _plan.MIDDLE_COLOUR) > 0.001


def test_plan_refuses_bad_input_naming_it(tmp_path):
    source = ndf.InMemorySource({"em": np.zeros((4, 8, 8), np.uint8)})
    pipeline = ndf.Pipeline(source, lambda data: None, executor="serial")
    with pytest.raises(ndf.ConfigError, match=r"z must be .* from 0 to 3, got 4"):
        plot_plan(pipeline, tmp_path / "plan.png", z=4)
    with pytest.raises(ndf.ConfigError, match=r"got True"):
        plot_plan(pipeline, tmp_path / "plan.png", z=True)
    with pytest.raises(ndf.ConfigError, match=r"'\.txt'; use one of: .*\.png"):
        plot_plan(pipeline, tmp_path / "plan.txt")
    with pytest.raises(ndf.ConfigError, match=r"directory .*missing.* does not exist"):
        plot_plan(pipeline, tmp_path / "missing" / "plan.png")
    with pytest.raises(ndf.ConfigError, match=r"needs a Pipeline, got 'pipeline'"):
        plot_plan("pipeline", tmp_path / "plan.png")
    with pytest.raises(ndf.ChannelError, match=r"unknown channel 'nope'"):
        plot_plan(ndf.Pipeline(source, lambda data: None, channels=["nope"],
                               executor="serial"), tmp_path / "plan.png")
    assert not list(tmp_path.iterdir())
    assert output_path(tmp_path / "plan.SVG") == tmp_path / "plan.SVG"  # checks, writes nothing
    assert not list(tmp_path.iterdir())


# -- plot_status ------------------------------------------------------------------------------


def failing_run(tmp_path, shape=(24, 64, 96), block_shape=(8, 32, 32), fail=("8_0_32", "8_32_64"),
                **options):
    """A run over ``shape`` that fails ``fail`` and stops after them, leaving blocks not run."""
    source = ndf.InMemorySource({"em": np.zeros(shape, np.uint8)})
    path = tmp_path / "run.sqlite"
    options.setdefault("tiler", ndf.RegularTiler(block_shape))
    result = ndf.Pipeline(source, FailOn(fail), executor="serial", journal=path,
                          max_failures=len(fail), load_entrypoints=False, **options).run()
    result.journal.close()
    return result, ndf.Journal.read(path)


def test_status_picture_of_a_run_stopped_by_failures(tmp_path):
    result, journal = failing_run(tmp_path)
    assert result.counts.failed == 2 and result.counts.not_run > 0
    try:
        path = plot_status(journal, tmp_path / "status.png")
        grid = recorded_grid(journal)
        tally = _status._Tally.of(journal, grid)
    finally:
        journal.close()
    image = read_png(path, STATUS_FIGURE_SIZE)
    for name in ("done", "failed", "pending"):
        assert share_of(image, _status.COLOURS[name]) > 0.01, name
    assert tally.totals == {"done": result.counts.done, "failed": 2,
                            "pending": result.counts.not_run}
    assert tally.codes[1][0, 1] == tally.codes[1][1, 2] == 2  # the failed blocks' places
    assert tally.codes[0].tolist() == [[1, 1, 1], [1, 1, 1]]
    assert len(tally.durations) == result.counts.done


def test_grid_rebuilt_from_the_journal_places_every_block(tmp_path):
    for tiler, shape in [(ndf.RegularTiler((3, 10, 7), halo=1, origin=(1, 4, 2)), (10, 33, 30)),
                         (ndf.CuboidTiler((16, 512, 512), halo=(1, 8, 8)), (40, 600, 520))]:
        bounds = Box((2, 5, 3), shape)
        (tmp_path / tiler.__class__.__name__).mkdir()
        journal = ndf.Journal(tmp_path / tiler.__class__.__name__ / "run.sqlite")
        journal.open({"tiler": repr(tiler), "bounds": str(bounds)},
                     block_count=tiler.count(bounds))
        try:
            grid = recorded_grid(journal)
        finally:
            journal.close()
        assert not grid.inferred and grid.count == tiler.count(bounds)
        assert parse_tiler(repr(tiler)) == tiler
        index_of = grid.indexer()
        for block in tiler.blocks(bounds):
            assert index_of(block.key) == block.index
            (z0, y0, x0), (z1, y1, x1) = (tuple(grid.edges[axis][block.index[axis] + step]
                                                for axis in range(3)) for step in (0, 1))
            assert Box((z0, y0, x0), (z1, y1, x1)) == block.box


def test_status_of_a_tiler_of_ones_own_infers_boxes_from_keys(tmp_path):
    tiler = Walked(ndf.RegularTiler((8, 32, 32)))
    result, journal = failing_run(tmp_path, tiler=tiler, fail=("0_0_0", "8_32_64"))
    try:
        grid = recorded_grid(journal)
        read_png(plot_status(journal, tmp_path / "status.png"), STATUS_FIGURE_SIZE)
    finally:
        journal.close()
    # the layer z 16:24 has no record: filled in at the step of the others
    assert grid.inferred and grid.complete
    assert grid.edges == ((0, 8, 16, 24), (0, 32, 64), (0, 32, 64, 96))


def test_status_of_a_tiler_of_ones_own_with_too_little_recorded(tmp_path):
    result, journal = failing_run(tmp_path, tiler=Walked(ndf.RegularTiler((8, 32, 32))),
                                  fail=("0_0_0",))
    try:
        grid = recorded_grid(journal)
        tally = _status._Tally.of(journal, grid)
    finally:
        journal.close()
    assert grid.inferred and not grid.complete and grid.count == 1
    assert tally.totals == {"done": 0, "failed": 1, "pending": 17}


def test_status_of_a_deep_run_caps_the_panels(tmp_path):
    result, journal = failing_run(tmp_path, shape=(40, 8, 8), block_shape=(1, 4, 4),
                                  fail=("30_4_4",))
    try:
        grid = recorded_grid(journal)
        shown = _status._Tally.of(journal, grid).shown
        read_png(plot_status(journal, tmp_path / "status.png"), STATUS_FIGURE_SIZE)
    finally:
        journal.close()
    assert grid.shape == (40, 2, 2)
    assert len(shown) == MAX_PANELS and shown[0] == 0 and shown[-1] == 39
    assert 30 in shown  # the layer with the failed block


def test_status_of_a_journal_older_than_its_block_count(tmp_path):
    result, journal = failing_run(tmp_path)
    journal.close()
    with sqlite3.connect(tmp_path / "run.sqlite") as connection:
        connection.execute("DELETE FROM meta WHERE name = 'block_count'")
    journal = ndf.Journal.read(tmp_path / "run.sqlite")
    try:
        assert journal.block_count() is None
        grid = recorded_grid(journal)
        tally = _status._Tally.of(journal, grid)
    finally:
        journal.close()
    assert not grid.inferred and tally.totals["pending"] == result.counts.not_run


def test_status_refuses_bad_input_naming_it(tmp_path):
    with pytest.raises(ndf.ConfigError, match=r"needs a Journal .*got 'run.sqlite'"):
        plot_status("run.sqlite", tmp_path / "status.png")
    with pytest.raises(ndf.ConfigError, match=r"is not open"):
        plot_status(ndf.Journal(tmp_path / "run.sqlite"), tmp_path / "status.png")
    journal = ndf.Journal(tmp_path / "empty.sqlite")
    journal.open({"source": "nothing"})
    try:
        with pytest.raises(ndf.ConfigError, match=r"records no run"):
            plot_status(journal, tmp_path / "status.png")
        with pytest.raises(ndf.ConfigError, match=r"suffix '\.jpgg'"):
            plot_status(journal, tmp_path / "status.jpgg")
    finally:
        journal.close()


# -- matplotlib stays optional ------------------------------------------------------------


def test_importing_ndframework_does_not_import_matplotlib():
    code = ("import sys, ndframework, ndframework.plots; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_matplotlib_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what import finds when absent
    source = ndf.InMemorySource({"em": np.zeros((2, 4, 4), np.uint8)})
    pipeline = ndf.Pipeline(source, lambda data: None, executor="serial")
    for call in (lambda: plot_plan(pipeline, tmp_path / "plan.png"),
                 lambda: plot_status(ndf.Journal(), tmp_path / "status.png"),
                 lambda: output_path(tmp_path / "plan.png")):
        with pytest.raises(PlotDependencyError, match=r'pip install "ndframework\[plot\]"') \
                as caught:
            call()
        assert isinstance(caught.value, ImportError)
        assert isinstance(caught.value, ndf.ConfigError)

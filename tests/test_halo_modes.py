"""Halo edge modes: a filter run block by block with a padding halo equals scipy.ndimage's
filter on the whole volume with the same boundary mode; "clip" keeps today's clipped reads."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import zarr
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ndframework as ndf
from ndframework._padding import HALO_MODES, read_limits, read_padded
from ndframework.testing.strategies import block_shapes, halos, volumes

PADDING_MODES = tuple(mode for mode in HALO_MODES if mode != "clip")
NUMPY_NAMES = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge",
               "constant": "constant", "wrap": "wrap"}
"""np.pad's name for each scipy.ndimage mode."""
CVAL = {"constant": 2.5}

SIGMA = 1.5
HALO = 6
TRUNCATE = HALO / SIGMA  # scipy's radius, int(truncate * sigma + 0.5), equals the halo
BLOCK = (3, 4, 5)
ORIGIN = (2, -3, 5)


def gaussian(array, mode, cval=0.0):
    return ndi.gaussian_filter(array, SIGMA, mode=mode, cval=cval, truncate=TRUNCATE)


class Gaussian(ndf.BlockProcessor):
    """Writes the Gaussian of ``em`` over the owned box; the block's own edges never count."""

    halo = HALO
    channels = ("em",)

    def __init__(self, mode, cval=0):
        self.halo_mode = mode
        self.halo_cval = cval

    def process(self, data, block):
        assert data["em"].shape == block.read_box.shape
        # NaN beyond the read box: any voxel that reached past it would show.
        smoothed = ndi.gaussian_filter(data["em"], SIGMA, mode="constant", cval=np.nan,
                                       truncate=TRUNCATE)
        return {"out": block.crop(smoothed)}


def smooth_in_blocks(volume, mode, executor, *, bounds=None, sink=None, cval=0):
    source = ndf.InMemorySource({"em": volume}, origin=ORIGIN)
    if sink is None:
        sink = ndf.InMemorySink.zeros({"out": volume.dtype},
                                      ndf.Box.from_shape(volume.shape, ORIGIN))
    pipeline = ndf.Pipeline(source, Gaussian(mode, cval), tiler=ndf.RegularTiler(
        BLOCK, origin=ORIGIN), executor=executor, sink=sink, bounds=bounds,
        load_entrypoints=False)
    result = pipeline.run()
    assert result.ok, result.summary()
    return sink


@pytest.fixture(scope="module")
def volume():
    # z (5) is shorter than the halo; no axis is a multiple of the block.
    return np.random.default_rng(7).random((5, 10, 11))


@pytest.mark.parametrize("executor", [ndf.SerialExecutor(), ndf.ThreadExecutor(2)],
                         ids=lambda executor: executor.name)
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_gaussian_in_blocks_equals_scipy_on_the_whole_volume(volume, mode, executor):
    cval = CVAL.get(mode, 0)
    sink = smooth_in_blocks(volume, mode, executor, cval=cval)
    np.testing.assert_allclose(sink.arrays["out"], gaussian(volume, mode, cval),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_float32_and_a_halo_larger_than_every_axis(mode):
    volume = np.random.default_rng(3).random((4, 5, 6), dtype=np.float32)
    sink = smooth_in_blocks(volume, mode, "serial", cval=CVAL.get(mode, 0))
    expected = gaussian(volume, mode, CVAL.get(mode, 0))
    assert sink.arrays["out"].dtype == np.float32
    np.testing.assert_allclose(sink.arrays["out"], expected, rtol=1e-6, atol=1e-6)


def test_worker_processes_write_the_same_to_zarr(volume, tmp_path):
    source_bounds = ndf.Box.from_shape(volume.shape, ORIGIN)
    sink = ndf.ZarrSink.create(tmp_path / "out.zarr", {"out": "float64"}, source_bounds,
                               chunk_shape=BLOCK)
    smooth_in_blocks(volume, "wrap", ndf.ProcessExecutor(2), sink=sink)
    written = zarr.open_group(sink.path, mode="r")["out"][...]
    np.testing.assert_allclose(written, gaussian(volume, "wrap"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["reflect", "wrap", "constant"])
def test_a_sub_region_pads_only_at_the_source_edges(volume, mode):
    # Touches the source's start in z and its stop in x; its other faces lie inside.
    local = ndf.Box((0, 3, 2), (4, 8, 11))
    bounds = local.shift(ORIGIN)
    sink = smooth_in_blocks(volume, mode, "serial", bounds=bounds, cval=CVAL.get(mode, 0))
    expected = gaussian(volume, mode, CVAL.get(mode, 0))
    written = sink.arrays["out"]
    np.testing.assert_allclose(written[local.slices()], expected[local.slices()],
                               rtol=1e-12, atol=1e-12)
    outside = np.ones(volume.shape, bool)
    outside[local.slices()] = False
    assert not written[outside].any()


class Record(ndf.BlockProcessor):
    """Returns the data it was given, to compare with numpy."""

    halo = ((2, 0, 7), (0, 3, 1))

    def __init__(self, mode="clip"):
        self.halo_mode = mode

    def process(self, data, block):
        return block.read_box, data["em"]


@pytest.mark.parametrize("mode", HALO_MODES)
def test_data_covers_the_read_box_clipped_or_padded(volume, mode):
    source = ndf.InMemorySource({"em": volume}, origin=ORIGIN)
    halo = ndf.Halo.of(Record.halo)
    pipeline = ndf.Pipeline(source, Record(mode), tiler=ndf.RegularTiler(BLOCK, origin=ORIGIN),
                            executor="serial", load_entrypoints=False)
    result = pipeline.run()
    assert result.ok and len(result.reduced) == 2 * 3 * 3
    padded = volume if mode == "clip" else np.pad(
        volume, list(zip(halo.before, halo.after)), mode=NUMPY_NAMES[mode])
    padded_start = source.bounds.start if mode == "clip" else source.bounds.grow(
        halo.before, halo.after).start
    for read_box, data in result.reduced.values():
        np.testing.assert_array_equal(data, padded[read_box.relative_to(padded_start).slices()])
    blocks = list(ndf.RegularTiler(BLOCK, halo=halo, origin=ORIGIN).blocks(source.bounds))
    unclipped = [block.box.grow(halo.before, halo.after) for block in blocks]
    read_boxes = [read_box for read_box, _ in result.reduced.values()]
    if mode == "clip":
        assert read_boxes == [box.intersect(source.bounds) for box in unclipped]
        assert any(box != clipped for box, clipped in zip(unclipped, read_boxes))
    else:
        assert read_boxes == unclipped
    plan = pipeline.plan()
    assert plan.read_bytes == sum(box.size for box in read_boxes) * volume.itemsize


def test_an_invalid_mode_is_refused_before_any_work():
    with pytest.raises(ndf.ConfigError) as caught:
        ndf.FunctionProcessor(len, halo_mode="symmetric")
    message = str(caught.value)
    assert "'symmetric'" in message
    assert all(repr(mode) in message for mode in HALO_MODES)

    calls = []

    class Edge(ndf.BlockProcessor):
        halo_mode = "edge"

        def process(self, data, block):
            calls.append(block.key)

    source = ndf.InMemorySource({"em": np.zeros((4, 4, 4))})
    pipeline = ndf.Pipeline(source, Edge(), tiler=ndf.RegularTiler(2), executor="serial",
                            load_entrypoints=False)
    for attempt in (pipeline.plan, pipeline.run):
        with pytest.raises(ndf.ConfigError, match="halo_mode must be one of .*got 'edge'"):
            attempt()
    assert calls == []


def test_a_constant_the_channels_cannot_hold_is_refused():
    source = ndf.InMemorySource({"em": np.zeros((4, 4, 4), np.uint8)})
    processor = ndf.FunctionProcessor(len, halo=1, halo_mode="constant", halo_cval=-1)
    pipeline = ndf.Pipeline(source, processor, tiler=ndf.RegularTiler(2), executor="serial",
                            load_entrypoints=False)
    with pytest.raises(ndf.ConfigError, match="halo_cval -1 cannot be stored in a uint8"):
        pipeline.plan()
    with pytest.raises(ndf.ConfigError, match="halo_cval must be a number, got 'zero'"):
        ndf.FunctionProcessor(len, halo_mode="constant", halo_cval="zero")


@st.composite
def padded_reads(draw):
    arrays = draw(volumes(max_extent=7, dtypes=("uint8", "float32")))
    mode = draw(st.sampled_from(PADDING_MODES))
    tiler = ndf.RegularTiler(draw(block_shapes(4)), halo=draw(halos(9)))
    return arrays, mode, tiler


def check_padding(arrays, mode, tiler, cval=3):
    source = ndf.InMemorySource(arrays, origin=(-1, 4, 0))
    bounds, halo = source.bounds, tiler.halo
    pads = list(zip(halo.before, halo.after))
    options = {"constant_values": cval} if mode == "constant" else {}
    padded = {name: np.pad(array, pads, mode=NUMPY_NAMES[mode], **options)
              for name, array in arrays.items()}
    padded_start = bounds.grow(halo.before, halo.after).start
    within = read_limits(bounds, halo, mode)
    for block in tiler.blocks(bounds, within=within):
        assert block.read_box == block.box.grow(halo.before, halo.after)
        data = read_padded(source, block, source.channels, mode, cval)
        where = block.read_box.relative_to(padded_start).slices()
        for name, array in data.items():
            assert array.dtype == arrays[name].dtype
            np.testing.assert_array_equal(array, padded[name][where])
            np.testing.assert_array_equal(block.crop(array),
                                          arrays[name][block.box.relative_to(bounds).slices()])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(padded_reads())
@example(({"a": np.arange(5 * 6 * 7, dtype=np.uint8).reshape(5, 6, 7)}, "wrap",
          ndf.RegularTiler((3, 4, 5), halo=((6, 0, 9), (0, 8, 1)))))
@example(({"a": np.arange(3, dtype=np.float32).reshape(1, 1, 3)}, "mirror",
          ndf.RegularTiler((1, 1, 1), halo=9)))
def test_padding_equals_numpy_pad_of_the_whole_volume(case):
    check_padding(*case)


def test_interior_blocks_are_read_as_they_are():
    source = ndf.InMemorySource({"em": np.arange(6 * 6 * 6).reshape(6, 6, 6)})
    block = ndf.Block((1, 1, 1), ndf.Box((2, 2, 2), (4, 4, 4)), ndf.Box((1, 1, 1), (5, 5, 5)))
    for mode in HALO_MODES:
        data = read_padded(source, block, ["em"], mode)["em"]
        np.testing.assert_array_equal(data, np.arange(216).reshape(6, 6, 6)[1:5, 1:5, 1:5])

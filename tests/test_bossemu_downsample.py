"""The emulator's resolution hierarchy and downsampling against independent oracles: numpy
and scipy.ndimage computations written from the BOSS's sources, Pillow itself (which the
BOSS's lambda calls, and which intern installs), and boss-tools' own test vectors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ndframework.bossemu.downsample import DownsamplePass, plan_downsample, run_downsample
from ndframework.bossemu.downsample_blocks import (
    annotation_label,
    downsample_annotation_block,
    downsample_block,
    downsample_image_block,
)
from ndframework.bossemu.downsample_status import (
    DOWNSAMPLE_MAX_VOXELS,
    STATUSES,
    TRANSITIONS,
    DownsampleEvent,
    downsample_info,
    next_status,
)
from ndframework.bossemu.hierarchy import (
    Hierarchy,
    downsampled_extents,
    downsampled_voxel_sizes,
    isotropic_level,
    shrink_frame,
)

SMALL_CUBOID_XYZ = (4, 4, 2)
"""A small cuboid for frame-level tests; the algorithm does not depend on 512x512x16."""


# ----------------------------------------------------------------------------- oracles


def scalar_ann_value(a: int, b: int, c: int, d: int) -> int:
    """spdb's getAnnValue64 (spdb/c_lib/c_version/addData.c), transcribed branch by
    branch on Python ints, including its ``value = value10`` where ``value11`` was meant."""
    value = a
    if value == 0:
        value = b
    if c != 0:
        if value == 0:
            value = c
        elif c == a or c == b:
            value = c
    if d != 0:
        if value == 0:
            value = c
        elif d == a or d == b or d == c:
            value = d
    return value


def scalar_annotation_block(volume: np.ndarray, step_z: int) -> np.ndarray:
    """spdb's addAnnotationData (addData.c) as plain loops over output voxels."""
    depth, height, width = volume.shape[0] // step_z, volume.shape[1] // 2, volume.shape[2] // 2
    out = np.zeros((depth, height, width), volume.dtype)
    for z in range(depth):
        for y in range(height):
            for x in range(width):
                patch = volume[step_z * z, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2]
                label = scalar_ann_value(*(int(v) for v in patch.ravel()))
                if label == 0 and step_z == 2:
                    patch = volume[2 * z + 1, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2]
                    label = scalar_ann_value(*(int(v) for v in patch.ravel()))
                out[z, y, x] = label
    return out


def scipy_bilinear_half(slices: np.ndarray) -> np.ndarray:
    """Pillow's bilinear halving written as scipy correlations: weights 1, 3, 3, 1 on
    inputs 2j-1 .. 2j+2, renormalised where they leave the block, rounded half up after
    the x pass and after the y pass (Pillow src/libImaging/Resample.c). Interior sums are
    exact eighths and edge sums sevenths, so doubles decide every rounding correctly."""
    from scipy import ndimage

    weights = np.array([1.0, 3.0, 3.0, 1.0])
    data = slices.astype(np.float64)
    for axis in (-1, -2):
        total = ndimage.correlate1d(data, weights, axis=axis, mode="constant", cval=0.0)
        norm = ndimage.correlate1d(np.ones_like(data), weights, axis=axis, mode="constant")
        picked = [slice(None)] * data.ndim
        picked[axis] = slice(1, None, 2)  # output j sits at input 2j + 1 of the correlation
        data = np.floor(total[tuple(picked)] / norm[tuple(picked)] + 0.5)
    return data.astype(slices.dtype)


def pillow_half(slice_: np.ndarray) -> np.ndarray:
    """The BOSS's own call (boss-tools lambda/downsample_volume.py downsample_cube)."""
    image_module = pytest.importorskip("PIL.Image")
    mode = {np.dtype(np.uint8): "L", np.dtype(np.uint16): "I;16"}[slice_.dtype]
    height, width = slice_.shape
    image = image_module.frombuffer(mode, (width, height), slice_.flatten(), "raw", mode, 0, 1)
    return np.asarray(image.resize((width // 2, height // 2), image_module.BILINEAR))


def dict_store(arrays: dict):
    """A sparse cuboid store over a dict {(resolution, cube_xyz, iso): ZYX array}."""

    def read(resolution, cube, iso):
        return arrays.get((resolution, tuple(cube), iso))

    def write(resolution, cube, iso, data):
        arrays[(resolution, tuple(cube), iso)] = data

    def listing(resolution, iso):
        return [key[1] for key in list(arrays) if key[0] == resolution and key[2] == iso]

    return read, write, listing


# ---------------------------------------------------------------------------- images

image_dtypes = st.sampled_from([np.uint8, np.uint16])


@st.composite
def image_blocks(draw, step_z=None):
    dtype = draw(image_dtypes)
    step = draw(st.sampled_from([1, 2])) if step_z is None else step_z
    depth, half_y, half_x = (draw(st.integers(1, 3)) for _ in range(3))
    high = int(np.iinfo(dtype).max)
    values = draw(st.sampled_from(["random", "extremes"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    shape = (step * depth, 2 * half_y, 2 * half_x)
    if values == "random":
        block = rng.integers(0, high + 1, shape)
    else:
        block = rng.choice([0, high], shape)
    return block.astype(dtype), step


@settings(max_examples=60, deadline=None)
@given(image_blocks())
def test_image_block_matches_the_scipy_bilinear_oracle(block_and_step):
    """boss-tools lambda/downsample_volume.py downsample_cube: slice z * step_z, resized by
    Pillow's bilinear filter (src/libImaging/Resample.c), x then y, rounded each pass."""
    block, step_z = block_and_step
    expected = scipy_bilinear_half(block[0::step_z])
    np.testing.assert_array_equal(downsample_image_block(block, step_z), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(2, 2), (4, 6), (30, 18), (64, 64), (2, 40)])
def test_image_block_matches_pillow(dtype, shape):
    """boss-tools lambda/downsample_volume.py downsample_cube calls Pillow's
    Image.resize(BILINEAR) on each slice; uint16 needs Pillow 11 or later."""
    image_module = pytest.importorskip("PIL.Image")
    if dtype == np.uint16:
        major = int(image_module.__version__.split(".")[0])
        if major < 11:
            pytest.skip("Pillow before 11 cannot resize I;16 bilinearly")
    rng = np.random.default_rng(sum(shape))
    slice_ = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    got = downsample_image_block(slice_[None], 1)[0]
    np.testing.assert_array_equal(got, pillow_half(slice_))


def test_image_weights_are_not_a_two_by_two_mean():
    """Pillow's bilinear reduction (Resample.c precompute_coeffs) weighs 1,3,3,1 / 8, and
    3,3,1 / 7 at a block's first output: a lone bright voxel leaks into its neighbours."""
    slice_ = np.zeros((8, 8), np.uint8)
    slice_[2, 2] = 64  # input 2 belongs to output 1 (weight 3/8) and output 0 (1/7)
    got = downsample_image_block(slice_[None], 1)[0]
    # x: output 0 gets 64/7 -> 9, output 1 gets 64*3/8 = 24; then y likewise.
    assert got[1, 1] == 9  # round(24 * 3/8)
    assert got[0, 1] == 3  # round(24 / 7)
    assert got[1, 0] == 3
    assert got[0, 0] == 1  # round(9 / 7)
    assert got.sum() == 16  # 9 + 3 + 3 + 1: rounding, not a conserved mean
    assert slice_.reshape(4, 2, 4, 2).mean(axis=(1, 3))[1, 1] == 16  # what a mean would give


def test_isotropic_image_step_drops_odd_slices():
    """boss-tools downsample_cube: ``volume[z * volume.cubes.z]`` - an isotropic step
    keeps even slices and ignores odd ones ("this skips Z slices")."""
    block = np.zeros((4, 2, 2), np.uint8)
    block[0], block[1], block[2], block[3] = 10, 200, 30, 250
    np.testing.assert_array_equal(downsample_image_block(block, 2)[:, 0, 0], [10, 30])


def test_image_downsample_refuses_uint64():
    """boss-tools downsample_cube raises for an image dtype other than uint8/uint16."""
    with pytest.raises(ValueError, match="Unsupported type for image downsampling 'uint64'"):
        downsample_image_block(np.zeros((1, 2, 2), np.uint64), 1)


@pytest.mark.parametrize("bad_shape", [(1, 3, 2), (1, 2, 5), (3, 2, 2)])
def test_odd_block_shapes_are_refused(bad_shape):
    """A block is always whole cuboids (boss-tools Buffer.zeros(dim * step)): y and x even,
    z a multiple of the step."""
    with pytest.raises(ValueError, match="got shape"):
        downsample_block(np.zeros(bad_shape, np.uint8), (2, 2, 2), is_annotation=False)


@settings(max_examples=40, deadline=None)
@given(image_blocks(), st.data())
def test_constant_image_block_stays_constant(block_and_step, data):
    """Pillow's weights are normalised (Resample.c: k /= ww, 8-bit sums to exactly
    2**22), so a constant slice stays the same constant."""
    block, step_z = block_and_step
    value = data.draw(st.integers(0, int(np.iinfo(block.dtype).max)))
    block[:] = value
    assert (downsample_image_block(block, step_z) == value).all()


@settings(max_examples=40, deadline=None)
@given(image_blocks())
def test_image_block_stays_within_its_input_range(block_and_step):
    """Bilinear weights are non-negative (Resample.c bilinear_filter), so each output lies
    between the smallest and largest voxel of the slices read."""
    block, step_z = block_and_step
    out = downsample_image_block(block, step_z)
    read = block[0::step_z]
    assert read.min() <= out.min() and out.max() <= read.max()


# ----------------------------------------------------------------------- annotations

labels = st.sampled_from([0, 0, 1, 2, 3, 2**63 + 5])


@settings(max_examples=200, deadline=None)
@given(labels, labels, labels, labels)
@example(0, 0, 0, 9)
@example(0, 5, 7, 7)
def test_annotation_label_matches_the_c_branches(a, b, c, d):
    """spdb addData.c getAnnValue64, transcribed branch by branch."""
    assert int(annotation_label(np.uint64(a), np.uint64(b), np.uint64(c), np.uint64(d))) == (
        scalar_ann_value(a, b, c, d)
    )


@pytest.mark.parametrize(
    ("patch", "label"),
    [
        ((7, 7, 7, 7), 7),  # uniform
        ((1, 2, 3, 4), 1),  # all different: the first non-zero, a
        ((0, 2, 3, 4), 2),  # a empty: b
        ((1, 2, 2, 5), 2),  # c repeats b: c
        ((1, 2, 1, 2), 2),  # c repeats a -> 1, then d repeats b -> 2: the later pair wins
        ((1, 2, 3, 3), 3),  # d repeats c
        ((5, 5, 6, 6), 6),  # 2-2 tie: the bottom row wins
        ((0, 5, 7, 7), 7),  # pair beats a single
        ((4, 0, 0, 4), 4),
        ((0, 0, 4, 0), 4),  # c alone survives
        ((0, 0, 0, 9), 0),  # d alone is lost: the C code assigns value10 (0)
        ((0, 0, 0, 0), 0),
    ],
)
def test_annotation_label_on_hand_made_patches(patch, label):
    """spdb addData.c getAnnValue64: patch is (a, b, c, d) = (y0x0, y0x1, y1x0, y1x1)."""
    block = np.array(patch, np.uint64).reshape(1, 2, 2)
    assert downsample_annotation_block(block, 1).item() == label


def test_annotation_patch_orientation():
    """addData.c addAnnotationData: index2 is the x neighbour (OFFSET(z, y, x + 1)) and
    index3 the y neighbour; with a=0 the x neighbour wins over the y neighbour."""
    block = np.zeros((1, 2, 2), np.uint64)
    block[0, 0, 1] = 11  # x neighbour, b
    block[0, 1, 0] = 22  # y neighbour, c
    assert downsample_annotation_block(block, 1).item() == 11


def test_isotropic_annotation_falls_back_to_the_odd_slice():
    """addData.c addAnnotationData: with cube_z == 2, slice 2z+1 is read only where
    slice 2z gives 0."""
    block = np.zeros((2, 2, 4), np.uint64)
    block[0, 0, 0] = 3  # first patch: found in the even slice
    block[1, :, 0:2] = 8  # first patch's odd slice: ignored
    block[1, 0, 3] = 9  # second patch: only in the odd slice
    assert downsample_annotation_block(block, 2).tolist() == [[[3, 9]]]


@st.composite
def label_blocks(draw):
    step = draw(st.sampled_from([1, 2]))
    depth, half_y, half_x = (draw(st.integers(1, 3)) for _ in range(3))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    palette = np.array([0, 1, 2, 3, 2**64 - 1], np.uint64)
    return palette[rng.integers(0, 5, (step * depth, 2 * half_y, 2 * half_x))], step


@settings(max_examples=60, deadline=None)
@given(label_blocks())
def test_annotation_block_matches_loop_oracle(block_and_step):
    """spdb addData.c addAnnotationData, as plain loops."""
    block, step_z = block_and_step
    np.testing.assert_array_equal(
        downsample_annotation_block(block, step_z), scalar_annotation_block(block, step_z)
    )


@settings(max_examples=40, deadline=None)
@given(label_blocks(), st.integers(1, 2**64 - 1))
def test_single_label_stays_that_label(block_and_step, label):
    """spdb addData.c getAnnValue64 returns a; a block of one label keeps it, and labels
    never appear from nowhere."""
    block, step_z = block_and_step
    out = downsample_annotation_block(block, step_z)
    assert set(np.unique(out)) <= set(np.unique(block)) | {0}
    block[:] = label
    assert (downsample_annotation_block(block, step_z) == label).all()


# ----------------------------------------------------------------------- hierarchy


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([1.0, 2.0, 3.0, 4.0, 6.0, 8.0]), st.floats(0.5, 5000.0))
def test_isotropic_level_is_spdbs_argmin(xy_size, z_size):
    """spdb/project/resource.py get_isotropic_level: numpy argmin of |z/(x 2**r) - 1|."""
    ratios = [float(z_size) / (xy_size * 2**level) for level in range(0, 30)]
    expected = int(np.abs(np.array(ratios) - 1).argmin())
    assert isotropic_level("anisotropic", (xy_size, xy_size, z_size)) == expected
    assert isotropic_level("isotropic", (xy_size, xy_size, z_size)) == 0


def test_extents_follow_spdb_from_the_stop_only():
    """spdb/project/resource.py get_downsampled_extent_dims: math.ceil(stop / 2.0) from
    the frame's stop; a negative start changes nothing; z halves only for isotropic
    levels."""
    stop = (1000, 1025, 37)  # not a multiple of the cuboid
    plain = downsampled_extents(5, 2, "anisotropic", stop)
    assert plain == [(1000, 1025, 37), (500, 513, 37), (250, 257, 37), (125, 129, 37), (63, 65, 37)]
    iso = downsampled_extents(5, 2, "anisotropic", stop, iso=True)
    assert iso[:3] == plain[:3]
    assert iso[3:] == [(125, 129, 19), (63, 65, 10)]
    isotropic = downsampled_extents(3, 0, "isotropic", stop)
    assert isotropic == [(1000, 1025, 37), (500, 513, 19), (250, 257, 10)]
    negative = Hierarchy((-512, -3, -16), stop, (4, 4, 16), num_hierarchy_levels=5)
    assert [negative.extent(r) for r in range(5)] == plain


def test_voxel_sizes_follow_spdb():
    """spdb/project/resource.py get_downsampled_voxel_dims."""
    assert downsampled_voxel_sizes(4, 1, "anisotropic", (4, 4, 8)) == [
        (4.0, 4.0, 8.0), (8.0, 8.0, 8.0), (16.0, 16.0, 8.0), (32.0, 32.0, 8.0)
    ]
    assert downsampled_voxel_sizes(3, 0, "isotropic", (4, 4, 8), iso=False) == [
        (4.0, 4.0, 8.0), (8.0, 8.0, 16.0), (16.0, 16.0, 32.0)
    ]


def test_iso_keys_only_above_the_isotropic_level_of_anisotropic_frames():
    """spdb/spatialdb/object.py generate_object_key: ISO& when iso, anisotropic and
    resolution > isotropic level."""
    aniso = Hierarchy((0, 0, 0), (64, 64, 64), (4, 4, 16), num_hierarchy_levels=5)
    assert [aniso.uses_iso_keys(r, iso=True) for r in range(5)] == [False, False, False, True, True]
    assert not any(aniso.uses_iso_keys(r, iso=False) for r in range(5))
    assert [aniso.has_iso_copy(r) for r in range(5)] == [False, False, False, True, True]
    isotropic = Hierarchy((0, 0, 0), (64, 64, 64), (4, 4, 16), 5, "isotropic")
    assert not any(isotropic.uses_iso_keys(r, iso=True) for r in range(5))
    assert not any(isotropic.has_iso_copy(r) for r in range(5))


def test_hierarchy_validates():
    """boss django/bosscore/serializers.py: base_resolution < num_hierarchy_levels;
    models.py: the two hierarchy methods."""
    with pytest.raises(ValueError, match="base_resolution must be in"):
        Hierarchy((0, 0, 0), (1, 1, 1), (1, 1, 1), num_hierarchy_levels=2, base_resolution=2)
    with pytest.raises(ValueError, match="hierarchy_method must be one of"):
        Hierarchy((0, 0, 0), (1, 1, 1), (1, 1, 1), hierarchy_method="slice")


# ------------------------------------------------------------------ boss-tools passes


def test_pass_geometry_matches_boss_tools_non_zero_start_vector():
    """boss-tools activities/tests/test_resolution_hierarchy.py
    test_downsample_channel_non_zero_start: cubes (8, 8, 76) to (12, 12, 79), and the frame
    shrinks to (2496, 2496, 616)-(3008, 3008, 632)."""
    pass_ = DownsamplePass(4, (2, 2, 2), False, False, (4992, 4992, 1232), (6016, 6016, 1264))
    assert pass_.cubes_start_xyz == (8, 8, 76)
    assert pass_.cubes_stop_xyz == (12, 12, 79)
    assert shrink_frame((4992, 4992, 1232), (6016, 6016, 1264), (2, 2, 2)) == (
        (2496, 2496, 616), (3008, 3008, 632)
    )


def test_pass_geometry_matches_boss_tools_not_even_vector():
    """boss-tools test_downsample_channel_not_even: a frame of 2.5 cuboids reads 3 and
    shrinks to (640, 640, 20)."""
    pass_ = DownsamplePass(0, (2, 2, 2), False, False, (0, 0, 0), (1280, 1280, 40))
    assert pass_.cubes_stop_xyz == (3, 3, 3)
    assert list(pass_.targets()) == [(x, y, z) for x in (0, 2) for y in (0, 2) for z in (0, 2)]
    assert shrink_frame((0, 0, 0), (1280, 1280, 40), (2, 2, 2))[1] == (640, 640, 20)


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(*[st.integers(-40, 40)] * 3),
    st.tuples(*[st.integers(1, 40)] * 3),
    st.sampled_from([(2, 2, 1), (2, 2, 2)]),
)
def test_targets_cover_the_frame_and_align_to_zero(start, size, step):
    """boss-tools downsample_channel: cubes_start floored and moved down to a multiple of
    the step (also for a negative start), cubes_stop ceiled; count() as num_cubes()."""
    stop = tuple(s + n for s, n in zip(start, size))
    pass_ = DownsamplePass(0, step, False, False, start, stop, SMALL_CUBOID_XYZ)
    targets = list(pass_.targets())
    assert len(targets) == pass_.count()
    assert all(t % s == 0 for target in targets for t, s in zip(target, step))
    covered = {
        (t[0] + dx, t[1] + dy, t[2] + dz)
        for t in targets for dx in range(step[0]) for dy in range(step[1]) for dz in range(step[2])
    }
    first = tuple(s // c for s, c in zip(start, SMALL_CUBOID_XYZ))
    last = tuple(-(-s // c) for s, c in zip(stop, SMALL_CUBOID_XYZ))
    needed = {
        (x, y, z)
        for x in range(first[0], last[0])
        for y in range(first[1], last[1])
        for z in range(first[2], last[2])
    }
    assert needed <= covered
    assert all(pass_.target_of(cube) is not None for cube in covered)


def test_plan_for_an_anisotropic_channel():
    """boss-tools downsample_channel: 2x2x1 at every level; from the isotropic level a
    second 2x2x2 pass writes ISO&, reading the plain level first and its own copy after;
    levels base+1 .. num_hierarchy_levels-1 (boss-manage resolution_hierarchy.hsd)."""
    h = Hierarchy((0, 0, 0), (4096, 4096, 128), (4, 4, 16), num_hierarchy_levels=5)
    plan = plan_downsample(h)
    assert plan.failure is None
    assert [(p.resolution, p.step_xyz, p.read_iso, p.write_iso) for p in plan.passes] == [
        (0, (2, 2, 1), False, False),
        (1, (2, 2, 1), False, False),
        (2, (2, 2, 1), False, False),
        (2, (2, 2, 2), False, True),
        (3, (2, 2, 1), False, False),
        (3, (2, 2, 2), True, True),
    ]
    iso_pass = plan.passes[-1]
    assert (iso_pass.frame_start_xyz, iso_pass.frame_stop_xyz) == h.downsample_frame(3, iso=True)
    assert plan.passes[-2].frame_stop_xyz == h.downsample_frame(3)[1] == (512, 512, 128)


def test_plan_for_an_isotropic_channel_and_edge_cases():
    """boss-tools downsample_channel: an isotropic hierarchy makes only 2x2x2 passes on
    plain keys; one level makes none (res_lt_max starts false, boss downsample.py start);
    a base past the isotropic level fails (KeyError on iso_x_start)."""
    iso = Hierarchy((0, 0, 0), (64, 64, 64), (4, 4, 4), 3, "isotropic")
    passes = plan_downsample(iso).passes
    assert [(p.step_xyz, p.write_iso) for p in passes] == [((2, 2, 2), False)] * 2
    assert plan_downsample(Hierarchy((0, 0, 0), (64, 64, 64), (4, 4, 4))).passes == ()
    late = Hierarchy((0, 0, 0), (64, 64, 64), (4, 4, 4), num_hierarchy_levels=3, base_resolution=1)
    plan = plan_downsample(late)
    assert [p.resolution for p in plan.passes] == [1]
    assert plan.passes[0].frame_stop_xyz == (64, 64, 64)  # the frame taken as level 1's
    assert "isotropic level" in plan.failure


def _fill(arrays, resolution, dtype, frame_stop_xyz, make):
    cuboid_zyx = SMALL_CUBOID_XYZ[::-1]
    for x in range(-(-frame_stop_xyz[0] // SMALL_CUBOID_XYZ[0])):
        for y in range(-(-frame_stop_xyz[1] // SMALL_CUBOID_XYZ[1])):
            for z in range(-(-frame_stop_xyz[2] // SMALL_CUBOID_XYZ[2])):
                arrays[(resolution, (x, y, z), False)] = make(cuboid_zyx).astype(dtype)


def _assemble(arrays, resolution, iso, frame_stop_xyz):
    """The frame at a level as one ZYX array of its cuboids (zeros where missing)."""
    cuboid_zyx = SMALL_CUBOID_XYZ[::-1]
    counts = [-(-s // c) for s, c in zip(frame_stop_xyz, SMALL_CUBOID_XYZ)]
    dtype = next(iter(arrays.values())).dtype
    out = np.zeros([n * c for n, c in zip(counts[::-1], cuboid_zyx)], dtype)
    for (res, (x, y, z), is_iso), data in arrays.items():
        inside = x < counts[0] and y < counts[1] and z < counts[2]
        if res == resolution and is_iso == iso and inside:
            out[z * cuboid_zyx[0] : (z + 1) * cuboid_zyx[0],
                y * cuboid_zyx[1] : (y + 1) * cuboid_zyx[1],
                x * cuboid_zyx[2] : (x + 1) * cuboid_zyx[2]] = data
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16 - 1), st.sampled_from(["anisotropic", "isotropic"]))
def test_constant_image_stays_constant_at_every_level(value, method):
    """boss-tools downsample_channel + downsample_volume: with every cuboid of the frame
    stored, a constant image is the same constant inside the frame at every level and in
    the ISO copy. (The frame is a whole number of blocks at every level but the last.)"""
    frame_stop = (32, 32, 8)
    h = Hierarchy((0, 0, 0), frame_stop, (1, 1, 2), num_hierarchy_levels=4, hierarchy_method=method)
    arrays: dict = {}
    _fill(arrays, 0, np.uint16, frame_stop, lambda shape: np.full(shape, value))
    read, write, listing = dict_store(arrays)
    written = run_downsample(plan_downsample(h, SMALL_CUBOID_XYZ), read, write, listing,
                             is_annotation=False, dtype=np.uint16, cuboid_xyz=SMALL_CUBOID_XYZ)
    assert written == len(arrays) - len([k for k in arrays if k[0] == 0])
    levels = {(res, iso) for res, _, iso in arrays}
    expected = {(r, False) for r in range(4)}
    if method == "anisotropic":
        expected |= {(2, True), (3, True)}  # iso level 1: copies above it
    assert levels == expected
    for resolution, iso in levels:
        stop = h.downsample_frame(resolution, iso=iso)[1]
        level = _assemble(arrays, resolution, iso, stop)
        assert (level[: stop[2], : stop[1], : stop[0]] == value).all(), (resolution, iso)


def test_incomplete_block_darkens_the_last_voxel_inside_the_frame():
    """boss-tools downsample_volume: a block whose second cuboid lies past the frame reads
    it as zeros, and Pillow's 1,3,3,1 weights pull them into the last voxel inside the
    frame. Frame x, y = 16 with 4-voxel cuboids: level 2 is one cuboid, level 3 blends."""
    frame_stop = (16, 16, 2)
    h = Hierarchy((0, 0, 0), frame_stop, (1, 1, 64), num_hierarchy_levels=4)
    arrays: dict = {}
    _fill(arrays, 0, np.uint8, frame_stop, lambda shape: np.full(shape, 200))
    read, write, listing = dict_store(arrays)
    run_downsample(plan_downsample(h, SMALL_CUBOID_XYZ), read, write, listing,
                   is_annotation=False, dtype=np.uint8, cuboid_xyz=SMALL_CUBOID_XYZ)
    assert h.downsample_frame(3)[1] == (2, 2, 2)
    level3 = arrays[(3, (0, 0, 0), False)][0]
    assert level3[0, 0] == 200
    assert level3[0, 1] == level3[1, 0] == 175  # (200 + 600 + 600 + 0) / 8
    assert level3[1, 1] == 153  # 175 * 7 / 8, rounded


def test_single_label_annotation_stays_that_label_and_sparse_blocks_are_skipped():
    """boss-tools downsample_volume: a block with no stored cuboid writes nothing
    (volume_empty); spdb addData.c keeps a single label."""
    label = 2**63 + 17
    arrays = {(0, (5, 3, 1), False): np.full(SMALL_CUBOID_XYZ[::-1], label, np.uint64)}
    h = Hierarchy((0, 0, 0), (64, 64, 16), (1, 1, 1), 3, hierarchy_method="isotropic")
    read, write, listing = dict_store(arrays)
    written = run_downsample(plan_downsample(h, SMALL_CUBOID_XYZ), read, write, listing,
                             is_annotation=True, dtype=np.uint64, cuboid_xyz=SMALL_CUBOID_XYZ)
    assert written == 2
    assert sorted(k for k in arrays if k[0] > 0) == [(1, (2, 1, 0), False), (2, (1, 0, 0), False)]
    level1 = arrays[(1, (2, 1, 0), False)]
    # the stored cuboid is the odd half of its block in x, y and z: it fills that octant
    expected = np.zeros_like(level1)
    expected[1, 2:, 2:] = label
    np.testing.assert_array_equal(level1, expected)


def test_frame_edges_blend_zeros_beyond_the_stop_and_blocks_are_independent():
    """boss-tools downsample_volume: missing cuboids are zeros, and each output cuboid is
    filtered from its own block only (Pillow's edge weights at every block seam). A frame
    of 2.5 cuboids: the level-1 frame is the blockwise oracle of level 0."""
    frame_stop = (10, 8, 2)  # x: 2.5 cuboids of 4
    h = Hierarchy((0, 0, 0), frame_stop, (1, 1, 8), num_hierarchy_levels=2)
    rng = np.random.default_rng(3)
    arrays: dict = {}
    _fill(arrays, 0, np.uint8, frame_stop, lambda shape: rng.integers(1, 256, shape))
    read, write, listing = dict_store(arrays)
    run_downsample(plan_downsample(h, SMALL_CUBOID_XYZ), read, write, listing,
                   is_annotation=False, dtype=np.uint8, cuboid_xyz=SMALL_CUBOID_XYZ)
    level0 = _assemble(arrays, 0, False, (16, 8, 2))  # two blocks of 2x2 cuboids in x
    level1 = _assemble(arrays, 1, False, (8, 4, 2))
    blocks = [level0[:, :, 0:8], level0[:, :, 8:16]]
    expected = np.concatenate([scipy_bilinear_half(b) for b in blocks], axis=-1)
    np.testing.assert_array_equal(level1, expected)
    assert (level0[:, :, 12:] == 0).all()  # the third cuboid column was never stored


def test_failed_plan_writes_then_raises():
    """boss-manage resolution_hierarchy.hsd: a failing DownsampleChannel leaves what it
    wrote and sets FAILED."""
    late = Hierarchy((0, 0, 0), (8, 8, 2), (4, 4, 4), num_hierarchy_levels=3, base_resolution=1)
    arrays = {(1, (0, 0, 0), False): np.ones(SMALL_CUBOID_XYZ[::-1], np.uint8)}
    read, write, listing = dict_store(arrays)
    with pytest.raises(RuntimeError, match="isotropic level"):
        run_downsample(plan_downsample(late, SMALL_CUBOID_XYZ), read, write, listing,
                       is_annotation=False, dtype=np.uint8, cuboid_xyz=SMALL_CUBOID_XYZ)
    assert (2, (0, 0, 0), False) in arrays


# -------------------------------------------------------------------------- status


def test_transitions_cover_every_status_for_requests():
    """boss django/bossspatialdb/downsample.py start, views.py Downsample.delete and
    Cutout.post: every status answers START, CANCEL and WRITE."""
    for status in STATUSES:
        for event in (DownsampleEvent.START, DownsampleEvent.CANCEL, DownsampleEvent.WRITE):
            assert (status, event) in TRANSITIONS


@pytest.mark.parametrize(
    ("status", "event", "after", "http"),
    [
        ("NOT_DOWNSAMPLED", "start", "QUEUED", 201),
        ("FAILED", "start", "QUEUED", 201),
        ("QUEUED", "start", "QUEUED", 409),
        ("IN_PROGRESS", "start", "IN_PROGRESS", 409),
        ("DOWNSAMPLED", "start", "DOWNSAMPLED", 409),
        ("QUEUED", "dequeue", "IN_PROGRESS", 200),
        ("IN_PROGRESS", "finish", "DOWNSAMPLED", 200),
        ("IN_PROGRESS", "fail", "FAILED", 200),
        ("QUEUED", "cancel", "NOT_DOWNSAMPLED", 204),
        ("IN_PROGRESS", "cancel", "NOT_DOWNSAMPLED", 204),
        ("DOWNSAMPLED", "cancel", "DOWNSAMPLED", 409),
        ("DOWNSAMPLED", "write", "NOT_DOWNSAMPLED", 201),
        ("IN_PROGRESS", "write", "IN_PROGRESS", 201),
        ("FAILED", "write", "FAILED", 201),
    ],
)
def test_status_lifecycle(status, event, after, http):
    """boss django/bossspatialdb/downsample.py start, views.py Downsample and
    Cutout.post, boss-tools activities/boss_db.py, boss-manage resolution_hierarchy.hsd."""
    outcome = next_status(status, event)
    assert (outcome.status, outcome.http_status) == (after, http)
    assert outcome.refused == (http == 409)
    if outcome.refused:
        assert outcome.error_code == 2006 and outcome.message.endswith(".")


def test_staff_and_size_rules_of_start():
    """boss django/bossspatialdb/downsample.py start: staff may downsample again; others
    may not exceed DOWNSAMPLE_MAX_SIZE; impossible events raise."""
    assert next_status("downsampled", "start", is_staff=True).status == "QUEUED"
    big = next_status("NOT_DOWNSAMPLED", "start", frame_voxels=DOWNSAMPLE_MAX_VOXELS + 1)
    assert big.refused and big.message.startswith("Large downsamples require admin")
    assert not next_status("NOT_DOWNSAMPLED", "start", is_staff=True,
                           frame_voxels=DOWNSAMPLE_MAX_VOXELS + 1).refused
    with pytest.raises(ValueError, match="cannot happen"):
        next_status("QUEUED", "finish")


def test_downsample_info_shape():
    """boss django/bossspatialdb/views.py Downsample.get: keys, string levels from 0,
    float voxel sizes, extents from the stop, cuboid sizes from spdb CUBOIDSIZE."""
    h = Hierarchy((-100, 0, 0), (1000, 999, 40), (4, 4, 40), 4, base_resolution=1)
    info = downsample_info(h, "DOWNSAMPLED")
    assert list(info) == ["status", "num_hierarchy_levels", "voxel_size", "extent", "cuboid_size"]
    assert info["status"] == "DOWNSAMPLED" and info["num_hierarchy_levels"] == 4
    assert list(info["voxel_size"]) == ["0", "1", "2", "3"]
    assert info["voxel_size"]["3"] == [32.0, 32.0, 40.0]
    assert info["extent"]["3"] == [125, 125, 40]
    assert info["cuboid_size"]["2"] == [512, 512, 16]
    iso = downsample_info(h, "DOWNSAMPLED", iso=True)  # iso level 3: nothing above it
    assert iso["extent"] == info["extent"]
    skewed = Hierarchy((0, 0, 0), (10, 10, 10), (4, 5, 40))
    with pytest.raises(ValueError, match="X voxel size != Y voxel size"):
        downsample_info(skewed, "NOT_DOWNSAMPLED")

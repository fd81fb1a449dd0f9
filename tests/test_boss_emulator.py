"""The BOSS emulator (`ndframework.bossemu`) against the real intern BossRemote, over HTTP on
loopback: the resource service, cutouts, faults, concurrency, secrets and the command line.

No mocks of intern: every request goes through intern's own URL building, blosc encoding and
error handling, and numpy slicing of the source arrays is the oracle. Expected statuses, codes
and texts are the BOSS's own, each test naming the source it follows. One emulator serves the
module; each test makes collections of its own (`fresh`), as soft deletes keep names taken.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import blosc
import numpy as np
import pytest
import requests
from intern.remote.boss import BossRemote
from intern.resource.boss.resource import (
    ChannelResource,
    CollectionResource,
    CoordinateFrameResource,
    ExperimentResource,
)
from requests import HTTPError

from ndframework.bossemu import BossEmulator, EmulatorStats, Faults, main
from ndframework.errors import ChannelError, ConfigError
from ndframework.synthetic import demo_volume
from bossapi_calls import http_error

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cr3t-emulator-token-value"
ROOT = Path(__file__).resolve().parents[1]
_names = itertools.count()


@pytest.fixture(scope="module")
def boss():
    with BossEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean_slate(request):
    """Each test starts with no faults and zero counters on the shared emulator."""
    if "boss" in request.fixturenames:
        emulator = request.getfixturevalue("boss")
        emulator.faults = Faults()
        emulator.reset_stats()


@pytest.fixture(scope="module")
def remote(boss):
    return boss.remote()


def unique(prefix: str = "coll") -> str:
    """A name no other test uses."""
    return f"{prefix}{next(_names)}"


def fresh(boss, channels, **kwargs) -> str:
    """A new collection holding experiment 'exp' with ``channels``; its name."""
    coll = unique()
    boss.create_volume(coll, "exp", channels, **kwargs)
    return coll


def random_volume(shape, dtype, seed=0):
    """Random voxels over the dtype's full range."""
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(0, info.max, size=shape, dtype=dtype, endpoint=True)



def assert_boss_error(response: requests.Response, status: int, code: int | None = None) -> dict:
    """The BOSS's JSON error body (bosscore/error.py ``BossHTTPError``), checked."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["status", "code", "message"]
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    assert TOKEN not in response.text
    return body


def assert_drf_error(response: requests.Response, status: int, detail: str) -> None:
    """Django REST framework's own error body, ``{"detail": ...}``."""
    assert response.status_code == status, response.text
    assert response.json() == {"detail": detail}


def make_project(remote, coll, exp="exp", frame=None, time_samples=1):
    remote.create_project(CollectionResource(coll, "a collection"))
    frame = frame or f"{coll}_frame"
    remote.create_project(
        CoordinateFrameResource(frame, "", 0, 64, 0, 48, 0, 16, 4, 4, 40, "nanometers")
    )
    return remote.create_project(
        ExperimentResource(exp, coll, frame, "an experiment", num_time_samples=time_samples)
    )


# -- resources -------------------------------------------------------------------------------


def test_collection_create_get_update_list_delete(remote):
    """views_resource.py ``CollectionDetail``/``CollectionList``: a delete is soft (the row
    stays, marked), and a GET of it is 404 with code 4005."""
    name, other, renamed = unique(), unique(), unique()
    created = remote.create_project(CollectionResource(name, "first"))
    assert (created.name, created.description, created.creator) == (name, "first", "bossadmin")
    remote.create_project(CollectionResource(other))
    assert {name, other} <= set(remote.list_collections())

    updated = remote.update_project(name, CollectionResource(renamed, "second"))
    assert (updated.name, updated.description) == (renamed, "second")
    assert remote.get_project(CollectionResource(renamed)).description == "second"
    assert name not in remote.list_collections()
    assert_boss_error(http_error(remote.get_project, CollectionResource(name)), 404, 4000)

    remote.delete_project(CollectionResource(renamed))
    assert renamed not in remote.list_collections() and other in remote.list_collections()
    assert_boss_error(http_error(remote.get_project, CollectionResource(renamed)), 404, 4005)


def test_coordinate_frame_create_get_update_list_delete(remote):
    """views_resource.py ``CoordinateFrameDetail``: an update changes the name and the
    description only (``CoordinateFrameUpdateSerializer``)."""
    name, renamed = unique("cf"), unique("cf")
    frame = CoordinateFrameResource(
        name, "frame", 10, 110, 0, 50, 5, 25, 4.5, 4.5, 40, "nanometers"
    )
    created = remote.create_project(frame)
    assert (created.x_start, created.x_stop, created.z_start, created.z_stop) == (10, 110, 5, 25)
    fetched = remote.get_coordinate_frame(name)
    assert (fetched.x_voxel_size, fetched.z_voxel_size, fetched.voxel_unit) == (
        4.5,
        40,
        "nanometers",
    )
    assert name in remote.list_coordinate_frames()

    fetched.name, fetched.description = renamed, "renamed"
    updated = remote.update_project(name, fetched)
    assert (updated.name, updated.description, updated.y_stop) == (renamed, "renamed", 50)
    assert renamed in remote.list_coordinate_frames()

    remote.delete_project(CoordinateFrameResource(renamed))
    assert renamed not in remote.list_coordinate_frames()
    assert_boss_error(http_error(remote.get_coordinate_frame, renamed), 404, 4005)


def test_experiment_create_get_update_list_delete(remote):
    """views_resource.py ``ExperimentDetail``/``ExperimentList``."""
    coll = unique()
    created = make_project(remote, coll, time_samples=3)
    assert (created.coord_frame, created.num_time_samples, created.hierarchy_method) == (
        f"{coll}_frame",
        3,
        "anisotropic",
    )
    fetched = remote.get_experiment(coll, "exp")
    assert (fetched.coll_name, fetched.description, fetched.time_step_unit) == (
        coll,
        "an experiment",
        "seconds",
    )
    assert remote.list_experiments(coll) == ["exp"]
    assert remote.get_project(CollectionResource(coll)).raw["experiments"] == ["exp"]

    fetched.name, fetched.num_hierarchy_levels, fetched.hierarchy_method = "exp2", 3, "isotropic"
    updated = remote.update_project("exp", fetched)
    assert (updated.name, updated.num_hierarchy_levels, updated.hierarchy_method) == (
        "exp2",
        3,
        "isotropic",
    )
    assert remote.list_experiments(coll) == ["exp2"]

    remote.delete_project(ExperimentResource("exp2", coll))
    assert remote.list_experiments(coll) == []
    assert_boss_error(http_error(remote.get_experiment, coll, "exp2"), 404, 4005)


def test_channel_create_get_update_list_delete(remote):
    """views_resource.py ``ChannelDetail``: a channel others derive from cannot be deleted
    (400, 4003)."""
    coll = unique()
    make_project(remote, coll)
    remote.create_project(ChannelResource("raw", coll, "exp", "image", datatype="uint16"))
    created = remote.create_project(
        ChannelResource("seg", coll, "exp", "annotation", "labels", datatype="uint64",
                        sources=["raw"])
    )
    assert (created.type, created.datatype, created.sources) == ("annotation", "uint64", ["raw"])
    fetched = remote.get_channel("raw", coll, "exp")
    assert (fetched.datatype, fetched.type, fetched.base_resolution) == ("uint16", "image", 0)
    assert fetched.downsample_status == "NOT_DOWNSAMPLED"
    assert fetched.cutout_ready
    assert remote.list_channels(coll, "exp") == ["raw", "seg"]

    fetched.name, fetched.description = "image", "renamed"
    updated = remote.update_project("raw", fetched)
    assert (updated.name, updated.description, updated.datatype) == ("image", "renamed", "uint16")
    assert remote.get_channel("seg", coll, "exp").sources == ["image"]

    body = assert_boss_error(http_error(remote.delete_project, updated), 400, 4003)
    assert body["message"] == (
        "Channel image is the source channel of other channels and cannot be deleted"
    )
    remote.delete_project(ChannelResource("seg", coll, "exp"))
    remote.delete_project(updated)
    assert remote.list_channels(coll, "exp") == []
    assert_boss_error(http_error(remote.get_channel, "image", coll, "exp"), 404, 4005)


def test_public_visibility_is_stored(remote):
    """bosscore/serializers.py ``CollectionSerializer``: ``public`` is stored and returned."""
    coll = unique()
    make_project(remote, coll)
    remote.set_project_public_visibility(CollectionResource(coll), True)
    assert remote.get_project(CollectionResource(coll)).public is True


def test_creating_what_exists_is_400_with_the_serializer_errors(remote):
    """views_resource.py: a serializer that refuses answers 400, code 1003, with DRF's error
    dict as the message (``"{}".format(serializer.errors)``)."""
    coll = unique()
    make_project(remote, coll)
    body = assert_boss_error(http_error(remote.create_project, CollectionResource(coll)), 400, 1003)
    assert body["message"] == (
        "{'name': [ErrorDetail(string='collection with this Name of the Collection already "
        "exists.', code='unique')]}"
    )
    body = assert_boss_error(
        http_error(remote.create_project, ExperimentResource("exp", coll, f"{coll}_frame")),
        400,
        1003,
    )
    assert "must make a unique set" in body["message"]
    assert_boss_error(
        http_error(
            remote.create_project, CoordinateFrameResource(f"{coll}_frame", "", 0, 1, 0, 1, 0, 1)
        ),
        400,
        1003,
    )


def test_deleting_what_is_in_use_is_400_with_code_4003(remote):
    """views_resource.py, each ``delete``: the BOSS's texts, missing spaces included."""
    coll = unique()
    make_project(remote, coll)
    body = assert_boss_error(http_error(remote.delete_project, CollectionResource(coll)), 400, 4003)
    assert body["message"] == (
        f"Collection {coll} has experiments that reference it and cannot be deleted."
        "Please delete the experiments first."
    )
    assert_boss_error(
        http_error(remote.delete_project, CoordinateFrameResource(f"{coll}_frame")), 400, 4003
    )


def test_bad_resource_arguments(remote):
    """views_resource.py ``ExperimentDetail.post`` looks the frame up first (404, 4000);
    ``ChannelDetail.post`` refuses unknown sources (400, 1003)."""
    coll = unique()
    make_project(remote, coll)
    body = assert_boss_error(
        http_error(remote.create_project, ExperimentResource("e2", coll, "no-such-frame")),
        404,
        4000,
    )
    assert body["message"] == "no-such-frame does not exist."
    bad_source = ChannelResource("c", coll, "exp", datatype="uint8", sources=["missing"])
    body = assert_boss_error(http_error(remote.create_project, bad_source), 400, 1003)
    assert "missing" in body["message"]


def test_a_missing_parent_is_404_or_the_servers_500(remote):
    """views_resource.py: ``ChannelDetail.post`` answers 404 for a missing collection;
    ``ExperimentList.list`` does not catch ``DoesNotExist``: Django's bare 500 page."""
    coll = unique()
    missing = ChannelResource("c", coll, "exp", datatype="uint8")
    body = assert_boss_error(http_error(remote.create_project, missing), 404, 4000)
    assert body["message"] == f"{coll} does not exist."
    response = http_error(remote.list_experiments, coll)
    assert response.status_code == 500 and response.text == "<h1>Server Error (500)</h1>"


# -- cutouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64])
def test_get_cutout_equals_numpy_slice(boss, remote, dtype):
    """bossspatialdb/views.py ``Cutout.get`` and renderers.py ``BloscRenderer``: the region's
    voxels, C order, blosc-compressed with the dtype's type size."""
    data = random_volume((12, 40, 56), dtype)
    coll = fresh(boss, {"ch": data})
    channel = remote.get_channel("ch", coll, "exp")
    assert channel.datatype == np.dtype(dtype).name

    whole = remote.get_cutout(channel, 0, [0, 56], [0, 40], [0, 12], parallel=False)
    assert whole.dtype == dtype and whole.shape == (12, 40, 56)
    np.testing.assert_array_equal(whole, data)
    part = remote.get_cutout(channel, 0, [13, 50], [7, 31], [3, 11], parallel=False)
    np.testing.assert_array_equal(part, data[3:11, 7:31, 13:50])
    voxel = remote.get_cutout(channel, 0, [55, 56], [39, 40], [11, 12], parallel=False)
    np.testing.assert_array_equal(voxel, data[11:12, 39:40, 55:56])


def test_get_cutout_with_an_origin_off_zero(boss, remote):
    """bosscore/request.py ``set_cutoutargs``: ranges outside the frame are 400, 1001."""
    data = random_volume((10, 30, 20), np.uint16)
    coll = fresh(boss, {"ch": data}, origin=(5, 100, 60))
    frame = remote.get_coordinate_frame(f"{coll}_exp")
    assert (frame.z_start, frame.z_stop, frame.y_start, frame.x_stop) == (5, 15, 100, 80)
    channel = remote.get_channel("ch", coll, "exp")
    cutout = remote.get_cutout(channel, 0, [62, 75], [110, 130], [6, 14], parallel=False)
    np.testing.assert_array_equal(cutout, data[1:9, 10:30, 2:15])
    response = http_error(
        remote.get_cutout, channel, 0, [0, 10], [100, 110], [5, 6], parallel=False
    )
    body = assert_boss_error(response, 400, 1001)
    assert body["message"] == "Incorrect cutout arguments 0/0:10/100:110/5:6"


def test_get_cutout_with_a_time_range(boss, remote):
    """bosscore/request.py ``set_time``: a range may end one past the last sample (which
    reads as zeros); one ending further is 400, code 1000."""
    data = random_volume((4, 6, 20, 24), np.uint16)  # T, Z, Y, X
    coll = fresh(boss, {"ch": data, "mask": random_volume(data.shape, np.uint8, 1)})
    assert remote.get_experiment(coll, "exp").num_time_samples == 4
    channel = remote.get_channel("ch", coll, "exp")
    cutout = remote.get_cutout(
        channel, 0, [3, 20], [2, 18], [1, 5], time_range=[1, 3], parallel=False
    )
    assert cutout.shape == (2, 4, 16, 17)
    np.testing.assert_array_equal(cutout, data[1:3, 1:5, 2:18, 3:20])
    # without a time range, the channel's default time sample (0)
    default = remote.get_cutout(channel, 0, [0, 24], [0, 20], [0, 6], parallel=False)
    np.testing.assert_array_equal(default, data[0])
    past_the_end = remote.get_cutout(
        channel, 0, [0, 4], [0, 4], [0, 4], time_range=[2, 5], parallel=False
    )
    np.testing.assert_array_equal(past_the_end[:2], data[2:4, 0:4, 0:4, 0:4])
    assert not past_the_end[2].any()
    out_of_range = http_error(
        remote.get_cutout, channel, 0, [0, 4], [0, 4], [0, 4], time_range=[2, 6], parallel=False
    )
    body = assert_boss_error(out_of_range, 400, 1000)
    assert body["message"].startswith("Invalid time range 2:6. End time is greater")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64])
def test_create_cutout_then_get_cutout_round_trips(boss, remote, dtype):
    """bossspatialdb/parsers.py ``BloscParser`` then spdb spatialdb.py ``write_cuboid``."""
    coll = fresh(boss, {"ch": np.zeros((16, 64, 64), dtype)})
    channel = remote.get_channel("ch", coll, "exp")
    patch = random_volume((5, 20, 30), dtype, seed=3)
    remote.create_cutout(channel, 0, [30, 60], [10, 30], [7, 12], patch)

    np.testing.assert_array_equal(
        remote.get_cutout(channel, 0, [30, 60], [10, 30], [7, 12], parallel=False), patch
    )
    expected = np.zeros((16, 64, 64), dtype)
    expected[7:12, 10:30, 30:60] = patch
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "ch")[0], expected)


def test_create_cutout_with_a_time_range(boss, remote):
    """bossspatialdb/views.py ``Cutout.post``: a 4-D body is written from the range's start."""
    coll = fresh(boss, {"ch": np.zeros((3, 8, 16, 16), np.uint8)})
    channel = remote.get_channel("ch", coll, "exp")
    patch = random_volume((2, 4, 8, 8), np.uint8, seed=4)
    remote.create_cutout(channel, 0, [8, 16], [0, 8], [2, 6], patch, time_range=[1, 3])
    stored = boss.channel_array(coll, "exp", "ch")
    np.testing.assert_array_equal(stored[1:3, 2:6, 0:8, 8:16], patch)
    assert stored[0].sum() == 0
    got = remote.get_cutout(channel, 0, [8, 16], [0, 8], [2, 6], time_range=[1, 3], parallel=False)
    np.testing.assert_array_equal(got, patch)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64])
def test_a_post_merges_only_its_non_zero_voxels_as_the_boss_does(boss, remote, dtype):
    """spdb's Cube.overwrite (overwriteDense.c): if (new != 0) stored = new."""
    coll = fresh(boss, {"ch": np.zeros((16, 64, 64), dtype)})
    channel = remote.get_channel("ch", coll, "exp")
    first = random_volume((5, 20, 30), dtype, seed=7) | 1  # no zero voxel
    remote.create_cutout(channel, 0, [30, 60], [10, 30], [7, 12], first)
    second = random_volume((5, 20, 30), dtype, seed=8)
    second[:, :, ::3] = 0
    second[2] = 0  # a whole slice of zeros, and zeros scattered through the rest
    remote.create_cutout(channel, 0, [30, 60], [10, 30], [7, 12], second)
    expected = np.zeros((16, 64, 64), dtype)
    expected[7:12, 10:30, 30:60] = np.where(second != 0, second, first)
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "ch")[0], expected)
    np.testing.assert_array_equal(
        remote.get_cutout(channel, 0, [30, 60], [10, 30], [7, 12], parallel=False),
        expected[7:12, 10:30, 30:60],
    )


def test_a_post_with_a_time_range_merges_at_each_time_sample(boss, remote):
    """spdb ``write_cuboid`` merges each time sample of a 4-D post (overwriteDense.c)."""
    data = random_volume((3, 4, 8, 8), np.uint16, seed=9) | 1
    coll = fresh(boss, {"ch": data})
    channel = remote.get_channel("ch", coll, "exp")
    patch = random_volume((2, 4, 8, 8), np.uint16, seed=10)
    patch[0, :2] = 0
    patch[1, :, :, 4:] = 0
    remote.create_cutout(channel, 0, [0, 8], [0, 8], [0, 4], patch, time_range=[1, 3])
    expected = data.copy()
    expected[1:3] = np.where(patch != 0, patch, data[1:3])
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "ch"), expected)


def test_create_cutout_to_black_zeroes_the_region(boss, remote):
    """bossspatialdb/views.py ``CutoutToBlack.put``, spdb cube.py ``overwrite_to_black``."""
    data = random_volume((8, 32, 32), np.uint16, seed=5) | 1  # no zero voxel to begin with
    coll = fresh(boss, {"ch": data})
    channel = remote.get_channel("ch", coll, "exp")
    remote.create_cutout_to_black(channel, 0, [4, 20], [8, 16], [2, 5])
    expected = data.copy()
    expected[2:5, 8:16, 4:20] = 0
    np.testing.assert_array_equal(
        remote.get_cutout(channel, 0, [0, 32], [0, 32], [0, 8], parallel=False), expected
    )


def test_to_black_clears_exactly_its_region_at_the_default_time_sample(boss, remote):
    data = random_volume((3, 20, 40, 40), np.uint8, seed=11) | 1
    coll = fresh(boss, {"ch": data})
    channel = remote.get_channel("ch", coll, "exp")
    assert channel.default_time_sample == 0
    remote.create_cutout_to_black(channel, 0, [3, 37], [1, 2], [5, 19])  # on no cuboid line
    expected = data.copy()
    expected[0, 5:19, 1:2, 3:37] = 0
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "ch"), expected)


def test_to_black_over_two_time_samples_clears_the_first_only_as_the_boss_does(boss, remote):
    """boss ``CutoutToBlack.put`` makes a 4-D mask only for more than two time samples; a
    3-D one is written at the range's first sample."""
    data = random_volume((4, 4, 8, 8), np.uint8, seed=12) | 1
    coll = fresh(boss, {"ch": data})
    channel = remote.get_channel("ch", coll, "exp")
    remote.create_cutout_to_black(channel, 0, [0, 8], [0, 8], [0, 4], time_range=[1, 3])
    expected = data.copy()
    expected[1] = 0
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "ch"), expected)
    remote.create_cutout_to_black(channel, 0, [0, 4], [0, 8], [0, 4], time_range=[1, 4])
    expected[1:4, :, :, 0:4] = 0
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "ch"), expected)


def test_intern_skips_uploading_an_all_zero_cutout(boss, remote):
    """intern's create_cutout returns without a request when np.sum(data) == 0: zeroing a
    region needs create_cutout_to_black."""
    data = random_volume((4, 16, 16), np.uint8) | 1
    coll = fresh(boss, {"ch": data})
    channel = remote.get_channel("ch", coll, "exp")
    boss.reset_stats()
    remote.create_cutout(channel, 0, [0, 8], [0, 8], [0, 2], np.zeros((2, 8, 8), np.uint8))
    assert boss.stats.requests == 0
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "ch")[0], data)


def test_parallel_get_cutout_uses_a_process_pool(boss, remote):
    """intern's own split of a large cutout; each piece is an ordinary ``Cutout.get``."""
    data = random_volume((20, 40, 40), np.uint16, seed=6)
    coll = fresh(boss, {"ch": data})
    channel = remote.get_channel("ch", coll, "exp")
    boss.reset_stats()
    # a chunk_size small enough that intern splits the cutout over a multiprocessing pool
    # (with the default one, a cutout under ~30 M voxels is a single request)
    cutout = remote.get_cutout(
        channel, 0, [0, 40], [0, 40], [0, 20], parallel=True, chunk_size=(16, 16, 8)
    )
    np.testing.assert_array_equal(cutout, data)
    assert boss.stats.requests == 3 * 3 * 3  # one request per 16 x 16 x 8 block


def test_out_of_frame_empty_ranges_and_bad_resolutions(boss, remote):
    """bosscore/request.py ``set_cutoutargs`` (400, 1001) and ``validate_resolution``
    (400, 1002); spdb spatialdb.py ``write_cuboid`` refuses writes above base + 1."""
    coll = fresh(boss, {"ch": np.ones((8, 16, 16), np.uint8)})
    channel = remote.get_channel("ch", coll, "exp")
    body = assert_boss_error(
        http_error(remote.get_cutout, channel, 0, [0, 17], [0, 16], [0, 8], parallel=False),
        400,
        1001,
    )
    assert body["message"] == "Incorrect cutout arguments 0/0:17/0:16/0:8"
    body = assert_boss_error(
        http_error(remote.get_cutout, channel, 0, [0, 4], [3, 3], [0, 8], parallel=False),
        400,
        1001,
    )
    assert "3:3" in body["message"]
    response = http_error(
        remote.create_cutout, channel, 0, [0, 4], [0, 4], [7, 9], np.ones((2, 4, 4), np.uint8)
    )
    assert_boss_error(response, 400, 1001)
    response = http_error(remote.get_cutout, channel, 1, [0, 4], [0, 4], [0, 4], parallel=False)
    body = assert_boss_error(response, 400, 1002)
    assert body["message"] == "Invalid resolution 1. The resolution has to be within 0 and 1"


def test_missing_channel_is_404(boss, remote):
    """bosscore/request.py ``set_channel``: 404, 4000, 'Channel nope not found'."""
    coll = fresh(boss, {"ch": np.ones((4, 8, 8), np.uint8)})
    missing = ChannelResource("nope", coll, "exp", datatype="uint8")
    body = assert_boss_error(
        http_error(remote.get_cutout, missing, 0, [0, 4], [0, 4], [0, 4], parallel=False),
        404,
        4000,
    )
    assert body["message"] == "Channel nope not found"
    assert_boss_error(http_error(remote.get_channel, "nope", coll, "exp"), 404, 4000)


def test_cutout_over_the_size_limit_is_413():
    """bossspatialdb/parsers.py ``is_too_large`` (413, 2000) in the cutout GET, POST and the
    to-black PUT, with the BOSS's texts."""
    with BossEmulator(token=TOKEN, max_cutout_bytes=1000) as boss:
        boss.create_volume("coll", "exp", {"ch": np.ones((8, 32, 32), np.uint16)})
        remote = boss.remote()
        channel = remote.get_channel("ch", "coll", "exp")
        assert (
            remote.get_cutout(channel, 0, [0, 10], [0, 10], [0, 5], parallel=False).sum() == 500
        )  # 1000 B
        body = assert_boss_error(
            http_error(remote.get_cutout, channel, 0, [0, 11], [0, 10], [0, 5], parallel=False),
            413,
            2000,
        )
        assert body["message"] == (
            "Cutout request is over 500MB when uncompressed. Reduce cutout dimensions."
        )
        upload = np.ones((1, 32, 32), np.uint16)
        assert_boss_error(
            http_error(remote.create_cutout, channel, 0, [0, 32], [0, 32], [0, 1], upload), 413
        )
        body = assert_boss_error(
            http_error(remote.create_cutout_to_black, channel, 0, [0, 11], [0, 10], [0, 5]), 413
        )
        assert body["message"].startswith("Cutout overwrite is over 500MB")
        remote.create_cutout_to_black(channel, 0, [0, 10], [0, 10], [0, 5])
        assert boss.channel_array("coll", "exp", "ch").sum() == 8 * 32 * 32 - 500


def test_wrong_or_missing_token_is_drfs_401(boss):
    """DRF's ``TokenAuthentication`` (the BOSS's settings/base.py): 401 with ``{"detail":
    ...}`` and ``WWW-Authenticate: Token``."""
    coll = fresh(boss, {"ch": np.ones((4, 8, 8), np.uint8)})
    channel = boss.remote().get_channel("ch", coll, "exp")
    wrong = BossRemote({"protocol": "http", "host": boss.host, "token": "not-the-token"})
    assert_drf_error(http_error(wrong.list_collections), 401, "Invalid token.")
    assert_drf_error(
        http_error(wrong.get_cutout, channel, 0, [0, 4], [0, 4], [0, 4], parallel=False),
        401,
        "Invalid token.",
    )
    anonymous = requests.get(f"{boss.url}/v1/collection/", timeout=10)
    assert_drf_error(anonymous, 401, "Authentication credentials were not provided.")
    assert anonymous.headers["WWW-Authenticate"] == "Token"


def test_raw_protocol_errors(boss):
    """bossspatialdb/parsers.py ``BloscParser`` (2002 for a body of the wrong size, 2001 for
    one that is not blosc); DRF's 406 (for a type no renderer of views.py ``Cutout`` offers)
    and 405; Django's 404 page for an unknown URL and 500 page for an unhandled error."""
    coll = fresh(boss, {"ch": np.ones((4, 8, 8), np.uint16)})
    headers = {"Authorization": f"Token {TOKEN}", "Content-Type": "application/blosc"}
    url = f"{boss.url}/v1/cutout/{coll}/exp/ch/0/0:8/0:8/0:4/"
    short = blosc.compress(np.ones((4, 8, 7), np.uint16), typesize=2)  # one column short
    body = assert_boss_error(requests.post(url, data=short, headers=headers, timeout=10), 400, 2002)
    assert body["message"].startswith("Failed to unpack data.")
    garbage = requests.post(url, data=b"not blosc at all", headers=headers, timeout=10)
    assert_boss_error(garbage, 400, 2001)
    as_png = requests.get(url, headers={**headers, "Accept": "image/png"}, timeout=10)
    assert_drf_error(as_png, 406, "Could not satisfy the request Accept header.")
    anonymous_png = requests.get(url, headers={"Accept": "image/png"}, timeout=10)
    assert anonymous_png.status_code == 406  # DRF negotiates before it authenticates
    # the cutout view lists JSONRenderer, which cannot serialize spdb's Cube: a 500
    as_json = requests.get(url, headers={**headers, "Accept": "application/json"}, timeout=10)
    assert as_json.status_code == 500 and as_json.text == "<h1>Server Error (500)</h1>"
    nowhere = requests.get(f"{boss.url}/v1/nothing/here/", headers=headers, timeout=10)
    assert nowhere.status_code == 404 and nowhere.text.startswith("<h1>Not Found</h1>")
    wrong_verb = requests.delete(url, headers=headers, timeout=10)
    assert_drf_error(wrong_verb, 405, 'Method "DELETE" not allowed.')
    ok = requests.get(url, headers=headers, timeout=10)
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "application/blosc"
    assert (np.frombuffer(blosc.decompress(ok.content), np.uint16) == 1).all()


@pytest.mark.parametrize("media", ["application/blosc-python", "application/npygz"])
def test_the_other_array_formats_round_trip(boss, media):
    """bossspatialdb/renderers.py and parsers.py: blosc-python (``blosc.pack_array``) and
    npygz (a gzipped ``.npy``), chosen by ``Accept`` and ``Content-Type``."""
    from ndframework.bossemu.http import decode_array, encode_array

    coll = fresh(boss, {"ch": np.zeros((4, 8, 8), np.uint16)})
    patch = random_volume((4, 8, 8), np.uint16, seed=13)
    headers = {"Authorization": f"Token {TOKEN}", "Content-Type": media, "Accept": media}
    url = f"{boss.url}/v1/cutout/{coll}/exp/ch/0/0:8/0:8/0:4/"
    posted = requests.post(url, data=encode_array(media, patch), headers=headers, timeout=10)
    assert posted.status_code == 201
    got = requests.get(url, headers=headers, timeout=10)
    assert got.headers["Content-Type"] == media
    np.testing.assert_array_equal(decode_array(media, got.content, np.uint16), patch)
    wrong_type = encode_array(media, patch.astype(np.uint8))
    answer = requests.post(url, data=wrong_type, headers=headers, timeout=10)
    assert assert_boss_error(answer, 400, 2001)["message"] == "Datatype does not match channel"


def test_a_jpeg_cutout_stacks_the_z_slices(boss):
    """bossspatialdb/renderers.py ``JpegRenderer``: uint8 only, z-slices along y."""
    pytest.importorskip("PIL")
    from PIL import Image
    import io

    coll = fresh(boss, {"em": np.full((3, 8, 16), 120, np.uint8),
                        "big": np.ones((3, 8, 16), np.uint16)})
    headers = {"Authorization": f"Token {TOKEN}", "Accept": "image/jpeg"}
    got = requests.get(f"{boss.url}/v1/cutout/{coll}/exp/em/0/0:16/0:8/0:3/", headers=headers,
                       timeout=10)
    assert got.status_code == 200 and got.headers["Content-Type"] == "image/jpeg"
    image = np.asarray(Image.open(io.BytesIO(got.content)))
    assert image.shape == (3 * 8, 16) and abs(int(image.mean()) - 120) <= 1
    refused = requests.get(f"{boss.url}/v1/cutout/{coll}/exp/big/0/0:16/0:8/0:3/",
                           headers=headers, timeout=10)
    assert refused.status_code == 400 and refused.json()["code"] == 2001


def test_annotation_cutout_filtered_by_ids(boss):
    """bosscore/request.py ``validate_cutout_service``: ``?filter=`` on annotation channels."""
    labels = np.arange(4 * 8 * 8, dtype=np.uint64).reshape(4, 8, 8) % 5
    coll = fresh(boss, {"seg": labels, "img": np.ones((4, 8, 8), np.uint8)})
    remote = boss.remote()
    channel = remote.get_channel("seg", coll, "exp")
    assert channel.type == "annotation"
    cutout = remote.get_cutout(channel, 0, [0, 8], [0, 8], [0, 4], id_list=[1, 3], parallel=False)
    np.testing.assert_array_equal(cutout, np.where(np.isin(labels, [1, 3]), labels, 0))
    image = remote.get_channel("img", coll, "exp")
    response = http_error(
        remote.get_cutout, image, 0, [0, 8], [0, 8], [0, 4], id_list=[1], parallel=False
    )
    assert "Filter is only valid for annotation channels" in assert_boss_error(
        response, 400, 2003
    )["message"]


# -- fault injection, counters, concurrency -----------------------------------------------------


@pytest.mark.parametrize("status", [503, 429, 500])
def test_every_cutout_fails_at_error_rate_one(boss, remote, status):
    """Injected faults look like the real ones: the BOSS's throttling body for 429
    (boss/throttling.py, bosscore/renderer_helper.py), Django's 500 page, the load
    balancer's HTML page for 502-504."""
    coll = fresh(boss, {"ch": np.ones((4, 8, 8), np.uint8)})
    channel = remote.get_channel("ch", coll, "exp")
    boss.faults = Faults(error_rate=1.0, status=status)
    boss.reset_stats()
    for _ in range(5):
        response = http_error(
            remote.get_cutout, channel, 0, [0, 4], [0, 4], [0, 4], parallel=False
        )
        if status == 429:
            body = assert_boss_error(response, 429, 3004)
            assert body["message"] == "User is throttled. Expected available tomorrow."
        elif status == 500:
            assert response.text == "<h1>Server Error (500)</h1>"
        else:
            assert response.status_code == 503
            assert "<h1>503 Service Unavailable</h1>" in response.text
            assert response.headers["Content-Type"] == "text/html"
    assert http_error(
        remote.create_cutout_to_black, channel, 0, [0, 4], [0, 4], [0, 4]
    ).status_code == status
    assert remote.list_channels(coll, "exp") == ["ch"]  # metadata requests are spared
    assert boss.stats == EmulatorStats(7, 1, 6, 6, {200: 1, status: 6})


def test_no_fault_at_error_rate_zero(boss, remote):
    data = random_volume((4, 8, 8), np.uint8)
    coll = fresh(boss, {"ch": data})
    channel = remote.get_channel("ch", coll, "exp")
    boss.faults = Faults(error_rate=0.0)
    boss.reset_stats()
    for _ in range(20):
        np.testing.assert_array_equal(
            remote.get_cutout(channel, 0, [0, 8], [0, 8], [0, 4], parallel=False), data
        )
    assert (boss.stats.requests, boss.stats.failed, boss.stats.injected) == (20, 0, 0)


def test_faults_are_deterministic_for_a_seed(boss, remote):
    coll = fresh(boss, {"ch": np.ones((4, 8, 8), np.uint8)})
    channel = remote.get_channel("ch", coll, "exp")

    def outcomes():
        boss.faults = Faults(error_rate=0.5, status=503, seed=42)
        result = []
        for _ in range(30):
            try:
                remote.get_cutout(channel, 0, [0, 8], [0, 8], [0, 4], parallel=False)
                result.append(200)
            except HTTPError as error:
                result.append(error.response.status_code)
        return result

    first = outcomes()
    assert first == outcomes()
    assert 0 < first.count(503) < 30 and set(first) == {200, 503}


def test_latency_is_added_to_every_request(boss, remote, monkeypatch):
    import ndframework.bossemu.routes as api_module

    slept = []
    monkeypatch.setattr(
        api_module, "time", SimpleNamespace(sleep=slept.append, monotonic=time.monotonic)
    )
    boss.faults = Faults(latency=0.25)
    remote.list_collections()
    remote.list_coordinate_frames()
    assert slept == [0.25, 0.25]


def test_faults_with_a_window_stop_when_it_closes(boss, remote):
    coll = fresh(boss, {"ch": np.ones((4, 8, 8), np.uint8)})
    channel = remote.get_channel("ch", coll, "exp")
    boss.faults = Faults(error_rate=1.0, status=503, error_window=0.4)
    started = time.monotonic()
    http_error(remote.get_cutout, channel, 0, [0, 8], [0, 8], [0, 4], parallel=False)
    time.sleep(max(0.0, started + 0.45 - time.monotonic()))
    assert remote.get_cutout(channel, 0, [0, 8], [0, 8], [0, 4], parallel=False).sum() == 256
    boss.faults = Faults(error_rate=1.0, status=503, error_window=0.4)  # a new window
    http_error(remote.get_cutout, channel, 0, [0, 8], [0, 8], [0, 4], parallel=False)
    assert boss.stats.injected == 2


def test_a_window_opens_with_the_first_cutout_request():
    with BossEmulator(token=TOKEN, faults=Faults(error_rate=1.0, error_window=0.2)) as boss:
        time.sleep(0.3)  # a client starting up: not counted
        boss.create_volume("coll", "exp", {"ch": np.ones((4, 8, 8), np.uint8)})
        remote = boss.remote()
        channel = remote.get_channel("ch", "coll", "exp")
        http_error(remote.get_cutout, channel, 0, [0, 8], [0, 8], [0, 4], parallel=False)
        time.sleep(0.25)
        assert remote.get_cutout(channel, 0, [0, 8], [0, 8], [0, 4], parallel=False).all()


def test_a_frozen_emulator_accepts_and_never_answers_until_it_thaws():
    boss = BossEmulator(token=TOKEN).start()
    url = f"{boss.url}/v1/collection/"
    headers = {"Authorization": f"Token {TOKEN}"}
    boss.faults = Faults(frozen=True)
    with pytest.raises(requests.ReadTimeout):
        requests.get(url, headers=headers, timeout=(2.0, 0.3))  # connected, no answer
    assert boss.stats.unanswered == 1 and boss.stats.requests == 0
    boss.faults = Faults()
    assert requests.get(url, headers=headers, timeout=5).json() == {"collections": []}
    boss.faults = Faults(frozen=True)
    held = ThreadPoolExecutor(1).submit(requests.get, url, headers=headers, timeout=30)
    time.sleep(0.2)
    boss.stop()  # lets go of the held request without answering, at once
    with pytest.raises(requests.ConnectionError):
        held.result(timeout=10)  # not the request's own 30 s


def test_fault_settings_are_validated(boss):
    with pytest.raises(ValueError, match="error_rate must be between 0 and 1, got 1.5"):
        Faults(error_rate=1.5)
    with pytest.raises(ConfigError, match=r"error_window must be .* > 0, or None .*, got 0.0"):
        Faults(error_window=0)
    with pytest.raises(ConfigError, match=r"error_window must be .*, got 'soon'"):
        Faults(error_window="soon")
    with pytest.raises(ConfigError, match=r"frozen must be True or False, got 1"):
        Faults(frozen=1)
    with pytest.raises(ValueError, match="status must be one of"):
        Faults(status=404)
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=-1)
    with pytest.raises(TypeError, match="faults must be a Faults instance, got 0.5"):
        boss.faults = 0.5
    with pytest.raises(TypeError, match="faults"):
        BossEmulator(token=TOKEN, faults=0.5)


def test_concurrent_get_cutouts_return_correct_data(boss):
    channels = {
        "a": random_volume((16, 64, 64), np.uint8, 1),
        "b": random_volume((16, 64, 64), np.uint64, 2),
    }
    coll = fresh(boss, channels)
    rng = np.random.default_rng(9)
    jobs = []
    for _ in range(48):
        name = str(rng.choice(["a", "b"]))
        start = rng.integers(0, [15, 63, 63])
        stop = [int(rng.integers(s + 1, n + 1)) for s, n in zip(start, (16, 64, 64), strict=True)]
        jobs.append((name, [int(s) for s in start], stop))
    local = threading.local()

    def fetch(job):
        name, (z0, y0, x0), (z1, y1, x1) = job
        if not hasattr(local, "remote"):  # one intern session per thread
            local.remote = boss.remote()
            local.channels = {c: local.remote.get_channel(c, coll, "exp") for c in channels}
        got = local.remote.get_cutout(
            local.channels[name], 0, [x0, x1], [y0, y1], [z0, z1], parallel=False
        )
        return got, channels[name][z0:z1, y0:y1, x0:x1]

    with ThreadPoolExecutor(8) as pool:
        for got, expected in pool.map(fetch, jobs):
            np.testing.assert_array_equal(got, expected)


def test_concurrent_writes_to_disjoint_regions(boss):
    coll = fresh(boss, {"ch": np.zeros((8, 64, 64), np.uint16)})
    expected = np.zeros((8, 64, 64), np.uint16)
    tiles = [(y, x) for y in range(0, 64, 16) for x in range(0, 64, 16)]

    def write(tile):
        y, x = tile
        remote = boss.remote()
        channel = remote.get_channel("ch", coll, "exp")
        patch = np.full((8, 16, 16), y * 64 + x + 1, np.uint16)
        remote.create_cutout(channel, 0, [x, x + 16], [y, y + 16], [0, 8], patch)
        return tile, patch

    with ThreadPoolExecutor(8) as pool:
        for (y, x), patch in pool.map(write, tiles):
            expected[:, y : y + 16, x : x + 16] = patch
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "ch")[0], expected)


def test_cutouts_are_served_concurrently_without_a_global_lock(boss, monkeypatch):
    """Four cutouts (two reads and two writes of one channel) must all be inside the store
    at once to pass the barrier: a lock held across a whole cutout would break it."""
    from ndframework.bossemu import cuboids

    arrays = {"a": random_volume((4, 16, 16), np.uint8, 3)}
    coll = fresh(boss, arrays)
    barrier = threading.Barrier(4, timeout=10)
    read, write = cuboids.read, cuboids.write  # a POST merges

    def meet_then(function):
        def wrapped(*args, **kwargs):
            barrier.wait()
            return function(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(cuboids, "read", meet_then(read))
    monkeypatch.setattr(cuboids, "write", meet_then(write))
    patch = np.full((4, 8, 16), 7, np.uint8)

    def request(job):
        remote = boss.remote()
        channel = remote.get_channel("a", coll, "exp")
        if job == "read":
            return remote.get_cutout(channel, 0, [0, 16], [0, 8], [0, 4], parallel=False)
        remote.create_cutout(channel, 0, [0, 16], [8, 16], [0, 4], patch)
        return None

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(request, ["read", "read", "write", "write"]))
    monkeypatch.undo()
    for got in answers[:2]:
        np.testing.assert_array_equal(got, arrays["a"][:, :8])
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "a")[0, :, 8:], patch)


# -- secrets, lifecycle, Python API -----------------------------------------------------------


def test_token_never_appears_in_logs_repr_or_errors(caplog, capfd):
    caplog.set_level(logging.DEBUG)
    with BossEmulator(token=TOKEN, max_cutout_bytes=100) as boss:
        boss.create_volume("coll", "exp", {"ch": np.ones((4, 8, 8), np.uint8)})
        remote = boss.remote()
        channel = remote.get_channel("ch", "coll", "exp")
        remote.get_cutout(channel, 0, [0, 4], [0, 4], [0, 4], parallel=False)
        http_error(remote.get_cutout, channel, 0, [0, 8], [0, 8], [0, 4], parallel=False)  # 413
        http_error(remote.get_channel, "nope", "coll", "exp")
        wrong = BossRemote({"protocol": "http", "host": boss.host, "token": TOKEN + "x"})
        http_error(wrong.list_collections)
        requests.get(f"{boss.url}/v1/collection/", headers={"Authorization": TOKEN}, timeout=10)
        assert TOKEN not in repr(boss) and boss.url in repr(boss)
    messages = [
        record.getMessage() for record in caplog.records if record.name.startswith("ndframework")
    ]
    assert any("GET /v1/cutout/coll/exp/ch/0/0:4/0:4/0:4/" in m for m in messages)
    assert all(TOKEN not in m for m in messages)
    assert TOKEN not in caplog.text
    captured = capfd.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert "GET /v1" not in captured.err  # BaseHTTPRequestHandler's stderr log is silenced


def test_start_stop_and_restart_keep_the_data():
    boss = BossEmulator(token=TOKEN)
    with pytest.raises(RuntimeError, match="not running"):
        _ = boss.url
    boss.create_volume("coll", "exp", {"ch": np.full((2, 4, 4), 7, np.uint8)})  # before start
    boss.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            boss.start()
        assert boss.url == f"http://127.0.0.1:{boss.port}" and boss.host == f"127.0.0.1:{boss.port}"
        assert boss.protocol == "http"
        assert boss.remote().list_channels("coll", "exp") == ["ch"]
    finally:
        boss.stop()
    boss.stop()  # twice is harmless
    with boss:
        channel = boss.remote().get_channel("ch", "coll", "exp")
        assert (
            boss.remote().get_cutout(channel, 0, [0, 4], [0, 4], [0, 2], parallel=False).sum()
            == 7 * 32
        )
    assert not boss.running


def test_constructor_and_create_volume_validate_their_arguments(boss):
    with pytest.raises(ConfigError, match="token must be a non-empty string") as info:
        BossEmulator(token="has space")
    assert "has space" not in str(info.value)
    with pytest.raises(ConfigError, match="port must be an integer"):
        BossEmulator(token=TOKEN, port=70000)
    with pytest.raises(ConfigError, match="max_cutout_bytes"):
        BossEmulator(token=TOKEN, max_cutout_bytes=0)
    with pytest.raises(ConfigError, match="dtype float32"):
        boss.create_volume("c", "e", {"ch": np.zeros((2, 2, 2), np.float32)})
    with pytest.raises(ConfigError, match="same"):
        boss.create_volume(
            "c", "e", {"a": np.zeros((2, 2, 2), np.uint8), "b": np.zeros((2, 2, 3), np.uint8)}
        )
    with pytest.raises(ConfigError, match="ZYX or TZYX"):
        boss.create_volume("c", "e", {"a": np.zeros((2, 2), np.uint8)})
    coll = unique()
    with pytest.raises(ConfigError, match="channel name 'bad/name' is invalid"):
        boss.create_volume(coll, "e", {"bad/name": np.zeros((2, 2, 2), np.uint8)})
    boss.create_volume(coll, "e", {"a": np.zeros((2, 2, 2), np.uint8)})  # nothing was left
    with pytest.raises(ConfigError, match="already exists"):
        boss.create_volume(coll, "e", {"a": np.zeros((2, 2, 2), np.uint8)})
    boss.create_volume(coll, "e2", {"a": np.zeros((2, 2, 2), np.uint8)})  # same collection: fine
    with pytest.raises(ChannelError, match="Channel missing not found"):
        boss.channel_array(coll, "e", "missing")


def test_demo_volume_is_deterministic():
    first, second = (
        demo_volume((10, 40, 40), cells=5, seed=3),
        demo_volume((10, 40, 40), cells=5, seed=3),
    )
    assert first.keys() == {"em", "mask"}
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert first["em"].dtype == np.uint8 and first["mask"].dtype == np.uint16
    assert set(np.unique(first["mask"])) <= set(range(6)) and first["mask"].max() > 0


# -- command line ------------------------------------------------------------------------------


def _start_cli(*args, env_token=None):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("NDFRAMEWORK_BOSS_TOKEN", None)
    if env_token is not None:
        env["NDFRAMEWORK_BOSS_TOKEN"] = env_token
    return subprocess.Popen(
        [sys.executable, "-m", "ndframework.bossemu", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _read_banner(process) -> str:
    """What the emulator prints before it waits for Ctrl-C."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            return "".join(lines)
    raise AssertionError(f"the emulator exited early: {process.wait()} {process.stderr.read()}")


@pytest.mark.parametrize("token_from", ["flag", "env"])
def test_command_line_serves_the_demo_until_interrupted(token_from):
    args = ("--demo", "--token", TOKEN) if token_from == "flag" else ("--demo",)
    process = _start_cli(*args, env_token=TOKEN if token_from == "env" else None)
    try:
        banner = _read_banner(process)
        host = banner.split("BOSS emulator serving at http://")[1].split()[0]
        remote = BossRemote({"protocol": "http", "host": host, "token": TOKEN})
        assert remote.list_channels("demo", "synthetic") == ["em", "mask"]
        mask = remote.get_channel("mask", "demo", "synthetic")
        assert mask.datatype == "uint16"
        cutout = remote.get_cutout(mask, 0, [0, 300], [0, 300], [40, 60], parallel=False)
        np.testing.assert_array_equal(cutout, demo_volume()["mask"][40:60])
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert TOKEN not in banner + out + err
    expected_source = "--token" if token_from == "flag" else "$NDFRAMEWORK_BOSS_TOKEN"
    assert f"host = {host}, token = the value of {expected_source}" in banner


def test_command_line_fault_and_store_flags_reach_the_emulator(monkeypatch, tmp_path):
    from ndframework.bossemu import command as module

    started = []
    monkeypatch.setattr(module.BossEmulator, "start", lambda self: started.append(self) or self)
    monkeypatch.setattr(module.BossEmulator, "running", property(lambda self: False))
    monkeypatch.setattr(module, "_print_banner", lambda *args: None)
    argv = ["--token", TOKEN, "--port", "0", "--error-rate", "0.5", "--error-window", "2",
            "--frozen", "--store", str(tmp_path), "--exact-ids"]
    assert main(argv) == 0
    assert started[0].faults == Faults(error_rate=0.5, error_window=2.0, frozen=True)
    assert started[0].store == tmp_path and started[0].exact_id_index


def test_command_line_requires_a_token(capsys, monkeypatch):
    monkeypatch.delenv("NDFRAMEWORK_BOSS_TOKEN", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["--port", "0"])
    assert info.value.code == 2
    assert "--token or the NDFRAMEWORK_BOSS_TOKEN environment variable" in capsys.readouterr().err


def test_channel_array_is_a_copy(boss):
    coll = fresh(boss, {"ch": np.full((2, 4, 4), 3, np.uint8)})
    boss.channel_array(coll, "exp", "ch")[...] = 9
    assert (boss.channel_array(coll, "exp", "ch") == 3).all()

"""The BOSS's data services in the emulator, through the real intern client over HTTP:
resolutions and the downsample service, a persistent store across restarts, frames that start
below 0, reserve/ids/bounding boxes, metadata, and the error bodies of common failures.

intern 1.4.2 has no call for the downsample service, so those requests go out with
``requests`` and the token header, as intern's own would. Each test's docstring names the
BOSS source whose behaviour it checks.
"""

from __future__ import annotations

import itertools
import time

import blosc
import numpy as np
import pytest
import requests
from intern.resource.boss.resource import (
    ChannelResource,
    CollectionResource,
    CoordinateFrameResource,
    ExperimentResource,
)

from ndframework.bossemu import BossEmulator
from ndframework.bossemu.downsample_blocks import downsample_block
from ndframework.bossemu.paths import ResourcePath
from bossapi_calls import api, boss_error, http_error

pytestmark = pytest.mark.timeout(60)

TOKEN = "bossemu-server-test-token-1f3a"
_names = itertools.count()


@pytest.fixture(scope="module")
def boss():
    with BossEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def remote(boss):
    return boss.remote()


def unique() -> str:
    return f"col{next(_names)}"


def wait_for_status(boss, path: str, wanted: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = api(boss, "GET", f"downsample/{path}/").json()
        if info["status"] == wanted or time.monotonic() > deadline:
            return info
        time.sleep(0.02)


def make_annotation_project(remote, coll: str, shape_xyz=(1024, 1024, 32)) -> ChannelResource:
    """A collection with a frame of ``shape_xyz`` and an empty annotation channel 'seg'."""
    remote.create_project(CollectionResource(coll))
    x, y, z = shape_xyz
    remote.create_project(CoordinateFrameResource(f"{coll}_f", "", 0, x, 0, y, 0, z))
    remote.create_project(ExperimentResource("exp", coll, f"{coll}_f", time_step_unit="seconds"))
    return remote.create_project(
        ChannelResource("seg", coll, "exp", "annotation", datatype="uint64")
    )


# -- resolutions and the downsample service ----------------------------------------------------


def test_reads_above_the_base_resolution_are_zeros_until_downsampled(boss, remote):
    """bosscore/request.py ``validate_resolution``: any of ``base .. base + levels - 1`` is
    readable; spdb's cutout reads cuboids never written as zeros (``SpatialDB.cutout``)."""
    coll = unique()
    data = np.full((16, 64, 64), 9, np.uint8)
    boss.create_volume(coll, "exp", {"em": data}, num_hierarchy_levels=3)
    channel = remote.get_channel("em", coll, "exp")
    for resolution in (1, 2):
        cutout = remote.get_cutout(channel, resolution, [0, 16], [0, 16], [0, 16], parallel=False)
        assert cutout.shape == (16, 16, 16) and not cutout.any()
    response = http_error(remote.get_cutout, channel, 3, [0, 4], [0, 4], [0, 4], parallel=False)
    assert boss_error(response, 400, 1002) == (
        "Invalid resolution 3. The resolution has to be within 0 and 3"
    )


def test_downsample_builds_the_levels_that_reads_then_see(boss, remote):
    """bossspatialdb/views.py ``Downsample`` and downsample.py ``start``: POST queues (201),
    the job goes IN_PROGRESS then DOWNSAMPLED; level 1 is boss-tools' block reduction of
    level 0 (`ndframework.bossemu.downsample_blocks.downsample_block`)."""
    coll = unique()
    data = np.random.default_rng(5).integers(1, 255, (16, 64, 96), np.uint8)
    boss.create_volume(coll, "exp", {"em": data}, num_hierarchy_levels=3,
                       voxel_size=(40.0, 4.0, 4.0))
    path = f"{coll}/exp/em"
    before = api(boss, "GET", f"downsample/{path}/").json()
    assert before == {
        "status": "NOT_DOWNSAMPLED",
        "num_hierarchy_levels": 3,
        "voxel_size": {"0": [4.0, 4.0, 40.0], "1": [8.0, 8.0, 40.0], "2": [16.0, 16.0, 40.0]},
        "extent": {"0": [96, 64, 16], "1": [48, 32, 16], "2": [24, 16, 16]},
        "cuboid_size": {"0": [512, 512, 16], "1": [512, 512, 16], "2": [512, 512, 16]},
    }
    started = api(boss, "POST", f"downsample/{path}/")
    assert started.status_code == 201 and started.content == b""
    assert boss.wait_for_downsamples(30)
    assert wait_for_status(boss, path, "DOWNSAMPLED")["status"] == "DOWNSAMPLED"
    assert remote.get_channel("em", coll, "exp").downsample_status == "DOWNSAMPLED"

    block = np.zeros((16, 1024, 1024), np.uint8)  # the lambda's 2 x 2 x 1 cuboids
    block[:, :64, :96] = data
    level1 = downsample_block(block, (2, 2, 1), is_annotation=False)
    channel = remote.get_channel("em", coll, "exp")
    got = remote.get_cutout(channel, 1, [0, 48], [0, 32], [0, 16], parallel=False)
    np.testing.assert_array_equal(got, level1[:, :32, :48])
    level2 = downsample_block(np.pad(level1, ((0, 0), (0, 512), (0, 512))), (2, 2, 1), False)
    got = remote.get_cutout(channel, 2, [0, 24], [0, 16], [0, 16], parallel=False)
    np.testing.assert_array_equal(got, level2[:, :16, :24])
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "em", resolution=1)[0],
                                  level1[:, :32, :48])

    again = api(boss, "POST", f"downsample/{path}/")
    assert boss_error(again, 409, 2006) == "Channel is already downsampled. Invalid Request."
    cancel = api(boss, "DELETE", f"downsample/{path}/")
    assert boss_error(cancel, 409, 2006) == (
        "You can only cancel a queued or in-progress downsample operation."
    )
    # a write makes it NOT_DOWNSAMPLED again (Cutout.post), at base + 1 as well
    remote.create_cutout(channel, 1, [0, 4], [0, 4], [0, 1], np.ones((1, 4, 4), np.uint8))
    assert remote.get_channel("em", coll, "exp").downsample_status == "NOT_DOWNSAMPLED"
    assert api(boss, "POST", f"downsample/{path}/").status_code == 201
    assert boss.wait_for_downsamples(30)


def test_an_annotation_channel_downsamples_by_its_label_rule(boss, remote):
    """spdb addData.c ``addAnnotationData``: a 2 x 2 patch becomes the label boss-tools
    picks (`ndframework.bossemu.downsample_blocks.downsample_block`, annotation)."""
    coll = unique()
    labels = np.random.default_rng(6).integers(0, 4, (16, 32, 32)).astype(np.uint64)
    boss.create_volume(coll, "exp", {"seg": labels}, num_hierarchy_levels=2)
    assert api(boss, "POST", f"downsample/{coll}/exp/seg/").status_code == 201
    assert boss.wait_for_downsamples(30)
    block = np.zeros((16, 1024, 1024), np.uint64)
    block[:, :32, :32] = labels
    expected = downsample_block(block, (2, 2, 1), is_annotation=True)[:, :16, :16]
    channel = remote.get_channel("seg", coll, "exp")
    got = remote.get_cutout(channel, 1, [0, 16], [0, 16], [0, 16], parallel=False)
    np.testing.assert_array_equal(got, expected)


def _next_level(volume: np.ndarray, step_xyz) -> np.ndarray:
    """One level up from ``volume`` (at the origin, at most 256 x 256 in y, x), block by
    block along z as boss-tools' lambda reduces it, keeping what the filter spreads past the
    frame's edge (the next level reads it too). The blocks are 256 voxels wide, not the
    lambda's 1024: the filter is local, so that changes only outputs far from the data."""
    depth = 16 * step_xyz[2]
    out = []
    for z in range(0, volume.shape[0], depth):
        block = np.zeros((depth, 256, 256), volume.dtype)
        part = volume[z : z + depth]
        block[: len(part), : part.shape[1], : part.shape[2]] = part
        out.append(downsample_block(block, step_xyz, is_annotation=False))
    return np.concatenate(out)


def test_iso_reads_the_isotropic_copy_above_the_isotropic_level(boss, remote):
    """bossspatialdb/views.py ``Cutout.get`` takes ``?iso=true``; spdb keys the isotropic
    copy apart above the isotropic level of an anisotropic hierarchy (object.py
    ``generate_object_key``), which boss-tools builds with 2 x 2 x 2 steps from that level
    (activities/resolution_hierarchy.py)."""
    coll = unique()
    data = np.random.default_rng(10).integers(1, 255, (32, 64, 64), np.uint8)
    boss.create_volume(coll, "exp", {"em": data}, num_hierarchy_levels=4,
                       voxel_size=(16.0, 4.0, 4.0))
    assert api(boss, "POST", f"downsample/{coll}/exp/em/").status_code == 201
    assert boss.wait_for_downsamples(30)
    level2 = _next_level(_next_level(data, (2, 2, 1)), (2, 2, 1))
    plain3, iso3 = _next_level(level2, (2, 2, 1)), _next_level(level2, (2, 2, 2))
    plain3, iso3, level2 = plain3[:, :8, :8], iso3[:, :8, :8], level2[:, :16, :16]
    assert plain3.shape == (32, 8, 8) and iso3.shape == (16, 8, 8)
    assert (plain3[:16] != iso3).any()  # they are different copies
    headers = {"Authorization": f"Token {TOKEN}", "Accept": "application/blosc"}
    for iso, expected in (("true", iso3), ("false", plain3[:16])):
        url = f"{boss.url}/v1/cutout/{coll}/exp/em/3/0:8/0:8/0:16/?iso={iso}"
        got = requests.get(url, headers=headers, timeout=30)
        array = np.frombuffer(blosc.decompress(got.content), np.uint8).reshape(16, 8, 8)
        np.testing.assert_array_equal(array, expected)
    # at and below the isotropic level, iso=true reads the plain levels
    url = f"{boss.url}/v1/cutout/{coll}/exp/em/2/0:16/0:16/0:32/?iso=true"
    got = np.frombuffer(blosc.decompress(requests.get(url, headers=headers, timeout=30).content),
                        np.uint8)
    np.testing.assert_array_equal(got.reshape(32, 16, 16), level2)


def test_cancelling_a_queued_downsample(boss, remote):
    """bossspatialdb/views.py ``Downsample.delete``: a queued job is taken off the queue and
    the channel is NOT_DOWNSAMPLED again (204)."""
    coll = unique()
    boss.create_volume(coll, "exp", {"em": np.ones((1, 4, 4), np.uint8)}, num_hierarchy_levels=2)
    row = boss.resources.resolve(ResourcePath(collection=coll, experiment="exp", channel="em"))
    boss.resources.set_downsample_status(row.channel["id"], "QUEUED")  # as if still waiting
    again = api(boss, "POST", f"downsample/{coll}/exp/em/")
    assert boss_error(again, 409, 2006) == (
        "Channel is already waiting to be downsampled. Invalid Request."
    )
    cancelled = api(boss, "DELETE", f"downsample/{coll}/exp/em/")
    assert cancelled.status_code == 204
    assert remote.get_channel("em", coll, "exp").downsample_status == "NOT_DOWNSAMPLED"


def test_writes_go_to_the_base_resolution_and_the_one_above_only(boss, remote):
    """spdb spatialdb.py ``write_cuboid``: 'You can only write data to a channel's base
    resolution or one resolution above it', wrapped by ``Cutout.post`` as 400, 9001."""
    coll = unique()
    boss.create_volume(coll, "exp", {"em": np.zeros((16, 32, 32), np.uint8)},
                       num_hierarchy_levels=4)
    channel = remote.get_channel("em", coll, "exp")
    patch = np.full((1, 4, 4), 3, np.uint8)
    remote.create_cutout(channel, 1, [0, 4], [0, 4], [0, 1], patch)
    np.testing.assert_array_equal(
        remote.get_cutout(channel, 1, [0, 4], [0, 4], [0, 1], parallel=False), patch
    )
    message = boss_error(
        http_error(remote.create_cutout, channel, 2, [0, 4], [0, 4], [0, 1], patch), 400, 9001
    )
    assert message.startswith("Error during write_cuboid: ('Resolution Mismatch', ")
    assert "Base Resolution: 0, Request Resolution: 2" in message
    response = http_error(remote.create_cutout_to_black, channel, 3, [0, 4], [0, 4], [0, 1])
    assert "Resolution Mismatch" in boss_error(response, 400, 1006)


# -- storage ------------------------------------------------------------------------------------


def test_a_persistent_store_keeps_everything_across_a_restart(tmp_path):
    """The BOSS keeps its tree in MySQL and its cuboids in S3: both outlive the API server.
    Here ``store=DIR`` keeps the tree in SQLite and the cuboids as files."""
    data = np.random.default_rng(7).integers(1, 255, (3, 8, 40, 40), np.uint8)
    first = BossEmulator(token=TOKEN, store=tmp_path / "boss")
    with first:
        first.create_volume("keep", "exp", {"em": data}, num_hierarchy_levels=2)
        remote = first.remote()
        channel = remote.get_channel("em", "keep", "exp")
        remote.create_cutout(channel, 0, [0, 8], [0, 8], [0, 2],
                             np.full((2, 2, 8, 8), 200, np.uint8), time_range=[1, 3])
        remote.create_metadata(channel, {"owner": "lab"})
        start = remote.reserve_ids(
            remote.create_project(ChannelResource("seg", "keep", "exp", "annotation",
                                                  datatype="uint64")), 5)
        assert api(first, "POST", "downsample/keep/exp/em/").status_code == 201
        assert first.wait_for_downsamples(30)
    assert sorted(p.name for p in (tmp_path / "boss").iterdir()) == ["cuboids", "resources.sqlite"]

    expected = data.copy()
    expected[1:3, 0:2, 0:8, 0:8] = 200
    second = BossEmulator(token=TOKEN, store=tmp_path / "boss")
    with second:
        remote = second.remote()
        assert remote.list_channels("keep", "exp") == ["em", "seg"]
        channel = remote.get_channel("em", "keep", "exp")
        assert channel.downsample_status == "DOWNSAMPLED"
        got = remote.get_cutout(channel, 0, [0, 40], [0, 40], [0, 8], time_range=[0, 3],
                                parallel=False)
        np.testing.assert_array_equal(got, expected)
        assert remote.get_cutout(channel, 1, [0, 20], [0, 20], [0, 8], parallel=False).any()
        assert remote.get_metadata(channel, ["owner"]) == {"owner": "lab"}
        seg = remote.get_channel("seg", "keep", "exp")
        assert remote.reserve_ids(seg, 1) == start + 5  # the counter went on


def test_a_downsample_left_queued_runs_when_the_store_is_served_again(tmp_path):
    """The BOSS's downsample queue (SQS) outlives its API servers: a channel left QUEUED is
    downsampled once a step function runs again (downsample.py ``start``, boss-tools
    activities/resolution_hierarchy.py)."""
    first = BossEmulator(token=TOKEN, store=tmp_path)
    with first:
        first.create_volume("q", "exp", {"em": np.full((16, 8, 8), 5, np.uint8)},
                            num_hierarchy_levels=2)
        channel_id = first.resources.resolve(
            ResourcePath(collection="q", experiment="exp", channel="em")
        ).channel["id"]
        first.resources.set_downsample_status(channel_id, "QUEUED")
    with BossEmulator(token=TOKEN, store=tmp_path) as second:
        assert second.wait_for_downsamples(30)
        assert wait_for_status(second, "q/exp/em", "DOWNSAMPLED")["status"] == "DOWNSAMPLED"
        assert second.channel_array("q", "exp", "em", resolution=1).any()


def test_a_downsample_interrupted_by_a_stop_resumes_when_served_again(tmp_path, monkeypatch):
    """A step function's run outlives the API server that started it: an emulator that stops
    mid-downsample leaves the channel IN_PROGRESS, and the next one to serve the store runs
    the job again to DOWNSAMPLED (boss-tools activities/resolution_hierarchy.py)."""
    from ndframework.bossemu import downsampling

    started, original = [], downsampling.run_downsample

    def run_after_the_stop(*args, **kwargs):
        started.append(True)
        stopping = first._backend.downsampler._stopping  # the first emulator's worker
        assert stopping.wait(10)
        return original(*args, **kwargs)  # meets the stop at its first cuboid

    data = np.full((16, 8, 8), 5, np.uint8)
    first = BossEmulator(token=TOKEN, store=tmp_path)
    with first:
        first.create_volume("r", "exp", {"em": data}, num_hierarchy_levels=2)
        monkeypatch.setattr(downsampling, "run_downsample", run_after_the_stop)
        assert api(first, "POST", "downsample/r/exp/em/").status_code == 201
        assert wait_for_status(first, "r/exp/em", "IN_PROGRESS")["status"] == "IN_PROGRESS"
    assert started and not first.running
    monkeypatch.undo()
    with BossEmulator(token=TOKEN, store=tmp_path) as second:
        assert second.wait_for_downsamples(30)
        assert wait_for_status(second, "r/exp/em", "DOWNSAMPLED")["status"] == "DOWNSAMPLED"
        assert second.channel_array("r", "exp", "em", resolution=1).any()


def test_purge_removes_deleted_channels_with_their_cuboids(boss, remote):
    """boss-tools activities/delete_cuboid.py: 1.5 days after a delete the rows, cuboids,
    metadata and id counters go, and the name can be used again."""
    import datetime

    coll = unique()
    boss.create_volume(coll, "exp", {"em": np.ones((1, 4, 4), np.uint8)})
    path = ResourcePath(collection=coll, experiment="exp", channel="em")
    key = boss.resources.resolve(path).lookup_key
    assert boss.cuboids.keys_in(key)
    remote.delete_project(ChannelResource("em", coll, "exp"))
    assert key not in boss.purge()  # not yet a day and a half ago
    assert key in boss.purge(older_than=datetime.timedelta(0))
    assert not boss.cuboids.keys_in(key)
    again = remote.create_project(ChannelResource("em", coll, "exp", datatype="uint16"))
    assert again.datatype == "uint16"
    channel = remote.get_channel("em", coll, "exp")
    assert not remote.get_cutout(channel, 0, [0, 4], [0, 4], [0, 1], parallel=False).any()


def test_a_frame_that_starts_below_zero(boss, remote):
    """bosscore/models.py lets a frame start below 0, but the cutout URLs take ``\\d+:\\d+``
    ranges only (bossspatialdb/urls.py): the negative part exists and cannot be reached,
    and Django answers its 404 page. Cuboids there are stored at negative indices."""
    coll = unique()
    data = np.random.default_rng(8).integers(1, 255, (4, 24, 40), np.uint16)
    boss.create_volume(coll, "exp", {"em": data}, origin=(0, -8, -600))
    frame = remote.get_coordinate_frame(f"{coll}_exp")
    assert (frame.x_start, frame.x_stop, frame.y_start, frame.y_stop) == (-600, -560, -8, 16)
    np.testing.assert_array_equal(boss.channel_array(coll, "exp", "em")[0], data)
    channel = remote.get_channel("em", coll, "exp")
    response = http_error(remote.get_cutout, channel, 0, [-600, -590], [0, 8], [0, 4],
                          parallel=False)
    assert response.status_code == 404 and response.text.startswith("<h1>Not Found</h1>")

    coll = unique()
    data = np.random.default_rng(9).integers(1, 255, (4, 24, 40), np.uint16)
    boss.create_volume(coll, "exp", {"em": data}, origin=(0, -8, 0))
    channel = remote.get_channel("em", coll, "exp")
    got = remote.get_cutout(channel, 0, [0, 40], [0, 16], [0, 4], parallel=False)
    np.testing.assert_array_equal(got, data[:, 8:, :])  # the part at y >= 0


# -- the object service ------------------------------------------------------------------------


def test_reserve_ids_counts_up_per_channel(boss, remote):
    """bossobject/views.py ``Reserve`` over spdb's ``reserve_ids``: from 1, per channel; the
    answer echoes the count as the URL's text. An image channel meets the BOSS's bug in
    ``validate_reserve_service`` (``ErrorCodes.ErrorCodes``): Django's 500 page."""
    coll = unique()
    channel = make_annotation_project(remote, coll)
    assert remote.reserve_ids(channel, 10) == 1
    assert remote.reserve_ids(channel, 5) == 11
    answer = api(boss, "GET", f"reserve/{coll}/exp/seg/3/")
    assert answer.json() == {"start_id": 16, "count": "3"}
    remote.create_project(ChannelResource("img", coll, "exp", "image", datatype="uint8"))
    refused = api(boss, "GET", f"reserve/{coll}/exp/img/3/")
    assert refused.status_code == 500 and refused.text == "<h1>Server Error (500)</h1>"


def _labelled(remote, coll):
    """Label 1 inside cuboid (0, 0, 0); label 2 at x 550..560, outside whole cuboids of the
    region [0, 600) x [0, 512) x [0, 16)."""
    channel = make_annotation_project(remote, coll)
    remote.create_cutout(channel, 0, [10, 20], [30, 40], [2, 4], np.ones((2, 10, 10), np.uint64))
    remote.create_cutout(channel, 0, [550, 560], [5, 6], [0, 1],
                         np.full((1, 1, 10), 2, np.uint64))
    return channel


def test_ids_and_bounding_boxes_answer_as_the_boss_does_without_an_id_index(boss, remote):
    """spdb object_indices.py: ``update_id_indices`` is commented out, so the DynamoDB index
    stays empty. ``get_ids_in_region`` (spdb object.py) then finds only the ids in the parts
    of a region outside whole cuboids, which it reads by cutout; ``BoundingBox`` (bossobject
    views.py) answers 404, code 4004."""
    channel = _labelled(remote, unique())
    assert remote.get_ids_in_region(channel, 0, [0, 600], [0, 512], [0, 16]) == [2]
    assert remote.get_ids_in_region(channel, 0, [0, 512], [0, 512], [0, 16]) == []
    assert remote.get_ids_in_region(channel, 0, [0, 100], [0, 100], [0, 16]) == [1]
    response = http_error(remote.get_bounding_box, channel, 0, 1)
    assert boss_error(response, 404, 4004) == "The id does not exist. 1"
    bad = api(boss, "GET", f"boundingbox/{channel.coll_name}/exp/seg/0/1/?type=snug")
    assert boss_error(bad, 400, 1005).startswith("Invalid option for bounding box type snug")


def test_an_exact_id_index_answers_from_the_stored_voxels(remote):
    """The same requests with ``exact_id_index``: what the BOSS would answer with its index
    filled (``get_loose_bounding_box``: cuboid-aligned; ``get_tight_bounding_box``)."""
    with BossEmulator(token=TOKEN, exact_id_index=True) as exact:
        remote = exact.remote()
        channel = _labelled(remote, unique())
        assert remote.get_ids_in_region(channel, 0, [0, 600], [0, 512], [0, 16]) == [1, 2]
        assert remote.get_ids_in_region(channel, 0, [0, 512], [0, 512], [0, 16]) == [1]
        loose = remote.get_bounding_box(channel, 0, 2)
        assert loose == {"x_range": [512, 1024], "y_range": [0, 512], "z_range": [0, 16],
                         "t_range": [0, 1]}
        tight = remote.get_bounding_box(channel, 0, 1, bb_type="tight")
        assert tight == {"x_range": [10, 20], "y_range": [30, 40], "z_range": [2, 4],
                         "t_range": [0, 1]}
        assert boss_error(http_error(remote.get_bounding_box, channel, 0, 3), 404, 4004)


# -- metadata and the data services' errors ----------------------------------------------------


def test_metadata_of_collections_experiments_and_channels(boss, remote):
    """bossmeta/views.py ``BossMeta``: keys per resource; errors are 400, code 1003."""
    coll = unique()
    boss.create_volume(coll, "exp", {"em": np.ones((1, 2, 2), np.uint8)})
    collection = CollectionResource(coll)
    experiment = remote.get_experiment(coll, "exp")
    channel = remote.get_channel("em", coll, "exp")
    remote.create_metadata(collection, {"a": "1", "b": "2"})
    remote.create_metadata(channel, {"a": "channel"})
    assert remote.list_metadata(collection) == ["a", "b"]
    assert remote.list_metadata(experiment) == []
    assert remote.get_metadata(channel, ["a"]) == {"a": "channel"}
    remote.update_metadata(collection, {"a": "3"})
    assert remote.get_metadata(collection, ["a", "b"]) == {"a": "3", "b": "2"}
    remote.delete_metadata(collection, ["b"])
    assert remote.list_metadata(collection) == ["a"]
    again = api(boss, "POST", f"meta/{coll}/?key=a&value=4")
    assert boss_error(again, 400, 1003) == "Invalid request. The key a already exists"
    missing = api(boss, "GET", f"meta/{coll}/exp/?key=nope")
    assert boss_error(missing, 400, 1003) == "Invalid request. Key nope Not found in the database"


def test_the_data_services_errors_for_missing_and_deleted_resources(boss, remote):
    """bosscore/request.py ``set_collection``/``set_channel``: '{kind} {name} not found'
    (404, 4000) and '... has been marked for deletion' (404, 4005), unlike the resource
    views' texts."""
    coll = unique()
    boss.create_volume(coll, "exp", {"em": np.ones((1, 4, 4), np.uint8),
                                     "old": np.ones((1, 4, 4), np.uint8)})
    nowhere = api(boss, "GET", "downsample/nowhere/exp/em/")
    assert boss_error(nowhere, 404, 4000) == "Collection nowhere not found"
    remote.delete_project(ChannelResource("old", coll, "exp"))
    gone = ChannelResource("old", coll, "exp", datatype="uint8")
    response = http_error(remote.get_cutout, gone, 0, [0, 4], [0, 4], [0, 1], parallel=False)
    assert boss_error(response, 404, 4005) == (
        "Invalid Request. This resource old has been marked for deletion"
    )

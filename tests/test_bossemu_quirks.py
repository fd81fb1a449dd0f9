"""The BOSS's oddities, reproduced by default and each turned off by its switch (`Quirks`),
through the real intern client. Each test names the BOSS source of its oddity."""

from __future__ import annotations

import numpy as np
import pytest
from intern.resource.boss.resource import ChannelResource

from ndframework.bossemu import BossEmulator, Quirks
from bossapi_calls import http_error

pytestmark = pytest.mark.timeout(60)

TOKEN = "bossemu-quirks-test-token-7b21"
DATA = np.random.default_rng(0).integers(1, 256, (3, 16, 32, 64), dtype=np.uint8)  # t, z, y, x


@pytest.fixture(scope="module", params=["boss", "fixed"])
def boss(request):
    """The emulator as the BOSS (every quirk) and with every quirk turned off."""
    quirks = Quirks() if request.param == "boss" else Quirks.without(*Quirks.names())
    with BossEmulator(token=TOKEN, quirks=quirks) as emulator:
        emulator.create_volume("coll", "exp", {"em": DATA}, num_hierarchy_levels=3)
        yield emulator


@pytest.fixture(scope="module")
def remote(boss):
    return boss.remote()


def em(remote):
    return remote.get_channel("em", "coll", "exp")


def status_and_code(call, *args, **kwargs) -> tuple[int, int]:
    response = http_error(call, *args, **kwargs)
    return response.status_code, response.json()["code"]


LEVEL1 = np.random.default_rng(1).integers(1, 256, (16, 16, 32), dtype=np.uint8)


def test_ranges_at_a_level_are_checked_against_the_unscaled_frame(boss, remote):
    """``set_cutoutargs``, boss django/bosscore/request.py: level 1 is 32 voxels wide in x,
    yet x 31:64 is accepted there, reading zeros past 32. Writes at base + 1 are accepted
    (spdb spdb/spatialdb/spatialdb.py ``write_cuboid``)."""
    channel = em(remote)
    remote.create_cutout(channel, 1, [0, 32], [0, 16], [0, 16], LEVEL1)
    np.testing.assert_array_equal(
        remote.get_cutout(channel, 1, [0, 32], [0, 16], [0, 16]), LEVEL1
    )
    if boss.quirks.unscaled_ranges:
        read = remote.get_cutout(channel, 1, [31, 64], [0, 16], [0, 16])
        np.testing.assert_array_equal(read[..., :1], LEVEL1[..., 31:])
        assert read.shape == (16, 16, 33) and not read[..., 1:].any()
    else:
        for x_range in ([31, 33], [32, 33], [40, 64]):
            response = http_error(remote.get_cutout, channel, 1, x_range, [0, 16], [0, 16])
            assert response.status_code == 400 and response.json()["code"] == 1001
            assert "resolution 1 spans x/y/z 0:32/0:16/0:16" in response.json()["message"]


def test_a_time_range_may_run_one_past_the_last_sample(boss, remote):
    """``set_time``, boss django/bosscore/request.py: with 3 samples, 3:4 and 2:4 are
    accepted and the samples past the end read zeros; 0:5 and 4:5 are refused on the BOSS
    too."""
    channel = em(remote)

    def read(t_range):
        return remote.get_cutout(channel, 0, [0, 8], [0, 8], [0, 4], time_range=t_range)

    for t_range in ([0, 5], [4, 5]):
        assert status_and_code(read, t_range) == (400, 1000)
    if boss.quirks.time_past_end:
        assert read([3, 4]).shape == (1, 4, 8, 8) and not read([3, 4]).any()
        past = read([2, 4])
        np.testing.assert_array_equal(past[0], DATA[2, :4, :8, :8])
        assert not past[1].any()
    else:
        for t_range in ([3, 4], [2, 4]):
            response = http_error(read, t_range)
            assert response.status_code == 400 and response.json()["code"] == 1000
            assert "must lie within 0:3" in response.json()["message"]
    np.testing.assert_array_equal(read([1, 3]), DATA[1:3, :4, :8, :8])


def test_to_black_over_two_samples_clears_the_first_only(boss, remote):
    """``CutoutToBlack.put``, boss django/bossspatialdb/views.py (``len(req.get_time()) >
    2``): over samples 0:2 the BOSS clears sample 0 and leaves sample 1."""
    channel = em(remote)
    remote.create_cutout_to_black(channel, 0, [40, 64], [0, 8], [0, 4], time_range=[0, 2])
    read = remote.get_cutout(channel, 0, [40, 64], [0, 8], [0, 4], time_range=[0, 3])
    assert not read[0].any()
    np.testing.assert_array_equal(read[2], DATA[2, :4, :8, 40:64])
    if boss.quirks.to_black_first_sample:
        np.testing.assert_array_equal(read[1], DATA[1, :4, :8, 40:64])
    else:
        assert not read[1].any()


def test_an_annotation_channel_needs_no_source_channel(boss, remote):
    """``ChannelDetail.post``, boss django/bosscore/views/views_resource.py: the check is
    commented out on the BOSS."""
    channel = ChannelResource("labels", "coll", "exp", "annotation", datatype="uint64")
    if boss.quirks.annotation_without_source:
        assert remote.create_project(channel).sources == []
    else:
        assert status_and_code(remote.create_project, channel) == (400, 1003)
        with_source = ChannelResource("labels", "coll", "exp", "annotation",
                                      datatype="uint64", sources=["em"])
        assert remote.create_project(with_source).sources == ["em"]
    # create_volume names the image channels as the annotation channels' sources
    boss.create_volume("coll", "labelled", {"img": DATA[0], "seg": DATA[0].astype(np.uint64)})
    assert remote.get_channel("seg", "coll", "labelled").sources == ["img"]


def test_an_unknown_quirk_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown BOSS quirk 'tobkack'; the quirks are: "
                                         r"unscaled_ranges, time_past_end, "):
        Quirks.without("tobkack")

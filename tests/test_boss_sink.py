"""BossSink with the real intern client against the BOSS API emulator on loopback."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

import ndframework as ndf
from ndframework.boss import BossSink, BossSource, RetryPolicy
from ndframework.bossemu import BossEmulator, Faults
from ndframework.geometry import Box
from ndframework.testing import SinkConformance
from ndframework.testing.conformance import SHAPE
from ndframework.tiling import BOSS_CUBOID, RegularTiler

pytestmark = pytest.mark.timeout(60)

TOKEN = "ndf-boss-sink-token-91d4e7b2"
FAST = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.005)


@pytest.fixture
def boss():
    with BossEmulator(token=TOKEN) as emulator:
        yield emulator


def make_experiment(boss, shape=(20, 40, 48), origin=(0, 0, 0), seed=0):
    """An experiment 'coll/exp' with a random uint8 'em' channel; returns the array."""
    em = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    boss.create_volume("coll", "exp", {"em": em}, origin=origin)
    return em


def create_sink(boss, channels, **options):
    options.setdefault("retry", FAST)
    options.setdefault("timeout", 5.0)
    return BossSink.create(
        boss.host, TOKEN, "coll", "exp", channels, protocol=boss.protocol, **options
    )


def stored(boss, channel, box=None, origin=(0, 0, 0)):
    array = boss.channel_array("coll", "exp", channel)[0]
    return array if box is None else array[box.relative_to(origin).slices()]


# -- the conformance kit ----------------------------------------------------------------------


class TestBossSink(SinkConformance):
    """The kit against the emulator, with two changes that the BOSS forces: its bounds start
    at (3, 2, 5), as frames have no negative coordinates (the kit's is (3, -2, 5)), and its
    channels are uint16 and uint8, as the BOSS stores no float32."""

    bounds = Box.from_shape(SHAPE, (3, 2, 5))
    dtypes = {"labels": "uint16", "prob": "uint8"}

    @pytest.fixture(autouse=True)
    def _emulator(self, boss):
        self.boss = boss

    def make_sink(self, dtypes, bounds, directory):
        frame = tuple(s + 2 for s in bounds.stop)  # room around the bounds, inside the frame
        self.boss.create_volume("coll", "exp", {"em": np.zeros(frame, np.uint8)})
        return create_sink(self.boss, dtypes, bounds=bounds)

    def read_back(self, sink):
        return {name: stored(self.boss, name, self.bounds) for name in sink.channels}

    def test_metadata(self, sink):
        super().test_metadata(sink)
        assert sink.chunk_shape == BOSS_CUBOID


# -- writing ----------------------------------------------------------------------------------


def test_round_trip_and_an_all_zero_block_overwrites_what_was_there(boss):
    make_experiment(boss)
    sink = create_sink(boss, {"labels": "uint16"})
    rng = np.random.default_rng(1)
    labels = rng.integers(1, 2**16, (20, 40, 48), dtype=np.uint16)
    for block in RegularTiler((16, 32, 32)).blocks(sink.bounds):
        sink.write(block.box, {"labels": labels[block.box.slices()]})
    np.testing.assert_array_equal(stored(boss, "labels"), labels)

    zero_box = Box((4, 8, 16), (12, 30, 40))
    boss.reset_stats()
    sink.write(zero_box, {"labels": np.zeros(zero_box.shape, np.uint16)})
    labels[zero_box.slices()] = 0
    np.testing.assert_array_equal(stored(boss, "labels"), labels)
    assert boss.stats.requests == 1  # one to-black request, no upload intern would skip


def partly_zero(shape, dtype, seed):
    """Random non-zero voxels with about a third of them zero, over the dtype's range."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    data[rng.random(shape) < 0.33] = 0
    return data


def test_replace_leaves_exactly_the_output_over_old_data(boss):
    make_experiment(boss)
    sink = create_sink(boss, {"labels": "uint16"})
    old = np.random.default_rng(3).integers(1, 2**16, (20, 40, 48), dtype=np.uint16)
    sink.write(sink.bounds, {"labels": old})
    box = Box((3, 5, 7), (14, 33, 41))  # on no cuboid line: only this box may change
    new = partly_zero(box.shape, np.uint16, seed=4)
    boss.reset_stats()
    sink.write(box, {"labels": new})
    expected = old.copy()
    expected[box.slices()] = new
    np.testing.assert_array_equal(stored(boss, "labels"), expected)
    assert (boss.stats.by_status[200], boss.stats.by_status[201]) == (1, 1)  # clear, post


def test_merge_keeps_old_data_under_the_zeros_of_the_output(boss):
    make_experiment(boss)
    sink = create_sink(boss, {"labels": "uint64"}, mode="merge")
    old = partly_zero((20, 40, 48), np.uint64, seed=5)
    sink.write(sink.bounds, {"labels": old})
    np.testing.assert_array_equal(stored(boss, "labels"), old)
    box = Box((3, 5, 7), (14, 33, 41))
    new = partly_zero(box.shape, np.uint64, seed=6)
    boss.reset_stats()
    sink.write(box, {"labels": new})
    expected = old.copy()
    expected[box.slices()] = np.where(new != 0, new, old[box.slices()])
    np.testing.assert_array_equal(stored(boss, "labels"), expected)
    assert boss.stats.requests == 1  # the post alone
    sink.write(box, {"labels": np.zeros(box.shape, np.uint64)})  # merges nothing: no request
    assert boss.stats.requests == 1
    np.testing.assert_array_equal(stored(boss, "labels"), expected)


def test_an_output_without_zeros_replaces_with_one_post(boss):
    make_experiment(boss)
    sink = create_sink(boss, {"labels": "uint16"})
    sink.write(sink.bounds, {"labels": np.full((20, 40, 48), 9, np.uint16)})
    box = Box((0, 0, 0), (4, 8, 8))
    boss.reset_stats()
    sink.write(box, {"labels": np.full(box.shape, 5, np.uint16)})
    assert boss.stats.by_status == {201: 1}
    assert (stored(boss, "labels", box) == 5).all() and int(stored(boss, "labels").max()) == 9


def test_a_replace_interrupted_between_clearing_and_posting_ends_the_same_when_retried(
    boss, monkeypatch
):
    make_experiment(boss)
    sink = create_sink(boss, {"labels": "uint16"})
    old = np.random.default_rng(7).integers(1, 2**16, (20, 40, 48), dtype=np.uint16)
    sink.write(sink.bounds, {"labels": old})
    box = Box((2, 4, 6), (12, 30, 40))
    new = partly_zero(box.shape, np.uint16, seed=8)

    def crash(*args):
        raise ndf.DataAccessError("the worker died between the two requests")

    with monkeypatch.context() as patch:
        patch.setattr(BossSink, "_post", crash)
        with pytest.raises(ndf.DataAccessError):
            sink.write(box, {"labels": new})
    assert not stored(boss, "labels", box).any()  # cleared, not yet posted
    sink.write(box, {"labels": new})  # the block, run again
    sink.write(box, {"labels": new})  # and once more: idempotent
    expected = old.copy()
    expected[box.slices()] = new
    np.testing.assert_array_equal(stored(boss, "labels"), expected)


@pytest.mark.parametrize("mode", ["overwrite", "Replace", None, 1])
def test_an_unknown_mode_is_refused_naming_it_and_the_valid_ones(boss, tmp_path, mode):
    make_experiment(boss)
    config = tmp_path / "neurodata.cfg"
    config.write_text(
        f"[Default]\nprotocol = http\nhost = {boss.host}\ntoken = {TOKEN}\n"
        "[Parallel]\ncollection = coll\nexperiment = exp\nchannels = em\n"
    )
    message = rf"mode must be 'replace' \(.*\) or 'merge' \(.*\), got {re.escape(repr(mode))}"
    boss.reset_stats()
    for make in (
        lambda: BossSink(boss.host, TOKEN, "coll", "exp", "em", protocol="http", mode=mode),
        lambda: create_sink(boss, {"out": "uint8"}, mode=mode),
        lambda: BossSink.from_config(config, {"out": "uint8"}, create=True, mode=mode),
    ):
        with pytest.raises(ndf.ConfigError, match=message) as info:
            make()
        assert info.value.value == mode and TOKEN not in str(info.value)
    assert boss.stats.requests == 0


def test_the_mode_is_described_and_travels_with_the_pickle(boss, tmp_path):
    make_experiment(boss)
    sink = create_sink(boss, {"out": "uint8"}, mode="merge")
    assert sink.describe().endswith(", resolution 0, mode merge)")
    assert pickle.loads(pickle.dumps(sink)).mode == "merge"
    assert create_sink(boss, {"out": "uint8"}).mode == "replace"
    config = tmp_path / "neurodata.cfg"
    config.write_text(
        f"[Default]\nprotocol = http\nhost = {boss.host}\ntoken = {TOKEN}\n"
        "[Parallel]\ncollection = coll\nexperiment = exp\nchannels = em\n"
    )
    assert BossSink.from_config(config, ["out"], mode="merge").mode == "merge"
    assert "mode replace" in repr(BossSink.from_config(config, ["out"]))


def test_uint64_labels_that_sum_to_zero_modulo_2_64_are_still_written(boss):
    # intern skips create_cutout when np.sum(data) == 0, and uint64 sums wrap around.
    make_experiment(boss)
    sink = create_sink(boss, {"ids": "uint64"})
    data = np.zeros((2, 2, 2), np.uint64)
    data[0, 0, 0] = data[1, 1, 1] = 2**63
    assert np.sum(data) == 0
    box = Box((0, 0, 0), (2, 2, 2))
    sink.write(box, {"ids": data})
    np.testing.assert_array_equal(stored(boss, "ids", box), data)


def test_create_makes_the_channel_with_its_datatype_and_finds_it_next_time(boss):
    make_experiment(boss)
    sink = create_sink(boss, ["a", "b"], datatype="uint16")
    assert sink.dtype("a") == sink.dtype("b") == np.dtype(np.uint16)
    remote = boss.remote()
    assert remote.get_channel("a", "coll", "exp").datatype == "uint16"
    assert remote.get_channel("a", "coll", "exp").type == "image"
    ids = create_sink(boss, {"ids": np.uint64}, sources=["em"])
    assert remote.get_channel("ids", "coll", "exp").type == "annotation"
    again = create_sink(boss, {"a": "uint16", "ids": "uint64"})
    assert again.channels == ("a", "ids") and ids.dtype("ids") == np.uint64


def test_an_existing_channel_of_another_datatype_is_an_error_naming_both(boss):
    make_experiment(boss)
    with pytest.raises(ndf.ConfigError, match=r"'em'.*exists with datatype uint8.*uint16 was"):
        create_sink(boss, {"em": "uint16"})


@pytest.mark.parametrize("datatype", ["float32", "int16", "bogus"])
def test_an_unsupported_datatype_is_refused_before_any_request(boss, datatype):
    make_experiment(boss)
    boss.reset_stats()
    with pytest.raises(ndf.ConfigError, match=rf"datatype '{datatype}'.*uint8, uint16, uint64"):
        create_sink(boss, {"out": datatype})
    with pytest.raises(ndf.ConfigError, match=r"needs their datatype"):
        create_sink(boss, ["out"])
    assert boss.stats.requests == 0


def test_a_sink_refuses_a_time_range(boss, tmp_path):
    make_experiment(boss)
    config = tmp_path / "neurodata.cfg"
    config.write_text(
        f"[Default]\nprotocol = http\nhost = {boss.host}\ntoken = {TOKEN}\n"
        "[Parallel]\ncollection = coll\nexperiment = exp\nchannels = em\nt_range = 0,1\n"
    )
    with pytest.raises(ndf.ConfigError, match=r"neurodata.cfg: \[Parallel\] t_range = 0,1"):
        BossSink.from_config(config, {"out": "uint8"}, create=True)


def test_from_config_takes_the_server_and_region_from_the_file(boss, tmp_path):
    make_experiment(boss)
    config = tmp_path / "neurodata.cfg"
    config.write_text(
        f"[Default]\nprotocol = http\nhost = {boss.host}\ntoken = {TOKEN}\n"
        "[Parallel]\ncollection = coll\nexperiment = exp\nchannels = em\n"
        "x_range = 8,40\ny_range = 0,32\nz_range = 0,16\n"
    )
    sink = BossSink.from_config(config, "out", datatype="uint8", create=True, retry=FAST)
    assert sink.bounds == Box((0, 0, 8), (16, 32, 40))
    box = Box((0, 0, 8), (16, 32, 40))
    sink.write(box, {"out": np.full(box.shape, 3, np.uint8)})
    assert int(stored(boss, "out").sum()) == 3 * box.size
    assert BossSink.from_config(config, ["out"]).dtype("out") == np.uint8
    with pytest.raises(ndf.ChannelError, match=r"sink's channel 'other' does not exist.*'em'"):
        BossSink.from_config(config, ["other"])


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_writes_over_the_request_limit_are_split_and_transient_failures_retried(mode):
    limit = 2048
    with BossEmulator(token=TOKEN, max_cutout_bytes=limit) as boss:
        make_experiment(boss)
        sink = create_sink(boss, {"labels": "uint16"}, max_request_bytes=limit, mode=mode)
        old = np.random.default_rng(2).integers(1, 2**16, (20, 40, 48), dtype=np.uint16)
        sink.write(sink.bounds, {"labels": old})
        labels = partly_zero(old.shape, np.uint16, seed=3)
        boss.reset_stats()
        boss.faults = Faults(error_rate=0.2, status=503, seed=3)
        sink.write(sink.bounds, {"labels": labels})
        boss.faults = Faults()
        expected = labels if mode == "replace" else np.where(labels != 0, labels, old)
        np.testing.assert_array_equal(stored(boss, "labels"), expected)
        stats = boss.stats
    assert 413 not in stats.by_status and stats.injected > 0
    assert stats.by_status[201] >= labels.nbytes // limit
    assert stats.by_status.get(200, 0) == (stats.by_status[201] if mode == "replace" else 0)


def test_a_server_with_a_lower_limit_gets_smaller_clears_and_posts_after_a_413():
    with BossEmulator(token=TOKEN, max_cutout_bytes=3000) as boss:
        make_experiment(boss)
        sink = create_sink(boss, {"labels": "uint16"})  # assumes the BOSS's own 520 MiB
        old = np.random.default_rng(4).integers(1, 2**16, (20, 40, 48), dtype=np.uint16)
        sink.write(sink.bounds, {"labels": old})
        labels = partly_zero(old.shape, np.uint16, seed=5)
        sink.write(sink.bounds, {"labels": labels})
        np.testing.assert_array_equal(stored(boss, "labels"), labels)
        assert boss.stats.by_status[413] >= 2


def test_a_persistent_write_failure_names_the_box(boss):
    make_experiment(boss)
    sink = create_sink(
        boss, {"labels": "uint16"}, retry=RetryPolicy(max_attempts=2, base_delay=0.001)
    )
    boss.faults = Faults(error_rate=1.0, status=502)
    box = Box((0, 0, 0), (2, 3, 4))
    with pytest.raises(ndf.DataAccessError) as info:
        sink.write(box, {"labels": np.ones(box.shape, np.uint16)})
    assert str(box) in str(info.value) and "writing channel 'labels'" in str(info.value)
    assert "502" in str(info.value) and TOKEN not in str(info.value)


# -- pipelines on every executor ----------------------------------------------------------------


def plus_one(data):
    return {"out": data["em"].astype(np.uint16) + 1}


@pytest.mark.parametrize(
    "executor",
    [ndf.SerialExecutor(), ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)],
    ids=lambda e: e.name,
)
def test_pipeline_from_a_boss_source_into_a_boss_sink(boss, executor):
    em = make_experiment(boss, shape=(40, 40, 48))
    source = BossSource(boss.host, TOKEN, "coll", "exp", "em", protocol="http", retry=FAST)
    sink = create_sink(boss, {"out": "uint16"})
    # Cuboid-aligned blocks: the pipeline refuses tilings whose parallel writes share a cuboid.
    result = ndf.Pipeline(
        source, plus_one, tiler=source.default_tiler(), executor=executor, sink=sink,
        load_entrypoints=False,
    ).run()
    assert result.ok and result.done == ("0_0_0", "16_0_0", "32_0_0")
    np.testing.assert_array_equal(stored(boss, "out"), em.astype(np.uint16) + 1)


def labels_with_zeros_and_an_all_zero_middle(data, block):
    """``em + 1`` as uint16 where ``em`` is odd and 0 where it is even, all zeros over the
    block at z = 16; its value is the block's sum of ``em``."""
    em = data["em"]
    out = np.where(em % 2 == 1, em.astype(np.uint16) + 1, 0).astype(np.uint16)
    if block.box.start[0] == 16:
        out[:] = 0
    return ndf.BlockOutput({"out": out}, value=int(em.astype(np.int64).sum()))


HALF_FAILING = Faults(error_rate=0.5, status=503, seed=7, error_window=1.5)
"""Half of all cutouts (reads, clears, posts) fail for 1.5 s from the first: an outage that
passes, which a run must ride out."""
PATIENT = RetryPolicy(max_elapsed=30.0, base_delay=0.05, max_delay=0.4)


@pytest.mark.parametrize(
    "executor", [ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)], ids=lambda e: e.name
)
def test_a_pipeline_run_through_an_outage_replaces_every_block_exactly(boss, executor):
    em = make_experiment(boss, shape=(48, 40, 48), seed=5)
    source = BossSource(
        boss.host, TOKEN, "coll", "exp", "em", protocol="http", retry=PATIENT
    ).validate()
    sink = create_sink(boss, {"out": "uint16"}, retry=PATIENT)
    sink.write(sink.bounds, {"out": np.full(em.shape, 9, np.uint16)})  # to be replaced
    boss.reset_stats()
    boss.faults = HALF_FAILING
    result = ndf.Pipeline(
        source, ndf.FunctionProcessor(labels_with_zeros_and_an_all_zero_middle, pass_block=True),
        tiler=source.default_tiler(), executor=executor, sink=sink, load_entrypoints=False,
    ).run()
    boss.faults = Faults()
    assert result.ok and result.done == ("0_0_0", "16_0_0", "32_0_0") and not result.failed
    assert result.values == {
        f"{z}_0_0": int(em[z : z + 16].astype(np.int64).sum()) for z in (0, 16, 32)
    }
    expected = np.where(em % 2 == 1, em.astype(np.uint16) + 1, 0).astype(np.uint16)
    expected[16:32] = 0  # no nine is left: zeros replaced them
    np.testing.assert_array_equal(stored(boss, "out"), expected)
    stats = boss.stats
    assert stats.injected > 0 and stats.by_status[503] == stats.injected
    # Every cutout succeeded once: 3 reads and 3 clears (200), 2 posts (201).
    assert (stats.by_status[200], stats.by_status[201]) == (6, 2)


def test_the_pipeline_refuses_blocks_that_would_share_a_cuboid(boss):
    make_experiment(boss)
    source = BossSource(boss.host, TOKEN, "coll", "exp", "em", protocol="http")
    sink = create_sink(boss, {"out": "uint16"})
    pipeline = ndf.Pipeline(source, plus_one, tiler=RegularTiler((8, 40, 48)),
                            executor=ndf.ThreadExecutor(2), sink=sink, load_entrypoints=False)
    with pytest.raises(ndf.ConfigError, match=r"inside a chunk of the sink"):
        pipeline.plan()

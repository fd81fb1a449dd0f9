"""BossSource with the real intern client against the BOSS API emulator on loopback.

No mocks of intern: every read goes through intern's URL building, blosc decoding and error
handling, over HTTP, and numpy slicing of the arrays loaded into the emulator is the oracle.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import attrs
import numpy as np
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from intern.resource.boss.resource import ChannelResource

import ndframework as ndf
from ndframework.boss import BossSink, BossSource, RetryPolicy, split_box
from ndframework.bossemu import BossEmulator, Faults
from ndframework.geometry import Box
from ndframework.testing import SourceConformance
from ndframework.tiling import BOSS_CUBOID, CuboidTiler, RegularTiler

pytestmark = pytest.mark.timeout(60)

TOKEN = "ndf-boss-test-token-5f0c2a9e"
FAST = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.005)
"""Millisecond backoff, and enough tries that a 20 % failure rate never exhausts them."""
SHAPE = (20, 40, 48)


def random_volume(shape=SHAPE, seed=0, time_samples=None):
    """Random uint8 'em' and uint16 'mask' channels over their full ranges."""
    rng = np.random.default_rng(seed)
    lead = () if time_samples is None else (time_samples,)
    return {
        "em": rng.integers(0, 256, lead + shape, dtype=np.uint8),
        "mask": rng.integers(0, 2**16, lead + shape, dtype=np.uint16),
    }


def boss_source(boss, channels=("em", "mask"), **options):
    options.setdefault("retry", FAST)
    options.setdefault("timeout", 5.0)
    return BossSource(
        boss.host, TOKEN, "coll", "exp", channels, protocol=boss.protocol, **options
    )


def expected_block(arrays, box, origin=(0, 0, 0)):
    local = box.relative_to(origin).slices()
    return {name: array[(Ellipsis, *local)] for name, array in arrays.items()}


@pytest.fixture
def boss():
    with BossEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def volume(boss):
    arrays = random_volume()
    boss.create_volume("coll", "exp", arrays)
    return arrays


# -- the conformance kit ----------------------------------------------------------------------


class TestBossSource(SourceConformance):
    """The kit against the emulator. The kit places its arrays at (3, -2, 5); BOSS coordinate
    frames have no negative coordinates, so the arrays start at (3, 2, 5) here, inside a
    frame two voxels larger on every side after them: reads just outside the source's bounds
    are then inside the frame, and must still be refused by the source itself."""

    origin = (3, 2, 5)

    @pytest.fixture(autouse=True)
    def _emulator(self, boss):
        self.boss = boss

    def make_source(self, arrays, origin, directory):
        shape = next(iter(arrays.values())).shape
        frame = tuple(o + s + 2 for o, s in zip(origin, shape))
        padded = {}
        for name, array in arrays.items():
            padded[name] = np.zeros(frame, array.dtype)
            padded[name][Box.from_shape(shape, origin).slices()] = array
        self.boss.create_volume("coll", "exp", padded)
        return boss_source(self.boss, list(arrays), bounds=Box.from_shape(shape, origin))

    def test_metadata(self, source, arrays):
        super().test_metadata(source, arrays)
        assert source.chunk_shape == BOSS_CUBOID == (16, 512, 512)


# -- reading ----------------------------------------------------------------------------------


def test_multichannel_volume_read_block_by_block_equals_numpy(boss, volume):
    source = boss_source(boss).validate()
    assert source.bounds == Box.from_shape(SHAPE)
    tiler = RegularTiler((8, 16, 20), halo=(1, 2, 3))
    for block in tiler.blocks(source.bounds):
        data = source.read(block.read_box)
        for name, expected in expected_block(volume, block.read_box).items():
            assert data[name].dtype == expected.dtype
            assert data[name].flags.writeable
            np.testing.assert_array_equal(data[name], expected)


def test_configured_bounds_and_an_origin_off_zero(boss):
    arrays = random_volume((6, 20, 24), seed=1)
    boss.create_volume("coll", "exp", arrays, origin=(10, 512, 1000))
    source = boss_source(boss, bounds=Box((11, 515, 1002), (16, 530, 1020))).validate()
    assert source.bounds == Box((11, 515, 1002), (16, 530, 1020))
    box = Box((12, 516, 1005), (15, 529, 1019))
    for name, expected in expected_block(arrays, box, (10, 512, 1000)).items():
        np.testing.assert_array_equal(source.read(box)[name], expected)


def test_time_range_gives_tzyx_arrays_and_a_3d_bounds(boss):
    arrays = random_volume((4, 12, 16), seed=2, time_samples=5)
    boss.create_volume("coll", "exp", arrays)
    source = boss_source(boss, t_range=(1, 4)).validate()
    assert source.bounds == Box.from_shape((4, 12, 16))
    box = Box((1, 2, 3), (4, 10, 15))
    data = source.read(box)
    for name, array in arrays.items():
        assert data[name].shape == (3, 3, 8, 12)
        np.testing.assert_array_equal(data[name], array[1:4, 1:4, 2:10, 3:15])
    assert source.read(Box((1, 2, 3), (1, 2, 3)))["em"].shape == (3, 0, 0, 0)
    # Without a time range the channel's default time sample (0) is read, ZYX.
    plain = boss_source(boss).read(box)
    np.testing.assert_array_equal(plain["mask"], arrays["mask"][0, 1:4, 2:10, 3:15])


def test_reads_from_many_threads_at_once(boss, volume):
    source = boss_source(boss).validate()
    boxes = [block.box for block in RegularTiler((5, 10, 12)).blocks(source.bounds)]
    remotes = {}

    def read(box):
        remotes[threading.get_ident()] = source._remote()
        return box, source.read(box)

    with ThreadPoolExecutor(4) as pool:
        for box, data in pool.map(read, boxes):
            for name, expected in expected_block(volume, box).items():
                np.testing.assert_array_equal(data[name], expected)
    assert len({id(remote) for remote in remotes.values()}) == len(remotes) > 1


def test_metadata_is_fetched_once_and_travels_with_the_pickle(boss, volume):
    source = boss_source(boss).validate()
    boss.reset_stats()
    copy = pickle.loads(pickle.dumps(source))
    box = Box((0, 0, 0), (4, 5, 6))
    copy.read(box)
    copy.read(box, ["em"])
    assert boss.stats.requests == 3  # three cutouts, no metadata request
    assert "remote" not in pickle.dumps(source).decode("latin-1")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"timeout": 0}, r"timeout must be a positive number of seconds .*, got 0"),
        ({"timeout": (1, 2, 3)}, r"timeout must be .* pair of them, got \(1, 2, 3\)"),
        ({"timeout": "soon"}, r"timeout must be .*, got 'soon'"),
        ({"max_request_bytes": 0}, r"max_request_bytes must be a positive integer, got 0"),
        ({"retry": 3}, r"retry must be a RetryPolicy or None, got 3"),
        ({"bounds": "everything"}, r"bounds must be a Box, .* or None, got 'everything'"),
        ({"bounds": Box((0, 0, 0), (2, 2, 2)), "t_range": (3, 1)},
         r"t_range = 3,1: the start must be below the stop"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(options, message):
    with pytest.raises(ndf.ConfigError, match=message) as info:
        BossSource("localhost:1", TOKEN, "coll", "exp", "em", **options)
    assert TOKEN not in str(info.value)


def test_default_tiler_is_the_cuboid_tiler(boss, volume):
    assert boss_source(boss).default_tiler() == CuboidTiler()


# -- transient and persistent failures ---------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_transient_failures_are_retried_and_every_block_is_right(boss, volume, status):
    source = boss_source(boss).validate()
    boss.reset_stats()
    boss.faults = Faults(error_rate=0.2, status=status, seed=7)
    for block in RegularTiler((10, 20, 24)).blocks(source.bounds):
        data = source.read(block.box)
        for name, expected in expected_block(volume, block.box).items():
            np.testing.assert_array_equal(data[name], expected)
    stats = boss.stats
    assert stats.injected > 0 and stats.by_status[status] == stats.injected
    assert stats.by_status[200] == 16  # 8 blocks, 2 channels: each cutout succeeded once


def test_a_persistent_failure_is_a_data_access_error_naming_the_box(boss, volume):
    source = boss_source(boss, retry=RetryPolicy(max_attempts=3, base_delay=0.001)).validate()
    boss.reset_stats()
    boss.faults = Faults(error_rate=1.0, status=503)
    box = Box((2, 3, 4), (6, 9, 12))
    with pytest.raises(ndf.DataAccessError) as info:
        source.read(box, ["em"])
    message = str(info.value)
    assert str(box) in message and "'em'" in message and "coll/exp" in message
    assert "3 attempt(s)" in message and "503" in message
    assert TOKEN not in message
    assert boss.stats.injected == 3


def test_a_request_that_outlasts_the_timeout_is_retried_within_the_budget_then_reported(
    boss, volume
):
    source = boss_source(
        boss, timeout=(2.0, 0.2), retry=RetryPolicy(max_elapsed=0.5, base_delay=0.001)
    ).validate()
    boss.faults = Faults(latency=0.6)
    box = Box((0, 0, 0), (2, 2, 2))
    with pytest.raises(ndf.DataAccessError) as info:
        source.read(box, ["em"])
    message = str(info.value)
    assert re.search(r"failed after [2-9] attempt\(s\) in 0\.[5-9] s \(the retry budget of "
                     r"0.5 s is spent\): timed out waiting for an answer$", message), message
    boss.faults = Faults()
    np.testing.assert_array_equal(source.read(box)["em"], volume["em"][:2, :2, :2])


class FakeTime:
    """A clock that moves only when slept on, or when a request says it took long."""

    def __init__(self):
        self.now, self.slept = 0.0, []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def failing(error, seconds_each=0.0, clock=None, succeed_after=None):
    """A request that raises ``error`` (taking ``seconds_each``), counting its tries."""
    tries = []

    def request():
        tries.append(1)
        if clock is not None:
            clock.now += seconds_each
        if succeed_after is not None and len(tries) > succeed_after:
            return "ok"
        raise error

    return request, tries


def http_error_with(status, headers=None):
    response = requests.Response()
    response.status_code, response.headers = status, requests.structures.CaseInsensitiveDict(
        headers or {}
    )
    return requests.HTTPError(f"HTTP {status}", response=response)


def test_transient_failures_are_retried_until_the_time_budget_is_spent():
    fake = FakeTime()
    policy = RetryPolicy(max_elapsed=60.0, base_delay=1.0, max_delay=8.0, jitter=0.0)
    request, tries = failing(requests.ConnectionError("connection reset"), 0.5, fake)
    with pytest.raises(requests.ConnectionError) as info:
        policy.call(request, what="a test", sleep=fake.sleep, clock=fake.clock)
    assert fake.slept[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert fake.now <= 60.0 + 0.5 and fake.now + 8.0 >= 60.0  # all of the budget, no more
    error = info.value
    assert (error.ndf_attempts, error.ndf_elapsed) == (len(tries), fake.now)
    assert error.ndf_gave_up == "the retry budget of 60 s is spent"
    assert len(tries) == len(fake.slept) + 1 == 10


def test_a_try_that_takes_the_whole_budget_is_not_followed_by_another():
    fake = FakeTime()
    request, tries = failing(requests.ReadTimeout("timed out"), 120.0, fake)
    with pytest.raises(requests.ReadTimeout) as info:
        RetryPolicy(max_elapsed=100.0).call(
            request, what="a test", sleep=fake.sleep, clock=fake.clock
        )
    assert len(tries) == 1 and fake.slept == [] and info.value.ndf_elapsed == 120.0


def test_max_attempts_caps_the_tries_and_a_mistake_is_not_retried():
    fake = FakeTime()
    request, tries = failing(http_error_with(503))
    with pytest.raises(requests.HTTPError) as info:
        RetryPolicy(max_attempts=3, base_delay=0.1).call(
            request, what="a test", sleep=fake.sleep, clock=fake.clock
        )
    assert len(tries) == 3 and info.value.ndf_gave_up == "max_attempts = 3 reached"
    request, tries = failing(http_error_with(404))
    with pytest.raises(requests.HTTPError) as info:
        RetryPolicy().call(request, what="a test", sleep=fake.sleep, clock=fake.clock)
    assert len(tries) == 1 and info.value.ndf_gave_up is None


def test_retry_after_is_honoured_beyond_max_delay_but_not_past_the_budget():
    fake = FakeTime()
    policy = RetryPolicy(max_elapsed=100.0, base_delay=0.1, max_delay=1.0)
    request, tries = failing(http_error_with(429, {"Retry-After": "40"}), succeed_after=2)
    assert policy.call(request, what="a test", sleep=fake.sleep, clock=fake.clock) == "ok"
    assert fake.slept == [40.0, 40.0]
    request, tries = failing(http_error_with(503, {"Retry-After": "40"}))
    with pytest.raises(requests.HTTPError) as info:
        policy.call(request, what="a test", sleep=fake.sleep, clock=fake.clock)
    assert fake.slept == [40.0, 40.0, 40.0, 40.0] and len(tries) == 3
    assert info.value.ndf_gave_up == (
        "the server asked to wait 40 s (Retry-After), past the retry budget of 100 s"
    )


def test_every_retry_is_logged_in_one_line(caplog):
    caplog.set_level("INFO", logger="ndframework.boss")
    fake = FakeTime()
    request, tries = failing(requests.ConnectionError("reset\n" + "x" * 500), succeed_after=2)
    RetryPolicy(base_delay=0.25, jitter=0.0).call(
        request, what="reading a box", sleep=fake.sleep, clock=fake.clock,
        transient=lambda error: True,
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "ndframework.boss"]
    assert len(lines) == 2 and lines[0].startswith(
        "reading a box failed (attempt 1, 0.0 s of a 300 s retry budget spent: ConnectionError"
    ) and lines[1].endswith("retrying in 0.500 s")
    assert all("\n" not in line and len(line) < 400 for line in lines)


def test_the_default_policy_retries_for_five_minutes():
    policy = RetryPolicy()
    assert (policy.max_elapsed, policy.base_delay, policy.max_delay, policy.jitter) == (
        300.0, 0.5, 30.0, 0.5
    )
    assert policy.max_attempts is None
    waits = policy.delays()
    assert waits[:7] == (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0) and sum(waits) < 300
    assert len(waits) == 14  # 15 tries against a server that fails at once


@pytest.mark.parametrize("options, message", [
    ({"max_elapsed": 0}, r"max_elapsed must be a finite number of seconds > 0, got 0.0"),
    ({"max_elapsed": float("inf")}, r"max_elapsed must be .*, got inf"),
    ({"max_elapsed": "long"}, r"max_elapsed must be .*, got 'long'"),
    ({"base_delay": -1}, r"base_delay must be a number of seconds >= 0, got -1.0"),
    ({"jitter": 2}, r"jitter must be between 0 and 1, got 2.0"),
    ({"max_attempts": 0}, r"max_attempts must be a positive integer or None for no cap, got 0"),
])
def test_a_bad_policy_is_refused_naming_the_value(options, message):
    with pytest.raises(ndf.ConfigError, match=message):
        RetryPolicy(**options)
    with pytest.raises(TypeError):
        RetryPolicy(5)  # keyword-only: a bare number could mean tries or seconds


def test_a_wrong_token_at_read_time_says_authentication_failed(boss, volume):
    source = pickle.loads(pickle.dumps(boss_source(boss).validate()))
    source.config = attrs.evolve(source.config, token="not-the-token")
    with pytest.raises(ndf.DataAccessError, match=r"authentication failed \(HTTP 401\)") as info:
        source.read(Box((0, 0, 0), (1, 1, 1)))
    assert "not-the-token" not in str(info.value)
    assert boss.stats.by_status[401] == 1  # a refused token is not retried


# -- the request size limit ---------------------------------------------------------------------


def test_a_block_over_the_request_limit_is_split_and_equals_numpy():
    limit = 3000  # bytes: a 20 x 40 x 48 uint16 block is 76800
    with BossEmulator(token=TOKEN, max_cutout_bytes=limit) as boss:
        arrays = random_volume(seed=3)
        boss.create_volume("coll", "exp", arrays)
        source = boss_source(boss, max_request_bytes=limit).validate()
        boss.reset_stats()
        data = source.read(source.bounds)
        for name, array in arrays.items():
            np.testing.assert_array_equal(data[name], array)
        stats = boss.stats
    assert 413 not in stats.by_status
    assert stats.requests > 2 * 76800 // limit


def test_a_server_with_a_lower_limit_gets_smaller_requests_after_a_413():
    with BossEmulator(token=TOKEN, max_cutout_bytes=5000) as boss:
        arrays = random_volume((4, 40, 48), seed=4)
        boss.create_volume("coll", "exp", arrays)
        source = boss_source(boss).validate()  # assumes the BOSS's own 520 MiB
        data = source.read(source.bounds)
        for name, array in arrays.items():
            np.testing.assert_array_equal(data[name], array)
        assert boss.stats.by_status[413] >= 2


@settings(max_examples=300, deadline=None)
@given(
    start=st.tuples(*[st.integers(0, 40)] * 3),
    shape=st.tuples(*[st.integers(1, 30)] * 3),
    bytes_per_voxel=st.sampled_from([1, 2, 8]),
    max_bytes=st.integers(8, 5000),
)
def test_split_box_covers_the_box_with_pieces_under_the_limit(
    start, shape, bytes_per_voxel, max_bytes
):
    cuboid = (2, 4, 8)
    box = Box.from_shape(shape, start)
    pieces = split_box(box, bytes_per_voxel, max_bytes, cuboid=cuboid)
    covered = np.zeros(shape, np.uint8)
    for piece in pieces:
        assert box.contains(piece) and not piece.empty
        assert piece.size * bytes_per_voxel <= max_bytes or piece == box
        covered[piece.relative_to(box).slices()] += 1
    assert (covered == 1).all()
    if max_bytes >= 2 * 4 * 8 * bytes_per_voxel:
        # a whole cuboid fits in one request: pieces meet on cuboid lines only
        for piece in pieces:
            for axis in range(3):
                for edge, outer in ((piece.start[axis], box.start[axis]),
                                    (piece.stop[axis], box.stop[axis])):
                    assert edge == outer or edge % cuboid[axis] == 0
    assert len(pieces) == 1 or box.size * bytes_per_voxel > max_bytes


def test_split_box_cuts_along_z_first_on_cuboid_lines():
    box = Box((0, 0, 0), (64, 512, 1024))
    pieces = split_box(box, 2, 32 * 512 * 1024 * 2)
    assert [str(p) for p in pieces] == ["[0:32, 0:512, 0:1024]", "[32:64, 0:512, 0:1024]"]
    offset = split_box(Box((8, 100, 0), (40, 600, 512)), 1, 16 * 512 * 512)
    assert [str(p) for p in offset] == [
        "[8:16, 100:600, 0:512]", "[16:32, 100:600, 0:512]", "[32:40, 100:600, 0:512]"
    ]
    # intern splits a cutout over 512 x 512 x 192 voxels itself, one request after another,
    # and drops the time axis when it does: no request is ever that large.
    assert all(p.size <= 512 * 512 * 192 for p in split_box(Box.from_shape((400, 600, 600)), 1))


# -- pipelines on every executor ----------------------------------------------------------------


def block_sums(data):
    return {name: int(array.astype(np.int64).sum()) for name, array in data.items()}


@pytest.mark.parametrize(
    "executor",
    [ndf.SerialExecutor(), ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)],
    ids=lambda e: e.name,
)
def test_pipeline_over_a_boss_source_equals_numpy_on_every_executor(boss, volume, executor):
    source = boss_source(boss).validate()
    boss.reset_stats()
    tiler = RegularTiler((8, 16, 24))
    result = ndf.Pipeline(
        source, block_sums, tiler=tiler, executor=executor, load_entrypoints=False
    ).run()
    assert result.ok and not result.failed
    blocks = list(tiler.blocks(source.bounds))
    assert len(result.done) == len(blocks)
    for block in blocks:
        expected = expected_block(volume, block.box)
        assert result.values[block.key] == {
            name: int(array.astype(np.int64).sum()) for name, array in expected.items()
        }
    # Workers read with the metadata carried from here: cutout requests only.
    assert boss.stats.requests == 2 * len(blocks)


def test_a_persistent_failure_stops_the_run_cleanly(boss, volume):
    source = boss_source(boss, retry=RetryPolicy(max_attempts=2, base_delay=0.001)).validate()
    boss.faults = Faults(error_rate=1.0, status=503)
    pipeline = ndf.Pipeline(source, block_sums, tiler=RegularTiler((10, 40, 48)),
                            executor=ndf.SerialExecutor(), load_entrypoints=False)
    with pytest.raises(ndf.DataAccessError, match=r"block 0_0_0.*503") as info:
        pipeline.run()
    assert not info.value.result.ok and TOKEN not in str(info.value)
    assert all(TOKEN not in failure.error for failure in info.value.result.failed.values())


# -- outages: one that passes, and a server that freezes ------------------------------------------


OUTAGE_EM = np.random.default_rng(11).integers(0, 256, (32, 48, 48), dtype=np.uint8)


@pytest.fixture(scope="module")
def outage_boss():
    """One emulator for the outage tests, its 'em' channel holding OUTAGE_EM."""
    with BossEmulator(token=TOKEN) as emulator:
        emulator.create_volume("coll", "exp", {"em": OUTAGE_EM})
        yield emulator


@pytest.fixture
def outage(outage_boss):
    outage_boss.faults = Faults()
    outage_boss.reset_stats()
    yield outage_boss
    outage_boss.faults = Faults()


def digest(data):
    """What a block read, in a few bytes: its sha256."""
    return hashlib.sha256(np.ascontiguousarray(data["em"]).tobytes()).hexdigest()


@pytest.mark.parametrize(
    "executor", [ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)], ids=lambda e: e.name
)
def test_a_run_rides_out_half_of_all_cutouts_failing_for_a_while(outage, executor):
    # Five quick tries each (the old policy) would have ended this run: of 64 reads, about
    # two fail five times in a row at a failure rate of one half.
    policy = RetryPolicy(max_elapsed=30.0, base_delay=0.05, max_delay=0.4)
    source = boss_source(outage, "em", retry=policy).validate()
    tiler = RegularTiler((8, 12, 12))
    outage.reset_stats()
    outage.faults = Faults(error_rate=0.5, status=503, seed=3, error_window=1.5)
    result = ndf.Pipeline(
        source, digest, tiler=tiler, executor=executor, load_entrypoints=False
    ).run()
    outage.faults = Faults()
    blocks = list(tiler.blocks(source.bounds))
    assert len(blocks) == 64
    assert result.ok and not result.failed and len(result.done) == len(blocks)
    for block in blocks:
        assert result.values[block.key] == digest({"em": OUTAGE_EM[block.box.slices()]})
    stats = outage.stats
    assert stats.injected > 10 and stats.by_status[503] == stats.injected
    assert stats.by_status[200] == len(blocks)  # each read succeeded once


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "executor", [ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)], ids=lambda e: e.name
)
def test_a_frozen_server_ends_a_run_within_the_retry_budget(outage, executor):
    budget, connect = 1.0, 0.5  # a try ends within max_elapsed plus the connect timeout
    source = boss_source(
        outage, "em", timeout=(connect, 30.0),  # the 30 s wait is cut to the budget
        retry=RetryPolicy(max_elapsed=budget, base_delay=0.05),
    ).validate()
    outage.faults = Faults(frozen=True)
    pipeline = ndf.Pipeline(source, digest, tiler=RegularTiler((8, 12, 12)),
                            executor=executor, load_entrypoints=False)
    with pytest.raises(ndf.DataAccessError) as info:  # a hang is failed by the timeout
        pipeline.run()
    outage.faults = Faults()
    message = str(info.value)
    assert re.search(r"failed after \d+ attempt\(s\) in 1\.\d s \(the retry budget of 1 s is "
                     r"spent\): timed out waiting for an answer", message), message
    assert TOKEN not in message
    failures = info.value.result.failed.values()
    assert all("timed out waiting for an answer" in failure.error for failure in failures)
    assert outage.stats.unanswered >= 2
    # The server is back: the same source reads again.
    box = Box((0, 0, 0), (8, 12, 12))
    np.testing.assert_array_equal(source.read(box)["em"], OUTAGE_EM[box.slices()])


def test_after_one_request_gives_up_the_next_ones_try_once_until_one_is_answered(outage):
    connect = 0.3
    source = boss_source(
        outage, "em", timeout=(connect, 30.0),
        retry=RetryPolicy(max_elapsed=0.6, base_delay=0.05),
    ).validate()
    box = Box((0, 0, 0), (4, 4, 4))
    outage.faults = Faults(frozen=True)
    with pytest.raises(ndf.DataAccessError, match=r"retry budget of 0.6 s is spent"):
        source.read(box)
    other = pickle.loads(pickle.dumps(source))  # any source or sink of this server
    with pytest.raises(ndf.DataAccessError) as info:
        other.read(box)
    assert re.search(r"failed after 1 attempt\(s\) in 0\.\d s \(not retried: another request "
                     r"to this BOSS gave up \d+\.\d s earlier, after failing for 0\.\d s\)",
                     str(info.value)), str(info.value)
    outage.faults = Faults()
    np.testing.assert_array_equal(source.read(box)["em"], OUTAGE_EM[box.slices()])
    outage.faults = Faults(error_rate=0.5, seed=1)  # after a success, retried again
    np.testing.assert_array_equal(source.read(box)["em"], OUTAGE_EM[box.slices()])
    assert outage.stats.injected > 0


def test_a_token_with_a_percent_sign_works():
    # intern's BossRemote parses a config dict as INI with interpolation, where '%' breaks
    # (and its error quotes the token); the source hands intern the token by its setters.
    with BossEmulator(token="abc%def") as boss:
        arrays = random_volume((2, 3, 4))
        boss.create_volume("coll", "exp", arrays)
        source = BossSource(boss.host, "abc%def", "coll", "exp", "em", protocol="http")
        np.testing.assert_array_equal(source.read(source.bounds)["em"], arrays["em"])


# -- resolutions above 0 ------------------------------------------------------------------------


def copy(data):
    return {name: array.copy() for name, array in data.items()}


def downsample(boss, channel: str) -> None:
    """``POST /v1/downsample/coll/exp/<channel>/``, then wait for the emulator to finish (boss
    django/bossspatialdb/views.py ``Downsample.post``)."""
    response = requests.post(
        f"{boss.url}/v1/downsample/coll/exp/{channel}/",
        headers={"Authorization": f"Token {TOKEN}"}, timeout=30,
    )
    assert response.status_code == 201, response.text
    assert boss.wait_for_downsamples(timeout=60)


def test_a_level_written_by_the_sink_reads_back_in_its_own_coordinates(boss):
    """Level 1 halves x and y (anisotropic, the BOSS's default); the source's default region
    is that level's extent, rounded up (boss-tools activities/resolution_hierarchy.py), and
    the BOSS takes writes at the base resolution or the level above (spdb
    spdb/spatialdb/spatialdb.py ``write_cuboid``)."""
    arrays = random_volume((20, 41, 47), seed=5)
    boss.create_volume("coll", "exp", arrays, num_hierarchy_levels=3)
    source = boss_source(boss, resolution=1).validate()
    assert source.bounds == Box((0, 0, 0), (20, 21, 24))
    level1 = random_volume((20, 21, 24), seed=6)
    sink = BossSink(boss.host, TOKEN, "coll", "exp", ["em", "mask"], protocol="http",
                    resolution=1, retry=FAST)
    result = ndf.Pipeline(ndf.InMemorySource(level1), copy, sink=sink, tiler=CuboidTiler(),
                          load_entrypoints=False).run()
    assert result.ok and sink.bounds == source.bounds
    for block in RegularTiler((7, 9, 11), halo=(1, 2, 3)).blocks(source.bounds):
        read = source.read(block.read_box)
        for name, expected in expected_block(level1, block.read_box).items():
            np.testing.assert_array_equal(read[name], expected)
    base = boss_source(boss).read(Box.from_shape((20, 41, 47)))  # level 0 untouched
    np.testing.assert_array_equal(base["em"], arrays["em"])


def test_downsampled_labels_read_at_levels_1_and_2(boss):
    """Labels constant over 4 x 4 patches in y and x decimate to every other voxel at each
    level, whatever the BOSS's label rule (spdb spdb/c_lib/c_version/addData.c
    ``addAnnotationData``); the levels come from the downsample service (boss-tools
    activities/resolution_hierarchy.py)."""
    rng = np.random.default_rng(6)
    patches = rng.integers(1, 2**50, (12, 10, 12), dtype=np.uint64)
    labels = np.repeat(np.repeat(patches, 4, axis=1), 4, axis=2)
    boss.create_volume("coll", "exp", {"seg": labels}, num_hierarchy_levels=3)
    downsample(boss, "seg")
    for level, step in ((1, 2), (2, 4)):
        source = boss_source(boss, ["seg"], resolution=level).validate()
        assert source.bounds == Box.from_shape((12, 40 // step, 48 // step))
        sink = ndf.InMemorySink.zeros({"seg": np.uint64}, source.bounds.shape)
        result = ndf.Pipeline(source, copy, sink=sink, tiler=RegularTiler((5, 7, 9)),
                              executor=ndf.ThreadExecutor(2),
                              load_entrypoints=False).run()
        assert result.ok
        np.testing.assert_array_equal(sink.arrays["seg"], labels[:, ::step, ::step])


def test_resolutions_are_checked_against_each_channels_base(boss):
    """``validate_resolution`` (boss django/bosscore/request.py): a channel is read at levels
    base to base + num_hierarchy_levels - 1; the sink writes base and base + 1 only."""
    boss.create_volume("coll", "exp", random_volume((4, 8, 8)), num_hierarchy_levels=3)
    with pytest.raises(ndf.ConfigError, match=r"resolution = 3: coll/exp has resolutions 0 to 2"):
        boss_source(boss, resolution=3).validate()
    remote = boss.remote()
    remote.create_project(ChannelResource("high", "coll", "exp", "image", datatype="uint8",
                                          base_resolution=1))
    with pytest.raises(ndf.ConfigError, match=r"resolution = 0: channel 'high' of coll/exp "
                                              r"\(base_resolution 1\) has resolutions 1 to 3"):
        boss_source(boss, ["high"], resolution=0).validate()
    # based at 1, level 1 is the whole frame and level 2 halves it
    assert boss_source(boss, ["high"], resolution=1).validate().bounds == Box.from_shape((4, 8, 8))
    assert boss_source(boss, ["high"], resolution=2).validate().bounds == Box.from_shape((4, 4, 4))
    # with channels based at 0 and 1, level 1 covers the larger extent, the base-1 channel's
    both = boss_source(boss, ["em", "high"], resolution=1).validate()
    assert both.bounds == Box.from_shape((4, 8, 8))
    sink = BossSink(boss.host, TOKEN, "coll", "exp", ["em"], protocol="http", resolution=2)
    with pytest.raises(ndf.ConfigError, match=r"resolution = 2: the BOSS writes channel 'em' at "
                                              r"its base resolution 0 or at 1 only"):
        sink.validate()

"""neurodata.cfg: parsing, local checks, checks against the server, and the token's secrecy.

Every error names the file, the key and the bad value; none contains the token.
"""

from __future__ import annotations

import logging
import pickle
import socket
import time
import traceback

import attrs
import cloudpickle
import numpy as np
import pytest

import ndframework as ndf
from ndframework.boss import _emulator_model
from ndframework.boss._retry import RetryPolicy
from ndframework.boss.config import BossConfig, Secret
from ndframework.boss.emulator import BossEmulator, Faults
from ndframework.boss.sink import BossSink
from ndframework.boss.source import BossSource
from ndframework.geometry import Box

pytestmark = pytest.mark.timeout(60)

TOKEN = "ndf-config-token-3b8e51d0c7"
SHAPE = (20, 40, 48)  # z, y, x
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.005)

DEFAULT_KEYS = ("protocol", "host", "token")


@pytest.fixture
def boss():
    with BossEmulator(token=TOKEN) as emulator:
        rng = np.random.default_rng(0)
        emulator.create_volume("coll", "exp", {
            "em": rng.integers(0, 256, SHAPE, dtype=np.uint8),
            "mask": rng.integers(0, 2**16, SHAPE, dtype=np.uint16),
        })
        yield emulator


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch):
    monkeypatch.delenv("INTERN_TOKEN", raising=False)


def write_config(directory, host="api.bossdb.io", *, drop=(), **values):
    """A neurodata.cfg in ``directory``; ``values`` override keys, ``drop`` removes keys or
    whole sections ('Default', 'Parallel')."""
    sections = {
        "Default": {"protocol": "http", "host": host, "token": TOKEN},
        "Parallel": {
            "collection": "coll", "experiment": "exp", "channels": "em, mask",
            "x_range": "0,48", "y_range": "0,40", "z_range": "0,20",
        },
    }
    for key, value in values.items():
        sections["Default" if key in DEFAULT_KEYS else "Parallel"][key] = value
    lines = []
    for section, keys in sections.items():
        if section in drop:
            continue
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in keys.items() if key not in drop]
    path = directory / "neurodata.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def config_error(path, **options):
    """The ConfigError that BossSource.from_config raises for ``path``."""
    options.setdefault("retry", FAST)
    with pytest.raises(ndf.ConfigError) as info:
        BossSource.from_config(path, **options)
    message = str(info.value)
    assert TOKEN not in message
    return message


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- reading the file --------------------------------------------------------------------------


def test_a_complete_file_is_read_as_written(tmp_path):
    path = write_config(tmp_path, protocol="HTTPS", resolution="1", t_range="2,5")
    config = BossConfig.from_file(path)
    assert (config.protocol, config.host, config.collection, config.experiment) == (
        "https", "api.bossdb.io", "coll", "exp"
    )
    assert config.channels == ("em", "mask")
    assert (config.x_range, config.y_range, config.z_range) == ((0, 48), (0, 40), (0, 20))
    assert config.resolution == 1 and config.t_range == (2, 5)
    assert config.box == Box((0, 0, 0), (20, 40, 48))
    assert config.token.reveal() == TOKEN and TOKEN not in repr(config)
    assert config.path == str(path)


def test_optional_keys_default_to_resolution_0_the_frame_and_no_time(tmp_path):
    path = write_config(tmp_path, drop=("x_range", "y_range"), z_range="2,10")
    config = BossConfig.from_file(path)
    assert config.resolution == 0 and config.t_range is None
    assert config.box is None
    assert config.box_within(Box((0, 0, 0), (30, 50, 60))) == Box((2, 0, 0), (10, 50, 60))


def test_the_token_may_come_from_intern_token(tmp_path, monkeypatch):
    path = write_config(tmp_path, drop=("token",))
    monkeypatch.setenv("INTERN_TOKEN", "from-the-environment")
    config = BossConfig.from_file(path)
    assert config.token.reveal() == "from-the-environment"
    assert "INTERN_TOKEN" in config.token_from


def test_a_token_with_a_percent_sign_is_kept_as_written(tmp_path):
    path = write_config(tmp_path, token="abc%def")
    assert BossConfig.from_file(path).token.reveal() == "abc%def"


@pytest.mark.parametrize(
    "drop, key, values",
    [
        (("Parallel",), r"the section \[Parallel\] is missing", {}),
        (("Default",), r"the section \[Default\] is missing", {}),
        (("collection",), r"\[Parallel\] collection is missing", {}),
        (("host",), r"\[Default\] host is missing", {}),
        (("token",), r"\[Default\] token is missing and the INTERN_TOKEN", {}),
        ((), r"\[Parallel\] x_range = '0,abc': 'abc' is not an integer", {"x_range": "0,abc"}),
        ((), r"\[Parallel\] y_range = '7': a range is two integers", {"y_range": "7"}),
        ((), r"\[Parallel\] z_range = 5,5: the start must be below the stop", {"z_range": "5,5"}),
        ((), r"\[Parallel\] x_range = 9,3: the start must be below", {"x_range": "9,3"}),
        ((), r"\[Parallel\] y_range = -4,3: the start must be >= 0", {"y_range": "-4,3"}),
        ((), r"\[Parallel\] t_range = '1,2,3': a range is two", {"t_range": "1,2,3"}),
        ((), r"\[Parallel\] resolution = 'one': not an integer", {"resolution": "one"}),
        ((), r"\[Parallel\] resolution = -1: the resolution is an integer >= 0",
         {"resolution": "-1"}),
        ((), r"\[Default\] protocol = 'ftp': the protocol must be 'http' or 'https'",
         {"protocol": "ftp"}),
        ((), r"\[Default\] host = 'https://api.bossdb.io': give the host name alone",
         {"host": "https://api.bossdb.io"}),
        ((), r"\[Parallel\] collection = 'my coll': a BOSS collection name",
         {"collection": "my coll"}),
        ((), r"\[Parallel\] channels: channel 'em' is named twice", {"channels": "em, em"}),
        ((), r"\[Default\] token: the token .* must be a non-empty string without spaces",
         {"token": "two words"}),
    ],
)
def test_file_errors_name_the_file_the_key_and_the_value(tmp_path, drop, key, values):
    path = write_config(tmp_path, drop=drop, **values)
    with pytest.raises(ndf.ConfigError) as info:
        BossConfig.from_file(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert __import__("re").search(key, message), message
    assert TOKEN not in message and "two words" not in message


def test_a_missing_or_malformed_file_says_so_without_quoting_lines(tmp_path):
    with pytest.raises(ndf.ConfigError, match=r"no BOSS configuration file at"):
        BossConfig.from_file(tmp_path / "nope.cfg")
    path = tmp_path / "neurodata.cfg"
    path.write_text(f"[Default]\nprotocol = http\ntoken {TOKEN}\n")
    with pytest.raises(ndf.ConfigError, match=r"not a valid INI file \(line 3\)") as info:
        BossConfig.from_file(path)
    assert TOKEN not in str(info.value)


# -- against the server ------------------------------------------------------------------------


def test_from_config_validates_and_reads(boss, tmp_path):
    path = write_config(tmp_path, boss.host, x_range="8,40", z_range="4,20")
    source = BossSource.from_config(path, retry=FAST)
    assert source.bounds == Box((4, 0, 8), (20, 40, 40))
    assert source.channels == ("em", "mask")
    assert (source.dtype("em"), source.dtype("mask")) == (np.uint8, np.uint16)
    expected = boss.channel_array("coll", "exp", "mask")[0, 4:6, 0:3, 8:12]
    np.testing.assert_array_equal(source.read(Box((4, 0, 8), (6, 3, 12)))["mask"], expected)


def test_ranges_left_out_cover_the_coordinate_frame(boss, tmp_path):
    path = write_config(tmp_path, boss.host, drop=("x_range", "y_range", "z_range"))
    assert BossSource.from_config(path).bounds == Box.from_shape(SHAPE)


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"x_range": "0,5000"}, r"\[Parallel\] x_range = 0,5000: outside the coordinate frame "
                                r"'coll_exp' of coll/exp, whose x range at resolution 0 is 0,48"),
        ({"z_range": "19,21"}, r"\[Parallel\] z_range = 19,21: outside .* z range .* 0,20"),
        ({"channels": "em, nope"}, r"\[Parallel\] channels = 'em, nope': coll/exp has no "
                                   r"channel 'nope'; its channels: 'em', 'mask'"),
        ({"resolution": "3"}, r"\[Parallel\] resolution = 3: coll/exp has resolutions 0 to 0"),
        ({"t_range": "0,2"}, r"\[Parallel\] t_range = 0,2: coll/exp has 1 time sample"),
        ({"collection": "other"}, r"\[Parallel\] collection = 'other': no such collection .* "
                                  r"collections: 'coll'"),
        ({"experiment": "other"}, r"\[Parallel\] experiment = 'other': collection 'coll' has no "
                                  r"such experiment .* experiments: 'exp'"),
    ],
)
def test_server_errors_name_the_file_the_key_and_the_value(boss, tmp_path, values, expected):
    path = write_config(tmp_path, boss.host, **values)
    message = config_error(path)
    assert message.startswith(str(path)), message
    assert __import__("re").search(expected, message), message


def test_an_unknown_channel_is_a_channel_error(boss, tmp_path):
    with pytest.raises(ndf.ChannelError, match=r"'nope'.*'em', 'mask'"):
        BossSource.from_config(write_config(tmp_path, boss.host, channels="nope"))


def test_an_unsupported_datatype_names_the_channel_and_the_datatypes(boss, tmp_path, monkeypatch):
    # The emulator stores only what the BOSS does; let it hold a float32 channel, as a newer
    # server might, to see the source refuse it before reading a block.
    monkeypatch.setattr(_emulator_model, "DATATYPES", (*_emulator_model.DATATYPES, "float32"))
    boss._api.store.create_channel("coll", "exp", "prob", {"datatype": "float32"})
    message = config_error(write_config(tmp_path, boss.host, channels="em, prob"))
    assert message.startswith(f"{tmp_path / 'neurodata.cfg'}: [Parallel] channels")
    assert "'prob'" in message and "float32" in message and "uint8, uint16, uint64" in message


def test_a_wrong_token_says_authentication_failed(boss, tmp_path):
    path = write_config(tmp_path, boss.host, token="not-the-right-token")
    message = config_error(path)
    assert message.startswith(f"{path}: [Default] token: authentication failed (HTTP 401)")
    assert "not-the-right-token" not in message
    assert boss.stats.by_status[401] == 1  # not retried


def test_the_protocol_is_honoured(boss, tmp_path):
    message = config_error(write_config(tmp_path, boss.host, protocol="https"), timeout=2.0)
    expected = f"[Default] host = '{boss.host}': cannot reach the BOSS at https://{boss.host}"
    assert expected in message
    assert "ssl" in message


def test_an_unreachable_host_says_so_within_the_timeout(tmp_path):
    host = f"127.0.0.1:{closed_port()}"
    path = write_config(tmp_path, host)
    started = time.monotonic()
    message = config_error(path, timeout=1.0)
    assert time.monotonic() - started < 10  # bounded, not hanging (the limit is generous)
    assert message.startswith(f"{path}: [Default] host = '{host}': cannot reach the BOSS")
    assert "connection refused" in message and "1 s to connect" in message


def test_a_server_that_never_answers_times_out(tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        message = config_error(write_config(tmp_path, host), timeout=(1.0, 0.3))
        assert time.monotonic() - started < 10
    assert f"host = '{host}'" in message and "timed out waiting for an answer" in message


def test_server_trouble_during_validation_is_retried(boss, tmp_path):
    path = write_config(tmp_path, boss.host)
    boss.faults = Faults(error_rate=0.3, status=503, seed=1)  # cutouts only: none here
    assert BossSource.from_config(path, retry=FAST).bounds == Box.from_shape(SHAPE)


# -- the token stays secret ----------------------------------------------------------------------


def test_the_token_appears_in_no_message_repr_description_pickle_or_log(boss, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    path = write_config(tmp_path, boss.host)

    source = BossSource.from_config(path, retry=FAST)
    sink = BossSink.create(boss.host, TOKEN, "coll", "exp", {"out": "uint8"}, protocol="http",
                           retry=FAST)
    config = BossConfig.from_file(path)
    texts += [repr(source), source.describe(), repr(sink), sink.describe(), repr(config),
              str(config), repr(config.token), str(vars(source)), str(attrs.asdict(config))]
    pickles = [pickle.dumps(source), cloudpickle.dumps(source), pickle.dumps(sink),
               pickle.dumps(config), cloudpickle.dumps(config)]
    source.read(source.bounds)  # used: its remote must not travel either
    pickles += [pickle.dumps(source), cloudpickle.dumps(source)]
    assert pickle.loads(pickles[-1]).config.token.reveal() == TOKEN

    boss.faults = Faults(error_rate=0.5, status=503, seed=2)  # retries, logged
    source.read(Box((0, 0, 0), (4, 4, 4)))
    boss.faults = Faults(error_rate=1.0, status=500)
    errors = []
    one = Box((0, 0, 0), (1, 1, 1))
    for call in (lambda: source.read(Box((0, 0, 0), (4, 4, 4))),
                 lambda: sink.write(one, {"out": np.ones(one.shape, np.uint8)}),
                 lambda: BossSource.from_config(write_config(tmp_path, boss.host, token="bad"))):
        with pytest.raises(ndf.NDFrameworkError) as info:
            call()
        errors.append(info.value)
    boss.faults = Faults()
    result = ndf.Pipeline(source, lambda data: 1 / 0, executor="serial",
                          load_entrypoints=False).run()
    texts += [str(result), repr(result.run)]
    texts += ["".join(traceback.format_exception(error)) for error in errors]
    texts.append(caplog.text)

    assert "retrying" in caplog.text  # the retries were logged, without the token
    for text in texts:
        assert TOKEN not in text
    for data in pickles:
        assert TOKEN.encode() not in data


def test_a_secret_compares_and_pickles_without_showing_itself():
    secret = Secret(TOKEN)
    assert secret == Secret(TOKEN) and secret != Secret("other")
    assert TOKEN not in repr(secret) and TOKEN not in f"{secret}"
    data = pickle.dumps(secret)
    assert TOKEN.encode() not in data and pickle.loads(data).reveal() == TOKEN
    assert pickle.dumps(secret) != data  # a fresh mask every time

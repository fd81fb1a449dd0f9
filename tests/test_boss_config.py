"""neurodata.cfg: parsing, local checks, checks against the server, and the token's secrecy.

Every error names the file, the key and the bad value; none contains the token.
"""

from __future__ import annotations

import http.server
import logging
import pickle
import socket
import re
import threading
import traceback

import attrs
import cloudpickle
import numpy as np
import pytest
import requests

import ndframework as ndf
from ndframework.boss import BossConfig, BossSink, BossSource, RetryPolicy, Secret
from ndframework.boss._messages import network_reason
from ndframework.bossemu import BossEmulator, Faults
from ndframework.bossemu.paths import ResourcePath
from ndframework.geometry import Box
from ndframework.plugins import logging as run_logging

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
        ((), r"\[Parallel\] resolution must be a non-negative integer \(0: the native "
             r"resolution\), got -1", {"resolution": "-1"}),
        ((), r"\[Default\] protocol = 'ftp': the protocol must be 'http' or 'https'",
         {"protocol": "ftp"}),
        ((), r"\[Default\] host = 'https://api.bossdb.io': give the host name alone",
         {"host": "https://api.bossdb.io"}),
        ((), r"\[Parallel\] collection = 'my coll': a BOSS collection name",
         {"collection": "my coll"}),
        ((), r"\[Parallel\] channels: channel 'em' is named twice", {"channels": "em, em"}),
        ((), r"\[Default\] token: the token .* must be a non-empty string without spaces",
         {"token": "two words"}),
        ((), r"\[Default\] host = 'api bossdb.io': the host must be a host name",
         {"host": "api bossdb.io"}),
        ((), r"\[Parallel\] channels = \(\): name at least one channel", {"channels": " , "}),
        ((), r"\[Parallel\] channels: 'e m' is not a channel name", {"channels": "em, e m"}),
        ((), r"\[Parallel\] x-range: not a key ndframework reads; did you mean \[Parallel\] "
             r"x_range\?", {"x-range": "0,10"}),
        ((), r"\[Parallel\] time_range: .* did you mean \[Parallel\] t_range\?",
         {"time_range": "0,1"}),
        (("channels",), r"\[Parallel\] channel: .* did you mean \[Parallel\] channels\?",
         {"channel": "em"}),
    ],
)
def test_file_errors_name_the_file_the_key_and_the_value(tmp_path, drop, key, values):
    path = write_config(tmp_path, drop=drop, **values)
    with pytest.raises(ndf.ConfigError) as info:
        BossConfig.from_file(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert re.search(key, message), message
    assert TOKEN not in message and "two words" not in message


def test_a_misspelt_or_misplaced_key_is_named_without_its_value(tmp_path):
    path = tmp_path / "neurodata.cfg"
    parallel = "[Parallel]\ncollection = coll\nexperiment = exp\nchannels = em\n"
    path.write_text(f"[Default]\nprotocol = http\nhost = h\ntokn = {TOKEN}\n{parallel}")
    with pytest.raises(ndf.ConfigError, match=r"\[Default\] tokn: .* did you mean \[Default\] "
                                              r"token\?") as info:
        BossConfig.from_file(path)
    path.write_text(f"[Default]\nprotocol = http\nhost = h\n{parallel}token = {TOKEN}\n")
    with pytest.raises(ndf.ConfigError, match=r"\[Parallel\] token: token belongs in the "
                                              r"\[Default\] section") as moved:
        BossConfig.from_file(path)
    path.write_text(f"[DEFAULT]\nprotocol = http\nhost = h\ntoken = {TOKEN}\n{parallel}")
    with pytest.raises(ndf.ConfigError, match=r"\[Default\] is missing \(sections found: "
                                              r"\[Parallel\], \[DEFAULT\] \(section names are "
                                              r"case-sensitive\)\)") as case:
        BossConfig.from_file(path)
    for error in (info.value, moved.value, case.value):
        assert str(error).startswith(str(path)) and TOKEN not in str(error)
    # Keys that resemble none of ndframework's are other tools' business.
    path.write_text(f"[Default]\nprotocol = http\nhost = h\ntoken = {TOKEN}\n{parallel}"
                    "workers = 8\n")
    assert BossConfig.from_file(path).channels == ("em",)


def test_a_missing_or_malformed_file_says_so_without_quoting_lines(tmp_path):
    with pytest.raises(ndf.ConfigError, match=r"no BOSS configuration file at"):
        BossConfig.from_file(tmp_path / "nope.cfg")
    path = tmp_path / "neurodata.cfg"
    path.write_text(f"[Default]\nprotocol = http\ntoken {TOKEN}\n")
    with pytest.raises(ndf.ConfigError, match=r"not a valid INI file \(line 3\)") as info:
        BossConfig.from_file(path)
    assert TOKEN not in str(info.value)
    path.write_bytes(b"[Default]\nhost = \xff\xfe\n")
    with pytest.raises(ndf.ConfigError, match=r"cannot read the BOSS configuration file .*"
                                              r"neurodata.cfg.*utf-8"):
        BossConfig.from_file(path)
    with pytest.raises(ndf.ConfigError, match=r"cannot read the BOSS configuration file"):
        BossConfig.from_file(tmp_path)  # a directory


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
    assert re.search(expected, message), message


def test_an_unknown_channel_is_a_channel_error(boss, tmp_path):
    with pytest.raises(ndf.ChannelError, match=r"'nope'.*'em', 'mask'"):
        BossSource.from_config(write_config(tmp_path, boss.host, channels="nope"))


def test_an_unsupported_datatype_names_the_channel_and_the_datatypes(boss, tmp_path, monkeypatch):
    # The BOSS stores uint32 channels too (bosscore/models.py), which intern 1.4.2 cannot
    # read: the source refuses such a channel before reading a block.
    boss.resources.create(ResourcePath(collection="coll", experiment="exp", channel="prob"),
                          {"datatype": "uint32", "type": "image"})
    message = config_error(write_config(tmp_path, boss.host, channels="em, prob"))
    assert message.startswith(f"{tmp_path / 'neurodata.cfg'}: [Parallel] channels")
    assert "'prob'" in message and "uint32" in message and "uint8, uint16, uint64" in message


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


@pytest.mark.timeout(20)
def test_an_unreachable_host_says_so_within_the_timeout(tmp_path):
    host = f"127.0.0.1:{closed_port()}"
    path = write_config(tmp_path, host)
    message = config_error(path, timeout=1.0)  # bounded by the test's timeout, not hanging
    assert message.startswith(f"{path}: [Default] host = '{host}': cannot reach the BOSS")
    assert "connection refused" in message and "1 s to connect" in message


@pytest.mark.parametrize("text, reason", [
    ("[Errno -3] Temporary failure in name resolution", "temporary failure in name resolution"),
    ("NameResolutionError: Failed to resolve 'x.invalid'", "failed to resolve"),
    ("[Errno 8] nodename nor servname provided, or not known", "nodename nor servname"),
])
def test_a_host_name_that_does_not_resolve_says_so(text, reason):
    error = requests.ConnectionError(f"Max retries exceeded with url: /v1/ (Caused by {text})")
    assert network_reason(error) == f"connection failed: {reason}"


@pytest.mark.timeout(20)
def test_a_server_that_never_answers_times_out(tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        message = config_error(write_config(tmp_path, host), timeout=(1.0, 0.3))
    assert f"host = '{host}'" in message and "timed out waiting for an answer" in message


@pytest.mark.timeout(20)
def test_a_frozen_boss_is_reported_within_the_read_timeout(boss, tmp_path):
    boss.faults = Faults(frozen=True)  # accepts every connection, never answers
    message = config_error(write_config(tmp_path, boss.host), timeout=(1.0, 0.3))
    assert "cannot reach the BOSS" in message and "timed out waiting for an answer" in message
    assert boss.stats.unanswered == 1


class _NotABoss(http.server.BaseHTTPRequestHandler):
    """Another web server: 404 (or 200) with an HTML page to every request."""

    protocol_version = "HTTP/1.1"

    def _answer(self):
        self.server.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b"<html><body><h1>Not Found</h1>" + b"<p>nothing here</p>" * 200 + b"</body></html>"
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def not_a_boss():
    """A web server on 127.0.0.1 that is no BOSS; set its ``status`` (404 by default)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotABoss)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.mark.parametrize("status, answer", [
    (404, "answered HTTP 404 to listing collections, which every BOSS API serves"),
    (200, "answered a metadata request with something other than JSON"),
])
@pytest.mark.parametrize("make", ["source", "sink"])
def test_a_host_that_is_no_boss_is_a_one_line_config_error(
    not_a_boss, tmp_path, status, answer, make
):
    not_a_boss.status, not_a_boss.requests = status, 0
    host = f"127.0.0.1:{not_a_boss.server_address[1]}"
    path = write_config(tmp_path, host)
    with pytest.raises(ndf.ConfigError) as info:
        if make == "source":
            BossSource.from_config(path, retry=FAST)
        else:
            BossSink.from_config(path, {"out": "uint8"}, create=True, retry=FAST)
    message = str(info.value)
    assert message.startswith(
        f"{path}: [Default] host = '{host}': the server at http://{host} does not look like a "
        f"BOSS API: it {answer}"
    ), message
    assert "\n" not in message and "<html>" not in message and TOKEN not in message
    assert len(traceback.format_exception(info.value)) < 40  # once 15,000 lines, recursing
    assert not_a_boss.requests <= 3


def test_server_trouble_during_validation_is_retried(boss, tmp_path):
    path = write_config(tmp_path, boss.host)
    # the 3rd and 4th requests fail; metadata requests too, not only cutouts
    boss.faults = Faults(error_rate=0.3, status=503, seed=2, every_request=True)
    source = BossSource.from_config(
        path, retry=RetryPolicy(max_attempts=4, base_delay=0.001)
    )
    assert source.bounds == Box.from_shape(SHAPE) and boss.stats.injected == 2
    boss.faults = Faults(error_rate=1.0, status=502, every_request=True)
    with pytest.raises(ndf.DataAccessError) as info:
        BossSource.from_config(path, retry=RetryPolicy(max_attempts=3, base_delay=0.001))
    assert str(info.value).startswith(f"the BOSS at http://{boss.host} kept failing while "
                                      f"checking coll/exp (3 attempts)")
    assert "502" in str(info.value) and TOKEN not in str(info.value)


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


@pytest.fixture
def every_logger_at_debug(caplog):
    """caplog, recording DEBUG and up from every logger: those that set their own level and
    those that do not propagate to the root included."""
    caplog.set_level(logging.DEBUG)
    isolated = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
            if not logger.propagate:
                logger.addHandler(caplog.handler)
                isolated.append(logger)
    yield caplog
    for logger in isolated:
        logger.removeHandler(caplog.handler)


def fail_one_block(data, block):
    if block.box.start[0] == 16:
        raise RuntimeError(f"block {block.key} is beyond repair")
    return {"out": data["em"] // 2}


def test_a_pipeline_run_shows_the_token_in_no_log_line_error_repr_or_report(
    boss, tmp_path, every_logger_at_debug
):
    caplog = every_logger_at_debug
    path = write_config(tmp_path, boss.host, channels="em", y_range="0,32")
    source = BossSource.from_config(
        path, retry=RetryPolicy(max_attempts=8, base_delay=0.001)
    )
    sink = BossSink.from_config(path, {"out": "uint8"}, create=True, retry=FAST)
    boss.faults = Faults(error_rate=0.2, status=503, seed=7)  # retries, logged

    class HoldsTheSource(ndf.FunctionProcessor):  # its parameters go into the fingerprint
        def __init__(self):
            super().__init__(fail_one_block, pass_block=True)
            self.source = source

    def pipeline():
        return ndf.Pipeline(
            source, HoldsTheSource(), executor=ndf.ThreadExecutor(2), sink=sink,
            plugins=[run_logging], load_entrypoints=False, journal=tmp_path / "run.sqlite",
        )

    plan = pipeline().plan()
    result = pipeline().run()
    assert not result.ok and list(result.failed) == ["16_0_0"] and result.done == ("0_0_0",)
    boss.faults = Faults(error_rate=1.0, status=503)  # a run that stops on a data error
    with pytest.raises(ndf.DataAccessError) as info:
        pipeline().run()
    stopped = info.value
    texts = [
        str(plan), repr(plan), result.summary(), repr(result), str(result),
        str(stopped), repr(stopped), "".join(traceback.format_exception(stopped)),
        stopped.result.summary(), repr(stopped.result),
    ]
    for failure in [*result.failed.values(), *stopped.result.failed.values()]:
        texts += [failure.error, failure.traceback or ""]
    records = caplog.records
    texts += [record.getMessage() for record in records]
    texts.append(caplog.text)  # formatted, with any exception text

    names = {record.name for record in records}
    assert {"ndframework.run", "ndframework.boss", "urllib3.connectionpool"} <= names
    assert any("retrying" in record.getMessage() for record in records)
    assert any("beyond repair" in text for text in texts)
    texts += [result.to_json(), stopped.result.to_json()]
    for text in texts:
        assert TOKEN not in text
    journal = ndf.Journal.read(tmp_path / "run.sqlite")
    assert "HoldsTheSource" in journal.fingerprint()["processor"]
    journal.close()
    for file in tmp_path.glob("run.sqlite*"):  # the journal and its write-ahead log
        assert TOKEN.encode() not in file.read_bytes(), file


def test_a_secret_compares_and_pickles_without_showing_itself():
    secret = Secret(TOKEN)
    assert secret == Secret(TOKEN) and secret != Secret("other")
    assert TOKEN not in repr(secret) and TOKEN not in f"{secret}"
    data = pickle.dumps(secret)
    assert TOKEN.encode() not in data and pickle.loads(data).reveal() == TOKEN
    assert pickle.dumps(secret) != data  # a fresh mask every time


def test_a_config_at_resolution_1_reads_the_downsampled_level(tmp_path):
    """Ranges are in the level's voxels, checked against its extent (x and y halved,
    boss-tools activities/resolution_hierarchy.py); the level is built by the emulator's
    downsample service, as the BOSS's (boss django/bossspatialdb/views.py ``Downsample``)."""
    patches = np.random.default_rng(4).integers(1, 2**40, (20, 20, 24), dtype=np.uint64)
    labels = np.repeat(np.repeat(patches, 2, axis=1), 2, axis=2)  # constant on 2 x 2 in y, x
    with BossEmulator(token=TOKEN) as boss:
        boss.create_volume("coll", "exp", {"seg": labels}, num_hierarchy_levels=2)
        response = requests.post(f"{boss.url}/v1/downsample/coll/exp/seg/", timeout=30,
                                 headers={"Authorization": f"Token {TOKEN}"})
        assert response.status_code == 201 and boss.wait_for_downsamples(timeout=60)
        path = write_config(tmp_path, boss.host, channels="seg", resolution="1",
                            x_range="3,24", y_range="0,17", z_range="2,20")
        source = BossSource.from_config(path, retry=FAST)
        assert source.bounds == Box((2, 0, 3), (20, 17, 24))
        read = source.read(source.bounds)["seg"]
        np.testing.assert_array_equal(read, patches[2:20, 0:17, 3:24])
        path = write_config(tmp_path, boss.host, channels="seg", resolution="1")
        assert re.search(r"y_range = 0,40: outside the coordinate frame 'coll_exp' of coll/exp, "
                         r"whose y range at resolution 1 is 0,20", config_error(path))

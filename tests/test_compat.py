"""Nd-Multicore's entry points over a neurodata.cfg, with the real intern client against
the BOSS emulator."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from intern.utils.parallel import block_compute

import ndframework as ndf
from ndframework.bossemu import BossEmulator, Faults
from ndframework.compat import Block, compute_blocks, get_boss_resource, run_parallel

pytestmark = pytest.mark.timeout(120)

TOKEN = "compat-test-token-3b91"
FAST = ndf.RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.005)
SHAPE = (12, 40, 50)  # z, y, x


@pytest.fixture
def volume():
    rng = np.random.default_rng(7)
    return {"em": rng.integers(0, 256, SHAPE, dtype=np.uint8),
            "syn": rng.integers(0, 2**16, SHAPE, dtype=np.uint16)}


@pytest.fixture
def boss(volume):
    with BossEmulator(token=TOKEN) as emulator:
        emulator.create_volume("coll", "exp", volume)
        yield emulator


def write_config(path, boss, ranges="x_range = 5,45\ny_range = 0,40\nz_range = 2,12"):
    path.write_text(textwrap.dedent(f"""
        [Default]
        protocol = {boss.protocol}
        host = {boss.host}
        token = {TOKEN}

        [Parallel]
        collection = coll
        experiment = exp
        channels = em, syn
    """) + ranges + "\n")
    return path


def record_sum(data):
    """Nd-Multicore style: the function gets {channel: ZYX array}."""
    assert sorted(data) == ["em", "syn"] and data["em"].ndim == 3
    if int(data["em"][0, 0, 0]) % 5 == 0:
        raise ValueError("this block is skipped")
    return None


def test_run_parallel_returns_keys_in_block_order_and_none_for_skipped(boss, volume, tmp_path):
    config = write_config(tmp_path / "neurodata.cfg", boss)
    keys = run_parallel(str(config), record_sum, cpus=2, block_size=(20, 16, 4), retry=FAST)
    # intern's block_compute is the oracle of the blocks; z, y, x order is the block order
    starts = sorted((z[0], y[0], x[0]) for x, y, z in
                    block_compute(5, 45, 0, 40, 2, 12, (0, 0, 0), (20, 16, 4)))
    expected = [None if int(volume["em"][start]) % 5 == 0 else "_".join(map(str, start))
                for start in starts]
    assert keys == expected
    assert None in keys and any(keys), "the data exercise both the skip and the keep path"


def test_run_parallel_default_block_size_is_one_block_here(boss, tmp_path):
    config = write_config(tmp_path / "neurodata.cfg", boss, ranges="")
    keys = run_parallel(config, lambda data: data["em"].shape, cpus=1, retry=FAST)
    assert keys == ["0_0_0", "10_0_0"]  # (1000, 1000, 10) in x, y, z over the 12×40×50 frame


def test_a_data_access_failure_ends_run_parallel(boss, tmp_path):
    config = write_config(tmp_path / "neurodata.cfg", boss)
    boss.faults = Faults(error_rate=1.0, status=503)
    with pytest.raises(ndf.DataAccessError, match=r"data access failed for block") as info:
        run_parallel(config, lambda data: None, cpus=2, block_size=(20, 16, 4), retry=FAST)
    assert TOKEN not in str(info.value)
    assert info.value.result.not_run, "the run ended before the last block"


def test_a_bad_config_is_refused_before_any_block(boss, tmp_path):
    config = write_config(tmp_path / "neurodata.cfg", boss, ranges="x_range = 5,4000")
    with pytest.raises(ndf.ConfigError, match=r"x_range"):
        run_parallel(config, lambda data: None, retry=FAST)


@pytest.mark.parametrize("block_size", [(0, 10, 10), (10, 10), (1.5, 2, 2)])
def test_a_bad_block_size_names_it(boss, tmp_path, block_size):
    config = write_config(tmp_path / "neurodata.cfg", boss)
    with pytest.raises(ndf.GeometryError, match=r"block_size \(x, y, z\)"):
        run_parallel(config, lambda data: None, block_size=block_size, retry=FAST)


def test_get_boss_resource_and_compute_blocks_match_block_compute(boss, volume, tmp_path):
    resource = get_boss_resource(write_config(tmp_path / "neurodata.cfg", boss), retry=FAST)
    assert (resource.x_range, resource.y_range, resource.z_range) == ([5, 45], [0, 40], [2, 12])
    assert resource.requested_channels == ["em", "syn"]
    assert sorted(resource.channels) == ["em", "syn"]
    cutout = resource.get_cutout("syn", [2, 4], [10, 20], [5, 8])
    np.testing.assert_array_equal(cutout, volume["syn"][2:4, 10:20, 5:8])

    blocks = compute_blocks(resource, (16, 16, 4))
    assert all(isinstance(b, Block) and b.data is None for b in blocks)
    ours = {((b.x_start, b.x_end), (b.y_start, b.y_end), (b.z_start, b.z_end)) for b in blocks}
    assert ours == set(block_compute(5, 45, 0, 40, 2, 12, (0, 0, 0), (16, 16, 4)))
    assert [b.key for b in blocks] == sorted(
        (b.key for b in blocks), key=lambda k: tuple(map(int, k.split("_"))))
    with pytest.raises(ndf.ChannelError, match=r"unknown channel 'dapi'"):
        resource.get_cutout("dapi", [2, 4], [10, 20], [5, 8])


def test_the_token_appears_nowhere(boss, tmp_path, caplog, capsys):
    caplog.set_level("DEBUG")
    config = write_config(tmp_path / "neurodata.cfg", boss)
    resource = get_boss_resource(config, retry=FAST)
    keys = run_parallel(config, lambda data: None, cpus=2, block_size=(20, 16, 4), retry=FAST,
                        progress=True)
    assert all(keys)
    captured = capsys.readouterr()
    texts = [repr(resource), repr(resource.source), captured.out, captured.err,
             *(record.getMessage() for record in caplog.records)]
    assert not [text for text in texts if TOKEN in text]


def save_block(out, data, block):
    """Nd-Multicore style, with the block: saves its result under the block's key."""
    np.save(out / f"{block.key}.npy", data["em"].astype(np.uint32) + data["syn"])
    return {"em": data["em"]}  # Nd-Multicore dropped what the function returned


def test_run_parallel_passes_the_block_to_a_function_of_two_arguments(boss, volume, tmp_path):
    config = write_config(tmp_path / "neurodata.cfg", boss)
    keys = run_parallel(str(config), functools.partial(save_block, tmp_path), cpus=2,
                        block_size=(20, 40, 5), retry=FAST)
    # ranges x 5:45, y 0:40, z 2:12 on the grid through 0
    assert keys == ["2_0_5", "2_0_20", "2_0_40", "5_0_5", "5_0_20", "5_0_40",
                    "10_0_5", "10_0_20", "10_0_40"]
    whole = volume["em"].astype(np.uint32) + volume["syn"]
    for key in keys:
        z, y, x = map(int, key.split("_"))
        saved = np.load(tmp_path / f"{key}.npy")
        z_stop, x_stop = min((z // 5 + 1) * 5, 12), min((x // 20 + 1) * 20, 45)
        np.testing.assert_array_equal(saved, whole[z:z_stop, y:40, x:x_stop])


def test_an_nd_multicore_script_without_the_main_guard_runs_every_block(boss, volume,
                                                                        tmp_path):
    write_config(tmp_path / "neurodata.cfg", boss)
    script = tmp_path / "nd_multicore_job.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import ndframework as ndf

        def job(data, block):
            np.save(f"{block.key}.npy", data["em"].max(axis=0))

        print(ndf.run_parallel("neurodata.cfg", job, cpus=2, block_size=(20, 20, 5)))
    """))
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                               timeout=120, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    keys = ast.literal_eval(completed.stdout.strip())
    assert len(keys) == 3 * 2 * 3 and None not in keys  # z, y, x blocks
    for key in keys:
        z, y, x = map(int, key.split("_"))
        expected = volume["em"][z:min((z // 5 + 1) * 5, 12), y:y + 20,
                                x:min((x // 20 + 1) * 20, 45)].max(axis=0)
        np.testing.assert_array_equal(np.load(tmp_path / f"{key}.npy"), expected)

"""The ``ndframework`` command: demo, plan, run; bad input in one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ndframework as ndf
from ndframework.cli import main
from test_storage import write_zarr


@pytest.fixture
def volume_path(tmp_path, volume):
    return write_zarr(tmp_path / "volume.zarr", volume, (0, 0, 0), chunks=(5, 8, 10))


@pytest.fixture
def processor_file(tmp_path):
    path = tmp_path / "analysis.py"
    path.write_text(textwrap.dedent("""
        import numpy as np
        import ndframework as ndf

        class Double(ndf.BlockProcessor):
            channels = ("em",)

            def process(self, data, block):
                return {"double": data["em"].astype(np.uint16) * 2}

        def fail_on_first(data):
            raise RuntimeError("no good")

        class NeedsModel(ndf.BlockProcessor):
            def setup(self):
                raise FileNotFoundError("model.pt")

            def process(self, data, block):
                return 1
    """))
    return path


def test_demo_reads_a_boss_emulator_with_worker_processes_and_checks_itself(tmp_path, capsys):
    status = main(["demo", "--shape", "32,128,128", "--executor", "processes", "--workers", "2",
                   "--workdir", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "BOSS emulator: http://127.0.0.1:" in out and "source:      BossSource(" in out
    assert "output and counts equal numpy's on the whole volume: yes" in out
    assert "OK: 2 done, 0 failed" in out
    token = [line for line in (tmp_path / "neurodata.cfg").read_text().splitlines()
             if line.startswith("token = ")][0].split(" = ")[1]
    assert token not in out


def test_demo_on_a_zarr_store(tmp_path, capsys):
    status = main(["demo", "--source", "zarr", "--shape", "16,128,128", "--executor", "threads",
                   "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "zarr store:" in out and "equal numpy's on the whole volume: yes" in out


def test_plan_describes_the_run(volume_path, processor_file, capsys):
    status = main(["plan", str(volume_path), "--processor", f"{processor_file}:Double",
                   "--block-shape", "5,8,10", "--halo", "1", "--executor", "serial"])
    out = capsys.readouterr().out
    assert status == 0
    assert "blocks:      12 of shape (5, 8, 10)" in out
    assert "halo:        before (1, 1, 1), after (1, 1, 1)" in out


def test_run_writes_outputs_and_reports(volume_path, processor_file, volume, tmp_path, capsys):
    output = tmp_path / "double.zarr"
    status = main(["run", str(volume_path), "--processor", f"{processor_file}:Double",
                   "--block-shape", "5,8,10", "--output", str(output),
                   "--output-channel", "double:uint16", "--executor", "threads",
                   "--workers", "2", "--no-progress"])
    assert status == 0, capsys.readouterr()
    assert "OK: 12 done" in capsys.readouterr().out
    written = ndf.ZarrSource(output).read(ndf.ZarrSource(output).bounds)["double"]
    np.testing.assert_array_equal(written, volume["em"].astype(np.uint16) * 2)


def test_failed_blocks_exit_with_status_one(volume_path, processor_file, capsys):
    status = main(["run", str(volume_path), "--processor", f"{processor_file}:fail_on_first",
                   "--block-shape", "10,24,20", "--executor", "serial", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 1
    assert "NOT OK: 0 done, 1 failed" in out and "RuntimeError: no good" in out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["demo", "--workers", "0"], "workers must be a positive integer, got 0"),
        (["plan", "{volume}", "--processor", "no_such_module_xyz:P"],
         "cannot import 'no_such_module_xyz'"),
        (["plan", "{volume}", "--processor", "{file}:Nope"], "has no attribute 'Nope'"),
        (["plan", "{volume}", "--processor", "nocolon"], "--processor must be MODULE:NAME"),
        (["plan", "{volume}", "--processor", "{file}:Double", "--channels", "dapi"],
         "unknown channel 'dapi'"),
        (["plan", "{volume}", "--processor", "{file}:Double", "--block-shape", "0,8,8"],
         "block_shape must be positive in every axis, got (0, 8, 8)"),
        (["plan", "{volume}", "--processor", "{file}:Double", "--bounds", "0:99,0:8,0:8"],
         "lie outside the source bounds"),
        (["plan", "{missing}", "--processor", "{file}:Double"], "no zarr store at"),
        (["plan", "{volume}", "--processor", "{broken}:P"],
         "cannot import '{broken}': SyntaxError"),
        (["run", "{volume}", "--processor", "{file}:Double", "--output", "{missing}"],
         "does not exist; give --output-channel NAME:DTYPE to create it"),
        (["run", "{volume}", "--processor", "{file}:Double", "--output-channel", "a:uint8"],
         "--output-channel needs --output PATH"),
    ],
)
def test_bad_input_is_one_line_without_a_traceback(arguments, message, volume_path,
                                                     processor_file, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def oops(:\n")
    filled = [a.format(volume=volume_path, file=processor_file, missing=tmp_path / "nope.zarr",
                       broken=broken) for a in arguments]
    message = message.format(broken=broken)
    completed = subprocess.run([sys.executable, "-m", "ndframework.cli", *filled],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2, completed.stderr
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--block-shape", "a,b"], "expected three integers z,y,x, got 'a,b'"),
        (["--bounds", "5:0,0:8,0:8"], "argument --bounds: Box stop must not be below start "
                                      "in any axis, got start=(5, 0, 0), stop=(0, 8, 8)"),
        (["--bounds", "0:5"], "expected z0:z1,y0:y1,x0:x1, got '0:5'"),
    ],
)
def test_argument_syntax_errors_show_usage_and_exit_with_status_two(arguments, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["plan", "v.zarr", "--processor", "m:P", *arguments])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].endswith(message) and "Traceback" not in err


def test_plan_creates_nothing_on_disk(volume_path, processor_file, tmp_path, capsys):
    output = tmp_path / "out.zarr"
    status = main(["plan", str(volume_path), "--processor", f"{processor_file}:Double",
                   "--output", str(output), "--output-channel", "double:uint16"])
    assert status == 0 and not output.exists()


def test_run_over_unaligned_bounds_then_again_into_the_same_output(
    volume_path, processor_file, volume, tmp_path, capsys
):
    output = tmp_path / "out.zarr"
    common = [str(volume_path), "--processor", f"{processor_file}:Double", "--block-shape",
              "5,8,10", "--output", str(output), "--executor", "processes", "--workers", "2",
              "--no-progress"]
    assert main(["run", *common, "--output-channel", "double:uint16",
                 "--bounds", "0:10,4:24,0:20"]) == 0
    assert main(["run", *common, "--bounds", "0:10,0:4,0:20"]) == 0  # reuses the store
    written = ndf.ZarrSource(output).read(ndf.ZarrSource(output).bounds)["double"]
    np.testing.assert_array_equal(written, volume["em"].astype(np.uint16) * 2)
    status = main(["run", *common, "--output-channel", "double:uint8"])
    assert status == 2
    assert "exists with channels double:uint16, not double:uint8" in capsys.readouterr().err


def test_a_failing_setup_exits_with_status_one(volume_path, processor_file, capsys):
    status = main(["run", str(volume_path), "--processor", f"{processor_file}:NeedsModel",
                   "--executor", "serial", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    assert "setup() failed" in err and "FileNotFoundError: model.pt" in err
    assert "Traceback" not in err


def test_run_reads_a_boss_volume_named_by_a_neurodata_cfg(processor_file, volume, tmp_path,
                                                          capsys):
    from ndframework.boss.emulator import BossEmulator

    with BossEmulator(token="cli-token-77") as boss:
        boss.create_volume("coll", "exp", volume)
        config = tmp_path / "neurodata.cfg"
        config.write_text(f"[Default]\nprotocol = http\nhost = {boss.host}\n"
                          f"token = cli-token-77\n\n[Parallel]\ncollection = coll\n"
                          f"experiment = exp\nchannels = em\n")
        output = tmp_path / "double.zarr"
        status = main(["run", str(config), "--processor", f"{processor_file}:Double",
                       "--output", str(output), "--output-channel", "double:uint16",
                       "--executor", "processes", "--workers", "2", "--no-progress"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "cli-token-77" not in out + err
    written = ndf.ZarrSource(output).read(ndf.ZarrSource(output).bounds)["double"]
    np.testing.assert_array_equal(written, volume["em"].astype(np.uint16) * 2)


def test_the_boss_emulator_command_is_wired(capsys):
    completed = subprocess.run([sys.executable, "-m", "ndframework.cli", "boss-emulator",
                                "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    assert "--token" in completed.stdout and "--demo" in completed.stdout

"""The ``ndframework`` command: demo, plan, run, status; bad input in one line, no
traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ndframework as ndf
from ndframework.cli import main
import test_plan
from processors import Announcements
from test_plan import BOSS_TOKEN
from test_storage import write_zarr

boss = test_plan.boss  # a fixture: the BOSS emulator of test_plan


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

        class Total(ndf.BlockProcessor):
            def process(self, data, block):
                return int(data["em"].sum())

            def reduce(self, results):
                return sum(results.values())

        class FailOnOne(Total):
            def process(self, data, block):
                if block.key == "5_8_10":
                    raise RuntimeError("bad block 5_8_10")
                return super().process(data, block)

        class ExitsOnOne(Total):
            def process(self, data, block):
                if block.key == "0_8_10":
                    exit(3)
                return super().process(data, block)

        class Declared(Double):
            outputs = {"double": "uint16"}

        class Owned(ndf.BlockProcessor):
            def process(self, data, block):
                return block.crop(data["em"]).astype(np.int64).ravel()

            def reduce(self, results):
                return np.concatenate(list(results.values()))

        class Sums(ndf.BlockProcessor):
            def process(self, data, block):
                return int(data["em"].sum())

        def returns_arrays(data):
            return {"double": data["em"] * 2}
    """))
    return path


def run_args(volume_path, processor_file, name, *more):
    return ["run", str(volume_path), "--processor", f"{processor_file}:{name}",
            "--block-shape", "5,8,10", "--executor", "serial", "--no-progress", *more]


def test_demo_reads_a_boss_emulator_with_worker_processes_and_checks_itself(tmp_path, capsys):
    status = main(["demo", "--shape", "64,128,128", "--executor", "processes", "--workers", "2",
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
    events = tmp_path / "demo.jsonl"
    status = main(["demo", "--source", "zarr", "--shape", "16,128,128", "--executor", "threads",
                   "--progress-interval", "5", "--events", str(events)])
    out, err = capsys.readouterr()
    assert status == 0, out
    assert "zarr store:" in out and "equal numpy's on the whole volume: yes" in out
    assert "ndframework: 1/1 blocks (100.0%), 0 failed" in err
    assert [json.loads(line)["event"] for line in events.read_text().splitlines()] == [
        "run_start", "block_done", "run_end"]


def test_the_demo_names_a_bad_source():
    from ndframework.demo import run_demo

    with pytest.raises(ndf.ConfigError, match=r"source must be 'boss' or 'zarr', got 'dvid'"):
        run_demo("serial", source="dvid")


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
    out = capsys.readouterr().out
    assert "OK: 12 done" in out
    assert "reduced" not in out  # the blocks return no value: nothing to show
    written = ndf.ZarrSource(output).read(ndf.ZarrSource(output).bounds)["double"]
    np.testing.assert_array_equal(written, volume["em"].astype(np.uint16) * 2)


def test_failed_blocks_exit_with_status_one(volume_path, processor_file, capsys):
    status = main(["run", str(volume_path), "--processor", f"{processor_file}:fail_on_first",
                   "--block-shape", "10,24,20", "--executor", "serial", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 1
    assert "NOT OK: 0 done, 1 failed" in out and "RuntimeError: no good" in out


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_exit_called_in_a_block_fails_that_block_and_the_run_goes_on(
    volume_path, processor_file, executor, capsys
):
    arguments = run_args(volume_path, processor_file, "ExitsOnOne")
    arguments[arguments.index("serial")] = executor
    status = main(arguments)
    out = capsys.readouterr().out
    assert status == 1
    assert "NOT OK: 11 done, 1 failed" in out and "failed 0_8_10" in out
    assert "SystemExit: 3" in out


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
    from ndframework.bossemu import BossEmulator

    with BossEmulator(token="cli-token-77") as emulator:
        emulator.create_volume("coll", "exp", volume)
        config = tmp_path / "neurodata.cfg"
        config.write_text(f"[Default]\nprotocol = http\nhost = {emulator.host}\n"
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


@pytest.mark.parametrize("command", ["demo", "plan", "run", "status", "boss-emulator"])
def test_every_command_has_help_with_examples(command, capsys):
    try:
        status = main([command, "--help"])
    except SystemExit as exit_:
        status = exit_.code
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith(f"usage: ndframework {command}")
    examples = out[out.index("\nexamples:\n") + 1:].splitlines()[1:]
    assert examples[0].startswith(f"  ndframework {command}")
    assert "--log-level" in out
    if command != "boss-emulator":
        assert "--debug" in out
    else:
        assert "--token" in out and "--demo" in out


def test_the_boss_emulator_keeps_its_demo_in_a_store_across_restarts(tmp_path, capsys):
    """``--demo`` loads the demo volume once; started again on the same ``--store``, the
    emulator serves what it kept instead of failing on the existing experiment."""
    from bossapi_calls import EmulatorProcess
    from intern.remote.boss import BossRemote

    command = [sys.executable, "-m", "ndframework.cli", "boss-emulator"]
    reads = []
    for run in range(2):
        emulator = EmulatorProcess("--store", str(tmp_path / "store"), "--demo",
                                   token="cli-emulator-token", log=tmp_path / f"{run}.log",
                                   command=command)
        try:
            assert "demo data:" in emulator.banner
            remote = BossRemote({"protocol": "http", "host": emulator.host,
                                 "token": "cli-emulator-token"})
            channel = remote.get_channel("em", "demo", "synthetic")
            reads.append(remote.get_cutout(channel, 0, [0, 64], [0, 64], [0, 8]))
        finally:
            emulator.stop()
        assert emulator.process.returncode in (0, -signal.SIGTERM)
    assert reads[0].any()
    np.testing.assert_array_equal(reads[0], reads[1])
    # a store whose demo was deleted keeps its names taken: a one-line error, no traceback
    from ndframework.bossemu import BossEmulator

    with BossEmulator(token="t", store=tmp_path / "store") as emulator:
        remote = emulator.remote()
        for name in ("em", "mask"):
            remote.delete_project(remote.get_channel(name, "demo", "synthetic"))
        remote.delete_project(remote.get_experiment("demo", "synthetic"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["boss-emulator", "--port", "0", "--store", str(tmp_path / "store"), "--token",
              "t", "--demo"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert "holds a deleted demo/synthetic" in err, err


# -- keeping what a run computed: --journal, --report, status ---------------------------------

def test_a_rerun_with_the_same_journal_skips_every_block(volume_path, processor_file, volume,
                                                          tmp_path, capsys):
    arguments = run_args(volume_path, processor_file, "Total", "--journal",
                         str(tmp_path / "run.sqlite"))
    assert main(arguments) == 0
    total = int(volume["em"].sum())
    out = capsys.readouterr().out
    assert "OK: 12 done, 0 failed, 0 skipped" in out and f"reduced: {total}" in out
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "OK: 0 done, 0 failed, 12 skipped, 0 not run" in out
    assert f"reduced: {total}" in out  # from the values the journal kept


def test_a_failed_block_exits_one_and_status_shows_its_error(volume_path, processor_file,
                                                            tmp_path, capsys):
    journal = str(tmp_path / "run.sqlite")
    assert main(run_args(volume_path, processor_file, "FailOnOne", "--journal", journal)) == 1
    out = capsys.readouterr().out
    assert "NOT OK: 11 done, 1 failed" in out and "RuntimeError: bad block 5_8_10" in out
    assert f"ndframework status {journal}" in out

    assert main(["status", journal]) == 1
    out = capsys.readouterr().out
    assert "processor:  analysis.FailOnOne\n" in out and "bounds:     [0:10, 0:24, 0:20]" in out
    assert "blocks:     11 done, 1 failed" in out
    assert re.search(r"1\. .* serial \(1 worker\), [0-9.]+ s: ran to the end", out)
    failures = out[out.index("failed blocks:"):out.index("slowest blocks")]
    assert "5_8_10  after 1 attempt(s)" in failures
    assert "RuntimeError: bad block 5_8_10" in failures
    slowest = out[out.index("slowest blocks"):].splitlines()[1:]
    assert len(slowest) == 5 and all(" = " in line for line in slowest)

    assert main(["status", journal, "--traceback", "5_8_10"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError("bad block 5_8_10")' in out
    assert main(["status", journal, "--traceback", "0_0_0"]) == 2
    assert "block '0_0_0' is done, not failed" in capsys.readouterr().err


def test_status_lists_twenty_failures_then_how_many_more(volume_path, processor_file,
                                                        tmp_path, capsys):
    journal = str(tmp_path / "run.sqlite")
    arguments = ["run", str(volume_path), "--processor", f"{processor_file}:fail_on_first",
                 "--block-shape", "1,4,10", "--executor", "serial", "--no-progress",
                 "--journal", journal, "--max-failures", "0"]
    assert main(arguments) == 1
    capsys.readouterr()
    assert main(["status", journal]) == 1
    out = capsys.readouterr().out
    assert out.count("RuntimeError: no good") == 20 and "  ... and 100 more" in out


def test_report_has_counts_the_reduced_value_and_every_block(volume_path, processor_file,
                                                             volume, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main(run_args(volume_path, processor_file, "Total", "--report", str(report))) == 0
    data = json.loads(report.read_text())
    assert data["ok"] is True and data["stopped"] is None
    assert data["counts"] == {"done": 12, "failed": 0, "skipped": 0, "not_run": 0}
    assert data["reduced"] == int(volume["em"].sum())
    assert len(data["blocks"]) == 12 and {b["status"] for b in data["blocks"]} == {"done"}


def test_max_failures_stops_a_run_early(volume_path, processor_file, tmp_path, capsys):
    report = tmp_path / "report.json"
    status = main(run_args(volume_path, processor_file, "fail_on_first", "--max-failures", "2",
                           "--report", str(report)))
    out = capsys.readouterr().out
    assert status == 1
    assert "NOT OK: 0 done, 2 failed, 0 skipped, 10 not run" in out
    assert "stopped: max_failures=2 reached" in out
    assert "reduced:" not in out
    assert json.loads(report.read_text())["stopped"].startswith("max_failures=2 reached")


def test_a_journal_of_another_run_is_refused_unless_restart(volume_path, processor_file,
                                                            tmp_path, capsys):
    journal = str(tmp_path / "run.sqlite")
    assert main(run_args(volume_path, processor_file, "Total", "--journal", journal)) == 0
    changed = run_args(volume_path, processor_file, "Total", "--journal", journal)
    changed[changed.index("5,8,10")] = "5,8,20"
    capsys.readouterr()
    status = main(changed)
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "records another run (tiler: " in err
    assert "block_shape=(5, 8, 10)" in err and "block_shape=(5, 8, 20)" in err
    assert "--restart" in err
    status = main([*changed, "--restart"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "OK: 6 done, 0 failed, 0 skipped" in out


def test_status_json_is_for_scripts(volume_path, processor_file, tmp_path, capsys):
    journal = str(tmp_path / "run.sqlite")
    main(run_args(volume_path, processor_file, "FailOnOne", "--journal", journal))
    main(run_args(volume_path, processor_file, "FailOnOne", "--journal", journal))
    capsys.readouterr()
    assert main(["status", journal, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {"done": 11, "failed": 1}
    assert data["fingerprint"]["processor"] == "analysis.FailOnOne"
    assert [s["stopped"] for s in data["sessions"]] == [None, None]
    assert all(s["ended"] >= s["started"] for s in data["sessions"])
    [failure] = data["failures"]
    assert failure["key"] == "5_8_10" and failure["error"] == "RuntimeError: bad block 5_8_10"
    assert failure["attempts"] == 1 and failure["all_attempts"] == 2
    assert "Traceback" in failure["traceback"] and data["more_failures"] == 0
    assert len(data["slowest"]) == 5
    assert data["slowest"][0]["total"] >= data["slowest"][-1]["total"]


def test_status_counts_the_blocks_a_stopped_run_never_tried(volume_path, processor_file,
                                                            tmp_path, capsys):
    journal = str(tmp_path / "run.sqlite")
    arguments = run_args(volume_path, processor_file, "fail_on_first", "--journal", journal,
                         "--max-failures", "1")
    arguments[arguments.index("5,8,10")] = "5,12,10"  # 2 x 2 x 2 blocks
    assert main(arguments) == 1
    assert "NOT OK: 0 done, 1 failed, 0 skipped, 7 not run" in capsys.readouterr().out
    assert main(["status", journal]) == 1
    out = capsys.readouterr().out
    assert "blocks:     0 done, 1 failed, 7 never tried, of 8\n" in out
    assert ": stopped, max_failures=1 reached" in out
    assert main(["status", journal, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {"done": 0, "failed": 1}
    assert data["block_count"] == 8 and data["never_tried"] == 7


def test_status_of_a_journal_without_a_block_count_does_not_guess(volume_path, processor_file,
                                                                  tmp_path, capsys):
    journal = str(tmp_path / "run.sqlite")
    assert main(run_args(volume_path, processor_file, "Total", "--journal", journal)) == 0
    with sqlite3.connect(journal) as connection:  # as journals were before they kept it
        connection.execute("DELETE FROM meta WHERE name = 'block_count'")
    connection.close()
    capsys.readouterr()
    assert main(["status", journal]) == 0
    assert "blocks:     12 done, 0 failed\n" in capsys.readouterr().out
    assert main(["status", journal, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["block_count"] is None and data["never_tried"] is None


@pytest.mark.parametrize("kind", ["text", "sqlite", "empty", "missing", "folder"])
def test_status_on_a_path_that_is_no_journal_is_one_line(kind, tmp_path, capsys):
    path = tmp_path / "thing"
    if kind == "text":
        path.write_text("not a journal\n" * 10)
    elif kind == "sqlite":
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE blocks (x)")
        connection.close()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    assert main(["status", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "journal" in err and str(path) in err
    if kind == "sqlite":  # left as it was: no write-ahead log turned on
        assert sorted(os.listdir(tmp_path)) == ["thing"]
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        connection.close()


SLOW_PROCESSOR = """
import time
import ndframework as ndf

class Slow(ndf.BlockProcessor):
    def process(self, data, block):
        time.sleep(0.3)
        with open({announcements!r}, "w") as pipe:  # the test waits for a few of these
            pipe.write(block.key + "\\n")
        return int(data["em"].sum())

    def reduce(self, results):
        return sum(results.values())
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("signum", "exit_status"),
                         [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_and_a_rerun_resumes_it(signum, exit_status, volume_path,
                                                       volume, tmp_path, capsys):
    name = signal.Signals(signum).name
    journal = str(tmp_path / "run.sqlite")
    slow = tmp_path / "slow.py"
    # open while blocks announce themselves, the rerun's too
    with Announcements(tmp_path / "announcements") as announcements:
        slow.write_text(SLOW_PROCESSOR.format(announcements=announcements.path))
        arguments = ["run", str(volume_path), "--processor", f"{slow}:Slow", "--block-shape",
                     "5,8,10", "--executor", "processes", "--workers", "2", "--journal",
                     journal, "--no-progress"]
        process = subprocess.Popen([sys.executable, "-m", "ndframework.cli", *arguments],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            announcements.wait(3, process)  # the run is under way
            process.send_signal(signum)
            out, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert process.returncode == exit_status, (out, err)
        assert "Traceback" not in err
        assert f"interrupted by {name}; rerun with the same --journal {journal} to resume" in err
        counts = re.search(r"NOT OK: (\d+) done, 0 failed, 0 skipped, (\d+) not run, of 12 "
                           r"blocks", out)
        assert counts, out
        done = int(counts[1])
        assert done >= 1 and done + int(counts[2]) == 12
        assert f"stopped: interrupted by {name}" in out

        assert main(["status", journal]) == 1  # blocks never tried: not finished
        assert f": stopped, interrupted by {name}" in capsys.readouterr().out
        arguments[arguments.index("processes")] = "threads"
        arguments[arguments.index("2")] = "4"
        assert main(arguments) == 0
    out = capsys.readouterr().out
    assert f"OK: {12 - done} done, 0 failed, {done} skipped, 0 not run" in out
    assert f"reduced: {int(volume['em'].sum())}" in out


@pytest.mark.parametrize("error_type", [ndf.DataAccessError, ndf.SetupError, ndf.WorkerError])
def test_a_run_stopped_by_an_error_prints_it_and_what_was_done(error_type, volume_path,
                                                               processor_file, monkeypatch,
                                                               capsys):
    info = ndf.RunInfo("id", ndf.Box((0, 0, 0), (10, 24, 20)), 12, ("em",), "source",
                       "Total", "serial")
    error = error_type("reading block 5_0_0 failed: ConnectionResetError")
    error.result = ndf.RunResult(info, ndf.RunCounts(done=3, not_run=9), None, 1.0,
                                 stopped="data access failed for block 5_0_0")

    def run(self):
        raise error

    monkeypatch.setattr(ndf.Pipeline, "run", run)
    assert main(run_args(volume_path, processor_file, "Total")) == 1
    out, err = capsys.readouterr()
    assert err == "ndframework run: error: reading block 5_0_0 failed: ConnectionResetError\n"
    assert "NOT OK: 3 done, 0 failed, 0 skipped, 9 not run" in out
    assert "stopped: data access failed for block 5_0_0" in out


# -- outputs, values, plugins and pictures ------------------------------------------------------

def block_sums(volume, shape=(5, 8, 10)):
    """``{key: em sum}`` of every block of ``shape`` over the volume, by numpy."""
    tiler = ndf.RegularTiler(shape)
    return {block.key: int(volume["em"][block.box.slices()].sum())
            for block in tiler.blocks(ndf.Box((0, 0, 0), volume["em"].shape))}


def test_arrays_need_an_output_store(volume_path, processor_file, volume, tmp_path, capsys):
    # declared outputs and no --output: refused before the run
    assert main(run_args(volume_path, processor_file, "Declared")) == 2
    assert capsys.readouterr().err == (
        f"ndframework run: error: --processor {processor_file}:Declared writes outputs "
        f"(double:uint16) and there is nowhere to write them: give --output PATH (a zarr "
        f"store, created with those channels)\n")
    # --output alone creates the store with the channels the processor declares
    output = tmp_path / "double.zarr"
    assert main(run_args(volume_path, processor_file, "Declared", "--output", str(output))) == 0
    source = ndf.ZarrSource(output)
    assert source.channels == ("double",) and source.chunk_shape == (5, 8, 10)
    np.testing.assert_array_equal(source.read(source.bounds)["double"],
                                  volume["em"].astype(np.uint16) * 2)
    # arrays returned by a processor that declares nothing, with no sink: the run stops at
    # the first block, a usage error
    capsys.readouterr()
    assert main(run_args(volume_path, processor_file, "returns_arrays")) == 2
    out, err = capsys.readouterr()
    assert "NOT OK: 0 done, 1 failed, 0 skipped, 11 not run" in out
    assert "failed 0_0_0 after 1 attempt(s): OutputError: process() returned 3-D arrays" in out
    assert ("ndframework run: error: block 0_0_0: OutputError: process() returned 3-D "
            "arrays") in err


def test_run_summarises_a_large_reduced_value(volume_path, processor_file, volume, capsys):
    assert main(run_args(volume_path, processor_file, "Owned")) == 0
    em = volume["em"].astype(np.int64)
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"reduced: array of shape ({em.size},), dtype int64: min {em.min()}, max {em.max()}, "
        f"sum {em.sum():,}")
    # the default reduce: {key: value} of every block, the first few shown
    assert main(run_args(volume_path, processor_file, "Sums")) == 0
    sums = block_sums(volume)
    first = ", ".join(f"{key!r}: {value}" for key, value in list(sums.items())[:5])
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"reduced: mapping of 12 entries: {{{first}, ...}}")


def test_status_shows_the_values_the_journal_keeps(volume_path, processor_file, volume,
                                                   tmp_path, capsys):
    journal = str(tmp_path / "run.sqlite")
    assert main(run_args(volume_path, processor_file, "Sums", "--journal", journal)) == 0
    sums = block_sums(volume)
    capsys.readouterr()
    assert main(["status", journal]) == 0
    first = ", ".join(f"{key}: {value}" for key, value in list(sums.items())[:3])
    assert f"values:     {first}, ...  (--values lists every block's)\n" in \
        capsys.readouterr().out
    assert main(["status", journal, "--values"]) == 0
    assert capsys.readouterr().out == "".join(f"{key}  {value}\n" for key, value in sums.items())
    assert main(["status", journal, "--json"]) == 0
    values = json.loads(capsys.readouterr().out)["values"]
    assert [(v["key"], v["value"]) for v in values] == list(sums.items())[:3]


def test_log_level_events_and_progress_lines(volume_path, processor_file, volume, tmp_path,
                                             capsys):
    events = tmp_path / "events.jsonl"
    arguments = run_args(volume_path, processor_file, "Sums", "--log-level", "info",
                         "--events", str(events), "--progress-interval", "0.01")
    arguments.remove("--no-progress")
    assert main(arguments) == 0
    err = capsys.readouterr().err
    assert re.search(r" INFO ndframework\.run: run \w+: 12 blocks of ZarrSource", err), err
    assert "ndframework: 12/12 blocks (100.0%), 0 failed" in err  # plain lines: no terminal
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["run_start"] + ["block_done"] * 12 + ["run_end"]
    assert {line["key"] for line in lines[1:-1]} == set(block_sums(volume))
    # the default level, WARNING, hides the INFO records
    assert main(run_args(volume_path, processor_file, "Sums")) == 0
    assert "INFO" not in capsys.readouterr().err


def test_plot_of_a_plan_and_of_a_journal(volume_path, processor_file, tmp_path, monkeypatch,
                                         capsys):
    journal = str(tmp_path / "run.sqlite")
    assert main(run_args(volume_path, processor_file, "FailOnOne", "--journal", journal)) == 1
    pictures = tmp_path / "plan.png", tmp_path / "status.png"
    arguments = ["plan", str(volume_path), "--processor", f"{processor_file}:Total",
                 "--block-shape", "5,8,10", "--executor", "serial"]
    assert main([*arguments, "--plot", str(pictures[0])]) == 0
    assert main(["status", journal, "--plot", str(pictures[1])]) == 1  # a block failed
    for picture in pictures:
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    for command in ([*arguments, "--plot", str(tmp_path / "p.png")],
                    ["status", journal, "--plot", str(tmp_path / "s.png")]):
        assert main(command) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.endswith(
            'error: --plot: plotting needs matplotlib, which is not installed: '
            'pip install "ndframework[plot]"\n')


def test_plan_warns_of_tiny_blocks_and_misaligned_writes(volume_path, processor_file, tmp_path,
                                                          capsys):
    arguments = ["plan", str(volume_path), "--processor", f"{processor_file}:Double",
                 "--block-shape", "5,8,5"]
    assert main(arguments) == 0  # processes, by default
    out = " ".join(capsys.readouterr().out.split())
    assert "warnings: 1 - blocks read 200 B on average: with the 'processes' executor" in out
    assert "requests: 24 chunk reads" in out
    output = tmp_path / "out.zarr"
    ndf.ZarrSink.create(output, {"double": "uint16"}, ndf.Box((0, 0, 0), (10, 24, 20)),
                        chunk_shape=(5, 8, 10))
    assert main([*arguments, "--executor", "serial", "--output", str(output)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("warnings: 1 - writes are not aligned to the sink's chunks: block 0_0_0 ends at "
            "x=5, inside a chunk of the sink (5, 8, 10)") in out


def test_plan_warns_of_blocks_over_the_boss_request_limit(boss, processor_file, tmp_path,
                                                           capsys):
    config = tmp_path / "neurodata.cfg"
    config.write_text(f"[Default]\nprotocol = http\nhost = {boss.host}\ntoken = {BOSS_TOKEN}\n\n"
                      f"[Parallel]\ncollection = big\nexperiment = frame\nchannels = em\n")
    assert main(["plan", str(config), "--processor", f"{processor_file}:Total",
                 "--block-shape", "64,4096,4096", "--executor", "threads"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "blocks: 8 of shape (64, 4096, 4096)" in out
    assert "requests: 256 cutout requests (to the BOSS" in out
    assert "- the largest block reads 1.0 GiB of channel 'em', over the BOSS's limit of" in out
    assert BOSS_TOKEN not in out


def test_status_says_when_values_cannot_be_read_here(volume_path, tmp_path, monkeypatch,
                                                     capsys):
    """Values of a class from a module imported by name are kept by reference to it: read
    where that module cannot be imported, status says so instead of failing."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "cli_values_module.py").write_text(textwrap.dedent("""
        import ndframework as ndf

        class Count:
            def __init__(self, n):
                self.n = n

        class Counts(ndf.BlockProcessor):
            def process(self, data, block):
                return Count(int(data["em"].sum()))
    """))
    journal = str(tmp_path / "run.sqlite")
    monkeypatch.chdir(work)
    assert main(["run", str(volume_path), "--processor", "cli_values_module:Counts",
                 "--executor", "serial", "--no-progress", "--journal", journal]) == 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "cli_values_module")
    capsys.readouterr()
    assert main(["status", journal]) == 0
    assert ("values:     cannot read the blocks' values here (ModuleNotFoundError: No module "
            "named 'cli_values_module'); run status where the processor's module can be "
            "imported\n") in capsys.readouterr().out
    assert main(["status", journal, "--values"]) == 1
    assert capsys.readouterr().err.startswith("ndframework status: error: cannot read the "
                                              "blocks' values here (ModuleNotFoundError")
    monkeypatch.chdir(work)  # where the run was: the module is found again
    assert main(["status", journal, "--values"]) == 0
    assert "<cli_values_module.Count object at" in capsys.readouterr().out


def test_log_level_shows_what_worker_processes_log(processor_file, volume, tmp_path):
    """BOSS requests retried inside worker processes are logged there, at the level the
    command was given."""
    from ndframework.bossemu import BossEmulator, Faults

    with BossEmulator(token="cli-token-78") as emulator:
        emulator.create_volume("coll", "exp", volume)
        emulator.faults = Faults(error_rate=0.5, status=503, seed=3)
        config = tmp_path / "neurodata.cfg"
        config.write_text(f"[Default]\nprotocol = http\nhost = {emulator.host}\n"
                          f"token = cli-token-78\n\n[Parallel]\ncollection = coll\n"
                          f"experiment = exp\nchannels = em\n")
        command = [sys.executable, "-m", "ndframework.cli", "run", str(config), "--processor",
                   f"{processor_file}:Total", "--block-shape", "5,8,10",
                   "--executor", "processes", "--workers", "2", "--no-progress"]
        quiet = subprocess.run(command, capture_output=True, text=True, timeout=120)
        loud = subprocess.run([*command, "--log-level", "INFO"], capture_output=True,
                              text=True, timeout=120)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "retrying in" not in quiet.stderr
    retried = [line for line in loud.stderr.splitlines() if "retrying in" in line]
    assert retried and all(" INFO ndframework.boss [worker " in line for line in retried)
    assert "cli-token-78" not in quiet.stdout + quiet.stderr + loud.stdout + loud.stderr


def test_the_report_holds_the_reduced_mapping_and_every_block_value_as_json(
        volume_path, processor_file, volume, tmp_path, capsys):
    # no reduce: the reduced value is the mapping of every block's value
    report = tmp_path / "report.json"
    lines = processor_file.read_text() + textwrap.dedent("""
        def stats(data):
            em = data["em"]
            return {"max": em.max(), "hist": np.bincount(em.ravel() % 4, minlength=4)}
    """)
    processor_file.write_text(lines)
    assert main(run_args(volume_path, processor_file, "stats", "--report", str(report))) == 0
    data = json.loads(report.read_text())
    blocks = {record["key"]: record["value"] for record in data["blocks"]}
    assert data["reduced"] == blocks and len(blocks) == 2 * 3 * 2
    for key, value in blocks.items():
        z, y, x = map(int, key.split("_"))
        em = volume["em"][z:z + 5, y:y + 8, x:x + 10]
        assert value == {"max": int(em.max()),
                         "hist": np.bincount(em.ravel() % 4, minlength=4).tolist()}


def test_a_failing_reduce_keeps_the_outputs_written_and_the_rerun_reduces_only(
        volume_path, volume, tmp_path, capsys):
    module = tmp_path / "doubling.py"
    module.write_text(textwrap.dedent("""
        import pathlib
        import numpy as np
        import ndframework as ndf

        class Doubling(ndf.BlockProcessor):
            channels = ("em",)
            outputs = {"double": "uint16"}

            def process(self, data, block):
                em = data["em"].astype(np.uint16)
                return ndf.BlockOutput({"double": em * 2}, value=int(em.sum()))

            def reduce(self, results):
                if not (pathlib.Path(__file__).parent / "fixed").exists():
                    raise ZeroDivisionError("a bug in reduce")
                return sum(results.values())
    """))
    output, journal = tmp_path / "double.zarr", tmp_path / "run.sqlite"
    arguments = ["run", str(volume_path), "--processor", f"{module}:Doubling", "--output",
                 str(output), "--journal", str(journal), "--block-shape", "5,8,10",
                 "--executor", "serial", "--no-progress"]
    assert main(arguments) == 1
    assert "a bug in reduce" in capsys.readouterr().err
    written = ndf.ZarrSource(output).read(ndf.ZarrSource(output).bounds)["double"]
    np.testing.assert_array_equal(written, volume["em"].astype(np.uint16) * 2)  # kept

    (tmp_path / "fixed").touch()  # the bug fixed
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "0 done, 0 failed, 12 skipped" in out
    assert f"reduced: {int(volume['em'].sum())}" in out


def test_an_output_removed_after_blocks_were_done_is_not_recreated_empty(
        volume_path, processor_file, tmp_path, capsys):
    output, journal = tmp_path / "double.zarr", tmp_path / "run.sqlite"
    arguments = ["run", str(volume_path), "--processor", f"{processor_file}:Double",
                 "--output", str(output), "--output-channel", "double:uint16", "--journal",
                 str(journal), "--block-shape", "5,8,10", "--executor", "serial",
                 "--no-progress"]
    assert main(arguments) == 0
    shutil.rmtree(output)
    capsys.readouterr()
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert (f"--output {str(output)!r} does not exist, but --journal {journal} records 12 "
            f"block(s) done") in err and "give --restart" in err
    assert not output.exists()
    assert main([*arguments, "--restart"]) == 0 and output.exists()

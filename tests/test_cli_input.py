"""The ``ndframework`` command on bad input: one or two lines naming the bad value, exit
status 2, no traceback (``--debug`` adds it), nothing left half-created; and finding the
user's processor: in the current folder, beside its file, in worker processes too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ndframework as ndf
from ndframework.cli import main
import test_cli
from test_cli import run_args

processor_file, volume_path = test_cli.processor_file, test_cli.volume_path  # fixtures

CONSTRUCTORS = """
import ndframework as ndf

class Segment(ndf.BlockProcessor):
    def __init__(self, threshold, model_path, *, sigma=1.0):
        self.threshold = threshold

    def process(self, data, block):
        return 1

class Refuses(ndf.BlockProcessor):
    def __init__(self):
        raise RuntimeError("no GPU here")

    def process(self, data, block):
        return 1

class NotAProcessor:
    pass

THRESHOLD = 3
"""


@pytest.fixture
def constructors(tmp_path):
    path = tmp_path / "constructors.py"
    path.write_text(CONSTRUCTORS)
    return path


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["demo", "--workers", "0"], "workers must be a positive integer, got 0"),
        (["plan", "{volume}", "--processor", "no_such_module_xyz:P"],
         "--processor: cannot import 'no_such_module_xyz': no module 'no_such_module_xyz' in "
         "the current folder"),
        (["plan", "{volume}", "--processor", "{file}:Nope"],
         "has no attribute 'Nope'; it defines Declared, Double, ExitsOnOne, FailOnOne, "
         "NeedsModel, Owned, Sums, Total, fail_on_first, returns_arrays"),
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
        (["plan", "{volume}", "--processor", "{file}:Double", "--halo", "1"],
         "--halo needs --block-shape"),
        (["run", "{volume}", "--processor", "{file}:Double", "--output", "{missing}"],
         "does not exist; give --output-channel NAME:DTYPE to create it"),
        (["run", "{volume}", "--processor", "{file}:Double", "--output-channel", "a:uint8"],
         "--output-channel needs --output PATH"),
        (["run", "{volume}", "--processor", "{file}:Total", "--restart"],
         "--restart needs --journal PATH"),
        (["run", "{volume}", "--processor", "{file}:Total", "--report", "{nowhere}/r.json"],
         "--report '{nowhere}/r.json': its folder '{nowhere}' does not exist"),
        (["run", "{volume}", "--processor", "{file}:Total", "--events", "{nowhere}/e.jsonl"],
         "--events '{nowhere}/e.jsonl': its folder '{nowhere}' does not exist"),
        (["plan", "{volume}", "--processor", "{file}:Total", "--plot", "{nowhere}/p.png"],
         "--plot: cannot write the plot '{nowhere}/p.png': the directory '{nowhere}' does not "
         "exist"),
        (["status", "{volume}", "--plot", "status.txt"],
         "--plot: cannot tell the image format of 'status.txt' from its suffix '.txt'"),
        (["run", "{volume}", "--processor", "{constructors}:Segment"],
         "Segment() needs arguments (threshold, model_path)"),
        (["run", "{volume}", "--processor", "{constructors}:Refuses"],
         "--processor {constructors}:Refuses: Refuses() raised RuntimeError: no GPU here"),
        (["run", "{volume}", "--processor", "{constructors}:NotAProcessor"],
         "NotAProcessor is a class, but not a BlockProcessor subclass"),
        (["run", "{volume}", "--processor", "{constructors}:THRESHOLD"],
         "THRESHOLD is int 3, not a BlockProcessor subclass, an instance of one, or a function"),
        (["status", "{volume}"], "journal"),
    ],
)
def test_bad_input_is_one_line_without_a_traceback(arguments, message, volume_path,
                                                     processor_file, constructors, tmp_path,
                                                     capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("def oops(:\n")
    names = dict(volume=volume_path, file=processor_file, missing=tmp_path / "nope.zarr",
                 broken=broken, nowhere=tmp_path / "nowhere", constructors=constructors)
    filled = [a.format(**names) for a in arguments]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["plan", "v.zarr", "--processor", "m:P", "--block-shape", "a,b"],
         "argument --block-shape: expected three integers z,y,x, got 'a,b'"),
        (["plan", "v.zarr", "--processor", "m:P", "--bounds", "5:0,0:8,0:8"],
         "argument --bounds: Box stop must not be below start in any axis, got "
         "start=(5, 0, 0), stop=(0, 8, 8)"),
        (["plan", "v.zarr", "--processor", "m:P", "--bounds", "0:5"],
         "argument --bounds: expected z0:z1,y0:y1,x0:x1, got '0:5'"),
        (["run", "v.zarr", "--processor", "m:P", "--output-channel", "out:uint77"],
         "argument --output-channel: channel 'out': 'uint77' is not a numpy dtype; valid: "
         "uint8, uint16"),
        (["run", "v.zarr", "--processor", "m:P", "--output-channel", "out:str"],
         "argument --output-channel: channel 'out': <U0 is not a number type"),
        (["run", "v.zarr", "--processor", "m:P", "--output-channel", "out"],
         "expected NAME:DTYPE, e.g. labels:uint16, got 'out'"),
        (["status", "j.sqlite", "--log-level", "LOUD"],
         "argument --log-level: expected one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"),
        (["run", "v.zarr", "--processor", "m:P", "--progress-interval", "0"],
         "argument --progress-interval: expected a positive number of seconds, got '0'"),
        (["run", "v.zarr", "--processor", "m:P", "--max-failures", "-1"],
         "argument --max-failures: expected an integer >= 0 (0: no limit), got '-1'"),
        (["run", "v.zarr", "--processor", "m:P", "--max-failures", "two"],
         "argument --max-failures: expected an integer >= 0 (0: no limit), got 'two'"),
        (["plan", "v.zarr", "--processor", "m:P", "--executor", "gpu"],
         "argument --executor: invalid choice: 'gpu'"),
    ],
)
def test_argument_errors_are_two_lines_and_exit_with_status_two(arguments, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(arguments)
    assert info.value.code == 2
    first, second = capsys.readouterr().err.strip().splitlines()
    assert first.startswith(f"ndframework {arguments[0]}: error: ") and message in first
    assert second == f"(see: ndframework {arguments[0]} --help)"


def test_a_bad_log_level_for_the_emulator_is_two_lines(capsys):
    assert main(["boss-emulator", "--log-level", "chatty", "--token", "t"]) == 2
    first, second = capsys.readouterr().err.strip().splitlines()
    assert first == ("ndframework boss-emulator: error: argument --log-level: expected one of "
                     "DEBUG, INFO, WARNING, ERROR, got 'chatty'")


def test_a_bad_dtype_exits_two_and_creates_nothing(volume_path, processor_file, tmp_path,
                                                   capsys):
    """Exit status 2, no traceback, no store left behind."""
    output = tmp_path / "out.zarr"
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(volume_path), "--processor", f"{processor_file}:Double", "--output",
              str(output), "--output-channel", "out:uint77"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert "Traceback" not in err and len(err.splitlines()) == 2
    assert "'uint77' is not a numpy dtype" in err
    assert not output.exists() and out == ""


def test_debug_adds_the_traceback(volume_path, constructors, capsys):
    arguments = ["run", str(volume_path), "--processor", f"{constructors}:Refuses"]
    assert main([*arguments, "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError("no GPU here")' in err  # the cause, from the user's file
    assert err.strip().splitlines()[-1] == (
        f"ndframework run: error: --processor {constructors}:Refuses: Refuses() raised "
        f"RuntimeError: no GPU here")


def test_a_constructor_needing_arguments_says_how_to_pass_an_instance(volume_path,
                                                                     constructors, capsys):
    assert main(["run", str(volume_path), "--processor", f"{constructors}:Segment"]) == 2
    assert capsys.readouterr().err == (
        f"ndframework run: error: --processor {constructors}:Segment: Segment() needs "
        f"arguments (threshold, model_path), and --processor makes an instance of a class "
        f"without arguments; define one in {constructors} at module level, e.g. "
        f"segment = Segment(threshold=..., model_path=...), and give --processor "
        f"{constructors}:segment\n")
    # as the message says
    with constructors.open("a") as file:
        file.write("segment = Segment(threshold=3, model_path='model.pt')\n")
    assert main(["run", str(volume_path), "--processor", f"{constructors}:segment",
                 "--executor", "serial", "--no-progress"]) == 0


# -- nothing half-created --------------------------------------------------------------------

def test_a_store_the_run_created_is_removed_when_no_block_was_done(volume_path, processor_file,
                                                                   tmp_path, capsys):
    journal = str(tmp_path / "run.sqlite")
    output = tmp_path / "out.zarr"
    assert main(run_args(volume_path, processor_file, "Total", "--journal", journal)) == 0
    # the journal records another run: refused after the store was created, which goes
    refused = run_args(volume_path, processor_file, "Double", "--journal", journal,
                       "--output", str(output), "--output-channel", "double:uint16")
    assert main(refused) == 2
    assert "records another run" in capsys.readouterr().err
    assert not output.exists()
    # a failing setup() stops the run before any block is done
    assert main(run_args(volume_path, processor_file, "NeedsModel", "--output", str(output),
                         "--output-channel", "x:uint8")) == 1
    assert "setup() failed" in capsys.readouterr().err
    assert not output.exists()
    # an output store that existed before is never removed
    ndf.ZarrSink.create(output, {"double": "uint16"}, ndf.Box((0, 0, 0), (10, 24, 20)),
                        chunk_shape=(5, 8, 10))
    assert main(refused) == 2
    assert output.is_dir() and (output / "double").is_dir()
    # a run that did blocks keeps the store it made
    shutil.rmtree(output)
    assert main([*refused, "--restart"]) == 0
    assert output.is_dir()


def test_a_misaligned_output_store_is_refused_before_it_is_created(volume_path, processor_file,
                                                                   tmp_path, capsys):
    output = tmp_path / "out.zarr"
    # the store's chunks follow the blocks' shape (5, 8, 10), on a grid through the source's
    # start; blocks of an existing store with other chunks are refused before the run
    ndf.ZarrSink.create(output, {"double": "uint16"}, ndf.Box((0, 0, 0), (10, 24, 20)),
                        chunk_shape=(5, 8, 20))
    arguments = run_args(volume_path, processor_file, "Double", "--output", str(output))
    arguments[arguments.index("serial")] = "threads"
    assert main(arguments) == 2
    assert "inside a chunk of the sink (chunk shape (5, 8, 20)" in capsys.readouterr().err
    assert output.is_dir()


# -- finding the processor ---------------------------------------------------------------------

HELPER_MODULE = "SCALE = {scale}\n"
PROCESSOR_MODULE = """
import numpy as np
import ndframework as ndf
import {helper}

class Scaled(ndf.BlockProcessor):
    channels = ("em",)
    outputs = {{"scaled": "uint16"}}

    def process(self, data, block):
        return {{"scaled": data["em"].astype(np.uint16) * {helper}.SCALE}}
"""


def write_modules(folder: Path, name: str, scale: int) -> None:
    """``{name}.py``, a processor that imports ``{name}_helper.py`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}_helper.py").write_text(HELPER_MODULE.format(scale=scale))
    (folder / f"{name}.py").write_text(PROCESSOR_MODULE.format(helper=f"{name}_helper"))


def scaled(output: Path) -> np.ndarray:
    source = ndf.ZarrSource(output)
    return source.read(source.bounds)["scaled"]


def test_a_module_in_the_current_folder_is_found(volume_path, volume, tmp_path, monkeypatch,
                                                 capsys):
    write_modules(tmp_path / "work", "cli_cwd_module", scale=3)
    monkeypatch.chdir(tmp_path / "work")
    path_before = list(sys.path)
    output = tmp_path / "scaled.zarr"
    # no --output-channel: the store is created with the channels the processor declares
    assert main(["run", str(volume_path), "--processor", "cli_cwd_module:Scaled", "--output",
                 str(output), "--block-shape", "5,8,10", "--executor", "serial",
                 "--no-progress"]) == 0
    np.testing.assert_array_equal(scaled(output), volume["em"].astype(np.uint16) * 3)
    assert sys.path == path_before  # the command leaves the import path as it found it


@pytest.mark.timeout(120)
def test_modules_are_found_by_worker_processes(volume_path, volume, tmp_path):
    """A module found in the current folder is sent to worker processes by name, and a file
    imports a module beside it: the workers import both, as the command did."""
    command = shutil.which("ndframework", path=os.path.dirname(sys.executable)) or ""
    # the console script, as users start it: unlike `python -m`, it does not put the
    # current folder on the import path
    launcher = [command] if command else [sys.executable, "-m", "ndframework.cli"]
    cases = [("cli_cwd_workers:Scaled", tmp_path / "here", 4),
             (str(tmp_path / "lib" / "cli_file_workers.py") + ":Scaled", tmp_path, 5)]
    write_modules(tmp_path / "here", "cli_cwd_workers", scale=4)
    write_modules(tmp_path / "lib", "cli_file_workers", scale=5)
    for number, (spec, folder, scale) in enumerate(cases):
        output = tmp_path / f"scaled{number}.zarr"
        completed = subprocess.run(
            [*launcher, "run", str(volume_path), "--processor", spec, "--output", str(output),
             "--block-shape", "5,8,10", "--executor", "processes", "--workers", "2",
             "--no-progress"], cwd=folder, capture_output=True, text=True, timeout=100,
            env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"})
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert "OK: 12 done" in completed.stdout
        np.testing.assert_array_equal(scaled(output), volume["em"].astype(np.uint16) * scale)


def test_a_module_that_fails_to_import_is_named_with_its_error(volume_path, tmp_path,
                                                               monkeypatch, capsys):
    (tmp_path / "cli_needs_scipy_xyz.py").write_text("import not_installed_xyz\n")
    monkeypatch.chdir(tmp_path)
    assert main(["plan", str(volume_path), "--processor", "cli_needs_scipy_xyz:P"]) == 2
    assert capsys.readouterr().err == (
        "ndframework plan: error: --processor: cannot import 'cli_needs_scipy_xyz': "
        "ModuleNotFoundError: No module named 'not_installed_xyz'\n")


def test_an_output_channel_given_twice_is_refused(volume_path, processor_file, tmp_path, capsys):
    output = tmp_path / "out.zarr"
    status = main(run_args(volume_path, processor_file, "Double", "--output", str(output),
                           "--output-channel", "double:uint8", "--output-channel",
                           "double:uint16"))
    assert status == 2 and not output.exists()
    assert capsys.readouterr().err == (
        "ndframework run: error: --output-channel names 'double' more than once "
        "(double:uint8 and double:uint16); give each channel once\n")


@pytest.mark.parametrize("option", ["--events", "--report", "--journal"])
def test_a_folder_given_for_a_file_is_refused_before_the_run(volume_path, processor_file,
                                                            tmp_path, capsys, option):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(run_args(volume_path, processor_file, "Total", option, str(folder))) == 2
    out, err = capsys.readouterr()
    assert err == f"ndframework run: error: {option} {str(folder)!r} is a folder; give a " \
                  f"file's path\n"
    assert out == ""  # nothing ran

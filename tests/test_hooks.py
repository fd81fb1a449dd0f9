"""Hooks: called in order, once per block, from given plugins and from entry points."""

from __future__ import annotations

import io
import logging
import sys
import textwrap

import pytest

import ndframework as ndf
from processors import FailOn


class Recorder:
    def __init__(self):
        self.calls = []

    @ndf.hookimpl
    def ndf_before_run(self, run):
        self.calls.append(("before_run", run.block_count))

    @ndf.hookimpl
    def ndf_before_block(self, run, block):
        self.calls.append(("before_block", block.key))

    @ndf.hookimpl
    def ndf_after_block(self, run, block, outcome):
        assert outcome.key == block.key and outcome.ok
        self.calls.append(("after_block", block.key))

    @ndf.hookimpl
    def ndf_on_block_error(self, run, block, outcome):
        assert outcome.key == block.key and not outcome.ok and outcome.error
        self.calls.append(("block_error", block.key))

    @ndf.hookimpl
    def ndf_after_run(self, run, result):
        self.calls.append(("after_run", len(result.done), len(result.failed)))


def test_hooks_are_called_once_per_block_in_order(executor, source):
    recorder = Recorder()
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    keys = [block.key for block in tiler.blocks(source.bounds)]
    result = ndf.Pipeline(source, FailOn([keys[3]]), tiler=tiler, executor=executor,
                          plugins=[recorder]).run()
    calls = recorder.calls
    assert calls[0] == ("before_run", 8)
    assert calls[-1] == ("after_run", 7, 1)
    block_calls = calls[1:-1]
    for key in keys:
        mine = [name for name, *rest in block_calls if rest == [key]]
        expected_end = "block_error" if key == keys[3] else "after_block"
        assert mine == ["before_block", expected_end], key
    befores = [rest[0] for name, *rest in block_calls if name == "before_block"]
    assert befores == keys, "blocks are handed out in tiling order"
    assert result.failed.keys() == {keys[3]}


def test_after_run_is_called_when_a_run_stops_on_a_data_error(volume):
    from processors import BrokenSource

    recorder = Recorder()
    source = BrokenSource(volume, ndf.Box((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ndf.DataAccessError):
        ndf.Pipeline(source, lambda d: 1, tiler=ndf.RegularTiler(5), executor="serial",
                     plugins=[recorder]).run()
    assert recorder.calls[-1] == ("after_run", 0, 1)
    assert ("block_error", "0_0_0") in recorder.calls


def test_a_misspelt_hook_is_refused_naming_the_valid_hooks(source):
    class Typo:
        @ndf.hookimpl
        def ndf_before_blok(self, run, block):
            pass

    with pytest.raises(ndf.PluginError, match=r"ndf_before_blok.*the hooks are: ndf_after_block"):
        ndf.Pipeline(source, lambda d: 1, executor="serial", plugins=[Typo()]).run()


def test_a_hook_with_an_unknown_argument_is_refused(source):
    class Wrong:
        @ndf.hookimpl
        def ndf_before_block(self, run, block, extra):
            pass

    with pytest.raises(ndf.PluginError, match=r"extra"):
        ndf.Pipeline(source, lambda d: 1, executor="serial", plugins=[Wrong()]).run()


def test_plugins_from_the_entry_point_group_are_loaded(source, tmp_path, monkeypatch):
    package = tmp_path / "ndf_test_plugin.py"
    package.write_text(textwrap.dedent("""
        import ndframework as ndf
        SEEN = []

        @ndf.hookimpl
        def ndf_after_block(run, block, outcome):
            SEEN.append(block.key)
    """))
    dist = tmp_path / "ndf_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ndf-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ndframework]\nrecorder = ndf_test_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tiler = ndf.RegularTiler((10, 24, 20), origin=source.bounds.start)
    ndf.Pipeline(source, lambda d: 1, tiler=tiler, executor="serial").run()
    assert sys.modules["ndf_test_plugin"].SEEN == ["0_100_200"]
    seen_before = list(sys.modules["ndf_test_plugin"].SEEN)
    ndf.Pipeline(source, lambda d: 1, tiler=tiler, executor="serial",
                 load_entrypoints=False).run()
    assert sys.modules["ndf_test_plugin"].SEEN == seen_before


def test_the_built_in_logging_plugin_comes_from_the_entry_point_group(source, caplog):
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="ndframework")}
    assert "logging" in names, "install the package (pip install -e .) to register it"
    caplog.set_level(logging.DEBUG, logger="ndframework.run")
    tiler = ndf.RegularTiler((5, 24, 20), origin=source.bounds.start)
    ndf.Pipeline(source, FailOn(["5_100_200"]), tiler=tiler, executor="serial").run()
    messages = [record.getMessage() for record in caplog.records]
    assert any("2 blocks of InMemorySource" in m for m in messages)
    assert any("block 0_100_200 done" in m for m in messages)
    assert any("block 5_100_200 failed: ValueError" in m for m in messages)
    assert any("NOT OK: 1 done, 1 failed" in m for m in messages)


def test_the_progress_bar_counts_blocks_done_and_failed(source):
    stream = io.StringIO()
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    ndf.Pipeline(source, FailOn(["0_100_200"]), tiler=tiler, executor="threads",
                 plugins=[ndf.ProgressBar(file=stream, mininterval=0)]).run()
    final = stream.getvalue().splitlines()[-1]  # not a terminal: plain lines, no bar
    assert final.startswith("ndframework: 8/8 blocks (100.0%), 1 failed, ")
    assert "blocks/s" in final


def test_an_entry_point_plugin_that_fails_to_load_is_named(source, tmp_path, monkeypatch):
    dist = tmp_path / "ndf_broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ndf-broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ndframework]\nbroken = ndf_no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ndf.PluginError, match=r"loading plugins from the 'ndframework' "
                                              r"entry-point group failed: .*ndf_no_such_module"):
        ndf.Pipeline(source, lambda d: 1, executor="serial").run()


def test_a_plugin_class_given_instead_of_an_instance_is_explained(source):
    with pytest.raises(ndf.ConfigError, match=r"takes plugin objects, got the class "
                                              r"ProgressBar: its hooks are methods, called on "
                                              r"an instance; pass ProgressBar\(...\) instead"):
        ndf.Pipeline(source, lambda data: 0, plugins=[ndf.ProgressBar])
    with pytest.raises(ndf.ConfigError, match=r"plugins must be a list of plugin objects"):
        ndf.Pipeline(source, lambda data: 0, plugins=ndf.ProgressBar())

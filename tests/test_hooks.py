"""Hooks: called in order, once per block, from given plugins and from entry points."""

from __future__ import annotations

import inspect
import io
import logging
import os
import re
import signal
import sys
import textwrap
import typing
from pathlib import Path

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
    def ndf_on_blocks_skipped(self, run, keys):
        self.calls.append(("blocks_skipped", tuple(keys), len(keys)))

    @ndf.hookimpl
    def ndf_on_block_retry(self, run, block, outcome, attempt, reason):
        self.calls.append(("block_retry", block.key, attempt, reason, outcome.error))

    @ndf.hookimpl
    def ndf_on_run_stopped(self, run, result, reason, error):
        assert reason == result.stopped
        self.calls.append(("run_stopped", reason, error))

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
    assert {name for name, *_ in block_calls} == {"before_block", "after_block", "block_error"}
    assert result.failed.keys() == {keys[3]}


def test_a_run_stopped_by_an_error_tells_the_plugins_the_error_it_raises(volume):
    from processors import BrokenSource

    recorder = Recorder()
    source = BrokenSource(volume, ndf.Box((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ndf.DataAccessError) as raised:
        ndf.Pipeline(source, lambda d: 1, tiler=ndf.RegularTiler(5), executor="serial",
                     plugins=[recorder]).run()
    assert ("block_error", "0_0_0") in recorder.calls
    (_, reason, error), after_run = recorder.calls[-2:]
    assert after_run == ("after_run", 0, 1)
    assert error is raised.value and error.result.stopped == reason
    assert reason == "data access failed for block 0_0_0"


def test_a_run_stopped_at_max_failures_tells_the_plugins_why_with_no_error(source):
    recorder = Recorder()
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    keys = [block.key for block in tiler.blocks(source.bounds)]
    result = ndf.Pipeline(source, FailOn(keys[:2]), tiler=tiler, executor="serial",
                          max_failures=2, plugins=[recorder]).run()
    assert result.stopped.startswith("max_failures=2 reached")
    assert recorder.calls[-2:] == [("run_stopped", result.stopped, None), ("after_run", 0, 2)]


class InterruptOnSecondBlock(ndf.BlockProcessor):
    """Sends SIGINT to this process, as Ctrl-C would, while its second block runs."""

    def setup(self):
        self.calls = 0

    def process(self, data, block):
        self.calls += 1
        if self.calls == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return 1


def test_an_interrupted_run_tells_the_plugins_the_interruption_it_raises(source):
    recorder = Recorder()
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    with pytest.raises(ndf.RunInterrupted) as raised:
        ndf.Pipeline(source, InterruptOnSecondBlock(), tiler=tiler, executor="serial",
                     plugins=[recorder]).run()
    name, reason, error = recorder.calls[-2]
    assert (name, reason) == ("run_stopped", "interrupted by SIGINT")
    assert error is raised.value and error.result.counts.done == 2
    assert recorder.calls[-1] == ("after_run", 2, 0)


def test_a_resumed_run_tells_the_plugins_once_which_blocks_it_skips(source, tmp_path):
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    keys = [block.key for block in tiler.blocks(source.bounds)]
    journal = tmp_path / "run.sqlite"
    first = Recorder()
    ndf.Pipeline(source, FailOn([keys[2]]), tiler=tiler, executor="serial", journal=journal,
                 plugins=[first]).run()
    assert not [call for call in first.calls if call[0] == "blocks_skipped"]
    again = Recorder()
    result = ndf.Pipeline(source, FailOn([keys[2]]), tiler=tiler, executor="serial",
                          journal=journal, plugins=[again]).run()
    done_before = tuple(key for key in keys if key != keys[2])
    assert again.calls == [("before_run", 8), ("blocks_skipped", done_before, 7),
                           ("before_block", keys[2]), ("block_error", keys[2]),
                           ("after_run", 0, 1)]
    assert tuple(result.skipped) == done_before


class FailFirstTry(ndf.BlockProcessor):
    """Fails the first try of the blocks in ``keys`` with a TimeoutError, which it names
    in ``retry_on``."""

    retry_on = (TimeoutError,)

    def __init__(self, keys):
        self.keys = set(keys)

    def setup(self):
        self.tried = set()

    def process(self, data, block):
        if block.key in self.keys and block.key not in self.tried:
            self.tried.add(block.key)
            raise TimeoutError(f"slow server for {block.key}")
        return 1


def test_a_retried_try_comes_with_its_attempt_and_reason_between_the_blocks_hooks(source):
    recorder = Recorder()
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    key = next(iter(tiler.blocks(source.bounds))).key
    result = ndf.Pipeline(source, FailFirstTry([key]), tiler=tiler, executor="serial",
                          plugins=[recorder]).run()
    assert result.ok and result.attempts[key] == 2
    mine = [call for call in recorder.calls if key in call]
    assert mine == [("before_block", key),
                    ("block_retry", key, 1, "retry_on", f"TimeoutError: slow server for {key}"),
                    ("after_block", key)]


def test_plugins_are_called_in_pluggy_order_with_wrappers_around_them(source):
    calls = []

    class Plain:
        def __init__(self, name):
            self.name = name

        @ndf.hookimpl
        def ndf_after_block(self, block):
            calls.append(self.name)

    class First:
        @ndf.hookimpl(tryfirst=True)
        def ndf_after_block(self):
            calls.append("first")

    class Last:
        @ndf.hookimpl(trylast=True)
        def ndf_after_block(self):
            calls.append("last")

    class Around:
        @ndf.hookimpl(wrapper=True)
        def ndf_after_block(self, block):
            calls.append("around: in")
            yield
            calls.append("around: out")

    tiler = ndf.RegularTiler((10, 24, 20), origin=source.bounds.start)  # one block
    plugins = [Last(), Plain("a"), First(), Plain("b")]
    ndf.Pipeline(source, lambda d: 1, tiler=tiler, executor="serial", plugins=plugins).run()
    assert calls == ["first", "b", "a", "last"]  # the last given first, tryfirst before it
    calls.clear()
    ndf.Pipeline(source, lambda d: 1, tiler=tiler, executor="serial",
                 plugins=[*plugins, Around()]).run()
    assert calls == ["around: in", "first", "b", "a", "last", "around: out"]


def test_the_facade_has_a_method_per_hook_taking_its_arguments_by_keyword():
    from ndframework import _hooks, hookspecs

    specs = {name: spec for name, spec in vars(hookspecs).items() if name.startswith("ndf_")}
    methods = {name for name, value in vars(_hooks.Hooks).items()
               if callable(value) and not name.startswith("_")} - {"errors"}
    assert methods == {name.removeprefix("ndf_") for name in specs}
    for name, spec in specs.items():
        parameters = list(inspect.signature(getattr(_hooks.Hooks, name[4:])).parameters.values())
        assert parameters[0].name == "self"
        assert [(p.name, p.kind) for p in parameters[1:]] == [
            (argument, inspect.Parameter.KEYWORD_ONLY)
            for argument in inspect.signature(spec).parameters], name


def test_every_hook_spec_says_when_where_each_argument_and_the_return_value():
    from ndframework import hookspecs

    for name, spec in vars(hookspecs).items():
        if not name.startswith("ndf_"):
            continue
        doc = inspect.getdoc(spec)
        assert "Runs in the coordinating process; the return value is ignored." in doc, name
        described, section = [], doc.split("Parameters\n----------\n")[1]
        for line in section.splitlines():
            if match := re.fullmatch(r"(\w+) : \S.*", line):
                described.append(match[1])
        assert described == list(inspect.signature(spec).parameters), name
        assert doc.startswith("Called "), name


def test_the_plugins_page_documents_every_hook_with_exactly_its_arguments():
    from ndframework import hookspecs

    page = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    documented = {}
    for line in page.splitlines():
        if match := re.match(r"\| `(ndf_\w+)` \| `([\w, ]*)` \|", line):
            documented[match[1]] = match[2].split(", ")
    specs = {name: list(inspect.signature(spec).parameters)
             for name, spec in vars(hookspecs).items() if name.startswith("ndf_")}
    assert documented == specs
    assert set(re.findall(r"\bndf_\w+", page)) <= set(specs), "no hook that does not exist"
    assert typing.get_args(hookspecs.RetryReason) == hookspecs.RETRY_REASONS
    for reason in hookspecs.RETRY_REASONS:
        assert f'`"{reason}"`' in page, reason


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


def test_the_entry_point_group_is_read_once_per_process(source, tmp_path, monkeypatch):
    from ndframework import _published

    reads = []

    def entry_points(**selection):
        reads.append(selection)
        return real(**selection)

    real = _published.entry_points
    monkeypatch.setattr(_published, "entry_points", entry_points)
    monkeypatch.setattr(_published, "_read", {})
    for _ in range(3):
        assert ndf.Pipeline(source, lambda d: 1, executor="serial").run().ok
    assert reads == [{"group": "ndframework"}]
    monkeypatch.syspath_prepend(str(tmp_path))  # somewhere new to find packages in
    ndf.Pipeline(source, lambda d: 1, executor="serial").run()
    ndf.Pipeline(source, lambda d: 1, executor="serial", load_entrypoints=False).run()
    assert len(reads) == 2


def test_the_built_in_logging_plugin_is_there_without_the_entry_point_group(source, caplog):
    caplog.set_level(logging.DEBUG, logger="ndframework.run")
    tiler = ndf.RegularTiler((5, 24, 20), origin=source.bounds.start)
    ndf.Pipeline(source, FailOn(["5_100_200"]), tiler=tiler, executor="serial",
                 load_entrypoints=False).run()
    messages = [record.getMessage() for record in caplog.records]
    assert any("2 blocks of InMemorySource" in m for m in messages)
    assert any("block 0_100_200 done" in m for m in messages)
    assert any("block 5_100_200 failed: ValueError" in m for m in messages)
    assert any("NOT OK: 1 done, 1 failed" in m for m in messages)
    assert len(messages) == 4, "registered once, also where an old install's metadata " \
                               "still lists it in the entry-point group"


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
    message = (r"cannot load the plugin 'broken' \(ndf_no_such_module_xyz\) that "
               r"ndf-broken-plugin 1.0 publishes in the 'ndframework' entry-point group: "
               r"ModuleNotFoundError: No module named 'ndf_no_such_module_xyz'; fix or "
               r"uninstall it, or pass Pipeline\(load_entrypoints=False\)")
    for _ in range(2):  # not remembered as found: refused again
        with pytest.raises(ndf.PluginError, match=message):
            ndf.Pipeline(source, lambda d: 1, executor="serial").run()
    assert ndf.Pipeline(source, lambda d: 1, executor="serial",
                        load_entrypoints=False).run().ok


def test_a_plugin_class_given_instead_of_an_instance_is_explained(source):
    with pytest.raises(ndf.ConfigError, match=r"takes plugin objects, got the class "
                                              r"ProgressBar: its hooks are methods, called on "
                                              r"an instance; pass ProgressBar\(...\) instead"):
        ndf.Pipeline(source, lambda data: 0, plugins=[ndf.ProgressBar])
    with pytest.raises(ndf.ConfigError, match=r"plugins must be a list of plugin objects"):
        ndf.Pipeline(source, lambda data: 0, plugins=ndf.ProgressBar())

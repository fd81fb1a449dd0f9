"""The event log: one JSON object per line for the run's start and end and each block,
agreeing with the run's result, appended to by a resumed run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import attrs
import pytest

import ndframework as ndf
from processors import CrashOn, FailOn


def read_events(path):
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


class FailFirstTry(ndf.BlockProcessor):
    """Fails the first try of the blocks in ``keys`` with a TimeoutError, which it names in
    ``retry_on`` (a marker file remembers the try)."""

    retry_on = (TimeoutError,)

    def __init__(self, folder, keys):
        self.folder = str(folder)
        self.keys = set(keys)

    def process(self, data, block):
        marker = Path(self.folder, f"tried-{block.key}")
        if block.key in self.keys and not marker.exists():
            marker.touch()
            raise TimeoutError(f"block {block.key} timed out")
        return 1


def check_blocks_agree(events, result, blocks):
    """Each block's event has the status, attempts and timings that the result records."""
    by_key = {event["key"]: event for event in events}
    assert len(by_key) == len(events), "one event per block"
    for block in blocks:
        event = by_key[block.key]
        failed = block.key in result.failed
        assert event["event"] == ("block_failed" if failed else "block_done")
        assert event["index"] == list(block.index)
        assert event["attempts"] == result.attempts[block.key]
        timings = result.timings[block.key]
        assert event["timings"] == {"read": timings.read, "process": timings.process,
                                    "write": timings.write, "total": timings.total}
        assert min(event["timings"].values()) >= 0
        assert event["worker"]
        if failed:
            assert event["status"] == "failed"
            assert event["error"] == result.failed[block.key].error
            assert event["error"].startswith("ValueError: cannot handle block")


@pytest.mark.parametrize("executor", [ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)],
                         ids=lambda executor: executor.name)
def test_every_event_is_a_json_line_that_agrees_with_the_result(source, tmp_path, executor):
    path = tmp_path / "events.jsonl"
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    blocks = list(tiler.blocks(source.bounds))
    failing = blocks[3].key
    result = ndf.Pipeline(source, FailOn([failing]), tiler=tiler, executor=executor,
                          journal=tmp_path / "run.sqlite", max_failures=0,
                          plugins=[ndf.EventLog(path)]).run()
    events = read_events(path)
    assert [event["event"] for event in events[:1] + events[-1:]] == ["run_start", "run_end"]
    start, end, block_events = events[0], events[-1], events[1:-1]
    assert start["run_id"] == result.run.run_id and start["session"] == result.run.session
    assert start["blocks"] == 8
    assert start["bounds"] == {"start": [0, 100, 200], "stop": [10, 124, 220]}
    assert start["channels"] == ["em", "mask"]
    assert start["source"] == source.describe()
    assert start["processor"] == result.run.processor
    assert start["executor"] == executor.describe()
    assert start["journal"] == str(tmp_path / "run.sqlite")
    assert start["pid"] == os.getpid()
    assert len(block_events) == 8
    assert all(event["session"] == result.run.session for event in events)
    check_blocks_agree(block_events, result, blocks)
    assert end["counts"] == attrs.asdict(result.counts) == {
        "done": 7, "failed": 1, "skipped": 0, "not_run": 0}
    assert end["ok"] is False and end["stopped"] is None
    assert end["seconds"] == result.elapsed
    times = [event["time"] for event in events]
    assert times == sorted(times)

    # resumed: a second run_start, the count of blocks skipped, then events for the blocks
    # left (the failed one) only
    again = ndf.Pipeline(source, FailOn([failing]), tiler=tiler, executor=executor,
                         journal=tmp_path / "run.sqlite", max_failures=0,
                         plugins=[ndf.EventLog(path)]).run()
    events = read_events(path)
    assert [event["event"] for event in events[10:]] == ["run_start", "blocks_skipped",
                                                         "block_failed", "run_end"]
    assert events[10]["session"] == again.run.session != result.run.session
    assert events[10]["run_id"] == result.run.run_id
    assert events[11]["count"] == 7 and events[11]["session"] == again.run.session
    assert events[12]["key"] == failing and events[12]["attempts"] == again.attempts[failing]
    assert events[13]["counts"] == {"done": 0, "failed": 1, "skipped": 7, "not_run": 0}


def test_a_retried_block_has_a_retry_event_then_its_attempts(source, tmp_path):
    path = tmp_path / "events.jsonl"
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    blocks = list(tiler.blocks(source.bounds))
    retried = blocks[2].key
    result = ndf.Pipeline(source, FailFirstTry(tmp_path, [retried]), tiler=tiler,
                          executor="serial", plugins=[ndf.EventLog(path)]).run()
    assert result.ok and result.attempts[retried] == 2
    events = read_events(path)
    retry = [event for event in events if event["event"] == "block_retry"]
    assert len(retry) == 1
    assert retry[0]["key"] == retried and retry[0]["attempt"] == 1
    assert retry[0]["reason"] == "retry_on"
    assert retry[0]["error"] == f"TimeoutError: block {retried} timed out"
    done = [event for event in events if event["event"] == "block_done"]
    done_retried = next(event for event in done if event["key"] == retried)
    assert events.index(retry[0]) < events.index(done_retried)
    check_blocks_agree(done, result, blocks)


def test_a_block_whose_worker_died_counts_the_tries_its_journal_records(source, tmp_path):
    path = tmp_path / "events.jsonl"
    tiler = ndf.RegularTiler((5, 12, 20), origin=source.bounds.start)
    blocks = list(tiler.blocks(source.bounds))
    crashed = blocks[1].key
    result = ndf.Pipeline(source, CrashOn(tmp_path, once=[crashed]), tiler=tiler,
                          executor=ndf.ProcessExecutor(2),
                          plugins=[ndf.EventLog(path)]).run()
    assert result.ok and result.attempts[crashed] >= 2
    events = read_events(path)
    retries = [event for event in events if event["event"] == "block_retry"]
    check_blocks_agree([event for event in events[1:-1] if event not in retries], result,
                       blocks)
    # every try after a block's first was announced, with why the one before ended
    for block in blocks:
        assert len([e for e in retries if e["key"] == block.key]) == \
            result.attempts[block.key] - 1, block.key
    assert {event["key"] for event in retries} == {crashed}
    assert retries[0]["reason"] == "worker_died" and retries[0]["attempt"] == 1
    assert retries[0]["error"] == (f"WorkerError: the worker process running block {crashed} "
                                   f"died (killed, crashed or out of memory)")
    assert retries[0]["worker"].isdigit()


class HangOnce(ndf.BlockProcessor):
    """Hangs on the first try of every block (a marker file remembers it)."""

    def __init__(self, folder):
        self.folder = str(folder)

    def process(self, data, block):
        marker = Path(self.folder, f"hung-{block.key}")
        if not marker.exists():
            marker.touch()
            time.sleep(60)
        return 1


@pytest.mark.timeout(60)
def test_a_block_that_timed_out_has_a_retry_event_saying_so(source, tmp_path):
    path = tmp_path / "events.jsonl"
    tiler = ndf.RegularTiler((10, 24, 20), origin=source.bounds.start)  # one block
    result = ndf.Pipeline(source, HangOnce(tmp_path), tiler=tiler,
                          executor=ndf.ProcessExecutor(1), block_timeout=0.5,
                          plugins=[ndf.EventLog(path)]).run()
    assert result.ok and result.attempts["0_100_200"] == 2
    names = [event["event"] for event in read_events(path)]
    assert names == ["run_start", "block_retry", "block_done", "run_end"]
    retry = read_events(path)[1]
    assert retry["reason"] == "timeout" and retry["attempt"] == 1
    assert retry["error"].startswith("BlockTimeout: block 0_100_200 timed out after 0.5 s (ran ")
    assert retry["worker"].isdigit()


def test_a_run_that_stops_early_says_why_and_with_what_error(volume, tmp_path):
    from processors import BrokenSource

    path = tmp_path / "events.jsonl"
    source = BrokenSource(volume, ndf.Box((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ndf.DataAccessError) as raised:
        ndf.Pipeline(source, lambda d: 1, tiler=ndf.RegularTiler(5), executor="serial",
                     plugins=[ndf.EventLog(path)]).run()
    *_, stopped, end = read_events(path)
    assert stopped["event"] == "run_stopped"
    assert stopped["reason"] == end["stopped"] == "data access failed for block 0_0_0"
    assert stopped["error"] == f"DataAccessError: {raised.value}"


def test_a_file_that_cannot_be_opened_is_a_plugin_error_and_the_run_goes_on(source,
                                                                            tmp_path):
    log = ndf.EventLog(tmp_path / "no such folder" / "events.jsonl")
    result = ndf.Pipeline(source, lambda data: 1, executor="serial", plugins=[log]).run()
    assert result.ok
    assert any("ndf_before_run" in error for error in result.plugin_errors)
    assert len(result.plugin_errors) == 1, "later events are not errors of their own"


@pytest.mark.parametrize("path", [None, 3, ""])
def test_a_bad_path_is_refused_naming_it(path):
    with pytest.raises(ndf.ConfigError, match=r"EventLog takes the path of a file, got"):
        ndf.EventLog(path)


def test_event_log_is_exported_from_the_package_and_the_plugins():
    from ndframework.plugins import EventLog

    assert ndf.EventLog is EventLog
    assert "EventLog" in ndf.__all__

"""The run journal: recording, resume, fingerprints, shared files, and fold over resumed runs."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import sqlite3
import threading
import time

import attrs
import numpy as np
import pytest

import ndframework as ndf
from ndframework.journal import Journal
from processors import FailUntilMarked, FoldSum, KeySum


@pytest.fixture
def tiler(source):
    return ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)


def _owned_sums(volume, source, tiler):
    return {
        block.key: int(volume["em"][block.box.relative_to(source.bounds).slices()]
                       .astype(np.int64).sum())
        for block in tiler.blocks(source.bounds)
    }


# -- the journal alone ------------------------------------------------------------------

def test_a_journal_records_outcomes_and_reads_them_back_in_block_order(tmp_path):
    journal = Journal(tmp_path / "j.sqlite", commit_interval=3600)
    journal.open({"source": "s"})
    outcomes = [
        ndf.BlockOutcome("0_0_10", ndf.BlockStatus.DONE, value=[1, 2],
                         timings=ndf.BlockTimings(0.1, 0.2, 0.3), worker="w1"),
        ndf.BlockOutcome("0_0_0", ndf.BlockStatus.FAILED, error="ValueError: bad",
                         traceback="Traceback ...", worker="w2"),
    ]
    journal.finished(1, outcomes[0], attempts=1, value=b"\x80\x04]\x94(K\x01K\x02e.")
    journal.finished(0, outcomes[1], attempts=2)
    # nothing committed yet: another connection sees no block
    other = sqlite3.connect(tmp_path / "j.sqlite")
    assert other.execute("SELECT count(*) FROM blocks").fetchone() == (0,)
    journal.flush()
    assert other.execute("SELECT count(*) FROM blocks").fetchone() == (2,)
    records = list(journal.records())
    assert [r.key for r in records] == ["0_0_0", "0_0_10"]
    failed, done = records
    assert failed.status is ndf.BlockStatus.FAILED and failed.attempts == 2
    assert failed.failure == ndf.BlockFailure("ValueError: bad", "Traceback ...", 2)
    assert done.value == [1, 2] and done.timings.total == pytest.approx(0.6)
    assert done.worker == "w1" and done.session == journal.session
    assert journal.counts() == {"done": 1, "failed": 1}
    journal.close()
    assert journal.read(tmp_path / "j.sqlite").counts() == {"done": 1, "failed": 1}


def test_records_are_committed_within_the_commit_interval(tmp_path):
    journal = Journal(tmp_path / "j.sqlite", commit_interval=0.0)
    journal.open({"source": "s"})
    journal.finished(0, ndf.BlockOutcome("0_0_0", "done"), attempts=1, value=b"N.")
    other = sqlite3.connect(tmp_path / "j.sqlite")
    assert other.execute("SELECT key, status FROM blocks").fetchall() == [("0_0_0", "done")]


def test_a_journal_of_another_run_is_refused_naming_what_differs(tmp_path):
    path = tmp_path / "j.sqlite"
    first = Journal(path)
    first.open({"source": "a", "processor": "P(x=1)"})
    first.finished(0, ndf.BlockOutcome("0_0_0", "done"), attempts=1, value=b"N.")
    first.close()
    with pytest.raises(ndf.JournalMismatchError, match=r"processor: 'P\(x=1\)' in the journal, "
                                                        r"'P\(x=2\)' now.*restart=True"):
        Journal(path).open({"source": "a", "processor": "P(x=2)"})
    again = Journal(path)
    again.open({"source": "a", "processor": "P(x=2)"}, restart=True)
    assert again.counts() == {"done": 0, "failed": 0}
    assert again.fingerprint() == {"source": "a", "processor": "P(x=2)"}


@pytest.mark.parametrize("bad", [3, object()])
def test_a_journal_argument_that_is_not_a_path_is_refused(source, bad):
    with pytest.raises(ndf.ConfigError, match="journal must be a path or a Journal"):
        ndf.Pipeline(source, lambda d: 1, journal=bad)


def test_reading_a_file_that_is_not_a_journal_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, this is not SQLite at all" * 20)
    with pytest.raises(ndf.ConfigError, match="is not an ndframework journal"):
        Journal.read(tmp_path / "notes.txt")
    with pytest.raises(ndf.ConfigError, match="no journal at"):
        Journal.read(tmp_path / "missing.sqlite")


def _record_blocks(path, start, count):
    journal = Journal(path, commit_interval=0.01)
    journal.open({"source": "shared"})
    for ordinal in range(start, start + count):
        journal.finished(ordinal, ndf.BlockOutcome(f"{ordinal}_0_0", "done"), attempts=1,
                         value=b"N.")
    journal.close()


def test_several_processes_share_one_journal_file_safely(tmp_path):
    path = tmp_path / "shared.sqlite"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_record_blocks, args=(path, n * 500, 500))
               for n in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [writer.exitcode for writer in writers] == [0, 0, 0, 0]
    journal = Journal.read(path)
    assert journal.counts() == {"done": 2000, "failed": 0}
    assert len(journal.sessions()) == 4
    assert [r.ordinal for r in journal.records()] == list(range(2000))


# -- resume through the pipeline --------------------------------------------------------

def test_a_rerun_skips_done_blocks_and_runs_failed_ones_again(executor, source, volume, tiler,
                                                              tmp_path):
    journal = tmp_path / "run.sqlite"
    marks = tmp_path / "marks"
    marks.mkdir()
    failing = {"0_112_200", "5_100_210"}
    seen = []

    class Watch:
        @ndf.hookimpl
        def ndf_before_block(self, run, block):
            seen.append(block.key)

    def pipeline():
        return ndf.Pipeline(source, FailUntilMarked(marks, failing), tiler=tiler,
                            executor=executor, journal=journal, plugins=[Watch()])

    first = pipeline().run()
    assert set(first.failed) == failing and len(first.done) == 6 and not first.ok
    assert first.reduced is not None  # every block was tried
    for key in failing:
        (marks / key).touch()
    seen.clear()
    second = pipeline().run()
    assert second.ok and second.stopped is None
    assert sorted(second.done) == sorted(failing) and sorted(seen) == sorted(failing)
    assert set(second.skipped) == set(first.done) and second.counts.skipped == 6
    assert dict(second.values) == _owned_sums(volume, source, tiler)
    assert second.reduced == sum(_owned_sums(volume, source, tiler).values())
    assert second.attempts == {key: 1 for key in failing}
    assert second.run.run_id == first.run.run_id != ""
    assert second.run.session != first.run.session
    seen.clear()
    third = pipeline().run()
    assert third.ok and third.done == () and len(third.skipped) == 8 and seen == []
    assert third.reduced == second.reduced
    journal_records = list(ndf.Journal.read(journal).records(status="done"))
    assert {r.key: r.all_attempts for r in journal_records if r.key in failing} == {
        key: 2 for key in failing}


def test_a_resumed_fold_equals_an_uninterrupted_one(source, volume, tiler, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    whole = ndf.Pipeline(source, FoldSum(), tiler=tiler, executor="serial").run()
    assert whole.reduced == (8, sum(_owned_sums(volume, source, tiler).values()))
    journal = tmp_path / "fold.sqlite"
    first = ndf.Pipeline(source, FoldSum(fail_without=marks), tiler=tiler, executor="serial",
                         journal=journal).run()
    assert len(first.failed) == 3
    (marks / "go").touch()
    resumed = ndf.Pipeline(source, FoldSum(fail_without=marks), tiler=tiler,
                           executor="serial", journal=journal, restart=False)
    # the processor's parameters are the same: the journal is accepted
    result = resumed.run()
    assert result.ok and len(result.done) == 3 and len(result.skipped) == 5
    assert result.reduced == whole.reduced


def test_the_fingerprint_covers_what_gives_blocks_their_meaning(source, tiler, tmp_path):
    journal = tmp_path / "run.sqlite"
    ndf.Pipeline(source, KeySum(scale=1), tiler=tiler, executor="serial",
                 journal=journal).run()
    changes = {
        r"processor\.scale: '1' in the journal, '2' now": dict(processor=KeySum(scale=2)),
        "tiler: ": dict(tiler=ndf.RegularTiler((5, 6, 10), origin=source.bounds.start)),
        "bounds: ": dict(bounds=((0, 100, 200), (5, 124, 220))),
        "channels: ": dict(channels=["mask"]),
    }
    for what, change in changes.items():
        arguments = dict(processor=KeySum(scale=1), tiler=tiler, executor="serial",
                         journal=journal)
        arguments.update(change)
        processor = arguments.pop("processor")
        with pytest.raises(ndf.JournalMismatchError, match=rf"\b{what}") as info:
            ndf.Pipeline(source, processor, **arguments).run()
        assert isinstance(info.value, ndf.ConfigError)
    # swapping the executor or the plugins changes no result: the journal is accepted
    again = ndf.Pipeline(source, KeySum(scale=1), tiler=tiler,
                         executor=ndf.ThreadExecutor(2), journal=journal).run()
    assert again.ok and len(again.skipped) == 8
    restarted = ndf.Pipeline(source, KeySum(scale=2), tiler=tiler, executor="serial",
                             journal=journal, restart=True).run()
    assert restarted.ok and len(restarted.done) == 8 and restarted.skipped == ()


def test_a_run_without_a_journal_keeps_its_records_in_a_temporary_one(source, tiler):
    result = ndf.Pipeline(source, KeySum(scale=1), tiler=tiler, executor="serial").run()
    path = result.journal.path
    assert os.path.exists(path) and result.run.journal is None
    assert len(result.timings) == 8 and all(t.total >= 0 for t in result.timings.values())
    assert result.done[0] == "0_100_200" and "5_112_210" in result.done
    del result
    import gc

    gc.collect()
    assert not os.path.exists(path)


def test_result_views_and_json(source, tiler):
    import json

    result = ndf.Pipeline(source, ndf.FunctionProcessor(
        lambda d, b: 1 / 0 if b.key == "0_100_200" else 2, pass_block=True),
        tiler=tiler, executor="serial").run()
    data = json.loads(result.to_json())
    assert data["counts"] == {"done": 7, "failed": 1, "skipped": 0, "not_run": 0}
    assert data["ok"] is False and data["stopped"] is None
    (failed,) = [b for b in data["blocks"] if b["status"] == "failed"]
    assert failed["key"] == "0_100_200" and "ZeroDivisionError" in failed["error"]
    assert "Traceback" in failed["traceback"] and failed["attempts"] == 1
    with pytest.raises(ndf.BlocksFailedError, match="1 failed") as info:
        result.raise_for_failures()
    assert info.value.result is result
    assert hash(result) == hash(result)
    assert result.failed == {"0_100_200": result.failed["0_100_200"]}
    assert len(result.values) == 7 and set(result.values.values()) == {2}


def test_reading_another_sqlite_file_changes_nothing_in_it(tmp_path):
    path = tmp_path / "other.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE things (x)")
    other.commit()
    other.close()
    with pytest.raises(ndf.ConfigError, match=r"not an ndframework journal.*tables: things"):
        Journal.read(path)
    assert sorted(os.listdir(tmp_path)) == ["other.db"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_a_session_keeps_its_stop_reason_and_the_run_its_block_count(volume, tmp_path):
    source = ndf.InMemorySource(volume)
    journal = ndf.Journal(tmp_path / "j.sqlite")
    result = ndf.Pipeline(source, lambda d: 1 / 0, tiler=ndf.RegularTiler((5, 12, 10)),
                          executor="serial", journal=journal, max_failures=1).run()
    assert result.stopped == "max_failures=1 reached: 1 blocks had failed, so no more were " \
                             "handed out"
    journal.close()
    journal.close()
    read = ndf.Journal.read(tmp_path / "j.sqlite")
    assert read.sessions()[-1]["stopped"] == result.stopped
    assert read.block_count() == 8


def test_sessions_running_at_once_on_one_journal_share_the_blocks(volume, tmp_path):
    source = ndf.InMemorySource(volume)
    tiler = ndf.RegularTiler((1, 6, 10))  # 80 blocks
    marks = tmp_path / "marks"
    marks.mkdir()

    def slow(data, block):
        time.sleep(0.01)
        with open(marks / f"{block.key}-{threading.get_ident()}", "w"):
            pass
        return int(block.crop(data["em"]).astype(np.int64).sum())

    results = {}

    def session(name):
        results[name] = ndf.Pipeline(
            source, ndf.FunctionProcessor(slow, pass_block=True), tiler=tiler,
            executor="serial", journal=ndf.Journal(tmp_path / "shared.sqlite")).run()

    threads = [threading.Thread(target=session, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    runs = [name.rsplit("-", 1)[0] for name in os.listdir(marks)]
    assert sorted(runs) == sorted(block.key for block in tiler.blocks(source.bounds))
    a, b = results["a"], results["b"]
    assert a.counts.done >= 16 and b.counts.done >= 16  # each took its share
    assert a.counts.done + b.counts.done == 80
    for result in (a, b):
        assert min(attrs.astuple(result.counts)) >= 0
    final = ndf.Pipeline(source, ndf.FunctionProcessor(slow, pass_block=True), tiler=tiler,
                         executor="serial", journal=tmp_path / "shared.sqlite").run()
    assert final.ok and final.counts.skipped == 80
    assert final.reduced == _owned_sums(volume, source, tiler)


def test_a_failure_recorded_by_another_session_never_undoes_a_block_done(tmp_path):
    path = tmp_path / "j.sqlite"
    first, second = Journal(path), Journal(path)
    first.open({"source": "s"})
    second.open({"source": "s"})
    first.finished(0, ndf.BlockOutcome("0_0_0", "done"), attempts=1, value=b"K\x07.")
    first.flush()
    second.finished(0, ndf.BlockOutcome("0_0_0", "failed", error="E: late"), attempts=1)
    second.flush()
    (record,) = Journal.read(path).records()
    assert record.status is ndf.BlockStatus.DONE and record.value == 7


def test_restart_is_refused_while_another_session_runs(tmp_path):
    path = tmp_path / "j.sqlite"
    running = Journal(path)
    running.open({"source": "s"})
    with pytest.raises(ndf.ConfigError, match=r"cannot restart .* still running \(pid"):
        Journal(path).open({"source": "s"}, restart=True)
    running.close()
    Journal(path).open({"source": "s"}, restart=True)


def test_the_processors_parameters_are_fingerprinted_and_secrets_only_as_digests(source):
    from ndframework._fingerprint import fingerprint

    def parts(processor):
        return fingerprint(source=source, bounds=source.bounds, channels=("em",),
                           tiler=ndf.RegularTiler(4), halo_mode="clip", processor=processor,
                           sink=None)

    class Level(ndf.BlockProcessor):
        level = 100

        def process(self, data, block):
            return int((data["em"] > self.level).sum())

    class Higher(Level):
        level = 200

    assert parts(Level())["processor.level"] == "100"
    assert parts(Higher())["processor.level"] == "200"

    def above(data, level):
        return int((data["em"] > level).sum())

    partials = [ndf.FunctionProcessor(functools.partial(above, level=n)) for n in (1, 2)]
    assert parts(partials[0]) != parts(partials[1])

    def closure(level):
        return ndf.FunctionProcessor(lambda data: int((data["em"] > level).sum()))

    assert parts(closure(1)) != parts(closure(2)) and parts(closure(1)) == parts(closure(1))

    class WithToken(ndf.BlockProcessor):
        def __init__(self, token):
            self.token = token

        def process(self, data, block):
            return 1

    secret = "s3cr3t-t0ken-value"
    shown = parts(WithToken(secret))
    assert shown["processor.token"].startswith("sha1:")
    assert secret not in json.dumps(shown)
    assert parts(WithToken("other"))["processor.token"] != shown["processor.token"]


@pytest.mark.parametrize("interval", [-1, "1", True])
def test_a_bad_commit_interval_is_refused(tmp_path, interval):
    with pytest.raises(ndf.ConfigError, match=rf"commit_interval must be a number of seconds "
                                              rf">= 0, got {interval!r}"):
        Journal(tmp_path / "j.sqlite", commit_interval=interval)


def _one(data):
    return 1


def _journal_of_schema(path, version, live_session):
    """A journal file as an ndframework of schema ``version`` leaves it, with a session
    still running (this process) when ``live_session``."""
    source = ndf.InMemorySource({"em": np.zeros((2, 4, 4), np.uint8)})
    ndf.Pipeline(source, _one, tiler=ndf.RegularTiler((1, 4, 4)),
                 executor="serial", journal=path, load_entrypoints=False).run()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (str(version),))
        if version == 1:  # schema 1 claimed blocks a row each
            connection.execute("DROP TABLE claimed")
            connection.execute("CREATE TABLE claims (ordinal INTEGER PRIMARY KEY, "
                               "session TEXT NOT NULL)")
        if live_session:
            connection.execute("INSERT INTO sessions (session, started, host, pid, alive) "
                               "VALUES ('older', ?, ?, ?, ?)",
                               (time.time(), __import__("socket").gethostname(), os.getpid(),
                                time.time()))
    return source


def test_a_journal_of_an_older_schema_is_upgraded_unless_a_session_of_it_runs(tmp_path):
    path = tmp_path / "old.sqlite"
    source = _journal_of_schema(path, 1, live_session=True)
    rerun = ndf.Pipeline(source, _one, tiler=ndf.RegularTiler((1, 4, 4)),
                         executor="serial", journal=path, load_entrypoints=False)
    with pytest.raises(ndf.ConfigError, match="in use by a session of an older ndframework"):
        rerun.run()
    with sqlite3.connect(path) as connection:  # the running session ends
        connection.execute("UPDATE sessions SET ended = ? WHERE session = 'older'",
                           (time.time(),))
    result = rerun.run()
    assert result.ok and result.counts.skipped == 2  # its records kept
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        schema = connection.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
    assert "claims" not in tables and "claimed" in tables and schema == ("2",)


def test_a_journal_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    source = _journal_of_schema(path, 3, live_session=False)
    with pytest.raises(ndf.ConfigError, match=r"newer ndframework \(schema 3; this one reads "
                                              r"schema 2"):
        ndf.Pipeline(source, _one, tiler=ndf.RegularTiler((1, 4, 4)),
                     executor="serial", journal=path, load_entrypoints=False).run()

"""The run journal: a ledger in SQLite of every block's fate, so that a run can resume.

One journal file belongs to one run, identified by its *fingerprint*: what defines its blocks
and their meaning (source, bounds, channels, tiling, halo, processor and its parameters,
sink). A run started again with the same journal skips the blocks recorded done and runs the
others; a journal made for another run is refused with `JournalMismatchError` naming what
differs, unless the run is started with ``restart=True``.

The coordinator records outcomes as they arrive and commits them in batches, at least every
``commit_interval`` seconds, so that a run killed at any moment loses at most that much of
its record (never a write: a block is recorded done only after its outputs are written, and
writing it again is harmless). The file is in WAL mode, so several runs may share it (array
jobs of one volume), and a reader (``ndframework status``) never blocks the writers.

>>> journal = Journal()                            # a temporary journal
>>> journal.open({"source": "demo"})
>>> journal.counts()
{'done': 0, 'failed': 0}
>>> journal.close()
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import socket
import sqlite3
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Callable

from ._ledger import (
    COLUMNS,
    HEARTBEAT,
    LEASE,
    SCHEMA,
    SCHEMA_VERSION,
    BlockRecord,
    BlockState,
    dumps_value,
    record_of,
    remove_files,
    session_alive,
    transaction,
    where_clause,
)
from .errors import ConfigError, JournalMismatchError
from .geometry import Block
from .result import BlockOutcome, BlockStatus

__all__ = ["Journal", "BlockRecord", "BlockState", "dumps_value", "HEARTBEAT", "LEASE"]


def _runs(numbers: Iterable[int]) -> Iterator[tuple[int, int]]:
    """``(first, last)`` of each run of consecutive numbers in increasing ``numbers``.

    >>> list(_runs([1, 2, 3, 5, 7, 8]))
    [(1, 3), (5, 5), (7, 8)]
    """
    first = last = None
    for number in numbers:
        if last is not None and number == last + 1:
            last = number
            continue
        if first is not None:
            yield first, last  # type: ignore[misc]
        first = last = number
    if first is not None:
        yield first, last  # type: ignore[misc]

class Journal:
    """The ledger of one run in an SQLite file.

    Constructing one does no I/O; `open` creates or checks the file. The coordinating
    process is the only one that opens it during a run; `ndframework status` reads it.

    Parameters
    ----------
    path:
        The SQLite file, created when missing. None makes a temporary journal, deleted when
        this object is garbage collected: the per-block records of a run that keeps none.
    commit_interval:
        Most seconds between two commits while outcomes arrive: what a killed run may lose
        of its record (the blocks lost are simply run again).
    wal:
        Keep the file in SQLite's WAL mode (the default): writers never block readers, and
        commits are cheap. WAL needs every process that opens the file to be on one host;
        for sessions on several hosts sharing a journal on a network file system with
        working POSIX locks, pass ``wal=False`` (SQLite's rollback journal).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 commit_interval: float = 1.0, wal: bool = True) -> None:
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"journal must be a path or a Journal, got {path!r}", path)
        if isinstance(commit_interval, bool) or not isinstance(commit_interval, (int, float)) \
                or commit_interval < 0:
            raise ConfigError(
                f"commit_interval must be a number of seconds >= 0, got {commit_interval!r}",
                commit_interval,
            )
        self.path = None if path is None else os.fspath(path)
        self.commit_interval = float(commit_interval)
        self.session = ""
        self._connection: sqlite3.Connection | None = None
        self._buffer: list[tuple[Any, ...]] = []
        self._last_commit = 0.0
        self._temporary = path is None
        self._ended = False
        self._alive = 0.0
        self.wal = bool(wal)

    def __repr__(self) -> str:
        return f"Journal({'temporary' if self._temporary else self.path!r})"

    def describe(self) -> str:
        """Where the journal lives, for reports."""
        return "a temporary journal" if self._temporary else f"journal {self.path}"

    # -- the file ------------------------------------------------------------------------

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection; `open` or `read` first."""
        if self._connection is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._connection

    def _connect(self, *, read_only: bool = False) -> sqlite3.Connection:
        if self._temporary and self.path is None:
            handle, self.path = tempfile.mkstemp(prefix="ndframework-journal-", suffix=".sqlite")
            os.close(handle)
            weakref.finalize(self, remove_files, self.path)
        assert self.path is not None
        try:
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                                         check_same_thread=False)
            if self._temporary:  # nothing to keep if the process dies: no disk syncs
                connection.execute("PRAGMA journal_mode=MEMORY")
                connection.execute("PRAGMA synchronous=OFF")
            elif not read_only:  # read_only: change nothing in a file that may be no journal
                _set_journal_mode(connection, "WAL" if self.wal else "DELETE")
                connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as error:
            raise ConfigError(f"cannot open the journal {self.path!r}: {error}",
                              self.path) from error
        return connection

    def open(self, fingerprint: Mapping[str, str], *, restart: bool = False,
             executor: str = "", block_count: int | None = None) -> None:
        """Create the journal or check that it belongs to the run of ``fingerprint``, and
        start a session of it.

        Raises
        ------
        JournalMismatchError
            The journal records a run with another fingerprint (and ``restart`` is False).
        """
        if self._connection is not None:  # a journal object used for another run
            self._connection.close()
        connection = self._connection = self._connect()
        fingerprint = {name: str(value) for name, value in fingerprint.items()}
        with transaction(connection):
            self._check_schema(connection)
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute("DROP TABLE IF EXISTS claims")  # schema 1's, checked unused
            row = connection.execute("SELECT value FROM meta WHERE name = 'fingerprint'").fetchone()
            has_blocks = connection.execute("SELECT 1 FROM blocks LIMIT 1").fetchone()
            if row is not None and not restart:
                recorded = json.loads(row[0])
                if recorded != fingerprint and has_blocks:
                    raise JournalMismatchError(self._mismatch(recorded, fingerprint), recorded)
            if restart:
                self._refuse_while_running(
                    connection, f"cannot restart the journal {self.path!r}: a session of its "
                                f"run is still running", "stop it first")
                connection.execute("DELETE FROM blocks")
                connection.execute("DELETE FROM claimed")
                connection.execute("DELETE FROM sessions")
            connection.execute(
                "INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?), ('schema', ?)",
                (json.dumps(fingerprint, sort_keys=True), str(SCHEMA_VERSION)),
            )
            if block_count is not None:
                connection.execute("INSERT OR REPLACE INTO meta VALUES ('block_count', ?)",
                                   (str(block_count),))
            self.session = uuid.uuid4().hex[:12]
            self._alive = time.time()
            connection.execute(
                "INSERT INTO sessions (session, started, host, pid, executor, alive) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (self.session, self._alive, socket.gethostname(), os.getpid(), executor,
                 self._alive),
            )
        self._last_commit = time.monotonic()
        self._ended = False

    def _check_schema(self, connection: sqlite3.Connection) -> None:
        """Refuse a journal of a newer schema, and one of schema 1 (claims a row per
        block) while a session of it still runs: that session would lose its claims."""
        if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                              "name = 'meta'").fetchone() is None:
            return  # a new file
        row = connection.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        version = int(row[0]) if row is not None else SCHEMA_VERSION
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the journal {self.path!r} was written by a newer ndframework (schema "
                f"{version}; this one reads schema {SCHEMA_VERSION} and older): upgrade "
                f"ndframework, or use another journal", self.path)
        if version < SCHEMA_VERSION:
            self._refuse_while_running(
                connection, f"the journal {self.path!r} is in use by a session of an older "
                            f"ndframework", "let it finish first")

    def _refuse_while_running(self, connection: sqlite3.Connection, what: str,
                              advice: str) -> None:
        """`ConfigError` saying ``what`` (naming the sessions) while a session runs."""
        live = self._live_sessions(connection)
        if live:
            raise ConfigError(f"{what} ({', '.join(live)}); {advice}, or use another journal",
                              self.path)

    @staticmethod
    def _live_sessions(connection: sqlite3.Connection) -> list[str]:
        """Sessions that have not ended and showed a sign of life within the lease."""
        rows = connection.execute(
            "SELECT host, pid, alive FROM sessions WHERE ended IS NULL").fetchall()
        return [f"pid {pid} on {host}" for host, pid, alive in rows
                if session_alive(host, pid, alive)]

    def _mismatch(self, recorded: Mapping[str, str], now: Mapping[str, str]) -> str:
        names = sorted(set(recorded) | set(now))
        differs = []
        for name in names:
            before, after = recorded.get(name, "(none)"), now.get(name, "(none)")
            if before == after:
                continue
            if before.startswith("sha1:") or after.startswith("sha1:"):
                differs.append(f"{name}: another value")  # no secret is spelt out
            else:
                differs.append(f"{name}: {before!r} in the journal, {after!r} now")
        return (
            f"the journal {self.path!r} records another run ({'; '.join(differs)}); use "
            f"another journal, or restart=True (--restart) to discard its records and start "
            f"over"
        )

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> "Journal":
        """An existing journal, opened for reading (``ndframework status``)."""
        if not Path(path).is_file():
            raise ConfigError(f"no journal at {os.fspath(path)!r}", path)
        journal = cls(path)
        connection = None
        try:
            connection = journal._connect(read_only=True)
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"meta", "sessions", "blocks"} <= tables:
                raise sqlite3.DatabaseError(f"it has no journal tables (tables: "
                                            f"{', '.join(sorted(tables)) or 'none'})")
            journal._connection = connection
        except (sqlite3.DatabaseError, ConfigError) as error:
            if connection is not None:
                connection.close()
            raise ConfigError(f"{os.fspath(path)!r} is not an ndframework journal: {error}",
                              path) from error
        return journal

    def close(self, stopped: str | None = None) -> None:
        """Commit what is buffered, end the session, and close the file."""
        if self._connection is None:
            return
        if self.session and not self._ended:
            self.end_session(stopped)
        self.flush()
        self.connection.close()
        self._connection = None

    def end_session(self, stopped: str | None = None) -> None:
        """Commit what is buffered and mark the session ended; the file stays open for
        reading the result."""
        self.flush()
        with transaction(self.connection):
            self.connection.execute(
                "UPDATE sessions SET ended = ?, stopped = ? WHERE session = ?",
                (time.time(), stopped, self.session),
            )
            self.connection.execute("DELETE FROM claimed WHERE session = ?", (self.session,))
        self._ended = True

    # -- recording -----------------------------------------------------------------------

    def pending(self, blocks: Iterable[Block], *, claim: bool = False,
                batch: int | Callable[[], int] = 1024,
                ) -> Iterator[tuple[int, Block, BlockState]]:
        """``(ordinal, block, state)`` for every block in ``blocks``, ``state`` saying what
        the journal records of it (see `BlockState`). The records are looked up a batch at
        a time, so memory stays small whatever the number of blocks.

        With ``claim``, this session claims the blocks it is given that are neither done
        nor claimed by another live session, a batch at a time, so that several sessions
        sharing the journal split the blocks between them instead of each running all.
        ``batch`` may be a function, asked before each batch (a run claims further ahead
        as its blocks turn out quick).
        """
        iterator = iter(blocks)
        ordinal = 0
        while True:
            chunk = list(itertools.islice(iterator, batch() if callable(batch) else batch))
            if not chunk:
                return
            span = (ordinal, ordinal + len(chunk) - 1)
            if claim:
                with transaction(self.connection):
                    states = self._states(span)
                    self.connection.executemany(
                        "INSERT INTO claimed VALUES (?, ?, ?)",
                        [(first, last, self.session) for first, last in _runs(
                            number for number in range(span[0], span[1] + 1)
                            if states.get(number) not in (BlockState.DONE, BlockState.CLAIMED)
                        )],
                    )
                    self._heartbeat()
            else:
                states = self._states(span)
            for block in chunk:
                yield ordinal, block, states.get(ordinal, BlockState.NEW)
                ordinal += 1

    def _states(self, span: tuple[int, int]) -> dict[int, BlockState]:
        states = {}
        for number, status, session in self.connection.execute(
            "SELECT ordinal, status, session FROM blocks WHERE ordinal BETWEEN ? AND ?", span
        ):
            if status == "done":
                states[number] = BlockState.DONE
            elif session != self.session:
                states[number] = BlockState.FAILED_BEFORE
        live: dict[str, bool] = {}
        for first, last, session, host, pid, alive in self.connection.execute(
            "SELECT first, last, session, host, pid, alive FROM claimed JOIN sessions "
            "USING (session) WHERE last >= ? AND first <= ? AND session != ? "
            "AND sessions.ended IS NULL",
            (*span, self.session),
        ):
            if session not in live:
                live[session] = session_alive(host, pid, alive)
            if not live[session]:
                continue
            for number in range(max(first, span[0]), min(last, span[1]) + 1):
                if states.get(number) is not BlockState.DONE:
                    states[number] = BlockState.CLAIMED
        return states

    def _heartbeat(self) -> None:
        self._alive = time.time()
        self.connection.execute("UPDATE sessions SET alive = ? WHERE session = ?",
                                (self._alive, self.session))

    def keep_alive(self) -> None:
        """Show that this session still runs (at most every `HEARTBEAT` seconds), so that
        other sessions leave its claimed blocks alone."""
        if self.session and not self._ended and time.time() - self._alive > HEARTBEAT:
            with transaction(self.connection):
                self._heartbeat()

    def finished(self, ordinal: int, outcome: BlockOutcome, attempts: int,
                 value: bytes | None = None) -> None:
        """Record a block's final outcome in this session (committed within
        ``commit_interval``). ``value`` is the pickled value of a block done."""
        timings = outcome.timings
        done = outcome.status is BlockStatus.DONE
        self._buffer.append((
            ordinal, outcome.key, BlockStatus.DONE.value if done else BlockStatus.FAILED.value,
            attempts, attempts, timings.read, timings.process, timings.write, outcome.worker,
            None if done else outcome.error, None if done else outcome.traceback,
            value if done else None, self.session, time.time(),
        ))
        if time.monotonic() - self._last_commit >= self.commit_interval:
            self.flush()

    def due(self) -> float | None:
        """Seconds until buffered records must be committed, or None when none are."""
        if not self._buffer:
            return None
        return max(0.0, self._last_commit + self.commit_interval - time.monotonic())

    def flush(self) -> None:
        """Commit buffered records now. Attempts add up over the runs that tried a block."""
        self._last_commit = time.monotonic()
        if not self._buffer or self._connection is None:
            return
        rows, self._buffer = self._buffer, []
        with transaction(self.connection):
            self.connection.executemany(
                f"INSERT INTO blocks ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                # done wins: a failure recorded by another session never undoes a block done
                "ON CONFLICT (ordinal) DO UPDATE SET key = excluded.key, "
                "status = excluded.status, attempts = excluded.attempts, "
                "all_attempts = blocks.all_attempts + excluded.attempts, "
                "read = excluded.read, process = excluded.process, write = excluded.write, "
                "worker = excluded.worker, error = excluded.error, "
                "traceback = excluded.traceback, value = excluded.value, "
                "session = excluded.session, finished = excluded.finished "
                "WHERE blocks.status != 'done' OR excluded.status = 'done'",
                rows,
            )
            if self.session:
                self._heartbeat()

    # -- reading -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Blocks recorded done and failed, over every session."""
        self.flush()
        counts = {"done": 0, "failed": 0}
        counts.update(self.connection.execute(
            "SELECT status, count(*) FROM blocks GROUP BY status").fetchall())
        return counts

    def count(self, *, status: BlockStatus | None = None, session: str | None = None,
              other_sessions: bool = False) -> int:
        """How many records match (see `records`)."""
        where, args = where_clause(status, session, other_sessions)
        self.flush()
        return self.connection.execute(f"SELECT count(*) FROM blocks{where}", args).fetchone()[0]

    def records(self, *, status: BlockStatus | None = None, session: str | None = None,
                other_sessions: bool = False, order: str = "ordinal",
                limit: int | None = None) -> Iterator[BlockRecord]:
        """Records in block order (or ``order="slowest"``), streamed from the file.
        ``session`` keeps those of one session, or of every other one with
        ``other_sessions``."""
        where, args = where_clause(status, session, other_sessions)
        ordering = {"ordinal": "ordinal",
                    "slowest": "coalesce(read, 0) + coalesce(process, 0) + "
                               "coalesce(write, 0) DESC"}[order]
        query = f"SELECT {COLUMNS} FROM blocks{where} ORDER BY {ordering}"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        self.flush()
        # a cursor of its own, so that readers may interleave with each other
        for row in self.connection.cursor().execute(query, args):
            yield record_of(row)

    def values(self) -> Iterator[tuple[str, Any]]:
        """``(key, value)`` of every block recorded done, in block order, streamed: only
        the two columns a reduce reads."""
        self.flush()
        for key, value in self.connection.cursor().execute(
            "SELECT key, value FROM blocks WHERE status = 'done' ORDER BY ordinal"
        ):
            yield key, None if value is None else pickle.loads(value)

    def record(self, key: str) -> BlockRecord | None:
        """The record of the block ``key``, if there is one."""
        self.flush()
        row = self.connection.execute(
            f"SELECT {COLUMNS} FROM blocks WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else record_of(row)

    def block_count(self) -> int | None:
        """How many blocks the run has, as its last session counted them."""
        row = self.connection.execute(
            "SELECT value FROM meta WHERE name = 'block_count'").fetchone()
        return None if row is None else int(row[0])

    def fingerprint(self) -> dict[str, str]:
        """The fingerprint of the run the journal records."""
        row = self.connection.execute(
            "SELECT value FROM meta WHERE name = 'fingerprint'").fetchone()
        return {} if row is None else json.loads(row[0])

    def sessions(self) -> list[dict[str, Any]]:
        """The runs that used the journal, oldest first."""
        cursor = self.connection.execute(
            "SELECT session, started, ended, host, pid, executor, stopped FROM sessions "
            "ORDER BY started"
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]


def _set_journal_mode(connection: sqlite3.Connection, mode: str, seconds: float = 60.0) -> None:
    """Put the file in journal ``mode``, unless it is in it already (the mode is kept in
    the file). Changing it takes the whole file: SQLite refuses at once, without waiting
    for its busy timeout, while another session of the run opens it at the same moment, so
    the change is tried again for up to ``seconds``."""
    if connection.execute("PRAGMA journal_mode").fetchone()[0].upper() == mode:
        return
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection.execute(f"PRAGMA journal_mode={mode}")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)

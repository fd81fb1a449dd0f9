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
from typing import Any

import attrs
import cloudpickle

from .errors import ConfigError, JournalMismatchError
from .geometry import Block
from .result import BlockFailure, BlockOutcome, BlockStatus, BlockTimings

__all__ = ["Journal", "BlockRecord"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY,
    started REAL NOT NULL,
    ended REAL,
    host TEXT,
    pid INTEGER,
    executor TEXT,
    stopped TEXT
);
CREATE TABLE IF NOT EXISTS blocks (
    ordinal INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    all_attempts INTEGER NOT NULL,
    read REAL, process REAL, write REAL,
    worker TEXT,
    error TEXT,
    traceback TEXT,
    value BLOB,
    session TEXT NOT NULL,
    finished REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_key ON blocks (key);
"""

_COLUMNS = ("ordinal, key, status, attempts, all_attempts, read, process, write, worker, error, traceback, "
            "value, session, finished")


@attrs.frozen
class BlockRecord:
    """A block's entry in the journal: its latest outcome."""

    ordinal: int
    """The block's position in the tiling's order."""
    key: str
    """The block's key, ``"z_y_x"``."""
    status: BlockStatus
    """`BlockStatus.DONE` or `BlockStatus.FAILED`."""
    attempts: int
    """Tries in the run session that recorded it."""
    all_attempts: int
    """Tries in all, over every run session that tried it."""
    timings: BlockTimings
    """Worker-side seconds of the last try."""
    worker: str
    """The worker that ran the last try."""
    error: str | None
    """For failed blocks: the error's type and message."""
    traceback: str | None
    """For failed blocks: the formatted traceback, when there is one."""
    session: str
    """The run session that recorded it."""
    finished: float
    """When it was recorded, in seconds since the epoch."""
    value_bytes: bytes | None = attrs.field(default=None, repr=False)
    """The pickled per-block value."""

    @property
    def value(self) -> Any:
        """The per-block value (None for failed blocks)."""
        return None if self.value_bytes is None else pickle.loads(self.value_bytes)

    @property
    def failure(self) -> BlockFailure:
        """The record as a `BlockFailure`."""
        return BlockFailure(self.error or "unknown error", self.traceback, self.attempts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the value)."""
        return {
            "key": self.key, "status": self.status.value, "attempts": self.attempts,
            "all_attempts": self.all_attempts,
            "read": self.timings.read, "process": self.timings.process,
            "write": self.timings.write, "worker": self.worker, "error": self.error,
            "traceback": self.traceback, "session": self.session, "finished": self.finished,
        }


def _record(row: tuple[Any, ...]) -> BlockRecord:
    (ordinal, key, status, attempts, all_attempts, read, process, write, worker, error,
     trace, value, session, finished) = row
    return BlockRecord(
        ordinal, key, BlockStatus(status), attempts, all_attempts,
        BlockTimings(read or 0.0, process or 0.0, write or 0.0), worker or "", error, trace,
        session, finished, value,
    )


def dumps_value(value: Any) -> bytes:
    """``value`` pickled for the journal; cloudpickle for what plain pickle refuses (lambdas,
    classes from ``__main__``)."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except OSError:
            pass


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
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 commit_interval: float = 1.0) -> None:
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
            weakref.finalize(self, _remove, self.path)
        assert self.path is not None
        try:
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                                         check_same_thread=False)
            if not read_only:  # read_only: change nothing in a file that may be no journal
                connection.execute("PRAGMA journal_mode=WAL")
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
        connection = self._connection = self._connect()
        fingerprint = {name: str(value) for name, value in fingerprint.items()}
        with _transaction(connection):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            row = connection.execute("SELECT value FROM meta WHERE name = 'fingerprint'").fetchone()
            has_blocks = connection.execute("SELECT 1 FROM blocks LIMIT 1").fetchone()
            if row is not None and not restart:
                recorded = json.loads(row[0])
                if recorded != fingerprint and has_blocks:
                    raise JournalMismatchError(self._mismatch(recorded, fingerprint), recorded)
            if restart:
                connection.execute("DELETE FROM blocks")
                connection.execute("DELETE FROM sessions")
            connection.execute(
                "INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?), ('schema', ?)",
                (json.dumps(fingerprint, sort_keys=True), str(SCHEMA_VERSION)),
            )
            if block_count is not None:
                connection.execute("INSERT OR REPLACE INTO meta VALUES ('block_count', ?)",
                                   (str(block_count),))
            self.session = uuid.uuid4().hex[:12]
            connection.execute(
                "INSERT INTO sessions (session, started, host, pid, executor) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.session, time.time(), socket.gethostname(), os.getpid(), executor),
            )
        self._last_commit = time.monotonic()
        self._ended = False

    def _mismatch(self, recorded: Mapping[str, str], now: Mapping[str, str]) -> str:
        names = sorted(set(recorded) | set(now))
        differs = [
            f"{name}: {recorded.get(name, '(none)')!r} in the journal, {now.get(name, '(none)')!r} now"
            for name in names if recorded.get(name) != now.get(name)
        ]
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
        with _transaction(self.connection):
            self.connection.execute(
                "UPDATE sessions SET ended = ?, stopped = ? WHERE session = ?",
                (time.time(), stopped, self.session),
            )
        self._ended = True

    # -- recording -----------------------------------------------------------------------

    def pending(self, blocks: Iterable[Block], *,
                batch: int = 1024) -> Iterator[tuple[int, Block | None, bool]]:
        """``(ordinal, block, failed_before)`` for every block in ``blocks``: ``block`` is
        None for those recorded done, which the run skips, and ``failed_before`` is True for
        those recorded failed. The records are looked up a batch at a time, so memory stays
        small whatever the number of blocks."""
        iterator = iter(blocks)
        ordinal = 0
        while True:
            chunk = list(itertools.islice(iterator, batch))
            if not chunk:
                return
            recorded = dict(self.connection.execute(
                "SELECT ordinal, status FROM blocks WHERE ordinal BETWEEN ? AND ?",
                (ordinal, ordinal + len(chunk) - 1),
            ).fetchall())
            for block in chunk:
                status = recorded.get(ordinal)
                yield ordinal, None if status == "done" else block, status == "failed"
                ordinal += 1

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
        with _transaction(self.connection):
            self.connection.executemany(
                f"INSERT INTO blocks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (ordinal) DO UPDATE SET key = excluded.key, "
                "status = excluded.status, attempts = excluded.attempts, "
                "all_attempts = blocks.all_attempts + excluded.attempts, "
                "read = excluded.read, process = excluded.process, write = excluded.write, "
                "worker = excluded.worker, error = excluded.error, "
                "traceback = excluded.traceback, value = excluded.value, "
                "session = excluded.session, finished = excluded.finished",
                rows,
            )

    # -- reading -------------------------------------------------------------------------

    def counts(self, session: str | None = None) -> dict[str, int]:
        """Blocks recorded done and failed (by ``session`` only, when given)."""
        self.flush()
        query = "SELECT status, count(*) FROM blocks"
        args: tuple[Any, ...] = ()
        if session is not None:
            query += " WHERE session = ?"
            args = (session,)
        counts = {"done": 0, "failed": 0}
        counts.update(dict(self.connection.execute(query + " GROUP BY status", args).fetchall()))
        return counts

    def count(self, *, status: BlockStatus | None = None, session: str | None = None,
              other_sessions: bool = False) -> int:
        """How many records match (see `records`)."""
        where, args = _where(status, session, other_sessions)
        self.flush()
        return self.connection.execute(f"SELECT count(*) FROM blocks{where}", args).fetchone()[0]

    def records(self, *, status: BlockStatus | None = None, session: str | None = None,
                other_sessions: bool = False, order: str = "ordinal",
                limit: int | None = None) -> Iterator[BlockRecord]:
        """Records in block order (or ``order="slowest"``), streamed from the file.
        ``session`` keeps those of one session, or of every other one with
        ``other_sessions``."""
        where, args = _where(status, session, other_sessions)
        ordering = {"ordinal": "ordinal",
                    "slowest": "coalesce(read, 0) + coalesce(process, 0) + "
                               "coalesce(write, 0) DESC"}[order]
        query = f"SELECT {_COLUMNS} FROM blocks{where} ORDER BY {ordering}"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        self.flush()
        # a cursor of its own, so that readers may interleave with each other
        for row in self.connection.cursor().execute(query, args):
            yield _record(row)

    def record(self, key: str) -> BlockRecord | None:
        """The record of the block ``key``, if there is one."""
        self.flush()
        row = self.connection.execute(
            f"SELECT {_COLUMNS} FROM blocks WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else _record(row)

    def block_count(self) -> int | None:
        """How many blocks the run has, as its last session counted them."""
        row = self.connection.execute(
            "SELECT value FROM meta WHERE name = 'block_count'").fetchone()
        return None if row is None else int(row[0])

    def fingerprint(self) -> dict[str, str]:
        """The fingerprint of the run the journal records."""
        row = self.connection.execute("SELECT value FROM meta WHERE name = 'fingerprint'").fetchone()
        return {} if row is None else json.loads(row[0])

    def sessions(self) -> list[dict[str, Any]]:
        """The runs that used the journal, oldest first."""
        cursor = self.connection.execute(
            "SELECT session, started, ended, host, pid, executor, stopped FROM sessions "
            "ORDER BY started"
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]


def _where(status: BlockStatus | None, session: str | None,
           other_sessions: bool) -> tuple[str, tuple[Any, ...]]:
    clauses, args = [], []
    if status is not None:
        clauses.append("status = ?")
        args.append(BlockStatus(status).value)
    if session is not None:
        clauses.append("session != ?" if other_sessions else "session = ?")
        args.append(session)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit
    connection: the write lock is taken up front, so concurrent writers queue on SQLite's
    busy timeout instead of failing half way."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")

"""The journal's storage: its SQLite schema, the record of a block, and the small SQL
helpers `Journal` is written with."""

from __future__ import annotations

import enum
import os
import pickle
import socket
import sqlite3
import time
from typing import Any

import attrs
import cloudpickle

from ._json import json_ready
from .result import BlockFailure, BlockStatus, BlockTimings

__all__ = ["BlockRecord", "BlockState", "dumps_value", "SCHEMA", "COLUMNS", "LEASE",
           "HEARTBEAT"]

SCHEMA_VERSION = 2
"""2: blocks are claimed in ranges (table ``claimed``), no longer one row each."""

LEASE = 120.0
"""Seconds after its last sign of life that a session's claims on blocks lapse (a session
killed with SIGKILL cannot release them): other sessions may then run those blocks."""

HEARTBEAT = 10.0
"""Most seconds between two signs of life of a running session."""


class BlockState(str, enum.Enum):
    """What the journal says of a block as a run reaches it."""

    DONE = "done"
    """Recorded done: skipped."""
    NEW = "new"
    """Never recorded, or failed earlier in this session's own pass."""
    FAILED_BEFORE = "failed_before"
    """Recorded failed by an earlier session."""
    CLAIMED = "claimed"
    """Being run by another live session of the same run."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY,
    started REAL NOT NULL,
    ended REAL,
    host TEXT,
    pid INTEGER,
    executor TEXT,
    stopped TEXT,
    alive REAL
);
CREATE TABLE IF NOT EXISTS claimed (
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    session TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS claimed_by_last ON claimed (last);
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

COLUMNS = ("ordinal, key, status, attempts, all_attempts, read, process, write, worker, "
           "error, traceback, value, session, finished")


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
        """A JSON-ready dict, the value made JSON-ready by `json_ready` (its error, when it
        cannot be unpickled in this process)."""
        try:
            value = json_ready(self.value)
        except Exception as error:  # its class is not importable here
            value = f"<the value cannot be read here: {type(error).__name__}: {error}>"
        return {
            "key": self.key, "status": self.status.value, "attempts": self.attempts,
            "all_attempts": self.all_attempts,
            "read": self.timings.read, "process": self.timings.process,
            "write": self.timings.write, "worker": self.worker, "error": self.error,
            "traceback": self.traceback, "session": self.session, "finished": self.finished,
            "value": value,
        }


def record_of(row: tuple[Any, ...]) -> BlockRecord:
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


def remove_files(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except OSError:
            pass


def session_alive(host: str, pid: int, alive: float | None) -> bool:
    """Whether a session that has not ended still runs: on this host, whether its process
    does; elsewhere, whether it showed a sign of life within the `LEASE`."""
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process
            pass
    return alive is not None and alive > time.time() - LEASE


def where_clause(status: BlockStatus | None, session: str | None,
           other_sessions: bool) -> tuple[str, tuple[Any, ...]]:
    clauses, args = [], []
    if status is not None:
        clauses.append("status = ?")
        args.append(BlockStatus(status).value)
    if session is not None:
        clauses.append("session != ?" if other_sessions else "session = ?")
        args.append(session)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


class transaction:
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

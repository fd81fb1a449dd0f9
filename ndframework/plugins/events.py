"""A run's events as JSON lines: a machine-readable record of a run as it happens, for
dashboards, monitoring scripts and the analysis of a cluster run after the fact."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

import attrs

from ..errors import ConfigError
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..geometry import Block
    from ..hookspecs import RetryReason
    from ..result import BlockOutcome, BlockTimings, RunInfo, RunResult

__all__ = ["EventLog"]


class EventLog:
    """Writes one JSON object per line to ``path`` for each event of a run, flushed as it
    is written, so that the file can be followed while the run goes on.

    The events, each with ``"event"`` (its name), ``"time"`` (seconds since the Unix
    epoch) and ``"session"`` (this session of the run):

    - ``run_start``: ``run_id``, ``blocks`` (the run's block count), ``bounds``
      (``{"start": [z, y, x], "stop": [z, y, x]}``), ``channels``, ``source``,
      ``processor``, ``executor``, ``sink``, ``journal``, ``host``, ``pid``;
    - ``blocks_skipped``: a resumed run skips the blocks its journal records done by
      earlier sessions: ``count``;
    - ``block_done`` and ``block_failed``: ``key``, ``index`` (``[z, y, x]`` in the block
      grid), ``attempts``, ``worker``, ``timings`` (``read``, ``process``, ``write`` and
      ``total`` seconds in the worker); a failed block also has ``status`` and ``error``;
    - ``block_retry``: a try of a block failed, and the block will be tried again:
      ``key``, ``index``, ``attempt`` (the try that failed), ``worker``, ``timings``,
      ``reason`` (``retry_on``: its processor's ``retry_on`` names the error; ``timeout``;
      ``worker_died``), ``error``;
    - ``run_stopped``: the run stopped early: ``reason``, ``error`` (the type and message
      of the error ``Pipeline.run`` raises, or null when it returns its result);
    - ``run_end``: ``run_id``, ``ok``, ``counts`` (``done``, ``failed``, ``skipped``,
      ``not_run``), ``seconds``, ``stopped`` (why the run ended early, or null),
      ``plugin_errors``.

    An existing file is appended to: a resumed run adds a ``run_start`` of its own, then
    events for the blocks it runs. Sources and sinks appear as their descriptions, which
    never hold a token.

    Parameters
    ----------
    path:
        The file (JSON lines). It is opened when a run starts, not here.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigError(f"EventLog takes the path of a file, got {path!r}", path)
        self.path = os.fspath(path)
        self._file: IO[str] | None = None

    def __repr__(self) -> str:
        return f"EventLog({self.path!r})"

    @hookimpl
    def ndf_before_run(self, run: RunInfo) -> None:
        self.close()
        self._file = open(self.path, "a", encoding="utf-8")
        self._write(run, "run_start", {
            "run_id": run.run_id,
            "blocks": run.block_count,
            "bounds": {"start": list(run.bounds.start), "stop": list(run.bounds.stop)},
            "channels": list(run.channels),
            "source": run.source,
            "processor": run.processor,
            "executor": run.executor,
            "sink": run.sink,
            "journal": run.journal,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        })

    @hookimpl
    def ndf_on_blocks_skipped(self, run: RunInfo, keys: Sequence[str]) -> None:
        self._write(run, "blocks_skipped", {"count": len(keys)})

    @hookimpl
    def ndf_after_block(self, run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
        self._write(run, "block_done", _block(block, outcome, attempts=outcome.attempts))

    @hookimpl
    def ndf_on_block_retry(self, run: RunInfo, block: Block, outcome: BlockOutcome,
                           attempt: int, reason: RetryReason) -> None:
        self._write(run, "block_retry", _block(block, outcome, attempt=attempt,
                                               reason=reason, error=outcome.error))

    @hookimpl
    def ndf_on_block_error(self, run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
        self._write(run, "block_failed", _block(
            block, outcome, attempts=outcome.attempts, status=outcome.status.value,
            error=outcome.error))

    @hookimpl
    def ndf_on_run_stopped(self, run: RunInfo, reason: str,
                           error: BaseException | None) -> None:
        self._write(run, "run_stopped", {
            "reason": reason,
            "error": None if error is None else f"{type(error).__name__}: {error}",
        })

    @hookimpl
    def ndf_after_run(self, run: RunInfo, result: RunResult) -> None:
        try:
            self._write(run, "run_end", {
                "run_id": run.run_id,
                "ok": result.ok,
                "counts": attrs.asdict(result.counts),
                "seconds": result.elapsed,
                "stopped": result.stopped,
                "plugin_errors": list(result.plugin_errors),
            })
        finally:
            self.close()

    def close(self) -> None:
        """Close the file (done at the end of every run)."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def _write(self, run: RunInfo, event: str, fields: dict[str, Any]) -> None:
        if self._file is None:  # the file could not be opened: reported once already
            return
        line = json.dumps({"event": event, "time": time.time(), "session": run.session,
                           **fields})
        self._file.write(line + "\n")  # one write per line: readers never see half of one
        self._file.flush()


def _block(block: Block, outcome: BlockOutcome, **fields: Any) -> dict[str, Any]:
    """A block event's fields: the block, how many tries (``attempts``, or the
    ``attempt`` retried), the worker, the timings, and the ``fields`` given, in that
    order."""
    event: dict[str, Any] = {"key": block.key, "index": list(block.index)}
    tries = {name: fields.pop(name) for name in ("attempts", "attempt") if name in fields}
    return {**event, **tries, "worker": outcome.worker,
            "timings": _timings(outcome.timings), **fields}


def _timings(timings: BlockTimings) -> dict[str, float]:
    return {"read": timings.read, "process": timings.process, "write": timings.write,
            "total": timings.total}

"""An ndframework plugin that reports, at the end of every run, where the time went and what
went wrong on the way: the slowest blocks, the tries retried (and why), the blocks skipped
because an earlier session of the run did them, and why the run stopped early, if it did.

Installed, it joins every run through the ``ndframework`` entry-point group (see
``pyproject.toml``). The report is one INFO line on the logger ``ndframework_block_timer``
and, when the environment variable ``BLOCK_TIMER_REPORT`` names a file, a line of JSON
appended to that file::

    {"run_id": "...", "session": "...", "blocks": 16, "done": 15, "failed": 1,
     "skipped": 0, "retries": {"retry_on": 1}, "slowest": [["0_32_0", 0.41], ...],
     "stopped": null, "error": null}
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import ndframework as ndf

__all__ = ["BlockTimer", "plugin"]

logger = logging.getLogger("ndframework_block_timer")

REPORT_VARIABLE = "BLOCK_TIMER_REPORT"
"""The environment variable naming the file that reports are appended to."""


@dataclasses.dataclass
class _Session:
    """What the plugin has seen of one session of a run."""

    slowest: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    """A heap of ``(seconds, key)``: the slowest blocks done so far."""
    retries: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Tries retried, by reason."""
    skipped: int = 0
    stopped: str | None = None
    error: str | None = None


class BlockTimer:
    """The plugin. One object serves every run of the process (the entry point names one),
    so what it learns is kept per session of a run, and dropped when the session ends.

    Parameters
    ----------
    slowest:
        How many of the slowest blocks a report names.
    report:
        The file reports are appended to, as JSON lines (default: the one
        ``BLOCK_TIMER_REPORT`` names when a run ends, if any).
    """

    def __init__(self, slowest: int = 5, report: str | None = None) -> None:
        self.slowest = slowest
        self.report = report
        self._sessions: dict[str, _Session] = {}

    @ndf.hookimpl
    def ndf_before_run(self, run: ndf.RunInfo) -> None:
        self._sessions[run.session] = _Session()

    @ndf.hookimpl
    def ndf_on_blocks_skipped(self, run: ndf.RunInfo, keys: Sequence[str]) -> None:
        self._sessions[run.session].skipped = len(keys)

    @ndf.hookimpl
    def ndf_after_block(self, run: ndf.RunInfo, block: ndf.Block,
                        outcome: ndf.BlockOutcome) -> None:
        slowest = self._sessions[run.session].slowest
        entry = (outcome.timings.total, block.key)
        if len(slowest) < self.slowest:
            heapq.heappush(slowest, entry)
        else:
            heapq.heappushpop(slowest, entry)

    @ndf.hookimpl
    def ndf_on_block_retry(self, run: ndf.RunInfo, reason: str) -> None:
        self._sessions[run.session].retries[reason] += 1

    @ndf.hookimpl
    def ndf_on_run_stopped(self, run: ndf.RunInfo, reason: str,
                           error: BaseException | None) -> None:
        session = self._sessions[run.session]
        session.stopped = reason
        session.error = None if error is None else type(error).__name__

    @ndf.hookimpl
    def ndf_after_run(self, run: ndf.RunInfo, result: ndf.RunResult) -> None:
        session = self._sessions.pop(run.session, None)
        if session is None:  # registered while the run went on: nothing seen
            return
        report = self.summary(run, result, session)
        slowest = ", ".join(f"{key} ({seconds:.3f} s)" for key, seconds in report["slowest"])
        retries = ", ".join(f"{count} {reason}" for reason, count in report["retries"].items())
        logger.info("run %s: slowest blocks %s; retries: %s; %d skipped%s", run.run_id,
                    slowest or "none", retries or "none", report["skipped"],
                    f"; stopped: {report['stopped']}" if report["stopped"] else "")
        path = self.report or os.environ.get(REPORT_VARIABLE)
        if path:
            with open(path, "a", encoding="utf-8") as file:
                file.write(json.dumps(report) + "\n")

    @staticmethod
    def summary(run: ndf.RunInfo, result: ndf.RunResult, session: _Session) -> dict[str, Any]:
        """The report of a session, as JSON-ready values."""
        return {
            "run_id": run.run_id,
            "session": run.session,
            "blocks": run.block_count,
            "done": result.counts.done,
            "failed": result.counts.failed,
            "skipped": session.skipped,
            "retries": dict(session.retries),
            "slowest": [[key, seconds] for seconds, key in sorted(session.slowest, reverse=True)],
            "stopped": session.stopped,
            "error": session.error,
        }


plugin = BlockTimer()
"""The instance the entry point names: every run of the process reports through it."""

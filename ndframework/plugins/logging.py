"""Logs each run and block through the standard `logging` module, to the logger
``ndframework.run``: INFO when a run starts and ends, for the blocks a resumed run skips
and for each try that will be retried, DEBUG for each block done, WARNING for each block
that failed and for a run that stopped early.

It is built in: every run has it, with or without the ``ndframework`` entry-point group.
Nothing is shown until logging is configured, e.g. ``logging.basicConfig(level="INFO")``
or the command's ``--log-level INFO``. The package's other loggers are children of
``ndframework`` too (``ndframework.plugins``, ``ndframework.worker``, ``ndframework.boss``,
``ndframework.bossemu``), so one level set on ``ndframework`` governs them all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..geometry import Block
    from ..hookspecs import RetryReason
    from ..result import BlockOutcome, RunInfo, RunResult

logger = logging.getLogger("ndframework.run")

_RETRY_CAUSES = {"retry_on": "failed", "timeout": "timed out", "worker_died": "lost its worker"}


@hookimpl
def ndf_before_run(run: RunInfo) -> None:
    logger.info("run %s: %d blocks of %s with %s on %s", run.run_id, run.block_count,
                run.source, run.processor, run.executor)


@hookimpl
def ndf_on_blocks_skipped(run: RunInfo, keys: Sequence[str]) -> None:
    logger.info("run %s: %d blocks skipped, done by an earlier session (journal %s)",
                run.run_id, len(keys), run.journal)


@hookimpl
def ndf_after_block(run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
    logger.debug("run %s: block %s done in %.3f s by %s", run.run_id, block.key,
                 outcome.timings.total, outcome.worker)


@hookimpl
def ndf_on_block_retry(run: RunInfo, block: Block, outcome: BlockOutcome, attempt: int,
                       reason: RetryReason) -> None:
    logger.info("run %s: block %s %s on try %d, trying again: %s", run.run_id, block.key,
                _RETRY_CAUSES.get(reason, reason), attempt, outcome.error)


@hookimpl
def ndf_on_block_error(run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
    logger.warning("run %s: block %s failed: %s", run.run_id, block.key, outcome.error)


@hookimpl
def ndf_on_run_stopped(run: RunInfo, result: RunResult, reason: str) -> None:
    logger.warning("run %s stopped early, %d blocks not run: %s", run.run_id,
                   result.counts.not_run, reason)


@hookimpl
def ndf_after_run(run: RunInfo, result: RunResult) -> None:
    logger.info("run %s: %s", run.run_id, result.summary().splitlines()[0])

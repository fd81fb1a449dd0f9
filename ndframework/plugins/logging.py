"""Logs each run and block through the standard `logging` module, to the logger
``ndframework.run``: INFO when a run starts and ends and for each try that will be
retried, DEBUG for each block done, WARNING for each block that failed.

It is loaded through the ``ndframework`` entry-point group, so it is always there; nothing
is shown until logging is configured, e.g. ``logging.basicConfig(level="INFO")`` or the
command's ``--log-level INFO``. The package's other loggers are children of
``ndframework`` too (``ndframework.plugins``, ``ndframework.worker``, ``ndframework.boss``,
``ndframework.bossemu``), so one level set on ``ndframework`` governs them all.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..geometry import Block
    from ..result import BlockOutcome, RunInfo, RunResult

logger = logging.getLogger("ndframework.run")


@hookimpl
def ndf_before_run(run: RunInfo) -> None:
    logger.info("run %s: %d blocks of %s with %s on %s", run.run_id, run.block_count,
                run.source, run.processor, run.executor)


@hookimpl
def ndf_after_block(run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
    logger.debug("run %s: block %s done in %.3f s by %s", run.run_id, block.key,
                 outcome.timings.total, outcome.worker)


@hookimpl
def ndf_on_block_retry(run: RunInfo, block: Block, outcome: BlockOutcome, attempt: int) -> None:
    logger.info("run %s: block %s failed on try %d, trying again: %s", run.run_id,
                   block.key, attempt, outcome.error)


@hookimpl
def ndf_on_block_error(run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
    logger.warning("run %s: block %s failed: %s", run.run_id, block.key, outcome.error)


@hookimpl
def ndf_after_run(run: RunInfo, result: RunResult) -> None:
    logger.info("run %s: %s", run.run_id, result.summary().splitlines()[0])

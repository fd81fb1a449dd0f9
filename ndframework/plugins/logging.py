"""Logs each run and block through the standard `logging` module (logger
``ndframework.run``). Loaded through the ``ndframework`` entry-point group, so it is
always there; configure the logger to see its lines."""

from __future__ import annotations

import logging
from typing import Any

from ..hookspecs import hookimpl

logger = logging.getLogger("ndframework.run")


@hookimpl
def ndf_before_run(run: Any) -> None:
    logger.info("run %s: %d blocks of %s with %s on %s", run.run_id, run.block_count,
                run.source, run.processor, run.executor)


@hookimpl
def ndf_after_block(run: Any, block: Any, outcome: Any) -> None:
    logger.debug("run %s: block %s done in %.3f s by %s", run.run_id, block.key,
                 outcome.timings.total, outcome.worker)


@hookimpl
def ndf_on_block_error(run: Any, block: Any, outcome: Any) -> None:
    logger.warning("run %s: block %s failed: %s", run.run_id, block.key, outcome.error)


@hookimpl
def ndf_after_run(run: Any, result: Any) -> None:
    logger.info("run %s: %s", run.run_id, result.summary().splitlines()[0])

"""Hook specifications: where plugins join a run.

Every hook runs in the coordinating process (the one that called ``Pipeline.run``), never in
a worker, so a plugin may keep state, draw a progress bar or write a log without locks.
Return values are ignored. A hook that raises does not stop the run: the error is logged
once (logger ``ndframework.plugins``) and listed in ``RunResult.plugin_errors``. Implement
hooks with `ndframework.hookimpl` on a class or module and pass it in
``Pipeline(plugins=[...])``, or publish it in the ``ndframework`` entry-point group of your
package's metadata.

For every block handed out, exactly one of `ndf_after_block` and `ndf_on_block_error`
follows its `ndf_before_block`, unless the run stops while the block is in flight (it is
interrupted, or it stops early and takes back the blocks handed out but not started): such
blocks are counted in ``result.not_run``.
Blocks that an earlier session of the run recorded done in the journal are skipped: no hook
sees them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .geometry import Block
    from .result import BlockOutcome, RunInfo, RunResult

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME"]

PROJECT_NAME = "ndframework"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ndf_before_run(run: RunInfo) -> None:
    """Called once when a run starts, after the plan is validated and before any block is
    handed to a worker.

    Parameters
    ----------
    run:
        The run's description: ``run_id``, ``bounds``, ``block_count`` (blocks to process in
        this run), ``channels``, executor and processor names.
    """


@hookspec
def ndf_after_run(run: RunInfo, result: RunResult) -> None:
    """Called once when a run ends: after its last block, or when it stops early (a
    data-access error, too many failures, SIGINT or SIGTERM); ``result.stopped`` then says
    why. ``result`` says what happened to every block."""


@hookspec
def ndf_before_block(run: RunInfo, block: Block) -> None:
    """Called for each block just before it is handed to a worker (once, even if the block
    is retried)."""


@hookspec
def ndf_after_block(run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
    """Called for each block that succeeded, as its outcome arrives from the worker.

    ``outcome`` holds the block's ``key``, ``value``, ``timings`` and ``worker``. Blocks
    complete in no fixed order.
    """


@hookspec
def ndf_on_block_retry(run: RunInfo, block: Block, outcome: BlockOutcome, attempt: int) -> None:
    """Called when a try of a block failed with an exception the processor's ``retry_on``
    names and the block will be tried again; ``attempt`` is the number of the try that
    failed (1 for the first). Its `ndf_before_block` was called once, before the first try.
    """


@hookspec
def ndf_on_block_error(run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
    """Called for each block that failed for good (after its last attempt), with the same
    arguments as `ndf_after_block`; ``outcome.error`` and ``outcome.traceback`` say why."""

"""Hook specifications: where plugins join a run.

Implement hooks with `ndframework.hookimpl`, as functions of a module or methods of an
object, each taking any subset of its hook's arguments by name, and pass the module or
object in ``Pipeline(plugins=[...])``, or publish it in the ``ndframework`` entry-point
group of your package's metadata.

Every hook runs in the coordinating process (the one that called ``Pipeline.run``, in the
thread that called it), never in a worker, one call at a time: a plugin may keep state,
draw a progress bar or write a file without locks. While a hook runs, no block is handed
out, so a slow hook slows the run. Return values are ignored. A hook that raises does not
stop the run: the error is logged once (logger ``ndframework.plugins``), counted, and listed
in ``RunResult.plugin_errors``, and the other plugins are still called.

The order of one session of a run:

1. `ndf_before_run`, once;
2. `ndf_on_blocks_skipped`, once, when the journal records blocks done by earlier sessions;
3. for each block handed out: `ndf_before_block`, then a `ndf_on_block_retry` for each try
   that failed and will be tried again, then exactly one of `ndf_after_block` and
   `ndf_on_block_error`, unless the run stops while the block is in flight (it is
   interrupted, or it stops early and takes back the blocks handed out but not started):
   such blocks are counted in ``result.not_run``. Blocks run in parallel, so the hooks of
   different blocks interleave;
4. `ndf_on_run_stopped`, once, when the run stopped early;
5. `ndf_after_run`, once, last, also when the run stops early or raises.

Among plugins, a hook is called in pluggy's order: the last registered first (the plugins
given in ``plugins=[...]`` from the last to the first, then those of the entry-point group,
then the built-in logging plugin), with ``tryfirst=True`` and ``trylast=True``
implementations first and last, and hook wrappers around them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import pluggy

if TYPE_CHECKING:
    from .geometry import Block
    from .result import BlockOutcome, RunInfo, RunResult

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME", "RETRY_REASONS", "RetryReason"]

PROJECT_NAME = "ndframework"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

RetryReason = Literal["retry_on", "timeout", "worker_died"]
RETRY_REASONS: tuple[RetryReason, ...] = ("retry_on", "timeout", "worker_died")
"""Why a block is tried again (see `ndf_on_block_retry`)."""


@hookspec
def ndf_before_run(run: RunInfo) -> None:
    """Called once per session of a run, when it starts: after the run is checked and its
    journal opened, before any block is handed out. The first hook of a run.

    Runs in the coordinating process; the return value is ignored.

    Parameters
    ----------
    run : RunInfo
        The run: ``run_id`` (the same for every session of the run), ``session`` (this
        one), ``bounds``, ``block_count`` (every block of the run, those earlier sessions
        did included), ``channels``, and descriptions, without secrets, of the
        ``source``, ``processor``, ``executor``, ``sink`` and ``journal``. The same object
        is passed to every hook of the session.
    """


@hookspec
def ndf_on_blocks_skipped(run: RunInfo, keys: Sequence[str]) -> None:
    """Called once, after `ndf_before_run` and before the first `ndf_before_block`, when
    the run resumes from a journal that records blocks done by earlier sessions: this
    session skips them, and no other hook sees them. Not called when there are none.

    Runs in the coordinating process; the return value is ignored.

    Parameters
    ----------
    run : RunInfo
        The run, as `ndf_before_run` saw it.
    keys : Sequence[str]
        The keys of the blocks skipped, in block order; ``len(keys)`` is their number.
        They are read from the journal as they are iterated (a run of millions of blocks
        does not hold them in memory): iterate them, or copy them with ``tuple(keys)``,
        within the hook, since blocks that other sessions sharing the journal finish
        later would appear too.
    """


@hookspec
def ndf_before_block(run: RunInfo, block: Block) -> None:
    """Called for each block of this session, just before it is first handed to a worker
    (once, even if the block is tried again). Blocks are handed out in the tiling's order,
    blocks that failed in an earlier session last.

    Runs in the coordinating process; the return value is ignored.

    Parameters
    ----------
    run : RunInfo
        The run.
    block : Block
        The block: ``key`` (``"z_y_x"`` of its start), ``index`` (its place in the block
        grid), ``box`` (the region it owns and writes) and ``read_box`` (``box`` grown by
        the halo, as read).
    """


@hookspec
def ndf_after_block(run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
    """Called for each block done, as its outcome arrives from the worker, after its
    outputs are written and it is recorded in the journal. Blocks finish in no fixed
    order.

    Runs in the coordinating process; the return value is ignored.

    Parameters
    ----------
    run : RunInfo
        The run.
    block : Block
        The block, as `ndf_before_block` saw it.
    outcome : BlockOutcome
        What the worker reported: ``key``, ``status`` (``BlockStatus.DONE``), ``value``
        (what ``process`` returned for ``reduce``), ``timings`` (``read``, ``process``,
        ``write`` and ``total`` seconds in the worker), ``worker`` (``pid`` or
        ``pid/thread``) and ``attempts`` (tries in this session, this one included).
    """


@hookspec
def ndf_on_block_retry(run: RunInfo, block: Block, outcome: BlockOutcome, attempt: int,
                       reason: RetryReason) -> None:
    """Called for each try of a block that failed in a way worth another try, when the
    block will be tried again (its `ndf_before_block` came once, before its first try).
    The try after the last allowed one (``max_attempts``) is not retried: the block
    fails, and `ndf_on_block_error` is called instead. Blocks only queued on a worker that
    was lost, and the blocks of a batch that ended early, are handed out again without
    this hook: they were not tried.

    Runs in the coordinating process; the return value is ignored.

    Parameters
    ----------
    run : RunInfo
        The run.
    block : Block
        The block, as `ndf_before_block` saw it.
    outcome : BlockOutcome
        The failed try: ``error`` (the error's type and message), and, for
        ``"retry_on"``, the worker's ``traceback``, ``timings`` and ``worker``. For
        ``"timeout"`` and ``"worker_died"`` the coordinator makes it (the worker is gone):
        ``worker`` names the worker process, the timings are zero.
    attempt : int
        The number of the try that failed (1 for the first).
    reason : str
        Why the try failed, one of `RETRY_REASONS`: ``"retry_on"``, ``process`` raised an
        exception that the processor's ``retry_on`` names; ``"timeout"``, the block ran
        past ``block_timeout`` and its worker was ended; ``"worker_died"``, the worker
        process running the block died (killed, crashed or out of memory), and the block
        runs again with no other block in flight.
    """


@hookspec
def ndf_on_block_error(run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
    """Called for each block that failed for good (after its last try), once it is
    recorded in the journal. The run goes on, unless the failure stops it (then
    `ndf_on_run_stopped` follows, once the blocks in flight are in).

    Runs in the coordinating process; the return value is ignored.

    Parameters
    ----------
    run : RunInfo
        The run.
    block : Block
        The block, as `ndf_before_block` saw it.
    outcome : BlockOutcome
        The last try, as for `ndf_after_block`, with ``status`` (``FAILED``,
        ``DATA_ERROR`` or ``SETUP_ERROR``), ``error`` (the error's type and message) and
        ``traceback`` (from the worker, when it raised) instead of a value.
    """


@hookspec
def ndf_on_run_stopped(run: RunInfo, result: RunResult, reason: str,
                       error: BaseException | None) -> None:
    """Called once when a run stopped early, after the blocks in flight are in and before
    `ndf_after_run`: a data-access error persisted, a worker's ``setup()`` failed, worker
    processes kept dying, a block returned arrays with no sink to write them to, too many
    blocks failed (``max_failures``), SIGINT or SIGTERM came, or something raised out of
    the run. Not called for a run that went through all its blocks, failed ones or not.

    Runs in the coordinating process; the return value is ignored.

    Parameters
    ----------
    run : RunInfo
        The run.
    result : RunResult
        What the session did, as `ndf_after_run` gets it: ``counts.not_run`` counts the
        blocks it did not get to.
    reason : str
        Why it stopped, one sentence (``result.stopped``).
    error : BaseException or None
        The exception that ``Pipeline.run`` raises next, with ``result`` attached as
        ``error.result``: `DataAccessError`, `SetupError`, `WorkerError`, `OutputError`,
        `RunInterrupted` (a `KeyboardInterrupt`), or whatever else raised out of the run;
        None when the run returns its result instead (it stopped at ``max_failures``).
    """


@hookspec
def ndf_after_run(run: RunInfo, result: RunResult) -> None:
    """Called once when a session of a run ends, the last hook of the run: after its last
    block, or when it stopped early (after `ndf_on_run_stopped`), also when
    ``Pipeline.run`` is about to raise. The journal is committed and the workers are shut
    down.

    Runs in the coordinating process; the return value is ignored.

    Parameters
    ----------
    run : RunInfo
        The run.
    result : RunResult
        What happened: ``ok``, ``counts`` (``done``, ``failed``, ``skipped``,
        ``not_run``), the keys ``done``, ``failed`` (with each error and traceback),
        ``skipped`` and ``not_run``, ``attempts``, ``timings``, ``elapsed``, ``stopped``
        (why the run ended early, or None) and ``plugin_errors`` (so far). ``reduced`` is
        the processor's reduced value, or None when the run stopped early.
    """

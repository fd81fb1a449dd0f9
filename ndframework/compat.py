"""Nd-Multicore's functions, kept for its users and built on the new parts.

``run_parallel(config_file, function)`` reads a ``neurodata.cfg``, splits its region into
blocks of ``block_size`` (x, y, z), and calls ``function({channel: ZYX array})`` on each
block in worker processes, as Nd-Multicore did: an exception in ``function`` skips that
block and the run goes on; a data-access failure ends the run. It returns each block's
``"z_y_x"`` key, or None for a skipped block, in block order. Underneath it is a `Pipeline`
over a `BossSource`; `get_boss_resource` and `compute_blocks` expose the two steps.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from .boss import BossSource, RetryPolicy
from .executors import ProcessExecutor, default_workers
from .geometry import Box, as_triple
from .pipeline import Pipeline
from .plugins import ProgressBar
from .processor import FunctionProcessor
from .tiling import RegularTiler

__all__ = ["run_parallel", "compute_blocks", "get_boss_resource", "Block", "NeuroDataResource"]

DEFAULT_BLOCK_SIZE = (1000, 1000, 10)
"""Nd-Multicore's default block size, (x, y, z)."""


class Block:
    """A block as Nd-Multicore described it: its ranges by axis name, and its ``data``
    (None until read)."""

    def __init__(self, z_range: Sequence[int], y_range: Sequence[int],
                 x_range: Sequence[int]) -> None:
        self.z_start, self.z_end = int(z_range[0]), int(z_range[1])
        self.y_start, self.y_end = int(y_range[0]), int(y_range[1])
        self.x_start, self.x_end = int(x_range[0]), int(x_range[1])
        self.data: dict[str, np.ndarray] | None = None

    @property
    def key(self) -> str:
        """``"z_y_x"`` of the block's start."""
        return f"{self.z_start}_{self.y_start}_{self.x_start}"

    @property
    def box(self) -> Box:
        """The block's region as a ZYX `Box`."""
        return Box((self.z_start, self.y_start, self.x_start),
                   (self.z_end, self.y_end, self.x_end))

    def __repr__(self) -> str:
        return (f"Block(x={self.x_start}:{self.x_end}, y={self.y_start}:{self.y_end}, "
                f"z={self.z_start}:{self.z_end})")


class NeuroDataResource:
    """What ``get_boss_resource`` returns: a validated BOSS volume with Nd-Multicore's
    attributes (``collection``, ``experiment``, ``channels``, ``requested_channels``,
    ``x_range``, ``y_range``, ``z_range``) and ``get_cutout``. ``source`` is the
    `BossSource` underneath."""

    def __init__(self, source: BossSource) -> None:
        self.source = source
        self.collection = source.config.collection
        self.experiment = source.config.experiment
        self.channels = list(source.info.channel_names)
        self.requested_channels = list(source.channels)
        bounds = source.bounds
        self.z_range = [bounds.start[0], bounds.stop[0]]
        self.y_range = [bounds.start[1], bounds.stop[1]]
        self.x_range = [bounds.start[2], bounds.stop[2]]

    def get_cutout(self, chan: str, zRange: Sequence[int], yRange: Sequence[int],  # noqa: N803
                   xRange: Sequence[int]) -> np.ndarray:  # noqa: N803
        """The ZYX array of channel ``chan`` over the given [start, stop) ranges."""
        box = Box((zRange[0], yRange[0], xRange[0]), (zRange[1], yRange[1], xRange[1]))
        return self.source.read(box, [chan])[chan]

    def __repr__(self) -> str:
        return f"NeuroDataResource({self.source.describe()})"


def get_boss_resource(config_file: str | os.PathLike[str], *,
                      retry: RetryPolicy | None = None) -> NeuroDataResource:
    """Read ``config_file`` (a ``neurodata.cfg``) and validate it against the BOSS."""
    return NeuroDataResource(BossSource.from_config(config_file, retry=retry))


def _tiler(block_size: Sequence[int]) -> RegularTiler:
    """Blocks of ``block_size`` (x, y, z) on the grid through 0, as intern's block_compute
    lays them: the same boxes."""
    x, y, z = as_triple(block_size, "block_size (x, y, z)", minimum=1)  # type: ignore[arg-type]
    return RegularTiler((z, y, x), origin=(0, 0, 0))


def compute_blocks(resource: NeuroDataResource,
                   block_size: Sequence[int] = DEFAULT_BLOCK_SIZE) -> list[Block]:
    """The blocks of ``block_size`` (x, y, z) covering the resource's ranges, in z, y, x
    order, each with ``data`` None."""
    bounds = resource.source.bounds
    return [Block(*zip(block.box.start, block.box.stop)) for block in
            _tiler(block_size).blocks(bounds)]


class _Job(FunctionProcessor):
    """Nd-Multicore's job: calls the function and keeps only whether it raised; what it
    returns is not sent back (Nd-Multicore's job returned the block's key alone)."""

    def process(self, data: dict[str, np.ndarray], block: Any) -> None:
        super().process(data, block)


def run_parallel(
    config_file: str | os.PathLike[str],
    function: Callable[..., Any],
    cpus: int | None = None,
    block_size: Sequence[int] = DEFAULT_BLOCK_SIZE,
    *,
    retry: RetryPolicy | None = None,
    progress: bool = False,
) -> list[str | None]:
    """Run ``function`` on every block of the volume ``config_file`` describes.

    Parameters
    ----------
    config_file:
        A ``neurodata.cfg``: ``[Default] protocol, host, token``; ``[Parallel] collection,
        experiment, channels, x_range, y_range, z_range``.
    function:
        Called with ``{channel: ZYX array}`` for each block, as ``function(data)``; a
        function with two required positional parameters is called ``function(data,
        block)`` with the `ndframework.Block` too, so that it can save its results under
        ``block.key`` or at ``block.box``. Its return value is not kept (save what you
        need); an exception skips the block.
    cpus:
        Worker processes (default: Nd-Multicore's, the CPUs this process may use minus
        one, at least one).
    block_size:
        Block size in x, y, z (default 1000, 1000, 10).
    retry:
        How transient BOSS failures are retried (default: `RetryPolicy()`).
    progress:
        Show a progress bar.

    Returns
    -------
    Each block's ``"z_y_x"`` key, or None where ``function`` raised, in block order.

    Raises
    ------
    ConfigError
        For a bad file or value, before any block is read.
    DataAccessError
        When reading a block fails for good: the run ends (blocks in flight finish).
    """
    source = BossSource.from_config(config_file, retry=retry)
    tiler = _tiler(block_size)
    pipeline = Pipeline(
        source, _Job(function), tiler=tiler,
        executor=ProcessExecutor(max(1, default_workers() - 1) if cpus is None else cpus),
        plugins=[ProgressBar()] if progress else [],
    )
    result = pipeline.run()
    done = set(result.done)
    return [block.key if block.key in done else None for block in tiler.blocks(source.bounds)]

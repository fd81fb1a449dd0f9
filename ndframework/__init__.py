"""ndframework: run your code over every block of a large 3-D multi-channel volume, in
parallel, and know exactly which blocks succeeded.

>>> import ndframework as ndf
>>> ndf.RegularTiler((16, 512, 512)).count(ndf.Box((0, 0, 0), (32, 1024, 1000)))
8
"""

from __future__ import annotations

import importlib.metadata as _metadata

from .errors import (
    ChannelError,
    ConfigError,
    DataAccessError,
    GeometryError,
    NDFrameworkError,
    OutOfBoundsError,
    OutputError,
    PluginError,
    BlocksFailedError,
    JournalMismatchError,
    ReduceError,
    RunInterrupted,
    SetupError,
    WorkerError,
)
from .executors import (
    Executor,
    ProcessExecutor,
    SerialExecutor,
    ThreadExecutor,
    WorkerSession,
    default_workers,
    executor_names,
    get_executor,
    register_executor,
)
from .geometry import Block, Box, Halo
from .hookspecs import hookimpl
from .pipeline import Pipeline
from .plugins import EventLog, ProgressBar
from .processor import BlockOutput, BlockProcessor, FunctionProcessor
from .journal import BlockRecord, Journal
from .result import (
    BlockFailure,
    BlockOutcome,
    BlockStatus,
    BlockTimings,
    Plan,
    RunCounts,
    RunInfo,
    RunResult,
)
from .storage import DataSink, DataSource, InMemorySink, InMemorySource, ZarrSink, ZarrSource
from .tiling import BOSS_CUBOID, CuboidTiler, RegularTiler, Tiler

try:
    __version__ = _metadata.version("ndframework")
except _metadata.PackageNotFoundError:  # the source tree, not installed
    __version__ = "0+unknown"

# BOSS access and the Nd-Multicore functions load intern and requests, which take a while to
# import: they are imported on first use, so that local runs and worker processes start fast.
_LAZY = {
    "BossConfig": "ndframework.boss",
    "BossSource": "ndframework.boss",
    "BossSink": "ndframework.boss",
    "RetryPolicy": "ndframework.boss",
    "run_parallel": "ndframework.compat",
    "compute_blocks": "ndframework.compat",
    "get_boss_resource": "ndframework.compat",
    "DaskExecutor": "ndframework.executors",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ndframework' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Box", "Block", "Halo",
    "Tiler", "RegularTiler", "CuboidTiler", "BOSS_CUBOID",
    "DataSource", "DataSink", "InMemorySource", "InMemorySink", "ZarrSource", "ZarrSink",
    "BlockProcessor", "FunctionProcessor", "BlockOutput",
    "Executor", "SerialExecutor", "ThreadExecutor", "ProcessExecutor", "DaskExecutor",
    "get_executor", "register_executor", "executor_names", "WorkerSession", "default_workers",
    "Pipeline", "Plan", "RunInfo", "RunResult", "RunCounts", "BlockFailure", "BlockOutcome",
    "BlockTimings", "BlockStatus", "Journal", "BlockRecord",
    "hookimpl", "ProgressBar", "EventLog",
    "NDFrameworkError", "ConfigError", "GeometryError", "ChannelError", "OutOfBoundsError",
    "OutputError", "DataAccessError", "WorkerError", "SetupError", "PluginError",
    "JournalMismatchError", "BlocksFailedError", "RunInterrupted", "ReduceError",
    "BossConfig", "BossSource", "BossSink", "RetryPolicy",
    "run_parallel", "compute_blocks", "get_boss_resource",
]

"""ndframework: run your code over every block of a large 3-D multi-channel volume, in
parallel, and know exactly which blocks succeeded.

>>> import ndframework as ndf
>>> ndf.RegularTiler((16, 512, 512)).count(ndf.Box((0, 0, 0), (32, 1024, 1000)))
8
"""

from __future__ import annotations

from .errors import (
    ChannelError,
    ConfigError,
    DataAccessError,
    GeometryError,
    NDFrameworkError,
    OutOfBoundsError,
    OutputError,
    PluginError,
    SetupError,
    WorkerError,
)
from .executors import (
    EXECUTORS,
    Executor,
    ProcessExecutor,
    SerialExecutor,
    ThreadExecutor,
    default_workers,
    get_executor,
)
from .geometry import Block, Box, Halo
from .hookspecs import hookimpl
from .pipeline import Pipeline
from .plugins import ProgressBar
from .processor import BlockOutput, BlockProcessor, FunctionProcessor
from .result import BlockFailure, Plan, RunInfo, RunResult
from ._worker import BlockOutcome, BlockTimings
from .storage import DataSink, DataSource, InMemorySink, InMemorySource, ZarrSink, ZarrSource
from .tiling import BOSS_CUBOID, CuboidTiler, RegularTiler, Tiler

__version__ = "0.1.0"

__all__ = [
    "Box", "Block", "Halo",
    "Tiler", "RegularTiler", "CuboidTiler", "BOSS_CUBOID",
    "DataSource", "DataSink", "InMemorySource", "InMemorySink", "ZarrSource", "ZarrSink",
    "BlockProcessor", "FunctionProcessor", "BlockOutput",
    "Executor", "SerialExecutor", "ThreadExecutor", "ProcessExecutor", "get_executor",
    "EXECUTORS", "default_workers",
    "Pipeline", "Plan", "RunInfo", "RunResult", "BlockFailure", "BlockOutcome", "BlockTimings",
    "hookimpl", "ProgressBar",
    "NDFrameworkError", "ConfigError", "GeometryError", "ChannelError", "OutOfBoundsError",
    "OutputError", "DataAccessError", "WorkerError", "SetupError", "PluginError",
]

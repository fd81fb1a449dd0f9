"""Sources that blocks are read from and sinks that outputs are written to."""

from ._base import DataSink, DataSource
from ._memory import InMemorySink, InMemorySource
from ._zarr import ZarrSink, ZarrSource

__all__ = [
    "DataSource",
    "DataSink",
    "InMemorySource",
    "InMemorySink",
    "ZarrSource",
    "ZarrSink",
]

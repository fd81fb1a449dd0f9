"""Test helpers for ndframework and for code that extends it: conformance test classes for
sources, sinks, tilers and executors, and the hypothesis strategies the project's own tests use. Needs the
``test`` extra (pytest, hypothesis)."""

from .conformance import SinkConformance, SourceConformance, sample_arrays
from .executors import ExecutorConformance
from .tilers import TilerConformance
from . import strategies

__all__ = [
    "SourceConformance", "SinkConformance", "TilerConformance", "ExecutorConformance",
    "sample_arrays", "strategies",
]

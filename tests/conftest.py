"""Shared fixtures: volumes, and the executors every result must agree across."""

from __future__ import annotations

import numpy as np
import pytest

import ndframework as ndf


def all_executors():
    """One of each executor, with two workers where that means something."""
    return [ndf.SerialExecutor(), ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)]


@pytest.fixture(params=all_executors(), ids=lambda e: e.name)
def executor(request):
    return request.param


@pytest.fixture
def volume():
    rng = np.random.default_rng(42)
    return {
        "em": rng.integers(0, 256, (10, 24, 20), dtype=np.uint8),
        "mask": rng.integers(0, 3, (10, 24, 20), dtype=np.uint16),
    }


@pytest.fixture
def source(volume):
    return ndf.InMemorySource(volume, origin=(0, 100, 200))

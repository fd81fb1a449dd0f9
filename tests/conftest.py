"""Shared fixtures: volumes, and the executors every result must agree across."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import ndframework as ndf

# Property tests: "ci", the default, draws the same examples on every run (a run that
# passes here passes on any machine, and a failure reproduces), with no deadline, since a
# loaded 2-core machine is slow; "explore" draws new ones, ten times as many, for hunting
# bugs: python -m pytest --hypothesis-profile explore
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=1000, deadline=None)
settings.load_profile("ci")


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

"""Bookkeeping that scales: the coordinator's memory does not grow with the number of
blocks (benchmarks/memory.py shows it for a million)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from memory import peak  # noqa: E402


@pytest.mark.timeout(120)
def test_a_run_over_many_blocks_keeps_the_coordinator_small():
    few, few_mib, _ = peak(1000)
    many, many_mib, _ = peak(125_000)
    assert (few, many) == (1000, 125_000)
    # before the journal held the records, 125,000 blocks cost the coordinator about 85 MiB
    assert many_mib - few_mib < 40, (few_mib, many_mib)

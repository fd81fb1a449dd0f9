"""What the side-by-side peer benchmarks share: each peer runs in a fresh child process,
whose process tree (workers, nannies, schedulers, forkservers included) the parent samples
for resident memory while it runs.

A child is the benchmark script itself, run as ``python script.py --child PEER ...``; it
prints one line ``RESULT {json}`` on stdout with its measured figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Sequence

import psutil

RESULT = "RESULT "


class TreeMemory:
    """Samples the summed resident memory of a process and all its descendants every
    ``interval`` seconds in a thread, and keeps the peak.

    Resident sizes are summed as the kernel reports them, so pages two processes share (the
    Python interpreter and libraries of each worker, copy-on-write pages after a fork) count
    once per process: an idle worker process adds its own tens of MiB.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                processes = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                processes = []
            total = 0
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass  # ended between listing and reading
            if total > self.peak:
                self.peak, self.peak_processes = total, len(processes)
            self._stop.wait(self.interval)


def run_child(script: str, arguments: Sequence[str], timeout: float = 3600) -> dict[str, Any]:
    """Run ``python script arguments`` in a fresh process, sample its tree's memory, and
    return its ``RESULT`` figures with ``peak_bytes`` (summed resident memory of the
    tree at its peak) added."""
    command = [sys.executable, script, *arguments]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=os.path.dirname(os.path.abspath(script)))
    with TreeMemory(child.pid) as memory:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
            raise RuntimeError(f"{' '.join(command)} timed out; stderr:\n{stderr[-4000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}); "
                           f"stderr:\n{stderr[-4000:]}")
    result = json.loads(lines[-1][len(RESULT):])
    result["peak_bytes"] = memory.peak
    result["peak_processes"] = memory.peak_processes
    return result


def report(figures: dict[str, Any]) -> None:
    """In a child: hand the figures to the parent."""
    sys.stdout.flush()
    print(RESULT + json.dumps(figures), flush=True)


class Stopwatch:
    """Wall-clock seconds of a ``with`` block."""

    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def mib(nbytes: float) -> float:
    return nbytes / 2**20


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table, so that it can be pasted into the docs as it is."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths))) + " |")

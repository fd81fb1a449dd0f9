"""What ``ndframework status`` shows of a run's journal: its report as data, as text, and a
failed block's traceback. Pure functions of an open `Journal`; the command prints them."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from ._json import json_ready
from .errors import ConfigError
from .journal import BlockRecord, Journal
from .result import BlockStatus

__all__ = ["status_report", "format_status", "failed_traceback", "unreadable_values"]

SHOWN_FAILURES = 20
"""Failed blocks that ``status`` lists."""
SHOWN_ERROR_LINES = 3
"""Lines of each failed block's error that ``status`` shows."""
SHOWN_SLOWEST = 5
"""Slowest blocks that ``status`` lists."""
SHOWN_VALUES = 3
"""Values of blocks done that ``status`` shows (``--values`` lists them all)."""
VALUE_CHARACTERS = 40
"""Most characters of each value's repr that ``status`` shows."""


def status_report(journal: Journal) -> dict[str, Any]:
    """What ``status`` shows, as JSON-ready data. ``block_count`` and ``never_tried`` are
    None for a journal older than the recording of the run's block count."""
    counts = journal.counts()
    block_count = journal.block_count()
    failures = [_record_dict(record) for record in
                journal.records(status=BlockStatus.FAILED, limit=SHOWN_FAILURES)]
    return {
        "journal": journal.path,
        "fingerprint": journal.fingerprint(),
        "counts": counts,
        "block_count": block_count,
        "never_tried": (None if block_count is None
                        else block_count - counts["done"] - counts["failed"]),
        "sessions": journal.sessions(),
        "failures": failures,
        "more_failures": max(0, counts["failed"] - len(failures)),
        "slowest": [_record_dict(record) for record in
                    journal.records(order="slowest", limit=SHOWN_SLOWEST)],
        **_first_values(journal),
    }


def _first_values(journal: Journal) -> dict[str, Any]:
    """``values``: the first blocks done with their values (as JSON data, or their repr),
    and ``values_error``: why they cannot be read here, or None."""
    try:
        first = list(itertools.islice(journal.values(), SHOWN_VALUES))
    except Exception as error:  # a value's class cannot be imported here
        return {"values": [], "values_error": unreadable_values(error)}
    return {"values": [{"key": key, "value": json_ready(value), "repr": _brief(value)}
                       for key, value in first],
            "values_error": None}


def unreadable_values(error: Exception) -> str:
    """Why the values of a journal's blocks cannot be shown: ``error``, raised as they were
    read (a value of a class from a module this process cannot import)."""
    return (f"cannot read the blocks' values here ({type(error).__name__}: {error}); run "
            f"status where the processor's module can be imported")


def _record_dict(record: BlockRecord) -> dict[str, Any]:
    data = record.to_dict()
    data["total"] = record.timings.total
    return data


def format_status(report: dict[str, Any]) -> str:
    """``report`` (from `status_report`) as the text ``status`` prints."""
    fingerprint = report["fingerprint"]
    names = ["source", "bounds", "channels", "tiler", "halo_mode", "processor", "sink"]
    parameters = [name for name in fingerprint if name.startswith("processor.")]
    names += [name for name in fingerprint
              if name not in names and name != "source_bounds" and name not in parameters]
    lines = [f"journal:    {report['journal']}"]
    for name in names:
        if name in fingerprint:
            lines.append(f"{name + ':':<11} {fingerprint[name]}")
        if name == "processor" and parameters:  # its attributes, as the run compares them
            lines.append(f"{'':<11} and {len(parameters)} of its attributes "
                         f"(--json lists them)")
    counts = report["counts"]
    blocks = f"blocks:     {counts['done']} done, {counts['failed']} failed"
    if report["never_tried"] is not None:
        blocks += f", {report['never_tried']} never tried, of {report['block_count']}"
    lines.append(blocks)
    lines.append(f"sessions:   {len(report['sessions'])}")
    for number, session in enumerate(report["sessions"], 1):
        lines.append(f"  {number}. {_session_line(session)}")
    if report["failures"]:
        lines.append("failed blocks:")
        for record in report["failures"]:
            lines.append(f"  {record['key']}  after {record['attempts']} attempt(s) "
                         f"({record['all_attempts']} in all), worker {record['worker'] or '?'}")
            error_lines = (record["error"] or "unknown error").splitlines()
            lines += [f"      {line}" for line in error_lines[:SHOWN_ERROR_LINES]]
            if len(error_lines) > SHOWN_ERROR_LINES:
                lines.append("      ...")
        if report["more_failures"]:
            lines.append(f"  ... and {report['more_failures']} more")
        lines.append(f"  (ndframework status {report['journal']} --traceback KEY shows a "
                     f"block's traceback)")
    if report.get("values_error"):
        lines.append(f"values:     {report['values_error']}")
    elif report.get("values") and any(item["value"] is not None for item in report["values"]):
        shown = ", ".join(f"{item['key']}: {item['repr']}" for item in report["values"])
        more = ", ..." if counts["done"] > len(report["values"]) else ""
        lines.append(f"values:     {shown}{more}  (--values lists every block's)")
    if report["slowest"]:
        lines.append("slowest blocks (seconds read + process + write = total):")
        for record in report["slowest"]:
            lines.append(f"  {record['key']:<16} {record['read']:.3f} + {record['process']:.3f} "
                         f"+ {record['write']:.3f} = {record['total']:.3f}  {record['status']}, "
                         f"worker {record['worker'] or '?'}")
    return "\n".join(lines)


def _brief(value: Any) -> str:
    """``value`` in a few words: an array's shape and dtype, else its repr, cut."""
    if isinstance(value, np.ndarray) and value.size > 8:
        return f"array{value.shape} {value.dtype}"
    text = repr(value)
    return text if len(text) <= VALUE_CHARACTERS else f"{text[:VALUE_CHARACTERS - 3]}..."


def _session_line(session: dict[str, Any]) -> str:
    started, ended = session["started"], session["ended"]
    text = f"{_when(started)} on {session['host']} (pid {session['pid']})"
    if session["executor"]:
        text += f", {session['executor']}"
    if ended is None:
        return f"{text}: not ended (still running, or killed before it could record its end)"
    text += f", {ended - started:.1f} s"
    if session["stopped"]:
        return f"{text}: stopped, {session['stopped']}"
    return f"{text}: ran to the end"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def failed_traceback(journal: Journal, key: str) -> str:
    """The full traceback of the failed block ``key`` (or its error, when it failed outside
    the processor).

    Raises
    ------
    ConfigError
        The journal has no record of ``key``, or records it done.
    """
    record = journal.record(key)
    if record is None:
        raise ConfigError(f"the journal has no record of block {key!r}", key)
    if record.status is not BlockStatus.FAILED:
        raise ConfigError(f"block {key!r} is {record.status.value}, not failed: it has no "
                          f"traceback", key)
    return record.traceback or (f"{record.error}\n(no traceback: the error happened outside "
                                f"the processor, e.g. its worker died or it timed out)")

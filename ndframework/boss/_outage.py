"""What this process has seen of BOSS servers that stopped answering: `Outage`.

When a request spends its whole retry budget failing, its server is taken to be down, for
as long again as that budget: other requests to it from this process, from any source or
sink and any thread, make one short try instead of a full budget's worth. So a run against
a server that froze ends about one budget after the freeze, even though it still waits for
the blocks already handed to its workers. The first request that the server answers ends
the outage.

The record is per process and per server URL; nothing here is pickled or shared between
processes (a worker process learns of an outage by living through it).
"""

from __future__ import annotations

import time

import attrs

__all__ = ["Outage", "current", "given_up", "answered"]


@attrs.frozen
class Outage:
    """A request to a server that spent its whole retry budget failing."""

    at: float
    """``time.monotonic()`` when it was given up."""
    spent: float
    """Seconds it spent failing."""
    until: float
    """``time.monotonic()`` after which requests to the server try in earnest again."""


# Plain dict operations, atomic under the GIL: no lock that a fork could inherit held.
_OUTAGES: dict[str, Outage] = {}


def current(url: str) -> Outage | None:
    """The outage of the server at ``url`` that this process is living through, or None."""
    outage = _OUTAGES.get(url)
    if outage is not None and time.monotonic() >= outage.until:
        return None
    return outage


def given_up(url: str, spent: float, budget: float) -> None:
    """Record that a request to ``url`` failed for ``spent`` seconds, its ``budget`` spent."""
    now = time.monotonic()
    _OUTAGES[url] = Outage(at=now, spent=spent, until=now + budget)


def answered(url: str) -> None:
    """Record that the server at ``url`` answered: whatever outage there was is over."""
    if url in _OUTAGES:  # the common case, without a write
        _OUTAGES.pop(url, None)

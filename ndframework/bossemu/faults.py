"""Fault injection and request counters of the emulator.

`Faults` says what to inject: a fraction of cutout requests failing with one status, for a
while or for good, latency on every request, or a frozen server that never answers.
`FaultInjector` draws the failures and counts every answer into `EmulatorStats`.

An injected fault looks like the real one, so that a client's error handling meets what it
meets in production (`ndframework.bossemu.errors`):

- 429: the BOSS's throttling body, ``{"status": 429, "code": 3004, "message": "User is
  throttled. Expected available tomorrow."}`` (boss django/boss/throttling.py,
  django/bosscore/renderer_helper.py ``check_for_429``);
- 500: Django's bare ``<h1>Server Error (500)</h1>`` page (``DEBUG = False``,
  django/boss/settings/production.py);
- 502, 503, 504: the HTML page of the load balancer in front of the API, no JSON.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Mapping

import attrs

from ..errors import ConfigError
from . import errors

__all__ = ["FAULT_STATUSES", "Faults", "EmulatorStats", "FaultInjector", "fault_page"]

FAULT_STATUSES = (429, 500, 502, 503, 504)
"""The statuses a fault may have."""


def _check_rate(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"error_rate must be between 0 and 1, got {value!r}", value)


def _check_fault_status(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value not in FAULT_STATUSES:
        raise ConfigError(f"status must be one of {FAULT_STATUSES}, got {value!r}", value)


def _check_latency(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not value >= 0.0:
        raise ConfigError(f"latency must be a number of seconds >= 0, got {value!r}", value)


def _as_window(value: object) -> object:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(value)


def _check_window(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not (isinstance(value, float) and value > 0.0):
        raise ConfigError(
            f"error_window must be a number of seconds > 0, or None for no end, got {value!r}",
            value,
        )


def _check_bool(instance: object, attribute: attrs.Attribute, value: bool) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{attribute.name} must be True or False, got {value!r}", value)


@attrs.frozen
class Faults:
    """Faults the emulator injects, for testing retries and timeouts.

    >>> Faults(error_rate=0.2, status=429)  # doctest: +NORMALIZE_WHITESPACE
    Faults(error_rate=0.2, status=429, latency=0.0, seed=0, error_window=None, frozen=False,
           every_request=False)

    An outage that passes: half of all cutouts fail for two seconds from the first cutout
    request after the faults are set, then none do.

    >>> Faults(error_rate=0.5, error_window=2.0).error_window
    2.0
    """

    error_rate: float = attrs.field(default=0.0, converter=float, validator=_check_rate)
    """Fraction of cutout requests (GET, POST, to-black PUT) answered with ``status``."""
    status: int = attrs.field(default=503, validator=_check_fault_status)
    """HTTP status of an injected fault: 503 (unavailable), 429 (throttled), 500, 502, 504."""
    latency: float = attrs.field(default=0.0, converter=float, validator=_check_latency)
    """Seconds added to every request before it is answered."""
    seed: int | None = 0
    """Seed of the draw deciding which requests fail; None draws from the OS."""
    error_window: float | None = attrs.field(
        default=None, converter=_as_window, validator=_check_window
    )
    """Seconds during which ``error_rate`` applies, counted from the first request it could
    fail under these faults (so that a client's start-up time does not count); None: for
    as long as they are set."""
    frozen: bool = attrs.field(default=False, validator=_check_bool)
    """Accept every connection and never answer, as a hung server does: requests (of any
    kind) are held until the faults change or the emulator stops, then the connection is
    closed without an answer."""
    every_request: bool = attrs.field(default=False, validator=_check_bool)
    """Let ``error_rate`` fail any request (resources, metadata, downsample...), not only
    cutouts: an outage of the whole API."""


@attrs.frozen
class EmulatorStats:
    """Counts of the requests the emulator has answered since it started (or was reset)."""

    requests: int = 0
    """Requests answered."""
    succeeded: int = 0
    """Requests answered with a status below 400."""
    failed: int = 0
    """Requests answered with a status of 400 or more, injected faults included."""
    injected: int = 0
    """Requests answered with an injected fault."""
    by_status: Mapping[int, int] = attrs.field(factory=dict)
    """Requests answered, by HTTP status."""
    unanswered: int = 0
    """Requests received while the emulator was frozen, never answered (not in the rest)."""


def fault_page(status: int) -> errors.ErrorPage:
    """What the BOSS (or the load balancer in front of it) answers with ``status``.

    >>> fault_page(429).body
    b'{"status": 429, "code": 3004, "message": "User is throttled. Expected available tomorrow."}'
    >>> fault_page(500).content_type, fault_page(503).content_type
    ('text/html', 'text/html')
    """
    if status == 429:
        throttled = errors.throttled("user")
        return errors.ErrorPage(429, "application/json", throttled.to_json())
    if status == 500:
        return errors.server_error_page()
    return errors.gateway_error_page(status)


@attrs.define
class FaultInjector:
    """The faults in force, the draw of which requests fail, and the request counters.

    Thread-safe: the HTTP layer calls it from one thread per connection.
    """

    _faults: Faults = attrs.field(alias="faults", factory=Faults)
    _rng: random.Random = attrs.field(init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _by_status: collections.Counter[int] = attrs.field(factory=collections.Counter, init=False)
    _injected: int = attrs.field(default=0, init=False)
    _unanswered: int = attrs.field(default=0, init=False)
    _window_start: float | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self._faults.seed)

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults instance, got {faults!r}")
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._window_start = None

    def draw(self, is_cutout: bool) -> errors.ErrorPage | None:
        """The fault a request gets, or None; ``is_cutout`` says whether it is one."""
        faults = self._faults
        if faults.error_rate <= 0.0 or not (is_cutout or faults.every_request):
            return None
        with self._lock:
            if faults.error_window is not None:
                now = time.monotonic()
                if self._window_start is None:
                    self._window_start = now
                if now - self._window_start >= faults.error_window:
                    return None
            failed = self._rng.random() < faults.error_rate
        return fault_page(faults.status) if failed else None

    def count(self, status: int, injected: bool = False) -> None:
        """Count one answer."""
        with self._lock:
            self._by_status[status] += 1
            self._injected += injected

    def count_unanswered(self) -> None:
        """Count a request held, frozen, and never answered."""
        with self._lock:
            self._unanswered += 1

    def stats(self) -> EmulatorStats:
        """A snapshot of the counters."""
        with self._lock:
            by_status = dict(sorted(self._by_status.items()))
            injected, unanswered = self._injected, self._unanswered
        total = sum(by_status.values())
        succeeded = sum(n for status, n in by_status.items() if status < 400)
        return EmulatorStats(total, succeeded, total - succeeded, injected, by_status, unanswered)

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._by_status.clear()
            self._injected = 0
            self._unanswered = 0

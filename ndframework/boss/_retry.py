"""Retrying BOSS requests that fail for a passing reason, within a time budget.

Transient failures are those a second try may cure: a refused or reset connection, a
timeout, an HTTP 5xx answer (the BOSS or its load balancer is busy or restarting) and HTTP
429 (throttled). Anything else (401, 403, 404, 400, ...) is a mistake in the request, and a
second try would only repeat it.

A request is retried, with exponential backoff and jitter, until it succeeds or its time
budget (`RetryPolicy.max_elapsed`, five minutes by default) is spent: an outage of a minute
costs a run a minute, not the run, however many requests it hits.

>>> policy = RetryPolicy(max_elapsed=10.0, base_delay=0.001, max_delay=0.01)
>>> attempts = []
>>> def flaky():
...     attempts.append(1)
...     if len(attempts) < 3:
...         raise requests.ConnectionError("connection reset")
...     return "ok"
>>> policy.call(flaky, what="a test request")
'ok'
>>> len(attempts)
3
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from typing import Callable, TypeVar

import attrs
import requests

from .._numbers import as_int
from ..errors import ConfigError

__all__ = [
    "RetryPolicy",
    "is_transient",
    "http_status",
    "short_reason",
    "TRANSIENT_STATUSES",
    "DEFAULT_MAX_ELAPSED",
    "retry_after",
]

logger = logging.getLogger("ndframework.boss")

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses worth another try (any other 5xx counts as well)."""
DEFAULT_MAX_ELAPSED = 300.0
"""Seconds a request may spend failing, retries and waits included, before it is given up."""


def http_status(error: BaseException) -> int | None:
    """The HTTP status of the response an intern/requests error carries, or None."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` may pass on a second try: connection errors, timeouts, 5xx, 429."""
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(error, requests.exceptions.ChunkedEncodingError):  # answer cut short
        return True
    status = http_status(error)
    return status is not None and (status in TRANSIENT_STATUSES or 500 <= status < 600)


def retry_after(error: BaseException) -> float | None:
    """Seconds a 429 or 503 answer asks the client to wait (``Retry-After``), if it says."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _as_attempts(value: object) -> int | None:
    return as_int(value, "max_attempts", minimum=1, none="for no cap")


def _as_float(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value  # the validator names it
    return float(value)


def _check_seconds(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not isinstance(value, float) or not value >= 0:
        raise ConfigError(
            f"{attribute.name} must be a number of seconds >= 0, got {value!r}", value
        )


def _check_budget(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not isinstance(value, float) or not value > 0 or value == float("inf"):
        raise ConfigError(
            f"max_elapsed must be a finite number of seconds > 0, got {value!r}", value
        )


def _check_jitter(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not isinstance(value, float) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"jitter must be between 0 and 1, got {value!r}", value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How long, and how patiently, a BOSS request is retried after transient failures.

    A request that fails transiently is tried again until it succeeds or ``max_elapsed``
    seconds have passed since its first try (tries, timeouts and waits all count), or, when
    set, ``max_attempts`` tries have been made. The wait before retry ``n`` (1, 2, ...) is
    ``base_delay * 2 ** (n - 1)``, capped at ``max_delay``, then shortened by a random
    fraction of at most ``jitter`` so that many workers failing together do not all come
    back at the same moment. A ``Retry-After`` header (429, 503) is honoured as asked, even
    beyond ``max_delay``; a request is given up when the wait would end past the budget.

    `BossSource` and `BossSink` also shorten the timeouts of a try to what is left of the
    budget, so a server that accepts requests and never answers is given up within
    ``max_elapsed`` plus the connect timeout.

    All fields are keyword-only.

    >>> policy = RetryPolicy(max_elapsed=20.0, base_delay=1.0, max_delay=5.0, jitter=0.0)
    >>> policy.delays()  # against a server that refuses at once: 6 tries in 20 s
    (1.0, 2.0, 4.0, 5.0, 5.0)
    >>> RetryPolicy().max_elapsed
    300.0
    """

    max_elapsed: float = attrs.field(
        default=DEFAULT_MAX_ELAPSED, converter=_as_float, validator=_check_budget
    )
    """Seconds a request may spend failing before it is given up, from its first try:
    tries (each bounded by the timeouts), and the waits between them."""
    base_delay: float = attrs.field(default=0.5, converter=_as_float, validator=_check_seconds)
    """Seconds before the first retry (before jitter)."""
    max_delay: float = attrs.field(default=30.0, converter=_as_float, validator=_check_seconds)
    """Longest wait between two tries, in seconds (a ``Retry-After`` may ask for more)."""
    jitter: float = attrs.field(default=0.5, converter=_as_float, validator=_check_jitter)
    """Largest fraction by which a wait is randomly shortened: 0 (none) to 1 (full jitter)."""
    max_attempts: int | None = attrs.field(default=None, converter=_as_attempts)
    """Most tries in all, the first included (1 means no retry); None: as many as fit in
    ``max_elapsed``."""

    def delay(self, retry: int, error: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first) after ``error``:
        what its ``Retry-After`` asks for, else the backoff with jitter."""
        asked = None if error is None else retry_after(error)
        if asked is not None:
            return asked
        wait = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return wait * (1.0 - self.jitter * random.random())

    def delays(self) -> tuple[float, ...]:
        """The waits between tries, without jitter, against a server that fails at once:
        those that fit in ``max_elapsed`` (and ``max_attempts``), for reading the policy."""
        waits: list[float] = []
        elapsed = 0.0
        while self.max_attempts is None or len(waits) + 1 < self.max_attempts:
            wait = min(self.max_delay, self.base_delay * 2 ** len(waits))
            if elapsed + wait >= self.max_elapsed:
                break
            waits.append(wait)
            elapsed += wait
        return tuple(waits)

    def call(
        self,
        function: Callable[[], T],
        *,
        what: str,
        transient: Callable[[BaseException], bool] = is_transient,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> T:
        """Call ``function`` until it returns, retrying transient errors within the budget.

        Each retry is logged at INFO on the ``ndframework.boss`` logger, with ``what``, the
        reason (one line) and the wait.

        Parameters
        ----------
        function:
            The request, a function of no arguments.
        what:
            The request in words, for log lines (never secrets).
        transient:
            Decides which errors are worth another try.
        sleep:
            How to wait (tests may pass a recorder).
        clock:
            Seconds from a monotonic clock (tests may pass a fake one).
        started:
            ``clock()`` when the budget began; default: now.

        Raises
        ------
        Exception
            The last error, unchanged, once the budget is spent (or ``max_attempts`` tries
            made) or as soon as an error is not transient. It carries ``ndf_attempts`` (tries
            made), ``ndf_elapsed`` (seconds since the budget began) and ``ndf_gave_up``
            (why retrying stopped, in words; None when the error was not transient).
        """
        started = clock() if started is None else started
        attempt = 1
        while True:
            try:
                return function()
            except Exception as error:
                elapsed = clock() - started
                if not transient(error):
                    _annotate(error, attempt, elapsed, gave_up=None)
                    raise
                wait = self.delay(attempt, error)
                gave_up = self._give_up(attempt, elapsed, wait, error)
                if gave_up is not None:
                    _annotate(error, attempt, elapsed, gave_up)
                    raise
                logger.info(
                    "%s failed (attempt %d, %.1f s of a %g s retry budget spent: %s); "
                    "retrying in %.3f s",
                    what, attempt, elapsed, self.max_elapsed, short_reason(error), wait,
                )
                sleep(wait)
                attempt += 1

    def _give_up(
        self, attempt: int, elapsed: float, wait: float, error: BaseException
    ) -> str | None:
        """Why not to try again after ``attempt`` tries over ``elapsed`` seconds, or None."""
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return f"max_attempts = {self.max_attempts} reached"
        if elapsed + wait < self.max_elapsed:
            return None
        asked = retry_after(error)
        if asked is not None and elapsed < self.max_elapsed:
            return (
                f"the server asked to wait {asked:g} s (Retry-After), past the retry budget "
                f"of {self.max_elapsed:g} s"
            )
        return f"the retry budget of {self.max_elapsed:g} s is spent"


def _annotate(error: BaseException, attempts: int, elapsed: float, gave_up: str | None) -> None:
    try:
        error.ndf_attempts = attempts  # type: ignore[attr-defined]
        error.ndf_elapsed = elapsed  # type: ignore[attr-defined]
        error.ndf_gave_up = gave_up  # type: ignore[attr-defined]
    except AttributeError:  # exceptions with __slots__
        pass


def short_reason(error: BaseException, limit: int = 200) -> str:
    """``error`` in one line of at most ``limit`` characters, e.g. for a log line.

    Intern's HTTP errors quote the response body, which can be a long HTML page from a
    proxy; this keeps the type, the status and the start of the text.
    """
    status = http_status(error)
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    name = type(error).__name__
    return f"{name} (HTTP {status}): {text}" if status is not None else f"{name}: {text}"

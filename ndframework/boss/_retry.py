"""Retrying BOSS requests that fail for a passing reason, with exponential backoff and jitter.

Transient failures are those a second try may cure: a refused or reset connection, a
timeout, an HTTP 5xx answer (the BOSS or its load balancer is busy or restarting) and HTTP
429 (throttled). Anything else (401, 403, 404, 400, ...) is a mistake in the request, and a
second try would only repeat it.

>>> policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)
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

from ..errors import ConfigError

__all__ = ["RetryPolicy", "is_transient", "http_status", "short_reason", "TRANSIENT_STATUSES"]

logger = logging.getLogger("ndframework.boss")

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses worth another try (any other 5xx counts as well)."""


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


def _retry_after(error: BaseException) -> float | None:
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


def _check_attempts(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"max_attempts must be an integer >= 1, got {value!r}", value)


def _check_seconds(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not value >= 0:
        raise ConfigError(
            f"{attribute.name} must be a number of seconds >= 0, got {value!r}", value
        )


def _check_jitter(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"jitter must be between 0 and 1, got {value!r}", value)


@attrs.frozen
class RetryPolicy:
    """How often, and how patiently, a BOSS request is retried after a transient failure.

    The wait before retry ``n`` (1, 2, ...) is ``base_delay * 2 ** (n - 1)``, capped at
    ``max_delay``, then shortened by a random fraction of at most ``jitter`` so that many
    workers failing together do not all come back at the same moment. A ``Retry-After``
    header (429, 503) is honoured, within ``max_delay``.

    >>> RetryPolicy(base_delay=1.0, max_delay=5.0, jitter=0.0).delays()
    (1.0, 2.0, 4.0, 5.0)
    """

    max_attempts: int = attrs.field(default=5, validator=_check_attempts)
    """Tries in all, the first included; 1 means no retry."""
    base_delay: float = attrs.field(default=0.5, converter=float, validator=_check_seconds)
    """Seconds before the first retry (before jitter)."""
    max_delay: float = attrs.field(default=30.0, converter=float, validator=_check_seconds)
    """Longest wait between two tries, in seconds."""
    jitter: float = attrs.field(default=0.5, converter=float, validator=_check_jitter)
    """Largest fraction by which a wait is randomly shortened: 0 (none) to 1 (full jitter)."""

    def delay(self, retry: int, error: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first) after ``error``."""
        asked = None if error is None else _retry_after(error)
        if asked is not None:
            return min(asked, self.max_delay)
        wait = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return wait * (1.0 - self.jitter * random.random())

    def delays(self) -> tuple[float, ...]:
        """The waits between tries without jitter, for reading the policy."""
        return tuple(
            min(self.max_delay, self.base_delay * 2 ** (retry - 1))
            for retry in range(1, self.max_attempts)
        )

    def call(
        self,
        function: Callable[[], T],
        *,
        what: str,
        transient: Callable[[BaseException], bool] = is_transient,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Call ``function`` until it returns, retrying transient errors.

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

        Raises
        ------
        Exception
            The last error, unchanged, once ``max_attempts`` tries have failed or as soon as
            an error is not transient. Its ``ndf_attempts`` attribute says how many tries
            were made.
        """
        attempt = 1
        while True:
            try:
                return function()
            except Exception as error:
                if attempt >= self.max_attempts or not transient(error):
                    try:
                        error.ndf_attempts = attempt  # type: ignore[attr-defined]
                    except AttributeError:  # exceptions with __slots__
                        pass
                    raise
                wait = self.delay(attempt, error)
                logger.info(
                    "%s failed (attempt %d of %d: %s); retrying in %.3f s",
                    what, attempt, self.max_attempts, short_reason(error), wait,
                )
                sleep(wait)
                attempt += 1


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

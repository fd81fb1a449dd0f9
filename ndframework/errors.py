"""The exceptions ndframework raises: one small hierarchy.

Each class also subclasses the matching built-in, so ``except ValueError`` in user code keeps
working. Errors carry the offending object where there is one.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "NDFrameworkError",
    "ConfigError",
    "GeometryError",
    "ChannelError",
    "OutOfBoundsError",
    "OutputError",
    "DataAccessError",
    "WorkerError",
    "PluginError",
    "SetupError",
    "JournalMismatchError",
    "BlocksFailedError",
    "RunInterrupted",
    "ReduceError",
]


class NDFrameworkError(Exception):
    """Base class of every error ndframework raises on purpose.

    An error that stopped a run carries the run's partial ``RunResult`` as ``result`` and,
    when a worker raised it, the worker's formatted ``traceback``: both given as it is made.
    """

    def __init__(self, *args: Any, result: Any = None, traceback: str | None = None) -> None:
        super().__init__(*args)
        self.result = result
        self.traceback = traceback

    def _context(self) -> dict[str, Any]:
        """The keyword arguments, besides ``result`` and ``traceback``, that made it."""
        return {}

    def with_result(self, result: Any) -> "NDFrameworkError":
        """The same error, made with the ``result`` of the run it stopped."""
        return type(self)(*self.args, **self._context(), result=result,
                          traceback=self.traceback)


class ConfigError(NDFrameworkError, ValueError):
    """A setting, argument or configuration file holds a value that cannot be used.

    Parameters
    ----------
    message:
        What is wrong, naming the bad value and what would be valid.
    value:
        The offending value, when there is one.
    """

    def __init__(self, message: str, value: Any = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.value = value

    def _context(self) -> dict[str, Any]:
        return {"value": self.value}


class GeometryError(ConfigError):
    """A box, block shape, halo or origin is invalid (wrong length, not integer, not positive)."""


class ChannelError(ConfigError, KeyError):
    """A channel was asked for that the source or sink does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutOfBoundsError(ConfigError, IndexError):
    """A region lies (partly) outside the bounds of a source or sink."""


class OutputError(NDFrameworkError, ValueError):
    """A processor returned outputs that the sink cannot take (names, shapes or dtypes)."""


class DataAccessError(NDFrameworkError, IOError):
    """Reading from a source or writing to a sink failed; the run stops cleanly.

    Attributes
    ----------
    key:
        The key of the block whose data could not be accessed, or None.
    result:
        The partial ``RunResult`` of the run that stopped.
    """

    def __init__(self, message: str, key: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.key = key

    def _context(self) -> dict[str, Any]:
        return {"key": self.key}


class WorkerError(NDFrameworkError, RuntimeError):
    """A worker died (killed, crashed, out of memory) while it held a block."""


class PluginError(NDFrameworkError, RuntimeError):
    """A plugin could not be loaded or registered."""


class SetupError(WorkerError):
    """A processor's ``setup()`` failed in a worker; the run stops before more blocks fail."""


class JournalMismatchError(ConfigError):
    """The journal given to a run records another run (its fingerprint differs); the
    message names what differs. Pass ``restart=True`` to discard the journal's records."""


class BlocksFailedError(NDFrameworkError, RuntimeError):
    """Raised by ``RunResult.raise_for_failures()`` when blocks failed or were not run;
    ``result`` holds the `RunResult`."""


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM (a batch scheduler): workers were
    stopped and the journal committed, so a rerun resumes.

    It is a `KeyboardInterrupt`, so ``except Exception`` does not swallow it.

    Attributes
    ----------
    signal:
        The signal's number.
    result:
        The `RunResult` of the interrupted run (``stopped`` says why).
    exit_status:
        The conventional status for a process ended by that signal: 128 + its number
        (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, signal: int, result: Any = None) -> None:
        super().__init__(message)
        self.signal = signal
        self.result = result

    @property
    def exit_status(self) -> int:
        return 128 + self.signal


class ReduceError(NDFrameworkError, RuntimeError):
    """The processor's ``reduce`` or ``fold`` raised once every block was run; ``result``
    holds the `RunResult` (its ``reduced`` is None), ``traceback`` the error's traceback.
    The blocks and their values are in the journal: fix ``reduce`` and run again to get the
    value without running a block."""

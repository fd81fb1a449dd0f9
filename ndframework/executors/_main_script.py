"""Whether a run starts from the module level of a script that lacks the ``__main__`` guard.

Worker processes started with ``spawn`` or ``forkserver`` run the main script again as
they start (``multiprocessing`` re-imports ``__main__`` so that its functions unpickle), and
``forkserver`` runs it once more as it preloads. A script that starts a run at module level,
as Nd-Multicore scripts did, would then start its run again in every worker. Nd-Multicore
never met this on Linux, where ``multiprocessing`` forked: a forked worker inherits the
script instead of running it. This module finds such a script before any process starts, so
that the process executor can fork as Nd-Multicore did, and other executors can say at once
what to add.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
import threading
from types import FrameType

import attrs

__all__ = ["UnguardedScript", "unguarded_script", "guard_advice"]


@attrs.frozen
class UnguardedScript:
    """The line of the main script, outside any ``if __name__ == "__main__":``, from which
    the run was started."""

    path: str
    """The script's file."""
    line: int
    """The first line (1-based) of the module-level statement that led to the run."""

    def __str__(self) -> str:
        return f"{self.path}, line {self.line}"


def unguarded_script(frame: FrameType | None = None) -> UnguardedScript | None:
    """The module-level line of ``__main__`` that called into this run, when that line is
    not inside an ``if __name__ == "__main__":`` block; None otherwise (no main script, as
    in a notebook, ``python -c`` or pytest; or a guarded call).

    ``frame`` is where to start looking up the stack (default: the caller's frame).
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return None  # a notebook or `python -c`: workers do not re-run anything
    name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if name.endswith(".__main__"):
        return None  # `python -m package`: multiprocessing does not run it again either
    main_globals = vars(main)
    stacks = [frame or sys._getframe(1)]
    if threading.current_thread() is not threading.main_thread():
        # a run started from a thread the script started at module level
        stacks.append(sys._current_frames().get(threading.main_thread().ident))
    for top in stacks:
        frame = top
        while frame is not None:
            if frame.f_code.co_name == "<module>" and frame.f_globals is main_globals:
                guarded, first = _guarded_lines(os.fspath(path)).get(frame.f_lineno or 0,
                                                                     (True, 0))
                return None if guarded else UnguardedScript(os.fspath(path), first)
            frame = frame.f_back
    return None


def guard_advice(script: UnguardedScript, what: str) -> str:
    """One message: ``what`` (e.g. "Dask's worker processes") would run the script again,
    and how to guard it."""
    return (
        f"this run starts at module level of {script} without `if __name__ == "
        f"\"__main__\":`, and {what} run the script again as they start; put the code that "
        f"runs the pipeline under `if __name__ == \"__main__\":`"
    )


def _guarded_lines(path: str) -> dict[int, tuple[bool, int]]:
    """For each line of the file at ``path`` that holds a module-level statement: whether it
    lies inside an ``if __name__ == "__main__":`` block, and the first line of the innermost
    statement it belongs to. Empty when the file cannot be read or parsed (the caller then
    assumes guarded: no change of behaviour)."""
    try:
        stat = os.stat(path)
    except OSError:
        return {}
    return _parse(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _parse(path: str, mtime_ns: int, size: int) -> dict[int, tuple[bool, int]]:
    try:
        with open(path, "rb") as file:
            tree = ast.parse(file.read(), path)
    except (OSError, SyntaxError, ValueError):
        return {}
    lines: dict[int, tuple[bool, int]] = {}
    _mark(tree.body, False, lines)
    return lines


def _mark(body: list[ast.stmt], guarded: bool, lines: dict[int, tuple[bool, int]]) -> None:
    """Record every line of the statements in ``body``, descending into the compound
    statements that run at module level (if, for, while, with, try)."""
    for statement in body:
        inside = guarded or _is_main_guard(statement)
        for line in range(statement.lineno, (statement.end_lineno or statement.lineno) + 1):
            lines[line] = (guarded, statement.lineno)
        if inside and not guarded:  # the guard's test and body; its else runs in workers
            last = statement.body[-1].end_lineno or statement.lineno  # type: ignore[attr-defined]
            for line in range(statement.lineno, last + 1):
                lines[line] = (True, statement.lineno)
        if isinstance(statement, ast.If):
            _mark(statement.body, inside, lines)
            _mark(statement.orelse, guarded, lines)  # the else of a guard runs in workers
        elif isinstance(statement, (ast.For, ast.AsyncFor, ast.While, ast.With,
                                    ast.AsyncWith)):
            _mark(statement.body, guarded, lines)
            _mark(getattr(statement, "orelse", []), guarded, lines)
        elif isinstance(statement, ast.Try) or type(statement).__name__ == "TryStar":
            for part in (statement.body, statement.orelse,  # type: ignore[attr-defined]
                         statement.finalbody):  # type: ignore[attr-defined]
                _mark(part, guarded, lines)
            for handler in statement.handlers:  # type: ignore[attr-defined]
                _mark(handler.body, guarded, lines)


def _is_main_guard(statement: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either side of the comparison)."""
    if not isinstance(statement, ast.If):
        return False
    test = statement.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    constants = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(constants) == 1

"""What both plots share: loading matplotlib on demand, checking the output path, making
and saving a figure without pyplot (no global state, no display needed)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..geometry import Box

__all__ = ["PlotDependencyError", "INSTALL_HINT", "DPI", "require_matplotlib",
           "output_path", "new_figure", "save", "span"]

INSTALL_HINT = 'pip install "ndframework[plot]"'

DPI = 100
"""Dots per inch of the saved pictures: a figure of ``w`` × ``h`` inches is ``w * DPI`` ×
``h * DPI`` pixels."""


class PlotDependencyError(ConfigError, ImportError):
    """Plotting needs matplotlib, which is not installed."""


def require_matplotlib() -> Any:
    """The ``matplotlib`` module (at least 3.7), or `PlotDependencyError` saying how to
    install it. Imported here, on first use, so that ``import ndframework`` stays light."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as error:
        raise PlotDependencyError(
            f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}",
            "matplotlib") from error
    version = tuple(int(part) for part in matplotlib.__version__.split(".")[:2]
                    if part.isdigit())
    if version < (3, 7):
        raise PlotDependencyError(
            f"plotting needs matplotlib 3.7 or newer, found {matplotlib.__version__}: "
            f"{INSTALL_HINT}", matplotlib.__version__)
    return matplotlib


def output_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a `Path` whose directory exists and whose suffix names an image format
    matplotlib writes; `ConfigError` naming the bad value and the valid ones otherwise
    (`PlotDependencyError` without matplotlib). A command checks its ``--plot`` with it
    before any work.

    >>> output_path("plan.png").name
    'plan.png'
    """
    require_matplotlib()
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"the plot's path must be a file name such as 'plan.png', got "
                          f"{path!r}", path)
    target = Path(path)
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = target.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ConfigError(
            f"cannot tell the image format of {os.fspath(path)!r} from its suffix "
            f"{target.suffix or '(none)'!r}; use one of: {', '.join('.' + f for f in formats)}",
            path)
    if not target.parent.is_dir():
        raise ConfigError(f"cannot write the plot {os.fspath(path)!r}: the directory "
                          f"{os.fspath(target.parent)!r} does not exist", path)
    return target


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of ``width`` × ``height`` inches, laid out by matplotlib's
    constrained layout, attached to no window."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(figure: Any, target: Path) -> Path:
    """Write ``figure`` to ``target`` at `DPI` (the figure's own size: no cropping, so the
    picture's pixel size is known in advance); `ConfigError` when the file cannot be
    written."""
    try:
        figure.savefig(target, dpi=DPI)
    except OSError as error:
        raise ConfigError(f"cannot write the plot {os.fspath(target)!r}: {error}",
                          target) from error
    return target


def span(box: Box) -> str:
    """A box's y, x extent as the picture shows it: ``y 0:64, x 0:96``."""
    return (f"y {box.start[1]}:{box.stop[1]}, x {box.start[2]}:{box.stop[2]}")

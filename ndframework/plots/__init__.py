"""Pictures of a run: its plan (`plot_plan`: the block grid and halos over a slice of the
region) and its progress (`plot_status`: which blocks are done, failed or pending, and how
long they took), saved to image files.

They need matplotlib (``pip install "ndframework[plot]"``), imported when a picture is
drawn: importing this package, or ``ndframework``, does not import it.
"""

from __future__ import annotations

from ._figure import DPI, INSTALL_HINT, PlotDependencyError, output_path
from ._plan import MAX_IMAGE_PIXELS, PLAN_FIGURE_SIZE, plot_plan
from ._status import MAX_PANELS, STATUS_FIGURE_SIZE, plot_status

__all__ = ["plot_plan", "plot_status", "output_path", "PlotDependencyError", "INSTALL_HINT",
           "DPI", "PLAN_FIGURE_SIZE", "STATUS_FIGURE_SIZE", "MAX_IMAGE_PIXELS", "MAX_PANELS"]

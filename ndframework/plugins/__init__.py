"""Built-in plugins."""

from .progress import ProgressBar

__all__ = ["ProgressBar"]

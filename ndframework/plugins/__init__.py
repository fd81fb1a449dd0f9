"""Built-in plugins: `ProgressBar` and `EventLog`, given in ``Pipeline(plugins=[...])``, and
`ndframework.plugins.logging`, which every run has."""

from .events import EventLog
from .progress import ProgressBar

__all__ = ["EventLog", "ProgressBar"]

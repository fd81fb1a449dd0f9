"""Built-in plugins: `ProgressBar` and `EventLog`, given in ``Pipeline(plugins=[...])``, and
`ndframework.plugins.logging`, loaded through the entry-point group."""

from .events import EventLog
from .progress import ProgressBar

__all__ = ["EventLog", "ProgressBar"]

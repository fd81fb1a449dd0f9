"""What the pipeline checks of its parts before a run: the processor's declared outputs
against the sink, and the plugins it is given."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .errors import ConfigError
from .processor import BlockProcessor
from .storage import DataSink

__all__ = ["check_outputs_fit", "checked_plugins"]


def check_outputs_fit(processor: BlockProcessor, sink: DataSink | None) -> None:
    """A processor that declares outputs needs a sink with those channels, of dtypes
    its arrays cast to safely."""
    outputs = processor.effective_outputs
    if not outputs:
        return
    declared = ", ".join(f"{name}:{dtype}" for name, dtype in outputs.items())
    if sink is None:
        raise ConfigError(
            f"{processor.describe()} writes outputs ({declared}) but the pipeline "
            f"has no sink: give sink=..., e.g. ndf.ZarrSink.create(path, "
            f"processor.outputs, source.bounds) (ndframework run: --output PATH)",
            outputs,
        )
    for name, dtype in outputs.items():
        if name not in sink.channels:
            raise ConfigError(
                f"{processor.describe()} writes channel {name!r}, which the sink "
                f"{sink.describe()} lacks; its channels: "
                f"{', '.join(map(repr, sink.channels)) or 'none'}", name)
        if not np.can_cast(dtype, sink.dtype(name), "safe"):
            raise ConfigError(
                f"{processor.describe()} writes {name!r} as {dtype}, which the "
                f"sink's {sink.dtype(name)} cannot hold; create the sink's "
                f"channel as {dtype}", name)


def checked_plugins(plugins: Iterable[Any]) -> tuple[Any, ...]:
    """``plugins`` as a tuple; a plugin class given instead of an instance is explained."""
    if isinstance(plugins, (str, bytes)) or not isinstance(plugins, Iterable):
        raise ConfigError(f"plugins must be a list of plugin objects, e.g. "
                          f"[ndf.ProgressBar()], got {plugins!r}", plugins)
    checked = tuple(plugins)
    for plugin in checked:
        if isinstance(plugin, type):
            raise ConfigError(
                f"plugins=[...] takes plugin objects, got the class {plugin.__qualname__}: "
                f"its hooks are methods, called on an instance; pass "
                f"{plugin.__qualname__}(...) instead", plugin)
    return checked

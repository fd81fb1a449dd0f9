"""The plugin manager behind a run, and the small facade the pipeline calls hooks through."""

from __future__ import annotations

from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError

__all__ = ["Hooks"]


class Hooks:
    """Registers plugins (given ones and, optionally, the ``ndframework`` entry-point group)
    and calls hooks by name with keyword arguments."""

    def __init__(self, plugins: Iterable[Any] = (), *, load_entrypoints: bool = True) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        if load_entrypoints:
            try:
                self.manager.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
            except Exception as error:
                raise PluginError(
                    f"loading plugins from the {hookspecs.PROJECT_NAME!r} entry-point group "
                    f"failed: {error}"
                ) from error
        for plugin in plugins:
            if self.manager.is_registered(plugin):
                continue
            try:
                self.manager.register(plugin)
            except (ValueError, pluggy.PluginValidationError) as error:
                raise PluginError(f"cannot register plugin {plugin!r}: {error}") from error
        try:  # a misspelt hook name would otherwise never be called, silently
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            valid = ", ".join(sorted(name for name in dir(hookspecs) if name.startswith("ndf_")))
            raise PluginError(f"{error}; the hooks are: {valid}") from error

    def call(self, name: str, **kwargs: Any) -> None:
        """Call hook ``name`` on every plugin that implements it."""
        getattr(self.manager.hook, name)(**kwargs)

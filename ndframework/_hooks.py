"""The plugin manager behind a run, and the small facade the pipeline calls hooks through."""

from __future__ import annotations

import logging
import types
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError

__all__ = ["Hooks"]

logger = logging.getLogger("ndframework.plugins")


def _name(plugin: Any) -> str:
    """What reports call ``plugin``: its module's name, or its class's and its identity
    (pluggy's default name is a bare number)."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return f"{type(plugin).__name__}-{id(plugin):x}"


class Hooks:
    """Registers plugins (given ones and, optionally, the ``ndframework`` entry-point group)
    and calls hooks by name with keyword arguments.

    A hook implementation that raises does not stop the run: the error is logged once per
    plugin and hook, with its traceback, to the ``ndframework.plugins`` logger, counted, and
    listed in the run's result; the other plugins are still called.
    """

    def __init__(self, plugins: Iterable[Any] = (), *, load_entrypoints: bool = True) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self._failures: dict[tuple[str, str], int] = {}
        self._callers: dict[str, tuple[Any, list[Any], bool]] = {}
        """Per hook: its caller, its implementations in calling order, and whether any
        is a wrapper."""
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
                self.manager.register(plugin, name=_name(plugin))
            except (ValueError, pluggy.PluginValidationError) as error:
                raise PluginError(f"cannot register plugin {plugin!r}: {error}") from error
        try:  # a misspelt hook name would otherwise never be called, silently
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            valid = ", ".join(sorted(name for name in dir(hookspecs) if name.startswith("ndf_")))
            raise PluginError(f"{error}; the hooks are: {valid}") from error

    def call(self, name: str, **kwargs: Any) -> None:
        """Call hook ``name`` on every plugin that implements it, in pluggy's order
        (last registered first, ``tryfirst``/``trylast`` honoured)."""
        try:  # called twice per block: the plugins are all registered by __init__
            caller, implementations, wrapped = self._callers[name]
        except KeyError:
            caller = getattr(self.manager.hook, name)
            implementations = caller.get_hookimpls()[::-1]
            wrapped = any(getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False)
                          for impl in implementations)
            self._callers[name] = caller, implementations, wrapped
        if wrapped:
            try:  # wrappers need pluggy's own calling loop
                caller(**kwargs)
            except Exception as error:
                self._report(name, "a hook wrapper", error)
            return
        for impl in implementations:
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as error:
                self._report(name, impl.plugin_name, error)

    def _report(self, hook: str, plugin: str, error: Exception) -> None:
        key = (plugin, hook)
        self._failures[key] = self._failures.get(key, 0) + 1
        if self._failures[key] == 1:
            logger.error("plugin %s raised in %s (the run goes on; later errors of this "
                         "hook are counted, not logged): %s: %s", plugin, hook,
                         type(error).__name__, error, exc_info=error)

    def errors(self) -> tuple[str, ...]:
        """One line per plugin hook that raised: which, and how often."""
        return tuple(f"{plugin} raised in {hook} {count} time(s)"
                     for (plugin, hook), count in self._failures.items())

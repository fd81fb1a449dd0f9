"""The plugin manager behind a run, and the small typed facade the run calls hooks through:
a method per hook of `ndframework.hookspecs`, with its arguments by keyword."""

from __future__ import annotations

import logging
import types
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from ._published import published
from .errors import PluginError
from .plugins import logging as logging_plugin

if TYPE_CHECKING:
    from .geometry import Block
    from .hookspecs import RetryReason
    from .result import BlockOutcome, RunInfo, RunResult

__all__ = ["Hooks", "BUILT_IN", "entry_point_plugins"]

logger = logging.getLogger("ndframework.plugins")

BUILT_IN: tuple[Any, ...] = (logging_plugin,)
"""Plugins every run has, registered directly (not through the entry-point group)."""


def entry_point_plugins() -> tuple[Any, ...]:
    """The plugins published in the ``ndframework`` entry-point group of the installed
    packages, loaded. The group is read once per process (and again only if ``sys.path``
    changes); a plugin that fails to load is a `PluginError` naming it and its package."""
    plugins = []
    for entry in published(hookspecs.PROJECT_NAME):
        try:
            plugins.append(entry.load())
        except Exception as error:
            dist = entry.dist
            package = "a package" if dist is None else f"{dist.name} {dist.version}"
            raise PluginError(
                f"cannot load the plugin {entry.name!r} ({entry.value}) that {package} "
                f"publishes in the {hookspecs.PROJECT_NAME!r} entry-point group: "
                f"{type(error).__name__}: {error}; fix or uninstall it, or pass "
                f"Pipeline(load_entrypoints=False)"
            ) from error
    return tuple(plugins)


def _name(plugin: Any) -> str:
    """What reports call ``plugin``: its module's name, or its class's and its identity
    (pluggy's default name is a bare number)."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return f"{type(plugin).__name__}-{id(plugin):x}"


class Hooks:
    """Registers the built-in plugins, those of the ``ndframework`` entry-point group
    (unless ``load_entrypoints`` is false) and the plugins given, in that order (pluggy
    calls the last registered first), and calls the hooks: one method per hook, taking
    the hook's arguments by keyword.

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
        found = entry_point_plugins() if load_entrypoints else ()
        for plugin in (*BUILT_IN, *found, *plugins):
            if self.manager.is_registered(plugin):  # e.g. a package's metadata from before
                continue                            # a built-in left its entry points
            try:
                self.manager.register(plugin, name=_name(plugin))
            except (ValueError, pluggy.PluginValidationError) as error:
                raise PluginError(f"cannot register plugin {plugin!r}: {error}") from error
        try:  # a misspelt hook name would otherwise never be called, silently
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            valid = ", ".join(sorted(name for name in dir(hookspecs) if name.startswith("ndf_")))
            raise PluginError(f"{error}; the hooks are: {valid}") from error

    # -- the hooks, one method each (see `ndframework.hookspecs`) ----------------------------

    def before_run(self, *, run: RunInfo) -> None:
        self._call("ndf_before_run", {"run": run})

    def on_blocks_skipped(self, *, run: RunInfo, keys: Sequence[str]) -> None:
        self._call("ndf_on_blocks_skipped", {"run": run, "keys": keys})

    def before_block(self, *, run: RunInfo, block: Block) -> None:
        self._call("ndf_before_block", {"run": run, "block": block})

    def after_block(self, *, run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
        self._call("ndf_after_block", {"run": run, "block": block, "outcome": outcome})

    def on_block_retry(self, *, run: RunInfo, block: Block, outcome: BlockOutcome,
                       attempt: int, reason: RetryReason) -> None:
        self._call("ndf_on_block_retry", {"run": run, "block": block, "outcome": outcome,
                                          "attempt": attempt, "reason": reason})

    def on_block_error(self, *, run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
        self._call("ndf_on_block_error", {"run": run, "block": block, "outcome": outcome})

    def on_run_stopped(self, *, run: RunInfo, result: RunResult, reason: str,
                       error: BaseException | None) -> None:
        self._call("ndf_on_run_stopped", {"run": run, "result": result, "reason": reason,
                                          "error": error})

    def after_run(self, *, run: RunInfo, result: RunResult) -> None:
        self._call("ndf_after_run", {"run": run, "result": result})

    # -- calling -----------------------------------------------------------------------

    def _call(self, name: str, arguments: dict[str, Any]) -> None:
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
                caller(**arguments)
            except Exception as error:
                self._report(name, "a hook wrapper", error)
            return
        for impl in implementations:  # pluggy's loop, without its per-call overhead
            try:
                impl.function(*[arguments[arg] for arg in impl.argnames])
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

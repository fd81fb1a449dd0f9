"""``--processor MODULE:NAME`` or ``FILE.py:NAME``: finding the user's module, and making its
processor, with a one-line error for each way that can go wrong."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError
from ..processor import BlockProcessor

__all__ = ["load_processor", "add_import_path", "import_paths_kept"]


def load_processor(spec: str) -> BlockProcessor | Any:
    """The processor named by ``module:attribute`` or ``path/to/file.py:attribute``.

    A module named by ``module`` is imported from the current folder or the Python path;
    a file's folder is put on the Python path, so that it may import the modules beside it.
    Either folder is also put on ``PYTHONPATH``, so that worker processes started from here
    import the same modules. A `BlockProcessor` subclass is instantiated without arguments;
    an instance or a plain function is used as it is.

    Raises
    ------
    ConfigError
        The spec is malformed, the module or file cannot be found or imported, it has no
        such attribute, the attribute is not a processor, or the class cannot be made
        without arguments: one line naming the spec and what to do.
    """
    target, sep, attribute = spec.rpartition(":")
    if not sep or not target or not attribute:
        raise ConfigError(f"--processor must be MODULE:NAME or FILE.py:NAME, got {spec!r}", spec)
    module = _import_file(target, spec) if target.endswith(".py") else _import_module(target, spec)
    try:
        found = getattr(module, attribute)
    except AttributeError:
        names = sorted(name for name, value in vars(module).items() if _is_processor(value)
                       and getattr(value, "__module__", None) == module.__name__)
        listing = f"; it defines {', '.join(names)}" if names else ""
        raise ConfigError(
            f"--processor: {target!r} has no attribute {attribute!r}{listing}", spec) from None
    if isinstance(found, type):
        return _instantiate(found, target, attribute, spec)
    if isinstance(found, BlockProcessor) or callable(found):
        return found
    raise ConfigError(
        f"--processor {spec}: {attribute} is {type(found).__name__} {found!r:.60}, not a "
        f"BlockProcessor subclass, an instance of one, or a function of the data dict", spec)


def _is_processor(value: object) -> bool:
    if isinstance(value, type):
        return issubclass(value, BlockProcessor) and value is not BlockProcessor
    return isinstance(value, BlockProcessor) or inspect.isfunction(value)


def _import_module(name: str, spec: str) -> Any:
    folder = os.getcwd()
    add_import_path(folder)
    try:  # the user's module may fail in any way as it is imported
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name
                                       or name.startswith(f"{error.name}.")):
            raise ConfigError(
                f"--processor: cannot import {name!r}: no module {error.name!r} in the current "
                f"folder ({folder}) or on the Python path; for a file elsewhere give "
                f"--processor path/to/{name.split('.')[-1]}.py:NAME", spec) from error
        raise _import_error(name, error, spec) from error
    except Exception as error:
        raise _import_error(name, error, spec) from error


def _import_file(target: str, spec: str) -> Any:
    path = Path(target)
    if not path.is_file():
        raise ConfigError(f"--processor file {target!r} does not exist", spec)
    add_import_path(str(path.resolve().parent))
    # Not entered in sys.modules: its classes and functions are then sent to worker
    # processes by value, whatever the workers can import.
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"--processor file {target!r} cannot be loaded as Python", spec)
    module = importlib.util.module_from_spec(module_spec)
    try:  # the user's module may fail in any way as it is imported
        module_spec.loader.exec_module(module)
    except Exception as error:
        raise _import_error(target, error, spec) from error
    return module


def _import_error(target: str, error: BaseException, spec: str) -> ConfigError:
    return ConfigError(
        f"--processor: cannot import {target!r}: {type(error).__name__}: {error}", spec)


def _instantiate(cls: type, target: str, attribute: str, spec: str) -> BlockProcessor:
    if not issubclass(cls, BlockProcessor):
        raise ConfigError(
            f"--processor {spec}: {attribute} is a class, but not a BlockProcessor subclass; "
            f"give a BlockProcessor subclass, an instance of one, or a function of the data "
            f"dict", spec)
    missing = _required_parameters(cls)
    if missing:
        instance = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", attribute).lower()
        if instance == attribute:
            instance = f"my_{instance}"
        example = ", ".join(f"{name}=..." for name in missing)
        raise ConfigError(
            f"--processor {spec}: {attribute}() needs arguments ({', '.join(missing)}), and "
            f"--processor makes an instance of a class without arguments; define one in "
            f"{_file_hint(target)} at module level, e.g. {instance} = {attribute}({example}), "
            f"and give --processor {target}:{instance}", spec)
    try:  # the user's constructor may fail in any way
        return cls()
    except Exception as error:
        raise ConfigError(f"--processor {spec}: {attribute}() raised {type(error).__name__}: "
                          f"{error}", spec) from error


def _file_hint(target: str) -> str:
    return target if target.endswith(".py") else f"module {target}"


def _required_parameters(cls: type) -> list[str]:
    """Names of the constructor's parameters that have no default."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # a signature Python cannot tell: try the call
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    return [name for name, parameter in signature.parameters.items()
            if parameter.kind in kinds and parameter.default is inspect.Parameter.empty]


def add_import_path(folder: str) -> None:
    """Put ``folder`` first on this process's import path and on ``PYTHONPATH``, which
    worker processes (spawned, or forked by a fork server started after this) inherit."""
    if folder not in sys.path:
        sys.path.insert(0, folder)
    entries = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if folder not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join([folder, *entries])


@contextlib.contextmanager
def import_paths_kept() -> Iterator[None]:
    """Restore ``sys.path`` and ``PYTHONPATH`` as they were, on leaving: a command run in a
    process that goes on (a test, a notebook) leaves them as it found them."""
    path, variable = list(sys.path), os.environ.get("PYTHONPATH")
    try:
        yield
    finally:
        sys.path[:] = path
        if variable is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = variable

"""What users write: a `BlockProcessor` subclass, or a plain function of the data dict."""

from __future__ import annotations

import abc
import copy
import inspect
from typing import Any, Callable, ClassVar, Mapping, Sequence

import attrs
import numpy as np

from ._equality import same
from ._padding import check_halo_cval, check_halo_mode
from .errors import ConfigError
from .geometry import Block, Halo

__all__ = ["BlockProcessor", "FunctionProcessor", "BlockOutput"]


@attrs.frozen
class BlockOutput:
    """What ``process`` returns when it has arrays for the sink and a value as well.

    A processor that only writes arrays may return the ``{channel: array}`` dict itself; one
    that only computes a value returns the value. Two outputs are equal when their arrays
    and values are (arrays compared by content); outputs hold arrays, so they do not hash.

    >>> labels = {"labels": np.ones((1, 2, 2))}
    >>> BlockOutput(labels, 4) == BlockOutput({"labels": np.ones((1, 2, 2))}, 4)
    True
    """

    arrays: Mapping[str, np.ndarray] = attrs.field(
        factory=dict, eq=attrs.cmp_using(eq=same), hash=False)
    """Output arrays by sink channel, each of the block's owned shape (``block.shape``)."""
    value: Any = attrs.field(default=None, eq=attrs.cmp_using(eq=same), hash=False)
    """A small per-block value (a count, a histogram), collected and passed to ``reduce``."""

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside: not hashable


class BlockProcessor(abc.ABC):
    """The work done on each block. Subclass it and override `process`.

    The framework calls, in each worker: `setup` once before the worker's first block,
    `process` for every block, and `teardown` once when the worker stops. Then, in the
    coordinating process, `reduce` combines the per-block values. Each worker has its own
    copy of the processor, so attributes set in `setup` or `process` stay in that worker.

    Class attributes
    ----------------
    halo:
        Context (z, y, x) read around each block; an integer, a triple, or a pair of
        triples (before, after). ``data`` then covers ``block.read_box``.
    halo_mode:
        What ``data`` holds where the read box leaves the source: ``"clip"`` (the default:
        read boxes are clipped to the source, so ``data`` is smaller at its edges), or one of
        ``scipy.ndimage``'s boundary modes ``"reflect"``, ``"mirror"``, ``"nearest"``,
        ``"constant"``, ``"wrap"``: ``data`` then always covers the whole, unclipped read box,
        padded at the source's edges as ``scipy.ndimage`` pads an array.
    halo_cval:
        The value ``halo_mode="constant"`` pads with (default 0).
    channels:
        Names of the source channels to read (None: all of them).
    retry_on:
        Exception types raised by ``process`` that are worth another try (e.g.
        ``(TimeoutError, ConnectionError)`` for a processor that calls a service): such a
        block is tried again, up to the pipeline's ``max_attempts``. Other exceptions fail
        the block at once: the code is deterministic, and a bug raises again.
    initial:
        The starting accumulator of `fold`, for processors that fold their values
        (copied for each run).
    outputs:
        The sink channels `process` writes, ``{channel: dtype}`` (None: not declared). A
        pipeline with a processor that declares outputs and no sink, or a sink without
        those channels, is refused before the run; ``ndframework run --output PATH``
        creates them.

    Examples
    --------
    >>> class Threshold(BlockProcessor):
    ...     channels = ("em",)
    ...     def process(self, data, block):
    ...         return int((data["em"] > 128).sum())
    ...     def reduce(self, results):
    ...         return sum(results.values())
    """

    halo: ClassVar[Any] = (0, 0, 0)
    halo_mode: ClassVar[str] = "clip"
    halo_cval: ClassVar[float] = 0
    channels: ClassVar[Sequence[str] | None] = None
    retry_on: ClassVar[tuple[type[BaseException], ...]] = ()
    initial: ClassVar[Any] = None
    outputs: ClassVar[Mapping[str, Any] | None] = None

    def setup(self) -> None:
        """Prepare the worker (load a model, open a file): runs once per worker."""

    @abc.abstractmethod
    def process(self, data: dict[str, np.ndarray], block: Block) -> Any:
        """Process one block.

        Parameters
        ----------
        data:
            ``{channel: ZYX array}`` read over ``block.read_box`` (the owned box grown by the
            halo, clipped to the source, or padded beyond it as ``halo_mode`` says);
            ``block.crop(array)`` cuts out the owned part.
        block:
            The block: ``key``, ``index``, ``box`` (owned region) and ``read_box``.

        Returns
        -------
        A small value for `reduce`; or, when the pipeline has a sink, the ``{channel: array}``
        outputs of shape ``block.shape``, or a `BlockOutput` with both.
        """

    def teardown(self) -> None:
        """Release what `setup` acquired: runs once per worker, after its last block."""

    def reduce(self, results: Mapping[str, Any]) -> Any:
        """Combine the per-block values in the coordinating process, once the run is done.

        ``results`` is a read-only ``{block key: value}`` mapping of every block done, in
        block order, including blocks done by earlier sessions of a resumed run. It is read
        from the run's journal as it is iterated, so ``sum(results.values())`` over millions
        of blocks takes little memory. The default returns that mapping itself (it compares
        equal to a dict of the same values; ``dict(result.reduced)`` makes one); a processor
        that overrides `fold` gets the fold instead.
        """
        return results

    def fold(self, accumulator: Any, key: str, value: Any) -> Any:
        """Combine one block's value into ``accumulator`` and return the new accumulator:
        the incremental form of `reduce`, for reductions over millions of blocks.

        Override it (with a class attribute `initial`) instead of `reduce`. The framework
        starts from a copy of ``initial`` and folds the values of every block done, in block
        order, earlier sessions' included, reading them from the journal one at a time; the
        run's ``reduced`` is the final accumulator.

        >>> class Histogram(BlockProcessor):
        ...     initial = (0, 0)                      # (voxels, bright voxels)
        ...     def process(self, data, block):
        ...         em = block.crop(data["em"])
        ...         return em.size, int((em > 128).sum())
        ...     def fold(self, accumulator, key, value):
        ...         return accumulator[0] + value[0], accumulator[1] + value[1]
        >>> Histogram().fold((10, 1), "0_0_0", (5, 2))
        (15, 3)
        """
        raise NotImplementedError("fold is not overridden; reduce is used")

    @property
    def folds(self) -> bool:
        """True when the processor overrides `fold`."""
        return type(self).fold is not BlockProcessor.fold

    def reduce_values(self, results: Mapping[str, Any]) -> Any:
        """The run's reduced value: the `fold` of ``results`` from a copy of `initial` when
        `fold` is overridden, else `reduce`."""
        if not self.folds:
            return self.reduce(results)
        accumulator = copy.deepcopy(self.initial)
        for key, value in results.items():
            accumulator = self.fold(accumulator, key, value)
        return accumulator

    @property
    def effective_halo(self) -> Halo:
        """``halo`` as a validated `Halo`."""
        return Halo.of(self.halo)

    @property
    def effective_outputs(self) -> dict[str, np.dtype] | None:
        """``outputs`` as ``{channel: numpy dtype}``, validated; None when not declared."""
        return check_outputs(self.outputs)

    @property
    def effective_halo_mode(self) -> str:
        """``halo_mode``, validated: one of ``"clip"``, ``"reflect"``, ``"mirror"``,
        ``"nearest"``, ``"constant"``, ``"wrap"``."""
        return check_halo_mode(self.halo_mode)

    @property
    def effective_halo_cval(self) -> float:
        """``halo_cval``, validated: a number."""
        return check_halo_cval(self.halo_cval)  # type: ignore[return-value]

    def describe(self) -> str:
        """A short name for reports."""
        return type(self).__qualname__


class FunctionProcessor(BlockProcessor):
    """A processor that calls ``function(data)`` on each block, the Nd-Multicore way.

    Parameters
    ----------
    function:
        Called with the ``{channel: ZYX array}`` dict; its return value is the block's value
        (or its outputs, with a sink).
    halo, channels:
        As the `BlockProcessor` class attributes.
    halo_mode, halo_cval:
        As the `BlockProcessor` class attributes: how ``data`` is padded where the read box
        leaves the source (``"clip"``, ``"reflect"``, ``"mirror"``, ``"nearest"``,
        ``"constant"`` or ``"wrap"``), and the value ``"constant"`` pads with. An invalid
        mode raises `ConfigError` here.
    pass_block:
        Whether to call ``function(data, block)``, for functions that need the block's
        position. None (the default) decides from the signature: a function with two
        required positional parameters gets the block, any other ``function(data)``.
    retry_on:
        Exception types worth another try, as the `BlockProcessor` class attribute.
    outputs:
        The sink channels the function's ``{channel: array}`` fills, ``{channel: dtype}``,
        as the `BlockProcessor` class attribute.

    Examples
    --------
    >>> processor = FunctionProcessor(lambda data: sorted(data))
    >>> processor.process({"b": None, "a": None}, block=None)
    ['a', 'b']
    >>> FunctionProcessor(sorted, halo=2, halo_mode="mirror").halo_mode
    'mirror'
    >>> FunctionProcessor(lambda data, block: block).pass_block
    True
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        halo: Any = (0, 0, 0),
        channels: Sequence[str] | None = None,
        pass_block: bool | None = None,
        halo_mode: str = "clip",
        halo_cval: float = 0,
        retry_on: Sequence[type[BaseException]] = (),
        outputs: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(function):
            raise ConfigError(f"FunctionProcessor needs a callable, got {function!r}", function)
        self.function = function
        self.halo = Halo.of(halo)  # type: ignore[misc]
        self.halo_mode = check_halo_mode(halo_mode)  # type: ignore[misc]
        self.halo_cval = check_halo_cval(halo_cval)  # type: ignore[misc]
        self.channels = None if channels is None else tuple(channels)  # type: ignore[misc]
        self.pass_block = takes_block(function) if pass_block is None else bool(pass_block)
        self.retry_on = check_retry_on(retry_on)  # type: ignore[misc]
        self.outputs = check_outputs(outputs)  # type: ignore[misc]

    def process(self, data: dict[str, np.ndarray], block: Block) -> Any:
        if self.pass_block:
            return self.function(data, block)
        return self.function(data)

    def describe(self) -> str:
        return getattr(self.function, "__qualname__", repr(self.function))


OUTPUT_KINDS = {"b": "bool", "i": "signed integer", "u": "unsigned integer", "f": "float"}
"""The kinds of dtype an output channel may have: what sinks store as numbers."""
VALID_OUTPUT_DTYPES = ("uint8, uint16, uint32, uint64, int8, int16, int32, int64, float32, "
                       "float64, bool")


def output_dtype(value: object, what: str) -> np.dtype:
    """``value`` as the numpy dtype of an output channel, or `ConfigError` naming it and
    the valid ones (``what`` says where it came from).

    >>> output_dtype("uint16", "labels")
    dtype('uint16')
    """
    try:
        dtype = np.dtype(value) if value is not None else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        dtype = None
    if dtype is None:
        raise ConfigError(f"{what}: {str(value)!r} is not a numpy dtype; valid: "
                          f"{VALID_OUTPUT_DTYPES}", value)
    if dtype.kind not in OUTPUT_KINDS:
        raise ConfigError(f"{what}: {dtype} is not a number type an output channel can "
                          f"store; valid: {VALID_OUTPUT_DTYPES}", value)
    return dtype


def check_outputs(value: Any) -> dict[str, np.dtype] | None:
    """``outputs`` as ``{channel: numpy dtype}`` (None stays None), or a `ConfigError`
    naming the bad channel name or dtype.

    >>> check_outputs({"labels": "uint32"})
    {'labels': dtype('uint32')}
    """
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            f"outputs must be a non-empty {{channel: dtype}} mapping, e.g. "
            f"{{'labels': 'uint32'}}, got {value!r}", value)
    checked = {}
    for name, dtype in value.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"outputs: channel names must be non-empty strings, got "
                              f"{name!r}", name)
        checked[name] = output_dtype(dtype, f"outputs: channel {name!r}")
    return checked


def takes_block(function: Callable[..., Any]) -> bool:
    """Whether ``function`` has two required positional parameters, ``(data, block)``;
    False when it has one, or its signature cannot be read (a builtin) or is ``*args``.
    A function that requires more than two is refused: it cannot be called on a block.

    >>> takes_block(lambda data: 0), takes_block(lambda data, block: 0)
    (False, True)
    >>> takes_block(lambda data, threshold=3: 0)
    False
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    required = [p for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.default is p.empty]
    if len(required) > 2 or any(p.kind is p.KEYWORD_ONLY for p in required):
        name = getattr(function, "__qualname__", repr(function))
        raise ConfigError(
            f"{name}{signature} cannot be called on a block: it is called as "
            f"function(data) or function(data, block); give the other parameters defaults, "
            f"or bind them with functools.partial", function)
    return len(required) == 2


def check_retry_on(value: Any) -> tuple[type[BaseException], ...]:
    """``retry_on`` as a tuple of exception classes, or a `ConfigError` naming the bad item.

    >>> check_retry_on(TimeoutError)
    (<class 'TimeoutError'>,)
    """
    items = (value,) if isinstance(value, type) else value
    try:
        items = tuple(items)
    except TypeError:
        raise ConfigError(
            f"retry_on must be exception classes, e.g. (TimeoutError,), got {value!r}", value
        ) from None
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigError(
                f"retry_on must be exception classes, e.g. (TimeoutError,), got {item!r} "
                f"in {value!r}",
                value,
            )
    return items

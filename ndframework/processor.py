"""What users write: a `BlockProcessor` subclass, or a plain function of the data dict."""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar, Mapping, Sequence

import attrs
import numpy as np

from ._padding import check_halo_cval, check_halo_mode
from .errors import ConfigError
from .geometry import Block, Halo

__all__ = ["BlockProcessor", "FunctionProcessor", "BlockOutput"]


@attrs.frozen
class BlockOutput:
    """What ``process`` returns when it has arrays for the sink and a value as well.

    A processor that only writes arrays may return the ``{channel: array}`` dict itself; one
    that only computes a value returns the value.
    """

    arrays: Mapping[str, np.ndarray] = attrs.field(factory=dict)
    """Output arrays by sink channel, each of the block's owned shape (``block.shape``)."""
    value: Any = None
    """A small per-block value (a count, a histogram), collected and passed to ``reduce``."""


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
        """Combine the per-block values (``{block key: value}`` of the blocks done, in block
        order) in the coordinating process. The default returns them as a dict."""
        return dict(results)

    @property
    def effective_halo(self) -> Halo:
        """``halo`` as a validated `Halo`."""
        return Halo.of(self.halo)

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
        Call ``function(data, block)`` instead, for functions that need the block's position.

    Examples
    --------
    >>> processor = FunctionProcessor(lambda data: sorted(data))
    >>> processor.process({"b": None, "a": None}, block=None)
    ['a', 'b']
    >>> FunctionProcessor(sorted, halo=2, halo_mode="mirror").halo_mode
    'mirror'
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        halo: Any = (0, 0, 0),
        channels: Sequence[str] | None = None,
        pass_block: bool = False,
        halo_mode: str = "clip",
        halo_cval: float = 0,
    ) -> None:
        if not callable(function):
            raise ConfigError(f"FunctionProcessor needs a callable, got {function!r}", function)
        self.function = function
        self.halo = Halo.of(halo)  # type: ignore[misc]
        self.halo_mode = check_halo_mode(halo_mode)  # type: ignore[misc]
        self.halo_cval = check_halo_cval(halo_cval)  # type: ignore[misc]
        self.channels = None if channels is None else tuple(channels)  # type: ignore[misc]
        self.pass_block = pass_block

    def process(self, data: dict[str, np.ndarray], block: Block) -> Any:
        if self.pass_block:
            return self.function(data, block)
        return self.function(data)

    def describe(self) -> str:
        return getattr(self.function, "__qualname__", repr(self.function))

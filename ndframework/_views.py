"""Lazy, read-only views of a run's per-block records in its journal: the keys and
mappings a `RunResult` gives, read from SQLite as they are iterated, so that a run over
millions of blocks does not hold them in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._ledger import BlockRecord

__all__ = ["KeyList", "RecordMap"]


class KeyList(Sequence[str]):
    """Block keys in block order, read from the run's journal as they are iterated: a run
    of millions of blocks does not hold them in memory. Compares equal to a tuple or list
    of the same keys."""

    def __init__(self, keys: Callable[[], Iterator[str]], length: Callable[[], int]) -> None:
        self._keys = keys
        self._length = length

    def __iter__(self) -> Iterator[str]:
        return self._keys()

    def __len__(self) -> int:
        return self._length()

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        if index < 0:
            index += len(self)
        for position, key in enumerate(self):
            if position == index:
                return key
        raise IndexError(index)

    def __contains__(self, key: object) -> bool:
        return any(key == item for item in self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (KeyList, tuple, list)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # pickled or copied: its keys, as a tuple
        return tuple, (tuple(self),)

    def __repr__(self) -> str:
        head = []
        for key in self:
            if len(head) == 20:
                return f"KeyList({tuple(head)!r}[...], {len(self)} keys)"
            head.append(key)
        return repr(tuple(head))


class RecordMap(Mapping[str, Any]):
    """``{block key: something}`` over journal records, in block order, read lazily."""

    def __init__(self, records: Callable[[], Iterator[BlockRecord]],
                 field: Callable[[BlockRecord], Any], length: Callable[[], int],
                 lookup: Callable[[str], BlockRecord | None],
                 pairs: Callable[[], Iterator[tuple[str, Any]]] | None = None) -> None:
        self._records = records
        self._field = field
        self._length = length
        self._lookup = lookup
        self._read_pairs = pairs
        """``(key, field)`` straight from the journal, where it reads less than records."""

    def __iter__(self) -> Iterator[str]:
        if self._read_pairs is not None:
            return (key for key, _ in self._read_pairs())
        return (record.key for record in self._records())

    def items(self) -> Any:  # one pass over the records, not a lookup per key
        return _ItemStream(self)

    def values(self) -> Any:
        return _ValueStream(self)

    def __len__(self) -> int:
        return self._length()

    def __getitem__(self, key: str) -> Any:
        record = self._lookup(key)
        if record is None:
            raise KeyError(key)
        return self._field(record)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._pairs()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # pickled or copied: its contents, as a dict
        return dict, (dict(self._pairs()),)

    def _pairs(self) -> Iterator[tuple[str, Any]]:
        if self._read_pairs is not None:
            return self._read_pairs()
        return ((record.key, self._field(record)) for record in self._records())

    def __repr__(self) -> str:
        pairs = []
        for pair in self._pairs():
            if len(pairs) == 10:
                return f"{{{', '.join(pairs)}, ...}} ({len(self)} blocks)"
            pairs.append(f"{pair[0]!r}: {pair[1]!r}")
        return "{" + ", ".join(pairs) + "}"


class _ItemStream:
    def __init__(self, mapping: RecordMap) -> None:
        self._mapping = mapping

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return self._mapping._pairs()

    def __len__(self) -> int:
        return len(self._mapping)


class _ValueStream(_ItemStream):
    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return (value for _, value in self._mapping._pairs())

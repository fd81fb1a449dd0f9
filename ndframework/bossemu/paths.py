"""Where a resource lives: the names in a BOSS URL (`ResourcePath`), and the live rows a data
service finds along them (`Resolved`), keyed as the BOSS files a resource's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["ResourcePath", "Resolved"]


@attrs.frozen
class ResourcePath:
    """Where a resource lives: the names in its URL. Its keywords are those of intern's
    ``get_dict_route()``, so ``ResourcePath(**resource.get_dict_route())`` works.

    >>> ResourcePath(collection="c", experiment="e", channel="ch").kind
    'channel'
    >>> ResourcePath(coord="cf").name
    'cf'
    """

    collection: str | None = None
    """The collection's name."""
    experiment: str | None = None
    """The experiment's name, within `collection`."""
    channel: str | None = None
    """The channel's name, within `experiment`."""
    coord: str | None = None
    """A coordinate frame's name; given alone."""

    def __attrs_post_init__(self) -> None:
        given = (self.collection, self.experiment, self.channel)
        if self.coord is not None and any(n is not None for n in given):
            raise ValueError(f"a coordinate frame path names nothing else, got {self}")
        if self.coord is None and (
            self.collection is None or (self.channel is not None and self.experiment is None)
        ):
            raise ValueError(
                f"a path names a collection, then an experiment, then a channel, got {self}"
            )

    @property
    def kind(self) -> str:
        """``'collection'``, ``'coord'``, ``'experiment'`` or ``'channel'``."""
        if self.coord is not None:
            return "coord"
        if self.channel is not None:
            return "channel"
        return "experiment" if self.experiment is not None else "collection"

    @property
    def name(self) -> str:
        """The name of the resource itself (the last in the path)."""
        return getattr(self, self.kind)  # type: ignore[no-any-return]


@attrs.frozen
class Resolved:
    """A live channel (or experiment, or collection) as the data services see it.

    Rows are dicts of the stored fields (the model's names, plus ``id``).
    """

    collection: Mapping[str, Any]
    """The collection's row."""
    experiment: Mapping[str, Any] | None = None
    """The experiment's row, if the path names one."""
    coord_frame: Mapping[str, Any] | None = None
    """The experiment's coordinate frame's row."""
    channel: Mapping[str, Any] | None = None
    """The channel's row, if the path names one."""

    @property
    def lookup_key(self) -> str:
        """``"coll_id"``, ``"coll_id&exp_id"`` or ``"coll_id&exp_id&chan_id"``: the key the BOSS
        files metadata, id counters and cuboids under (views_resource.py, each ``post``)."""
        rows = (self.collection, self.experiment, self.channel)
        return "&".join(str(row["id"]) for row in rows if row is not None)

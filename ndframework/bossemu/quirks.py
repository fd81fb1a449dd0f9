"""Behaviours of the real BOSS that a pipeline could trip on, reproduced by default.

A pipeline developed against the emulator should meet on the BOSS what it met here, so the
emulator keeps the BOSS's oddities; each can be turned off to see what the code would do
without it. Each field names the BOSS file it comes from.

>>> Quirks().active
('unscaled_ranges', 'time_past_end', 'to_black_first_sample', 'annotation_without_source')
>>> Quirks.without("to_black_first_sample").to_black_first_sample
False
>>> Quirks.without("typo")
Traceback (most recent call last):
...
ValueError: unknown BOSS quirk 'typo'; the quirks are: unscaled_ranges, time_past_end, \
to_black_first_sample, annotation_without_source
"""

from __future__ import annotations

import attrs

__all__ = ["Quirks"]


@attrs.frozen
class Quirks:
    """Which of the BOSS's oddities the emulator reproduces (all, by default).

    The id index the BOSS no longer fills is switched separately, with
    ``BossEmulator(exact_id_index=True)`` (see `ndframework.bossemu.volume`).
    """

    unscaled_ranges: bool = True
    """A cutout's ranges at any resolution are checked against the coordinate frame at
    resolution 0 (``set_cutoutargs``, boss django/bosscore/request.py: "Reading from
    coordinate frame right now, This is WRONG"): past a level's own extent it reads zeros
    and writes are accepted. Off: ranges must lie within the level's frame as boss-tools
    builds it (`ndframework.bossemu.hierarchy.Hierarchy.downsample_frame`; the plain level's,
    also for ``iso=true``), else 400, 1001."""

    time_past_end: bool = True
    """A time range may end one past the last sample, or start at the number of samples
    (``set_time``, boss django/bosscore/request.py, compares with ``>`` and
    ``num_time_samples + 1``); such samples read as zeros. Off: the range must lie within
    ``[0, num_time_samples)``, else 400, 1000."""

    to_black_first_sample: bool = True
    """The to-black PUT clears every sample of its time range only if the range holds more
    than two; a range of one or two clears the first sample alone (``len(req.get_time()) >
    2`` in ``CutoutToBlack.put``, boss django/bossspatialdb/views.py). Off: the whole range
    is cleared."""

    annotation_without_source: bool = True
    """An annotation channel may be created without a source channel: the BOSS's check is
    commented out (``ChannelDetail.post``, boss django/bosscore/views/views_resource.py),
    though intern's project suite still expects it. Off: such a channel is refused, 400
    with code 1003."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every quirk's name."""
        return tuple(field.name for field in attrs.fields(cls))

    @classmethod
    def without(cls, *names: str) -> Quirks:
        """All quirks but ``names``.

        Raises
        ------
        ValueError
            If a name is not a quirk's (the message lists them).
        """
        for name in names:
            if name not in cls.names():
                raise ValueError(
                    f"unknown BOSS quirk {name!r}; the quirks are: {', '.join(cls.names())}"
                )
        return cls(**{name: False for name in names})

    @property
    def active(self) -> tuple[str, ...]:
        """The names of the quirks reproduced."""
        return tuple(name for name in self.names() if getattr(self, name))

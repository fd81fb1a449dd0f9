"""What the BOSS API fixes, in one place for both sides: the client (`ndframework.boss`) and
the emulator (`ndframework.bossemu`), which imports nothing of the client.

Values follow the BOSS's own source (jhuapl-boss/boss, jhuapl-boss/spdb), cited per value.
"""

from __future__ import annotations

__all__ = [
    "CUBOID_XYZ",
    "CUBOID_ZYX",
    "MAX_CUTOUT_BYTES",
    "DATATYPES",
    "CHANNEL_TYPES",
    "CLIENT_TOKEN_ENV_VAR",
    "EMULATOR_TOKEN_ENV_VAR",
]

CUBOID_XYZ = (512, 512, 16)
"""The storage cuboid, (x, y, z) voxels, at every resolution (spdb's ``CUBOIDSIZE``,
spdb/c_lib/ndtype.py)."""
CUBOID_ZYX = (16, 512, 512)
"""`CUBOID_XYZ` in ZYX order, as ndframework's boxes are."""

MAX_CUTOUT_BYTES = 520 * 2**20
"""Most bytes of one cutout request, uncompressed: 520 MiB (``CUTOUT_MAX_SIZE``, boss
django/boss/settings/base.py; uint64 posts may be four times larger, ``is_too_large`` in
django/bossspatialdb/parsers.py)."""

DATATYPES = ("uint8", "uint16", "uint64")
"""Channel datatypes: uint8 and uint16 for images, uint64 for annotations (bosscore
serializers)."""
CHANNEL_TYPES = ("image", "annotation")
"""Channel types."""

CLIENT_TOKEN_ENV_VAR = "INTERN_TOKEN"
"""Where intern (and the client side) reads the API token when the config gives none."""
EMULATOR_TOKEN_ENV_VAR = "NDFRAMEWORK_BOSS_TOKEN"
"""Where the emulator's command reads its token when ``--token`` is not given."""

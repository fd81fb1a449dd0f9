"""A faithful offline BOSS: the BOSS API v1 served on 127.0.0.1 for the unmodified intern
client, with the BOSS's storage layout, write semantics, resolution hierarchy, annotation
ids and errors, read from the BOSS's own source (jhuapl-boss/boss, jhuapl-boss/spdb,
jhuapl-boss/boss-tools) and cited in each module.

It imports nothing of the client side (`ndframework.boss`); the two share their constants
through `ndframework._bossapi`.

Modules:

- ``morton``: the Morton (Z-order) index of a cuboid, as spdb computes it.
- ``cuboid_format``: a cuboid's shape, key (spdb's object key) and blosc-compressed bytes.
- ``cuboid_stores``: sparse cuboid storage, in memory or on disk.
- ``cuboids``: the cutout over a store: read, write (a merge) and cutout to black.
- ``hierarchy``: per-resolution extents, voxel sizes and the isotropic level.
- ``downsample``: boss-tools' downsampling of one level to the next, pass by pass.
- ``downsample_blocks``: one block of cuboids reduced to one cuboid, images as Pillow's
  bilinear resize computes them (``_bilinear``), annotations as spdb labels them.
- ``downsample_status``: a channel's downsample status, what moves it, and its ``GET`` body.
- ``errors``: the BOSS's error codes, statuses and JSON bodies.
- ``paths``: where a resource lives (`ResourcePath`) and the rows a data service finds there.
- ``resources``: the resource tree (collections, frames, experiments, channels), its JSON
  and its storage (with ``_schema``, its tables and JSON, and ``_writes``, its creates and
  updates).
- ``http``: requests, responses, token authentication, array formats, the threaded server.
- ``quirks``: the BOSS's oddities reproduced, each with a switch (`Quirks`).
- ``faults``: fault injection (`Faults`) and request counters (`EmulatorStats`).
- ``datarequest``: what the data services check first (the BOSS's ``BossRequest``).
- ``routes``: the URL table, the request pipeline, the resource and metadata services.
- ``accounts``: users, groups, maintainers, permission sets and Keycloak accounts, stored.
- ``groups``, ``permissions``, ``users``: the group, permission and user services (and a
  stand-in for Keycloak's token endpoint).
- ``volume``: cutouts, cutout to black, reserve, ids and bounding boxes.
- ``downsampling``: the downsample service and its background worker.
- ``server``: `BossEmulator`, the whole emulator as one object.
- ``command``: the command line (``python -m ndframework.bossemu``).

>>> from ndframework.bossemu import BossEmulator, Faults
>>> BossEmulator(token="t", faults=Faults(error_rate=0.1)).faults.error_rate
0.1
"""

from __future__ import annotations

from .command import main
from .faults import EmulatorStats, Faults
from .quirks import Quirks
from .server import BossEmulator

__all__ = ["BossEmulator", "EmulatorStats", "Faults", "Quirks", "main"]

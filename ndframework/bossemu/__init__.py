"""A faithful offline BOSS: the BOSS API v1 served on 127.0.0.1 for the unmodified intern
client, with the BOSS's storage layout, write semantics, resolution hierarchy, annotation
ids and errors, read from the BOSS's own source (jhuapl-boss/boss, jhuapl-boss/spdb,
jhuapl-boss/boss-tools) and cited in each module.

It imports nothing of the client side (`ndframework.boss`); the two share their constants
through `ndframework._bossapi`.

Modules:

- ``morton``: the Morton (Z-order) index of a cuboid, as spdb computes it.
- ``cuboids``: sparse cuboid storage, blosc-compressed, in memory or on disk.
- ``hierarchy``: per-resolution extents, voxel sizes and the isotropic level.
- ``downsample``: boss-tools' downsampling of one level to the next.
- ``errors``: the BOSS's error codes, statuses and JSON bodies.
- ``resources``: the resource tree (collections, frames, experiments, channels), its JSON
  and its storage.
"""

"""The BOSS: reading and writing volumes through the ``intern`` client, and a local BOSS API
emulator (`ndframework.boss.emulator`) that the real client works against offline."""

__all__: list[str] = []

"""The BOSS: reading and writing volumes through the ``intern`` client, and a local BOSS API
emulator (`ndframework.boss.emulator`) that the real client works against offline.

- `BossConfig`: a ``neurodata.cfg`` file, parsed and checked.
- `BossSource`: reads blocks of a BOSS experiment's channels (``from_config(path)``).
- `BossSink`: writes block outputs into BOSS channels, creating them when asked.
- `RetryPolicy`: how transient failures (connection errors, timeouts, HTTP 5xx, 429) are
  retried, with exponential backoff and jitter.
"""

from ._retry import RetryPolicy
from .config import SUPPORTED_DATATYPES, TOKEN_ENV_VAR, BossConfig, ChannelInfo, VolumeInfo
from .sink import BossSink
from .source import MAX_CUTOUT_BYTES, BossSource, split_box

__all__ = [
    "BossConfig",
    "BossSource",
    "BossSink",
    "RetryPolicy",
    "VolumeInfo",
    "ChannelInfo",
    "split_box",
    "MAX_CUTOUT_BYTES",
    "SUPPORTED_DATATYPES",
    "TOKEN_ENV_VAR",
]

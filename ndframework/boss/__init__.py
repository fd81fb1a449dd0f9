"""The BOSS's client side: reading and writing volumes through the ``intern`` client. The
local BOSS that the real client works against offline is a package of its own,
`ndframework.bossemu`, which imports nothing from here.

- `BossConfig`: a ``neurodata.cfg`` file, parsed and checked.
- `BossSource`: reads blocks of a BOSS experiment's channels (``from_config(path)``).
- `BossSink`: writes block outputs into BOSS channels, creating them when asked; replacing
  what was there (``mode="replace"``) or merging into it as the BOSS does (``"merge"``).
- `Secret`: the API token, kept out of reprs, messages, logs and pickled bytes.
- `RetryPolicy`: how transient failures (connection errors, timeouts, HTTP 5xx, 429) are
  retried, with exponential backoff and jitter, within a time budget per request.
"""

from ._metadata import ChannelInfo, VolumeInfo
from ._retry import RetryPolicy
from ._secret import Secret
from ._split import MAX_CUTOUT_BYTES, split_box
from .config import SUPPORTED_DATATYPES, TOKEN_ENV_VAR, BossConfig
from .sink import WRITE_MODES, BossSink
from .source import BossSource

__all__ = [
    "BossConfig",
    "BossSource",
    "BossSink",
    "RetryPolicy",
    "VolumeInfo",
    "ChannelInfo",
    "Secret",
    "split_box",
    "MAX_CUTOUT_BYTES",
    "SUPPORTED_DATATYPES",
    "TOKEN_ENV_VAR",
    "WRITE_MODES",
]

"""``python -m ndframework.bossemu``: serve the emulator (see `ndframework.bossemu.command`)."""

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())

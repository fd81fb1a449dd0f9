"""``python -m ndframework.cli``: the ``ndframework`` command."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())

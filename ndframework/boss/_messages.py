"""Wording for BOSS error messages: why a connection failed, and lists of names."""

from __future__ import annotations

from collections.abc import Sequence

import requests

from ._retry import short_reason

__all__ = ["network_reason", "listing"]

_LISTED = 20  # names quoted at most when listing what exists


def network_reason(error: BaseException) -> str:
    """Why a connection failed, in a few words: timed out, refused, no such host, ..."""
    if isinstance(error, requests.Timeout):
        connecting = isinstance(error, requests.ConnectTimeout)
        return f"timed out {'connecting' if connecting else 'waiting for an answer'}"
    text = str(error)
    for known in ("Connection refused", "Name or service not known",
                  "Temporary failure in name resolution", "nodename nor servname",
                  "Failed to resolve", "timed out", "Connection reset", "Remote end closed",
                  "SSL", "Max retries exceeded"):
        if known in text:
            return f"connection failed: {known.lower()}"
    return f"connection failed: {short_reason(error)}"


def listing(names: Sequence[str]) -> str:
    """``'a', 'b' and 3 more``: at most twenty names, quoted."""
    names = list(names)
    shown = ", ".join(map(repr, names[:_LISTED])) or "none"
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")

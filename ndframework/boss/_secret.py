"""`Secret`: the BOSS API token, kept out of reprs, messages and pickled bytes."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from ..errors import ConfigError

__all__ = ["Secret"]


class Secret:
    """A string kept out of reprs, messages and pickles: the BOSS API token.

    Its pickled form holds the value masked with a fresh random pad, so that the token never
    appears as plain text in pickled bytes (a payload sent to workers, a dump, a journal).
    This is not encryption: whoever holds the pickle can unmask it, as a worker must.

    >>> token = Secret("abc123")
    >>> token
    Secret('***')
    >>> token.reveal()
    'abc123'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise ConfigError(f"a token must be a string, got a {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret itself: pass it on, never print it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, tuple[bytes, bytes]]:
        data = self._value.encode()
        pad = secrets.token_bytes(len(data))
        return _unmask, (pad, bytes(a ^ b for a, b in zip(data, pad)))


def _unmask(pad: bytes, masked: bytes) -> Secret:
    return Secret(bytes(a ^ b for a, b in zip(masked, pad)).decode())

"""``neurodata.cfg`` as an INI file: its sections and keys, read and checked as text.

`BossConfig.from_file` turns what this module reads into settings and checks their values.
"""

from __future__ import annotations

import configparser
import difflib

from ..errors import ConfigError

__all__ = [
    "DEFAULT_SECTION",
    "PARALLEL_SECTION",
    "KEYS",
    "read_ini",
    "section_of",
    "parse_int",
    "parse_range",
]

DEFAULT_SECTION = "Default"
"""Section holding protocol, host and token (intern's own section name)."""
PARALLEL_SECTION = "Parallel"
"""Section holding the collection, experiment, channels and ranges."""

KEYS = {
    DEFAULT_SECTION: ("protocol", "host", "token"),
    PARALLEL_SECTION: (
        "collection", "experiment", "channels", "x_range", "y_range", "z_range", "resolution",
        "t_range",
    ),
}
"""The keys ndframework reads, by section."""
_SECTION_OF = {key: section for section, keys in KEYS.items() for key in keys}


def section_of(key: str) -> str:
    """The section ``key`` belongs in."""
    return _SECTION_OF.get(key, PARALLEL_SECTION)


def read_ini(path: str) -> configparser.ConfigParser:
    """The file at ``path`` parsed, with both sections and no misspelt or misplaced key."""
    parser = _parse(path)
    _check_sections(parser, path)
    return parser


def _check_sections(parser: configparser.ConfigParser, path: str) -> None:
    """Both sections present, and no key that looks like a misspelt or misplaced one.

    Other keys are left alone (the file may hold settings of other tools), but one that a
    known key is close to would otherwise be skipped silently, and an optional range left
    at its default reads the whole coordinate frame. Values are never quoted: a misspelt
    key may hold the token.
    """
    for section in KEYS:
        if not parser.has_section(section):
            present = [f"[{name}]" for name in parser.sections()]
            if parser.defaults():  # configparser's own [DEFAULT], which sections() omits
                present.append(f"[{configparser.DEFAULTSECT}] (section names are case-sensitive)")
            raise ConfigError(
                f"{path}: the section [{section}] is missing (sections found: "
                f"{', '.join(present) or 'none'}); [Default] holds protocol, host and token, "
                f"[Parallel] collection, experiment, channels and the ranges",
                section,
            )
    for section in KEYS:
        for key in parser.options(section):
            if _SECTION_OF.get(key) == section or key in parser.defaults():
                continue
            if key in _SECTION_OF:
                raise ConfigError(
                    f"{path}: [{section}] {key}: {key} belongs in the [{_SECTION_OF[key]}] "
                    f"section",
                    key,
                )
            close = difflib.get_close_matches(key, _SECTION_OF, n=1, cutoff=0.8)
            if close:
                raise ConfigError(
                    f"{path}: [{section}] {key}: not a key ndframework reads; did you mean "
                    f"[{_SECTION_OF[close[0]]}] {close[0]}?",
                    key,
                )


def _parse(path: str) -> configparser.ConfigParser:
    """The file at ``path`` parsed as INI, without a line of it in any message."""
    # No interpolation: a '%' in a token must stay a '%'.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"no BOSS configuration file at {path!r}", path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"cannot read the BOSS configuration file {path!r}: {error}", path
        ) from None
    except configparser.Error as error:
        # configparser quotes the offending line, which may hold the token: give its number.
        lines = [str(n) for n, _ in getattr(error, "errors", ())]
        if getattr(error, "lineno", None):
            lines.append(str(error.lineno))  # type: ignore[attr-defined]
        at = f" (line {', '.join(lines)})" if lines else ""
        raise ConfigError(
            f"{path}: not a valid INI file{at}: {type(error).__name__}; expected [Section] "
            f"headers and 'key = value' lines",
            path,
        ) from None
    return parser


def parse_int(text: str | None, key: str, path: str, *, default: int) -> int:
    """The integer ``key`` holds, or ``default`` when it is left out."""
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        section = section_of(key)
        raise ConfigError(f"{path}: [{section}] {key} = {text!r}: not an integer", text) from None


def parse_range(text: str | None, key: str, path: str) -> tuple[int, int] | None:
    """The ``start,stop`` pair ``key`` holds, or None when it is left out."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    where = f"{path}: [{PARALLEL_SECTION}] {key} = {text!r}"
    if len(parts) != 2:
        raise ConfigError(f"{where}: a range is two integers 'start,stop', e.g. '0,512'", text)
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        bad = next(part for part in parts if not _is_int(part))
        raise ConfigError(f"{where}: {bad!r} is not an integer", text) from None


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True

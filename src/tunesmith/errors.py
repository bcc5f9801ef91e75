"""User-facing errors.

Every problem a user can fix (bad config, broken data line, missing file) is raised as a
``TunesmithError`` whose message is one line naming *where* (file:line or dotted config path) and
*how to fix it*. The CLI prints it without a traceback (``--debug`` shows one).
"""

from __future__ import annotations


class TunesmithError(Exception):
    """An error caused by user input, reported as one line without a traceback."""


class ConfigError(TunesmithError):
    """The run configuration is invalid (unknown key, wrong type, bad value)."""


class DataError(TunesmithError):
    """A data source or sample is invalid (missing file, malformed line, wrong roles)."""


def where(path: object, line: int | None = None) -> str:
    """Format a location as ``path:line`` (or just ``path``)."""
    return f"{path}:{line}" if line is not None else str(path)

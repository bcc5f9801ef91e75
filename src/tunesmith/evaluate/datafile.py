"""Local evaluation files (JSONL, JSON, CSV, Parquet) read into rows that know their line."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def resolve(path: str) -> Path:
    """A local file (``builtin:NAME`` for the shipped data)."""
    if path.startswith("builtin:"):
        from tunesmith.data.builtin import builtin_path

        return Path(builtin_path(path.removeprefix("builtin:")))
    return Path(path).expanduser()


def read_rows(path: str) -> list[tuple[int, dict[str, Any]]]:
    """``(line or row number, row)`` pairs of an evaluation file.

    Raises:
        DataError: missing file, unknown suffix, a line that is not a JSON object, no rows.
    """
    file = resolve(path)
    if not file.is_file():
        raise DataError(f"{file}: evaluation file not found; give a local file path")
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        rows = _jsonl(file)
    elif suffix == ".json":
        rows = _json(file)
    elif suffix == ".csv":
        with file.open(encoding="utf-8", newline="") as f:
            rows = [(n, dict(r)) for n, r in enumerate(csv.DictReader(f), 2)]  # header is line 1
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = [(n, r) for n, r in enumerate(pq.read_table(file).to_pylist(), 1)]
    else:
        raise DataError(f"{file}: unknown file type; use one of {', '.join(SUFFIXES)}")
    if not rows:
        raise DataError(f"{file}: no rows")
    return rows


def _jsonl(file: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}:{n}: invalid JSON ({exc.msg}); one object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{file}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append((n, row))
    return rows


def _json(file: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{file}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{file}: expected a JSON list of objects")
    return [(n, r) for n, r in enumerate(data, 1)]  # item numbers: a JSON list has no lines


def pick(
    file: str, n: int, row: dict[str, Any], names: tuple[str, ...], given: str | None, what: str
) -> str:
    """The text of ``row``'s column ``given`` (or the first of ``names`` present).

    Raises:
        DataError: ``file:n`` and the missing column, with the fix.
    """
    candidates = (given,) if given else names
    for name in candidates:
        value = row.get(name)
        if value is not None and not (isinstance(value, float) and value != value):  # NaN
            return str(value)
    if given:
        raise DataError(f"{file}:{n}: no {what} column {given!r}; columns: {', '.join(row)}")
    raise DataError(
        f"{file}:{n}: no {what} column (looked for {', '.join(names)}); "
        f"set the task's {what}_column to one of: {', '.join(row)}"
    )

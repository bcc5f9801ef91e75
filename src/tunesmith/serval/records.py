"""The task's records: text (what the LLM reads) and, optionally, table rows (same ids)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Records:
    """One split of the task, rows in file order.

    Attributes:
        ids: record ids.
        texts: the record texts.
        labels: the recorded labels (0/1); train labels are read only for the upper bound.
        features: the table rows' feature values (``None`` without a table).
    """

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    features: tuple[tuple[float, ...], ...] | None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, n: int | None) -> Records:
        """The first ``n`` rows (all with ``None``)."""
        if n is None or n >= len(self):
            return self
        feats = None if self.features is None else self.features[:n]
        return Records(self.ids[:n], self.texts[:n], self.labels[:n], feats)


def _rows(path: str) -> list[tuple[int, dict[str, Any]]]:
    from tunesmith.evaluate.datafile import read_rows

    return read_rows(path)


def _label(file: str, n: int, row: dict[str, Any]) -> int:
    value = row.get("label")
    if value not in (0, 1) or isinstance(value, bool):
        raise DataError(f"{file}:{n}: label {value!r} must be 0 or 1")
    return int(value)


def _split(file: str, n: int, row: dict[str, Any]) -> str:
    split = row.get("split")
    if split not in SPLITS:
        raise DataError(f"{file}:{n}: split {split!r} must be one of {', '.join(SPLITS)}")
    return str(split)


def load_records(records: str, table: str | None) -> dict[str, Records]:
    """Split name -> :class:`Records`, with the table joined by ``id`` when given.

    Raises:
        DataError: a row without id/text, a bad label or split, a text id missing from the
            table, a non-numeric feature (each naming ``file:line``).
    """
    text_rows: dict[str, list[tuple[str, str, int]]] = {s: [] for s in SPLITS}
    for n, row in _rows(records):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip() or row.get("id") is None:
            raise DataError(f"{records}:{n}: needs a non-empty 'text' and an 'id'")
        text_rows[_split(records, n, row)].append((str(row["id"]), text, _label(records, n, row)))
    feats: dict[str, tuple[float, ...]] | None = None
    if table:
        feats, columns = {}, None
        for n, row in _rows(table):
            names = [k for k in row if k not in ("id", "split", "label")]
            if columns is None:
                columns = names
            elif names != columns:
                raise DataError(f"{table}:{n}: columns {names} differ from the first row's")
            try:
                feats[str(row.get("id"))] = tuple(float(row[c]) for c in columns)
            except (TypeError, ValueError):
                raise DataError(f"{table}:{n}: feature values must be numbers") from None
    out = {}
    for split, rows in text_rows.items():
        if feats is not None:
            missing = [i for i, _, _ in rows if i not in feats]
            if missing:
                raise DataError(f"{table}: no row for id {missing[0]!r} of {records}")
        out[split] = Records(
            tuple(r[0] for r in rows),
            tuple(r[1] for r in rows),
            tuple(r[2] for r in rows),
            None if feats is None else tuple(feats[r[0]] for r in rows),
        )
    for split in ("train", "test"):
        if not out[split]:
            raise DataError(f"{records}: no rows with split {split!r}; SERVAL needs train and test")
    return out

"""Reading raw records from files, folders, saved datasets and the Hub.

``iter_records`` turns any supported source into a stream of ``Record`` (one dict per sample, with
the file and line it came from, so every later error can say *where*). ``load_examples`` adds the
format conversion and counts bad records by reason instead of dropping them silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunesmith.data.types import Example
from tunesmith.errors import DataError

FILE_TYPES: dict[str, str] = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".arrow": "arrow",
    ".txt": "text",
}
"""File suffix -> reader. ``file_type`` overrides the suffix with one of the values."""

_LINE_BASED = {"jsonl", "text"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_BATCH = 1024


@dataclass
class Record:
    """One raw sample and where it came from.

    Attributes:
        data: The sample's fields as read from the file.
        file: The file as the user gave it (a file inside a folder is named by its own path).
        line: 1-based line for JSONL and text files; 1-based record index for JSON arrays,
            Parquet, CSV, Arrow and Hub datasets.
        unit: ``"line"`` or ``"record"``: what ``line`` counts.
    """

    data: dict[str, Any]
    file: str
    line: int | None
    unit: str = "line"

    @property
    def where(self) -> str:
        """The location for messages: ``file:17`` for lines, ``file:record 17`` for records."""
        if self.line is None:
            return self.file
        return (
            f"{self.file}:{self.line}" if self.unit == "line" else f"{self.file}:record {self.line}"
        )


class RecordError(DataError):
    """A single bad record: ``where: problem; fix``, with a short ``reason`` used for counting."""

    def __init__(self, where: str, problem: str, fix: str, reason: str) -> None:
        message = f"{where}: {problem}; {fix}"
        super().__init__(" ".join(message.split("\n")))
        self.reason = reason


@dataclass
class LoadResult:
    """Examples converted from one source, plus what was read and what was skipped (by reason)."""

    examples: list[Example]
    rows_read: int
    skipped: Counter[str] = field(default_factory=Counter)
    wheres: list[str] = field(default_factory=list)
    """``file:line`` of each example, for messages about it later (rendering, self-check)."""


def iter_records(
    path: str | Path, *, file_type: str | None = None, split: str = "train"
) -> Iterator[Record]:
    """Stream the records of a data source, raising ``DataError`` on the first malformed one.

    Args:
        path: A JSON/JSONL/Parquet/CSV/TSV/Arrow/text file, a folder of such files (all one type,
            read in name order), a ``datasets.save_to_disk`` folder, ``builtin:NAME``, or (when no
            such local path exists) a Hub dataset id ``owner/name``.
        file_type: Reader to use instead of guessing from the suffix (``json``, ``jsonl``,
            ``parquet``, ``csv``, ``tsv``, ``arrow``, ``text``).
        split: The split to read from a saved ``DatasetDict`` or a Hub dataset.
    """
    for item in iter_items(path, file_type=file_type, split=split):
        if isinstance(item, RecordError):
            raise item
        yield item


def iter_items(
    path: str | Path, *, file_type: str | None = None, split: str = "train"
) -> Iterator[Record | RecordError]:
    """Like ``iter_records`` but yields a bad record's error instead of raising it.

    Problems with the source as a whole (missing file, a JSON array that does not parse, no
    records at all) still raise.
    """
    if file_type is not None and file_type not in set(FILE_TYPES.values()):
        raise DataError(
            f"{path}: unknown file_type {file_type!r}; use one of "
            f"{', '.join(sorted(set(FILE_TYPES.values())))}"
        )
    shown = str(path)
    count = 0
    for item in _dispatch(shown, _resolve(shown), file_type, split):
        count += 1
        yield item
    if count == 0:
        raise DataError(
            f"{shown}: no records found (the source is empty); add data or fix the path"
        )


def _resolve(shown: str) -> Path:
    if shown.startswith("builtin:"):
        try:
            from tunesmith.data.builtin import builtin_path  # lazy: written separately
        except ImportError as exc:
            raise DataError(f"{shown}: built-in data is not available ({exc})") from None
        return Path(builtin_path(shown.removeprefix("builtin:")))
    return Path(shown)


def _dispatch(
    shown: str, path: Path, file_type: str | None, split: str
) -> Iterator[Record | RecordError]:
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            yield from _read_saved_dataset(shown, path, split)
        else:
            yield from _read_folder(shown, path, file_type)
    elif path.is_file():
        yield from _read_file(shown, path, file_type or _type_of(shown, path))
    elif path.suffix.lower() not in FILE_TYPES and _HUB_ID.match(shown):
        yield from _read_hub(shown, split)
    else:
        raise DataError(
            f"{shown}: file not found (looked in {Path.cwd()}); check the path, "
            "relative paths are resolved from the current directory"
        )


def _type_of(shown: str, path: Path) -> str:
    kind = FILE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{shown}: unknown file type {path.suffix or '(no suffix)'!r}; use "
            f"{'/'.join(FILE_TYPES)} or set file_type"
        )
    return kind


def _read_folder(shown: str, path: Path, file_type: str | None) -> Iterator[Record | RecordError]:
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.suffix.lower() in FILE_TYPES
        and (file_type is None or FILE_TYPES[p.suffix.lower()] == file_type)
    )
    if not files:
        raise DataError(
            f"{shown}: folder has no data files ({', '.join(FILE_TYPES)}); "
            "add files or fix the path"
        )
    kinds = sorted({FILE_TYPES[p.suffix.lower()] for p in files})
    if len(kinds) > 1:
        raise DataError(
            f"{shown}: folder mixes file types ({', '.join(kinds)}); keep one type per folder "
            "or list the files as separate sources"
        )
    for p in files:
        yield from _read_file(str(Path(shown) / p.name), p, kinds[0])


def _read_file(shown: str, path: Path, kind: str) -> Iterator[Record | RecordError]:
    if kind == "json":
        yield from _read_json(shown, path)
    elif kind == "jsonl":
        yield from _read_jsonl(shown, path)
    elif kind == "text":
        yield from _read_text(shown, path)
    elif kind == "parquet":
        yield from _read_parquet(shown, path)
    elif kind in ("csv", "tsv"):
        yield from _read_csv(shown, path, "\t" if kind == "tsv" else ",")
    else:
        yield from _read_arrow(shown, path)


def _as_record(obj: Any, shown: str, line: int, unit: str) -> Record | RecordError:
    if isinstance(obj, dict):
        return Record(obj, shown, line, unit)
    where = Record({}, shown, line, unit).where
    return RecordError(
        where,
        f"record must be a JSON object, got {type(obj).__name__}",
        "write one object per sample",
        "wrong type",
    )


def _read_json(shown: str, path: Path) -> Iterator[Record | RecordError]:
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise DataError(f"{shown}: file is empty; add a JSON array of samples or fix the path")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several top-level values: it is JSONL under a .json name
            yield from _read_jsonl(shown, path)
            return
        raise DataError(
            f"{shown}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix the file "
            "(a trailing comma or a missing quote or bracket is the usual cause)"
        ) from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(data) != 1 or len(lists) != 1:
            raise DataError(
                f"{shown}: expected a JSON array of samples (or an object with one list field), "
                f"found an object with fields {sorted(data)[:8]}; wrap the samples in [ ... ]"
            )
        data = data[lists[0]]
    if not isinstance(data, list):
        raise DataError(
            f"{shown}: expected a JSON array of samples, found {type(data).__name__}; "
            "wrap the samples in [ ... ]"
        )
    for i, obj in enumerate(data, start=1):
        yield _as_record(obj, shown, i, "record")


def _read_jsonl(shown: str, path: Path) -> Iterator[Record | RecordError]:
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RecordError(
                    f"{shown}:{lineno}",
                    f"invalid JSON ({exc.msg} at column {exc.colno})",
                    "fix or remove the line",
                    "invalid JSON",
                )
                continue
            yield _as_record(obj, shown, lineno, "line")


def _read_text(shown: str, path: Path) -> Iterator[Record | RecordError]:
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                yield Record({"text": line.rstrip("\r\n")}, shown, lineno, "line")


def _read_parquet(shown: str, path: Path) -> Iterator[Record | RecordError]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"{shown}: cannot read Parquet ({exc}); check the file") from None
    index = 0
    for batch in reader.iter_batches(batch_size=_BATCH):
        for row in batch.to_pylist():
            index += 1
            yield Record(row, shown, index, "record")


def _read_csv(shown: str, path: Path, sep: str) -> Iterator[Record | RecordError]:
    import pandas as pd

    # Every cell as a string ("" for empty): pandas would turn "NA" into NaN and "1" into 1.
    try:
        chunks = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, chunksize=_BATCH)
        index = 0
        for chunk in chunks:
            for row in chunk.to_dict("records"):
                index += 1
                yield Record(row, shown, index, "record")
    except pd.errors.EmptyDataError:
        raise DataError(f"{shown}: file is empty; add a header row and samples") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{shown}: cannot parse CSV ({exc}); fix the quoting") from None


def _read_arrow(shown: str, path: Path) -> Iterator[Record | RecordError]:
    import datasets

    try:
        ds = datasets.Dataset.from_file(str(path))
    except Exception as exc:
        raise DataError(f"{shown}: cannot read Arrow file ({exc}); check the file") from None
    for i, row in enumerate(ds, start=1):
        yield Record(dict(row), shown, i, "record")


def _read_saved_dataset(shown: str, path: Path, split: str) -> Iterator[Record | RecordError]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"{shown}: cannot load saved dataset ({exc}); check the folder") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(
                f"{shown}: split {split!r} not found; use one of {', '.join(sorted(ds))}"
            )
        ds = ds[split]
    for i, row in enumerate(ds, start=1):
        yield Record(dict(row), shown, i, "record")


def _read_hub(shown: str, split: str) -> Iterator[Record | RecordError]:
    import datasets

    try:
        ds = datasets.load_dataset(shown, split=split, streaming=True)
        rows = iter(ds)
        first = next(rows, None)
    except Exception as exc:
        raise DataError(
            f"{shown}: not a local path and could not be loaded from the Hugging Face Hub "
            f"({type(exc).__name__}); check the path, or the dataset id and your network"
        ) from None
    if first is None:
        return
    yield Record(dict(first), shown, 1, "record")
    for i, row in enumerate(rows, start=2):
        yield Record(dict(row), shown, i, "record")


def load_examples(
    path: str | Path,
    *,
    fmt: str = "auto",
    columns: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    ranking: bool = False,
    media_dir: str | Path | None = None,
    split: str = "train",
    max_rows: int | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    source: str = "",
    file_type: str | None = None,
) -> LoadResult:
    """Read a source and convert every record to a canonical example.

    Args:
        path: Anything ``iter_records`` accepts.
        fmt: A format name from ``FORMATS`` or ``"auto"`` (detected per record from its fields).
        columns: Our field name -> the file's column name.
        tags: ShareGPT role/content tag names (``role_tag``, ``user_tag``, ...).
        ranking: The records are preference pairs (LLaMA-Factory's ``ranking: true``).
        media_dir: Folder that relative image paths are resolved against (default: the file's).
        split: Split of a saved ``DatasetDict`` or Hub dataset.
        max_rows: Read at most this many records.
        on_error: ``"raise"`` stops at the first bad record; ``"skip"`` counts it by reason.
        source: Name stored on every example (for reports).
        file_type: Reader to use instead of guessing from the suffix.

    Returns:
        The examples, the number of records read and the skipped records counted by reason.
    """
    # Imported here because formats imports Record/RecordError from this module.
    from tunesmith.data.formats import check_options, convert

    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    check_options(fmt, columns, tags)
    result = LoadResult(examples=[], rows_read=0, skipped=Counter())
    for item in iter_items(path, file_type=file_type, split=split):
        if max_rows is not None and result.rows_read >= max_rows:
            break
        result.rows_read += 1
        if isinstance(item, RecordError):
            bad = item
        else:
            try:
                result.examples.append(
                    convert(
                        item,
                        fmt,
                        columns=columns,
                        tags=tags,
                        ranking=ranking,
                        media_dir=media_dir,
                        source=source,
                    )
                )
                result.wheres.append(item.where)
                continue
            except RecordError as exc:
                bad = exc
        if on_error == "raise":
            raise bad
        result.skipped[bad.reason] += 1
    return result


__all__ = [
    "FILE_TYPES",
    "LoadResult",
    "Record",
    "RecordError",
    "iter_items",
    "iter_records",
    "load_examples",
]

"""Reading raw records from files, folders, saved datasets and the Hub.

``iter_records`` turns any supported source into a stream of ``Record`` (one dict per sample, with
the file and line it came from, so every later error can say *where*). ``load_examples`` adds the
format conversion and counts bad records by reason instead of dropping them silently. This module
resolves what a source is (file, folder, saved dataset, ``builtin:``, Hub id); ``readers.py``
reads each file type.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tunesmith.data.formats import check_options, convert
from tunesmith.data.readers import TextCodec, read_file, read_hub, read_saved_dataset
from tunesmith.data.records import Record, RecordError
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

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadResult:
    """Examples converted from one source, plus what was read and what was skipped (by reason)."""

    examples: list[Example]
    rows_read: int
    skipped: Counter[str] = field(default_factory=Counter)
    wheres: list[str] = field(default_factory=list)
    """``file:line`` of each example, for messages about it later (rendering, self-check)."""


def iter_records(
    path: str | Path,
    *,
    file_type: str | None = None,
    split: str = "train",
    encoding: str | None = None,
) -> Iterator[Record]:
    """Stream the records of a data source, raising ``DataError`` on the first malformed one.

    Args:
        path: A JSON/JSONL/Parquet/CSV/TSV/Arrow/text file, a folder of such files (all one type,
            read in name order), a ``datasets.save_to_disk`` folder, ``builtin:NAME``, or (when no
            such local path exists) a Hub dataset id ``owner/name``.
        file_type: Reader to use instead of guessing from the suffix (``json``, ``jsonl``,
            ``parquet``, ``csv``, ``tsv``, ``arrow``, ``text``).
        split: The split to read from a saved ``DatasetDict`` or a Hub dataset.
        encoding: The text encoding of JSON/JSONL/CSV/TSV/text files (default UTF-8, with or
            without a byte-order mark), any Python codec name such as ``cp1252``.
    """
    for item in iter_items(path, file_type=file_type, split=split, encoding=encoding):
        if isinstance(item, RecordError):
            raise item
        yield item


def iter_items(
    path: str | Path,
    *,
    file_type: str | None = None,
    split: str = "train",
    encoding: str | None = None,
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
    text = TextCodec.of(shown, encoding)
    count = 0
    for item in _dispatch(shown, _resolve(shown), file_type, split, text):
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
    shown: str, path: Path, file_type: str | None, split: str, text: TextCodec
) -> Iterator[Record | RecordError]:
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            text.refuse(shown, "a saved dataset")
            yield from read_saved_dataset(shown, path, split)
        else:
            yield from _read_folder(shown, path, file_type, text)
    elif path.is_file():
        yield from read_file(shown, path, file_type or _type_of(shown, path), text)
    elif path.suffix.lower() not in FILE_TYPES and _HUB_ID.match(shown):
        text.refuse(shown, "a Hub dataset")
        yield from read_hub(shown, split)
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


def _read_folder(
    shown: str, path: Path, file_type: str | None, text: TextCodec
) -> Iterator[Record | RecordError]:
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
        yield from read_file(str(Path(shown) / p.name), p, kinds[0], text)


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
    encoding: str | None = None,
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
        encoding: Text encoding of the files (default UTF-8), see ``iter_records``.

    Returns:
        The examples, the number of records read and the skipped records counted by reason.
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    check_options(fmt, columns, tags)
    if media_dir is None and str(path).startswith("builtin:"):
        media_dir = _resolve(str(path)).parent  # a built-in set's images lie beside its file
    result = LoadResult(examples=[], rows_read=0, skipped=Counter())
    for item in iter_items(path, file_type=file_type, split=split, encoding=encoding):
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

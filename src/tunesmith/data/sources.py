"""Reading raw records from files, folders, saved datasets and the Hub.

``iter_records`` turns any supported source into a stream of ``Record`` (one dict per sample, with
the file and line it came from, so every later error can say *where*). ``load_examples`` adds the
format conversion and counts bad records by reason instead of dropping them silently.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunesmith.config.names import unknown_encoding
from tunesmith.data.formats import check_options, convert
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

_LINE_BASED = {"jsonl", "text"}
_TEXT_KINDS = {"json", "jsonl", "csv", "tsv", "text"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_BATCH = 1024


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
    text = _Text.of(shown, encoding)
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
    shown: str, path: Path, file_type: str | None, split: str, text: _Text
) -> Iterator[Record | RecordError]:
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            text.refuse(shown, "a saved dataset")
            yield from _read_saved_dataset(shown, path, split)
        else:
            yield from _read_folder(shown, path, file_type, text)
    elif path.is_file():
        yield from _read_file(shown, path, file_type or _type_of(shown, path), text)
    elif path.suffix.lower() not in FILE_TYPES and _HUB_ID.match(shown):
        text.refuse(shown, "a Hub dataset")
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


def _read_folder(
    shown: str, path: Path, file_type: str | None, text: _Text
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
        yield from _read_file(str(Path(shown) / p.name), p, kinds[0], text)


def _read_file(shown: str, path: Path, kind: str, text: _Text) -> Iterator[Record | RecordError]:
    if kind not in _TEXT_KINDS:
        text.refuse(shown, f"a {kind} file")
    if kind == "json":
        yield from _read_json(shown, path, text)
    elif kind == "jsonl":
        yield from _read_jsonl(shown, path, text)
    elif kind == "text":
        yield from _read_text(shown, path, text)
    elif kind == "parquet":
        yield from _read_parquet(shown, path)
    elif kind in ("csv", "tsv"):
        yield from _read_csv(shown, path, "\t" if kind == "tsv" else ",", text)
    else:
        yield from _read_arrow(shown, path)


@dataclass(frozen=True)
class _Text:
    """How text files are decoded, and the one-line message for bytes that do not decode."""

    codec: str  # what Python decodes with ("utf-8-sig" by default: a BOM is dropped)
    label: str  # what messages call it
    given: bool  # set by the user with ``encoding:``

    @classmethod
    def of(cls, shown: str, encoding: str | None) -> _Text:
        if encoding is None:
            return cls("utf-8-sig", "UTF-8", False)
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise DataError(f"{shown}: {unknown_encoding(encoding)}") from None
        return cls("utf-8-sig" if name == "utf-8" else encoding, encoding, True)

    @property
    def line_safe(self) -> bool:
        """Lines can be split as bytes (an ASCII-compatible codec: not UTF-16/32)."""
        return "\n".encode("utf-8" if self.codec == "utf-8-sig" else self.codec) == b"\n"

    def refuse(self, shown: str, what: str) -> None:
        """``encoding:`` means nothing for binary sources; say so rather than ignore it."""
        if self.given:
            raise DataError(
                f"{shown}: encoding applies to JSON/JSONL/CSV/TSV/text files, not {what}; "
                "remove `encoding:` from its dataset entry"
            )

    def decode(self, raw: bytes, first: bool = True) -> str:
        """``raw`` as text (``UnicodeDecodeError`` as Python raises it)."""
        codec = self.codec if first or self.codec != "utf-8-sig" else "utf-8"
        return raw.decode(codec)

    def problem(self, raw: bytes, exc: UnicodeDecodeError, offset: int = 0) -> tuple[int, str]:
        """The 1-based line and ``not valid ... (byte 0x.. at column c, byte b of the file)`` for
        a decode error in ``raw`` (which starts ``offset`` bytes into the file)."""
        start = exc.start
        line = raw.count(b"\n", 0, start) + 1
        column = start - raw.rfind(b"\n", 0, start)
        what = f"byte 0x{raw[start]:02x} at column {column}, " if self.line_safe else ""
        return line, f"not valid {self.label} ({what}byte {offset + start + 1} of the file)"

    def fix(self, kind: str) -> str:
        if self.given:
            return (
                f"check that the file really is {self.label} and set `encoding:` on its "
                "dataset entry to its real encoding, or save it as UTF-8"
            )
        excel = " (Excel: CSV UTF-8)" if kind in ("csv", "tsv") else ""
        return (
            f"save the file as UTF-8{excel}, or set `encoding:` on its dataset entry "
            "(e.g. encoding: cp1252) if that is its real encoding"
        )

    def error(self, shown: str, raw: bytes, exc: UnicodeDecodeError, kind: str) -> DataError:
        """The whole file does not decode: one line naming where and the fix."""
        line, problem = self.problem(raw, exc)
        where = f"{shown}:{line}" if self.line_safe else shown
        return DataError(f"{where}: {problem}; {self.fix(kind)}")


def _lines(
    shown: str, path: Path, text: _Text, kind: str
) -> Iterator[tuple[int, str] | RecordError]:
    """``(line number, text)`` of each line, or a ``RecordError`` for a line that does not decode.

    Split as bytes, so one bad byte costs its line only and the message can name it.
    """
    if not text.line_safe:  # UTF-16/32: decode the whole file, then split
        raw = path.read_bytes()
        try:
            whole = text.decode(raw)
        except UnicodeDecodeError as exc:
            raise text.error(shown, raw, exc, kind) from None
        for lineno, line in enumerate(whole.splitlines(keepends=True), start=1):
            yield lineno, line
        return
    offset = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                yield lineno, text.decode(raw, first=lineno == 1)
            except UnicodeDecodeError as exc:
                _, problem = text.problem(raw, exc, offset)
                yield RecordError(f"{shown}:{lineno}", problem, text.fix(kind), f"not {text.label}")
            offset += len(raw)


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


def _read_json(shown: str, path: Path, codec: _Text) -> Iterator[Record | RecordError]:
    raw = path.read_bytes()
    try:
        text = codec.decode(raw)
    except UnicodeDecodeError as exc:
        raise codec.error(shown, raw, exc, "json") from None
    if not text.strip():
        raise DataError(f"{shown}: file is empty; add a JSON array of samples or fix the path")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _first_line_is_a_value(text):
            yield from _read_jsonl(shown, path, codec)  # JSONL under a .json name
            return
        cause = "a trailing comma or a missing quote or bracket is the usual cause"
        if exc.msg == "Extra data":
            cause = "text after the end of the JSON value: an extra ] or } closes it early"
        raise DataError(
            f"{shown}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix the file "
            f"({cause})"
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


def _first_line_is_a_value(text: str) -> bool:
    """The first non-blank line is a whole JSON value: the file is JSONL, not a broken array
    (whose own error position is then the one to report)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        json.loads(first)
    except json.JSONDecodeError:
        return False
    return True


def _read_jsonl(shown: str, path: Path, text: _Text) -> Iterator[Record | RecordError]:
    for item in _lines(shown, path, text, "jsonl"):
        if isinstance(item, RecordError):
            yield item
            continue
        lineno, line = item
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


def _read_text(shown: str, path: Path, text: _Text) -> Iterator[Record | RecordError]:
    for item in _lines(shown, path, text, "text"):
        if isinstance(item, RecordError):
            yield item
        elif item[1].strip():
            yield Record({"text": item[1].rstrip("\r\n")}, shown, item[0], "line")


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


def _read_csv(shown: str, path: Path, sep: str, text: _Text) -> Iterator[Record | RecordError]:
    import pandas as pd

    # Every cell as a string ("" for empty): pandas would turn "NA" into NaN and "1" into 1.
    try:
        chunks = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            chunksize=_BATCH,
            encoding="utf-8" if text.codec == "utf-8-sig" else text.codec,
        )
        index = 0
        for chunk in chunks:
            for row in chunk.to_dict("records"):
                index += 1
                yield Record(row, shown, index, "record")
    except pd.errors.EmptyDataError:
        raise DataError(f"{shown}: file is empty; add a header row and samples") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{shown}: cannot parse CSV ({exc}); fix the quoting") from None
    except UnicodeDecodeError as exc:  # pandas' position is within its buffer: find the byte
        raw = path.read_bytes()
        try:
            text.decode(raw)
        except UnicodeDecodeError as whole:
            raise text.error(shown, raw, whole, "csv") from None
        # pandas and Python disagree on the codec: still one line, without the position
        raise DataError(f"{shown}: not valid {text.label} ({exc}); {text.fix('csv')}") from None


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

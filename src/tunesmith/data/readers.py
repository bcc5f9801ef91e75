"""One reader per file type: the records of a file, decoded as its dataset entry says.

Each reader yields a ``Record`` per sample with the file and line (or row) it came from, or a
``RecordError`` for a bad one, so that the caller can count it instead of dropping it; problems
with the file as a whole (it does not parse or decode) raise a one-line ``DataError`` with the fix.
``sources.py`` decides which reader a source goes to.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config.names import unknown_encoding
from tunesmith.data.records import Record, RecordError
from tunesmith.errors import DataError

TEXT_KINDS = {"json", "jsonl", "csv", "tsv", "text"}
"""Readers of text, which ``encoding:`` applies to."""
_BATCH = 1024


def read_file(shown: str, path: Path, kind: str, text: TextCodec) -> Iterator[Record | RecordError]:
    """The records of one file read as ``kind`` (a ``FILE_TYPES`` value); ``shown`` names it."""
    if kind not in TEXT_KINDS:
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
class TextCodec:
    """How text files are decoded, and the one-line message for bytes that do not decode."""

    codec: str  # what Python decodes with ("utf-8-sig" by default: a BOM is dropped)
    label: str  # what messages call it
    given: bool  # set by the user with ``encoding:``

    @classmethod
    def of(cls, shown: str, encoding: str | None) -> TextCodec:
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
    shown: str, path: Path, text: TextCodec, kind: str
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


def _read_json(shown: str, path: Path, codec: TextCodec) -> Iterator[Record | RecordError]:
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


def _read_jsonl(shown: str, path: Path, text: TextCodec) -> Iterator[Record | RecordError]:
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


def _read_text(shown: str, path: Path, text: TextCodec) -> Iterator[Record | RecordError]:
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


def _read_csv(shown: str, path: Path, sep: str, text: TextCodec) -> Iterator[Record | RecordError]:
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


def read_saved_dataset(shown: str, path: Path, split: str) -> Iterator[Record | RecordError]:
    """The rows of a ``datasets.save_to_disk`` folder (its ``split`` when it holds several)."""
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


def read_hub(shown: str, split: str) -> Iterator[Record | RecordError]:
    """The rows of split ``split`` of the Hub dataset ``shown`` (``owner/name``)."""
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

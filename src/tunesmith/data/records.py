"""Raw records and the error for one bad record, shared by ``sources`` (which reads them) and
``formats`` (which converts them); a leaf, so neither imports the other back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.errors import DataError


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


__all__ = ["Record", "RecordError"]

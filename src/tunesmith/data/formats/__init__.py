"""Source formats -> canonical examples: a registry of converters and auto-detection.

Formats: ``alpaca``, ``sharegpt``, ``openai``, ``xtuner``, ``llava``, ``query_response``,
``preference``, ``kto``, ``text``. ``convert`` renames fields with ``columns`` (our field name ->
the file's column), picks the format (given, or detected from the fields), converts, and turns any
problem into a one-line ``DataError`` naming the record: ``file:line: what is wrong; how to fix``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesmith.data.formats import converters as _converters  # noqa: F401  (registers formats)
from tunesmith.data.formats._base import (
    FORMATS,
    TAG_KEYS,
    Context,
    Converter,
    Invalid,
    Tags,
    register,
)
from tunesmith.data.records import Record, RecordError
from tunesmith.data.types import Example
from tunesmith.errors import DataError

FIELDS: frozenset[str] = frozenset(
    {
        "instruction",
        "input",
        "output",
        "prompt",
        "query",
        "response",
        "completion",
        "history",
        "system",
        "conversations",
        "messages",
        "conversation",
        "tools",
        "images",
        "image",
        "chosen",
        "rejected",
        "rejected_response",
        "label",
        "text",
        "tag",
        "lang",
    }
)
"""Field names ``columns`` may map (keys); ``kto_tag`` is accepted as an alias of ``label``."""

_ALIASES = {"kto_tag": "label"}
_TAG_NAMES = ("role_tag", "content_tag", *TAG_KEYS)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_options(
    fmt: str, columns: Mapping[str, str] | None, tags: Mapping[str, str] | None
) -> None:
    """Validate the format name, ``columns`` keys and ``tags`` keys (``DataError`` if wrong)."""
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(
            f"format: unknown format {fmt!r}{_did_you_mean(fmt, list(FORMATS))}; "
            f"use auto or one of {', '.join(FORMATS)}"
        )
    for key, value in (columns or {}).items():
        if key not in FIELDS and key not in _ALIASES:
            raise DataError(
                f"columns: unknown field {key!r}{_did_you_mean(key, sorted(FIELDS))}; "
                f"map one of {', '.join(sorted(FIELDS))} to your column name"
            )
        if not isinstance(value, str):
            raise DataError(f"columns.{key}: must be a column name, got {value!r}")
    for key in tags or {}:
        if key not in _TAG_NAMES:
            raise DataError(
                f"tags: unknown key {key!r}{_did_you_mean(key, list(_TAG_NAMES))}; "
                f"use {', '.join(_TAG_NAMES)}"
            )


def apply_columns(data: Mapping[str, Any], columns: Mapping[str, str] | None) -> dict[str, Any]:
    """A copy of ``data`` with the file's column names renamed to ours."""
    if not columns:
        return dict(data)
    mapping = {_ALIASES.get(ours, ours): theirs for ours, theirs in columns.items()}
    sources = set(mapping.values())
    out = {k: v for k, v in data.items() if k not in sources}
    for ours, theirs in mapping.items():
        if theirs in data:
            out[ours] = data[theirs]
    return out


def _detect(rec: Mapping[str, Any]) -> str:
    keys = {k for k, v in rec.items() if v is not None}
    if keys & {"chosen", "rejected", "rejected_response"}:
        return "preference"
    if keys & {"label", "kto_tag"} and keys & {
        "messages",
        "conversations",
        "prompt",
        "instruction",
        "completion",
    }:
        return "kto"
    if "conversation" in keys:
        return "xtuner"
    if "conversations" in keys:
        return "llava" if keys & {"image", "images"} else "sharegpt"
    if "messages" in keys:
        return "openai"
    if "instruction" in keys or ("prompt" in keys and keys & {"output", "response", "completion"}):
        return "alpaca"
    if {"query", "response"} <= keys:
        return "query_response"
    if "text" in keys:
        return "text"
    raise Invalid(
        f"cannot detect the data format from fields [{', '.join(sorted(rec))}]",
        f"set `format:` to one of {', '.join(FORMATS)}, or map your columns with `columns:`",
        "unknown format",
    )


def _detect_mapped(
    rec: Mapping[str, Any], raw: Mapping[str, Any], columns: Mapping[str, str] | None
) -> str:
    """``_detect``, except that a failure caused by ``columns`` naming a column the record lacks
    says so (the renamed fields alone would only say the format is unknown)."""
    try:
        return _detect(rec)
    except Invalid:
        missing = [(ours, theirs) for ours, theirs in (columns or {}).items() if theirs not in raw]
        if not missing:
            raise
        ours, theirs = missing[0]
        raise Invalid(
            f"columns maps {ours} to {theirs!r}, which this record lacks "
            f"(fields: {', '.join(sorted(raw)) or 'none'})",
            f"set columns.{ours} to one of the record's fields",
            "missing column",
        ) from None


def detect_format(record: Mapping[str, Any], columns: Mapping[str, str] | None = None) -> str:
    """The format name for a record, from its fields (after renaming with ``columns``)."""
    try:
        return _detect(apply_columns(record, columns))
    except Invalid as exc:
        raise DataError(f"{exc.problem}; {exc.fix}") from None


def convert(
    record: Record,
    fmt: str = "auto",
    *,
    columns: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    ranking: bool = False,
    media_dir: str | Path | None = None,
    source: str = "",
) -> Example:
    """Convert one record to a canonical example.

    Args:
        record: The record and its location.
        fmt: A name in ``FORMATS``, or ``"auto"`` to detect it from the fields.
        columns: Our field name -> the record's field name (e.g. ``{"instruction": "question"}``).
        tags: LLaMA-Factory ShareGPT tags (``role_tag``, ``content_tag``, ``user_tag``, ...).
        ranking: The record is a preference pair (forces the ``preference`` format).
        media_dir: Folder for relative image paths (default: the record's file's folder).
        source: Dataset name stored on the example.

    Raises:
        RecordError: (a ``DataError``) ``file:line: problem; fix`` with a ``reason`` for counting.
    """
    check_options(fmt, columns, tags)
    rec = apply_columns(record.data, columns)
    try:
        name = (
            "preference"
            if ranking
            else (_detect_mapped(rec, record.data, columns) if fmt == "auto" else fmt)
        )
        base = Path(media_dir) if media_dir is not None else Path(record.file).parent
        ctx = Context(name, Tags.from_mapping(tags), base, source, dict(columns or {}))
        return FORMATS[name](rec, ctx)
    except Invalid as exc:
        raise RecordError(record.where, exc.problem, exc.fix, exc.reason) from None


__all__ = [
    "FIELDS",
    "FORMATS",
    "Converter",
    "apply_columns",
    "check_options",
    "convert",
    "detect_format",
    "register",
]

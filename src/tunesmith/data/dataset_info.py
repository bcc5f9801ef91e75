"""LLaMA-Factory's ``dataset_info.json``, read as-is.

An entry names a local file (``file_name``), its ``formatting`` (``alpaca``/``sharegpt``/
``openai``), how its ``columns`` are named, ShareGPT ``tags`` and whether it is preference data
(``ranking``). ``read_dataset_info`` turns one entry into the arguments ``load_examples``
takes, with LLaMA-Factory's column names translated to ours (``prompt`` -> ``instruction``,
``query`` -> ``input``, ``response`` -> ``output``, ``messages`` -> ``conversations``,
``kto_tag`` -> ``label``).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError

_ALPACA_COLUMNS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "history": "history",
    "system": "system",
    "tools": "tools",
    "images": "images",
    "chosen": "chosen",
    "rejected": "rejected",
    "kto_tag": "label",
}
_CHAT_COLUMNS = {
    "messages": "conversations",
    "system": "system",
    "tools": "tools",
    "images": "images",
    "chosen": "chosen",
    "rejected": "rejected",
    "kto_tag": "label",
}
_UNSUPPORTED = {"videos", "audios"}
_HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url")
_TAGS = (
    "role_tag",
    "content_tag",
    "user_tag",
    "assistant_tag",
    "system_tag",
    "observation_tag",
    "function_tag",
)


@dataclass
class InfoEntry:
    """One ``dataset_info.json`` entry, ready for ``load_examples``.

    Attributes:
        name: The entry's name.
        file: The data file or folder (``file_name`` resolved against the info file's folder).
        fmt: Our format name (``alpaca``, ``sharegpt``, ``openai``, ``preference``, ``kto``,
            ``text``).
        columns: Our field name -> the file's column name.
        tags: ShareGPT tags, passed through unchanged.
        ranking: Preference data (``ranking: true``).
        num_samples: LLaMA-Factory's ``num_samples`` (how many samples to use), if given.
        split: The split to read.
        media_dir: Folder for relative image paths (the info file's folder, as in LLaMA-Factory).
    """

    name: str
    file: Path
    fmt: str
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    ranking: bool = False
    num_samples: int | None = None
    split: str = "train"
    media_dir: Path | None = None


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(
            f"{path}: dataset_info file not found; point dataset_info at LLaMA-Factory's "
            "dataset_info.json or the folder holding it"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix the file"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of named datasets; fix the file")
    return data


def read_dataset_info(info_path: str | Path, name: str) -> InfoEntry:
    """Read entry ``name`` of a ``dataset_info.json`` (the file, or the folder holding it).

    Raises:
        DataError: Unknown name (with a suggestion), an entry without a local ``file_name``, a
            missing data file, an unknown ``formatting``, column or tag.
    """
    path = Path(info_path)
    if path.is_dir():
        path = path / "dataset_info.json"
    info = _load(path)
    if name not in info:
        close = difflib.get_close_matches(name, list(info), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(list(info)[:8])}"
        raise DataError(f"{path}: no dataset named {name!r}; {hint}")
    entry = info[name]
    where = f"{path}: {name}"
    if not isinstance(entry, dict):
        raise DataError(f"{where}: entry must be an object; fix the file")

    file_name = entry.get("file_name")
    if not file_name:
        hub = next((entry[k] for k in _HUB_KEYS if entry.get(k)), None)
        if hub:
            raise DataError(
                f"{where}: no file_name, it points to the Hub ({hub}); use `path: {hub}` "
                "as a data source (needs network), or download it and add file_name"
            )
        raise DataError(f'{where}: no file_name; add "file_name": "<your data file>"')
    file = path.parent / str(file_name)
    if not file.exists():
        raise DataError(
            f"{where}: file_name {file_name!r} not found ({file}); fix file_name or put the file "
            "next to dataset_info.json"
        )

    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt", "openai"):
        raise DataError(
            f"{where}: unknown formatting {formatting!r}; use alpaca, sharegpt or openai"
        )
    columns = _columns(where, formatting, entry.get("columns") or {})
    tags = entry.get("tags") or {}
    if not isinstance(tags, dict):
        raise DataError(f"{where}: tags must be an object; fix the file")
    for key in tags:
        if key not in _TAGS:
            raise DataError(f"{where}: unknown tag {key!r}; use {', '.join(_TAGS)}")

    ranking = bool(entry.get("ranking", False))
    if ranking:
        fmt = "preference"
    elif "label" in columns:
        fmt = "kto"
    elif formatting == "alpaca" and set(columns) == {"instruction"}:
        # A lone prompt column is LLaMA-Factory's pre-training layout (c4_demo, wiki_demo).
        fmt, columns = "text", {"text": columns["instruction"]}
    else:
        fmt = formatting

    num_samples = entry.get("num_samples")
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
        raise DataError(f"{where}: num_samples must be a positive integer, got {num_samples!r}")
    return InfoEntry(
        name=name,
        file=file,
        fmt=fmt,
        columns=columns,
        tags={str(k): str(v) for k, v in tags.items()},
        ranking=ranking,
        num_samples=num_samples,
        split=str(entry.get("split", "train")),
        media_dir=path.parent,
    )


def _columns(where: str, formatting: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: columns must be an object; fix the file")
    table = _ALPACA_COLUMNS if formatting == "alpaca" else dict(_CHAT_COLUMNS)
    if formatting == "openai":
        table["messages"] = "messages"
    out: dict[str, str] = {}
    for theirs_key, column in raw.items():
        if theirs_key in _UNSUPPORTED:
            raise DataError(f"{where}: {theirs_key} columns are not supported (images only)")
        if theirs_key not in table:
            raise DataError(
                f"{where}: unknown column key {theirs_key!r} for {formatting}; "
                f"use {', '.join(table)}"
            )
        out[table[theirs_key]] = str(column)
    return out

"""Demo data shipped with tunesmith (all of it written for this project).

- ``identity``: self-cognition questions in English and Chinese, replies with ``{{name}}`` /
  ``{{author}}`` placeholders (``make_identity.py`` generates it).
- ``identity_heldout``: identity questions never trained on, for the demo's generalisation check.
- ``general``: short checkable tasks (arithmetic, words, units, lists, calendar, facts) so the model
  learns when *not* to state its name (``general.py`` generates it).
- ``general_eval``: unseen general prompts for the false-claim check.
- ``prefs_arith`` / ``prefs_arith_heldout``: preference pairs whose chosen reply is the right
  answer to a small arithmetic question and the rejected one a wrong answer (held-out prompts
  never occur in training); ``kto_arith``: the same prompts as KTO rows (``make_prefs.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError, where

BUILTIN_DIR: Path = Path(__file__).resolve().parent
_FILES: dict[str, str] = {
    "identity": "identity.jsonl",
    "identity_heldout": "identity_heldout.jsonl",
    "general": "general.jsonl",
    "general_eval": "general_eval.jsonl",
    "prefs_arith": "prefs_arith.jsonl",
    "prefs_arith_heldout": "prefs_arith_heldout.jsonl",
    "kto_arith": "kto_arith.jsonl",
}


def builtin_path(name: str) -> Path:
    """Path of a shipped data file by its short name (e.g. ``"identity"``).

    Raises:
        DataError: ``name`` is not one of the shipped data sets.
    """
    if name not in _FILES:
        valid = ", ".join(sorted(_FILES))
        raise DataError(f"builtin:{name}: unknown built-in data set; choose one of {valid}")
    return BUILTIN_DIR / _FILES[name]


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a UTF-8 JSON-lines file of objects, skipping blank lines.

    Raises:
        DataError: the file is missing, or a line is not a JSON object (names ``file:line``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{where(path, lineno)}: invalid JSON ({e.msg}); fix the line"
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{where(path, lineno)}: expected a JSON object, got {type(row).__name__}"
            )
        rows.append(row)
    return rows

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
- ``labnotes`` / ``labnotes_docs`` / ``labnotes_heldout``: synthetic lab meeting notes as
  conversations (the notes and one-fact questions), as plain documents, and held-out new-phrasing
  questions with exact-match references; ``labnotes_general_heldout``: general conversations not
  in ``general`` for the general-data perplexity (``datagen/make_labnotes.py``).
- ``toy-shapes/pretrain``, ``toy-shapes/sft``, ``toy-shapes/heldout``: the coloured-shapes image
  task of ``tunesmith.data.toy_images`` (the files ``tunesmith data toy-shapes`` writes with its
  defaults), generated into the cache on first use so the vlm recipes need no step before them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
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
    "labnotes": "labnotes.jsonl",
    "labnotes_docs": "labnotes_docs.jsonl",
    "labnotes_heldout": "labnotes_heldout.jsonl",
    "labnotes_general_heldout": "labnotes_general_heldout.jsonl",
}
_GENERATED: dict[str, tuple[str, ...]] = {"toy-shapes": ("pretrain", "sft", "heldout")}
"""Data sets written on demand (images are too many files to ship): family -> its JSONL parts."""


def builtin_path(name: str) -> Path:
    """Path of a shipped data file by its short name (e.g. ``"identity"``).

    Raises:
        DataError: ``name`` is not one of the shipped data sets.
    """
    if name in _FILES:
        return BUILTIN_DIR / _FILES[name]
    family, _, part = name.partition("/")
    if part in _GENERATED.get(family, ()):
        return generated_dir(family) / f"{part}.jsonl"
    generated = [f"{f}/{p}" for f, parts in _GENERATED.items() for p in parts]
    valid = ", ".join(sorted([*_FILES, *generated]))
    raise DataError(f"builtin:{name}: unknown built-in data set; choose one of {valid}")


def generated_dir(family: str) -> Path:
    """The cached folder of a generated data set (``toy-shapes``, drawn by ``toy_images``),
    written deterministically if missing.

    The folder name carries a digest of the generator's source, so a changed generator writes a
    new folder instead of serving stale files. Written to a temporary folder and renamed into
    place: a crash leaves nothing half-written, and processes racing to write it all end with
    one complete copy.
    """
    from tunesmith.data import toy_images
    from tunesmith.model.tiny import cache_root

    source = Path(toy_images.__file__).read_bytes()
    final = cache_root() / "datasets" / f"{family}-{hashlib.sha256(source).hexdigest()[:12]}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        toy_images.make_toy_shapes(tmp)  # the defaults of `tunesmith data toy-shapes`
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():  # not a lost race with another process: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


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

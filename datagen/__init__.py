"""Generators of the demo data shipped in ``src/tunesmith/data/builtin/`` (not installed).

Only their JSON-lines output is used at run time, so the scripts live here, beside the package,
rather than in it. Each ``make_*.py`` module exposes ``outputs() -> {file name: exact text}`` and
``main(out_dir=OUT_DIR)``, which writes those files; run one from the repository root with
``python -m datagen.make_general`` or ``python datagen/make_general.py`` (an optional argument
names another output folder). The output is the same
bytes on every run, and ``tests/unit/data/test_builtin_regenerate.py`` checks that regenerating
gives the shipped files exactly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT: Path = Path(__file__).resolve().parent.parent
OUT_DIR: Path = ROOT / "src" / "tunesmith" / "data" / "builtin"
"""Where the shipped files live (``tunesmith.data.builtin.BUILTIN_DIR`` in a source checkout)."""


def render(rows: list[dict[str, Any]]) -> str:
    """JSON lines, one object per line, ending in a newline.

    Not ASCII-escaped: the tiny tokenizer is trained on these bytes and must see real Chinese.
    """
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_outputs(files: Mapping[str, str], out_dir: Path = OUT_DIR) -> list[Path]:
    """Write ``{file name: text}`` into ``out_dir`` as UTF-8 with ``\\n`` line ends.

    Returns:
        The written paths, in the order of ``files``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8", newline="\n")  # same bytes on Windows too
        print(f"wrote {path} ({text.count(chr(10))} rows)")
        written.append(path)
    return written


def out_dir_arg(argv: list[str] | None = None) -> Path:
    """The output folder of a generator run as a script: its one optional argument, else
    ``OUT_DIR``.

    Raises:
        SystemExit: more than one argument (the message shows the usage).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        raise SystemExit(f"usage: python -m datagen.<script> [OUT_DIR]; got {len(args)} arguments")
    return Path(args[0]) if args else OUT_DIR

"""Scoring a vision-language model on the toy shapes' held-out images, through the engine.

The toy data set (``tunesmith.data.toy_images``) writes ``heldout.jsonl``: images never trained
on, each with its colour and shape. :func:`score_toy` asks the model about each one with the
inference engine (batched greedy decoding, the training chat template, the template's stops),
so it measures what ``tunesmith chat`` and ``tunesmith serve`` would answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.data.toy_images import COLORS, QUESTIONS, SHAPES
from tunesmith.errors import ConfigError, DataError

MAX_NEW_TOKENS = 6
"""Enough for the longest toy answer (``a purple triangle``)."""
_FIELDS = ("image", "color", "shape")


def read_heldout(folder: str | Path, limit: int | None = None) -> list[dict[str, str]]:
    """The held-out rows (``image``, ``color``, ``shape``) of a toy data set folder.

    Raises:
        DataError: the folder has no ``heldout.jsonl``, or a line of it is no such row.
    """
    path = Path(folder) / "heldout.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: not found; write the toy set with `tunesmith data toy-shapes`")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in _FIELDS):
            raise DataError(
                f"{path}:{number}: expected an object with string image, color and shape; "
                "write the toy set again"
            )
        rows.append(row)
    return rows[:limit] if limit else rows


def judge(kind: str, reply: str, color: str, shape: str) -> bool:
    """Whether ``reply`` answers question ``kind`` right: it names the right word and no other
    colour (or shape); ``both`` needs both right."""
    words = set(reply.lower().replace(".", " ").split())
    color_ok = words & set(COLORS) == {color}
    shape_ok = words & set(SHAPES) == {shape}
    return {"color": color_ok, "shape": shape_ok, "both": color_ok and shape_ok}[kind]


def score_toy(
    engine: Any,
    folder: str | Path,
    *,
    limit: int | None = None,
    kinds: tuple[str, ...] = tuple(QUESTIONS),
) -> dict[str, float]:
    """Greedy answers on the held-out images: colour, shape and caption accuracy.

    Args:
        engine: an :class:`~tunesmith.infer.engine.Engine` over a vision-language model.
        folder: the toy data set (``make_toy_shapes``'s output).
        limit: score the first ``limit`` held-out images only.
        kinds: the questions to ask (``color``, ``shape``, ``both``).

    Returns:
        ``{kind: accuracy, ..., "n": images}`` for the asked ``kinds``.

    Raises:
        ConfigError: ``engine`` serves a text-only model, or a kind is unknown.
    """
    from tunesmith.data.images import load_image
    from tunesmith.infer.sampling import GenParams

    if not engine.takes_images:
        raise ConfigError("score_toy: the engine serves a text-only model; load a VLM")
    unknown = [k for k in kinds if k not in QUESTIONS]
    if unknown:
        raise ConfigError(f"kinds {unknown}: choose from {', '.join(QUESTIONS)}")
    rows = read_heldout(folder, limit)
    asked = [(row, kind) for row in rows for kind in kinds]
    images = {row["image"]: load_image(str(Path(folder) / row["image"])) for row in rows}
    convs = [[{"role": "user", "content": f"<image>{QUESTIONS[kind]}"}] for _, kind in asked]
    replies = engine.generate(
        convs,
        GenParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0),
        images=[[images[row["image"]]] for row, _ in asked],
    )
    hits = {kind: 0 for kind in kinds}
    for (row, kind), reply in zip(asked, replies, strict=True):
        hits[kind] += int(judge(kind, reply, row["color"], row["shape"]))
    n = max(len(rows), 1)
    return {**{k: v / n for k, v in hits.items()}, "n": float(len(rows))}

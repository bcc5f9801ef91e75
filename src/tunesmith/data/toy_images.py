"""A learnable toy task for vision-language training: coloured shapes, and captions naming them.

``make_toy_shapes(out_dir)`` draws small images, each one shape (circle, square or triangle) in
one colour on a light background with jittered size, position and shade, and writes:

* ``images/*.png``;
* ``pretrain.jsonl``: LLaVA-format caption pairs (``<image>`` -> "a red circle") for the
  ``vlm_pretrain`` stage;
* ``sft.jsonl``: OpenAI-style conversations with ``image_url`` parts asking for the colour, the
  shape or both (``vlm_sft``);
* ``heldout.jsonl``: other images (never trained on) with their colour and shape, scored by
  ``tunesmith.infer.vision_toy.score_toy`` (through the inference engine: data never imports
  infer).

Everything is seeded: the same call writes the same bytes. A model that names held-out colours
and shapes clearly above chance (1/len(COLORS), 1/len(SHAPES)) must be reading the pixels.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
}
SHAPES = ("circle", "square", "triangle")
QUESTIONS = {
    "color": "What colour is the shape?",
    "shape": "What shape is it?",
    "both": "Describe the picture.",
}


def draw(color: str, shape: str, rng: random.Random, size: int = 32) -> Any:
    """One image: a jittered ``shape`` in a jittered ``color`` on a light background."""
    from PIL import Image, ImageDraw

    bg = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    pen = ImageDraw.Draw(img)
    r, g, b = COLORS[color]
    fill = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in (r, g, b))
    half = rng.randint(size // 4, size * 2 // 5)
    cx = rng.randint(half, size - 1 - half)
    cy = rng.randint(half, size - 1 - half)
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=fill)
    return img


def caption(color: str, shape: str) -> str:
    """The caption naming both."""
    return f"a {color} {shape}"


def answer(kind: str, color: str, shape: str) -> str:
    """The reply to question ``kind`` (``color``, ``shape`` or ``both``)."""
    return {"color": color, "shape": shape, "both": caption(color, shape)}[kind]


def make_toy_shapes(
    out_dir: str | Path,
    *,
    train: int = 360,
    heldout: int = 90,
    seed: int = 0,
    size: int = 32,
    kinds: tuple[str, ...] = tuple(QUESTIONS),
) -> Path:
    """Write the toy data set (see the module docstring) and return ``out_dir``.

    ``kinds`` picks the questions of ``sft.jsonl`` (``color``, ``shape``, ``both``), in turn.
    """
    unknown = set(kinds) - set(QUESTIONS)
    if not kinds or unknown:
        raise ValueError(f"kinds must be some of {list(QUESTIONS)}, got {list(kinds)}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    classes = [(c, s) for c in COLORS for s in SHAPES]

    def images(prefix: str, n: int) -> list[tuple[str, str, str]]:
        rows = []
        for i in range(n):
            color, shape = classes[i % len(classes)]  # balanced classes
            name = f"images/{prefix}-{i:04d}.png"
            draw(color, shape, rng, size).save(out / name, optimize=False)
            rows.append((name, color, shape))
        return rows

    train_rows = images("train", train)
    held_rows = images("heldout", heldout)
    pretrain = [
        {
            "image": name,
            "conversations": [
                {"from": "human", "value": "<image>"},
                {"from": "gpt", "value": caption(color, shape)},
            ],
        }
        for name, color, shape in train_rows
    ]
    sft = []
    for i, (name, color, shape) in enumerate(train_rows):
        kind = kinds[(i + i // len(COLORS) // len(SHAPES)) % len(kinds)]  # every pair, every kind
        user = [
            {"type": "image_url", "image_url": {"url": name}},
            {"type": "text", "text": QUESTIONS[kind]},
        ]
        sft.append(
            {
                "messages": [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": answer(kind, color, shape)},
                ]
            }
        )
    held = [{"image": n, "color": c, "shape": s} for n, c, s in held_rows]
    for fname, rows in (("pretrain.jsonl", pretrain), ("sft.jsonl", sft), ("heldout.jsonl", held)):
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (out / fname).write_text(text, encoding="utf-8")
    return out

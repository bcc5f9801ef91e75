"""Deterministic generator of the built-in preference sets, whose preferred answer is checkable.

Each prompt is a small arithmetic question; the chosen reply is the right answer and the rejected
reply a wrong one, so a test can tell whether a model prefers the correct answer (compare the
log-probabilities of the two replies). Three task families:

* ``add``: ``What is 13 + 4?`` -> ``17``; the wrong answer is off by 1 to 3.
* ``parity``: ``Is 47 even or odd?`` -> ``odd`` (wrong: ``even``).
* ``max``: ``Which is larger, 38 or 52?`` -> ``52`` (wrong: ``38``).

``python -m datagen.make_prefs`` (or ``python datagen/make_prefs.py``) rewrites, in
``src/tunesmith/data/builtin/``,

* ``prefs_arith.jsonl`` — training pairs, ``{"prompt", "chosen", "rejected", "meta"}``;
* ``prefs_arith_heldout.jsonl`` — pairs whose prompts never occur in the training file;
* ``kto_arith.jsonl`` — the training prompts as KTO rows, ``{"prompt", "completion", "label"}``,
  each prompt once, with its right answer (``label: true``) or a wrong one (``false``), half each;
* ``arith_prompts.jsonl`` — prompts for online RL (the ``grpo-lora`` recipe): a question and its
  answer as a conversation (GRPO prompts it with the question; the reply is the reference), and a
  ``task`` field, every distinct ``add`` prompt the family has left after the
  held-out ones and as many ``parity`` and ``max`` prompts (510 in all), none of them held out.
  More distinct prompts than ``prefs_arith`` holds are what lets GRPO learn a rule rather than
  memorise answers (README, "Reward models and GRPO").

``meta`` holds ``{"task": ..., "args": [...]}`` so tests can recompute the answer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from random import Random
from typing import Any

if __package__ in (None, ""):  # `python datagen/<script>.py`: let it `import datagen`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datagen import OUT_DIR, out_dir_arg, render, write_outputs

SEED = 0
N_TRAIN = 360
N_HELDOUT = 90


def _add(rng: Random) -> tuple[str, str, str, list[int]]:
    a, b = rng.randrange(20), rng.randrange(10)
    right = a + b
    wrong = right + rng.choice([d for d in (-3, -2, -1, 1, 2, 3) if right + d >= 0])
    return f"What is {a} + {b}?", str(right), str(wrong), [a, b]


def _parity(rng: Random) -> tuple[str, str, str, list[int]]:
    n = rng.randrange(10, 1000)
    right, wrong = ("even", "odd") if n % 2 == 0 else ("odd", "even")
    return f"Is {n} even or odd?", right, wrong, [n]


def _max(rng: Random) -> tuple[str, str, str, list[int]]:
    a, b = rng.sample(range(10, 100), 2)
    return f"Which is larger, {a} or {b}?", str(max(a, b)), str(min(a, b)), [a, b]


MAKERS = {"add": _add, "parity": _parity, "max": _max}


def generate(
    n_train: int = N_TRAIN, n_heldout: int = N_HELDOUT, seed: int = SEED
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and held-out pairs with distinct prompts, the families in turn."""
    rng = Random(seed)
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    tasks = list(MAKERS)
    while len(rows) < n_train + n_heldout:
        task = tasks[len(rows) % len(tasks)]
        for _ in range(1000):
            prompt, right, wrong, args = MAKERS[task](rng)
            if prompt not in seen:
                break
        else:  # pragma: no cover - the families have far more prompts than needed
            raise RuntimeError(f"ran out of distinct {task} prompts")
        seen.add(prompt)
        meta = {"task": task, "args": args}
        rows.append({"prompt": prompt, "chosen": right, "rejected": wrong, "meta": meta})
    return rows[:n_train], rows[n_train:]


PROMPTS_SEED = 1
PROMPTS_PER_TASK = 170  # every add prompt left: 200 distinct, 30 held out


def rl_prompts(heldout: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prompts with their answers, the families in turn, none equal to a held-out prompt."""
    rng = Random(PROMPTS_SEED)
    seen = {p["prompt"] for p in heldout}
    rows: list[dict[str, Any]] = []
    tasks = list(MAKERS)
    while len(rows) < PROMPTS_PER_TASK * len(tasks):
        task = tasks[len(rows) % len(tasks)]
        for _ in range(1000):
            prompt, right, _wrong, _args = MAKERS[task](rng)
            if prompt not in seen:
                break
        else:  # pragma: no cover - PROMPTS_PER_TASK fits every family
            raise RuntimeError(f"ran out of distinct {task} prompts")
        seen.add(prompt)
        turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": right}]
        rows.append({"messages": turns, "task": task})
    return rows


def to_kto(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each prompt once: even rows with the right answer (desirable), odd rows with the wrong."""
    return [
        {
            "prompt": p["prompt"],
            "completion": p["chosen"] if i % 2 == 0 else p["rejected"],
            "label": i % 2 == 0,
            "meta": p["meta"],
        }
        for i, p in enumerate(pairs)
    ]


def outputs() -> dict[str, str]:
    """File name -> exact contents of the four shipped files."""
    train, heldout = generate()
    return {
        "prefs_arith.jsonl": render(train),
        "prefs_arith_heldout.jsonl": render(heldout),
        "kto_arith.jsonl": render(to_kto(train)),
        "arith_prompts.jsonl": render(rl_prompts(heldout)),
    }


def main(out_dir: Path = OUT_DIR) -> None:
    """Rewrite the four shipped files (into ``out_dir``)."""
    write_outputs(outputs(), out_dir)


if __name__ == "__main__":
    main(out_dir_arg())

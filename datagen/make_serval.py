"""Generate the SERVAL demonstration data (``builtin:serval_patients`` and its table).

Run ``python -m datagen.make_serval`` (or ``python datagen/make_serval.py [OUT_DIR]``) from the
repository root to rewrite the files below; the output is byte-identical on every run.

A seeded RNG draws ``PATIENTS`` fictional patient records (age, sex, BMI, fasting glucose, blood
pressure, smoking, exercise). A hidden rule decides the diagnosis: fasting glucose of at least
``GLUCOSE_CUT`` mg/dL, or a BMI of at least ``BMI_CUT`` at an age of at least ``AGE_CUT``; then
``NOISE`` of the labels are flipped (label noise: the recorded diagnosis is not the rule's).
The same patients are written twice:

- ``serval_patients.jsonl``: ``{"id", "split", "text", "label"}``, the record as a short text
  (what the LLM reads; phrasings vary);
- ``serval_patients_table.jsonl``: ``{"id", "split", "label", <feature columns>}``, the same
  record as a table row (what a tabular vertical model reads).

- ``serval_textbook.jsonl``: ``TEXTBOOK`` other fictional patients (not in any split) as chat
  conversations, the task's question answered by the rule itself (no noise). The demo's warm-up
  reads a share of them: the stand-in for the domain knowledge a real LLM brings from
  pretraining, which a random tiny model lacks (without some, the loop has nothing to start
  from).

Splits: ``train`` (labels unused by SERVAL), ``val`` (a few may be used for early stopping),
``test`` (held out, for the report). Every record is made up for this project.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from random import Random
from typing import Any

if __package__ in (None, ""):  # `python datagen/<script>.py`: let it `import datagen`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT_DIR = Path(__file__).resolve().parent.parent / "src" / "tunesmith" / "data" / "builtin"
SEED = 20260421
TEXTBOOK_SEED = 20260422
TEXTBOOK = 400
#: The demo recipe's serval.prompt (the textbook conversations ask the same question).
PROMPT = "{text}\nDoes this patient have the condition? Answer yes or no."
LABEL_WORDS = ("no", "yes")
SPLITS: tuple[tuple[str, int], ...] = (("train", 600), ("val", 100), ("test", 300))
PATIENTS = sum(n for _, n in SPLITS)
GLUCOSE_CUT = 115
BMI_CUT = 30.0
AGE_CUT = 50
NOISE = 0.08
FEATURES: tuple[str, ...] = (
    "age",
    "female",
    "bmi",
    "glucose",
    "systolic",
    "diastolic",
    "smoker",
    "exercise",
)

TEMPLATES: tuple[str, ...] = (
    "{age}-year-old {sex}, BMI {bmi}, fasting glucose {glucose} mg/dL, blood pressure "
    "{systolic}/{diastolic}, {smoke}, exercises {exercise} hours a week.",
    "A {sex} aged {age}. Fasting glucose: {glucose} mg/dL. BMI: {bmi}. Blood pressure "
    "{systolic}/{diastolic}. {Smoke}. Exercise: {exercise} hours a week.",
    "Patient ({sex}, {age} years): glucose {glucose} mg/dL fasting, BMI {bmi}, "
    "BP {systolic}/{diastolic}; {smoke}; {exercise} hours of exercise weekly.",
)


def rule(row: dict[str, Any]) -> int:
    """The hidden diagnosis rule (before label noise)."""
    high_glucose = row["glucose"] >= GLUCOSE_CUT
    return int(high_glucose or (row["bmi"] >= BMI_CUT and row["age"] >= AGE_CUT))


def make_patients(
    seed: int = SEED, splits: list[str] | None = None, noise: float = NOISE
) -> list[dict[str, Any]]:
    """Every patient as a table row with ``id``, ``split``, the features and the noisy label."""
    rng = Random(seed)
    splits = splits or [name for name, n in SPLITS for _ in range(n)]
    rows = []
    for i, split in enumerate(splits):
        age = rng.randint(20, 85)
        bmi = round(min(max(rng.gauss(27.5, 5.0), 16.0), 45.0), 1)
        glucose = int(min(max(rng.gauss(108 + 0.2 * (age - 50), 22), 65), 240))
        systolic = int(min(max(rng.gauss(118 + 0.4 * (age - 40), 14), 90), 190))
        diastolic = int(min(max(systolic * 0.62 + rng.gauss(0, 6), 55), 115))
        row = {
            "id": f"P{i + 1:04d}",
            "split": split,
            "age": age,
            "female": int(rng.random() < 0.5),
            "bmi": bmi,
            "glucose": glucose,
            "systolic": systolic,
            "diastolic": diastolic,
            "smoker": int(rng.random() < 0.22),
            "exercise": rng.randint(0, 9),
        }
        label = rule(row)
        if rng.random() < noise:
            label = 1 - label
        row["label"] = label
        row["template"] = rng.randrange(len(TEMPLATES))
        rows.append(row)
    return rows


def as_text(row: dict[str, Any]) -> str:
    """The record in one of the ``TEMPLATES`` phrasings."""
    smoke = "smoker" if row["smoker"] else "non-smoker"
    return TEMPLATES[row["template"]].format(
        age=row["age"],
        sex="woman" if row["female"] else "man",
        bmi=row["bmi"],
        glucose=row["glucose"],
        systolic=row["systolic"],
        diastolic=row["diastolic"],
        smoke=smoke,
        Smoke=smoke.capitalize(),
        exercise=row["exercise"],
    )


def text_records(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``serval_patients.jsonl`` rows."""
    return [
        {"id": p["id"], "split": p["split"], "text": as_text(p), "label": p["label"]}
        for p in patients
    ]


def table_records(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``serval_patients_table.jsonl`` rows."""
    return [
        {"id": p["id"], "split": p["split"], "label": p["label"], **{f: p[f] for f in FEATURES}}
        for p in patients
    ]


def textbook_records() -> list[dict[str, Any]]:
    """``serval_textbook.jsonl`` rows: other patients, the question answered by the rule."""
    patients = make_patients(TEXTBOOK_SEED, ["textbook"] * TEXTBOOK, noise=0.0)
    return [
        {
            "messages": [
                {"role": "user", "content": PROMPT.replace("{text}", as_text(p))},
                {"role": "assistant", "content": LABEL_WORDS[p["label"]]},
            ]
        }
        for p in patients
    ]


def render(rows: list[dict[str, Any]]) -> str:
    """JSON lines, one object per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def outputs() -> dict[str, str]:
    """File name -> exact contents of every file this generator writes."""
    patients = make_patients()
    return {
        "serval_patients.jsonl": render(text_records(patients)),
        "serval_patients_table.jsonl": render(table_records(patients)),
        "serval_textbook.jsonl": render(textbook_records()),
    }


def main(out_dir: Path = OUT_DIR) -> None:
    """Write every output file into ``out_dir``."""
    for name, text in outputs().items():
        (out_dir / name).write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {out_dir / name} ({text.count(chr(10))} rows)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR)

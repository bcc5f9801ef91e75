"""A lab-notes recipe trains a few steps and runs its eval tasks (held-out exact match and
general-data perplexity), writing eval/*.json, predictions and metrics.jsonl records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import tunesmith
from tunesmith.data.builtin import builtin_path, load_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_mix_recipe_trains_and_evaluates(tmp_path: Path, tiny_qwen2: Path) -> None:
    cfg = tunesmith.load_config(
        "labnotes-mix-short", "train.max_steps=3", output={"dir": str(tmp_path / "run")}
    )
    # Fewer examples than the recipe's own so the test stays short; the tasks are the recipe's.
    tasks = [t.model_copy(update={"max_samples": 5}) for t in cfg.eval.tasks]
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"tasks": tasks})})
    tunesmith.train(cfg, progress=False)
    run = tmp_path / "run"

    heldout = json.loads((run / "eval" / "heldout.json").read_text(encoding="utf-8"))
    general = json.loads((run / "eval" / "general.json").read_text(encoding="utf-8"))
    assert (heldout["task"], heldout["n"]) == ("generation", 5)
    assert 0.0 <= heldout["metrics"]["exact_match"] <= 1.0
    assert (general["task"], general["n"]) == ("perplexity", 5)
    assert general["metrics"]["perplexity"] == pytest.approx(math.exp(general["metrics"]["loss"]))

    predictions = [
        json.loads(line)
        for line in (run / "eval" / "heldout.predictions.jsonl").read_text().splitlines()
    ]
    expected = load_jsonl(builtin_path("labnotes_heldout"))[:5]
    assert [p["reference"] for p in predictions] == [r["reference"] for r in expected]
    assert all(isinstance(p["prediction"], str) for p in predictions)

    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    final = next(r for r in records if "eval/heldout/exact_match" in r)
    assert final["step"] == 3
    assert final["eval/heldout/exact_match"] == heldout["metrics"]["exact_match"]
    assert any("eval/general/perplexity" in r for r in records)

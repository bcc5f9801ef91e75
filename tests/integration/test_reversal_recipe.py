"""The reversal-curse recipes: the augmented mix holds the generated reversed/2-hop samples of
the training chains only (no held-out question is trained), and a few steps train and evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tunesmith
from tunesmith.data.builtin import builtin_path, load_jsonl

pytest.importorskip("networkx", reason="data.augment builds a networkx graph ([graph] extra)")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_recipes_differ_only_in_data_augment() -> None:
    fwd = tunesmith.load_config("reversal-forward")
    aug = tunesmith.load_config("reversal-augmented")
    assert fwd.data.augment == []
    assert [(a.triples, a.kinds) for a in aug.data.augment] == [
        ("builtin:facts_train_triples", ["reverse", "hop"])
    ]
    assert fwd.train == aug.train and fwd.eval == aug.eval and fwd.model == aug.model
    assert [t.name for t in aug.eval.tasks] == ["forward", "reversed", "2hop"]


def test_augmented_mix_trains_no_heldout_question() -> None:
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.augment.mix import expand

    cfg = expand(tunesmith.load_config("reversal-augmented").data, "sft")
    assert isinstance(cfg, DataConfig) and len(cfg.datasets) == 2
    generated = load_jsonl(cfg.datasets[1].path)
    assert {r["meta"]["kind"] for r in generated} == {"reverse", "hop"}
    assert len(generated) == 320  # 80 chains x (2 reversed + 2 composed)
    trained = {r["messages"][0]["content"] for r in generated}
    trained |= {r["messages"][0]["content"] for r in load_jsonl(builtin_path("facts_forward"))}
    for name, n in (("facts_heldout_reverse", 80), ("facts_heldout_2hop", 40)):
        rows = load_jsonl(builtin_path(name))
        assert len(rows) == n
        assert not trained & {r["prompt"] for r in rows}
    held = load_jsonl(builtin_path("facts_heldout_forward"))
    assert {r["prompt"] for r in held} <= trained  # the forward facts are trained in both runs


@pytest.mark.slow
def test_augmented_recipe_trains_and_evaluates(tmp_path: Path, tiny_qwen2: Path) -> None:
    cfg = tunesmith.load_config(
        "reversal-augmented", "train.max_steps=2", output={"dir": str(tmp_path / "run")}
    )
    tasks = [t.model_copy(update={"max_samples": 3}) for t in cfg.eval.tasks]
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"tasks": tasks})})
    tunesmith.train(cfg, progress=False)
    run = tmp_path / "run"
    report = (run / "data_report.md").read_text(encoding="utf-8")
    assert "augment 0: builtin:facts_train_triples (reverse, hop; 320 samples" in report
    for name, data in (("forward", "facts_heldout_forward"), ("2hop", "facts_heldout_2hop")):
        result = json.loads((run / "eval" / f"{name}.json").read_text(encoding="utf-8"))
        assert (result["task"], result["n"]) == ("generation", 3)
        lines = (run / "eval" / f"{name}.predictions.jsonl").read_text().splitlines()
        refs = [json.loads(x)["reference"] for x in lines]
        assert refs == [r["reference"] for r in load_jsonl(builtin_path(data))[:3]]

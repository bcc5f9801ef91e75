"""``tunesmith eval`` end to end: a trained run's eval.tasks, --task/--data, --json, identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tunesmith
from tunesmith.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Path:
    """A short LoRA run whose eval.tasks ran at the end of training."""
    out = tmp_path_factory.mktemp("evalrun") / "run"
    gen = out.parent / "gen.jsonl"
    gen.write_text(
        "".join(
            json.dumps({"prompt": q, "reference": a}) + "\n"
            for q, a in [("Who are you?", "I am Nova."), ("你是谁？", "我是 Nova。")]
        ),
        encoding="utf-8",
    )
    cfg = tunesmith.load_config(
        "sft-lora",
        "train.max_steps=3",
        data={
            "datasets": [{"path": "builtin:identity", "samples": 48}],
            "identity": {"name": "Nova", "author": "the tests"},
            "max_length": 64,
            "val_size": 8,
        },
        train={"batch_size": 4, "precision": "fp32", "log_every": 1},
        eval={
            "tasks": [
                {"type": "perplexity"},
                {"type": "generation", "data": str(gen), "max_new_tokens": 6},
            ]
        },
        output={"dir": str(out)},
    )
    tunesmith.train(cfg, progress=False)
    return out


def test_training_runs_eval_tasks_and_logs_them(run: Path) -> None:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    final_val = [r for r in records if "val_loss" in r][-1]
    ppl = next(r for r in records if "eval/perplexity/loss" in r)
    gen = next(r for r in records if "eval/generation/bleu" in r)
    assert ppl["step"] == gen["step"] == 3
    # The perplexity task scores the run's own validation split as training did.
    assert ppl["eval/perplexity/loss"] == pytest.approx(final_val["val_loss"], rel=1e-4)
    assert set(gen) == {
        "step",
        *(f"eval/generation/{m}" for m in ("exact_match", "bleu", "rouge1", "rouge2", "rougeL")),
    }
    saved = json.loads((run / "eval" / "generation.json").read_text("utf-8"))
    assert saved["task"] == "generation" and saved["n"] == 2 and saved["model"] == str(run)
    rows = (run / "eval" / "generation.predictions.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(r)["reference"] for r in rows] == ["I am Nova.", "我是 Nova。"]


def test_eval_prints_a_table_and_json(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(run)]) == 0
    table = capsys.readouterr().out
    for word in ("perplexity", "generation", "bleu", "rougeL", "loss"):
        assert word in table
    assert main(["eval", str(run), "--task", "perplexity", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    first = json.loads((run / "eval" / "perplexity.json").read_text("utf-8"))
    assert result["metrics"] == pytest.approx(first["metrics"])


def test_eval_a_model_on_chinese_references(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = shared_data / "llamafactory" / "alpaca_zh_demo.json"
    if not data.is_file():
        pytest.skip("../shared/data is not here")
    argv = ["eval", "builtin:tiny-qwen2", "--task", "generation", "--data", str(data)]
    argv += ["--max-samples", "3", "--max-new-tokens", "4", "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["n"] == 3 and result["details"]["bleu_tokenize"] == "zh"
    assert result["details"]["rouge_tokens"].startswith("characters")
    assert (tmp_path / "generation.predictions.jsonl").read_text("utf-8").count("\n") == 3


def test_eval_errors_are_one_line(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(run), "--task", "generation"]) == 2
    assert "--task generation needs --data FILE" in capsys.readouterr().err
    assert main(["eval", "builtin:tiny-qwen2"]) == 2
    assert "no eval.tasks" in capsys.readouterr().err


def test_eval_identity_keeps_working(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "identity", str(run), "--json", "--max-new-tokens", "4"]) == 0
    old = json.loads(capsys.readouterr().out)
    argv = ["eval", str(run), "--task", "identity", "--json", "--max-new-tokens", "4"]
    assert main(argv) == 0
    (new,) = json.loads(capsys.readouterr().out)
    assert new["metrics"] == {
        "identity_score": pytest.approx(old["identity_score"], abs=1e-4),
        "false_claim_rate": pytest.approx(old["false_claim_rate"], abs=1e-4),
    }
    assert new["n"] == old["n"]

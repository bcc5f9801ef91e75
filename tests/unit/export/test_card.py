"""The model card says what was trained, on what, and how well."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.export.card import method_line, model_card

RUN_CONFIG = {
    "model": {"name": "builtin:tiny-qwen2"},
    "data": {
        "datasets": [
            {"path": "builtin:identity", "samples": 48, "format": "auto"},
            {"path": "data/chat.jsonl", "weight": 0.5, "format": "sharegpt"},
        ],
        "system": "You are Nova.",
    },
    "method": {
        "type": "lora",
        "stage": "sft",
        "lora": {"rank": 8, "alpha": 16, "targets": "all-linear"},
    },
}


def test_method_line() -> None:
    assert method_line(RUN_CONFIG, merged=True) == (
        "LoRA rank 8, alpha 16, targets all-linear (sft); merged into the base weights"
    )
    dora = {
        "method": {
            "type": "lora",
            "lora": {"rank": 4, "alpha": 8, "targets": ["q_proj"], "use_dora": True},
        }
    }
    assert method_line(dora, merged=False).startswith("DoRA rank 4, alpha 8, targets ['q_proj']")
    assert method_line({"method": {"type": "full"}}, merged=True) == "full fine-tuning (sft)"


def test_card_lists_base_data_and_metrics(tmp_path: Path) -> None:
    (tmp_path / "train_summary.json").write_text(
        json.dumps({"first_loss": 3.5, "last_loss": 0.75, "steps": 10, "seconds": 4.2})
    )
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 3}\n{"step": 10, "loss": 1, "val_loss": 0.9}\n'
    )
    (tmp_path / "identity_eval.json").write_text(
        json.dumps({"identity_score": 0.95, "false_claim_rate": 0.0, "n": 20, "n_general": 10})
    )
    card = model_card(
        name="nova",
        base="builtin:tiny-qwen2",
        run_config=RUN_CONFIG,
        run_dir=tmp_path,
        merged=True,
        dtype="float32",
    )
    assert card.startswith('---\nbase_model: "builtin:tiny-qwen2"\nlibrary_name: transformers\n')
    assert "# nova" in card
    assert "| builtin:identity | auto | 48 |" in card
    assert "| data/chat.jsonl | sharegpt | weight 0.5 |" in card
    assert "System prompt used in training: `You are Nova.`" in card
    assert "- training loss 3.5000 -> 0.7500 over 10 steps (4.2 s)" in card
    assert "- final validation loss 0.9000" in card
    assert "- identity score 0.950 on 20 held-out questions; false-claim rate 0.000" in card


def test_card_without_a_run_directory(tmp_path: Path) -> None:
    card = model_card(
        name="m", base="b", run_config=None, run_dir=None, merged=False, dtype="adapter"
    )
    assert "library_name: peft" in card and "## Data" not in card and "## Results" not in card

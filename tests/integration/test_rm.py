"""Stage rm on the tiny model: Bradley-Terry training, held-out pairwise accuracy, a saved folder
that transformers loads as a sequence-classification model, and the GRPO ``kind: model`` reward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


def config(tmp_path: Path, tiny_qwen2: Path, method_type: str = "lora", steps: int = 6) -> dict:
    return {
        "model": {"name": str(tiny_qwen2)},
        "data": {"datasets": [{"path": "builtin:prefs_arith", "max_samples": 48}], "val_size": 8},
        "method": {"stage": "rm", "type": method_type, "rm": {"center_coef": 0.01}},
        "train": {
            "precision": "fp32",
            "lr": 1e-3,
            "max_steps": steps,
            "batch_size": 4,
            "log_every": 1,
            "threads": 1,
        },
        "eval": {"every": 3},
        "output": {"dir": str(tmp_path / f"rm-{method_type}")},
    }


def held_out_pairs(cfg) -> list[dict]:
    """The run's held-out pairs, rendered as the recipe renders them."""
    from tunesmith.data.engine import prepare
    from tunesmith.data.render import build_renderer
    from tunesmith.model.loader import tokenizer_for

    tok = tokenizer_for(cfg.model)
    renderer = build_renderer(tok, cfg.data, cfg.model.template, stage="rm")
    return prepare(cfg.data, renderer, stage="dpo").val


def test_rm_lora_trains_saves_and_scores(tmp_path: Path, tiny_qwen2: Path, one_torch_thread):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import tunesmith
    from tunesmith.data.pairs import collate_pairs
    from tunesmith.train.rl.rewards import build_rewards

    cfg = tunesmith.load_config(config(tmp_path, tiny_qwen2))
    result = tunesmith.train(cfg, progress=False)
    run = result.run_dir
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "accuracy" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    for r in steps:
        margin = r["rewards/chosen"] - r["rewards/rejected"]
        assert r["rewards/margins"] == pytest.approx(margin, abs=1e-6)
        assert 0.0 <= r["accuracy"] <= 1.0
    evals = [r for r in records if "val_accuracy" in r]
    assert [r["step"] for r in evals] == [3, 6]

    # The saved folder is a plain transformers reward model (LoRA merged, head included) ...
    folder = run / "model"
    assert not (run / "adapter").exists()
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert hf.config.num_labels == 1 and hf.config.pad_token_id is not None
    tok = AutoTokenizer.from_pretrained(folder)
    # ... whose pairwise accuracy on the held-out pairs is the one the run logged last,
    val = held_out_pairs(cfg)
    assert len(val) == 8
    batch = collate_pairs(val, tok.pad_token_id)
    with torch.no_grad():
        saved = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[
            :, 0
        ]
        trained = result.model.eval()(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits[:, 0]
    assert torch.allclose(saved, trained, atol=1e-5)  # merging changed nothing
    accuracy = float((saved[:8] > saved[8:]).float().mean())
    assert accuracy == pytest.approx(evals[-1]["val_accuracy"])
    assert float((saved[:8] - saved[8:]).abs().max()) > 0  # it scores replies differently

    # ... and GRPO's `kind: model` reward scores a conversation as the saved model does.
    from tunesmith.config.schema import RewardSpec

    (reward,) = build_rewards([RewardSpec(kind="model", path=str(run))], max_new_tokens=4)
    prompt = [{"role": "user", "content": "What is 12 + 6?"}]
    got = reward.fn([prompt, prompt], ["18", "15"], [{}, {}], [1, 1])
    texts = [
        tok.apply_chat_template([*prompt, {"role": "assistant", "content": a}], tokenize=False)
        for a in ("18", "15")
    ]
    with torch.no_grad():
        want = [float(hf(**tok(t, return_tensors="pt")).logits[0, 0]) for t in texts]
    assert got == pytest.approx(want, abs=1e-5)

    # One GRPO step rewarded by this reward model, end to end.
    grpo = {
        "model": {"name": str(tiny_qwen2)},
        "data": {"datasets": [{"path": "builtin:prefs_arith", "max_samples": 8}]},
        "method": {
            "stage": "grpo",
            "grpo": {
                "group_size": 2,
                "max_new_tokens": 3,
                "rewards": [{"kind": "model", "path": str(run)}],
            },
        },
        "train": {
            "precision": "fp32",
            "max_steps": 1,
            "batch_size": 2,
            "log_every": 1,
            "threads": 1,
        },
        "output": {"dir": str(tmp_path / "grpo-rm")},
    }
    rl = tunesmith.train(tunesmith.load_config(grpo), progress=False)
    step = json.loads((rl.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert step["step"] == 1 and step["reward"] == pytest.approx(step["rewards/model/mean"])
    assert step["rewards/model/std"] > 0  # the reward model told the completions apart


def test_rm_full_tuning_and_rules(tmp_path: Path, tiny_qwen2: Path, one_torch_thread) -> None:
    from transformers import AutoModelForSequenceClassification

    import tunesmith
    from tunesmith.errors import ConfigError

    result = tunesmith.train(
        tunesmith.load_config(config(tmp_path, tiny_qwen2, "full", steps=2)), progress=False
    )
    hf = AutoModelForSequenceClassification.from_pretrained(result.run_dir / "model")
    assert hf.score.weight.shape == (1, hf.config.hidden_size)
    assert all(p.requires_grad for p in result.model.parameters())

    bad = config(tmp_path, tiny_qwen2, "qlora")
    with pytest.raises(Exception, match="stage rm trains 'lora', 'full' or 'freeze'"):
        tunesmith.load_config(bad)
    with pytest.raises(ConfigError, match="is not a reward model"):
        from tunesmith.train.rl.reward_model import reward_model_dir

        reward_model_dir(str(tmp_path), "method.grpo.rewards.0.path")

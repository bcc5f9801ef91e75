"""Stage grpo end to end on the tiny model: rewards combined, metrics, samples, LoRA trained."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch


def write_reward_module(folder: Path) -> str:
    (folder / "ts_grpo_reward.py").write_text(
        "def distinct(prompt, completion, sample):\n"
        "    assert prompt[-1]['role'] == 'user' and 'answer' in sample\n"
        "    return len(set(completion)) / 10\n"
    )
    return "ts_grpo_reward:distinct"


def config(tmp_path: Path, tiny_qwen2: Path, **grpo: object) -> dict:
    return {
        "model": {"name": str(tiny_qwen2)},
        "data": {"datasets": [{"path": "builtin:prefs_arith", "max_samples": 24}], "val_size": 4},
        "method": {
            "stage": "grpo",
            "type": "lora",
            "grpo": {"group_size": 4, "max_new_tokens": 6, **grpo},
        },
        "train": {
            "precision": "fp32",
            "lr": 5e-3,
            "max_steps": 2,
            "batch_size": 2,
            "log_every": 1,
            "threads": 1,
        },
        "output": {"dir": str(tmp_path / "run")},
    }


def test_grpo_trains_and_records(tmp_path: Path, tiny_qwen2: Path, one_torch_thread) -> None:
    import tunesmith

    sys.path.insert(0, str(tmp_path))
    try:
        fn = write_reward_module(tmp_path)
        tree = config(
            tmp_path,
            tiny_qwen2,
            rewards=[
                {"kind": "exact", "weight": 1.0},
                {"kind": "function", "function": fn, "weight": 0.5, "name": "distinct"},
                {"kind": "length", "target": 2, "weight": 0.1},
            ],
        )
        cfg = tunesmith.load_config(tree)
        result = tunesmith.train(cfg, progress=False)
    finally:
        sys.path.remove(str(tmp_path))
    run = result.run_dir
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for key in (
        "rewards/exact/mean",
        "rewards/distinct/std",
        "rewards/length/mean",
        "kl",
        "clip_ratio",
        "completion_length",
        "gen_s",
        "train_s",
    ):
        assert key in steps[0], key
    r = steps[0]
    combined = r["rewards/exact/mean"] + 0.5 * r["rewards/distinct/mean"]
    assert r["reward"] == pytest.approx(combined + 0.1 * r["rewards/length/mean"], abs=1e-5)
    assert 1 <= r["completion_length"] <= 7  # up to 6 answer tokens and the stop token
    assert [x["step"] for x in records if "val_reward" in x] == [0, 2]  # start and end
    for x in (x for x in records if "val_reward" in x):  # greedy and sampled, per reward too
        assert {"val_sampled_reward", "val_rewards/exact", "val_sampled_rewards/exact"} <= set(x)
        tasks = {k.split("@")[1] for k in x if k.startswith("val_reward@")}  # the pairs' meta.task
        assert tasks and tasks <= {"add", "parity", "max"}
        assert tasks == {k.split("@")[1] for k in x if k.startswith("val_sampled_reward@")}
    rollouts = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert {x["step"] for x in rollouts} == {1, 2} and len(rollouts) == 8
    # the adapter trained (peft starts B at zero) and was saved where peft loads it
    lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().max()) > 0 for p in lora_b)
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_grpo_rule_errors(tiny_qwen2: Path, tmp_path: Path) -> None:
    import tunesmith
    from tunesmith.errors import ConfigError

    with pytest.raises(Exception, match="needs pattern"):
        tunesmith.load_config(config(tmp_path, tiny_qwen2, rewards=[{"kind": "regex"}]))
    bad = config(tmp_path, tiny_qwen2, rewards=[{"kind": "function", "function": "nope_mod:f"}])
    with pytest.raises(ConfigError, match=r"method.grpo.rewards.0.function: cannot import"):
        tunesmith.train(tunesmith.load_config(bad), progress=False)


def test_grpo_warmup_teaches_the_answers_first(
    tmp_path: Path, tiny_qwen2: Path, one_torch_thread
) -> None:
    from transformers import AutoModelForCausalLM

    import tunesmith

    tree = config(tmp_path, tiny_qwen2, beta=0.1, warmup_steps=6, warmup_lr=1e-3)
    tree["train"]["max_steps"] = 1
    result = tunesmith.train(tunesmith.load_config(tree), progress=False)
    run = result.run_dir
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    start = records[0]
    assert start["step"] == 0 and "val_reward" in start
    assert start["warmup/samples"] == 20 and start["warmup/skipped"] == 0  # 24 - 4 held out
    assert start["warmup/loss_last"] < start["warmup/loss_first"]
    assert (run / "rewards.png").is_file()
    # The adapter belongs to the warmed-up weights: the run saves them merged, and the saved
    # model is the trained policy.
    assert not (run / "adapter").exists()
    saved = AutoModelForCausalLM.from_pretrained(run / "model").eval()
    ids = torch.tensor([[1, 5, 9, 11, 3]])
    with torch.no_grad():
        want = result.model.eval()(input_ids=ids).logits
        assert torch.allclose(saved(input_ids=ids).logits, want, atol=1e-4)
        base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)(input_ids=ids).logits
    assert float((base - want).abs().max()) > 1e-2  # the warm-up changed the base weights

    bad = config(tmp_path, tiny_qwen2, warmup_steps=6)
    bad["method"]["type"] = "qlora"
    with pytest.raises(Exception, match="warm-up fine-tunes the full weights"):
        tunesmith.load_config(bad)

"""Training end to end on the tiny model: loss falls, the right parameters move, results reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.config.load import load_config
from tunesmith.train.recipes import sft


def small_config(tmp_path: Path, method: str, **extra: Any) -> Any:
    tree = {
        "data": {
            "datasets": [
                {"path": "builtin:identity", "samples": 48},
                {"path": "builtin:general", "samples": 48},
            ],
            "identity": {"name": "Nova", "author": "the Tunesmith team"},
            "max_length": 128,
        },
        "method": {"type": method, "lora": {"rank": 8, "alpha": 16}},
        "train": {"lr": 3e-3, "max_steps": 10, "batch_size": 4, "log_every": 1, "warmup_ratio": 0},
        "output": {"dir": str(tmp_path / f"run-{method}")},
    }
    for key, value in extra.items():
        tree.setdefault(key, {}).update(value)
    return load_config(tree=tree)


def logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> sft.TrainResult:
    return sft.run(small_config(tmp_path_factory.mktemp("lora"), "lora"), show_progress=False)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> sft.TrainResult:
    return sft.run(small_config(tmp_path_factory.mktemp("full"), "full"), show_progress=False)


def test_lora_loss_falls_and_only_adapters_move(
    lora_run: sft.TrainResult, tiny_qwen2: Path
) -> None:
    from transformers import AutoModelForCausalLM

    assert lora_run.last_loss < lora_run.first_loss
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2).state_dict()
    trained = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in lora_run.model.state_dict().items()
    }
    lora_keys = [k for k in trained if "lora_" in k]
    assert lora_keys, "no LoRA weights found"
    assert any(
        not torch.equal(v, torch.zeros_like(v)) for k, v in trained.items() if "lora_B" in k
    ), "lora_B stayed at its zero init"
    for name, tensor in base.items():
        assert torch.equal(trained[name], tensor), f"frozen {name} changed"
    # all-linear: every attention and MLP projection carries an adapter
    targets = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in lora_keys}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_lora_adapter_reloads_to_identical_logits(
    lora_run: sft.TrainResult, tiny_qwen2: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 17, 300, 42, 9, 1000, 77]])
    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_qwen2), lora_run.run_dir / "adapter"
    )
    assert torch.equal(logits(reloaded, ids), logits(lora_run.model, ids))


def test_full_finetune_moves_every_parameter_and_reloads(
    full_run: sft.TrainResult, tiny_qwen2: Path
) -> None:
    from transformers import AutoModelForCausalLM

    assert full_run.last_loss < full_run.first_loss
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2).state_dict()
    for name, tensor in full_run.model.state_dict().items():
        assert not torch.equal(tensor, base[name]), f"{name} did not train"
    reloaded = AutoModelForCausalLM.from_pretrained(full_run.run_dir / "model")
    ids = torch.tensor([[5, 17, 300, 42, 9, 1000, 77]])
    assert torch.equal(logits(reloaded, ids), logits(full_run.model, ids))
    assert reloaded.config.use_cache is True


def test_a_bf16_run_returns_a_model_without_autocast(tmp_path: Path, tiny_qwen2: Path) -> None:
    """Accelerate's mixed-precision forward wrapper is removed from the model a run returns."""
    from transformers import AutoModelForCausalLM

    cfg = small_config(tmp_path, "full", train={"precision": "bf16", "max_steps": 2})
    result = sft.run(cfg, show_progress=False)
    reloaded = AutoModelForCausalLM.from_pretrained(result.run_dir / "model")
    ids = torch.tensor([[5, 17, 300, 42, 9, 1000, 77]])
    assert torch.equal(logits(reloaded, ids), logits(result.model, ids))


def test_run_directory_contents(lora_run: sft.TrainResult) -> None:
    import json

    run_dir = lora_run.run_dir
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "data_report.md"):
        assert (run_dir / name).is_file(), name
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 11))
    assert all(r["tokens_per_s"] > 0 and r["trained_tokens"] > 0 for r in records)
    report = (run_dir / "data_report.md").read_text()
    assert "builtin:identity" in report and "| 48 |" in report
    # The saved tokenizer carries the template used in training.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run_dir / "adapter")
    assert tok.chat_template == lora_run.tokenizer.chat_template


def test_validation_samples_and_early_stopping(tmp_path: Path, tiny_qwen2: Path) -> None:
    import json

    cfg = small_config(
        tmp_path,
        "full",
        eval={
            "every": 3,
            "val_split": 8,
            "prompts": ["Who are you?", "What is 2 + 3?"],
            "max_new_tokens": 8,
            "early_stopping_patience": 1,
        },
        train={"lr": 0.5, "max_steps": 30, "max_grad_norm": None},  # diverges: val loss rises
    )
    result = sft.run(cfg, show_progress=False)
    run_dir = result.run_dir
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["stopped_early"] and result.steps < 30
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if "val_loss" in r]
    assert vals and all(r["val_ppl"] > 1 for r in vals if "val_ppl" in r)
    assert all("rss_peak_mib" in r for r in records if "loss" in r)
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    steps = sorted({s["step"] for s in samples})
    assert steps[0] == 0 and 3 in steps  # before training and every 3 steps
    assert {s["prompt"] for s in samples} == {"Who are you?", "What is 2 + 3?"}


def test_continued_pretraining_on_c4_with_packing(
    tmp_path: Path, tiny_qwen2: Path, shared_data: Path
) -> None:
    import json

    cfg = load_config(
        tree={
            "data": {
                "datasets": [
                    {"path": str(shared_data / "llamafactory" / "c4_demo.jsonl"), "max_samples": 60}
                ],
                "max_length": 256,
                "packing": True,
            },
            "method": {"stage": "pt", "type": "full"},
            "train": {"lr": 2e-3, "max_steps": 6, "batch_size": 2, "threads": 1},
            "output": {"dir": str(tmp_path / "pt")},
        }
    )
    result = sft.run(cfg, show_progress=False)
    assert result.last_loss < result.first_loss
    report = (result.run_dir / "data_report.md").read_text()
    assert "Packing: " in report and "efficiency" in report
    # Plain text trains on every token (no chat template, no masking) and rows are full.
    first = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first["trained_tokens"] > 0.9 * 2 * 256


def test_tensorboard_tracker_logs_the_metrics(tmp_path: Path, tiny_qwen2: Path) -> None:
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = small_config(tmp_path, "lora", train={"max_steps": 4, "report_to": ["tensorboard"]})
    result = sft.run(cfg, show_progress=False)
    events = list((result.run_dir / "trackers").rglob("events.out.tfevents.*"))
    assert events, "no tensorboard event file"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    logged = {e.step: e.value for e in acc.Scalars("loss")}
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    expected = {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}
    assert logged.keys() == expected.keys()
    for step, value in expected.items():
        assert logged[step] == pytest.approx(value, rel=1e-6)


def test_a_tracker_that_is_not_installed_is_a_config_error(
    tmp_path: Path, tiny_qwen2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from tunesmith.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    cfg = small_config(tmp_path, "lora", train={"report_to": ["wandb"]})
    with pytest.raises(ConfigError, match=r"train\.report_to: wandb is not installed"):
        sft.run(cfg, show_progress=False)


def test_template_json_records_the_tokenizers_chatml_template(lora_run: sft.TrainResult) -> None:
    import json

    from tunesmith.runs import load_run

    saved = json.loads((lora_run.run_dir / "template.json").read_text(encoding="utf-8"))
    # The tiny tokenizer carries ChatML (model.template unset): ChatML's one end-of-turn string.
    assert saved == {
        "template": "tokenizer",
        "stops": ["<|im_end|>"],
        "system": None,
        "default_system": None,
    }
    assert load_run(lora_run.run_dir).template.stops == ("<|im_end|>",)  # the runs contract


def test_template_json_records_a_llama3_runs_stops_and_system(
    tmp_path: Path, tiny_qwen2: Path
) -> None:
    import json

    cfg = small_config(
        tmp_path,
        "lora",
        model={"template": "llama3"},
        data={"system": "Answer briefly."},
        train={"max_steps": 2},
    )
    result = sft.run(cfg, show_progress=False)
    saved = json.loads((result.run_dir / "template.json").read_text(encoding="utf-8"))
    assert saved == {
        "template": "llama3",
        "stops": ["<|eot_id|>", "<|end_of_text|>"],
        "system": "Answer briefly.",
        "default_system": None,
    }

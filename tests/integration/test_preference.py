"""Preference tuning end to end on the tiny model: DPO, ORPO, SimPO and KTO.

Rewards rise on the shared LLaMA-Factory demo data; DPO makes the model prefer right answers on
held-out arithmetic; the LoRA reference is the base model; a frozen copy equals precomputed
reference log-probs; batch 4 x 1 equals batch 2 x 2; resume is exact; the shipped recipes run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.config.load import load_config
from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError
from tunesmith.train.recipes import preference
from tunesmith.train.recipes.sft import TrainResult

INFO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "llamafactory"
INFO = INFO / "dataset_info.json"


def tree(run_dir: Path, stage: str, datasets: list[dict[str, Any]], **sections: Any) -> dict:
    out: dict[str, Any] = {
        "data": {"datasets": datasets, "max_length": 64, "truncation": "truncate_left"},
        "method": {"stage": stage, "type": "lora", "lora": {"rank": 8, "alpha": 16}},
        "train": {
            "precision": "fp32",  # exact comparisons below; auto may pick bf16
            "lr": 2e-3,
            "max_steps": 6,
            "batch_size": 8,
            "log_every": 1,
            "warmup_ratio": 0,
            "scheduler": "constant",
            "threads": 1,
        },
        "output": {"dir": str(run_dir)},
    }
    for key, value in sections.items():
        out[key] = {**out.get(key, {}), **value}
    return out


def config(run_dir: Path, stage: str, datasets: list[dict[str, Any]], **sections: Any) -> RunConfig:
    return load_config(tree=tree(run_dir, stage, datasets, **sections))


def demo(name: str, n: int = 16) -> list[dict[str, Any]]:
    return [{"from_info": str(INFO), "name": name, "max_samples": n}]


def metrics(run: TrainResult) -> list[dict[str, Any]]:
    lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if "loss" in json.loads(x)]


# ---- the shared demo data ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> dict[str, TrainResult]:
    root = tmp_path_factory.mktemp("demo")
    runs = {}
    for stage in ("dpo", "orpo", "simpo", "kto"):
        data = demo("kto_en_demo" if stage == "kto" else "dpo_en_demo")
        extra = (
            {"eval": {"prompts": ["What is 2 + 2?"], "max_new_tokens": 4}} if stage == "dpo" else {}
        )
        runs[stage] = preference.run(
            config(root / stage, stage, data, **extra), show_progress=False
        )
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["dpo", "orpo", "simpo", "kto"])
def test_demo_data_rewards_separate(demo_runs: dict[str, TrainResult], stage: str) -> None:
    rows = metrics(demo_runs[stage])
    assert [r["step"] for r in rows] == list(range(1, 7))
    first, last = rows[0], rows[-3:]
    acc = sum(r["rewards/accuracies"] for r in last) / 3
    margin = sum(r["rewards/margins"] for r in last) / 3
    print(
        f"{stage}: accuracy {first['rewards/accuracies']:.3f} -> {acc:.3f}, "
        f"margin {first['rewards/margins']:.4f} -> {margin:.4f}"
    )
    assert acc > 0.5 and acc > first["rewards/accuracies"]
    assert margin > first["rewards/margins"] and margin > 0
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
        assert all(key in r for r in rows), key
    if stage in ("dpo", "kto"):  # policy == reference before the first update
        assert first["rewards/chosen"] == first["rewards/rejected"] == 0.0
    if stage == "orpo":
        assert all({"nll_loss", "log_odds_ratio", "log_odds_chosen"} <= r.keys() for r in rows)
    if stage == "kto":
        assert all(r["kl"] >= 0 for r in rows)


@pytest.mark.slow
def test_run_directory(demo_runs: dict[str, TrainResult]) -> None:
    run_dir = demo_runs["dpo"].run_dir
    for name in ("config.yaml", "metrics.jsonl", "data_report.md", "loss.png", "rewards.png"):
        assert (run_dir / name).is_file(), name
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [0, 6]  # before training and at the end
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert "dpo_en_demo | 16 | 16 |" in (run_dir / "data_report.md").read_text()
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["last_loss"] < summary["first_loss"]


@pytest.mark.slow
def test_lora_reference_is_the_base_model(
    demo_runs: dict[str, TrainResult], tiny_qwen2: Path, fp32_accelerator: Any
) -> None:
    from transformers import AutoModelForCausalLM

    from tunesmith.train.losses import sequence_logps
    from tunesmith.train.pref_step import Scorer, _logps

    run = demo_runs["dpo"]
    ids = torch.tensor([[5, 17, 300, 42, 9, 1000, 77, 8]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    acc = fp32_accelerator
    scorer = Scorer(load_config(run.run_dir / "config.yaml"), acc, run.model, "adapter")
    ref = scorer.reference(batch)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()
    with torch.no_grad():
        want = sequence_logps(base(input_ids=ids).logits, ids)[0]
    torch.testing.assert_close(ref, want, rtol=0, atol=1e-6)
    run.model.eval()
    with torch.no_grad():
        policy = _logps(run.model, ids, batch["attention_mask"], ids, acc)[0]
    assert (policy - ref).abs().max() > 1e-3  # the adapters did train; the reference ignores them


# ---- the checkable synthetic task -------------------------------------------------------------
@pytest.mark.slow
def test_dpo_prefers_right_answers_on_heldout_pairs(tmp_path: Path, tiny_qwen2: Path) -> None:
    from tunesmith.data.pairs import prepare_pairs
    from tunesmith.model.loader import load_model, load_tokenizer
    from tunesmith.train.pref_step import preference_accuracy
    from tunesmith.train.recipes.sft import build_renderer

    cfg = config(
        tmp_path / "arith",
        "dpo",
        [{"path": "builtin:prefs_arith"}],
        method={"type": "full"},
        train={"lr": 1e-3, "max_steps": 20, "batch_size": 16, "log_every": 5},
    )
    held_cfg = config(tmp_path / "held", "dpo", [{"path": "builtin:prefs_arith_heldout"}]).data
    tokenizer = load_tokenizer(cfg.model.name)
    held = prepare_pairs(held_cfg, build_renderer(cfg, tokenizer), stage="dpo").train
    assert len(held) == 90
    pad = tokenizer.pad_token_id
    before = preference_accuracy(load_model(cfg.model.name), held, pad_token_id=pad)
    run = preference.run(cfg, show_progress=False)
    after = preference_accuracy(run.model, held, pad_token_id=pad)
    print(f"held-out preference for the right answer: {before:.3f} -> {after:.3f}")
    assert after >= before + 0.1 and after > 0.5


# ---- reference modes, normalisation, resume ---------------------------------------------------
def weights(run: TrainResult) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


ARITH = [{"path": "builtin:prefs_arith", "max_samples": 16}]
KTO_ARITH = [{"path": "builtin:kto_arith", "max_samples": 16}]


@pytest.mark.slow
def test_frozen_copy_equals_precomputed_reference(tmp_path: Path, tiny_qwen2: Path) -> None:
    runs = {}
    for precompute in (False, True):
        cfg = config(
            tmp_path / str(precompute),
            "dpo",
            ARITH,
            method={"type": "full", "pref": {"precompute_ref": precompute}},
            train={"max_steps": 3, "batch_size": 4, "lr": 1e-4},
        )
        assert preference.reference_mode(cfg) == ("precomputed" if precompute else "copy")
        runs[precompute] = preference.run(cfg, show_progress=False)
    # Equal up to float rounding: the reference passes batch (and so pad) the rows differently.
    for a, b in zip(metrics(runs[False]), metrics(runs[True]), strict=True):
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    assert max_diff(weights(runs[False]), weights(runs[True])) <= 1e-6


def accumulation_tree(run_dir: Path, stage: str, batch_size: int, grad_accum: int) -> dict:
    train = {"max_steps": 2, "batch_size": batch_size, "grad_accum": grad_accum, "lr": 1e-4}
    train["precision"] = "fp32"  # compared to 1e-5; auto may pick bf16 on some CPUs
    data = KTO_ARITH if stage == "kto" else ARITH
    return tree(run_dir, stage, data, method={"type": "full"}, train=train)


def assert_same_training(a: TrainResult, b: TrainResult | Path) -> None:
    """Same logged numbers step by step (the gradient norm is logged before clipping: Adam would
    hide a constant gradient scale, the norm does not) and the same final weights."""
    b_dir = b if isinstance(b, Path) else b.run_dir
    rows_b = [json.loads(x) for x in (b_dir / "metrics.jsonl").read_text().splitlines()]
    for x, y in zip(metrics(a), [r for r in rows_b if "loss" in r], strict=True):
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-5)
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins"):
            assert x[key] == pytest.approx(y[key], abs=2e-6), key
    if isinstance(b, Path):
        from safetensors.torch import load_file

        saved = load_file(b / "model" / "model.safetensors")
        mine = weights(a)
        assert max(float((mine[k] - v).abs().max()) for k, v in saved.items()) <= 1e-5
    else:
        assert max_diff(weights(a), weights(b)) <= 1e-5


@pytest.fixture(scope="module")
def dpo_batch4(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> TrainResult:
    cfg = load_config(tree=accumulation_tree(tmp_path_factory.mktemp("b4"), "dpo", 4, 1))
    return preference.run(cfg, show_progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["dpo", "kto"])
def test_batch_4x1_equals_2x2(
    tmp_path: Path, tiny_qwen2: Path, stage: str, dpo_batch4: TrainResult
) -> None:
    def run(b: int) -> TrainResult:
        cfg = load_config(tree=accumulation_tree(tmp_path / f"b{b}", stage, b, 4 // b))
        return preference.run(cfg, show_progress=False)

    assert_same_training(dpo_batch4 if stage == "dpo" else run(4), run(2))


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path: Path, dpo_batch4: TrainResult) -> None:
    import os
    import socket
    import subprocess
    import sys

    import yaml

    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(accumulation_tree(tmp_path / "two", "dpo", 2, 1)))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "tunesmith", "train", str(path), "--no-progress"]
    cmd += ["--nproc", "2", "--master-port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert_same_training(dpo_batch4, tmp_path / "two")


@pytest.mark.slow
def test_resume_from_a_checkpoint_is_exact(tmp_path: Path, tiny_qwen2: Path) -> None:
    run_dir = tmp_path / "run"
    train = {"max_steps": 4, "batch_size": 4, "save_every": 2, "keep_last": 2, "lr": 1e-3}
    cfg = config(run_dir, "kto", KTO_ARITH, train=train)
    straight = weights(preference.run(cfg, show_progress=False))
    ckpt = run_dir / "checkpoints" / "step-00000002"
    resumed_cfg = config(run_dir, "kto", KTO_ARITH, train={**train, "resume": str(ckpt)})
    resumed = preference.run(resumed_cfg, show_progress=False)
    assert resumed.steps == 4
    assert max_diff(straight, weights(resumed)) == 0.0
    steps = [r["step"] for r in metrics(resumed)]
    assert steps == [1, 2, 3, 4]  # the log was cut back to step 2 and continued


VARIANTS = {
    "dpo-ipo-ftx": ("dpo", {"pref": {"loss_type": "ipo", "pref_ftx": 0.5}}),
    "dpo-hinge": ("dpo", {"pref": {"loss_type": "hinge"}}),
    "dpo-lora-precomputed": ("dpo", {"pref": {"precompute_ref": True}}),
    "dpo-pissa": ("dpo", {"lora": {"rank": 8, "alpha": 16, "init": "pissa"}}),
    "simpo-smoothing-ftx": ("simpo", {"pref": {"label_smoothing": 0.1, "pref_ftx": 0.2}}),
    "kto-weights-ftx": ("kto", {"pref": {"desirable_weight": 1.5, "pref_ftx": 0.3}}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_loss_variants_and_reference_modes_train(
    tmp_path: Path, tiny_qwen2: Path, name: str
) -> None:
    stage, method = VARIANTS[name]
    data = KTO_ARITH if stage == "kto" else ARITH
    cfg = config(tmp_path, stage, data, method=method, train={"max_steps": 3, "batch_size": 4})
    rows = metrics(preference.run(cfg, show_progress=False))
    assert len(rows) == 3 and all(r["loss"] == r["loss"] for r in rows)  # no NaN
    if stage != "simpo":
        # The reference is the starting policy (PiSSA included): no reward before any update.
        assert rows[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
        assert rows[0]["rewards/rejected"] == pytest.approx(0.0, abs=1e-5)
    assert rows[-1]["rewards/chosen"] != rows[0]["rewards/chosen"]


# ---- settings and recipes -------------------------------------------------------------------
def test_settings_that_do_not_apply_are_errors(tmp_path: Path) -> None:
    bad = [
        ("orpo", {"pref": {"pref_ftx": 0.5}}, "ORPO already trains"),
        ("simpo", {"pref": {"loss_type": "ipo"}}, "DPO variant"),
        ("kto", {"pref": {"label_smoothing": 0.1}}, "label_smoothing"),
    ]
    for stage, method, message in bad:  # refused by the schema: `validate` catches them too
        with pytest.raises(ConfigError, match=message):
            config(tmp_path, stage, ARITH, method=method)
    assert preference.reference_mode(config(tmp_path, "simpo", ARITH)) == "none"
    assert preference.reference_mode(config(tmp_path, "dpo", ARITH)) == "adapter"
    pissa = config(tmp_path, "kto", ARITH, method={"lora": {"init": "pissa"}})
    assert preference.reference_mode(pissa) == "precomputed"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dpo-lora", "orpo-lora", "simpo-lora", "kto-lora"])
def test_shipped_recipe_runs(tmp_path: Path, tiny_qwen2: Path, name: str) -> None:
    from tunesmith.cli import recipe_dir

    overrides = [
        "train.max_steps=2",
        "train.batch_size=4",
        "train.threads=1",
        "data.datasets.0.max_samples=24",
        "data.max_length=64",
        f"output.dir={tmp_path / name}",
    ]
    cfg = load_config(recipe_dir() / f"{name}.yaml", overrides)
    run = preference.run(cfg, show_progress=False)
    rows = metrics(run)
    assert run.steps == 2 and len(rows) == 2
    assert all("rewards/margins" in r for r in rows)
    final = json.loads((run.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert "val_loss" in final and "val_rewards/accuracies" in final  # val_size: 0.05

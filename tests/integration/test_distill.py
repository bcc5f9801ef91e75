"""Distillation end to end on tiny models (stage distill).

A teacher identical to the student gives zero divergence on packed rows (so the teacher sees the
same per-sample attention) and the very CE of an SFT run; a narrow student learns a wider
teacher's distributions; a teacher with another tokenizer is refused in one line; a LoRA run
directory serves as a merged teacher; a 4-bit teacher loads frozen.
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
from tunesmith.model.loader import load_tokenizer
from tunesmith.train.recipes import distill, sft
from tunesmith.train.session import TrainResult


def config(run_dir: Path, student: Path, stage: str = "distill", **distill_opts: Any) -> RunConfig:
    tree: dict[str, Any] = {
        "model": {"name": str(student)},
        "data": {
            "datasets": [{"path": "builtin:general", "samples": 48}],
            "max_length": 128,
            "packing": True,
            "val_size": 8,
        },
        "method": {"stage": stage, "type": "full"},
        "train": {
            "precision": "fp32",
            "lr": 3e-3,
            "max_steps": 5,
            "batch_size": 4,
            "log_every": 1,
            "warmup_ratio": 0,
            "scheduler": "constant",
            "threads": 1,
        },
        "output": {"dir": str(run_dir)},
    }
    if stage == "distill":
        tree["method"]["distill"] = distill_opts
    return load_config(tree=tree)


def steps(run: TrainResult) -> list[dict[str, Any]]:
    lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


@pytest.fixture(scope="module")
def narrow_student(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Path:
    """A tiny Qwen2 half as wide as the built-in one, with the same tokenizer."""
    from tunesmith.model.tiny import TinySpec, build_tiny

    spec = TinySpec(hidden_size=128, intermediate_size=256, num_heads=4, num_kv_heads=2, seed=1)
    return build_tiny(tmp_path_factory.mktemp("student") / "tiny-128", spec)


def test_teacher_equal_to_student_gives_zero_divergence_and_the_sft_loss(
    tmp_path: Path, tiny_qwen2: Path
) -> None:
    cfg = config(tmp_path / "d", tiny_qwen2, teacher=str(tiny_qwen2), ce_weight=1.0)
    cfg.train.max_steps = 1
    run = distill.run(cfg, show_progress=False)
    first = steps(run)[0]
    # Same weights, same packed rows, same attention isolation: the distributions agree exactly.
    assert first["distill_div"] == pytest.approx(0.0, abs=1e-6)
    sft_cfg = config(tmp_path / "s", tiny_qwen2, stage="sft")
    sft_cfg.train.max_steps = 1
    baseline = sft.run(sft_cfg, show_progress=False)
    assert first["distill_ce"] == pytest.approx(steps(baseline)[0]["loss"], rel=1e-5)
    assert first["loss"] == pytest.approx(first["distill_ce"], rel=1e-5)  # 0 + 1.0 * CE


@pytest.mark.parametrize("kind", ["forward_kl", "jsd"])
def test_narrow_student_learns_the_wide_teacher(
    tmp_path: Path, tiny_qwen2: Path, narrow_student: Path, kind: str
) -> None:
    from transformers import AutoModelForCausalLM

    cfg = config(tmp_path / kind, narrow_student, teacher=str(tiny_qwen2), kind=kind)
    run = distill.run(cfg, show_progress=False)
    rows = steps(run)
    assert rows[-1]["distill_div"] < rows[0]["distill_div"]
    assert all(r["loss"] == pytest.approx(r["distill_div"], rel=1e-5) for r in rows)  # CE weight 0
    vals = [
        r["val_loss"]
        for r in map(json.loads, (run.run_dir / "metrics.jsonl").open())
        if "val_loss" in r
    ]
    assert vals, "validation (the student's CE) was logged"
    start = AutoModelForCausalLM.from_pretrained(narrow_student)
    saved = AutoModelForCausalLM.from_pretrained(run.run_dir / "model")
    assert saved.config.hidden_size == 128
    assert not torch.equal(start.lm_head.weight, saved.lm_head.weight)


def test_teacher_with_another_tokenizer_is_refused(tiny_qwen2: Path) -> None:
    student = load_tokenizer(str(tiny_qwen2))
    teacher = load_tokenizer(str(tiny_qwen2))
    teacher.add_tokens(["<not-in-the-student>"])
    with pytest.raises(ConfigError) as info:
        distill.check_same_tokenizer(teacher, student)
    text = str(info.value)
    assert len(text.splitlines()) == 1
    assert text.startswith("method.distill.teacher: its tokenizer differs")
    distill.check_same_tokenizer(load_tokenizer(str(tiny_qwen2)), student)  # the same: accepted


def test_lora_run_directory_is_a_merged_frozen_teacher(tmp_path: Path, tiny_qwen2: Path) -> None:
    from tunesmith.infer.engine import Engine

    cfg = config(tmp_path / "lora", tiny_qwen2, stage="sft")
    cfg.method.type = "lora"
    cfg.train.max_steps = 2
    sft.run(cfg, show_progress=False)
    student_cfg = config(tmp_path / "d", tiny_qwen2, teacher=str(tmp_path / "lora"))
    teacher = distill.load_teacher(student_cfg, load_tokenizer(str(tiny_qwen2)))
    assert not hasattr(teacher, "peft_config") and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    ids = torch.tensor([[5, 17, 42, 99]])
    engine = Engine.load(str(tmp_path / "lora"), dtype="float32", device="cpu")
    with torch.no_grad():
        want = engine.model(input_ids=ids).logits
        got = teacher(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_teacher_in_4bit(tmp_path: Path, tiny_qwen2: Path) -> None:
    bnb = pytest.importorskip("bitsandbytes", reason="teacher_4bit needs bitsandbytes")
    cfg = config(tmp_path / "q", tiny_qwen2, teacher=str(tiny_qwen2), teacher_4bit=True)
    teacher = distill.load_teacher(cfg, load_tokenizer(str(tiny_qwen2)))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in teacher.modules())
    assert not teacher.training
    with torch.no_grad():
        logits = teacher(input_ids=torch.tensor([[5, 17, 42]])).logits
    assert torch.isfinite(logits).all()


def test_builtin_narrow_student_shares_the_tokenizer(tiny_qwen2: Path) -> None:
    from transformers import AutoConfig

    from tunesmith.model.tiny import resolve_builtin

    narrow = resolve_builtin("builtin:tiny-qwen2-narrow")
    assert AutoConfig.from_pretrained(narrow).hidden_size == 128
    assert AutoConfig.from_pretrained(tiny_qwen2).hidden_size == 256
    distill.check_same_tokenizer(load_tokenizer(str(narrow)), load_tokenizer(str(tiny_qwen2)))


@pytest.mark.slow
def test_a_teacher_config_is_trained_first_then_reused(tmp_path: Path, tiny_qwen2: Path) -> None:
    import yaml

    teacher_dir = tmp_path / "teacher-run"
    teacher_yaml = tmp_path / "teacher.yaml"
    tree = config(teacher_dir, tiny_qwen2, stage="sft").model_dump(mode="json", exclude_unset=True)
    tree["train"]["max_steps"] = 2
    teacher_yaml.write_text(yaml.safe_dump(tree), "utf-8")
    said: list[str] = []
    cfg = config(tmp_path / "d1", tiny_qwen2, teacher=str(teacher_yaml))
    cfg.train.max_steps = 1
    run = distill.run(cfg, console=_Console(said), show_progress=False)
    assert f"teacher: training {teacher_yaml} first, into {teacher_dir}" in said
    assert json.loads((teacher_dir / "train_summary.json").read_text())["steps"] == 2
    saved = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert saved["method"]["distill"]["teacher"] == str(teacher_dir)  # what was really loaded
    stamp = (teacher_dir / "train_summary.json").stat().st_mtime_ns
    said.clear()
    cfg2 = config(tmp_path / "d2", tiny_qwen2, teacher=str(teacher_yaml))
    cfg2.train.max_steps = 1
    distill.run(cfg2, console=_Console(said), show_progress=False)
    assert f"teacher: {teacher_yaml} already trained in {teacher_dir}" in said
    assert (teacher_dir / "train_summary.json").stat().st_mtime_ns == stamp  # not retrained
    # A distill config as the teacher is refused in one line.
    student_yaml = tmp_path / "student.yaml"
    student_yaml.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), "utf-8")
    cfg = config(tmp_path / "d3", tiny_qwen2, teacher=str(tiny_qwen2))
    bad = config(tmp_path / "d3", tiny_qwen2, teacher=str(student_yaml))
    with pytest.raises(ConfigError, match=r"^method\.distill\.teacher: .* is itself a distill"):
        distill.prepare_teacher(bad, print, False)
    assert distill.prepare_teacher(cfg, print, False) == str(tiny_qwen2)  # a model: as is


class _Console:
    """Collects what a run says."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def print(self, *parts: object, **_: object) -> None:
        self.lines.append(" ".join(str(p) for p in parts))

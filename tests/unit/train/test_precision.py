"""``train.precision``: explicit values map straight through; ``auto`` measures on CPU."""

from __future__ import annotations

import pytest

from tunesmith.train import precision

SHAPE = precision.StepShape(256, 768, 8, 4, 32, 256, 8)  # the identity demo's layer and rows


@pytest.mark.parametrize(
    ("value", "expected"), [("fp32", "no"), ("bf16", "bf16"), ("fp16", "fp16")]
)
def test_explicit_precision_is_not_measured(value: str, expected: str, monkeypatch) -> None:
    def fail(*_a: object, **_k: object) -> float:
        raise AssertionError("an explicit precision must not run the measurement")

    monkeypatch.setattr(precision, "cpu_bf16_speedup", fail)
    assert precision.choose_precision(value, (SHAPE)) == expected


@pytest.mark.parametrize(("speedup", "expected"), [(2.0, "bf16"), (1.0, "no"), (0.5, "no")])
def test_auto_on_cpu_follows_the_measured_step(speedup: float, expected: str, monkeypatch) -> None:
    seen: list[precision.StepShape] = []

    def measured(shape: precision.StepShape) -> float:
        seen.append(shape)
        return speedup

    monkeypatch.setattr(precision, "cpu_bf16_speedup", measured)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert precision.choose_precision("auto", (SHAPE)) == expected
    assert seen == [SHAPE]  # measured at the model's own layer and rows


def test_the_reason_names_the_measurement_and_measure_false_leaves_it_open(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda *_a: 1.62)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    decided = precision.decide_precision("auto", SHAPE)
    assert decided == ("bf16", decided.why, 1.62)
    assert "(layer 256x768, 8/4 heads of 32, rows 8x256) measures 1.62x fp32" in decided.why
    unmeasured = precision.decide_precision("auto", SHAPE, measure=False)
    assert unmeasured.mixed_precision is None and unmeasured.bf16_speedup is None


def test_measurement_is_a_ratio_and_leaves_the_rng_alone() -> None:
    import torch

    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    shape = precision.StepShape(64, 128, 4, 2, 16, max_length=64, rows=2)
    ratio = precision.cpu_bf16_speedup.__wrapped__(shape, reps=1)
    assert ratio > 0
    assert torch.equal(torch.random.get_rng_state(), before)


def test_model_shape_reads_the_text_config(tiny_qwen2: object) -> None:
    assert precision.model_shape(str(tiny_qwen2), max_length=256, rows=8) == SHAPE


def test_model_shape_is_none_for_a_folder_without_a_model_config(tmp_path) -> None:
    (tmp_path / "run").mkdir()  # e.g. a VLM stage's run directory, read by its own loader
    assert precision.model_shape(str(tmp_path / "run")) is None


def test_several_cpu_processes_take_fp32_without_measuring(monkeypatch) -> None:
    def fail(*_a: object, **_k: object) -> float:
        raise AssertionError("each process would measure on its own and might choose otherwise")

    monkeypatch.setattr(precision, "cpu_bf16_speedup", fail)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert precision.choose_precision("auto", (SHAPE)) == "no"


def test_runs_in_one_process_may_change_precision(tmp_path, fp32_accelerator) -> None:
    """A second run in the same Python process (notebook, test session) with another precision."""
    from tunesmith.config.load import load_config
    from tunesmith.train.recipes.sft import make_accelerator

    assert fp32_accelerator.mixed_precision == "no"  # an earlier fp32 run in this process
    for value, expected in (("bf16", "bf16"), ("fp32", "no")):
        tree = {"data": {"datasets": [{"path": "builtin:general"}]}, "train": {"precision": value}}
        accelerator = make_accelerator(load_config(tree=tree), tmp_path)
        assert accelerator.mixed_precision == expected


def test_cpus_without_bf16_hardware_take_fp32_without_measuring(monkeypatch) -> None:
    def fail(*_a: object, **_k: object) -> float:
        raise AssertionError("emulated bf16 takes minutes to time and never wins")

    monkeypatch.setattr(precision, "cpu_bf16_speedup", fail)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert precision.choose_precision("auto", (SHAPE)) == "no"


def test_bf16_units_probe_matches_the_cpu_flags() -> None:
    from pathlib import Path

    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if not flags:
        pytest.skip("no /proc/cpuinfo flags here")
    assert precision.cpu_has_bf16_units() == bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})

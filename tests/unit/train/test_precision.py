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
@pytest.mark.parametrize("attention", [0.5, 1.5])
def test_auto_on_cpu_follows_the_measured_step(
    speedup: float, expected: str, attention: float, monkeypatch
) -> None:
    seen: list[tuple[precision.StepShape, bool]] = []

    def measured(shape: precision.StepShape, bf16_attention: bool) -> float:
        seen.append((shape, bf16_attention))
        return speedup

    monkeypatch.setattr(precision, "cpu_bf16_speedup", measured)
    monkeypatch.setattr(precision, "cpu_bf16_attention_speedup", lambda *_a: attention)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert precision.choose_precision("auto", (SHAPE)) == expected
    # measured at the model's own layer and rows, with the attention a bf16 run would use
    assert seen == [(SHAPE, attention >= precision.CPU_BF16_ATTENTION_MIN_SPEEDUP)]


def test_the_reason_names_the_measurement_and_measure_false_leaves_it_open(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda *_a: 1.62)
    monkeypatch.setattr(precision, "cpu_bf16_attention_speedup", lambda *_a: 0.9)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    decided = precision.decide_precision("auto", SHAPE)
    assert decided == ("bf16", decided.why, 1.62)
    assert (
        "(layer 256x768, 8/4 heads of 32, rows 8x256, attention in fp32) measures 1.62x fp32"
        in decided.why
    )
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


def test_attention_measurement_is_a_ratio_and_leaves_the_rng_alone() -> None:
    import torch

    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    shape = precision.StepShape(64, 128, 4, 2, 16, max_length=64, rows=2)
    assert precision.cpu_bf16_attention_speedup.__wrapped__(shape, reps=1) > 0
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize(
    ("max_length", "lengths"),
    [
        (1024, (1024, 512, 256)),
        (256, (256, 128, 64)),
        (100, (128, 64, 64)),
        (4096, (1024, 512, 256)),
    ],
)
def test_attention_is_timed_at_the_rows_lengths_in_multiples_of_64(
    max_length: int, lengths: tuple[int, ...]
) -> None:
    shape = SHAPE._replace(max_length=max_length)
    assert precision._attention_lengths(shape) == lengths


@pytest.mark.parametrize(
    ("speedup", "bf16"), [(1.5, True), (1.2, True), (1.1, False), (0.5, False)]
)
def test_cpu_attention_keeps_bf16_only_where_it_measures_faster(
    speedup: float, bf16: bool, monkeypatch
) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_attention_speedup", lambda *_a: speedup)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    choice = precision.decide_cpu_attention("bf16", SHAPE)
    assert choice == (bf16, choice.why, speedup)
    assert choice.why.startswith("bf16 attention" if bf16 else "fp32 attention")
    assert (
        f"measures {speedup:.2f}x fp32 at 8/4 heads of 32, samples up to 256 tokens" in choice.why
    )


@pytest.mark.parametrize(
    ("mixed_precision", "world", "units"),
    [("no", "1", True), ("fp16", "1", True), ("bf16", "2", True), ("bf16", "1", False)],
    ids=["fp32", "fp16", "several-processes", "no-bf16-hardware"],
)
def test_cpu_attention_takes_fp32_unmeasured(
    mixed_precision: str, world: str, units: bool, monkeypatch
) -> None:
    def fail(*_a: object) -> float:
        raise AssertionError("this case must not time attention")

    monkeypatch.setattr(precision, "cpu_bf16_attention_speedup", fail)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: units)
    monkeypatch.setenv("WORLD_SIZE", world)
    choice = precision.decide_cpu_attention(mixed_precision, SHAPE)
    assert not choice.bf16 and choice.speedup is None and "fp32 attention" in choice.why


@pytest.mark.parametrize("speedup", [2.0, 0.5])
def test_a_bf16_run_sets_its_measured_attention(speedup: float, tmp_path, monkeypatch) -> None:
    """``make_accelerator`` turns bf16 attention on only where it measured faster, and a later
    fp32 run in the same process turns it off again."""
    from tunesmith.config.load import load_config
    from tunesmith.model import attention
    from tunesmith.train.recipes.sft import make_accelerator

    monkeypatch.setattr(precision, "cpu_bf16_attention_speedup", lambda *_a: speedup)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    said: list[str] = []
    try:
        for value, kept in (("bf16", speedup >= 1.2), ("fp32", False)):
            tree = {"data": {"datasets": [{"path": "builtin:general"}]}}
            tree["train"] = {"precision": value}
            make_accelerator(load_config(tree=tree), tmp_path, said.append)
            assert attention._cpu_keeps_low_precision is kept
    finally:
        attention.keep_low_precision_on_cpu(False)
    chosen = "bf16" if speedup >= 1.2 else "fp32"
    assert len(said) == 1  # the bf16 run says what it measured; the fp32 one measures nothing
    assert said[0].startswith(
        f"attention on this CPU: {chosen} attention: bf16 measures {speedup:.2f}x"
    )


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

"""``tunesmith estimate``: exact parameter counts from the meta-device model (no weights read),
the memory arithmetic per part and per sharding strategy, and the estimate against a measured
peak of real training steps."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError
from tunesmith.model.estimate import GIB, estimate, measure, report

# tiny Qwen2: hidden 256, kv 128 (4 heads of 32), MLP 768, 4 layers, vocab 4096, tied head
PER_LAYER_IN_OUT = (256 + 256) + (256 + 128) * 2 + (256 + 256) + (256 + 768) * 2 + (768 + 256)


def cfg(model: str = "builtin:tiny-qwen2", **tree: Any) -> Any:
    base: dict[str, Any] = {
        "model": {"name": model},
        "data": {"datasets": [{"path": "builtin:identity"}]},
    }
    for section, values in tree.items():
        base[section] = values
    return load_config(tree=base)


def real_counts(c: Any) -> tuple[int, int]:
    from tunesmith.model.adapters import apply_method, param_report
    from tunesmith.model.loader import load_model

    r = param_report(apply_method(load_model(c.model.name, dtype="float32"), c.method))
    return r.trainable, r.total


@pytest.mark.parametrize(
    "method",
    [
        {"type": "lora"},
        {"type": "lora", "lora": {"rank": 4, "targets": ["q_proj", "v_proj"]}},
        {"type": "lora", "lora": {"use_dora": True}},
        {"type": "full"},
        {"type": "freeze", "freeze": {"trainable_layers": 2}},
    ],
)
@pytest.mark.parametrize("model", ["builtin:tiny-qwen2", "builtin:tiny-llama"])
def test_meta_counts_equal_the_loaded_model(model: str, method: dict[str, Any]) -> None:
    c = cfg(model, method=method)
    meta = estimate(c).counts
    assert (meta.trainable, meta.total) == real_counts(c)


def test_lora_count_is_rank_times_the_wrapped_shapes() -> None:
    counts = estimate(cfg(method={"type": "lora", "lora": {"rank": 16}})).counts
    assert counts.trainable == 16 * PER_LAYER_IN_OUT * 4 == 311_296
    # embeddings (tied head) + 4 layers + final norm
    assert counts.total - counts.trainable == 4_198_656


def test_counts_need_no_weights(tiny_qwen2: Path, tmp_path: Path) -> None:
    folder = tmp_path / "config-only"
    folder.mkdir()
    shutil.copy(tiny_qwen2 / "config.json", folder / "config.json")  # no safetensors at all
    counts = estimate(cfg(str(folder), method={"type": "full"})).counts
    assert counts.total == counts.trainable == 4_198_656


def test_memory_parts_follow_precision_method_and_optimiser() -> None:
    full = estimate(cfg(method={"type": "full"}), target="cpu")  # fp32 on CPU
    n = full.counts.total
    assert full.parts["weights"] == 4 * n
    assert full.parts["gradients"] == 4 * n
    assert full.parts["optimiser"] == 8 * n
    assert "cuda_context" not in full.parts
    gpu = estimate(cfg(method={"type": "full"}), target="gpu")  # model.dtype auto: bf16
    assert gpu.parts["weights"] == 2 * n and gpu.parts["optimiser"] == 4 * n
    b8 = estimate(cfg(method={"type": "full"}, train={"optim": "adamw_8bit"}), target="cpu")
    assert b8.parts["optimiser"] == pytest.approx((2 + 8 / 256) * n)
    lora = estimate(cfg(), target="gpu")
    frozen = lora.counts.total - lora.counts.trainable
    assert lora.parts["weights"] == 2 * frozen + 4 * lora.counts.trainable  # fp32 adapters
    q4 = estimate(cfg(method={"type": "qlora"}), target="gpu")
    linears = q4.counts.quantisable
    assert linears == 4 * (256 * 256 * 2 + 256 * 128 * 2 + 256 * 768 * 3)
    nf4 = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit values, double-quantised absmax per 64
    # prepare_model_for_kbit_training keeps everything else (embeddings, norms) in fp32
    rest = q4.counts.total - linears
    assert q4.parts["weights"] == pytest.approx(linears * nf4 + rest * 4)
    q8 = estimate(cfg(method={"type": "qlora", "quant": {"bits": 8}}), target="gpu")
    assert q4.parts["weights"] < q8.parts["weights"] < q4.parts["weights"] + linears


def test_lowrank_and_block_optimiser_state() -> None:
    full = estimate(cfg(method={"type": "full"}), target="cpu")
    rank = 8
    galore = estimate(
        cfg(method={"type": "full"}, train={"optim": "galore_adamw", "optim_args": {"rank": rank}}),
        target="cpu",
    )
    shapes = galore.counts.lowrank_shapes
    assert len(shapes) == 7 * 4 and (768, 256) in shapes and (128, 256) in shapes
    projected = sum(m * n for m, n in shapes)
    low = sum(8 * rank * max(m, n) + 4 * rank * min(m, n) for m, n in shapes)
    assert galore.parts["optimiser"] == low + 8 * (full.counts.trainable - projected)
    assert galore.parts["optimiser"] < 0.5 * full.parts["optimiser"]
    badam = estimate(cfg(method={"type": "full"}, train={"optim": "badam"}), target="cpu")
    layer = badam.counts.largest_layer
    assert badam.parts["optimiser"] == 8 * layer and badam.parts["gradients"] == 4 * layer


def test_checkpointing_and_sharding() -> None:
    plain = estimate(cfg(method={"type": "full"}), target="gpu")
    ckpt = estimate(
        cfg(method={"type": "full"}, train={"gradient_checkpointing": True}), target="gpu"
    )
    assert ckpt.parts["activations"] == plain.activations_ckpt < plain.parts["activations"]
    # 8 x 2048 tokens (no passes on GPUs): bf16 layer inputs for 4 layers,
    # one recomputed layer's activations and their gradients, the tokens after the last layer
    per_layer = 2 * (11 * 256 + 2 * 128 + 4 * 768) + 2 * 4 * 256
    assert ckpt.activations_ckpt == 8 * 2048 * (2 * 256 * 4 + 2 * per_layer + 2 * 7 * 256)
    z2 = estimate(cfg(method={"type": "full"}), devices=8, sharding="zero2", target="gpu")
    assert z2.parts["optimiser"] == plain.parts["optimiser"] / 8
    assert z2.parts["weights"] == plain.parts["weights"]
    z3 = estimate(cfg(method={"type": "full"}), devices=8, sharding="zero3", target="gpu")
    assert z3.parts["weights"] == plain.parts["weights"] / 8 + 2 * 2 * plain.counts.largest_layer
    off = estimate(cfg(method={"type": "full"}), devices=8, sharding="fsdp-offload")
    assert off.parts["optimiser"] == 0
    with pytest.raises(ConfigError, match="--sharding"):
        estimate(cfg(), sharding="zero9")
    with pytest.raises(ConfigError, match="--devices 0"):
        estimate(cfg(), devices=0)


def test_report_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from tunesmith.cli import main

    c = cfg()
    text = report(c, estimate(c))
    assert "trainable 311,296 / total 4,509,952 (6.90%)" in text
    assert "fits: 8GB:yes" in text
    assert main(["estimate", "identity-lora", "--devices", "2", "--sharding", "zero2"]) == 0
    out = capsys.readouterr().out
    assert "2 device(s), sharding zero2" in out and "activations:" in out


def test_big_configs_do_not_fit_small_gpus(tmp_path: Path, tiny_qwen2: Path) -> None:
    import json

    # A 7B-shaped Llama config (no weights): full fine-tuning does not fit 80 GB on one GPU;
    # QLoRA with checkpointing (512-token rows) fits 8 GB, as users report.
    folder = tmp_path / "llama7b"
    folder.mkdir()
    config = json.loads((tiny_qwen2 / "config.json").read_text())
    config.update(
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        tie_word_embeddings=False,
    )
    config.pop("layer_types", None)
    (folder / "config.json").write_text(json.dumps(config))
    full = estimate(cfg(str(folder), method={"type": "full"}), target="gpu")
    assert 6.7e9 < full.counts.total < 6.8e9
    assert not full.fits(80)
    train = {"gradient_checkpointing": True, "batch_size": 1}
    data = {"datasets": [{"path": "builtin:identity"}], "max_length": 512}
    qlora = estimate(
        cfg(str(folder), method={"type": "qlora"}, train=train, data=data), target="gpu"
    )
    assert qlora.fits(8) and qlora.total < 8 * GIB
    assert qlora.activations_ckpt < qlora.activations_plain / 4  # 32 layers: a big saving


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full"])
def test_estimate_is_close_to_a_measured_peak(method: str) -> None:
    import torch

    torch.set_num_threads(1)
    c = cfg(
        method={"type": method},
        data={"datasets": [{"path": "builtin:identity"}], "max_length": 256},
        train={"batch_size": 4},
    )
    est = estimate(c, target="cpu")
    got = measure(c, steps=1)
    assert got.weights == est.parts["weights"] or method == "lora"
    assert abs(est.total - got.peak) / got.peak < 0.35, (est.parts, got)

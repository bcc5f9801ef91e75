"""The fused LoRA linear computes what peft's does (outputs and gradients), or defers to it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.config.schema import MethodConfig
from tunesmith.model.adapters import apply_method
from tunesmith.model.fused_lora import FusedLoraLinear, _LoraLinear, fuse_lora, lora_linear


def lora_model(tiny: Path, **lora: Any) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    base.config.use_cache = False
    return apply_method(base, MethodConfig(type="lora", lora={"init": "gaussian", **lora}))


def unfuse(model: Any) -> Any:
    from peft.tuners.lora.layer import Linear

    plain = copy.deepcopy(model)
    for m in plain.modules():
        if type(m) is FusedLoraLinear:
            m.__class__ = Linear
    return plain


def outputs_and_grads(model: Any, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids).logits
    (logits.float().logsumexp(-1).mean()).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def test_every_plain_lora_linear_is_fused(tiny_qwen2: Path) -> None:
    model = lora_model(tiny_qwen2)
    fused = [m for m in model.modules() if type(m) is FusedLoraLinear]
    assert len(fused) == 4 * 7  # q k v o gate up down in each of the 4 layers
    assert fuse_lora(model) == 0  # nothing left to switch


def test_fused_equals_peft_outputs_and_gradients(tiny_qwen2: Path) -> None:
    model = lora_model(tiny_qwen2, rank=8, alpha=16)
    ids = torch.randint(5, 4000, (3, 40), generator=torch.Generator().manual_seed(1))
    out_f, grads_f = outputs_and_grads(model, ids)
    out_p, grads_p = outputs_and_grads(unfuse(model), ids)
    assert torch.allclose(out_f, out_p, atol=1e-6)
    assert grads_f.keys() == grads_p.keys() and len(grads_f) == 56
    assert max(float((grads_f[k] - grads_p[k]).abs().max()) for k in grads_f) <= 1e-6


def test_function_gradients_match_autograd_including_bias_and_base_weight() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 12, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(7, 12, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, generator=g, requires_grad=True)
    a = torch.randn(3, 12, dtype=torch.float64, generator=g, requires_grad=True)
    bb = torch.randn(7, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: _LoraLinear.apply(*t, 0.7), (x, w, b, a, bb))
    ref = x @ w.T + b + 0.7 * (x @ a.T) @ bb.T
    assert torch.allclose(lora_linear(x, w, b, a, bb, 0.7), ref)


def test_fused_under_autocast_matches_peft_under_autocast(tiny_qwen2: Path, monkeypatch) -> None:
    """bf16 autocast: the same bf16 matmuls, so bf16-close outputs and gradients in fp32."""
    model = lora_model(tiny_qwen2, rank=8, alpha=16)
    ids = torch.randint(5, 4000, (3, 40), generator=torch.Generator().manual_seed(1))
    calls = []
    real = _LoraLinear.apply
    monkeypatch.setattr(_LoraLinear, "apply", lambda *a: calls.append(a[0].dtype) or real(*a))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_f, grads_f = outputs_and_grads(model, ids)
        assert calls == [torch.bfloat16] * 28  # every LoRA linear fused, its input in bf16
        out_p, grads_p = outputs_and_grads(unfuse(model), ids)
    assert out_f.dtype == out_p.dtype == torch.bfloat16
    assert float((out_f.float() - out_p.float()).abs().max()) <= 0.05 * float(out_p.abs().max())
    assert grads_f.keys() == grads_p.keys() and len(grads_f) == 56
    assert all(grads_f[k].dtype == torch.float32 for k in grads_f)  # the adapters' own dtype
    assert any(float(g.abs().max()) > 0 for g in grads_f.values())
    for k in grads_f:  # (lora_A's gradients are zero in both: B starts at zero)
        err = float((grads_f[k] - grads_p[k]).norm())
        assert err <= 0.03 * float(grads_p[k].norm()) + 1e-9, k


@pytest.mark.parametrize("case", ["dropout", "dora", "disabled"], ids=lambda c: f"defers-{c}")
def test_other_cases_take_peft_forward(tiny_qwen2: Path, case: str, monkeypatch: Any) -> None:
    lora = {"dropout": 0.1} if case == "dropout" else {"use_dora": True} if case == "dora" else {}
    model = lora_model(tiny_qwen2, **lora)
    calls = []
    real = _LoraLinear.apply
    monkeypatch.setattr(_LoraLinear, "apply", lambda *a: calls.append(1) or real(*a))
    ids = torch.randint(5, 4000, (1, 8))
    if case == "disabled":
        with model.disable_adapter():
            model(input_ids=ids)
    else:
        model(input_ids=ids)
    assert calls == []
    if case == "disabled":  # the same model outside that context: fused again
        model(input_ids=ids)
        assert len(calls) == 28


def test_saved_adapter_is_plain_peft(tiny_qwen2: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = lora_model(tiny_qwen2)
    model.save_pretrained(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert not any(type(m) is FusedLoraLinear for m in loaded.modules())
    ids = torch.randint(5, 4000, (2, 16))
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, loaded(input_ids=ids).logits, atol=1e-6)

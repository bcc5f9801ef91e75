"""Every way of computing the LM loss equals the plain full-logits loss (values and gradients)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tunesmith.data.collate import collate_packed, collate_padded
from tunesmith.train.lm_loss import lm_loss_sum, resolve_ce_impl
from tunesmith.train.losses import ce_sum, linear_ce_sum

CPU = torch.device("cpu")


def samples(seed: int, n: int = 5) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 12 + 7 * i
        ids = torch.randint(5, 4000, (length,), generator=g).tolist()
        prompt = length // 2
        labels = [-100] * prompt + ids[prompt:]
        weights = [1.0] * prompt + [0.5 + (j % 3) for j in range(length - prompt)]
        out.append({"input_ids": ids, "labels": labels, "weights": weights})
    return out


@pytest.fixture(scope="module")
def model(tiny_qwen2: Path) -> Any:
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    m.config.use_cache = False
    return m


def grads_of(model: Any, batch: dict[str, Any], impl: str) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss, n = lm_loss_sum(model, batch, attn_implementation="sdpa", impl=impl, chunk_size=7)
    (loss / n).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_logits_and_chunked_equal_the_full_logits_loss(
    model: Any, packed: bool, weighted: bool
) -> None:
    rows = samples(0)
    if not weighted:
        rows = [{k: v for k, v in s.items() if k != "weights"} for s in rows]
    batch = collate_packed([rows[:3], rows[3:]], 0) if packed else collate_padded(rows, 0)
    ref_loss, ref_grads = grads_of(model, batch, "full")
    for impl in ("logits", "chunked"):
        loss, grads = grads_of(model, batch, impl)
        assert loss == pytest.approx(ref_loss, rel=1e-6, abs=1e-5), impl
        assert grads.keys() == ref_grads.keys(), impl
        worst = max(float((grads[k] - ref_grads[k]).abs().max()) for k in grads)
        assert worst <= 1e-5, (impl, worst)


def test_a_batch_without_trained_tokens_gives_zero(model: Any) -> None:
    rows = [{"input_ids": [5, 6, 7, 8], "labels": [-100] * 4}]
    loss, n = lm_loss_sum(
        model, collate_padded(rows, 0), attn_implementation="sdpa", impl="chunked"
    )
    assert float(loss.detach()) == 0.0 and int(n) == 0


def head_case(seed: int) -> tuple[torch.Tensor, ...]:
    """float64 hidden states [37, 16], head weight and bias (vocab 50), targets, token weights."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(37, 16, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(50, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randint(0, 50, (37,), generator=g)
    tw = torch.rand(37, dtype=torch.float64, generator=g)
    return h, w, b, t, tw


def test_linear_ce_sum_matches_cross_entropy_in_float64() -> None:
    h, w, b, t, tw = head_case(seed=1)
    fused = linear_ce_sum(h, w, t, tw, bias=b, chunk_size=8)
    (3 * fused).backward()
    got = [x.grad.clone() for x in (h, w, b)]
    for x in (h, w, b):
        x.grad = None
    ref = (F.cross_entropy(h @ w.T + b, t, reduction="none") * tw).sum()
    (3 * ref).backward()
    assert float(fused.detach()) == pytest.approx(float(ref.detach()), abs=1e-10)
    for a, x in zip(got, (h, w, b)):
        assert torch.allclose(a, x.grad, atol=1e-12)
    assert float(ce_sum(h @ w.T + b, t, tw)) == pytest.approx(float(ref), rel=1e-6)


@pytest.mark.parametrize("chunk_size", [8, 64])
def test_static_rows_pad_chunks_without_changing_loss_or_gradients(chunk_size: int) -> None:
    """Zero rows padded to a bucket size add nothing (float64: equal to rounding)."""
    h, w, b, t, tw = head_case(seed=2)
    results = []
    for static in (False, True):
        loss = linear_ce_sum(h, w, t, tw, bias=b, chunk_size=chunk_size, static_rows=static)
        loss.backward()
        results.append([loss.detach(), *(x.grad.clone() for x in (h, w, b))])
        for x in (h, w, b):
            x.grad = None
    for plain, padded in zip(*results):
        assert torch.allclose(plain, padded, rtol=0, atol=1e-12)


def test_row_buckets_are_few_and_hold_their_rows() -> None:
    from tunesmith.train.losses import row_bucket

    sizes = {row_bucket(n, 4096) for n in range(1, 4097)}
    assert sorted(sizes)[:6] == [64, 96, 128, 192, 256, 384] and len(sizes) == 13
    assert all(n <= row_bucket(n, 4096) <= max(64, n * 3 // 2) for n in range(1, 4097))
    assert row_bucket(300, 300) == 300  # never past the chunk


def test_static_rows_follow_low_precision_on_cpu() -> None:
    from tunesmith.model.attention import low_precision_cpu

    h = torch.randn(3, 4)
    assert not low_precision_cpu(h)
    assert low_precision_cpu(h.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert low_precision_cpu(h)


def test_frozen_head_gets_no_gradient_and_the_hidden_states_do() -> None:
    h = torch.randn(9, 8, requires_grad=True)
    w = torch.randn(20, 8)  # frozen, e.g. LoRA with tied embeddings
    linear_ce_sum(h, w, torch.randint(0, 20, (9,)), chunk_size=4).backward()
    assert h.grad is not None and w.grad is None


def test_auto_picks_chunked_and_refuses_what_cannot_run(model: Any) -> None:
    assert resolve_ce_impl("auto", model, device=CPU, sharded=False) == "chunked"
    assert resolve_ce_impl("auto", model, device=CPU, sharded=True) == "logits"
    with pytest.raises(ValueError, match=r"train\.ce_impl: liger cannot run here"):
        resolve_ce_impl("liger", model, device=CPU, sharded=False)
    with pytest.raises(ValueError, match=r"train\.ce_impl: chunked cannot run here"):
        resolve_ce_impl("chunked", model, device=CPU, sharded=True)


def test_lora_and_modules_to_save_heads(tiny_qwen2: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tunesmith.config.schema import MethodConfig
    from tunesmith.model.adapters import apply_method

    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    lora = apply_method(base, MethodConfig(type="lora"))
    assert resolve_ce_impl("auto", lora, device=CPU, sharded=False) == "chunked"
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    wrapped = apply_method(base, MethodConfig(type="lora", lora={"modules_to_save": ["lm_head"]}))
    # The trainable copy of the head is a peft wrapper: the head's own forward must run.
    assert resolve_ce_impl("auto", wrapped, device=CPU, sharded=False) == "logits"
    rows = samples(2)
    batch = collate_padded(rows, 0)
    ref_loss, ref_grads = grads_of(wrapped, batch, "full")
    loss, grads = grads_of(wrapped, batch, "logits")
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert max(float((grads[k] - ref_grads[k]).abs().max()) for k in grads) <= 1e-5


def test_per_sample_attention_gives_the_block_mask_gradients(tiny_qwen2: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tunesmith.model.attention import restore_sdpa, use_varlen_sdpa

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    model.config.use_cache = False
    rows = samples(3, n=6)
    batch = collate_packed([rows[:3], rows[3:5], rows[5:]], 0)
    ref_loss, ref_grads = grads_of(model, batch, "chunked")
    assert use_varlen_sdpa(model)
    loss, grads = grads_of(model, batch, "chunked")
    restore_sdpa(model)
    assert model.config._attn_implementation == "sdpa"
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert max(float((grads[k] - ref_grads[k]).abs().max()) for k in grads) <= 1e-5

"""Per-sample SDPA: bucketing of packed samples, fp32 attention on CPU for bf16."""

from __future__ import annotations

import torch

from tunesmith.model.attention import LONG, MIN_BUCKET, buckets, segments


def test_segments_follow_restarting_positions() -> None:
    pos = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])
    assert segments(pos) == [[(0, 3), (3, 5), (5, 6)], [(0, 6)]]


def test_buckets_cover_every_sample_once_with_bounded_padding() -> None:
    lengths = [500, 300, 20, 7, 150, 130, 100, 31, 64, 60, 1, 192]
    groups = buckets(lengths)
    members = sorted(i for _, m in groups for i in m)
    assert members == list(range(len(lengths)))
    for padded, m in groups:
        assert all(lengths[i] <= padded for i in m)
        if padded >= LONG:
            assert len(m) == 1 and lengths[m[0]] == padded  # long samples: alone, unpadded
        elif padded > MIN_BUCKET:
            assert all(lengths[i] * 1.25 >= padded for i in m)
    # 150 and 130 share a call; 100 does not (150 / 100 > 1.25); the tiny ones share one.
    by_len = {tuple(sorted(lengths[i] for i in m)): padded for padded, m in groups}
    assert by_len[(130, 150)] == 150
    assert by_len[(1, 7, 20, 31)] == MIN_BUCKET


def _qkv(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, 4, 12, 8, generator=g).to(dtype) for _ in range(3))


def test_cpu_bf16_attention_runs_in_fp32_and_returns_bf16() -> None:
    """Pure bf16 inputs: the attention is the fp32 one of the same (bf16) values, rounded once."""
    from tunesmith.model.attention import varlen_sdpa_forward

    module = torch.nn.Module()
    pos = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]] * 2)
    q, k, v = _qkv(torch.bfloat16)
    out, _ = varlen_sdpa_forward(module, q, k, v, None, position_ids=pos)
    ref, _ = varlen_sdpa_forward(module, q.float(), k.float(), v.float(), None, position_ids=pos)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, ref.to(torch.bfloat16))


def test_cpu_autocast_attention_is_not_cast_down() -> None:
    """Under CPU bf16 autocast (fp32 q/k after RoPE, bf16 v) the result is the fp32 attention."""
    from tunesmith.model.attention import varlen_sdpa_forward

    module = torch.nn.Module()
    pos = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8]] * 2)
    q, k, _ = _qkv(torch.float32)
    v = _qkv(torch.bfloat16)[2]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = varlen_sdpa_forward(module, q, k, v, None, position_ids=pos)
    ref, _ = varlen_sdpa_forward(module, q, k, v.float(), None, position_ids=pos)
    assert out.dtype == torch.float32
    assert torch.equal(out, ref)
    # Without the fp32 path autocast would have computed it in bf16: visibly different.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert low.dtype == torch.bfloat16


def _recorded_calls(monkeypatch, fn) -> tuple[list[tuple[torch.dtype, int]], torch.Tensor]:
    """Run ``fn``: the ``(dtype, length)`` of every per-bucket SDPA call it made, its result."""
    import types

    from tunesmith.model import attention

    calls: list[tuple[torch.dtype, int]] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> torch.Tensor:
        calls.append((q.dtype, q.shape[2]))
        return real(q, k, v, **kw)

    functional = types.SimpleNamespace(
        scaled_dot_product_attention=sdpa, pad=torch.nn.functional.pad
    )
    monkeypatch.setattr(attention, "F", functional)
    out = fn()
    monkeypatch.undo()
    return calls, out


def test_kept_bf16_attention_runs_in_bf16_at_multiples_of_64(monkeypatch) -> None:
    """A run that measured bf16 attention faster keeps it: bf16 calls padded to multiples of
    ``LOW_PRECISION_MULTIPLE`` (few kernel shapes), and the same attention as unpadded bf16."""
    from tunesmith.model.attention import (
        LOW_PRECISION_MULTIPLE,
        keep_low_precision_on_cpu,
        varlen_sdpa_forward,
    )

    module = torch.nn.Module()
    lengths = [5, 200, 70, 3]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 4, pos.shape[1], 8, generator=g).bfloat16() for _ in range(3))

    def run() -> torch.Tensor:
        return varlen_sdpa_forward(module, q, k, v, None, position_ids=pos)[0]

    default, _ = _recorded_calls(monkeypatch, run)
    assert {dtype for dtype, _ in default} == {torch.float32}
    previous = keep_low_precision_on_cpu(True)
    try:
        kept, out = _recorded_calls(monkeypatch, run)
    finally:
        keep_low_precision_on_cpu(previous)
    assert {dtype for dtype, _ in kept} == {torch.bfloat16}
    assert all(n % LOW_PRECISION_MULTIPLE == 0 for _, n in kept)
    assert sorted(n for _, n in kept) == [64, 128, 256]  # (3, 5) share a call; 70; 200
    assert out.dtype == torch.bfloat16
    start = 0
    for n in lengths:  # each sample: its own causal attention, in bf16, padding ignored
        s = slice(start, start + n)
        ref = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, s], k[:, :, s], v[:, :, s], is_causal=True
        )
        torch.testing.assert_close(out[:, s], ref.transpose(1, 2), atol=2e-2, rtol=2e-2)
        start += n


def test_a_packed_bf16_step_with_kept_bf16_attention_matches_fp32_attention(tiny_qwen2) -> None:
    """The tiny model, packed row, bf16 autocast: loss and gradients with bf16 attention (padded
    to multiples of 64) agree with the default fp32 attention to bf16 precision."""
    from tunesmith.model.attention import keep_low_precision_on_cpu, use_varlen_sdpa
    from tunesmith.model.loader import load_model

    model = load_model(str(tiny_qwen2), dtype="float32")
    model.config.use_cache = False
    assert use_varlen_sdpa(model)
    g = torch.Generator().manual_seed(2)
    lengths = [90, 7, 150, 40]
    ids = torch.randint(5, model.config.vocab_size, (1, sum(lengths)), generator=g)
    pos = torch.cat([torch.arange(n) for n in lengths])[None]

    def step(keep: bool) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        previous = keep_low_precision_on_cpu(keep)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, position_ids=pos, labels=ids).loss
            loss.backward()
        finally:
            keep_low_precision_on_cpu(previous)
        return loss.item(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    loss32, grad32 = step(False)
    loss16, grad16 = step(True)
    assert abs(loss16 - loss32) < 2e-2 * abs(loss32)
    assert torch.nn.functional.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0) > 0.99

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

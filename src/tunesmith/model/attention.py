"""SDPA per packed sample: attention over each sample's own tokens, not the whole packed row.

With packing, stock SDPA isolates samples through a block-diagonal ``[batch, 1, row, row]`` mask
that transformers builds from the position ids: correct, but every row still costs ``row^2``
attention work plus the mask itself, however short its samples. ``SDPA_VARLEN`` (an attention
implementation registered with transformers) reads the sample boundaries from the position ids
(they restart at 0 per sample, see ``data/collate.py``) and runs causal SDPA on each sample's
slice, so a row of samples ``n_1..n_k`` costs ``sum n_i^2`` and no mask is built. It is what
flash-attention's varlen kernels do on GPU, for the CPU and any SDPA device.

Whenever there is a mask (padding, generation with a KV cache) or nothing is packed, it is plain
SDPA: the registered mask function is transformers' own ``sdpa_mask``, except that it builds no
mask when there is neither padding nor anything cached (the packed training case): there the
attention function takes the sample boundaries from the position ids itself.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

SDPA_VARLEN = "tunesmith_sdpa_varlen"
_registered = False


def register() -> str:
    """Register ``SDPA_VARLEN`` with transformers (once); returns its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(SDPA_VARLEN, varlen_sdpa_forward)
        AttentionMaskInterface.register(SDPA_VARLEN, _mask)
        _registered = True
    return SDPA_VARLEN


def use_varlen_sdpa(model: Any) -> bool:
    """Switch an SDPA model to per-sample attention (for packed training); whether it was."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(register())
    return True


def restore_sdpa(model: Any) -> None:
    """Back to stock SDPA (before saving or serving the model elsewhere)."""
    if getattr(model.config, "_attn_implementation", None) == SDPA_VARLEN:
        model.set_attn_implementation("sdpa")


def _mask(**kwargs: Any) -> Any:
    from transformers.masking_utils import sdpa_mask

    fresh = (
        kwargs.get("attention_mask") is None
        and kwargs.get("local_size") is None
        and kwargs.get("q_offset", 0) == 0
        and kwargs.get("kv_offset", 0) == 0
        and kwargs["q_length"] == kwargs["kv_length"]
    )
    # No padding and nothing cached: causal attention within each sample is the whole mask,
    # which varlen_sdpa_forward applies from the position ids (packed) or with is_causal.
    return None if fresh else sdpa_mask(**kwargs)


def segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the ``(start, end)`` of each run of positions that restarts at 0."""
    rows = []
    for row in position_ids.tolist():
        starts = [i for i, p in enumerate(row) if p == 0] or [0]
        if starts[0] != 0:
            starts.insert(0, 0)
        rows.append(list(zip(starts, [*starts[1:], len(row)])))
    return rows


def varlen_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: ``[b, heads, t, d]`` in, ``[b, t, heads, d]`` out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    q_len = query.shape[2]
    plain = (
        attention_mask is not None
        or position_ids is None
        or q_len == 1
        or key.shape[2] != q_len
        or is_causal is False
        or kwargs.get("position_bias") is not None
    )
    bounds = None if plain else segments(position_ids.expand(query.shape[0], -1))
    if bounds is None or all(len(r) == 1 for r in bounds):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    # unbind / split (not indexing): their backward joins the pieces' gradients in one pass,
    # where every slice's backward would write a zero-filled gradient of the whole tensor.
    rows = []
    for q, k, v, row in zip(query.unbind(0), key.unbind(0), value.unbind(0), bounds):
        lens = [e - s for s, e in row]
        parts = [
            F.scaled_dot_product_attention(
                qs[None], ks[None], vs[None],
                dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=groups > 1,
            )[0]
            for qs, ks, vs in zip(q.split(lens, 1), k.split(lens, 1), v.split(lens, 1))
        ]  # fmt: skip
        rows.append(torch.cat(parts, dim=1))
    out = torch.stack(rows)  # [b, heads, t, d]
    return out.transpose(1, 2).contiguous(), None

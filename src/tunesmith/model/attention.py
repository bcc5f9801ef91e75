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

On CPU a bf16/fp16 (or autocast) call runs in fp32 unless the run measured bf16 attention faster
on this CPU (``keep_low_precision_on_cpu``, decided in ``train/precision.py``): torch's CPU kernel
is slower in bf16 on a Zen 4 EPYC, and on AMX CPUs it runs its bf16 matmuls on the tiles.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

SDPA_VARLEN = "tunesmith_sdpa_varlen"
_registered = False
_cpu_keeps_low_precision = False  # see keep_low_precision_on_cpu
LOW_PRECISION_MULTIPLE = 64  # bf16 CPU attention pads each call's length to a multiple of this


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


LONG = 192  # samples at least this long get an SDPA call of their own
BUCKET_RATIO = 1.25  # shorter ones share calls with samples within 1.25x of their length
MIN_BUCKET = 32  # samples this short all share one call: padding them costs less than calls


def buckets(lengths: list[int]) -> list[tuple[int, list[int]]]:
    """Group sample indices into ``(padded length, members)`` buckets of similar lengths.

    Samples of ``LONG`` tokens or more are buckets of their own (no padding); the others are
    grouped, longest first, with those at least ``1 / BUCKET_RATIO`` of the bucket's length (at
    most ``BUCKET_RATIO^2`` the attention work of running them one by one, in one call).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[tuple[int, list[int]]] = []
    for i in order:
        n = lengths[i]
        top = out[-1][0] if out else 0
        if out and top < LONG and (n * BUCKET_RATIO >= top or top <= MIN_BUCKET):
            out[-1][1].append(i)
        else:
            out.append((n if n >= LONG else max(n, min(MIN_BUCKET, lengths[order[0]])), [i]))
    return out


# torch.compile runs around it, not through it: the sample bounds are read as Python ints, which
# would make every batch a new graph. The layers' other work keeps fixed shapes and compiles once.
@torch.compiler.disable
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
    """transformers' attention signature: ``[b, heads, t, d]`` in, ``[b, t, heads, d]`` out.

    The batch's tokens are split into its samples; long samples get a causal SDPA call each, the
    short ones are padded at their end (where causal attention never looks) and stacked into one
    call per bucket of similar lengths. Only split / pad / stack / cat are used, whose backward
    passes are views and joins (slicing the inputs instead would make every sample's backward
    write a zero-filled gradient of the whole tensor).
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    low = low_precision_cpu(query)
    if low and not _cpu_keeps_low_precision:
        dtype = torch.promote_types(query.dtype, value.dtype)  # what the call would return
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        q, k, v = query.float(), key.float(), value.float()
        with torch.autocast("cpu", enabled=False):  # autocast would cast them back to bf16
            out, _ = varlen_sdpa_forward(
                module, q, k, v, attention_mask, dropout, scaling, is_causal, **kwargs
            )
        return out.to(dtype), None
    position_ids = kwargs.get("position_ids")
    batch, heads, length, _ = query.shape
    plain = (
        attention_mask is not None
        or position_ids is None
        or length == 1
        or key.shape[2] != length
        or is_causal is False
        or kwargs.get("position_bias") is not None
    )
    bounds = None if plain else segments(position_ids.expand(batch, -1))
    if bounds is None or all(len(r) == 1 for r in bounds):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    lens = [e - s for row in bounds for s, e in row]

    def pieces(t: torch.Tensor) -> tuple[torch.Tensor, ...]:  # [b, h, t, d] -> per sample
        return t.transpose(0, 1).reshape(t.shape[1], batch * length, t.shape[-1]).split(lens, 1)

    qs, ks, vs = pieces(query), pieces(key), pieces(value)
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    outs: list[torch.Tensor | None] = [None] * len(lens)
    multiple = LOW_PRECISION_MULTIPLE if low else 1
    for padded, members in buckets(lens):
        padded = -(-padded // multiple) * multiple
        q, k, v = (_stack(t, members, lens, padded) for t in (qs, ks, vs))
        o = F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa
        )
        for i, oi in zip(members, o.unbind(0)):
            outs[i] = oi[:, : lens[i]] if padded > lens[i] else oi
    out = torch.cat(outs, dim=1)  # type: ignore[arg-type]  # [h, b*t, d] in token order
    return out.view(heads, batch, length, -1).permute(1, 2, 0, 3).contiguous(), None


def keep_low_precision_on_cpu(keep: bool) -> bool:
    """Whether bf16/fp16 attention on CPU runs in its own dtype from now on; the previous setting.

    Off by default: attention casts q/k/v up to fp32 (see ``low_precision_cpu``). A run turns it
    on where it measured torch's bf16 kernel faster on this CPU (``train/precision.py``). Then each
    call's length is padded to a multiple of ``LOW_PRECISION_MULTIPLE`` (causal attention never
    looks at the padding at a sample's end): on a 2-core Zen 4 EPYC, bf16 attention at every
    sample's own length raised the LF bench's peak RSS from 850 to 2,100 MiB, and at multiples
    of 64 to 914-922 MiB.
    """
    global _cpu_keeps_low_precision
    previous, _cpu_keeps_low_precision = _cpu_keeps_low_precision, bool(keep)
    return previous


def low_precision_cpu(t: torch.Tensor) -> bool:
    """Whether work on ``t`` runs in bf16/fp16 on CPU (its dtype, or CPU autocast).

    Two CPU kernels misbehave there. torch's CPU flash-attention kernel can be slower in bf16 than
    in fp32 at training sizes (2-core Zen 4 EPYC with avx512_bf16, forward + backward, 8 heads: 6x
    slower at 40 tokens x 32 dims, 2x at 100 x 64, no faster at 512), so by default attention
    casts q/k/v up and the output back, and runs keep bf16 only where they measured it faster
    (``keep_low_precision_on_cpu``). From 768 tokens bf16 is 10-16% faster alone there, but
    running only those buckets in bf16 gave no faster step on the LF bench. And oneDNN
    keeps 1-9 MB for every bf16 matmul shape it has run (flat for repeated shapes), so the fused
    loss pads its rows to a few sizes (``train/losses.py``).
    """
    if t.device.type != "cpu":
        return False
    return t.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled("cpu")


def _stack(
    parts: tuple[torch.Tensor, ...], members: list[int], lens: list[int], padded: int
) -> torch.Tensor:
    """``[members, h, padded, d]``: the members' pieces, each padded at its end."""
    if len(members) == 1 and lens[members[0]] == padded:
        return parts[members[0]][None]  # a view: no copy for a sample alone in its call
    return torch.stack([F.pad(parts[i], (0, 0, 0, padded - lens[i])) for i in members])

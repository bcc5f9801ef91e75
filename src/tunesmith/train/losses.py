"""Loss functions as pure tensor functions (no model, no config).

SFT losses return a *sum* and a *token count* rather than a mean, so the loop can normalise by the
number of trained tokens over a whole optimiser step (all micro-batches, all processes). That is
what makes ``batch 8 x accum 1`` equal ``batch 2 x accum 4``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.model.attention import low_precision_cpu

IGNORE_INDEX = -100


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Shift labels left by one so position t predicts token t+1; the last position is ignored."""
    shifted = labels.new_full(labels.shape, IGNORE_INDEX)
    shifted[..., :-1] = labels[..., 1:]
    return shifted


def token_ce_sum(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over trained positions.

    Args:
        logits: ``[batch, seq, vocab]`` unshifted model outputs.
        labels: ``[batch, seq]`` token ids with ``-100`` on untrained positions (unshifted).
        weights: Optional ``[batch, seq]`` per-token loss weights aligned with ``labels``.

    Returns:
        ``(loss_sum, n_tokens)``: the (weighted) sum of token losses and the number of trained
        tokens, both 0-dim tensors. Divide by the step's total token count to get the mean.
    """
    target = shift_labels(labels).reshape(-1)
    keep = target != IGNORE_INDEX
    # Select trained positions before the softmax: memory scales with trained tokens,
    # not seq x vocab.
    flat = logits.reshape(-1, logits.shape[-1])[keep]
    losses = F.cross_entropy(flat.float(), target[keep], reduction="none")
    if weights is not None:
        w = torch.zeros_like(weights)
        w[..., :-1] = weights[..., 1:]
        losses = losses * w.reshape(-1)[keep].to(losses.dtype)
    return losses.sum(), keep.sum()


def trained_targets(
    labels: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Which positions are trained, their next-token targets, and their loss weights.

    Returns:
        ``(keep, target, token_weights)``: a ``[batch, seq]`` bool mask of the positions whose
        next label is trained (pass it as ``logits_to_keep`` so only they reach the ``lm_head``),
        the ``[n]`` target ids of those positions in row-major order, and their ``[n]`` weights
        (``None`` without ``weights``).
    """
    shifted = shift_labels(labels)
    keep = shifted != IGNORE_INDEX
    token_weights = None
    if weights is not None:
        w = torch.zeros_like(weights)
        w[..., :-1] = weights[..., 1:]
        token_weights = w[keep]
    return keep, shifted[keep], token_weights


def ce_sum(
    logits: torch.Tensor, target: torch.Tensor, token_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Summed cross-entropy of ``[n, vocab]`` logits already cut to the trained positions."""
    losses = F.cross_entropy(logits.float(), target, reduction="none")
    if token_weights is not None:
        losses = losses * token_weights.to(losses.dtype)
    return losses.sum()


class _LinearCrossEntropy(torch.autograd.Function):
    """``sum_i w_i * CE(hidden_i @ weight.T + bias, target_i)``, chunk by chunk.

    The gradients are computed in the forward pass, one chunk of rows at a time, so no
    ``[n, vocab]`` tensor ever exists: memory is ``chunk x vocab`` for the logits plus the
    gradient buffers of ``hidden`` and ``weight``. The FLOPs equal the unfused path's (one
    forward and two backward matmuls); softmax and sums run in float32. With ``static_rows`` each
    chunk is padded with zero rows to one of a few sizes (``row_bucket``), which add nothing to
    the loss or the gradients but keep the matmuls' shapes from changing with every batch.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        target: torch.Tensor,
        token_weights: torch.Tensor | None,
        chunk_size: int,
        static_rows: bool,
    ) -> torch.Tensor:
        dtype = hidden.dtype
        acc = torch.promote_types(dtype, torch.float32)  # softmax and sums: float32 or better
        w_mat = weight.to(dtype)
        need_h, need_w = hidden.requires_grad, weight.requires_grad
        need_b = bias is not None and bias.requires_grad
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
        total = torch.zeros((), dtype=acc, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size]
            t = target[start : start + chunk_size]
            n = len(h)
            if static_rows:
                h = F.pad(h, (0, 0, 0, row_bucket(n, chunk_size) - n))
            padded = (h @ w_mat.T).to(acc)  # [rows, vocab]; rows past n are padding
            if bias is not None:
                padded = padded + bias.to(acc)
            logits = padded[:n]  # a view: the in-place work below lands in ``padded``
            # One exp over the [chunk, vocab] buffer, in place, serves both the log-sum-exp and
            # the softmax of the gradient (logsumexp then exp again made two, plus a copy).
            top = logits.amax(dim=-1, keepdim=True)
            picked = logits.gather(1, t[:, None]).squeeze(1)
            e = logits.sub_(top).exp_()
            sums = e.sum(dim=-1)
            losses = top.squeeze(1) + sums.log() - picked
            w = None if token_weights is None else token_weights[start : start + chunk_size].to(acc)
            total += (losses if w is None else losses * w).sum()
            if not (need_h or need_w or need_b):
                continue
            # d(sum of losses)/d(logits) = softmax - one_hot(target), scaled by the weights.
            g = e.div_(sums[:, None])
            g[torch.arange(len(t), device=g.device), t] -= 1.0
            if w is not None:
                g *= w[:, None]
            if grad_b is not None:
                grad_b += g.sum(0)
            if len(h) > n:
                padded[n:] = 0.0  # padding rows: no gradient
                g = padded
            if grad_w is not None:
                grad_w.addmm_(g.T, h.to(acc))
            if grad_h is not None:
                grad_h[start : start + n] = (g.to(dtype) @ w_mat)[:n]
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        scale = grad_out.detach()
        return (
            None if grad_h is None else grad_h * scale.to(grad_h.dtype),
            None if grad_w is None else (grad_w * scale).to(w_dtype),
            None if grad_b is None else (grad_b * scale).to(b_dtype),
            None,
            None,
            None,
            None,
        )


def row_bucket(n: int, cap: int) -> int:
    """The smallest of 64, 96, 128, 192, 256, 384, ... (two sizes an octave) >= ``n``, or ``cap``.

    Above 64 rows, padding to these sizes wastes at most a third; 1-4096 rows make 13 shapes.
    """
    size = 64
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return max(n, min(size, cap))


def linear_ce_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    token_weights: torch.Tensor | None = None,
    *,
    bias: torch.Tensor | None = None,
    chunk_size: int = 4096,
    static_rows: bool | None = None,
) -> torch.Tensor:
    """Summed cross-entropy of the ``lm_head`` applied to ``hidden``, without ``[n, vocab]`` logits.

    Equal to ``ce_sum(hidden @ weight.T + bias, target, token_weights)`` (values and gradients)
    but fused and chunked, as Apple's Cut Cross-Entropy and Liger's fused linear cross-entropy do:
    memory no longer scales with ``trained tokens x vocab``.

    Args:
        hidden: ``[n, hidden]`` final hidden states of the trained positions.
        weight: ``[vocab, hidden]`` output-embedding matrix (``lm_head.weight``).
        target: ``[n]`` next-token ids.
        token_weights: Optional ``[n]`` per-token loss weights.
        bias: Optional ``[vocab]`` output bias.
        chunk_size: Rows per chunk (memory ``chunk_size x vocab`` floats).
        static_rows: Pad each chunk's rows to a ``row_bucket`` size (same values and gradients);
            ``None``: where the matmuls run in low precision on CPU (``low_precision_cpu``).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if static_rows is None:
        static_rows = low_precision_cpu(hidden)
    return _LinearCrossEntropy.apply(
        hidden, weight, bias, target, token_weights, chunk_size, static_rows
    )


def sequence_logps(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    average: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence log-probability of the labelled tokens: the input of every preference loss.

    With ``m_{b,t} = 1[labels[b, t+1] != -100]`` (labels shift inside, as in ``token_ce_sum``)::

        logp[b]     = sum_t m_{b,t} * log softmax(logits[b, t])[labels[b, t+1]]
        n_tokens[b] = sum_t m_{b,t}
        average:      logp[b] / max(n_tokens[b], 1)

    Sums give DPO/KTO's ``log pi(y|x)``; averages (``average=True``) give the length-normalised
    log-probabilities that ORPO and SimPO take. Only trained positions go through the softmax, so
    memory scales with the number of trained tokens rather than ``batch x seq x vocab``, and the
    softmax and the sums run in float32 (or float64 when the logits are float64) whatever the
    logits' dtype. A row with no trained token gives ``0`` (TRL's average would give NaN).

    Args:
        logits: ``[batch, seq, vocab]`` unshifted model outputs.
        labels: ``[batch, seq]`` token ids with ``-100`` on untrained positions (unshifted).
        average: Return the mean over each row's trained tokens instead of the sum.

    Returns:
        ``(logps, n_tokens)``: ``[batch]`` float log-probabilities and ``[batch]`` int64 counts.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in [batch, seq]"
        )
    target = shift_labels(labels)
    keep = target != IGNORE_INDEX
    acc_dtype = torch.promote_types(logits.dtype, torch.float32)
    flat = logits[keep].to(acc_dtype)  # [n_trained, vocab]
    token_logps = -F.cross_entropy(flat, target[keep], reduction="none")
    rows = keep.nonzero(as_tuple=True)[0]
    logps = token_logps.new_zeros(labels.shape[0]).index_add(0, rows, token_logps)
    n_tokens = keep.sum(dim=-1)
    if average:
        logps = logps / n_tokens.clamp(min=1).to(acc_dtype)
    return logps, n_tokens


# ---- distillation -----------------------------------------------------------------------------
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def distill_token_losses(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    kind: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-token divergence between teacher and student next-token distributions.

    With ``s = log_softmax(student / T)`` and ``t = log_softmax(teacher / T)`` per row::

        forward_kl  KL(t || s) = sum_v p_t (t - s)        (mean-seeking: cover the teacher)
        reverse_kl  KL(s || t) = sum_v p_s (s - t)        (mode-seeking)
        jsd         beta KL(t || m) + (1 - beta) KL(s || m),  m = beta p_t + (1 - beta) p_s

    ``jsd`` is the generalised Jensen-Shannon divergence of GKD (Agarwal et al., 2024). Each value
    is multiplied by ``T^2`` so that the gradients keep their size as ``T`` changes (Hinton et al.,
    2015). The softmax and the sums run in float32 (float64 for float64 inputs).

    Args:
        student_logits: ``[n, vocab]`` student logits at the trained positions.
        teacher_logits: ``[n, vocab]`` teacher logits at the same positions (no gradient needed).
        kind: ``forward_kl``, ``reverse_kl`` or ``jsd``.
        beta: the teacher's weight in the ``jsd`` mixture, strictly between 0 and 1.
        temperature: softens both distributions (> 0).

    Returns:
        ``[n]`` divergences, one per position.

    Raises:
        ValueError: shapes that differ, an unknown ``kind``, ``beta`` or ``temperature`` out of
            range.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ; the models must share one vocabulary"
        )
    if kind not in DIVERGENCES:
        raise ValueError(f"kind {kind!r}: choose one of {', '.join(DIVERGENCES)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    acc = torch.promote_types(student_logits.dtype, torch.float32)
    s = F.log_softmax(student_logits.to(acc) / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.to(acc) / temperature, dim=-1)
    if kind == "forward_kl":
        div = (t.exp() * (t - s)).sum(-1)
    elif kind == "reverse_kl":
        div = (s.exp() * (s - t)).sum(-1)
    else:
        if not 0 < beta < 1:
            raise ValueError(f"beta must be strictly between 0 and 1 for jsd, got {beta}")
        # log m in log space: no exp/log round trip for the tiny probabilities of a big vocab.
        m = torch.logaddexp(t + math.log(beta), s + math.log(1 - beta))
        div = beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)
    return div * temperature**2


def distill_sum(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    token_weights: torch.Tensor | None = None,
    *,
    kind: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    ce_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed distillation objective over logits already cut to the trained positions.

    ``objective = sum_i w_i (div_i + ce_weight * CE_i)`` with ``div_i`` from
    ``distill_token_losses`` and ``CE_i`` the cross-entropy of the (untempered) student logits on
    the label ``target_i``. As with ``ce_sum``, the loop divides by the step's trained tokens.

    Returns:
        ``(objective, divergence_sum, ce_sum)``: 0-dim tensors (the CE is summed even when
        ``ce_weight`` is 0, for the log).
    """
    div = distill_token_losses(
        student_logits, teacher_logits, kind=kind, beta=beta, temperature=temperature
    )
    ce = F.cross_entropy(student_logits.to(div.dtype), target, reduction="none")
    if token_weights is not None:
        w = token_weights.to(div.dtype)
        div, ce = div * w, ce * w
    div_sum, ce_total = div.sum(), ce.sum()
    return div_sum + ce_weight * ce_total, div_sum, ce_total


def token_distill_sum(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``distill_sum`` over full ``[batch, seq, vocab]`` logits: ``(objective, trained tokens)``.

    Only the positions whose next label is trained count (labels shift inside, as in
    ``token_ce_sum``); ``options`` are ``distill_sum``'s keywords.
    """
    keep, target, token_weights = trained_targets(labels, weights)
    objective, _div, _ce = distill_sum(
        student_logits[keep], teacher_logits[keep], target, token_weights, **options
    )
    return objective, keep.sum()

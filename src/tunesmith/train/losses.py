"""Loss functions as pure tensor functions (no model, no config).

SFT losses return a *sum* and a *token count* rather than a mean, so the loop can normalise by the
number of trained tokens over a whole optimiser step (all micro-batches, all processes). That is
what makes ``batch 8 x accum 1`` equal ``batch 2 x accum 4``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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

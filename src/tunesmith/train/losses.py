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
    # Select trained positions before the softmax: memory scales with trained tokens, not seq x vocab.
    flat = logits.reshape(-1, logits.shape[-1])[keep]
    losses = F.cross_entropy(flat.float(), target[keep], reduction="none")
    if weights is not None:
        w = torch.zeros_like(weights)
        w[..., :-1] = weights[..., 1:]
        losses = losses * w.reshape(-1)[keep].to(losses.dtype)
    return losses.sum(), keep.sum()

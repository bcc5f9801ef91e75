"""The GRPO objective: PPO-style clipped ratio times advantage, plus a KL term to the reference.

Per completion token ``t`` with ratio ``r = exp(logp - old_logp)``::

    loss_t = -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A) + beta * KL_t
    KL_t   = exp(ref - logp) - (ref - logp) - 1          (the k3 estimator, always >= 0)

``sequence`` level averages each completion's tokens, then the completions (GRPO); ``token``
level gives every completion token of the step the same weight (DAPO). The sums returned here are
divided by the whole step's completions or tokens by the caller, so micro-batches and processes
add up to the same gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class GRPOLoss:
    """Sums over one micro-batch; divide by the step's ``units`` (completions or tokens)."""

    loss_sum: Any  # with grad
    units: Any  # completions (sequence level) or completion tokens (token level) here
    kl_sum: Any  # per-token KL summed over completion tokens (0 without a reference)
    clipped_sum: Any  # tokens whose ratio was clipped in the direction of the advantage
    tokens: Any  # completion tokens here


def grpo_loss(
    logps: Any,
    old_logps: Any,
    advantages: Any,
    mask: Any,
    *,
    ref_logps: Any = None,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    level: str = "sequence",
) -> GRPOLoss:
    """The clipped objective over ``[B, T]`` per-token log-probs of the completions.

    Args:
        logps: the policy's log-probs of the sampled tokens (with grad).
        old_logps: the same under the policy that generated them (no grad).
        advantages: ``[B]``, one per completion.
        mask: ``[B, T]``, 1 on completion tokens.
        ref_logps: the reference's log-probs; needed when ``beta > 0``.
        level: ``sequence`` or ``token`` (see the module docstring).
    """
    import torch

    mask = mask.to(logps.dtype)
    adv = advantages.to(logps.dtype).unsqueeze(1)
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = torch.zeros_like(per_token)
    if beta:
        if ref_logps is None:
            raise ValueError("beta > 0 needs the reference log-probs")
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    lengths = mask.sum(-1)
    if level == "sequence":
        loss_sum = ((per_token * mask).sum(-1) / lengths.clamp(min=1)).sum()
        units = torch.tensor(float(mask.shape[0]), device=mask.device)
    elif level == "token":
        loss_sum, units = (per_token * mask).sum(), lengths.sum()
    else:
        raise ValueError(f"level {level!r}: use sequence or token")
    with torch.no_grad():
        was_clipped = ((ratio < 1 - epsilon_low) & (adv < 0)) | (
            (ratio > 1 + epsilon_high) & (adv > 0)
        )
        clipped_sum = (was_clipped.to(mask.dtype) * mask).sum()
        kl_sum = (kl.detach() * mask).sum()
    return GRPOLoss(loss_sum, units, kl_sum, clipped_sum, lengths.sum())


def token_logps(model: Any, input_ids: Any, attention_mask: Any, n_completion: int) -> Any:
    """``[B, n_completion]`` log-probs of the last ``n_completion`` tokens of each row.

    Rows are ``prompt (left-padded) + completion (right-padded)``, so the completion starts at the
    same column in every row; only those positions' logits are turned into log-probs.
    """
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, -n_completion - 1 : -1, :].float()
    targets = input_ids[:, -n_completion:]
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

"""Group-relative advantages: each completion's reward against its prompt's group."""

from __future__ import annotations

from typing import Any

EPS = 1e-4
"""Added to the standard deviation (a group whose rewards are all equal gets advantage 0)."""


def group_advantages(rewards: Any, group_size: int, scale: str = "group") -> Any:
    """``(reward - group mean) / (std + EPS)`` for rewards laid out prompt by prompt.

    Args:
        rewards: ``[P * group_size]`` float tensor, the ``group_size`` completions of each prompt
            next to each other.
        group_size: completions per prompt (G).
        scale: ``group`` divides by the group's std, ``batch`` by the whole batch's, ``none`` not
            at all (Dr. GRPO). The std is the sample one (n - 1), as in TRL.

    Returns:
        The advantages, same shape as ``rewards``.
    """
    import torch

    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
    if scale == "none":
        return centred
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)
    elif scale == "batch":
        std = rewards.std() if rewards.numel() > 1 else torch.zeros((), dtype=rewards.dtype)
    else:
        raise ValueError(f"scale {scale!r}: use group, batch or none")
    return centred / (std + EPS)
